//! `strata info NAME`: the storage side of a container.

use crate::common::Common;
use std::path::PathBuf;
use strata_core::{depfile, state, Store};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Print JSON
    #[arg(long = "json")]
    pub json: bool,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    crate::common::check_exists(&lxcpath, &a.name)?;
    let engine = crate::common::engine();
    crate::common::reconcile(&engine, &lxcpath);
    let st = Store::new(&lxcpath);
    let c = st.load(&a.name)?;
    let r = st.r(&a.name);
    let snaps = st.snapshots(&a.name)?;
    let dependents = depfile::dependents(&r)?;
    let depends_on = depfile::depends_on(&r)?;
    let usage = engine
        .backends
        .for_spec(&c.rootfs)
        .ok()
        .and_then(|b| b.usage_reporter().map(|u| u.usage(&c.rootfs)))
        .transpose()?;
    let running = state::running(&r);
    let fmt_ref = |d: &strata_core::ContainerRef| -> String {
        if d.lxcpath == lxcpath {
            d.name.clone()
        } else {
            format!("{} ({})", d.name, d.lxcpath.display())
        }
    };
    if a.json {
        let v = serde_json::json!({
            "name": a.name,
            "lxcpath": lxcpath,
            "state": if running.is_some() { "RUNNING" } else { "STOPPED" },
            "backend": c.rootfs.kind(),
            "rootfs": c.rootfs.to_string(),
            "snapshots": snaps.iter().map(|s| serde_json::json!({"name": s.name, "timestamp": s.timestamp, "comment": s.comment, "rootfs": s.rootfs.to_string()})).collect::<Vec<_>>(),
            "dependents": dependents.iter().map(|d| serde_json::json!({"name": d.name, "lxcpath": d.lxcpath})).collect::<Vec<_>>(),
            "depends_on": depends_on.iter().map(|d| serde_json::json!({"name": d.name, "lxcpath": d.lxcpath})).collect::<Vec<_>>(),
            "usage": usage.map(|u| serde_json::json!({"exclusive": u.exclusive, "referenced": u.referenced})),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let list = |v: Vec<String>| if v.is_empty() { "-".to_string() } else { v.join(", ") };
    println!("Name:        {}", a.name);
    println!("Path:        {}", PathBuf::from(&lxcpath).join(&a.name).display());
    println!("State:       {}", if running.is_some() { "RUNNING" } else { "STOPPED" });
    println!("Backend:     {}", c.rootfs.kind());
    println!("Rootfs:      {}", c.rootfs);
    println!(
        "Snapshots:   {}",
        list(snaps.iter().map(|s| format!("{} ({})", s.name, s.timestamp)).collect())
    );
    println!("Dependents:  {}", list(dependents.iter().map(fmt_ref).collect()));
    println!("Depends on:  {}", list(depends_on.iter().map(fmt_ref).collect()));
    if let Some(u) = usage {
        let b = |x: Option<u64>| x.map_or("-".to_string(), |x| format!("{x} bytes"));
        println!(
            "Usage:       {} exclusive, {} referenced",
            b(u.exclusive),
            b(u.referenced)
        );
    }
    Ok(0)
}
