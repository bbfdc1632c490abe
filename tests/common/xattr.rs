//! Reading id-carrying xattrs (ACLs, file capabilities) in the tests.
#![allow(dead_code)]

use std::path::Path;

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
