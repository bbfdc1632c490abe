//! A container's state under LXC's names (`lxc-info`, `lxc-wait`,
//! `lxc-monitor`, `lxc-ls`), read from the run record and the freezer.
//!
//! * no record, or neither init nor monitor alive: `STOPPED`;
//! * a live monitor that has not cloned init yet (`init_pid` 0): `STARTING`;
//! * init alive: `RUNNING`, or `FREEZING`/`FROZEN` as the container's freezer
//!   cgroup says (v1 `freezer.state`, else cgroup2 `cgroup.freeze` and
//!   `cgroup.events`);
//! * init gone while its monitor still tears down: `STOPPING`;
//! * no run of ours: what LXC's command socket answers for a container LXC
//!   runs (`STOPPED` when nothing listens).

use std::path::{Path, PathBuf};
use strata_core::state::{self, RunRecord};
use strata_core::ContainerRef;

/// The states LXC names (`lxc_state_t`), in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Stopped,
    Starting,
    Running,
    Stopping,
    Aborting,
    Freezing,
    Frozen,
    Thawed,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Stopped,
        State::Starting,
        State::Running,
        State::Stopping,
        State::Aborting,
        State::Freezing,
        State::Frozen,
        State::Thawed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::Stopped => "STOPPED",
            State::Starting => "STARTING",
            State::Running => "RUNNING",
            State::Stopping => "STOPPING",
            State::Aborting => "ABORTING",
            State::Freezing => "FREEZING",
            State::Frozen => "FROZEN",
            State::Thawed => "THAWED",
        }
    }

    /// LXC's state names, exactly (as `lxc_str2state`).
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.name() == s)
    }

    /// Init runs (frozen or not): what LXC's `is_running` means.
    pub fn is_active(self) -> bool {
        !matches!(self, State::Stopped)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The state of `r` and its record (when init is alive, the record of a
/// running container).
pub fn state(r: &ContainerRef) -> (State, Option<RunRecord>) {
    let Some(rec) = state::read(r) else {
        return lxc_state(r);
    };
    if rec.init_alive() {
        let st = freezer_state(&rec.cgroups).unwrap_or(State::Running);
        return (st, Some(rec));
    }
    if rec.monitor_alive() {
        let st = if rec.init_pid == 0 {
            State::Starting
        } else {
            State::Stopping
        };
        return (st, None);
    }
    lxc_state(r)
}

/// What a listing of many containers of one lxcpath reads once instead of
/// once per container: the names with a run record, and the abstract
/// sockets bound (so a stopped container costs no connect).
pub struct Census {
    recorded: std::collections::HashSet<String>,
    bound: Option<std::collections::HashSet<Vec<u8>>>,
}

impl Census {
    /// From the run records' names and the bound sockets, read already.
    pub fn from_parts(recorded: Vec<String>, bound: Option<std::collections::HashSet<Vec<u8>>>) -> Census {
        Census {
            recorded: recorded.into_iter().collect(),
            bound,
        }
    }
}

/// [`state`], with what `census` says is not there skipped.
pub fn state_in(census: &Census, r: &ContainerRef) -> (State, Option<RunRecord>) {
    if census.recorded.contains(&r.name) {
        return state(r);
    }
    match &census.bound {
        Some(b) if !strata_core::lxc_cmd::may_listen(b, &r.lxcpath, &r.name) => (State::Stopped, None),
        _ => lxc_state(r),
    }
}

/// The state LXC's monitor gives for `r` (one failed connect when LXC does
/// not run it), with a record when its init runs.
fn lxc_state(r: &ContainerRef) -> (State, Option<RunRecord>) {
    let Some(a) = strata_core::lxc_cmd::probe(&r.lxcpath, &r.name) else {
        return (State::Stopped, None);
    };
    let mut st = State::ALL.get(a.state as usize).copied().unwrap_or(State::Stopped);
    let rec = matches!(st, State::Running | State::Freezing | State::Frozen | State::Thawed)
        .then(|| state::lxc_record(a.init_pid))
        .flatten();
    // LXC's monitor knows of freezes only from those who tell it: the
    // freezer itself says.
    if let Some(r) = &rec {
        if let Some(f @ (State::Frozen | State::Freezing)) = freezer_state(&r.cgroups) {
            st = f;
        }
    }
    (st, rec)
}

/// The leaves of a recorded cgroup list (the container's own cgroups).
pub fn leaves(paths: &[PathBuf]) -> Vec<&PathBuf> {
    paths
        .iter()
        .filter(|p| !paths.iter().any(|q| q != *p && q.starts_with(p)))
        .collect()
}

/// Whether `dir` is a cgroup2 directory.
pub fn is_unified(dir: &Path) -> bool {
    dir.join("cgroup.controllers").exists()
}

/// `FROZEN`/`FREEZING` from the freezer of the recorded cgroups (v1 first, as
/// LXC and [`crate::cgroup::freeze`] use it), `RUNNING` when thawed, `None`
/// without a freezer.
pub fn freezer_state(paths: &[PathBuf]) -> Option<State> {
    let leaves = leaves(paths);
    for d in &leaves {
        if let Ok(s) = std::fs::read_to_string(d.join("freezer.state")) {
            return Some(match s.trim() {
                "FROZEN" => State::Frozen,
                "FREEZING" => State::Freezing,
                _ => State::Running,
            });
        }
    }
    for d in &leaves {
        if let Ok(want) = std::fs::read_to_string(d.join("cgroup.freeze")) {
            if want.trim() != "1" {
                return Some(State::Running);
            }
            let frozen = std::fs::read_to_string(d.join("cgroup.events"))
                .is_ok_and(|e| e.lines().any(|l| l.trim() == "frozen 1"));
            return Some(if frozen { State::Frozen } else { State::Freezing });
        }
    }
    None
}

/// The recorded cgroup directory holding `file` (`pids.max`,
/// `memory.limit_in_bytes`, ...): a v1 hierarchy's first, then the unified
/// one, as LXC's `get_cgroup_item` looks. `file` must be a plain name.
pub fn cgroup_file(paths: &[PathBuf], file: &str) -> Option<PathBuf> {
    if file.is_empty() || file == "." || file == ".." || file.contains('/') || file.contains('\0') {
        return None;
    }
    let leaves = leaves(paths);
    let (v2, v1): (Vec<&PathBuf>, Vec<&PathBuf>) = leaves.into_iter().partition(|d| is_unified(d));
    v1.into_iter()
        .chain(v2)
        .map(|d| d.join(file))
        .find(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.name()), Some(s));
        }
        assert_eq!(State::parse("running"), None);
        assert_eq!(State::parse("BOGUS"), None);
    }

    #[test]
    fn freezer_files() {
        let t = tempfile::tempdir().unwrap();
        let v1 = t.path().join("freezer/lxc.payload.c");
        let v2 = t.path().join("unified/lxc.payload.c");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("cgroup.controllers"), "").unwrap();
        std::fs::write(v2.join("cgroup.freeze"), "1\n").unwrap();
        std::fs::write(v2.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert_eq!(freezer_state(std::slice::from_ref(&v2)), Some(State::Freezing));
        std::fs::write(v2.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        assert_eq!(freezer_state(std::slice::from_ref(&v2)), Some(State::Frozen));
        std::fs::write(v1.join("freezer.state"), "THAWED\n").unwrap();
        assert_eq!(freezer_state(&[v1.clone(), v2.clone()]), Some(State::Running));
        assert_eq!(freezer_state(&[]), None);
        std::fs::write(v1.join("pids.max"), "max\n").unwrap();
        std::fs::write(v2.join("pids.max"), "max\n").unwrap();
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        let paths = [v2.clone(), v1.clone()];
        assert_eq!(cgroup_file(&paths, "pids.max"), Some(v1.join("pids.max")));
        assert_eq!(cgroup_file(&paths, "memory.max"), Some(v2.join("memory.max")));
        assert_eq!(cgroup_file(&paths, "../x"), None);
        assert_eq!(cgroup_file(&paths, "nosuch"), None);
    }
}
