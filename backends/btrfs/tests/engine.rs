//! The engine with the btrfs backend on a real btrfs filesystem: create,
//! snapshot and copy clones, lxc-snapshot create/restore/destroy. Root only.

use std::path::{Path, PathBuf};
use strata_core::engine::{CloneRequest, CreateRequest, DestroyRequest, Engine, RootfsSource};
use strata_core::{Backends, ContainerRef, ErrorKind, Store};
use strata_testkit::{sh, LoopFs};

/// A btrfs of 512 MiB mounted in its own temporary dir.
fn btrfs() -> LoopFs {
    LoopFs::new("btrfs", 512 << 20, None, "")
}

fn engine() -> Engine {
    if std::env::var_os("STRATA_RUN_DIR").is_none() {
        std::env::set_var("STRATA_RUN_DIR", std::env::temp_dir().join("strata-engine-tests-run"));
    }
    let mut b = Backends::new();
    b.register(strata_dir::backend());
    b.register(strata_btrfs::backend());
    Engine::new(b)
}

fn tree(dir: &Path) {
    for d in ["etc", "bin", "var/log"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("etc/hostname"), "orig\n").unwrap();
    std::fs::write(dir.join("etc/os-release"), "ID=test\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("bin/abs")).unwrap();
}

fn create(e: &Engine, fs: &LoopFs, name: &str) -> ContainerRef {
    let src = fs.dir().join("tree");
    if !src.exists() {
        tree(&src);
    }
    let lxc = fs.mnt().join("lxc");
    e.create(&CreateRequest {
        lxcpath: lxc.clone(),
        name: name.into(),
        backend: Some("btrfs".into()),
        source: RootfsSource::Dir(src),
        ..Default::default()
    })
    .unwrap();
    ContainerRef::new(&lxc, name)
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

fn show(p: &Path, field: &str) -> String {
    let out = sh(&["btrfs", "subvolume", "show", p.to_str().unwrap()]);
    let line = out.lines().find(|l| l.trim_start().starts_with(field)).unwrap();
    line.trim_start()[field.len()..].trim().to_string()
}

fn subvolumes(fs: &LoopFs) -> Vec<String> {
    let out = sh(&["btrfs", "subvolume", "list", "-o", fs.mnt().to_str().unwrap()]);
    out.lines()
        .filter_map(|l| l.split(" path ").nth(1))
        .map(String::from)
        .collect()
}

#[test]
fn create_and_clone_are_subvolumes_with_nested_ones() {
    let e = engine();
    let fs = btrfs();
    let r = create(&e, &fs, "c1");
    let root = r.dir().join("rootfs");
    assert!(strata_btrfs::is_subvolume(&root));
    let c = Store::new(&r.lxcpath).load("c1").unwrap();
    assert_eq!(c.rootfs.to_string(), format!("btrfs:{}", root.display()));
    sh(&[
        "btrfs",
        "subvolume",
        "create",
        root.join("var/lib-machines").to_str().unwrap(),
    ]);
    std::fs::write(root.join("var/lib-machines/m"), "machine").unwrap();

    for (name, snapshot) in [("snapclone", true), ("copyclone", false)] {
        e.clone_container(&CloneRequest {
            src: r.clone(),
            dst: ContainerRef::new(&r.lxcpath, name),
            snapshot,
            ..Default::default()
        })
        .unwrap();
        let croot = r.lxcpath.join(name).join("rootfs");
        assert!(strata_btrfs::is_subvolume(&croot), "{name}");
        assert!(strata_btrfs::is_subvolume(&croot.join("var/lib-machines")), "{name}");
        assert_eq!(read(croot.join("var/lib-machines/m")), "machine");
        assert_eq!(read(croot.join("etc/hostname")), format!("{name}\n"));
        assert_eq!(read(root.join("etc/hostname")), "orig\n");
        assert_eq!(
            std::fs::read_link(croot.join("bin/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        // A snapshot of c1's subvolume (a copy within one btrfs too), not a file copy.
        assert_eq!(show(&croot, "Parent UUID:"), show(&root, "UUID:"), "{name}");
    }
    for n in ["snapclone", "copyclone", "c1"] {
        e.destroy(&DestroyRequest {
            r: ContainerRef::new(&r.lxcpath, n),
            ..Default::default()
        })
        .unwrap();
    }
    assert_eq!(subvolumes(&fs), Vec::<String>::new());
    assert!(std::fs::read_dir(&r.lxcpath).unwrap().next().is_none());
}

#[test]
fn lxc_snapshot_create_restore_any_destroy() {
    let e = engine();
    let fs = btrfs();
    let r = create(&e, &fs, "c1");
    let root = r.dir().join("rootfs");
    assert_eq!(e.snapshot(&r, None).unwrap(), "snap0");
    std::fs::write(root.join("etc/os-release"), "ID=second\n").unwrap();
    assert_eq!(e.snapshot(&r, None).unwrap(), "snap1");
    std::fs::write(root.join("etc/os-release"), "ID=third\n").unwrap();
    let snaps = e.snapshots(&r).unwrap();
    assert_eq!(snaps.len(), 2);
    for s in &snaps {
        assert_eq!(s.rootfs.kind(), "btrfs");
        let p = s.rootfs.path();
        assert!(strata_btrfs::is_subvolume(&p));
        assert_eq!(
            sh(&["btrfs", "property", "get", p.to_str().unwrap(), "ro"]).trim(),
            "ro=true",
            "lxc-snapshot snapshots are read-only"
        );
    }
    // Restore the older one: newer snapshots stay.
    e.restore(&r, "snap0", None).unwrap();
    assert_eq!(read(root.join("etc/os-release")), "ID=test\n");
    assert!(strata_btrfs::is_subvolume(&root));
    std::fs::write(root.join("etc/os-release"), "ID=writable\n").unwrap();
    assert_eq!(e.snapshots(&r).unwrap().len(), 2);
    e.restore(&r, "snap1", None).unwrap();
    assert_eq!(read(root.join("etc/os-release")), "ID=second\n");
    // Restore under a new name.
    e.restore(&r, "snap0", Some("c1b")).unwrap();
    assert_eq!(read(r.lxcpath.join("c1b/rootfs/etc/os-release")), "ID=test\n");
    // Old rootfs are gone: c1, c1b and the two snapshots remain.
    assert_eq!(subvolumes(&fs).len(), 4, "{:?}", subvolumes(&fs));

    e.destroy_snapshot(&r, "snap0").unwrap();
    assert_eq!(e.snapshots(&r).unwrap().len(), 1);
    let err = e
        .destroy(&DestroyRequest {
            r: r.clone(),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HasDependents);
    e.destroy(&DestroyRequest {
        r: r.clone(),
        with_snapshots: true,
        ..Default::default()
    })
    .unwrap();
    e.destroy(&DestroyRequest {
        r: ContainerRef::new(&r.lxcpath, "c1b"),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(subvolumes(&fs), Vec::<String>::new());
}

#[test]
fn create_on_a_non_btrfs_lxcpath_is_refused_with_nothing_made() {
    let e = engine();
    let t = tempfile::Builder::new()
        .prefix("strata-btrfs-no")
        .tempdir_in("/var/tmp")
        .unwrap();
    let lxc = t.path().join("lxc");
    std::fs::create_dir(&lxc).unwrap();
    let err = e
        .create(&CreateRequest {
            lxcpath: lxc.clone(),
            name: "c1".into(),
            backend: Some("btrfs".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("not on a btrfs filesystem"), "{err}");
    assert!(std::fs::read_dir(&lxc).unwrap().next().is_none());
}

/// Whether inode `ino`'s item in the last committed tree of `fs`'s top
/// subvolume (read from the disk, not through the mount) says `size` bytes,
/// with inline data of that size.
fn committed_with_inline_data(fs: &LoopFs, ino: u64, size: usize) -> bool {
    // The backing file holds what the filesystem wrote to its device (the
    // loop device is buffered); asking the device itself would sync first.
    let img = fs.img();
    let dump = sh(&[
        "btrfs",
        "inspect-internal",
        "dump-tree",
        "-t",
        "5",
        img.to_str().unwrap(),
    ]);
    let lines: Vec<&str> = dump.lines().collect();
    let after = |key: &str, want: &str| {
        lines
            .iter()
            .position(|l| l.contains(key))
            .is_some_and(|i| lines[i + 1..(i + 3).min(lines.len())].iter().any(|l| l.contains(want)))
    };
    // The item itself, not a directory entry's location key.
    after(&format!("key ({ino} INODE_ITEM 0) itemoff"), &format!(" size {size} "))
        && after(
            &format!("key ({ino} EXTENT_DATA 0) itemoff"),
            &format!("inline extent data size {size} "),
        )
}

#[test]
fn files_written_with_a_snapshot_are_in_the_tree_it_committed() {
    use std::os::unix::fs::MetadataExt;
    // A snapshot commits the transaction: the clone's config and a snapshot's
    // config and timestamp, written before it, are on disk with it, no fsync
    // of their own needed.
    let e = engine();
    let fs = btrfs();
    let r = create(&e, &fs, "c1");
    let c2 = ContainerRef::new(&r.lxcpath, "c2");
    let on_disk = |files: &[PathBuf]| {
        for f in files {
            let (ino, len) = (std::fs::metadata(f).unwrap().ino(), read(f).len());
            assert!(
                committed_with_inline_data(&fs, ino, len),
                "{} ({len} bytes) is not in the committed tree",
                f.display()
            );
        }
    };
    e.clone_container(&CloneRequest {
        src: r.clone(),
        dst: c2.clone(),
        snapshot: true,
        ..Default::default()
    })
    .unwrap();
    on_disk(&[c2.dir().join("config")]);
    assert_eq!(e.snapshot(&r, None).unwrap(), "snap0");
    let snap = r.dir().join("snaps/snap0");
    on_disk(&[snap.join("config"), snap.join("ts")]);
}
