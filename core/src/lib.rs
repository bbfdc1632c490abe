//! strata core: backend traits, rootfs specs, the container store and
//! config, the clone/snapshot/restore engine, the copy engine and locks.
//! Core knows backends only through the traits in [`backend`].

pub mod acl;
pub mod backend;
pub mod block;
pub mod clock;
pub mod config;
pub mod config_keys;
pub mod copy;
pub mod depfile;
pub mod durable;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod foreign;
pub mod freeze;
pub mod identity;
pub mod idmap;
pub mod inflight;
pub mod lock;
pub mod lxc_cmd;
pub mod lxc_conf;
pub mod lxcdir;
pub mod mountinfo;
pub mod names;
pub mod paths;
pub mod procfs;
pub mod projquota;
pub mod rawsys;
pub mod runner;
pub mod scratch;
pub mod shift;
pub mod spec;
pub mod state;
pub mod store;
pub mod stream;
pub mod toollock;
pub mod usage;

pub use backend::{
    build_mark, Backend, BackendOpts, Backends, Capacity, Caps, FastCopy, NativeStream, Opened, Resize, Snapshotter,
    Target, Usage, UsageReport, UsageSource,
};
pub use error::{Error, ErrorKind, IoContext, Result};
pub use spec::RootfsSpec;
pub use store::{Container, ContainerRef, SnapshotInfo, Store};
