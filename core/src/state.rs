//! Run state shared by the runtime (which writes it) and the engine (which
//! refuses unsafe operations on running containers). Kept under the run
//! directory and checked against a live pid, so it is right after the
//! runtime process is killed.

use crate::error::{Error, Result};
use crate::paths;
use crate::store::ContainerRef;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRecord {
    /// Init pid in the host's pid namespace (0 while the container is being prepared).
    pub init_pid: i32,
    /// Start time of init (field 22 of /proc/PID/stat), to detect pid reuse.
    pub init_start: u64,
    /// Pid of the supervising strata process, if any.
    pub monitor_pid: Option<i32>,
    /// Start time of the monitor, to detect pid reuse.
    #[serde(default)]
    pub monitor_start: Option<u64>,
    pub ephemeral: bool,
    /// The container's cgroup directories, recorded before they are made,
    /// so that whoever tears the container down (or reconcile, after a
    /// kill -9 of the monitor) removes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<PathBuf>,
    /// Host network devices of the run (veth host ends), recorded before
    /// they are made, so that whoever tears the container down (or
    /// reconcile, after a kill -9 of the monitor) removes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net_links: Vec<String>,
    /// Host interfaces lent to the container (`phys`): name and ifindex, so
    /// that one the kernel hands back under another name when the
    /// namespace goes without the monitor gets its own name again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net_phys: Vec<(String, u32)>,
    /// `lxc.signal.halt/reboot/stop` as the start read them (the config,
    /// `-f` FILE, `-s`), for whoever stops the container. `None` in a record
    /// an older strata wrote (it had no such field) and in one made up for
    /// a container LXC runs: lxc-stop then reads the container's config, as
    /// LXC's lxc-stop does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<Signals>,
    /// The config file the start read when it was not the container's own
    /// (`-f`): a volatile container has no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// The rootfs this run mounts when it is not the container's own
    /// (`lxc-start -f FILE` or `-s` naming another, as LXC allows), recorded
    /// before it is mounted: teardown unmounts that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    /// Made up from the answer of LXC's command socket for a container LXC
    /// runs (never stored): no monitor of ours, nothing of ours to undo.
    #[serde(skip)]
    pub by_lxc: bool,
}

/// A run's `lxc.signal.*` values (`None`: unset, LXC's default applies).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Signals {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<i32>,
}

impl RunRecord {
    /// Whether the monitor process that wrote this record is still alive.
    pub fn monitor_alive(&self) -> bool {
        match (self.monitor_pid, self.monitor_start) {
            (Some(pid), Some(start)) => alive(pid, start),
            (Some(pid), None) => crate::identity::proc_stat(pid).is_some_and(|(s, _)| s != 'Z'),
            _ => false,
        }
    }

    /// Whether init is alive and the same process.
    pub fn init_alive(&self) -> bool {
        self.init_pid > 0 && alive(self.init_pid, self.init_start)
    }
}

/// The directory holding the records of one lxcpath (and the monitors'
/// console sockets): made by the first record written, removed with the
/// last thing in it ([`crate::paths::prune_dir`]); whatever is made in it
/// is made through [`crate::paths::in_dir`].
pub fn record_dir(lxcpath: &Path) -> PathBuf {
    paths::run_dir().join("state").join(paths::lxcpath_key(lxcpath))
}

pub fn record_path(r: &ContainerRef) -> PathBuf {
    record_dir(&r.lxcpath).join(format!("{}.json", r.name))
}

/// Start time of a process, from /proc/PID/stat.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    crate::identity::proc_stat(pid).map(|(_, t)| t)
}

/// `pid` is alive (not a zombie) and started at `start`.
pub fn alive(pid: i32, start: u64) -> bool {
    crate::identity::proc_stat(pid).is_some_and(|(s, t)| t == start && s != 'Z' && s != 'X')
}

/// The record as stored, running or not.
pub fn read(r: &ContainerRef) -> Option<RunRecord> {
    serde_json::from_slice(&std::fs::read(record_path(r)).ok()?).ok()
}

/// Write (atomically) the record of `r`.
pub fn write(r: &ContainerRef, rec: &RunRecord) -> Result<()> {
    let path = record_path(r);
    let data = serde_json::to_vec(rec).map_err(|e| crate::err!(Io, "write run record", "{e}"))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    // The dir may be pruned ([`remove`]) until the temp file is in it.
    paths::in_dir(&record_dir(&r.lxcpath), "write run record", || {
        std::fs::write(&tmp, &data)
    })?;
    // Swapped with the old record rather than renamed over it: ext4 (a run
    // dir that is not a tmpfs) writes a file renamed over another to disk at
    // once, and a filesystem mounted with `discard` then trims its blocks,
    // synchronously, when the record is removed at stop (milliseconds a
    // run). Readers see the old record or the new one either way.
    use nix::fcntl::{renameat2, RenameFlags};
    match renameat2(None, &tmp, None, &path, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => {
            // The old record, under the temporary name: never written out.
            let _ = std::fs::remove_file(&tmp);
            Ok(())
        }
        // No record yet, or a filesystem that cannot exchange.
        Err(_) => std::fs::rename(&tmp, &path).map_err(|e| Error::io("write run record", &path, e)),
    }
}

/// Remove the record of `r` (gone already is fine), and the lxcpath's
/// record dir with it if that was the last thing in it.
pub fn remove(r: &ContainerRef) -> Result<()> {
    let path = record_path(r);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove run record", &path, e)),
        _ => {
            paths::prune_dir(&record_dir(&r.lxcpath));
            Ok(())
        }
    }
}

/// Names that have a record in `lxcpath`.
pub fn recorded(lxcpath: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(record_dir(lxcpath)) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
        .collect();
    v.sort();
    v
}

/// The record, if the container is running (its init is alive and is the
/// same process): strata's own run, or else one LXC runs (its command
/// socket answers with a live init).
pub fn running(r: &ContainerRef) -> Option<RunRecord> {
    match read(r) {
        Some(rec) if rec.init_alive() => Some(rec),
        // Our monitor holds the command socket: no LXC can run it meanwhile.
        Some(rec) if rec.monitor_alive() => None,
        _ => lxc_running(r),
    }
}

/// A record for `r` if LXC runs it: its monitor answers LXC's command
/// socket with a running state and a live init. One failed connect when
/// nothing listens.
pub fn lxc_running(r: &ContainerRef) -> Option<RunRecord> {
    let a = crate::lxc_cmd::probe(&r.lxcpath, &r.name)?;
    // RUNNING, FREEZING, FROZEN, THAWED: init runs.
    if !matches!(a.state, 2 | 5 | 6 | 7) {
        return None;
    }
    lxc_record(a.init_pid)
}

/// The record of a run LXC's monitor told us init `init_pid` of.
pub fn lxc_record(init_pid: i32) -> Option<RunRecord> {
    if init_pid <= 0 {
        return None;
    }
    let init_start = proc_start_time(init_pid)?;
    Some(RunRecord {
        init_pid,
        init_start,
        monitor_pid: None,
        monitor_start: None,
        ephemeral: false,
        cgroups: proc_cgroup_dirs(init_pid),
        net_links: Vec::new(),
        net_phys: Vec::new(),
        signals: None,
        config_file: None,
        rootfs: None,
        by_lxc: true,
    })
}

/// A cgroup hierarchy mounted whole: v2 or not, mount point, and (v1)
/// the controllers and names in its super options.
#[derive(Debug, Clone)]
pub struct CgroupMount {
    pub v2: bool,
    pub path: PathBuf,
    pub options: Vec<String>,
}

/// The cgroup hierarchies mounted whole in our mount namespace.
pub fn cgroup_mounts() -> Vec<CgroupMount> {
    crate::mountinfo::mounts()
        .into_iter()
        .filter(|m| m.root == "/" && (m.fstype == "cgroup" || m.fstype == "cgroup2"))
        .map(|m| CgroupMount {
            v2: m.fstype == "cgroup2",
            path: m.mount_point,
            options: m.super_options,
        })
        .collect()
}

/// The cgroup directories of `pid` on this host's cgroup mounts, from
/// /proc/PID/cgroup and our mountinfo (a v1 hierarchy by its controllers,
/// the unified one by its empty list).
pub fn proc_cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let Ok(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Vec::new();
    };
    let mounts = cgroup_mounts();
    let mut out = Vec::new();
    for line in cg.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let rel = path.trim_start_matches('/');
        let m = if ctrls.is_empty() {
            mounts.iter().find(|m| m.v2)
        } else {
            mounts
                .iter()
                .find(|m| !m.v2 && ctrls.split(',').all(|c| m.options.iter().any(|o| o == c)))
        };
        if let Some(m) = m {
            let d = m.path.join(rel);
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

/// Send `sig` to the recorded init only while it is still that process: a
/// pidfd is opened first and the start time checked after, so a pid reused
/// by another process meanwhile gets nothing (and never 0 or a negative pid).
pub fn signal_init(rec: &RunRecord, sig: i32) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    if rec.init_pid <= 0 {
        return false;
    }
    // SAFETY: pidfd_open takes a pid and flags; the fd is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, rec.init_pid, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: the fd was just returned to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if !rec.init_alive() {
        return false;
    }
    // SAFETY: pidfd_send_signal on our pidfd, no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        ) == 0
    }
}

pub fn is_running(r: &ContainerRef) -> bool {
    running(r).is_some()
}
