//! `lxc-cgroup -n NAME KEY [VALUE]`: read or write a file of a running
//! container's cgroups, in whichever recorded directory has it (a v1
//! hierarchy's first, then the unified one).

use crate::common::{self, Common};
use anyhow::{anyhow, bail};
use std::io::Write;
use strata_core::ContainerRef;
use strata_runtime::state_view;

#[derive(clap::Parser, Debug)]
#[command(about = "Get or set a cgroup value of a running container", version)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    name: String,
    #[command(flatten)]
    common: Common,
    /// The cgroup file (state object), e.g. memory.limit_in_bytes
    #[arg(value_name = "STATE-OBJECT")]
    key: Option<String>,
    /// The value to write
    #[arg(value_name = "VALUE")]
    value: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let Some(key) = a.key.as_deref() else {
        bail!("missing state object");
    };
    let lxcpath = common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    common::check_exists_or_running(&lxcpath, &a.name)?;
    let r = ContainerRef::new(&lxcpath, &a.name);
    let (_, rec) = state_view::state(&r);
    let Some(rec) = rec else {
        bail!("'{}:{}' is not running", lxcpath.display(), a.name);
    };
    let path = state_view::cgroup_file(&rec.cgroups, key);
    match &a.value {
        Some(v) => {
            let path = path.ok_or_else(|| anyhow!("failed to assign '{v}' value to '{key}': no such cgroup file"))?;
            // One write, as the kernel wants it.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| anyhow!("failed to assign '{v}' value to '{key}': {e}"))?;
            f.write_all(v.as_bytes())
                .map_err(|e| anyhow!("failed to assign '{v}' value to '{key}': {e}"))?;
        }
        None => {
            let path = path.ok_or_else(|| anyhow!("failed to retrieve value of '{key}': no such cgroup file"))?;
            let text = std::fs::read(&path).map_err(|e| anyhow!("failed to retrieve value of '{key}': {e}"))?;
            // As LXC prints it: the file as it is, then a newline.
            let mut out = std::io::stdout().lock();
            out.write_all(&text)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(0)
}
