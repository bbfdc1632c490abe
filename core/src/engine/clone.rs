//! `lxc-copy` (and the staging half of snapshot and restore): a copy or
//! copy-on-write snapshot of a container, built in a staging dir.

use super::deps::{add_dep, locked, need, remove_dep, Step};
use super::fsutil;
use super::rewrite::{is_hwaddr, random_mac, replace_dir};
use super::rootfs::{
    apply_fssize, apply_fssize_to_snapshot, check_backend_allowed, check_fits, check_fssize, may_snapshot_running,
    no_space, remove_lost_found, CtxOp,
};
use super::staging::{
    exists_any, make_container_dir, name_taken_meanwhile, own_dir_as_container_root, write_record, Staged,
};
use super::{failpoint, CloneRequest, Engine};
use crate::backend::{Backend, BackendOpts, Opened, Target};
use crate::config::Config;
use crate::copy::{copy_tree, CopyOptions};
use crate::depfile;
use crate::durable::write_atomic;
use crate::error::{IoContext, Result};
use crate::idmap::{as_container_root, needs_container_root, IdMap};
use crate::spec::RootfsSpec;
use crate::store::{Container, ContainerRef, Store};
use crate::{err, names};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Copy,
    Snapshot,
    /// Snapshot if the source's own backend can, else copy (lxc-snapshot, restore).
    Auto,
}

pub(super) struct Params<'a> {
    pub src: &'a Container,
    pub dst: &'a ContainerRef,
    pub mode: Mode,
    pub backend: Option<&'a str>,
    pub opts: &'a BackendOpts,
    pub keep_name: bool,
    pub keep_mac: bool,
    pub run_hooks: bool,
    pub progress: bool,
    pub readonly: bool,
    /// Extra files written into the staging dir (`ts`, `comment`).
    pub files: Vec<(&'static str, String)>,
    /// A map other than the source's for a copy (see [`super::CloneRequest::idmap`]).
    pub idmap: Option<&'a IdMap>,
    /// A rootfs this clone replaces (an incremental receive's current one):
    /// a file copy takes its unchanged files by hardlink (see
    /// [`CopyOptions::link_from`]); it must be destroyed once the clone is
    /// in place, and nothing may write to it meanwhile.
    pub link_from: Option<&'a RootfsSpec>,
}

/// Options of the clones the engine makes for itself: none.
static NO_OPTS: std::sync::LazyLock<BackendOpts> = std::sync::LazyLock::new(BackendOpts::default);

impl<'a> Params<'a> {
    /// `lxc-copy` as `req` asks, into `idmap` when it differs from the source's.
    pub fn copy(src: &'a Container, req: &'a CloneRequest, idmap: Option<&'a IdMap>) -> Self {
        Params {
            src,
            dst: &req.dst,
            mode: if req.snapshot { Mode::Snapshot } else { Mode::Copy },
            backend: req.backend.as_deref(),
            opts: &req.opts,
            keep_name: req.keep_name,
            keep_mac: req.keep_mac,
            run_hooks: req.run_hooks,
            progress: req.progress,
            readonly: false,
            files: vec![],
            idmap,
            link_from: None,
        }
    }

    /// A clone made on the engine's own account (snapshot, restore): a
    /// snapshot where the source's backend can make one, else a copy; name
    /// and MACs kept, no hooks.
    fn own(src: &'a Container, dst: &'a ContainerRef) -> Self {
        Params {
            src,
            dst,
            mode: Mode::Auto,
            backend: None,
            opts: &NO_OPTS,
            keep_name: true,
            keep_mac: true,
            run_hooks: false,
            progress: false,
            readonly: false,
            files: vec![],
            idmap: None,
            link_from: None,
        }
    }

    /// `lxc-snapshot`: read-only, with its extra files (`ts`, `comment`).
    pub fn snapshot(src: &'a Container, dst: &'a ContainerRef, files: Vec<(&'static str, String)>) -> Self {
        Params {
            readonly: true,
            files,
            ..Self::own(src, dst)
        }
    }

    /// `lxc-snapshot -r SNAP -N NEW`: a new container beside the original,
    /// with its own name and MAC addresses.
    pub fn restore_to_new(snap: &'a Container, dst: &'a ContainerRef) -> Self {
        Params {
            keep_name: false,
            keep_mac: false,
            ..Self::own(snap, dst)
        }
    }

    /// `lxc-snapshot -r SNAP` in place: as LXC, the snapshot's config (its
    /// name and MACs) under the container's name.
    pub fn restore_in_place(snap: &'a Container, dst: &'a ContainerRef) -> Self {
        Self::own(snap, dst)
    }

    /// `strata resize` of a rootfs that cannot be shrunk in place safely: a
    /// copy of the container onto its own backend, of the size in `opts`,
    /// to be swapped in as a restore is.
    pub fn shrink_copy(c: &'a Container, opts: &'a BackendOpts) -> Self {
        Params {
            mode: Mode::Copy,
            opts,
            ..Self::own(c, &c.r)
        }
    }
}

/// The container whose rootfs dir is the (single) lower of an overlay spec.
pub(super) fn lower_owner(spec: &RootfsSpec) -> Option<ContainerRef> {
    let (lower, _) = spec.overlay_parts()?;
    if lower.contains(':') {
        return None;
    }
    let lower = Path::new(lower);
    let cdir = lower.parent()?;
    if !cdir.join("config").is_file() {
        return None;
    }
    Some(ContainerRef::new(cdir.parent()?, cdir.file_name()?.to_str()?))
}

/// Hook scripts and fstab files kept in the old container dir come along
/// (as LXC copies them), so that the rewritten paths name real files.
fn copy_referenced_files(cfg: &Config, old_dir: &Path, new_dir: &Path, staging: &Path) -> Result<()> {
    for (k, v) in cfg.entries() {
        if !(k.starts_with("lxc.hook.") || k == "lxc.mount.fstab") {
            continue;
        }
        let Some(first) = v.split_whitespace().next() else {
            continue;
        };
        let Ok(rel) = Path::new(first).strip_prefix(new_dir) else {
            continue;
        };
        if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            continue;
        }
        let src = old_dir.join(rel);
        let dst = staging.join(rel);
        if exists_any(&dst) {
            continue;
        }
        match std::fs::symlink_metadata(&src) {
            Ok(m) if m.is_file() => {
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent).ctx("copy hook", parent)?;
                }
                std::fs::copy(&src, &dst).ctx("copy hook", &src)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn run_clone_hooks(
    cfg: &Config,
    p: &Params,
    dir: &Path,
    staging: &Path,
    mount: &Path,
    building: &RootfsSpec,
) -> Result<()> {
    let (d, s) = (dir.display().to_string(), staging.display().to_string());
    for hook in cfg.get_all("lxc.hook.clone") {
        let cmd = replace_dir(hook, &d, &s);
        let _span = tracing::info_span!("clone hook", hook = %cmd).entered();
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(format!("{cmd} {} lxc clone", p.dst.name))
            .env("LXC_SRC_NAME", &p.src.r.name)
            .env("LXC_NAME", &p.dst.name)
            .env("LXC_CONFIG_FILE", staging.join("config"))
            .env("LXC_ROOTFS_MOUNT", mount)
            .env("LXC_ROOTFS_PATH", building.to_string());
        // A tool: a kill -9 of this command leaves the next one waiting for
        // it before it undoes the clone the hook works on.
        let st = crate::toollock::status(&mut c).ctx("run clone hook", Path::new(hook))?;
        if !st.success() {
            return Err(err!(Command, "run clone hook", "{hook:?} failed: {st}"));
        }
    }
    Ok(())
}

impl Engine {
    /// The kinds whose snapshots may be made of a running container, for messages.
    fn atomic_snapshot_kinds(&self) -> String {
        let kinds: Vec<&str> = self
            .backends
            .kinds()
            .into_iter()
            .filter(|k| self.backends.get(k).is_ok_and(|b| b.caps().atomic_snapshot))
            .collect();
        match kinds.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            Some((last, _)) => last.to_string(),
            None => "no".to_string(),
        }
    }

    /// Freeze `p`'s source for its snapshot by `b` if it runs (see
    /// [`crate::freeze`]); `None` if it does not run or is frozen already.
    /// One that cannot be frozen is refused, unless `b`'s snapshot is
    /// atomic anyway (then it is taken unfrozen, with a warning).
    fn freeze_running(&self, p: &Params, b: &dyn Backend) -> Result<Option<crate::freeze::Frozen>> {
        let Some(rec) = crate::state::running(&p.src.r) else {
            return Ok(None);
        };
        let res = match &self.freezer {
            Some(f) => crate::freeze::Frozen::new(f, &p.src.r, &rec, "its snapshot"),
            None => Err(err!(Unsupported, "freeze container", "no freezer here")),
        };
        match res {
            Ok(f) => Ok(f),
            Err(e) if b.caps().atomic_snapshot => {
                tracing::warn!("{}: snapshot taken unfrozen: {e}", p.src.r.name);
                Ok(None)
            }
            Err(e) => Err(crate::freeze::cannot(&p.src.r.name, e)),
        }
    }

    /// Pick the backend and whether to snapshot, for `p`.
    pub(super) fn choose(&self, p: &Params) -> Result<(&dyn Backend, bool)> {
        const OP: &str = "clone";
        let src = &p.src.rootfs;
        let src_b = self.backend_of(src)?;
        let can = |b: &dyn Backend| b.snapshotter().is_some_and(|s| s.can_snapshot(src));
        // The backend's own reason where it has one (a loop image on a host without reflinks).
        let why = |b: &dyn Backend| b.snapshotter().and_then(|s| s.refusal(src));
        match p.mode {
            Mode::Copy => Ok((
                p.backend.map(|k| self.backends.get(k)).transpose()?.unwrap_or(src_b),
                false,
            )),
            Mode::Auto => Ok((src_b, can(src_b))),
            Mode::Snapshot => {
                if let Some(k) = p.backend {
                    let b = self.backends.get(k)?;
                    if !can(b) {
                        return Err(why(b).unwrap_or_else(|| {
                            err!(
                                Unsupported,
                                OP,
                                "backend {} cannot make a snapshot of a {} rootfs",
                                b.kind(),
                                src.kind()
                            )
                        }));
                    }
                    Ok((b, true))
                } else if can(src_b) {
                    Ok((src_b, true))
                } else if let Some(k) = src_b.caps().snapshot_fallback {
                    Ok((self.backends.get(k)?, true))
                } else {
                    Err(why(src_b).unwrap_or_else(|| {
                        err!(
                            Unsupported,
                            OP,
                            "the {} backend cannot make snapshots; use a copy or -B",
                            src.kind()
                        )
                    }))
                }
            }
        }
    }

    /// Build a clone of `p.src` in a staging dir for `p.dst`. The caller holds
    /// the locks and has checked names and existence; the lock of the
    /// container the clone will depend on is asked for (`Need`) before
    /// anything is made.
    pub(super) fn stage_clone(&self, p: &Params) -> Result<Step<Staged>> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.stage_clone_once(p) {
                Err(e) if name_taken_meanwhile(&e, tries) => continue,
                r => return r,
            }
        }
    }

    fn stage_clone_once(&self, p: &Params) -> Result<Step<Staged>> {
        const OP: &str = "clone";
        let (dst_b, snapshot) = self.choose(p)?;
        let src_b = self.backend_of(&p.src.rootfs)?;
        let dir = p.dst.dir();
        let probe = Target {
            name: &p.dst.name,
            lxcpath: &p.dst.lxcpath,
            dir: &dir,
            build_dir: &dir,
            opts: p.opts,
        };
        let copy_opts;
        let probe = if snapshot {
            probe
        } else {
            copy_opts = BackendOpts {
                copy_of: Some(p.src.rootfs.clone()),
                ..p.opts.clone()
            };
            Target {
                opts: &copy_opts,
                ..probe
            }
        };
        let spec = dst_b.plan(&probe, snapshot.then_some(&p.src.rootfs))?;
        check_fssize(dst_b, &probe)?;
        let mut cfg = Config::load(&p.src.r.config_path())?;
        // The clone has the source's map (a user's clone is made by the
        // container's root), unless root copies it into another one: then the
        // owners are shifted in the copy pass itself.
        let from = IdMap::from_config(&cfg)?;
        from.check_caller()?;
        let (map, shifting) = match p.idmap {
            Some(to) if !snapshot => {
                // The maps must share container ids: refused before anything is made.
                crate::shift::compose(&from, to)?;
                (to.clone(), true)
            }
            _ => (from.clone(), false),
        };
        check_backend_allowed(dst_b)?;
        let hooks = p.run_hooks && !cfg.get_all("lxc.hook.clone").is_empty();
        let hostname = format!("{}\n", p.dst.name);
        // An overlay depends on the owner of its lower, whoever it was cloned from.
        let origin = if spec.overlay_parts().is_some() {
            lower_owner(&spec)
        } else if snapshot && dst_b.snapshotter().is_some_and(|s| s.clone_depends_on_source()) {
            Some(p.src.r.clone())
        } else {
            None
        };
        let dep = origin.filter(|o| o != p.dst).map(|o| (o, p.dst.clone()));
        if let Some(n) = need(dep.iter().map(|(o, _)| o.clone())) {
            return Ok(n);
        }
        // A copy into a new filesystem of a given size (not an image copy of the same one).
        let resized = p.opts.fssize.is_some() || p.opts.fstype.is_some() || src_b.kind() != dst_b.kind();
        if !snapshot && resized {
            check_fits(dst_b, &probe, || {
                let s = Opened::open(src_b, &p.src.rootfs, true)?;
                let u = crate::copy::tree_usage(s.path())?;
                s.close()?;
                Ok(u)
            })?;
        }
        let staging = make_container_dir(&p.dst.lxcpath, &p.dst.name, &map)?;
        let shifted = needs_container_root(&map);
        let sync = crate::durable::SyncBatch::begin();
        let mut dep_added = false;
        let res = (|| -> Result<()> {
            write_record(&staging, &dir, Some(&spec), dep.as_ref(), false)?;
            let t = Target {
                build_dir: &staging,
                ..probe
            };
            let building = t.building(&spec);
            // Config: paths into the old container dir now point into the new one.
            let (old_s, new_s) = (p.src.r.dir().display().to_string(), dir.display().to_string());
            let keep_mac = p.keep_mac;
            cfg.rewrite(|k, v| {
                let mut out = replace_dir(v, &old_s, &new_s);
                if !keep_mac && is_hwaddr(k) && !v.contains(['x', 'X']) {
                    out = random_mac();
                }
                (out != v).then_some(out)
            });
            cfg.set("lxc.rootfs.path", &spec.to_string());
            if !p.keep_name {
                cfg.set("lxc.uts.name", &p.dst.name);
            }
            if shifting {
                map.write_to_config(&mut cfg);
            }
            cfg.save(&staging.join("config"))?;
            copy_referenced_files(&cfg, &p.src.r.dir(), &dir, &staging)?;
            // A copy keeps the source's snapshot schedule (strata.conf); a snapshot does not take it.
            if !p.readonly {
                let own = p.src.r.dir().join(crate::config_keys::STRATA_FILE_NAME);
                if std::fs::symlink_metadata(&own).is_ok_and(|m| m.is_file()) {
                    let data = std::fs::read(&own).ctx(OP, &own)?;
                    write_atomic(&staging.join(crate::config_keys::STRATA_FILE_NAME), &data)?;
                }
            }
            for (name, data) in &p.files {
                write_atomic(&staging.join(name), data.as_bytes())?;
            }
            // Written before the rootfs: a snapshot that commits the filesystem (btrfs) makes
            // them durable too, with no fsync of their own.
            let commits = snapshot && dst_b.snapshotter().is_some_and(|s| s.commits_filesystem());
            let settled = if commits {
                sync.settle_before_commit(&staging)?
            } else {
                Vec::new()
            };
            // The rootfs, and where it can take the edit unmounted, the new hostname: in one go.
            // A running source is frozen for the instant of its snapshot (the guard thaws it).
            let frozen = if snapshot { self.freeze_running(p, dst_b)? } else { None };
            let hostname_done = as_container_root(&map, || {
                if shifted {
                    own_dir_as_container_root(&staging)?;
                }
                if snapshot {
                    let s = dst_b.snapshotter().expect("chosen for its snapshotter");
                    s.snapshot(&p.src.rootfs, &spec, &t, p.readonly)?;
                    apply_fssize_to_snapshot(dst_b, &t, &building)?;
                } else {
                    // A whole-image or snapshot copy cannot change owners: shifting copies file by file.
                    let fast = match dst_b.fast_copier() {
                        Some(fc) if src_b.kind() == dst_b.kind() && !shifting => {
                            fc.fast_copy(&p.src.rootfs, &spec, &t)?
                        }
                        _ => false,
                    };
                    if fast {
                        apply_fssize(dst_b, &t, &building)?;
                    } else {
                        dst_b.create(&spec, &t)?;
                        apply_fssize(dst_b, &t, &building)?;
                        let s = Opened::open(src_b, &p.src.rootfs, true)?;
                        let d = Opened::open(dst_b, &building, false)?;
                        remove_lost_found(d.path());
                        let r = match p.link_from {
                            Some(l) if !shifting => Some(Opened::open(self.backend_of(l)?, l, true)?),
                            _ => None,
                        };
                        // From the owners as they are on disk: a mapped container
                        // started through an idmapped mount has them unshifted.
                        let shift = if shifting {
                            let disk = match crate::shift::ownership(&p.src.r.dir(), s.path(), &from)? {
                                crate::shift::Ownership::Shifted => from.clone(),
                                crate::shift::Ownership::Unshifted => IdMap::default(),
                            };
                            Some(crate::shift::compose(&disk, &map)?)
                        } else {
                            None
                        };
                        let opts = CopyOptions {
                            progress: p.progress,
                            shift,
                            link_from: r.as_ref().map(|r| r.path().to_path_buf()),
                            ..CopyOptions::default()
                        };
                        let st = copy_tree(s.path(), d.path(), &opts).map_err(|e| no_space(dst_b, e))?;
                        if st.linked > 0 {
                            tracing::info!("{} of {} files linked from the rootfs replaced", st.linked, st.files);
                        }
                        if let Some(r) = r {
                            r.close()?;
                        }
                        d.close()?;
                        s.close()?;
                    }
                }
                if p.keep_name || hooks {
                    return Ok(None);
                }
                dst_b.write_if_regular_unmounted(&building, "etc/hostname", hostname.as_bytes())
            })?;
            drop(frozen);
            sync.committed(&settled);
            failpoint("clone-after-rootfs");
            // An overlay can take the edit in its upper dir: no mount needed.
            let need_mount = (!p.keep_name && hostname_done.is_none()) || hooks;
            if need_mount {
                as_container_root(&map, || {
                    let opened = Opened::open(dst_b, &building, false)?;
                    if !p.keep_name {
                        fsutil::write_in_rootfs_if_regular(opened.path(), "etc/hostname", hostname.as_bytes())?;
                    }
                    if p.run_hooks {
                        run_clone_hooks(&cfg, p, &dir, &staging, opened.path(), &building)?;
                    }
                    opened.close()
                })?;
            }
            if shifting && !map.is_empty() {
                crate::shift::record_shifted(&staging, &map)?;
            }
            if let Some((origin, clone)) = &dep {
                // A new name's entry is appended without reading the
                // origin's list (readers drop duplicates); one for a
                // container that exists (a restore in place) may be its
                // current rootfs's, which a failed build must leave.
                let listed = exists_any(&clone.dir()) && depfile::dependents(origin)?.contains(clone);
                if !listed {
                    add_dep(origin, clone, &staging)?;
                    dep_added = true;
                } else if !staging.join("lxc_rdepends").exists() {
                    let text = format!("{}\n{}\n", origin.lxcpath.display(), origin.name);
                    write_atomic(&staging.join("lxc_rdepends"), text.as_bytes())?;
                }
            }
            Ok(())
        })();
        match res {
            Ok(()) => Ok(Step::Done(Staged {
                path: staging,
                spec,
                config: cfg,
                dep: if dep_added { dep } else { None },
                sync: Some(sync),
            })),
            Err(e) => {
                if dep_added {
                    if let Some((o, c)) = &dep {
                        let _ = remove_dep(o, c);
                    }
                }
                self.abort_staging(&staging, &dir, Some(&spec), true);
                Err(e.ctx_op(OP))
            }
        }
    }

    pub(super) fn do_clone(&self, req: &CloneRequest) -> Result<Container> {
        const OP: &str = "clone";
        names::validate(&req.src.name)?;
        names::validate(&req.dst.name)?;
        if let Some(b) = &req.backend {
            self.backends.get(b)?;
        }
        if req.src == req.dst {
            return Err(err!(
                AlreadyExists,
                OP,
                "source and target are the same container {}",
                req.src.name
            ));
        }
        locked(&[req.src.clone(), req.dst.clone()], || self.clone_locked(req))
    }

    fn clone_locked(&self, req: &CloneRequest) -> Result<Step<Container>> {
        const OP: &str = "clone";
        let src_store = Store::new(&req.src.lxcpath);
        if !src_store.exists(&req.src.name) {
            return Err(err!(NotFound, OP, "container {} does not exist", req.src.name));
        }
        if exists_any(&req.dst.dir()) {
            return Err(err!(AlreadyExists, OP, "container {} already exists", req.dst.name).at(req.dst.dir()));
        }
        let src = src_store.load(&req.src.name)?;
        let running = crate::state::is_running(&req.src);
        if req.rename {
            if running {
                return Err(err!(Busy, OP, "container {} is running", req.src.name));
            }
            return self.rename(req, &src);
        }
        let from = IdMap::from_config(&src.config)?;
        from.check_caller()?;
        // Another map than the source's: owners are shifted while copying.
        let idmap = req
            .idmap
            .as_ref()
            .filter(|to| to.config_values() != from.config_values());
        let params = Params::copy(&src, req, idmap);
        // Checked before anything is made: a bad -B/-s combination changes nothing.
        let (b, snap) = self.choose(&params)?;
        check_backend_allowed(b)?;
        if let Some(to) = idmap {
            to.validate()?;
            if !crate::paths::is_root() {
                return Err(err!(
                    PermissionDenied,
                    OP,
                    "a copy into another id map needs root (a user moves its containers between its own maps with strata convert)"
                ));
            }
            if snap {
                return Err(err!(
                    Unsupported,
                    OP,
                    "a snapshot clone shares its source's files and keeps its id map; copy without -s to shift owners"
                ));
            }
        }
        if running && !may_snapshot_running(b, snap, &src.rootfs, self.freezer.is_some()) {
            return Err(err!(
                Busy,
                OP,
                "container {} is running; stop it first (only {} snapshots of a running container are allowed)",
                req.src.name,
                self.atomic_snapshot_kinds()
            ));
        }
        if !req.dst.lxcpath.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&req.dst.lxcpath)
                .ctx(OP, &req.dst.lxcpath)?;
        }
        let st = step!(self.stage_clone(&params));
        self.finish_staged(st, &req.dst).map(Step::Done)
    }
}
