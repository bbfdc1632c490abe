//! A tree with every kind of entry a rootfs can hold, and its comparison
//! entry by entry (owner, mode, times, xattrs, link targets, content,
//! hardlinks), for the copy matrix and the send/receive round trips.

use super::{tree, Entry};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use strata_testkit::sh;

pub fn setxattr(p: &Path, name: &str, value: &[u8]) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: `c` and `n` are NUL-terminated CStrings alive for the call, and `value` is a live slice whose own
    // length is passed.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr() as *const _, value.len(), 0) };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

pub fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
    ];
    // SAFETY: `c` is a NUL-terminated CString and `ts` a live [timespec; 2], both alive for the call.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

/// Hardlinks, xattrs, ACLs, file capabilities, device nodes, fifos, sparse
/// files, long names, symlinks to absolute host paths, owners, odd modes, times.
pub fn special_tree(r: &Path) {
    for d in ["etc", "bin", "dev", "var/lib/deep/er", "home/user", "tmp"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(r.join("etc/hostname"), "orig\n").unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(r.join("bin/tool"), vec![0x7fu8; 10_000]).unwrap();
    std::fs::set_permissions(r.join("bin/tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::hard_link(r.join("bin/tool"), r.join("bin/tool-hardlink")).unwrap();
    std::fs::hard_link(r.join("bin/tool"), r.join("var/lib/deep/er/third-link")).unwrap();
    std::fs::write(r.join("bin/capped"), "caps").unwrap();
    sh(&[
        "setcap",
        "cap_net_raw,cap_net_admin+ep",
        r.join("bin/capped").to_str().unwrap(),
    ]);
    std::fs::write(r.join("home/user/x"), "user data").unwrap();
    std::os::unix::fs::chown(r.join("home/user"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(r.join("home/user/x"), Some(1000), Some(100)).unwrap();
    setxattr(&r.join("home/user/x"), "user.note", b"hello");
    setxattr(&r.join("home/user/x"), "trusted.secret", b"\x00\x01binary");
    sh(&[
        "setfacl",
        "-m",
        "u:1234:rwx,g:55:r",
        r.join("home/user/x").to_str().unwrap(),
    ]);
    sh(&[
        "setfacl",
        "-d",
        "-m",
        "u:1234:rx",
        r.join("home/user").to_str().unwrap(),
    ]);
    sh(&["mknod", r.join("dev/null").to_str().unwrap(), "c", "1", "3"]);
    sh(&["mknod", r.join("dev/loop200").to_str().unwrap(), "b", "7", "200"]);
    sh(&["mkfifo", r.join("dev/fifo").to_str().unwrap()]);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(r.join("var/sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"middle", 32 << 20).unwrap();
        f.write_all_at(b"end", (64 << 20) - 3).unwrap();
    }
    let long = "L".repeat(255);
    std::fs::write(r.join("var").join(&long), "long name").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", r.join("etc/abs-link")).unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", r.join("var/lib/rel-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", r.join("var/dangling")).unwrap();
    std::os::unix::fs::lchown(r.join("var/dangling"), Some(7), Some(8)).unwrap();
    std::fs::write(r.join("etc/odd"), "mode").unwrap();
    std::fs::set_permissions(r.join("etc/odd"), std::fs::Permissions::from_mode(0o2640)).unwrap();
    std::fs::write(r.join("empty"), "").unwrap();
    // Times last: children first, so directory mtimes stay as set.
    set_mtime(&r.join("var/dangling"), 1_000_000_000, 0);
    set_mtime(&r.join("etc/odd"), 1_234_567_890, 123_456_789);
    set_mtime(&r.join("var/lib/deep/er"), 1_111_111_111, 5);
    set_mtime(&r.join("home/user"), 1_500_000_000, 999_999_999);
}

/// What must survive a copy: all but ctime and inode numbers; hardlinks as
/// groups of paths.
#[derive(Debug, PartialEq)]
pub struct View {
    pub entries: BTreeMap<PathBuf, Entry>,
    pub links: Vec<Vec<PathBuf>>,
}

pub fn view(root: &Path) -> View {
    let t = tree(root);
    let mut by_ino: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    for (p, e) in &t {
        if e.kind != "dir" {
            by_ino.entry(e.ino).or_default().push(p.clone());
        }
    }
    let mut links: Vec<Vec<PathBuf>> = by_ino.into_values().filter(|v| v.len() > 1).collect();
    links.sort();
    let entries = t
        .into_iter()
        .map(|(p, mut e)| {
            e.ctime = (0, 0);
            e.ino = 0;
            (p, e)
        })
        .collect();
    View { entries, links }
}

pub fn diff(what: &str, a: &View, b: &View) {
    if a == b {
        return;
    }
    let mut d = strata_testkit::tree::differences(&a.entries, &b.entries);
    if a.links != b.links {
        d.push(format!("hardlinks: {:?} vs {:?}", a.links, b.links));
    }
    panic!("{what}:\n{}", d.join("\n"));
}
