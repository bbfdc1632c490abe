//! `strata send`: a container as a stream on stdout.

use super::Common;
use anyhow::anyhow;
use std::io::{IsTerminal, Write};
use strata_core::engine::SendRequest;
use strata_core::store::ContainerRef;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Send every snapshot too (with its time and comment)
    #[arg(long = "snapshots")]
    pub snapshots: bool,
    /// zstd compression level (1-19; default 3)
    #[arg(long = "level", default_value_t = 3)]
    pub level: i32,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    super::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = super::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let mut out = std::io::stdout().lock();
    if out.is_terminal() {
        return Err(anyhow!(
            "refusing to write a stream to a terminal: redirect or pipe stdout"
        ));
    }
    super::check_exists(&lxcpath, &a.name)?;
    let engine = super::engine();
    let req = SendRequest {
        r: ContainerRef::new(&lxcpath, &a.name),
        snapshots: a.snapshots,
        level: a.level,
    };
    let st = engine.send(&req, &mut out)?;
    out.flush()?;
    if st.skipped_sockets > 0 && !a.common.quiet {
        eprintln!(
            "strata: {}: {} sockets not sent (tar cannot carry them)",
            a.name, st.skipped_sockets
        );
    }
    Ok(0)
}
