//! In-place conversion of a container between privileged and unprivileged
//! (root only): owners of every kind of entry, ACLs, file capabilities,
//! setuid bits, hard links and symlinks, refusals that change nothing, and
//! completion of an interrupted conversion.

#[path = "common/xattr.rs"]
mod xattr;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_core::idmap::IdMap;
use strata_core::shift;
use strata_core::{ContainerRef, ErrorKind};
use strata_testkit::need_root;
use xattr::{acl_ids, lgetxattr};

/// `strata convert`'s operation, with the backends a rootfs here may have.
fn convert(r: &ContainerRef, to: &IdMap) -> strata_core::Result<shift::ConvertReport> {
    let mut b = strata_core::Backends::new();
    b.register(strata_dir::backend())
        .register(strata_overlay::backend())
        .register(strata_loop::backend());
    shift::convert(&b, r, to)
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-ec").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// What a user would compare: owner, mode, type, times, id-carrying xattrs, content, link targets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Info {
    uid: u32,
    gid: u32,
    mode: u32,
    rdev: u64,
    ino: u64,
    mtime: i64,
    acl: Option<Vec<u8>>,
    dacl: Option<Vec<u8>>,
    caps: Option<Vec<u8>>,
    data: Vec<u8>,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Info> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let data = if md.file_type().is_symlink() {
            std::fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
        } else if md.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            vec![]
        };
        let x = |n| (!md.file_type().is_symlink()).then(|| lgetxattr(&p, n)).flatten();
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            Info {
                uid: md.uid(),
                gid: md.gid(),
                mode: md.mode(),
                rdev: md.rdev(),
                ino: md.ino(),
                mtime: md.mtime(),
                acl: x("system.posix_acl_access"),
                dacl: x("system.posix_acl_default"),
                caps: x("security.capability"),
                data,
            },
        );
        if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

struct Area {
    tmp: tempfile::TempDir,
    lxcpath: PathBuf,
    rootfs: PathBuf,
    outside: PathBuf,
}

impl Drop for Area {
    fn drop(&mut self) {
        // An immutable file would keep the tempdir from going away.
        let _ = Command::new("chattr").arg("-R").arg("-i").arg(self.tmp.path()).output();
    }
}

/// A dir container `c1` whose rootfs has every kind of entry, plus a file outside.
fn area() -> Area {
    let tmp = tempfile::Builder::new()
        .prefix("strata-unpriv-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let lxcpath = tmp.path().join("lxc");
    let rootfs = lxcpath.join("c1/rootfs");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(&outside, b"host file").unwrap();
    std::fs::write(
        lxcpath.join("c1/config"),
        format!("lxc.uts.name = c1\nlxc.rootfs.path = dir:{}\n", rootfs.display()),
    )
    .unwrap();
    let r = rootfs.display();
    let o = outside.display();
    sh(&format!(
        "cd {r}
         mkdir -p bin etc home/alice tmp dev acl-dir sgid-dir
         cp /bin/true bin/ping && chmod 4755 bin/ping && setcap cap_net_raw+ep bin/ping
         cp /bin/true bin/sgid && chown 0:42 bin/sgid && chmod 2755 bin/sgid
         chmod 1777 tmp && chmod 2775 sgid-dir && chown 0:50 sgid-dir
         echo alice > home/alice/f && chown -R 1000:1000 home/alice
         echo x > etc/acl && setfacl -m u:1000:rwx,g:50:r,u:0:r etc/acl
         setfacl -d -m u:33:rx,g:1005:rwx acl-dir && setfacl -m u:1005:rx acl-dir
         ln etc/acl etc/acl-hardlink
         ln -s {o} etc/to-outside && ln -s /nonexistent etc/dangling && ln -s ../bin etc/rel
         chown -h 1005:1005 etc/dangling
         mkfifo dev/fifo && mknod dev/null c 1 3 && mknod dev/loop b 7 0
         echo hole > home/f1005 && chown 1005:1005 home/f1005
         chown 65535:65535 etc/acl-hardlink
         echo big > etc/bigacl && setfacl -m \"$(seq -s, -f u:%g:r 1100 1179)\" etc/bigacl"
    ));
    Area {
        tmp,
        lxcpath,
        rootfs,
        outside,
    }
}

fn hole_map() -> IdMap {
    IdMap::parse([
        "u 0 100000 1005",
        "u 1005 1005 1",
        "u 1006 101006 64530",
        "g 0 200000 1005",
        "g 1005 1005 1",
        "g 1006 201006 64530",
    ])
    .unwrap()
}

#[test]
fn convert_both_ways_with_hole_map_checks_every_entry() {
    need_root!();
    let a = area();
    let before = snapshot(&a.rootfs);
    let outside_before = std::fs::symlink_metadata(&a.outside).unwrap();
    let r = ContainerRef::new(&a.lxcpath, "c1");
    let map = hole_map();

    let rep = convert(&r, &map).unwrap();
    assert!(!rep.resumed);
    let after = snapshot(&a.rootfs);
    assert_eq!(after.len(), before.len());
    for (p, b) in &before {
        let n = &after[p];
        let ctx = format!("{}", p.display());
        assert_eq!(n.uid, map.map_uid(b.uid).unwrap(), "{ctx}");
        assert_eq!(n.gid, map.map_gid(b.gid).unwrap(), "{ctx}");
        // Mode bits (setuid/setgid/sticky included), content, times, inode all stay.
        assert_eq!(
            (n.mode, n.rdev, n.ino, n.mtime, &n.data),
            (b.mode, b.rdev, b.ino, b.mtime, &b.data),
            "{ctx}"
        );
        for (old, new) in [(&b.acl, &n.acl), (&b.dacl, &n.dacl)] {
            assert_eq!(old.is_some(), new.is_some(), "{ctx}");
            if let (Some(o), Some(nv)) = (old, new) {
                let want: Vec<_> = acl_ids(o)
                    .into_iter()
                    .map(|(t, id)| (t, if t == 2 { map.map_uid(id) } else { map.map_gid(id) }.unwrap()))
                    .collect();
                assert_eq!(acl_ids(nv), want, "{ctx}");
            }
        }
        if let Some(bc) = &b.caps {
            let c = n.caps.as_ref().expect("capabilities kept");
            assert_eq!((c.len(), c[3]), (24, 3), "{ctx}: v3 capability");
            assert_eq!(
                u32::from_le_bytes(c[20..24].try_into().unwrap()),
                100000,
                "{ctx}: rootid"
            );
            assert_eq!(&c[4..20], &bc[4..20], "{ctx}: same capabilities");
        }
    }
    // The hole: container 1005 is host 1005.
    assert_eq!(after[Path::new("home/f1005")].uid, 1005);
    assert_eq!(after[Path::new("etc/dangling")].uid, 1005);
    // The symlink target outside the rootfs was not touched.
    let o = std::fs::symlink_metadata(&a.outside).unwrap();
    assert_eq!(
        (o.uid(), o.gid(), o.ctime_nsec()),
        (outside_before.uid(), outside_before.gid(), outside_before.ctime_nsec())
    );
    // Config and marker say what was done.
    let cfg = std::fs::read_to_string(a.lxcpath.join("c1/config")).unwrap();
    assert!(
        cfg.contains("lxc.idmap = u 1005 1005 1\n") && cfg.contains("lxc.idmap = g 0 200000 1005\n"),
        "{cfg}"
    );
    assert_eq!(
        shift::shifted_map(&r.dir()).unwrap().unwrap().config_values(),
        map.config_values()
    );
    assert!(!r.dir().join(shift::INTENT).exists());
    // Converting again to the same map is refused.
    assert_eq!(convert(&r, &map).unwrap_err().kind(), ErrorKind::InvalidArgument);

    // And back: byte for byte what it was (v3 capability back to v2).
    convert(&r, &IdMap::default()).unwrap();
    assert_eq!(snapshot(&a.rootfs), before);
    let cfg = std::fs::read_to_string(a.lxcpath.join("c1/config")).unwrap();
    assert!(!cfg.contains("lxc.idmap"), "{cfg}");
    assert!(shift::shifted_map(&r.dir()).unwrap().is_none());
}

#[test]
fn map_to_map_shift() {
    need_root!();
    let a = area();
    let before = snapshot(&a.rootfs);
    let r = ContainerRef::new(&a.lxcpath, "c1");
    let m1 = IdMap::parse(["b 0 100000 65536"]).unwrap();
    let m2 = IdMap::parse(["b 0 300000 65536"]).unwrap();
    convert(&r, &m1).unwrap();
    convert(&r, &m2).unwrap();
    let after = snapshot(&a.rootfs);
    for (p, b) in &before {
        assert_eq!(
            (after[p].uid, after[p].gid),
            (b.uid + 300000, b.gid + 300000),
            "{}",
            p.display()
        );
    }
    let c = after[Path::new("bin/ping")].caps.clone().unwrap();
    assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 300000);
    // Overlapping old and new host ranges are refused before anything changes.
    let m3 = IdMap::parse(["b 0 310000 65536"]).unwrap();
    let e = convert(&r, &m3).unwrap_err();
    assert!(e.to_string().contains("overlap"), "{e}");
    assert_eq!(snapshot(&a.rootfs), after);
}

fn assert_refused_unchanged(a: &Area, to: &IdMap, want: &str) {
    let r = ContainerRef::new(&a.lxcpath, "c1");
    let before = snapshot(&a.rootfs);
    let cfg = std::fs::read(a.lxcpath.join("c1/config")).unwrap();
    let e = convert(&r, to).unwrap_err();
    assert!(e.to_string().contains(want), "{e}");
    assert_eq!(snapshot(&a.rootfs), before, "the rootfs changed");
    assert_eq!(
        std::fs::read(a.lxcpath.join("c1/config")).unwrap(),
        cfg,
        "the config changed"
    );
    assert!(!r.dir().join(shift::INTENT).exists());
    assert!(!r.dir().join(shift::MARKER).exists());
}

#[test]
fn ids_outside_the_map_are_refused_before_any_change() {
    need_root!();
    let a = area();
    let small = IdMap::parse(["b 0 100000 2000"]).unwrap();
    // An owner outside (65535 on the hard link).
    assert_refused_unchanged(&a, &small, "uid 65535 is outside the id map");
    sh(&format!("chown 0:0 {}/etc/acl-hardlink", a.rootfs.display()));
    // An ACL entry outside.
    sh(&format!("setfacl -m u:5000:r {}/etc/acl", a.rootfs.display()));
    assert_refused_unchanged(&a, &small, "ACL uid 5000 is not mapped");
    sh(&format!("setfacl -x u:5000 {}/etc/acl", a.rootfs.display()));
    // A default ACL group entry outside.
    sh(&format!("setfacl -d -m g:3000:r {}/acl-dir", a.rootfs.display()));
    assert_refused_unchanged(&a, &small, "ACL gid 3000 is not mapped");
    sh(&format!("setfacl -d -x g:3000 {}/acl-dir", a.rootfs.display()));
    // Now it fits.
    convert(&ContainerRef::new(&a.lxcpath, "c1"), &small).unwrap();
}

#[test]
fn unprivileged_rootfs_with_host_root_files_is_refused_going_back() {
    need_root!();
    let a = area();
    let r = ContainerRef::new(&a.lxcpath, "c1");
    convert(&r, &IdMap::parse(["b 0 100000 65536"]).unwrap()).unwrap();
    // A file owned by host root in an unprivileged rootfs is outside its map.
    sh(&format!(
        "echo x > {0}/etc/planted && chown 100000:100000 {0}/etc/planted && chown -h 0:0 {0}/etc/rel",
        a.rootfs.display()
    ));
    assert_refused_unchanged_mapped(&a);
}

fn assert_refused_unchanged_mapped(a: &Area) {
    let r = ContainerRef::new(&a.lxcpath, "c1");
    let before = snapshot(&a.rootfs);
    let e = convert(&r, &IdMap::default()).unwrap_err();
    assert!(e.to_string().contains("uid 0 is outside the id map"), "{e}");
    assert!(e.to_string().contains("etc/rel"), "{e}");
    assert_eq!(snapshot(&a.rootfs), before);
    assert!(!r.dir().join(shift::INTENT).exists());
}

#[test]
fn interrupted_conversion_is_completed_by_a_rerun() {
    need_root!();
    let a = area();
    let before = snapshot(&a.rootfs);
    let r = ContainerRef::new(&a.lxcpath, "c1");
    let map = IdMap::parse(["b 0 100000 65536"]).unwrap();
    // An immutable file makes chown fail in the middle of the second pass.
    let stuck = a.rootfs.join("home/alice/f");
    sh(&format!("chattr +i {}", stuck.display()));
    let e = convert(&r, &map).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(r.dir().join(shift::INTENT).exists(), "the intent is recorded");
    // Another target while one is pending is refused.
    assert_eq!(
        convert(&r, &IdMap::parse(["b 0 300000 65536"]).unwrap())
            .unwrap_err()
            .kind(),
        ErrorKind::Busy
    );
    sh(&format!("chattr -i {}", stuck.display()));
    let rep = convert(&r, &map).unwrap();
    assert!(rep.resumed);
    let after = snapshot(&a.rootfs);
    for (p, b) in &before {
        let n = &after[p];
        assert_eq!(
            (n.uid, n.gid, n.mode),
            (b.uid + 100000, b.gid + 100000, b.mode),
            "{}",
            p.display()
        );
    }
    let c = after[Path::new("bin/ping")]
        .caps
        .clone()
        .expect("capabilities survive the interruption");
    assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 100000);
    assert!(!r.dir().join(shift::INTENT).exists());
    assert!(std::fs::read_to_string(a.lxcpath.join("c1/config"))
        .unwrap()
        .contains("lxc.idmap = u 0 100000 65536"));
}

#[test]
fn non_dir_rootfs_kinds_and_unknown_containers_are_refused() {
    need_root!();
    let a = area();
    let map = IdMap::parse(["b 0 100000 65536"]).unwrap();
    let e = convert(&ContainerRef::new(&a.lxcpath, "nope"), &map).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    std::fs::create_dir_all(a.lxcpath.join("ov/delta0")).unwrap();
    std::fs::write(
        a.lxcpath.join("ov/config"),
        format!(
            "lxc.uts.name = ov\nlxc.rootfs.path = overlay:{}:{}\n",
            a.rootfs.display(),
            a.lxcpath.join("ov/delta0").display()
        ),
    )
    .unwrap();
    let before = snapshot(&a.rootfs);
    let e = convert(&ContainerRef::new(&a.lxcpath, "ov"), &map).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert_eq!(snapshot(&a.rootfs), before);
}

#[test]
fn a_rootfs_its_backend_cannot_shift_in_place_is_refused() {
    need_root!();
    let a = area();
    let up = a.lxcpath.join("c2/delta");
    std::fs::create_dir_all(&up).unwrap();
    for spec in [
        format!("overlay:{}:{}", a.rootfs.display(), up.display()),
        format!("loop:{}", a.lxcpath.join("c2/rootdev").display()),
    ] {
        let cfg = format!("lxc.uts.name = c2\nlxc.rootfs.path = {spec}\n");
        std::fs::write(a.lxcpath.join("c2/config"), &cfg).unwrap();
        let before = snapshot(&a.rootfs);
        let r = ContainerRef::new(&a.lxcpath, "c2");
        let e = convert(&r, &IdMap::parse(["b 0 100000 65536"]).unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{spec}: {e}");
        assert!(e.to_string().contains("cannot be converted in place"), "{spec}: {e}");
        assert_eq!(snapshot(&a.rootfs), before, "{spec}: the tree changed");
        assert_eq!(std::fs::read_to_string(a.lxcpath.join("c2/config")).unwrap(), cfg);
        assert!(!r.dir().join(shift::INTENT).exists());
    }
}
