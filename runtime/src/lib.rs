//! The container runtime: a consumer of the storage layer.
//!
//! It gets a container's rootfs only through the core traits
//! ([`strata_core::Backend::mount`]/`umount`, the [`Engine`] for clones and
//! destroy) and never knows which backend holds it.
//!
//! Process model: the monitor (the strata process in the foreground, or a
//! daemonized child with `-d`) writes the run record, makes the cgroups,
//! clones init into new namespaces (and into its cgroup2 cgroup; the
//! network namespace and most v1 cgroups are made while init sets up its
//! rootfs), waits for init, then removes the cgroups and the record (and
//! destroys an ephemeral container). A privileged container's rootfs is mounted by
//! init in its own mount namespace when the backend's mount holds nothing
//! else (dir, btrfs, overlay), and goes with it; otherwise (and for an
//! idmapped view) the monitor mounts it under the run dir and unmounts it.
//! An ephemeral container's init dies with its monitor, and
//! [`reap_ephemeral`] removes what a killed monitor left.

mod attach;
mod attach_pty;
pub mod cgroup;
mod cmdsock;
pub mod conf;
pub mod confine;
mod console;
mod console_hub;
mod container;
mod daemon;
mod ephemeral;
pub mod hooks;
mod monitor;
pub mod net;
mod prepare;
mod reap;
mod scan;
pub mod seccomp;
pub mod state_view;
mod stop;
mod sys;
mod syscall;
mod term;
pub mod userns;

pub use attach::{attach, attach_as, attach_with, parse_namespaces, AttachOpts, Elevated};
pub use console::{console, ConsoleOpts};
use daemon::{daemonize, Notifier};
pub use ephemeral::{ephemeral, ephemeral_name, EphemeralOpts};
use monitor::monitor_loop;
use prepare::{pinned_dirs, prepare, Prepared};
pub use reap::reap_ephemeral;
pub use stop::{info, stop, StopOpts};
pub use sys::{clone3, random_suffix, CloneArgs};

use conf::{MountEntry, Net, RunConfig};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use strata_core::engine::{fsutil, DestroyRequest, Engine};
use strata_core::idmap::IdMap;
use strata_core::lock::ContainerLock;
use strata_core::state::{self, RunRecord};
use strata_core::{err, paths, ContainerRef, Error, ErrorKind, Result, Store};

/// How to start a container.
#[derive(Debug, Clone, Default)]
pub struct StartOpts {
    /// The command to run as init instead of `lxc.init.cmd`/`/sbin/init`.
    pub cmd: Vec<String>,
    /// Run the monitor in the background and return once init runs.
    pub daemon: bool,
    /// Mounts added to the config's `lxc.mount.entry` (ephemeral `-m`/`-b`).
    pub extra_mounts: Vec<MountEntry>,
    /// Put an overlay rootfs's upper dir on a tmpfs.
    pub tmpfs_upper: bool,
    /// `lxc-start --console`: `lxc.console.path` for this start.
    pub console: Option<String>,
    /// `lxc-start --console-log`: `lxc.console.logfile` for this start.
    pub console_log: Option<PathBuf>,
    /// `-f`: read this config file instead of the container's (LXC's rcfile).
    pub rcfile: Option<PathBuf>,
    /// `-s KEY=VAL` (and `--share-*`): set on the config read, as if appended to it.
    pub defines: Vec<(String, String)>,
    /// `-p`: the monitor's pid is written here while it runs.
    pub pidfile: Option<PathBuf>,
    /// `-C`: close inherited fds first (a daemon always does).
    pub close_fds: bool,
}

/// The mount point of a container's rootfs while it runs.
pub fn mount_point(r: &ContainerRef) -> PathBuf {
    paths::run_dir()
        .join("mnt")
        .join(paths::lxcpath_key(&r.lxcpath))
        .join(&r.name)
}

fn my_record(ephemeral: bool) -> RunRecord {
    let me = std::process::id() as i32;
    // Read once per process (keyed by pid: a daemon is a fork): a start
    // writes the record two or three times.
    static START: std::sync::Mutex<Option<(i32, Option<u64>)>> = std::sync::Mutex::new(None);
    let monitor_start = {
        let mut g = START.lock().unwrap_or_else(|e| e.into_inner());
        match *g {
            Some((pid, t)) if pid == me => t,
            _ => {
                let t = state::proc_start_time(me);
                *g = Some((me, t));
                t
            }
        }
    };
    RunRecord {
        init_pid: 0,
        init_start: 0,
        monitor_pid: Some(me),
        monitor_start,
        ephemeral,
        cgroups: Vec::new(),
        net_links: Vec::new(),
        net_phys: Vec::new(),
        signals: None,
        config_file: None,
        rootfs: None,
        by_lxc: false,
    }
}

/// `lxc-start`/`lxc-execute`: start `r` and, in the foreground, wait for it;
/// returns init's exit status (128+N when killed by signal N), or 0 once a
/// daemonized container runs.
pub fn start(engine: &Engine, r: &ContainerRef, opts: &StartOpts) -> Result<i32> {
    let _s = tracing::info_span!("start", name = %r.name).entered();
    let run = |n: &mut Notifier| {
        // As LXC: a daemon never passes on what it inherited, -C does the same in the foreground.
        if opts.daemon || opts.close_fds {
            sys::close_inherited_fds();
        }
        let _pidfile = match &opts.pidfile {
            Some(p) => Some(PidFile::write(p)?),
            None => None,
        };
        monitor_loop(engine, r, opts, false, n)
    };
    if opts.daemon {
        daemonize(run)
    } else {
        run(&mut Notifier(None))
    }
}

/// `lxc-start -p`: the monitor's pid (LXC writes its own, after it
/// daemonized), removed when the start ends.
struct PidFile(PathBuf);

impl PidFile {
    fn write(p: &Path) -> Result<PidFile> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(p)
            .map_err(|e| Error::io("write pidfile", p, e))?;
        f.write_all(std::process::id().to_string().as_bytes())
            .map_err(|e| Error::io("write pidfile", p, e))?;
        Ok(PidFile(p.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
