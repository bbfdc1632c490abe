//! The on-disk protocol of every operation: the `.strata-*` dirs built
//! beside a container (their names noted in flight before they exist), the
//! record of what a staging dir holds, the restore journal, and how a
//! staged container is renamed into place or aborted. Reconcile reads these.

use super::deps::remove_dep;
use super::fsutil::{remove_tree, rename_noreplace};
use super::{failpoint, Engine};
use crate::config::Config;
use crate::durable::write_atomic;
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::idmap::IdMap;
use crate::spec::RootfsSpec;
use crate::store::{Container, ContainerRef};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub(super) const TMP: &str = ".strata-tmp.";

pub(super) const DEL: &str = ".strata-del.";

pub(super) const OLD: &str = ".strata-old.";

pub(super) const REN: &str = ".strata-ren.";

/// What a staging or old dir holds, for reconcile.
pub(super) const RECORD: &str = ".strata-op";

/// A restore past its point of no return.
pub(super) const JOURNAL: &str = ".strata-restore";

pub(super) const RENAME_CONFIG: &str = "config.strata-rename";

/// Second line of a rename journal whose rename is a copy, then a destroy
/// of the source.
pub(super) const RENAME_BY_COPY: &str = "copy";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Record {
    /// The final container dir the spec's paths are written against.
    pub dir: PathBuf,
    pub spec: Option<String>,
    /// `(origin, clone)` dependency recorded for this build.
    pub dep: Option<(ContainerRef, ContainerRef)>,
    /// More rootfs this build makes (a received container's snapshots), by spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<String>,
    /// The build dir of each of `more`, relative to the staging dir
    /// (`snaps/SNAP`): what it made carries that dir's
    /// [`crate::build_mark`]. Absent from an older strata's records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_builds: Vec<PathBuf>,
    /// Whether the build marks what it makes outside its dir (see
    /// [`crate::Backend::made_by`]); false in the records of a strata from
    /// before the marks, whose volumes carry none.
    #[serde(default)]
    pub marks: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Journal {
    pub dir: PathBuf,
    pub old: PathBuf,
    pub old_spec: String,
    pub old_entries: Vec<String>,
    pub new_entries: Vec<String>,
    /// Origins the old rootfs depended on and the new one does not.
    pub drop_origins: Vec<ContainerRef>,
}

/// A container built in its staging dir, not yet renamed into place.
pub(super) struct Staged {
    pub path: PathBuf,
    pub spec: RootfsSpec,
    pub config: Config,
    pub dep: Option<(ContainerRef, ContainerRef)>,
    /// The fsyncs of the files written while staging, done before the final rename.
    pub sync: Option<crate::durable::SyncBatch>,
}

pub(super) fn write_record(
    dir: &Path,
    final_dir: &Path,
    spec: Option<&RootfsSpec>,
    dep: Option<&(ContainerRef, ContainerRef)>,
    durable: bool,
) -> Result<()> {
    let rec = Record {
        dir: final_dir.to_path_buf(),
        spec: spec.map(|s| s.to_string()),
        dep: dep.cloned(),
        more: Vec::new(),
        more_builds: Vec::new(),
        marks: true,
    };
    let data = serde_json::to_vec(&rec).map_err(|e| err!(Io, "write record", "{e}"))?;
    if durable {
        return write_atomic(&dir.join(RECORD), &data);
    }
    // In a fresh staging dir: a torn record reads as none, and reconcile
    // then goes by the config or just removes the dir.
    std::fs::write(dir.join(RECORD), &data).ctx("write record", dir)
}

pub(super) fn read_record(dir: &Path) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(dir.join(RECORD)).ok()?).ok()
}

pub(super) fn mkdir(p: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(p)
        .ctx("create directory", p)?;
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).ctx("create directory", p)
}

/// A fresh `$lxcpath/PREFIX NAME.XXXX` directory.
pub(super) fn make_aside(lxcpath: &Path, prefix: &str, name: &str, mode: u32) -> Result<PathBuf> {
    for _ in 0..100 {
        let (p, _noted) = aside_name(lxcpath, prefix, name)?;
        match std::fs::DirBuilder::new().mode(mode).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create staging directory", &p, e)),
        }
    }
    Err(err!(
        Io,
        "create staging directory",
        "no free name in {}",
        lxcpath.display()
    ))
}

/// A build whose rootfs name (an LV, a dataset: named outside the lxcpath,
/// planned before it is made) was taken between its plan and its create by
/// a build in another lxcpath: it is undone (sparing the other build's
/// volume, see [`crate::Backend::made_by`]) and planned again, which picks
/// the next free name. A few times at most.
pub(super) fn name_taken_meanwhile(e: &Error, tries: u32) -> bool {
    const TRIES: u32 = 3;
    if e.kind() == crate::ErrorKind::AlreadyExists && tries < TRIES {
        tracing::info!("planned again: {e}");
        return true;
    }
    false
}

/// A fresh `$lxcpath/PREFIX NAME.XXXX` path, noted as in flight before
/// the caller makes it (see [`crate::inflight`]); the note is held until
/// the caller has made it.
pub(super) fn aside_name(lxcpath: &Path, prefix: &str, name: &str) -> Result<(PathBuf, crate::inflight::Noted)> {
    let p = lxcpath.join(format!("{prefix}{name}.{}", crate::paths::unique()));
    let noted = crate::inflight::note(&p)?;
    Ok((p, noted))
}

/// A staging dir for a new container, laid out as LXC's do_create_container_dir
/// makes one: mode 0770 whatever the umask and, with id maps, owned by the
/// container's root (LXC's chown_mapped_root), who must get through it to the
/// rootfs when LXC starts the container. Root gives it the mapped root's uid
/// and gid here; a user's keeps the user's group, through which the user
/// still reaches it, and gets its owner from [`own_dir_as_container_root`].
pub(super) fn make_container_dir(lxcpath: &Path, name: &str, map: &IdMap) -> Result<PathBuf> {
    let p = make_aside(lxcpath, TMP, name, 0o770)?;
    let res = std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o770))
        .ctx("create staging directory", &p)
        .and_then(|()| {
            if crate::paths::is_root() && !crate::identity::in_ns_child() && !map.is_empty() {
                crate::shift::own_container_dir(&p, map)?;
            }
            Ok(())
        });
    if let Err(e) = res {
        let _ = std::fs::remove_dir(&p);
        return Err(e);
    }
    Ok(p)
}

/// For a user's container with id maps, run by the container's root (see
/// [`as_container_root`]): the container dir becomes its own, group kept.
pub(super) fn own_dir_as_container_root(dir: &Path) -> Result<()> {
    std::os::unix::fs::lchown(dir, Some(0), None).ctx("chown container dir", dir)
}

pub(super) fn exists_any(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

impl Engine {
    /// Undo what the build in `build_dir` made for `spec` (already rebased
    /// onto the build's dirs): [`crate::Backend::undo_build`], which spares
    /// a volume another build made under the same name; but a volume with
    /// no mark at all is this build's when its record says it did not mark
    /// (`marks` false: a strata from before the marks, killed before an
    /// upgrade), since the name was free when it planned it.
    pub(super) fn undo_rootfs(&self, spec: &RootfsSpec, build_dir: &Path, marks: bool) -> Result<()> {
        let b = self.backend_of(spec)?;
        if !marks && b.unmarked(spec) {
            tracing::info!("{spec}: unmarked, made by a build from before the marks: destroyed");
            return b.destroy(spec);
        }
        b.undo_build(spec, build_dir)
    }

    /// Destroy what a failed build made and remove its staging dir. When
    /// the rootfs cannot be destroyed (an LV still open, say) the staging
    /// dir stays, with the record naming it, for a later reconcile: without
    /// it nothing would name the volume again. `marks`: whether the build
    /// marked what it made (see [`Record::marks`]). Returns whether it went.
    pub(super) fn abort_staging(
        &self,
        staging: &Path,
        final_dir: &Path,
        spec: Option<&RootfsSpec>,
        marks: bool,
    ) -> bool {
        if let Some(spec) = spec {
            let spec = spec.rebase(final_dir, staging);
            let gone = self.undo_rootfs(&spec, staging, marks);
            if let Err(e) = gone {
                e.note_left(format_args!(
                    "cleanup of {spec} ({} left for a later command)",
                    staging.display()
                ));
                return false;
            }
        }
        if let Err(e) = remove_tree(staging) {
            tracing::warn!("cleanup of {}: {e}", staging.display());
        }
        true
    }

    /// Rename a staged clone into place.
    pub(super) fn finish_staged(&self, st: Staged, dst: &ContainerRef) -> Result<Container> {
        let dir = dst.dir();
        let res = (|| {
            if let Some(sync) = &st.sync {
                sync.commit()?;
            }
            std::fs::remove_file(st.path.join(RECORD)).ctx("clone", &st.path)?;
            failpoint("clone-before-rename");
            rename_noreplace(&st.path, &dir)?;
            Ok(())
        })();
        if let Err(e) = res {
            if let Some((o, c)) = &st.dep {
                let _ = remove_dep(o, c);
            }
            self.abort_staging(&st.path, &dir, Some(&st.spec), true);
            return Err(e);
        }
        Ok(Container {
            r: dst.clone(),
            config: st.config,
            rootfs: st.spec,
        })
    }
}
