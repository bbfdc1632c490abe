//! `lxc-destroy` / `strata destroy`.

use crate::common::Common;
use std::ffi::OsString;
use std::path::Path;
use strata_core::engine::DestroyRequest;
use strata_core::ContainerRef;

#[derive(clap::Parser, Debug, Clone)]
#[command(about = "Destroy a container", version)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Destroy its snapshots too
    #[arg(short = 's', long = "snapshots")]
    pub snapshots: bool,
    /// Stop it first if it is running
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// zfs: promote the clones made from its snapshots so that the destroy can go on
    #[arg(long = "promote")]
    pub promote: bool,
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
    let engine = crate::common::engine();
    crate::common::reconcile(&engine, &lxcpath);
    let r = ContainerRef::new(&lxcpath, &a.name);
    if a.force && strata_core::state::is_running(&r) {
        // Stopped through the runtime, which unmounts, removes the cgroups
        // and the record even when the container's monitor is gone.
        let o = strata_runtime::StopOpts {
            kill: true,
            ..Default::default()
        };
        if let Err(e) = strata_runtime::stop(&engine, &r, &o) {
            if strata_core::state::is_running(&r) {
                return Err(e.into());
            }
        }
    }
    // lxc.hook.destroy, before anything is removed; a failing one stops the destroy.
    if let Ok(eff) = strata_core::config::Config::load_effective(&r.config_path()) {
        let hooks = strata_runtime::hooks::Hooks::from_config(&eff)?;
        if hooks.has("destroy") {
            let spec = eff.get("lxc.rootfs.path").unwrap_or_default().to_string();
            let mnt = eff.get("lxc.rootfs.mount").unwrap_or_default().to_string();
            let env = strata_runtime::hooks::env_of(&a.name, &r.config_path(), Path::new(&mnt), &spec);
            hooks.run("destroy", &env, &[], &[])?;
        }
    }
    let promoted = engine
        .destroy_reporting(&DestroyRequest {
            r: r.clone(),
            with_snapshots: a.snapshots,
            force: a.force,
            promote: a.promote,
        })
        .map_err(|e| with_tree_hint(e, &lxcpath, &a.name))?;
    for p in promoted {
        eprintln!("promoted {p}");
    }
    Ok(0)
}

/// A refusal because others depend on a container, with where to see them.
pub fn with_tree_hint(e: strata_core::Error, lxcpath: &Path, name: &str) -> anyhow::Error {
    if e.kind() == strata_core::ErrorKind::HasDependents {
        anyhow::anyhow!("{e}; {}", super::tree::hint(lxcpath, name))
    } else {
        e.into()
    }
}
