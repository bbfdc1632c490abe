//! The container runtime: a consumer of the storage layer.
//!
//! It gets a container's rootfs only through the core traits
//! ([`strata_core::Backend::mount`]/`umount`, the [`Engine`] for clones and
//! destroy) and never knows which backend holds it.
//!
//! Process model: the monitor (the strata process in the foreground, or a
//! daemonized child with `-d`) mounts the rootfs under the run dir, clones
//! init into new namespaces, writes the run record, waits for init, then
//! unmounts and removes the record (and destroys an ephemeral container).
//! An ephemeral container's init dies with its monitor, and
//! [`reap_ephemeral`] removes what a killed monitor left.

pub mod cgroup;
pub mod conf;
mod container;
pub mod seccomp;
mod scan;
mod sys;
pub mod userns;

use conf::{MountEntry, Net, RunConfig};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_core::engine::{fsutil, CloneRequest, DestroyRequest, Engine};
use strata_core::idmap::IdMap;
use strata_core::lock::ContainerLock;
use strata_core::state::{self, RunRecord};
use strata_core::{err, paths, Container, ContainerRef, Error, ErrorKind, Result, Store};

/// How to start a container.
#[derive(Debug, Clone, Default)]
pub struct StartOpts {
    /// The command to run as init instead of `lxc.init.cmd`/`/sbin/init`.
    pub cmd: Vec<String>,
    /// Run the monitor in the background and return once init runs.
    pub daemon: bool,
    /// Mounts added to the config's `lxc.mount.entry` (ephemeral `-m`/`-b`).
    pub extra_mounts: Vec<MountEntry>,
    /// Put an overlay rootfs's upper dir on a tmpfs.
    pub tmpfs_upper: bool,
}

/// The mount point of a container's rootfs while it runs.
pub fn mount_point(r: &ContainerRef) -> PathBuf {
    paths::run_dir()
        .join("mnt")
        .join(paths::lxcpath_key(&r.lxcpath))
        .join(&r.name)
}

fn my_record(ephemeral: bool) -> RunRecord {
    let me = std::process::id() as i32;
    RunRecord {
        init_pid: 0,
        init_start: 0,
        monitor_pid: Some(me),
        monitor_start: state::proc_start_time(me),
        ephemeral,
        cgroups: Vec::new(),
    }
}

/// Reports the outcome of a start to a waiting front end (daemon mode).
struct Notifier(Option<OwnedFd>);

impl Notifier {
    fn ok(&mut self) {
        if let Some(fd) = self.0.take() {
            sys::write_all(fd.as_raw_fd(), b"\0");
        }
    }
    fn fail(&mut self, e: &Error) {
        if let Some(fd) = self.0.take() {
            sys::write_all(fd.as_raw_fd(), e.to_string().as_bytes());
        }
    }
}

/// Run `f` as a daemonized monitor; returns once it reported the start.
fn daemonize(f: impl FnOnce(&mut Notifier) -> Result<i32>) -> Result<i32> {
    let (rd, wr) = sys::pipe()?;
    match unsafe { libc::fork() } {
        -1 => Err(Error::errno("fork monitor", "", sys::errno())),
        0 => {
            drop(rd);
            unsafe {
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    for fd in 0..3 {
                        libc::dup2(null, fd);
                    }
                    if null > 2 {
                        libc::close(null);
                    }
                }
                libc::chdir(c"/".as_ptr());
            }
            let mut n = Notifier(Some(wr));
            let code = match f(&mut n) {
                Ok(c) => c,
                Err(e) => {
                    n.fail(&e);
                    1
                }
            };
            unsafe { libc::_exit(code) }
        }
        _ => {
            drop(wr);
            let msg = sys::read_all(rd.as_raw_fd());
            match msg.as_slice() {
                [0] => Ok(0),
                [] => Err(err!(Io, "start", "the monitor exited before the container started")),
                m => Err(Error::new(ErrorKind::Io, "", String::from_utf8_lossy(m).into_owned())),
            }
        }
    }
}

/// `lxc-start`/`lxc-execute`: start `r` and, in the foreground, wait for it;
/// returns init's exit status (128+N when killed by signal N), or 0 once a
/// daemonized container runs.
pub fn start(engine: &Engine, r: &ContainerRef, opts: &StartOpts) -> Result<i32> {
    let _s = tracing::info_span!("start", name = %r.name).entered();
    if opts.daemon {
        daemonize(|n| run_monitor(engine, r, opts, false, n))
    } else {
        run_monitor(engine, r, opts, false, &mut Notifier(None))
    }
}

/// Everything made before init runs, undone by [`Prepared::undo`] on failure.
struct Prepared {
    c: Container,
    cfg: RunConfig,
    mp: PathBuf,
    mounted: bool,
    tmpfs: Option<PathBuf>,
    /// `lxc.idmap`: empty for a privileged container.
    map: IdMap,
    /// The idmapped view of the rootfs init uses instead of `mp`.
    view: Option<PathBuf>,
    /// A non-root monitor cannot mount on the host: init mounts the rootfs
    /// inside its user and mount namespaces.
    mount_inside: bool,
}

impl Prepared {
    fn undo(&mut self, engine: &Engine) {
        if let Some(v) = self.view.take() {
            if let Err(e) = userns::remove_idmapped(&v) {
                tracing::warn!("remove idmapped rootfs: {e}");
            }
        }
        if self.mounted {
            if let Ok(b) = engine.backends.for_spec(&self.c.rootfs) {
                if let Err(e) = b.umount(&self.c.rootfs, &self.mp) {
                    tracing::warn!("unmount rootfs: {e}");
                }
            }
            self.mounted = false;
        }
        let _ = std::fs::remove_dir(&self.mp);
        if let Some(t) = self.tmpfs.take() {
            let _ = nix::mount::umount2(&t, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Checks, run record, rootfs mount. The caller holds the lock.
fn prepare(engine: &Engine, r: &ContainerRef, opts: &StartOpts, ephemeral_run: bool) -> Result<Prepared> {
    const OP: &str = "start";
    let store = Store::new(&r.lxcpath);
    if !store.exists(&r.name) {
        return Err(err!(
            NotFound,
            OP,
            "container {} does not exist in {}",
            r.name,
            r.lxcpath.display()
        ));
    }
    if let Some(rec) = state::read(r) {
        let mine = rec.monitor_pid == Some(std::process::id() as i32) && rec.monitor_alive();
        if rec.init_alive() {
            return Err(err!(Busy, OP, "container {} is already running", r.name));
        }
        if !mine && rec.monitor_alive() {
            return Err(err!(Busy, OP, "container {} is being started or stopped", r.name));
        }
        if !mine {
            cleanup_locked(engine, r)?;
        }
    }
    let c = store.load(&r.name)?;
    let map = IdMap::from_config(&c.config)?;
    map.check_caller()?;
    if !map.is_empty() && (map.root_uid().is_none() || map.root_gid().is_none()) {
        return Err(err!(
            InvalidConfig,
            OP,
            "lxc.idmap does not map container root (uid and gid 0): init would have no identity"
        ));
    }
    let rootfs_path = c
        .rootfs
        .overlay_parts()
        .map(|_| String::new())
        .unwrap_or_else(|| c.rootfs.source().to_string());
    let mut cfg = RunConfig::from_config(
        &r.name,
        &c.config,
        Some(&rootfs_path).filter(|p| !p.is_empty()).map(|s| s.as_str()),
    )?;
    cfg.mounts.extend(opts.extra_mounts.iter().cloned());
    for m in &cfg.mounts {
        if m.is_bind() && !m.optional && std::fs::symlink_metadata(&m.source).is_err() {
            return Err(err!(NotFound, OP, "bind source {} does not exist", m.source));
        }
    }
    if let Net::Veth { link, .. } = &cfg.net {
        if !Path::new("/sys/class/net").join(link).join("bridge").exists() {
            return Err(err!(NotFound, OP, "lxc.net.0.link: bridge {link:?} does not exist"));
        }
    }
    let backend = engine.backends.for_spec(&c.rootfs)?;
    let ephemeral = ephemeral_run || cfg.ephemeral;
    state::write(r, &my_record(ephemeral))?;
    let mp = mount_point(r);
    let mut p = Prepared {
        c,
        cfg,
        mp,
        mounted: false,
        tmpfs: None,
        mount_inside: !paths::is_root() && !map.is_empty(),
        map,
        view: None,
    };
    let res = (|| {
        paths::ensure_dir(&p.mp)?;
        if opts.tmpfs_upper {
            p.tmpfs = Some(mount_tmpfs_upper(&p.c)?);
        }
        if p.mount_inside {
            // No idmapped mounts without host privileges: the files must be the mapped ids' already.
            if !owned_by_map(r, &p.c, &p.map)? {
                return Err(err!(
                    PermissionDenied,
                    OP,
                    "the rootfs is owned by container ids, not by the mapped host ids, and idmapped mounts need root: run strata convert --to-unprivileged"
                )
                .at(rootfs_top(&p.c)));
            }
            // Init, as the mapped root, looks its mount point up in this dir of ours.
            if let Some(d) = p.mp.parent() {
                search_for_others(d)?;
            }
            return own_overlay_dirs(&p.c, &p.map);
        }
        backend
            .mount(&p.c.rootfs, &p.mp, false)
            .map_err(|e| err!(Io, OP, "rootfs {} does not mount: {e}", p.c.rootfs))?;
        p.mounted = true;
        let overlay_shifted = p.c.rootfs.overlay_parts().is_some() && owned_by_map(r, &p.c, &p.map)?;
        if !p.map.is_empty() && !overlay_shifted {
            if let userns::RootfsView::Idmapped(v) = userns::idmap_rootfs(&r.dir(), &p.mp, &p.map)? {
                p.view = Some(v);
            }
        }
        Ok(())
    })();
    if let Err(e) = res {
        p.undo(engine);
        let _ = state::remove(r);
        return Err(e);
    }
    Ok(p)
}

/// The directory whose owner tells how the rootfs is owned: an overlay's
/// top lower (its upper dir is made by the clone, owned by whoever made it).
fn rootfs_top(c: &Container) -> PathBuf {
    match c.rootfs.overlay_parts() {
        Some((lower, _)) => PathBuf::from(lower.split(':').next().unwrap_or(lower)),
        None => c.rootfs.path(),
    }
}

/// The host dirs a rootfs spec's paths start with: an overlay's lowers and
/// its upper's parent (which holds the work dir too), else the rootfs dir.
fn pinned_dirs(c: &Container) -> Vec<PathBuf> {
    match c.rootfs.overlay_parts() {
        Some((lower, upper)) => {
            let mut v: Vec<PathBuf> = lower.split(':').map(PathBuf::from).collect();
            // The backend finds the work dir by the names above the upper: keep two of them.
            v.extend(Path::new(upper).parent().and_then(Path::parent).map(Path::to_path_buf));
            v
        }
        None => vec![c.rootfs.path()],
    }
}

/// Give an overlay clone's upper and work dirs, made by the caller, to the
/// container's root (as LXC's clone does), so that the mapped root can
/// mount and write them. Dirs owned by anyone else are left alone.
fn own_overlay_dirs(c: &Container, map: &IdMap) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some((_, upper)) = c.rootfs.overlay_parts() else {
        return Ok(());
    };
    let upper = PathBuf::from(upper);
    let parent = upper.parent().unwrap_or(Path::new("/")).to_path_buf();
    let me = nix::unistd::geteuid().as_raw();
    let mut dirs = vec![upper];
    for w in ["work", "olwork"] {
        dirs.push(parent.join(w));
        dirs.push(parent.join(w).join("work"));
    }
    dirs.retain(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == me));
    // The mapped root walks from the upper's grandparent down to the upper
    // and work dirs: those two levels need search permission for it (LXC
    // hands the container dir to the mapped root for the same reason).
    for d in [parent.parent(), Some(parent.as_path())].into_iter().flatten() {
        search_for_others(d)?;
    }
    if dirs.is_empty() {
        return Ok(());
    }
    strata_core::idmap::run_in_userns_with_caller(map, || {
        for d in &dirs {
            std::os::unix::fs::lchown(d, Some(0), Some(0))
                .map_err(|e| Error::io("give overlay dir to container root", d, e))?;
        }
        Ok(())
    })
}

/// Add search (not read) permission for others to `d` if the caller owns it.
fn search_for_others(d: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::symlink_metadata(d).map_err(|e| Error::io("stat", d, e))?;
    if m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o001 == 0 {
        let mode = (m.mode() & 0o7777) | 0o001;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io("chmod", d, e))?;
    }
    Ok(())
}

/// Whether the rootfs's files are owned by `map`'s host ids already.
fn owned_by_map(r: &ContainerRef, c: &Container, map: &IdMap) -> Result<bool> {
    use strata_core::shift::{ownership, Ownership};
    Ok(map.is_empty() || ownership(&r.dir(), &rootfs_top(c), map)? == Ownership::Shifted)
}

/// `-t`: a tmpfs on the dir holding an overlay's upper (and work) dir.
fn mount_tmpfs_upper(c: &Container) -> Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    const OP: &str = "mount tmpfs upper";
    let Some((_, upper)) = c.rootfs.overlay_parts() else {
        return Err(err!(
            Unsupported,
            OP,
            "-t needs an overlay clone, and {} is {}",
            c.r.name,
            c.rootfs.kind()
        ));
    };
    let upper = PathBuf::from(upper);
    let dir = upper
        .parent()
        .ok_or_else(|| err!(InvalidSpec, OP, "bad upper dir {}", upper.display()))?
        .to_path_buf();
    let meta = std::fs::metadata(&upper).map_err(|e| Error::io(OP, &upper, e))?;
    if std::fs::read_dir(&upper)
        .map_err(|e| Error::io(OP, &upper, e))?
        .next()
        .is_some()
    {
        return Err(err!(
            Unsupported,
            OP,
            "-t needs an empty upper dir (the base is an overlay clone with changes)"
        ));
    }
    sys::mount(
        Some("tmpfs"),
        &dir.display().to_string(),
        Some("tmpfs"),
        0,
        Some("mode=0755"),
    )?;
    let r = std::fs::create_dir(&upper)
        .and_then(|_| std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(meta.mode() & 0o7777)))
        .and_then(|_| std::os::unix::fs::chown(&upper, Some(meta.uid()), Some(meta.gid())));
    if let Err(e) = r {
        let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
        return Err(Error::io(OP, &upper, e));
    }
    Ok(dir)
}

fn ns_flags(cfg: &RunConfig, map: &IdMap) -> u64 {
    let mut f =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWCGROUP;
    if cfg.net != Net::Host {
        f |= libc::CLONE_NEWNET;
    }
    if !map.is_empty() {
        // The other namespaces are created owned by this one.
        f |= libc::CLONE_NEWUSER;
    }
    f as u64
}

/// The monitor: prepare, clone init, wait, tear down.
fn run_monitor(
    engine: &Engine,
    r: &ContainerRef,
    opts: &StartOpts,
    ephemeral_run: bool,
    n: &mut Notifier,
) -> Result<i32> {
    let lock = ContainerLock::acquire(&r.lxcpath, &r.name)?;
    let mut p = prepare(engine, r, opts, ephemeral_run)?;
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
    // Held back while we wait, and forwarded to init.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
    }
    let restore = || unsafe {
        libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    };
    let (pid, pidfd) = match sys::clone_into(ns_flags(&p.cfg, &p.map)) {
        Ok(None) => {
            drop(sync_w);
            drop(err_r);
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
                mount_inside: p.mount_inside.then(|| container::MountInside {
                    pin: pinned_dirs(&p.c),
                    mount: &mount,
                }),
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
    if !p.map.is_empty() {
        // Init waits for "go" before it becomes root of its namespace: the maps must be there by then.
        if let Err(e) = userns::write_maps(pid, &p.map) {
            sys::kill(pid, libc::SIGKILL);
            drop(sync_w);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            restore();
            return Err(fail(&mut p, e));
        }
    }
    let rec = RunRecord {
        init_pid: pid,
        init_start: state::proc_start_time(pid).unwrap_or(0),
        ..my_record(ephemeral)
    };
    let mut veth = None;
    // Without a veth to move in, init may go at once; the record is written meanwhile.
    let early = !matches!(p.cfg.net, Net::Veth { .. });
    if early {
        sys::write_all(sync_w.as_raw_fd(), b"g");
    }
    let pre = state::write(r, &rec).and_then(|_| match &p.cfg.net {
        Net::Veth {
            link,
            name,
            pair,
            hwaddr,
            ..
        } => {
            let host = pair.clone().unwrap_or_else(|| format!("veth{}", random_suffix(7)));
            let pid_s = pid.to_string();
            let mut args = vec!["link", "add", &host, "type", "veth", "peer", "name", name];
            if let Some(h) = hwaddr {
                args.extend(["address", h]);
            }
            args.extend(["netns", &pid_s]);
            sys::run("ip", &args)?;
            veth = Some(host.clone());
            sys::run("ip", &["link", "set", &host, "master", link, "up"])
        }
        _ => Ok(()),
    });
    let started = match pre {
        Ok(()) => {
            if !early {
                sys::write_all(sync_w.as_raw_fd(), b"g");
            }
            drop(sync_w);
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
        Err(e) => {
            if early {
                sys::kill(pid, libc::SIGKILL);
            }
            drop(sync_w);
            Err(e)
        }
    };
    if let Err(e) = started {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        if let Some(h) = veth {
            let _ = sys::run("ip", &["link", "del", &h]);
        }
        restore();
        return Err(fail(&mut p, e));
    }
    drop(lock);
    n.ok();
    tracing::info!(pid, "container {} started", r.name);
    let status = wait_init(pid, &pidfd, &set);
    restore();
    teardown(engine, r, ephemeral)?;
    Ok(status)
}

/// Wait for init, forwarding the held-back signals; its exit status.
fn wait_init(pid: i32, pidfd: &OwnedFd, set: &libc::sigset_t) -> i32 {
    let sfd = unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC) };
    let sfd = (sfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(sfd) });
    loop {
        let mut fds = vec![libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(s) = &sfd {
            fds.push(libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, -1) };
        if r < 0 && sys::errno() != nix::errno::Errno::EINTR {
            break;
        }
        if fds.get(1).is_some_and(|f| f.revents & libc::POLLIN != 0) {
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let sz = std::mem::size_of::<libc::signalfd_siginfo>();
            let fd = sfd.as_ref().map_or(-1, |s| s.as_raw_fd());
            if unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), sz) } == sz as isize {
                let sig = info.ssi_signo as i32;
                // Pid 1 drops signals it does not catch; stopping the monitor then stops the container.
                sys::kill(pid, if catches(pid, sig) { sig } else { libc::SIGKILL });
            }
        }
        if fds[0].revents != 0 {
            break;
        }
    }
    loop {
        let mut st = 0;
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
fn cleanup_locked(engine: &Engine, r: &ContainerRef) -> Result<()> {
    let mp = mount_point(r);
    let view = userns::idmapped_path(&mp);
    if std::fs::symlink_metadata(&view).is_ok() {
        userns::remove_idmapped(&view)?;
    }
    let mounts = fsutil::mount_points();
    if let Ok(c) = Store::new(&r.lxcpath).load(&r.name) {
        if mounts.iter().any(|m| m == &mp) {
            engine.backends.for_spec(&c.rootfs)?.umount(&c.rootfs, &mp)?;
        }
        if let Some((_, upper)) = c.rootfs.overlay_parts() {
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
    state::remove(r)
}

/// After init is gone: unmount, remove the record, destroy an ephemeral container.
fn teardown(engine: &Engine, r: &ContainerRef, ephemeral: bool) -> Result<()> {
    {
        let _lock = ContainerLock::acquire(&r.lxcpath, &r.name)?;
        if state::read(r).is_some_and(|rec| rec.init_alive()) {
            // Started again by someone else meanwhile.
            return Ok(());
        }
        cleanup_locked(engine, r)?;
    }
    if ephemeral {
        destroy_quietly(engine, r)?;
    }
    Ok(())
}

fn destroy_quietly(engine: &Engine, r: &ContainerRef) -> Result<()> {
    let req = DestroyRequest {
        r: r.clone(),
        with_snapshots: true,
        force: false,
    };
    match engine.destroy(&req) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        x => x,
    }
}

/// How to stop.
#[derive(Debug, Clone, Copy)]
pub struct StopOpts {
    /// `-k`: SIGKILL at once.
    pub kill: bool,
    /// `-t`: seconds to wait after the halt signal (`None`: forever).
    pub timeout: Option<u64>,
    /// `--nokill`: never SIGKILL.
    pub nokill: bool,
    /// `-W`: do not wait.
    pub nowait: bool,
}

impl Default for StopOpts {
    fn default() -> Self {
        StopOpts {
            kill: false,
            timeout: Some(60),
            nokill: false,
            nowait: false,
        }
    }
}

/// `lxc-stop`.
pub fn stop(engine: &Engine, r: &ContainerRef, o: &StopOpts) -> Result<()> {
    const OP: &str = "stop";
    let _s = tracing::info_span!("stop", name = %r.name).entered();
    if !Store::new(&r.lxcpath).exists(&r.name) {
        return Err(err!(
            NotFound,
            OP,
            "container {} does not exist in {}",
            r.name,
            r.lxcpath.display()
        ));
    }
    let Some(rec) = state::running(r) else {
        return Err(err!(InvalidArgument, OP, "container {} is not running", r.name));
    };
    let pidfd = sys::pidfd_open(rec.init_pid)
        .ok_or_else(|| err!(InvalidArgument, OP, "container {} is not running", r.name))?;
    if !rec.init_alive() {
        return Err(err!(InvalidArgument, OP, "container {} is not running", r.name));
    }
    let sig = if o.kill {
        libc::SIGKILL
    } else {
        let c = Store::new(&r.lxcpath).load(&r.name)?;
        RunConfig::from_config(&r.name, &c.config, None)?.halt_signal
    };
    sys::kill(rec.init_pid, sig);
    if o.nowait {
        return Ok(());
    }
    if !sys::wait_pidfd(&pidfd, o.timeout.map(Duration::from_secs)) {
        if o.nokill {
            return Err(err!(
                Busy,
                OP,
                "container {} did not stop within {}s",
                r.name,
                o.timeout.unwrap_or(0)
            ));
        }
        tracing::info!("container {} ignored signal {sig}: SIGKILL", r.name);
        sys::kill(rec.init_pid, libc::SIGKILL);
        sys::wait_pidfd(&pidfd, Some(Duration::from_secs(30)));
    }
    // The monitor unmounts and removes the record; without one, we do.
    if let Some(mpid) = rec.monitor_pid.filter(|_| rec.monitor_alive()) {
        if let Some(mfd) = sys::pidfd_open(mpid) {
            if rec.monitor_alive() && sys::wait_pidfd(&mfd, Some(Duration::from_secs(60))) {
                return Ok(());
            }
        }
    }
    teardown(engine, r, rec.ephemeral)
}

/// `lxc-info`: the record when running.
pub fn info(r: &ContainerRef) -> Option<RunRecord> {
    state::running(r)
}

/// `lxc-attach -- cmd`: run `cmd` in the namespaces and root of the running
/// container; returns its exit status.
pub fn attach(r: &ContainerRef, cmd: &[String], env: &[(String, String)], clear_env: bool) -> Result<i32> {
    const OP: &str = "attach";
    let _s = tracing::info_span!("attach", name = %r.name).entered();
    let rec = state::running(r).ok_or_else(|| err!(InvalidArgument, OP, "container {} is not running", r.name))?;
    let pid = rec.init_pid;
    let mut fds = Vec::new();
    // An unprivileged container's namespaces belong to its user namespace: join that first.
    let user_p = format!("/proc/{pid}/ns/user");
    let theirs = std::fs::metadata(&user_p).map_err(|e| Error::io(OP, &user_p, e))?;
    let ours = std::fs::metadata("/proc/self/ns/user").map_err(|e| Error::io(OP, "/proc/self/ns/user", e))?;
    let join_user = {
        use std::os::unix::fs::MetadataExt;
        (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino())
    };
    if join_user {
        fds.push((
            "user",
            std::fs::File::open(&user_p).map_err(|e| Error::io(OP, &user_p, e))?,
        ));
    }
    for ns in ["cgroup", "ipc", "uts", "net", "pid", "mnt"] {
        let p = format!("/proc/{pid}/ns/{ns}");
        let f = std::fs::File::open(&p).map_err(|e| Error::io(OP, &p, e))?;
        fds.push((ns, f));
    }
    let root_p = format!("/proc/{pid}/root");
    let root = std::fs::File::open(&root_p).map_err(|e| Error::io(OP, &root_p, e))?;
    if !rec.init_alive() {
        return Err(err!(InvalidArgument, OP, "container {} is not running", r.name));
    }
    let argv: Vec<String> = if cmd.is_empty() {
        vec!["/bin/sh".into()]
    } else {
        cmd.to_vec()
    };
    let mut envs: Vec<(String, String)> = if clear_env {
        vec![(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        )]
    } else {
        std::env::vars().collect()
    };
    envs.retain(|(k, _)| k != "container");
    envs.push(("container".into(), "lxc".into()));
    for (k, v) in env {
        envs.retain(|(ek, _)| ek != k);
        envs.push((k.clone(), v.clone()));
    }
    let cenv: Vec<_> = envs.iter().map(|(k, v)| sys::cstr(&format!("{k}={v}"))).collect();
    let cargs: Vec<_> = argv.iter().map(|a| sys::cstr(a)).collect();
    let (err_r, err_w) = sys::pipe()?;
    match unsafe { libc::fork() } {
        -1 => Err(Error::errno("fork", "", sys::errno())),
        0 => {
            drop(err_r);
            // The child joins; the pid namespace takes effect for its own child.
            let res = (|| -> Result<()> {
                for (ns, f) in &fds {
                    if unsafe { libc::setns(f.as_raw_fd(), 0) } != 0 {
                        return Err(Error::errno("setns", *ns, sys::errno()));
                    }
                }
                if join_user {
                    userns::become_root()?;
                }
                nix::unistd::fchdir(root.as_raw_fd()).map_err(|e| Error::errno("enter root", "/", e))?;
                nix::unistd::chroot(".").map_err(|e| Error::errno("chroot", "/", e))?;
                nix::unistd::chdir("/").map_err(|e| Error::errno("chdir", "/", e))?;
                Ok(())
            })();
            if let Err(e) = res {
                sys::write_all(err_w.as_raw_fd(), e.to_string().as_bytes());
                unsafe { libc::_exit(1) };
            }
            match unsafe { libc::fork() } {
                0 => {
                    let mut envp: Vec<*const libc::c_char> = cenv.iter().map(|c| c.as_ptr()).collect();
                    envp.push(std::ptr::null());
                    let mut argp: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
                    argp.push(std::ptr::null());
                    let path = envs
                        .iter()
                        .find(|(k, _)| k == "PATH")
                        .map(|(_, v)| v.as_str())
                        .unwrap_or("/usr/bin:/bin");
                    let cands: Vec<String> = if argv[0].contains('/') {
                        vec![argv[0].clone()]
                    } else {
                        path.split(':').map(|d| format!("{d}/{}", argv[0])).collect()
                    };
                    for c in cands {
                        let cp = sys::cstr(&c);
                        unsafe { libc::execve(cp.as_ptr(), argp.as_ptr(), envp.as_ptr()) };
                    }
                    let e = sys::errno();
                    let msg = format!(
                        "exec {}: {}",
                        argv[0],
                        if e == nix::errno::Errno::ENOENT {
                            "not found in the container"
                        } else {
                            e.desc()
                        }
                    );
                    sys::write_all(err_w.as_raw_fd(), msg.as_bytes());
                    unsafe { libc::_exit(127) }
                }
                -1 => unsafe { libc::_exit(1) },
                child => {
                    drop(err_w);
                    let code = wait_status(child);
                    unsafe { libc::_exit(code) }
                }
            }
        }
        child => {
            drop(err_w);
            let msg = sys::read_all(err_r.as_raw_fd());
            let code = wait_status(child);
            if !msg.is_empty() {
                return Err(Error::new(
                    ErrorKind::Io,
                    OP,
                    String::from_utf8_lossy(&msg).into_owned(),
                ));
            }
            Ok(code)
        }
    }
}

fn wait_status(pid: i32) -> i32 {
    loop {
        let mut st = 0;
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

/// `[a-zA-Z0-9]{n}` from the kernel's random source.
pub fn random_suffix(n: usize) -> String {
    const CH: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut buf = vec![0u8; n];
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), n, 0) };
    if got != n as isize {
        let seed = paths::unique();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = seed.as_bytes()[i % seed.len()].wrapping_add(i as u8 * 31);
        }
    }
    buf.iter().map(|b| CH[*b as usize % CH.len()] as char).collect()
}

/// An ephemeral run.
#[derive(Debug, Clone, Default)]
pub struct EphemeralOpts {
    /// `-N`; `None`: `BASE_XXXXXX`.
    pub name: Option<String>,
    /// `-D`: keep the container after it stops.
    pub keep: bool,
    pub start: StartOpts,
}

/// The name an ephemeral run will use.
pub fn ephemeral_name(base: &ContainerRef, o: &EphemeralOpts) -> String {
    match &o.name {
        Some(n) => n.clone(),
        None => loop {
            let n = format!("{}_{}", base.name, random_suffix(6));
            if std::fs::symlink_metadata(base.lxcpath.join(&n)).is_err() {
                break n;
            }
        },
    }
}

/// `lxc-copy -e` / `lxc-start-ephemeral`: a snapshot clone of `base` named
/// `name`, started, and destroyed when it stops (unless `keep`).
pub fn ephemeral(engine: &Engine, base: &ContainerRef, name: &str, o: &EphemeralOpts) -> Result<i32> {
    let _s = tracing::info_span!("ephemeral", base = %base.name, name).entered();
    if o.start.daemon {
        daemonize(|n| run_ephemeral(engine, base, name, o, n))
    } else {
        run_ephemeral(engine, base, name, o, &mut Notifier(None))
    }
}

fn run_ephemeral(engine: &Engine, base: &ContainerRef, name: &str, o: &EphemeralOpts, n: &mut Notifier) -> Result<i32> {
    const OP: &str = "ephemeral";
    strata_core::names::validate(name)?;
    let dst = ContainerRef::new(&base.lxcpath, name);
    for m in &o.start.extra_mounts {
        if std::fs::symlink_metadata(&m.source).is_err() {
            return Err(err!(NotFound, OP, "bind source {} does not exist", m.source));
        }
    }
    if std::fs::symlink_metadata(dst.dir()).is_ok() {
        return Err(err!(AlreadyExists, OP, "container {name} already exists"));
    }
    // A throwaway clone the caller could not destroy is not made (it lands where the base is).
    if !o.keep {
        if let Ok(c) = Store::new(&base.lxcpath).load(&base.name) {
            engine.backends.for_spec(&c.rootfs)?.check_destroy(&c.rootfs)?;
        }
    }
    // The record comes first: a reaper sees a live monitor, a crash leaves a record to reap by.
    state::write(&dst, &my_record(!o.keep))?;
    let req = CloneRequest {
        src: base.clone(),
        dst: dst.clone(),
        snapshot: true,
        ..Default::default()
    };
    // A throwaway container need not reach the disk, from its clone to its
    // destroy: a crash leaves a leftover that the reaper removes.
    let _volatile = (!o.keep).then(strata_core::durable::volatile);
    let made = engine.clone_container(&req).and_then(|c| {
        if !o.keep {
            let mut cfg = c.config.clone();
            cfg.set("lxc.ephemeral", "1");
            cfg.save(&dst.config_path())?;
        }
        Ok(())
    });
    if let Err(e) = made {
        let _ = state::remove(&dst);
        if std::fs::symlink_metadata(dst.dir()).is_ok() {
            let _ = destroy_quietly(engine, &dst);
        }
        return Err(e);
    }
    let res = run_monitor(engine, &dst, &o.start, !o.keep, n);
    if res.is_err() && !o.keep {
        let _ = state::remove(&dst);
        let _ = destroy_quietly(engine, &dst);
    }
    res
}

/// Whether LXC itself runs `name` (its command socket is bound).
fn lxc_runs(lxcpath: &Path, name: &str) -> bool {
    let Ok(t) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let needle = format!("{}/{name}/command", lxcpath.display());
    t.lines().any(|l| l.contains(&needle))
}

/// Clean up after killed runs in `lxcpath`: unmount rootfs of containers
/// whose monitor and init are gone, and destroy ephemeral containers that
/// are not running and have no live monitor. Returns the names destroyed.
/// Every strata command calls this before looking at `lxcpath`.
pub fn reap_ephemeral(engine: &Engine, lxcpath: &Path) -> Result<Vec<String>> {
    let _s = tracing::debug_span!("reap", lxcpath = %lxcpath.display()).entered();
    let lxcpath: PathBuf = std::path::absolute(lxcpath)
        .map_err(|e| Error::io("reap", lxcpath, e))?
        .components()
        .collect();
    let mut destroyed = Vec::new();
    let mut recorded = Vec::new();
    for name in state::recorded(&lxcpath) {
        let r = ContainerRef::new(&lxcpath, &name);
        recorded.push(name.clone());
        let Some(rec) = state::read(&r) else { continue };
        if rec.monitor_alive() {
            continue;
        }
        if rec.init_alive() {
            if !rec.ephemeral {
                continue; // runs on without its monitor, as LXC's containers do
            }
            // Doomed anyway (init dies with its monitor): make it so now.
            if let Some(fd) = sys::pidfd_open(rec.init_pid) {
                sys::kill(rec.init_pid, libc::SIGKILL);
                sys::wait_pidfd(&fd, Some(Duration::from_secs(10)));
            }
        }
        {
            let _lock = ContainerLock::acquire(&lxcpath, &name)?;
            match state::read(&r) {
                Some(now) if now.monitor_alive() || now.init_alive() => continue,
                None => continue,
                _ => {}
            }
            cleanup_locked(engine, &r)?;
        }
        if rec.ephemeral && std::fs::symlink_metadata(r.dir()).is_ok() {
            destroy_quietly(engine, &r)?;
            destroyed.push(name);
        }
    }
    // Plain entries: the scan's one stat per config tells containers apart.
    let unrecorded: Vec<String> = std::fs::read_dir(&lxcpath)
        .map_err(|e| Error::io("reap", &lxcpath, e))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && !recorded.contains(n))
        .collect();
    for name in scan::ephemeral(&lxcpath, &unrecorded) {
        let r = ContainerRef::new(&lxcpath, &name);
        if state::read(&r).is_none() && !lxc_runs(&lxcpath, &name) {
            destroy_quietly(engine, &r)?;
            destroyed.push(name);
        }
    }
    for n in &destroyed {
        tracing::info!("removed leftover ephemeral container {n}");
    }
    Ok(destroyed)
}
