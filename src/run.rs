//! Front ends of the container runtime: lxc-start, lxc-stop, lxc-execute,
//! lxc-attach, lxc-info, lxc-start-ephemeral and `lxc-copy -e`.

use crate::common::{self, Common};
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
            match common::parse::<$t>(tool, argv) {
                Ok(a) => a,
                Err(code) => return Ok(code),
            }
        };
    }
    match tool {
        "lxc-start" => start(parse!(StartArgs)),
        "lxc-execute" => execute(parse!(ExecuteArgs)),
        "lxc-stop" => stop(parse!(StopArgs)),
        "lxc-info" => info(parse!(InfoArgs)),
        "lxc-attach" => attach(parse!(AttachArgs)),
        "lxc-copy" => copy_ephemeral(parse!(CopyArgs)),
        "lxc-start-ephemeral" => start_ephemeral(parse!(EphArgs)),
        t if crate::names::STATE_TOOLS.contains(&t) => crate::tools::dispatch(t, argv),
        t => bail!("{t}: not a runtime tool"),
    }
}

/// Logging, the lxcpath (absolute, normalized), the engine, and the leftovers
/// of killed runs removed.
fn setup(c: &Common) -> anyhow::Result<(PathBuf, Engine)> {
    common::init_logging(c.logpriority.as_deref(), c.logfile.as_deref())?;
    let lxcpath: PathBuf = common::resolve_lxcpath(c.lxcpath.as_deref())?.components().collect();
    let engine = common::engine();
    common::reap(&engine, &lxcpath);
    Ok((lxcpath, engine))
}

fn existing(lxcpath: &Path, name: &str) -> anyhow::Result<ContainerRef> {
    common::check_exists(lxcpath, name)?;
    Ok(ContainerRef::new(lxcpath, name))
}

/// A container to start: defined in the lxcpath, or (LXC's volatile
/// container) not, and started from `-f FILE` alone.
fn to_start(lxcpath: &Path, name: &str, rcfile: Option<&Path>) -> anyhow::Result<ContainerRef> {
    if rcfile.is_some() {
        common::check_name(name)?;
        return Ok(ContainerRef::new(lxcpath, name));
    }
    existing(lxcpath, name)
}

/// A container to act on while it runs (see [`common::check_exists_or_running`]).
fn running_or_existing(lxcpath: &Path, name: &str) -> anyhow::Result<ContainerRef> {
    common::check_exists_or_running(lxcpath, name)?;
    Ok(ContainerRef::new(lxcpath, name))
}

#[derive(clap::Parser, Debug)]
#[command(about = "Start a container", version)]
struct StartArgs {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    name: String,
    /// Daemonize the container (the default)
    #[arg(short = 'd', long = "daemon", conflicts_with = "foreground")]
    daemon: bool,
    /// Start with the current tty attached to /dev/console
    #[arg(short = 'F', long = "foreground")]
    foreground: bool,
    /// Create a file with the process id (the monitor's, while it runs)
    #[arg(short = 'p', long = "pidfile", value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// If any fds are inherited, close them (--daemon implies it)
    #[arg(short = 'C', long = "close-all-fds")]
    close_all_fds: bool,
    /// Assign VAL to configuration variable KEY
    #[arg(short = 's', long = "define", value_name = "KEY=VAL")]
    define: Vec<String>,
    /// Use specified FILE (a terminal) for the container console
    #[arg(short = 'c', long = "console", value_name = "FILE")]
    console: Option<PathBuf>,
    /// Log container console output to FILE
    #[arg(short = 'L', long = "console-log", value_name = "FILE")]
    console_log: Option<PathBuf>,
    /// Share the network namespace with another container (NAME) or process (PID)
    #[arg(long = "share-net", value_name = "NAME|PID")]
    share_net: Option<String>,
    /// Share the IPC namespace with another container or process
    #[arg(long = "share-ipc", value_name = "NAME|PID")]
    share_ipc: Option<String>,
    /// Share the UTS namespace with another container or process
    #[arg(long = "share-uts", value_name = "NAME|PID")]
    share_uts: Option<String>,
    /// Share the PID namespace with another container or process
    #[arg(long = "share-pid", value_name = "NAME|PID")]
    share_pid: Option<String>,
    #[command(flatten)]
    common: Common,
    /// The command to run as init
    #[arg(last = true)]
    cmd: Vec<String>,
}

#[derive(clap::Parser, Debug)]
#[command(about = "Run COMMAND in container NAME (with a minimal init)", version)]
struct ExecuteArgs {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    name: String,
    /// Daemonize the container
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Assign VAL to configuration variable KEY
    #[arg(short = 's', long = "define", value_name = "KEY=VAL")]
    define: Vec<String>,
    /// Execute COMMAND with UID inside the container
    #[arg(short = 'u', long = "uid", value_name = "UID")]
    uid: Option<u32>,
    /// Execute COMMAND with GID inside the container
    #[arg(short = 'g', long = "gid", value_name = "GID")]
    gid: Option<u32>,
    #[command(flatten)]
    common: Common,
    /// The command to run
    #[arg(last = true)]
    cmd: Vec<String>,
}

/// `-s KEY=VAL` as LXC splits it: at the first `=`, blanks around both trimmed.
fn parse_defines(defs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    defs.iter()
        .map(|d| {
            let (k, v) = d.split_once('=').ok_or_else(|| anyhow!("-s {d:?}: expected KEY=VAL"))?;
            let k = k.trim();
            if k.is_empty() {
                bail!("-s {d:?}: expected KEY=VAL");
            }
            Ok((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// A path the daemonized monitor (whose working dir is /) still finds.
fn absolute(p: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    Ok(match p {
        Some(p) => Some(std::path::absolute(&p)?),
        None => None,
    })
}

fn start(a: StartArgs) -> anyhow::Result<i32> {
    let (lxcpath, engine) = setup(&a.common)?;
    let r = to_start(&lxcpath, &a.name, a.common.rcfile.as_deref())?;
    let mut defines = parse_defines(&a.define)?;
    // As LXC: --share-NS is lxc.namespace.share.NS, set after the config is read.
    for (ns, v) in [
        ("net", &a.share_net),
        ("ipc", &a.share_ipc),
        ("uts", &a.share_uts),
        ("pid", &a.share_pid),
    ] {
        if let Some(v) = v {
            defines.push((format!("lxc.namespace.share.{ns}"), v.clone()));
        }
    }
    let opts = StartOpts {
        cmd: a.cmd,
        daemon: !a.foreground,
        rcfile: absolute(a.common.rcfile.clone())?,
        defines,
        pidfile: absolute(a.pidfile)?,
        close_fds: a.close_all_fds,
        console: a
            .console
            .map(|c| {
                if c.as_os_str() == "none" {
                    Ok(c)
                } else {
                    std::path::absolute(&c)
                }
            })
            .transpose()?
            .map(|c| c.display().to_string()),
        console_log: absolute(a.console_log)?,
        ..Default::default()
    };
    Ok(strata_runtime::start(&engine, &r, &opts)?)
}

fn execute(a: ExecuteArgs) -> anyhow::Result<i32> {
    let (lxcpath, engine) = setup(&a.common)?;
    let r = to_start(&lxcpath, &a.name, a.common.rcfile.as_deref())?;
    let mut defines = parse_defines(&a.define)?;
    // As LXC's lxc-execute: -u/-g are init's ids.
    if let Some(u) = a.uid {
        defines.push(("lxc.init.uid".into(), u.to_string()));
    }
    if let Some(g) = a.gid {
        defines.push(("lxc.init.gid".into(), g.to_string()));
    }
    let rcfile = absolute(a.common.rcfile.clone())?;
    let mut cmd = a.cmd;
    if cmd.is_empty() {
        // As LXC: without a command, lxc.execute.cmd.
        let cfg_file = rcfile.clone().unwrap_or_else(|| r.config_path());
        let eff = strata_core::config::Config::load_effective(&cfg_file)?;
        let set = defines
            .iter()
            .rev()
            .find(|(k, _)| k == "lxc.execute.cmd")
            .map(|(_, v)| v.as_str());
        cmd = set
            .or(eff.get("lxc.execute.cmd"))
            .map(|c| c.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        if cmd.is_empty() {
            bail!("lxc-execute needs a command: lxc-execute -n NAME -- COMMAND, or lxc.execute.cmd");
        }
    }
    let opts = StartOpts {
        cmd,
        daemon: a.daemon,
        rcfile,
        defines,
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
    /// Avoid using API locks (only with -k; strata's stop takes none)
    #[arg(long = "nolock")]
    nolock: bool,
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
    let r = running_or_existing(&lxcpath, &a.name)?;
    if a.reboot && (a.kill || a.nokill) {
        bail!("-r excludes -k and --nokill");
    }
    if a.nolock && !a.kill {
        bail!("--nolock may only be used with -k");
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
        rcfile: absolute(a.common.rcfile.clone())?,
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
    let (lxcpath, engine) = setup(&a.common)?;
    let r = running_or_existing(&lxcpath, &a.name)?;
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
    // `--rcfile`: its items instead of the container's, as LXC's lxc-info.
    let cfg_file = a.common.rcfile.clone().unwrap_or_else(|| r.config_path());
    let cfg = || strata_core::config::Config::load_effective(&cfg_file);
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
        // The rootfs's disk use, from its backend, running or not.
        print!("{}", crate::du::info_lines(&engine, &lxcpath, &a.name, humanize));
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
#[command(about = "Execute the specified COMMAND - enter the container NAME", version)]
struct AttachArgs {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    name: String,
    /// Use elevated privileges instead of those of the container: an OR'd
    /// list of CAP, CGROUP and LSM (capabilities, cgroup and restrictions);
    /// all of them if none is given. WARNING: this may leak privileges into
    /// the container.
    #[arg(short = 'e', long = "elevated-privileges", value_name = "PRIVILEGES", num_args = 0..=1, require_equals = true)]
    elevated: Option<Option<String>>,
    /// Use ARCH for the program instead of the container's own architecture
    #[arg(short = 'a', long = "arch", value_name = "ARCH")]
    arch: Option<String>,
    /// Attach to only these namespaces, an OR'd list of MOUNT, PID, UTSNAME,
    /// IPC, USER or NETWORK (implies -e with all privileges elevated)
    #[arg(short = 's', long = "namespaces", value_name = "FLAGS")]
    namespaces: Option<String>,
    /// Remount /sys and /proc when -s leaves out the mount namespace, so
    /// that they show the joined namespaces
    #[arg(short = 'R', long = "remount-sys-proc")]
    remount_sys_proc: bool,
    /// Clear all environment variables before attaching (the program starts
    /// with only container=lxc and a default PATH)
    #[arg(long = "clear-env")]
    clear_env: bool,
    /// Keep all current environment variables (the default)
    #[arg(long = "keep-env", conflicts_with = "clear_env")]
    keep_env: bool,
    /// Log pty output to FILE
    #[arg(short = 'L', long = "pty-log", value_name = "FILE")]
    pty_log: Option<PathBuf>,
    /// Set an additional variable VAR=VALUE seen by the attached program (may be repeated)
    #[arg(short = 'v', long = "set-var", value_name = "VAR=VALUE")]
    set_var: Vec<String>,
    /// Keep an additional environment variable with --clear-env (may be repeated)
    #[arg(long = "keep-var", value_name = "VAR")]
    keep_var: Vec<String>,
    /// Execute COMMAND with UID inside the container
    #[arg(short = 'u', long = "uid", value_name = "UID")]
    uid: Option<u32>,
    /// Execute COMMAND with GID inside the container
    #[arg(short = 'g', long = "gid", value_name = "GID")]
    gid: Option<u32>,
    /// SELinux context to transition into
    #[arg(short = 'c', long = "context", value_name = "CONTEXT")]
    context: Option<String>,
    #[command(flatten)]
    common: Common,
    #[arg(last = true)]
    cmd: Vec<String>,
}

fn attach(a: AttachArgs) -> anyhow::Result<i32> {
    let mut elevated = match &a.elevated {
        Some(v) => strata_runtime::Elevated::parse(v.as_deref())?,
        None => strata_runtime::Elevated::default(),
    };
    let namespaces = match &a.namespaces {
        Some(v) => {
            // As LXC: -s implies -e with everything elevated.
            elevated = strata_runtime::Elevated::ALL;
            Some(strata_runtime::parse_namespaces(v)?)
        }
        None => None,
    };
    let linux32 = match &a.arch {
        Some(v) => Some(strata_runtime::confine::arch_is_linux32(v).map_err(|e| anyhow!("-a {e}"))?),
        None => None,
    };
    let (lxcpath, _engine) = setup(&a.common)?;
    let r = running_or_existing(&lxcpath, &a.name)?;
    let mut env = Vec::new();
    for v in &a.set_var {
        let (k, val) = v
            .split_once('=')
            .ok_or_else(|| anyhow!("-v {v:?}: expected VAR=VALUE"))?;
        env.push((k.to_string(), val.to_string()));
    }
    let o = strata_runtime::AttachOpts {
        env,
        clear_env: a.clear_env,
        keep_vars: a.keep_var.clone(),
        uid: a.uid,
        gid: a.gid,
        elevated,
        namespaces,
        remount_sys_proc: a.remount_sys_proc,
        linux32,
        context: a.context.clone(),
        rcfile: absolute(a.common.rcfile.clone())?,
        pty_log: a.pty_log.clone(),
    };
    Ok(strata_runtime::attach_with(&r, &a.cmd, &o)?)
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
    /// Allow an ephemeral copy of a running container
    #[arg(short = 'a', long = "allowrunning")]
    allowrunning: bool,
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
        common::check_free(&lxcpath, n)?;
    }
    common::reconcile_staging(&engine, &lxcpath); // setup reaped already
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
    let lxcpath = common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    common::check_exists(&lxcpath, &a.name)?;
    crate::common::refuse_running(&ContainerRef::new(&lxcpath, &a.name), a.allowrunning)?;
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
    // The union type names a backend (LXC's overlayfs); the ephemeral layer is only ever a union mount.
    if let Some(u) = a.union_type.as_deref() {
        if !common::engine().backends.get(u).is_ok_and(|b| b.caps().union_mount) {
            bail!("-U {u}: only overlayfs is supported");
        }
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
        quiet: a.quiet,
        ..Default::default()
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
