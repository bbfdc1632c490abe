//! `lxc-ls` / `strata ls`.

use super::Common;
use anyhow::anyhow;
use serde_json::json;
use std::ffi::OsString;
use std::io::IsTerminal;
use strata_core::{state, store, Container, Store};

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
    /// Only running containers
    #[arg(long = "running", alias = "active")]
    pub running: bool,
    /// Only stopped containers
    #[arg(long = "stopped")]
    pub stopped: bool,
    /// Only containers in these groups (comma separated)
    #[arg(short = 'g', long = "groups")]
    pub groups: Option<String>,
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
    match super::parse::<Args>(tool, args) {
        Ok(a) => run_args(tool, a),
        Err(code) => code,
    }
}

pub fn run_args(tool: &str, a: Args) -> i32 {
    super::finish(tool, None, run(&a))
}

struct Row {
    name: String,
    running: Option<state::RunRecord>,
    c: Option<Container>,
    error: Option<String>,
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
            .flat_map(|g| g.split([',', ' ']))
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn unprivileged(&self) -> bool {
        self.c
            .as_ref()
            .is_some_and(|c| !c.config.get_all("lxc.idmap").is_empty())
    }

    fn column(&self, col: &str) -> String {
        match col {
            "NAME" => self.name.clone(),
            "STATE" => if self.running.is_some() { "RUNNING" } else { "STOPPED" }.into(),
            "PID" => self.running.as_ref().map_or("-".into(), |r| r.init_pid.to_string()),
            "AUTOSTART" => match self.get("lxc.start.auto") {
                Some(v) if v.trim() != "0" => "1".into(),
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
            "UNPRIVILEGED" => self.unprivileged().to_string(),
            // Network and memory figures belong to the runtime; not known here.
            _ => "-".into(),
        }
    }
}

fn run(a: &Args) -> anyhow::Result<i32> {
    super::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = super::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let cols: Vec<String> = match &a.fancy_format {
        Some(f) => f.split(',').map(|c| c.trim().to_ascii_uppercase()).collect(),
        None => DEFAULT_FANCY.split(',').map(str::to_string).collect(),
    };
    if let Some(bad) = cols.iter().find(|c| !COLUMNS.contains(&c.as_str())) {
        return Err(anyhow!("invalid column {bad:?} (valid: {})", COLUMNS.join(", ")));
    }
    let filter = match a.filter.as_deref().or(a.filter_pos.as_deref()) {
        Some(f) => Some(
            regex_automata::meta::Regex::new(f)
                .map_err(|e| anyhow!("invalid filter {f:?}: {}", super::one_line(&e.to_string())))?,
        ),
        None => None,
    };
    if !lxcpath.is_dir() {
        if a.json {
            println!("[]");
        }
        return Ok(0);
    }
    let engine = super::engine();
    super::reconcile(&engine, &lxcpath);
    let store = Store::new(&lxcpath);
    let want_groups: Vec<&str> = a.groups.as_deref().map_or(vec![], |g| g.split(',').collect());
    let mut rows = vec![];
    for name in store.list()? {
        if filter.as_ref().is_some_and(|f| !f.is_match(name.as_str())) {
            continue;
        }
        let r = store.r(&name);
        let (c, error) = match store.load(&name) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let row = Row {
            running: state::running(&r),
            name,
            c,
            error,
        };
        if (a.running && row.running.is_none()) || (a.stopped && row.running.is_some()) {
            continue;
        }
        if !want_groups.is_empty() && !row.groups().iter().any(|g| want_groups.contains(&g.as_str())) {
            continue;
        }
        rows.push(row);
    }
    if a.json {
        let arr: Vec<_> = rows.iter().map(|row| json_row(&store, row)).collect();
        println!("{}", serde_json::to_string_pretty(&arr)?);
    } else if a.fancy || a.fancy_format.is_some() {
        print!("{}", fancy(&rows, &cols));
    } else {
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let width = if a.line { 0 } else { term_width() };
        print!("{}", columns(&names, width));
    }
    Ok(0)
}

fn json_row(store: &Store, row: &Row) -> serde_json::Value {
    let r = store.r(&row.name);
    let snaps: Vec<_> = store
        .snapshots(&row.name)
        .unwrap_or_default()
        .into_iter()
        .map(
            |s| json!({"name": s.name, "timestamp": s.timestamp, "comment": s.comment, "rootfs": s.rootfs.to_string()}),
        )
        .collect();
    let refs = |v: strata_core::Result<Vec<strata_core::ContainerRef>>| -> Vec<serde_json::Value> {
        v.unwrap_or_default()
            .into_iter()
            .map(|d| json!({"name": d.name, "lxcpath": d.lxcpath}))
            .collect()
    };
    json!({
        "name": row.name,
        "state": row.column("STATE"),
        "pid": row.running.as_ref().map(|r| r.init_pid),
        "backend": row.c.as_ref().map(|c| c.rootfs.kind().to_string()),
        "rootfs": row.c.as_ref().map(|c| c.rootfs.to_string()),
        "autostart": row.column("AUTOSTART") == "1",
        "groups": row.groups(),
        "unprivileged": row.unprivileged(),
        "snapshots": snaps,
        "dependents": refs(store::dependents(&r)),
        "depends_on": refs(store::depends_on(&r)),
        "error": row.error,
    })
}

/// LXC's fancy table: every column padded to its widest cell, each followed by a space.
fn fancy(rows: &[Row], cols: &[String]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| r.column(c)).collect())
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
    let mut line = |cells: &[String]| {
        for (i, c) in cells.iter().enumerate() {
            out.push_str(&format!("{c:<w$} ", w = widths[i]));
        }
        out.push('\n');
    };
    line(cols);
    for r in &cells {
        line(r);
    }
    if rows.is_empty() {
        return String::new();
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
