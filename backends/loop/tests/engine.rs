//! The engine with the loop backend: create, copy clones (sparse image
//! copies), -s on a reflink host and its refusal elsewhere, lxc-snapshot and
//! restore, destroy, with no loop device left behind. Root only.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use strata_core::engine::{CloneRequest, CreateRequest, DestroyRequest, Engine, RootfsSource};
use strata_core::{BackendOpts, Backends, ContainerRef, ErrorKind, RootfsSpec, Store};
use strata_testkit::{no_leak, LoopFs};

/// A host filesystem of `kind` (2 GiB) mounted in its own temporary dir.
fn host_fs(kind: &str) -> LoopFs {
    LoopFs::new(kind, 2 << 30, None, "")
}

fn lxc(fs: &LoopFs) -> PathBuf {
    fs.mnt().join("lxc")
}

fn engine() -> Engine {
    if std::env::var_os("STRATA_RUN_DIR").is_none() {
        std::env::set_var("STRATA_RUN_DIR", std::env::temp_dir().join("strata-engine-tests-run"));
    }
    let mut b = Backends::new();
    b.register(strata_dir::backend());
    b.register(strata_loop::backend());
    Engine::new(b)
}

fn create(e: &Engine, fs: &LoopFs, name: &str, fstype: &str, size: u64) -> ContainerRef {
    let src = fs.dir().join("tree");
    if !src.exists() {
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hostname"), "orig\n").unwrap();
        std::fs::write(src.join("etc/os-release"), "ID=test\n").unwrap();
        std::fs::write(src.join("big"), vec![5u8; 2 << 20]).unwrap();
    }
    e.create(&CreateRequest {
        lxcpath: lxc(fs),
        name: name.into(),
        backend: Some("loop".into()),
        opts: BackendOpts {
            fstype: Some(fstype.into()),
            fssize: Some(size),
            ..BackendOpts::default()
        },
        source: RootfsSource::Dir(src),
        ..Default::default()
    })
    .unwrap();
    ContainerRef::new(lxc(fs), name)
}

fn rootfs(r: &ContainerRef) -> RootfsSpec {
    Store::new(&r.lxcpath).load(&r.name).unwrap().rootfs
}

/// Read a file inside a loop rootfs (mounted read-only for the call).
fn read_in(spec: &RootfsSpec, rel: &str) -> String {
    let m = tempfile::tempdir().unwrap();
    let b = strata_loop::backend();
    b.mount(spec, m.path(), true).unwrap();
    let r = std::fs::read_to_string(m.path().join(rel));
    b.umount(spec, m.path()).unwrap();
    r.unwrap()
}

fn clone(e: &Engine, r: &ContainerRef, to: &str, snapshot: bool) -> strata_core::Result<ContainerRef> {
    let dst = ContainerRef::new(&r.lxcpath, to);
    e.clone_container(&CloneRequest {
        src: r.clone(),
        dst: dst.clone(),
        snapshot,
        ..Default::default()
    })
    .map(|_| dst)
}

fn destroy_all(e: &Engine, lxc: &Path) {
    for ent in std::fs::read_dir(lxc).unwrap().flatten() {
        e.destroy(&DestroyRequest {
            r: ContainerRef::new(lxc, ent.file_name().to_str().unwrap()),
            with_snapshots: true,
            ..Default::default()
        })
        .unwrap();
    }
    assert!(std::fs::read_dir(lxc).unwrap().next().is_none());
}

#[test]
fn copy_clone_is_a_sparse_image_copy() {
    let e = engine();
    let fs = host_fs("ext4");
    let r = create(&e, &fs, "c1", "ext4", 256 << 20);
    let spec = rootfs(&r);
    assert_eq!(spec.to_string(), format!("loop:{}/c1/rootdev", lxc(&fs).display()));
    assert_eq!(read_in(&spec, "etc/os-release"), "ID=test\n");
    let c2 = clone(&e, &r, "c2", false).unwrap();
    let spec2 = rootfs(&c2);
    assert_eq!(spec2.kind(), "loop");
    let (m1, m2) = (
        std::fs::metadata(spec.path()).unwrap(),
        std::fs::metadata(spec2.path()).unwrap(),
    );
    assert_eq!(m2.len(), 256 << 20);
    assert!(
        m2.blocks() <= m1.blocks() + 64,
        "not sparse: {} vs {}",
        m2.blocks(),
        m1.blocks()
    );
    assert_eq!(read_in(&spec2, "etc/hostname"), "c2\n");
    assert_eq!(read_in(&spec, "etc/hostname"), "orig\n");
    // Another size: a new image with the files copied.
    let c3 = ContainerRef::new(&r.lxcpath, "c3");
    e.clone_container(&CloneRequest {
        src: r.clone(),
        dst: c3.clone(),
        opts: BackendOpts {
            fssize: Some(128 << 20),
            ..BackendOpts::default()
        },
        ..Default::default()
    })
    .unwrap();
    assert_eq!(std::fs::metadata(rootfs(&c3).path()).unwrap().len(), 128 << 20);
    assert_eq!(read_in(&rootfs(&c3), "big").len(), 2 << 20);
    no_leak(fs.mnt());
    destroy_all(&e, &lxc(&fs));
    no_leak(fs.mnt());
}

#[test]
fn snapshot_clone_on_xfs_host_and_refused_on_ext4() {
    let e = engine();
    let xfs = host_fs("xfs");
    let r = create(&e, &xfs, "c1", "xfs", 300 << 20);
    let c2 = clone(&e, &r, "c2", true).unwrap();
    let spec2 = rootfs(&c2);
    assert_eq!(spec2.kind(), "loop");
    assert_eq!(read_in(&spec2, "etc/hostname"), "c2\n");
    assert_eq!(read_in(&rootfs(&r), "etc/hostname"), "orig\n");
    no_leak(xfs.mnt());
    destroy_all(&e, &lxc(&xfs));

    let ext4 = host_fs("ext4");
    let r = create(&e, &ext4, "c1", "ext4", 64 << 20);
    let err = clone(&e, &r, "c2", true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let names: Vec<_> = std::fs::read_dir(lxc(&ext4))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("c1")], "refused clone left something");
    no_leak(ext4.mnt());
}

#[test]
fn lxc_snapshot_and_restore() {
    let e = engine();
    for host in ["ext4", "xfs"] {
        let fs = host_fs(host);
        let size = if host == "xfs" { 300 << 20 } else { 64 << 20 };
        let fstype = if host == "xfs" { "xfs" } else { "ext4" };
        let r = create(&e, &fs, "c1", fstype, size);
        assert_eq!(e.snapshot(&r, None).unwrap(), "snap0");
        let spec = rootfs(&r);
        {
            let m = tempfile::tempdir().unwrap();
            let b = strata_loop::backend();
            b.mount(&spec, m.path(), false).unwrap();
            std::fs::write(m.path().join("etc/os-release"), "ID=changed\n").unwrap();
            b.umount(&spec, m.path()).unwrap();
        }
        assert_eq!(e.snapshot(&r, None).unwrap(), "snap1");
        let snaps = e.snapshots(&r).unwrap();
        assert_eq!(snaps[0].rootfs.kind(), "loop", "{host}");
        e.restore(&r, "snap0", None).unwrap();
        assert_eq!(read_in(&rootfs(&r), "etc/os-release"), "ID=test\n", "{host}");
        assert_eq!(e.snapshots(&r).unwrap().len(), 2);
        e.restore(&r, "snap1", None).unwrap();
        assert_eq!(read_in(&rootfs(&r), "etc/os-release"), "ID=changed\n", "{host}");
        no_leak(fs.mnt());
        destroy_all(&e, &lxc(&fs));
        no_leak(fs.mnt());
    }
}
