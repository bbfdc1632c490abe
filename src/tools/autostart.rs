//! `lxc-autostart`: start, stop, kill or reboot the containers of an lxcpath
//! that have `lxc.start.auto = 1`, in `lxc.start.order` (higher first when
//! starting, the reverse when stopping) and waiting `lxc.start.delay`
//! seconds after each start, filtered by `lxc.group` as LXC does: without
//! `-g`/`-a` only containers in no group; `-L` lists instead of acting.

use crate::cli::{self, Common};
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
}

fn selected(a: &Args, cfg: &Config) -> bool {
    if !a.ignore_auto && cfg.get("lxc.start.auto").map(str::trim) != Some("1") {
        return false;
    }
    if a.all {
        return true;
    }
    let mine: Vec<&str> = cfg
        .get_all("lxc.group")
        .into_iter()
        .flat_map(|g| g.split(','))
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .collect();
    let wanted: Vec<&str> = a.groups.iter().flat_map(|g| g.split(',')).map(str::trim).collect();
    if wanted.is_empty() {
        return mine.is_empty();
    }
    wanted.iter().any(|w| {
        if w.is_empty() {
            mine.is_empty()
        } else {
            mine.contains(w)
        }
    })
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    cli::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = cli::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let engine = cli::engine();
    crate::run::reap(&engine, &lxcpath);
    let store = Store::new(&lxcpath);
    let mut list = Vec::new();
    for name in store.list()? {
        let r = ContainerRef::new(&lxcpath, &name);
        let Ok(cfg) = Config::load_effective(&r.config_path()) else {
            continue;
        };
        if !selected(&a, &cfg) {
            continue;
        }
        let num = |k: &str| cfg.get(k).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(0);
        list.push(Auto {
            name,
            order: num("lxc.start.order"),
            delay: num("lxc.start.delay").max(0) as u64,
        });
    }
    // Starts go by descending order, stops by ascending; ties by name.
    list.sort_by(|x, y| y.order.cmp(&x.order).then(x.name.cmp(&y.name)));
    let stopping = a.shutdown || a.kill;
    if stopping {
        list.reverse();
    }
    let timeout = (a.timeout >= 0).then_some(a.timeout as u64);
    let mut failed = 0;
    for c in &list {
        if a.list {
            if stopping || a.reboot {
                println!("{}", c.name);
            } else {
                println!("{} {}", c.name, c.delay);
            }
            continue;
        }
        let r = ContainerRef::new(&lxcpath, &c.name);
        let running = strata_core::state::is_running(&r);
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
            strata_runtime::stop(&engine, &r, &o)
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
