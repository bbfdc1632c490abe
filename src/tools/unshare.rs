//! `lxc-unshare -s NAMESPACES [-u USER] [-H HOSTNAME] [-i IFNAME]... [-d] [-M] COMMAND`:
//! run a command in a new set of namespaces.
//!
//! As in LXC 5: NAMESPACES is a `|`-separated list of MOUNT, PID, UTSNAME,
//! IPC, USER, NETWORK, CGROUP, TIME (or the /proc/PID/ns names: mnt, pid,
//! uts, ipc, user, net, cgroup, time); the command is cloned straight into
//! them (so it is PID 1 of a new PID namespace). `-u` with USER maps that
//! uid to the caller's uid (one id) and becomes it; without USER it becomes
//! that user. `-i` moves host interfaces into a new NETWORK namespace
//! before the command runs. `-d` returns at once. Where strata differs:
//! a new mount namespace is a slave of the host's (mounts made inside
//! never reach the host), `-M` mounts a fresh /proc (LXC 5.0.2 leaves
//! /proc empty), and the exit status is the command's (LXC gives 1 for
//! any failure).

use super::nschild::{self, Command};
use crate::common::Common;
use anyhow::{anyhow, bail};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use strata_runtime::{clone3, CloneArgs};

#[derive(clap::Parser, Debug)]
#[command(about = "Run a COMMAND in a new set of NAMESPACES", version)]
pub struct Args {
    /// ORed list of namespaces to unshare: MOUNT, PID, UTSNAME, IPC, USER, NETWORK, CGROUP, TIME
    #[arg(short = 's', long = "namespaces", value_name = "FLAGS")]
    namespaces: Option<String>,
    /// User name or uid the command runs as (with USER: mapped to the caller's uid)
    #[arg(short = 'u', long = "user", value_name = "USERID")]
    user: Option<String>,
    /// Set the hostname in the new UTSNAME namespace
    #[arg(short = 'H', long = "hostname", value_name = "HOSTNAME")]
    hostname: Option<String>,
    /// Interface to move into the new NETWORK namespace (repeatable)
    #[arg(short = 'i', long = "ifname", value_name = "IFNAME")]
    ifnames: Vec<String>,
    /// Daemonize (do not wait for the command to exit)
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Mount /proc, /dev/shm and /dev/mqueue afresh in the new MOUNT namespace
    #[arg(short = 'M', long = "remount")]
    remount: bool,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<OsString>,
    #[command(flatten)]
    common: Common,
}

const TOOL: &str = "lxc-unshare";

/// LXC's names, the /proc/PID/ns names, and the clone flags.
const NAMESPACES: &[(&str, &str, u64)] = &[
    ("MOUNT", "mnt", libc::CLONE_NEWNS as u64),
    ("PID", "pid", libc::CLONE_NEWPID as u64),
    ("UTSNAME", "uts", libc::CLONE_NEWUTS as u64),
    ("IPC", "ipc", libc::CLONE_NEWIPC as u64),
    ("USER", "user", libc::CLONE_NEWUSER as u64),
    ("NETWORK", "net", libc::CLONE_NEWNET as u64),
    ("CGROUP", "cgroup", libc::CLONE_NEWCGROUP as u64),
    ("TIME", "time", 0x80),
];

/// `MOUNT|PID` to clone flags; empty items are skipped, as LXC does.
pub fn parse_namespaces(s: &str) -> anyhow::Result<u64> {
    let mut flags = 0;
    for item in s.split('|').map(str::trim).filter(|t| !t.is_empty()) {
        let Some(&(_, _, f)) = NAMESPACES.iter().find(|(n, p, _)| *n == item || *p == item) else {
            bail!("unknown namespace {item:?} (known: MOUNT, PID, UTSNAME, IPC, USER, NETWORK, CGROUP, TIME)");
        };
        flags |= f;
    }
    if flags == 0 {
        bail!("a namespace to execute the command in is required (-s)");
    }
    Ok(flags)
}

/// The user `-u` names (a name or a uid): uid, gid and all its groups.
/// Asked of `getent` and `id`: the binary is linked statically, and its C
/// library cannot look users up by name.
fn lookup_user(s: &str) -> anyhow::Result<(u32, u32, Vec<u32>)> {
    let run = |prog: &str, args: &[&str]| -> anyhow::Result<Option<String>> {
        let out = std::process::Command::new(prog)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(|e| anyhow!("run {prog}: {e}"))?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
    };
    let what = if s.parse::<u32>().is_ok() { "uid" } else { "user name" };
    let bad = || anyhow!("invalid {what} {s:?}: no such user");
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let line = run("getent", &["passwd", s])?.ok_or_else(bad)?;
    let f: Vec<&str> = line.lines().next().unwrap_or("").split(':').collect();
    let (Some(name), Some(Ok(uid)), Some(Ok(gid))) =
        (f.first(), f.get(2).map(|v| v.parse()), f.get(3).map(|v| v.parse()))
    else {
        return Err(bad());
    };
    let groups = run("id", &["-G", "--", name])?
        .ok_or_else(|| anyhow!("look up the groups of {name}"))?
        .split_whitespace()
        .map(|g| g.parse::<u32>().map_err(|_| anyhow!("id -G {name}: unexpected {g:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((uid, gid, groups))
}

/// What the child does between the clone and the exec.
struct Plan {
    flags: u64,
    user: Option<(u32, u32, Vec<u32>)>,
    hostname: Option<String>,
    remount: bool,
    cmd: Command,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let _s = tracing::info_span!("unshare").entered();
    let Some(ns) = a.namespaces.as_deref() else {
        bail!("a namespace to execute the command in is required (-s)");
    };
    let flags = parse_namespaces(ns)?;
    if a.command.is_empty() {
        bail!("a command to execute in the new namespace is required");
    }
    let has = |f: libc::c_int| flags & f as u64 != 0;
    if !a.ifnames.is_empty() && !has(libc::CLONE_NEWNET) {
        bail!("-i <interfacename> needs -s NETWORK");
    }
    if a.hostname.is_some() && !has(libc::CLONE_NEWUTS) {
        bail!("-H <hostname> needs -s UTSNAME");
    }
    if a.remount && !has(libc::CLONE_NEWNS) {
        bail!("-M needs -s MOUNT");
    }
    for i in &a.ifnames {
        if !std::path::Path::new("/sys/class/net").join(i).exists() || i.contains('/') || i.is_empty() {
            bail!("-i {i}: no such network interface");
        }
    }
    let plan = Plan {
        flags,
        user: a.user.as_deref().map(lookup_user).transpose()?,
        hostname: a.hostname.clone(),
        remount: a.remount,
        cmd: Command::new(&a.command, "")?,
    };
    let (go_r, go_w) = nschild::pipe()?;
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: no pointers in `args`. lxc-unshare starts no thread, so the
    // child is a copy of a single-threaded process (no lock held elsewhere,
    // allocating is fine) and ends in exec or `die`'s _exit, never returning.
    let pid = match unsafe { clone3(&mut args) } {
        Ok(pid) => pid,
        Err(e) => {
            let hint = if e.raw_os_error() == Some(libc::EPERM) && !has(libc::CLONE_NEWUSER) {
                " (without root, add USER to the namespaces)"
            } else {
                ""
            };
            bail!("clone into {ns}: {e}{hint}");
        }
    };
    let pid = pid as libc::pid_t;
    if pid == 0 {
        drop(go_w);
        child(&plan, go_r);
    }
    drop(go_r);
    if let Err(e) = prepare(&plan, &a.ifnames, pid) {
        drop(go_w);
        nschild::abandon(pid);
        return Err(e);
    }
    if let Err(e) = nschild::send_go(go_w) {
        nschild::abandon(pid);
        return Err(e);
    }
    if a.daemon {
        return Ok(0);
    }
    nschild::wait(pid)
}

/// The parent's part before the child goes on: its uid map, its interfaces.
fn prepare(plan: &Plan, ifnames: &[String], pid: libc::pid_t) -> anyhow::Result<()> {
    if let (Some((uid, _, _)), true) = (&plan.user, plan.flags & libc::CLONE_NEWUSER as u64 != 0) {
        let me = nix::unistd::getuid().as_raw();
        let p = format!("/proc/{pid}/uid_map");
        std::fs::write(&p, format!("{uid} {me} 1\n")).map_err(|e| anyhow!("map uid {uid} to {me}: {p}: {e}"))?;
    }
    for i in ifnames {
        let _s = tracing::debug_span!("move interface", ifname = %i).entered();
        let out = std::process::Command::new("ip")
            .args(["link", "set", "dev", i, "netns", &pid.to_string()])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| anyhow!("run ip: {e}"))?;
        if !out.status.success() {
            bail!(
                "move interface {i} into the new network namespace: {}",
                String::from_utf8_lossy(&out.stderr).trim().replace('\n', "; ")
            );
        }
    }
    Ok(())
}

/// The cloned child: wait for the parent, then mounts, hostname, user, exec.
fn child(plan: &Plan, go: OwnedFd) -> ! {
    use nix::mount::{mount, MsFlags};
    nschild::wait_for_go(go);
    if plan.flags & libc::CLONE_NEWNS as u64 != 0 {
        if let Err(e) = mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        ) {
            nschild::die(TOOL, &format!("make the mount tree a slave of the host's: {e}"));
        }
        if plan.remount {
            remount_default_fs();
        }
    }
    if let Some(h) = &plan.hostname {
        if let Err(e) = nix::unistd::sethostname(h) {
            nschild::die(TOOL, &format!("set the hostname to {h:?}: {e}"));
        }
    }
    if let Some((uid, gid, groups)) = &plan.user {
        if plan.flags & libc::CLONE_NEWUSER as u64 == 0 {
            // Outside a new user namespace: the user's groups too, not root's.
            if let Err(e) = nix::unistd::setgid((*gid).into()) {
                nschild::die(TOOL, &format!("set gid {gid}: {e}"));
            }
            let groups: Vec<nix::unistd::Gid> = groups.iter().map(|g| (*g).into()).collect();
            if let Err(e) = nix::unistd::setgroups(&groups) {
                nschild::die(TOOL, &format!("set the groups of uid {uid}: {e}"));
            }
        }
        if let Err(e) = nix::unistd::setuid((*uid).into()) {
            nschild::die(TOOL, &format!("set uid {uid}: {e}"));
        }
    }
    plan.cmd.exec(TOOL)
}

/// `-M`: a fresh /proc (of the new PID namespace, if any) is required;
/// /dev/shm and /dev/mqueue are mounted where the namespaces allow, else a
/// warning says which was not (LXC goes on without them too).
fn remount_default_fs() {
    use nix::mount::{mount, MsFlags};
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = mount(Some("proc"), "/proc", Some("proc"), flags, None::<&str>) {
        nschild::die(TOOL, &format!("mount /proc: {e} (a new /proc needs -s PID, or root)"));
    }
    for (src, dir, fs, data, why) in [
        ("shmfs", "/dev/shm", "tmpfs", Some("mode=1777"), ""),
        (
            "mqueue",
            "/dev/mqueue",
            "mqueue",
            None,
            " (without root it needs -s IPC)",
        ),
    ] {
        if !std::path::Path::new(dir).exists() {
            let _ = std::fs::create_dir(dir);
        }
        if let Err(e) = mount(Some(src), dir, Some(fs), flags, data) {
            eprintln!("{TOOL}: warning: {dir} not mounted: {e}{why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_as_lxc_names_them() {
        let f = parse_namespaces("MOUNT|PID|NETWORK|UTSNAME|IPC|USER|CGROUP").unwrap();
        for c in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWCGROUP,
        ] {
            assert!(f & c as u64 != 0);
        }
        assert_eq!(parse_namespaces("|mnt||MOUNT").unwrap(), libc::CLONE_NEWNS as u64);
        assert_eq!(parse_namespaces("TIME").unwrap(), 0x80);
        for bad in ["", "|", "MOUNT,PID", "mount", "BOGUS"] {
            assert!(parse_namespaces(bad).is_err(), "{bad}");
        }
    }
}
