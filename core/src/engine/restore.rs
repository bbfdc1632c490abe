//! `lxc-snapshot -r`: to a new name a clone of the snapshot; in place a
//! staged clone swapped in under a journal, rolled forward after a crash.

use super::clone::Params;
use super::deps::{live_dependents, locked, need, refuse_dependents, remove_dep, Step};
use super::fsutil::{self, remove_tree, rename_noreplace};
use super::rootfs::{entries_of, CtxOp};
use super::staging::{exists_any, make_aside, read_record, write_record, Journal, Staged, JOURNAL, OLD};
use super::{failpoint, Engine};
use crate::backend::BackendOpts;
use crate::depfile;
use crate::durable::write_atomic;
use crate::error::{IoContext, Result};
use crate::spec::RootfsSpec;
use crate::store::{Container, ContainerRef, Store};
use crate::{err, names};
use std::path::{Path, PathBuf};

/// Move a container dir's entry (a rootfs) to another dir. The kernel wants
/// write access to a moved directory (its `..`): a user's unprivileged rootfs
/// belongs to the container's root, so the user moves it with its own ids mapped.
fn move_entry(from: &Path, to: &Path) -> Result<()> {
    match rename_noreplace(from, to) {
        Err(e)
            if e.kind() == crate::ErrorKind::PermissionDenied
                && !crate::paths::is_root()
                && !crate::identity::in_ns_child() =>
        {
            // An error from inside names what failed; one from setting up says less than the first.
            crate::idmap::as_own_ids(|| rename_noreplace(from, to)).map_err(|r| if r.path.is_some() { r } else { e })
        }
        r => r,
    }
}

impl Engine {
    fn load_snapshot(&self, r: &ContainerRef, snap: &str) -> Result<Container> {
        names::validate_snapshot(snap)?;
        let ss = Store::new(Store::new(&r.lxcpath).snaps_path(&r.name));
        if !ss.exists(snap) {
            return Err(err!(NotFound, "restore", "container {} has no snapshot {snap}", r.name));
        }
        ss.load(snap)
    }

    pub(super) fn do_restore(&self, r: &ContainerRef, snap: &str, new_name: Option<&str>) -> Result<Container> {
        names::validate(&r.name)?;
        names::validate_snapshot(snap)?;
        if let Some(n) = new_name {
            names::validate(n)?;
        }
        let new_name = new_name.filter(|n| *n != r.name);
        let mut base = vec![r.clone()];
        base.extend(new_name.map(|n| ContainerRef::new(&r.lxcpath, n)));
        locked(&base, || self.restore_locked(r, snap, new_name))
    }

    fn restore_locked(&self, r: &ContainerRef, snap: &str, new_name: Option<&str>) -> Result<Step<Container>> {
        const OP: &str = "restore";
        let store = Store::new(&r.lxcpath);
        if let Some(n) = new_name {
            let dst = ContainerRef::new(&r.lxcpath, n);
            if !store.exists(&r.name) {
                return Err(err!(NotFound, OP, "container {} does not exist", r.name));
            }
            let s = self.load_snapshot(r, snap)?;
            if exists_any(&dst.dir()) {
                return Err(err!(AlreadyExists, OP, "container {n} already exists").at(dst.dir()));
            }
            // A device or image carries its size in the clone (the snapshot's, as LXC's
            // clone does); a quota is not in the snapshot: the container's limit is given.
            let fssize = match self.backend_of(&s.rootfs)?.caps().sized {
                true => None,
                false => self.size_kept(&store.load(&r.name)?, &s)?,
            };
            let opts = BackendOpts {
                fssize,
                ..BackendOpts::default()
            };
            let params = Params {
                opts: &opts,
                ..Params::restore_to_new(&s, &dst)
            };
            let st = step!(self.stage_clone(&params));
            return self.finish_staged(st, &dst).map(Step::Done);
        }
        if !store.exists(&r.name) {
            return Err(err!(NotFound, OP, "container {} does not exist", r.name));
        }
        // The origins the current rootfs depends on may lose it.
        if let Some(n) = need(depfile::depends_on(r)?) {
            return Ok(n);
        }
        let s = self.load_snapshot(r, snap)?;
        if crate::state::is_running(r) {
            return Err(err!(Busy, OP, "container {} is running; stop it first", r.name));
        }
        let snaps = store.snaps_path(&r.name);
        let deps: Vec<_> = live_dependents(r)?.into_iter().filter(|d| d.lxcpath != snaps).collect();
        refuse_dependents(OP, r, &deps)?;
        let cur = store.load(&r.name)?;
        // The current rootfs goes once the snapshot's is in place.
        self.backend_of(&cur.rootfs)?.check_destroy(&cur.rootfs)?;
        // The container keeps the size it has now (a quota, a device size), not the snapshot's.
        let opts = BackendOpts {
            fssize: self.size_kept(&cur, &s)?,
            ..BackendOpts::default()
        };
        let params = Params {
            opts: &opts,
            ..Params::restore_in_place(&s, r)
        };
        let st = step!(self.stage_clone(&params));
        self.swap_in(r, &cur, st).map(Step::Done)
    }

    /// The size or limit of `cur`'s rootfs that a restore from `snap` carries
    /// over: where the restored rootfs is of the same backend, which has one.
    fn size_kept(&self, cur: &Container, snap: &Container) -> Result<Option<u64>> {
        let b = self.backend_of(&cur.rootfs)?;
        if self.backend_of(&snap.rootfs)?.kind() != b.kind() {
            return Ok(None);
        }
        match b.resizer().map(|rz| rz.size(&cur.rootfs)) {
            Some(Ok(v)) => Ok(v),
            // Not readable by this user (a btrfs qgroup): none this user could have set either.
            Some(Err(e)) if e.kind() == crate::ErrorKind::PermissionDenied => Ok(None),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Put the staged container `st` in the place of `r` (whose current
    /// rootfs is `cur`'s), under the restore journal: past the journal it
    /// is rolled forward, never back (also by reconcile after a crash).
    pub(super) fn swap_in(&self, r: &ContainerRef, cur: &Container, mut st: Staged) -> Result<Container> {
        const OP: &str = "restore";
        let dir = r.dir();
        let new_all = entries_of(&st.spec, &dir);
        let new_entries: Vec<String> = new_all
            .iter()
            .filter(|e| exists_any(&st.path.join(e)))
            .cloned()
            .collect();
        let old_entries: Vec<String> = entries_of(&cur.rootfs, &dir)
            .into_iter()
            .filter(|e| new_entries.contains(e) || !new_all.contains(e))
            .collect();
        let mut old_made: Option<PathBuf> = None;
        let prep = (|| -> Result<Journal> {
            let new_origins: Vec<ContainerRef> = if st.path.join("lxc_rdepends").exists() {
                let staged = st.path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                depfile::depends_on(&ContainerRef::new(&r.lxcpath, staged))?
            } else {
                vec![]
            };
            let drop_origins = depfile::depends_on(r)?
                .into_iter()
                .filter(|o| !new_origins.contains(o))
                .collect();
            let old = make_aside(&r.lxcpath, OLD, &r.name, 0o700)?;
            old_made = Some(old.clone());
            let j = Journal {
                dir: dir.clone(),
                old,
                old_spec: cur.rootfs.to_string(),
                old_entries,
                new_entries,
                drop_origins,
            };
            let data = serde_json::to_vec(&j).map_err(|e| err!(Io, OP, "journal: {e}"))?;
            // From here on the restore is rolled forward, never back.
            write_atomic(&st.path.join(JOURNAL), &data)?;
            if let Some(sync) = st.sync.take() {
                sync.commit()?;
            }
            Ok(j)
        })();
        let j = match prep {
            Ok(j) => j,
            Err(e) => {
                if let Some(old) = old_made {
                    let _ = std::fs::remove_dir(old);
                }
                self.abort_staging(&st.path, &dir, Some(&st.spec), true);
                return Err(e);
            }
        };
        failpoint("restore-after-journal");
        self.roll_forward_restore(&st.path, &j)?;
        Ok(Container {
            r: r.clone(),
            config: st.config,
            rootfs: st.spec,
        })
    }

    /// Finish a restore from its journal; every step can be repeated.
    pub(super) fn roll_forward_restore(&self, staging: &Path, j: &Journal) -> Result<()> {
        const OP: &str = "restore";
        // Once the journal goes, the old rootfs is only reachable through its record in the
        // old dir. Written before the swap, which the journal covers (reconcile leaves an old
        // dir alone while a journal names it): its sync is cheaper before renames of
        // subvolumes (after them btrfs commits the whole transaction for it).
        write_record(&j.old, &j.dir, Some(&RootfsSpec::parse(&j.old_spec)?), None, true)?;
        // A new entry's name still taken in the container dir (say an empty
        // `rootfs` mount point LXC leaves beside an overlay) goes aside too.
        let mut out: Vec<&String> = j.old_entries.iter().collect();
        out.extend(j.new_entries.iter().filter(|e| !j.old_entries.contains(e)));
        for e in out {
            let (from, to) = (j.dir.join(e), j.old.join(e));
            // An entry also in new_entries whose staging copy is gone is already the new one.
            let still_old = !j.new_entries.contains(e) || exists_any(&staging.join(e));
            if exists_any(&from) && !exists_any(&to) && still_old {
                move_entry(&from, &to).map_err(|e| e.ctx_op(OP))?;
            }
        }
        failpoint("restore-after-swap-out");
        for e in &j.new_entries {
            let from = staging.join(e);
            if exists_any(&from) {
                move_entry(&from, &j.dir.join(e))?;
            }
        }
        let rdep = staging.join("lxc_rdepends");
        if exists_any(&rdep) {
            std::fs::rename(&rdep, j.dir.join("lxc_rdepends")).ctx(OP, &rdep)?;
        } else if exists_any(&staging.join("config")) {
            let _ = std::fs::remove_file(j.dir.join("lxc_rdepends"));
        }
        let cfg = staging.join("config");
        if exists_any(&cfg) {
            std::fs::rename(&cfg, j.dir.join("config")).ctx(OP, &cfg)?;
        }
        // The old rootfs is destroyed next: on other storage, the swap must be on disk first.
        match RootfsSpec::parse(&j.old_spec) {
            Ok(old) if !entries_of(&old, &j.dir).is_empty() => fsutil::sync_dir(&j.dir),
            _ => fsutil::sync_dir_always(&j.dir),
        }
        failpoint("restore-after-swap-in");
        let clone = ContainerRef::new(
            j.dir.parent().unwrap_or(Path::new("/")),
            j.dir.file_name().unwrap_or_default().to_string_lossy(),
        );
        for o in &j.drop_origins {
            if let Err(e) = remove_dep(o, &clone) {
                tracing::warn!("update dependencies of {}: {e}", o.name);
            }
        }
        remove_tree(staging)?;
        self.destroy_old(&j.old)
    }

    /// Destroy the rootfs a restore moved aside, then its dir.
    pub(super) fn destroy_old(&self, old: &Path) -> Result<()> {
        if let Some(rec) = read_record(old) {
            if let Some(spec) = rec.spec.as_deref().map(RootfsSpec::parse).transpose()? {
                let b = self.backend_of(&spec)?;
                b.destroy(&spec.rebase(&rec.dir, old))?;
            }
        }
        remove_tree(old)
    }
}
