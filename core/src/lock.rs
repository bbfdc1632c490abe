//! Per-container file locks, so that separate processes serialize.
//!
//! The lock file lives under the run directory, never in the lxcpath: a
//! refused command leaves the lxcpath byte-for-byte as it was.

use crate::error::{IoContext, Result};
use crate::paths;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub struct ContainerLock {
    _file: File,
    path: PathBuf,
}

impl ContainerLock {
    /// Take the exclusive lock for `name` in `lxcpath`, waiting for another
    /// holder to finish.
    pub fn acquire(lxcpath: &Path, name: &str) -> Result<Self> {
        let dir = paths::run_dir().join("lock").join(paths::lxcpath_key(lxcpath));
        paths::ensure_dir(&dir)?;
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("open lock", &path)?;
        // flock: released by the kernel when the process dies, so a crash never leaves a stale lock.
        loop {
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(crate::error::Error::io("lock container", &path, e));
            }
        }
        Ok(ContainerLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ContainerLock {
    /// Take the lock only if nobody holds it (`None` when busy): used by
    /// reconcile to tell a crashed operation's leftovers from a live one's.
    pub fn try_acquire(lxcpath: &Path, name: &str) -> Result<Option<Self>> {
        let dir = paths::run_dir().join("lock").join(paths::lxcpath_key(lxcpath));
        paths::ensure_dir(&dir)?;
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("open lock", &path)?;
        loop {
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return Ok(Some(ContainerLock { _file: file, path }));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(None),
                _ => return Err(crate::error::Error::io("lock container", &path, e)),
            }
        }
    }
}
