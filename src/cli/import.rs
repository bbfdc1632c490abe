//! `strata import`: a container from an archive `strata export` wrote, an
//! Incus instance export or a Proxmox vzdump of a container (told apart by
//! their content; see strata_core::foreign).

use super::receive::StoreArgs;
use crate::common::Common;
use anyhow::Context;
use std::path::PathBuf;
use strata_core::foreign;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The archive
    pub file: PathBuf,
    /// NAME of the new container (default: the name it was exported under)
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let md = std::fs::metadata(&a.file).with_context(|| format!("{}", a.file.display()))?;
    if !md.is_file() {
        anyhow::bail!("{}: not a regular file", a.file.display());
    }
    let kind = foreign::detect(&a.file)?;
    let req = a.store.request(&lxcpath, a.name.clone())?;
    let engine = crate::common::engine();
    if lxcpath.is_dir() {
        crate::common::reconcile(&engine, &lxcpath);
    }
    if kind != foreign::Kind::Strata {
        let mut req = req;
        let pos = strata_core::stream::InputPos {
            size: md.len(),
            ..Default::default()
        };
        let progress = super::progress::Progress::reading("import", a.store.json, a.common.quiet, Some(pos.clone()));
        if let Some(p) = &progress {
            req.progress = Some(p.hook());
            req.input_pos = Some(pos);
        }
        let res = foreign::import(&engine, kind, &req, &a.file);
        if let Some(p) = &progress {
            p.finish(res.is_ok());
        }
        let (c, _, notes) = res?;
        if !a.common.quiet {
            for n in &notes {
                eprintln!("strata: {}: not carried: {n}", c.r.name);
            }
        }
        return Ok(0);
    }
    let f = std::fs::File::open(&a.file).with_context(|| format!("{}", a.file.display()))?;
    let input = std::io::BufReader::with_capacity(1 << 20, f);
    let (c, st) = a.store.receive("import", a.common.quiet, req, Box::new(input))?;
    super::receive::report(&c.r.name, &st, a.common.quiet);
    Ok(0)
}
