//! `lxc-console`: attach the caller's terminal to a running container's
//! console or one of its ttys, lent by the container's monitor (see
//! `console_hub`) or by LXC's monitor for a container LXC runs, until the
//! escape sequence or the container's end.

use crate::console_hub::{socket_dir, socket_name};
use crate::term::RawTerminal;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use strata_core::state;
use strata_core::{err, ContainerRef, Error, Result};

/// How to attach.
#[derive(Debug, Clone)]
pub struct ConsoleOpts {
    /// 0: the console; N: ttyN; -1: the first free tty (LXC's default).
    pub tty: i64,
    /// The escape character (Ctrl-a is 1); `ESC q` detaches.
    pub escape: u8,
    /// Say nothing on attach.
    pub quiet: bool,
}

/// Attach to `r`'s terminal as `o` asks; returns when detached or when the
/// container stops.
pub fn console(r: &ContainerRef, o: &ConsoleOpts) -> Result<()> {
    const OP: &str = "console";
    let _s = tracing::info_span!("console", name = %r.name, tty = o.tty).entered();
    if !state::read(r).is_some_and(|rec| rec.init_alive()) {
        // A container LXC runs: its monitor lends the tty the same way.
        if state::lxc_running(r).is_some() {
            return from_lxc(r, o);
        }
        return Err(err!(NotFound, OP, "{} is not running", r.name));
    }
    let dir = socket_dir(&r.lxcpath);
    let d = std::fs::File::open(&dir).map_err(|e| Error::io(OP, &dir, e))?;
    let short = format!("/proc/self/fd/{}/{}", d.as_raw_fd(), socket_name(&r.name));
    let mut s = UnixStream::connect(&short).map_err(|_| {
        err!(
            NotFound,
            OP,
            "{} has no console to attach to (no ttys and no console, or its monitor is gone)",
            r.name
        )
    })?;
    drop(d);
    s.write_all(format!("tty {}\n", o.tty).as_bytes())
        .map_err(|e| Error::io(OP, &r.name, e))?;
    let (reply, fd) = recv_reply(&s)?;
    let reply = reply.trim_end();
    if let Some(msg) = reply.strip_prefix("err ") {
        return Err(err!(Busy, OP, "{}: {msg}", r.name));
    }
    let (Some(n), Some(master)) = (reply.strip_prefix("ok ").and_then(|n| n.parse::<i64>().ok()), fd) else {
        return Err(err!(Io, OP, "{}: the monitor answered {reply:?}", r.name));
    };
    banner(o, n);
    // The console's output comes through the monitor (it logs it too); a
    // tty's straight from its master. Input always goes to the master.
    let out_fd = if n == 0 { s.as_raw_fd() } else { master.as_raw_fd() };
    pump(&s, &master, out_fd, o.escape)
}

/// Attach to a container LXC runs: LXC's GET_TTY_FD command on its command
/// socket (the tty number in the request's data field; the answer carries
/// the number given and the pty's master, kept busy while the connection is open).
fn from_lxc(r: &ContainerRef, o: &ConsoleOpts) -> Result<()> {
    use strata_core::lxc_cmd::{self, cmd, Rsp};
    const OP: &str = "console";
    let addr = lxc_cmd::socket_addr(&r.lxcpath, &r.name).map_err(|e| Error::io(OP, &r.name, e))?;
    let mut s = UnixStream::connect_addr(&addr).map_err(|_| err!(NotFound, OP, "{} is not running", r.name))?;
    let mut req = lxc_cmd::req_bytes(cmd::GET_TTY_FD, 0);
    req[8..].copy_from_slice(&o.tty.to_ne_bytes());
    s.write_all(&req).map_err(|e| Error::io(OP, &r.name, e))?;
    let (b, fd) = recv_with_fd(&s, 16)?;
    let Ok(head) = <[u8; 16]>::try_from(b.as_slice()) else {
        return Err(err!(Io, OP, "{}: LXC's monitor gave no answer", r.name));
    };
    let rsp = Rsp::from_bytes(&head);
    let (0.., Some(master)) = (rsp.ret, fd) else {
        return Err(err!(
            Busy,
            OP,
            "{}: LXC's monitor has no {} to lend (a missing or busy one)",
            r.name,
            match o.tty {
                -1 => "free tty".to_string(),
                0 => "console".to_string(),
                n => format!("tty {n}"),
            }
        ));
    };
    banner(o, rsp.value as i64);
    pump(&s, &master, master.as_raw_fd(), o.escape)
}

/// LXC's words on attaching, unless quiet.
fn banner(o: &ConsoleOpts, n: i64) {
    if !o.quiet {
        let c = (b'a' + o.escape.saturating_sub(1)) as char;
        eprint!("\r\nConnected to tty {n}\r\nType <Ctrl+{c} q> to exit the console, <Ctrl+{c} Ctrl+{c}> to enter Ctrl+{c} itself\r\n");
    }
}

/// The monitor's answer line and the fd that came with it.
fn recv_reply(s: &UnixStream) -> Result<(String, Option<OwnedFd>)> {
    let (b, fd) = recv_with_fd(s, 512)?;
    Ok((String::from_utf8_lossy(&b).into_owned(), fd))
}

/// One message of up to `max` bytes and the fd that came with it.
fn recv_with_fd(s: &UnixStream, max: usize) -> Result<(Vec<u8>, Option<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; max];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| Error::errno("console", "", e))?;
    let mut fd = None;
    if let Ok(cms) = msg.cmsgs() {
        for c in cms {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // SAFETY: the kernel installed this fd in our table for us.
                    let f = unsafe { OwnedFd::from_raw_fd(f) };
                    fd.get_or_insert(f);
                }
            }
        }
    }
    let n = msg.bytes;
    buf.truncate(n);
    Ok((buf, fd))
}

/// Copy between the caller's terminal and the pty until `ESC q`, or the
/// monitor closing the connection (the container stopped).
fn pump(sock: &UnixStream, master: &OwnedFd, out_fd: RawFd, escape: u8) -> Result<()> {
    let tty = nix::unistd::isatty(0).unwrap_or(false);
    // Raw while attached, the caller's settings back on every way out.
    let _raw = tty.then(|| {
        // SAFETY: dup of stdin, a terminal (checked above): a new fd of ours.
        let fd = unsafe { libc::dup(0) };
        // SAFETY: that fd is owned by the File from here on.
        RawTerminal::raw(unsafe { std::fs::File::from_raw_fd(fd) })
    });
    // SIGWINCH as an fd: the new size is passed on to the pty.
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGWINCH);
    let _ = set.thread_block();
    let sfd = nix::sys::signalfd::SignalFd::with_flags(&set, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC).ok();
    if tty {
        copy_winsize(master.as_raw_fd());
    }
    let mut stdout = std::io::stdout();
    let mut stdin_open = true;
    let mut saw_escape = false;
    let mut buf = [0u8; 4096];
    // A tty's master reads EIO while no slave is open, as in the moment of
    // a getty's vhangup() before it opens the tty again: the container is
    // gone only when the monitor closes the connection, so a hung-up master
    // is left out of the poll for a while (and given up after 5 s: a tty
    // never opened again, as after the container's reboot).
    let own_conn = out_fd == sock.as_raw_fd();
    let mut hung_since: Option<std::time::Instant> = None;
    let mut skip_master = false;
    loop {
        let mut fds = vec![
            libc::pollfd {
                fd: if skip_master { -1 } else { out_fd },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_ref().map_or(-1, |s| s.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if out_fd != sock.as_raw_fd() {
            fds.push(libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout = if skip_master { 50 } else { -1 };
        // SAFETY: poll on a local array of pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, timeout) };
        if r < 0 {
            if sys_errno() == libc::EINTR {
                continue;
            }
            return Err(Error::errno("console", "poll", nix::errno::Errno::last()));
        }
        if r == 0 {
            // Look at the hung-up master again; opened again and quiet
            // (no POLLHUP at once), it is no longer hung up.
            skip_master = false;
            let mut p = libc::pollfd {
                fd: out_fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll of one local pollfd, no wait.
            if unsafe { libc::poll(&mut p, 1, 0) } == 0 {
                hung_since = None;
            }
            continue;
        }
        if fds[0].revents != 0 {
            // SAFETY: read into a local buffer.
            let n = unsafe { libc::read(out_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                if n < 0 && matches!(sys_errno(), libc::EINTR | libc::EAGAIN) {
                    continue;
                }
                if own_conn {
                    // EOF on the monitor's connection: the container stopped.
                    return Ok(());
                }
                // EIO on a tty: hung up, or its container gone (then the
                // monitor's connection closes too).
                let since = *hung_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > std::time::Duration::from_secs(5) {
                    return Ok(());
                }
                skip_master = true;
                continue;
            }
            hung_since = None;
            let _ = stdout.write_all(&buf[..n as usize]);
            let _ = stdout.flush();
        }
        if fds[1].revents != 0 {
            // SAFETY: read into a local buffer (not std's Stdin: its buffer would hide input from poll).
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 && sys_errno() == libc::EINTR {
                continue;
            }
            let n = n.max(0) as usize;
            if n == 0 {
                stdin_open = false;
            }
            let mut out = Vec::with_capacity(n);
            for &c in &buf[..n] {
                if saw_escape {
                    saw_escape = false;
                    if c == b'q' {
                        write_master(master, &out);
                        return Ok(());
                    }
                    out.push(c);
                } else if c == escape {
                    saw_escape = true;
                } else {
                    out.push(c);
                }
            }
            write_master(master, &out);
        }
        if fds[2].revents != 0 {
            if let Some(s) = sfd.as_ref() {
                let _ = s.read_signal();
            }
            copy_winsize(master.as_raw_fd());
        }
        if fds.get(3).is_some_and(|f| f.revents != 0) {
            // The monitor closed the connection: the container stopped.
            return Ok(());
        }
    }
}

fn sys_errno() -> i32 {
    nix::errno::Errno::last_raw()
}

fn write_master(master: &OwnedFd, b: &[u8]) {
    if !b.is_empty() {
        crate::sys::write_all(master.as_raw_fd(), b);
    }
}

/// The caller's terminal size onto the pty (the container sees SIGWINCH).
fn copy_winsize(master: RawFd) {
    // SAFETY: a plain C struct, all zeroes is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the local winsize, TIOCSWINSZ reads it.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master, libc::TIOCSWINSZ, &ws);
        }
    }
}
