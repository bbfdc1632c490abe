//! What every front end shares: argument parsing with LXC's usage and
//! errors, the common options, logging, the lxcpath, the engine and the
//! reconcile every command starts with, and the checks of names and
//! containers. Below the storage front ends (`cli`), the runtime front ends
//! (`run`) and the state tools (`tools`), which all use it.

use anyhow::{anyhow, Context};
use clap::Parser;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use strata_core::engine::Engine;
use strata_core::{lxc_conf, paths, BackendOpts, ContainerRef};

/// Parse `args` (with argv[0]) for `tool`; `Err(code)` when the process
/// should exit now (help or usage printed, or a usage error printed as one
/// line). `--usage` and `--rcfile` are handled here for every tool, as
/// LXC's common arguments are.
pub fn parse<T: Parser>(tool: &str, args: Vec<OsString>) -> Result<T, i32> {
    let mut cmd_args = args;
    if cmd_args.is_empty() {
        cmd_args.push(tool.into());
    } else {
        cmd_args[0] = tool.into();
    }
    let mut cmd = T::command().bin_name(tool.to_string());
    let has_rcfile = cmd.get_arguments().any(|a| a.get_id() == "rcfile");
    if has_rcfile && RCFILE_SHORT_F.contains(&tool) {
        cmd = cmd.mut_arg("rcfile", |a| a.short('f'));
    }
    // As LXC: `-?` is --help too.
    let dashes = cmd_args.iter().position(|a| a == "--").unwrap_or(cmd_args.len());
    for a in cmd_args[1..dashes].iter_mut() {
        if a == "-?" {
            *a = "--help".into();
        }
    }
    // As LXC's --usage: the short synopsis, exit 0, whatever else is given.
    let before_dashes = cmd_args.iter().skip(1).take_while(|a| *a != "--");
    if before_dashes.clone().any(|a| a == "--usage") {
        println!("{}", lxc_usage(tool, &cmd));
        return Err(0);
    }
    let m = cmd.try_get_matches_from(cmd_args).map_err(|e| usage_error(tool, e))?;
    let t = T::from_arg_matches(&m).map_err(|e| usage_error(tool, e))?;
    if let Err(e) = check_rcfile(tool, &m) {
        eprintln!("{tool}: {}", one_line(&format!("{e:#}")));
        return Err(1);
    }
    Ok(t)
}

/// LXC's `--usage`: every option in one bracketed list.
pub fn lxc_usage(tool: &str, cmd: &clap::Command) -> String {
    let mut parts = Vec::new();
    for a in cmd.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        let mut p = String::from("[");
        if let Some(s) = a.get_short() {
            p.push_str(&format!("-{s}|"));
        }
        p.push_str(&format!("--{long}"));
        if a.get_action().takes_values() {
            p.push_str(&format!("={}", long.to_ascii_uppercase()));
        }
        p.push(']');
        parts.push(p);
    }
    format!("Usage: {tool} {}", parts.join(" "))
}

/// The tools whose `--rcfile` LXC also spells `-f`.
const RCFILE_SHORT_F: &[&str] = &["lxc-start", "lxc-execute", "lxc-attach"];

/// Tools that read the rcfile instead of the container's config.
const RCFILE_READ: &[&str] = &["lxc-start", "lxc-execute", "lxc-attach", "lxc-info"];

/// Tools that act on a running container through its state, not its config
/// (as LXC's, which ask the container's monitor): the rcfile must load.
const RCFILE_RUNNING: &[&str] = &[
    "lxc-stop",
    "lxc-freeze",
    "lxc-unfreeze",
    "lxc-wait",
    "lxc-cgroup",
    "lxc-console",
    "lxc-device",
];

/// Tools that act on the container's storage: its own config only (LXC
/// would take the rootfs to copy or destroy from another file).
const RCFILE_STORAGE: &[&str] = &["lxc-destroy", "lxc-copy", "lxc-snapshot"];

/// `--rcfile FILE`: loads, and is one `tool` can honour.
fn check_rcfile(tool: &str, m: &clap::ArgMatches) -> anyhow::Result<()> {
    // A subcommand's own (the strata subcommands flatten the common options too).
    let mut m = m;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    let Some(rc) = m.try_get_one::<PathBuf>("rcfile").ok().flatten() else {
        return Ok(());
    };
    let known = [RCFILE_READ, RCFILE_RUNNING, RCFILE_STORAGE]
        .iter()
        .any(|l| l.contains(&tool));
    if !known {
        return Err(anyhow!("--rcfile: {tool} reads no container config"));
    }
    strata_core::config::Config::load_effective(rc)
        .with_context(|| format!("--rcfile {}: failed to load rcfile", rc.display()))?;
    if RCFILE_STORAGE.contains(&tool) {
        let name = m
            .try_get_one::<String>("name")
            .ok()
            .flatten()
            .cloned()
            .unwrap_or_default();
        let given = m.try_get_one::<PathBuf>("lxcpath").ok().flatten();
        let own = resolve_lxcpath(given.map(PathBuf::as_path))?.join(&name).join("config");
        let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same(rc, &own) {
            return Err(anyhow!(
                "--rcfile {}: {tool} acts on {name}'s storage as its own config ({}) describes it, not another file",
                rc.display(),
                own.display()
            ));
        }
    }
    Ok(())
}

pub fn usage_error(tool: &str, e: clap::Error) -> i32 {
    use clap::error::ErrorKind as K;
    match e.kind() {
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand {
                1
            } else {
                0
            }
        }
        _ => {
            // clap's message spans several lines (usage, tips); LXC prints one.
            let text = e.render().to_string();
            let first = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("tip:"))
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
                .trim_start_matches("error: ")
                .to_string();
            let first = if first.is_empty() {
                "invalid arguments".to_string()
            } else {
                first
            };
            eprintln!("{tool}: {}", one_line(&first));
            1
        }
    }
}

/// Print `TOOL: [NAME: ]message` as one line.
pub fn print_error(tool: &str, name: Option<&str>, e: &anyhow::Error) {
    let msg = one_line(&format!("{e:#}"));
    match name {
        Some(n) if !n.is_empty() => eprintln!("{tool}: {}: {msg}", one_line(n)),
        _ => eprintln!("{tool}: {msg}"),
    }
}

/// Finish a front end: the exit code, or the error printed as one line.
pub fn finish(tool: &str, name: Option<&str>, r: anyhow::Result<i32>) -> i32 {
    match r {
        Ok(c) => c,
        Err(e) => {
            print_error(tool, name, &e);
            1
        }
    }
}

pub use crate::message::one_line;

/// Options every LXC tool accepts.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Common {
    /// Use this container path
    #[arg(short = 'P', long = "lxcpath", value_name = "PATH")]
    pub lxcpath: Option<PathBuf>,
    /// Log priority: TRACE, DEBUG, INFO, NOTICE, WARN, ERROR, CRIT, ALERT, FATAL
    #[arg(short = 'l', long = "logpriority", value_name = "LEVEL")]
    pub logpriority: Option<String>,
    /// Write the log to FILE instead of stderr
    #[arg(short = 'o', long = "logfile", value_name = "FILE")]
    pub logfile: Option<PathBuf>,
    /// Do not print anything but errors
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Load configuration file FILE
    #[arg(long = "rcfile", value_name = "FILE")]
    pub rcfile: Option<PathBuf>,
    /// Give a short usage message
    #[arg(long = "usage")]
    pub usage: bool,
}

/// Map an LXC log priority to a tracing level.
pub fn level(prio: Option<&str>) -> anyhow::Result<tracing::Level> {
    use tracing::Level;
    let Some(p) = prio else { return Ok(Level::WARN) };
    Ok(match p.to_ascii_uppercase().as_str() {
        "TRACE" => Level::TRACE,
        "DEBUG" => Level::DEBUG,
        "INFO" | "NOTICE" => Level::INFO,
        "WARN" | "WARNING" => Level::WARN,
        "ERROR" | "CRIT" | "ALERT" | "FATAL" => Level::ERROR,
        _ => return Err(anyhow!("invalid log priority {p:?}")),
    })
}

/// Set up tracing: to stderr at warn, or as `-l`/`-o` ask.
pub fn init_logging(prio: Option<&str>, logfile: Option<&Path>) -> anyhow::Result<()> {
    let lvl = level(prio)?;
    let builder = tracing_subscriber::fmt()
        .with_max_level(lvl)
        .with_target(false)
        .without_time();
    match logfile {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("open log file {}", p.display()))?;
            let _ = builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init();
        }
        None => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
    }
    Ok(())
}

/// `-P`, else `lxc.lxcpath` from lxc.conf (read as LXC reads it), else the
/// built-in default.
pub fn resolve_lxcpath(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let p = match given {
        Some(p) => p.to_path_buf(),
        None => match lxc_conf::value_at(&paths::global_conf(), "lxc.lxcpath")? {
            Some(p) => PathBuf::from(p),
            None => paths::builtin_lxcpath(),
        },
    };
    if p.as_os_str().is_empty() {
        return Err(anyhow!("empty lxcpath"));
    }
    let p = std::path::absolute(&p)?;
    paths::check_own_lxcpath(&p)?;
    Ok(p)
}

/// The `lxc.bdev.*` keys of lxc.conf the backends take defaults from.
const BDEV_KEYS: &[&str] = &[
    "lxc.bdev.lvm.vg",
    "lxc.bdev.lvm.thin_pool",
    "lxc.bdev.lvm.fstype",
    "lxc.bdev.zfs.root",
    "lxc.bdev.rbd.rbdpool",
    "lxc.bdev.rbd.rbduser",
    "lxc.bdev.fstype",
    "lxc.bdev.fssize",
];

/// Backend options with the `lxc.bdev.*` defaults of lxc.conf filled in.
pub fn backend_opts(mut opts: BackendOpts) -> anyhow::Result<BackendOpts> {
    // One read of lxc.conf for all the keys.
    if let Some(text) = lxc_conf::text_at(&paths::global_conf())? {
        for k in BDEV_KEYS {
            if let Some(v) = lxc_conf::value_in(&text, k) {
                opts.defaults.insert(k.to_string(), v);
            }
        }
    }
    let d = |k: &str| opts.defaults.get(k).cloned();
    if opts.vgname.is_none() {
        opts.vgname = d("lxc.bdev.lvm.vg");
    }
    if opts.thinpool.is_none() {
        opts.thinpool = d("lxc.bdev.lvm.thin_pool");
    }
    if opts.zfsroot.is_none() {
        opts.zfsroot = d("lxc.bdev.zfs.root");
    }
    Ok(opts)
}

pub fn engine() -> Engine {
    Engine::new(crate::wiring::backends()).with_freezer(std::sync::Arc::new(crate::freezer::CgroupFreezer))
}

/// Clean up what a crash left behind, before doing anything else. Never on an
/// lxcpath that does not exist (that would create it).
pub fn reconcile(engine: &Engine, lxcpath: &Path) {
    reconcile_staging(engine, lxcpath);
    // Ephemeral containers whose run was killed are never listed or counted.
    reap(engine, lxcpath);
}

/// [`reconcile`] without the reaping of killed runs (for callers that reaped already).
pub fn reconcile_staging(engine: &Engine, lxcpath: &Path) {
    if !lxcpath.is_dir() {
        return;
    }
    match engine.reconcile(lxcpath) {
        Ok(removed) => {
            for p in removed {
                tracing::info!("removed leftover {}", p.display());
            }
        }
        Err(e) => tracing::warn!("reconcile {}: {e}", lxcpath.display()),
    }
}

/// Whether a progress bar makes sense.
pub fn progress() -> bool {
    std::io::stderr().is_terminal()
}

/// A size as LXC's tools take it: a number with an optional unit
/// `b`, `k`, `m`, `g`, `t` (any case, optional trailing `B`/`iB`); without a
/// unit the number is megabytes, as in LXC.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let bad = || anyhow!("invalid size {s:?}: expected a number with an optional unit B, K, M, G or T");
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 1 << 20,
        "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| anyhow!("invalid size {s:?}: too large"))?;
    if v == 0 {
        return Err(anyhow!("invalid size {s:?}: must be more than zero"));
    }
    Ok(v)
}

/// Check a container name before anything is touched.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    strata_core::names::validate(name)?;
    Ok(())
}

/// Check that an existing container is there (clear error instead of a
/// failed load deep in the engine).
pub fn check_exists(lxcpath: &Path, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    if !strata_core::Store::new(lxcpath).exists(name) {
        return Err(anyhow!("container {name:?} does not exist in {}", lxcpath.display()));
    }
    Ok(())
}

/// The container named, checked to exist, or every container of the
/// lxcpath when none is named.
pub fn named_or_all(lxcpath: &Path, name: Option<&str>) -> anyhow::Result<Vec<String>> {
    match name {
        Some(n) => {
            check_exists(lxcpath, n)?;
            Ok(vec![n.to_string()])
        }
        None => Ok(strata_core::Store::new(lxcpath).list()?),
    }
}

/// Exit 0 when nothing failed; else an error naming the first failure and
/// how many more there were.
pub fn failures(failed: &[String]) -> anyhow::Result<i32> {
    match failed {
        [] => Ok(0),
        [one] => Err(anyhow!("{one}")),
        [first, rest @ ..] => Err(anyhow!("{first} (and {} more)", rest.len())),
    }
}

/// A container to act on while it runs: defined, or a volatile one (LXC's
/// container started from a config file alone, never defined in the
/// lxcpath) running, ours or LXC's, as LXC's tools ask its monitor.
pub fn check_exists_or_running(lxcpath: &Path, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let r = strata_core::ContainerRef::new(lxcpath, name);
    if !strata_core::Store::new(lxcpath).exists(name) && strata_core::state::is_running(&r) {
        return Ok(());
    }
    check_exists(lxcpath, name)
}

/// Check that a new container's name is free.
pub fn check_free(lxcpath: &Path, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    paths::check_own_lxcpath(lxcpath)?;
    let p = lxcpath.join(name);
    if p.symlink_metadata().is_ok() {
        return Err(anyhow!("{} already exists", p.display()));
    }
    Ok(())
}

/// Check `-B`: known to this binary (`best` is resolved by lxc-create).
pub fn check_backend(engine: &Engine, kind: &str) -> anyhow::Result<()> {
    engine.backends.get(kind)?;
    Ok(())
}

/// Remove what killed runs left (ephemeral containers, stale mounts); errors are warnings.
pub fn reap(engine: &Engine, lxcpath: &Path) {
    if !lxcpath.is_dir() {
        return;
    }
    if let Err(e) = strata_runtime::reap_ephemeral(engine, lxcpath) {
        tracing::warn!("remove leftovers of ephemeral runs in {}: {e}", lxcpath.display());
    }
}

/// As LXC's lxc-copy: a source that is not stopped (running, frozen, or
/// run by LXC) needs `-a`.
pub fn refuse_running(src: &ContainerRef, allowed: bool) -> anyhow::Result<()> {
    use strata_runtime::state_view::{state, State};
    let (st, _) = state(src);
    if !allowed && st != State::Stopped {
        return Err(anyhow!(
            "container {} is running ({}): use -a/--allowrunning to copy it anyway",
            src.name,
            st.name()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_lxc() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("2048").unwrap(), 2048 << 20);
        assert_eq!(parse_size("4096b").unwrap(), 4096);
        assert_eq!(parse_size("3k").unwrap(), 3072);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        for bad in ["", "G", "1Q", "-1G", "1.5G", "0", "99999999999999999T", "1 G x"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_stay_on_one_line() {
        assert_eq!(one_line("a\nb\x01c\n"), "a; b\\u{1}c");
    }
}
