//! `lxc-clone`, as LXC 1.x had it: `-o ORIG -n NEW`, `-p` the original's
//! lxcpath, `-P` the new one.

use anyhow::anyhow;
use std::ffi::OsString;
use std::path::PathBuf;
use strata_core::engine::CloneRequest;
use strata_core::{BackendOpts, ContainerRef};

#[derive(clap::Parser, Debug, Clone)]
#[command(about = "Clone a container (LXC 1.x interface)", version)]
pub struct Args {
    /// Original container
    #[arg(short = 'o', long = "orig")]
    pub orig: Option<String>,
    /// New container
    #[arg(short = 'n', long = "new")]
    pub new: Option<String>,
    /// Copy-on-write snapshot instead of a full copy
    #[arg(short = 's', long = "snapshot")]
    pub snapshot: bool,
    /// Backing store of the clone
    #[arg(short = 'B', long = "backingstore")]
    pub backingstore: Option<String>,
    /// Size of a new block device (unit B, K, M, G, T; default M)
    #[arg(short = 'L', long = "size")]
    pub size: Option<String>,
    /// Keep the hostname
    #[arg(short = 'K', long = "keepname")]
    pub keepname: bool,
    /// Keep the MAC addresses
    #[arg(short = 'M', long = "keepmac")]
    pub keepmac: bool,
    /// Rename instead of copy
    #[arg(short = 'R', long = "rename")]
    pub rename: bool,
    /// lxcpath of the original
    #[arg(short = 'p', long = "lxcpath")]
    pub lxcpath: Option<PathBuf>,
    /// lxcpath of the clone
    #[arg(short = 'P', long = "newpath")]
    pub newpath: Option<PathBuf>,
    /// Filesystem type of a new block device
    #[arg(short = 't', long = "fstype")]
    pub fstype: Option<String>,
    /// LVM volume group
    #[arg(short = 'v', long = "vgname")]
    pub vgname: Option<String>,
    /// Log priority
    #[arg(short = 'l', long = "logpriority")]
    pub logpriority: Option<String>,
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// ORIG and NEW, when not given with -o and -n
    pub positional: Vec<String>,
}

pub fn main(tool: &str, args: Vec<OsString>) -> i32 {
    match crate::common::parse::<Args>(tool, args) {
        Ok(a) => {
            let name = a.orig.clone().or_else(|| a.positional.first().cloned());
            crate::common::finish(tool, name.as_deref(), run(&a))
        }
        Err(code) => code,
    }
}

fn run(a: &Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.logpriority.as_deref(), None)?;
    let mut pos = a.positional.iter();
    let orig = a.orig.clone().or_else(|| pos.next().cloned());
    let new = a.new.clone().or_else(|| pos.next().cloned());
    if pos.next().is_some() {
        return Err(anyhow!("too many arguments"));
    }
    let (Some(orig), Some(new)) = (orig, new) else {
        return Err(anyhow!("you must provide orig and new names (-o ORIG -n NEW)"));
    };
    let lxcpath = crate::common::resolve_lxcpath(a.lxcpath.as_deref())?;
    let newpath = match &a.newpath {
        Some(p) => std::path::absolute(p)?,
        None => lxcpath.clone(),
    };
    let req = CloneRequest {
        src: ContainerRef::new(&lxcpath, &orig),
        dst: ContainerRef::new(&newpath, &new),
        snapshot: a.snapshot,
        backend: a.backingstore.clone(),
        opts: BackendOpts {
            fssize: a.size.as_deref().map(crate::common::parse_size).transpose()?,
            fstype: a.fstype.clone(),
            vgname: a.vgname.clone(),
            ..Default::default()
        },
        keep_name: a.keepname,
        keep_mac: a.keepmac,
        rename: a.rename,
        run_hooks: true,
        progress: crate::common::progress(),
        idmap: None,
    };
    super::copy::clone(req)?;
    if !a.quiet && !a.rename {
        println!(
            "Created container {new} as {} of {orig}",
            if a.snapshot { "snapshot" } else { "copy" }
        );
    }
    Ok(0)
}
