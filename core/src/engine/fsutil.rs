//! Small filesystem helpers shared by the engine and the backends: tree
//! removal that never follows symlinks nor crosses mounts, bind mounts,
//! no-replace renames and a symlink-safe write into a rootfs. Atomic writes are
//! [`crate::durable::write_atomic`].

use crate::err;
use crate::error::{Error, IoContext, Result};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use crate::copy::open_dir_at;
pub use crate::mountinfo::mount_points;

/// Mount points at or below `path`.
pub fn mounts_under(path: &Path) -> Vec<PathBuf> {
    let canon = canonical(path).unwrap_or_else(|| path.to_path_buf());
    mount_points().into_iter().filter(|m| m.starts_with(&canon)).collect()
}

/// `path` with every symlink resolved, as `realpath`: the kernel's name of
/// the opened path (three calls) instead of a `readlink` per component.
/// `None` if it does not exist.
pub fn canonical(path: &Path) -> Option<PathBuf> {
    let fast = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .and_then(|f| std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())));
    match fast {
        // A name the kernel marks (deleted, unreachable from our root) is not a path.
        Ok(p) if p.is_absolute() && !p.as_os_str().as_bytes().ends_with(b" (deleted)") => Some(p),
        _ => std::fs::canonicalize(path).ok(),
    }
}

/// Remove `path` and everything below it. Never follows a symlink (a
/// symlink at `path` itself is removed, not its target) and refuses
/// (`Busy`) when anything is mounted at or below `path`. Missing is fine.
///
/// A non-root user's containers hold files owned by its subordinate ids
/// (an unprivileged rootfs, an overlay work dir of mode 000 made by the
/// container's root): what the user cannot remove itself is removed in a
/// user namespace that maps its own and subordinate ids to themselves,
/// where it may override permissions on those files and no others.
pub fn remove_tree(path: &Path) -> Result<()> {
    match remove_tree_here(path) {
        Err(e)
            if e.kind() == crate::ErrorKind::PermissionDenied
                && !crate::paths::is_root()
                && !crate::identity::in_ns_child() =>
        {
            remove_tree_as_owner(path, e)
        }
        r => r,
    }
}

fn remove_tree_as_owner(path: &Path, first: Error) -> Result<()> {
    let _s = tracing::debug_span!("remove tree in user namespace", path = %path.display()).entered();
    let ns = match crate::idmap::caller_identity_map() {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!("no identity map: {e}");
            return Err(first);
        }
    };
    match crate::idmap::run_in_ns(&ns, false, || remove_tree_here(path).map(|()| Vec::new())) {
        Ok(_) => Ok(()),
        // It got in but could not remove something: that error says more.
        Err(e) if e.path.is_some() => Err(e),
        Err(e) => {
            tracing::debug!("no user namespace to remove {}: {e}", path.display());
            Err(first)
        }
    }
}

fn remove_tree_here(path: &Path) -> Result<()> {
    const OP: &str = "remove tree";
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(OP, path, e)),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path).ctx(OP, path);
    }
    let mounted = mounts_under(path);
    if let Some(m) = mounted.first() {
        return Err(err!(Busy, OP, "{} is mounted below it; unmount it first", m.display()).at(path));
    }
    let fd = open_dir_at(libc::AT_FDCWD, path.as_os_str().as_bytes()).ctx(OP, path)?;
    let dev = fstatat(Some(fd.as_raw_fd()), "", AtFlags::AT_EMPTY_PATH)
        .ctx(OP, path)?
        .st_dev;
    empty_dir(&fd, dev, path)?;
    drop(fd);
    std::fs::remove_dir(path).ctx(OP, path)
}

fn empty_dir(fd: &OwnedFd, dev: u64, path: &Path) -> Result<()> {
    const OP: &str = "remove tree";
    let mut entries = Vec::new();
    crate::copy::read_dir_typed(fd.as_raw_fd(), &mut entries).ctx(OP, path)?;
    let mut subdirs = Vec::new();
    // d_type tells dirs from the rest: no stat per entry.
    for (name, t) in entries {
        let n = name.to_bytes();
        let is_dir = match t {
            libc::DT_DIR => true,
            libc::DT_UNKNOWN => {
                let st = fstatat(Some(fd.as_raw_fd()), n, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .ctx(OP, path.join(std::ffi::OsStr::from_bytes(n)))?;
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
            }
            _ => false,
        };
        if is_dir {
            subdirs.push(n.to_vec());
        } else {
            nix::unistd::unlinkat(Some(fd.as_raw_fd()), n, UnlinkatFlags::NoRemoveDir)
                .ctx(OP, path.join(std::ffi::OsStr::from_bytes(n)))?;
        }
    }
    let one = |n: &Vec<u8>| -> Result<()> {
        let child = path.join(std::ffi::OsStr::from_bytes(n));
        let cfd = open_dir_at(fd.as_raw_fd(), n).ctx(OP, &child)?;
        // The open dir itself, so a mount swapped in after readdir is seen too.
        if fstatat(Some(cfd.as_raw_fd()), "", AtFlags::AT_EMPTY_PATH)
            .ctx(OP, &child)?
            .st_dev
            != dev
        {
            return Err(err!(Busy, OP, "another filesystem is mounted here").at(&child));
        }
        empty_dir(&cfd, dev, &child)?;
        drop(cfd);
        nix::unistd::unlinkat(Some(fd.as_raw_fd()), n.as_slice(), UnlinkatFlags::RemoveDir).ctx(OP, &child)
    };
    // A forked child has none of the global pool's worker threads; and a
    // few subdirectories are not worth starting the pool for (an overlay's
    // delta and work, a small upper dir).
    if crate::identity::in_ns_child() || subdirs.len() < 4 {
        return subdirs.iter().try_for_each(one);
    }
    // Unlinks within one directory serialize on its lock: parallel across directories.
    use rayon::prelude::*;
    subdirs.par_iter().try_for_each(one)
}

/// Bind `src` (recursively: its submounts come along) at `target`,
/// read-only if asked; a failed read-only remount leaves nothing mounted.
/// Undone by a lazy unmount of `target`, which takes the submounts too.
pub fn bind_mount(src: &Path, target: &Path, readonly: bool) -> Result<()> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let none = None::<&str>;
    mount(Some(src), target, none, MsFlags::MS_BIND | MsFlags::MS_REC, none).ctx("bind mount", target)?;
    if readonly {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = mount(none, target, none, flags, none) {
            let _ = umount2(target, MntFlags::MNT_DETACH);
            return Err(e).ctx("remount read-only", target);
        }
    }
    Ok(())
}

/// `rename(2)` that fails with `AlreadyExists` instead of replacing `to`.
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    nix::fcntl::renameat2(None, from, None, to, nix::fcntl::RenameFlags::RENAME_NOREPLACE)
        .map_err(|e| Error::errno("rename", to, e))
}

/// fsync a directory so that renames inside it are durable before later
/// changes to the same filesystem.
pub fn sync_dir(path: &Path) {
    if crate::durable::mode(path) != crate::durable::Flush::Wait {
        return; // renames commit in order with the filesystem's later metadata
    }
    sync_dir_always(path);
}

/// fsync a directory even where [`sync_dir`] need not: before a change on
/// other storage (an LV, a dataset), which no filesystem orders after it.
pub fn sync_dir_always(path: &Path) {
    if crate::durable::mode(path) == crate::durable::Flush::Volatile {
        return;
    }
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.sync_all();
    }
}

/// Replace the contents of `rootfs/rel` (a relative path such as
/// `etc/hostname`) only if it exists and is a regular file; every component
/// is opened with `O_NOFOLLOW` relative to the rootfs, so a symlink planted
/// in the rootfs can never redirect the write to the host. Returns whether
/// it wrote.
pub fn write_in_rootfs_if_regular(rootfs: &Path, rel: &str, data: &[u8]) -> Result<bool> {
    const OP: &str = "write in rootfs";
    let target = rootfs.join(rel);
    let mut dirfd = open_dir_at(libc::AT_FDCWD, rootfs.as_os_str().as_bytes()).ctx(OP, rootfs)?;
    let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    let Some((last, dirs)) = comps.split_last() else {
        return Ok(false);
    };
    for c in dirs {
        match open_dir_at(dirfd.as_raw_fd(), c.as_bytes()) {
            Ok(fd) => dirfd = fd,
            // Missing, or a symlink/non-directory (ELOOP/ENOTDIR): nothing to write.
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => return Ok(false),
            Err(e) => return Err(Error::errno(OP, &target, e)),
        }
    }
    let st = match fstatat(Some(dirfd.as_raw_fd()), *last, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(nix::errno::Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(Error::errno(OP, &target, e)),
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Ok(false);
    }
    let fd = nix::fcntl::openat(
        Some(dirfd.as_raw_fd()),
        *last,
        OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(OP, &target)?;
    // SAFETY: `fd` was just returned by a successful openat and is owned by nothing else, so the File takes sole
    // ownership and closes it once.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    // Re-check on the open file: it may have been swapped since the stat.
    if !file.metadata().ctx(OP, &target)?.is_file() {
        return Ok(false);
    }
    file.set_len(0).ctx(OP, &target)?;
    use std::io::Write;
    (&file).write_all(data).ctx(OP, &target)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_resolves_as_realpath() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir_all(real.join("in")).unwrap();
        std::os::unix::fs::symlink(&real, d.path().join("link")).unwrap();
        std::os::unix::fs::symlink("real/in", d.path().join("rel")).unwrap();
        for p in [
            d.path().join("link/in"),
            d.path().join("rel"),
            d.path().join("real/../real/in/."),
            real.clone(),
        ] {
            assert_eq!(
                canonical(&p),
                Some(std::fs::canonicalize(&p).unwrap()),
                "{}",
                p.display()
            );
        }
        assert_eq!(canonical(&d.path().join("missing")), None);
        assert_eq!(canonical(&d.path().join("link/missing")), None);
    }
}
