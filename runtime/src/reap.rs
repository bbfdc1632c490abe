//! Reconcile for runs: what killed monitors left behind.

use crate::monitor::{cleanup_locked, destroy_quietly};
use crate::{scan, sys};
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_core::engine::Engine;
use strata_core::lock::ContainerLock;
use strata_core::state::{self};
use strata_core::{ContainerRef, Error, Result};

/// In the dir of an ephemeral container once a run of it began; survives a
/// reboot (unlike the run record), so that its leftover can be told from a
/// container that has never run.
pub(crate) const RAN_MARKER: &str = ".strata-ephemeral-ran";

/// Mark `r` as an ephemeral container that has been started.
pub(crate) fn mark_ran(r: &ContainerRef) -> Result<()> {
    let p = r.dir().join(RAN_MARKER);
    std::fs::write(&p, b"").map_err(|e| Error::io("mark ephemeral run", &p, e))
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
    let lxcpath: PathBuf = std::path::absolute(lxcpath)
        .map_err(|e| Error::io("reap", lxcpath, e))?
        .components()
        .collect();
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
    // Plain entries: the scan's one stat per config tells containers apart.
    let unrecorded: Vec<String> = std::fs::read_dir(&lxcpath)
        .map_err(|e| Error::io("reap", &lxcpath, e))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && !recorded.contains(n))
        .collect();
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
    for n in &destroyed {
        tracing::info!("removed leftover ephemeral container {n}");
    }
    Ok(destroyed)
}
