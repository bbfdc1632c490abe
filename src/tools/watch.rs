//! Waking up when a run record may have changed: inotify on the directory
//! of an lxcpath's run records (made, replaced or removed by whichever
//! process starts or stops a container), with a short timeout so that what
//! leaves no trace there (init dying before its monitor notices, a freezer
//! written by another tool) is seen within [`TICK`] as well. Never a busy loop.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest sleep between two looks at the state.
pub const TICK: Duration = Duration::from_millis(50);

pub struct Watcher {
    fd: Option<OwnedFd>,
    dirs: Vec<(PathBuf, bool)>,
}

impl Watcher {
    /// A watcher on the record directories of `lxcpaths` (each is watched
    /// once it exists).
    pub fn new(lxcpaths: &[PathBuf]) -> Watcher {
        // SAFETY: inotify_init1 takes flags only; the fd is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        // SAFETY: a non-negative return is a new inotify fd owned by nothing else.
        let fd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
        let dirs = lxcpaths
            .iter()
            .map(|p| (strata_core::state::record_dir(p), false))
            .collect();
        let mut w = Watcher { fd, dirs };
        w.add_watches();
        w
    }

    fn add_watches(&mut self) {
        let Some(fd) = &self.fd else { return };
        for (dir, watched) in self.dirs.iter_mut().filter(|(_, w)| !*w) {
            *watched = add_watch(fd.as_raw_fd(), dir);
        }
    }

    /// Sleep until a record changes, [`TICK`] passes or `deadline` comes.
    pub fn wait(&mut self, deadline: Option<Instant>) {
        let mut t = TICK;
        if let Some(d) = deadline {
            t = t.min(d.saturating_duration_since(Instant::now()));
        }
        match &self.fd {
            Some(fd) => {
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one pollfd we own.
                let n = unsafe { libc::poll(&mut p, 1, t.as_millis() as i32) };
                if n > 0 {
                    let mut buf = [0u8; 4096];
                    // SAFETY: reads into a local buffer; the fd is non-blocking.
                    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
                    // A record dir goes with its last record and is made
                    // again by the next: watched anew (the same dir keeps
                    // its watch, one call each).
                    for (_, watched) in &mut self.dirs {
                        *watched = false;
                    }
                }
            }
            None => std::thread::sleep(t),
        }
        self.add_watches();
    }
}

fn add_watch(fd: i32, dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mask = libc::IN_CREATE
        | libc::IN_DELETE
        | libc::IN_MOVED_TO
        | libc::IN_MOVED_FROM
        | libc::IN_CLOSE_WRITE
        | libc::IN_DELETE_SELF;
    // SAFETY: a NUL-terminated path and our inotify fd.
    unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) >= 0 }
}
