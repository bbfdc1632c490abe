//! Per-container file locks, so that separate processes serialize.
//!
//! The lock file lives under the run directory, never in the lxcpath: a
//! refused command leaves the lxcpath byte-for-byte as it was.
//!
//! An operation that needs several containers (a clone, its source and the
//! container its lower lives in; a destroy and the origins whose
//! `lxc_snapshots` it edits) takes them all at once with [`LockSet`], in
//! one global order, so that two operations never deadlock. A snapshot
//! (`LXCPATH/C/snaps/snapN`) is guarded by its container's lock.
//! The locks a thread holds are known ([`held`]): the engine checks that
//! every dependency file it rewrites belongs to a container it holds.

use crate::error::{IoContext, Result};
use crate::paths;
use crate::store::ContainerRef;
use std::cell::RefCell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

thread_local! {
    /// Lock files this thread holds.
    static HELD: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
}

fn lock_path(lxcpath: &Path, name: &str) -> Result<PathBuf> {
    let dir = paths::run_dir().join("lock").join(paths::lxcpath_key(lxcpath));
    paths::ensure_dir(&dir)?;
    Ok(dir.join(name))
}

fn held_path(p: &Path) -> bool {
    HELD.with(|h| h.borrow().iter().any(|x| x == p))
}

/// The container whose lock guards `r`: a snapshot's container, else `r`.
/// (An lxcpath that is itself named `snaps` is then guarded by its parent
/// dir's entry: coarser, never inconsistent.)
pub fn guard_of(r: &ContainerRef) -> ContainerRef {
    if r.lxcpath.file_name().is_some_and(|n| n == "snaps") {
        if let (Some(cdir), Some(cname)) = (r.lxcpath.parent(), r.lxcpath.parent().and_then(|p| p.file_name())) {
            if let (Some(lxcpath), Some(name)) = (cdir.parent(), cname.to_str()) {
                return ContainerRef::new(lxcpath, name);
            }
        }
    }
    r.clone()
}

/// Whether this thread holds the lock that guards `r`.
pub fn held(r: &ContainerRef) -> bool {
    let g = guard_of(r);
    let dir = paths::run_dir().join("lock").join(paths::lxcpath_key(&g.lxcpath));
    held_path(&dir.join(&g.name))
}

/// A name that can key a lock file (entries of dependency files are not checked on read).
pub fn lockable(r: &ContainerRef) -> bool {
    !r.is_unknown() && r.name != "." && r.name != ".." && !r.name.contains(['/', '\0']) && r.lxcpath.is_absolute()
}

pub struct ContainerLock {
    /// `None`: this thread already held it (see [`ContainerLock::acquire`]).
    file: Option<File>,
    path: PathBuf,
}

impl Drop for ContainerLock {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            HELD.with(|h| h.borrow_mut().retain(|x| x != &self.path));
        }
    }
}

/// The locks of several containers, taken in one order (sorted by
/// `(lxcpath, name)` of their guards, see [`guard_of`]), released on drop.
pub struct LockSet {
    _locks: Vec<ContainerLock>,
}

impl LockSet {
    fn order<'a>(refs: impl IntoIterator<Item = &'a ContainerRef>) -> Vec<ContainerRef> {
        let mut v: Vec<ContainerRef> = refs.into_iter().filter(|r| lockable(r)).map(guard_of).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Wait for every lock of `refs` in order. Locks this thread holds
    /// already count as taken.
    pub fn acquire<'a>(refs: impl IntoIterator<Item = &'a ContainerRef>) -> Result<LockSet> {
        let mut locks = Vec::new();
        for r in Self::order(refs) {
            locks.push(ContainerLock::acquire(&r.lxcpath, &r.name)?);
        }
        Ok(LockSet { _locks: locks })
    }

    /// All of `refs` or none (`None` when one is busy); never waits. Locks
    /// this thread holds count as taken.
    pub fn try_acquire<'a>(refs: impl IntoIterator<Item = &'a ContainerRef>) -> Result<Option<LockSet>> {
        let mut locks = Vec::new();
        for r in Self::order(refs) {
            if held(&r) {
                continue;
            }
            match ContainerLock::try_acquire(&r.lxcpath, &r.name)? {
                Some(l) => locks.push(l),
                None => return Ok(None),
            }
        }
        Ok(Some(LockSet { _locks: locks }))
    }
}

impl ContainerLock {
    /// Take the exclusive lock for `name` in `lxcpath`, waiting for another
    /// holder to finish. Already held by this thread: a guard that releases
    /// nothing (a second flock of the same file would wait for itself).
    pub fn acquire(lxcpath: &Path, name: &str) -> Result<Self> {
        let path = lock_path(lxcpath, name)?;
        if held_path(&path) {
            return Ok(ContainerLock { file: None, path });
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("open lock", &path)?;
        // flock: released by the kernel when the process dies, so a crash never leaves a stale lock.
        loop {
            // SAFETY: flock takes integers only; `file` is open for the whole call.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(crate::error::Error::io("lock container", &path, e));
            }
        }
        HELD.with(|h| h.borrow_mut().push(path.clone()));
        Ok(ContainerLock { file: Some(file), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ContainerLock {
    /// Take the lock only if nobody holds it (`None` when busy, this
    /// thread included): used by reconcile to tell a crashed operation's
    /// leftovers from a live one's.
    pub fn try_acquire(lxcpath: &Path, name: &str) -> Result<Option<Self>> {
        let path = lock_path(lxcpath, name)?;
        if held_path(&path) {
            return Ok(None);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("open lock", &path)?;
        loop {
            // SAFETY: flock takes integers only; `file` is open for the whole call.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                HELD.with(|h| h.borrow_mut().push(path.clone()));
                return Ok(Some(ContainerLock { file: Some(file), path }));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_guarded_by_their_container() {
        let snap = ContainerRef::new("/l/c/snaps", "snap0");
        assert_eq!(guard_of(&snap), ContainerRef::new("/l", "c"));
        assert_eq!(guard_of(&ContainerRef::new("/l", "c")), ContainerRef::new("/l", "c"));
        assert!(!lockable(&ContainerRef::unknown("/l")));
        assert!(!lockable(&ContainerRef::new("/l", "../x")));
        assert!(!lockable(&ContainerRef::new("l", "c")));
    }

    #[test]
    fn held_locks_are_known_and_taken_once_per_thread() {
        let d = tempfile::tempdir().unwrap();
        let a = ContainerRef::new(d.path(), "a");
        let b = ContainerRef::new(d.path(), "b");
        let snap = ContainerRef::new(d.path().join("a/snaps"), "snap0");
        let busy = |name: &'static str| {
            let p = d.path().to_path_buf();
            std::thread::spawn(move || ContainerLock::try_acquire(&p, name).unwrap().is_none())
                .join()
                .unwrap()
        };
        assert!(!held(&a) && !held(&snap));
        let set = LockSet::acquire([&snap, &b, &a]).unwrap();
        assert!(held(&a) && held(&b) && held(&snap));
        // Again in this thread: no wait for itself, and the inner guard releases nothing.
        drop(ContainerLock::acquire(d.path(), "a").unwrap());
        assert!(held(&a) && busy("a"));
        // Held by this thread: busy to a try, covered for a set.
        assert!(ContainerLock::try_acquire(d.path(), "a").unwrap().is_none());
        assert!(LockSet::try_acquire([&a, &snap]).unwrap().is_some());
        drop(set);
        assert!(!held(&a) && !busy("a") && !busy("b"));
    }
}
