//! The dir backend: the rootfs is a plain directory, `dir:$lxcpath/NAME/rootfs`
//! (or `--dir PATH`). Mounting is a recursive bind mount. `--fssize` and
//! `strata resize` bind the tree to a project quota where the filesystem
//! enforces them (ext4, xfs; see [`strata_core::projquota`]), whose count
//! is then its usage; elsewhere they are refused and usage is a walk.

mod resize;

use nix::mount::{umount2, MntFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_core::engine::fsutil;
use strata_core::{err, Backend, Caps, IoContext, Result, RootfsSpec, Target, Usage, UsageReport, UsageSource};

#[derive(Debug, Default)]
pub struct DirBackend;

pub fn backend() -> Arc<dyn Backend> {
    Arc::new(DirBackend)
}

impl Backend for DirBackend {
    fn kind(&self) -> &'static str {
        "dir"
    }

    fn caps(&self) -> Caps {
        Caps {
            renamed_with_dir: true,
            // LXC snapshots a dir container as an overlay on it.
            snapshot_fallback: Some("overlay"),
            shift_in_place: true,
            ..Caps::default()
        }
    }

    fn plan(&self, t: &Target, _origin: Option<&RootfsSpec>) -> Result<RootfsSpec> {
        let path = match &t.opts.dir {
            Some(d) => {
                if !d.is_absolute() {
                    return Err(err!(InvalidArgument, "plan dir rootfs", "--dir must be an absolute path").at(d));
                }
                if std::fs::symlink_metadata(d).is_ok() && !d.starts_with(t.dir) {
                    return Err(err!(AlreadyExists, "plan dir rootfs", "already exists").at(d));
                }
                d.clone()
            }
            None => t.dir.join("rootfs"),
        };
        if path.to_str().is_none() {
            return Err(err!(InvalidArgument, "plan dir rootfs", "path is not UTF-8").at(&path));
        }
        Ok(RootfsSpec::new("dir", path.display().to_string()))
    }

    fn create(&self, spec: &RootfsSpec, t: &Target) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let path = t.building(spec).path();
        let _span = tracing::debug_span!("dir create", path = %path.display()).entered();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&path)
            .ctx("create dir rootfs", &path)?;
        // DirBuilder's mode is masked by the umask; LXC's rootfs is 0755.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .ctx("create dir rootfs", &path)
    }

    fn destroy(&self, spec: &RootfsSpec) -> Result<()> {
        let path = spec.path();
        let _span = tracing::debug_span!("dir destroy", path = %path.display()).entered();
        // Its project's limit goes first: no limit is left for an id a later tree may get.
        strata_core::projquota::release(&path);
        fsutil::remove_tree(&path)
    }

    fn exists(&self, spec: &RootfsSpec) -> bool {
        spec.path().is_dir()
    }

    fn local_path(&self, spec: &RootfsSpec) -> Option<PathBuf> {
        Some(spec.path())
    }

    fn mount(&self, spec: &RootfsSpec, target: &Path, readonly: bool) -> Result<()> {
        fsutil::bind_mount(&spec.path(), target, readonly)
    }

    // A bind mount: nothing else to release.
    fn mount_is_self_contained(&self) -> bool {
        true
    }

    fn umount(&self, _spec: &RootfsSpec, target: &Path) -> Result<()> {
        // Detach: the recursive bind carries submounts that must go with it.
        umount2(target, MntFlags::MNT_DETACH).ctx("unmount rootfs", target)
    }

    fn usage_reporter(&self) -> Option<&dyn UsageReport> {
        Some(self)
    }

    fn resizer(&self) -> Option<&dyn strata_core::Resize> {
        Some(self)
    }
}

impl UsageReport for DirBackend {
    // A tree in a project quota: the filesystem's count of the project.
    // Otherwise a plain directory keeps no count: walk it. Nothing in it is shared.
    fn usage(&self, spec: &RootfsSpec) -> Result<Usage> {
        if let Some(q) = strata_core::projquota::quota(&spec.path())? {
            return Ok(Usage {
                exclusive: Some(q.used),
                referenced: Some(q.used),
                snapshots: None,
                source: UsageSource::Accounting("project quota"),
            });
        }
        let bytes = strata_core::usage::walk(&spec.path())?;
        Ok(Usage {
            exclusive: Some(bytes),
            referenced: Some(bytes),
            snapshots: None,
            source: UsageSource::Walk,
        })
    }
}
