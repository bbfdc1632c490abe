//! Ephemeral runs: a snapshot clone started and destroyed when it stops.

use crate::daemon::{daemonize, Notifier};
use crate::monitor::{destroy_quietly, monitor_loop};
use crate::sys::random_suffix;
use crate::{my_record, StartOpts};
use strata_core::engine::{CloneRequest, Engine};
use strata_core::state::{self};
use strata_core::{err, ContainerRef, Result, Store};

/// An ephemeral run.
#[derive(Debug, Clone, Default)]
pub struct EphemeralOpts {
    /// `-N`; `None`: `BASE_XXXXXX`.
    pub name: Option<String>,
    /// `-D`: keep the container after it stops.
    pub keep: bool,
    pub start: StartOpts,
}

/// The name an ephemeral run will use.
pub fn ephemeral_name(base: &ContainerRef, o: &EphemeralOpts) -> String {
    match &o.name {
        Some(n) => n.clone(),
        None => loop {
            let n = format!("{}_{}", base.name, random_suffix(6));
            if std::fs::symlink_metadata(base.lxcpath.join(&n)).is_err() {
                break n;
            }
        },
    }
}

/// `lxc-copy -e` / `lxc-start-ephemeral`: a snapshot clone of `base` named
/// `name`, started, and destroyed when it stops (unless `keep`).
pub fn ephemeral(engine: &Engine, base: &ContainerRef, name: &str, o: &EphemeralOpts) -> Result<i32> {
    let _s = tracing::info_span!("ephemeral", base = %base.name, name).entered();
    if o.start.daemon {
        daemonize(|n| run_ephemeral(engine, base, name, o, n))
    } else {
        run_ephemeral(engine, base, name, o, &mut Notifier(None))
    }
}

pub(crate) fn run_ephemeral(
    engine: &Engine,
    base: &ContainerRef,
    name: &str,
    o: &EphemeralOpts,
    n: &mut Notifier,
) -> Result<i32> {
    const OP: &str = "ephemeral";
    strata_core::names::validate(name)?;
    let dst = ContainerRef::new(&base.lxcpath, name);
    for m in &o.start.extra_mounts {
        if std::fs::symlink_metadata(&m.source).is_err() {
            return Err(err!(NotFound, OP, "bind source {} does not exist", m.source));
        }
    }
    if std::fs::symlink_metadata(dst.dir()).is_ok() {
        return Err(err!(AlreadyExists, OP, "container {name} already exists"));
    }
    // A throwaway clone the caller could not destroy is not made (it lands where the base is).
    if !o.keep {
        if let Ok(c) = Store::new(&base.lxcpath).load(&base.name) {
            engine.backends.for_spec(&c.rootfs)?.check_destroy(&c.rootfs)?;
        }
    }
    // The record comes first: a reaper sees a live monitor, a crash leaves a record to reap by.
    state::write(&dst, &my_record(!o.keep))?;
    let req = CloneRequest {
        src: base.clone(),
        dst: dst.clone(),
        snapshot: true,
        ..Default::default()
    };
    // A throwaway container need not reach the disk, from its clone to its
    // destroy: a crash leaves a leftover that the reaper removes.
    let _volatile = (!o.keep).then(strata_core::durable::volatile);
    let made = engine.clone_container(&req).and_then(|c| {
        if !o.keep {
            crate::reap::mark_ran(&dst)?;
            let mut cfg = c.config.clone();
            cfg.set("lxc.ephemeral", "1");
            cfg.save(&dst.config_path())?;
        }
        Ok(())
    });
    if let Err(e) = made {
        let _ = state::remove(&dst);
        if std::fs::symlink_metadata(dst.dir()).is_ok() {
            let _ = destroy_quietly(engine, &dst);
        }
        return Err(e);
    }
    let res = monitor_loop(engine, &dst, &o.start, !o.keep, n);
    if res.is_err() && !o.keep {
        let _ = state::remove(&dst);
        let _ = destroy_quietly(engine, &dst);
    }
    res
}
