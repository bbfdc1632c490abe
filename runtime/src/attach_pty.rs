//! `lxc-attach -L FILE`: the command runs on a pty of its own (its
//! controlling terminal and stdio), whose output the caller copies to its
//! stdout and appends to FILE, and whose input comes from the caller's
//! stdin. The caller's terminal, if stdin is one, is raw meanwhile and
//! lends the pty its size; without a terminal the pty is raw itself, so
//! the output is byte for byte what the command wrote.

use crate::sys;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use strata_core::{Error, Result};

pub(crate) struct AttachPty {
    master: OwnedFd,
    slave: OwnedFd,
    log: File,
}

/// A pty and the log (created 0600 and appended to, as LXC opens it). The
/// pty comes from the devpts at `/proc/PID/root/dev/pts` when `pid` is
/// given and the container has one of its own (so that `tty` names it in
/// there), else from the host's.
pub(crate) fn open(log: &Path, pid: Option<i32>) -> Result<AttachPty> {
    use std::os::unix::fs::OpenOptionsExt;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(log)
        .map_err(|e| Error::io("open pty log", log, e))?;
    let own = pid
        .map(|p| format!("/proc/{p}/root/dev/pts"))
        .filter(|d| is_devpts(&format!("{d}/ptmx")));
    let pts = own.unwrap_or_else(|| "/dev/pts".to_string());
    let (master, n) = sys::open_pty(&format!("{pts}/ptmx"))?;
    let p = sys::cstr(&format!("{pts}/{n}"));
    // SAFETY: open of a NUL-terminated path; the fd is owned below.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::errno("open pty", format!("{pts}/{n}"), sys::errno()));
    }
    // SAFETY: just opened, ours.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    let tty = nix::unistd::isatty(0).unwrap_or(false);
    if let Ok(mut t) = nix::sys::termios::tcgetattr(&slave) {
        if !tty {
            nix::sys::termios::cfmakeraw(&mut t);
            let _ = nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &t);
        }
    }
    if tty {
        copy_winsize(master.as_raw_fd());
    }
    Ok(AttachPty {
        master,
        slave,
        log: log_file,
    })
}

impl AttachPty {
    /// In the command's process, before exec: a session of its own with the
    /// pty as its controlling terminal, stdin, stdout and stderr.
    pub(crate) fn become_terminal(&self) -> bool {
        let s = self.slave.as_raw_fd();
        // SAFETY: plain system calls on our fds in the forked child before exec.
        unsafe {
            libc::setsid() >= 0
                && libc::ioctl(s, libc::TIOCSCTTY, 0) == 0
                && libc::dup2(s, 0) == 0
                && libc::dup2(s, 1) == 1
                && libc::dup2(s, 2) == 2
        }
    }

    /// In the caller, once the command runs: copy until the pty hangs up
    /// (the command and whatever it left holding the pty are gone).
    pub(crate) fn proxy(self) {
        let AttachPty { master, slave, mut log } = self;
        drop(slave);
        let tty = nix::unistd::isatty(0).unwrap_or(false);
        // SAFETY: fd 0 stays open for the whole run; the File is forgotten below, never closed.
        let stdin = unsafe { File::from_raw_fd(0) };
        let raw = tty.then(|| crate::term::RawTerminal::raw(stdin.try_clone().expect("dup stdin")));
        std::mem::forget(stdin);
        let mut stdin_open = true;
        let mut buf = [0u8; 8192];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: master.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if stdin_open { 0 } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: poll on a local array of two pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if r < 0 {
                if sys::errno() == nix::errno::Errno::EINTR {
                    continue;
                }
                break;
            }
            if fds[1].revents != 0 {
                // SAFETY: read into a local buffer from stdin.
                let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    sys::write_all(master.as_raw_fd(), &buf[..n as usize]);
                } else {
                    stdin_open = false;
                }
            }
            if fds[0].revents != 0 {
                // SAFETY: read into a local buffer from our master.
                let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break; // EIO: every slave fd is closed
                }
                let b = &buf[..n as usize];
                sys::write_all(1, b);
                let _ = log.write_all(b);
            }
        }
        drop(raw);
    }
}

/// Whether `p` is on a devpts filesystem (not a container's plain /dev).
fn is_devpts(p: &str) -> bool {
    const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == DEVPTS_SUPER_MAGIC)
}

/// The caller's terminal size onto the pty.
fn copy_winsize(master: std::os::fd::RawFd) {
    // SAFETY: a plain C struct, all zeroes is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the local winsize, TIOCSWINSZ reads it.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master, libc::TIOCSWINSZ, &ws);
        }
    }
}
