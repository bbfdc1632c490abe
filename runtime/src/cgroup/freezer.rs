//! lxc-freeze / lxc-unfreeze: v1 `freezer.state`, v2 `cgroup.freeze`.

use super::{read_file, write_file};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_core::{err, Error, Result};

/// The container's cgroups (leaves of the recorded list) that can freeze:
/// a v1 freezer cgroup, or a cgroup2 one. v1 wins on a hybrid host, as in LXC.
fn freezer_dir(paths: &[PathBuf]) -> Option<(PathBuf, bool)> {
    let leaves = paths
        .iter()
        .filter(|p| !paths.iter().any(|q| q != *p && q.starts_with(p)));
    let mut v2 = None;
    for p in leaves {
        if p.join("freezer.state").exists() {
            return Some((p.clone(), true));
        }
        if v2.is_none() && p.join("cgroup.freeze").exists() {
            v2 = Some((p.clone(), false));
        }
    }
    v2
}

fn set_state(paths: &[PathBuf], frozen: bool, timeout: Duration) -> Result<()> {
    let op = if frozen { "freeze" } else { "unfreeze" };
    let (dir, v1) = freezer_dir(paths).ok_or_else(|| {
        err!(
            Unsupported,
            op,
            "the container has no freezer cgroup (v1 freezer.state or cgroup2 cgroup.freeze)"
        )
    })?;
    let (file, value) = match (v1, frozen) {
        (true, true) => ("freezer.state", "FROZEN"),
        (true, false) => ("freezer.state", "THAWED"),
        (false, true) => ("cgroup.freeze", "1"),
        (false, false) => ("cgroup.freeze", "0"),
    };
    write_file(&dir, file, value).map_err(|e| Error::io(op, dir.join(file), e))?;
    let deadline = Instant::now() + timeout;
    while !reached(&dir, v1, frozen) {
        if Instant::now() >= deadline {
            return Err(err!(
                Busy,
                op,
                "{}: not {} after {:?}",
                dir.display(),
                if frozen { "frozen" } else { "thawed" },
                timeout
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn reached(dir: &Path, v1: bool, frozen: bool) -> bool {
    if v1 {
        let s = read_file(dir, "freezer.state").unwrap_or_default();
        s.trim() == if frozen { "FROZEN" } else { "THAWED" }
    } else {
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        read_file(dir, "cgroup.events").is_some_and(|s| s.lines().any(|l| l.trim() == want))
    }
}

/// Freeze every process of the container; waits until the kernel says frozen.
pub fn freeze(paths: &[PathBuf], timeout: Duration) -> Result<()> {
    set_state(paths, true, timeout)
}

/// Thaw it again.
pub fn thaw(paths: &[PathBuf], timeout: Duration) -> Result<()> {
    set_state(paths, false, timeout)
}

/// Whether the container's freezer says frozen now.
pub fn is_frozen(paths: &[PathBuf]) -> bool {
    freezer_dir(paths).is_some_and(|(dir, v1)| reached(&dir, v1, true))
}
