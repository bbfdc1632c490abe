//! Remove a container's cgroups from the recorded list (LXC's
//! cgroup_tree_prune), after a stop or, by reconcile, after a kill -9.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_core::{err, Error, Result};

/// The pids in `dir/cgroup.procs`.
fn procs(dir: &Path) -> Vec<String> {
    super::read_file(dir, "cgroup.procs")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// rmdir, waiting a little while the kernel lets go of exited tasks
/// (a cgroup stays busy until its last task is reaped and released).
fn rmdir(dir: &Path) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            r => return r,
        }
    }
}

/// Remove `dir` and every cgroup below it, bottom-up; processes still in
/// any of them make it an error naming the cgroup.
fn remove_tree(dir: &Path) -> Result<()> {
    const OP: &str = "remove cgroup";
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(OP, dir, e)),
    };
    for e in entries {
        let e = e.map_err(|e| Error::io(OP, dir, e))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&e.path())?;
        }
    }
    let left = procs(dir);
    if !left.is_empty() {
        return Err(err!(
            Busy,
            OP,
            "{}: processes remain in it (pid {})",
            dir.display(),
            left.join(", ")
        ));
    }
    match rmdir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(OP, dir, e)),
    }
}

/// Remove the cgroups a [`super::Plan::paths`] list names. Kills nothing.
/// A path that is an ancestor of another one in the list (a parent made
/// for `lxc.cgroup.dir`, or the limit cgroup above an inner one) is only
/// removed when empty (others may use it); any other path is a container
/// cgroup: it goes with everything below it (cgroups the container made).
/// Paths already gone are fine: removing twice succeeds.
pub fn remove(paths: &[PathBuf]) -> Result<()> {
    let _s = tracing::info_span!("cgroup_remove", n = paths.len()).entered();
    let mut order: Vec<&PathBuf> = paths.iter().collect();
    // Deepest first, so that a shared parent comes after what is below it.
    order.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    order.dedup();
    let mut first_err = None;
    for p in order {
        let parent_only = paths.iter().any(|q| q != p && q.starts_with(p));
        // The usual case (nothing left below it, no process in it) in one
        // call; anything else takes the walk below, which names what is left.
        if !parent_only && std::fs::remove_dir(p).is_ok() {
            continue;
        }
        let r = if parent_only {
            match rmdir(p) {
                Ok(()) => Ok(()),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT) | Some(libc::EBUSY) | Some(libc::ENOTEMPTY)
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(Error::io("remove cgroup", p, e)),
            }
        } else {
            remove_tree(p)
        };
        if let Err(e) = r {
            tracing::warn!("{e}");
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_remove_plain_dirs() {
        // On a plain filesystem the "cgroup files" are absent: the tree logic alone.
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        let leaf = a.join("lxc.payload.c");
        let other = a.join("lxc.payload.d");
        std::fs::create_dir_all(leaf.join("init.scope/x")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        remove(&[a.clone(), leaf.clone()]).unwrap();
        assert!(!leaf.exists());
        assert!(other.exists() && a.exists(), "a shared parent stays while in use");
        remove(&[a.clone(), leaf.clone()]).unwrap();
        std::fs::remove_dir(&other).unwrap();
        remove(&[a.clone(), leaf]).unwrap();
        assert!(!a.exists());
    }
}
