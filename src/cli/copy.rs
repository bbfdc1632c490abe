//! `lxc-copy` / `strata clone` (alias `copy`). With `-e` the runtime takes over.

use crate::common::Common;
use anyhow::anyhow;
use std::ffi::OsString;
use std::path::PathBuf;
use strata_core::engine::CloneRequest;
use strata_core::idmap::IdMap;
use strata_core::{BackendOpts, ContainerRef};

#[derive(clap::Parser, Debug, Clone)]
#[command(about = "Copy (clone) a container", version)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// NEWNAME of the copy
    #[arg(short = 'N', long = "newname")]
    pub newname: Option<String>,
    /// NEWPATH: the lxcpath of the copy
    #[arg(short = 'p', long = "newpath")]
    pub newpath: Option<PathBuf>,
    /// Rename the container instead of copying it
    #[arg(short = 'R', long = "rename")]
    pub rename: bool,
    /// Copy-on-write snapshot instead of a full copy
    #[arg(short = 's', long = "snapshot")]
    pub snapshot: bool,
    /// Backing store of the copy
    #[arg(short = 'B', long = "backingstorage", alias = "backingstore")]
    pub backingstorage: Option<String>,
    /// Size of a new block device (unit B, K, M, G, T; default M)
    #[arg(short = 'L', long = "fssize")]
    pub fssize: Option<String>,
    /// Keep the hostname
    #[arg(short = 'K', long = "keepname")]
    pub keepname: bool,
    /// Keep the MAC addresses
    #[arg(short = 'M', long = "keepmac")]
    pub keepmac: bool,
    /// Filesystem type of a new block device (strata)
    #[arg(long = "fstype")]
    pub fstype: Option<String>,
    #[arg(long = "vgname")]
    pub vgname: Option<String>,
    #[arg(long = "thinpool")]
    pub thinpool: Option<String>,
    #[arg(long = "lvname")]
    pub lvname: Option<String>,
    #[arg(long = "zfsroot")]
    pub zfsroot: Option<String>,
    /// Copy into this id map, shifting owners in the copy (strata; as
    /// lxc.idmap, e.g. "b 0 100000 65536"; "none" for privileged); repeatable
    #[arg(long = "idmap", value_name = "RANGE")]
    pub idmap: Vec<String>,
    /// Allow the copy of a running container (refused without it, as in LXC;
    /// even with it only a btrfs, zfs or lvm snapshot of a running one is made)
    #[arg(short = 'a', long = "allowrunning")]
    pub allowrunning: bool,
    /// Start an ephemeral copy
    #[arg(short = 'e', long = "ephemeral")]
    pub ephemeral: bool,
    /// Ephemeral: keep the data after stop
    #[arg(short = 'D', long = "keepdata")]
    pub keepdata: bool,
    /// Ephemeral: run in the foreground
    #[arg(short = 'F', long = "foreground")]
    pub foreground: bool,
    /// Ephemeral: daemonize (default)
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Ephemeral: put the upper dir on a tmpfs
    #[arg(short = 't', long = "tmpfs")]
    pub tmpfs: bool,
    /// Ephemeral: {bind,overlay}=/src[:/dst]
    #[arg(short = 'm', long = "mount")]
    pub mount: Vec<String>,
    #[command(flatten)]
    pub common: Common,
    /// Hook arguments (after `--`)
    #[arg(last = true)]
    pub hook_args: Vec<String>,
}

pub fn main(tool: &str, args: Vec<OsString>) -> i32 {
    let rest: Vec<OsString> = args.iter().skip(1).cloned().collect();
    match crate::common::parse::<Args>(tool, args) {
        Ok(a) => run_args(tool, a, rest),
        Err(code) => code,
    }
}

/// `raw` is the argument list without argv[0], handed to the runtime for `-e`.
pub fn run_args(tool: &str, a: Args, raw: Vec<OsString>) -> i32 {
    if a.ephemeral {
        return super::runtime("lxc-copy", raw);
    }
    crate::common::finish(tool, Some(&a.name.clone()), run(&a))
}

fn run(a: &Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    if a.keepdata || a.foreground || a.daemon || a.tmpfs || !a.mount.is_empty() {
        return Err(anyhow!("-D, -F, -d, -t and -m only go with -e"));
    }
    if !a.hook_args.is_empty() {
        return Err(anyhow!("clone hook arguments are not supported"));
    }
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let newpath = match &a.newpath {
        Some(p) => std::path::absolute(p)?,
        None => lxcpath.clone(),
    };
    let newname = match (&a.newname, &a.newpath) {
        (Some(n), _) => n.clone(),
        (None, Some(_)) => a.name.clone(),
        (None, None) => return Err(anyhow!("a new name is needed: -N NEWNAME (or -p NEWPATH)")),
    };
    crate::common::refuse_running(&ContainerRef::new(&lxcpath, &a.name), a.allowrunning)?;
    let req = CloneRequest {
        src: ContainerRef::new(&lxcpath, &a.name),
        dst: ContainerRef::new(&newpath, &newname),
        snapshot: a.snapshot,
        backend: a.backingstorage.clone(),
        opts: BackendOpts {
            fssize: a.fssize.as_deref().map(crate::common::parse_size).transpose()?,
            fstype: a.fstype.clone(),
            vgname: a.vgname.clone(),
            thinpool: a.thinpool.clone(),
            lvname: a.lvname.clone(),
            zfsroot: a.zfsroot.clone(),
            ..Default::default()
        },
        keep_name: a.keepname,
        keep_mac: a.keepmac,
        rename: a.rename,
        run_hooks: true,
        progress: crate::common::progress(),
        idmap: match a.idmap.as_slice() {
            [] => None,
            [none] if none == "none" => Some(IdMap::default()),
            v => Some(IdMap::parse(v.iter().map(String::as_str))?),
        },
    };
    if req.rename && req.idmap.is_some() {
        return Err(anyhow!("-R cannot be combined with --idmap"));
    }
    clone(req)?;
    Ok(0)
}

/// Checks shared by lxc-copy and lxc-clone, then the engine's clone.
pub fn clone(mut req: CloneRequest) -> anyhow::Result<()> {
    crate::common::check_exists(&req.src.lxcpath, &req.src.name)?;
    // Keys LXC 5 refuses in the source's config (or its includes) are refused here.
    strata_core::config::check_keys(&req.src.config_path())?;
    crate::common::check_name(&req.dst.name)?;
    if req.src == req.dst {
        return Err(anyhow!("the copy needs another name or another lxcpath"));
    }
    crate::common::check_free(&req.dst.lxcpath, &req.dst.name)?;
    let engine = crate::common::engine();
    if let Some(b) = &req.backend {
        crate::common::check_backend(&engine, b)?;
    }
    if req.rename && (req.snapshot || req.backend.is_some()) {
        return Err(anyhow!("-R cannot be combined with -s or -B"));
    }
    req.opts = crate::common::backend_opts(std::mem::take(&mut req.opts))?;
    crate::common::reconcile(&engine, &req.src.lxcpath);
    if req.dst.lxcpath != req.src.lxcpath {
        crate::common::reconcile(&engine, &req.dst.lxcpath);
    }
    engine.clone_container(&req)?;
    Ok(())
}
