//! `strata export`: a container as a `.tar.zst` archive file.

use super::Common;
use anyhow::{anyhow, Context};
use std::io::Write;
use std::path::PathBuf;
use strata_core::engine::SendRequest;
use strata_core::store::ContainerRef;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// The archive to write (refused if it exists)
    pub file: PathBuf,
    /// Every snapshot too (with its time and comment)
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
    super::check_exists(&lxcpath, &a.name)?;
    let file = std::path::absolute(&a.file)?;
    if std::fs::symlink_metadata(&file).is_ok() {
        return Err(anyhow!("{} exists; not overwritten", file.display()));
    }
    let dir = file
        .parent()
        .ok_or_else(|| anyhow!("{}: no parent directory", file.display()))?;
    let fname = file
        .file_name()
        .ok_or_else(|| anyhow!("{}: no file name", file.display()))?;
    // Written beside its final name and renamed into place once complete:
    // a killed export never leaves a half archive under the name asked for.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", fname.to_string_lossy()))
        .suffix(".strata-tmp")
        .tempfile_in(dir)
        .with_context(|| format!("create a file in {}", dir.display()))?;
    let engine = super::engine();
    let req = SendRequest {
        r: ContainerRef::new(&lxcpath, &a.name),
        snapshots: a.snapshots,
        level: a.level,
    };
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        engine.send(&req, &mut w)?;
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(&file)
        .map_err(|e| anyhow!("{}: {}", file.display(), e.error))?;
    Ok(0)
}
