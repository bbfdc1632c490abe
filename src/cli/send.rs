//! `strata send`: a container as a stream on stdout. Also what `strata
//! export` shares with it: the arguments and the stream writer, so that
//! the two differ only in where the bytes go.

use crate::common::Common;
use anyhow::anyhow;
use std::io::{IsTerminal, Write};
use std::os::fd::FromRawFd;
use strata_core::engine::{Engine, SendRequest};
use strata_core::store::ContainerRef;
use strata_core::stream::StreamStats;

#[derive(clap::Args, Debug, Clone)]
#[group(id = "stream")]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Send every snapshot too (with its time and comment)
    #[arg(long = "snapshots")]
    pub snapshots: bool,
    /// Incremental: only what changed since snapshot SNAP, which the
    /// receiving side has (with --snapshots, also the snapshots after it)
    #[arg(long = "from", value_name = "SNAP")]
    pub from: Option<String>,
    /// Each tree as its backend's own stream (btrfs send, zfs send; incremental
    /// with --from), which only the same backend receives (--optimized:
    /// the same for an archive)
    #[arg(long = "native", visible_alias = "optimized")]
    pub native: bool,
    /// Progress as JSON lines on stderr (for scripts)
    #[arg(long = "json")]
    pub json: bool,
    /// zstd compression level (1-19; default 3)
    #[arg(long = "level", default_value_t = 3)]
    pub level: i32,
    #[command(flatten)]
    pub common: Common,
}

/// Write the stream `a` asks for through `write` (to stdout, to a file),
/// then tell what it could not carry.
pub fn write_stream(
    a: &Args,
    op: &'static str,
    write: impl FnOnce(&Engine, &SendRequest) -> strata_core::Result<StreamStats>,
) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    if !(1..=19).contains(&a.level) {
        return Err(anyhow!("--level {}: not between 1 and 19", a.level));
    }
    crate::common::check_exists(&lxcpath, &a.name)?;
    let engine = crate::common::engine();
    let progress = super::progress::Progress::new(op, a.json, a.common.quiet);
    let req = SendRequest {
        r: ContainerRef::new(&lxcpath, &a.name),
        snapshots: a.snapshots,
        level: a.level,
        from: a.from.clone(),
        native: a.native,
        progress: progress.as_ref().map(|p| p.hook()),
    };
    let res = write(&engine, &req);
    if let Some(p) = &progress {
        p.finish(res.is_ok());
    }
    let st = res?;
    if !a.common.quiet {
        if st.skipped_sockets > 0 {
            eprintln!(
                "strata: {}: {} sockets not sent (tar cannot carry them)",
                a.name, st.skipped_sockets
            );
        }
        for x in &st.external {
            eprintln!(
                "strata: {}: {} = {}: not sent ({}); the target needs its own",
                a.name,
                x.key,
                x.path.display(),
                x.why
            );
        }
    }
    Ok(0)
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    // Written straight to fd 1 (the stream comes out of the compressor in
    // large chunks): std's stdout is line-buffered, and cuts binary data at
    // every newline byte.
    // SAFETY: fd 1 stays open for the life of the process; ManuallyDrop never closes it.
    let mut out = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    if out.is_terminal() {
        return Err(anyhow!(
            "refusing to write a stream to a terminal: redirect or pipe stdout"
        ));
    }
    write_stream(a, "send", |engine, req| {
        let st = engine.send(req, &mut *out)?;
        out.flush()
            .map_err(|e| strata_core::Error::io("send", std::path::Path::new("stdout"), e))?;
        Ok(st)
    })
}
