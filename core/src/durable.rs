//! How a write is made safe to publish by rename, per filesystem.
//!
//! Every multi-step operation builds under a temporary name and renames into
//! place, so a killed process leaves the old state or the new one. Surviving
//! a power cut as well needs the new files' data on disk no later than the
//! rename that publishes them. Two ways to get that:
//!
//! - [`Flush::Ordered`]: ext4 with a journal in `data=ordered` (the default)
//!   or `data=journal`. Starting writeback allocates the file's blocks in
//!   the running journal transaction, and jbd2 writes that data before the
//!   transaction (or any later one, such as the one holding the rename)
//!   commits. Metadata operations commit in order. So after a power cut a
//!   rename is either absent or backed by its data: what ext4's own
//!   `auto_da_alloc` relies on for rename-over-replace. No waiting.
//! - [`Flush::FileSync`]: btrfs. Metadata commits in transaction order, so
//!   a rename never reaches the disk before the changes made ahead of it;
//!   file data does not, so each new file is fsynced before the rename. A
//!   file's fsync logs its new name and new parent directories with it: no
//!   directory fsync (each would be another log or transaction commit).
//! - [`Flush::Wait`]: everything else (xfs, ext4 without a journal or in
//!   `data=writeback`, tmpfs, ...): fsync the files and the directory
//!   before the rename, batched by [`SyncBatch`].
//!
//! A throwaway container (an ephemeral run) needs neither: a crash leaves a
//! leftover that the next command removes. [`volatile`] turns flushing off
//! on this thread for as long as its guard lives.

use crate::err;
use crate::error::{Error, IoContext, Result};
use std::cell::Cell;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Writes need not be flushed at all.
    Volatile,
    /// Start writeback; the filesystem orders data before later metadata.
    Ordered,
    /// fsync files before publishing; directories need none.
    FileSync,
    /// fsync before publishing.
    Wait,
}

thread_local! {
    static VOLATILE: Cell<u32> = const { Cell::new(0) };
}

/// While the returned guard lives, writes on this thread are not flushed.
pub fn volatile() -> VolatileGuard {
    VOLATILE.with(|v| v.set(v.get() + 1));
    VolatileGuard(())
}

pub struct VolatileGuard(());

impl Drop for VolatileGuard {
    fn drop(&mut self) {
        VOLATILE.with(|v| v.set(v.get().saturating_sub(1)));
    }
}

/// Whether a [`volatile`] guard is live on this thread.
pub fn is_volatile() -> bool {
    VOLATILE.with(|v| v.get()) > 0
}

/// How writes into the directory `dir` are made safe. The journal's mode is
/// probed at most once a second per filesystem (a few small reads).
pub fn mode(dir: &Path) -> Flush {
    if is_volatile() {
        return Flush::Volatile;
    }
    if std::env::var_os("STRATA_SYNC").is_some_and(|v| v == "full") {
        return Flush::Wait;
    }
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    const BTRFS_SUPER_MAGIC: i64 = 0x9123683e;
    match nix::sys::statfs::statfs(dir).map(|st| st.filesystem_type().0) {
        Ok(EXT4_SUPER_MAGIC) if ordered_journal(dir) => Flush::Ordered,
        Ok(BTRFS_SUPER_MAGIC) => Flush::FileSync,
        _ => Flush::Wait,
    }
}

/// Whether the ext4 holding `dir` has a journal in ordered (or journal)
/// data mode, with barriers.
fn ordered_journal(dir: &Path) -> bool {
    let Ok(m) = std::fs::metadata(dir) else {
        return false;
    };
    // A forked child of a threaded process takes no lock (a thread that
    // is not there may have held it at the fork).
    if crate::identity::in_ns_child() {
        return ordered_journal_of(m.dev());
    }
    // Asked for every file an operation writes: the answer is kept for a
    // second per device and filesystem id (ext4's comes from its UUID), so a
    // device number that comes back as another filesystem is probed afresh;
    // a remount may still change it in a long-lived process.
    let Ok(fsid) = nix::sys::statvfs::statvfs(dir).map(|st| st.filesystem_id()) else {
        return false;
    };
    let key = (m.dev(), fsid);
    type Known = Vec<((u64, u64), bool, std::time::Instant)>;
    static KNOWN: std::sync::Mutex<Known> = std::sync::Mutex::new(Vec::new());
    let now = std::time::Instant::now();
    let fresh = |t: &std::time::Instant| now.duration_since(*t) < std::time::Duration::from_secs(1);
    {
        let mut k = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        k.retain(|(_, _, t)| fresh(t));
        if let Some(&(_, v, _)) = k.iter().find(|(d, _, _)| *d == key) {
            return v;
        }
    }
    let v = ordered_journal_of(m.dev());
    KNOWN.lock().unwrap_or_else(|e| e.into_inner()).push((key, v, now));
    v
}

fn ordered_journal_of(dev: u64) -> bool {
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let Ok(uevent) = crate::procfs::read_to_string(format!("/sys/dev/block/{maj}:{min}/uevent")) else {
        return false;
    };
    let Some(name) = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME=")) else {
        return false;
    };
    let name = name.replace('/', "!");
    // A journal shows as /proc/fs/jbd2/<device>-8; its mode and barriers in the options.
    if !Path::new(&format!("/proc/fs/jbd2/{name}-8")).exists() {
        return false;
    }
    let Ok(opts) = crate::procfs::read_to_string(format!("/proc/fs/ext4/{name}/options")) else {
        return false;
    };
    let has = |o: &str| opts.lines().any(|l| l == o);
    (has("data=ordered") || has("data=journal")) && !has("nobarrier")
}

/// On a [`Flush::FileSync`] filesystem (btrfs): make the file at `path`
/// part of the running transaction without a log commit of its own, so that
/// the next transaction commit (a snapshot's) makes it durable. Its pages
/// are written out, and a direct read of the whole file returns only once
/// no ordered extent is left in it, i.e. once its extents and size are in
/// the filesystem tree.
pub fn settle_in_transaction(path: &Path) -> std::io::Result<()> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let len = f.metadata()?.len();
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a plain syscall on an open fd.
    if unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if len == 0 {
        return Ok(());
    }
    const ALIGN: usize = 4096;
    let size = (len as usize).div_ceil(ALIGN) * ALIGN;
    let layout = std::alloc::Layout::from_size_align(size, ALIGN).map_err(std::io::Error::other)?;
    // SAFETY: a non-zero size; freed below with the same layout.
    let ptr = unsafe { std::alloc::alloc(layout) };
    if ptr.is_null() {
        return Err(std::io::ErrorKind::OutOfMemory.into());
    }
    // SAFETY: `ptr` holds `size` bytes for as long as `buf` lives.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, size) };
    let mut done = 0;
    let res = loop {
        match f.read(&mut buf[done..]) {
            Ok(0) => break Ok(()),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
        if done >= len as usize || done % ALIGN != 0 {
            break Ok(());
        }
    };
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(ptr, layout) };
    res
}

/// Start writing `f` out without waiting (what [`Flush::Ordered`] needs).
pub fn start_writeback(f: &impl AsRawFd) {
    // SAFETY: a plain syscall on an open fd; failure only loses the hint.
    unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

thread_local! {
    static DEFERRED: std::cell::RefCell<Option<Vec<PathBuf>>> = const { std::cell::RefCell::new(None) };
}

/// Deferred fsyncs for a multi-step operation. While a batch is open on this
/// thread, [`write_atomic`] (every atomic write of the engine and the
/// store) skips its fsyncs and notes the file and its directory instead; [`SyncBatch::commit`]
/// then fsyncs them all in a row, files first, which costs about one journal
/// commit instead of two per file. Each write is still a temp file and a
/// rename, so a killed process leaves old or new, never a torn file; the
/// commit before the operation's final rename keeps that true across a
/// power loss. Batches do not nest: an inner one is a no-op and the
/// outermost commit covers everything.
pub struct SyncBatch {
    owner: bool,
}

impl SyncBatch {
    pub fn begin() -> Self {
        let owner = DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_some() {
                return false;
            }
            *d = Some(Vec::new());
            true
        });
        SyncBatch { owner }
    }

    /// Before an operation that commits the filesystem's transaction (a
    /// btrfs snapshot made in `dir`): the files noted so far below `dir`, on
    /// a [`Flush::FileSync`] filesystem, are made part of the
    /// running transaction (see [`settle_in_transaction`]).
    /// Returns them, for [`SyncBatch::committed`] once the commit is done.
    pub fn settle_before_commit(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        if !self.owner || mode(dir) != Flush::FileSync {
            return Ok(Vec::new());
        }
        let noted = DEFERRED.with(|d| d.borrow().clone().unwrap_or_default());
        let mut out: Vec<PathBuf> = Vec::new();
        for p in noted.into_iter().filter(|p| p.starts_with(dir)) {
            if out.contains(&p) {
                continue;
            }
            match settle_in_transaction(&p) {
                Ok(()) => out.push(p),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Not possible here (no direct I/O): left to the fsync at commit.
                Err(e) => tracing::debug!("settle {}: {e}", p.display()),
            }
        }
        Ok(out)
    }

    /// The transaction that followed [`SyncBatch::settle_before_commit`] has
    /// committed: those files need no fsync (written again since, they do).
    pub fn committed(&self, settled: &[PathBuf]) {
        DEFERRED.with(|d| {
            if let Some(v) = d.borrow_mut().as_mut() {
                for p in settled {
                    if let Some(i) = v.iter().position(|x| x == p) {
                        v.remove(i);
                    }
                }
            }
        });
    }

    /// fsync everything written since [`SyncBatch::begin`] (or the last
    /// commit). Missing paths (renamed or removed since) are skipped.
    pub fn commit(&self) -> Result<()> {
        if !self.owner {
            return Ok(());
        }
        let paths = DEFERRED.with(|d| d.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default());
        let (mut files, mut dirs) = (Vec::new(), Vec::new());
        for p in paths {
            if !files.contains(&p) {
                if let Some(dir) = p.parent() {
                    if !dirs.iter().any(|d: &PathBuf| d == dir) {
                        dirs.push(dir.to_path_buf());
                    }
                }
                files.push(p);
            }
        }
        // Where a file's fsync carries its name too (btrfs), no directory fsync.
        dirs.retain(|d| mode(d) == Flush::Wait);
        let mut open = Vec::new();
        for p in files.iter().chain(dirs.iter()) {
            match std::fs::File::open(p) {
                Ok(f) => open.push((f, p)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("sync", p, e)),
            }
        }
        // Write all the data out first: the first fsync then commits every
        // allocation in one journal transaction and the others find little left to do.
        for (f, _) in &open {
            use std::os::fd::AsRawFd;
            let flags =
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            // SAFETY: sync_file_range takes integers only; `f` is an open File held in `open` for the call.
            unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, flags) };
        }
        for (f, p) in &open {
            f.sync_all().ctx("sync", p)?;
        }
        Ok(())
    }
}

impl Drop for SyncBatch {
    fn drop(&mut self) {
        if self.owner {
            DEFERRED.with(|d| *d.borrow_mut() = None);
        }
    }
}

/// Whether a [`SyncBatch`] is open: if so `path` is noted for its commit
/// and the caller skips its own fsyncs.
pub fn defer_sync(path: &Path) -> bool {
    DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(v) => {
            v.push(path.to_path_buf());
            true
        }
        None => false,
    })
}

/// Write `data` to `path` atomically: a temp file in the same directory,
/// fsync, rename, fsync of the directory (deferred inside a [`SyncBatch`]). An existing file keeps its mode and
/// owner; a new one gets 0644. Refuses when `path` is a symlink.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_mode(path, data, 0o644)
}

/// [`write_atomic`] with the mode a new file gets (an existing file keeps its own).
pub fn write_atomic_mode(path: &Path, data: &[u8], new_mode: u32) -> Result<()> {
    const OP: &str = "write file";
    let (Some(dir), Some(fname)) = (path.parent(), path.file_name()) else {
        return Err(err!(InvalidArgument, OP, "not a file path").at(path));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let existing = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(err!(InvalidArgument, OP, "refusing to write through a symlink").at(path));
        }
        Ok(m) if !m.is_file() => return Err(err!(InvalidArgument, OP, "not a regular file").at(path)),
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(OP, path, e)),
    };
    let tmp = dir.join(format!(
        ".{}.strata-tmp-{}-{}",
        fname.to_string_lossy(),
        std::process::id(),
        crate::paths::unique()
    ));
    // Noted before it exists, so that a kill leaves nothing unaccounted for.
    let noted = crate::inflight::note(&tmp)?;
    let mut sync_dir = false;
    let res = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .ctx(OP, &tmp)?;
        f.write_all(data).ctx(OP, &tmp)?;
        let mode = existing.as_ref().map_or(new_mode, |m| m.mode() & 0o7777);
        if let Some(m) = &existing {
            // Keep the owner (e.g. a user's config edited by root); only root can.
            if nix::unistd::geteuid().is_root() {
                std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())).ctx(OP, &tmp)?;
            }
        }
        f.set_permissions(std::fs::Permissions::from_mode(mode)).ctx(OP, &tmp)?;
        sync_dir = settle(&f, &tmp, path)?;
        drop(f);
        std::fs::rename(&tmp, path).ctx(OP, path)?;
        Ok(())
    })();
    drop(noted);
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return res;
    }
    if sync_dir {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ctx(OP, dir)?;
    }
    Ok(())
}

/// Make `f`, the temp file about to be renamed to `path`, safe to publish
/// (see this module). Returns whether the directory still needs an
/// fsync after the rename.
pub fn settle(f: &std::fs::File, tmp: &Path, path: &Path) -> Result<bool> {
    match mode(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    ) {
        Flush::Volatile => Ok(false),
        Flush::Ordered => {
            start_writeback(f);
            Ok(false)
        }
        Flush::Wait | Flush::FileSync if defer_sync(path) => Ok(false),
        Flush::FileSync => {
            f.sync_all().ctx("sync", tmp)?;
            Ok(false)
        }
        Flush::Wait => {
            f.sync_all().ctx("sync", tmp)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::fs;

    #[test]
    fn volatile_nests_and_ends() {
        let d = tempfile::tempdir().unwrap();
        let before = mode(d.path());
        assert_ne!(before, Flush::Volatile);
        {
            let _a = volatile();
            {
                let _b = volatile();
                assert_eq!(mode(d.path()), Flush::Volatile);
            }
            assert_eq!(mode(d.path()), Flush::Volatile);
        }
        assert_eq!(mode(d.path()), before);
    }

    #[test]
    fn tmpfs_waits() {
        // /dev/shm is tmpfs on Linux: not ext4, so fsync is the rule.
        if Path::new("/dev/shm").is_dir() {
            assert_eq!(mode(Path::new("/dev/shm")), Flush::Wait);
        }
    }

    #[test]
    fn sync_batch_defers_then_commits_what_was_written() {
        let d = tempfile::tempdir().unwrap();
        assert!(!defer_sync(&d.path().join("x")), "no batch open");
        {
            let b = SyncBatch::begin();
            let inner = SyncBatch::begin();
            write_atomic(&d.path().join("a"), b"one").unwrap();
            inner.commit().unwrap();
            drop(inner);
            // The inner batch neither committed nor closed the outer one.
            assert!(DEFERRED.with(|v| v.borrow().as_ref().map(|v| v.len())) == Some(1));
            write_atomic(&d.path().join("b"), b"two").unwrap();
            fs::remove_file(d.path().join("a")).unwrap();
            b.commit().unwrap();
            assert!(DEFERRED.with(|v| v.borrow().as_ref().map(|v| v.len())) == Some(0));
        }
        assert!(!defer_sync(&d.path().join("x")), "closed on drop");
        assert_eq!(fs::read(d.path().join("b")).unwrap(), b"two");
    }

    #[test]
    fn write_atomic_behaviour() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("file");
        write_atomic(&f, b"one").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"one");
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o7777, 0o644);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o7777, 0o600);
        let target = d.path().join("target");
        fs::write(&target, "keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(
            write_atomic(&link, b"x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
        assert_eq!(
            write_atomic(&dangling, b"x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert!(!d.path().join("nowhere").exists());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        fs::create_dir(d.path().join("adir")).unwrap();
        assert_eq!(
            write_atomic(&d.path().join("adir"), b"x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            write_atomic(&d.path().join("nodir/f"), b"x").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let mut names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["adir", "dangling", "file", "link", "target"],
            "no temp files left"
        );
    }
}
