//! Reconcile for runs: what killed monitors left behind.

use crate::monitor::{cleanup_locked, destroy_quietly};
use crate::{scan, sys};
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_core::engine::Engine;
use strata_core::inflight;
use strata_core::lock::ContainerLock;
use strata_core::state::{self};
use strata_core::{ContainerRef, Error, Result};

/// In the dir of an ephemeral container once a run of it began; survives a
/// reboot (unlike the run record), so that its leftover can be told from a
/// container that has never run.
pub(crate) const RAN_MARKER: &str = ".strata-ephemeral-ran";

/// The marker of the full scan (see [`inflight::scanned_this_boot`]).
const SCAN: &str = "ephemeral";

/// `RUN/inflight/ran/LXCPATH-KEY`: a file per ephemeral container whose run
/// began (`pid start` of the command that began it), written before its
/// [`RAN_MARKER`]. The reaper reads it instead of every config of the
/// lxcpath; it is emptied at boot, when the reaper's first pass per
/// lxcpath reads every config once.
fn runs_dir(lxcpath: &Path) -> PathBuf {
    strata_core::paths::run_dir()
        .join("inflight")
        .join("ran")
        .join(strata_core::paths::lxcpath_key(lxcpath))
}

fn normal(lxcpath: &Path) -> Result<PathBuf> {
    Ok(std::path::absolute(lxcpath)
        .map_err(|e| Error::io("reap", lxcpath, e))?
        .components()
        .collect())
}

/// Mark `r` as an ephemeral container that has been started: registered
/// for the reaper first, so that a kill between the two leaves nothing it
/// does not look at.
pub(crate) fn mark_ran(r: &ContainerRef) -> Result<()> {
    const OP: &str = "mark ephemeral run";
    let dir = runs_dir(&normal(&r.lxcpath)?);
    let reg = dir.join(&r.name);
    let pid = std::process::id();
    let start = strata_core::identity::proc_stat(pid as i32).map_or(0, |(_, s)| s);
    // The dir goes with its last registration ([`unregister`]).
    strata_core::paths::in_dir(&dir, OP, || std::fs::write(&reg, format!("{pid} {start}\n")))?;
    let p = r.dir().join(RAN_MARKER);
    std::fs::write(&p, b"").map_err(|e| Error::io(OP, &p, e))
}

/// The registered runs of `lxcpath`, with whether their registering command is alive.
fn registered(lxcpath: &Path) -> Vec<(String, bool)> {
    let Ok(rd) = std::fs::read_dir(runs_dir(lxcpath)) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let mut it = text.split_whitespace().map(|x| x.parse::<u64>().ok());
            let alive = matches!((it.next(), it.next()), (Some(Some(pid)), Some(Some(start)))
                if inflight::process_alive(pid as u32, start));
            Some((name, alive))
        })
        .collect()
}

fn unregister(lxcpath: &Path, name: &str) {
    let dir = runs_dir(lxcpath);
    let _ = std::fs::remove_file(dir.join(name));
    strata_core::paths::prune_dir(&dir);
}

/// Whether LXC itself runs `name`: its command socket (plain or hashed
/// name) takes a connection.
fn lxc_runs(lxcpath: &Path, name: &str) -> bool {
    strata_core::lxc_cmd::socket_addr(lxcpath, name)
        .is_ok_and(|a| std::os::unix::net::UnixStream::connect_addr(&a).is_ok())
}

/// Clean up after killed runs in `lxcpath`: unmount rootfs of containers
/// whose monitor and init are gone, and destroy ephemeral containers that
/// are not running and have no live monitor. Returns the names destroyed.
/// Every strata command calls this before looking at `lxcpath`.
pub fn reap_ephemeral(engine: &Engine, lxcpath: &Path) -> Result<Vec<String>> {
    let _s = tracing::debug_span!("reap", lxcpath = %lxcpath.display()).entered();
    let lxcpath = normal(lxcpath)?;
    let mut destroyed = Vec::new();
    let mut recorded = Vec::new();
    for name in state::recorded(&lxcpath) {
        let r = ContainerRef::new(&lxcpath, &name);
        recorded.push(name.clone());
        let Some(rec) = state::read(&r) else { continue };
        if rec.monitor_alive() {
            continue;
        }
        if rec.init_alive() {
            if !rec.ephemeral {
                continue; // runs on without its monitor, as LXC's containers do
            }
            // Doomed anyway (init dies with its monitor): make it so now.
            // The pidfd first, then proof that it is still the recorded init
            // (its start time): a reused pid gets no signal.
            if let Some(fd) = sys::pidfd_open(rec.init_pid).filter(|_| rec.init_alive()) {
                sys::signal(&fd, libc::SIGKILL);
                sys::wait_pidfd(&fd, Some(Duration::from_secs(10)));
            }
        }
        {
            let _lock = ContainerLock::acquire(&lxcpath, &name)?;
            match state::read(&r) {
                Some(now) if now.monitor_alive() || now.init_alive() => continue,
                None => continue,
                _ => {}
            }
            cleanup_locked(engine, &r)?;
        }
        if rec.ephemeral && std::fs::symlink_metadata(r.dir()).is_ok() {
            destroy_quietly(engine, &r)?;
            destroyed.push(name);
        }
    }
    // Runs without a record: those registered, or once per boot every
    // container (the scan's one stat per config tells them apart).
    let full = !inflight::scanned_this_boot(&lxcpath, SCAN);
    let regs = registered(&lxcpath);
    // A run whose command still lives is beginning, not cut short.
    let live: Vec<&String> = regs.iter().filter(|(_, a)| *a).map(|(n, _)| n).collect();
    let unrecorded: Vec<String> = if full {
        std::fs::read_dir(&lxcpath)
            .map_err(|e| Error::io("reap", &lxcpath, e))?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && !recorded.contains(n) && !live.contains(&n))
            .collect()
    } else {
        regs.iter()
            .filter(|(n, a)| !a && !recorded.contains(n))
            .map(|(n, _)| n.clone())
            .collect()
    };
    for name in scan::ephemeral(&lxcpath, &unrecorded) {
        let r = ContainerRef::new(&lxcpath, &name);
        // Only one that was started (a run cut short by a reboot): a stopped
        // container that never ran keeps its lxc.ephemeral = 1 for its first run.
        let ran = std::fs::symlink_metadata(r.dir().join(RAN_MARKER)).is_ok();
        if ran && state::read(&r).is_none() && !lxc_runs(&lxcpath, &name) {
            destroy_quietly(engine, &r)?;
            destroyed.push(name);
        }
    }
    // A registration goes with its container, or once its command died
    // before the mark (a live one may be about to write it).
    for (name, alive) in regs {
        let dir = ContainerRef::new(&lxcpath, &name).dir();
        if destroyed.contains(&name)
            || std::fs::symlink_metadata(&dir).is_err()
            || (!alive && std::fs::symlink_metadata(dir.join(RAN_MARKER)).is_err())
        {
            unregister(&lxcpath, &name);
        }
    }
    if full {
        inflight::mark_scanned(&lxcpath, SCAN);
    }
    for n in &destroyed {
        tracing::info!("removed leftover ephemeral container {n}");
    }
    Ok(destroyed)
}
