//! A tool a command runs (lvcreate, mkfs, `zfs clone`, `zfs receive`, a
//! template, a hook) is
//! not killed with it: killed by `kill -9`, the command leaves the tool to
//! finish on its own, and what the tool makes after the next command's
//! reconcile has looked (an LV, a dataset) would be leaked; a tool that
//! still holds a device open makes the reconcile's removal fail. So every
//! tool gets a lock of its own, recorded before it starts: a file
//! `RUN/tmp/tool-PID-X.lock`, locked by the command and inherited by the
//! tool (and whatever it starts), removed when the tool has exited. A
//! lock file whose writer is dead is still locked while its tools run;
//! [`wait_for_orphans`] waits for them before the reconcile touches what
//! they may be making. Killing the tools instead could cut an LVM or zfs
//! transaction in half.
//!
//! Some tools close every descriptor they inherit as they start (the LVM
//! tools do): each tool also writes its pid to the lock file before it is
//! exec'd, and the waiter waits for those processes too.

use crate::error::{Error, Result};
use crate::paths;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PREFIX: &str = "tool-";
const SUFFIX: &str = ".lock";

/// The lock of one tool run (see the module doc).
pub struct ToolLock {
    file: File,
    path: PathBuf,
}

impl ToolLock {
    /// Made and locked before the tool starts.
    pub fn new() -> Result<ToolLock> {
        Self::new_in(&paths::run_dir().join("tmp"))
    }

    fn new_in(base: &Path) -> Result<ToolLock> {
        const OP: &str = "record tool";
        paths::ensure_dir(base)?;
        let path = base.join(format!("{PREFIX}{}-{}{SUFFIX}", std::process::id(), paths::unique()));
        // Opened close-on-exec: only the tools it is passed to inherit it.
        // Appended to: the two tools of a pipe write their pids to it.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(OP, &path, e))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_file(&path);
            return Err(Error::io(OP, &path, e));
        }
        Ok(ToolLock { file, path })
    }

    /// Makes the process `c` starts inherit the lock and record its pid
    /// in it before it is exec'd.
    pub fn pass_to(&self, c: &mut Command) {
        let fd = self.file.as_raw_fd();
        // SAFETY: between fork and exec the closure calls only getpid, write
        // and fcntl, which are async-signal-safe, and allocates nothing (the
        // pid is formatted on the stack), on a descriptor that stays open
        // while `c` is spawned (the caller holds self across the spawn).
        unsafe {
            c.pre_exec(move || {
                let mut buf = [0u8; 16];
                let n = pid_line(libc::getpid(), &mut buf);
                if libc::write(fd, buf.as_ptr().cast(), n) != n as isize {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// The test hook `STRATA_FAILPOINT=tool-before-exec`: the first tool a
/// command starts kills the command (SIGKILL) between its fork and its
/// exec, then waits a second before it goes on to exec. That is the window
/// in which a tool still holds copies of every descriptor of the command,
/// its container locks included: a kill -9 that lands there leaves a child
/// holding them for as long as the child takes to reach exec (long, on a
/// loaded machine).
const KILL_BEFORE_EXEC: &str = "tool-before-exec";

fn kill_before_exec(c: &mut Command) {
    if std::env::var_os("STRATA_FAILPOINT").is_none_or(|v| v != KILL_BEFORE_EXEC) {
        return;
    }
    // SAFETY: getppid, kill and nanosleep are async-signal-safe; nothing
    // is allocated between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::kill(libc::getppid(), libc::SIGKILL);
            let t = libc::timespec { tv_sec: 1, tv_nsec: 0 };
            libc::nanosleep(&t, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Runs `c` as a tool of this command and waits for its output: its lock
/// recorded first and passed to it (see the module doc), so that the next
/// command's reconcile waits for it, and for a tool not yet exec'd, which
/// still holds this command's locks, before it undoes anything. A run dir
/// that cannot be written: the tool still runs, unrecorded.
pub fn output(c: &mut Command) -> std::io::Result<std::process::Output> {
    let lock = prepare(c);
    let out = c.output();
    drop(lock);
    out
}

/// [`output`] for a tool whose output goes where the command's goes (a
/// template, a hook): waits for its exit status. What it starts inherits
/// the lock: the next command's reconcile also waits for them.
pub fn status(c: &mut Command) -> std::io::Result<std::process::ExitStatus> {
    let lock = prepare(c);
    let st = c.status();
    drop(lock);
    st
}

fn prepare(c: &mut Command) -> Option<ToolLock> {
    // A forked child as the container's root may not write the run dir;
    // its parent is the command, whose own tools are recorded.
    let lock = if crate::identity::in_ns_child() {
        None
    } else {
        ToolLock::new().map_err(|e| tracing::warn!("{e}")).ok()
    };
    if let Some(l) = &lock {
        l.pass_to(c);
    }
    kill_before_exec(c);
    lock
}

/// `pid` in decimal and a newline at the start of `buf`; returns the length.
fn pid_line(pid: i32, buf: &mut [u8; 16]) -> usize {
    let mut digits = [0u8; 12];
    let (mut v, mut n) = (pid.max(0) as u32, 0);
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        buf[i] = digits[n - 1 - i];
    }
    buf[n] = b'\n';
    n + 1
}

impl Drop for ToolLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Waits, at most `limit`, for the tools of killed commands in this
/// user's run dir to exit, and removes their lock files. Returns false
/// when one still runs (its leftovers are for a later command).
pub fn wait_for_orphans(limit: Duration) -> bool {
    wait_in(&paths::run_dir().join("tmp"), limit)
}

fn wait_in(base: &Path, limit: Duration) -> bool {
    let Ok(rd) = std::fs::read_dir(base) else {
        return true;
    };
    let deadline = Instant::now() + limit;
    let mut done = true;
    for e in rd.flatten() {
        let p = e.path();
        let is_lock = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX));
        if !is_lock || writer_alive(&p) {
            continue;
        }
        let _span = tracing::info_span!("wait for the tools of a killed command", lock = %p.display()).entered();
        let Ok(f) = File::open(&p) else { continue };
        loop {
            // SAFETY: flock on a descriptor this loop owns.
            let unlocked = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            if unlocked && !tools_alive(&p) {
                let _ = std::fs::remove_file(&p);
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!("{}: a tool of a killed command still runs", p.display());
                done = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    done
}

/// Whether a tool whose pid lock file `p` records may still run: a process
/// of that pid started no later than the pid was written (a later one
/// reuses the pid of a tool that is gone).
fn tools_alive(p: &Path) -> bool {
    let mtime = std::fs::metadata(p).ok().and_then(|m| m.modified().ok());
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .any(|pid| pid > 0 && crate::scratch::writer_alive(pid, mtime))
}

/// Whether the command that made lock file `p` may still run.
fn writer_alive(p: &Path) -> bool {
    let pid = crate::scratch::pid_in(p).unwrap_or(0);
    let mtime = std::fs::metadata(p).ok().and_then(|m| m.modified().ok());
    pid != 0 && crate::scratch::writer_alive(pid, mtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphaned_tools_are_waited_for() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("tmp");
        // A tool holding the lock of a dead command (a pid above pid_max).
        let lock = ToolLock::new_in(&tmp).unwrap();
        let mut c = Command::new("sleep");
        c.arg("0.5");
        lock.pass_to(&mut c);
        let mut child = c.spawn().unwrap();
        let dead = tmp.join(format!("{PREFIX}2147483646-x{SUFFIX}"));
        std::fs::rename(&lock.path, &dead).unwrap();
        drop(lock);
        let t = Instant::now();
        assert!(!wait_in(&tmp, Duration::from_millis(100)), "the tool still runs");
        assert!(dead.exists());
        assert!(wait_in(&tmp, Duration::from_secs(10)));
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "returned before the tool exited"
        );
        assert!(!dead.exists());
        child.wait().unwrap();
        // A tool that closes what it inherits (as the LVM tools do) is
        // waited for by the pid it recorded.
        let lock = ToolLock::new_in(&tmp).unwrap();
        let mut c = Command::new("sh");
        c.args(["-c", &format!("exec {}>&-; sleep 0.5", lock.file.as_raw_fd())]);
        lock.pass_to(&mut c);
        let mut child = c.spawn().unwrap();
        let text = std::fs::read_to_string(&lock.path).unwrap();
        assert_eq!(text, format!("{}\n", child.id()));
        let dead = tmp.join(format!("{PREFIX}2147483645-y{SUFFIX}"));
        std::fs::rename(&lock.path, &dead).unwrap();
        drop(lock);
        let t = Instant::now();
        assert!(wait_in(&tmp, Duration::from_secs(10)));
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "returned before the tool exited"
        );
        child.wait().unwrap();
        // A live command's lock is left alone; its own drop removes it.
        let mine = ToolLock::new_in(&tmp).unwrap();
        assert!(wait_in(&tmp, Duration::from_millis(10)));
        assert!(mine.path.exists());
        let p = mine.path.clone();
        drop(mine);
        assert!(!p.exists());
    }
}
