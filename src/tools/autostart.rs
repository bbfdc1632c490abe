//! `lxc-autostart`: start, stop, kill or reboot the containers of an lxcpath
//! that have `lxc.start.auto = 1`, as LXC 5's does: one pass per group of
//! `-g` in the order given (without `-g`/`-a`, one pass for the containers
//! in no group), each pass in ascending `lxc.start.order` (then name;
//! descending for a shutdown or kill); `lxc.start.delay` seconds after each start or reboot; `-L`
//! lists what would be acted on (a start the stopped ones, a stop or reboot
//! the running ones) instead of acting.

use crate::common::{self, Common};
use strata_core::config::Config;
use strata_core::{ContainerRef, Store};

#[derive(clap::Parser, Debug)]
#[command(about = "Start, stop, kill or reboot the containers marked lxc.start.auto", version)]
pub struct Args {
    /// Reboot the containers
    #[arg(short = 'r', long = "reboot")]
    reboot: bool,
    /// Shut the containers down (halt signal, then kill after -t)
    #[arg(short = 's', long = "shutdown")]
    shutdown: bool,
    /// Kill the containers
    #[arg(short = 'k', long = "kill")]
    kill: bool,
    /// List the containers (and the delay after each start) instead of acting
    #[arg(short = 'L', long = "list")]
    list: bool,
    /// Seconds to wait for a shutdown or reboot
    #[arg(short = 't', long = "timeout", default_value_t = 60, allow_negative_numbers = true)]
    timeout: i64,
    /// Only containers in these groups (comma-separated, repeatable; an empty name is no group)
    #[arg(short = 'g', long = "groups")]
    groups: Vec<String>,
    /// Every container, whatever its groups
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Also containers without lxc.start.auto
    #[arg(short = 'A', long = "ignore-auto")]
    ignore_auto: bool,
    #[command(flatten)]
    common: Common,
}

struct Auto {
    name: String,
    order: i64,
    delay: u64,
    /// `lxc.group`s; `None` when there are none (LXC's NULL group).
    groups: Option<Vec<String>>,
}

/// `-g` values as LXC's accumulate_list reads them: comma-separated, an
/// empty field being the NULL group, an entry that an earlier one is a
/// prefix of dropped as a duplicate (so everything after an empty field is).
fn wanted_groups(args: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in args {
        for f in a.split(',') {
            if !out.iter().any(|g| f.starts_with(g.as_str())) {
                out.push(f.to_string());
            }
        }
    }
    out
}

/// Whether a container with `groups` is in group `g` (LXC's
/// list_contains_entry: one of its groups is a prefix of `g`).
fn in_group(g: &str, groups: &Option<Vec<String>>) -> bool {
    match groups {
        None => g.is_empty(),
        Some(v) => v.iter().any(|c| g.starts_with(c.as_str())),
    }
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let engine = common::engine();
    crate::common::reap(&engine, &lxcpath);
    let store = Store::new(&lxcpath);
    let mut cands = Vec::new();
    for name in store.list()? {
        let r = ContainerRef::new(&lxcpath, &name);
        let Ok(cfg) = Config::load_effective(&r.config_path()) else {
            continue;
        };
        if !a.ignore_auto && cfg.get("lxc.start.auto").map(str::trim) != Some("1") {
            continue;
        }
        let num = |k: &str| cfg.get(k).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(0);
        let groups: Vec<String> = cfg
            .get_all("lxc.group")
            .into_iter()
            .flat_map(|g| g.split([',', ' ', '\t']))
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect();
        cands.push(Auto {
            name,
            order: num("lxc.start.order"),
            delay: num("lxc.start.delay").max(0) as u64,
            groups: (!groups.is_empty()).then_some(groups),
        });
    }
    // Ascending order, then name; a shutdown or kill the reverse, as LXC
    // 5.0 sorts them.
    cands.sort_by(|x, y| x.order.cmp(&y.order).then(x.name.cmp(&y.name)));
    if a.shutdown || a.kill {
        cands.reverse();
    }
    let passes = match wanted_groups(&a.groups) {
        g if g.is_empty() || a.all => vec![String::new()],
        g => g,
    };
    let mut taken = vec![false; cands.len()];
    let mut list = Vec::new();
    for g in &passes {
        for (i, c) in cands.iter().enumerate() {
            if !taken[i] && (a.all || in_group(g, &c.groups)) {
                taken[i] = true;
                list.push(c);
            }
        }
    }
    let stopping = a.shutdown || a.kill;
    let timeout = (a.timeout >= 0).then_some(a.timeout as u64);
    let mut failed = 0;
    for c in list {
        let r = ContainerRef::new(&lxcpath, &c.name);
        let running = strata_core::state::is_running(&r);
        if a.list {
            // What the action would touch: running ones for a stop or reboot, stopped ones for a start.
            if running == (stopping || a.reboot) {
                if stopping {
                    println!("{}", c.name);
                } else {
                    println!("{} {}", c.name, c.delay);
                }
            }
            continue;
        }
        let res = if stopping {
            if !running {
                continue;
            }
            let o = strata_runtime::StopOpts {
                kill: a.kill,
                timeout,
                ..Default::default()
            };
            strata_runtime::stop(&engine, &r, &o)
        } else if a.reboot {
            if !running {
                continue;
            }
            let o = strata_runtime::StopOpts {
                reboot: true,
                timeout,
                ..Default::default()
            };
            let r2 = strata_runtime::stop(&engine, &r, &o);
            if r2.is_ok() && c.delay > 0 {
                std::thread::sleep(std::time::Duration::from_secs(c.delay));
            }
            r2
        } else {
            if running {
                continue;
            }
            let o = strata_runtime::StartOpts {
                daemon: true,
                ..Default::default()
            };
            let r2 = strata_runtime::start(&engine, &r, &o).map(|_| ());
            if r2.is_ok() && c.delay > 0 {
                std::thread::sleep(std::time::Duration::from_secs(c.delay));
            }
            r2
        };
        if let Err(e) = res {
            eprintln!("lxc-autostart: {}: {e}", c.name);
            failed += 1;
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
