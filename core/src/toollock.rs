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
//! [`settle_orphans`] ends them before the reconcile touches what they may
//! be making. It gives them a short grace first, then kills what is left:
//! no command waits long for a leftover (a template or hook may run for
//! minutes, a `tar` copy of a large rootfs too). A tool killed half-way
//! leaves no more than the command's own kill -9 could have left with it
//! (as when a whole process group is killed), and what the killed command
//! was building is undone after. The volume managers' tools (`lvcreate`,
//! `zfs`, `rbd`, run through [`crate::runner`]) are *patient*: each is a
//! short metadata transaction that a kill could cut between the kernel's
//! state and the tool's (an LVM thin pool's transaction id), so they get a
//! longer grace ([`PATIENT_GRACE`]) and are killed only when hung past it.
//!
//! Some tools close every descriptor they inherit as they start (the LVM
//! tools do): each tool also writes its pid to the lock file before it is
//! exec'd, and those processes are waited for and killed too.
//!
//! What is killed is proven to be the killed command's: a recorded pid only
//! while its process started before the pid was written; any process that
//! holds the lock file itself open (only the command's tools inherit it);
//! and the descendants of those, by parent pid. Each is stopped first (so
//! that it forks no more), then killed, through a pidfd opened and checked
//! against the start time seen, never a bare pid that may have been reused.
//! Tools are not put in process groups of their own: a template that asks
//! its questions on the terminal must stay in the terminal's foreground
//! group.

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
/// First line of the lock of a patient tool (see the module doc).
const PATIENT: &str = "patient";
/// How long a killed command's patient tools may go on before they are
/// killed: far more than one LVM or zfs command takes, even under emulation.
pub const PATIENT_GRACE: Duration = Duration::from_secs(15);

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

    /// [`ToolLock::new`] for a patient tool (see the module doc).
    pub fn patient() -> Result<ToolLock> {
        use std::io::Write;
        let mut l = Self::new()?;
        // Torn or lost, the lock is an ordinary one: a shorter grace.
        let _ = writeln!(l.file, "{PATIENT}");
        Ok(l)
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
    let lock = prepare(c, false);
    let out = c.output();
    drop(lock);
    out
}

/// [`output`] for a patient tool (see the module doc).
pub fn output_patient(c: &mut Command) -> std::io::Result<std::process::Output> {
    let lock = prepare(c, true);
    let out = c.output();
    drop(lock);
    out
}

/// [`output`] for a tool whose output goes where the command's goes (a
/// template, a hook): waits for its exit status. What it starts inherits
/// the lock: the next command's reconcile also waits for them.
pub fn status(c: &mut Command) -> std::io::Result<std::process::ExitStatus> {
    let lock = prepare(c, false);
    let st = c.status();
    drop(lock);
    st
}

fn prepare(c: &mut Command, patient: bool) -> Option<ToolLock> {
    // A forked child as the container's root may not write the run dir;
    // its parent is the command, whose own tools are recorded.
    let lock = if crate::identity::in_ns_child() {
        None
    } else if patient {
        ToolLock::patient().map_err(|e| tracing::warn!("{e}")).ok()
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

/// Ends the tools of killed commands in this user's run dir: waits for
/// them at most `grace` in all ([`PATIENT_GRACE`] for patient ones), kills
/// those still running then (see the module doc), and removes their lock
/// files. Returns false when one still
/// runs after that (a process that could not be killed, or one that left
/// the tree and still holds the lock): its leftovers are for a later
/// command, and this one does not wait for it.
pub fn settle_orphans(grace: Duration) -> bool {
    settle_in(&paths::run_dir().join("tmp"), grace)
}

/// How long a patient tool of lock file `p` is still waited for: what is
/// left of its [`PATIENT_GRACE`], counted from when it started (the lock's
/// last write, its pid's), and never less than `grace`. A tool hung long
/// before the next command came (the user killed its command after waiting
/// for it) has had its grace: it is not waited for another full one.
fn patient_wait(p: &Path, grace: Duration) -> Duration {
    let ran = std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default();
    PATIENT_GRACE.saturating_sub(ran).max(grace)
}

/// How long killed tools get to exit (SIGKILL is not instant under load).
const AFTER_KILL: Duration = Duration::from_secs(2);

fn settle_in(base: &Path, grace: Duration) -> bool {
    let Ok(rd) = std::fs::read_dir(base) else {
        return true;
    };
    let orphans: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .map(|e| e.path())
        .filter(|p| !writer_alive(p))
        .collect();
    if orphans.is_empty() {
        return true;
    }
    let t0 = Instant::now();
    let mut left = Vec::new();
    for p in orphans {
        let _span = tracing::info_span!("wait for the tools of a killed command", lock = %p.display()).entered();
        let Ok(f) = File::open(&p) else { continue };
        let patient = std::fs::read_to_string(&p).is_ok_and(|t| t.lines().next() == Some(PATIENT));
        let deadline = t0 + if patient { patient_wait(&p, grace) } else { grace };
        if !ended(&p, &f, deadline) {
            left.push((p, f));
        }
    }
    let mut done = true;
    for (p, f) in left {
        let _span = tracing::info_span!("kill the tools of a killed command", lock = %p.display()).entered();
        let killed = kill_tools(&p);
        tracing::info!("killed {killed} tool processes of a killed command");
        if !ended(&p, &f, Instant::now() + AFTER_KILL) {
            tracing::warn!("{}: a tool of a killed command still runs", p.display());
            done = false;
        }
    }
    done
}

/// Waits until `deadline` for the tools of lock file `p` (open as `f`) to
/// be gone; removes the file then. Returns whether they are.
fn ended(p: &Path, f: &File, deadline: Instant) -> bool {
    loop {
        // SAFETY: flock on a descriptor the caller owns.
        let unlocked = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if unlocked && !tools_alive(p) {
            let _ = std::fs::remove_file(p);
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One process as /proc shows it: parent, state, start time (clock ticks
/// after boot).
#[derive(Clone, Copy)]
struct Proc {
    ppid: i32,
    state: char,
    start: u64,
}

fn proc_of(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Proc {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn all_procs() -> Vec<(i32, Proc)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, proc_of(pid)?)))
        .filter(|(_, p)| p.state != 'Z' && p.state != 'X')
        .collect()
}

/// Whether process `pid` holds the file `(dev, ino)` open.
fn holds(pid: i32, dev: u64, ino: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    rd.flatten()
        .any(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino))
}

/// The processes proven to be the tools of the dead command that made lock
/// file `p` (see the module doc), each with the start time it was seen with.
fn tools_of(p: &Path) -> Vec<(i32, u64)> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(p) else {
        return Vec::new();
    };
    let mtime = meta.modified().ok();
    let me = std::process::id() as i32;
    let procs = all_procs();
    let recorded: Vec<i32> = std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|&pid| pid > 0 && crate::scratch::writer_alive(pid, mtime))
        .collect();
    let mut set: Vec<(i32, u64)> = procs
        .iter()
        .filter(|(pid, _)| *pid != me && (recorded.contains(pid) || holds(*pid, meta.dev(), meta.ino())))
        .map(|(pid, pr)| (*pid, pr.start))
        .collect();
    // Their descendants, by parent pid (a child starts no earlier than its parent).
    loop {
        let more: Vec<(i32, u64)> = procs
            .iter()
            .filter(|(pid, pr)| {
                *pid != me
                    && !set.iter().any(|(q, _)| q == pid)
                    && set.iter().any(|(q, st)| *q == pr.ppid && pr.start >= *st)
            })
            .map(|(pid, pr)| (*pid, pr.start))
            .collect();
        if more.is_empty() {
            break;
        }
        set.extend(more);
    }
    set
}

/// Sends `sig` to `pid` only while it is the process seen with start time
/// `start`: a pidfd is opened first and the start time checked after.
fn signal_proven(pid: i32, start: u64, sig: i32) -> bool {
    use std::os::fd::{FromRawFd, OwnedFd};
    if pid <= 0 {
        return false;
    }
    // SAFETY: pidfd_open takes a pid and flags by value; the fd is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: the fd was just returned to us and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if proc_of(pid).is_none_or(|p| p.start != start) {
        return false;
    }
    // SAFETY: pidfd_send_signal on our own pidfd, a signal number, no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        ) == 0
    }
}

/// Kills the tools of the dead command that made lock file `p`: stops
/// them until no new one appears (a stopped process forks no more), then
/// kills them all. Returns how many it killed.
fn kill_tools(p: &Path) -> usize {
    let mut stopped: Vec<(i32, u64)> = Vec::new();
    for _ in 0..16 {
        let new: Vec<(i32, u64)> = tools_of(p).into_iter().filter(|t| !stopped.contains(t)).collect();
        if new.is_empty() {
            break;
        }
        for &(pid, start) in &new {
            signal_proven(pid, start, libc::SIGSTOP);
        }
        stopped.extend(new);
    }
    stopped
        .iter()
        .filter(|&&(pid, start)| signal_proven(pid, start, libc::SIGKILL))
        .count()
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

    /// A lock file as a dead command (a pid above pid_max) leaves it.
    fn orphaned(lock: ToolLock, tmp: &Path, tag: &str) -> PathBuf {
        let dead = tmp.join(format!("{PREFIX}2147483646-{tag}{SUFFIX}"));
        std::fs::rename(&lock.path, &dead).unwrap();
        drop(lock);
        dead
    }

    #[test]
    fn orphaned_tools_get_a_grace_then_are_killed() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("tmp");
        // A tool that ends within the grace is waited for, not killed.
        let lock = ToolLock::new_in(&tmp).unwrap();
        let mut c = Command::new("sleep");
        c.arg("0.5");
        lock.pass_to(&mut c);
        let mut child = c.spawn().unwrap();
        let dead = orphaned(lock, &tmp, "a");
        let t = Instant::now();
        assert!(settle_in(&tmp, Duration::from_secs(10)));
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "returned before the tool exited"
        );
        assert!(!dead.exists());
        assert!(child.wait().unwrap().success(), "a tool within its grace was killed");
        // A tool that closes what it inherits (as the LVM tools do) is
        // waited for by the pid it recorded.
        let lock = ToolLock::new_in(&tmp).unwrap();
        // bash, not sh: dash takes only fds 0-9 in a redirection, and with
        // other test threads' files open the lock's fd can be 10 or more.
        let mut c = Command::new("bash");
        c.args(["-c", &format!("exec {}>&-; sleep 0.5", lock.file.as_raw_fd())]);
        lock.pass_to(&mut c);
        let mut child = c.spawn().unwrap();
        let text = std::fs::read_to_string(&lock.path).unwrap();
        assert_eq!(text, format!("{}\n", child.id()));
        orphaned(lock, &tmp, "b");
        let t = Instant::now();
        assert!(settle_in(&tmp, Duration::from_secs(10)));
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "returned before the tool exited"
        );
        assert!(child.wait().unwrap().success());
        // A template that would run for minutes, with a child of its own
        // (which keeps the lock) and one that closed it: all killed once
        // the grace is over, and the caller goes on at once.
        let lock = ToolLock::new_in(&tmp).unwrap();
        let fd = lock.file.as_raw_fd();
        let pids = d.path().join("pids");
        let mut c = Command::new("bash");
        c.args([
            "-c",
            &format!(
                "sleep 300 & echo $! >> {p}; (exec {fd}>&-; exec sleep 300) & echo $! >> {p}; echo x >> {p}.done; wait",
                p = pids.display()
            ),
        ]);
        lock.pass_to(&mut c);
        let mut child = c.spawn().unwrap();
        let t = Instant::now();
        while !pids.with_extension("done").exists() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the template did not start its children"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let kids: Vec<i32> = std::fs::read_to_string(&pids)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(kids.len(), 2);
        let dead = orphaned(lock, &tmp, "c");
        let t = Instant::now();
        assert!(settle_in(&tmp, Duration::from_millis(300)));
        assert!(t.elapsed() < Duration::from_secs(10), "waited {:?}", t.elapsed());
        assert!(!dead.exists());
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        for k in kids {
            // Reparented to init once the shell died: gone or a zombie.
            let t = Instant::now();
            while proc_of(k).is_some_and(|p| p.state != 'Z' && p.state != 'X') {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "child {k} of the template still runs"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // A patient tool (an lvcreate, say) outlasting the short grace is
        // waited for, not killed.
        let lock = ToolLock::new_in(&tmp).unwrap();
        std::fs::write(&lock.path, format!("{PATIENT}\n")).unwrap();
        let mut c = Command::new("sleep");
        c.arg("1");
        lock.pass_to(&mut c);
        let mut child = c.spawn().unwrap();
        orphaned(lock, &tmp, "p");
        let t = Instant::now();
        assert!(settle_in(&tmp, Duration::from_millis(100)));
        assert!(
            t.elapsed() >= Duration::from_millis(800),
            "returned before the tool exited"
        );
        assert!(child.wait().unwrap().success(), "a patient tool was killed");
        // One that has run past its grace already (hung long before this
        // command came) is not waited for another: killed after the short one.
        let lock = ToolLock::new_in(&tmp).unwrap();
        std::fs::write(&lock.path, format!("{PATIENT}\n")).unwrap();
        let mut c = Command::new("sleep");
        c.arg("300");
        lock.pass_to(&mut c);
        let mut child = c.spawn().unwrap();
        let dead = orphaned(lock, &tmp, "h");
        let long_ago = std::time::SystemTime::now() - PATIENT_GRACE - Duration::from_secs(5);
        File::options()
            .write(true)
            .open(&dead)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let t = Instant::now();
        assert!(settle_in(&tmp, Duration::from_millis(100)));
        assert!(t.elapsed() < PATIENT_GRACE / 2, "waited {:?}", t.elapsed());
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        // A pid in the record of a process that started after the record
        // was written (the pid reused by another process): not the tool's,
        // never signalled, and no reason to wait.
        let mut other = Command::new("sleep").arg("30").spawn().unwrap();
        let stale = tmp.join(format!("{PREFIX}2147483646-d{SUFFIX}"));
        std::fs::write(&stale, format!("{}\n", other.id())).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(settle_in(&tmp, Duration::from_millis(100)));
        assert!(!stale.exists());
        assert!(other.try_wait().unwrap().is_none(), "an unrelated process was killed");
        other.kill().unwrap();
        other.wait().unwrap();
        // A live command's lock is left alone; its own drop removes it.
        let mine = ToolLock::new_in(&tmp).unwrap();
        assert!(settle_in(&tmp, Duration::from_millis(10)));
        assert!(mine.path.exists());
        let p = mine.path.clone();
        drop(mine);
        assert!(!p.exists());
    }
}
