//! `lxc-freeze -n NAME` / `lxc-unfreeze -n NAME`: the container's freezer
//! cgroup (v1 `freezer.state`, cgroup2 `cgroup.freeze`) from its run record.

use crate::common::{self, Common};
use anyhow::bail;
use std::time::Duration;
use strata_core::{lxc_cmd, ContainerRef};
use strata_runtime::state_view::{self, State};

#[derive(clap::Parser, Debug)]
#[command(about = "Freeze or thaw every process of a container", version)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    name: String,
    #[command(flatten)]
    common: Common,
}

/// How long a freeze may take before it is reported as failed.
const TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(a: Args, freeze: bool) -> anyhow::Result<i32> {
    common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    common::check_exists_or_running(&lxcpath, &a.name)?;
    let r = ContainerRef::new(&lxcpath, &a.name);
    let (st, rec) = state_view::state(&r);
    let Some(rec) = rec else {
        if freeze {
            bail!("container {} is not running ({st})", a.name);
        }
        // Nothing of a stopped container is frozen: LXC's lxc-unfreeze succeeds too.
        return Ok(0);
    };
    // The monitor is told, as LXC's tools tell it: LXC's keeps the state it
    // reports from this, and either wakes its lxc-wait clients.
    let tell = |s: State| lxc_cmd::serve_state_clients(&r.lxcpath, &r.name, s as i32);
    if freeze {
        tell(State::Freezing);
        let res = strata_runtime::cgroup::freeze(&rec.cgroups, TIMEOUT);
        tell(if res.is_ok() { State::Frozen } else { State::Running });
        res?;
    } else if st != State::Running {
        tell(State::Thawed);
        strata_runtime::cgroup::thaw(&rec.cgroups, TIMEOUT)?;
        tell(State::Running);
    }
    Ok(0)
}
