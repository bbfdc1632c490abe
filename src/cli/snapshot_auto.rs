//! `strata snapshot auto [-n NAME]`: for each container with a schedule,
//! a snapshot when the newest is older than its interval, then the prune
//! of its expired ones. Meant for a cron line or a systemd timer.
//!
//! The schedule is strata's own, so it is not in the container's config
//! (LXC refuses keys it does not know): it lives in `strata.conf` in the
//! container dir, which LXC never reads, in the config syntax:
//!
//! ```text
//! lxc.snapshot.schedule = daily    # hourly, daily, weekly or a duration (6h, 2d)
//! lxc.snapshot.expire = 7d         # optional: each such snapshot expires after this
//! ```
//!
//! Any other key there is refused by name; in the container's config these
//! keys are refused (as LXC refuses them), pointing here.

use super::snapshot_prune::{prune, report, Outcome};
use crate::common::Common;
use anyhow::anyhow;
use clap::Parser;
use std::ffi::OsString;
use std::path::Path;
use strata_core::config::Config;
use strata_core::engine::Engine;
use strata_core::{clock, ContainerRef, Store};

use strata_core::config_keys::{strata_file_key_known, strata_file_keys, STRATA_FILE_NAME as FILE};

const SCHEDULE: &str = "lxc.snapshot.schedule";
const EXPIRE: &str = "lxc.snapshot.expire";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "strata snapshot auto",
    about = "Snapshot the containers whose schedule is due, and prune expired snapshots",
    version
)]
pub struct Args {
    /// Only this container
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// A container's schedule: (interval, expiry) in seconds; `None` without
/// a `strata.conf` or a schedule in it.
pub fn schedule(dir: &Path) -> anyhow::Result<Option<(u64, Option<u64>)>> {
    let p = dir.join(FILE);
    if std::fs::symlink_metadata(&p).is_err() {
        return Ok(None);
    }
    let c = Config::load(&p)?;
    for (k, _) in c.entries() {
        if !strata_file_key_known(&k) {
            return Err(anyhow!(
                "{}: unknown key {k} (known here: {})",
                p.display(),
                strata_file_keys().join(", ")
            ));
        }
    }
    let Some(every) = c.get(SCHEDULE) else {
        return Ok(None);
    };
    let every = clock::parse_duration(every).map_err(|e| anyhow!("{}: {SCHEDULE}: {e}", p.display()))?;
    let expire = c
        .get(EXPIRE)
        .map(clock::parse_duration)
        .transpose()
        .map_err(|e| anyhow!("{}: {EXPIRE}: {e}", p.display()))?;
    Ok(Some((every, expire)))
}

/// Snapshot `name` if its schedule is due at `now`; returns the snapshot made.
fn due(engine: &Engine, lxcpath: &Path, name: &str, now: i64) -> anyhow::Result<Option<String>> {
    let st = Store::new(lxcpath);
    let r = ContainerRef::new(lxcpath, name);
    let Some((every, expire)) = schedule(&r.dir())? else {
        return Ok(None);
    };
    let newest = st
        .snapshots(name)?
        .iter()
        .filter_map(|s| clock::parse_ts(&s.timestamp))
        .max();
    if newest.is_some_and(|t| now.saturating_sub(t) < every as i64) {
        return Ok(None);
    }
    let expire_at = expire.map(|e| now.saturating_add(e as i64));
    Ok(Some(engine.snapshot_expiring(
        &r,
        Some("strata snapshot auto\n"),
        expire_at,
    )?))
}

pub fn main(args: Vec<OsString>) -> i32 {
    match crate::common::parse::<Args>("strata", args) {
        Ok(a) => crate::common::finish("strata", a.name.clone().as_deref(), run(&a)),
        Err(code) => code,
    }
}

fn run(a: &Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let names = crate::common::named_or_all(&lxcpath, a.name.as_deref())?;
    if let Some(n) = &a.name {
        // A bad schedule of the one container asked for: nothing done.
        schedule(&lxcpath.join(n))?;
    }
    let engine = crate::common::engine();
    crate::common::reconcile(&engine, &lxcpath);
    let now = clock::now();
    let mut out = Outcome::default();
    for n in &names {
        match due(&engine, &lxcpath, n, now) {
            Ok(Some(s)) if !a.common.quiet => println!("snapshot {n}/{s}"),
            Ok(_) => {}
            Err(e) => out
                .failed
                .push(format!("{n}: {}", crate::common::one_line(&format!("{e:#}")))),
        }
        // Only containers with a schedule are pruned by `auto`.
        if matches!(schedule(&lxcpath.join(n)), Ok(Some(_))) {
            prune(&engine, &lxcpath, n, now, &mut out);
        }
    }
    report(&out, a.common.quiet)
}
