//! `lxc-ls` / `strata ls`.

use crate::common::Common;
use crate::tools::netinfo;
use anyhow::anyhow;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use strata_core::lxcdir::LxcDir;
use strata_core::{depfile, state, Container, Store};
use strata_runtime::state_view::{self, State};

pub const COLUMNS: &[&str] = &[
    "NAME",
    "STATE",
    "PID",
    "RAM",
    "SWAP",
    "AUTOSTART",
    "GROUPS",
    "INTERFACE",
    "IPV4",
    "IPV6",
    "UNPRIVILEGED",
];
const DEFAULT_FANCY: &str = "NAME,STATE,AUTOSTART,GROUPS,IPV4,IPV6,UNPRIVILEGED";

#[derive(clap::Parser, Debug, Clone)]
#[command(about = "List containers", version)]
pub struct Args {
    /// One entry per line
    #[arg(short = '1', long = "line")]
    pub line: bool,
    /// A table with one column per property
    #[arg(short = 'f', long = "fancy")]
    pub fancy: bool,
    /// Columns of the fancy table, comma separated
    #[arg(short = 'F', long = "fancy-format")]
    pub fancy_format: Option<String>,
    /// Only running containers (frozen ones too, as LXC's is_running)
    #[arg(long = "running")]
    pub running: bool,
    /// Only active containers (running or frozen)
    #[arg(long = "active")]
    pub active: bool,
    /// Only frozen containers
    #[arg(long = "frozen")]
    pub frozen: bool,
    /// Only stopped containers
    #[arg(long = "stopped")]
    pub stopped: bool,
    /// Only defined containers (with a config)
    #[arg(long = "defined")]
    pub defined: bool,
    /// Nested containers too, up to NUM levels (default 5)
    #[arg(long = "nesting", value_name = "NUM", num_args = 0..=1, require_equals = true, default_missing_value = "5")]
    pub nesting: Option<String>,
    /// Only containers in all these groups (comma separated; the last -g counts)
    #[arg(short = 'g', long = "groups")]
    pub groups: Vec<String>,
    /// Only containers whose name matches this regular expression
    #[arg(long = "filter", value_name = "REGEX")]
    pub filter: Option<String>,
    /// Same as --filter
    #[arg(value_name = "FILTER", conflicts_with = "filter")]
    pub filter_pos: Option<String>,
    /// JSON: one object per container with its storage (strata)
    #[arg(long = "json", conflicts_with_all = ["fancy", "line"])]
    pub json: bool,
    #[command(flatten)]
    pub common: Common,
}

pub fn main(tool: &str, args: Vec<OsString>) -> i32 {
    match crate::common::parse::<Args>(tool, args) {
        Ok(a) => run_args(tool, a),
        Err(code) => code,
    }
}

pub fn run_args(tool: &str, a: Args) -> i32 {
    crate::common::finish(tool, None, run(&a))
}

struct Row {
    name: String,
    /// Depth below the listed lxcpath (`--nesting`).
    nestlvl: usize,
    state: State,
    running: Option<state::RunRecord>,
    c: Option<Container>,
    error: Option<String>,
    /// The network inside, read for the fancy columns that show it.
    net: Option<netinfo::Net>,
    /// `--json`'s other files, read with the config.
    files: Option<JsonFiles>,
}

impl Row {
    fn get(&self, key: &str) -> Option<&str> {
        self.c.as_ref().and_then(|c| c.config.get(key))
    }

    fn groups(&self) -> Vec<String> {
        let Some(c) = &self.c else { return vec![] };
        c.config
            .get_all("lxc.group")
            .iter()
            .flat_map(|g| g.split([',', ' ', '\t']))
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn unprivileged(&self) -> bool {
        self.c
            .as_ref()
            .is_some_and(|c| !c.config.get_all("lxc.idmap").is_empty())
    }

    /// A cgroup figure in MiB, as lxc-ls prints RAM and SWAP.
    fn mib(&self, col: &str) -> Option<f64> {
        let rec = self.running.as_ref()?;
        let read = |f: &str| state_view::cgroup_file(&rec.cgroups, f).and_then(|p| std::fs::read_to_string(p).ok());
        // RAM in fractions of a MiB, SWAP in whole ones: as lxc-ls computes them.
        if col == "RAM" {
            let b: u64 = read("memory.usage_in_bytes")
                .or_else(|| read("memory.current"))?
                .trim()
                .parse()
                .ok()?;
            return Some(b as f64 / 1024.0 / 1024.0);
        }
        let bytes: u64 = {
            let stat = read("memory.stat")?;
            stat.lines()
                .find_map(|l| l.strip_prefix("swap "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Some((bytes / 1024 / 1024) as f64)
    }

    fn column(&self, col: &str) -> String {
        let list = |v: Vec<&str>| if v.is_empty() { "-".to_string() } else { v.join(", ") };
        match col {
            "NAME" => self.name.clone(),
            "STATE" => self.state.name().into(),
            "PID" => self.running.as_ref().map_or("-".into(), |r| r.init_pid.to_string()),
            "RAM" | "SWAP" => self.mib(col).map_or("-".into(), |m| format!("{m:.2}MB")),
            "AUTOSTART" => match self.get("lxc.start.auto") {
                Some(v) if v.trim() == "1" => "1".into(),
                _ => "0".into(),
            },
            "GROUPS" => {
                let g = self.groups();
                if g.is_empty() {
                    "-".into()
                } else {
                    g.join(", ")
                }
            }
            "INTERFACE" => list(
                self.net
                    .iter()
                    .flat_map(|n| n.interfaces.iter().map(String::as_str))
                    .collect(),
            ),
            "IPV4" | "IPV6" => list(
                self.net
                    .iter()
                    .flat_map(|n| if col == "IPV4" { &n.ipv4 } else { &n.ipv6 })
                    .filter(|(i, _)| i != "lo")
                    .map(|(_, a)| a.as_str())
                    .collect(),
            ),
            "UNPRIVILEGED" => self.unprivileged().to_string(),
            _ => "-".into(),
        }
    }
}

/// What a listing keeps, as LXC's lxc-ls filters.
struct Filter<'a> {
    a: &'a Args,
    name: Option<regex_automata::meta::Regex>,
    groups: Vec<&'a str>,
    /// Read the network of running containers (fancy columns).
    net: bool,
    /// Something shown or filtered needs each container's run state (a
    /// plain listing does not: no look at run records or LXC's sockets).
    state: bool,
    /// Something shown or filtered needs each container's config.
    config: bool,
}

impl Filter<'_> {
    fn keeps(&self, row: &Row) -> bool {
        let a = self.a;
        if a.defined && row.c.is_none() {
            return false;
        }
        if (a.running || a.active) && !row.state.is_active() {
            return false;
        }
        if a.frozen && !a.active && row.state != State::Frozen {
            return false;
        }
        if a.stopped && row.state != State::Stopped {
            return false;
        }
        // Every group asked for, as LXC's ls_has_all_grps.
        let has = row.groups();
        self.groups.iter().all(|g| has.iter().any(|h| h == g))
    }
}

/// A config as read (or why it could not be), and `--json`'s other files.
type Loaded = (Result<Container, String>, Option<JsonFiles>);

/// The rows of `lxcpath` (and, to `max` levels, of the lxcpaths nested in
/// its containers: in a running one's root, or a stopped one's rootfs).
fn collect(
    backends: &strata_core::Backends,
    store: &Store,
    f: &Filter,
    parent: Option<&str>,
    lvl: usize,
    max: usize,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    // The lxcpath is opened once and every file read relative to it.
    let dir = LxcDir::open(store.lxcpath())?.map(Arc::new);
    let listed = dir.as_deref().map(LxcDir::names).transpose()?.unwrap_or_default();
    let wanted = |n: &str| f.name.as_ref().is_none_or(|re| re.is_match(n));
    // Each config read once, by the open that tells whether there is one;
    // `--json`'s other files of the container with it, while its entries
    // are fresh in the caches (not for nested lxcpaths, whose rows it reads
    // by their shown names, as before).
    let json = f.a.json && parent.is_none();
    // The defined containers by name, each with what was read of it; in
    // sorted vectors merged below, not maps: hashing every name twice over
    // cost more than the sorts.
    let defined: Vec<(String, Option<Loaded>)> = match &dir {
        Some(d) if f.config => {
            let mut todo: Vec<String> = listed.into_iter().filter(|n| wanted(n)).collect();
            todo.sort_unstable();
            let (d2, st) = (Arc::clone(d), Store::new(store.lxcpath()));
            let loaded = super::spread::map(todo.clone(), move |n| {
                let c = match st.load_in(&d2, n) {
                    Ok(Some(c)) => Ok(c),
                    Ok(None) => return None,
                    // Not a container unless its config is a regular file.
                    Err(e) if d2.is_file(&format!("{n}/config")) => Err(e.to_string()),
                    Err(_) => return None,
                };
                Some((c, json.then(|| json_files(&st, Some(&d2), n))))
            });
            todo.into_iter()
                .zip(loaded)
                .filter_map(|(n, l)| l.map(|l| (n, Some(l))))
                .collect()
        }
        Some(d) => {
            let mut v: Vec<_> = listed
                .into_iter()
                .filter(|n| d.is_file(&format!("{n}/config")))
                .map(|n| (n, None))
                .collect();
            v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            v
        }
        None => vec![],
    };
    // A running container whose config is gone (or a volatile one, never
    // defined: ours, or LXC's) is listed as LXC lists it.
    // The run records and the socket table, each read once for both uses.
    let recorded = state::recorded(store.lxcpath());
    let bound = strata_core::lxc_cmd::bound_abstract();
    let mut extra = recorded.clone();
    extra.extend(strata_core::lxc_cmd::bound_names(store.lxcpath(), bound.as_ref()));
    extra.sort_unstable();
    extra.dedup();
    let census = f.state.then(|| state_view::Census::from_parts(recorded, bound));
    // Every name once, in order: (name, what was read, defined).
    let mut names = Vec::with_capacity(defined.len() + extra.len());
    let mut extra = extra.into_iter().peekable();
    for (n, l) in defined {
        while let Some(e) = extra.next_if(|e| *e < n) {
            names.push((e, None, false));
        }
        extra.next_if(|e| *e == n);
        names.push((n, l, true));
    }
    names.extend(extra.map(|e| (e, None, false)));
    for (name, loaded, is_defined) in names {
        if !wanted(&name) {
            continue;
        }
        let r = store.r(&name);
        // A plain listing prints names only: no config is read.
        let (c, error, files) = match loaded {
            Some((Ok(c), files)) => (Some(c), None, files),
            Some((Err(e), files)) => (None, Some(e), files),
            None => (None, None, None),
        };
        let (st, running) = if let Some(census) = &census {
            state_view::state_in(census, &r)
        } else if !is_defined {
            state_view::state(&r)
        } else {
            (State::Stopped, None)
        };
        let shown_as_defined = if f.config {
            c.is_some() || error.is_some()
        } else {
            is_defined
        };
        if !shown_as_defined && !st.is_active() {
            continue;
        }
        let shown = match parent {
            Some(p) if f.a.line || !(f.a.fancy || f.a.fancy_format.is_some()) => format!("{p}/{name}"),
            _ => name.clone(),
        };
        let net = match &running {
            Some(rec) if f.net => netinfo::inspect(rec.init_pid, None).ok(),
            _ => None,
        };
        let row = Row {
            name: shown,
            nestlvl: lvl,
            state: st,
            running,
            c,
            error,
            net,
            files,
        };
        if !f.keeps(&row) {
            continue;
        }
        // Nested lxcpaths: the same path inside the container's root.
        let inner = if lvl < max {
            let inside = |root: &Path| root.join(store.lxcpath().strip_prefix("/").unwrap_or(store.lxcpath()));
            match (&row.running, &row.c) {
                (Some(rec), _) => Some(inside(Path::new(&format!("/proc/{}/root", rec.init_pid)))),
                // A rootfs the host reads at a path (dir, btrfs), without mounting it.
                (None, Some(c)) => backends
                    .for_spec(&c.rootfs)
                    .ok()
                    .and_then(|b| b.local_path(&c.rootfs))
                    .map(|p| inside(&p)),
                _ => None,
            }
        } else {
            None
        };
        let shown = row.name.clone();
        rows.push(row);
        if let Some(p) = inner.filter(|p| p.is_dir()) {
            let _ = collect(backends, &Store::new(&p), f, Some(&shown), lvl + 1, max, rows);
        }
    }
    Ok(())
}

fn run(a: &Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let fancy = a.fancy || a.fancy_format.is_some();
    let cols: Vec<String> = match &a.fancy_format {
        Some(f) => f.split(',').map(|c| c.trim().to_ascii_uppercase()).collect(),
        None => DEFAULT_FANCY.split(',').map(str::to_string).collect(),
    };
    if let Some(bad) = cols.iter().find(|c| !COLUMNS.contains(&c.as_str())) {
        return Err(anyhow!("invalid column {bad:?} (valid: {})", COLUMNS.join(", ")));
    }
    let name = match a.filter.as_deref().or(a.filter_pos.as_deref()) {
        Some(f) => Some(
            regex_automata::meta::Regex::new(f)
                .map_err(|e| anyhow!("invalid filter {f:?}: {}", crate::common::one_line(&e.to_string())))?,
        ),
        None => None,
    };
    // LXC takes the nesting depth as a number; anything else is its default.
    let max = a.nesting.as_deref().map_or(0, |n| n.parse::<usize>().unwrap_or(5));
    if !lxcpath.is_dir() {
        if a.json {
            println!("[]");
        }
        return Ok(0);
    }
    let engine = crate::common::engine();
    crate::common::reconcile(&engine, &lxcpath);
    let store = Store::new(&lxcpath);
    let groups: Vec<&str> = a.groups.last().map_or(vec![], |g| {
        g.split(',').map(str::trim).filter(|g| !g.is_empty()).collect()
    });
    let filter = Filter {
        a,
        name,
        net: fancy && cols.iter().any(|c| matches!(c.as_str(), "INTERFACE" | "IPV4" | "IPV6")),
        state: fancy || a.json || a.running || a.active || a.frozen || a.stopped || max > 0,
        config: fancy || a.json || a.defined || max > 0 || !groups.is_empty(),
        groups,
    };
    let mut rows = vec![];
    collect(&engine.backends, &store, &filter, None, 0, max, &mut rows)?;
    if a.json {
        // Rows whose files were not read with their config (a running
        // container without one, nested ones) read them here.
        let dir = match rows.iter().any(|r| r.files.is_none()) {
            true => LxcDir::open(&lxcpath)?,
            false => None,
        };
        let st = Store::new(&lxcpath);
        let files: Vec<JsonFiles> = rows
            .iter_mut()
            .map(|r| r.files.take().unwrap_or_else(|| json_files(&st, dir.as_ref(), &r.name)))
            .collect();
        let arr: Vec<_> = rows.iter().zip(files).map(|(row, f)| json_row(row, f)).collect();
        // Written in large pieces (a pipe's reader woken less often); a
        // closed pipe is an error to report, not a panic.
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut out, &arr)?;
        out.write_all(b"\n")?;
        out.flush()?;
        // The process ends here: freeing every row piece by piece first
        // only costs time.
        std::mem::forget(arr);
    } else if fancy {
        print!("{}", fancy_table(&rows, &cols));
    } else {
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let width = if a.line { 0 } else { term_width() };
        print!("{}", columns(&names, width));
    }
    std::mem::forget(rows);
    Ok(0)
}

/// One container of `--json`. Fields in the order of their names: the
/// order a JSON object built as a map printed them in, kept byte for byte.
/// Written straight from these structs: no map per container built first.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    autostart: bool,
    backend: Option<String>,
    dependents: Vec<JsonRef>,
    depends_on: Vec<JsonRef>,
    error: Option<&'a str>,
    groups: Vec<String>,
    name: &'a str,
    pid: Option<i32>,
    rootfs: Option<String>,
    snapshots: Vec<JsonSnap>,
    state: String,
    unprivileged: bool,
}

#[derive(serde::Serialize)]
struct JsonSnap {
    comment: Option<String>,
    name: String,
    rootfs: String,
    timestamp: String,
}

#[derive(serde::Serialize)]
struct JsonRef {
    lxcpath: std::path::PathBuf,
    name: String,
}

/// What `--json` reads of a container besides its config: its snapshots,
/// the containers that depend on it and those it depends on.
struct JsonFiles {
    snapshots: Vec<JsonSnap>,
    dependents: Vec<JsonRef>,
    depends_on: Vec<JsonRef>,
}

fn json_files(store: &Store, dir: Option<&LxcDir>, name: &str) -> JsonFiles {
    // Most containers have no snapshots: one look at `snaps` tells.
    let has_snaps = dir.is_none_or(|d| d.is_dir(&format!("{name}/snaps")));
    let snapshots: Vec<_> = has_snaps
        .then(|| store.snapshots(name).ok())
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .map(|s| JsonSnap {
            comment: s.comment,
            name: s.name,
            rootfs: s.rootfs.to_string(),
            timestamp: s.timestamp,
        })
        .collect();
    let refs = |v: strata_core::Result<Vec<strata_core::ContainerRef>>| -> Vec<JsonRef> {
        v.unwrap_or_default()
            .into_iter()
            .map(|d| JsonRef {
                lxcpath: d.lxcpath,
                name: d.name,
            })
            .collect()
    };
    JsonFiles {
        snapshots,
        dependents: refs(match dir {
            Some(d) => depfile::dependents_in(d, name),
            None => depfile::dependents(&store.r(name)),
        }),
        depends_on: refs(match dir {
            Some(d) => depfile::depends_on_in(d, name),
            None => depfile::depends_on(&store.r(name)),
        }),
    }
}

fn json_row(row: &Row, files: JsonFiles) -> JsonRow<'_> {
    JsonRow {
        autostart: row.column("AUTOSTART") == "1",
        backend: row.c.as_ref().map(|c| c.rootfs.kind().to_string()),
        dependents: files.dependents,
        depends_on: files.depends_on,
        error: row.error.as_deref(),
        groups: row.groups(),
        name: &row.name,
        pid: row.running.as_ref().map(|r| r.init_pid),
        rootfs: row.c.as_ref().map(|c| c.rootfs.to_string()),
        snapshots: files.snapshots,
        state: row.column("STATE"),
        unprivileged: row.unprivileged(),
    }
}

/// LXC's fancy table: every column padded to its widest cell, each followed
/// by a space; nested names indented by their depth after a `\\`; RAM and
/// SWAP figures right-aligned.
fn fancy_table(rows: &[Row], cols: &[String]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| match c.as_str() {
                    "NAME" if r.nestlvl > 0 => format!("{:>w$}{}", "\\", r.name, w = r.nestlvl),
                    _ => r.column(c),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: &[String], head: bool| {
        for (i, c) in cells.iter().enumerate() {
            let w = widths[i];
            if !head && matches!(cols[i].as_str(), "RAM" | "SWAP") && c.ends_with("MB") {
                out.push_str(&format!("{c:>w$} "));
            } else {
                out.push_str(&format!("{c:<w$} "));
            }
        }
        out.push('\n');
    };
    line(cols, true);
    for r in &cells {
        line(r, false);
    }
    out
}

/// Names in columns as LXC prints them; `width` 0 puts one per line.
fn columns(names: &[&str], width: usize) -> String {
    if names.is_empty() {
        return String::new();
    }
    if width == 0 {
        return names.iter().map(|n| format!("{n}\n")).collect();
    }
    let cell = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) + 2;
    let per_line = (width / cell).max(1);
    let mut out = String::new();
    for chunk in names.chunks(per_line) {
        let line: String = chunk.iter().map(|n| format!("{n:<cell$}")).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Width of the terminal on stdout; 0 when stdout is not a terminal.
fn term_width() -> usize {
    if !std::io::stdout().is_terminal() {
        return 0;
    }
    // SAFETY: winsize is four u16s: all-zero is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills a winsize struct we own.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        80
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_columns() {
        assert_eq!(columns(&["a", "bb", "c"], 0), "a\nbb\nc\n");
        assert_eq!(columns(&["a", "bb", "c"], 80), "a   bb  c\n");
        assert_eq!(columns(&["a", "bb", "c"], 8), "a   bb\nc\n");
        assert_eq!(columns(&[], 80), "");
    }
}
