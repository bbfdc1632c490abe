//! What a command holds outside the lxcpath, recorded before it is
//! acquired, so that the next command can release what a killed one held.
//!
//! A scratch mount point (`RUN/tmp/mnt-PID-X`, where a rootfs is mounted
//! while it is filled or edited) gets a record beside it, `mnt-PID-X.rec`,
//! written before anything is mounted: the writer (pid and start time),
//! the mount point, and the rootfs spec mounted there. A loop mount keeps
//! its device (and the image, even once deleted) alive: only the mount
//! holds it, so releasing the mount releases the device (autoclear), and
//! the backend's [`crate::Backend::release`] detaches what is left.
//! [`stale`] lists the records whose writer is dead (the engine's
//! reconcile releases them); a live writer removes its own record once
//! the mount is gone.
//!
//! Temp files of atomic writes (`.NAME.strata-tmp-PID-X`, see
//! [`crate::durable::write_atomic`]) name their writer's pid too:
//! [`stale_temp_file`] tells one whose writer is dead.

use crate::error::Result;
use crate::paths;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const REC: &str = "rec";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    pid: i32,
    start: u64,
    mountpoint: PathBuf,
    spec: String,
}

/// A recorded scratch mount point (see the module doc). Dropped after its
/// mount is gone, it removes the dir and the record; still mounted, it
/// leaves both for reconcile.
pub struct ScratchMount {
    dir: PathBuf,
    record: PathBuf,
}

impl ScratchMount {
    /// A fresh empty dir under the run dir to mount `spec` on, recorded first.
    pub fn new(spec: &str) -> Result<ScratchMount> {
        let tmp = paths::TempDir::new("mnt")?;
        let dir = tmp.path().to_path_buf();
        let record = dir.with_extension(REC);
        let pid = std::process::id() as i32;
        let rec = Record {
            pid,
            start: crate::state::proc_start_time(pid).unwrap_or(0),
            mountpoint: dir.clone(),
            spec: spec.to_string(),
        };
        let data = serde_json::to_vec(&rec).map_err(|e| crate::err!(Io, "record scratch mount", "{e}"))?;
        // The run dir is not the container's storage: a kill, not a power cut, is what this is for.
        std::fs::write(&record, data).map_err(|e| crate::error::Error::io("record scratch mount", &record, e))?;
        std::mem::forget(tmp);
        Ok(ScratchMount { dir, record })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ScratchMount {
    fn drop(&mut self) {
        if is_mount_point(&self.dir) {
            return;
        }
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_file(&self.record);
    }
}

pub use crate::mountinfo::is_mount_point;

/// A scratch mount whose writer is dead.
#[derive(Debug)]
pub struct Stale {
    pub mountpoint: PathBuf,
    pub spec: String,
    record: PathBuf,
}

impl Stale {
    /// Whether its mount point still has something mounted.
    pub fn mounted(&self) -> bool {
        is_mount_point(&self.mountpoint)
    }

    /// Forget it: its mount is gone (else nothing is done).
    pub fn finish(self) -> bool {
        if self.mounted() {
            return false;
        }
        let _ = std::fs::remove_dir(&self.mountpoint);
        let _ = std::fs::remove_file(&self.record);
        true
    }
}

/// Records of scratch mounts whose writer is dead, in this user's run dir.
pub fn stale() -> Vec<Stale> {
    let base = paths::run_dir().join("tmp");
    let Ok(rd) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != REC) {
            // A scratch dir whose writer was killed before its record was written: empty.
            let orphan = e.file_name().to_str().is_some_and(|n| n.starts_with("mnt-"))
                && !p.with_extension(REC).exists()
                && e.metadata()
                    .is_ok_and(|m| m.is_dir() && !writer_alive(pid_in(&p).unwrap_or(0), m.modified().ok()))
                && !is_mount_point(&p);
            if orphan {
                let _ = std::fs::remove_dir(&p);
            }
            continue;
        }
        let Some(rec) = std::fs::read(&p)
            .ok()
            .and_then(|d| serde_json::from_slice::<Record>(&d).ok())
        else {
            // Torn by a kill while written: nothing was mounted yet.
            if e.metadata()
                .is_ok_and(|m| !writer_alive(pid_in(&p).unwrap_or(0), m.modified().ok()))
            {
                let _ = std::fs::remove_dir(p.with_extension(""));
                let _ = std::fs::remove_file(&p);
            }
            continue;
        };
        // A start time unknown when it was written: judged by the record's age.
        let alive = if rec.start == 0 {
            writer_alive(rec.pid, e.metadata().ok().and_then(|m| m.modified().ok()))
        } else {
            crate::state::alive(rec.pid, rec.start)
        };
        if alive {
            continue;
        }
        // Only our own scratch dirs: the record may not point elsewhere.
        if rec.mountpoint != p.with_extension("") {
            continue;
        }
        out.push(Stale {
            mountpoint: rec.mountpoint,
            spec: rec.spec,
            record: p,
        });
    }
    out
}

/// The pid in `mnt-PID-X.rec`.
pub(crate) fn pid_in(p: &Path) -> Option<i32> {
    p.file_name()?.to_str()?.split('-').nth(1)?.parse().ok()
}

/// Whether process `pid` may be the one that wrote a file last modified at
/// `mtime`: it exists, is not a zombie, and started no later (a process
/// started after the file was written reuses the pid of a dead writer).
pub(crate) fn writer_alive(pid: i32, mtime: Option<SystemTime>) -> bool {
    let Some((state, start)) = crate::identity::proc_stat(pid) else {
        return false;
    };
    if state == 'Z' || state == 'X' {
        return false;
    }
    let (Some(mtime), Some(boot)) = (mtime, boot_time()) else {
        return true;
    };
    // SAFETY: sysconf takes an integer and reads no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let started = boot + Duration::from_millis(start * 1000 / hz);
    // Boot time is known to the second: err on the side of alive.
    started <= mtime + Duration::from_secs(2)
}

fn boot_time() -> Option<SystemTime> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let secs: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Whether `path` is the temp file of an atomic write whose writer is dead
/// (`.NAME.strata-tmp-PID-X`).
pub fn stale_temp_file(path: &Path) -> bool {
    let Some(n) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some((_, rest)) = n.rsplit_once(".strata-tmp-") else {
        return false;
    };
    if !n.starts_with('.') {
        return false;
    }
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => !writer_alive(pid, m.modified().ok()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_of_dead_writers_only() {
        let d = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let live = d.path().join(format!(".lxc_snapshots.strata-tmp-{me}-abc1"));
        std::fs::write(&live, "x").unwrap();
        assert!(!stale_temp_file(&live));
        // A pid that cannot exist (above pid_max).
        let dead = d.path().join(".lxc_snapshots.strata-tmp-2147483646-abc1");
        std::fs::write(&dead, "x").unwrap();
        assert!(stale_temp_file(&dead));
        // Not a temp file, or not a file.
        let other = d.path().join("lxc_snapshots");
        std::fs::write(&other, "x").unwrap();
        assert!(!stale_temp_file(&other));
        let dir = d.path().join(".x.strata-tmp-2147483646-1");
        std::fs::create_dir(&dir).unwrap();
        assert!(!stale_temp_file(&dir));
        // pid 1 started long before a file written now: alive; written before it booted: reused.
        let old = d.path().join(".config.strata-tmp-1-1");
        std::fs::write(&old, "x").unwrap();
        assert!(!stale_temp_file(&old));
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1000))
            .unwrap();
        assert!(stale_temp_file(&old));
    }
}
