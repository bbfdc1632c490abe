//! The container side of a start: runs in the cloned child, in its new
//! namespaces, until it execs init. Errors go back to the monitor as text
//! through a close-on-exec pipe (EOF there means init was exec'd).

use crate::conf::{Create, MountEntry, Net, RunConfig};
use crate::sys::{self, cstr, fd_path};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use strata_core::{err, Error, Result};

pub struct ChildArgs<'a> {
    pub cfg: &'a RunConfig,
    pub rootfs: &'a Path,
    pub cmd: &'a [String],
    pub kill_with_parent: bool,
}

/// Never returns: execs init or exits after reporting the error on `err_w`.
pub fn child_main(a: &ChildArgs, sync_r: OwnedFd, err_w: OwnedFd) -> ! {
    if a.kill_with_parent {
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    }
    // The monitor says go once it has done its part (record, veth); EOF means it died.
    let mut b = [0u8; 1];
    if unsafe { libc::read(sync_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) } != 1 {
        unsafe { libc::_exit(1) };
    }
    drop(sync_r);
    let e = match setup(a) {
        Ok(()) => exec(a),
        Err(e) => e,
    };
    sys::write_all(err_w.as_raw_fd(), e.to_string().as_bytes());
    unsafe { libc::_exit(1) }
}

fn setup(a: &ChildArgs) -> Result<()> {
    // Nothing mounted from here on may propagate back to the host.
    sys::mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
    nix::unistd::sethostname(&a.cfg.hostname).map_err(|e| Error::errno("set hostname", "", e))?;
    match &a.cfg.net {
        Net::Host => {}
        Net::Empty => sys::link_up("lo")?,
        Net::Veth { name, up, .. } => {
            sys::link_up("lo")?;
            if *up {
                sys::link_up(name)?;
            }
        }
    }
    let root = sys::open_dir(a.rootfs)?;
    let proc_fd = sys::open_in_root(&root, "proc", Some(Create::Dir))?;
    sys::mount(
        Some("proc"),
        &fd_path(&proc_fd),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    let sys_fd = sys::open_in_root(&root, "sys", Some(Create::Dir))?;
    let ro = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys::mount(Some("sysfs"), &fd_path(&sys_fd), Some("sysfs"), ro, None)?;
    make_dev(&root)?;
    for m in &a.cfg.mounts {
        mount_entry(&root, m)?;
    }
    // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves the rootfs alone.
    nix::unistd::fchdir(root.as_raw_fd()).map_err(|e| Error::errno("enter rootfs", a.rootfs, e))?;
    let dot = cstr(".");
    if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } != 0 {
        return Err(Error::errno("pivot_root", a.rootfs, sys::errno()));
    }
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).map_err(|e| Error::errno("detach old root", "/", e))?;
    nix::unistd::chdir("/").map_err(|e| Error::errno("chdir", "/", e))?;
    Ok(())
}

/// A tmpfs /dev with the host's harmless nodes bind-mounted, a private devpts and /dev/ptmx.
fn make_dev(root: &OwnedFd) -> Result<()> {
    let dev = sys::open_in_root(root, "dev", Some(Create::Dir))?;
    sys::mount(
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
    let console = nix::unistd::isatty(0)
        .unwrap_or(false)
        .then(|| nix::unistd::ttyname(std::io::stdin()).ok())
        .flatten();
    if console.is_some() {
        nodes.push("console");
    }
    for n in nodes {
        let target = format!("{devp}/{n}");
        std::fs::File::create(&target).map_err(|e| Error::io("create device node", &target, e))?;
        let src = match (n, &console) {
            ("console", Some(c)) => c.display().to_string(),
            _ => format!("/dev/{n}"),
        };
        sys::mount(Some(&src), &target, None, libc::MS_BIND, None)?;
    }
    for d in ["pts", "shm"] {
        std::fs::create_dir(format!("{devp}/{d}")).map_err(|e| Error::io("create", format!("/dev/{d}"), e))?;
    }
    sys::mount(
        Some("devpts"),
        &format!("{devp}/pts"),
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    sys::mount(
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

fn mount_entry(root: &OwnedFd, m: &MountEntry) -> Result<()> {
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
        sys::mount(Some(&m.source), &tp, None, base, None)
    } else {
        sys::mount(Some(&m.source), &tp, Some(&m.fstype), m.flags, data)
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
        sys::mount(None, &fd_path(&mnt), None, flags, None)
            .map_err(|e| err!(Io, "mount", "{what}: remount: {}", e.msg))?;
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
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    for c in &candidates {
        let cp = cstr(c);
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
