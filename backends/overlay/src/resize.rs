//! `--fssize` and `strata resize` on overlay: a project quota (ext4, xfs;
//! see [`strata_core::projquota`]) on the container's `overlay` dir, which
//! holds the upper dir and the work dir: what the container writes (and
//! every file it copies up) counts, the shared lower does not. Both dirs
//! are in the one project because ext4 and xfs refuse a rename into a
//! project-inheriting dir from another project (EXDEV), and overlayfs
//! copies a file up into the work dir and renames it into the upper.
//! Refused with the reason where the filesystem does not enforce project
//! quotas, and for an older layout whose work dir is not beside the upper
//! in its own `overlay` dir. The limit changes online, as on dir.

use super::{parts, work_dir, OverlayBackend};
use std::path::PathBuf;
use strata_core::{err, projquota, Resize, Result, RootfsSpec, Target};

/// The dir holding the upper and work dirs (LXC's layout), bound as one tree.
pub(crate) fn quota_root(spec: &RootfsSpec) -> Result<PathBuf> {
    let (_, upper) = parts(spec)?;
    let work = work_dir(&upper);
    match upper.parent() {
        Some(p) if work.parent() == Some(p) && work.file_name().is_some_and(|n| n == "work") => Ok(p.to_path_buf()),
        _ => Err(err!(
            Unsupported,
            "resize",
            "the size of an overlay rootfs is a project quota on its overlay dir, and {} is not in one (an older layout)",
            upper.display()
        )),
    }
}

impl Resize for OverlayBackend {
    fn what(&self) -> &'static str {
        "a project quota on the upper dir"
    }

    fn check_limit(&self, t: &Target, _bytes: u64) -> Result<()> {
        projquota::check_nearest(&t.dir.join("overlay"))
            .map_err(|e| refusal(e, "--fssize on an overlay rootfs", "plan rootfs"))
    }

    fn resize(&self, spec: &RootfsSpec, bytes: u64, _running: bool) -> Result<()> {
        let root = quota_root(spec)?;
        projquota::check(&root).map_err(|e| refusal(e, "the size of an overlay rootfs", "resize"))?;
        projquota::bind(&root, bytes)
    }

    fn size(&self, spec: &RootfsSpec) -> Result<Option<u64>> {
        let Ok(root) = quota_root(spec) else {
            return Ok(None);
        };
        Ok(projquota::quota(&root)?.map(|q| q.limit).filter(|l| *l != 0))
    }
}

/// What a size is on overlay, before the filesystem's reason.
fn refusal(mut e: strata_core::Error, what: &str, op: &str) -> strata_core::Error {
    if e.kind() == strata_core::ErrorKind::Unsupported || e.kind() == strata_core::ErrorKind::PermissionDenied {
        e.msg = format!("{what} is a project quota on its upper dir, and {}", e.msg);
        e.op = op.to_string();
    }
    e
}
