//! Every LXC tool name this binary answers to, grouped by the front end that
//! handles it: the one list that dispatch, `install-links` and the tests
//! read (the tests include this file). Plain data, no imports, so that a
//! test crate can include it as it is.

/// The storage front ends in `cli/`.
pub const STORAGE_TOOLS: &[&str] = &[
    "lxc-create",
    "lxc-destroy",
    "lxc-copy",
    "lxc-clone",
    "lxc-snapshot",
    "lxc-ls",
];

/// The runtime front ends in `run.rs`.
pub const RUNTIME_TOOLS: &[&str] = &[
    "lxc-start",
    "lxc-stop",
    "lxc-execute",
    "lxc-attach",
    "lxc-info",
    "lxc-start-ephemeral",
];

/// The state and namespace tools in `tools/`, dispatched through `run.rs`.
pub const STATE_TOOLS: &[&str] = &[
    "lxc-wait",
    "lxc-freeze",
    "lxc-unfreeze",
    "lxc-cgroup",
    "lxc-monitor",
    "lxc-autostart",
    "lxc-usernsexec",
    "lxc-unshare",
    "lxc-config",
    "lxc-update-config",
    "lxc-checkconfig",
    "lxc-console",
    "lxc-top",
    "lxc-device",
];

/// Every name, in the order `install-links` makes them.
pub fn all() -> impl Iterator<Item = &'static str> {
    STORAGE_TOOLS.iter().chain(RUNTIME_TOOLS).chain(STATE_TOOLS).copied()
}
