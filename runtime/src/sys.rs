//! Thin wrappers over the system calls the runtime uses.

use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use strata_core::{err, Error, Result};

pub fn errno() -> nix::errno::Errno {
    nix::errno::Errno::last()
}

pub fn cstr(s: &str) -> CString {
    CString::new(s.as_bytes()).unwrap_or_default()
}

/// A pipe, both ends close-on-exec: (read, write).
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a live [c_int; 2], the two slots pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::errno("create pipe", "", errno()));
    }
    // SAFETY: pipe2 succeeded, so both fds are new and owned by nothing else; each OwnedFd closes its own once.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn write_all(fd: RawFd, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: `b` is a live slice and write reads at most `b.len()` bytes from its start; `fd` is the caller's
        // open fd (a bad one only gives EBADF). write is async-signal-safe, so forked children may call this too.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            if n < 0 && errno() == nix::errno::Errno::EINTR {
                continue;
            }
            return;
        }
        b = &b[n as usize..];
    }
}

/// Read until EOF.
pub fn read_all(fd: RawFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is a live, exclusively borrowed 4 KiB array and read writes at most `buf.len()` bytes into
        // it.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && errno() == nix::errno::Errno::EINTR {
            continue;
        }
        if n <= 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// The kernel's `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2,
/// Linux 5.7); fields the caller leaves at zero are unused by the kernel.
#[repr(C)]
#[derive(Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// CLONE_INTO_CGROUP (Linux 5.7), not in the libc crate.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3(2) without a stack, i.e. a fork with the flags in `args`: `Ok(0)`
/// in the child, `Ok(pid)` in the parent.
///
/// # Safety
/// As for fork(): in a multi-threaded caller the child may only make
/// async-signal-safe calls until it execs or `_exit`s, and every pointer
/// stored in `args` (pidfd, tids) must be valid for the kernel to write.
pub unsafe fn clone3(args: &mut CloneArgs) -> std::io::Result<libc::pid_t> {
    // SAFETY: `args` is a live, properly sized `repr(C)` clone_args; the
    // caller vouches for the pointers inside it and for the child's conduct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as libc::pid_t)
}

/// fork() into new namespaces, and into the cgroup2 cgroup `cgroup` (a
/// directory fd) if given: `Ok(None)` in the child, `Ok(Some((pid,
/// pidfd)))` in the parent.
pub fn clone_into(ns_flags: u64, cgroup: Option<RawFd>) -> Result<Option<(i32, OwnedFd)>> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: ns_flags | libc::CLONE_PIDFD as u64 | cgroup.map_or(0, |_| CLONE_INTO_CGROUP),
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map_or(0, |fd| fd as u64),
        ..Default::default()
    };
    // SAFETY: `pidfd` outlives the call, so the kernel's write through
    // `args.pidfd` lands in it; the callers' children (container init, the
    // attach child) only make raw system calls until they exec or _exit.
    match unsafe { clone3(&mut args) } {
        Err(e) => Err(Error::io("clone container process", "", e)),
        Ok(0) => Ok(None),
        // SAFETY: with CLONE_PIDFD a successful clone3 stored a new fd in
        // `pidfd` that nothing else owns.
        Ok(pid) => Ok(Some((pid, unsafe { OwnedFd::from_raw_fd(pidfd) }))),
    }
}

pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a new pidfd owned by nothing else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Wait until the process behind `pidfd` exits; `false` on timeout.
pub fn wait_pidfd(pidfd: &OwnedFd, timeout: Option<std::time::Duration>) -> bool {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => d
                .saturating_duration_since(std::time::Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32,
        };
        let mut p = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one live pollfd and the count passed is 1.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r > 0 {
            return true;
        }
        if r == 0 {
            return false;
        }
        if errno() != nix::errno::Errno::EINTR {
            return true;
        }
    }
}

/// Send `sig` to the process behind `pidfd` (never by pid: a pid can be reused).
pub fn signal(pidfd: &OwnedFd, sig: i32) -> bool {
    // SAFETY: pidfd_send_signal with a valid fd, a signal number and no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        ) == 0
    }
}

pub fn mount(src: Option<&str>, target: &str, fstype: Option<&str>, flags: u64, data: Option<&str>) -> Result<()> {
    let (s, t, f, d) = (src.map(cstr), cstr(target), fstype.map(cstr), data.map(cstr));
    // SAFETY: every pointer is null or a CString that lives until the end of this function, so each stays NUL-
    // terminated and valid for the call; the kernel copies them.
    let r = unsafe {
        libc::mount(
            s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            t.as_ptr(),
            f.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            d.as_ref().map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    };
    if r != 0 {
        return Err(Error::errno("mount", target, errno()));
    }
    Ok(())
}

/// The magic-link path of an fd, for mounting onto an already resolved target.
pub fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn resolve(root: &OwnedFd, rel: &str, flags: OFlags) -> std::io::Result<OwnedFd> {
    let rel = if rel.is_empty() { "." } else { rel };
    rustix::fs::openat2(
        root.as_fd(),
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(std::io::Error::from)
}

/// How a missing mount target is made (`create=dir|file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Dir,
    File,
}

/// Open `rel` inside the tree at `root` as if `root` were `/`: symlinks in
/// the rootfs cannot lead outside it. Missing components are made when
/// `create` says so (directories for every parent).
pub fn open_in_root(root: &OwnedFd, rel: &str, create: Option<Create>) -> Result<OwnedFd> {
    const OP: &str = "resolve mount target";
    let rel = rel.trim_matches('/');
    match resolve(root, rel, OFlags::PATH) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create.is_some() => {}
        Err(e) => return Err(Error::io(OP, rel, e)),
    }
    let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let file = create == Some(Create::File);
    // Most targets miss only their last component (a tty under /dev): one
    // lookup of the parent instead of one per component.
    if let Some((last, parents)) = comps.split_last() {
        if let Ok(parent) = resolve(root, &parents.join("/"), OFlags::PATH | OFlags::DIRECTORY) {
            make_in(&parent, last, file, rel)?;
            return resolve(root, rel, OFlags::PATH).map_err(|e| Error::io(OP, rel, e));
        }
    }
    for i in 0..comps.len() {
        let prefix = comps[..=i].join("/");
        match resolve(root, &prefix, OFlags::PATH) {
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(OP, &prefix, e)),
        }
        let parent = resolve(root, &comps[..i].join("/"), OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| Error::io(OP, &prefix, e))?;
        make_in(&parent, comps[i], file && i + 1 == comps.len(), &prefix)?;
    }
    resolve(root, rel, OFlags::PATH).map_err(|e| Error::io(OP, rel, e))
}

/// Make `name` in `parent` (an empty file, or a directory), never through a
/// symlink; one already there is fine.
fn make_in(parent: &OwnedFd, name: &str, file: bool, what: &str) -> Result<()> {
    let made = if file {
        rustix::fs::openat(
            parent.as_fd(),
            name,
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map(drop)
    } else {
        rustix::fs::mkdirat(parent.as_fd(), name, Mode::from_raw_mode(0o755))
    };
    match made {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(Error::io("create mount target", what, e.into())),
    }
}

pub fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("open", path, e.into()))
}

/// Set interface flags (IFF_UP) on `name` in the current network namespace.
pub fn link_up(name: &str) -> Result<()> {
    const OP: &str = "bring up interface";
    // SAFETY: socket takes only integers; the result is checked before use.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Error::errno(OP, name, errno()));
    }
    // SAFETY: socket succeeded, so `sock` is a new fd owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is a C struct of integers, byte arrays and a union of those: all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(err!(InvalidArgument, OP, "interface name {name:?} too long"));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: `sock` is open for both calls and `req` is a live ifreq with a NUL-terminated name (the length check
    // above left a zero byte); SIOCGIFFLAGS writes the flags member of the union, which is then read as the short
    // it is, and SIOCSIFFLAGS only reads it.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(Error::errno(OP, name, errno()));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(Error::errno(OP, name, errno()));
        }
    }
    Ok(())
}

/// Run an external command (iproute2), with a one-line error on failure.
pub fn run(prog: &str, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::io("run", prog, e))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(err!(Command, "run", "{prog} {}: {}", args.join(" "), msg.trim()));
    }
    Ok(())
}

/// A new pty from the devpts whose ptmx is at `ptmx`: (master, pty number).
pub fn open_pty(ptmx: &str) -> Result<(OwnedFd, u32)> {
    let p = cstr(ptmx);
    // SAFETY: open of a NUL-terminated path; the fd is owned below.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::errno("open ptmx", ptmx, errno()));
    }
    // SAFETY: fd was just opened and is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCSPTLCK reads an int, TIOCGPTN writes an unsigned int; both point at locals.
    unsafe {
        if libc::ioctl(fd.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) != 0 {
            return Err(Error::errno("unlock pty", ptmx, errno()));
        }
        if libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTN, &mut n) != 0 {
            return Err(Error::errno("pty number", ptmx, errno()));
        }
    }
    Ok((fd, n))
}

/// A connected unix socket pair, close-on-exec.
pub fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills the two-int array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(Error::errno("socketpair", "", errno()));
    }
    // SAFETY: both fds were just made and are ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Send `fds` in one message (SCM_RIGHTS).
pub fn send_fds(sock: RawFd, fds: &[OwnedFd]) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [std::io::IoSlice::new(b"t")];
    sendmsg::<()>(sock, &iov, &[ControlMessage::ScmRights(&raw)], MsgFlags::empty(), None)
        .map_err(|e| Error::errno("send tty fds", "", e))?;
    Ok(())
}

/// Receive the fds of one message from [`send_fds`], without blocking.
pub fn recv_fds(sock: RawFd) -> Vec<OwnedFd> {
    recv_fds_with(sock, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
}

/// [`recv_fds`], waiting for the message (none if the other end closed).
pub fn recv_fds_wait(sock: RawFd) -> Vec<OwnedFd> {
    recv_fds_with(sock, nix::sys::socket::MsgFlags::empty())
}

fn recv_fds_with(sock: RawFd, flags: nix::sys::socket::MsgFlags) -> Vec<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 64]);
    let Ok(msg) = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), flags | MsgFlags::MSG_CMSG_CLOEXEC) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Ok(cms) = msg.cmsgs() {
        for c in cms {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel installed these fds in our table for us.
                out.extend(fds.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
    }
    out
}

/// Close what this process inherited beyond stdin, stdout and stderr: the
/// fds without close-on-exec (every fd strata opens has it), which would
/// otherwise reach the container's init.
pub fn close_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl and close on an fd number; one of ours carries FD_CLOEXEC and is left alone.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                tracing::info!("closed inherited fd {fd}");
                libc::close(fd);
            }
        }
    }
}

/// `[a-zA-Z0-9]{n}` from the kernel's random source.
pub fn random_suffix(n: usize) -> String {
    const CH: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut buf = vec![0u8; n];
    // SAFETY: `buf` is a live Vec of exactly `n` bytes, and getrandom writes at most `n` into it.
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), n, 0) };
    if got != n as isize {
        let seed = strata_core::paths::unique();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = seed.as_bytes()[i % seed.len()].wrapping_add(i as u8 * 31);
        }
    }
    buf.iter().map(|b| CH[*b as usize % CH.len()] as char).collect()
}

/// A new network namespace, made by the calling thread, which stays in its
/// own: `unshare` moves the caller into the new one, and `setns` back.
pub fn new_netns() -> Result<OwnedFd> {
    const OP: &str = "make network namespace";
    let mine =
        std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| Error::io(OP, "/proc/thread-self/ns/net", e))?;
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(Error::errno(OP, "", errno()));
    }
    let new = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| Error::io(OP, "/proc/thread-self/ns/net", e));
    // SAFETY: setns on an open network namespace fd of ours, back where we were.
    if unsafe { libc::setns(mine.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(Error::errno(OP, "back to the monitor's own", errno()));
    }
    Ok(OwnedFd::from(new?))
}
