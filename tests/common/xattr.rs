//! Reading id-carrying xattrs (ACLs, file capabilities) in the tests, and
//! a tree of entries with them as a user compares it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The value of xattr `name` of `p` itself (never through a symlink).
pub fn lgetxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let cp = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let cn = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: `buf` is a live 64 KiB buffer and lgetxattr writes at most `buf.len()` bytes; `cp` and `cn` are NUL-
    // terminated CStrings alive for the call.
    let n = unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// `(tag, id)` of the named user (2) and group (8) entries of an ACL xattr.
pub fn acl_ids(v: &[u8]) -> Vec<(u16, u32)> {
    v[4..]
        .chunks(8)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u32::from_le_bytes(e[4..8].try_into().unwrap()),
            )
        })
        .filter(|(t, _)| *t == 2 || *t == 8)
        .collect()
}

/// What a user compares of an entry: owner, mode, id-carrying xattrs,
/// content or link target, inode (hard links).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub ino: u64,
    pub acl: Option<Vec<u8>>,
    pub dacl: Option<Vec<u8>>,
    pub caps: Option<Vec<u8>>,
    pub data: Vec<u8>,
}

/// Every entry under `root` by relative path, never following a symlink.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Info> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    strata_testkit::tree::walk(root, |rel, md| {
        let p = root.join(rel);
        let data = if md.file_type().is_symlink() {
            std::fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
        } else if md.is_file() {
            // A private file of the container's root is out of the user's reach.
            std::fs::read(&p).unwrap_or_else(|_| b"(unreadable)".to_vec())
        } else {
            vec![]
        };
        let x = |n| (!md.file_type().is_symlink()).then(|| lgetxattr(&p, n)).flatten();
        out.insert(
            rel.to_path_buf(),
            Info {
                uid: md.uid(),
                gid: md.gid(),
                mode: md.mode(),
                ino: md.ino(),
                acl: x("system.posix_acl_access"),
                dacl: x("system.posix_acl_default"),
                caps: x("security.capability"),
                data,
            },
        );
    });
    out
}
