//! The monitor's side of a container's terminals: it holds the console pty
//! and the ttys while the container runs, copies console output to
//! `lxc.console.logfile` and to the `lxc.console.path` terminal, and lends
//! a pty to `lxc-console` through a unix socket in the run dir (the master
//! fd passed with SCM_RIGHTS; the connection stays open while it is used).

use crate::sys;
use crate::term::RawTerminal;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_core::{paths, state, ContainerRef, Error, Result};

/// Where the monitors of `lxcpath` serve their consoles.
pub(crate) fn socket_dir(lxcpath: &Path) -> PathBuf {
    state::record_dir(lxcpath)
}

/// The socket's file name for container `name`: short enough for sun_path
/// once reached through a directory fd.
pub(crate) fn socket_name(name: &str) -> String {
    if name.len() <= 64 {
        return format!("{name}.console");
    }
    // FNV-1a: any stable hash will do, both ends compute it.
    let h = name
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    format!("{h:016x}.console")
}

/// `lxc.console.logfile`, kept within `lxc.console.size` if set: when full
/// it starts over, or with `lxc.console.rotate` moves to FILE.1 first.
pub(crate) struct ConsoleLog {
    file: File,
    path: PathBuf,
    limit: Option<u64>,
    rotate: bool,
}

impl ConsoleLog {
    pub(crate) fn open(path: &Path, limit: Option<u64>, rotate: bool) -> Result<ConsoleLog> {
        Ok(ConsoleLog {
            file: Self::append(path)?,
            path: path.to_path_buf(),
            limit,
            rotate,
        })
    }

    fn append(path: &Path) -> Result<File> {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Error::io("open lxc.console.logfile", path, e))
    }

    fn write(&mut self, mut b: &[u8]) {
        // A fifo or a device has no size to keep.
        let size = match (self.limit, self.file.metadata()) {
            (Some(limit), Ok(m)) if m.is_file() => Some((limit, m.len())),
            _ => None,
        };
        let Some((limit, mut size)) = size else {
            let _ = self.file.write_all(b);
            return;
        };
        while !b.is_empty() {
            if size >= limit {
                if self.rotate {
                    let old = PathBuf::from(format!("{}.1", self.path.display()));
                    let moved = std::fs::rename(&self.path, &old).map_err(|e| Error::io("rotate", &old, e));
                    match moved.and_then(|_| Self::append(&self.path)) {
                        Ok(f) => self.file = f,
                        Err(e) => {
                            tracing::warn!("lxc.console.rotate: {e}");
                            return;
                        }
                    }
                } else if let Err(e) = self.file.set_len(0) {
                    tracing::warn!("lxc.console.size: truncate {}: {e}", self.path.display());
                    return;
                }
                size = 0;
            }
            let n = (limit - size).min(b.len() as u64) as usize;
            if self.file.write_all(&b[..n]).is_err() {
                return;
            }
            size += n as u64;
            b = &b[n..];
        }
    }
}

/// What a polled fd of the hub is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    Listener,
    Master,
    Peer,
    ConsoleUser,
    TtyUser(usize),
    ProxySlave,
    ProxyClient,
}

/// LXC's lxc-console on the console (`-t 0`): as LXC's monitor does, a pty
/// of its own between the client and the console, so that the monitor
/// still reads (and logs) what init writes. The client gets the master; we
/// copy console output to the slave and what the slave reads to the console.
struct Proxy {
    slave: OwnedFd,
    /// The client's command socket connection: it hangs up when it leaves.
    client: UnixStream,
}

pub(crate) struct Hub {
    name: String,
    listener: Option<(UnixListener, PathBuf)>,
    master: Option<OwnedFd>,
    log: Option<ConsoleLog>,
    peer: Option<RawTerminal>,
    peer_path: Option<PathBuf>,
    ttys: Vec<OwnedFd>,
    tty_users: Vec<Option<UnixStream>>,
    console_user: Option<UnixStream>,
    proxy: Option<Proxy>,
}

impl Hub {
    /// Serve `master` (the console, if any) and `ttys` (tty1..ttyN) of `r`.
    pub(crate) fn new(
        r: &ContainerRef,
        master: Option<OwnedFd>,
        log: Option<ConsoleLog>,
        peer: Option<(RawTerminal, PathBuf)>,
        ttys: Vec<OwnedFd>,
    ) -> Hub {
        let listener = if master.is_some() || !ttys.is_empty() {
            match listen(r) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!("{}: lxc-console will not reach this container: {e}", r.name);
                    None
                }
            }
        } else {
            None
        };
        let (peer, peer_path) = match peer {
            Some((t, p)) => (Some(t), Some(p)),
            None => (None, None),
        };
        Hub {
            name: r.name.clone(),
            listener,
            master,
            log,
            peer,
            peer_path,
            tty_users: ttys.iter().map(|_| None).collect(),
            ttys,
            console_user: None,
            proxy: None,
        }
    }

    /// The fds to poll for input.
    pub(crate) fn fds(&self) -> Vec<(Slot, RawFd)> {
        let mut v = Vec::new();
        if let Some((l, _)) = &self.listener {
            v.push((Slot::Listener, l.as_raw_fd()));
        }
        if let Some(m) = &self.master {
            v.push((Slot::Master, m.as_raw_fd()));
        }
        if let Some(p) = &self.peer {
            v.push((Slot::Peer, p.file.as_raw_fd()));
        }
        if let Some(u) = &self.console_user {
            v.push((Slot::ConsoleUser, u.as_raw_fd()));
        }
        for (i, u) in self.tty_users.iter().enumerate() {
            if let Some(u) = u {
                v.push((Slot::TtyUser(i), u.as_raw_fd()));
            }
        }
        if let Some(p) = &self.proxy {
            v.push((Slot::ProxySlave, p.slave.as_raw_fd()));
            v.push((Slot::ProxyClient, p.client.as_raw_fd()));
        }
        v
    }

    /// `slot` is readable (or hung up).
    pub(crate) fn ready(&mut self, slot: Slot) {
        match slot {
            Slot::Listener => self.accept(),
            Slot::Master => self.console_output(),
            Slot::Peer => {
                let mut buf = [0u8; 4096];
                let n = self.peer.as_mut().map_or(0, |p| p.file.read(&mut buf).unwrap_or(0));
                match (n, &self.master) {
                    (0, _) => self.peer = None,
                    (n, Some(m)) => sys::write_all(m.as_raw_fd(), &buf[..n]),
                    _ => {}
                }
            }
            // The user sends nothing after its request: readable means gone.
            Slot::ConsoleUser => self.console_user = None,
            Slot::TtyUser(i) => self.tty_users[i] = None,
            Slot::ProxySlave => {
                let mut buf = [0u8; 4096];
                let fd = self.proxy.as_ref().map_or(-1, |p| p.slave.as_raw_fd());
                // SAFETY: read into a local buffer from our (non-blocking) proxy slave.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    if let Some(m) = &self.master {
                        sys::write_all(m.as_raw_fd(), &buf[..n as usize]);
                    }
                } else if n == 0 || sys::errno() != nix::errno::Errno::EAGAIN {
                    // The client closed its master: EIO here.
                    self.proxy = None;
                }
            }
            Slot::ProxyClient => self.proxy = None,
        }
    }

    /// What is left on the console once init is gone, without waiting.
    pub(crate) fn drain(&mut self) {
        for _ in 0..256 {
            let Some(m) = &self.master else { return };
            let mut p = libc::pollfd {
                fd: m.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll of one local pollfd, no wait.
            if unsafe { libc::poll(&mut p, 1, 0) } != 1 || p.revents & libc::POLLIN == 0 {
                return;
            }
            self.console_output();
        }
    }

    /// Copy what init wrote on its console to the log, the peer terminal
    /// and the attached lxc-console; drained even with none of them, so
    /// that init never blocks on a full console.
    fn console_output(&mut self) {
        let Some(m) = &self.master else { return };
        let mut buf = [0u8; 4096];
        // SAFETY: read into a local buffer from our console master.
        let n = unsafe { libc::read(m.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n == 0 || !matches!(sys::errno(), nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) {
                // No slave left open (cannot happen while we hold one): stop polling it.
                self.master = None;
            }
            return;
        }
        let out = &buf[..n as usize];
        if let Some(l) = self.log.as_mut() {
            l.write(out);
        }
        if let Some(p) = self.peer.as_mut() {
            let _ = p.file.write_all(out);
        }
        if let Some(p) = &self.proxy {
            // Non-blocking: a client that does not read loses output, never stalls us.
            // SAFETY: write from a local buffer to our proxy slave.
            let _ = unsafe { libc::write(p.slave.as_raw_fd(), out.as_ptr().cast(), out.len()) };
        }
        if let Some(u) = self.console_user.as_mut() {
            // Never held up by a slow reader: what does not fit is dropped.
            match u.write(out) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => self.console_user = None,
            }
        }
    }

    fn accept(&mut self) {
        let Some((l, _)) = &self.listener else { return };
        let Ok((mut s, _)) = l.accept() else { return };
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        // The socket is ours alone (0600); the peer's uid is checked anyway.
        let me = nix::unistd::geteuid().as_raw();
        let uid = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials).map(|c| c.uid());
        if !matches!(uid, Ok(u) if u == 0 || u == me) {
            let _ = s.write_all(b"err permission denied\n");
            return;
        }
        let mut req = Vec::new();
        let mut b = [0u8; 1];
        while req.len() < 64 && s.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            req.push(b[0]);
        }
        let want = String::from_utf8_lossy(&req)
            .strip_prefix("tty ")
            .and_then(|n| n.trim().parse::<i64>().ok());
        let Some(want) = want else {
            let _ = s.write_all(b"err bad request\n");
            return;
        };
        match self.lend(want) {
            Ok((n, fd)) => {
                if send_fd(&s, format!("ok {n}\n").as_bytes(), fd).is_ok() {
                    let _ = s.set_nonblocking(true);
                    if n == 0 {
                        self.console_user = Some(s);
                    } else {
                        self.tty_users[n as usize - 1] = Some(s);
                    }
                    tracing::info!("{}: lxc-console attached to tty {n}", self.name);
                }
            }
            Err(msg) => {
                let _ = s.write_all(format!("err {msg}\n").as_bytes());
            }
        }
    }

    /// Lend tty `want` (N, or -1 the first free one; 0 the console, through
    /// a [`Proxy`], as its output is ours to read) to a client of LXC's
    /// command socket: `send` passes it the master; the tty is its until `s`
    /// hangs up. The number, or `s` back when there is no such tty free.
    pub(crate) fn lend_tty(
        &mut self,
        want: i64,
        s: UnixStream,
        send: impl FnOnce(&UnixStream, i64, RawFd) -> std::io::Result<()>,
    ) -> std::result::Result<i64, UnixStream> {
        let Ok((n, fd)) = self.lend(want).map_err(|e| tracing::info!("{}: {e}", self.name)) else {
            return Err(s);
        };
        if n == 0 {
            let (pm, slave) = match proxy_pty() {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("{}: console proxy for lxc-console: {e}", self.name);
                    return Err(s);
                }
            };
            if send(&s, 0, pm.as_raw_fd()).is_ok() {
                let _ = s.set_nonblocking(true);
                self.proxy = Some(Proxy { slave, client: s });
                tracing::info!("{}: LXC's lxc-console attached to the console", self.name);
            }
            return Ok(0);
        }
        if send(&s, n, fd).is_err() {
            return Ok(n); // the client is gone already; the tty stays free
        }
        let _ = s.set_nonblocking(true);
        self.tty_users[n as usize - 1] = Some(s);
        tracing::info!("{}: LXC's lxc-console attached to tty {n}", self.name);
        Ok(n)
    }

    /// Pick the pty for a request (LXC's numbering: 0 the console, N ttyN,
    /// -1 the first free tty); its number and master fd.
    fn lend(&self, want: i64) -> std::result::Result<(i64, RawFd), String> {
        let max = self.ttys.len() as i64;
        match want {
            0 => {
                let Some(m) = &self.master else {
                    return Err("no console to attach to (lxc.console.path = none, or it was started in the foreground on a terminal)".into());
                };
                if let Some(p) = &self.peer_path {
                    return Err(format!("the console is on {} (lxc.console.path)", p.display()));
                }
                if self.console_user.is_some() || self.proxy.is_some() {
                    return Err("the console is in use by another lxc-console".into());
                }
                Ok((0, m.as_raw_fd()))
            }
            n if n > 0 => {
                if n > max {
                    return Err(format!("no tty {n}: the container has {max} (lxc.tty.max)"));
                }
                if self.tty_users[n as usize - 1].is_some() {
                    return Err(format!("tty {n} is in use by another lxc-console"));
                }
                Ok((n, self.ttys[n as usize - 1].as_raw_fd()))
            }
            -1 => match self.tty_users.iter().position(Option::is_none) {
                Some(i) => Ok((i as i64 + 1, self.ttys[i].as_raw_fd())),
                None if max == 0 => Err("no tty to attach to (lxc.tty.max = 0); -t 0 is the console".into()),
                None => Err(format!("all {max} ttys are in use")),
            },
            n => Err(format!("invalid tty number {n}")),
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some((_, p)) = &self.listener {
            let _ = std::fs::remove_file(p);
            if let Some(d) = p.parent() {
                paths::prune_dir(d);
            }
        }
    }
}

/// Bind the container's console socket, only its owner may connect.
fn listen(r: &ContainerRef) -> Result<(UnixListener, PathBuf)> {
    let dir = socket_dir(&r.lxcpath);
    let path = dir.join(socket_name(&r.name));
    let _ = std::fs::remove_file(&path);
    // The dir may be pruned until the socket is in it (see paths::in_dir).
    let l = paths::in_dir(&dir, "bind console socket", || {
        let d = File::open(&dir)?;
        // Through the directory's fd: a deep run dir does not fit sun_path.
        let short = format!("/proc/self/fd/{}/{}", d.as_raw_fd(), socket_name(&r.name));
        // SAFETY: umask only changes this (single-threaded) monitor's creation mask.
        let old = unsafe { libc::umask(0o177) };
        let l = UnixListener::bind(&short);
        // SAFETY: as above, the previous mask back.
        unsafe { libc::umask(old) };
        l
    })?;
    l.set_nonblocking(true)
        .map_err(|e| Error::io("bind console socket", &path, e))?;
    Ok((l, path))
}

/// A new host pty for a [`Proxy`]: its master, and its slave in raw mode
/// (bytes pass as they are) and non-blocking.
fn proxy_pty() -> Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::FromRawFd;
    let (master, _) = sys::open_pty("/dev/ptmx")?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER on our pty master opens its slave; the fd is owned below.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd < 0 {
        return Err(Error::errno("open console proxy", "/dev/ptmx", sys::errno()));
    }
    // SAFETY: a new fd of ours.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut t = nix::sys::termios::tcgetattr(&slave).map_err(|e| Error::errno("console proxy", "/dev/ptmx", e))?;
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &t)
        .map_err(|e| Error::errno("console proxy", "/dev/ptmx", e))?;
    Ok((master, slave))
}

/// `msg` with `fd` attached (SCM_RIGHTS).
fn send_fd(s: &UnixStream, msg: &[u8], fd: RawFd) -> nix::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(msg)];
    sendmsg::<()>(
        s.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&[fd])],
        MsgFlags::empty(),
        None,
    )
}
