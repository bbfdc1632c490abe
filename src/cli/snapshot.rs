//! `lxc-snapshot` / `strata snapshot`: create, list, restore, destroy.

use crate::common::Common;
use anyhow::{anyhow, Context};
use std::ffi::OsString;
use std::path::PathBuf;
use strata_core::{names, ContainerRef};

#[derive(clap::Parser, Debug, Clone)]
#[command(about = "Snapshot a container", version)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// List the snapshots
    #[arg(short = 'L', long = "list", conflicts_with_all = ["restore", "destroy", "comment"])]
    pub list: bool,
    /// With -L: show the comments
    #[arg(short = 'C', long = "showcomments", requires = "list")]
    pub showcomments: bool,
    /// Restore snapshot SNAP (e.g. snap0)
    #[arg(short = 'r', long = "restore", value_name = "SNAP", conflicts_with_all = ["destroy", "comment"])]
    pub restore: Option<String>,
    /// With -r: restore into a new container NEWNAME
    #[arg(short = 'N', long = "newname", requires = "restore")]
    pub newname: Option<String>,
    /// Destroy snapshot SNAP, or ALL
    #[arg(short = 'd', long = "destroy", value_name = "SNAP", conflicts_with = "comment")]
    pub destroy: Option<String>,
    /// Store the contents of FILE as the new snapshot's comment
    #[arg(short = 'c', long = "comment", value_name = "FILE")]
    pub comment: Option<PathBuf>,
    /// The new snapshot expires after DURATION (7d, 12h, 30m, 2w; `strata snapshot prune` removes it then)
    #[arg(long = "expire", value_name = "DURATION", conflicts_with_all = ["list", "restore", "destroy"])]
    pub expire: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

pub fn main(tool: &str, args: Vec<OsString>) -> i32 {
    match crate::common::parse::<Args>(tool, args) {
        Ok(a) => run_args(tool, a),
        Err(code) => code,
    }
}

pub fn run_args(tool: &str, a: Args) -> i32 {
    crate::common::finish(tool, Some(&a.name.clone()), run(&a))
}

fn run(a: &Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    crate::common::check_exists(&lxcpath, &a.name)?;
    let r = ContainerRef::new(&lxcpath, &a.name);
    if let Some(s) = &a.restore {
        names::validate_snapshot(s)?;
    }
    if let Some(s) = a.destroy.as_deref().filter(|s| *s != "ALL") {
        names::validate_snapshot(s)?;
    }
    if let Some(n) = &a.newname {
        crate::common::check_free(&lxcpath, n)?;
    }
    let expire = match &a.expire {
        Some(d) => Some(strata_core::clock::now().saturating_add(strata_core::clock::parse_duration(d)? as i64)),
        None => None,
    };
    let comment = match &a.comment {
        Some(f) => Some(std::fs::read_to_string(f).with_context(|| format!("read comment file {}", f.display()))?),
        None => None,
    };
    let engine = crate::common::engine();
    crate::common::reconcile(&engine, &lxcpath);
    if a.list {
        let snaps = engine.snapshots(&r)?;
        if snaps.is_empty() {
            if !a.common.quiet {
                println!("No snapshots");
            }
            return Ok(0);
        }
        let snaps_dir = r.dir().join("snaps");
        let mut out = String::new();
        for s in snaps {
            out.push_str(&format!("{} ({}) {}\n", s.name, snaps_dir.display(), s.timestamp));
            if a.showcomments {
                if let Some(c) = s.comment.filter(|c| !c.is_empty()) {
                    out.push_str(&c);
                    if !c.ends_with('\n') {
                        out.push('\n');
                    }
                }
            }
        }
        print!("{out}");
    } else if let Some(snap) = &a.restore {
        if !engine.snapshots(&r)?.iter().any(|s| &s.name == snap) {
            return Err(anyhow!("snapshot {snap} does not exist"));
        }
        engine.restore(&r, snap, a.newname.as_deref())?;
    } else if let Some(snap) = &a.destroy {
        if snap != "ALL" && !engine.snapshots(&r)?.iter().any(|s| &s.name == snap) {
            return Err(anyhow!("snapshot {snap} does not exist"));
        }
        engine
            .destroy_snapshot(&r, snap)
            .map_err(|e| super::destroy::with_tree_hint(e, &lxcpath, &a.name))?;
    } else {
        let snap = engine.snapshot_expiring(&r, comment.as_deref(), expire)?;
        tracing::info!("created {snap}");
    }
    Ok(0)
}
