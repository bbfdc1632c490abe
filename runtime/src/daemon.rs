//! Daemon mode: the monitor forks into the background and reports the
//! start's outcome to the waiting front end through a pipe.

use crate::sys;
use std::os::fd::{AsRawFd, OwnedFd};
use strata_core::{err, Error, ErrorKind, Result};

/// Reports the outcome of a start to a waiting front end (daemon mode).
pub(crate) struct Notifier(pub(crate) Option<OwnedFd>);

impl Notifier {
    pub(crate) fn ok(&mut self) {
        if let Some(fd) = self.0.take() {
            sys::write_all(fd.as_raw_fd(), b"\0");
        }
    }
    pub(crate) fn fail(&mut self, e: &Error) {
        if let Some(fd) = self.0.take() {
            sys::write_all(fd.as_raw_fd(), e.to_string().as_bytes());
        }
    }
}

/// Run `f` as a daemonized monitor; returns once it reported the start.
pub(crate) fn daemonize(f: impl FnOnce(&mut Notifier) -> Result<i32>) -> Result<i32> {
    let (rd, wr) = sys::pipe()?;
    // SAFETY: fork takes no arguments. lxc-start runs no other thread when it daemonizes (the runtime starts none),
    // so the child is a whole copy of a single-threaded process and may go on to run the monitor as ordinary Rust
    // code; it leaves only through _exit below.
    match unsafe { libc::fork() } {
        -1 => Err(Error::errno("fork monitor", "", sys::errno())),
        0 => {
            drop(rd);
            // SAFETY: setsid, open, dup2, close and chdir get integers and NUL-terminated C string literals only;
            // `null` is a new fd this child owns: it is duplicated onto 0-2 (which no Rust object owns) and closed
            // once unless it already is one of them.
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
            // Its in-flight entry (it noted its container's lock) goes with it
            // when it names nothing left, as a command's does at its end.
            strata_core::inflight::finish();
            // SAFETY: _exit ends the daemonized monitor with its status, without unwinding into the caller of
            // daemonize, which belongs to the parent.
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
