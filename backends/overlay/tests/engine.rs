//! Engine integration tests on real directories and real overlay mounts
//! (root only). They live here because core must not depend on backends.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use strata_core::config::Config;
use strata_core::engine::{CloneRequest, CreateRequest, DestroyRequest, Engine, RootfsSource};
use strata_core::{Backend, Backends, ContainerRef, ErrorKind, RootfsSpec, Store};

fn setup() {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| match std::env::var_os("STRATA_RUN_DIR") {
        Some(p) => PathBuf::from(p),
        None => {
            // Shared by test runs: locks are keyed by each test's own lxcpath.
            let p = std::env::temp_dir().join("strata-engine-tests-run");
            std::env::set_var("STRATA_RUN_DIR", &p);
            p
        }
    });
}

fn engine() -> Engine {
    setup();
    let mut b = Backends::new();
    b.register(strata_dir::backend());
    b.register(strata_overlay::backend());
    Engine::new(b)
}

struct Scratch {
    _t: tempfile::TempDir,
    lxc: PathBuf,
    src: PathBuf,
    host: PathBuf,
}

/// An lxcpath, a small rootfs tree, a seed config and a "host" dir.
fn scratch() -> Scratch {
    let t = tempfile::Builder::new()
        .prefix("strata-eng")
        .tempdir_in("/var/tmp")
        .unwrap();
    let lxc = t.path().join("lxc");
    let src = t.path().join("tree");
    let host = t.path().join("host");
    std::fs::create_dir_all(&lxc).unwrap();
    std::fs::create_dir_all(&host).unwrap();
    for d in ["etc", "bin", "var/log"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("etc/hostname"), "orig\n").unwrap();
    std::fs::write(src.join("etc/os-release"), "ID=test\n").unwrap();
    std::fs::write(src.join("bin/tool"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.join("bin/tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("tool", src.join("bin/link")).unwrap();
    std::fs::write(
        t.path().join("seed.conf"),
        "# seed\nlxc.net.0.type = veth\nlxc.net.0.hwaddr = 00:16:3e:11:22:33\nlxc.net.1.type = veth\nlxc.net.1.hwaddr = 00:16:3e:xx:xx:xx\n",
    )
    .unwrap();
    Scratch { _t: t, lxc, src, host }
}

impl Scratch {
    fn seed(&self) -> PathBuf {
        self.lxc.parent().unwrap().join("seed.conf")
    }
    fn r(&self, n: &str) -> ContainerRef {
        ContainerRef::new(&self.lxc, n)
    }
    fn create(&self, e: &Engine, name: &str) {
        e.create(&CreateRequest {
            lxcpath: self.lxc.clone(),
            name: name.into(),
            source: RootfsSource::Dir(self.src.clone()),
            config_file: Some(self.seed()),
            ..Default::default()
        })
        .unwrap();
    }
    fn clone_req(&self, from: &str, to: &str, snapshot: bool) -> CloneRequest {
        CloneRequest {
            src: self.r(from),
            dst: self.r(to),
            snapshot,
            ..Default::default()
        }
    }
    fn config(&self, n: &str) -> Config {
        Config::load(&self.r(n).config_path()).unwrap()
    }
    /// Everything in the lxcpath (and snaps dirs) named `.strata-*`.
    fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.lxc).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".strata") {
                out.push(n.clone());
            }
            if let Ok(rd) = std::fs::read_dir(e.path().join("snaps")) {
                for s in rd.flatten() {
                    let sn = s.file_name().to_string_lossy().into_owned();
                    if sn.starts_with(".strata") {
                        out.push(format!("{n}/snaps/{sn}"));
                    }
                }
            }
        }
        out
    }
}

/// The rootfs mounted (or its own path), unmounted on drop.
struct Mounted {
    dir: Option<tempfile::TempDir>,
    spec: RootfsSpec,
    path: PathBuf,
}

fn open(e: &Engine, spec: &RootfsSpec) -> Mounted {
    let b = e.backends.for_spec(spec).unwrap();
    if let Some(p) = b.local_path(spec) {
        return Mounted {
            dir: None,
            spec: spec.clone(),
            path: p,
        };
    }
    let d = tempfile::tempdir().unwrap();
    b.mount(spec, d.path(), false).unwrap();
    Mounted {
        path: d.path().to_path_buf(),
        dir: Some(d),
        spec: spec.clone(),
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = strata_overlay::OverlayBackend::default().umount(&self.spec, d.path());
        }
    }
}

fn rootfs_of(s: &Scratch, n: &str) -> RootfsSpec {
    Store::new(&s.lxc).load(n).unwrap().rootfs
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

#[test]
fn create_from_dir_and_tarball() {
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    let cfg = s.config("c1");
    assert_eq!(
        cfg.get("lxc.rootfs.path"),
        Some(format!("dir:{}/c1/rootfs", s.lxc.display()).as_str())
    );
    assert_eq!(cfg.get("lxc.uts.name"), Some("c1"));
    assert_eq!(cfg.get("lxc.net.0.hwaddr"), Some("00:16:3e:11:22:33"));
    let root = s.lxc.join("c1/rootfs");
    assert_eq!(read(root.join("etc/os-release")), "ID=test\n");
    assert_eq!(
        std::fs::metadata(root.join("bin/tool")).unwrap().permissions().mode() & 0o7777,
        0o4755
    );
    assert_eq!(std::fs::read_link(root.join("bin/link")).unwrap(), Path::new("tool"));

    let tar = s.lxc.parent().unwrap().join("root.tar.gz");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&tar)
        .arg("-C")
        .arg(&s.src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    e.create(&CreateRequest {
        lxcpath: s.lxc.clone(),
        name: "c2".into(),
        source: RootfsSource::Tarball(tar),
        config_file: Some(s.seed()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(read(s.lxc.join("c2/rootfs/etc/os-release")), "ID=test\n");
    assert_eq!(
        std::fs::read_link(s.lxc.join("c2/rootfs/bin/link")).unwrap(),
        Path::new("tool")
    );

    // Existing name and bad names are refused with nothing left behind.
    let err = e
        .create(&CreateRequest {
            lxcpath: s.lxc.clone(),
            name: "c1".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let err = e
        .create(&CreateRequest {
            lxcpath: s.lxc.clone(),
            name: "../x".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName);
    let err = e
        .create(&CreateRequest {
            lxcpath: s.lxc.clone(),
            name: "c3".into(),
            backend: Some("nosuch".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSpec);
    assert!(!s.lxc.join("c3").exists());
    assert!(s.leftovers().is_empty());
}

#[test]
fn create_runs_template_with_final_paths_in_config() {
    let e = engine();
    let s = scratch();
    let tpl = s.lxc.parent().unwrap().join("tpl");
    std::fs::write(
        &tpl,
        "#!/bin/sh\nfor a; do case $a in --path=*) P=${a#--path=};; --rootfs=*) R=${a#--rootfs=};; --name=*) N=${a#--name=};; esac; done\n\
         mkdir -p $R/etc && echo $N > $R/etc/hostname\necho \"lxc.mount.entry = $P/shared shared none bind 0 0\" >> $P/config\n",
    )
    .unwrap();
    std::fs::set_permissions(&tpl, std::fs::Permissions::from_mode(0o755)).unwrap();
    e.create(&CreateRequest {
        lxcpath: s.lxc.clone(),
        name: "t1".into(),
        config_file: Some(s.seed()),
        template: Some(tpl.display().to_string()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(read(s.lxc.join("t1/rootfs/etc/hostname")), "t1\n");
    let cfg = s.config("t1");
    assert_eq!(
        cfg.get("lxc.mount.entry"),
        Some(format!("{}/t1/shared shared none bind 0 0", s.lxc.display()).as_str())
    );
}

#[test]
fn copy_clone_rewrites_config_and_hostname_and_runs_hooks() {
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    let c1 = s.lxc.join("c1");
    std::fs::write(
        c1.join("hook.sh"),
        "#!/bin/sh\necho \"$LXC_SRC_NAME $LXC_NAME $1 $2 $3\" > \"$LXC_ROOTFS_MOUNT/hook-ran\"\n",
    )
    .unwrap();
    std::fs::set_permissions(c1.join("hook.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = s.config("c1");
    cfg.append("lxc.mount.entry", &format!("{}/data srv none bind 0 0", c1.display()));
    cfg.append("lxc.hook.clone", &format!("{}/hook.sh", c1.display()));
    cfg.save(&c1.join("config")).unwrap();

    let mut req = s.clone_req("c1", "c2", false);
    req.run_hooks = true;
    let c = e.clone_container(&req).unwrap();
    assert_eq!(c.rootfs.to_string(), format!("dir:{}/c2/rootfs", s.lxc.display()));
    let cfg = s.config("c2");
    let c2 = s.lxc.join("c2");
    assert_eq!(cfg.get("lxc.uts.name"), Some("c2"));
    let mac = cfg.get("lxc.net.0.hwaddr").unwrap();
    assert!(mac.starts_with("00:16:3e:") && mac != "00:16:3e:11:22:33", "{mac}");
    // The template MAC was expanded at create (as LXC does), then renewed by the clone.
    let mac1 = cfg.get("lxc.net.1.hwaddr").unwrap();
    assert!(mac1.starts_with("00:16:3e:") && !mac1.contains(['x', 'X']), "{mac1}");
    assert_ne!(Some(mac1), s.config("c1").get("lxc.net.1.hwaddr"));
    assert_eq!(
        cfg.get("lxc.mount.entry"),
        Some(format!("{}/data srv none bind 0 0", c2.display()).as_str())
    );
    assert_eq!(
        cfg.get("lxc.hook.clone"),
        Some(format!("{}/hook.sh", c2.display()).as_str())
    );
    assert!(c2.join("hook.sh").is_file());
    assert_eq!(read(c2.join("rootfs/etc/hostname")), "c2\n");
    assert_eq!(read(c2.join("rootfs/hook-ran")), "c1 c2 c2 lxc clone\n");
    // The source is untouched.
    assert_eq!(read(c1.join("rootfs/etc/hostname")), "orig\n");
    assert!(!c1.join("rootfs/hook-ran").exists());

    // -K -M keep them.
    let mut req = s.clone_req("c1", "c3", false);
    req.keep_name = true;
    req.keep_mac = true;
    e.clone_container(&req).unwrap();
    let cfg = s.config("c3");
    assert_eq!(cfg.get("lxc.uts.name"), Some("c1"));
    assert_eq!(cfg.get("lxc.net.0.hwaddr"), Some("00:16:3e:11:22:33"));
    assert_eq!(read(s.lxc.join("c3/rootfs/etc/hostname")), "orig\n");

    // A failing hook fails the clone and leaves nothing.
    std::fs::write(c1.join("hook.sh"), "#!/bin/sh\nexit 3\n").unwrap();
    let mut req = s.clone_req("c1", "c4", false);
    req.run_hooks = true;
    assert!(e.clone_container(&req).is_err());
    assert!(!s.lxc.join("c4").exists());
    assert!(s.leftovers().is_empty());

    // Existing target, missing source.
    assert_eq!(
        e.clone_container(&s.clone_req("c1", "c2", false)).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        e.clone_container(&s.clone_req("nope", "c9", false)).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        e.clone_container(&s.clone_req("c1", "..", false)).unwrap_err().kind(),
        ErrorKind::InvalidName
    );
}

#[test]
fn hostname_symlink_in_rootfs_is_not_followed() {
    let e = engine();
    let s = scratch();
    let host_file = s.host.join("hostname");
    std::fs::write(&host_file, "host-secret\n").unwrap();
    std::fs::remove_file(s.src.join("etc/hostname")).unwrap();
    std::os::unix::fs::symlink(&host_file, s.src.join("etc/hostname")).unwrap();
    s.create(&e, "c1");
    e.clone_container(&s.clone_req("c1", "c2", false)).unwrap();
    // Also through an overlay mount.
    e.clone_container(&s.clone_req("c1", "c3", true)).unwrap();
    assert_eq!(read(&host_file), "host-secret\n");
    assert!(std::fs::symlink_metadata(s.lxc.join("c2/rootfs/etc/hostname"))
        .unwrap()
        .file_type()
        .is_symlink());
    // etc itself a symlink to the host.
    std::fs::remove_dir_all(s.lxc.join("c2/rootfs/etc")).unwrap();
    std::os::unix::fs::symlink(&s.host, s.lxc.join("c2/rootfs/etc")).unwrap();
    e.clone_container(&s.clone_req("c2", "c4", false)).unwrap();
    assert_eq!(read(&host_file), "host-secret\n");
}

#[test]
fn snapshot_clone_of_dir_is_overlay_sharing_the_lower() {
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    let c = e.clone_container(&s.clone_req("c1", "c2", true)).unwrap();
    let lower = s.lxc.join("c1/rootfs");
    assert_eq!(
        c.rootfs.to_string(),
        format!("overlay:{}:{}/c2/overlay/delta", lower.display(), s.lxc.display())
    );
    assert!(s.lxc.join("c2/overlay/work").is_dir());
    {
        let m = open(&e, &c.rootfs);
        assert_eq!(read(m.path.join("etc/hostname")), "c2\n");
        std::fs::write(m.path.join("etc/os-release"), "ID=changed\n").unwrap();
        std::fs::write(m.path.join("new-file"), "x").unwrap();
    }
    assert_eq!(read(lower.join("etc/os-release")), "ID=test\n");
    assert_eq!(read(lower.join("etc/hostname")), "orig\n");
    assert!(!lower.join("new-file").exists());
    assert_eq!(
        read(s.lxc.join("c1/lxc_snapshots")),
        format!("{}\nc2\n", s.lxc.display())
    );
    assert_eq!(
        read(s.lxc.join("c2/lxc_rdepends")),
        format!("{}\nc1\n", s.lxc.display())
    );

    // Overlay of overlay: same lower, the delta carried over.
    let c3 = e.clone_container(&s.clone_req("c2", "c3", true)).unwrap();
    assert_eq!(c3.rootfs.overlay_parts().unwrap().0, lower.display().to_string());
    {
        let m = open(&e, &c3.rootfs);
        assert_eq!(read(m.path.join("etc/os-release")), "ID=changed\n");
        assert_eq!(read(m.path.join("etc/hostname")), "c3\n");
    }

    // Copying an overlay container into a dir one flattens it.
    let mut req = s.clone_req("c3", "flat", false);
    req.backend = Some("dir".into());
    let f = e.clone_container(&req).unwrap();
    assert_eq!(f.rootfs.kind(), "dir");
    assert_eq!(read(s.lxc.join("flat/rootfs/etc/os-release")), "ID=changed\n");
    assert_eq!(read(s.lxc.join("flat/rootfs/bin/tool")), "#!/bin/sh\n");

    // The origin cannot go while clones depend on it; the message names them.
    let err = e
        .destroy(&DestroyRequest {
            r: s.r("c1"),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HasDependents);
    let msg = err.to_string();
    assert!(msg.contains("c2") && msg.contains("c3"), "{msg}");
    assert!(s.lxc.join("c1/config").is_file());

    e.destroy(&DestroyRequest {
        r: s.r("c3"),
        ..Default::default()
    })
    .unwrap();
    e.destroy(&DestroyRequest {
        r: s.r("c2"),
        ..Default::default()
    })
    .unwrap();
    assert!(!s.lxc.join("c1/lxc_snapshots").exists());
    assert_eq!(read(lower.join("etc/os-release")), "ID=test\n");
    e.destroy(&DestroyRequest {
        r: s.r("c1"),
        ..Default::default()
    })
    .unwrap();
    assert!(!s.lxc.join("c1").exists());
    assert!(s.leftovers().is_empty());
}

#[test]
fn snapshot_clone_writes_hostname_into_the_upper_like_a_copy_up() {
    use std::os::unix::fs::MetadataExt;
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    let lower = s.lxc.join("c1/rootfs");
    std::os::unix::fs::chown(lower.join("etc"), Some(1000), Some(1001)).unwrap();
    std::fs::set_permissions(lower.join("etc"), std::fs::Permissions::from_mode(0o751)).unwrap();
    std::os::unix::fs::chown(lower.join("etc/hostname"), Some(1002), Some(1003)).unwrap();
    std::fs::set_permissions(lower.join("etc/hostname"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let etc_before = std::fs::metadata(lower.join("etc")).unwrap();
    let c = e.clone_container(&s.clone_req("c1", "c2", true)).unwrap();
    let upper = s.lxc.join("c2/overlay/delta");
    let ue = std::fs::metadata(upper.join("etc")).unwrap();
    assert_eq!((ue.uid(), ue.gid(), ue.mode() & 0o7777), (1000, 1001, 0o751));
    assert_eq!(ue.mtime(), etc_before.mtime());
    let uh = std::fs::metadata(upper.join("etc/hostname")).unwrap();
    assert_eq!((uh.uid(), uh.gid(), uh.mode() & 0o7777), (1002, 1003, 0o640));
    {
        let m = open(&e, &c.rootfs);
        assert_eq!(read(m.path.join("etc/hostname")), "c2\n");
        assert_eq!(read(m.path.join("etc/os-release")), "ID=test\n");
        let me = std::fs::metadata(m.path.join("etc")).unwrap();
        assert_eq!((me.uid(), me.mode() & 0o7777), (1000, 0o751));
    }
    assert_eq!(read(lower.join("etc/hostname")), "orig\n");
    let etc_after = std::fs::metadata(lower.join("etc")).unwrap();
    assert_eq!(etc_after.mtime(), etc_before.mtime());

    // Symlinks in the lower are never followed: not /etc/hostname ...
    let host_file = s.host.join("hostname");
    std::fs::write(&host_file, "host-secret\n").unwrap();
    std::fs::remove_file(lower.join("etc/hostname")).unwrap();
    std::os::unix::fs::symlink(&host_file, lower.join("etc/hostname")).unwrap();
    e.clone_container(&s.clone_req("c1", "c3", true)).unwrap();
    assert!(!s.lxc.join("c3/overlay/delta/etc").exists());
    // ... nor /etc.
    std::fs::remove_file(lower.join("etc/hostname")).unwrap();
    std::fs::rename(lower.join("etc"), lower.join("etc.real")).unwrap();
    std::os::unix::fs::symlink(&s.host, lower.join("etc")).unwrap();
    e.clone_container(&s.clone_req("c1", "c4", true)).unwrap();
    assert!(!s.lxc.join("c4/overlay/delta/etc").exists());
    assert_eq!(read(&host_file), "host-secret\n");
    assert_eq!(std::fs::read_dir(&s.host).unwrap().count(), 1);
}

#[test]
fn snapshots_of_a_dir_container() {
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    let r = s.r("c1");
    let root = s.lxc.join("c1/rootfs");
    assert_eq!(e.snapshot(&r, None).unwrap(), "snap0");
    std::fs::write(root.join("etc/os-release"), "ID=second\n").unwrap();
    assert_eq!(e.snapshot(&r, Some("before upgrade\n")).unwrap(), "snap1");
    std::fs::write(root.join("etc/os-release"), "ID=third\n").unwrap();
    std::fs::write(root.join("junk"), "j").unwrap();

    let list = e.snapshots(&r).unwrap();
    assert_eq!(
        list.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["snap0", "snap1"]
    );
    assert_eq!(list[1].comment.as_deref(), Some("before upgrade\n"));
    let ts = &list[0].timestamp;
    assert_eq!(ts.len(), 19, "{ts}");
    assert_eq!(&ts[4..5], ":");
    let raw_ts = read(s.lxc.join("c1/snaps/snap0/ts"));
    assert!(!raw_ts.ends_with('\n'));
    let snap_cfg = Config::load(&s.lxc.join("c1/snaps/snap0/config")).unwrap();
    assert_eq!(
        snap_cfg.get("lxc.rootfs.path"),
        Some(format!("dir:{}/c1/snaps/snap0/rootfs", s.lxc.display()).as_str())
    );
    assert_eq!(snap_cfg.get("lxc.uts.name"), Some("c1"));
    assert_eq!(snap_cfg.get("lxc.net.0.hwaddr"), Some("00:16:3e:11:22:33"));

    // Restore in place.
    e.restore(&r, "snap0", None).unwrap();
    assert_eq!(read(root.join("etc/os-release")), "ID=test\n");
    assert!(!root.join("junk").exists());
    let cfg = s.config("c1");
    assert_eq!(
        cfg.get("lxc.rootfs.path"),
        Some(format!("dir:{}/c1/rootfs", s.lxc.display()).as_str())
    );
    assert_eq!(cfg.get("lxc.uts.name"), Some("c1"));
    assert_eq!(e.snapshots(&r).unwrap().len(), 2);

    // Restore to a new name.
    let n = e.restore(&r, "snap1", Some("c1b")).unwrap();
    assert_eq!(n.r.name, "c1b");
    assert_eq!(read(s.lxc.join("c1b/rootfs/etc/os-release")), "ID=second\n");
    assert_eq!(s.config("c1b").get("lxc.uts.name"), Some("c1b"));
    assert_eq!(e.snapshots(&r).unwrap().len(), 2);

    // Unknown snapshot, bad names.
    assert_eq!(e.restore(&r, "snap7", None).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(e.restore(&r, "../x", None).unwrap_err().kind(), ErrorKind::InvalidName);
    assert_eq!(e.destroy_snapshot(&r, "snap9").unwrap_err().kind(), ErrorKind::NotFound);

    // Destroy refuses while snapshots exist.
    let err = e
        .destroy(&DestroyRequest {
            r: r.clone(),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HasDependents);
    assert!(err.to_string().contains("snap0"), "{err}");

    e.destroy_snapshot(&r, "snap0").unwrap();
    assert_eq!(e.snapshots(&r).unwrap().len(), 1);
    assert_eq!(e.snapshot(&r, None).unwrap(), "snap0", "gaps are reused");
    e.destroy_snapshot(&r, "ALL").unwrap();
    assert!(e.snapshots(&r).unwrap().is_empty());
    e.snapshot(&r, None).unwrap();
    e.destroy(&DestroyRequest {
        r: r.clone(),
        with_snapshots: true,
        ..Default::default()
    })
    .unwrap();
    assert!(!s.lxc.join("c1").exists());
    assert!(s.leftovers().is_empty());
}

#[test]
fn snapshots_of_an_overlay_container() {
    let e = engine();
    let s = scratch();
    s.create(&e, "base");
    let c = e.clone_container(&s.clone_req("base", "ov", true)).unwrap();
    let r = s.r("ov");
    {
        let m = open(&e, &c.rootfs);
        std::fs::write(m.path.join("etc/os-release"), "ID=ov1\n").unwrap();
    }
    e.snapshot(&r, None).unwrap();
    let snap = Store::new(s.lxc.join("ov/snaps")).load("snap0").unwrap();
    assert_eq!(snap.rootfs.kind(), "overlay");
    assert_eq!(
        snap.rootfs.overlay_parts().unwrap().0,
        c.rootfs.overlay_parts().unwrap().0
    );
    {
        let m = open(&e, &c.rootfs);
        std::fs::write(m.path.join("etc/os-release"), "ID=ov2\n").unwrap();
        std::fs::remove_file(m.path.join("bin/tool")).unwrap();
    }
    // The base has dependents: the clone and its snapshot.
    let err = e
        .destroy(&DestroyRequest {
            r: s.r("base"),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HasDependents);
    e.restore(&r, "snap0", None).unwrap();
    let c = Store::new(&s.lxc).load("ov").unwrap();
    assert_eq!(
        c.rootfs.to_string(),
        format!(
            "overlay:{}/base/rootfs:{}/ov/overlay/delta",
            s.lxc.display(),
            s.lxc.display()
        )
    );
    {
        let m = open(&e, &c.rootfs);
        assert_eq!(read(m.path.join("etc/os-release")), "ID=ov1\n");
        assert!(m.path.join("bin/tool").exists());
    }
    assert_eq!(read(s.lxc.join("base/rootfs/etc/os-release")), "ID=test\n");
    e.destroy(&DestroyRequest {
        r: r.clone(),
        with_snapshots: true,
        ..Default::default()
    })
    .unwrap();
    assert!(!s.lxc.join("base/lxc_snapshots").exists());
    e.destroy(&DestroyRequest {
        r: s.r("base"),
        ..Default::default()
    })
    .unwrap();
    assert!(s.leftovers().is_empty());
}

#[test]
fn restore_refused_while_clones_depend_on_the_container() {
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    e.snapshot(&s.r("c1"), None).unwrap();
    e.clone_container(&s.clone_req("c1", "kid", true)).unwrap();
    let err = e.restore(&s.r("c1"), "snap0", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HasDependents);
    assert!(err.to_string().contains("kid"), "{err}");
    assert!(s.leftovers().is_empty());
}

#[test]
fn rename_moves_the_container() {
    let e = engine();
    let s = scratch();
    s.create(&e, "old");
    let mut req = s.clone_req("old", "new", false);
    req.rename = true;
    e.clone_container(&req).unwrap();
    assert!(!s.lxc.join("old").exists());
    let cfg = s.config("new");
    assert_eq!(
        cfg.get("lxc.rootfs.path"),
        Some(format!("dir:{}/new/rootfs", s.lxc.display()).as_str())
    );
    assert_eq!(cfg.get("lxc.uts.name"), Some("new"));
    assert_eq!(cfg.get("lxc.net.0.hwaddr"), Some("00:16:3e:11:22:33"));
    assert_eq!(read(s.lxc.join("new/rootfs/etc/hostname")), "new\n");
    assert!(s.leftovers().is_empty());
}

#[test]
fn destroy_does_not_follow_symlinks_out_of_the_rootfs() {
    let e = engine();
    let s = scratch();
    std::fs::write(s.host.join("keep"), "k").unwrap();
    std::os::unix::fs::symlink(&s.host, s.src.join("hostlink")).unwrap();
    s.create(&e, "c1");
    e.destroy(&DestroyRequest {
        r: s.r("c1"),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(read(s.host.join("keep")), "k");
    assert!(!s.lxc.join("c1").exists());
}

// ------------------------------------------------------------------ crashes

/// Runs one engine operation in a child process that dies at a failpoint.
#[test]
fn crash_child() {
    let Some(op) = std::env::var_os("STRATA_CRASH_OP") else {
        return;
    };
    let e = engine();
    let lxc = PathBuf::from(std::env::var_os("STRATA_CRASH_LXC").unwrap());
    let r = |n: &str| ContainerRef::new(&lxc, n);
    let res = match op.to_str().unwrap() {
        "clone" => e
            .clone_container(&CloneRequest {
                src: r("c1"),
                dst: r("c2"),
                ..Default::default()
            })
            .map(|_| ()),
        "snapclone" => e
            .clone_container(&CloneRequest {
                src: r("c1"),
                dst: r("c2"),
                snapshot: true,
                ..Default::default()
            })
            .map(|_| ()),
        "restore" => e.restore(&r("c1"), "snap0", None).map(|_| ()),
        "snapshot" => e.snapshot(&r("c1"), Some("c")).map(|_| ()),
        "destroy" => e.destroy(&DestroyRequest {
            r: r("c1"),
            with_snapshots: true,
            ..Default::default()
        }),
        "rename" => e
            .clone_container(&CloneRequest {
                src: r("c1"),
                dst: r("c2"),
                rename: true,
                ..Default::default()
            })
            .map(|_| ()),
        o => panic!("unknown op {o}"),
    };
    res.unwrap();
    panic!("the failpoint was not reached");
}

fn crash(s: &Scratch, op: &str, failpoint: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("STRATA_CRASH_OP", op)
        .env("STRATA_CRASH_LXC", &s.lxc)
        .env("STRATA_FAILPOINT", failpoint)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(99),
        "{op}@{failpoint}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn crash_during_clone_is_cleaned_up() {
    let e = engine();
    for (op, fp) in [
        ("clone", "clone-after-rootfs"),
        ("clone", "clone-before-rename"),
        ("snapclone", "clone-after-rootfs"),
        ("snapclone", "clone-before-rename"),
    ] {
        let s = scratch();
        s.create(&e, "c1");
        crash(&s, op, fp);
        assert!(!s.leftovers().is_empty(), "{op}@{fp} left no staging dir");
        let removed = e.reconcile(&s.lxc).unwrap();
        assert!(!removed.is_empty());
        assert!(s.leftovers().is_empty(), "{op}@{fp}: {:?}", s.leftovers());
        assert!(!s.lxc.join("c2").exists());
        assert!(!s.lxc.join("c1/lxc_snapshots").exists(), "{op}@{fp}: stale dependency");
        assert_eq!(read(s.lxc.join("c1/rootfs/etc/os-release")), "ID=test\n");
        assert_eq!(Store::new(&s.lxc).list().unwrap(), ["c1"]);
        // And the operation works afterwards.
        e.clone_container(&s.clone_req("c1", "c2", op == "snapclone")).unwrap();
    }
}

#[test]
fn crash_during_restore_leaves_old_or_new() {
    let e = engine();
    for (fp, restored) in [
        ("clone-after-rootfs", false),
        ("restore-after-journal", true),
        ("restore-after-swap-out", true),
        ("restore-after-swap-in", true),
    ] {
        let s = scratch();
        s.create(&e, "c1");
        let r = s.r("c1");
        e.snapshot(&r, None).unwrap();
        std::fs::write(s.lxc.join("c1/rootfs/etc/os-release"), "ID=changed\n").unwrap();
        crash(&s, "restore", fp);
        e.reconcile(&s.lxc).unwrap();
        assert!(s.leftovers().is_empty(), "{fp}: {:?}", s.leftovers());
        let want = if restored { "ID=test\n" } else { "ID=changed\n" };
        assert_eq!(read(s.lxc.join("c1/rootfs/etc/os-release")), want, "{fp}");
        assert_eq!(
            rootfs_of(&s, "c1").to_string(),
            format!("dir:{}/c1/rootfs", s.lxc.display())
        );
        assert_eq!(e.snapshots(&r).unwrap().len(), 1);
        assert_eq!(read(s.lxc.join("c1/snaps/snap0/rootfs/etc/os-release")), "ID=test\n");
    }
}

#[test]
fn crash_during_overlay_restore_rolls_forward() {
    let e = engine();
    let s = scratch();
    s.create(&e, "base");
    e.clone_container(&s.clone_req("base", "c1", true)).unwrap();
    let r = s.r("c1");
    e.snapshot(&r, None).unwrap();
    std::fs::write(s.lxc.join("c1/overlay/delta/marker"), "m").unwrap();
    crash(&s, "restore", "restore-after-swap-out");
    assert!(!s.lxc.join("c1/overlay").exists());
    e.reconcile(&s.lxc).unwrap();
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    assert!(s.lxc.join("c1/overlay/delta").is_dir());
    assert!(!s.lxc.join("c1/overlay/delta/marker").exists());
    assert_eq!(read(s.lxc.join("base/lxc_snapshots")).matches("\nc1\n").count(), 1);
}

#[test]
fn crash_during_destroy_is_finished() {
    let e = engine();
    let s = scratch();
    s.create(&e, "base");
    e.clone_container(&s.clone_req("base", "c1", true)).unwrap();
    e.snapshot(&s.r("c1"), None).unwrap();
    crash(&s, "destroy", "destroy-after-rename");
    assert!(!s.lxc.join("c1").exists(), "gone from the list at once");
    assert_eq!(Store::new(&s.lxc).list().unwrap(), ["base"]);
    e.reconcile(&s.lxc).unwrap();
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    assert!(
        !s.lxc.join("base/lxc_snapshots").exists(),
        "dependencies of c1 and its snapshot removed"
    );
    e.destroy(&DestroyRequest {
        r: s.r("base"),
        ..Default::default()
    })
    .unwrap();
}

#[test]
fn crash_during_rename_is_finished() {
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    crash(&s, "rename", "rename-after-move");
    e.reconcile(&s.lxc).unwrap();
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    assert!(!s.lxc.join("c1").exists());
    assert_eq!(
        s.config("c2").get("lxc.rootfs.path"),
        Some(format!("dir:{}/c2/rootfs", s.lxc.display()).as_str())
    );
    assert!(!s.lxc.join("c2/config.strata-rename").exists());
}

#[test]
fn reconcile_leaves_a_live_operation_alone() {
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    // Once this boot's first reconcile of the lxcpath has scanned it, only
    // what the in-flight record names is looked at.
    e.reconcile(&s.lxc).unwrap();
    let staging = s.lxc.join(".strata-tmp.c9.abc");
    // The entry of a command that made the staging dir and is gone (no
    // process has a pid above the kernel's limit), as a kill leaves it.
    let entries = std::path::PathBuf::from(std::env::var_os("STRATA_RUN_DIR").unwrap()).join("inflight");
    std::fs::create_dir_all(&entries).unwrap();
    let entry = entries.join(format!("op.4194305-{}", std::process::id()));
    std::fs::write(&entry, format!("{}\n", staging.display())).unwrap();
    std::fs::create_dir(&staging).unwrap();
    // The owner's lock held: the operation counts as live, left alone.
    let lock = strata_core::lock::ContainerLock::acquire(&s.lxc, "c9").unwrap();
    assert!(e.reconcile(&s.lxc).unwrap().is_empty());
    assert!(staging.exists());
    assert!(entry.exists(), "the entry went while what it names is left");
    drop(lock);
    // Another test's reconcile may take it first: what counts is that it goes.
    e.reconcile(&s.lxc).unwrap();
    assert!(!staging.exists());
    assert!(!entry.exists());
}

#[test]
fn copy_into_a_new_overlay_container() {
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    let mut req = s.clone_req("c1", "o1", false);
    req.backend = Some("overlay".into());
    let c = e.clone_container(&req).unwrap();
    assert_eq!(
        c.rootfs.to_string(),
        format!("overlay:{0}/o1/rootfs:{0}/o1/overlay/delta", s.lxc.display())
    );
    assert!(!s.lxc.join("c1/lxc_snapshots").exists());
    {
        let m = open(&e, &c.rootfs);
        assert_eq!(read(m.path.join("etc/os-release")), "ID=test\n");
        assert_eq!(read(m.path.join("etc/hostname")), "o1\n");
    }
    e.destroy(&DestroyRequest {
        r: s.r("o1"),
        ..Default::default()
    })
    .unwrap();
    assert!(!s.lxc.join("o1").exists());
}

#[test]
fn snapshot_refuses_and_leaves_nothing_for_unknown_container() {
    let e = engine();
    let s = scratch();
    assert_eq!(e.snapshot(&s.r("nope"), None).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        e.destroy(&DestroyRequest {
            r: s.r("nope"),
            ..Default::default()
        })
        .unwrap_err()
        .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(std::fs::read_dir(&s.lxc).unwrap().count(), 0);
}

fn lxc(args: &[&str], lxcpath: &Path) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .arg("-P")
        .arg(lxcpath)
        .output()
        .unwrap()
}

/// LXC and strata work on each other's containers.
#[test]
fn interop_with_lxc() {
    if Command::new("lxc-copy").arg("--version").output().is_err() {
        eprintln!("lxc-copy not installed; skipped");
        return;
    }
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    let out = lxc(&["lxc-copy", "-n", "c1", "-N", "lx", "-s"], &s.lxc);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // strata sees LXC's dependency record.
    let err = e
        .destroy(&DestroyRequest {
            r: s.r("c1"),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("lx"), "{err}");
    // strata snapshots and restores LXC's overlay clone.
    let lx = s.r("lx");
    e.snapshot(&lx, None).unwrap();
    std::fs::write(s.lxc.join("lx/overlay/delta/marker"), "m").unwrap();
    e.restore(&lx, "snap0", None).unwrap();
    assert!(!s.lxc.join("lx/overlay/delta/marker").exists());
    // LXC lists strata's snapshot.
    let out = lxc(&["lxc-snapshot", "-n", "lx", "-L"], &s.lxc);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("snap0"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // LXC clones a strata overlay clone; strata destroys it, LXC's records follow.
    e.clone_container(&s.clone_req("c1", "st", true)).unwrap();
    let out = lxc(&["lxc-copy", "-n", "st", "-N", "st2", "-s"], &s.lxc);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    e.destroy(&DestroyRequest {
        r: lx.clone(),
        with_snapshots: true,
        ..Default::default()
    })
    .unwrap();
    for n in ["st2", "st"] {
        let out = lxc(&["lxc-destroy", "-n", n], &s.lxc);
        assert!(out.status.success(), "{n}: {}", String::from_utf8_lossy(&out.stderr));
    }
    e.destroy(&DestroyRequest {
        r: s.r("c1"),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(std::fs::read_dir(&s.lxc).unwrap().count(), 0);
}

#[test]
fn tarball_with_symlink_escape_writes_nothing_outside() {
    let e = engine();
    let s = scratch();
    let work = s.lxc.parent().unwrap().join("evil");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::symlink(&s.host, work.join("esc")).unwrap();
    let tar = s.lxc.parent().unwrap().join("evil.tar");
    assert!(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&work)
        .arg("esc")
        .status()
        .unwrap()
        .success());
    std::fs::remove_file(work.join("esc")).unwrap();
    std::fs::create_dir(work.join("esc")).unwrap();
    std::fs::write(work.join("esc/pwned"), "p").unwrap();
    assert!(Command::new("tar")
        .arg("-rf")
        .arg(&tar)
        .arg("-C")
        .arg(&work)
        .arg("esc/pwned")
        .status()
        .unwrap()
        .success());
    let err = e
        .create(&CreateRequest {
            lxcpath: s.lxc.clone(),
            name: "evil".into(),
            source: RootfsSource::Tarball(tar),
            config_file: Some(s.seed()),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Command, "{err}");
    assert!(!s.host.join("pwned").exists());
    assert_eq!(
        std::fs::read_dir(&s.lxc).unwrap().count(),
        0,
        "a failed create leaves nothing"
    );
}

#[test]
fn container_created_on_overlay_snapshots_and_restores() {
    let e = engine();
    let s = scratch();
    let c = e
        .create(&CreateRequest {
            lxcpath: s.lxc.clone(),
            name: "o".into(),
            backend: Some("overlay".into()),
            source: RootfsSource::Dir(s.src.clone()),
            config_file: Some(s.seed()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        c.rootfs.to_string(),
        format!("overlay:{0}/o/rootfs:{0}/o/overlay/delta", s.lxc.display())
    );
    // Files can live in its own lower too; a restore must keep them.
    std::fs::write(s.lxc.join("o/rootfs/in-lower"), "l").unwrap();
    let r = s.r("o");
    e.snapshot(&r, None).unwrap();
    {
        let m = open(&e, &c.rootfs);
        std::fs::write(m.path.join("etc/os-release"), "ID=changed\n").unwrap();
    }
    e.restore(&r, "snap0", None).unwrap();
    let c = Store::new(&s.lxc).load("o").unwrap();
    {
        let m = open(&e, &c.rootfs);
        assert_eq!(read(m.path.join("etc/os-release")), "ID=test\n");
        assert_eq!(read(m.path.join("bin/tool")), "#!/bin/sh\n");
        assert_eq!(read(m.path.join("in-lower")), "l");
    }
    assert!(s.leftovers().is_empty());
    e.destroy(&DestroyRequest {
        r,
        with_snapshots: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(std::fs::read_dir(&s.lxc).unwrap().count(), 0);
}

#[test]
fn destroy_refuses_while_something_is_mounted_inside() {
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    let spec = rootfs_of(&s, "c1");
    let inner = s.lxc.join("c1/rootfs/var/log");
    let b = strata_dir::DirBackend;
    b.mount(&spec, &inner, true).unwrap();
    struct U<'a>(&'a Path);
    impl Drop for U<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let g = U(&inner);
    let err = e
        .destroy(&DestroyRequest {
            r: s.r("c1"),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    assert!(s.lxc.join("c1/config").is_file());
    assert!(s.leftovers().is_empty());
    drop(g);
    e.destroy(&DestroyRequest {
        r: s.r("c1"),
        ..Default::default()
    })
    .unwrap();
}

#[test]
fn crash_during_snapshot_is_cleaned_up() {
    let e = engine();
    for fp in ["clone-after-rootfs", "clone-before-rename"] {
        let s = scratch();
        s.create(&e, "c1");
        e.snapshot(&s.r("c1"), None).unwrap();
        crash(&s, "snapshot", fp);
        assert_eq!(s.leftovers().len(), 1, "{fp}: {:?}", s.leftovers());
        assert_eq!(
            e.snapshots(&s.r("c1")).unwrap().len(),
            1,
            "a half-made snapshot is not listed"
        );
        e.reconcile(&s.lxc).unwrap();
        assert!(s.leftovers().is_empty(), "{fp}: {:?}", s.leftovers());
        assert_eq!(e.snapshot(&s.r("c1"), None).unwrap(), "snap1");
    }
}

#[test]
fn running_container_is_refused_unless_forced() {
    use strata_core::state;
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    let mut child = Command::new("sleep").arg("100").spawn().unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id() as i32;
    let guard = Kill(&mut child);
    let rec = serde_json::json!({
        "init_pid": pid,
        "init_start": state::proc_start_time(pid).unwrap(),
        "monitor_pid": null,
        "monitor_start": null,
        "ephemeral": false,
    });
    let path = state::record_path(&s.r("c1"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
    assert!(state::is_running(&s.r("c1")));

    let err = e.clone_container(&s.clone_req("c1", "c2", false)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    let err = e.clone_container(&s.clone_req("c1", "c2", true)).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Busy,
        "an overlay snapshot of a running container: {err}"
    );
    assert_eq!(e.snapshot(&s.r("c1"), None).unwrap_err().kind(), ErrorKind::Busy);
    let err = e
        .destroy(&DestroyRequest {
            r: s.r("c1"),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert!(s.lxc.join("c1/config").is_file());
    assert_eq!(std::fs::read_dir(&s.lxc).unwrap().count(), 1);

    // Reap the killed child in the background so that its pid goes away.
    let reaper = std::thread::spawn(move || {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    });
    e.destroy(&DestroyRequest {
        r: s.r("c1"),
        force: true,
        ..Default::default()
    })
    .unwrap();
    reaper.join().unwrap();
    assert!(!s.lxc.join("c1").exists());
    drop(guard);
    let _ = std::fs::remove_file(path);
}

#[test]
fn clone_into_another_lxcpath_and_bad_combinations_change_nothing() {
    let e = engine();
    let s = scratch();
    s.create(&e, "c1");
    let other = s.lxc.parent().unwrap().join("other/lxc");
    // -s -B dir: dir cannot snapshot; refused before anything is made.
    let mut req = s.clone_req("c1", "x", true);
    req.dst = ContainerRef::new(&other, "x");
    req.backend = Some("dir".into());
    assert_eq!(e.clone_container(&req).unwrap_err().kind(), ErrorKind::Unsupported);
    assert!(!other.exists());
    req.backend = None;
    let c = e.clone_container(&req).unwrap();
    assert_eq!(
        c.rootfs.to_string(),
        format!(
            "overlay:{}/c1/rootfs:{}/x/overlay/delta",
            s.lxc.display(),
            other.display()
        )
    );
    assert_eq!(
        read(s.lxc.join("c1/lxc_snapshots")),
        format!("{}\nx\n", other.display())
    );
    let err = e
        .destroy(&DestroyRequest {
            r: s.r("c1"),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains(&format!("{}/x", other.display())), "{err}");
    e.destroy(&DestroyRequest {
        r: ContainerRef::new(&other, "x"),
        ..Default::default()
    })
    .unwrap();
    assert!(!s.lxc.join("c1/lxc_snapshots").exists());
}

/// A clone of a clone, a snapshot of a clone and a destroy of a clone all
/// rewrite the base's lxc_snapshots: each waits for the base's lock.
#[test]
fn dependency_edits_wait_for_the_origins_lock() {
    use std::time::Duration;
    let e = engine();
    let s = scratch();
    s.create(&e, "base");
    e.clone_container(&s.clone_req("base", "c1", true)).unwrap();
    e.clone_container(&s.clone_req("base", "gone", true)).unwrap();
    let deps = || {
        let mut v: Vec<String> = strata_core::depfile::dependents(&s.r("base"))
            .unwrap()
            .into_iter()
            .map(|r| r.dir().strip_prefix(&s.lxc).unwrap().display().to_string())
            .collect();
        v.sort();
        v
    };
    let lock = strata_core::lock::ContainerLock::acquire(&s.lxc, "base").unwrap();
    std::thread::scope(|sc| {
        let ops = [
            sc.spawn(|| e.clone_container(&s.clone_req("c1", "c2", true)).map(drop)),
            sc.spawn(|| e.snapshot(&s.r("c1"), None).map(drop)),
            sc.spawn(|| {
                e.destroy(&DestroyRequest {
                    r: s.r("gone"),
                    ..Default::default()
                })
            }),
        ];
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            ops.iter().all(|h| !h.is_finished()),
            "an edit went ahead without the base's lock"
        );
        assert_eq!(deps(), ["c1", "gone"]);
        drop(lock);
        for h in ops {
            h.join().unwrap().unwrap();
        }
    });
    assert_eq!(deps(), ["c1", "c1/snaps/snap0", "c2"]);
    // The base is refused while they need it.
    let err = e
        .destroy(&DestroyRequest {
            r: s.r("base"),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HasDependents);
}
