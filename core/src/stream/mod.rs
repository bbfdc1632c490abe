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
//! - `snaps/SNAP/rootfs/...` for each snapshot, oldest first, then
//!   `rootfs/...`: each tree as GNU tar entries with numeric owners, PAX
//!   records for nanosecond mtimes and every xattr (`SCHILY.xattr.*`:
//!   POSIX ACLs and `security.capability` included), hardlinks as links,
//!   device nodes, fifos, and GNU sparse entries for files with holes.
//!
//! GNU tar reads such an archive (`tar --zstd --xattrs --xattrs-include='*'
//! --numeric-owner -xpf`); the receiver never writes through a symlink of
//! the tree it builds ([`Unpacker`]).

mod acl;
mod pack;
mod unpack;

pub use pack::Packer;
pub use unpack::{strip_tree, Unpacker};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Name of the first entry.
pub const INDEX: &str = "strata-index.json";
pub const FORMAT: &str = "strata-container-stream";
pub const VERSION: u32 = 1;
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapIndex {
    pub name: String,
    pub ts: String,
    pub comment: Option<String>,
    pub config: String,
}

/// Counts of what went into or came out of a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub entries: u64,
    /// File data bytes (holes not counted).
    pub bytes: u64,
    /// Sockets, which tar cannot carry (a running service's, recreated at start).
    pub skipped_sockets: u64,
}
