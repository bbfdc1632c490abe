//! Trees of files as the tests compare them: a snapshot of every entry
//! under a root (type, mode, owner, size, times, inode, content hash, link
//! target, xattrs), and an assertion that names what changed, for "a
//! refused command left the disk exactly as it was".

use std::collections::BTreeMap;
use std::fs::FileType;
use std::hash::Hasher;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The kind of an entry, as the snapshots name it.
pub fn kind_of(ft: &FileType) -> &'static str {
    if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block"
    } else {
        "char"
    }
}

/// A hash of a regular file's contents.
pub fn content_hash(p: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(&std::fs::read(p).unwrap());
    h.finish()
}

/// One entry of a tree snapshot: everything a byte-for-byte comparison needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub ino: u64,
    pub hash: u64,
    pub link: Option<PathBuf>,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Every path under `root` (included) with type, mode, owner, size, times, content hash, link target.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let md = std::fs::symlink_metadata(p).unwrap();
    let ft = md.file_type();
    let kind = kind_of(&ft);
    let hash = if ft.is_file() { content_hash(p) } else { 0 };
    let e = Entry {
        kind,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        size: if ft.is_dir() { 0 } else { md.size() },
        mtime: (md.mtime(), md.mtime_nsec()),
        ctime: (md.ctime(), md.ctime_nsec()),
        ino: md.ino(),
        hash,
        link: if ft.is_symlink() {
            Some(std::fs::read_link(p).unwrap())
        } else {
            None
        },
        xattrs: xattrs(p),
    };
    out.insert(p.strip_prefix(root).unwrap().to_path_buf(), e);
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for n in names {
            walk(root, &n, out);
        }
    }
}

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: `buf` is a live 64 KiB buffer and llistxattr writes at most `buf.len()` bytes; `c` is a NUL-
    // terminated CString alive for the call.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if n <= 0 {
        return vec![];
    }
    let mut out = vec![];
    for name in buf[..n as usize].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cn = CString::new(name).unwrap();
        let mut val = vec![0u8; 65536];
        // SAFETY: `val` is a live 64 KiB buffer and lgetxattr writes at most `val.len()` bytes; `c` and `cn` are
        // NUL-terminated CStrings alive for the call.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cn.as_ptr(),
                val.as_mut_ptr() as *mut libc::c_void,
                val.len(),
            )
        };
        val.truncate(m.max(0) as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), val));
    }
    out.sort();
    out
}

/// Assert two tree snapshots are equal, naming the first differences.
pub fn assert_same_tree(what: &str, before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>) {
    if before == after {
        return;
    }
    let mut diffs = vec![];
    for (p, e) in before {
        match after.get(p) {
            None => diffs.push(format!("removed: {}", p.display())),
            Some(a) if a != e => diffs.push(format!("changed: {}: {e:?} -> {a:?}", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("created: {}", p.display()));
    }
    panic!("{what}: the tree changed:\n{}", diffs.join("\n"));
}
