//! The container store: LXC 5's on-disk layout under an lxcpath.
//!
//! `$lxcpath/NAME/config`, `$lxcpath/NAME/rootfs`, snapshots as containers of
//! the lxcpath `$lxcpath/NAME/snaps` (`snapN/` with `config`, `ts`,
//! `comment`), and the dependency files `lxc_snapshots` (in the origin) and
//! `lxc_rdepends` (in the clone): line pairs `lxcpath` / `name`.

use crate::config::Config;
use crate::error::Result;
use crate::spec::RootfsSpec;
use std::path::{Path, PathBuf};

/// A reference to a container: where and what.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerRef {
    pub lxcpath: PathBuf,
    pub name: String,
}

impl ContainerRef {
    pub fn new(lxcpath: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        ContainerRef {
            lxcpath: lxcpath.into(),
            name: name.into(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.lxcpath.join(&self.name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("config")
    }
}

/// A loaded container.
#[derive(Debug, Clone)]
pub struct Container {
    pub r: ContainerRef,
    pub config: Config,
    pub rootfs: RootfsSpec,
}

/// One snapshot of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// `snapN`
    pub name: String,
    /// `ts` as written (`%Y:%m:%d %H:%M:%S`).
    pub timestamp: String,
    pub comment: Option<String>,
    pub rootfs: RootfsSpec,
}

pub struct Store {
    lxcpath: PathBuf,
}

impl Store {
    pub fn new(lxcpath: impl Into<PathBuf>) -> Self {
        Store {
            lxcpath: lxcpath.into(),
        }
    }

    pub fn lxcpath(&self) -> &Path {
        &self.lxcpath
    }

    pub fn r(&self, name: &str) -> ContainerRef {
        ContainerRef::new(&self.lxcpath, name)
    }

    /// A container exists when `$lxcpath/NAME/config` does.
    pub fn exists(&self, name: &str) -> bool {
        self.r(name).config_path().is_file()
    }

    /// Names of the containers, sorted; staging and leftover entries skipped.
    pub fn list(&self) -> Result<Vec<String>> {
        todo!()
    }

    /// Load config and rootfs spec. `NotFound` for an unknown container.
    pub fn load(&self, name: &str) -> Result<Container> {
        let _ = name;
        todo!()
    }

    /// The lxcpath holding `name`'s snapshots: `$lxcpath/NAME/snaps`.
    pub fn snaps_path(&self, name: &str) -> PathBuf {
        self.lxcpath.join(name).join("snaps")
    }

    /// Snapshots of `name`, sorted by number.
    pub fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>> {
        let _ = name;
        todo!()
    }

    /// First free `snapN` (gaps reused, as LXC does).
    pub fn next_snapshot_name(&self, name: &str) -> Result<String> {
        let _ = name;
        todo!()
    }
}

/// Containers that depend on `origin` (from its `lxc_snapshots`).
pub fn dependents(origin: &ContainerRef) -> Result<Vec<ContainerRef>> {
    let _ = origin;
    todo!()
}

/// The containers `clone` depends on (from its `lxc_rdepends`).
pub fn depends_on(clone: &ContainerRef) -> Result<Vec<ContainerRef>> {
    let _ = clone;
    todo!()
}

/// Record that `clone` depends on `origin`: appended to the origin's
/// `lxc_snapshots`, written (atomically) as the clone's `lxc_rdepends` in
/// `clone_dir` (which may be a staging dir).
pub fn add_dependency(origin: &ContainerRef, clone: &ContainerRef, clone_dir: &Path) -> Result<()> {
    let _ = (origin, clone, clone_dir);
    todo!()
}

/// Remove `clone` from `origin`'s `lxc_snapshots` (file removed when empty).
pub fn remove_dependency(origin: &ContainerRef, clone: &ContainerRef) -> Result<()> {
    let _ = (origin, clone);
    todo!()
}
