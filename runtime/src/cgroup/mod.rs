//! Container cgroups as LXC 5 makes them (its `cgfsng` driver).
//!
//! * [`Layout::detect`] finds every cgroup v1 hierarchy and the unified
//!   (cgroup2) one, and the caller's and init's cgroup in each.
//! * [`Spec::from_config`] reads the `lxc.cgroup.*` / `lxc.cgroup2.*` keys.
//! * [`plan`] picks the container's cgroup (`lxc.payload.NAME`, `-1`, `-2`..
//!   when taken) and checks every key against the host; [`Plan::paths`] are
//!   the directories [`create`] will make, for the caller to record first
//!   (crash safety: whoever finds the record removes them with [`remove`]).
//! * [`create`] makes them and writes the limits (v1 files, v2 files, the v1
//!   device rules, the cgroup2 eBPF device program); [`attach`] moves a pid in.
//! * [`remove`], [`freeze`]/[`thaw`], [`stats`] work from the recorded paths
//!   alone, so that `reconcile`, `lxc-freeze` and `lxc-info` need no plan.
//! * [`mount_in_container`] is `lxc.mount.auto = cgroup...` inside init.
//!
//! Plain cgroupfs files are written with `std::fs`: every `lxc.cgroup.X = V`
//! is the string V written to the file X. `cgroups-rs` 0.5 (tried; it links
//! statically) types known settings instead, drives either v1 or v2 but not
//! both halves of a hybrid host, writes `*` device numbers as 0, has no
//! cgroup2 device program, and brings zbus and a second nix; youki's
//! `libcgroups` (not tried) is built around OCI specs. The cgroup2 device
//! program (a dozen instructions) is emitted here.
//!
//! LXC 5 leaves v1 `memory.use_hierarchy` alone (current kernels fix it at
//! 1), and so does strata.

mod create;
mod devices;
mod devices_bpf;
mod devices_extend;
mod freezer;
mod layout;
mod mount;
#[cfg(test)]
mod real_tests;
mod remove;
mod spec;
mod stats;

pub use create::{
    attach, attach_self_v1, attach_unified, chown, create, create_part, enter, leave, plan, plan_monitor, Part, Plan,
    PlannedDir,
};
pub use devices::{DeviceList, DeviceRule};
pub use devices_bpf::{attach_device_program, device_program, Insn};
pub use devices_extend::{decode_device_program, device_program_ids, extend_device_program};
pub use freezer::{freeze, is_frozen, thaw};
pub use layout::{Hierarchy, Layout, LayoutKind, Version};
pub use mount::{auto_mode, mount_in_container, wants_mount, CgroupAccess, CgroupAuto};
pub use remove::remove;
pub use spec::{Setting, Spec};
pub use stats::{format_stats, humanize_size, stats, Stats};

use std::path::Path;
use strata_core::Error;

/// Write `value` to the cgroup file `dir/file` in one write, as the kernel wants.
fn write_file(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(dir.join(file))?;
    f.write_all(value.as_bytes())
}

/// The content of `dir/file`, or `None` when it cannot be read.
fn read_file(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

fn io_err(op: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(op, path, e)
}

/// Whether this process is in the host's user namespace (whose uid map is
/// the identity over the whole range).
fn in_initial_userns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true)
}

/// The name of the calling user, for messages.
fn user_name() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}
