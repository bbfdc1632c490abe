//! `strata receive`: a container from a stream on stdin.

use crate::common::Common;
use anyhow::anyhow;
use std::io::IsTerminal;
use strata_core::engine::ReceiveRequest;
use strata_core::idmap::IdMap;
use strata_core::stream::StreamStats;
use strata_core::BackendOpts;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// NAME of the new container (default: the name it was sent under)
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub common: Common,
}

/// Where the received container goes (as lxc-create's flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Backing store: dir, overlay, btrfs, lvm, zfs or loop (default dir)
    #[arg(short = 'B', long = "bdev")]
    pub bdev: Option<String>,
    /// Filesystem type for lvm or loop (ext4, xfs, btrfs)
    #[arg(long = "fstype")]
    pub fstype: Option<String>,
    /// Filesystem size for lvm or loop: a number with unit B, K, M, G or T
    #[arg(long = "fssize")]
    pub fssize: Option<String>,
    #[arg(long = "vgname")]
    pub vgname: Option<String>,
    #[arg(long = "thinpool")]
    pub thinpool: Option<String>,
    #[arg(long = "zfsroot")]
    pub zfsroot: Option<String>,
    /// Make the container unprivileged with this id map, as in lxc.idmap
    /// ("u 0 100000 65536"; "b" for both); repeatable. Owners, ACLs and file
    /// capabilities are shifted into it on the way in
    #[arg(long = "map", value_name = "RANGE")]
    pub map: Vec<String>,
    /// Progress as JSON lines on stderr (for scripts)
    #[arg(long = "json")]
    pub json: bool,
}

impl StoreArgs {
    pub fn request(&self, lxcpath: &std::path::Path, name: Option<String>) -> anyhow::Result<ReceiveRequest> {
        let engine = crate::common::engine();
        if let Some(b) = &self.bdev {
            crate::common::check_backend(&engine, b)?;
        }
        let opts = crate::common::backend_opts(BackendOpts {
            fssize: self.fssize.as_deref().map(crate::common::parse_size).transpose()?,
            fstype: self.fstype.clone(),
            vgname: self.vgname.clone(),
            thinpool: self.thinpool.clone(),
            zfsroot: self.zfsroot.clone(),
            ..BackendOpts::default()
        })?;
        if let Some(n) = &name {
            crate::common::check_name(n)?;
        }
        let map = if self.map.is_empty() {
            None
        } else {
            let m = IdMap::parse(self.map.iter().map(String::as_str))?;
            m.check_caller()?;
            Some(m)
        };
        Ok(ReceiveRequest {
            lxcpath: lxcpath.to_path_buf(),
            name,
            backend: self.bdev.clone(),
            opts,
            map,
            progress: None,
            input_pos: None,
        })
    }

    /// Receive `input` as `req` asks, showing progress as asked.
    pub fn receive(
        &self,
        op: &'static str,
        quiet: bool,
        mut req: ReceiveRequest,
        input: Box<dyn std::io::Read + Send>,
    ) -> anyhow::Result<(strata_core::store::Container, StreamStats)> {
        let engine = crate::common::engine();
        if req.lxcpath.is_dir() {
            crate::common::reconcile(&engine, &req.lxcpath);
        }
        let progress = super::progress::Progress::new(op, self.json, quiet);
        req.progress = progress.as_ref().map(|p| p.hook());
        let res = engine.receive(&req, input);
        if let Some(p) = &progress {
            p.finish(res.is_ok());
        }
        Ok(res?)
    }
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(anyhow!(
            "refusing to read a stream from a terminal: redirect or pipe stdin"
        ));
    }
    let req = a.store.request(&lxcpath, a.name.clone())?;
    let (c, st) = a.store.receive("receive", a.common.quiet, req, Box::new(stdin))?;
    report(&c.r.name, &st, a.common.quiet);
    Ok(0)
}

/// What the received container needs and the stream did not carry.
pub fn report(name: &str, st: &StreamStats, quiet: bool) {
    if quiet {
        return;
    }
    if !st.kept_snapshots.is_empty() {
        eprintln!(
            "strata: {name}: kept snapshots the sender does not have: {}",
            st.kept_snapshots.join(", ")
        );
    }
    for x in &st.external {
        eprintln!(
            "strata: {name}: {} = {}: not carried by the stream ({}); it must exist here",
            x.key,
            x.path.display(),
            x.why
        );
    }
}
