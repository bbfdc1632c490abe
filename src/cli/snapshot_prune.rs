//! `strata snapshot prune [-n NAME]`: remove the snapshots whose expiry
//! (`lxc-snapshot --expire`) has passed, never one that clones depend on.

use crate::common::Common;
use clap::Parser;
use std::ffi::OsString;
use std::path::Path;
use strata_core::engine::Engine;
use strata_core::{ContainerRef, ErrorKind, Store};

#[derive(Parser, Debug, Clone)]
#[command(name = "strata snapshot prune", about = "Remove expired snapshots", version)]
pub struct Args {
    /// Only this container's snapshots
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// What one prune did.
#[derive(Default)]
pub struct Outcome {
    /// `NAME/snapN` removed.
    pub pruned: Vec<String>,
    /// `NAME/snapN: why` kept although expired.
    pub kept: Vec<String>,
    /// `NAME/snapN: error` that could not be read or removed.
    pub failed: Vec<String>,
}

/// Prune the expired snapshots of `name` as of `now` (Unix seconds).
pub fn prune(engine: &Engine, lxcpath: &Path, name: &str, now: i64, out: &mut Outcome) {
    let st = Store::new(lxcpath);
    let r = ContainerRef::new(lxcpath, name);
    let snaps = match st.snapshots(name) {
        Ok(s) => s,
        Err(e) => return out.failed.push(format!("{name}: {e}")),
    };
    for s in snaps {
        let who = format!("{name}/{}", s.name);
        match st.snapshot_expiry(name, &s.name) {
            Ok(Some(t)) if t <= now => {}
            Ok(_) => continue,
            Err(e) => {
                out.failed.push(format!("{who}: {e}"));
                continue;
            }
        }
        // The engine refuses, changing nothing, a snapshot others hang on
        // (recorded clones, or clones its backend knows).
        match engine.destroy_snapshot(&r, &s.name) {
            Ok(()) => out.pruned.push(who),
            Err(e) if e.kind() == ErrorKind::HasDependents => out.kept.push(format!(
                "{who}: expired, kept: clones depend on it ({})",
                super::tree::hint(lxcpath, name)
            )),
            Err(e) => out.failed.push(format!("{who}: {e}")),
        }
    }
}

/// Print what was done; the failures as the command's one-line error.
pub fn report(out: &Outcome, quiet: bool) -> anyhow::Result<i32> {
    if !quiet {
        for p in &out.pruned {
            println!("pruned {p}");
        }
        for k in &out.kept {
            println!("{k}");
        }
    }
    crate::common::failures(&out.failed)
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
    let engine = crate::common::engine();
    crate::common::reconcile(&engine, &lxcpath);
    let now = strata_core::clock::now();
    let mut out = Outcome::default();
    for n in &names {
        prune(&engine, &lxcpath, n, now, &mut out);
    }
    report(&out, a.common.quiet)
}
