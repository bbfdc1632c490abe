//! `strata du`: the disk use of containers and their snapshots, from each
//! backend's own accounting (see `strata_core::UsageReport`), and the disk
//! lines of `lxc-info`.

use crate::common::Common;
use std::collections::BTreeMap;
use std::path::Path;
use strata_core::engine::Engine;
use strata_core::{RootfsSpec, Store, Usage};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Only this container
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    /// List each container's snapshots too
    #[arg(long = "snapshots")]
    pub snapshots: bool,
    /// Print JSON (sizes in bytes)
    #[arg(long = "json")]
    pub json: bool,
    /// Sizes in bytes, not humanized
    #[arg(short = 'H', long = "bytes")]
    pub bytes: bool,
    #[command(flatten)]
    pub common: Common,
}

/// One line of the listing: a container or one of its snapshots.
pub struct Row {
    pub container: String,
    pub snapshot: Option<String>,
    pub rootfs: Option<RootfsSpec>,
    pub usage: Result<Usage, String>,
}

impl Row {
    fn name(&self) -> String {
        match &self.snapshot {
            Some(s) => format!("{}/{s}", self.container),
            None => self.container.clone(),
        }
    }
}

/// The rows for `names` (each followed by its snapshots when asked), the
/// usage asked of each backend once for all its rootfs.
pub fn measure(engine: &Engine, lxcpath: &Path, names: &[String], snapshots: bool) -> Vec<Row> {
    let st = Store::new(lxcpath);
    let mut rows = Vec::new();
    for n in names {
        match st.load(n) {
            Ok(c) => rows.push(Row {
                container: n.clone(),
                snapshot: None,
                rootfs: Some(c.rootfs),
                usage: Err(String::new()),
            }),
            Err(e) => rows.push(Row {
                container: n.clone(),
                snapshot: None,
                rootfs: None,
                usage: Err(e.to_string()),
            }),
        }
        if snapshots {
            match st.snapshots(n) {
                Ok(list) => rows.extend(list.into_iter().map(|s| Row {
                    container: n.clone(),
                    snapshot: Some(s.name),
                    rootfs: Some(s.rootfs),
                    usage: Err(String::new()),
                })),
                Err(e) => rows.push(Row {
                    container: n.clone(),
                    snapshot: Some("?".into()),
                    rootfs: None,
                    usage: Err(e.to_string()),
                }),
            }
        }
    }
    // Grouped by backend: one `usage_many` call each.
    let mut by_kind: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if let Some(s) = &r.rootfs {
            by_kind.entry(s.kind().to_string()).or_default().push(i);
        }
    }
    for (kind, idx) in by_kind {
        let reporter = engine.backends.get(&kind).ok().and_then(|b| b.usage_reporter());
        let Some(rep) = reporter else {
            for i in idx {
                rows[i].usage = Err(format!("the {kind} backend cannot tell its disk use"));
            }
            continue;
        };
        let specs: Vec<&RootfsSpec> = idx.iter().filter_map(|&i| rows[i].rootfs.as_ref()).collect();
        let res = rep.usage_many(&specs);
        for (i, u) in idx.into_iter().zip(res) {
            rows[i].usage = u.map_err(|e| e.to_string());
        }
    }
    rows
}

fn size(v: Option<u64>, bytes: bool) -> String {
    match v {
        None => "-".into(),
        Some(v) if bytes => v.to_string(),
        Some(v) => strata_runtime::cgroup::humanize_size(v),
    }
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let names = crate::common::named_or_all(&lxcpath, a.name.as_deref())?;
    let engine = crate::common::engine();
    crate::common::reconcile(&engine, &lxcpath);
    let rows = measure(&engine, &lxcpath, &names, a.snapshots);
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|r| r.usage.as_ref().err().map(|e| format!("{}: {e}", r.name())))
        .collect();
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                let u = r.usage.as_ref().ok();
                serde_json::json!({
                    "container": r.container,
                    "snapshot": r.snapshot,
                    "backend": r.rootfs.as_ref().map(|s| s.kind().to_string()),
                    "rootfs": r.rootfs.as_ref().map(|s| s.to_string()),
                    "referenced": u.and_then(|u| u.referenced),
                    "exclusive": u.and_then(|u| u.exclusive),
                    "shared": u.and_then(|u| u.shared()),
                    "snapshots": u.and_then(|u| u.snapshots),
                    "source": u.map(|u| u.source.name()),
                    "error": r.usage.as_ref().err(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let mut table = vec![[
            "NAME".to_string(),
            "BACKEND".into(),
            "REFERENCED".into(),
            "EXCLUSIVE".into(),
            "SHARED".into(),
            "SOURCE".into(),
        ]];
        for r in &rows {
            let u = r.usage.as_ref().ok();
            table.push([
                r.name(),
                r.rootfs.as_ref().map_or("-".into(), |s| s.kind().to_string()),
                size(u.and_then(|u| u.referenced), a.bytes),
                size(u.and_then(|u| u.exclusive), a.bytes),
                size(u.and_then(|u| u.shared()), a.bytes),
                u.map_or("error".into(), |u| u.source.name().to_string()),
            ]);
        }
        let mut w = [0usize; 6];
        for l in &table {
            for (i, c) in l.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for l in &table {
            let mut line = String::new();
            for (i, c) in l.iter().enumerate() {
                if i == 5 {
                    line.push_str(c);
                } else {
                    line.push_str(&format!("{c:<width$}  ", width = w[i]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        print!("{out}");
    }
    crate::common::failures(&failed)
}

/// `lxc-info`'s disk lines, in LXC's `%-15s %s` form: what the rootfs
/// refers to and what only it holds, where its backend can tell. Nothing for
/// a container that is not defined in the lxcpath (a volatile one).
pub fn info_lines(engine: &Engine, lxcpath: &Path, name: &str, humanize: bool) -> String {
    let st = Store::new(lxcpath);
    if !st.exists(name) {
        return String::new();
    }
    let rows = measure(engine, lxcpath, &[name.to_string()], false);
    let Some(Ok(u)) = rows.first().map(|r| &r.usage) else {
        if let Some(Err(e)) = rows.first().map(|r| &r.usage) {
            tracing::warn!("disk use of {name}: {e}");
        }
        return String::new();
    };
    let mut out = String::new();
    if let Some(v) = u.referenced {
        out.push_str(&format!("{:<15} {}\n", "Disk use:", size(Some(v), !humanize)));
    }
    if let Some(v) = u.exclusive {
        out.push_str(&format!("{:<15} {}\n", "Disk excl. use:", size(Some(v), !humanize)));
    }
    out
}
