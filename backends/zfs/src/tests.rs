use super::runner::fake::FakeRunner;
use super::*;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc as StdArc;
use strata_core::block::testing;
use strata_core::{BackendOpts, ErrorKind};

/// What zfs says about a dataset that is not there: on stderr, exit 1.
fn missing(f: &FakeRunner, prefix: &str, name: &str) {
    f.canned.lock().unwrap().push((
        prefix.to_string(),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: format!("cannot open '{name}': dataset does not exist\n"),
        },
    ));
}

const LIST: &str = "zfs list -H -p -o name -d 1 -t filesystem";
const STATE: &str = "zfs list -H -p -o name,origin,createtxg,clones -t filesystem,volume,snapshot -d 1";

fn setup() -> (ZfsBackend, StdArc<FakeRunner>) {
    let (f, run) = testing::fake();
    missing(&f, "zfs list -H -p -o name ", "x");
    f.on("zfs list -H -p -o name tank/lxc", true, "tank/lxc\n");
    missing(&f, "zfs list -H -p -o name tank/lxc/", "tank/lxc/x");
    f.on("zfs list -H -p -o name tank/lxc/c1", true, "tank/lxc/c1\n");
    missing(&f, &format!("{LIST} "), "x");
    missing(&f, &format!("{STATE} "), "x");
    f.on(
        &format!("{LIST} tank/lxc"),
        true,
        "tank/lxc\ntank/lxc/c1\ntank/lxc/c1_snap0\n",
    );
    (ZfsBackend::with_runner(run), f)
}

fn plan(b: &ZfsBackend, name: &str, lxcpath: &str, root: Option<&str>, origin: Option<&str>) -> Result<RootfsSpec> {
    let opts = BackendOpts {
        zfsroot: root.map(String::from),
        ..BackendOpts::default()
    };
    testing::plan(b, name, lxcpath, &opts, origin)
}

#[test]
fn dataset_names() {
    for bad in ["-x", "a@b", "a#b", "a//b", "a/", "/a", "a/../b", "a b", "1pool/x", ""] {
        assert_eq!(
            validate_dataset(bad).unwrap_err().kind(),
            ErrorKind::InvalidName,
            "{bad:?}"
        );
    }
    for ok in ["tank", "tank/lxc/c1", "t/a.b:c-d_e"] {
        validate_dataset(ok).unwrap();
    }
}

#[test]
fn plan_names_do_not_collide() {
    let (b, f) = setup();
    assert_eq!(
        plan(&b, "c2", "/l", Some("tank/lxc"), None).unwrap().to_string(),
        "zfs:tank/lxc/c2"
    );
    assert_eq!(
        plan(&b, "c1", "/l", Some("tank/lxc"), None).unwrap().to_string(),
        "zfs:tank/lxc/c1_1"
    );
    // A snapshot clone in its origin's zfsroot tries the wanted name
    // without a command; once a clone found it taken, the next free one.
    let calls = f.calls().len();
    let s = plan(&b, "snap0", "/l/c1/snaps", None, Some("zfs:tank/lxc/c1")).unwrap();
    assert_eq!(s.to_string(), "zfs:tank/lxc/c1_snap0");
    assert_eq!(f.calls().len(), calls, "no command");
    b.taken.lock().unwrap().push("tank/lxc/c1_snap0".into());
    let s = plan(&b, "snap0", "/l/c1/snaps", None, Some("zfs:tank/lxc/c1")).unwrap();
    assert_eq!(s.to_string(), "zfs:tank/lxc/c1_snap0_1");
    // A second container's snap0 gets its own dataset (not LXC's shared snapN).
    let s = plan(&b, "snap0", "/l/c9/snaps", None, Some("zfs:tank/lxc/c1")).unwrap();
    assert_eq!(s.to_string(), "zfs:tank/lxc/c9_snap0");
    assert!(f.calls().iter().all(|c| c.starts_with("zfs list ")), "{:?}", f.calls());
}

#[test]
fn plan_refuses_bad_input() {
    let (b, f) = setup();
    assert_eq!(
        plan(&b, "c2", "/l", Some("tank/nope"), None).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        plan(&b, "c2", "/l", Some("-x"), None).unwrap_err().kind(),
        ErrorKind::InvalidName
    );
    assert_eq!(
        plan(&b, "c2", "/l", Some("a@b"), None).unwrap_err().kind(),
        ErrorKind::InvalidName
    );
    assert_eq!(
        plan(&b, "a@b", "/l", Some("tank/lxc"), None).unwrap_err().kind(),
        ErrorKind::InvalidName
    );
    let e = plan(&b, "c2", "/l", None, Some("/l/c1/rootfs")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(f.calls().iter().all(|c| c.starts_with("zfs list ")));
}

#[test]
fn snapshot_clone_and_send_receive_argv() {
    let (b, f) = setup();
    let lp = PathBuf::from("/l");
    let dir = lp.join("c2");
    let o = BackendOpts::default();
    let t = Target {
        name: "c2",
        lxcpath: &lp,
        dir: &dir,
        build_dir: &dir,
        opts: &o,
    };
    let src = RootfsSpec::parse("zfs:tank/lxc/c1").unwrap();
    let dst = RootfsSpec::parse("zfs:tank/lxc/c2").unwrap();
    b.snapshot(&src, &dst, &t, false).unwrap();
    let c = f.calls();
    assert!(
        c[0].starts_with(&format!(
            "zfs snapshot -o strata:for=tank/lxc/c2 -o strata:build={} tank/lxc/c1@strata-",
            strata_core::build_mark(&dir)
        )),
        "{c:?}"
    );
    let snap = c[0].rsplit(' ').next().unwrap().to_string();
    let mark = strata_core::build_mark(&dir);
    assert_eq!(
        c[1],
        format!("zfs clone -o mountpoint=legacy -o strata:build={mark} {snap} tank/lxc/c2")
    );
    assert!(b.fast_copy(&src, &dst, &t).unwrap());
    let c = f.calls();
    assert!(c.iter().any(|l| l.starts_with("zfs send tank/lxc/c1@strata-")));
    assert!(c.contains(&format!(
        "zfs receive -u -o mountpoint=legacy -o strata:build={mark} tank/lxc/c2"
    )));
    let other = RootfsSpec::parse("zfs:other/c2").unwrap();
    assert_eq!(
        b.snapshot(&src, &other, &t, false).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

#[test]
fn destroy_promotes_the_newest_clone() {
    let (b, f) = setup();
    // name, origin, createtxg, clones: the dataset and its snapshots.
    f.on(
        &format!("{STATE} tank/lxc/c1"),
        true,
        "tank/lxc/c1\t-\t5\t-\n\
         tank/lxc/c1@strata-a\t-\t10\ttank/lxc/c1_snap0\n\
         tank/lxc/c1@strata-b\t-\t20\ttank/lxc/c2,tank/lxc/c3\n\
         tank/lxc/c1@x\t-\t30\t\n",
    );
    f.on(
        "zfs list -H -p -o name,createtxg,clones -t snapshot -d 1 tank/lxc/c1",
        true,
        "tank/lxc/c1@strata-a\t10\ttank/lxc/c1_snap0\ntank/lxc/c1@strata-b\t20\ttank/lxc/c2,tank/lxc/c3\ntank/lxc/c1@x\t30\t\n",
    );
    let c1 = RootfsSpec::parse("zfs:tank/lxc/c1").unwrap();
    let deps: Vec<String> = b.dependents(&c1).unwrap().iter().map(|d| d.to_string()).collect();
    assert_eq!(deps, ["zfs:tank/lxc/c1_snap0", "zfs:tank/lxc/c2", "zfs:tank/lxc/c3"]);
    assert_eq!(f.calls(), [format!("{STATE} tank/lxc/c1")], "one command");
    // The canned listing never changes, so promotion stops at the loop bound: an error, no destroy.
    assert!(b.destroy(&c1).is_err());
    let c = f.calls();
    assert!(c.contains(&"zfs promote tank/lxc/c3".to_string()), "{c:?}");
    assert!(!c.iter().any(|l| l.starts_with("zfs destroy")));
}

#[test]
fn destroy_of_a_clone_is_three_commands() {
    let (b, f) = setup();
    f.on(
        &format!("{STATE} tank/lxc/c2"),
        true,
        "tank/lxc/c2\ttank/lxc/c1@strata-a\t40\t-\n",
    );
    b.destroy(&RootfsSpec::parse("zfs:tank/lxc/c2").unwrap()).unwrap();
    // The origin snapshot goes too, with its last clone (deferred destroy,
    // marked first: a kill between the two commands cannot leave it); zfs
    // itself keeps it while other clones need it.
    assert_eq!(
        f.calls(),
        [
            format!("{STATE} tank/lxc/c2"),
            "zfs destroy -d tank/lxc/c1@strata-a".into(),
            "zfs destroy -r tank/lxc/c2".into(),
        ]
    );
    // A snapshot this backend did not make stays; a failing zfs is an error, not "gone".
    f.on(
        &format!("{STATE} tank/lxc/c3"),
        true,
        "tank/lxc/c3\ttank/lxc/c1@mine\t40\t-\n",
    );
    b.destroy(&RootfsSpec::parse("zfs:tank/lxc/c3").unwrap()).unwrap();
    assert!(!f.calls().contains(&"zfs destroy tank/lxc/c1@mine".to_string()));
    f.on(&format!("{STATE} tank/lxc/c4"), false, "");
    let e = b.destroy(&RootfsSpec::parse("zfs:tank/lxc/c4").unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Command);
    assert!(!f
        .calls()
        .iter()
        .any(|c| c.contains("tank/lxc/c4") && c.starts_with("zfs destroy")));
}

#[test]
fn usage_parses_used_and_referenced() {
    let (b, f) = setup();
    f.canned.lock().unwrap().insert(
        0,
        (
            "zfs get -H -p -o value used,referenced,usedbysnapshots".into(),
            Out {
                ok: true,
                stdout: "12345\n67890\n4096\n".into(),
                stderr: String::new(),
            },
        ),
    );
    let u = b.usage(&RootfsSpec::parse("zfs:tank/lxc/c1").unwrap()).unwrap();
    assert_eq!(
        (u.exclusive, u.referenced, u.snapshots),
        (Some(12345), Some(67890), Some(4096))
    );
}

#[test]
fn destroy_of_missing_dataset_is_fine() {
    let (b, f) = setup();
    b.destroy(&RootfsSpec::parse("zfs:tank/lxc/gone").unwrap()).unwrap();
    assert_eq!(
        f.calls(),
        [
            format!("{STATE} tank/lxc/gone"),
            "zfs list -H -p -o name,strata:for,strata:build,clones -t snapshot -r tank".into()
        ]
    );
}

#[test]
fn destroy_drops_what_a_killed_clone_or_copy_left() {
    let (b, f) = setup();
    // Killed between its `zfs snapshot` and `zfs clone`: the dataset never came.
    f.on(
        "zfs list -H -p -o name,strata:for,strata:build,clones -t snapshot -r tank",
        true,
        "tank/lxc/c1@strata-a\ttank/lxc/gone\t-\t-\n\
         tank/lxc/c1@strata-b\ttank/lxc/c2\t-\t-\n\
         tank/lxc/c1@strata-c\ttank/lxc/gone\t-\ttank/lxc/other\n\
         tank/lxc/c1@strata-d\ttank/lxc/gone\t00000000000000bb\t-\n\
         tank/lxc/c1@mine\ttank/lxc/gone\t-\t-\n",
    );
    b.destroy(&RootfsSpec::parse("zfs:tank/lxc/gone").unwrap()).unwrap();
    let c = f.calls();
    let destroyed: Vec<&String> = c.iter().filter(|c| c.starts_with("zfs destroy")).collect();
    // Only ours, for this dataset, with no clone, and not one a build marked
    // (d: a live build's, between its snapshot and its clone).
    assert_eq!(destroyed, ["zfs destroy tank/lxc/c1@strata-a"], "{c:?}");
    // One a promotion moved onto the dataset it was made for, its clone gone.
    f.on(
        "zfs list -H -p -o name,strata:for,strata:build,clones -t snapshot -r tank",
        true,
        "tank/lxc/s0@strata-p\ttank/lxc/s0\t00000000000000cc\t-\n\
         tank/lxc/s1@strata-q\ttank/lxc/s1\t-\ttank/lxc/c9\n\
         tank/lxc/c1@strata-b\ttank/lxc/c2\t-\t-\n",
    );
    b.destroy(&RootfsSpec::parse("zfs:tank/lxc/gone2").unwrap()).unwrap();
    let c = f.calls();
    assert!(c.contains(&"zfs destroy tank/lxc/s0@strata-p".to_string()), "{c:?}");
    assert!(!c.contains(&"zfs destroy tank/lxc/s1@strata-q".to_string()), "{c:?}");
    // Killed in a copy after the receive: the received snapshot has no clone.
    f.on(
        &format!("{STATE} tank/lxc/c2"),
        true,
        "tank/lxc/c2\t-\t40\t-\ntank/lxc/c2@strata-b\t-\t41\t-\n",
    );
    b.destroy(&RootfsSpec::parse("zfs:tank/lxc/c2").unwrap()).unwrap();
    let c = f.calls();
    assert!(c.contains(&"zfs destroy -r tank/lxc/c2".to_string()), "{c:?}");
    assert!(c.contains(&"zfs destroy tank/lxc/c1@strata-b".to_string()), "{c:?}");
}

#[test]
fn plan_is_one_zfs_list() {
    let (b, f) = setup();
    // zfsroot in the origin's pool: one listing of it and of the origin's parent.
    f.on(
        &format!("{LIST} tank/lxc tank/ct"),
        true,
        "tank/ct\ntank/ct/c2\ntank/lxc\ntank/lxc/c1\n",
    );
    let s = plan(&b, "c2", "/l", Some("tank/ct"), Some("zfs:tank/lxc/c1")).unwrap();
    assert_eq!(s.to_string(), "zfs:tank/ct/c2_1");
    // A zfsroot that does not exist: zfs lists the rest and exits 1; the clone goes beside its origin.
    f.canned.lock().unwrap().push((
        format!("{LIST} tank/lxc tank/gone"),
        Out {
            ok: false,
            stdout: "tank/lxc\ntank/lxc/c1\ntank/lxc/c1_snap0\n".into(),
            stderr: "cannot open 'tank/gone': dataset does not exist\n".into(),
        },
    ));
    let s = plan(&b, "c2", "/l", Some("tank/gone"), Some("zfs:tank/lxc/c1")).unwrap();
    assert_eq!(s.to_string(), "zfs:tank/lxc/c2");
    // A missing origin outside the zfsroot is refused by the same listing
    // (in it, by its `zfs snapshot`: see the snapshot clone tests).
    let e = plan(&b, "c2", "/l", Some("tank/ct"), Some("zfs:tank/lxc/gone")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("tank/lxc/gone does not exist"), "{e}");
    // A new rootfs: the zfsroot and its children, once.
    let s = plan(&b, "c1", "/l", Some("tank/lxc"), None).unwrap();
    assert_eq!(s.to_string(), "zfs:tank/lxc/c1_1");
    assert_eq!(
        f.calls(),
        [
            format!("{LIST} tank/lxc tank/ct"),
            format!("{LIST} tank/lxc tank/gone"),
            format!("{LIST} tank/lxc tank/ct"),
            format!("{LIST} tank/lxc"),
        ]
    );
    // zfs failing for another reason is not read as "does not exist".
    f.on(&format!("{LIST} tank/lxc"), false, "");
    let e = plan(&b, "c2", "/l", Some("tank/lxc"), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Command, "{e}");
}

/// The zfs backend with mount(2) left out: the "mounted" rootfs is the empty
/// target dir given an `etc/hostname`, and mounts and unmounts are logged
/// among the commands, so that a test sees the whole sequence an engine
/// operation runs.
struct NoMount {
    zfs: ZfsBackend,
    log: StdArc<FakeRunner>,
    hostname: std::sync::Mutex<Option<String>>,
}

impl Backend for NoMount {
    fn kind(&self) -> &'static str {
        self.zfs.kind()
    }
    fn caps(&self) -> Caps {
        self.zfs.caps()
    }
    fn plan(&self, t: &Target, origin: Option<&RootfsSpec>) -> Result<RootfsSpec> {
        self.zfs.plan(t, origin)
    }
    fn create(&self, spec: &RootfsSpec, t: &Target) -> Result<()> {
        self.zfs.create(spec, t)
    }
    fn destroy(&self, spec: &RootfsSpec) -> Result<()> {
        self.zfs.destroy(spec)
    }
    fn exists(&self, spec: &RootfsSpec) -> bool {
        self.zfs.exists(spec)
    }
    fn mount(&self, spec: &RootfsSpec, target: &Path, _readonly: bool) -> Result<()> {
        self.log
            .calls
            .lock()
            .unwrap()
            .push(vec!["mount(2)".into(), spec.source().into()]);
        std::fs::create_dir(target.join("etc")).unwrap();
        std::fs::write(target.join("etc/hostname"), "orig\n").unwrap();
        Ok(())
    }
    fn umount(&self, spec: &RootfsSpec, target: &Path) -> Result<()> {
        self.log
            .calls
            .lock()
            .unwrap()
            .push(vec!["umount(2)".into(), spec.source().into()]);
        *self.hostname.lock().unwrap() = std::fs::read_to_string(target.join("etc/hostname")).ok();
        std::fs::remove_dir_all(target.join("etc")).unwrap();
        Ok(())
    }
    fn dependents(&self, spec: &RootfsSpec) -> Result<Vec<RootfsSpec>> {
        self.zfs.dependents(spec)
    }
    fn destroy_keeps_dependents(&self) -> bool {
        self.zfs.destroy_keeps_dependents()
    }
    fn snapshotter(&self) -> Option<&dyn Snapshotter> {
        self.zfs.snapshotter()
    }
    fn fast_copier(&self) -> Option<&dyn FastCopy> {
        self.zfs.fast_copier()
    }
    fn usage_reporter(&self) -> Option<&dyn UsageReport> {
        self.zfs.usage_reporter()
    }
}

/// An engine over the recording runner, and container c1 on `zfs:tank/lxc/c1`.
fn engine_with_c1() -> Option<(
    strata_core::engine::Engine,
    StdArc<NoMount>,
    StdArc<FakeRunner>,
    tempfile::TempDir,
)> {
    if !strata_core::paths::is_root() {
        eprintln!("SKIPPED: the engine takes the zfs backend for root only");
        return None;
    }
    let (zfs, f) = setup();
    let b = StdArc::new(NoMount {
        zfs,
        log: f.clone(),
        hostname: Default::default(),
    });
    let mut backends = strata_core::Backends::new();
    backends.register(b.clone());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("c1")).unwrap();
    std::fs::write(
        tmp.path().join("c1/config"),
        "lxc.uts.name = c1\nlxc.rootfs.path = zfs:tank/lxc/c1\n",
    )
    .unwrap();
    Some((strata_core::engine::Engine::new(backends), b, f, tmp))
}

/// The snapshot made for a clone, from the recorded `zfs snapshot` argv.
/// The build mark a clone was made with (its staging dir's).
fn clone_mark(calls: &[String]) -> String {
    calls
        .iter()
        .find(|c| c.starts_with("zfs clone "))
        .and_then(|c| c.split("strata:build=").nth(1))
        .and_then(|c| c.split(' ').next())
        .unwrap_or_else(|| panic!("no marked zfs clone in {calls:?}"))
        .to_string()
}

fn made_snapshot(calls: &[String]) -> String {
    calls
        .iter()
        .find(|c| c.starts_with("zfs snapshot "))
        .and_then(|c| c.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no zfs snapshot in {calls:?}"))
        .to_string()
}

// Each zfs command costs a process start (and most a transaction group): the
// counts below are what `lxc-copy -s` and `lxc-snapshot` cost, kept on purpose
// (two each, as LXC's `zfs snapshot` and `zfs clone`).

#[test]
fn snapshot_clone_runs_two_zfs_commands_as_lxc() {
    let Some((e, b, f, tmp)) = engine_with_c1() else { return };
    let c = e
        .clone_container(&strata_core::engine::CloneRequest {
            src: strata_core::ContainerRef::new(tmp.path(), "c1"),
            dst: strata_core::ContainerRef::new(tmp.path(), "c2"),
            snapshot: true,
            opts: BackendOpts {
                zfsroot: Some("tank/lxc".into()),
                ..BackendOpts::default()
            },
            ..Default::default()
        })
        .unwrap();
    assert_eq!(c.rootfs.to_string(), "zfs:tank/lxc/c2");
    let calls = f.calls();
    let snap = made_snapshot(&calls);
    assert!(snap.starts_with("tank/lxc/c1@strata-"), "{snap}");
    assert_eq!(
        calls,
        [
            format!(
                "zfs snapshot -o strata:for=tank/lxc/c2 -o strata:build={} {snap}",
                clone_mark(&calls)
            ),
            format!(
                "zfs clone -o mountpoint=legacy -o strata:build={} {snap} tank/lxc/c2",
                clone_mark(&calls)
            ),
            "mount(2) tank/lxc/c2".into(),
            "umount(2) tank/lxc/c2".into(),
        ]
    );
    assert_eq!(b.hostname.lock().unwrap().as_deref(), Some("c2\n"));
    let cfg = std::fs::read_to_string(tmp.path().join("c2/config")).unwrap();
    assert!(cfg.contains("lxc.rootfs.path = zfs:tank/lxc/c2"), "{cfg}");
}

#[test]
fn snapshot_create_runs_two_zfs_commands_as_lxc() {
    let Some((e, b, f, tmp)) = engine_with_c1() else { return };
    let r = strata_core::ContainerRef::new(tmp.path(), "c1");
    assert_eq!(e.snapshot(&r, None).unwrap(), "snap0");
    let calls = f.calls();
    let snap = made_snapshot(&calls);
    assert_eq!(
        calls,
        [
            format!(
                "zfs snapshot -o strata:for=tank/lxc/c1_snap0 -o strata:build={} {snap}",
                clone_mark(&calls)
            ),
            format!(
                "zfs clone -o mountpoint=legacy -o strata:build={} -o readonly=on {snap} tank/lxc/c1_snap0",
                clone_mark(&calls)
            ),
        ]
    );
    assert!(
        b.hostname.lock().unwrap().is_none(),
        "a snapshot keeps the hostname, unmounted"
    );
    let cfg = std::fs::read_to_string(tmp.path().join("c1/snaps/snap0/config")).unwrap();
    assert!(cfg.contains("lxc.rootfs.path = zfs:tank/lxc/c1_snap0"), "{cfg}");
}

#[test]
fn a_snapshot_onto_a_taken_name_is_planned_again_by_the_listing() {
    let Some((e, _b, f, tmp)) = engine_with_c1() else {
        return;
    };
    // tank/lxc/c1_snap0 exists (not strata's): its clone fails (the fake
    // fails every clone alike, so the second one fails too: the test sees
    // the plan made again by the listing, and the next name tried).
    f.canned.lock().unwrap().push((
        "zfs clone".into(),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: "cannot create 'tank/lxc/c1_snap0': dataset already exists\n".into(),
        },
    ));
    f.on("zfs list -H -p -o name tank/lxc/c1_snap0", true, "tank/lxc/c1_snap0\n");
    f.on(
        "zfs get -H -p -o value -s local strata:build tank/lxc/c1_snap0",
        true,
        "",
    );
    let r = strata_core::ContainerRef::new(tmp.path(), "c1");
    let _ = e.snapshot(&r, None);
    let calls = f.calls();
    let clones: Vec<&String> = calls.iter().filter(|c| c.starts_with("zfs clone")).collect();
    assert!(clones[0].ends_with(" tank/lxc/c1_snap0"), "{calls:?}");
    assert!(
        calls.iter().any(|c| c == &format!("{LIST} tank/lxc")),
        "planned again by the listing: {calls:?}"
    );
    assert!(clones[1].ends_with(" tank/lxc/c1_snap0_1"), "{calls:?}");
    // The dataset that was there is left as it was.
    assert!(
        !calls.iter().any(|c| c.starts_with("zfs destroy -r tank/lxc/c1_snap0")),
        "{calls:?}"
    );
}

#[test]
fn a_failed_clone_leaves_nothing() {
    let Some((e, _b, f, tmp)) = engine_with_c1() else {
        return;
    };
    f.on("zfs clone ", false, "");
    let err = e
        .clone_container(&strata_core::engine::CloneRequest {
            src: strata_core::ContainerRef::new(tmp.path(), "c1"),
            dst: strata_core::ContainerRef::new(tmp.path(), "c2"),
            snapshot: true,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Command, "{err}");
    let calls = f.calls();
    let snap = made_snapshot(&calls);
    // The snapshot made for it is destroyed; the planned dataset was free, so nothing else is.
    assert!(calls.contains(&format!("zfs destroy {snap}")), "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("zfs destroy -r")), "{calls:?}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["c1"]);
}

#[test]
fn destroying_a_clone_runs_four_zfs_commands() {
    let Some((e, _b, f, tmp)) = engine_with_c1() else {
        return;
    };
    std::fs::create_dir(tmp.path().join("c2")).unwrap();
    std::fs::write(
        tmp.path().join("c2/config"),
        "lxc.uts.name = c2\nlxc.rootfs.path = zfs:tank/lxc/c2\n",
    )
    .unwrap();
    f.on(
        &format!("{STATE} tank/lxc/c2"),
        true,
        "tank/lxc/c2\ttank/lxc/c1@strata-a\t40\t-\n",
    );
    e.destroy(&strata_core::engine::DestroyRequest {
        r: strata_core::ContainerRef::new(tmp.path(), "c2"),
        with_snapshots: true,
        ..Default::default()
    })
    .unwrap();
    // Its dependents (none), then the dataset and the snapshot it was cloned from.
    assert_eq!(
        f.calls(),
        [
            format!("{STATE} tank/lxc/c2"),
            format!("{STATE} tank/lxc/c2"),
            "zfs destroy -d tank/lxc/c1@strata-a".into(),
            "zfs destroy -r tank/lxc/c2".into(),
        ]
    );
    assert!(!tmp.path().join("c2").exists());
}

#[test]
fn a_copy_goes_beside_its_source_unless_a_zfsroot_is_given() {
    let (b, f) = setup();
    f.on(&format!("{LIST} tank/ct"), true, "tank/ct\ntank/ct/c1\n");
    let lp = PathBuf::from("/l");
    let dir = lp.join("c2");
    let mut opts = BackendOpts {
        copy_of: Some(RootfsSpec::parse("zfs:tank/ct/c1").unwrap()),
        ..BackendOpts::default()
    };
    let spec = |opts: &BackendOpts| {
        b.plan(
            &Target {
                name: "c2",
                lxcpath: &lp,
                dir: &dir,
                build_dir: &dir,
                opts,
            },
            None,
        )
        .map(|s| s.to_string())
    };
    assert_eq!(spec(&opts).unwrap(), "zfs:tank/ct/c2");
    opts.zfsroot = Some("tank/lxc".into());
    assert_eq!(spec(&opts).unwrap(), "zfs:tank/lxc/c2");
    opts.zfsroot = None;
    opts.defaults.insert("lxc.bdev.zfs.root".into(), "tank/lxc".into());
    assert_eq!(spec(&opts).unwrap(), "zfs:tank/lxc/c2");
}

#[test]
fn undoing_a_build_spares_a_dataset_another_build_made() {
    let (b, f) = setup();
    let spec = RootfsSpec::parse("zfs:tank/lxc/c1").unwrap();
    let mine = Path::new("/l/.strata-tmp.c1.1");
    f.on(
        "zfs get -H -p -o value -s local strata:build tank/lxc/c1",
        true,
        &format!("{}\n", strata_core::build_mark(Path::new("/other/.strata-tmp.c1.2"))),
    );
    assert!(!b.made_by(&spec, mine), "another build's dataset counted as this one's");
    f.on(
        "zfs get -H -p -o value -s local strata:build tank/lxc/c1",
        true,
        &format!("{}\n", strata_core::build_mark(mine)),
    );
    assert!(b.made_by(&spec, mine));
    assert!(!b.unmarked(&spec));
    // Not set: made by a strata from before the marks, or by hand.
    f.on("zfs get -H -p -o value -s local strata:build tank/lxc/c1", true, "");
    assert!(!b.made_by(&spec, mine));
    assert!(b.unmarked(&spec));
    // Not there: nothing to spare, nothing unmarked.
    let gone = RootfsSpec::parse("zfs:tank/lxc/gone").unwrap();
    assert!(b.made_by(&gone, mine));
    assert!(!b.unmarked(&gone));
}

/// A killed build whose planned dataset another build made (or that never
/// came) drops the snapshot it made for it, and only its own and unmarked
/// ones: a live build in another lxcpath that planned the same name may be
/// between its snapshot and its clone.
#[test]
fn undoing_a_build_drops_its_own_snapshot_only() {
    let (b, f) = setup();
    let mine = Path::new("/l/.strata-tmp.gone.1");
    let theirs = strata_core::build_mark(Path::new("/m/.strata-tmp.gone.2"));
    let listing = format!(
        "tank/lxc/c1@strata-a\ttank/lxc/gone\t{}\t-\n\
         tank/lxc/c1@strata-b\ttank/lxc/gone\t{theirs}\t-\n\
         tank/lxc/c1@strata-c\ttank/lxc/gone\t-\t-\n",
        strata_core::build_mark(mine)
    );
    f.on(
        "zfs list -H -p -o name,strata:for,strata:build,clones -t snapshot -r tank",
        true,
        &listing,
    );
    let spec = RootfsSpec::parse("zfs:tank/lxc/gone").unwrap();
    // The dataset never came (absent), then another build's dataset there.
    for theirs_made_it in [false, true] {
        if theirs_made_it {
            f.on("zfs list -H -p -o name tank/lxc/gone", true, "tank/lxc/gone\n");
            f.on(
                "zfs get -H -p -o value -s local strata:build tank/lxc/gone",
                true,
                &format!("{theirs}\n"),
            );
        }
        f.calls.lock().unwrap().clear();
        b.undo_build(&spec, mine).unwrap();
        let c = f.calls();
        let destroyed: Vec<&String> = c.iter().filter(|c| c.starts_with("zfs destroy")).collect();
        assert_eq!(
            destroyed,
            ["zfs destroy tank/lxc/c1@strata-a", "zfs destroy tank/lxc/c1@strata-c"],
            "{c:?}"
        );
    }
    // A plain destroy: none with a mark, which may be a live build's.
    f.on(
        "zfs list -H -p -o name,strata:for,strata:build,clones -t snapshot -r tank",
        true,
        &listing.replace("tank/lxc/gone", "tank/lxc/gone2"),
    );
    f.calls.lock().unwrap().clear();
    b.destroy(&RootfsSpec::parse("zfs:tank/lxc/gone2").unwrap()).unwrap();
    let c = f.calls();
    let destroyed: Vec<&String> = c.iter().filter(|c| c.starts_with("zfs destroy")).collect();
    assert_eq!(destroyed, ["zfs destroy tank/lxc/c1@strata-c"], "{c:?}");
}

#[test]
fn fssize_is_the_refquota_and_never_below_what_it_refers_to() {
    let (b, f) = setup();
    let spec = RootfsSpec::parse("zfs:tank/lxc/c1").unwrap();
    let r = b.resizer().expect("zfs declares a resizer");
    f.on("zfs get -H -p -o value referenced tank/lxc/c1", true, "3145728\n");
    r.resize(&spec, 32 << 20, true).unwrap();
    assert!(
        f.calls().contains(&"zfs set refquota=33554432 tank/lxc/c1".to_string()),
        "{:?}",
        f.calls()
    );
    let e = r.resize(&spec, 1 << 20, false).unwrap_err();
    assert!(e.to_string().contains("refers to 3 MiB already"), "{e}");
    assert_eq!(
        f.calls().iter().filter(|c| c.starts_with("zfs set")).count(),
        1,
        "nothing set when refused"
    );
    f.on("zfs get -H -p -o value refquota tank/lxc/c1", true, "0\n");
    assert_eq!(r.size(&spec).unwrap(), None);
    f.on("zfs get -H -p -o value refquota tank/lxc/c1", true, "33554432\n");
    assert_eq!(r.size(&spec).unwrap(), Some(32 << 20));
}
