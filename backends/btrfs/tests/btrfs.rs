//! The btrfs backend on a real btrfs filesystem (a sparse image on a loop
//! device, made and torn down per test). Root only.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_core::{Backend, BackendOpts, ErrorKind, RootfsSpec, Target};
use strata_testkit::{sh, LoopFs};

/// A btrfs of 512 MiB mounted in its own temporary dir.
fn btrfs() -> LoopFs {
    LoopFs::new("btrfs", 512 << 20, None, "")
}

struct T {
    name: String,
    lxcpath: PathBuf,
    dir: PathBuf,
    opts: BackendOpts,
}

impl T {
    fn new(lxcpath: &Path, name: &str) -> Self {
        T {
            name: name.into(),
            lxcpath: lxcpath.into(),
            dir: lxcpath.join(name),
            opts: BackendOpts::default(),
        }
    }
    fn t(&self) -> Target<'_> {
        Target {
            name: &self.name,
            lxcpath: &self.lxcpath,
            dir: &self.dir,
            build_dir: &self.dir,
            opts: &self.opts,
        }
    }
}

fn b() -> std::sync::Arc<dyn Backend> {
    strata_btrfs::backend()
}

fn new_rootfs(lxc: &Path, name: &str) -> RootfsSpec {
    let tt = T::new(lxc, name);
    let spec = b().plan(&tt.t(), None).unwrap();
    b().create(&spec, &tt.t()).unwrap();
    spec
}

fn subvol_list(mnt: &Path) -> String {
    sh(&["btrfs", "subvolume", "list", "-o", mnt.to_str().unwrap()])
}

#[test]
fn create_snapshot_destroy() {
    let fs = btrfs();
    let lxc = fs.mnt().join("lxc");
    let spec = new_rootfs(&lxc, "c1");
    assert_eq!(spec.to_string(), format!("btrfs:{}/c1/rootfs", lxc.display()));
    let root = spec.path();
    assert!(strata_btrfs::is_subvolume(&root));
    assert_eq!(std::fs::metadata(&root).unwrap().mode() & 0o7777, 0o755);
    assert!(b().exists(&spec));
    std::fs::write(root.join("hello"), "world").unwrap();

    let bk = b();
    let s = bk.snapshotter().unwrap();
    assert!(s.can_snapshot(&spec));
    // A writable snapshot.
    let tt = T::new(&lxc, "c2");
    let spec2 = b().plan(&tt.t(), Some(&spec)).unwrap();
    std::fs::create_dir_all(&tt.dir).unwrap();
    s.snapshot(&spec, &spec2, &tt.t(), false).unwrap();
    assert!(strata_btrfs::is_subvolume(&spec2.path()));
    assert_eq!(std::fs::read_to_string(spec2.path().join("hello")).unwrap(), "world");
    std::fs::write(spec2.path().join("hello"), "changed").unwrap();
    assert_eq!(std::fs::read_to_string(root.join("hello")).unwrap(), "world");

    // A read-only snapshot (lxc-snapshot).
    let tt3 = T::new(&lxc, "snap0");
    let spec3 = b().plan(&tt3.t(), Some(&spec)).unwrap();
    std::fs::create_dir_all(&tt3.dir).unwrap();
    s.snapshot(&spec, &spec3, &tt3.t(), true).unwrap();
    let e = std::fs::write(spec3.path().join("new"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let show = sh(&["btrfs", "property", "get", spec3.path().to_str().unwrap(), "ro"]);
    assert_eq!(show.trim(), "ro=true");

    // Destroy: writable, read-only, and again (already gone).
    for sp in [&spec2, &spec3, &spec] {
        b().destroy(sp).unwrap();
        assert!(!sp.path().exists());
        b().destroy(sp).unwrap();
    }
    assert_eq!(subvol_list(fs.mnt()).trim(), "");
}

#[test]
fn nested_subvolumes_are_snapshotted_and_destroyed() {
    let fs = btrfs();
    let lxc = fs.mnt().join("lxc");
    let spec = new_rootfs(&lxc, "c1");
    let root = spec.path();
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    sh(&[
        "btrfs",
        "subvolume",
        "create",
        root.join("var/lib/machines").to_str().unwrap(),
    ]);
    sh(&[
        "btrfs",
        "subvolume",
        "create",
        root.join("var/lib/machines/inner").to_str().unwrap(),
    ]);
    std::fs::write(root.join("var/lib/machines/inner/f"), "deep").unwrap();
    std::fs::write(root.join("var/lib/machines/g"), "mid").unwrap();
    assert_eq!(
        strata_btrfs::nested_subvolumes(&root).unwrap(),
        vec![
            PathBuf::from("var/lib/machines"),
            PathBuf::from("var/lib/machines/inner")
        ]
    );
    // The root tree search (root) and the walk (other users) agree.
    std::fs::create_dir_all(root.join("srv/a b")).unwrap();
    sh(&[
        "btrfs",
        "subvolume",
        "create",
        root.join("srv/a b/sv").to_str().unwrap(),
    ]);
    sh(&["btrfs", "subvolume", "create", root.join("top").to_str().unwrap()]);
    let mut searched = strata_btrfs::nested_subvolumes(&root).unwrap();
    let mut walked = strata_btrfs::nested_subvolumes_walk(&root).unwrap();
    assert_eq!(searched.len(), 4, "{searched:?}");
    searched.sort();
    walked.sort();
    assert_eq!(searched, walked);

    for ro in [false, true] {
        let name = if ro { "snap" } else { "clone" };
        let tt = T::new(&lxc, name);
        let spec2 = b().plan(&tt.t(), Some(&spec)).unwrap();
        std::fs::create_dir_all(&tt.dir).unwrap();
        b().snapshotter().unwrap().snapshot(&spec, &spec2, &tt.t(), ro).unwrap();
        let r2 = spec2.path();
        assert!(strata_btrfs::is_subvolume(&r2.join("var/lib/machines/inner")));
        assert_eq!(
            std::fs::read_to_string(r2.join("var/lib/machines/inner/f")).unwrap(),
            "deep"
        );
        assert_eq!(std::fs::read_to_string(r2.join("var/lib/machines/g")).unwrap(), "mid");
        assert!(strata_btrfs::is_subvolume(&r2.join("srv/a b/sv")) && strata_btrfs::is_subvolume(&r2.join("top")));
        let e = std::fs::write(r2.join("var/lib/machines/inner/new"), "x");
        assert_eq!(e.is_err(), ro, "nested snapshot read-only iff the snapshot is");
        b().destroy(&spec2).unwrap();
        assert!(!r2.exists());
    }
    b().destroy(&spec).unwrap();
    assert_eq!(subvol_list(fs.mnt()).trim(), "");
}

#[test]
fn fast_copy_is_a_snapshot_on_the_same_filesystem() {
    let fs = btrfs();
    let lxc = fs.mnt().join("lxc");
    let spec = new_rootfs(&lxc, "c1");
    std::fs::write(spec.path().join("data"), vec![7u8; 1 << 20]).unwrap();
    let tt = T::new(&lxc, "c2");
    let spec2 = b().plan(&tt.t(), None).unwrap();
    std::fs::create_dir_all(&tt.dir).unwrap();
    assert!(b().fast_copier().unwrap().fast_copy(&spec, &spec2, &tt.t()).unwrap());
    assert!(strata_btrfs::is_subvolume(&spec2.path()));
    assert_eq!(std::fs::read(spec2.path().join("data")).unwrap(), vec![7u8; 1 << 20]);
    // A different btrfs: not possible, nothing made.
    let other = btrfs();
    let tt3 = T::new(&other.mnt().join("lxc"), "c3");
    let spec3 = b().plan(&tt3.t(), None).unwrap();
    std::fs::create_dir_all(&tt3.dir).unwrap();
    assert!(!b().fast_copier().unwrap().fast_copy(&spec, &spec3, &tt3.t()).unwrap());
    assert!(!spec3.path().exists());
    // And a snapshot across filesystems is refused at plan time.
    let e = b().plan(&tt3.t(), Some(&spec)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

#[test]
fn usage_unknown_without_quotas_and_from_qgroups_with() {
    let fs = btrfs();
    let lxc = fs.mnt().join("lxc");
    let spec = new_rootfs(&lxc, "c1");
    std::fs::write(spec.path().join("data"), vec![1u8; 4 << 20]).unwrap();
    // Without quotas: what a walk finds, nothing known to be exclusive.
    let u = b().usage_reporter().unwrap().usage(&spec).unwrap();
    assert_eq!(u.exclusive, None);
    let rf = u.referenced.unwrap();
    assert!((4 << 20..5 << 20).contains(&rf), "walked {rf}");

    sh(&["btrfs", "quota", "enable", fs.mnt().to_str().unwrap()]);
    sh(&["btrfs", "quota", "rescan", "-w", fs.mnt().to_str().unwrap()]);
    let u = b().usage_reporter().unwrap().usage(&spec).unwrap();
    let (ex, rf) = (u.exclusive.unwrap(), u.referenced.unwrap());
    assert!((4 << 20..5 << 20).contains(&rf), "referenced {rf}");
    assert!(ex >= 4 << 20, "exclusive {ex}");

    // After a snapshot the data is shared: exclusive drops, referenced stays.
    let tt = T::new(&lxc, "snap");
    let spec2 = b().plan(&tt.t(), Some(&spec)).unwrap();
    std::fs::create_dir_all(&tt.dir).unwrap();
    b().snapshotter()
        .unwrap()
        .snapshot(&spec, &spec2, &tt.t(), true)
        .unwrap();
    let u = b().usage_reporter().unwrap().usage(&spec).unwrap();
    assert!(u.referenced.unwrap() >= 4 << 20);
    assert!(
        u.exclusive.unwrap() < 1 << 20,
        "exclusive after snapshot {:?}",
        u.exclusive
    );
    let u2 = b().usage_reporter().unwrap().usage(&spec2).unwrap();
    assert!(u2.referenced.unwrap() >= 4 << 20);
}

#[test]
fn plan_refuses_a_path_not_on_btrfs() {
    let t = tempfile::Builder::new()
        .prefix("strata-notbtrfs")
        .tempdir_in("/var/tmp")
        .unwrap();
    let fs_type = sh(&["stat", "-f", "-c", "%T", t.path().to_str().unwrap()]);
    assert_ne!(fs_type.trim(), "btrfs", "this test needs /var/tmp not on btrfs");
    let lxc = t.path().join("lxc");
    let tt = T::new(&lxc, "c1");
    let e = b().plan(&tt.t(), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("not on a btrfs filesystem"), "{e}");
    assert!(!lxc.exists(), "plan made something");
}

#[test]
fn bind_mount_read_only() {
    let fs = btrfs();
    let spec = new_rootfs(&fs.mnt().join("lxc"), "c1");
    std::fs::write(spec.path().join("f"), "x").unwrap();
    let m = fs.mnt().join("m");
    std::fs::create_dir(&m).unwrap();
    b().mount(&spec, &m, true).unwrap();
    assert_eq!(std::fs::read_to_string(m.join("f")).unwrap(), "x");
    assert!(std::fs::write(m.join("g"), "y").is_err());
    b().umount(&spec, &m).unwrap();
    assert!(!m.join("f").exists());
}

/// Runs `destroy_tree` in a child process of this test binary as another user.
#[test]
fn child_destroy() {
    let Some(p) = std::env::var_os("STRATA_BTRFS_CHILD_DESTROY") else {
        return;
    };
    match strata_btrfs::destroy_tree(Path::new(&p)) {
        Ok(()) => println!("RESULT ok"),
        Err(e) => println!("RESULT {:?} {e}", e.kind()),
    }
}

#[test]
fn non_root_destroy_needs_user_subvol_rm_allowed() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let fs = btrfs();
    let nobody = 65534;
    // The user must reach the filesystem and run a copy of this binary.
    let mut p = fs.mnt();
    while let Some(parent) = p.parent() {
        if p.starts_with("/var/tmp") && p != Path::new("/var/tmp") {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        p = parent;
    }
    let exe = fs.mnt().parent().unwrap().join("test-bin");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = fs.mnt().join("u");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(nobody), Some(nobody)).unwrap();
    let sv = home.join("rootfs");
    sh(&["btrfs", "subvolume", "create", sv.to_str().unwrap()]);
    sh(&["btrfs", "subvolume", "create", sv.join("nested").to_str().unwrap()]);
    for q in [&sv, &sv.join("nested")] {
        std::os::unix::fs::chown(q, Some(nobody), Some(nobody)).unwrap();
    }
    // A lone read-only one, as lxc-snapshot leaves it: a user cannot delete it so.
    let ro = home.join("snap");
    sh(&["btrfs", "subvolume", "create", ro.to_str().unwrap()]);
    std::os::unix::fs::chown(&ro, Some(nobody), Some(nobody)).unwrap();
    sh(&["btrfs", "property", "set", "-ts", ro.to_str().unwrap(), "ro", "true"]);
    let child_at = |p: &Path| {
        let out = Command::new(&exe)
            .args(["--exact", "child_destroy", "--nocapture", "--test-threads=1"])
            .env("STRATA_BTRFS_CHILD_DESTROY", p)
            .uid(nobody)
            .gid(nobody)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.split_once("RESULT ").map(|x| x.1))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string()
    };
    let child = || child_at(&sv);
    let r = child();
    assert!(r.starts_with("PermissionDenied"), "{r}");
    assert!(r.contains("user_subvol_rm_allowed"), "{r}");
    assert!(strata_btrfs::is_subvolume(&sv.join("nested")));
    sh(&[
        "mount",
        "-o",
        "remount,user_subvol_rm_allowed",
        fs.mnt().to_str().unwrap(),
    ]);
    assert_eq!(child(), "ok");
    assert!(!sv.exists());
    assert_eq!(child_at(&ro), "ok");
    assert!(!ro.exists());
}
