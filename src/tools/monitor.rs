//! `lxc-monitor [-n REGEX] [-P PATH]...`: prints `'NAME' changed state to
//! [STATE]` for every change of a matching container, whoever makes it,
//! until interrupted.
//!
//! strata has no state socket: the states are read from the run records
//! and freezers (woken by inotify on the records, at most [`super::watch::TICK`]
//! apart), and a change prints the states LXC reports on the way
//! (`STARTING` before `RUNNING`, `STOPPING` before `STOPPED`, `FREEZING`
//! before `FROZEN`, `THAWED` before a thawed `RUNNING`).

use super::watch::Watcher;
use crate::common;
use anyhow::anyhow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use strata_core::{state, ContainerRef, Store};
use strata_runtime::state_view::{self, State};

#[derive(clap::Parser, Debug)]
#[command(about = "Print the state changes of containers", version)]
pub struct Args {
    /// Containers whose whole name matches this regular expression
    #[arg(short = 'n', long = "name", default_value = ".*")]
    name: String,
    /// Tell lxc-monitord to quit (strata runs none: nothing to do)
    #[arg(short = 'Q', long = "quit")]
    quit: bool,
    /// Container path; may be given several times
    #[arg(short = 'P', long = "lxcpath", value_name = "PATH")]
    lxcpath: Vec<PathBuf>,
    /// Log priority
    #[arg(short = 'l', long = "logpriority", value_name = "LEVEL")]
    logpriority: Option<String>,
    /// Log file
    #[arg(short = 'o', long = "logfile", value_name = "FILE")]
    logfile: Option<PathBuf>,
    /// Do not print anything but errors
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Load configuration file FILE (lxc-monitor reads none: refused)
    #[arg(id = "rcfile", long = "rcfile", value_name = "FILE")]
    _rcfile: Option<PathBuf>,
    /// Give a short usage message
    #[arg(id = "usage", long = "usage")]
    _usage: bool,
}

/// The states printed for a change from `prev` to `cur`, as LXC reports them.
pub fn transition(prev: State, cur: State) -> Vec<State> {
    use State::*;
    if prev == cur {
        return vec![];
    }
    let mut v = vec![];
    if prev == Stopped && !matches!(cur, Starting | Stopping) {
        v.push(Starting);
    }
    if matches!(prev, Running | Starting | Frozen | Freezing) && cur == Stopped {
        v.push(Stopping);
    }
    if matches!(prev, Frozen | Freezing) && cur == Running {
        v.push(Thawed);
    }
    if matches!(prev, Running | Starting | Stopped) && cur == Frozen {
        v.push(Freezing);
    }
    v.push(cur);
    v
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    common::init_logging(a.logpriority.as_deref(), a.logfile.as_deref())?;
    let mut paths = vec![];
    if a.lxcpath.is_empty() {
        paths.push(common::resolve_lxcpath(None)?);
    }
    for p in &a.lxcpath {
        paths.push(common::resolve_lxcpath(Some(p))?);
    }
    if a.quit {
        return Ok(0);
    }
    let re = regex_automata::meta::Regex::new(&format!("^(?:{})$", a.name)).map_err(|e| {
        anyhow!(
            "failed to compile the regex '{}': {}",
            a.name,
            common::one_line(&e.to_string())
        )
    })?;
    let mut w = Watcher::new(&paths);
    let mut seen: BTreeMap<(usize, String), State> = BTreeMap::new();
    let mut first = true;
    let mut out = std::io::stdout();
    loop {
        let mut now = BTreeMap::new();
        for (i, p) in paths.iter().enumerate() {
            let mut names = Store::new(p).list().unwrap_or_default();
            names.extend(state::recorded(p));
            names.sort();
            names.dedup();
            for n in names.into_iter().filter(|n| re.is_match(n.as_str())) {
                let (st, _) = state_view::state(&ContainerRef::new(p, &n));
                now.insert((i, n), st);
            }
        }
        if !first {
            for (k, st) in &now {
                let prev = seen.get(k).copied().unwrap_or(State::Stopped);
                for s in transition(prev, *st) {
                    if writeln!(out, "'{}' changed state to [{s}]", k.1).is_err() {
                        return Ok(0);
                    }
                }
            }
            for (k, prev) in &seen {
                if !now.contains_key(k) {
                    for s in transition(*prev, State::Stopped) {
                        if writeln!(out, "'{}' changed state to [{s}]", k.1).is_err() {
                            return Ok(0);
                        }
                    }
                }
            }
        }
        first = false;
        seen = now;
        w.wait(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    #[test]
    fn transitions_as_lxc_reports_them() {
        assert_eq!(transition(Stopped, Running), [Starting, Running]);
        assert_eq!(transition(Starting, Running), [Running]);
        assert_eq!(transition(Running, Stopped), [Stopping, Stopped]);
        assert_eq!(transition(Stopping, Stopped), [Stopped]);
        assert_eq!(transition(Running, Frozen), [Freezing, Frozen]);
        assert_eq!(transition(Frozen, Running), [Thawed, Running]);
        assert_eq!(transition(Running, Running), []);
    }
}
