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
//!   before the rename, batched by [`crate::store::SyncBatch`].
//!
//! A throwaway container (an ephemeral run) needs neither: a crash leaves a
//! leftover that the next command removes. [`volatile`] turns flushing off
//! on this thread for as long as its guard lives.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
    if crate::idmap::in_ns_child() {
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
    let Ok(uevent) = std::fs::read_to_string(format!("/sys/dev/block/{maj}:{min}/uevent")) else {
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
    let Ok(opts) = std::fs::read_to_string(format!("/proc/fs/ext4/{name}/options")) else {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
