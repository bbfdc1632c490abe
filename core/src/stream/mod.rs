//! Container streams: one container (its config, its rootfs and, if asked,
//! its snapshots) as a zstd-compressed tar archive, for `strata send` /
//! `receive` and `export` / `import`.
//!
//! Layout of the archive, in this order:
//! - `strata-index.json`: an [`Index`] (the configs, snapshot times and
//!   comments, where the container lived), so the receiver knows every
//!   part before the first byte of a tree arrives;
//! - `config`, `snaps/SNAP/{config,ts,comment}`: the same text as plain
//!   files, for people and other tools reading the archive (the receiver
//!   goes by the index);
//! - `files/PATH`: files the configs name inside the container dir (hook
//!   scripts, an fstab), at their path relative to it (see [`files`]);
//! - `snaps/SNAP/rootfs/...` for each snapshot, oldest first, then
//!   `rootfs/...`: each tree as GNU tar entries with numeric owners, PAX
//!   records for nanosecond mtimes and every xattr (`SCHILY.xattr.*`:
//!   POSIX ACLs and `security.capability` included), hardlinks as links,
//!   device nodes, fifos, and GNU sparse entries for files with holes.
//!
//! An incremental stream (`send --from SNAP`, [`Index::base`]) has version
//! [`VERSION_DELTA`], so that a strata that cannot apply it refuses it. Its
//! trees hold only what changed since the tree before it (the base
//! snapshot, then each snapshot sent): entries new or changed by size,
//! mtime, mode, owner, xattrs or link target (rsync's quick check), every
//! directory, and files with several links; after each tree,
//! `PREFIX.deleted` lists (NUL-separated, relative to the tree) what is
//! gone. That entry also marks the tree complete.
//!
//! A native stream (`send --native`, version [`VERSION_NATIVE`]) carries
//! each tree as its backend's own stream instead (see [`native`]), full or
//! incremental from the base.
//!
//! GNU tar reads such an archive (`tar --zstd --xattrs --xattrs-include='*'
//! --numeric-owner -xpf`); the receiver never writes through a symlink of
//! the tree it builds ([`Unpacker`]).

mod acl;
pub mod ahead;
pub mod files;
pub mod native;
mod pack;
pub mod pax;
mod unpack;

pub use pack::Packer;
pub(crate) use unpack::remove_at;
pub use unpack::{entry_name, strip_tree, Unpacker};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Name of the first entry.
pub const INDEX: &str = "strata-index.json";
pub const FORMAT: &str = "strata-container-stream";
pub const VERSION: u32 = 1;
/// Version of an incremental stream.
pub const VERSION_DELTA: u32 = 2;
/// Version of a stream whose trees are native sections (see [`native`]),
/// full or incremental.
pub const VERSION_NATIVE: u32 = 3;
/// After each tree of an incremental stream: what it no longer holds.
pub const DELETED: &str = ".deleted";
/// Most an index may take (configs are capped far below this).
pub const MAX_INDEX: u64 = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Index {
    pub format: String,
    pub version: u32,
    /// The container's name where it was sent from.
    pub name: String,
    /// Its directory there: config values naming it are rewritten on receive.
    pub dir: PathBuf,
    /// The backend it was on (for information: the receiver picks its own).
    pub backend: String,
    pub config: String,
    pub snapshots: Vec<SnapIndex>,
    /// Files the configs name inside the container dir, sent as `files/PATH`.
    #[serde(default)]
    pub files: Vec<FileIndex>,
    /// Files the configs name outside it: not sent, the target must have them.
    #[serde(default)]
    pub external: Vec<External>,
    /// Incremental: the snapshot both sides have, the trees' first base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Base>,
    /// Incremental: the names of every snapshot the sender has (those only
    /// the receiver has are kept, and named).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sender_snapshots: Vec<String>,
    /// The trees are native sections in this format (see [`native`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<native::Native>,
    /// Entries and file bytes of the trees (for progress), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Totals>,
}

/// The snapshot an incremental stream starts from, as the sender has it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Base {
    pub name: String,
    /// Its `ts`: the receiver's snapshot of that name must have the same.
    pub ts: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    pub entries: u64,
    pub bytes: u64,
}

/// Called as a stream is written or read, with the entries and file bytes
/// so far and the totals when known.
pub type ProgressFn = std::sync::Arc<dyn Fn(u64, u64, Option<Totals>) + Send + Sync>;

/// How far an import has read its archive file: where the archive names
/// no totals (Incus, Proxmox), its compressed bytes read against the
/// file's size give the ETA.
#[derive(Debug, Clone, Default)]
pub struct InputPos {
    pub read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub size: u64,
}

impl InputPos {
    /// `r`, counting what is read from it into `self.read`.
    pub fn counted<R: std::io::Read>(&self, r: R) -> Counted<R> {
        Counted {
            inner: r,
            read: self.read.clone(),
        }
    }
}

/// A reader that adds what it reads to a shared count.
pub struct Counted<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileIndex {
    /// Relative to the container dir.
    pub path: PathBuf,
    pub mode: u32,
}

/// A config key naming a file the stream does not carry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct External {
    pub key: String,
    pub path: PathBuf,
    /// Why it is not carried.
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapIndex {
    pub name: String,
    pub ts: String,
    pub comment: Option<String>,
    pub config: String,
}

/// Counts of what went into or came out of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub entries: u64,
    /// File data bytes (holes not counted).
    pub bytes: u64,
    /// Sockets, which tar cannot carry (a running service's, recreated at start).
    pub skipped_sockets: u64,
    /// Files the configs name that the stream does not carry.
    pub external: Vec<External>,
    /// Incremental receive: snapshots only the receiver has, kept.
    pub kept_snapshots: Vec<String>,
}
