//! The config keys LXC 5.0 knows, for refusing the ones it does not.
//!
//! The table follows LXC 5.0's own table of container keys (`confile.c`),
//! checked against LXC 5.0.2 itself: a key is known when LXC 5.0.2 loads a
//! config holding it without "Unsupported config key" or "Unknown network
//! configuration key". Keys are matched as LXC matches them: exactly, or by
//! one of a few prefixes (`lxc.cgroup.`, `lxc.cgroup2.`, `lxc.sysctl.`,
//! `lxc.proc.`, `lxc.prlimit.`, `lxc.namespace.share.`, `lxc.net.N.`).
//!
//! LXC 5 no longer reads the LXC 2.x names (`lxc.utsname`, `lxc.rootfs`,
//! `lxc.network.*`, `lxc.id_map`, ...): it refuses them as unsupported keys,
//! and so does the strict check here, naming the current key
//! ([`legacy_replacement`]). The keys of the global `lxc.conf`
//! (`lxc.lxcpath`, `lxc.bdev.*`, ...) are refused in a container's config
//! by LXC as well; [`global_key_known`] knows them for `lxc.conf`.
//!
//! The current name of a legacy key ([`canonical_key`]) is here too: the
//! parser in [`crate::config`] reads keys by it.

use std::borrow::Cow;

/// Exact legacy names and their LXC 2.1+ replacements.
const RENAMED: &[(&str, &str)] = &[
    ("lxc.utsname", "lxc.uts.name"),
    ("lxc.rootfs", "lxc.rootfs.path"),
    ("lxc.id_map", "lxc.idmap"),
    ("lxc.pts", "lxc.pty.max"),
    ("lxc.tty", "lxc.tty.max"),
    ("lxc.devttydir", "lxc.tty.dir"),
    ("lxc.aa_profile", "lxc.apparmor.profile"),
    ("lxc.aa_allow_incomplete", "lxc.apparmor.allow_incomplete"),
    ("lxc.se_context", "lxc.selinux.context"),
    ("lxc.seccomp", "lxc.seccomp.profile"),
    ("lxc.console", "lxc.console.path"),
    ("lxc.haltsignal", "lxc.signal.halt"),
    ("lxc.rebootsignal", "lxc.signal.reboot"),
    ("lxc.stopsignal", "lxc.signal.stop"),
    ("lxc.syslog", "lxc.log.syslog"),
    ("lxc.logfile", "lxc.log.file"),
    ("lxc.loglevel", "lxc.log.level"),
    ("lxc.init_cmd", "lxc.init.cmd"),
    ("lxc.init_uid", "lxc.init.uid"),
    ("lxc.init_gid", "lxc.init.gid"),
    ("lxc.limit", "lxc.prlimit"),
    ("lxc.mount", "lxc.mount.fstab"),
    ("lxc.network", "lxc.net"),
];

/// Network subkeys whose names changed besides the prefix.
fn net_subkey(sub: &str) -> Cow<'_, str> {
    match sub {
        "ipv4" => Cow::Borrowed("ipv4.address"),
        "ipv6" => Cow::Borrowed("ipv6.address"),
        s => Cow::Borrowed(s),
    }
}

/// `lxc.network.N.X` -> `Some((Some(N), X))`, `lxc.network.X` -> `Some((None, X))`.
pub(crate) fn legacy_net(key: &str) -> Option<(Option<&str>, &str)> {
    let rest = key.strip_prefix("lxc.network.")?;
    if rest.is_empty() {
        return None;
    }
    match rest.split_once('.') {
        Some((idx, sub)) if !idx.is_empty() && idx.bytes().all(|b| b.is_ascii_digit()) => Some((Some(idx), sub)),
        None if rest.bytes().all(|b| b.is_ascii_digit()) => Some((Some(rest), "")),
        _ => Some((None, rest)),
    }
}

pub(crate) fn net_key(idx: &str, sub: &str) -> String {
    if sub.is_empty() {
        format!("lxc.net.{idx}")
    } else {
        format!("lxc.net.{idx}.{}", net_subkey(sub))
    }
}

/// The current name of a possibly legacy key (`lxc.utsname` -> `lxc.uts.name`,
/// `lxc.network.0.hwaddr` -> `lxc.net.0.hwaddr`, ...). An unindexed legacy
/// network key maps to network 0 here; [`Config`] counts networks by position.
pub fn canonical_key(key: &str) -> Cow<'_, str> {
    if let Some((_, new)) = RENAMED.iter().find(|(old, _)| *old == key) {
        return Cow::Borrowed(new);
    }
    if let Some(sub) = key.strip_prefix("lxc.limit.") {
        return Cow::Owned(format!("lxc.prlimit.{sub}"));
    }
    if let Some((idx, sub)) = legacy_net(key) {
        return Cow::Owned(net_key(idx.unwrap_or("0"), sub));
    }
    Cow::Borrowed(key)
}

/// Keys matched exactly.
const EXACT: &[&str] = &[
    "lxc.apparmor.allow_incomplete",
    "lxc.apparmor.allow_nesting",
    "lxc.apparmor.profile",
    "lxc.apparmor.raw",
    "lxc.arch",
    "lxc.autodev",
    "lxc.autodev.tmpfs.size",
    "lxc.cap.drop",
    "lxc.cap.keep",
    // Without a controller: clears every lxc.cgroup.* / lxc.cgroup2.* entry.
    "lxc.cgroup",
    "lxc.cgroup2",
    "lxc.console.buffer.size",
    "lxc.console.logfile",
    "lxc.console.path",
    "lxc.console.rotate",
    "lxc.console.size",
    "lxc.environment",
    "lxc.ephemeral",
    "lxc.execute.cmd",
    "lxc.group",
    // Clears every hook.
    "lxc.hook",
    "lxc.hook.autodev",
    "lxc.hook.clone",
    "lxc.hook.destroy",
    "lxc.hook.mount",
    "lxc.hook.post-stop",
    "lxc.hook.pre-mount",
    "lxc.hook.pre-start",
    "lxc.hook.start",
    "lxc.hook.start-host",
    "lxc.hook.stop",
    "lxc.hook.version",
    "lxc.idmap",
    "lxc.include",
    "lxc.init.cmd",
    "lxc.init.cwd",
    "lxc.init.gid",
    "lxc.init.groups",
    "lxc.init.uid",
    "lxc.keyring.session",
    "lxc.log.file",
    "lxc.log.level",
    "lxc.log.syslog",
    "lxc.monitor.signal.pdeath",
    "lxc.monitor.unshare",
    "lxc.mount.auto",
    "lxc.mount.entry",
    "lxc.mount.fstab",
    "lxc.namespace.clone",
    "lxc.namespace.keep",
    // Clears every network.
    "lxc.net",
    "lxc.no_new_privs",
    "lxc.prlimit",
    "lxc.proc",
    "lxc.pty.max",
    "lxc.rootfs.managed",
    "lxc.rootfs.mount",
    "lxc.rootfs.options",
    "lxc.rootfs.path",
    "lxc.sched.core",
    "lxc.seccomp.allow_nesting",
    "lxc.seccomp.notify.cookie",
    "lxc.seccomp.notify.proxy",
    "lxc.seccomp.profile",
    "lxc.selinux.context",
    "lxc.selinux.context.keyring",
    "lxc.signal.halt",
    "lxc.signal.reboot",
    "lxc.signal.stop",
    "lxc.start.auto",
    "lxc.start.delay",
    "lxc.start.order",
    "lxc.sysctl",
    "lxc.time.offset.boot",
    "lxc.time.offset.monotonic",
    "lxc.tty.dir",
    "lxc.tty.max",
    "lxc.uts.name",
];

/// Keys matched by prefix, anything after it: a cgroup controller file
/// (`lxc.cgroup.dir*` and `lxc.cgroup.relative` fall in here too), a
/// sysctl, a /proc file, a resource limit.
const PREFIXES: &[&str] = &[
    "lxc.cgroup.",
    "lxc.cgroup2.",
    "lxc.sysctl.",
    "lxc.proc.",
    "lxc.prlimit.",
];

/// `lxc.namespace.share.NS`: the namespaces LXC can share.
const SHARE_NAMESPACES: &[&str] = &["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// Sub-keys of `lxc.net.N.`, as LXC 5.0 knows them.
pub const NET_SUBKEYS: &[&str] = &[
    "type",
    "flags",
    "link",
    "l2proxy",
    "name",
    "hwaddr",
    "mtu",
    "macvlan.mode",
    "ipvlan.mode",
    "ipvlan.isolation",
    "vlan.id",
    "veth.pair",
    "veth.mode",
    "veth.ipv4.route",
    "veth.ipv6.route",
    "veth.vlan.id",
    "veth.vlan.tagged.id",
    "veth.n_rxqueues",
    "veth.n_txqueues",
    "ipv4.address",
    "ipv4.gateway",
    "ipv6.address",
    "ipv6.gateway",
    "script.up",
    "script.down",
];

/// Keys of the global `lxc.conf` (not of a container's config).
const GLOBAL: &[&str] = &[
    "lxc.lxcpath",
    "lxc.default_config",
    "lxc.bdev.lvm.vg",
    "lxc.bdev.lvm.thin_pool",
    "lxc.bdev.zfs.root",
    "lxc.bdev.rbd.rbdpool",
    // strata's: the cephx user of the rbd backend (LXC 5 has no such key).
    "lxc.bdev.rbd.rbduser",
    // strata's: the rbd backend's bound on each wait for the cluster.
    "lxc.bdev.rbd.timeout",
    "lxc.cgroup.use",
    "lxc.cgroup.pattern",
];

/// strata's own container keys (`strata snapshot auto`'s schedule). LXC
/// refuses keys it does not know, so they live in `strata.conf` in the
/// container dir, which LXC never reads, and never in its config.
const STRATA_FILE: &[&str] = &["lxc.snapshot.schedule", "lxc.snapshot.expire"];

/// The file of a container dir holding strata's own keys.
pub const STRATA_FILE_NAME: &str = "strata.conf";

/// Whether `key` is one of strata's own container keys, read from
/// [`STRATA_FILE_NAME`].
pub fn strata_file_key_known(key: &str) -> bool {
    STRATA_FILE.contains(&key)
}

/// strata's own keys, for messages.
pub fn strata_file_keys() -> &'static [&'static str] {
    STRATA_FILE
}

/// Every key matched exactly, for tests and tools.
pub fn exact_keys() -> &'static [&'static str] {
    EXACT
}

/// Does LXC 5.0 know `key` in a container's config?
pub fn key_known(key: &str) -> bool {
    if EXACT.contains(&key) {
        return true;
    }
    if PREFIXES.iter().any(|p| key.starts_with(p)) {
        return true;
    }
    if let Some(ns) = key.strip_prefix("lxc.namespace.share.") {
        return SHARE_NAMESPACES.contains(&ns);
    }
    if let Some(rest) = key.strip_prefix("lxc.net.") {
        let (idx, sub) = match rest.split_once('.') {
            Some((i, s)) => (i, Some(s)),
            None => (rest, None),
        };
        // LXC reads the index as an unsigned number: digits only (a leading
        // zero is fine), and it must fit.
        if idx.is_empty() || idx.len() > 9 || !idx.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        return match sub {
            None => true, // `lxc.net.N =` clears network N
            Some(s) => NET_SUBKEYS.contains(&s),
        };
    }
    false
}

/// Does LXC 5.0 know `key` in the global `lxc.conf`?
pub fn global_key_known(key: &str) -> bool {
    GLOBAL.contains(&key)
}

/// For an LXC 2.x key that LXC 5 refuses, the name LXC 5 reads instead
/// (`lxc.utsname` -> `lxc.uts.name`, `lxc.network.0.ipv4` ->
/// `lxc.net.0.ipv4.address`); an unindexed `lxc.network.*` key is shown with
/// index 0. `None` for a current key or one that never existed.
pub fn legacy_replacement(key: &str) -> Option<String> {
    if key_known(key) {
        return None;
    }
    let new = canonical_key(key);
    (new != key && key_known(&new)).then(|| new.into_owned())
}

/// A one-line reason for refusing `key`, or `None` if LXC 5.0 knows it.
pub fn unknown_key_reason(key: &str) -> Option<String> {
    if key_known(key) {
        return None;
    }
    Some(match legacy_replacement(key) {
        Some(new) => format!(
            "config key {key:?} is an LXC 2.x name that LXC 5 no longer reads: use {new:?} (lxc-update-config -c FILE converts a config)"
        ),
        None if key == "lxc.rootfs.backend" => format!(
            "config key {key:?} is an LXC 2.x key that LXC 5 no longer reads: put the backend in lxc.rootfs.path as BACKEND:PATH (lxc-update-config -c FILE converts a config)"
        ),
        None if strata_file_key_known(key) => format!(
            "config key {key:?} is strata's own, which LXC refuses in a container's config: put it in {STRATA_FILE_NAME} in the container dir"
        ),
        None if global_key_known(key) => {
            format!("config key {key:?} belongs in lxc.conf, not in a container's config")
        }
        None => format!("unknown config key {key:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_keys_are_known() {
        for k in [
            "lxc.uts.name",
            "lxc.rootfs.path",
            "lxc.cgroup.devices.allow",
            "lxc.cgroup2.memory.max",
            "lxc.cgroup.dir.container.inner",
            "lxc.cgroup.relative",
            "lxc.sysctl.net.ipv4.ip_forward",
            "lxc.proc.oom_score_adj",
            "lxc.prlimit.nofile",
            "lxc.namespace.share.net",
            "lxc.namespace.clone",
            "lxc.net",
            "lxc.net.0",
            "lxc.net.0.type",
            "lxc.net.12.veth.pair",
            "lxc.net.01.link",
            "lxc.net.0.veth.vlan.tagged.id",
            "lxc.net.3.ipvlan.isolation",
            "lxc.net.0.l2proxy",
            "lxc.hook",
            "lxc.hook.start-host",
            "lxc.hook.version",
            "lxc.seccomp.notify.proxy",
            "lxc.apparmor.raw",
            "lxc.selinux.context.keyring",
            "lxc.environment",
            "lxc.keyring.session",
            "lxc.time.offset.boot",
            "lxc.sched.core",
            "lxc.cgroup",
            "lxc.sysctl",
        ] {
            assert!(key_known(k), "{k}");
        }
    }

    #[test]
    fn typos_and_strays_are_unknown() {
        for k in [
            "lxc.cap.dorp",
            "lxc.uts.namex",
            "lxc.hook.foo",
            "lxc.hook.pre-start.x",
            "lxc.seccomp.foo",
            "lxc.time.offset.foo",
            "lxc.namespace.share.foo",
            "lxc.namespace.share",
            "lxc.namespace",
            "lxc.net.0.foo",
            "lxc.net.0.ipv4",
            "lxc.net.0.veth.vlan.tagged",
            "lxc.net.0.",
            "lxc.net.x.type",
            "lxc.net.-1.type",
            "lxc.net.type",
            "lxc.net.",
            "lxc.cgroupfoo",
            "lxc.sysctlfoo",
            "lxc.mount.foo",
            "lxc.arch.x",
            "lxc.",
            "lxc.strata.x",
            "lxc.lxcpath",
            "lxc.bdev.lvm.vg",
            "lxc.kmsg",
            "lxc.pivotdir",
        ] {
            assert!(!key_known(k), "{k}");
            let why = unknown_key_reason(k).unwrap();
            assert!(why.contains(k), "{why}");
        }
    }

    #[test]
    fn legacy_keys_are_refused_with_their_new_name() {
        for (old, new) in [
            ("lxc.utsname", "lxc.uts.name"),
            ("lxc.rootfs", "lxc.rootfs.path"),
            ("lxc.id_map", "lxc.idmap"),
            ("lxc.network.type", "lxc.net.0.type"),
            ("lxc.network.1.ipv4", "lxc.net.1.ipv4.address"),
            ("lxc.network", "lxc.net"),
            ("lxc.limit.nofile", "lxc.prlimit.nofile"),
            ("lxc.aa_profile", "lxc.apparmor.profile"),
            ("lxc.seccomp", "lxc.seccomp.profile"),
            ("lxc.console", "lxc.console.path"),
            ("lxc.haltsignal", "lxc.signal.halt"),
            ("lxc.pts", "lxc.pty.max"),
            ("lxc.tty", "lxc.tty.max"),
            ("lxc.mount", "lxc.mount.fstab"),
            ("lxc.loglevel", "lxc.log.level"),
        ] {
            assert!(!key_known(old), "{old}");
            assert_eq!(legacy_replacement(old).as_deref(), Some(new), "{old}");
            let why = unknown_key_reason(old).unwrap();
            assert!(why.contains(new) && why.contains("LXC 2.x"), "{why}");
        }
        assert_eq!(legacy_replacement("lxc.uts.name"), None);
        assert_eq!(legacy_replacement("lxc.bogus"), None);
        assert!(unknown_key_reason("lxc.rootfs.backend")
            .unwrap()
            .contains("lxc.rootfs.path"));
        assert!(unknown_key_reason("lxc.lxcpath").unwrap().contains("lxc.conf"));
    }

    #[test]
    fn every_exact_key_is_known_and_well_formed() {
        for k in exact_keys() {
            assert!(key_known(k), "{k}");
            assert!(k.starts_with("lxc.") && !k.ends_with('.'), "{k}");
        }
        for g in GLOBAL {
            assert!(global_key_known(g));
        }
    }
}
