//! Run state shared by the runtime (which writes it) and the engine (which
//! refuses unsafe operations on running containers). Kept under the run
//! directory and checked against a live pid, so it is right after the
//! runtime process is killed.

use crate::paths;
use crate::store::ContainerRef;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRecord {
    /// Init pid in the host's pid namespace.
    pub init_pid: i32,
    /// Start time of init (field 22 of /proc/PID/stat), to detect pid reuse.
    pub init_start: u64,
    /// Pid of the supervising strata process, if any.
    pub monitor_pid: Option<i32>,
    pub ephemeral: bool,
}

pub fn record_path(r: &ContainerRef) -> PathBuf {
    paths::run_dir()
        .join("state")
        .join(paths::lxcpath_key(&r.lxcpath))
        .join(format!("{}.json", r.name))
}

/// Start time of a process, from /proc/PID/stat.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The record, if the container is running (its init is alive and is the same process).
pub fn running(r: &ContainerRef) -> Option<RunRecord> {
    let data = std::fs::read(record_path(r)).ok()?;
    let rec: RunRecord = serde_json::from_slice(&data).ok()?;
    (proc_start_time(rec.init_pid)? == rec.init_start).then_some(rec)
}

pub fn is_running(r: &ContainerRef) -> bool {
    running(r).is_some()
}
