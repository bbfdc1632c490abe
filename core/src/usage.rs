//! Disk usage by walking a tree, for backends whose storage keeps no count
//! of its own (a plain directory, an overlay's upper dir, a btrfs subvolume
//! without qgroups): the blocks allocated to every entry, each inode once,
//! as `du -sx --block-size=1` counts them.

use crate::error::{Error, Result};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes allocated under `root` (itself included): `st_blocks * 512` of
/// every entry, hard links counted once, symlinks not followed and other
/// filesystems mounted below not entered (as `du -sx`). Entries that vanish
/// during the walk are skipped; a missing `root` is an error.
pub fn walk(root: &Path) -> Result<u64> {
    const OP: &str = "measure disk usage";
    let _s = tracing::debug_span!("usage walk", root = %root.display()).entered();
    let md = std::fs::symlink_metadata(root).map_err(|e| Error::io(OP, root, e))?;
    let dev = md.dev();
    let mut seen = HashSet::new();
    let mut total = md.blocks() * 512;
    if !md.is_dir() {
        return Ok(total);
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            // Gone or swapped for something else while we walked.
            Err(e) if dir != root => {
                tracing::debug!("skip {}: {e}", dir.display());
                continue;
            }
            Err(e) => return Err(Error::io(OP, &dir, e)),
        };
        for e in rd.flatten() {
            // fstatat on the open dir, not following a symlink.
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            if m.nlink() > 1 && !m.is_dir() && !seen.insert(m.ino()) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hardlinks_once_and_skips_symlink_targets() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("r");
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/b/f"), vec![1u8; 64 * 1024]).unwrap();
        let one = walk(&r).unwrap();
        std::fs::hard_link(r.join("a/b/f"), r.join("a/g")).unwrap();
        assert_eq!(walk(&r).unwrap(), one, "a hard link adds nothing");
        // A symlink to a big file outside counts only itself.
        std::fs::write(d.path().join("big"), vec![1u8; 1 << 20]).unwrap();
        std::os::unix::fs::symlink(d.path().join("big"), r.join("s")).unwrap();
        assert!(walk(&r).unwrap() < one + 64 * 1024);
        assert!(walk(&d.path().join("nope")).is_err());
    }
}
