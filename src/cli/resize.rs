//! `strata resize -n NAME SIZE`: grow (or shrink, where the filesystem
//! can) a container's rootfs: a loop image with its filesystem, a btrfs
//! qgroup limit, ... as its backend's resizer does it; refused, naming the
//! backend, where it has none.

use crate::common::Common;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// The new size, as --fssize takes it (bytes with a K, M, G or T suffix; MiB without)
    pub size: String,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let bytes = crate::common::parse_size(&a.size)?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    crate::common::check_exists(&lxcpath, &a.name)?;
    let engine = crate::common::engine();
    crate::common::reconcile(&engine, &lxcpath);
    let now = engine.resize(&strata_core::ContainerRef::new(&lxcpath, &a.name), bytes)?;
    println!("{}: {} bytes", a.name, now);
    Ok(0)
}
