//! What a copy of a tree needs at least on a fresh filesystem, to refuse
//! one that cannot fit before anything is made.

use super::open_dir_at;
use crate::error::{Error, IoContext, Result};
use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, SFlag};
use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Lower bounds for a copy of a tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeUsage {
    /// Data blocks (4 KiB) of the regular files too big to be stored inline
    /// in metadata anywhere (over 2 KiB), holes left out, hardlinks once.
    pub bytes: u64,
    /// Entries below the top (each a new inode; hardlinks once).
    pub inodes: u64,
}

const BLOCK: u64 = 4096;
/// btrfs keeps files up to this size inline in its metadata.
const MAX_INLINE: i64 = 2048;

/// Walk `root` (symlinks never followed, other mounts not entered, as
/// [`super::copy_tree`] copies it) and add up what its copy needs at least.
pub fn tree_usage(root: &Path) -> Result<TreeUsage> {
    const OP: &str = "measure tree";
    let fd = open_dir_at(libc::AT_FDCWD, root.as_os_str().as_bytes()).ctx(OP, root)?;
    let mut u = TreeUsage::default();
    let mut links = HashSet::new();
    walk(&fd, root, &mut u, &mut links)?;
    Ok(u)
}

fn walk(fd: &OwnedFd, path: &Path, u: &mut TreeUsage, links: &mut HashSet<(u64, u64)>) -> Result<()> {
    const OP: &str = "measure tree";
    let mut names = Vec::new();
    super::read_dir(fd.as_raw_fd(), &mut names).ctx(OP, path)?;
    let mut subdirs = Vec::new();
    for name in &names {
        let n = name.to_bytes();
        let st = fstatat(Some(fd.as_raw_fd()), n, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| Error::errno(OP, path.join(std::ffi::OsStr::from_bytes(n)), e))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if st.st_nlink > 1 && kind != SFlag::S_IFDIR && !links.insert((st.st_dev, st.st_ino)) {
            continue;
        }
        u.inodes += 1;
        if kind == SFlag::S_IFDIR {
            subdirs.push(n.to_vec());
        } else if kind == SFlag::S_IFREG && st.st_size > MAX_INLINE {
            let size = (st.st_size as u64).div_ceil(BLOCK);
            let allocated = (st.st_blocks as u64 * 512).div_ceil(BLOCK);
            u.bytes += size.min(allocated) * BLOCK;
        }
    }
    for n in subdirs {
        let child = path.join(std::ffi::OsStr::from_bytes(&n));
        let cfd = open_dir_at(fd.as_raw_fd(), &n).ctx(OP, &child)?;
        if is_mount_root(&cfd) {
            continue;
        }
        walk(&cfd, &child, u, links)?;
    }
    Ok(())
}

/// Whether the open directory is the root of another mount.
fn is_mount_root(fd: &OwnedFd) -> bool {
    // SAFETY: statx is a C struct of integers: all-zero is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx on an open fd with an empty path fills `st`.
    let r = unsafe { crate::rawsys::statx(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH, 0, &mut st) };
    let attr = libc::STATX_ATTR_MOUNT_ROOT as u64;
    r == 0 && st.stx_attributes_mask & attr != 0 && st.stx_attributes & attr != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_data_blocks_and_entries_once() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/small"), vec![1u8; 100]).unwrap();
        std::fs::write(r.join("a/b/big"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(r.join("a/b/big"), r.join("big-link")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("a/etc-link")).unwrap();
        // Sparse: 1 MiB long, one block of data.
        let f = std::fs::File::create(r.join("sparse")).unwrap();
        f.set_len(1 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[7u8; 4096], 0).unwrap();
        drop(f);
        let u = tree_usage(r).unwrap();
        // a, a/b, a/small, a/b/big (and its link, once), a/etc-link, sparse.
        assert_eq!(u.inodes, 6);
        // big: 3 blocks; sparse: 1 block; small and the symlink: none.
        assert_eq!(u.bytes, 4 * 4096);
    }
}
