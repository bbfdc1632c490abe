//! Front ends of the container runtime: lxc-start, lxc-stop, lxc-execute,
//! lxc-attach, lxc-info, lxc-start-ephemeral and `lxc-copy -e`.

use crate::cli::{self, Common};
use anyhow::{anyhow, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use strata_core::engine::Engine;
use strata_core::ContainerRef;
use strata_runtime::conf::MountEntry;
use strata_runtime::{EphemeralOpts, StartOpts, StopOpts};

/// Run the runtime front end `tool` (e.g. "lxc-start") with its arguments
/// (without argv[0]); returns the exit code.
pub fn dispatch(tool: &str, args: Vec<OsString>) -> anyhow::Result<i32> {
    let mut argv = vec![OsString::from(tool)];
    argv.extend(args);
    macro_rules! parse {
        ($t:ty) => {
            match cli::parse::<$t>(tool, argv) {
                Ok(a) => a,
                Err(code) => return Ok(code),
            }
        };
    }
    match tool {
        "lxc-start" => start(parse!(StartArgs), false),
        "lxc-execute" => start(parse!(StartArgs), true),
        "lxc-stop" => stop(parse!(StopArgs)),
        "lxc-info" => info(parse!(InfoArgs)),
        "lxc-attach" => attach(parse!(AttachArgs)),
        "lxc-copy" => copy_ephemeral(parse!(CopyArgs)),
        "lxc-start-ephemeral" => start_ephemeral(parse!(EphArgs)),
        t if crate::tools::TOOLS.contains(&t) => crate::tools::dispatch(t, argv),
        t => bail!("{t}: not a runtime tool"),
    }
}

/// Logging, the lxcpath (absolute, normalized), the engine, and the leftovers
/// of killed runs removed.
fn setup(c: &Common) -> anyhow::Result<(PathBuf, Engine)> {
    cli::init_logging(c.logpriority.as_deref(), c.logfile.as_deref())?;
    let lxcpath: PathBuf = cli::resolve_lxcpath(c.lxcpath.as_deref())?.components().collect();
    let engine = cli::engine();
    reap(&engine, &lxcpath);
    Ok((lxcpath, engine))
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

fn existing(lxcpath: &Path, name: &str) -> anyhow::Result<ContainerRef> {
    cli::check_exists(lxcpath, name)?;
    Ok(ContainerRef::new(lxcpath, name))
}

#[derive(clap::Parser, Debug)]
#[command(about = "Start a container", version)]
struct StartArgs {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    name: String,
    /// Run in the foreground
    #[arg(short = 'F', long = "foreground")]
    foreground: bool,
    /// Daemonize (the default of lxc-start)
    #[arg(short = 'd', long = "daemon", conflicts_with = "foreground")]
    daemon: bool,
    /// Use this config file instead of the container's
    #[arg(short = 'f', long = "rcfile")]
    rcfile: Option<PathBuf>,
    /// Set a config item KEY=VALUE
    #[arg(short = 's', long = "define")]
    define: Vec<String>,
    /// Use specified FILE (a terminal) for the container console
    #[arg(short = 'c', long = "console", value_name = "FILE")]
    console: Option<PathBuf>,
    /// Log container console output to FILE
    #[arg(short = 'L', long = "console-log", value_name = "FILE")]
    console_log: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
    /// The command to run as init
    #[arg(last = true)]
    cmd: Vec<String>,
}

fn start(a: StartArgs, execute: bool) -> anyhow::Result<i32> {
    let (lxcpath, engine) = setup(&a.common)?;
    let r = existing(&lxcpath, &a.name)?;
    if a.rcfile.is_some() || !a.define.is_empty() {
        bail!("-f and -s are not supported: edit the container's config");
    }
    if execute && (a.console.is_some() || a.console_log.is_some()) {
        bail!("unknown option --console/--console-log: they are lxc-start's");
    }
    let mut cmd = a.cmd;
    if execute && cmd.is_empty() {
        // As LXC: without a command, lxc.execute.cmd.
        let eff = strata_core::config::Config::load_effective(&r.config_path())?;
        cmd = eff
            .get("lxc.execute.cmd")
            .map(|c| c.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        if cmd.is_empty() {
            bail!("lxc-execute needs a command: lxc-execute -n NAME -- COMMAND, or lxc.execute.cmd");
        }
    }
    // The daemon runs from /: relative paths are the caller's.
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let opts = StartOpts {
        cmd,
        daemon: if execute { a.daemon } else { !a.foreground },
        console: a
            .console
            .map(|c| if c.as_os_str() == "none" { c } else { abs(c) }.display().to_string()),
        console_log: a.console_log.map(abs),
        ..Default::default()
    };
    Ok(strata_runtime::start(&engine, &r, &opts)?)
}

#[derive(clap::Parser, Debug)]
#[command(about = "Stop a container", version)]
struct StopArgs {
    #[arg(short = 'n', long = "name")]
    name: String,
    /// Kill at once (SIGKILL)
    #[arg(short = 'k', long = "kill")]
    kill: bool,
    /// Seconds to wait after the halt signal before SIGKILL (-1: forever)
    #[arg(short = 't', long = "timeout", default_value_t = 60, allow_negative_numbers = true)]
    timeout: i64,
    /// Never SIGKILL
    #[arg(long = "nokill")]
    nokill: bool,
    /// Do not wait for the container to stop
    #[arg(short = 'W', long = "nowait")]
    nowait: bool,
    /// Reboot: send lxc.signal.reboot (SIGINT) and wait for the new init
    #[arg(short = 'r', long = "reboot")]
    reboot: bool,
    #[command(flatten)]
    common: Common,
}

fn stop(a: StopArgs) -> anyhow::Result<i32> {
    let (lxcpath, engine) = setup(&a.common)?;
    let r = existing(&lxcpath, &a.name)?;
    if a.reboot && (a.kill || a.nokill) {
        bail!("-r excludes -k and --nokill");
    }
    if a.kill && a.nokill {
        bail!("-k and --nokill exclude each other");
    }
    // A frozen container acts on no signal: thaw it, as LXC's stop does.
    if let (strata_runtime::state_view::State::Frozen | strata_runtime::state_view::State::Freezing, Some(rec)) =
        strata_runtime::state_view::state(&r)
    {
        strata_runtime::cgroup::thaw(&rec.cgroups, std::time::Duration::from_secs(30))?;
    }
    let o = StopOpts {
        kill: a.kill,
        timeout: (a.timeout >= 0).then_some(a.timeout as u64),
        nokill: a.nokill,
        nowait: a.nowait,
        reboot: a.reboot,
    };
    strata_runtime::stop(&engine, &r, &o)?;
    Ok(0)
}

#[derive(clap::Parser, Debug)]
#[command(about = "Show the state of a container", version)]
struct InfoArgs {
    #[arg(short = 'n', long = "name")]
    name: String,
    /// Only the state
    #[arg(short = 's', long = "state")]
    state: bool,
    /// Only the pid
    #[arg(short = 'p', long = "pid")]
    pid: bool,
    /// Only the IP addresses
    #[arg(short = 'i', long = "ips")]
    ips: bool,
    /// Only the resource use (CPU, BlkIO, Memory, KMem, the veth's bytes)
    #[arg(short = 'S', long = "stats")]
    stats: bool,
    /// Raw values, no labels
    #[arg(short = 'H', long = "no-humanize")]
    raw: bool,
    /// Print a config item (several allowed)
    #[arg(short = 'c', long = "config")]
    config: Vec<String>,
    #[command(flatten)]
    common: Common,
}

/// lxc-info as LXC's tools/lxc_info.c prints it: `-H` drops the label only
/// when a single item is asked for (`-S` counts as five), and `-c` keys
/// come last, from the expanded config, as LXC's get_config_item prints them.
fn info(a: InfoArgs) -> anyhow::Result<i32> {
    use crate::tools::{config_item, netinfo};
    use strata_runtime::state_view;
    let (lxcpath, _engine) = setup(&a.common)?;
    let r = existing(&lxcpath, &a.name)?;
    let (st, rec) = state_view::state(&r);
    let (mut state, mut pid, mut ips, mut stats) = (a.state, a.pid, a.ips, a.stats);
    let filter_count = state as usize + pid as usize + ips as usize + 5 * stats as usize;
    let humanize = !a.raw;
    let msg = |k: &str, v: &str| {
        if humanize || filter_count != 1 {
            println!("{k:<15} {v}");
        } else {
            println!("{v}");
        }
    };
    if !state && !pid && !ips && !stats && a.config.is_empty() {
        (state, pid, ips, stats) = (true, true, true, true);
        msg("Name:", &a.name);
    }
    if state {
        msg("State:", st.name());
    }
    let cfg = || strata_core::config::Config::load_effective(&r.config_path());
    // The veth inside (lxc.net.0.name) whose host side the stats show.
    let veth = if stats && rec.is_some() {
        cfg().ok().and_then(|c| {
            (c.get("lxc.net.0.type").map(str::trim) == Some("veth"))
                .then(|| c.get("lxc.net.0.name").unwrap_or("eth0").trim().to_string())
        })
    } else {
        None
    };
    let net = match &rec {
        Some(rec) if ips || veth.is_some() => match netinfo::inspect(rec.init_pid, veth.as_deref()) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("{e:#}");
                None
            }
        },
        _ => None,
    };
    if let Some(rec) = &rec {
        if pid {
            msg("PID:", &rec.init_pid.to_string());
        }
        if ips {
            for ip in net.iter().flat_map(|n| n.ips()) {
                msg("IP:", ip);
            }
        }
    }
    if stats {
        if let Some(rec) = &rec {
            // From the container's cgroups, as LXC's lxc-info reads them.
            let s = strata_runtime::cgroup::stats(&rec.cgroups);
            print!("{}", strata_runtime::cgroup::format_stats(&s, humanize));
        }
        let peer = net
            .as_ref()
            .and_then(|n| n.link)
            .and_then(|(index, link)| netinfo::host_peer(index, link));
        if let Some(host) = peer {
            let size = |v: u64| {
                if humanize {
                    strata_runtime::cgroup::humanize_size(v)
                } else {
                    v.to_string()
                }
            };
            println!("{:<15} {host}", "Link:");
            // The host's rx is what the container sent: LXC prints them from inside.
            let (rx, tx) = netinfo::host_bytes(&host);
            if let Some(rx) = rx {
                println!("{:<15} {}", " TX bytes:", size(rx));
            }
            if let Some(tx) = tx {
                println!("{:<15} {}", " RX bytes:", size(tx));
            }
            println!("{:<15} {}", " Total bytes:", size(rx.unwrap_or(0) + tx.unwrap_or(0)));
        }
    }
    if !a.config.is_empty() {
        let c = cfg()?;
        for k in &a.config {
            match config_item::get(&c, k) {
                Some(v) if !humanize && a.config.len() == 1 => println!("{v}"),
                Some(v) if v.is_empty() => println!("{k} ="),
                Some(v) => println!("{k} = {v}"),
                None => eprintln!("{k} invalid"),
            }
        }
    }
    Ok(0)
}

#[derive(clap::Parser, Debug)]
#[command(about = "Run a command in a running container", version)]
struct AttachArgs {
    #[arg(short = 'n', long = "name")]
    name: String,
    /// Start with an empty environment
    #[arg(long = "clear-env")]
    clear_env: bool,
    /// Keep the environment (the default)
    #[arg(long = "keep-env", conflicts_with = "clear_env")]
    keep_env: bool,
    /// Set VAR=VALUE
    #[arg(short = 'v', long = "set-var")]
    set_var: Vec<String>,
    /// Run the command as this uid inside the container
    #[arg(short = 'u', long = "uid")]
    uid: Option<u32>,
    /// Run the command as this gid inside the container
    #[arg(short = 'g', long = "gid")]
    gid: Option<u32>,
    #[command(flatten)]
    common: Common,
    #[arg(last = true)]
    cmd: Vec<String>,
}

fn attach(a: AttachArgs) -> anyhow::Result<i32> {
    let (lxcpath, _engine) = setup(&a.common)?;
    let r = existing(&lxcpath, &a.name)?;
    let mut env = Vec::new();
    for v in &a.set_var {
        let (k, val) = v
            .split_once('=')
            .ok_or_else(|| anyhow!("-v {v:?}: expected VAR=VALUE"))?;
        env.push((k.to_string(), val.to_string()));
    }
    Ok(strata_runtime::attach_as(&r, &a.cmd, &env, a.clear_env, a.uid, a.gid)?)
}

#[derive(clap::Parser, Debug)]
#[command(about = "Start an ephemeral copy of a container", version)]
struct CopyArgs {
    #[arg(short = 'n', long = "name")]
    name: String,
    #[arg(short = 'N', long = "newname")]
    newname: Option<String>,
    #[arg(short = 'p', long = "newpath")]
    newpath: Option<PathBuf>,
    #[arg(short = 's', long = "snapshot")]
    snapshot: bool,
    #[arg(short = 'B', long = "backingstorage", alias = "backingstore")]
    backingstorage: Option<String>,
    #[arg(short = 'K', long = "keepname")]
    keepname: bool,
    #[arg(short = 'M', long = "keepmac")]
    keepmac: bool,
    #[arg(short = 'e', long = "ephemeral")]
    ephemeral: bool,
    /// Keep the container after it stops
    #[arg(short = 'D', long = "keepdata")]
    keepdata: bool,
    #[arg(short = 'F', long = "foreground")]
    foreground: bool,
    #[arg(short = 'd', long = "daemon", conflicts_with = "foreground")]
    daemon: bool,
    /// Upper layer on a tmpfs
    #[arg(short = 't', long = "tmpfs")]
    tmpfs: bool,
    /// bind=/src[:/dest][:ro]
    #[arg(short = 'm', long = "mount")]
    mount: Vec<String>,
    #[command(flatten)]
    common: Common,
    #[arg(last = true)]
    cmd: Vec<String>,
}

/// `-m bind=/src[:/dest][:ro]`.
fn parse_mount_opt(m: &str) -> anyhow::Result<MountEntry> {
    let Some(spec) = m.strip_prefix("bind=") else {
        bail!("-m {m:?}: only bind=/src[:/dest][:ro] mounts are supported");
    };
    let mut parts: Vec<&str> = spec.split(':').collect();
    let ro = parts.len() > 1 && parts.last() == Some(&"ro");
    if ro || parts.last() == Some(&"rw") {
        parts.pop();
    }
    let (src, dest) = match parts.as_slice() {
        [s] => (*s, *s),
        [s, d] => (*s, *d),
        _ => bail!("-m {m:?}: expected bind=/src[:/dest][:ro]"),
    };
    if !src.starts_with('/') || !dest.starts_with('/') {
        bail!("-m {m:?}: paths must be absolute");
    }
    if Path::new(dest)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        bail!("-m {m:?}: destination may not contain '..'");
    }
    if std::fs::symlink_metadata(src).is_err() {
        bail!("bind source {src} does not exist");
    }
    Ok(MountEntry::bind(src, dest, ro))
}

fn run_ephemeral(common: &Common, base: &str, opts: EphemeralOpts, tool: &str, announce: bool) -> anyhow::Result<i32> {
    let (lxcpath, engine) = setup(common)?;
    let base = existing(&lxcpath, base)?;
    if let Some(n) = &opts.name {
        cli::check_free(&lxcpath, n)?;
    }
    cli::reconcile_staging(&engine, &lxcpath); // setup reaped already
    let name = strata_runtime::ephemeral_name(&base, &opts);
    let code = strata_runtime::ephemeral(&engine, &base, &name, &opts)?;
    if announce && opts.start.daemon && !common.quiet {
        let _ = tool;
        println!("Created {name} as clone of {}", base.name);
    }
    Ok(code)
}

fn copy_ephemeral(a: CopyArgs) -> anyhow::Result<i32> {
    if !a.ephemeral {
        bail!("lxc-copy without -e is not a runtime command");
    }
    if a.newpath.is_some() || a.backingstorage.is_some() {
        bail!("-p and -B are not supported with -e");
    }
    let mounts = a
        .mount
        .iter()
        .map(|m| parse_mount_opt(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let _ = (a.snapshot, a.keepname, a.keepmac);
    let opts = EphemeralOpts {
        name: a.newname.clone(),
        keep: a.keepdata,
        start: StartOpts {
            daemon: !a.foreground && a.cmd.is_empty(),
            cmd: a.cmd.clone(),
            extra_mounts: mounts,
            tmpfs_upper: a.tmpfs,
            ..Default::default()
        },
    };
    run_ephemeral(&a.common, &a.name, opts, "lxc-copy", true)
}

#[derive(clap::Parser, Debug)]
#[command(about = "Start an ephemeral copy of a container (LXC 1.x)", version)]
struct EphArgs {
    /// The original container
    #[arg(short = 'o', long = "orig")]
    orig: String,
    /// Name of the ephemeral container
    #[arg(short = 'n', long = "name")]
    name: Option<String>,
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Bind-mount this host directory at the same path
    #[arg(short = 'b', long = "bdir")]
    bdir: Vec<String>,
    /// Keep the container after it stops
    #[arg(short = 'k', long = "keep-data")]
    keep: bool,
    /// tmpfs or dir (where the upper layer lives)
    #[arg(short = 's', long = "storage-type")]
    storage_type: Option<String>,
    /// Union type (overlayfs only)
    #[arg(short = 'U', long = "union-type")]
    union_type: Option<String>,
    #[arg(short = 'P', long = "lxcpath")]
    lxcpath: Option<PathBuf>,
    #[arg(short = 'l', long = "logpriority")]
    logpriority: Option<String>,
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    #[arg(last = true)]
    cmd: Vec<String>,
}

fn start_ephemeral(a: EphArgs) -> anyhow::Result<i32> {
    if let Some(u) = a
        .union_type
        .as_deref()
        .filter(|u| !matches!(*u, "overlayfs" | "overlay"))
    {
        bail!("-U {u}: only overlayfs is supported");
    }
    let tmpfs = match a.storage_type.as_deref() {
        None | Some("dir") => false,
        Some("tmpfs") => true,
        Some(s) => bail!("-s {s}: expected tmpfs or dir"),
    };
    let mut mounts = Vec::new();
    for b in &a.bdir {
        let (src, dest) = b.split_once(':').unwrap_or((b, b));
        mounts.push(parse_mount_opt(&format!("bind={src}:{dest}"))?);
    }
    let common = Common {
        lxcpath: a.lxcpath.clone(),
        logpriority: a.logpriority.clone(),
        logfile: None,
        quiet: a.quiet,
    };
    let opts = EphemeralOpts {
        name: a.name.clone(),
        keep: a.keep,
        start: StartOpts {
            daemon: a.daemon,
            cmd: a.cmd.clone(),
            extra_mounts: mounts,
            tmpfs_upper: tmpfs,
            ..Default::default()
        },
    };
    run_ephemeral(&common, &a.orig, opts, "lxc-start-ephemeral", true)
}
