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
//!
//! The run dir keeps nothing for a container nobody holds. The lock files
//! lie in one flat dir, `RUN/lock/`, named after the lxcpath and the name
//! ([`file_name`]), so that no per-lxcpath dir is made and removed per
//! command; the holder unlinks its file before it lets the lock go. A
//! waiter that had opened the file before the unlink then holds a lock on
//! an inode no one else can open: after every flock the fd is compared
//! with what the path names now, and on a mismatch it starts again with
//! the file at the path (made anew if need be), where newcomers wait too.
//! So two processes never hold "the same" lock on two inodes.

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

fn lock_dir() -> PathBuf {
    paths::run_dir().join("lock")
}

/// The lock file's name for `name` in `lxcpath`: the flat key of the
/// container's path, or, beyond what a file name may hold, its start and
/// a 128-bit hash of the whole (two names that met there would share one
/// lock: coarser, never inconsistent).
fn file_name(lxcpath: &Path, name: &str) -> String {
    let key = paths::lxcpath_key(&lxcpath.join(name));
    if key.len() <= 255 {
        return key;
    }
    // FNV-1a from two offsets: stable across builds, as the name must be.
    let fnv = |seed: u64| {
        key.bytes()
            .fold(seed, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
    };
    let mut cut = 200;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}~{:016x}{:016x}",
        &key[..cut],
        fnv(0xcbf29ce484222325),
        fnv(0x84222325cbf29ce4)
    )
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
    held_path(&lock_dir().join(file_name(&g.lxcpath, &g.name)))
}

/// A name that can key a lock file (entries of dependency files are not checked on read).
pub fn lockable(r: &ContainerRef) -> bool {
    !r.is_unknown() && r.name != "." && r.name != ".." && !r.name.contains(['/', '\0']) && r.lxcpath.is_absolute()
}

pub struct ContainerLock {
    /// `None`: this thread already held it (see [`ContainerLock::acquire`]).
    file: Option<File>,
    path: PathBuf,
    /// The process that took it: a forked child that drops a copy leaves
    /// the file to the parent, which still holds the lock.
    pid: u32,
}

impl Drop for ContainerLock {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else { return };
        HELD.with(|h| h.borrow_mut().retain(|x| x != &self.path));
        if self.pid != std::process::id() {
            return;
        }
        // Unlinked while still held: whoever gets this inode's lock next
        // sees it unlinked and goes to the path (see the module doc).
        let _ = std::fs::remove_file(&self.path);
        drop(file);
    }
}

/// Whether `file`, just locked, is still the lock file at `path`.
fn still_linked(file: &File, path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let f = file.metadata().ctx("lock container", path)?;
    match std::fs::symlink_metadata(path) {
        Ok(p) => Ok(f.nlink() > 0 && p.dev() == f.dev() && p.ino() == f.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(crate::error::Error::io("lock container", path, e)),
    }
}

/// Lock the file `dir/name`, waiting for its holder or not (`None`: busy).
fn lock_file(dir: &Path, name: &str, wait: bool) -> Result<Option<ContainerLock>> {
    let path = dir.join(name);
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // Noted before it is made, as every path a command may leave behind:
    // the lock file of a killed command is removed by the next reconcile
    // ([`release_stale`]) even if nothing else brings its name back.
    let _noted = crate::inflight::note(&path)?;
    loop {
        let file = paths::in_dir(dir, "open lock", || {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        })?;
        // flock: released by the kernel when the process dies, so a crash never leaves a stale lock.
        loop {
            // SAFETY: flock takes integers only; `file` is open for the whole call.
            let r = unsafe { libc::flock(file.as_raw_fd(), op) };
            if r == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if !wait => return Ok(None),
                _ => return Err(crate::error::Error::io("lock container", &path, e)),
            }
        }
        if still_linked(&file, &path)? {
            HELD.with(|h| h.borrow_mut().push(path.clone()));
            return Ok(Some(ContainerLock {
                file: Some(file),
                path,
                pid: std::process::id(),
            }));
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
        Self::acquire_in(&lock_dir(), &file_name(lxcpath, name))
    }

    fn acquire_in(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        if held_path(&path) {
            return Ok(ContainerLock {
                file: None,
                path,
                pid: std::process::id(),
            });
        }
        // A waiting flock is never busy.
        lock_file(dir, name, true)?.ok_or_else(|| crate::err!(Busy, "lock container", "busy").at(&path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the lock only if nobody holds it (`None` when busy, this
    /// thread included): used by reconcile to tell a crashed operation's
    /// leftovers from a live one's.
    pub fn try_acquire(lxcpath: &Path, name: &str) -> Result<Option<Self>> {
        Self::try_acquire_in(&lock_dir(), &file_name(lxcpath, name))
    }

    fn try_acquire_in(dir: &Path, name: &str) -> Result<Option<Self>> {
        if held_path(&dir.join(name)) {
            return Ok(None);
        }
        lock_file(dir, name, false)
    }
}

/// Whether `p` (absolute) is a lock file of this run dir.
pub fn is_lock_file(p: &Path) -> bool {
    std::path::absolute(lock_dir()).is_ok_and(|root| p.parent() == Some(&*root))
}

/// Remove the lock file `p` a killed command left, unless someone holds
/// it: taken without waiting and let go, as its holder would have.
pub fn release_stale(p: &Path) -> Result<()> {
    let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    if std::fs::symlink_metadata(p).is_ok() {
        drop(ContainerLock::try_acquire_in(dir, name)?);
    }
    Ok(())
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
    fn lock_file_names_are_one_per_container_and_fit_a_dir_entry() {
        let n = |l: &str, c: &str| file_name(Path::new(l), c);
        assert_eq!(n("/var/lib/lxc", "c1"), "_var_lib_lxc_c1");
        assert_ne!(n("/a/b", "c"), n("/a", "b_c"));
        assert_ne!(n("/a_b", "c"), n("/a", "b_c"));
        let deep = format!("/{}", "d/".repeat(150));
        let (x, y) = (n(&deep, "x"), n(&deep, "y"));
        assert!(x.len() <= 255 && y.len() <= 255);
        assert_ne!(x, y);
        assert_eq!(x, n(&deep, "x"));
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

    /// Threads take one lock over and over (waiting, or trying without
    /// waiting), its file unlinked by each holder as it lets go, while
    /// others take and drop locks of their own in the same dir: never two
    /// holders at once, no increment of a counter kept under the lock
    /// lost, never an error, and no file left once all are done. With the
    /// unlinking but without the check after the flock, this fails.
    #[test]
    fn pruned_lock_files_and_dirs_never_let_two_hold_one_lock() {
        use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
        let run = tempfile::tempdir().unwrap();
        let dir = run.path().join("lock");
        let counter = run.path().join("counter");
        std::fs::write(&counter, "0").unwrap();
        let holders = AtomicUsize::new(0);
        let taken = AtomicU64::new(0);
        let critical = || {
            assert_eq!(holders.fetch_add(1, SeqCst), 0, "two holders of one lock");
            let n: u64 = std::fs::read_to_string(&counter).unwrap().parse().unwrap();
            std::thread::yield_now();
            std::fs::write(&counter, (n + 1).to_string()).unwrap();
            taken.fetch_add(1, SeqCst);
            holders.fetch_sub(1, SeqCst);
        };
        std::thread::scope(|s| {
            for t in 0..8 {
                let (dir, critical) = (&dir, &critical);
                s.spawn(move || {
                    for i in 0..400 {
                        if t == 1 {
                            if let Some(l) = ContainerLock::try_acquire_in(dir, "c").unwrap() {
                                critical();
                                drop(l);
                            }
                        } else if t % 2 == 0 || i % 4 == 0 {
                            let l = ContainerLock::acquire_in(dir, "c").unwrap();
                            critical();
                            drop(l);
                        } else {
                            drop(ContainerLock::acquire_in(dir, &format!("own{t}")).unwrap());
                        }
                    }
                });
            }
        });
        let n: u64 = std::fs::read_to_string(&counter).unwrap().parse().unwrap();
        assert_eq!(n, taken.load(SeqCst), "an increment made under the lock was lost");
        assert!(n > 1000, "{n} turns only");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "lock files nobody holds: {left:?}");
    }
}
