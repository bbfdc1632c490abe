//! `strata convert`: make a container unprivileged (shift its rootfs owners
//! to an id map and write the `lxc.idmap` lines) or privileged again.

use crate::common::{self, Common};
use anyhow::{anyhow, Context};
use strata_core::config::Config;
use strata_core::idmap::{IdMap, SubIds};
use strata_core::{paths, ContainerRef};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["to_unprivileged", "to_privileged"])))]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Shift the rootfs to an id map and write it to the config
    #[arg(long = "to-unprivileged")]
    pub to_unprivileged: bool,
    /// Shift the rootfs back to host ids and remove the id map from the config
    #[arg(long = "to-privileged")]
    pub to_privileged: bool,
    /// A range as in lxc.idmap ("u 0 100000 65536"; "b" for both); repeatable.
    /// Default: the lxc.idmap lines of default.conf, else the caller's first
    /// subordinate ranges, else 100000:65536
    #[arg(long = "map", value_name = "RANGE", requires = "to_unprivileged")]
    pub map: Vec<String>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run_args(tool: &str, a: Args) -> i32 {
    common::finish(tool, Some(&a.name.clone()), run(&a))
}

/// The map to convert to when none is given.
fn default_map() -> anyhow::Result<IdMap> {
    let dc = paths::default_conf();
    if dc.is_file() {
        let m = IdMap::from_config(&Config::load(&dc)?)?;
        if !m.is_empty() {
            return Ok(m);
        }
    }
    let s = SubIds::for_caller()?;
    let pick = |v: &[(u32, u32)]| v.first().map(|&(first, count)| (first, count.min(65536)));
    let (u, g) = match (pick(&s.uids), pick(&s.gids)) {
        (Some(u), Some(g)) => (u, g),
        _ if s.uid == 0 => ((100000, 65536), (100000, 65536)),
        _ => return Err(anyhow!("no id map given and user {} has no subordinate ids", s.name)),
    };
    Ok(IdMap::parse([
        format!("u 0 {} {}", u.0, u.1).as_str(),
        format!("g 0 {} {}", g.0, g.1).as_str(),
    ])?)
}

fn run(a: &Args) -> anyhow::Result<i32> {
    common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let to = if a.to_privileged {
        IdMap::default()
    } else if a.map.is_empty() {
        default_map().context("default id map")?
    } else {
        IdMap::parse(a.map.iter().map(String::as_str))?
    };
    to.check_caller()?;
    let r = ContainerRef::new(&lxcpath, &a.name);
    let rep = strata_core::shift::convert(&crate::wiring::backends(), &r, &to)?;
    if !a.common.quiet {
        println!(
            "{}{}: {} entries shifted ({} ACLs, {} file capabilities), now {}",
            if rep.resumed {
                "completed an interrupted conversion of "
            } else {
                ""
            },
            a.name,
            rep.stats.entries,
            rep.stats.acls,
            rep.stats.fcaps,
            if to.is_empty() {
                "privileged".to_string()
            } else {
                to.config_values().join(", ")
            }
        );
    }
    Ok(0)
}
