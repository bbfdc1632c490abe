//! `lxc-destroy` and `lxc-snapshot -d`: checks first, then the container
//! is renamed aside (`.strata-del.*`) and destroyed from there.

use super::deps::{live_dependents, locked, need, origins_of, refuse_dependents, remove_dep, unlocked, Step};
use super::fsutil::{self, remove_tree, rename_noreplace};
use super::rootfs::{entries_of, spec_of};
use super::staging::{aside_name, DEL};
use super::{failpoint, DestroyRequest, Engine};
use crate::config::Config;
use crate::depfile;
use crate::error::Result;
use crate::spec::RootfsSpec;
use crate::store::{ContainerRef, Store};
use crate::{err, names};
use std::path::Path;

/// Whether the container at `dir` or one of its snapshots has its rootfs
/// outside its own directory (an LV, a dataset, a dir elsewhere), or may:
/// then a rename before its destroy must reach the disk first, since no
/// filesystem orders it before changes to other storage.
/// `spec` is the container's own, as read from its config.
fn rootfs_elsewhere(dir: &Path, spec: Option<&RootfsSpec>) -> bool {
    let outside_spec = |spec: Option<&RootfsSpec>, d: &Path| spec.is_none_or(|s| entries_of(s, d).is_empty());
    let outside = |d: &Path| {
        let spec = Config::load(&d.join("config")).and_then(|c| spec_of(&c, d));
        outside_spec(spec.as_ref().ok(), d)
    };
    if outside_spec(spec, dir) {
        return true;
    }
    let Ok(rd) = std::fs::read_dir(dir.join("snaps")) else {
        return false;
    };
    rd.flatten()
        .map(|e| e.path())
        .any(|p| p.join("config").is_file() && outside(&p))
}

fn kill_and_wait(r: &ContainerRef, rec: &crate::state::RunRecord) -> Result<()> {
    crate::state::signal_init(rec, libc::SIGKILL);
    for _ in 0..500 {
        if !crate::state::is_running(r) {
            // LXC's monitor tears down after init: its rootfs is ours once it is gone.
            if rec.by_lxc && !crate::lxc_cmd::wait_gone(&r.lxcpath, &r.name, std::time::Duration::from_secs(30)) {
                break;
            }
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(err!(Busy, "destroy", "container {} did not stop after SIGKILL", r.name))
}

impl Engine {
    pub(super) fn do_destroy_snapshot(&self, r: &ContainerRef, snap: &str) -> Result<()> {
        names::validate(&r.name)?;
        if snap != "ALL" {
            names::validate_snapshot(snap)?;
        }
        locked(std::slice::from_ref(r), || self.destroy_snapshot_locked(r, snap))
    }

    fn destroy_snapshot_locked(&self, r: &ContainerRef, snap: &str) -> Result<Step<()>> {
        const OP: &str = "destroy snapshot";
        let store = Store::new(&r.lxcpath);
        if !store.exists(&r.name) {
            return Err(err!(NotFound, OP, "container {} does not exist", r.name));
        }
        // The origins of the snapshots lose them from their lxc_snapshots.
        if let Some(n) = need(origins_of(r)) {
            return Ok(n);
        }
        let snaps = store.snaps_path(&r.name);
        let list: Vec<String> = if snap == "ALL" {
            store.snapshots(&r.name)?.into_iter().map(|s| s.name).collect()
        } else {
            if !Store::new(&snaps).exists(snap) {
                return Err(err!(NotFound, OP, "container {} has no snapshot {snap}", r.name));
            }
            vec![snap.to_string()]
        };
        let sstore = Store::new(&snaps);
        // The container's own rootfs and snapshots, for backends whose destroy
        // hands dependents what they need (a zfs restore clones the snapshot).
        let mut family: Vec<RootfsSpec> = store.snapshots(&r.name)?.into_iter().map(|s| s.rootfs).collect();
        family.push(store.load(&r.name)?.rootfs);
        for s in &list {
            let sr = ContainerRef::new(&snaps, s);
            refuse_dependents(OP, &sr, &live_dependents(&sr)?)?;
            let spec = sstore.load(s)?.rootfs;
            let own = if self.backend_of(&spec)?.destroy_keeps_dependents() {
                family.clone()
            } else {
                vec![spec.clone()]
            };
            self.refuse_backend_dependents(OP, s, &spec, &own)?;
            self.backend_of(&spec)?.check_destroy(&spec)?;
        }
        for s in &list {
            self.destroy_unchecked(&snaps, s)?;
        }
        Ok(Step::Done(()))
    }

    pub(super) fn do_destroy(&self, req: &DestroyRequest) -> Result<Vec<String>> {
        let r = &req.r;
        names::validate(&r.name)?;
        // Its origins, read before any lock is taken: the locks the checks
        // ask for, taken in one round instead of two (read again under the
        // locks; a change meanwhile costs another round, as before).
        let mut first = vec![r.clone()];
        first.extend(unlocked(origins_of(r)));
        locked(&first, || self.destroy_locked(req))
    }

    /// Under the container's lock: no clone can be added to it between the
    /// check of its dependents and its destroy (a clone takes its origin's lock).
    fn destroy_locked(&self, req: &DestroyRequest) -> Result<Step<Vec<String>>> {
        const OP: &str = "destroy";
        let r = &req.r;
        let store = Store::new(&r.lxcpath);
        if !store.exists(&r.name) {
            return Err(err!(NotFound, OP, "container {} does not exist", r.name));
        }
        // The origins of it and of its snapshots lose them from their lxc_snapshots.
        if let Some(n) = need(origins_of(r)) {
            return Ok(n);
        }
        let snaps = store.snapshots(&r.name)?;
        if !snaps.is_empty() && !req.with_snapshots {
            let names: Vec<_> = snaps.iter().map(|s| s.name.as_str()).collect();
            return Err(err!(
                HasDependents,
                OP,
                "container {} has snapshots: {} (destroy them too with -s)",
                r.name,
                names.join(", ")
            ));
        }
        let snaps_path = store.snaps_path(&r.name);
        let deps: Vec<_> = live_dependents(r)?
            .into_iter()
            .filter(|d| !d.lxcpath.starts_with(&snaps_path))
            .collect();
        refuse_dependents(OP, r, &deps)?;
        for s in &snaps {
            let sr = ContainerRef::new(&snaps_path, &s.name);
            let deps: Vec<_> = live_dependents(&sr)?
                .into_iter()
                .filter(|d| !d.lxcpath.starts_with(&snaps_path) && d != r)
                .collect();
            refuse_dependents(OP, &sr, &deps)?;
        }
        let mut own: Vec<RootfsSpec> = snaps.iter().map(|s| s.rootfs.clone()).collect();
        let cur = store.load(&r.name)?;
        own.push(cur.rootfs.clone());
        // `--promote`: what holds on to them is made to stand on its own first, under the lock.
        let mut released = Vec::new();
        if req.promote {
            for spec in std::iter::once(&cur.rootfs).chain(snaps.iter().map(|s| &s.rootfs)) {
                released.extend(self.backend_of(spec)?.release_dependents(spec)?);
            }
        }
        // What the backend itself knows (clones of zfs snapshots, ...); our own snapshots go first.
        for (who, spec) in std::iter::once((r.name.clone(), cur.rootfs.clone())).chain(
            snaps
                .iter()
                .map(|s| (format!("{} (snapshot of {})", s.name, r.name), s.rootfs.clone())),
        ) {
            self.refuse_backend_dependents(OP, &who, &spec, &own)?;
        }
        // Refused before the container is moved aside: it stays as it is.
        for spec in &own {
            self.backend_of(spec)?.check_destroy(spec)?;
        }
        if let Some(rec) = crate::state::running(r) {
            if !req.force {
                return Err(err!(
                    Busy,
                    OP,
                    "container {} is running; stop it first or use -f",
                    r.name
                ));
            }
            kill_and_wait(r, &rec)?;
        }
        // The config read above, under the lock: not read again.
        self.destroy_unchecked_with(&r.lxcpath, &r.name, Some(cur.config))
            .map(|()| Step::Done(released))
    }

    /// Refuse when the backend knows rootfs (outside `own`) that destroying `spec` would lose.
    fn refuse_backend_dependents(&self, op: &str, who: &str, spec: &RootfsSpec, own: &[RootfsSpec]) -> Result<()> {
        let deps: Vec<String> = self
            .backend_of(spec)?
            .dependents(spec)?
            .into_iter()
            .filter(|d| !own.contains(d))
            .map(|d| d.to_string())
            .collect();
        if deps.is_empty() {
            return Ok(());
        }
        Err(err!(
            HasDependents,
            op,
            "container {who} has dependents: {}",
            deps.join(", ")
        ))
    }

    /// Destroy a container whose checks are done and lock is held: renamed
    /// aside first so that it vanishes at once and a crash can be finished.
    pub(super) fn destroy_unchecked(&self, lxcpath: &Path, name: &str) -> Result<()> {
        self.destroy_unchecked_with(lxcpath, name, None)
    }

    /// [`Engine::destroy_unchecked`], with the container's config when the
    /// caller read it already, under the lock.
    fn destroy_unchecked_with(&self, lxcpath: &Path, name: &str, cfg: Option<Config>) -> Result<()> {
        let dir = lxcpath.join(name);
        // Read once: the checks and the destroy below (after the rename
        // aside, rebased there) go by the same config.
        let cfg = match cfg {
            Some(c) => Ok(c),
            None => Config::load(&dir.join("config")),
        };
        let spec = cfg.as_ref().ok().and_then(|c| spec_of(c, &dir).ok());
        // Refuse before the rename: a mount below would stop the removal half-way.
        let mut busy = fsutil::mounts_under(&dir);
        if let Some(spec) = &spec {
            // A rootfs at a host path outside the dir (`--dir`) is destroyed with it.
            let local = self.backend_of(spec).ok().and_then(|b| b.local_path(spec));
            if let Some(p) = local.filter(|p| !p.starts_with(&dir)) {
                busy.extend(fsutil::mounts_under(&p));
            }
        }
        if let Some(m) = busy.first() {
            return Err(err!(Busy, "destroy", "{} is mounted; unmount it first", m.display()).at(&dir));
        }
        let (del, noted) = aside_name(lxcpath, DEL, name)?;
        let elsewhere = rootfs_elsewhere(&dir, spec.as_ref());
        rename_noreplace(&dir, &del)?;
        drop(noted);
        if elsewhere {
            fsutil::sync_dir_always(lxcpath);
        } else {
            fsutil::sync_dir(lxcpath);
        }
        failpoint("destroy-after-rename");
        self.finish_destroy_with(&del, &dir, cfg.ok())
    }

    /// Destroy the container that was at `orig_dir` and now is at `del`.
    pub(super) fn finish_destroy(&self, del: &Path, orig_dir: &Path) -> Result<()> {
        self.finish_destroy_with(del, orig_dir, None)
    }

    /// [`Engine::finish_destroy`], with its config when the caller read it
    /// already (else read from `del`).
    fn finish_destroy_with(&self, del: &Path, orig_dir: &Path, cfg: Option<Config>) -> Result<()> {
        let snaps = del.join("snaps");
        if let Ok(rd) = std::fs::read_dir(&snaps) {
            let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
            names.sort();
            for n in names {
                let p = snaps.join(&n);
                if p.join("config").is_file() {
                    self.finish_destroy(&p, &orig_dir.join("snaps").join(&n))?;
                } else if n.to_string_lossy().starts_with(".strata-") {
                    self.reconcile_entry(&snaps, &n.to_string_lossy(), None)?;
                }
            }
        }
        let name = orig_dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let lxcpath = orig_dir.parent().unwrap_or(Path::new("/"));
        if let Some(cfg) = cfg.or_else(|| Config::load(&del.join("config")).ok()) {
            if let Ok(spec) = spec_of(&cfg, del) {
                let b = self.backend_of(&spec)?;
                b.destroy(&spec.rebase(orig_dir, del))?;
            }
        }
        let del_ref = ContainerRef::new(
            del.parent().unwrap_or(Path::new("/")),
            del.file_name().unwrap_or_default().to_string_lossy(),
        );
        if let Ok(origins) = depfile::depends_on(&del_ref) {
            let me = ContainerRef::new(lxcpath, &name);
            for o in origins {
                if let Err(e) = remove_dep(&o, &me) {
                    tracing::warn!("update dependencies of {}: {e}", o.name);
                }
            }
        }
        remove_tree(del)
    }
}
