//! The clone/snapshot/restore engine. Knows backends only through traits.
//!
//! Every multi-step operation is crash-safe: new containers are assembled in
//! a staging directory `$lxcpath/.strata-tmp.NAME.XXXX` and renamed into
//! place; restore keeps the old rootfs until the new one is in place; a
//! per-container file lock guards each operation; [`Engine::reconcile`]
//! removes what a crash left behind.

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
    /// `-B`; `None` means dir.
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
    /// `-B`: target backend (`None`: same as the source, or overlay for a
    /// snapshot of a dir container).
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
}

#[derive(Debug, Clone, Default)]
pub struct DestroyRequest {
    pub r: ContainerRef,
    /// `-s`: destroy its snapshots too.
    pub with_snapshots: bool,
    /// `-f`: stop it first if running.
    pub force: bool,
}

pub struct Engine {
    pub backends: Backends,
}

impl Engine {
    pub fn new(backends: Backends) -> Self {
        Engine { backends }
    }

    pub fn create(&self, req: &CreateRequest) -> Result<Container> {
        let _ = req;
        todo!()
    }

    pub fn clone_container(&self, req: &CloneRequest) -> Result<Container> {
        let _ = req;
        todo!()
    }

    /// `lxc-snapshot -n NAME [-c commentfile]`: returns `snapN`.
    pub fn snapshot(&self, r: &ContainerRef, comment: Option<&str>) -> Result<String> {
        let _ = (r, comment);
        todo!()
    }

    pub fn snapshots(&self, r: &ContainerRef) -> Result<Vec<SnapshotInfo>> {
        let _ = r;
        todo!()
    }

    /// `lxc-snapshot -r SNAP [-N NEW]`: in place when `new_name` is `None`.
    pub fn restore(&self, r: &ContainerRef, snap: &str, new_name: Option<&str>) -> Result<Container> {
        let _ = (r, snap, new_name);
        todo!()
    }

    /// `lxc-snapshot -d SNAP|ALL`.
    pub fn destroy_snapshot(&self, r: &ContainerRef, snap: &str) -> Result<()> {
        let _ = (r, snap);
        todo!()
    }

    pub fn destroy(&self, req: &DestroyRequest) -> Result<()> {
        let _ = req;
        todo!()
    }

    /// Remove staging dirs and half-made rootfs left by a crash; returns what was removed.
    pub fn reconcile(&self, lxcpath: &std::path::Path) -> Result<Vec<PathBuf>> {
        let _ = lxcpath;
        todo!()
    }
}
