//! The monitor: clone init into its namespaces, wait for it, tear down.

use crate::console_hub::{ConsoleLog, Hub, Slot};
use crate::term::RawTerminal;
use crate::*;
use std::os::unix::fs::OpenOptionsExt;

/// The namespaces init is cloned into: LXC's set (a network namespace
/// unless `lxc.net.0.type = none`, a user namespace with `lxc.idmap`) as
/// `lxc.namespace.clone/keep/share.*` change it. The cgroup namespace is
/// unshared by init once it is in its cgroups, as LXC does.
fn ns_flags(cfg: &RunConfig, map: &IdMap) -> Result<u64> {
    const OP: &str = "start";
    let ns = &cfg.ns;
    let mut f = 0;
    for (flag, default) in [
        (libc::CLONE_NEWNS, true),
        (libc::CLONE_NEWPID, true),
        (libc::CLONE_NEWUTS, true),
        (libc::CLONE_NEWIPC, true),
        (libc::CLONE_NEWNET, cfg.net != Net::Host),
        (libc::CLONE_NEWUSER, !map.is_empty()),
        (libc::CLONE_NEWTIME, false),
    ] {
        if ns.makes(flag, default) {
            f |= flag;
        }
    }
    if f & libc::CLONE_NEWNS == 0 {
        return Err(err!(
            Unsupported,
            OP,
            "lxc.namespace: the container needs a mount namespace of its own (its rootfs is pivoted into)"
        ));
    }
    if !map.is_empty() && f & libc::CLONE_NEWUSER == 0 {
        return Err(err!(
            InvalidConfig,
            OP,
            "lxc.idmap needs a user namespace, and lxc.namespace.* does not make one"
        ));
    }
    if map.is_empty() && f & libc::CLONE_NEWUSER != 0 {
        return Err(err!(InvalidConfig, OP, "lxc.namespace.clone = user needs lxc.idmap"));
    }
    if f & libc::CLONE_NEWNET == 0 && !cfg.net.devices().is_empty() {
        return Err(err!(
            InvalidConfig,
            OP,
            "lxc.net.N.type = {}: needs a network namespace of the container's own",
            cfg.net.devices()[0].kind.as_str()
        ));
    }
    Ok(f as u64)
}

/// The namespace file `target` names for `lxc.namespace.share.NS`: a path,
/// a pid, or a running container of the same lxcpath.
fn share_fd(lxcpath: &Path, ns: &str, target: &str) -> Result<std::fs::File> {
    const OP: &str = "share namespace";
    let key = format!("lxc.namespace.share.{ns}");
    let open = |p: &str| std::fs::File::open(p).map_err(|e| err!(NotFound, OP, "{key} = {target}: {p}: {e}"));
    if target.starts_with('/') {
        return open(target);
    }
    if let Ok(pid) = target.parse::<i32>() {
        if pid <= 0 {
            return Err(err!(InvalidConfig, OP, "{key} = {target}: not a pid"));
        }
        return open(&format!("/proc/{pid}/ns/{ns}"));
    }
    let other = ContainerRef::new(lxcpath, target);
    let rec = state::running(&other).ok_or_else(|| err!(NotFound, OP, "{key}: container {target} is not running"))?;
    let f = open(&format!("/proc/{}/ns/{ns}", rec.init_pid))?;
    // Opened first, then proven to be that container's init still.
    if !rec.init_alive() {
        return Err(err!(NotFound, OP, "{key}: container {target} is not running"));
    }
    Ok(f)
}

/// Join the shared namespaces for the clone; returns how to go back.
fn join_shared(lxcpath: &Path, cfg: &RunConfig) -> Result<Vec<(std::fs::File, i32)>> {
    let mut back = Vec::new();
    let mut targets = Vec::new();
    for (ns, flag, target) in &cfg.ns.share {
        targets.push((share_fd(lxcpath, ns, target)?, *flag, ns.clone()));
    }
    for (fd, flag, ns) in targets {
        let own = if flag == libc::CLONE_NEWPID {
            "pid".to_string()
        } else {
            ns.clone()
        };
        let mine = std::fs::File::open(format!("/proc/self/ns/{own}"))
            .map_err(|e| Error::io("share namespace", format!("/proc/self/ns/{own}"), e))?;
        // SAFETY: setns on an open namespace fd with its own type.
        if unsafe { libc::setns(fd.as_raw_fd(), flag) } != 0 {
            let e = Error::errno("share namespace", format!("lxc.namespace.share.{ns}"), sys::errno());
            leave_shared(back);
            return Err(e);
        }
        back.push((mine, flag));
    }
    Ok(back)
}

fn leave_shared(back: Vec<(std::fs::File, i32)>) {
    for (fd, flag) in back.into_iter().rev() {
        // SAFETY: setns back into our own namespace of that type.
        if unsafe { libc::setns(fd.as_raw_fd(), flag) } != 0 {
            tracing::warn!("could not return to the monitor's namespace: {}", sys::errno());
        }
    }
}

/// A console pty held by the monitor.
pub(crate) struct Console {
    /// The pty when the monitor makes it: its master, the slave (kept open
    /// so that the master never sees a hangup while init has none) and the
    /// slave's host path, bound on the container's /dev/console. None when
    /// the container's devpts gives it (see `console_in_devpts`).
    pty: Option<(OwnedFd, std::fs::File, String)>,
    /// `lxc.console.logfile` (or `lxc-start --console-log`), opened.
    log: Option<ConsoleLog>,
    /// `lxc.console.path` (or `lxc-start --console`): a host terminal.
    peer: Option<(RawTerminal, PathBuf)>,
}

/// Whether the console must come from the container's own devpts: a
/// monitor that is not root cannot hand a host pty to the mapped root
/// (LXC 4+ takes it from there always; strata where it must).
fn console_in_devpts(p: &Prepared) -> bool {
    !paths::is_root() && !p.map.is_empty() && p.cfg.autodev
}

fn open_console(p: &Prepared) -> Result<Console> {
    use std::os::unix::fs::PermissionsExt;
    // Both opened first: a bad path fails the start, before init exists.
    let log = match &p.eff_console_log {
        Some(l) => Some(ConsoleLog::open(l, p.cfg.console_log_size, p.cfg.console_rotate)?),
        None => None,
    };
    let peer = match &p.cfg.console_peer {
        Some(d) => Some((RawTerminal::open(d)?, d.clone())),
        None => None,
    };
    if console_in_devpts(p) {
        return Ok(Console { pty: None, log, peer });
    }
    let (master, n) = sys::open_pty("/dev/ptmx")?;
    let path = format!("/dev/pts/{n}");
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .map_err(|e| Error::io("open console", &path, e))?;
    // The container's root must be able to open it, as LXC arranges.
    if let (Some(u), Some(g)) = (p.map.root_uid(), p.map.root_gid()) {
        if paths::is_root() {
            std::os::unix::fs::fchown(&slave, Some(u), Some(g)).map_err(|e| Error::io("chown console", &path, e))?;
        }
    }
    slave
        .set_permissions(std::fs::Permissions::from_mode(0o620))
        .map_err(|e| Error::io("chmod console", &path, e))?;
    Ok(Console {
        pty: Some((master, slave, path)),
        log,
        peer,
    })
}

/// `lxc-start --console`/`--console-log`: this start's console settings in
/// place of the config's.
fn console_overrides(p: &mut Prepared, opts: &StartOpts) -> Result<()> {
    if let Some(c) = &opts.console {
        (p.cfg.console, p.cfg.console_peer) = conf::console_path(c)?;
    }
    if let Some(l) = &opts.console_log {
        p.eff_console_log = Some(l.clone());
    }
    Ok(())
}

/// [`run_monitor`] again as long as init asks for a reboot (it exits on
/// SIGHUP), as LXC's monitor restarts a container; the last status.
pub(crate) fn monitor_loop(
    engine: &Engine,
    r: &ContainerRef,
    opts: &StartOpts,
    ephemeral_run: bool,
    n: &mut Notifier,
) -> Result<i32> {
    // LXC's command socket, held across reboots as LXC's monitor holds it
    // (lxc-stop -r waits on it for the new init).
    let mut srv = None;
    loop {
        let status = run_monitor(engine, r, opts, ephemeral_run, n, &mut srv)?;
        if status != 128 + libc::SIGHUP {
            if let Some(s) = srv {
                s.finish();
            }
            return Ok(status);
        }
        tracing::info!("container {} rebooting", r.name);
    }
}

/// The monitor: prepare, clone init, wait, tear down.
pub(crate) fn run_monitor(
    engine: &Engine,
    r: &ContainerRef,
    opts: &StartOpts,
    ephemeral_run: bool,
    n: &mut Notifier,
    slot: &mut Option<crate::cmdsock::Server>,
) -> Result<i32> {
    let lock = ContainerLock::acquire(&r.lxcpath, &r.name)?;
    // LXC's command socket, ours from before anything is made: taken means
    // LXC (or another monitor) runs the container.
    let srv = match slot {
        Some(s) => {
            s.rebooting();
            s
        }
        None => slot.insert(crate::cmdsock::Server::bind(r)?),
    };
    let mut p = prepare(engine, r, opts, ephemeral_run)?;
    // LXC's tools asking the running container get what this start read.
    srv.set_config(p.eff.clone());
    let ephemeral = ephemeral_run || p.cfg.ephemeral;
    let fail = |p: &mut Prepared, e: Error| -> Error {
        p.undo(engine);
        let _ = state::remove(r);
        e
    };
    let (sync_r, sync_w) = match sys::pipe() {
        Ok(x) => x,
        Err(e) => return Err(fail(&mut p, e)),
    };
    let (err_r, err_w) = match sys::pipe() {
        Ok(x) => x,
        Err(e) => return Err(fail(&mut p, e)),
    };
    // The container's console: a pty of ours whose other end is its
    // /dev/console, as LXC gives one, when the caller's terminal is not
    // lent to it (a daemon, no terminal, or lxc.console.path names one).
    // The hub below drains it, logs it and lends it to lxc-console.
    if let Err(e) = console_overrides(&mut p, opts) {
        return Err(fail(&mut p, e));
    }
    let lent = opts.daemon || !nix::unistd::isatty(0).unwrap_or(false) || p.cfg.console_peer.is_some();
    let console = if p.cfg.console && lent {
        match open_console(&p) {
            Ok(c) => Some(c),
            Err(e) => return Err(fail(&mut p, e)),
        }
    } else {
        None
    };
    // lxc.hook.start-host: init tells us it is set up, waits while they run.
    let host_sync = if p.cfg.hooks.has("start-host") {
        match sys::pipe().and_then(|t| sys::pipe().map(|w| (t, w))) {
            Ok(x) => Some(x),
            Err(e) => return Err(fail(&mut p, e)),
        }
    } else {
        None
    };
    // The ttys' master ends come back to us over this.
    let dev_console = console.as_ref().is_some_and(|c| c.pty.is_none());
    let ttys = if p.cfg.tty_max > 0 || dev_console {
        match sys::socketpair() {
            Ok(x) => Some(x),
            Err(e) => return Err(fail(&mut p, e)),
        }
    } else {
        None
    };
    // Held back while we wait, and forwarded to init.
    // SAFETY: sigset_t is a plain bit array: all-zero is a valid (empty) set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigset_t is a plain bit array: all-zero is a valid (empty) set.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` and `old` are live, exclusively borrowed sigset_ts; the signal numbers are valid, and
    // sigprocmask only changes this thread's mask (the monitor's only thread).
    unsafe {
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
    }
    // SAFETY: `old` is a live sigset_t filled by the sigprocmask above; the old mask is not asked for (null).
    let restore = || unsafe {
        libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    };
    let flags = match ns_flags(&p.cfg, &p.map) {
        Ok(f) => f,
        Err(e) => {
            restore();
            return Err(fail(&mut p, e));
        }
    };
    // Without a user namespace init enters its cgroups itself: cloned into
    // the unified one, moving itself into the v1 ones (see
    // cgroup::attach_self_v1). Kernels before 5.7 cannot clone into a
    // cgroup: the monitor moves it into the unified one then.
    let self_attach = p.self_attach();
    // Where the monitor puts no device in it, no user namespace is to own
    // it and no hook runs in the container before its rootfs is set up, the
    // clone makes no network namespace: the monitor makes it right after,
    // while init sets up its /dev, and sends it to init, which joins it.
    let own_netns = flags & libc::CLONE_NEWNET as u64 != 0
        && flags & libc::CLONE_NEWUSER as u64 == 0
        && !p.cfg.net.needs_monitor()
        && !["pre-mount", "mount", "autodev"].iter().any(|h| p.cfg.hooks.has(h));
    let netns_pair = if own_netns {
        match sys::socketpair() {
            Ok(x) => Some(x),
            Err(e) => {
                restore();
                return Err(fail(&mut p, e));
            }
        }
    } else {
        None
    };
    let clone_flags = if own_netns {
        flags & !(libc::CLONE_NEWNET as u64)
    } else {
        flags
    };
    let cg_fd = match p.cg.unified().filter(|_| self_attach) {
        Some(u) => match sys::open_dir(&u.leaf) {
            Ok(fd) => Some(fd),
            Err(e) => {
                restore();
                return Err(fail(&mut p, e));
            }
        },
        None => None,
    };
    // Shared namespaces: the monitor joins them, init is cloned in them, the
    // monitor goes back (a pid namespace only applies to children).
    let shared = match join_shared(&r.lxcpath, &p.cfg) {
        Ok(b) => b,
        Err(e) => {
            restore();
            return Err(fail(&mut p, e));
        }
    };
    let mut cloned = sys::clone_into(clone_flags, cg_fd.as_ref().map(|f| f.as_raw_fd()));
    let mut into_cgroup = cg_fd.is_some();
    if into_cgroup && cloned.is_err() {
        cloned = sys::clone_into(clone_flags, None);
        into_cgroup = false;
    }
    drop(cg_fd);
    if !matches!(cloned, Ok(None)) {
        leave_shared(shared);
    }
    let (pid, pidfd) = match cloned {
        Ok(None) => {
            drop(sync_w);
            drop(err_r);
            if let Some((ours, _)) = &netns_pair {
                // The monitor's end: init must see EOF if the monitor dies.
                // SAFETY: closing our copy in the child, which never returns to drop it.
                unsafe { libc::close(ours.as_raw_fd()) };
            }
            if let Some(((tell_r, _), (_, go_w))) = &host_sync {
                // The monitor's ends: init must see EOF if the monitor dies.
                // SAFETY: closing our copies in the child, which never returns to drop them.
                unsafe {
                    libc::close(tell_r.as_raw_fd());
                    libc::close(go_w.as_raw_fd());
                }
            }
            let mount = |via: &[(PathBuf, String)], target: &Path| -> Result<()> {
                let mut spec = p.c.rootfs.clone();
                for (from, to) in via {
                    spec = spec.rebase(from, Path::new(to));
                }
                engine
                    .backends
                    .for_spec(&p.c.rootfs)?
                    .mount(&spec, target, false)
                    .map_err(|e| err!(Io, "start", "rootfs {} does not mount: {e}", p.c.rootfs))
            };
            let a = container::ChildArgs {
                cfg: &p.cfg,
                rootfs: p.view.as_deref().unwrap_or(&p.mp),
                cmd: &opts.cmd,
                kill_with_parent: ephemeral,
                userns: !p.map.is_empty(),
                mount_inside: (p.mount_inside || p.mount_private).then(|| container::MountInside {
                    pin: if p.mount_inside { pinned_dirs(&p.c) } else { Vec::new() },
                    mount: &mount,
                }),
                seccomp: p.seccomp.as_ref(),
                tty_sock: ttys.as_ref().map(|(_, c)| c.as_raw_fd()),
                ttys: Default::default(),
                cg_layout: &p.cg_layout,
                console: console
                    .as_ref()
                    .and_then(|c| c.pty.as_ref())
                    .map(|(_, _, path)| path.as_str()),
                console_in_devpts: dev_console,
                hook_env: {
                    let mut e = p.hook_env(r);
                    if let Some(h) = &p.hook_root {
                        e.rootfs_mount = h.display().to_string();
                    }
                    e
                },
                hook_root: p.hook_root.as_deref(),
                host_sync: host_sync.as_ref().map(|(t, w)| (t.1.as_raw_fd(), w.0.as_raw_fd())),
                cg_self: self_attach.then_some(&p.cg),
                cg_split: p.cg_split,
                netns_sock: netns_pair.as_ref().map(|(_, theirs)| theirs.as_raw_fd()),
            };
            container::child_main(&a, sync_r, err_w)
        }
        Ok(Some(x)) => x,
        Err(e) => {
            restore();
            return Err(fail(&mut p, e));
        }
    };
    drop(sync_r);
    drop(err_w);
    // Init waits for "go": it is in its cgroups before it runs anything.
    let attached = match (self_attach, into_cgroup) {
        (false, _) => cgroup::attach(&p.cg, pid),
        (true, false) => cgroup::attach_unified(&p.cg, pid),
        (true, true) => Ok(()),
    };
    // Init's network namespace, then the cgroups it enters after "go":
    // made while it sets up its rootfs.
    let attached = attached.and_then(|_| match netns_pair {
        Some((ours, theirs)) => {
            drop(theirs);
            sys::send_fds(ours.as_raw_fd(), &[sys::new_netns()?])
        }
        None => Ok(()),
    });
    let attached = attached.and_then(|_| {
        if p.cg_split {
            cgroup::create_part(&p.cg, cgroup::Part::Rest)
        } else {
            Ok(())
        }
    });
    if let Err(e) = attached {
        sys::signal(&pidfd, libc::SIGKILL);
        drop(sync_w);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        restore();
        return Err(fail(&mut p, e));
    }
    if !p.map.is_empty() {
        // Init waits for "go" before it becomes root of its namespace: the maps must be there by then.
        if let Err(e) = userns::write_maps(pid, &p.map) {
            sys::signal(&pidfd, libc::SIGKILL);
            drop(sync_w);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            restore();
            return Err(fail(&mut p, e));
        }
    }
    // The container's network: made by us in its namespace before it goes.
    let scripts = crate::net::ScriptCtx {
        env: p.hook_env(r),
        version: p.cfg.hooks.version,
    };
    let mut net = crate::net::Setup::new(&p.cfg.net, paths::is_root(), scripts, &r.lxcpath);
    let rec = RunRecord {
        init_pid: pid,
        init_start: state::proc_start_time(pid).unwrap_or(0),
        cgroups: p.cg.paths(),
        net_links: net.host_links(),
        net_phys: net.lent_links(),
        signals: Some(p.cfg.signals),
        config_file: opts.rcfile.clone(),
        rootfs: p.other_rootfs.clone(),
        ..my_record(ephemeral)
    };
    // Without devices to make, init may go at once; the record is written meanwhile.
    let early = !p.cfg.net.needs_monitor();
    if early {
        sys::write_all(sync_w.as_raw_fd(), b"g");
    }
    let pre = state::write(r, &rec).and_then(|_| net.start(&r.name, pid));
    let started = match pre {
        Ok(()) => {
            if !early {
                sys::write_all(sync_w.as_raw_fd(), b"g");
            }
            drop(sync_w);
            let hooked = match host_sync {
                Some(((tell_r, tell_w), (go_r, go_w))) => {
                    drop(tell_w);
                    drop(go_r);
                    let mut b = [0u8; 1];
                    // SAFETY: a one-byte read into a local; EOF means init failed before.
                    let said = unsafe { libc::read(tell_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) } == 1;
                    if said {
                        let env = [("LXC_PID".to_string(), pid.to_string())];
                        p.cfg.hooks.run("start-host", &p.hook_env(r), &[], &env).inspect(|_| {
                            sys::write_all(go_w.as_raw_fd(), b"g");
                        })
                    } else {
                        Ok(())
                    }
                }
                None => Ok(()),
            };
            if let Err(e) = hooked {
                sys::signal(&pidfd, libc::SIGKILL);
                Err(e)
            } else {
                let msg = sys::read_all(err_r.as_raw_fd());
                if msg.is_empty() {
                    Ok(())
                } else {
                    Err(Error::new(
                        ErrorKind::Io,
                        "start",
                        String::from_utf8_lossy(&msg).into_owned(),
                    ))
                }
            }
        }
        Err(e) => {
            if early {
                sys::signal(&pidfd, libc::SIGKILL);
            }
            drop(sync_w);
            Err(e)
        }
    };
    if let Err(e) = started {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        net.stop();
        restore();
        return Err(fail(&mut p, e));
    }
    // Held while the container runs: a pty whose master is closed is gone.
    // The console's ends first (from the container's devpts), then the ttys'.
    let (from_devpts, tty_masters) = match ttys {
        Some((ours, theirs)) => {
            drop(theirs);
            let c = if dev_console {
                sys::recv_fds(ours.as_raw_fd())
            } else {
                Vec::new()
            };
            (c, sys::recv_fds(ours.as_raw_fd()))
        }
        None => (Vec::new(), Vec::new()),
    };
    srv.started(crate::cmdsock::Running {
        init_pid: pid,
        pidfd: pidfd.try_clone().ok(),
        clone_flags: flags,
        cgroups: p.cg.paths(),
    });
    let (master, _console_slave, log, peer) = match console {
        Some(c) => {
            let (m, s) = match c.pty {
                Some((m, s, _)) => (Some(m), Some(OwnedFd::from(s))),
                None => {
                    let mut it = from_devpts.into_iter();
                    (it.next(), it.next())
                }
            };
            (m, s, c.log, c.peer)
        }
        None => (None, None, None, None),
    };
    let mut hub = Hub::new(r, master, log, peer, tty_masters);
    drop(lock);
    n.ok();
    tracing::info!(pid, "container {} started", r.name);
    // lxc.hook.stop gets the container's namespaces, held from here.
    let ns_held: Vec<(String, std::fs::File)> = if p.cfg.hooks.has("stop") {
        ["mnt", "net", "ipc", "uts", "pid", "cgroup", "user"]
            .iter()
            .filter_map(|n| {
                std::fs::File::open(format!("/proc/{pid}/ns/{n}"))
                    .ok()
                    .map(|f| (n.to_string(), f))
            })
            .collect()
    } else {
        Vec::new()
    };
    let status = wait_init(pid, &pidfd, &set, &mut hub, srv);
    srv.init_gone();
    restore();
    // lxc-console users see the end; the socket goes before the record.
    drop(hub);
    // As LXC: phys devices back to the host, down scripts, host ends deleted.
    net.stop();
    let target = [("LXC_TARGET".to_string(), "stop".to_string())];
    let hook_env = p.hook_env(r);
    if p.cfg.hooks.has("stop") {
        let me = std::process::id();
        let args: Vec<String> = ns_held
            .iter()
            .map(|(n, f)| format!("{n}:/proc/{me}/fd/{}", f.as_raw_fd()))
            .collect();
        if let Err(e) = p.cfg.hooks.run("stop", &hook_env, &args, &target) {
            tracing::error!("{e}");
        }
    }
    drop(ns_held);
    // Init killed by SIGHUP: reboot(2) in its pid namespace asked for a
    // restart (LXC's test); the container stays to be started again.
    let reboot = status == 128 + libc::SIGHUP;
    // Cleanup is complete when this returns: the cgroups are removed and
    // the record too; a rootfs mounted in the container's namespace went
    // with it (before init's exit was seen), so nothing is looked for on
    // the host then.
    let host_mounts = !p.mount_private || p.tmpfs.is_some();
    let destroy = ephemeral && !reboot;
    teardown_then(engine, r, destroy, host_mounts, || {
        if let Err(e) = p.cfg.hooks.run("post-stop", &hook_env, &[], &target) {
            tracing::error!("{e}");
        }
        // The command socket goes before the container it names: the
        // destroy's check for a container LXC runs would find it still
        // bound, and wait its whole timeout for an answer from us.
        if destroy {
            if let Some(s) = slot.take() {
                s.finish();
            }
        }
    })?;
    Ok(status)
}

/// Wait for init, forwarding the held-back signals and serving its
/// terminals and LXC's command socket meanwhile; its exit status.
fn wait_init(pid: i32, pidfd: &OwnedFd, set: &libc::sigset_t, hub: &mut Hub, srv: &mut crate::cmdsock::Server) -> i32 {
    // SAFETY: a signalfd for the blocked set; owned below.
    let sfd = unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC) };
    // SAFETY: a new fd of ours when non-negative.
    let sfd = (sfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(sfd) });
    loop {
        let served = hub.fds();
        let mut fds = vec![
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_ref().map_or(-1, |s| s.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: srv.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        fds.extend(served.iter().map(|(_, fd)| libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        }));
        // SAFETY: poll on a local array of pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, srv.poll_timeout()) };
        if r < 0 && sys::errno() != nix::errno::Errno::EINTR {
            break;
        }
        if fds[1].revents & libc::POLLIN != 0 {
            // SAFETY: a zeroed plain C struct, filled by the read below.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let sz = std::mem::size_of::<libc::signalfd_siginfo>();
            let fd = sfd.as_ref().map_or(-1, |s| s.as_raw_fd());
            // SAFETY: read of one siginfo into the local above.
            if unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), sz) } == sz as isize {
                let sig = info.ssi_signo as i32;
                // Pid 1 drops signals it does not catch; stopping the monitor then stops the container.
                sys::signal(pidfd, if catches(pid, sig) { sig } else { libc::SIGKILL });
            }
        }
        for (f, (slot, _)) in fds[3..].iter().zip(&served) {
            if r > 0 && f.revents != 0 {
                hub.ready(*slot);
            }
        }
        if fds[0].revents != 0 {
            // What init wrote last is still logged.
            if served.iter().any(|(s, _)| matches!(s, Slot::Master)) {
                hub.drain();
            }
            break;
        }
        // Clients of LXC's command socket; freezer states on a timeout.
        if fds[2].revents != 0 || r == 0 {
            srv.serve(hub);
        }
    }
    loop {
        let mut st = 0;
        // SAFETY: `st` is a live c_int for waitpid to write the status into.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            if libc::WIFEXITED(st) {
                return libc::WEXITSTATUS(st);
            }
            if libc::WIFSIGNALED(st) {
                return 128 + libc::WTERMSIG(st);
            }
        } else if !(r < 0 && sys::errno() == nix::errno::Errno::EINTR) {
            return 1;
        }
    }
}

/// Whether `pid` has a handler for `sig` (SigCgt in /proc/PID/status).
fn catches(pid: i32, sig: i32) -> bool {
    let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    st.lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1u64 << (sig - 1)) != 0)
}

/// Unmount what a run mounted and remove its record. The caller holds the lock.
pub(crate) fn cleanup_locked(engine: &Engine, r: &ContainerRef) -> Result<()> {
    cleanup(engine, r, true)
}

/// [`cleanup_locked`]; `host_mounts` false (from the monitor of a run that
/// mounted nothing on the host: its rootfs was mounted in the container's
/// own mount namespace, which the kernel dropped before init's exit was
/// seen) skips looking for mounts.
fn cleanup(engine: &Engine, r: &ContainerRef, host_mounts: bool) -> Result<()> {
    cleanup_record(engine, r, state::read(r), host_mounts)
}

/// [`cleanup`] with the run record the caller has just read under the lock.
fn cleanup_record(
    engine: &Engine,
    r: &ContainerRef,
    rec: Option<strata_core::state::RunRecord>,
    host_mounts: bool,
) -> Result<()> {
    if let Some(rec) = &rec {
        // Init is gone, and with it every process of its pid namespace.
        cgroup::remove(&rec.cgroups)?;
        crate::net::remove_leftovers(&rec.net_links, &rec.net_phys);
    }
    if host_mounts {
        // The rootfs the run mounted: `-f FILE`'s when it named another.
        let other = rec
            .and_then(|rec| rec.rootfs)
            .and_then(|s| strata_core::RootfsSpec::parse(&s).ok());
        unmount_rootfs(engine, r, other)?;
    }
    // The console socket of a monitor that was killed.
    let _ = std::fs::remove_file(console_hub::socket_dir(&r.lxcpath).join(console_hub::socket_name(&r.name)));
    state::remove(r)
}

/// The host-side rootfs mount of a run, its idmapped view and tmpfs upper.
fn unmount_rootfs(engine: &Engine, r: &ContainerRef, other: Option<strata_core::RootfsSpec>) -> Result<()> {
    let mp = mount_point(r);
    let view = userns::idmapped_path(&mp);
    if std::fs::symlink_metadata(&view).is_ok() {
        userns::remove_idmapped(&view)?;
    }
    let mounts = fsutil::mount_points();
    if let Some(rootfs) = other.or_else(|| Store::new(&r.lxcpath).load(&r.name).ok().map(|c| c.rootfs)) {
        if mounts.iter().any(|m| m == &mp) {
            engine.backends.for_spec(&rootfs)?.umount(&rootfs, &mp)?;
        }
        if let Some((_, upper)) = rootfs.overlay_parts() {
            if let Some(dir) = Path::new(upper).parent() {
                if mounts.iter().any(|m| m == dir) {
                    nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH)
                        .map_err(|e| Error::errno("unmount tmpfs", dir, e))?;
                }
            }
        }
    } else if mounts.iter().any(|m| m == &mp) {
        // The container is gone: nothing to ask a backend, just detach.
        nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| Error::errno("unmount rootfs", &mp, e))?;
    }
    let _ = std::fs::remove_dir(&mp);
    // The lxcpath's dir of mount points, with its last one.
    if let Some(d) = mp.parent() {
        strata_core::paths::prune_dir(d);
    }
    Ok(())
}

/// After init is gone: unmount, remove the record, destroy an ephemeral container.
pub(crate) fn teardown(engine: &Engine, r: &ContainerRef, ephemeral: bool) -> Result<()> {
    teardown_then(engine, r, ephemeral, true, || {})
}

/// [`teardown`], with `after` run once the container is cleaned up and
/// before an ephemeral one is destroyed (where LXC runs post-stop hooks);
/// `host_mounts` as for [`cleanup`].
pub(crate) fn teardown_then(
    engine: &Engine,
    r: &ContainerRef,
    ephemeral: bool,
    host_mounts: bool,
    after: impl FnOnce(),
) -> Result<()> {
    {
        let _lock = ContainerLock::acquire(&r.lxcpath, &r.name)?;
        let rec = state::read(r);
        if rec.as_ref().is_some_and(|rec| rec.init_alive()) {
            // Started again by someone else meanwhile.
            return Ok(());
        }
        cleanup_record(engine, r, rec, host_mounts)?;
    }
    after();
    if ephemeral {
        destroy_quietly(engine, r)?;
    }
    Ok(())
}

pub(crate) fn destroy_quietly(engine: &Engine, r: &ContainerRef) -> Result<()> {
    let req = DestroyRequest {
        r: r.clone(),
        with_snapshots: true,
        force: false,
        promote: false,
    };
    match engine.destroy(&req) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        x => x,
    }
}
