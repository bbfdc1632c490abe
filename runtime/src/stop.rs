//! `lxc-stop` and `lxc-info`'s run state.

use crate::*;

/// How to stop.
#[derive(Debug, Clone, Copy)]
pub struct StopOpts {
    /// `-k`: SIGKILL at once.
    pub kill: bool,
    /// `-t`: seconds to wait after the halt signal (`None`: forever).
    pub timeout: Option<u64>,
    /// `--nokill`: never SIGKILL.
    pub nokill: bool,
    /// `-W`: do not wait.
    pub nowait: bool,
}

impl Default for StopOpts {
    fn default() -> Self {
        StopOpts {
            kill: false,
            timeout: Some(60),
            nokill: false,
            nowait: false,
        }
    }
}

/// `lxc-stop`.
pub fn stop(engine: &Engine, r: &ContainerRef, o: &StopOpts) -> Result<()> {
    const OP: &str = "stop";
    let _s = tracing::info_span!("stop", name = %r.name).entered();
    if !Store::new(&r.lxcpath).exists(&r.name) {
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
    let sig = if o.kill {
        libc::SIGKILL
    } else {
        let c = Store::new(&r.lxcpath).load(&r.name)?;
        RunConfig::from_config(&r.name, &c.config, None)?.halt_signal
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
        sys::signal(&pidfd, libc::SIGKILL);
        sys::wait_pidfd(&pidfd, Some(Duration::from_secs(30)));
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
