//! The engine with the loop backend: create, copy clones (sparse image
//! copies), -s on a reflink host and its refusal elsewhere, lxc-snapshot and
//! restore, destroy, with no loop device left behind. Root only.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_core::engine::{CloneRequest, CreateRequest, DestroyRequest, Engine, RootfsSource};
use strata_core::{BackendOpts, Backends, ContainerRef, ErrorKind, RootfsSpec, Store};

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct HostFs {
    t: tempfile::TempDir,
    mnt: PathBuf,
    dev: String,
}

impl HostFs {
    fn new(kind: &str) -> Self {
        let t = tempfile::Builder::new()
            .prefix("strata-loop-eng")
            .tempdir_in("/var/tmp")
            .unwrap();
        let img = t.path().join("img");
        std::fs::File::create(&img).unwrap().set_len(2 << 30).unwrap();
        let dev = run(&["losetup", "--find", "--show", img.to_str().unwrap()])
            .trim()
            .to_string();
        let mnt = t.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let fs = HostFs { t, mnt, dev };
        match kind {
            "xfs" => run(&["mkfs.xfs", "-q", "-f", "-m", "reflink=1", &fs.dev]),
            _ => run(&["mkfs.ext4", "-q", "-F", &fs.dev]),
        };
        run(&["mount", &fs.dev, fs.mnt.to_str().unwrap()]);
        fs
    }
    fn lxc(&self) -> PathBuf {
        self.mnt.join("lxc")
    }
}

impl Drop for HostFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg("-l").arg(&self.mnt).status();
        for d in attached_under(&self.mnt) {
            let _ = Command::new("losetup").arg("-d").arg(d).status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

fn attached_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim_end()).starts_with(dir) {
                out.push(format!("/dev/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

fn no_leak(dir: &Path) {
    for _ in 0..100 {
        if attached_under(dir).is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("loop devices left attached: {:?}", attached_under(dir));
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

fn create(e: &Engine, fs: &HostFs, name: &str, fstype: &str, size: u64) -> ContainerRef {
    let src = fs.t.path().join("tree");
    if !src.exists() {
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hostname"), "orig\n").unwrap();
        std::fs::write(src.join("etc/os-release"), "ID=test\n").unwrap();
        std::fs::write(src.join("big"), vec![5u8; 2 << 20]).unwrap();
    }
    e.create(&CreateRequest {
        lxcpath: fs.lxc(),
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
    ContainerRef::new(fs.lxc(), name)
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
    let fs = HostFs::new("ext4");
    let r = create(&e, &fs, "c1", "ext4", 256 << 20);
    let spec = rootfs(&r);
    assert_eq!(spec.to_string(), format!("loop:{}/c1/rootdev", fs.lxc().display()));
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
    no_leak(&fs.mnt);
    destroy_all(&e, &fs.lxc());
    no_leak(&fs.mnt);
}

#[test]
fn snapshot_clone_on_xfs_host_and_refused_on_ext4() {
    let e = engine();
    let xfs = HostFs::new("xfs");
    let r = create(&e, &xfs, "c1", "xfs", 300 << 20);
    let c2 = clone(&e, &r, "c2", true).unwrap();
    let spec2 = rootfs(&c2);
    assert_eq!(spec2.kind(), "loop");
    assert_eq!(read_in(&spec2, "etc/hostname"), "c2\n");
    assert_eq!(read_in(&rootfs(&r), "etc/hostname"), "orig\n");
    no_leak(&xfs.mnt);
    destroy_all(&e, &xfs.lxc());

    let ext4 = HostFs::new("ext4");
    let r = create(&e, &ext4, "c1", "ext4", 64 << 20);
    let err = clone(&e, &r, "c2", true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let names: Vec<_> = std::fs::read_dir(ext4.lxc())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("c1")], "refused clone left something");
    no_leak(&ext4.mnt);
}

#[test]
fn lxc_snapshot_and_restore() {
    let e = engine();
    for host in ["ext4", "xfs"] {
        let fs = HostFs::new(host);
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
        no_leak(&fs.mnt);
        destroy_all(&e, &fs.lxc());
        no_leak(&fs.mnt);
    }
}
