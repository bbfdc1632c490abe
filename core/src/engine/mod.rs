//! The clone/snapshot/restore engine. Knows backends only through traits.
//!
//! Every multi-step operation is crash-safe: new containers are assembled in
//! a staging directory `$lxcpath/.strata-tmp.NAME.XXXX` and renamed into
//! place; restore keeps the old rootfs until the new one is in place; a
//! per-container file lock guards each operation; [`Engine::reconcile`]
//! removes what a crash left behind.
//!
//! Leftovers and what reconcile does with them (only when the owning
//! container's lock is free, i.e. the operation that made them is gone):
//! - `.strata-tmp.NAME.X`: a container being built. Its `.strata-op` record
//!   (or its `config`) names the rootfs to destroy. With a `.strata-restore`
//!   journal it is a restore past its point of no return: rolled forward.
//! - `.strata-old.NAME.X`: the rootfs a restore replaced: destroyed.
//! - `.strata-del.NAME.X`: a container being destroyed: destroy finished.
//! - `.strata-ren.NEW.X`: a rename journal: finished or rolled back.
//!
//! The same leftovers inside `NAME/snaps/` belong to container NAME.
//!
//! Reconcile finds them through the record of what is in flight
//! ([`crate::inflight`]): each is noted by its maker before it exists, and
//! only the entries of dead commands are read. The first reconcile of an
//! lxcpath after a boot scans every container instead.
//!
//! Outside the rules above, reconcile also releases the scratch mounts (and
//! loop devices) of killed commands, from the records written before they
//! were made ([`crate::scratch`]), and removes temp files of atomic writes
//! whose writer is dead (`.lxc_snapshots.strata-tmp-PID-X`, say).
//!
//! Dependency files (`lxc_snapshots` of an origin, `lxc_rdepends` of a
//! clone) are rewritten only under the lock of the container they belong
//! to (a snapshot's is its container's): an operation finds the origins it
//! will edit, then takes every lock it needs at once, in one order
//! (`deps::locked`), and checks again. A destroy checks its dependents under
//! its own lock, which every clone of it holds while it records itself.
//!
//! Templates (`lxc-create -t`) run against the staging dir: `--path` is the
//! staging dir and `--rootfs` the rootfs as reachable now; afterwards every
//! config value naming the staging dir is rewritten to the final dir.
//! `lxc.hook.clone` hooks likewise run before the rename, with
//! `LXC_CONFIG_FILE` in the staging dir.
//!
//! Choices where LXC is silent or worse:
//! - An overlay clone is recorded (`lxc_snapshots`/`lxc_rdepends`) as a
//!   dependent of the container that owns its lower, the one whose files it
//!   needs (LXC records the direct source). Backends whose clones need their
//!   source say so with [`crate::Snapshotter::clone_depends_on_source`].
//! - Restore in place takes the snapshot's config (name, MACs) as LXC does;
//!   restore to a new name gives the new container its own name and MACs,
//!   since it runs beside the original.
//! - Rename (`-R`) of a dir or overlay container in the same lxcpath is a
//!   directory rename with a journal (`.strata-ren.*`); otherwise a clone
//!   then a destroy. MACs are kept, as in LXC; containers with snapshots or
//!   dependents are refused.
//! - A running container can be the source only of snapshots its backend
//!   declares atomic ([`crate::Caps::atomic_snapshot`]: btrfs, zfs, lvm);
//!   see `rootfs::may_snapshot_running`.
//!
//! Crash tests set `STRATA_FAILPOINT` to one of: `create-before-rename`,
//! `clone-after-rootfs`, `clone-before-rename`, `restore-after-journal`,
//! `restore-after-swap-out`, `restore-after-swap-in`, `destroy-after-rename`,
//! `rename-after-move`, `rename-after-clone` (see [`failpoint`]).

/// The value of a [`deps::Step`], or return its `Need` from the enclosing step.
macro_rules! step {
    ($e:expr) => {
        match $e? {
            Step::Done(t) => t,
            Step::Need(v) => return Ok(Step::Need(v)),
        }
    };
}

mod adopt;
mod clone;
mod create;
mod deps;
mod destroy;
mod export;
pub mod fsutil;
mod hoist;
mod native;
mod receive;
mod reconcile;
mod refresh;
mod rename;
mod resize;
mod restore;
mod rewrite;
mod rootfs;
mod send;
mod snapshot;
mod staging;

pub use adopt::{archive_err, AdoptNative, AdoptSnap, Adoption, Place};
pub use receive::ReceiveRequest;
pub use send::SendRequest;

use crate::backend::{BackendOpts, Backends};
use crate::error::Result;
use crate::store::{Container, ContainerRef, SnapshotInfo};
use std::path::PathBuf;

/// How to make the rootfs of a new container.
#[derive(Debug, Clone, Default)]
pub enum RootfsSource {
    /// An empty rootfs (a template fills it).
    #[default]
    Empty,
    /// Copy this host directory in.
    Dir(PathBuf),
    /// Unpack this tarball (any compression `tar` knows).
    Tarball(PathBuf),
}

#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub lxcpath: PathBuf,
    pub name: String,
    /// `-B`; `None`: the default backend (dir, see [`Backends::default_backend`]).
    pub backend: Option<String>,
    pub opts: BackendOpts,
    pub source: RootfsSource,
    /// `-f`: a config file whose entries seed the new config.
    pub config_file: Option<PathBuf>,
    /// `-t`: a template name or path, and its extra arguments.
    pub template: Option<String>,
    pub template_args: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CloneRequest {
    pub src: ContainerRef,
    pub dst: ContainerRef,
    /// `-s`: copy-on-write clone.
    pub snapshot: bool,
    /// `-B`: target backend (`None`: same as the source, or for a snapshot
    /// the source backend's [`crate::Caps::snapshot_fallback`]).
    pub backend: Option<String>,
    pub opts: BackendOpts,
    /// `-K`: keep the hostname.
    pub keep_name: bool,
    /// `-M`: keep MAC addresses.
    pub keep_mac: bool,
    /// `-R`: rename instead of copy.
    pub rename: bool,
    /// Run `lxc.hook.clone` (off for lxc-snapshot).
    pub run_hooks: bool,
    /// Shown while copying.
    pub progress: bool,
    /// `--idmap`: the copy's id map, its rootfs owners shifted in the same
    /// pass as the copy (an empty map: privileged). `None` keeps the source's.
    pub idmap: Option<crate::idmap::IdMap>,
}

#[derive(Debug, Clone, Default)]
pub struct DestroyRequest {
    pub r: ContainerRef,
    /// `-s`: destroy its snapshots too.
    pub with_snapshots: bool,
    /// `-f`: stop it first if running.
    pub force: bool,
    /// `--promote`: first make the rootfs that hold on to it (or to its
    /// snapshots, with `-s`) stand on their own ([`crate::Backend::release_dependents`]).
    pub promote: bool,
}

pub struct Engine {
    pub backends: Backends,
    /// Freezes a running container for the instant of its snapshot (the
    /// binary wires in the runtime's cgroup freezer).
    pub freezer: Option<std::sync::Arc<dyn crate::freeze::Freezer>>,
}

pub use crate::failpoint::failpoint;

/// Paths in specs and configs are absolute, whatever `-P` was given as.
fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    use crate::error::IoContext;
    // Normalized (no `.`, no trailing `/`) so that lock keys and rewritten paths agree.
    Ok(std::path::absolute(p).ctx("resolve lxcpath", p)?.components().collect())
}

fn absref(r: &ContainerRef) -> Result<ContainerRef> {
    Ok(ContainerRef::new(absolute(&r.lxcpath)?, r.name.clone()))
}

impl Engine {
    pub fn new(backends: Backends) -> Self {
        Engine {
            backends,
            freezer: None,
        }
    }

    /// With `f` to freeze running containers while they are snapshotted.
    pub fn with_freezer(mut self, f: std::sync::Arc<dyn crate::freeze::Freezer>) -> Self {
        self.freezer = Some(f);
        self
    }

    pub fn create(&self, req: &CreateRequest) -> Result<Container> {
        let _span = tracing::info_span!("create", name = %req.name, lxcpath = %req.lxcpath.display()).entered();
        let mut req = req.clone();
        req.lxcpath = absolute(&req.lxcpath)?;
        self.do_create(&req)
    }

    pub fn clone_container(&self, req: &CloneRequest) -> Result<Container> {
        let _span = tracing::info_span!("clone", src = %req.src.name, dst = %req.dst.name, snapshot = req.snapshot, rename = req.rename).entered();
        let mut req = req.clone();
        req.src = absref(&req.src)?;
        req.dst = absref(&req.dst)?;
        self.do_clone(&req)
    }

    /// `lxc-snapshot -n NAME [-c commentfile]`: returns `snapN`.
    pub fn snapshot(&self, r: &ContainerRef, comment: Option<&str>) -> Result<String> {
        let _span = tracing::info_span!("snapshot", name = %r.name).entered();
        self.do_snapshot(&absref(r)?, comment, None)
    }

    /// As [`Engine::snapshot`], the snapshot expiring at `expire` (Unix
    /// seconds; written beside its `ts`, see [`crate::store::Store::snapshot_expiry`]).
    pub fn snapshot_expiring(&self, r: &ContainerRef, comment: Option<&str>, expire: Option<i64>) -> Result<String> {
        let _span = tracing::info_span!("snapshot", name = %r.name, expire).entered();
        self.do_snapshot(&absref(r)?, comment, expire)
    }

    pub fn snapshots(&self, r: &ContainerRef) -> Result<Vec<SnapshotInfo>> {
        crate::names::validate(&r.name)?;
        let store = crate::store::Store::new(&r.lxcpath);
        if !store.exists(&r.name) {
            return Err(crate::err!(
                NotFound,
                "list snapshots",
                "container {} does not exist",
                r.name
            ));
        }
        store.snapshots(&r.name)
    }

    /// `lxc-snapshot -r SNAP [-N NEW]`: in place when `new_name` is `None`.
    pub fn restore(&self, r: &ContainerRef, snap: &str, new_name: Option<&str>) -> Result<Container> {
        let _span = tracing::info_span!("restore", name = %r.name, snap, new = ?new_name).entered();
        self.do_restore(&absref(r)?, snap, new_name)
    }

    /// `lxc-snapshot -d SNAP|ALL`.
    pub fn destroy_snapshot(&self, r: &ContainerRef, snap: &str) -> Result<()> {
        let _span = tracing::info_span!("destroy snapshot", name = %r.name, snap).entered();
        self.do_destroy_snapshot(&absref(r)?, snap)
    }

    pub fn destroy(&self, req: &DestroyRequest) -> Result<()> {
        self.destroy_reporting(req).map(drop)
    }

    /// [`Engine::destroy`], returning what `promote` released (the zfs clones promoted).
    pub fn destroy_reporting(&self, req: &DestroyRequest) -> Result<Vec<String>> {
        let _span = tracing::info_span!("destroy", name = %req.r.name).entered();
        let mut req = req.clone();
        req.r = absref(&req.r)?;
        let out = self.do_destroy(&req)?;
        // The last container gone: the run dir keeps nothing for the lxcpath.
        crate::inflight::forget_if_empty(&req.r.lxcpath);
        Ok(out)
    }

    /// `strata resize -n NAME SIZE`: returns the size (or limit) it has now.
    pub fn resize(&self, r: &ContainerRef, bytes: u64) -> Result<u64> {
        let _span = tracing::info_span!("resize", name = %r.name, bytes).entered();
        self.do_resize(&absref(r)?, bytes)
    }

    /// Remove staging dirs and half-made rootfs left by a crash; returns what was removed.
    pub fn reconcile(&self, lxcpath: &std::path::Path) -> Result<Vec<PathBuf>> {
        let _span = tracing::debug_span!("reconcile", lxcpath = %lxcpath.display()).entered();
        let lxcpath = absolute(lxcpath)?;
        let removed = self.do_reconcile(&lxcpath)?;
        if !removed.is_empty() {
            crate::inflight::forget_if_empty(&lxcpath);
        }
        Ok(removed)
    }
}
