//! zfs against a real pool: runs inside the QEMU guest (tests/vm/run),
//! which sets STRATA_VM=1 and makes pool `$STRATA_VM_POOL` with dataset
//! `POOL/lxc`. Elsewhere every test says it was skipped and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use strata_core::engine::{CloneRequest, CreateRequest, DestroyRequest, Engine, RootfsSource};
use strata_core::{BackendOpts, Backends, ContainerRef, ErrorKind, Opened, RootfsSpec};

fn vm() -> Option<String> {
    if std::env::var_os("STRATA_VM").is_some_and(|v| v == "1") {
        Some(std::env::var("STRATA_VM_POOL").unwrap_or_else(|_| "strata_tank".into()))
    } else {
        eprintln!("SKIPPED: needs a real zfs module (run tests/vm/run, which sets STRATA_VM=1)");
        None
    }
}

fn engine() -> Engine {
    let mut b = Backends::new();
    b.register(strata_zfs::backend());
    b.register(strata_dir::backend());
    Engine::new(b)
}

/// Every filesystem and snapshot under the pool, sorted.
fn datasets(pool: &str) -> Vec<String> {
    let o = Command::new("zfs")
        .args(["list", "-H", "-o", "name", "-t", "filesystem,snapshot", "-r", pool])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect();
    v.sort();
    v
}

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

fn opts(pool: &str) -> BackendOpts {
    BackendOpts {
        zfsroot: Some(format!("{pool}/lxc")),
        ..BackendOpts::default()
    }
}

fn create(e: &Engine, lxcpath: &Path, name: &str, o: BackendOpts, src: &Path) -> strata_core::Container {
    e.create(&CreateRequest {
        lxcpath: lxcpath.into(),
        name: name.into(),
        backend: Some("zfs".into()),
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
fn create_clone_snapshot_of_snapshot_and_send_receive() {
    let Some(pool) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let before = datasets(&pool);
    let c1 = create(&e, &lp, "z1", opts(&pool), &src);
    assert_eq!(c1.rootfs.to_string(), format!("zfs:{pool}/lxc/z1"));
    assert_eq!(read(&e, &c1.rootfs, "data").as_deref(), Some("hello"));
    let c2 = clone(&e, &lp, "z1", "z2", true, None, BackendOpts::default()).unwrap();
    assert_eq!(c2.rootfs.to_string(), format!("zfs:{pool}/lxc/z2"));
    write(&e, &c2.rootfs, "data", "changed");
    assert_eq!(read(&e, &c1.rootfs, "data").as_deref(), Some("hello"));
    let c3 = clone(&e, &lp, "z2", "z3", true, None, BackendOpts::default()).unwrap();
    assert_eq!(read(&e, &c3.rootfs, "data").as_deref(), Some("changed"));
    assert_eq!(read(&e, &c3.rootfs, "etc/hostname").as_deref(), Some("z3\n"));
    // A copy inside the pool: send/receive, independent of its source.
    let c4 = clone(&e, &lp, "z2", "z4", false, None, opts(&pool)).unwrap();
    assert_eq!(read(&e, &c4.rootfs, "data").as_deref(), Some("changed"));
    let origin = Command::new("zfs")
        .args(["get", "-H", "-o", "value", "origin", c4.rootfs.source()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&origin.stdout).trim(),
        "-",
        "a copy is no clone"
    );
    for n in ["z4", "z3", "z2", "z1"] {
        destroy(&e, &lp, n);
    }
    assert_eq!(datasets(&pool), before, "no dataset or snapshot left");
}

#[test]
fn restore_an_older_snapshot_keeps_the_newer() {
    let Some(pool) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let before = datasets(&pool);
    let c = create(&e, &lp, "r1", opts(&pool), &src);
    let r = ContainerRef::new(&lp, "r1");
    assert_eq!(e.snapshot(&r, None).unwrap(), "snap0");
    write(&e, &c.rootfs, "data", "v2");
    assert_eq!(e.snapshot(&r, None).unwrap(), "snap1");
    write(&e, &c.rootfs, "data", "v3");
    let ds = datasets(&pool);
    assert!(ds.contains(&format!("{pool}/lxc/r1_snap0")), "{ds:?}");
    let restored = e.restore(&r, "snap0", None).unwrap();
    assert_ne!(restored.rootfs, c.rootfs);
    assert_eq!(read(&e, &restored.rootfs, "data").as_deref(), Some("hello"));
    let snaps = e.snapshots(&r).unwrap();
    assert_eq!(snaps.len(), 2, "snap1 kept");
    let s1 = Store(&lp).snap_spec("r1", "snap1");
    assert_eq!(read(&e, &s1, "data").as_deref(), Some("v2"));
    // And the newer one after that.
    let again = e.restore(&r, "snap1", None).unwrap();
    assert_eq!(read(&e, &again.rootfs, "data").as_deref(), Some("v2"));
    destroy(&e, &lp, "r1");
    assert_eq!(datasets(&pool), before);
}

struct Store<'a>(&'a Path);
impl Store<'_> {
    fn snap_spec(&self, name: &str, snap: &str) -> RootfsSpec {
        let cfg = std::fs::read_to_string(self.0.join(name).join("snaps").join(snap).join("config")).unwrap();
        let v = cfg
            .lines()
            .find_map(|l| l.strip_prefix("lxc.rootfs.path"))
            .unwrap()
            .trim_start_matches([' ', '='])
            .trim();
        RootfsSpec::parse(v).unwrap()
    }
}

#[test]
fn destroy_with_clones_names_them_or_promotes() {
    let Some(pool) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let before = datasets(&pool);
    let c1 = create(&e, &lp, "o1", opts(&pool), &src);
    let c2 = clone(&e, &lp, "o1", "o2", true, None, BackendOpts::default()).unwrap();
    write(&e, &c2.rootfs, "data", "mine");
    let b = e.backends.for_spec(&c1.rootfs).unwrap();
    assert_eq!(b.dependents(&c1.rootfs).unwrap(), vec![c2.rootfs.clone()]);
    // The engine refuses, naming the clone, and changes nothing.
    let err = e
        .destroy(&DestroyRequest {
            r: ContainerRef::new(&lp, "o1"),
            with_snapshots: true,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HasDependents);
    assert!(err.to_string().contains(&format!("{pool}/lxc/o2")), "{err}");
    assert!(lp.join("o1/config").is_file() && b.exists(&c1.rootfs));
    // --promote: inside the engine's destroy, the clone takes over the snapshot, then the destroy goes on.
    let promoted = e
        .destroy_reporting(&DestroyRequest {
            r: ContainerRef::new(&lp, "o1"),
            with_snapshots: true,
            promote: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(promoted, vec![format!("{pool}/lxc/o2")]);
    assert!(!lp.join("o1").exists());
    assert!(!b.exists(&c1.rootfs));
    assert_eq!(read(&e, &c2.rootfs, "data").as_deref(), Some("mine"));
    assert_eq!(read(&e, &c2.rootfs, "link").as_deref(), Some("mine"));
    destroy(&e, &lp, "o2");
    assert_eq!(datasets(&pool), before);
}

#[test]
fn copies_to_and_from_dir() {
    let Some(pool) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let before = datasets(&pool);
    create(&e, &lp, "d1", opts(&pool), &src);
    let d = clone(&e, &lp, "d1", "d2", false, Some("dir"), BackendOpts::default()).unwrap();
    assert_eq!(std::fs::read_to_string(d.rootfs.path().join("data")).unwrap(), "hello");
    assert_eq!(
        std::fs::read_link(d.rootfs.path().join("link")).unwrap(),
        Path::new("data")
    );
    let z = clone(&e, &lp, "d2", "d3", false, Some("zfs"), opts(&pool)).unwrap();
    assert_eq!(read(&e, &z.rootfs, "data").as_deref(), Some("hello"));
    for n in ["d1", "d2", "d3"] {
        destroy(&e, &lp, n);
    }
    assert_eq!(datasets(&pool), before);
}

#[test]
fn bad_input_is_refused_before_anything_is_made() {
    let Some(pool) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let before = datasets(&pool);
    let try_create = |name: &str, root: &str| {
        e.create(&CreateRequest {
            lxcpath: lp.clone(),
            name: name.into(),
            backend: Some("zfs".into()),
            opts: BackendOpts {
                zfsroot: Some(root.into()),
                ..BackendOpts::default()
            },
            source: RootfsSource::Dir(src.clone()),
            ..CreateRequest::default()
        })
        .unwrap_err()
    };
    let err = try_create("b1", &format!("{pool}/nope"));
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("does not exist"), "{err}");
    for root in ["-x", "a@b", &format!("{pool}/lxc@s"), &format!("{pool}//x")] {
        assert_eq!(try_create("b1", root).kind(), ErrorKind::InvalidName, "{root}");
    }
    assert_eq!(try_create("a@b", &format!("{pool}/lxc")).kind(), ErrorKind::InvalidName);
    assert_eq!(datasets(&pool), before);
    let left: Vec<_> = std::fs::read_dir(&lp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "lxcpath left as it was: {left:?}");
}

#[test]
fn usage_from_used_and_referenced() {
    let Some(pool) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("lxc");
    let src = source(tmp.path());
    let c = create(&e, &lp, "u1", opts(&pool), &src);
    let b = e.backends.for_spec(&c.rootfs).unwrap();
    let u = b.usage_reporter().unwrap().usage(&c.rootfs).unwrap();
    assert!(u.referenced.unwrap() > 0 && u.exclusive.unwrap() > 0, "{u:?}");
    // A snapshot clone, then 4 MiB written in the base: the base's
    // snapshot (the clone's origin) keeps the old blocks, and every figure
    // is what zfs itself says.
    let cl = clone(&e, &lp, "u1", "u2", true, None, BackendOpts::default()).unwrap();
    // Letters from a pseudo-random sequence: a repeating pattern would be
    // compressed to almost nothing by a pool with compression on.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let big: String = (0..4 << 20)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            char::from(b'a' + ((x >> 33) % 26) as u8)
        })
        .collect();
    write(&e, &c.rootfs, "big", &big);
    // zfs counts written blocks once their transaction group is synced.
    assert!(Command::new("zpool").arg("sync").status().unwrap().success());
    let zget = |ds: &str| -> Vec<u64> {
        let o = Command::new("zfs")
            .args(["get", "-H", "-p", "-o", "value", "used,referenced,usedbysnapshots", ds])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    };
    for spec in [&c.rootfs, &cl.rootfs] {
        let u = b.usage_reporter().unwrap().usage(spec).unwrap();
        let ds = spec.source().to_string();
        assert_eq!(
            vec![u.exclusive.unwrap(), u.referenced.unwrap(), u.snapshots.unwrap()],
            zget(&ds),
            "{ds}"
        );
        assert_eq!(u.source, strata_core::UsageSource::Accounting("zfs"));
    }
    let u = b.usage_reporter().unwrap().usage(&c.rootfs).unwrap();
    assert!(u.referenced.unwrap() >= 2 << 20, "{u:?}");
    destroy(&e, &lp, "u2");
    destroy(&e, &lp, "u1");
}

/// Two containers of one name in two lxcpaths, built at once in one zfs
/// root: each plans the same free dataset name; the one whose `zfs create`
/// loses undoes its build without touching the winner's dataset and plans
/// again. Both end whole, each config naming its own dataset.
#[test]
fn same_named_containers_in_two_lxcpaths_built_at_once_get_their_own_datasets() {
    let Some(pool) = vm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let before = datasets(&pool);
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
                    let (go, name, src, pool) = (&go, &name, &src, &pool);
                    s.spawn(move || {
                        let e = engine();
                        go.wait();
                        create(&e, lp, name, opts(pool), src)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let e = engine();
        assert_ne!(
            made[0].rootfs, made[1].rootfs,
            "round {round}: one dataset for two containers"
        );
        for (c, lp) in made.iter().zip(&paths) {
            let cfg = std::fs::read_to_string(lp.join(&name).join("config")).unwrap();
            assert!(cfg.contains(&format!("lxc.rootfs.path = {}", c.rootfs)), "{cfg}");
            assert_eq!(read(&e, &c.rootfs, "data").as_deref(), Some("hello"));
        }
        // Snapshot clones of each, at once, to one planned name too.
        let clones: Vec<strata_core::Container> = std::thread::scope(|s| {
            let hs: Vec<_> = paths
                .iter()
                .map(|lp| {
                    let (go, name) = (&go, &name);
                    s.spawn(move || {
                        let e = engine();
                        go.wait();
                        clone(&e, lp, name, "k", true, None, BackendOpts::default()).unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_ne!(
            clones[0].rootfs, clones[1].rootfs,
            "round {round}: one clone dataset for two"
        );
        for lp in &paths {
            destroy(&e, lp, "k");
            destroy(&e, lp, &name);
        }
    }
    assert_eq!(datasets(&pool), before, "every dataset removed");
}

/// A build killed between its plan and its `zfs create` leaves a record
/// naming a dataset it never made; meanwhile a container of the same name
/// in another lxcpath made it. Undoing the killed build must not destroy it.
#[test]
fn undoing_a_killed_build_spares_the_dataset_another_lxcpath_made() {
    let Some(pool) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let theirs = create(&e, &b, "same", opts(&pool), &src);
    assert_eq!(theirs.rootfs.to_string(), format!("zfs:{pool}/lxc/same"));
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
        datasets(&pool).contains(&format!("{pool}/lxc/same")),
        "the other lxcpath's dataset was destroyed"
    );
    assert_eq!(read(&e, &theirs.rootfs, "data").as_deref(), Some("hello"));
    destroy(&e, &b, "same");
}

fn zfs(args: &[&str]) {
    let st = Command::new("zfs").args(args).status().unwrap();
    assert!(st.success(), "zfs {args:?}");
}

/// A dataset with no build mark named by a killed build's record: a strata
/// from before the marks made it (its record says nothing of marks) and
/// the next command undoes it; named by the record of a build that marks
/// (one made by hand, whose name a build planned meanwhile), it is left
/// alone.
#[test]
fn an_unmarked_dataset_is_undone_only_for_a_build_that_did_not_mark() {
    let Some(pool) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    for (i, marks) in [(1, false), (2, true)] {
        let lp = tmp.path().join(format!("l{i}"));
        let ds = format!("{pool}/lxc/unmarked{i}");
        zfs(&["create", "-p", "-o", "mountpoint=legacy", &ds]);
        let staging = lp.join(format!(".strata-tmp.unmarked{i}.killed"));
        std::fs::create_dir_all(&staging).unwrap();
        let flag = if marks { r#","marks":true"# } else { "" };
        let rec = format!(
            r#"{{"dir":"{}","spec":"zfs:{ds}","dep":null{flag}}}"#,
            lp.join(format!("unmarked{i}")).display()
        );
        std::fs::write(staging.join(".strata-op"), rec).unwrap();
        assert_eq!(e.reconcile(&lp).unwrap(), vec![staging.clone()]);
        assert!(!staging.exists());
        let left = datasets(&pool).contains(&ds);
        if marks {
            assert!(left, "a dataset no build of ours made was destroyed");
            zfs(&["destroy", &ds]);
        } else {
            assert!(!left, "the older build's dataset was left behind");
        }
    }
}

/// A clone killed between its `zfs snapshot` and its `zfs clone` left its
/// snapshot (made for the dataset it planned); a live build in another
/// lxcpath that planned the same dataset name is at that point too, its
/// snapshot made, its clone not yet. Undoing the killed build drops its
/// own snapshot and leaves the live build's, whose clone then goes on.
#[test]
fn undoing_a_killed_clone_spares_a_live_builds_snapshot() {
    let Some(pool) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let base = create(&e, &b, "snapbase", opts(&pool), &src);
    let base_ds = base.rootfs.to_string().trim_start_matches("zfs:").to_string();
    let planned = format!("{pool}/lxc/twin");
    let killed = a.join(".strata-tmp.twin.killed");
    let live = b.join(".strata-tmp.twin.live");
    let (dead_snap, live_snap) = (format!("{base_ds}@strata-dead"), format!("{base_ds}@strata-live"));
    for (build, snap) in [(&killed, &dead_snap), (&live, &live_snap)] {
        let made_for = format!("strata:for={planned}");
        let mark = format!("strata:build={}", strata_core::build_mark(build));
        zfs(&["snapshot", "-o", &made_for, "-o", &mark, snap]);
    }
    std::fs::create_dir_all(&killed).unwrap();
    let rec = format!(
        r#"{{"dir":"{}","spec":"zfs:{planned}","dep":null,"marks":true}}"#,
        a.join("twin").display()
    );
    std::fs::write(killed.join(".strata-op"), rec).unwrap();
    assert_eq!(e.reconcile(&a).unwrap(), vec![killed.clone()]);
    let now = datasets(&pool);
    assert!(!now.contains(&dead_snap), "the killed build's snapshot was left");
    assert!(now.contains(&live_snap), "the live build's snapshot was dropped");
    zfs(&["clone", "-o", "mountpoint=legacy", &live_snap, &planned]);
    zfs(&["destroy", &planned]);
    zfs(&["destroy", &live_snap]);
    destroy(&e, &b, "snapbase");
}

/// A receive killed while it made a container's snapshots: each snapshot's
/// dataset is undone by the mark of its own build dir (`snaps/SNAP` in the
/// staging dir); the one planned for snap1 that a receive of the same
/// container in another lxcpath made meanwhile stays.
#[test]
fn a_killed_receive_undoes_its_snapshots_and_spares_another_builds() {
    let Some(pool) = vm() else { return };
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("a");
    let staging = lp.join(".strata-tmp.rc.killed");
    let other = tmp.path().join("b/.strata-tmp.rc.live");
    let mark = |d: &Path| format!("strata:build={}", strata_core::build_mark(d));
    let ds = |n: &str| format!("{pool}/lxc/{n}");
    for (n, by) in [
        ("rc", staging.clone()),
        ("rc_snap0", staging.join("snaps/snap0")),
        ("rc_snap1", other.join("snaps/snap1")),
    ] {
        zfs(&["create", "-p", "-o", "mountpoint=legacy", "-o", &mark(&by), &ds(n)]);
    }
    std::fs::create_dir_all(staging.join("snaps/snap0")).unwrap();
    let rec = format!(
        r#"{{"dir":"{}","spec":"zfs:{}","dep":null,"more":["zfs:{}","zfs:{}"],"more_builds":["snaps/snap0","snaps/snap1"],"marks":true}}"#,
        lp.join("rc").display(),
        ds("rc"),
        ds("rc_snap0"),
        ds("rc_snap1")
    );
    std::fs::write(staging.join(".strata-op"), rec).unwrap();
    assert_eq!(e.reconcile(&lp).unwrap(), vec![staging.clone()]);
    assert!(!staging.exists());
    let now = datasets(&pool);
    assert!(
        !now.contains(&ds("rc")),
        "the killed receive's dataset was left: {now:?}"
    );
    assert!(
        !now.contains(&ds("rc_snap0")),
        "the killed receive's snapshot dataset was left: {now:?}"
    );
    assert!(
        now.contains(&ds("rc_snap1")),
        "another build's dataset was destroyed: {now:?}"
    );
    zfs(&["destroy", &ds("rc_snap1")]);
}
