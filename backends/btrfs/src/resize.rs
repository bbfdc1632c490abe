//! `--fssize` and `strata resize` on btrfs: a limit on the referenced
//! bytes of the subvolume's own qgroup. Only where the user turned quotas
//! on (`btrfs quota enable`): qgroups slow the whole filesystem down, so
//! strata never turns them on itself and refuses a size without them.

use super::{ioctl, open_dir, BtrfsBackend};
use std::os::fd::AsFd;
use std::path::Path;
use strata_core::{err, Error, Resize, Result, RootfsSpec, Target};

const WHAT: &str = "a btrfs qgroup limit";

fn quotas_off(at: &Path) -> Error {
    err!(
        Unsupported,
        "btrfs size limit",
        "--fssize on btrfs is a qgroup limit and quotas are off on the filesystem of {} (they slow btrfs down, so strata leaves that choice to you: btrfs quota enable MOUNTPOINT)",
        at.display()
    )
}

impl Resize for BtrfsBackend {
    fn what(&self) -> &'static str {
        WHAT
    }

    fn check_limit(&self, t: &Target, _bytes: u64) -> Result<()> {
        let anc = strata_core::paths::nearest_existing_dir(t.dir).to_path_buf();
        let f = open_dir(&anc)?;
        match ioctl::quotas_on(f.as_fd()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(quotas_off(&anc)),
            Err(e) => Err(Error::errno("btrfs size limit", &anc, e)),
        }
    }

    fn resize(&self, spec: &RootfsSpec, bytes: u64, _running: bool) -> Result<()> {
        const OP: &str = "btrfs size limit";
        let path = spec.path();
        let f = open_dir(&path)?;
        if !ioctl::quotas_on(f.as_fd()).map_err(|e| Error::errno(OP, &path, e))? {
            return Err(quotas_off(&path));
        }
        let id = ioctl::subvol_id(f.as_fd()).map_err(|e| Error::errno(OP, &path, e))?;
        // Shrinking below what it holds would leave it over its limit: refused, nothing changed.
        let _ = nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f));
        if let Ok(Some((referenced, _))) = ioctl::qgroup_usage(f.as_fd(), id) {
            if referenced > bytes {
                return Err(err!(
                    InvalidArgument,
                    OP,
                    "{spec} holds {} MiB already: a limit of {} MiB is too small",
                    referenced.div_ceil(1 << 20),
                    bytes >> 20
                ));
            }
        }
        ioctl::set_qgroup_rfer_limit(f.as_fd(), bytes).map_err(|e| Error::errno(OP, &path, e))
    }

    fn size(&self, spec: &RootfsSpec) -> Result<Option<u64>> {
        let path = spec.path();
        let f = open_dir(&path)?;
        let id = ioctl::subvol_id(f.as_fd()).map_err(|e| Error::errno("btrfs size limit", &path, e))?;
        ioctl::qgroup_rfer_limit(f.as_fd(), id).map_err(|e| Error::errno("btrfs size limit", &path, e))
    }
}
