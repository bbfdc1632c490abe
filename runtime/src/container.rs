//! The container side of a start: runs in the cloned child, in its new
//! namespaces, until it execs init. Errors go back to the monitor as text
//! through a close-on-exec pipe (EOF there means init was exec'd).

use crate::conf::{Create, MountEntry, Net, ProcMode, RunConfig, SysMode};
use crate::sys::{self, cstr, fd_path};
use crate::syscall::{RealSyscall, Syscall};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use strata_core::{err, Error, Result};

pub struct ChildArgs<'a> {
    pub cfg: &'a RunConfig,
    pub rootfs: &'a Path,
    pub cmd: &'a [String],
    pub kill_with_parent: bool,
    /// In a new user namespace whose maps the monitor writes before saying go.
    pub userns: bool,
    /// Init mounts the rootfs itself: a non-root monitor cannot mount on
    /// the host (in a user namespace), and a privileged container's rootfs
    /// is mounted in its own mount namespace only (without one).
    pub mount_inside: Option<MountInside<'a>>,
    /// `lxc.seccomp.profile`, compiled by the monitor.
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    /// Where the ttys' master ends go (to the monitor).
    pub tty_sock: Option<std::os::fd::RawFd>,
    /// The ttys made, for init's `container_ttys`.
    pub ttys: std::cell::RefCell<Vec<String>>,
    /// The host's cgroup hierarchies, for `lxc.mount.auto = cgroup...`.
    pub cg_layout: &'a crate::cgroup::Layout,
    /// The console pty the monitor made (its host path), if any.
    pub console: Option<&'a str>,
    /// The console comes from the container's own devpts instead, its
    /// master sent to the monitor over `tty_sock` before the ttys': a
    /// monitor that is not root cannot give a host pty to the mapped root.
    pub console_in_devpts: bool,
    /// What the hooks run in the container's namespaces are told.
    pub hook_env: crate::hooks::HookEnv,
    /// In a user namespace with hooks run in the container's namespaces: a
    /// dir every id may reach (LXC's `lxc.rootfs.mount`) where init binds
    /// its rootfs in its own mount namespace before it becomes the mapped
    /// root, so that those hooks (run as that root) find the rootfs at
    /// `LXC_ROOTFS_MOUNT`; the monitor's mount point is in a dir only the
    /// host's root may search.
    pub hook_root: Option<&'a Path>,
    /// For `lxc.hook.start-host`: init says it is about to exec on the
    /// first fd and waits for a byte on the second while the monitor runs them.
    pub host_sync: Option<(std::os::fd::RawFd, std::os::fd::RawFd)>,
    /// The container's cgroups, whose v1 hierarchies init enters itself
    /// before anything else (cloned into the unified one already); `None`:
    /// the monitor moves it.
    pub cg_self: Option<&'a crate::cgroup::Plan>,
    /// Only the plan's [`crate::cgroup::Part::First`] cgroups exist at
    /// clone; the rest exist once the monitor says go.
    pub cg_split: bool,
    /// The monitor makes init's network namespace after the clone (which
    /// did not) and sends it over this socket: init sets up what needs no
    /// network namespace meanwhile (its /dev), then joins it.
    pub netns_sock: Option<std::os::fd::RawFd>,
}

/// How init mounts its rootfs in its own namespaces: as the mapped root
/// (which may not be able to walk the host paths to the rootfs's dirs), or
/// without a user namespace as the host's root.
pub struct MountInside<'a> {
    /// Host dirs the rootfs spec names (or their parents): opened before
    /// init becomes root, and reached through `/proc/self/fd` after (none
    /// without a user namespace).
    pub pin: Vec<std::path::PathBuf>,
    /// Mount at the target, with each pinned dir replaced by its fd path.
    pub mount: &'a MountFn<'a>,
}

/// Mount the rootfs at a target, given (host dir, its fd path) pairs.
pub type MountFn<'a> = dyn Fn(&[(std::path::PathBuf, String)], &Path) -> Result<()> + 'a;

/// Never returns: execs init or exits after reporting the error on `err_w`.
pub fn child_main(a: &ChildArgs, sync_r: OwnedFd, err_w: OwnedFd) -> ! {
    if a.kill_with_parent {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers only and touches no memory.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    }
    // In our cgroups before anything else, as if the monitor had moved us
    // (those the monitor makes meanwhile, after "go").
    let first = if a.cg_split {
        crate::cgroup::Part::First
    } else {
        crate::cgroup::Part::All
    };
    if let Err(e) = a
        .cg_self
        .map_or(Ok(()), |plan| crate::cgroup::attach_self_v1(plan, first))
    {
        sys::write_all(err_w.as_raw_fd(), e.to_string().as_bytes());
        // SAFETY: _exit ends container init before exec without unwinding the monitor's state it was cloned
        // with.
        unsafe { libc::_exit(1) }
    }
    // Without a user namespace (whose maps the monitor writes first) and
    // without hooks that expect the container's cgroups, the rootfs is set
    // up while the monitor makes the rest of the cgroups and writes the run
    // record (and, when it moves us into our cgroups, while it waits for
    // that): only what needs them waits for "go", and so does the
    // pivot_root (entering cgroups the monitor made meanwhile takes the
    // host's paths to them).
    let early = !a.userns && !["pre-mount", "mount", "autodev"].iter().any(|h| a.cfg.hooks.has(h));
    let prepared = early.then(|| {
        enter(a)
            .and_then(|(root, private)| early_limits(a).map(|_| (root, private)))
            .and_then(|(root, private)| setup_with(&mut RealSyscall, a, &root, private).map(|_| root))
    });
    // The monitor says go once it has done its part (cgroups, record, network); EOF means it died.
    let mut b = [0u8; 1];
    // SAFETY: `b` is a live, exclusively borrowed 1-byte buffer and read writes at most 1 byte; `sync_r` is open
    // for the call.
    if unsafe { libc::read(sync_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) } != 1 {
        // SAFETY: _exit ends container init (the monitor is gone or said no) without unwinding the monitor's state.
        unsafe { libc::_exit(1) };
    }
    drop(sync_r);
    let res = (|| {
        if let Some(plan) = a.cg_self.filter(|_| a.cg_split) {
            crate::cgroup::attach_self_v1(plan, crate::cgroup::Part::Rest)?;
        }
        // In our cgroups now: they become our cgroup namespace's root.
        // SAFETY: unshare takes flags only.
        if a.cfg.ns.makes(libc::CLONE_NEWCGROUP, true) && unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } != 0 {
            return Err(Error::errno("unshare cgroup namespace", "", sys::errno()));
        }
        let root = match prepared {
            Some(r) => r?,
            None => {
                let (root, private) = enter(a)?;
                early_limits(a)?;
                setup_with(&mut RealSyscall, a, &root, private)?;
                root
            }
        };
        RealSyscall.pivot_root(&root, a.rootfs)?;
        cgroup_mounts(&mut RealSyscall, a, &root)?;
        confine(a)
    })();
    let e = match res {
        Ok(()) => exec(a),
        Err(e) => e,
    };
    sys::write_all(err_w.as_raw_fd(), e.to_string().as_bytes());
    // SAFETY: _exit ends container init after reporting the error, without unwinding the monitor's state.
    unsafe { libc::_exit(1) }
}

/// Sysctls and resource limits, before the rootfs is set up; with a
/// network namespace still to join, once in it (see [`setup_with`]).
fn early_limits(a: &ChildArgs) -> Result<()> {
    if a.netns_sock.is_some() {
        return Ok(());
    }
    a.cfg.confine.early()
}

/// Open the rootfs, then (in a user namespace) become its root. The rootfs
/// is opened first, with the monitor's host ids: its parent dirs on the
/// host need not be reachable by the mapped ids. Also says whether the
/// mount tree was made private already (a mount made since then is private
/// too, as private mounts are its sources and parents).
fn enter(a: &ChildArgs) -> Result<(OwnedFd, bool)> {
    if !a.userns {
        if let Some(m) = &a.mount_inside {
            // Private first: the mount must not propagate to the host.
            sys::mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
            (m.mount)(&[], a.rootfs)?;
            return Ok((sys::open_dir(a.rootfs)?, true));
        }
        return Ok((sys::open_dir(a.rootfs)?, false));
    }
    let mut root = sys::open_dir(a.rootfs)?;
    if a.userns {
        // Mounts copied from the host are locked to their parents here, and
        // pivot_root refuses a locked one: bind the rootfs onto itself.
        sys::mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
        if let Some(m) = &a.mount_inside {
            return Ok((mount_inside(a, m)?, true));
        }
        let at = a.hook_root.unwrap_or(a.rootfs);
        sys::mount(
            Some(&fd_path(&root)),
            &at.display().to_string(),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        root = sys::open_dir(at)?;
        crate::userns::become_root()?;
        if a.kill_with_parent {
            // A change of credentials clears the parent-death signal.
            // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers only and touches no memory.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        }
    }
    Ok((root, true))
}

/// [`enter`] for a rootfs that init mounts itself (after becoming root,
/// so that the mounter's ids are mapped: overlayfs needs that of its work dir).
fn mount_inside(a: &ChildArgs, m: &MountInside) -> Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let mut pins = Vec::new();
    for p in &m.pin {
        pins.push((p.clone(), sys::open_dir(p)?));
    }
    let parent = a.rootfs.parent().unwrap_or(Path::new("/"));
    let name = a.rootfs.file_name().unwrap_or_default();
    let parent_fd = sys::open_dir(parent)?;
    crate::userns::become_root()?;
    if a.kill_with_parent {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers only and touches no memory.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    }
    let via: Vec<(std::path::PathBuf, String)> = pins.iter().map(|(p, fd)| (p.clone(), fd_path(fd))).collect();
    let target = Path::new(&fd_path(&parent_fd)).join(name);
    (m.mount)(&via, &target)?;
    // Looking the name up again crosses into the new mount.
    rustix::fs::openat(
        &parent_fd,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open rootfs", a.rootfs, e.into()))
}

/// `private`: [`enter`] made the mount tree private already. Everything
/// but the pivot_root into `root`, which follows.
fn setup_with(s: &mut impl Syscall, a: &ChildArgs, root: &OwnedFd, private: bool) -> Result<()> {
    // Nothing mounted from here on may propagate back to the host.
    if !private {
        s.mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
    }
    a.cfg.hooks.run_in_container("pre-mount", &a.hook_env, &[], &[])?;
    // Only in a uts namespace of its own: a kept or shared one is not the container's to rename.
    if a.cfg.ns.makes(libc::CLONE_NEWUTS, true) {
        s.sethostname(&a.cfg.hostname)?;
    }
    // Before the network namespace is needed (LXC mounts /dev before /proc
    // and /sys too): the monitor may be making it meanwhile.
    if a.cfg.autodev {
        make_dev(s, a, root)?;
    }
    if let Some(sock) = a.netns_sock {
        join_netns(sock)?;
        // Its lxc.sysctl.net.* are the new namespace's: set once in it.
        a.cfg.confine.early()?;
    }
    // The monitor has set up the other devices (crate::net) before "go".
    if a.cfg.ns.makes(libc::CLONE_NEWNET, true) && a.cfg.net != Net::Host {
        s.link_up("lo")?;
    }
    auto_mounts(s, a, root)?;
    for m in &a.cfg.mounts {
        mount_entry(s, root, m)?;
    }
    a.cfg.hooks.run_in_container("mount", &a.hook_env, &[], &[])?;
    if a.cfg.autodev {
        a.cfg.hooks.run_in_container("autodev", &a.hook_env, &[], &[])?;
    }
    if a.cfg.rootfs_flags != 0 {
        // Last, so that the mount points above could still be made in it.
        s.mount(
            None,
            &fd_path(root),
            None,
            libc::MS_BIND | libc::MS_REMOUNT | a.cfg.rootfs_flags,
            None,
        )
        .map_err(|e| err!(Io, "mount", "lxc.rootfs.options: remount the rootfs: {}", e.msg))?;
    }
    Ok(())
}

/// Join the network namespace the monitor sends over `sock`.
fn join_netns(sock: std::os::fd::RawFd) -> Result<()> {
    const OP: &str = "join network namespace";
    let Some(ns) = sys::recv_fds_wait(sock).into_iter().next() else {
        return Err(err!(Io, OP, "the monitor sent no network namespace"));
    };
    // SAFETY: setns on the network namespace fd just received.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(Error::errno(OP, "", sys::errno()));
    }
    Ok(())
}

/// Bind `rel` onto itself and remount the new mount with `flags` (read-only or not).
fn rebind(s: &mut impl Syscall, root: &OwnedFd, rel: &str, ro: bool) -> Result<()> {
    let t = sys::open_in_root(root, rel, None)?;
    s.mount(Some(&fd_path(&t)), &fd_path(&t), None, libc::MS_BIND, None)?;
    // Reopen: the fd above is the dir under the new mount.
    let t = sys::open_in_root(root, rel, None)?;
    let flags = libc::MS_BIND | libc::MS_REMOUNT | if ro { libc::MS_RDONLY } else { 0 };
    s.mount(None, &fd_path(&t), None, flags, None)
}

/// `lxc.mount.auto`: proc and sysfs as LXC mounts them (cgroups by the
/// cgroup module); nothing without the key.
fn auto_mounts(s: &mut impl Syscall, a: &ChildArgs, root: &OwnedFd) -> Result<()> {
    let nosx = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    if let Some(mode) = a.cfg.auto.proc {
        let proc_fd = sys::open_in_root(root, "proc", Some(Create::Dir))?;
        s.mount(Some("proc"), &fd_path(&proc_fd), Some("proc"), nosx, None)?;
        if mode == ProcMode::Mixed {
            // /proc/sys read-only but for /proc/sys/net (when init may
            // administer its network): net is parked on /proc/tty, /proc/sys
            // made read-only, and net moved back on top.
            let net = a.cfg.confine.keeps(caps::Capability::CAP_NET_ADMIN)
                && sys::open_in_root(root, "proc/sys/net", None).is_ok();
            if net {
                let from = sys::open_in_root(root, "proc/sys/net", None)?;
                let tty = sys::open_in_root(root, "proc/tty", None)?;
                s.mount(Some(&fd_path(&from)), &fd_path(&tty), None, libc::MS_BIND, None)?;
            }
            rebind(s, root, "proc/sys", true)?;
            if net {
                let tty = sys::open_in_root(root, "proc/tty", None)?;
                let to = sys::open_in_root(root, "proc/sys/net", None)?;
                s.mount(Some(&fd_path(&tty)), &fd_path(&to), None, libc::MS_MOVE, None)?;
            }
            // A kernel without magic SysRq has no such file: nothing to protect (LXC skips it too).
            if sys::open_in_root(root, "proc/sysrq-trigger", None).is_ok() {
                rebind(s, root, "proc/sysrq-trigger", true)?;
            }
        }
    }
    if let Some(mode) = a.cfg.auto.sys {
        let sys_fd = sys::open_in_root(root, "sys", Some(Create::Dir))?;
        // sys:mixed as LXC: a read-write sysfs first (its superblock stays
        // writable), then a read-only mount of it on top, and the container's
        // own network devices bound back from the writable one.
        let first = if mode == SysMode::Ro { libc::MS_RDONLY } else { 0 };
        match s.mount(Some("sysfs"), &fd_path(&sys_fd), Some("sysfs"), nosx | first, None) {
            Ok(()) => {
                if mode == SysMode::Mixed {
                    // The container's own network devices stay writable
                    // (a bind of them, from the writable sysfs), the rest
                    // is made read-only by a remount of the top mount.
                    if let Ok(net) = sys::open_in_root(root, "sys/devices/virtual/net", None) {
                        s.mount(Some(&fd_path(&net)), &fd_path(&net), None, libc::MS_BIND, None)?;
                    }
                    let top = sys::open_in_root(root, "sys", None)?;
                    s.mount(
                        None,
                        &fd_path(&top),
                        None,
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | nosx,
                        None,
                    )?;
                }
            }
            // A user namespace may mount sysfs only with a network namespace of its own
            // (not with lxc.net.0.type = none): the host's, bound read-only, instead.
            Err(_) if a.userns => {
                s.mount(
                    Some("/sys"),
                    &fd_path(&sys_fd),
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )?;
                let mnt = sys::open_in_root(root, "sys", None)?;
                s.mount(
                    None,
                    &fd_path(&mnt),
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | nosx,
                    None,
                )?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `lxc.mount.auto = cgroup...`, in the container's cgroup namespace (after
/// pivot_root: `root` is the container's root then).
fn cgroup_mounts(s: &mut impl Syscall, a: &ChildArgs, root: &OwnedFd) -> Result<()> {
    if let Some(c) = &a.cfg.auto.cgroup {
        use crate::cgroup::{CgroupAccess, CgroupAuto};
        let auto = CgroupAuto {
            mode: c.mode.map(|m| match m {
                SysMode::Mixed => CgroupAccess::Mixed,
                SysMode::Ro => CgroupAccess::Ro,
                SysMode::Rw => CgroupAccess::Rw,
            }),
            full: c.full,
            force: c.force,
        };
        let admin = a.cfg.confine.keeps(caps::Capability::CAP_SYS_ADMIN);
        crate::cgroup::mount_in_container(&auto, admin, a.cg_layout, root, s)?;
    }
    Ok(())
}

/// A tmpfs /dev with the host's harmless nodes bind-mounted, a private devpts and /dev/ptmx.
/// The nodes LXC's autodev makes: name, major, minor.
const HOST_NODES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn make_dev(s: &mut impl Syscall, a: &ChildArgs, root: &OwnedFd) -> Result<()> {
    let dev = sys::open_in_root(root, "dev", Some(Create::Dir))?;
    s.mount(
        Some("tmpfs"),
        &fd_path(&dev),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=755,size=500k"),
    )?;
    // Reopen: the fd above is the directory under the new tmpfs.
    let dev = sys::open_in_root(root, "dev", None)?;
    let devp = fd_path(&dev);
    let mut nodes = vec!["null", "zero", "full", "random", "urandom", "tty"];
    let console = match a.console {
        Some(c) => Some(std::path::PathBuf::from(c)),
        None if a.console_in_devpts => None,
        None => (a.cfg.console && nix::unistd::isatty(0).unwrap_or(false))
            .then(|| nix::unistd::ttyname(std::io::stdin()).ok())
            .flatten(),
    };
    if console.is_some() {
        nodes.push("console");
    }
    for n in nodes {
        let target = format!("{devp}/{n}");
        // As LXC: a privileged container gets nodes of its own. A bind of the
        // host's node would let its root chmod or chown the host's /dev/null.
        // Where mknod is not allowed (a user namespace, a devices cgroup
        // without "m"), the host's node is bound, which that root cannot change.
        if let Some(&(_, major, minor)) = HOST_NODES.iter().find(|(name, ..)| *name == n) {
            if !a.userns {
                match s.mknod_char(&target, 0o666, major, minor) {
                    Ok(()) => continue,
                    Err(e) if e.source.as_ref().and_then(|s| s.raw_os_error()) == Some(libc::EPERM) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        std::fs::File::create(&target).map_err(|e| Error::io("create device node", &target, e))?;
        let src = match (n, &console) {
            ("console", Some(c)) => c.display().to_string(),
            _ => format!("/dev/{n}"),
        };
        s.mount(Some(&src), &target, None, libc::MS_BIND, None)?;
    }
    for d in ["pts", "shm"] {
        std::fs::create_dir(format!("{devp}/{d}")).map_err(|e| Error::io("create", format!("/dev/{d}"), e))?;
    }
    s.mount(
        Some("devpts"),
        &format!("{devp}/pts"),
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(&match a.cfg.pty_max {
            // As LXC 5: the ttys come from this instance too.
            Some(n) => format!(
                "newinstance,ptmxmode=0666,mode=0620,gid=5,max={}",
                n + a.cfg.tty_max + a.console_in_devpts as u32
            ),
            None => "newinstance,ptmxmode=0666,mode=0620,gid=5".to_string(),
        }),
    )?;
    if a.console_in_devpts {
        make_console(s, a, root)?;
    }
    make_ttys(s, a, root)?;
    s.mount(
        Some("shm"),
        &format!("{devp}/shm"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=1777"),
    )?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, format!("{devp}/{link}"))
            .map_err(|e| Error::io("create", format!("/dev/{link}"), e))?;
    }
    Ok(())
}

/// The console from the container's devpts (as LXC 4+ makes it), bound on
/// /dev/console; its master goes to the monitor.
fn make_console(s: &mut impl Syscall, a: &ChildArgs, root: &OwnedFd) -> Result<()> {
    let ptmx = sys::open_in_root(root, "dev/pts/ptmx", None)?;
    let (master, n) = sys::open_pty(&fd_path(&ptmx))?;
    let pts = sys::open_in_root(root, &format!("dev/pts/{n}"), None)?;
    let target = sys::open_in_root(root, "dev/console", Some(Create::File))?;
    s.mount(Some(&fd_path(&pts)), &fd_path(&target), None, libc::MS_BIND, None)?;
    // The monitor keeps a slave open too: no hangup while init has none.
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(fd_path(&pts))
        .map_err(|e| Error::io("open console", "/dev/console", e))?;
    if let Some(sock) = a.tty_sock {
        sys::send_fds(sock, &[master, OwnedFd::from(slave)])?;
    }
    Ok(())
}

/// `lxc.tty.max` ttys, as LXC makes them: a pty of the container's own devpts
/// per tty, bound on /dev/ttyN (or /dev/DIR/ttyN with a /dev/ttyN symlink
/// for `lxc.tty.dir`). The ptys' other ends go to the monitor, which keeps
/// them while the container runs; init gets their names in `container_ttys`.
fn make_ttys(s: &mut impl Syscall, a: &ChildArgs, root: &OwnedFd) -> Result<()> {
    if a.cfg.tty_max == 0 {
        return Ok(());
    }
    let dir = a.cfg.tty_dir.as_deref().filter(|d| !d.is_empty());
    if let Some(d) = dir {
        sys::open_in_root(root, &format!("dev/{d}"), Some(Create::Dir))?;
    }
    let mut masters = Vec::new();
    let mut names = Vec::new();
    // Each open of ptmx makes a new pty; the /dev the symlinks go in.
    let ptmx = sys::open_in_root(root, "dev/pts/ptmx", None)?;
    let devd = dir.map(|_| sys::open_in_root(root, "dev", None)).transpose()?;
    for i in 1..=a.cfg.tty_max {
        let (master, n) = sys::open_pty(&fd_path(&ptmx))?;
        let pts = sys::open_in_root(root, &format!("dev/pts/{n}"), None)?;
        let rel = match dir {
            Some(d) => format!("dev/{d}/tty{i}"),
            None => format!("dev/tty{i}"),
        };
        let target = sys::open_in_root(root, &rel, Some(Create::File))?;
        s.mount(Some(&fd_path(&pts)), &fd_path(&target), None, libc::MS_BIND, None)?;
        if let (Some(d), Some(devd)) = (dir, &devd) {
            let _ = rustix::fs::unlinkat(devd, format!("tty{i}"), rustix::fs::AtFlags::empty());
            rustix::fs::symlinkat(format!("{d}/tty{i}"), devd, format!("tty{i}"))
                .map_err(|e| Error::io("create tty symlink", format!("/dev/tty{i}"), e.into()))?;
        }
        masters.push(master);
        names.push(format!("pts/{n}"));
    }
    if let Some(sock) = a.tty_sock {
        sys::send_fds(sock, &masters)?;
    }
    *a.ttys.borrow_mut() = names;
    Ok(())
}

fn mount_entry(s: &mut impl Syscall, root: &OwnedFd, m: &MountEntry) -> Result<()> {
    let what = format!("lxc.mount.entry {} {}", m.source, m.target);
    if m.is_bind() && std::fs::symlink_metadata(&m.source).is_err() {
        if m.optional {
            return Ok(());
        }
        return Err(err!(
            NotFound,
            "mount",
            "{what}: bind source {} does not exist",
            m.source
        ));
    }
    let target = match sys::open_in_root(root, &m.target, m.create) {
        Ok(t) => t,
        Err(_) if m.optional => return Ok(()),
        Err(e) => return Err(err!(NotFound, "mount", "{what}: target: {e}")),
    };
    let tp = fd_path(&target);
    let base = m.flags & !(libc::MS_RDONLY);
    let data = (!m.data.is_empty()).then_some(m.data.as_str());
    let r = if m.is_bind() {
        s.mount(Some(&m.source), &tp, None, base, None)
    } else {
        s.mount(Some(&m.source), &tp, Some(&m.fstype), m.flags, data)
    };
    if let Err(e) = r {
        if m.optional {
            return Ok(());
        }
        return Err(err!(Io, "mount", "{what}: {}", e.msg));
    }
    if m.is_bind() && m.flags & (libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) != 0 {
        // A bind mount takes its flags on a remount of the new mount (reached by resolving again).
        let mnt = sys::open_in_root(root, &m.target, None)?;
        let flags = libc::MS_BIND | libc::MS_REMOUNT | (m.flags & !(libc::MS_BIND | libc::MS_REC));
        s.mount(None, &fd_path(&mnt), None, flags, None)
            .map_err(|e| err!(Io, "mount", "{what}: remount: {}", e.msg))?;
    }
    Ok(())
}

/// After pivot_root, in LXC's order: the bounding set, init's working dir,
/// LSM label and no_new_privs, the seccomp filter, then init's ids.
fn confine(a: &ChildArgs) -> Result<()> {
    // In the container, its root now, immediately before init (LXC's order).
    let env = crate::hooks::HookEnv {
        rootfs_mount: "/".into(),
        ..a.hook_env.clone()
    };
    a.cfg.hooks.run_in_container("start", &env, &[], &[])?;
    let c = &a.cfg.confine;
    c.drop_caps()?;
    c.before_exec()?;
    if let Some(f) = a.seccomp {
        f.install()?;
    }
    c.switch_ids()?;
    if let Some((tell, wait)) = a.host_sync {
        sys::write_all(tell, b"h");
        let mut b = [0u8; 1];
        // SAFETY: a one-byte read into a local from our pipe end.
        if unsafe { libc::read(wait, b.as_mut_ptr().cast(), 1) } != 1 {
            return Err(err!(Io, "start", "lxc.hook.start-host: the monitor went away"));
        }
    }
    Ok(())
}

fn exec(a: &ChildArgs) -> Error {
    let argv: Vec<String> = if a.cmd.is_empty() {
        a.cfg.init.clone()
    } else {
        a.cmd.to_vec()
    };
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("container".into(), "lxc".into()),
        ("HOME".into(), "/".into()),
    ];
    if let Ok(t) = std::env::var("TERM") {
        env.push(("TERM".into(), t));
    }
    let ttys = a.ttys.borrow();
    if !ttys.is_empty() {
        env.push(("container_ttys".into(), ttys.join(" ")));
    }
    for (k, v) in &a.cfg.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let cenv: Vec<_> = env.iter().map(|(k, v)| cstr(&format!("{k}={v}"))).collect();
    let mut envp: Vec<*const libc::c_char> = cenv.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let cargs: Vec<_> = argv.iter().map(|s| cstr(s)).collect();
    let mut argp: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    argp.push(std::ptr::null());
    let prog = &argv[0];
    let candidates: Vec<String> = if prog.contains('/') {
        vec![prog.clone()]
    } else {
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{d}/{prog}"))
            .collect()
    };
    let mut last = nix::errno::Errno::ENOENT;
    // The signals the monitor holds back must reach init normally.
    // SAFETY: sigset_t is a plain bit array (all-zero is a valid, empty set); `set` is live for both calls and the
    // old mask is not asked for (null).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    for c in &candidates {
        let cp = cstr(c);
        // SAFETY: `cp`, `argp` and `envp` point into CStrings alive until after the call, and both pointer arrays
        // end with a null; execve only returns on failure.
        unsafe { libc::execve(cp.as_ptr(), argp.as_ptr(), envp.as_ptr()) };
        let e = sys::errno();
        if e != nix::errno::Errno::ENOENT || last == nix::errno::Errno::ENOENT {
            last = e;
        }
    }
    let msg = if last == nix::errno::Errno::ENOENT {
        format!("{prog}: not found in the container")
    } else {
        format!("{prog}: {}", last.desc())
    };
    err!(NotFound, "exec init", "{msg}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::RunConfig;
    use std::path::PathBuf;
    use strata_core::config::Config;

    /// Records the calls, with `/proc/self/fd/N` targets shown as paths in the rootfs.
    struct Recorder {
        root: PathBuf,
        log: Vec<String>,
    }

    impl Recorder {
        fn show(&self, target: &str) -> String {
            let Some(rest) = target.strip_prefix("/proc/self/fd/") else {
                return target.to_string();
            };
            let (fd, tail) = rest.split_once('/').unwrap_or((rest, ""));
            let p = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap().join(tail);
            match p.strip_prefix(&self.root) {
                Ok(r) => format!("/{}", r.display()).trim_end_matches('/').to_string(),
                Err(_) => format!("OUTSIDE:{}", p.display()),
            }
        }
    }

    impl Syscall for Recorder {
        fn mount(
            &mut self,
            src: Option<&str>,
            t: &str,
            fstype: Option<&str>,
            flags: u64,
            _: Option<&str>,
        ) -> Result<()> {
            let ro = if flags & libc::MS_RDONLY != 0 { " ro" } else { "" };
            let line = if flags & libc::MS_REMOUNT != 0 {
                format!("remount {}{ro}", self.show(t))
            } else if flags & libc::MS_MOVE != 0 {
                format!("move {} {}", self.show(src.unwrap_or("-")), self.show(t))
            } else if flags & libc::MS_BIND != 0 {
                format!("bind {} {}", self.show(src.unwrap_or("-")), self.show(t))
            } else if flags & libc::MS_PRIVATE != 0 {
                format!("private {t}")
            } else {
                format!("mount {} {}{ro}", fstype.unwrap_or("-"), self.show(t))
            };
            self.log.push(line);
            Ok(())
        }
        fn sethostname(&mut self, name: &str) -> Result<()> {
            self.log.push(format!("hostname {name}"));
            Ok(())
        }
        fn umount(&mut self, target: &str) -> Result<()> {
            let t = self.show(target);
            self.log.push(format!("umount {t}"));
            Ok(())
        }
        fn link_up(&mut self, name: &str) -> Result<()> {
            self.log.push(format!("up {name}"));
            Ok(())
        }
        fn mknod_char(&mut self, t: &str, mode: u32, major: u32, minor: u32) -> Result<()> {
            let t = self.show(t);
            self.log.push(format!("mknod {t} {mode:o} {major}:{minor}"));
            Ok(())
        }
        fn pivot_root(&mut self, _: &OwnedFd, _: &Path) -> Result<()> {
            self.log.push("pivot_root".into());
            Ok(())
        }
    }

    #[test]
    fn setup_sequence() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(root.join("etc")).unwrap();
        // What the proc mount would show (the recorder mounts nothing).
        for d in ["proc/sys/net", "proc/tty"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("proc/sysrq-trigger"), "").unwrap();
        // An absolute symlink: must resolve inside the rootfs.
        std::os::unix::fs::symlink("/etc", root.join("esc")).unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let s = src.display();
        let cfg = Config::parse(&format!(
            "lxc.uts.name = h1\nlxc.mount.auto = proc:mixed sys:ro\nlxc.mount.entry = {s} mnt/x none bind,ro,create=dir 0 0\n\
             lxc.mount.entry = {s} esc/y none bind,create=dir 0 0\n"
        ))
        .unwrap();
        let cfg = RunConfig::from_config("c", &cfg, None).unwrap();
        let a = ChildArgs {
            cfg: &cfg,
            rootfs: &root,
            cmd: &[],
            kill_with_parent: false,
            userns: false,
            mount_inside: None,
            seccomp: None,
            tty_sock: None,
            ttys: Default::default(),
            cg_layout: &crate::cgroup::Layout::default(),
            console: None,
            console_in_devpts: false,
            hook_env: Default::default(),
            hook_root: None,
            host_sync: None,
            cg_self: None,
            cg_split: false,
            netns_sock: None,
        };
        let mut rec = Recorder {
            root: root.canonicalize().unwrap(),
            log: vec![],
        };
        let fd = sys::open_dir(&root).unwrap();
        setup_with(&mut rec, &a, &fd, false).unwrap();
        rec.pivot_root(&fd, &root).unwrap();
        let mut want: Vec<String> = ["private /", "hostname h1", "mount tmpfs /dev"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (n, major, minor) in HOST_NODES {
            want.push(format!("mknod /dev/{n} 666 {major}:{minor}"));
        }
        want.extend(["mount devpts /dev/pts".into(), "mount tmpfs /dev/shm".into()]);
        want.extend(
            [
                "up lo",
                "mount proc /proc",
                "bind /proc/sys/net /proc/tty",
                "bind /proc/sys /proc/sys",
                "remount /proc/sys ro",
                "move /proc/tty /proc/sys/net",
                "bind /proc/sysrq-trigger /proc/sysrq-trigger",
                "remount /proc/sysrq-trigger ro",
                "mount sysfs /sys ro",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        want.extend([
            format!("bind {s} /mnt/x"),
            "remount /mnt/x ro".into(),
            format!("bind {s} /etc/y"),
            "pivot_root".into(),
        ]);
        let got: Vec<String> = rec
            .log
            .into_iter()
            .filter(|l| !l.starts_with("bind /dev/console"))
            .collect();
        assert_eq!(got, want);
        assert!(root.join("etc/y").is_dir());
        assert!(root
            .join("dev/ptmx")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
