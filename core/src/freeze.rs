//! Freezing a running container for the instant of a snapshot, so that
//! the snapshot holds no half-written file of its processes.
//!
//! Core does not know cgroups: the binary hands the engine a [`Freezer`]
//! (the runtime's cgroup freezer, v1 `freezer.state` or cgroup2
//! `cgroup.freeze`). Before a container is frozen, a record is written
//! under the run dir (`RUN/frozen/PID-START-X.json`: the writer, the
//! container, its init and its cgroups); the [`Frozen`] guard thaws it and
//! removes the record when dropped, on success and on error alike. A
//! command killed while a container is frozen leaves the record: the next
//! command's reconcile thaws the container (if the same init still runs)
//! through [`thaw_stale`].

use crate::error::{Error, Result};
use crate::paths;
use crate::state::RunRecord;
use crate::store::ContainerRef;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OP: &str = "freeze container";

/// Freezes and thaws the processes of a container's cgroups (wired in by the binary).
pub trait Freezer: Send + Sync {
    /// Freeze every process in `cgroups`; returns once the kernel says frozen.
    fn freeze(&self, cgroups: &[PathBuf]) -> Result<()>;
    /// Thaw them.
    fn thaw(&self, cgroups: &[PathBuf]) -> Result<()>;
    /// Whether they are frozen now (by a user's `lxc-freeze`, say).
    fn is_frozen(&self, cgroups: &[PathBuf]) -> bool;
    /// Told once a container was frozen for `took` and thawed again (the
    /// binary says so on stderr).
    fn report(&self, _r: &ContainerRef, _what: &str, _took: Duration) {}
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    pid: i32,
    start: u64,
    lxcpath: PathBuf,
    name: String,
    init_pid: i32,
    init_start: u64,
    cgroups: Vec<PathBuf>,
}

fn dir() -> PathBuf {
    paths::run_dir().join("frozen")
}

/// A container frozen by this command: thawed, and its record removed, on drop.
pub struct Frozen {
    freezer: Arc<dyn Freezer>,
    record: PathBuf,
    cgroups: Vec<PathBuf>,
    r: ContainerRef,
    what: &'static str,
    since: Instant,
}

impl Frozen {
    /// Freeze the container `r` runs as `rec` for `what` ("its snapshot"),
    /// recorded first. `None` when it is frozen already (a user froze it:
    /// it stays as the user left it).
    pub fn new(
        freezer: &Arc<dyn Freezer>,
        r: &ContainerRef,
        rec: &RunRecord,
        what: &'static str,
    ) -> Result<Option<Frozen>> {
        if freezer.is_frozen(&rec.cgroups) {
            return Ok(None);
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let d = dir();
        paths::ensure_dir(&d)?;
        let pid = std::process::id() as i32;
        let start = crate::state::proc_start_time(pid).unwrap_or(0);
        let record = d.join(format!("{pid}-{start}-{}.json", SEQ.fetch_add(1, Ordering::Relaxed)));
        let data = serde_json::to_vec(&Record {
            pid,
            start,
            lxcpath: r.lxcpath.clone(),
            name: r.name.clone(),
            init_pid: rec.init_pid,
            init_start: rec.init_start,
            cgroups: rec.cgroups.clone(),
        })
        .map_err(|e| crate::err!(Io, OP, "{e}"))?;
        // Written (and complete) before the freeze: a kill after it leaves the record to reconcile.
        // The run dir is not the container's storage: a kill, not a power cut, is what this is for.
        crate::durable::write_atomic(&record, &data)?;
        let since = Instant::now();
        if let Err(e) = freezer.freeze(&rec.cgroups) {
            // Maybe half frozen: thawed again before the error is returned.
            let _ = freezer.thaw(&rec.cgroups);
            let _ = std::fs::remove_file(&record);
            return Err(e);
        }
        crate::failpoint::failpoint("frozen");
        Ok(Some(Frozen {
            freezer: freezer.clone(),
            record,
            cgroups: rec.cgroups.clone(),
            r: r.clone(),
            what,
            since,
        }))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        match self.freezer.thaw(&self.cgroups) {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.record);
                self.freezer.report(&self.r, self.what, self.since.elapsed());
            }
            // The record stays: the next command's reconcile tries again.
            Err(e) => tracing::warn!("thaw {}: {e}", self.r.name),
        }
    }
}

/// Thaw the containers killed commands froze (their records' writers are
/// dead), where the same init still runs; returns the containers thawed.
pub fn thaw_stale(freezer: &dyn Freezer) -> Vec<ContainerRef> {
    thaw_stale_in(&dir(), freezer)
}

fn thaw_stale_in(d: &Path, freezer: &dyn Freezer) -> Vec<ContainerRef> {
    let Ok(rd) = std::fs::read_dir(d) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Some(rec) = std::fs::read(&p)
            .ok()
            .and_then(|d| serde_json::from_slice::<Record>(&d).ok())
        else {
            continue;
        };
        if rec.start != 0 && crate::inflight::process_alive(rec.pid as u32, rec.start) {
            continue;
        }
        // Another start of the container since has other processes: not ours to thaw.
        if crate::state::alive(rec.init_pid, rec.init_start) {
            if let Err(e) = freezer.thaw(&rec.cgroups) {
                tracing::warn!("thaw {} left frozen by a killed command: {e}", rec.name);
                continue;
            }
            tracing::info!("thawed {}, left frozen by a killed command", rec.name);
            out.push(ContainerRef::new(&rec.lxcpath, &rec.name));
        }
        let _ = std::fs::remove_file(&p);
    }
    out
}

/// The error when a container must be frozen and cannot be.
pub fn cannot(name: &str, e: Error) -> Error {
    crate::err!(
        Busy,
        OP,
        "container {name} is running and cannot be frozen for the snapshot: {e}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Counts thaws (a double: the real freezer is tested on running containers).
    #[derive(Default)]
    struct Thaws(Mutex<Vec<PathBuf>>);

    impl Freezer for Thaws {
        fn freeze(&self, _: &[PathBuf]) -> Result<()> {
            Ok(())
        }
        fn thaw(&self, c: &[PathBuf]) -> Result<()> {
            self.0.lock().unwrap().extend_from_slice(c);
            Ok(())
        }
        fn is_frozen(&self, _: &[PathBuf]) -> bool {
            false
        }
    }

    fn record(d: &Path, file: &str, pid: i32, start: u64, init: (i32, u64), cg: &str) {
        let r = Record {
            pid,
            start,
            lxcpath: "/l".into(),
            name: file.into(),
            init_pid: init.0,
            init_start: init.1,
            cgroups: vec![cg.into()],
        };
        std::fs::write(d.join(format!("{file}.json")), serde_json::to_vec(&r).unwrap()).unwrap();
    }

    #[test]
    fn only_what_dead_writers_froze_is_thawed_and_only_while_the_same_init_runs() {
        let d = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        let my_start = crate::state::proc_start_time(me).unwrap();
        // A dead writer (a start time no process has), its container still running (this process).
        record(d.path(), "a", me, my_start + 1, (me, my_start), "/cg/a");
        // A live writer: its freeze is its own to undo.
        record(d.path(), "b", me, my_start, (me, my_start), "/cg/b");
        // A dead writer whose container stopped (or restarted with another init).
        record(d.path(), "c", me, my_start + 1, (me, my_start + 7), "/cg/c");
        let f = Thaws::default();
        let thawed = thaw_stale_in(d.path(), &f);
        assert_eq!(thawed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(*f.0.lock().unwrap(), [PathBuf::from("/cg/a")]);
        let mut left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["b.json"]);
    }
}
