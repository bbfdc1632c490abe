//! `lxc-stop` and `lxc-info`'s run state.

use crate::conf::{self};
use crate::monitor::teardown;
use crate::sys;
use std::time::Duration;
use strata_core::engine::Engine;
use strata_core::state::{self, RunRecord};
use strata_core::{err, ContainerRef, Result, Store};

/// How to stop.
#[derive(Debug, Clone)]
pub struct StopOpts {
    /// `-k`: SIGKILL at once.
    pub kill: bool,
    /// `-t`: seconds to wait after the halt signal (`None`: forever).
    pub timeout: Option<u64>,
    /// `--nokill`: never SIGKILL.
    pub nokill: bool,
    /// `-W`: do not wait.
    pub nowait: bool,
    /// `-r`: ask init to reboot (`lxc.signal.reboot`, SIGINT unless set) and
    /// wait (`timeout`) for the new init.
    pub reboot: bool,
    /// `--rcfile`: the halt and reboot signals from this file, as LXC's
    /// lxc-stop reads them from the config it loaded.
    pub rcfile: Option<std::path::PathBuf>,
}

impl Default for StopOpts {
    fn default() -> Self {
        StopOpts {
            kill: false,
            timeout: Some(60),
            nokill: false,
            nowait: false,
            reboot: false,
            rcfile: None,
        }
    }
}

/// `lxc-stop`.
pub fn stop(engine: &Engine, r: &ContainerRef, o: &StopOpts) -> Result<()> {
    const OP: &str = "stop";
    let _s = tracing::info_span!("stop", name = %r.name).entered();
    // A volatile container (not defined, started from a file) only while it runs.
    if !Store::new(&r.lxcpath).exists(&r.name) && state::running(r).is_none() {
        return Err(err!(
            NotFound,
            OP,
            "container {} does not exist in {}",
            r.name,
            r.lxcpath.display()
        ));
    }
    let Some(rec) = state::running(r) else {
        return Err(err!(InvalidArgument, OP, "container {} is not running", r.name));
    };
    let pidfd = sys::pidfd_open(rec.init_pid)
        .ok_or_else(|| err!(InvalidArgument, OP, "container {} is not running", r.name))?;
    if !rec.init_alive() {
        return Err(err!(InvalidArgument, OP, "container {} is not running", r.name));
    }
    let signals = signals_for(r, &rec, o)?;
    // lxc.signal.stop: what a hard stop sends (SIGKILL unless set), as LXC.
    let kill_sig = signals.stop.unwrap_or(libc::SIGKILL);
    if o.reboot {
        let sig = signals.reboot.unwrap_or(libc::SIGINT);
        sys::signal(&pidfd, sig);
        if o.nowait {
            return Ok(());
        }
        let deadline = o.timeout.map(|t| std::time::Instant::now() + Duration::from_secs(t));
        loop {
            if state::running(r).is_some_and(|now| now.init_pid != rec.init_pid) {
                return Ok(());
            }
            if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                return Err(err!(
                    Busy,
                    OP,
                    "container {} did not reboot within {}s",
                    r.name,
                    o.timeout.unwrap_or(0)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let sig = if o.kill {
        kill_sig
    } else {
        match signals.halt {
            Some(s) => s,
            // As LXC: an init that blocks SIGRTMIN+3 (systemd) halts on it; others on SIGPWR.
            None if blocks(rec.init_pid, libc::SIGRTMIN() + 3) => libc::SIGRTMIN() + 3,
            None => libc::SIGPWR,
        }
    };
    sys::signal(&pidfd, sig);
    if o.nowait {
        return Ok(());
    }
    if !sys::wait_pidfd(&pidfd, o.timeout.map(Duration::from_secs)) {
        if o.nokill {
            return Err(err!(
                Busy,
                OP,
                "container {} did not stop within {}s",
                r.name,
                o.timeout.unwrap_or(0)
            ));
        }
        tracing::info!("container {} ignored signal {sig}: SIGKILL", r.name);
        sys::signal(&pidfd, kill_sig);
        if !sys::wait_pidfd(&pidfd, Some(Duration::from_secs(30))) && kill_sig != libc::SIGKILL {
            sys::signal(&pidfd, libc::SIGKILL);
            sys::wait_pidfd(&pidfd, Some(Duration::from_secs(30)));
        }
    }
    // LXC's monitor tears its run down itself: done once it is gone.
    if rec.by_lxc {
        if !strata_core::lxc_cmd::wait_gone(&r.lxcpath, &r.name, Duration::from_secs(60)) {
            return Err(err!(
                Busy,
                OP,
                "container {}: LXC's monitor did not exit within 60s",
                r.name
            ));
        }
        return Ok(());
    }
    // The monitor unmounts and removes the record; without one, we do.
    if let Some(mpid) = rec.monitor_pid.filter(|_| rec.monitor_alive()) {
        if let Some(mfd) = sys::pidfd_open(mpid) {
            if rec.monitor_alive() && sys::wait_pidfd(&mfd, Some(Duration::from_secs(60))) {
                return Ok(());
            }
        }
    }
    teardown(engine, r, rec.ephemeral)
}

/// `lxc-info`: the record when running.
pub fn info(r: &ContainerRef) -> Option<RunRecord> {
    state::running(r)
}

/// The signals to stop `r` with: those its start read (`-f` FILE and `-s`
/// included), recorded by our monitor; for a container LXC runs or an older
/// strata started (its record has none), its own config's (LXC's lxc-stop
/// reads the same). `--rcfile` gives the halt and
/// reboot signals, as LXC's lxc-stop takes them from the file it loaded
/// (the hard stop's stays the start's: LXC's monitor sends that one).
fn signals_for(r: &ContainerRef, rec: &RunRecord, o: &StopOpts) -> Result<state::Signals> {
    let from_file = |f: &std::path::Path| -> Result<state::Signals> {
        let eff = strata_core::config::Config::load_effective(f)?;
        let get = |key: &str| -> Result<Option<i32>> {
            match eff.get(key).map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => conf::parse_signal(v)
                    .map(Some)
                    .map_err(|_| err!(InvalidConfig, "stop", "{key} = {v}: unknown signal")),
            }
        };
        Ok(state::Signals {
            halt: get("lxc.signal.halt")?,
            reboot: get("lxc.signal.reboot")?,
            stop: get("lxc.signal.stop")?,
        })
    };
    // Not recorded (LXC runs it, or an older strata started it): the
    // container's config as it is now, which is what LXC's lxc-stop reads
    // (a volatile container has none: LXC's defaults).
    let mut s = match rec.signals {
        Some(s) if !rec.by_lxc => s,
        _ if r.config_path().is_file() => from_file(&r.config_path())?,
        _ => state::Signals::default(),
    };
    if let Some(f) = &o.rcfile {
        let given = from_file(f)?;
        s.halt = given.halt;
        s.reboot = given.reboot;
    }
    Ok(s)
}

/// Whether `pid` blocks `sig` (SigBlk in /proc/PID/status), as LXC's
/// task_blocks_signal reads it.
fn blocks(pid: i32, sig: i32) -> bool {
    let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    st.lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1u64 << (sig - 1)) != 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_blocked_signal() {
        let sig = libc::SIGRTMIN() + 3;
        // SAFETY: the child only blocks a signal and sleeps; the parent kills and reaps it.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: in the forked test child (the test harness has other threads, so only async-signal-safe calls
            // here): sigemptyset/sigaddset/sigprocmask on a live local sigset_t, sleep, then _exit; nothing returns
            // into the harness.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, sig);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                libc::sleep(10);
                libc::_exit(0);
            }
        }
        let t = std::time::Instant::now();
        while !super::blocks(child, sig) && t.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(super::blocks(child, sig));
        assert!(!super::blocks(child, libc::SIGPWR));
        // SAFETY: `child` is our own unreaped child, so the pid cannot have been reused; a null status pointer is
        // allowed.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
    }
}
