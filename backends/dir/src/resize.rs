//! `--fssize` and `strata resize` on dir: a project quota on the rootfs
//! tree (ext4 and xfs with project quotas enforced), refused with the
//! reason where the filesystem has none. The limit changes online: a
//! running container's writes meet the new one at once.

use super::DirBackend;
use strata_core::{projquota, Resize, Result, RootfsSpec, Target};

impl Resize for DirBackend {
    fn what(&self) -> &'static str {
        "a project quota"
    }

    fn check_limit(&self, t: &Target, _bytes: u64) -> Result<()> {
        let at = t.opts.dir.clone().unwrap_or_else(|| t.dir.join("rootfs"));
        projquota::check_nearest(&at).map_err(|e| refusal(e, "--fssize on a dir rootfs", "plan rootfs"))
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
