//! What is in flight: every path a command may leave behind when it is
//! killed (a staging or aside dir `.strata-xxx.NAME.X`, the temp file of
//! an atomic write `.NAME.strata-tmp-PID-X`) is noted in the command's
//! entry, `RUN/inflight/op.PID-START`, before the path is made. The next
//! command's reconcile reads the entries whose writer is dead and looks at
//! exactly the paths they name: its cost follows what was in flight, not
//! the number of containers in the lxcpath. An entry goes once nothing it
//! names is left.
//!
//! A long-lived process's entry is compacted now and then (the paths that
//! are gone dropped); a path noted and not made yet is not gone: each note
//! is held ([`Noted`]) until the caller has made its path (or given up),
//! and compaction waits until none is held.
//!
//! The run dir is emptied at boot (and is not synced): the first command
//! after a boot scans the whole lxcpath once instead ([`scanned_this_boot`]
//! tells it), which also finds what a strata from before this record left,
//! and what a power cut left without its entry.

use crate::error::{IoContext, Result};
use crate::paths;
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const OP: &str = "record operation in flight";
/// Lines an entry of a long-lived process holds before it drops those
/// whose paths are gone.
const TRIM: usize = 512;

fn root() -> PathBuf {
    paths::run_dir().join("inflight")
}

/// This process's entry (one per run dir: tests use several).
struct Mine {
    root: PathBuf,
    pid: u32,
    file: std::fs::File,
    path: PathBuf,
    noted: HashSet<PathBuf>,
    /// Notes held ([`Noted`]): paths noted whose maker has not made them
    /// yet. The entry is compacted only while there are none.
    held: Arc<AtomicUsize>,
}

/// A noted path until its maker has made it (or given up): drop it then.
/// While one is held the entry keeps every line (see the module doc).
#[must_use = "held until the noted path is made"]
pub struct Noted(Option<Arc<AtomicUsize>>);

impl Drop for Noted {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

static MINE: Mutex<Vec<Mine>> = Mutex::new(Vec::new());

fn start_of(pid: u32) -> Option<u64> {
    crate::identity::proc_stat(pid as i32).map(|(_, s)| s)
}

fn open_entry(path: &Path, truncate: bool) -> Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    if truncate {
        o.write(true).create(true).truncate(true);
    } else {
        o.append(true).create(true);
    }
    o.mode(0o600).custom_flags(libc::O_CLOEXEC).open(path).ctx(OP, path)
}

/// Note `path`, which this process is about to create, in its entry. Must
/// come before the path exists: a kill between the two leaves an entry
/// naming nothing, which the next reconcile drops. The returned note is
/// held until the path is made.
pub fn note(path: &Path) -> Result<Noted> {
    if crate::identity::in_ns_child() {
        // A forked copy of a threaded process, as the container's root, who
        // may not write the run dir: best effort, never waiting on a lock
        // a thread that is not here held at the fork. What it writes lies in
        // a staging dir (noted by its parent) or is found by the scan after
        // a boot.
        return Ok(note_in(&root(), path).unwrap_or_else(|e| {
            tracing::debug!("not noted as in flight: {e}");
            Noted(None)
        }));
    }
    note_in(&root(), path)
}

fn note_in(root: &Path, path: &Path) -> Result<Noted> {
    let path = std::path::absolute(path).ctx(OP, path)?;
    if path.as_os_str().as_bytes().contains(&b'\n') {
        return Err(crate::err!(InvalidArgument, OP, "a newline in the path").at(&path));
    }
    let pid = std::process::id();
    let mut g = if crate::identity::in_ns_child() {
        match MINE.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(crate::err!(Busy, OP, "held by a thread of the parent"));
            }
        }
    } else {
        MINE.lock().unwrap_or_else(|e| e.into_inner())
    };
    // A forked child: an entry of its own, dead when it is.
    g.retain(|m| m.pid == pid);
    let i = match g.iter().position(|m| m.root == root) {
        Some(i) => i,
        None => {
            paths::ensure_dir(root)?;
            let p = root.join(format!("op.{pid}-{}", start_of(pid).unwrap_or(0)));
            let file = open_entry(&p, false)?;
            g.push(Mine {
                root: root.to_path_buf(),
                pid,
                file,
                path: p,
                noted: HashSet::new(),
                held: Arc::new(AtomicUsize::new(0)),
            });
            g.len() - 1
        }
    };
    let m = &mut g[i];
    // Counted under the lock, before it is released: a compaction by
    // another thread sees it.
    m.held.fetch_add(1, Ordering::AcqRel);
    let held = Noted(Some(m.held.clone()));
    if m.noted.contains(&path) {
        return Ok(held);
    }
    // This note is held too: only the others' count.
    if m.noted.len() >= TRIM && m.held.load(Ordering::Acquire) == 1 {
        trim(m)?;
    }
    let mut line = path.as_os_str().as_bytes().to_vec();
    line.push(b'\n');
    // One write of one line: a kill leaves it whole or (torn) naming nothing.
    m.file.write_all(&line).ctx(OP, &m.path)?;
    m.noted.insert(path);
    Ok(held)
}

/// At the end of a command: its entries that name nothing left are
/// removed by the command itself. Left to the next command, the removal
/// came after the entry's block had been written out, and on a filesystem
/// mounted with `discard` (a run dir not on tmpfs) freeing that block waits
/// for a synchronous trim: 3 to 9 ms of the next command's time, more on a
/// busy disk. Removed here, within seconds of its writing, the entry
/// usually never had a block. An entry naming anything still there stays
/// for the next reconcile, as before.
pub fn finish() {
    finish_in(None)
}

/// [`finish`] for the entries under `root` only, or all of them.
fn finish_in(root: Option<&Path>) {
    let pid = std::process::id();
    let mut g = MINE.lock().unwrap_or_else(|e| e.into_inner());
    g.retain(|m| {
        if m.pid != pid {
            return false;
        }
        if root.is_some_and(|r| r != m.root) {
            return true;
        }
        // A path noted and not made yet (a note held) is not gone either.
        if m.held.load(Ordering::Acquire) > 0 || m.noted.iter().any(|p| std::fs::symlink_metadata(p).is_ok()) {
            return true;
        }
        // Dropped from the list with its file: a later note opens a new entry.
        std::fs::remove_file(&m.path).is_err()
    });
}

/// Rewrite a long-lived process's entry with only the paths that exist:
/// a new file renamed over it, so a kill leaves one or the other. Called
/// under the lock while no note is held, so no path is noted and not made.
fn trim(m: &mut Mine) -> Result<()> {
    m.noted.retain(|p| std::fs::symlink_metadata(p).is_ok());
    let tmp = m.root.join(format!("trim.{}", m.pid));
    let mut f = open_entry(&tmp, true)?;
    let mut text = Vec::new();
    for p in &m.noted {
        text.extend_from_slice(p.as_os_str().as_bytes());
        text.push(b'\n');
    }
    f.write_all(&text).ctx(OP, &tmp)?;
    std::fs::rename(&tmp, &m.path).ctx(OP, &m.path)?;
    m.file = open_entry(&m.path, false)?;
    Ok(())
}

/// The entry of a dead command and the paths it named.
#[derive(Debug)]
pub struct Dead {
    pub entry: PathBuf,
    pub paths: Vec<PathBuf>,
}

/// Whether `pid` is the live process that started at `start` (clock ticks after boot).
pub fn process_alive(pid: u32, start: u64) -> bool {
    matches!(crate::identity::proc_stat(pid as i32), Some((s, st)) if s != 'Z' && s != 'X' && st == start)
}

/// The entries whose writer is dead.
pub fn dead() -> Vec<Dead> {
    dead_in(&root())
}

fn dead_in(root: &Path) -> Vec<Dead> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let n = e.file_name();
        let Some(id) = n.to_str().and_then(|n| n.strip_prefix("op.")) else {
            continue;
        };
        let Some((pid, start)) = id
            .split_once('-')
            .and_then(|(p, s)| Some((p.parse::<u32>().ok()?, s.parse::<u64>().ok()?)))
        else {
            continue;
        };
        if process_alive(pid, start) {
            continue;
        }
        let Ok(data) = std::fs::read(e.path()) else { continue };
        let paths = data
            .split(|b| *b == b'\n')
            .filter(|l| l.first() == Some(&b'/'))
            .map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l)))
            .collect();
        out.push(Dead { entry: e.path(), paths });
    }
    out
}

/// Drop a dead entry once none of its paths is left (those of another
/// lxcpath wait for a reconcile of theirs).
pub fn forget_if_done(d: &Dead) {
    if d.paths.iter().all(|p| std::fs::symlink_metadata(p).is_err()) {
        let _ = std::fs::remove_file(&d.entry);
    }
}

/// Read once per process: a command checks several markers.
fn boot_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        crate::procfs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

fn marker(lxcpath: &Path, what: &str) -> PathBuf {
    marker_in(&root(), lxcpath, what)
}

fn marker_in(root: &Path, lxcpath: &Path, what: &str) -> PathBuf {
    scan_dir_in(root, lxcpath).join(what)
}

fn scan_dir_in(root: &Path, lxcpath: &Path) -> PathBuf {
    root.join("scanned").join(paths::lxcpath_key(lxcpath))
}

/// What the full scans of `lxcpath` leave for the next command: their
/// markers, and what a scan keeps to read less next time (the reaper's
/// answers per config). All of it is only an optimisation: it may go at
/// any time, at the cost of another full scan.
pub fn scan_dir(lxcpath: &Path) -> PathBuf {
    scan_dir_in(&root(), lxcpath)
}

/// Whether `lxcpath` holds nothing (or is gone). Read a few entries at a
/// time: a `DIR` stream's 32 KiB read would have the kernel list about a
/// thousand entries of a full lxcpath at each destroy.
fn is_empty(lxcpath: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(dir) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(lxcpath)
    else {
        return true;
    };
    crate::copy::dir_is_empty(dir.as_raw_fd()).unwrap_or(false)
}

/// Forget the scans of `lxcpath` ([`scan_dir`]) once it holds nothing, so
/// that the run dir keeps nothing for it: a scan of an empty lxcpath costs
/// nothing. Called when a command has removed something from it.
pub fn forget_if_empty(lxcpath: &Path) {
    forget_in(&root(), lxcpath)
}

fn forget_in(root: &Path, lxcpath: &Path) {
    if !is_empty(lxcpath) {
        return;
    }
    let dir = scan_dir_in(root, lxcpath);
    let Ok(rd) = std::fs::read_dir(&dir) else { return };
    for e in rd.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    // A marker written meanwhile keeps it: it is true.
    paths::prune_dir(&dir);
}

/// Whether the full scan `what` of `lxcpath` was done since the last boot
/// (the marker holds the boot id, should the run dir outlive a boot).
pub fn scanned_this_boot(lxcpath: &Path, what: &str) -> bool {
    scanned(&marker(lxcpath, what))
}

fn scanned(marker: &Path) -> bool {
    std::fs::read_to_string(marker).is_ok_and(|s| s.trim() == boot_id())
}

/// Record that the full scan `what` of `lxcpath` was done in this boot;
/// not for an lxcpath that holds nothing (its next scan costs nothing, and
/// the run dir keeps nothing for it).
pub fn mark_scanned(lxcpath: &Path, what: &str) {
    if !is_empty(lxcpath) {
        mark(&marker(lxcpath, what))
    }
}

fn mark(p: &Path) {
    // Only an optimisation: failing costs the next command another full scan.
    let Some(dir) = p.parent() else { return };
    if paths::ensure_dir(dir).is_err() {
        return;
    }
    // A dir forgotten meanwhile ([`forget_if_empty`]): no marker, another scan.
    let tmp = dir.join(format!(".tmp.{}", std::process::id()));
    if std::fs::write(&tmp, boot_id()).is_err() || std::fs::rename(&tmp, p).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_paths_until_their_writer_dies() {
        let run = tempfile::tempdir().unwrap();
        let root = run.path().join("inflight");
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join(".strata-tmp.a.1");
        drop(note_in(&root, &a).unwrap());
        drop(note_in(&root, &a).unwrap());
        let me = root.join(format!(
            "op.{}-{}",
            std::process::id(),
            start_of(std::process::id()).unwrap()
        ));
        assert_eq!(std::fs::read_to_string(&me).unwrap(), format!("{}\n", a.display()));
        // Alive: not listed.
        assert!(dead_in(&root).is_empty());
        // A dead writer's entry (a pid above any pid_max), its last line torn.
        let gone = root.join("op.2147483646-5");
        std::fs::write(&gone, format!("{}\nbroken-half-line", a.display())).unwrap();
        std::fs::create_dir(&a).unwrap();
        let ds = dead_in(&root);
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].paths, vec![a.clone()]);
        forget_if_done(&ds[0]);
        assert!(gone.exists(), "dropped while its path is left");
        std::fs::remove_dir(&a).unwrap();
        forget_if_done(&ds[0]);
        assert!(!gone.exists());
        // The boot marker.
        let m = marker_in(&root, d.path(), "staging");
        assert!(!scanned(&m));
        mark(&m);
        assert!(scanned(&m));
        assert!(!scanned(&marker_in(&root, d.path(), "ephemeral")));
        std::fs::write(&m, "another-boot\n").unwrap();
        assert!(!scanned(&m));
        // Forgotten only once the lxcpath holds nothing, dir and all.
        mark(&m);
        std::fs::create_dir(d.path().join("c")).unwrap();
        forget_in(&root, d.path());
        assert!(scanned(&m));
        std::fs::remove_dir(d.path().join("c")).unwrap();
        forget_in(&root, d.path());
        assert!(!scan_dir_in(&root, d.path()).exists());
        assert!(root.join("scanned").is_dir());
    }

    #[test]
    fn a_long_lived_entry_drops_what_is_gone() {
        let run = tempfile::tempdir().unwrap();
        let root = run.path().join("inflight");
        let d = tempfile::tempdir().unwrap();
        let kept = d.path().join("kept");
        drop(note_in(&root, &kept).unwrap());
        std::fs::write(&kept, "").unwrap();
        for i in 0..TRIM + 10 {
            drop(note_in(&root, &d.path().join(format!("gone{i}"))).unwrap());
        }
        let me = root.join(format!(
            "op.{}-{}",
            std::process::id(),
            start_of(std::process::id()).unwrap()
        ));
        let text = std::fs::read_to_string(&me).unwrap();
        assert!(text.lines().count() < 20, "{} lines", text.lines().count());
        assert!(
            text.lines().any(|l| l == kept.to_str().unwrap()),
            "a path that is left was dropped"
        );
        assert!(!root.join(format!("trim.{}", std::process::id())).exists());
        // At the command's end the entry stays while it names a path that is left.
        finish_in(Some(&root));
        assert!(me.exists());
        std::fs::remove_file(&kept).unwrap();
        finish_in(Some(&root));
        assert!(!me.exists(), "an entry naming nothing left is removed by its writer");
        // A later note opens a new entry rather than writing to the removed file.
        drop(note_in(&root, &kept).unwrap());
        assert_eq!(std::fs::read_to_string(&me).unwrap(), format!("{}\n", kept.display()));
    }

    fn my_entry(root: &Path) -> Vec<String> {
        let me = root.join(format!(
            "op.{}-{}",
            std::process::id(),
            start_of(std::process::id()).unwrap()
        ));
        std::fs::read_to_string(me).unwrap().lines().map(String::from).collect()
    }

    /// A path noted and not made yet is kept through a compaction, even
    /// when the compaction is the noting thread's own next note (a rename
    /// notes its journal, then the journal's temp file).
    #[test]
    fn a_path_noted_and_not_yet_made_outlives_compaction() {
        let run = tempfile::tempdir().unwrap();
        let root = run.path().join("inflight");
        let d = tempfile::tempdir().unwrap();
        let pending = d.path().join("pending");
        let held = note_in(&root, &pending).unwrap();
        for i in 0..TRIM + 10 {
            drop(note_in(&root, &d.path().join(format!("gone{i}"))).unwrap());
        }
        std::fs::write(&pending, "").unwrap();
        drop(held);
        let lines = my_entry(&root);
        assert!(
            lines.iter().any(|l| l == pending.to_str().unwrap()),
            "a path noted before it was made was dropped"
        );
        // With no note held, the next compaction drops what is gone.
        for i in 0..TRIM {
            drop(note_in(&root, &d.path().join(format!("later{i}"))).unwrap());
        }
        let lines = my_entry(&root);
        assert!(lines.len() < TRIM, "{} lines: never compacted", lines.len());
        assert!(lines.iter().any(|l| l == pending.to_str().unwrap()));
    }

    /// Threads note paths and make them a moment later, while others'
    /// notes compact the entry: every path made is in the entry.
    #[test]
    fn threads_noting_at_once_lose_no_path() {
        let run = tempfile::tempdir().unwrap();
        let root = run.path().join("inflight");
        let d = tempfile::tempdir().unwrap();
        let made: Vec<PathBuf> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|t| {
                    let (root, d) = (&root, d.path());
                    s.spawn(move || {
                        let mut kept = Vec::new();
                        for i in 0..200 {
                            let p = d.join(format!("t{t}-{i}"));
                            let held = note_in(root, &p).unwrap();
                            // Others note (and compact) meanwhile.
                            std::thread::yield_now();
                            if i % 2 == 0 {
                                std::thread::sleep(std::time::Duration::from_micros(200));
                            }
                            // Every tenth is kept (a leftover to be found);
                            // the rest made and removed.
                            std::fs::write(&p, "").unwrap();
                            drop(held);
                            if i % 10 == 0 {
                                kept.push(p);
                            } else {
                                std::fs::remove_file(&p).unwrap();
                            }
                        }
                        kept
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        // Once no note is held, the next one compacts.
        drop(note_in(&root, &d.path().join("last")).unwrap());
        let lines = my_entry(&root);
        let missing: Vec<&PathBuf> = made
            .iter()
            .filter(|p| !lines.iter().any(|l| l == p.to_str().unwrap()))
            .collect();
        assert!(missing.is_empty(), "made but not in the entry: {missing:?}");
        assert!(lines.len() <= TRIM, "{} lines: never compacted", lines.len());
    }
}
