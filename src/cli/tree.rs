//! `strata tree`: containers, their snapshots and the clones made from
//! them, as a tree (name, backend, size, age), so that a user sees what
//! `lxc-destroy` would refuse and why.
//!
//! Edges: a container's snapshots (`snaps/snapN`), the clones its
//! `lxc_snapshots` records (also a snapshot's own), and the rootfs its
//! backend says hang on it (zfs clones, which are not recorded), matched to
//! the containers whose rootfs they are.

use crate::common::Common;
use crate::du;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use strata_core::engine::Engine;
use strata_core::{depfile, ContainerRef, Store};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Only this container and what hangs on it
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    /// Print JSON
    #[arg(long = "json")]
    pub json: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Container,
    Snapshot,
    Clone,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Snapshot => "snapshot",
            Kind::Clone => "clone",
        }
    }
}

struct Node {
    r: ContainerRef,
    /// How it hangs on its parent.
    kind: Kind,
    /// Display name: `NAME`, or `NAME (in LXCPATH)` elsewhere.
    label: String,
    backend: String,
    size: Option<u64>,
    created: Option<SystemTime>,
    children: Vec<Node>,
}

/// A container dir's age: its birth time where the filesystem keeps one,
/// else its config's last change.
fn created(r: &ContainerRef) -> Option<SystemTime> {
    let d = std::fs::metadata(r.dir()).ok()?;
    d.created()
        .ok()
        .or_else(|| std::fs::metadata(r.config_path()).and_then(|m| m.modified()).ok())
}

fn age(t: Option<SystemTime>, now: SystemTime) -> String {
    let Some(s) = t.and_then(|t| now.duration_since(t).ok()).map(|d| d.as_secs()) else {
        return "-".into();
    };
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

struct World<'a> {
    engine: &'a Engine,
    lxcpath: PathBuf,
    /// rootfs spec (as written) -> the container or snapshot that has it.
    by_rootfs: HashMap<String, ContainerRef>,
    seen: BTreeSet<ContainerRef>,
}

impl World<'_> {
    /// Children of `r`: snapshots first, then recorded clones, then the
    /// rootfs its backend knows hang on it.
    fn children(&self, r: &ContainerRef, with_snaps: bool) -> Vec<(ContainerRef, Kind)> {
        let mut out: Vec<(ContainerRef, Kind)> = Vec::new();
        let st = Store::new(&r.lxcpath);
        if with_snaps {
            if let Ok(snaps) = st.snapshots(&r.name) {
                let sp = st.snaps_path(&r.name);
                out.extend(
                    snaps
                        .into_iter()
                        .map(|s| (ContainerRef::new(&sp, s.name), Kind::Snapshot)),
                );
            }
        }
        let snaps_path = st.snaps_path(&r.name);
        for d in depfile::dependents(r).unwrap_or_default() {
            // A container's own snapshots may be recorded as its dependents.
            if !d.is_unknown() && !d.lxcpath.starts_with(&snaps_path) && !out.iter().any(|(o, _)| *o == d) {
                out.push((d, Kind::Clone));
            }
        }
        if let Ok(c) = Store::new(&r.lxcpath).load(&r.name) {
            if let Ok(b) = self.engine.backends.for_spec(&c.rootfs) {
                for spec in b.dependents(&c.rootfs).unwrap_or_default() {
                    if let Some(d) = self.by_rootfs.get(&spec.to_string()) {
                        if d != r && !out.iter().any(|(o, _)| o == d) {
                            out.push((d.clone(), Kind::Clone));
                        }
                    }
                }
            }
        }
        out
    }

    fn node(&mut self, r: ContainerRef, kind: Kind, sizes: &HashMap<ContainerRef, (String, Option<u64>)>) -> Node {
        self.seen.insert(r.clone());
        let label = if r.lxcpath == self.lxcpath || kind == Kind::Snapshot {
            r.name.clone()
        } else {
            format!("{} (in {})", r.name, r.lxcpath.display())
        };
        let (backend, size) = sizes.get(&r).cloned().unwrap_or_else(|| {
            let b = Store::new(&r.lxcpath)
                .load(&r.name)
                .map(|c| c.rootfs.kind().to_string())
                .unwrap_or_else(|_| "-".into());
            (b, None)
        });
        let mut n = Node {
            created: created(&r),
            kind,
            label,
            backend,
            size,
            children: Vec::new(),
            r: r.clone(),
        };
        for (c, k) in self.children(&r, kind != Kind::Snapshot) {
            // A cycle in hand-edited dependency files must not loop.
            if self.seen.contains(&c) || !c.config_path().is_file() {
                continue;
            }
            let child = self.node(c, k, sizes);
            n.children.push(child);
        }
        n
    }
}

fn draw(n: &Node, prefix: &str, last: bool, top: bool, now: SystemTime, out: &mut String) {
    let size = n.size.map_or("-".into(), strata_runtime::cgroup::humanize_size);
    let what = match n.kind {
        Kind::Container => String::new(),
        k => format!(" [{}]", k.name()),
    };
    let (branch, next) = if top {
        ("", String::new())
    } else if last {
        ("└── ", format!("{prefix}    "))
    } else {
        ("├── ", format!("{prefix}│   "))
    };
    out.push_str(&format!(
        "{prefix}{branch}{}{what} ({}, {size}, {})\n",
        n.label,
        n.backend,
        age(n.created, now)
    ));
    for (i, c) in n.children.iter().enumerate() {
        draw(c, &next, i + 1 == n.children.len(), false, now, out);
    }
}

fn to_json(n: &Node, now: SystemTime) -> serde_json::Value {
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_secs());
    serde_json::json!({
        "name": n.r.name,
        "lxcpath": n.r.lxcpath,
        "kind": n.kind.name(),
        "backend": n.backend,
        "size": n.size,
        "created": n.created.and_then(secs),
        "age_seconds": n.created.and_then(|t| now.duration_since(t).ok()).map(|d| d.as_secs()),
        "children": n.children.iter().map(|c| to_json(c, now)).collect::<Vec<_>>(),
    })
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    if let Some(n) = &a.name {
        crate::common::check_exists(&lxcpath, n)?;
    }
    let engine = crate::common::engine();
    crate::common::reconcile(&engine, &lxcpath);
    let st = Store::new(&lxcpath);
    let names = st.list()?;
    // Sizes (exclusive where known, else referenced) of every container
    // and snapshot of this lxcpath, each backend asked once.
    let rows = du::measure(&engine, &lxcpath, &names, true);
    let mut sizes = HashMap::new();
    let mut by_rootfs = HashMap::new();
    for row in &rows {
        let r = match &row.snapshot {
            Some(s) => ContainerRef::new(st.snaps_path(&row.container), s),
            None => ContainerRef::new(&lxcpath, &row.container),
        };
        if let Some(spec) = &row.rootfs {
            by_rootfs.insert(spec.to_string(), r.clone());
            let size = row.usage.as_ref().ok().and_then(|u| u.exclusive.or(u.referenced));
            sizes.insert(r, (spec.kind().to_string(), size));
        }
    }
    let mut w = World {
        engine: &engine,
        lxcpath: lxcpath.clone(),
        by_rootfs,
        seen: BTreeSet::new(),
    };
    let roots: Vec<String> = match &a.name {
        Some(n) => vec![n.clone()],
        None => {
            // Roots: containers no other container (or its snapshots) of
            // this lxcpath holds.
            let mut held = BTreeSet::new();
            for n in &names {
                let mut todo = vec![(st.r(n), true)];
                while let Some((r, with_snaps)) = todo.pop() {
                    for (c, k) in w.children(&r, with_snaps) {
                        if k == Kind::Snapshot {
                            todo.push((c, false));
                        } else if c.lxcpath == lxcpath && c.name != *n {
                            held.insert(c.name);
                        }
                    }
                }
            }
            names.iter().filter(|n| !held.contains(*n)).cloned().collect()
        }
    };
    let now = SystemTime::now();
    let mut trees = Vec::new();
    for n in roots {
        let r = st.r(&n);
        if w.seen.contains(&r) {
            continue;
        }
        trees.push(w.node(r, Kind::Container, &sizes));
    }
    // Containers only reachable through a cycle of dependency files.
    if a.name.is_none() {
        for n in &names {
            let r = st.r(n);
            if !w.seen.contains(&r) {
                trees.push(w.node(r, Kind::Container, &sizes));
            }
        }
    }
    if a.json {
        let v: Vec<_> = trees.iter().map(|t| to_json(t, now)).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let mut out = String::new();
        for t in &trees {
            draw(t, "", true, true, now, &mut out);
        }
        print!("{out}");
    }
    Ok(0)
}

/// The hint a refusal to destroy gives: where to see what holds it.
pub fn hint(lxcpath: &Path, name: &str) -> String {
    format!(
        "`strata tree -P {} -n {name}` shows what depends on it",
        lxcpath.display()
    )
}
