//! Checks and helpers shared by the operations: the rootfs spec of a
//! config, what a rootfs keeps in its container dir, size and backend checks.

use super::Engine;
use crate::backend::{Backend, Target};
use crate::config::Config;
use crate::err;
use crate::error::{Error, Result};
use crate::spec::RootfsSpec;
use std::path::Path;

pub(super) fn spec_of(cfg: &Config, dir: &Path) -> Result<RootfsSpec> {
    let v = cfg
        .get("lxc.rootfs.path")
        .ok_or_else(|| err!(InvalidConfig, "read config", "no lxc.rootfs.path").at(dir.join("config")))?;
    RootfsSpec::parse(v)
}

/// Top-level entries of `dir` that the spec's paths live in.
pub(super) fn entries_of(spec: &RootfsSpec, dir: &Path) -> Vec<String> {
    let mut paths: Vec<String> = match spec.overlay_parts() {
        Some((lower, upper)) => lower.split(':').chain([upper]).map(String::from).collect(),
        None if spec.source().starts_with('/') => vec![spec.source().to_string()],
        None => vec![],
    };
    let mut out: Vec<String> = Vec::new();
    for p in paths.drain(..) {
        if let Ok(rest) = Path::new(&p).strip_prefix(dir) {
            if let Some(first) = rest.components().next() {
                let s = first.as_os_str().to_string_lossy().into_owned();
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// Whether a running container may be the source of a clone or snapshot
/// by `b`: only copy-on-write snapshots that are atomic, or that hold
/// nothing the container changes once thawed when it is frozen meanwhile
/// (an overlay's upper copied), see a consistent rootfs.
pub(super) fn may_snapshot_running(b: &dyn Backend, snapshot: bool, src: &RootfsSpec, can_freeze: bool) -> bool {
    snapshot
        && (b.caps().atomic_snapshot || (can_freeze && b.snapshotter().is_some_and(|s| s.consistent_when_frozen(src))))
}

pub(super) fn remove_lost_found(dir: &Path) {
    // A fresh filesystem holds only an empty lost+found; copy_tree wants an empty target.
    let lf = dir.join("lost+found");
    if let Ok(mut rd) = std::fs::read_dir(dir) {
        let only = rd
            .next()
            .is_some_and(|e| e.is_ok_and(|e| e.file_name() == "lost+found"))
            && rd.next().is_none();
        if only {
            let _ = std::fs::remove_dir(&lf);
        }
    }
}

/// Refuse a tree that cannot fit in the new rootfs `b` plans for `t`; the
/// tree is only measured where the backend knows a limit.
pub(super) fn check_fits(
    b: &dyn Backend,
    t: &Target,
    measure: impl FnOnce() -> Result<crate::copy::TreeUsage>,
) -> Result<()> {
    let Some(cap) = b.capacity(t) else {
        return Ok(());
    };
    let need = measure()?;
    let mib = |v: u64| v.div_ceil(1 << 20);
    if need.bytes > cap.bytes {
        return Err(err!(
            InvalidArgument,
            "plan rootfs",
            "the files need at least {} MiB but {} holds at most {} MiB; give a larger --fssize",
            mib(need.bytes),
            cap.what,
            mib(cap.bytes)
        ));
    }
    if let Some(max) = cap.inodes.filter(|m| need.inodes > *m) {
        return Err(err!(
            InvalidArgument,
            "plan rootfs",
            "the tree has {} entries but {} holds at most {max}; give a larger --fssize",
            need.inodes,
            cap.what
        ));
    }
    Ok(())
}

/// `--fssize` on a backend whose rootfs has no size of its own: bounded by
/// its [`crate::backend::Resize`] (a quota), checked before anything is
/// made; refused, naming the backend, where it has none.
pub(super) fn check_fssize(b: &dyn Backend, t: &Target) -> Result<()> {
    let Some(bytes) = t.opts.fssize.filter(|_| !b.caps().sized) else {
        return Ok(());
    };
    match b.resizer() {
        Some(r) => r.check_limit(t, bytes),
        None => Err(err!(
            Unsupported,
            "plan rootfs",
            "--fssize: strata cannot bound the size of a {} rootfs (loop, lvm and rbd have a device size, zfs a refquota, btrfs with quotas on a qgroup limit, dir and overlay on ext4 or xfs a project quota)",
            b.kind()
        )),
    }
}

/// Bound the new rootfs `building` to `--fssize` where [`check_fssize`]
/// let it through: before it is filled, so that files that do not fit fail
/// the copy.
pub(super) fn apply_fssize(b: &dyn Backend, t: &Target, building: &RootfsSpec) -> Result<()> {
    match (t.opts.fssize, b.resizer()) {
        (Some(bytes), Some(r)) if !b.caps().sized => r.resize(building, bytes, false),
        _ => Ok(()),
    }
}

/// `--fssize` on a new rootfs made as a snapshot: a quota as
/// [`apply_fssize`] sets it, and a device or image, which has its origin's
/// size, resized to it (a thin LV grown or shrunk while it is still only
/// staged: a kill leaves nothing the staging's undo does not remove).
pub(super) fn apply_fssize_to_snapshot(b: &dyn Backend, t: &Target, building: &RootfsSpec) -> Result<()> {
    match (t.opts.fssize, b.resizer()) {
        (Some(bytes), Some(r)) if b.caps().sized => {
            if r.size(building)? != Some(bytes) {
                r.resize(building, bytes, false)?;
            }
            Ok(())
        }
        _ => apply_fssize(b, t, building),
    }
}

/// A copy into a sized (or quota-bound) rootfs that ran out of space: say so plainly.
pub(super) fn no_space(b: &dyn Backend, e: Error) -> Error {
    let raw = e.source.as_ref().and_then(|s| s.raw_os_error());
    let enospc = raw == Some(libc::ENOSPC) || raw == Some(libc::EDQUOT);
    if !enospc || !(b.caps().sized || b.resizer().is_some()) {
        return e;
    }
    err!(
        InvalidArgument,
        "copy",
        "the files do not fit in the new {} rootfs (no space left on it); give a larger --fssize",
        b.kind()
    )
}

/// Loop, LVM and zfs need root: a user asking for them gets a clear error.
pub(super) fn check_backend_allowed(b: &dyn Backend) -> Result<()> {
    if b.caps().needs_root && !crate::paths::is_root() {
        return Err(err!(
            PermissionDenied,
            "check backend",
            "the {} backend needs root; a user may use dir, overlay or btrfs",
            b.kind()
        ));
    }
    Ok(())
}

pub(super) trait CtxOp {
    fn ctx_op(self, op: &str) -> Self;
}

impl CtxOp for Error {
    fn ctx_op(mut self, op: &str) -> Self {
        if self.op.is_empty() {
            self.op = op.to_string();
        }
        self
    }
}

impl Engine {
    pub(super) fn backend_of(&self, spec: &RootfsSpec) -> Result<&dyn Backend> {
        self.backends.for_spec(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_under_the_container_dir() {
        let d = Path::new("/l/c");
        let s = RootfsSpec::parse("overlay:/l/o/rootfs:/l/c/overlay/delta").unwrap();
        assert_eq!(entries_of(&s, d), ["overlay"]);
        let s = RootfsSpec::parse("overlay:/l/c/rootfs:/l/c/overlay/delta").unwrap();
        assert_eq!(entries_of(&s, d), ["rootfs", "overlay"]);
        assert_eq!(entries_of(&RootfsSpec::parse("/l/c/rootfs").unwrap(), d), ["rootfs"]);
        assert!(entries_of(&RootfsSpec::parse("zfs:p/c").unwrap(), d).is_empty());
        assert!(entries_of(&RootfsSpec::parse("dir:/srv/x").unwrap(), d).is_empty());
    }
}
