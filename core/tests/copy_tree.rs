//! Root-only tests of the copy engine on real filesystems.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_core::copy::CopyOptions;
use strata_core::idmap::IdShift;
use strata_core::ErrorKind;
use strata_testkit::{need_root, LoopFs};

/// The umask is the process's: the test that changes it holds this for
/// writing, every other copy for reading (the engine reads the umask once
/// per copy, and the tests of this file run in parallel threads).
static UMASK: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn copy_tree(src: &Path, dst: &Path, o: &CopyOptions) -> strata_core::Result<strata_core::copy::CopyStats> {
    let _g = UMASK.read().unwrap_or_else(|e| e.into_inner());
    strata_core::copy::copy_tree(src, dst, o)
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-copy-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn sh(cmd: &str, args: &[&OsStr]) {
    let st = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(st.success(), "{cmd} {args:?} failed");
}

/// Unmounts (lazily) on drop, so a failing test leaves no mount behind.
struct Mount(PathBuf);
impl Mount {
    fn new(fstype: &str, source: &Path, target: &Path, opts: &str) -> Mount {
        let mut args: Vec<&OsStr> = vec![OsStr::new("-t"), OsStr::new(fstype)];
        if !opts.is_empty() {
            args.extend([OsStr::new("-o"), OsStr::new(opts)]);
        }
        args.extend([source.as_os_str(), target.as_os_str()]);
        sh("mount", &args);
        Mount(target.to_path_buf())
    }
}
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mknod(p: &Path, mode: u32, dev: u64) {
    // SAFETY: the temporary CString from `c(p)` lives to the end of this statement, so the path stays NUL-
    // terminated for the call; mknod takes the rest by value.
    assert_eq!(unsafe { libc::mknod(c(p).as_ptr(), mode, dev) }, 0, "mknod {p:?}");
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    // SAFETY: the temporary CString from `c(p)` lives to the end of this statement, so the path stays NUL-
    // terminated for the call.
    assert_eq!(unsafe { libc::lchown(c(p).as_ptr(), uid, gid) }, 0, "lchown {p:?}");
}

fn set_xattr(p: &Path, k: &str, v: &[u8]) {
    let k = CString::new(k).unwrap();
    // SAFETY: the path and key CStrings live for the call and `v` is a live slice whose own length is passed.
    let r = unsafe { libc::lsetxattr(c(p).as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    assert_eq!(r, 0, "lsetxattr {p:?} {k:?}: {}", std::io::Error::last_os_error());
}

fn xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let cp = c(p);
    let mut list = vec![0u8; 65536];
    // SAFETY: `list` is a live 64 KiB buffer and llistxattr writes at most `list.len()` bytes; `cp` is NUL-
    // terminated.
    let n = unsafe { libc::llistxattr(cp.as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    assert!(n >= 0, "llistxattr {p:?}");
    let mut out = Vec::new();
    for k in list[..n as usize].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let kc = CString::new(k).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: `v` is a live 64 KiB buffer and lgetxattr writes at most `v.len()` bytes; `cp` and `kc` are NUL-
        // terminated.
        let m = unsafe { libc::lgetxattr(cp.as_ptr(), kc.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(m >= 0);
        v.truncate(m as usize);
        out.push((k.to_vec(), v));
    }
    out.sort();
    out
}

fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: `ts` is a live [timespec; 2] and the temporary path CString lives to the end of the statement.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c(p).as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0);
}

/// Every kind of entry a rootfs can hold.
fn build_tree(s: &Path) {
    fs::create_dir_all(s.join("etc")).unwrap();
    fs::write(s.join("etc/hostname"), "box\n").unwrap();
    fs::write(s.join("empty"), "").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(s.join("big"), &big).unwrap();
    // Sparse: data, 8 MiB hole, data, trailing hole.
    let mut f = fs::File::create(s.join("sparse")).unwrap();
    f.write_all(&[1u8; 8192]).unwrap();
    f.seek(SeekFrom::Start(8 << 20)).unwrap();
    f.write_all(&[2u8; 4096]).unwrap();
    f.set_len(16 << 20).unwrap();
    drop(f);
    // Hardlinks across dirs.
    fs::create_dir_all(s.join("usr/bin")).unwrap();
    fs::create_dir_all(s.join("usr/sbin")).unwrap();
    fs::write(s.join("usr/bin/tool"), "tool").unwrap();
    fs::hard_link(s.join("usr/bin/tool"), s.join("usr/sbin/tool2")).unwrap();
    fs::hard_link(s.join("usr/bin/tool"), s.join("tool3")).unwrap();
    // Symlinks.
    symlink("../etc/hostname", s.join("usr/rel")).unwrap();
    symlink("/etc/passwd", s.join("passwd")).unwrap();
    symlink("/etc", s.join("hostetc")).unwrap();
    symlink("nowhere/at/all", s.join("dangling")).unwrap();
    symlink("loop2", s.join("loop1")).unwrap();
    symlink("loop1", s.join("loop2")).unwrap();
    lchown(&s.join("passwd"), 33, 44);
    // Modes and owners.
    fs::write(s.join("usr/bin/suid"), "x").unwrap();
    lchown(&s.join("usr/bin/suid"), 0, 0);
    fs::set_permissions(s.join("usr/bin/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(s.join("usr/bin/sgid"), "x").unwrap();
    lchown(&s.join("usr/bin/sgid"), 1000, 42);
    fs::set_permissions(s.join("usr/bin/sgid"), fs::Permissions::from_mode(0o2711)).unwrap();
    fs::create_dir(s.join("tmp")).unwrap();
    fs::set_permissions(s.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(s.join("home")).unwrap();
    for (i, (u, g)) in [(1000u32, 1000u32), (65534, 65534), (12345, 54321), (7, 0)]
        .iter()
        .enumerate()
    {
        let p = s.join(format!("home/f{i}"));
        fs::write(&p, format!("{i}")).unwrap();
        lchown(&p, *u, *g);
    }
    fs::create_dir(s.join("locked")).unwrap();
    fs::write(s.join("locked/inside"), "x").unwrap();
    fs::set_permissions(s.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    // Xattrs, ACL, capability.
    set_xattr(&s.join("etc/hostname"), "user.note", b"hello");
    set_xattr(&s.join("etc/hostname"), "trusted.overlay.x", b"\x00\x01binary");
    set_xattr(&s.join("etc"), "user.dir", b"d");
    fs::write(s.join("acl"), "acl").unwrap();
    sh(
        "setfacl",
        &[
            OsStr::new("-m"),
            OsStr::new("u:1234:rw,g:99:r"),
            s.join("acl").as_os_str(),
        ],
    );
    sh(
        "setfacl",
        &[
            OsStr::new("-d"),
            OsStr::new("-m"),
            OsStr::new("u:1234:rwx"),
            s.join("tmp").as_os_str(),
        ],
    );
    fs::write(s.join("usr/bin/ping"), "ping").unwrap();
    sh(
        "setcap",
        &[OsStr::new("cap_net_raw+ep"), s.join("usr/bin/ping").as_os_str()],
    );
    // Specials.
    fs::create_dir(s.join("dev")).unwrap();
    mknod(&s.join("dev/null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    mknod(&s.join("dev/loop9"), libc::S_IFBLK | 0o660, libc::makedev(7, 9));
    mknod(&s.join("dev/fifo"), libc::S_IFIFO | 0o644, 0);
    mknod(&s.join("dev/sock"), libc::S_IFSOCK | 0o755, 0);
    lchown(&s.join("dev/loop9"), 0, 6);
    // Xattrs on entries that cannot be opened (a symlink, a device node):
    // copied by name, never through the symlink.
    set_xattr(&s.join("passwd"), "trusted.link", b"on the link itself");
    set_xattr(&s.join("dev/loop9"), "trusted.dev", b"dev");
    // A directory larger than the copy engine's share of one task, with
    // hardlink groups spread over its parts and a subdirectory.
    let wide = s.join("usr/share/wide");
    fs::create_dir_all(wide.join("sub")).unwrap();
    for i in 0..700 {
        fs::write(wide.join(format!("w{i:03}")), format!("{i}")).unwrap();
    }
    for i in 0..40 {
        fs::hard_link(wide.join(format!("w{i:03}")), wide.join(format!("x{i:03}"))).unwrap();
        fs::hard_link(wide.join(format!("w{i:03}")), wide.join(format!("sub/y{i:03}"))).unwrap();
    }
    // Long, deep and non-UTF-8 names.
    fs::write(s.join("a".repeat(255)), "long").unwrap();
    let mut deep = s.join("deep");
    for i in 0..60 {
        deep.push(format!("d{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), "bottom").unwrap();
    let odd = OsString::from_vec(b"caf\xe9-\xff\x01".to_vec());
    fs::write(s.join(&odd), "latin1").unwrap();
    // Times with nanoseconds, set last (bottom-up for dirs).
    set_times(&s.join("big"), (1_000_000_000, 1), (1_100_000_000, 123_456_789));
    set_times(&s.join("passwd"), (1_200_000_000, 5), (1_200_000_001, 999_999_999));
    set_times(&s.join("dev/null"), (1_300_000_000, 0), (1_300_000_000, 42));
    set_times(&s.join("etc"), (1_400_000_000, 0), (1_400_000_000, 7));
    set_times(s, (1_500_000_000, 0), (1_500_000_000, 8));
}

struct Entry {
    rel: PathBuf,
    meta: fs::Metadata,
}

fn walk(root: &Path) -> Vec<Entry> {
    let mut out = vec![];
    strata_testkit::tree::walk(root, |rel, meta| {
        out.push(Entry {
            rel: rel.to_path_buf(),
            meta: meta.clone(),
        })
    });
    out
}

/// Compare two trees entry by entry; returns the number of entries.
fn assert_same(src: &Path, dst: &Path, shift: Option<&IdShift>) -> usize {
    let (a, b) = (walk(src), walk(dst));
    let names = |v: &[Entry]| v.iter().map(|e| e.rel.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "different entries");
    let mut groups: HashMap<u64, u64> = HashMap::new();
    for (x, y) in a.iter().zip(&b) {
        let (m, n) = (&x.meta, &y.meta);
        let what = &x.rel;
        assert_eq!(m.mode(), n.mode(), "mode {what:?}");
        let (uid, gid) = match shift {
            Some(s) => (s.map_uid(m.uid()).unwrap(), s.map_gid(m.gid()).unwrap()),
            None => (m.uid(), m.gid()),
        };
        assert_eq!((uid, gid), (n.uid(), n.gid()), "owner {what:?}");
        assert_eq!(m.mtime(), n.mtime(), "mtime {what:?}");
        assert_eq!(m.mtime_nsec(), n.mtime_nsec(), "mtime ns {what:?}");
        // Reading a dir or a link updates its atime in src; the copy keeps the one from before.
        if !m.is_dir() && !m.file_type().is_symlink() {
            assert_eq!(
                (m.atime(), m.atime_nsec()),
                (n.atime(), n.atime_nsec()),
                "atime {what:?}"
            );
            assert_eq!(m.nlink(), n.nlink(), "nlink {what:?}");
        }
        assert_eq!(m.rdev(), n.rdev(), "rdev {what:?}");
        if !m.is_dir() {
            assert_eq!(m.size(), n.size(), "size {what:?}");
        }
        if shift.is_none() {
            assert_eq!(xattrs(&src.join(what)), xattrs(&dst.join(what)), "xattrs {what:?}");
        }
        if m.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(src.join(what)).unwrap(),
                fs::read_link(dst.join(what)).unwrap()
            );
        }
        if m.is_file() {
            assert!(
                fs::read(src.join(what)).unwrap() == fs::read(dst.join(what)).unwrap(),
                "content {what:?}"
            );
            // Holes stay holes (allow one extra block of slack per extent).
            assert!(
                n.blocks() <= m.blocks() + 16,
                "blocks {what:?}: {} > {}",
                n.blocks(),
                m.blocks()
            );
        }
        if m.nlink() > 1 && !m.is_dir() {
            // Same source inode <=> same target inode.
            let prev = groups.insert(m.ino(), n.ino());
            assert!(
                prev.is_none() || prev == Some(n.ino()),
                "hardlink group split at {what:?}"
            );
        }
    }
    let targets: Vec<u64> = groups.values().copied().collect();
    let mut uniq = targets.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(targets.len(), uniq.len(), "hardlink groups merged");
    a.len()
}

#[test]
fn copies_every_kind_of_entry_faithfully() {
    need_root!();
    let t = tmp();
    let (s, d) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir(&s).unwrap();
    fs::create_dir(&d).unwrap();
    build_tree(&s);
    let stats = copy_tree(&s, &d, &CopyOptions::default()).unwrap();
    let n = assert_same(&s, &d, None);
    assert!(n > 90);
    assert_eq!(stats.hardlinks, 2 + 80);
    assert_eq!(stats.specials, 4);
    assert_eq!(stats.symlinks, 6);
    assert!(fs::symlink_metadata(d.join("sparse")).unwrap().blocks() < 100);
    // The capability and ACL survived as such.
    let out = Command::new("getcap").arg(d.join("usr/bin/ping")).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cap_net_raw=ep"),
        "{out:?}"
    );
    let out = Command::new("getfacl")
        .args(["-n", "-p"])
        .arg(d.join("acl"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("user:1234:rw-"));
}

/// Nodes are created with their final modes and owner where that saves a
/// chmod/chown: modes the umask would cut, special bits, other owners, and a
/// setgid or default-ACL destination must still come out exact.
#[test]
fn modes_and_owners_exact_whatever_the_umask_and_destination() {
    need_root!();
    let t = tmp();
    let s = t.path().join("src");
    fs::create_dir(&s).unwrap();
    fs::create_dir(s.join("sub")).unwrap();
    for (i, mode) in [0o666, 0o777, 0o640, 0o000, 0o2755, 0o1777, 0o644, 0o755]
        .iter()
        .enumerate()
    {
        let f = s.join(format!("sub/f{i}"));
        fs::write(&f, "x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(*mode)).unwrap();
        let dd = s.join(format!("d{i}"));
        fs::create_dir(&dd).unwrap();
        fs::write(dd.join("in"), "y").unwrap();
        fs::set_permissions(&dd, fs::Permissions::from_mode(*mode)).unwrap();
    }
    lchown(&s.join("sub/f6"), 0, 1234);
    lchown(&s.join("sub/f7"), 1234, 0);
    let umask_held = UMASK.write().unwrap_or_else(|e| e.into_inner());
    // SAFETY: umask takes an integer; the UMASK lock held here keeps the other tests of this binary from copying
    // while the process umask is changed.
    let old = unsafe { libc::umask(0o077) };
    let mut dsts = Vec::new();
    for kind in ["plain", "setgid", "acl"] {
        let d = t.path().join(kind);
        fs::create_dir(&d).unwrap();
        match kind {
            "setgid" => {
                lchown(&d, 0, 4321);
                fs::set_permissions(&d, fs::Permissions::from_mode(0o2775)).unwrap();
            }
            "acl" => sh(
                "setfacl",
                &[
                    OsStr::new("-d"),
                    OsStr::new("-m"),
                    OsStr::new("u::r-x,g::---,o::---"),
                    d.as_os_str(),
                ],
            ),
            _ => {}
        }
        dsts.push((strata_core::copy::copy_tree(&s, &d, &CopyOptions::default()), d));
    }
    // SAFETY: umask takes an integer; it puts back the mask saved above, still under the UMASK lock.
    unsafe { libc::umask(old) };
    drop(umask_held);
    for (res, d) in dsts {
        res.unwrap();
        for e in [
            "sub", "sub/f0", "sub/f1", "sub/f3", "sub/f4", "sub/f6", "sub/f7", "d1", "d1/in", "d4", "d5",
        ] {
            let (a, b) = (
                fs::symlink_metadata(s.join(e)).unwrap(),
                fs::symlink_metadata(d.join(e)).unwrap(),
            );
            assert_eq!(
                (a.mode(), a.uid(), a.gid()),
                (b.mode(), b.uid(), b.gid()),
                "{} vs {}",
                s.join(e).display(),
                d.join(e).display()
            );
        }
    }
}

#[test]
fn symlinks_to_host_paths_are_not_followed() {
    need_root!();
    let before = fs::metadata("/etc/passwd").unwrap();
    let passwd = fs::read("/etc/passwd").unwrap();
    let t = tmp();
    let (s, d) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir(&s).unwrap();
    fs::create_dir(&d).unwrap();
    symlink("/etc", s.join("etc")).unwrap();
    symlink("/etc/passwd", s.join("passwd")).unwrap();
    fs::create_dir(s.join("sub")).unwrap();
    symlink("../../../../../../etc", s.join("sub/up")).unwrap();
    set_xattr(&s.join("sub"), "trusted.t", b"1");
    copy_tree(&s, &d, &CopyOptions::default()).unwrap();
    assert_eq!(fs::read_link(d.join("etc")).unwrap(), Path::new("/etc"));
    assert_eq!(fs::read_link(d.join("passwd")).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(
        fs::read_link(d.join("sub/up")).unwrap(),
        Path::new("../../../../../../etc")
    );
    let after = fs::metadata("/etc/passwd").unwrap();
    assert_eq!(fs::read("/etc/passwd").unwrap(), passwd);
    assert_eq!(
        (before.mode(), before.uid(), before.mtime_nsec()),
        (after.mode(), after.uid(), after.mtime_nsec())
    );
    assert!(xattrs(Path::new("/etc")).iter().all(|(k, _)| k != b"trusted.t"));
    assert_eq!(walk(&d).len(), 5);
}

#[test]
fn non_empty_destination_is_refused_and_left_alone() {
    need_root!();
    let t = tmp();
    let (s, d) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir(&s).unwrap();
    fs::create_dir(&d).unwrap();
    fs::write(s.join("a"), "a").unwrap();
    fs::write(d.join("keep"), "k").unwrap();
    let e = copy_tree(&s, &d, &CopyOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(walk(&d).len(), 2);
    // A destination that is itself a symlink is not followed either.
    symlink(&s, t.path().join("link")).unwrap();
    assert!(copy_tree(&s, &t.path().join("link"), &CopyOptions::default()).is_err());
}

#[test]
fn mount_points_below_src_are_not_crossed() {
    need_root!();
    let t = tmp();
    let (s, d) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir_all(s.join("proc")).unwrap();
    fs::create_dir(&d).unwrap();
    let _m = Mount::new("tmpfs", Path::new("tmpfs"), &s.join("proc"), "size=1m");
    fs::write(s.join("proc/host-secret"), "x").unwrap();
    copy_tree(&s, &d, &CopyOptions::default()).unwrap();
    assert!(d.join("proc").is_dir());
    assert_eq!(fs::read_dir(d.join("proc")).unwrap().count(), 0);
}

fn copy_to_fs(fstype: &str) {
    let t = tmp();
    let (s, d) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir(&s).unwrap();
    fs::create_dir(&d).unwrap();
    build_tree(&s);
    let (_tmpfs, _ext4) = if fstype == "tmpfs" {
        (Some(Mount::new("tmpfs", Path::new("tmpfs"), &d, "size=200m")), None)
    } else {
        let ext4 = LoopFs::new("ext4", 256 << 20, Some(&d), "");
        fs::remove_dir(d.join("lost+found")).unwrap();
        (None, Some(ext4))
    };
    let mut opts = CopyOptions {
        threads: 2,
        ..Default::default()
    };
    opts.progress = false;
    copy_tree(&s, &d, &opts).unwrap();
    assert_same(&s, &d, None);
}

#[test]
fn copies_to_tmpfs() {
    need_root!();
    copy_to_fs("tmpfs");
}

#[test]
fn copies_to_another_ext4() {
    need_root!();
    copy_to_fs("ext4");
}

#[test]
fn id_shift_maps_owners_acls_and_capabilities() {
    need_root!();
    let t = tmp();
    let (s, d) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir(&s).unwrap();
    fs::create_dir(&d).unwrap();
    build_tree(&s);
    let shift = IdShift {
        uids: vec![(0, 100000, 65536)],
        gids: vec![(0, 100000, 65536)],
    };
    let opts = CopyOptions {
        shift: Some(shift.clone()),
        ..Default::default()
    };
    copy_tree(&s, &d, &opts).unwrap();
    assert_same(&s, &d, Some(&shift));
    assert_eq!(fs::metadata(&d).unwrap().uid(), 100000);
    // setuid survived the chown.
    assert_eq!(fs::metadata(d.join("usr/bin/suid")).unwrap().mode() & 0o7777, 0o4755);
    let out = Command::new("getfacl")
        .args(["-n", "-p"])
        .arg(d.join("acl"))
        .output()
        .unwrap();
    let acl = String::from_utf8_lossy(&out.stdout);
    assert!(
        acl.contains("user:101234:rw-") && acl.contains("group:100099:r--"),
        "{acl}"
    );
    let out = Command::new("getfacl")
        .args(["-n", "-p", "-d"])
        .arg(d.join("tmp"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("user:101234:rwx"));
    // The v2 capability became v3 with rootid 100000.
    let caps = xattrs(&d.join("usr/bin/ping"));
    let (_, v) = caps.iter().find(|(k, _)| k == b"security.capability").unwrap();
    assert_eq!(v.len(), 24);
    assert_eq!(v[3], 3);
    assert_eq!(u32::from_le_bytes(v[20..24].try_into().unwrap()), 100000);
    // An id outside the map is refused, naming the path and id.
    let small = IdShift {
        uids: vec![(0, 100000, 1000)],
        gids: vec![(0, 100000, 65536)],
    };
    let d2 = t.path().join("dst2");
    fs::create_dir(&d2).unwrap();
    let e = copy_tree(
        &s,
        &d2,
        &CopyOptions {
            shift: Some(small),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("uid"), "{e}");
}

/// Manual benchmark: `STRATA_BENCH_SRC=... STRATA_BENCH_DST=... cargo test --release
/// --test copy_tree bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench() {
    let (Some(s), Some(d)) = (
        std::env::var_os("STRATA_BENCH_SRC"),
        std::env::var_os("STRATA_BENCH_DST"),
    ) else {
        return;
    };
    let t = std::time::Instant::now();
    let threads = std::env::var("STRATA_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let opts = CopyOptions {
        threads,
        ..Default::default()
    };
    let stats = copy_tree(Path::new(&s), Path::new(&d), &opts).unwrap();
    eprintln!("copy_tree: {:?} {stats:?}", t.elapsed());
}

#[test]
fn reflinks_within_btrfs() {
    need_root!();
    let btrfs = LoopFs::new("btrfs", 300 << 20, None, "");
    let (s, d) = (btrfs.mnt().join("src"), btrfs.mnt().join("dst"));
    fs::create_dir(&s).unwrap();
    fs::create_dir(&d).unwrap();
    build_tree(&s);
    let stats = copy_tree(&s, &d, &CopyOptions::default()).unwrap();
    assert_same(&s, &d, None);
    assert!(stats.reflinked > 5, "{stats:?}");
}

/// `link_from`: a file of the reference tree equal to the source's by the
/// quick check is hardlinked, one that differs in content size, mtime,
/// mode, owner or an xattr is copied from the source, and so is one with
/// several links there; directories are always made anew.
#[test]
fn link_from_takes_only_files_equal_by_the_quick_check() {
    need_root!();
    let t = tmp();
    let (s, r, d) = (t.path().join("src"), t.path().join("ref"), t.path().join("dst"));
    for x in [&s, &r, &d] {
        fs::create_dir(x).unwrap();
    }
    fs::create_dir(s.join("sub")).unwrap();
    for n in ["same", "size", "mtime", "mode", "owner", "xattr", "multi", "sub/same"] {
        fs::write(s.join(n), format!("{n} data")).unwrap();
    }
    // The reference: a copy of the source, then changes of every kind.
    copy_tree(&s, &r, &CopyOptions::default()).unwrap();
    fs::write(r.join("size"), "size data, longer").unwrap();
    let keep = fs::metadata(r.join("mtime")).unwrap().modified().unwrap();
    fs::write(r.join("mtime"), "MTIME DATA").unwrap();
    let f = fs::File::options().write(true).open(r.join("mtime")).unwrap();
    f.set_modified(keep + std::time::Duration::from_nanos(1)).unwrap();
    drop(f);
    fs::set_permissions(r.join("mode"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(r.join("owner"), Some(4242), None).unwrap();
    sh(
        "setfattr",
        &[
            "-n".as_ref(),
            "user.x".as_ref(),
            "-v".as_ref(),
            "1".as_ref(),
            r.join("xattr").as_os_str(),
        ],
    );
    fs::hard_link(r.join("multi"), r.join("multi-2")).unwrap();
    let opts = CopyOptions {
        link_from: Some(r.clone()),
        ..Default::default()
    };
    let st = copy_tree(&s, &d, &opts).unwrap();
    let ino = |p: &Path| fs::symlink_metadata(p).unwrap().ino();
    assert_eq!(st.linked, 2, "{st:?}");
    for n in ["same", "sub/same"] {
        assert_eq!(ino(&d.join(n)), ino(&r.join(n)), "{n}");
    }
    for n in ["size", "mtime", "mode", "owner", "xattr", "multi"] {
        assert_ne!(ino(&d.join(n)), ino(&r.join(n)), "{n}");
        assert_eq!(fs::read(d.join(n)).unwrap(), fs::read(s.join(n)).unwrap(), "{n}");
    }
    assert_ne!(ino(&d.join("sub")), ino(&r.join("sub")));
    // With a shift, nothing is linked (the owners differ by design).
    let d2 = t.path().join("dst2");
    fs::create_dir(&d2).unwrap();
    let st = copy_tree(
        &s,
        &d2,
        &CopyOptions {
            shift: Some(IdShift {
                uids: vec![(0, 100000, 65536)],
                gids: vec![(0, 100000, 65536)],
            }),
            ..opts
        },
    )
    .unwrap();
    assert_eq!(st.linked, 0);
}
