//! `--fssize` and `strata resize` on dir: a project quota on the rootfs
//! tree (ext4 and xfs with project quotas enforced), refused with the
//! reason where the filesystem has none. The limit changes online: a
//! running container's writes meet the new one at once.

use super::DirBackend;
use std::path::{Path, PathBuf};
use strata_core::{projquota, Resize, Result, RootfsSpec, Target};

/// The nearest existing dir at or above `p` (the rootfs is not made yet).
fn existing_ancestor(p: &Path) -> PathBuf {
    let mut cur = p;
    loop {
        if std::fs::symlink_metadata(cur).is_ok_and(|m| m.is_dir()) {
            return cur.to_path_buf();
        }
        match cur.parent() {
            Some(parent) => cur = parent,
            None => return PathBuf::from("/"),
        }
    }
}

impl Resize for DirBackend {
    fn what(&self) -> &'static str {
        "a project quota"
    }

    fn check_limit(&self, t: &Target, _bytes: u64) -> Result<()> {
        let at = t.opts.dir.clone().unwrap_or_else(|| t.dir.join("rootfs"));
        projquota::check(&existing_ancestor(&at)).map_err(|e| refusal(e, "--fssize on a dir rootfs", "plan rootfs"))
    }

    fn resize(&self, spec: &RootfsSpec, bytes: u64, _running: bool) -> Result<()> {
        let path = spec.path();
        projquota::check(&path).map_err(|e| refusal(e, "the size of a dir rootfs", "resize"))?;
        projquota::bind(&path, bytes)
    }

    fn size(&self, spec: &RootfsSpec) -> Result<Option<u64>> {
        Ok(projquota::quota(&spec.path())?.map(|q| q.limit).filter(|l| *l != 0))
    }
}

/// What a size is on dir, before the filesystem's reason.
fn refusal(mut e: strata_core::Error, what: &str, op: &str) -> strata_core::Error {
    if e.kind() == strata_core::ErrorKind::Unsupported || e.kind() == strata_core::ErrorKind::PermissionDenied {
        e.msg = format!("{what} is a project quota, and {}", e.msg);
        e.op = op.to_string();
    }
    e
}
