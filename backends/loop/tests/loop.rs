//! The loop backend with real images, loop devices and mounts, on host
//! filesystems made for the test (xfs and btrfs with reflinks, ext4 without).
//! Root only.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_core::{Backend, BackendOpts, ErrorKind, RootfsSpec, Target};
use strata_testkit::{attached_under, mounts_of, no_leak, sh, LoopFs};
/// One test of this file at a time: each attaches, detaches and mounts loop
/// devices and its fixture's teardown detaches devices by number, so with
/// tests in parallel a number one test let go could be another's a moment
/// later (seen as a mount that stayed, a device "in use", a superblock that
/// could not be read). Held for the whole test, fixtures included.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A host filesystem of `kind` (3 GiB) mounted in its own temporary dir.
fn host_fs(kind: &str) -> LoopFs {
    LoopFs::new(kind, 3 << 30, None, "")
}

struct T {
    name: String,
    lxcpath: PathBuf,
    dir: PathBuf,
    opts: BackendOpts,
}

impl T {
    fn new(lxcpath: &Path, name: &str, fstype: Option<&str>, size: Option<u64>) -> Self {
        T {
            name: name.into(),
            lxcpath: lxcpath.into(),
            dir: lxcpath.join(name),
            opts: BackendOpts {
                fstype: fstype.map(String::from),
                fssize: size,
                ..BackendOpts::default()
            },
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
    strata_loop::backend()
}

fn make(lxc: &Path, name: &str, fstype: Option<&str>, size: Option<u64>) -> RootfsSpec {
    let tt = T::new(lxc, name, fstype, size);
    let spec = b().plan(&tt.t(), None).unwrap();
    std::fs::create_dir_all(&tt.dir).unwrap();
    b().create(&spec, &tt.t()).unwrap();
    spec
}

/// Mount, run `f` on the mounted root, unmount.
fn with_mounted<R>(spec: &RootfsSpec, ro: bool, f: impl FnOnce(&Path) -> R) -> R {
    let m = tempfile::tempdir().unwrap();
    b().mount(spec, m.path(), ro).unwrap();
    struct U<'a>(&'a RootfsSpec, &'a Path);
    impl Drop for U<'_> {
        fn drop(&mut self) {
            strata_loop::backend().umount(self.0, self.1).unwrap();
        }
    }
    let _u = U(spec, m.path());
    f(m.path())
}

#[test]
fn create_mount_umount_each_fstype() {
    let _serial = serial();
    let host = host_fs("ext4");
    let lxc = host.mnt().join("lxc");
    for (fstype, size) in [("ext4", None), ("xfs", Some(300 << 20)), ("btrfs", Some(200 << 20))] {
        let spec = make(&lxc, &format!("c-{fstype}"), Some(fstype), size);
        assert_eq!(spec.to_string(), format!("loop:{}/c-{fstype}/rootdev", lxc.display()));
        let img = spec.path();
        let m = std::fs::metadata(&img).unwrap();
        assert_eq!(m.len(), size.unwrap_or(1 << 30));
        assert!(m.blocks() * 512 < m.len() / 4, "{fstype} image is not sparse");
        assert_eq!(strata_loop::detect_fs(&img).unwrap().0, fstype);
        with_mounted(&spec, false, |p| {
            std::fs::write(p.join("hello"), fstype).unwrap();
            // Attached with direct I/O and 4096-byte blocks, autoclear set.
            let devs = attached_under(&lxc);
            assert_eq!(devs.len(), 1, "{devs:?}");
            let sys = format!("/sys/block/{}", devs[0].trim_start_matches("/dev/"));
            let read = |f: &str| {
                std::fs::read_to_string(format!("{sys}/{f}"))
                    .unwrap()
                    .trim()
                    .to_string()
            };
            assert_eq!(read("loop/dio"), "1");
            assert_eq!(read("loop/autoclear"), "1");
            assert_eq!(read("queue/logical_block_size"), "4096");
        });
        no_leak(&lxc);
        let got = with_mounted(&spec, true, |p| {
            assert!(
                std::fs::write(p.join("other"), "x").is_err(),
                "read-only mount is writable"
            );
            std::fs::read_to_string(p.join("hello")).unwrap()
        });
        assert_eq!(got, fstype);
        no_leak(&lxc);
        b().destroy(&spec).unwrap();
        assert!(!img.exists());
        b().destroy(&spec).unwrap();
    }
}

#[test]
fn a_failed_mount_detaches_its_device() {
    let _serial = serial();
    let host = host_fs("ext4");
    let lxc = host.mnt().join("lxc");
    let spec = make(&lxc, "c1", None, Some(16 << 20));
    let e = b().mount(&spec, &host.mnt().join("no-such-dir"), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    no_leak(&lxc);
}

#[test]
fn bad_options_are_refused_at_plan_time() {
    let _serial = serial();
    let host = host_fs("ext4");
    let lxc = host.mnt().join("lxc");
    for (fstype, size, what) in [
        (Some("vfat"), None, "fstype"),
        (Some("xfs"), Some(100 << 20), "too small"),
        (Some("btrfs"), Some(50 << 20), "too small"),
        (None, Some(4096), "too small"),
    ] {
        let tt = T::new(&lxc, "c1", fstype, size);
        let e = b().plan(&tt.t(), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(what), "{e}");
    }
    assert!(!lxc.exists());
    // LXC's lxc.conf default is honoured and checked too.
    let mut tt = T::new(&lxc, "c1", None, None);
    tt.opts.defaults.insert("lxc.bdev.fssize".into(), "1M".into());
    assert_eq!(b().plan(&tt.t(), None).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(strata_loop::parse_size("1G"), Some(1 << 30));
    assert_eq!(strata_loop::parse_size("500MB"), Some(500 << 20));
    assert_eq!(strata_loop::parse_size("x"), None);
}

#[test]
fn fast_copy_is_sparse_and_both_mount() {
    let _serial = serial();
    // ext4 host: no reflink, so this is the copy_file_range path.
    let host = host_fs("ext4");
    let lxc = host.mnt().join("lxc");
    for fstype in ["ext4", "xfs", "btrfs"] {
        let spec = make(&lxc, &format!("src-{fstype}"), Some(fstype), Some(320 << 20));
        with_mounted(&spec, false, |p| {
            std::fs::write(p.join("data"), vec![9u8; 3 << 20]).unwrap()
        });
        let tt = T::new(&lxc, &format!("dst-{fstype}"), None, None);
        let spec2 = b().plan(&tt.t(), None).unwrap();
        std::fs::create_dir_all(&tt.dir).unwrap();
        assert!(b().fast_copier().unwrap().fast_copy(&spec, &spec2, &tt.t()).unwrap());
        let (m1, m2) = (
            std::fs::metadata(spec.path()).unwrap(),
            std::fs::metadata(spec2.path()).unwrap(),
        );
        assert_eq!(m1.len(), m2.len());
        // Sparse: no more allocated than the source, far less than its size.
        assert!(
            m2.blocks() <= m1.blocks() + 64,
            "copy is not sparse: {} vs {} blocks",
            m2.blocks(),
            m1.blocks()
        );
        assert!(
            m2.blocks() * 512 < m2.len() / 2,
            "copy is not sparse: {} blocks",
            m2.blocks()
        );
        // Own filesystem UUID where the kernel refuses duplicates, and both mount at once.
        let uuid = |p: &Path| sh(&["blkid", "-p", "-s", "UUID", "-o", "value", p.to_str().unwrap()]);
        if fstype != "ext4" {
            assert_ne!(uuid(&spec.path()), uuid(&spec2.path()), "{fstype}");
        }
        with_mounted(&spec, true, |a| {
            with_mounted(&spec2, false, |c| {
                assert_eq!(
                    std::fs::read(c.join("data")).unwrap(),
                    std::fs::read(a.join("data")).unwrap()
                );
                std::fs::write(c.join("data"), "changed").unwrap();
            })
        });
        with_mounted(&spec, true, |a| {
            assert_eq!(std::fs::read(a.join("data")).unwrap().len(), 3 << 20)
        });
        // Another size or fstype: not possible, nothing made.
        let other = if fstype == "btrfs" { "ext4" } else { "btrfs" };
        for (fs, size) in [(None, Some(400 << 20)), (Some(other), None)] {
            let tt = T::new(&lxc, "other", fs, size);
            let spec3 = b().plan(&tt.t(), None).unwrap();
            std::fs::create_dir_all(&tt.dir).unwrap();
            assert!(!b().fast_copier().unwrap().fast_copy(&spec, &spec3, &tt.t()).unwrap());
            assert!(!spec3.path().exists());
        }
    }
    no_leak(&lxc);
}

fn reflink_snapshot_on(host_kind: &str) {
    let host = host_fs(host_kind);
    let lxc = host.mnt().join("lxc");
    let spec = make(&lxc, "c1", Some("xfs"), Some(300 << 20));
    with_mounted(&spec, false, |p| {
        std::fs::write(p.join("data"), vec![3u8; 8 << 20]).unwrap()
    });
    let s = b();
    let snap = s.snapshotter().unwrap();
    assert!(snap.can_snapshot(&spec));
    let tt = T::new(&lxc, "c2", None, None);
    let spec2 = s.plan(&tt.t(), Some(&spec)).unwrap();
    std::fs::create_dir_all(&tt.dir).unwrap();
    snap.snapshot(&spec, &spec2, &tt.t(), false).unwrap();
    // Extents are shared now: the data written before the snapshot is not
    // counted as the clone's own.
    let u = s.usage_reporter().unwrap().usage(&spec2).unwrap();
    let rf = std::fs::metadata(spec2.path()).unwrap().blocks() * 512;
    assert_eq!(u.referenced, Some(rf));
    let ex = u.exclusive.unwrap();
    assert!(ex + (8 << 20) <= rf, "exclusive {ex} of {rf}");
    with_mounted(&spec, true, |a| {
        with_mounted(&spec2, false, |c| {
            assert_eq!(std::fs::read(c.join("data")).unwrap(), vec![3u8; 8 << 20]);
            std::fs::write(c.join("data"), "mine").unwrap();
            assert_eq!(std::fs::read(a.join("data")).unwrap().len(), 8 << 20);
        })
    });
    no_leak(&lxc);
}

#[test]
fn reflink_snapshot_on_xfs_host() {
    let _serial = serial();
    reflink_snapshot_on("xfs");
}

#[test]
fn reflink_snapshot_on_btrfs_host() {
    let _serial = serial();
    reflink_snapshot_on("btrfs");
}

#[test]
fn snapshot_refused_on_ext4_host() {
    let _serial = serial();
    let host = host_fs("ext4");
    let lxc = host.mnt().join("lxc");
    let spec = make(&lxc, "c1", None, Some(16 << 20));
    assert!(!b().snapshotter().unwrap().can_snapshot(&spec));
    // No reflinks here: what the image holds is all its own.
    let u = b().usage_reporter().unwrap().usage(&spec).unwrap();
    let allocated = std::fs::metadata(spec.path()).unwrap().blocks() * 512;
    assert_eq!((u.exclusive, u.referenced), (Some(allocated), Some(allocated)));
    let tt = T::new(&lxc, "c2", None, None);
    let e = b().plan(&tt.t(), Some(&spec)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("needs a host filesystem with reflinks"), "{e}");
    assert!(e.to_string().contains("ext4"), "{e}");
    assert!(!tt.dir.exists());
    let names: Vec<_> = std::fs::read_dir(&lxc)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("c1")],
        "probe left something behind"
    );
}

#[test]
fn legacy_ioctls_attach_with_autoclear_too() {
    let _serial = serial();
    let host = host_fs("ext4");
    let lxc = host.mnt().join("lxc");
    let spec = make(&lxc, "c1", None, Some(16 << 20));
    for legacy in [true, false] {
        let dev = strata_loop::dev::attach_with(&spec.path(), false, 4096, legacy).unwrap();
        let sys = format!("/sys/block/{}", dev.path.file_name().unwrap().to_str().unwrap());
        let read = |f: &str| {
            std::fs::read_to_string(format!("{sys}/{f}"))
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(read("loop/autoclear"), "1", "legacy={legacy}");
        assert_eq!(read("queue/logical_block_size"), "4096", "legacy={legacy}");
        assert_eq!(read("loop/dio"), "1", "legacy={legacy}");
        assert_eq!(attached_under(&lxc), [dev.path.display().to_string()]);
        // Dropped without a mount: detached at once.
        dev.detach();
        no_leak(&lxc);
    }
}

#[test]
fn concurrent_attaches_each_get_their_own_device() {
    let _serial = serial();
    // Threads race for the same free device: the losers claim another.
    let host = host_fs("ext4");
    let lxc = host.mnt().join("lxc");
    let specs: Vec<_> = (0..6)
        .map(|i| make(&lxc, &format!("c{i}"), None, Some(8 << 20)))
        .collect();
    let barrier = std::sync::Barrier::new(specs.len());
    let devs: Vec<_> = std::thread::scope(|sc| {
        let hs: Vec<_> = specs
            .iter()
            .map(|s| {
                let barrier = &barrier;
                sc.spawn(move || {
                    barrier.wait();
                    strata_loop::dev::attach(&s.path(), true, 4096).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut paths: Vec<_> = devs.iter().map(|d| d.path.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), specs.len());
    for (d, s) in devs.iter().zip(&specs) {
        assert_eq!(strata_loop::dev::backing_file(&d.path).unwrap(), s.path());
    }
    drop(devs);
    no_leak(&lxc);
}

#[test]
fn a_copy_takes_its_edit_through_the_device_it_was_made_with() {
    let _serial = serial();
    // ext4 host, ext4 image: the copy_file_range path, with a device ready.
    let host = host_fs("ext4");
    let lxc = host.mnt().join("lxc");
    let spec = make(&lxc, "src", None, Some(64 << 20));
    with_mounted(&spec, false, |p| {
        std::fs::create_dir(p.join("etc")).unwrap();
        std::fs::write(p.join("etc/hostname"), "src\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", p.join("etc/mailname")).unwrap();
        std::fs::write(p.join("data"), vec![7u8; 5 << 20]).unwrap();
    });
    let be = b();
    let copy = |name: &str| {
        let tt = T::new(&lxc, name, None, None);
        let s = be.plan(&tt.t(), None).unwrap();
        std::fs::create_dir_all(&tt.dir).unwrap();
        assert!(be.fast_copier().unwrap().fast_copy(&spec, &s, &tt.t()).unwrap());
        s
    };
    let spec2 = copy("c2");
    // Some(true) through the prepared device; None sends the engine to its
    // own mount, which then finds the file.
    match be.write_if_regular_unmounted(&spec2, "etc/hostname", b"c2\n").unwrap() {
        Some(true) => {}
        None => with_mounted(&spec2, false, |p| {
            std::fs::write(p.join("etc/hostname"), "c2\n").unwrap();
        }),
        Some(false) => panic!("the copy's hostname was not found"),
    }
    no_leak(&lxc);
    // A symlink in the rootfs is not written through.
    let host_hostname = std::fs::read("/etc/hostname").ok();
    let spec3 = copy("c3");
    // Not written through the device: the engine's own (symlink-safe) path decides.
    assert_eq!(
        be.write_if_regular_unmounted(&spec3, "etc/mailname", b"evil\n")
            .unwrap(),
        None
    );
    assert_eq!(std::fs::read("/etc/hostname").ok(), host_hostname);
    no_leak(&lxc);
    // Nothing prepared any more: the engine is told to mount instead.
    assert_eq!(
        be.write_if_regular_unmounted(&spec2, "etc/hostname", b"x\n").unwrap(),
        None
    );
    for s in [&spec2, &spec3] {
        let out = Command::new("e2fsck").args(["-fn"]).arg(s.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
    assert_eq!(
        with_mounted(&spec2, true, |p| std::fs::read_to_string(p.join("etc/hostname"))
            .unwrap()),
        "c2\n"
    );
    with_mounted(&spec2, true, |p| {
        assert_eq!(std::fs::read(p.join("data")).unwrap(), vec![7u8; 5 << 20])
    });
    assert_eq!(
        with_mounted(&spec, true, |p| std::fs::read_to_string(p.join("etc/hostname"))
            .unwrap()),
        "src\n"
    );
    // A copy nobody edits (lxc-snapshot keeps the name) keeps no device once the backend goes.
    copy("c4");
    drop(be);
    no_leak(&lxc);
}

/// What a killed process left: a mount of the image at a scratch mount
/// point, and a device bound to the image without autoclear (then the image
/// deleted). `release` unmounts, detaches, and leaves a device in use alone.
#[test]
fn release_unmounts_and_detaches_what_a_killed_process_held() {
    let _serial = serial();
    strata_testkit::need_root!();
    let host = host_fs("ext4");
    let lxc = host.mnt().join("lxc");
    let spec = make(&lxc, "c1", Some("ext4"), Some(64 << 20));
    let image = spec.path();
    // Mounted, as a killed copy leaves it; a second device bound by hand, no autoclear.
    let mnt = strata_core::scratch::ScratchMount::new(&spec.to_string()).unwrap();
    b().mount(&spec, mnt.path(), false).unwrap();
    let _bound = sh(&["losetup", "-f", "--show", image.to_str().unwrap()]);
    assert_eq!(attached_under(host.mnt()).len(), 2);
    b().release(&spec, mnt.path()).unwrap();
    assert!(!strata_core::scratch::is_mount_point(mnt.path()));
    no_leak(host.mnt());
    drop(mnt);
    // Bound to an image deleted since: found by "IMAGE (deleted)".
    let bound2 = sh(&["losetup", "-f", "--show", image.to_str().unwrap()]);
    std::fs::remove_file(&image).unwrap();
    assert_eq!(
        strata_loop::dev::detach_unused(&image),
        vec![PathBuf::from(bound2.trim())]
    );
    no_leak(host.mnt());
    // One in use (mounted) is left alone.
    let spec = make(&lxc, "c2", Some("ext4"), Some(64 << 20));
    with_mounted(&spec, false, |_| {
        assert!(strata_loop::dev::detach_unused(&spec.path()).is_empty());
        assert_eq!(attached_under(host.mnt()).len(), 1);
    });
    no_leak(host.mnt());
}

/// A mount of an image whose previous mount still lives in another mount
/// namespace (a container started at that moment copies the host's mounts)
/// waits for it to end instead of making a second live filesystem on the
/// same image; an image mounted here is refused at once.
#[test]
fn a_mount_never_makes_a_second_live_filesystem_on_one_image() {
    let _serial = serial();
    let host = host_fs("ext4");
    let lxc = host.mnt().join("lxc");
    let spec = make(&lxc, "twice", Some("ext4"), None);
    let img = spec.path();
    let m1 = tempfile::tempdir().unwrap();
    b().mount(&spec, m1.path(), false).unwrap();
    std::fs::write(m1.path().join("file"), "data").unwrap();
    // Mounted here: a second mount is refused at once, nothing attached.
    let m2 = tempfile::tempdir().unwrap();
    let e = b().mount(&spec, m2.path(), true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(e.to_string().contains("in use"), "{e}");
    assert_eq!(attached_under(&img).len(), 1);
    // A copy of this mount namespace holds the filesystem for a second.
    let mut holder = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sleep", "1"])
        .spawn()
        .unwrap();
    let m1s = m1.path().display().to_string();
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(format!("/proc/{}/mountinfo", holder.id()))
        .is_ok_and(|m| m.contains(&m1s) && !m.contains("/sleep"))
        || std::fs::read_link(format!("/proc/{}/exe", holder.id())).is_ok_and(|e| !e.ends_with("sleep"))
    {
        assert!(t0.elapsed().as_secs() < 30, "the holder never got its namespace");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    b().umount(&spec, m1.path()).unwrap();
    // Still bound: the holder's copy keeps the filesystem alive.
    assert_eq!(attached_under(&img).len(), 1, "the holder did not pin the filesystem");
    with_mounted(&spec, true, |root| {
        assert!(
            holder.try_wait().unwrap().is_some(),
            "mounted while another namespace still held it"
        );
        assert_eq!(std::fs::read_to_string(root.join("file")).unwrap(), "data");
        assert_eq!(attached_under(&img).len(), 1, "two devices on one image");
    });
    holder.wait().unwrap();
    no_leak(&img);
}

/// A test that fails while an image of its host filesystem is mounted on a
/// temporary dir of its own leaves nothing behind: the fixture's teardown
/// unmounts that mount too, so the image's device and the host filesystem's
/// go (a failed run once left such a mount and two devices on the host).
#[test]
fn a_failed_test_leaves_no_mount_of_its_images() {
    let _serial = serial();
    let host = host_fs("ext4");
    let lxc = host.mnt().join("lxc");
    let spec = make(&lxc, "left", Some("ext4"), None);
    let m = tempfile::tempdir().unwrap();
    b().mount(&spec, m.path(), false).unwrap();
    let devs = attached_under(host.mnt());
    assert_eq!(devs.len(), 1, "{devs:?}");
    assert_eq!(mounts_of(&devs), vec![m.path().to_path_buf()]);
    let img = host.img();
    let mut all = devs.clone();
    all.push(host.dev().to_string());
    // As a panic unwinds: the fixture goes while the image is still mounted.
    drop(host);
    assert_eq!(mounts_of(&devs), Vec::<PathBuf>::new(), "the image stayed mounted");
    // Both devices let go (a device kept by a mount that outlived its
    // filesystem's own mount shows its file by a path that no longer
    // starts with the fixture's dir: asked by device, not by path).
    let bound = || -> Vec<&String> {
        all.iter()
            .filter(|d| {
                Path::new("/sys/block")
                    .join(d.trim_start_matches("/dev/"))
                    .join("loop")
                    .exists()
            })
            .collect()
    };
    for _ in 0..200 {
        if bound().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(bound(), Vec::<&String>::new(), "loop devices left attached");
    assert!(!img.exists());
}
