//! Trees of files as the tests compare them: a snapshot of every entry
//! under a root (type, mode, owner, size, times, inode, content hash, link
//! target, xattrs), and an assertion that names what changed, for "a
//! refused command left the disk exactly as it was".

use std::collections::BTreeMap;
use std::fs::{FileType, Metadata};
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

/// Visit `root` and every entry below it in path order, never following a
/// symlink: `f(path relative to root, its metadata)`, the root's path empty.
/// The one tree walk of the tests; what each compares is built on it.
pub fn walk(root: &Path, mut f: impl FnMut(&Path, &Metadata)) {
    fn go(root: &Path, rel: &Path, f: &mut dyn FnMut(&Path, &Metadata)) {
        let p = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let md = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        f(rel, &md);
        if md.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                go(root, &rel.join(n), f);
            }
        }
    }
    go(root, Path::new(""), &mut f)
}

/// Every path under `root` (included) with type, mode, owner, size, times, content hash, link target.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, |rel, md| {
        // Not `root.join("")`: that adds a '/', which a root that is a file
        // (a loop container's image) does not take.
        let p = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let ft = md.file_type();
        let e = Entry {
            kind: kind_of(&ft),
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            size: if ft.is_dir() { 0 } else { md.size() },
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
            ino: md.ino(),
            hash: if ft.is_file() { content_hash(&p) } else { 0 },
            link: ft.is_symlink().then(|| std::fs::read_link(&p).unwrap()),
            xattrs: xattrs(&p),
        };
        out.insert(rel.to_path_buf(), e);
    });
    out
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

/// What differs between two trees keyed by path (whatever each entry
/// holds): entries removed, changed (before -> after) and created.
pub fn differences<E: PartialEq + std::fmt::Debug>(
    before: &BTreeMap<PathBuf, E>,
    after: &BTreeMap<PathBuf, E>,
) -> Vec<String> {
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
    diffs
}

/// Assert two tree snapshots are equal, naming the differences.
pub fn assert_same_tree(what: &str, before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>) {
    if before != after {
        panic!("{what}: the tree changed:\n{}", differences(before, after).join("\n"));
    }
}
