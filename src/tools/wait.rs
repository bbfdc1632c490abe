//! `lxc-wait -n NAME -s 'STATE[|STATE...]' [-t TIMEOUT]`: exit 0 once the
//! container is in one of the states, 1 when TIMEOUT seconds pass first.

use super::watch::Watcher;
use crate::common::{self, Common};
use anyhow::{anyhow, bail};
use std::time::{Duration, Instant};
use strata_core::ContainerRef;
use strata_runtime::state_view::{self, State};

#[derive(clap::Parser, Debug)]
#[command(about = "Wait for a container to reach one of some states", version)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    name: String,
    /// ORed states to wait for: STOPPED, STARTING, RUNNING, STOPPING, ABORTING, FREEZING, FROZEN, THAWED
    #[arg(short = 's', long = "state")]
    state: Option<String>,
    /// Seconds to wait for state changes (-1: forever)
    #[arg(short = 't', long = "timeout", default_value_t = -1, allow_negative_numbers = true)]
    timeout: i64,
    #[command(flatten)]
    common: Common,
}

/// `RUNNING|FROZEN` as LXC reads it; an unknown name is an error.
pub fn parse_states(s: &str) -> anyhow::Result<Vec<State>> {
    s.split('|')
        .map(|t| State::parse(t).ok_or_else(|| anyhow!("invalid state '{t}'")))
        .collect()
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let Some(states) = &a.state else {
        bail!("missing state option to wait for");
    };
    let want = parse_states(states)?;
    let lxcpath = common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    common::check_name(&a.name)?;
    let r = ContainerRef::new(&lxcpath, &a.name);
    let deadline = (a.timeout >= 0).then(|| Instant::now() + Duration::from_secs(a.timeout as u64));
    let mut w = Watcher::new(std::slice::from_ref(&lxcpath));
    let mut last = None;
    loop {
        let (st, _) = state_view::state(&r);
        // A thaw passes through THAWED on its way back to RUNNING, as in LXC.
        let thawed = last == Some(State::Frozen) && st == State::Running;
        if want.contains(&st) || (thawed && want.contains(&State::Thawed)) {
            return Ok(0);
        }
        last = Some(st);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            bail!("timed out after {}s waiting for {states} (state is {st})", a.timeout);
        }
        w.wait(deadline);
    }
}
