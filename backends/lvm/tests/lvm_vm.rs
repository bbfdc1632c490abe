//! LVM against real device-mapper thin pools: runs inside the QEMU guest
//! (tests/vm/run), which sets STRATA_VM=1 and makes VG `$STRATA_VM_VG` with
//! thin pool `pool` and free space for plain volumes. Elsewhere every test
//! says it was skipped and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use strata_core::engine::{CloneRequest, CreateRequest, DestroyRequest, Engine, RootfsSource};
use strata_core::{BackendOpts, Backends, ContainerRef, ErrorKind, Opened, RootfsSpec};

fn vm() -> Option<String> {
    if std::env::var_os("STRATA_VM").is_some_and(|v| v == "1") {
        Some(std::env::var("STRATA_VM_VG").unwrap_or_else(|_| "strata_vg".into()))
    } else {
        eprintln!("SKIPPED: needs a real device-mapper (run tests/vm/run, which sets STRATA_VM=1)");
        None
    }
}

fn engine() -> Engine {
    let mut b = Backends::new();
    b.register(strata_lvm::backend());
    b.register(strata_dir::backend());
    Engine::new(b)
}

fn lvs(vg: &str) -> Vec<(String, String)> {
    let o = Command::new("lvs")
        .args(["--noheadings", "-o", "lv_name,lv_attr", vg])
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap();
    let mut v: Vec<(String, String)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            // Name and volume type only: the rest (open, active) changes with use.
            Some((it.next()?.to_string(), it.next()?.chars().next()?.to_string()))
        })
        .collect();
    v.sort();
    v
}

/// A source tree with a file, a symlink and a subdir.
fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), "orig\n").unwrap();
    std::fs::write(src.join("data"), "hello").unwrap();
    std::os::unix::fs::symlink("data", src.join("link")).unwrap();
    src
}

fn read(e: &Engine, spec: &RootfsSpec, file: &str) -> Option<String> {
    let b = e.backends.for_spec(spec).unwrap();
    let o = Opened::open(b, spec, true).unwrap();
    let s = std::fs::read_to_string(o.path().join(file)).ok();
    o.close().unwrap();
    s
}

fn write(e: &Engine, spec: &RootfsSpec, file: &str, data: &str) {
    let b = e.backends.for_spec(spec).unwrap();
    let o = Opened::open(b, spec, false).unwrap();
    std::fs::write(o.path().join(file), data).unwrap();
    o.close().unwrap();
}

fn opts(vg: &str) -> BackendOpts {
    BackendOpts {
        vgname: Some(vg.into()),
        thinpool: Some("pool".into()),
        fssize: Some(64 << 20),
        ..BackendOpts::default()
    }
}

fn create(e: &Engine, lxcpath: &Path, name: &str, o: BackendOpts, src: &Path) -> strata_core::Container {
    e.create(&CreateRequest {
        lxcpath: lxcpath.into(),
        name: name.into(),
        backend: Some("lvm".into()),
        opts: o,
        source: RootfsSource::Dir(src.into()),
        ..CreateRequest::default()
    })
    .unwrap()
}

fn clone(
    e: &Engine,
    lxcpath: &Path,
    from: &str,
    to: &str,
    snapshot: bool,
    backend: Option<&str>,
    o: BackendOpts,
) -> strata_core::Result<strata_core::Container> {
    e.clone_container(&CloneRequest {
        src: ContainerRef::new(lxcpath, from),
        dst: ContainerRef::new(lxcpath, to),
        snapshot,
        backend: backend.map(String::from),
        opts: o,
        ..CloneRequest::default()
    })
}

fn destroy(e: &Engine, lxcpath: &Path, name: &str) {
    e.destroy(&DestroyRequest {
        r: ContainerRef::new(lxcpath, name),
        with_snapshots: true,
        ..Default::default()
    })
    .unwrap();
}

#[test]
fn thin_create_clone_and_snapshot_of_snapshot() {
    let Some(vg) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let before = lvs(&vg);
    let c1 = create(&e, &lp, "t1", opts(&vg), &src);
    assert_eq!(c1.rootfs.to_string(), format!("lvm:/dev/{vg}/t1"));
    assert_eq!(read(&e, &c1.rootfs, "data").as_deref(), Some("hello"));
    let attr = lvs(&vg).into_iter().find(|l| l.0 == "t1").unwrap().1;
    assert_eq!(attr, "V", "t1 is a thin volume");

    let c2 = clone(&e, &lp, "t1", "t2", true, None, BackendOpts::default()).unwrap();
    assert_eq!(c2.rootfs.to_string(), format!("lvm:/dev/{vg}/t2"));
    assert_eq!(read(&e, &c2.rootfs, "etc/hostname").as_deref(), Some("t2\n"));
    write(&e, &c2.rootfs, "data", "changed");
    assert_eq!(read(&e, &c1.rootfs, "data").as_deref(), Some("hello"));
    // A snapshot of a snapshot.
    let c3 = clone(&e, &lp, "t2", "t3", true, None, BackendOpts::default()).unwrap();
    assert_eq!(read(&e, &c3.rootfs, "data").as_deref(), Some("changed"));
    // Thin snapshots do not depend on their origin: the origin can go first.
    destroy(&e, &lp, "t1");
    assert_eq!(read(&e, &c3.rootfs, "data").as_deref(), Some("changed"));
    destroy(&e, &lp, "t2");
    destroy(&e, &lp, "t3");
    assert_eq!(lvs(&vg), before, "every LV removed");
}

#[test]
fn snapshot_restore_destroy() {
    let Some(vg) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let before = lvs(&vg);
    let c = create(&e, &lp, "s1", opts(&vg), &src);
    let r = ContainerRef::new(&lp, "s1");
    assert_eq!(e.snapshot(&r, None).unwrap(), "snap0");
    write(&e, &c.rootfs, "data", "v2");
    assert_eq!(e.snapshot(&r, None).unwrap(), "snap1");
    write(&e, &c.rootfs, "data", "v3");
    let names: Vec<String> = lvs(&vg).into_iter().map(|l| l.0).collect();
    assert!(
        names.contains(&"s1_snap0".into()) && names.contains(&"s1_snap1".into()),
        "{names:?}"
    );
    // Restore the older one: the newer snapshot stays.
    let restored = e.restore(&r, "snap0", None).unwrap();
    assert_ne!(restored.rootfs, c.rootfs, "a fresh LV");
    assert_eq!(read(&e, &restored.rootfs, "data").as_deref(), Some("hello"));
    assert_eq!(e.snapshots(&r).unwrap().len(), 2);
    let s1 = e.restore(&r, "snap1", Some("s1b")).unwrap();
    assert_eq!(read(&e, &s1.rootfs, "data").as_deref(), Some("v2"));
    e.destroy_snapshot(&r, "snap1").unwrap();
    destroy(&e, &lp, "s1");
    destroy(&e, &lp, "s1b");
    assert_eq!(lvs(&vg), before);
}

#[test]
fn plain_volume_classic_snapshot_and_refused_snapshot_of_it() {
    let Some(vg) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let before = lvs(&vg);
    // The default pool "lxc" does not exist: a plain LV.
    let o = BackendOpts {
        vgname: Some(vg.clone()),
        fssize: Some(32 << 20),
        ..BackendOpts::default()
    };
    let c = create(&e, &lp, "p1", o, &src);
    let attr = lvs(&vg).into_iter().find(|l| l.0 == "p1").unwrap().1;
    assert_eq!(attr, "-", "plain LV");
    let c2 = clone(&e, &lp, "p1", "p2", true, None, BackendOpts::default()).unwrap();
    let attr = lvs(&vg).into_iter().find(|l| l.0 == "p2").unwrap().1;
    assert_eq!(attr, "s", "classic snapshot");
    assert_eq!(read(&e, &c2.rootfs, "data").as_deref(), Some("hello"));
    let mid = lvs(&vg);
    let err = clone(&e, &lp, "p2", "p3", true, None, BackendOpts::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(!lp.join("p3").exists());
    assert_eq!(lvs(&vg), mid, "nothing made");
    // The origin cannot go while its classic snapshot lives.
    let b = e.backends.for_spec(&c.rootfs).unwrap();
    assert_eq!(b.dependents(&c.rootfs).unwrap(), vec![c2.rootfs.clone()]);
    destroy(&e, &lp, "p2");
    destroy(&e, &lp, "p1");
    assert_eq!(lvs(&vg), before);
}

#[test]
fn xfs_clone_gets_its_own_uuid() {
    let Some(vg) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let mut o = opts(&vg);
    o.fstype = Some("xfs".into());
    o.fssize = Some(320 << 20);
    let c = create(&e, &lp, "x1", o, &src);
    let c2 = clone(&e, &lp, "x1", "x2", true, None, BackendOpts::default()).unwrap();
    // Both mounted at once: xfs refuses a second mount of one UUID.
    let b = e.backends.for_spec(&c.rootfs).unwrap();
    let m1 = Opened::open(b, &c.rootfs, true).unwrap();
    let m2 = Opened::open(b, &c2.rootfs, true).unwrap();
    assert_eq!(std::fs::read_to_string(m2.path().join("data")).unwrap(), "hello");
    m2.close().unwrap();
    m1.close().unwrap();
    destroy(&e, &lp, "x2");
    destroy(&e, &lp, "x1");
}

#[test]
fn copies_to_and_from_dir() {
    let Some(vg) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let before = lvs(&vg);
    create(&e, &lp, "d1", opts(&vg), &src);
    let d = clone(&e, &lp, "d1", "d2", false, Some("dir"), BackendOpts::default()).unwrap();
    assert_eq!(d.rootfs.kind(), "dir");
    assert_eq!(std::fs::read_to_string(d.rootfs.path().join("data")).unwrap(), "hello");
    assert_eq!(
        std::fs::read_link(d.rootfs.path().join("link")).unwrap(),
        Path::new("data")
    );
    let l = clone(&e, &lp, "d2", "d3", false, Some("lvm"), opts(&vg)).unwrap();
    assert_eq!(l.rootfs.kind(), "lvm");
    assert_eq!(read(&e, &l.rootfs, "data").as_deref(), Some("hello"));
    for n in ["d1", "d2", "d3"] {
        destroy(&e, &lp, n);
    }
    assert_eq!(lvs(&vg), before);
}

#[test]
fn bad_input_is_refused_before_anything_is_made() {
    let Some(vg) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let before = lvs(&vg);
    let try_create = |name: &str, o: BackendOpts| {
        e.create(&CreateRequest {
            lxcpath: lp.clone(),
            name: name.into(),
            backend: Some("lvm".into()),
            opts: o,
            source: RootfsSource::Dir(src.clone()),
            ..CreateRequest::default()
        })
        .unwrap_err()
    };
    let mut o = opts(&vg);
    o.vgname = Some("novg".into());
    assert_eq!(try_create("b1", o).kind(), ErrorKind::NotFound);
    let mut o = opts(&vg);
    o.thinpool = Some("nopool".into());
    let err = try_create("b1", o);
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("nopool"), "{err}");
    for bad in ["-x", "a@b", "snapshot"] {
        let mut o = opts(&vg);
        o.lvname = Some(bad.into());
        assert_eq!(try_create("b1", o).kind(), ErrorKind::InvalidName, "{bad}");
    }
    let mut o = opts(&vg);
    o.fssize = Some(1 << 40);
    assert_eq!(try_create("b1", o).kind(), ErrorKind::InvalidArgument);
    let o = BackendOpts {
        vgname: Some(vg.clone()),
        fssize: Some(1 << 40),
        ..BackendOpts::default()
    };
    assert_eq!(try_create("b1", o).kind(), ErrorKind::InvalidArgument);
    assert_eq!(lvs(&vg), before, "no LV made");
    let left: Vec<_> = std::fs::read_dir(&lp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "lxcpath left as it was: {left:?}");
}

#[test]
fn usage_reports_thin_data() {
    let Some(vg) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let c = create(&e, &lp, "u1", opts(&vg), &src);
    let b = e.backends.for_spec(&c.rootfs).unwrap();
    let u = b.usage_reporter().unwrap().usage(&c.rootfs).unwrap();
    assert!(u.referenced.unwrap() > 0 && u.referenced.unwrap() < 64 << 20, "{u:?}");
    // 8 MiB written: the mapped share grows by at least that, and the
    // figure is data_percent of the size as lvs reports them.
    let big: String = (0..8 << 20).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    write(&e, &c.rootfs, "big", &big);
    let u2 = b.usage_reporter().unwrap().usage(&c.rootfs).unwrap();
    let lv = c.rootfs.source().trim_start_matches("/dev/").to_string();
    let o = Command::new("lvs")
        .args([
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "lv_size,data_percent",
            &lv,
        ])
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let f: Vec<&str> = out.split_whitespace().collect();
    let size: f64 = f[0].parse().unwrap();
    let pct: f64 = f[1].parse().unwrap();
    assert_eq!(u2.referenced.unwrap(), (size * pct / 100.0) as u64, "{out}");
    assert!(
        u2.referenced.unwrap() >= u.referenced.unwrap() + (8 << 20) - (1 << 20),
        "{u:?} {u2:?}"
    );
    assert_eq!(u2.source, strata_core::UsageSource::Accounting("thin data_percent"));
    destroy(&e, &lp, "u1");
}

/// Two containers of one name in two lxcpaths, built at once on one VG:
/// each plans the same free LV name; the one whose lvcreate loses undoes
/// its build without touching the winner's LV and plans again. Both end
/// whole, each config naming its own LV.
#[test]
fn same_named_containers_in_two_lxcpaths_built_at_once_get_their_own_lvs() {
    let Some(vg) = vm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let before = lvs(&vg);
    // One round by default: each takes minutes under emulation;
    // STRATA_VM_ROUNDS=N repeats the race N times.
    let rounds: usize = std::env::var("STRATA_VM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for round in 0..rounds {
        let name = format!("twin{round}");
        let paths: Vec<PathBuf> = (0..2).map(|i| tmp.path().join(format!("lxc{round}-{i}"))).collect();
        let go = std::sync::Barrier::new(2);
        let made: Vec<strata_core::Container> = std::thread::scope(|s| {
            let hs: Vec<_> = paths
                .iter()
                .map(|lp| {
                    let (go, name, src, vg) = (&go, &name, &src, &vg);
                    s.spawn(move || {
                        let e = engine();
                        go.wait();
                        create(&e, lp, name, opts(vg), src)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let e = engine();
        assert_ne!(
            made[0].rootfs, made[1].rootfs,
            "round {round}: one LV for two containers"
        );
        for (c, lp) in made.iter().zip(&paths) {
            let cfg = std::fs::read_to_string(lp.join(&name).join("config")).unwrap();
            assert!(cfg.contains(&format!("lxc.rootfs.path = {}", c.rootfs)), "{cfg}");
            assert_eq!(read(&e, &c.rootfs, "data").as_deref(), Some("hello"));
        }
        for lp in &paths {
            destroy(&e, lp, &name);
        }
    }
    assert_eq!(lvs(&vg), before, "every LV removed");
}

/// A build killed between its plan and its lvcreate leaves a record naming
/// an LV it never made; meanwhile a container of the same name in another
/// lxcpath made that LV. Undoing the killed build must not destroy it.
#[test]
fn undoing_a_killed_build_spares_the_lv_another_lxcpath_made() {
    let Some(vg) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let theirs = create(&e, &b, "same", opts(&vg), &src);
    assert_eq!(theirs.rootfs.to_string(), format!("lvm:/dev/{vg}/same"));
    // As the killed build in `a` left it: its staging dir with its record.
    let staging = a.join(".strata-tmp.same.killed1");
    std::fs::create_dir_all(&staging).unwrap();
    let rec = format!(
        r#"{{"dir":"{}","spec":"{}","dep":null}}"#,
        a.join("same").display(),
        theirs.rootfs
    );
    std::fs::write(staging.join(".strata-op"), rec).unwrap();
    let removed = e.reconcile(&a).unwrap();
    assert_eq!(removed, vec![staging.clone()]);
    assert!(!staging.exists());
    assert!(
        lvs(&vg).iter().any(|l| l.0 == "same"),
        "the other lxcpath's LV was destroyed"
    );
    assert_eq!(read(&e, &theirs.rootfs, "data").as_deref(), Some("hello"));
    destroy(&e, &b, "same");
}

fn thin_lv(vg: &str, lv: &str, tag: Option<&str>) {
    let mut c = Command::new("lvcreate");
    c.args(["-y", "-Wy", "-n", lv, "-V", "64m", "--thinpool"])
        .arg(format!("{vg}/pool"))
        .env("LVM_SUPPRESS_FD_WARNINGS", "1");
    if let Some(t) = tag {
        c.args(["--addtag", t]);
    }
    assert!(c.status().unwrap().success());
}

fn lvremove(vg: &str, lv: &str) {
    let st = Command::new("lvremove")
        .args(["-y", &format!("{vg}/{lv}")])
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .status()
        .unwrap();
    assert!(st.success());
}

/// An LV with no build mark named by a killed build's record: a strata
/// from before the marks made it (its record says nothing of marks) and
/// the next command undoes it; named by the record of a build that marks
/// (one made by hand, whose name a build planned meanwhile), it is left
/// alone.
#[test]
fn an_unmarked_lv_is_undone_only_for_a_build_that_did_not_mark() {
    let Some(vg) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    for (i, marks) in [(1, false), (2, true)] {
        let lp = tmp.path().join(format!("l{i}"));
        let lv = format!("unmarked{i}");
        thin_lv(&vg, &lv, None);
        let staging = lp.join(format!(".strata-tmp.{lv}.killed{i}"));
        std::fs::create_dir_all(&staging).unwrap();
        let flag = if marks { r#","marks":true"# } else { "" };
        let rec = format!(
            r#"{{"dir":"{}","spec":"lvm:/dev/{vg}/{lv}","dep":null{flag}}}"#,
            lp.join(&lv).display()
        );
        std::fs::write(staging.join(".strata-op"), rec).unwrap();
        assert_eq!(e.reconcile(&lp).unwrap(), vec![staging.clone()]);
        assert!(!staging.exists());
        let left = lvs(&vg).iter().any(|l| l.0 == lv);
        if marks {
            assert!(left, "an LV no build of ours made was destroyed");
            lvremove(&vg, &lv);
        } else {
            assert!(!left, "the older build's LV was left behind");
        }
    }
}

/// A receive killed while it made a container's snapshots: the next
/// command undoes each snapshot's LV as any build's, by the mark of its own
/// build dir (`snaps/SNAP` in the staging dir). The LV of snap0 is the
/// killed receive's and goes; the one planned for snap1 was made meanwhile
/// by a receive of the same container in another lxcpath (its snap1, same
/// name, another build) and stays.
#[test]
fn a_killed_receive_undoes_its_snapshots_and_spares_another_builds() {
    let Some(vg) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("a");
    let staging = lp.join(".strata-tmp.rc.killed");
    let other = tmp.path().join("b/.strata-tmp.rc.live");
    let tag = |d: &Path| format!("strata_build_{}", strata_core::build_mark(d));
    thin_lv(&vg, "rc", Some(&tag(&staging)));
    thin_lv(&vg, "rc_snap0", Some(&tag(&staging.join("snaps/snap0"))));
    thin_lv(&vg, "rc_snap1", Some(&tag(&other.join("snaps/snap1"))));
    std::fs::create_dir_all(staging.join("snaps/snap0")).unwrap();
    let rec = format!(
        r#"{{"dir":"{}","spec":"lvm:/dev/{vg}/rc","dep":null,"more":["lvm:/dev/{vg}/rc_snap0","lvm:/dev/{vg}/rc_snap1"],"more_builds":["snaps/snap0","snaps/snap1"],"marks":true}}"#,
        lp.join("rc").display()
    );
    std::fs::write(staging.join(".strata-op"), rec).unwrap();
    assert_eq!(e.reconcile(&lp).unwrap(), vec![staging.clone()]);
    assert!(!staging.exists());
    let names: Vec<String> = lvs(&vg).into_iter().map(|l| l.0).collect();
    assert!(
        !names.contains(&"rc".to_string()),
        "the killed receive's LV was left: {names:?}"
    );
    assert!(
        !names.contains(&"rc_snap0".to_string()),
        "the killed receive's snapshot LV was left: {names:?}"
    );
    assert!(
        names.contains(&"rc_snap1".to_string()),
        "another build's LV was destroyed: {names:?}"
    );
    lvremove(&vg, "rc_snap1");
}
