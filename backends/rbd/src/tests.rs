//! Unit tests with a recording command double: argv built, output parsed,
//! refusals made before any command that changes something. The real
//! cluster runs in the guest tier (tests/vm: rbd-flows, conformance).

use super::*;
use std::path::PathBuf;
use std::sync::Arc as StdArc;
use strata_core::block::testing;
use strata_core::runner::fake::FakeRunner;
use strata_core::{BackendOpts, ErrorKind};

const RBD: &str = "rbd --client_mount_timeout 30 --rados_mon_op_timeout 30 --rados_osd_op_timeout 60";

/// `rbd ls -l --format json` of pool lxc as Ceph 16 prints it: c1 with a
/// protected snapshot that c2 is cloned from, and a plain c3.
const LS: &str = r#"[{"image":"c1","id":"1","size":67108864,"format":2},{"image":"c1","id":"1","snapshot":"strata-c2","snapshot_id":4,"size":67108864,"protected":"true","format":2},{"image":"c2","id":"2","size":67108864,"parent":{"pool":"lxc","pool_namespace":"","image":"c1","snapshot":"strata-c2"},"format":2},{"image":"c3","id":"3","size":1073741824,"format":2}]"#;

fn setup() -> (RbdBackend, StdArc<FakeRunner>) {
    let (f, run) = testing::fake();
    f.on(&format!("{RBD} ls -l --format json --pool lxc"), true, LS);
    f.canned.lock().unwrap().push((
        format!("{RBD} ls -l --format json --pool nopool"),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: "rbd: error opening pool 'nopool': (2) No such file or directory\n".into(),
        },
    ));
    f.on(&format!("{RBD} device list"), true, "[]");
    let b = RbdBackend::with_runner(run)
        .with_user(None)
        .with_timeouts(Timeouts::default());
    (b, f)
}

fn target_opts(pool: Option<&str>, name: Option<&str>) -> BackendOpts {
    let mut o = BackendOpts {
        fssize: Some(64 << 20),
        ..BackendOpts::default()
    };
    if let Some(p) = pool {
        o.defaults.insert(KEY_POOL.into(), p.into());
    }
    if let Some(n) = name {
        o.defaults.insert(OPT_RBDNAME.into(), n.into());
    }
    o
}

fn plan(b: &RbdBackend, name: &str, lxcpath: &str, opts: &BackendOpts, origin: Option<&str>) -> Result<RootfsSpec> {
    testing::plan(b, name, lxcpath, opts, origin)
}

fn changing(f: &FakeRunner) -> Vec<String> {
    f.calls()
        .into_iter()
        .filter(|c| !c.contains(" ls -l ") && !c.contains("device list") && !c.contains(" info "))
        .collect()
}

#[test]
fn spec_is_lxcs() {
    let s = spec_for("lxc", "c1");
    assert_eq!(s.to_string(), "rbd:/dev/rbd/lxc/c1");
    assert_eq!(
        parse_spec(&RootfsSpec::parse("rbd:/dev/rbd/lxc/c1").unwrap()).unwrap(),
        ("lxc".into(), "c1".into())
    );
    for bad in [
        "rbd:/dev/rbd/lxc",
        "rbd:/dev/rbd/lxc/a/b",
        "rbd:/dev/sda",
        "rbd:/dev/rbd/lxc/-x",
        "rbd:/dev/rbd/../x",
    ] {
        assert!(parse_spec(&RootfsSpec::parse(bad).unwrap()).is_err(), "{bad}");
    }
}

#[test]
fn ls_parsed_with_snapshots_and_parents() {
    let st = parse_ls("lxc", LS).unwrap();
    assert_eq!(st.names(), ["c1", "c2", "c3"]);
    let c1 = st.image("c1").unwrap();
    assert_eq!(
        c1.snaps,
        [Snap {
            name: "strata-c2".into(),
            protected: true
        }]
    );
    assert_eq!(st.dependents("c1"), ["c2"]);
    assert!(st.dependents("c2").is_empty());
    assert_eq!(st.image("c3").unwrap().size, 1 << 30);
}

#[test]
fn plan_names_and_pools() {
    let (b, f) = setup();
    // Default pool lxc; a new image's name is taken on trust, no listing.
    assert_eq!(
        plan(&b, "c1", "/l", &target_opts(None, None), None)
            .unwrap()
            .to_string(),
        "rbd:/dev/rbd/lxc/c1"
    );
    assert!(f.calls().is_empty(), "{:?}", f.calls());
    // After a build found it taken at its rename, the next plan lists the
    // pool: a taken name gets a suffix.
    b.relist.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        plan(&b, "c1", "/l", &target_opts(None, None), None)
            .unwrap()
            .to_string(),
        "rbd:/dev/rbd/lxc/c1_1"
    );
    assert_eq!(f.calls(), [format!("{RBD} ls -l --format json --pool lxc")]);
    assert_eq!(
        plan(&b, "c9", "/l", &target_opts(Some("lxc"), None), None)
            .unwrap()
            .to_string(),
        "rbd:/dev/rbd/lxc/c9"
    );
    assert_eq!(
        plan(
            &b,
            "snap0",
            "/l/c1/snaps",
            &target_opts(None, None),
            Some("rbd:/dev/rbd/lxc/c1")
        )
        .unwrap()
        .to_string(),
        "rbd:/dev/rbd/lxc/c1_snap0"
    );
    // --rbdname taken: refused, not renamed.
    let e = plan(&b, "x", "/l", &target_opts(None, Some("c3")), None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
    assert!(e.to_string().contains("lxc/c3"), "{e}");
}

#[test]
fn bad_input_refused_before_any_change() {
    let (b, f) = setup();
    // A named image's pool is listed at the plan; a new image's is found
    // missing by its rbd create, which makes nothing.
    let e = plan(&b, "x", "/l", &target_opts(Some("nopool"), Some("x")), None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.to_string().contains("\"nopool\" does not exist"), "{e}");
    let o = target_opts(Some("nopool"), None);
    let spec = plan(&b, "x", "/l", &o, None).unwrap();
    f.canned.lock().unwrap().push((
        format!("{RBD} create --pool nopool"),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: "rbd: error opening pool 'nopool': (2) No such file or directory\n".into(),
        },
    ));
    let lp = PathBuf::from("/l");
    let dir = lp.join(".strata-tmp.x.abc");
    let e = b.create(&spec, &target(&lp, &dir, &o)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.to_string().contains("\"nopool\" does not exist"), "{e}");
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
    // The engine's undo of it: nothing to remove in a pool that is not
    // there, and no error (a guest run left the staging dir on one).
    f.canned.lock().unwrap().push((
        format!("{RBD} image-meta get nopool/"),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: "rbd: error opening pool 'nopool': (2) No such file or directory\n".into(),
        },
    ));
    f.on(&format!("{RBD} info --format json nopool/"), false, "");
    b.undo_build(&spec, &dir).unwrap();
    assert!(!f.calls().iter().any(|c| c.contains(" rm ")), "{:?}", f.calls());
    f.calls.lock().unwrap().clear();
    let mut o = target_opts(None, None);
    o.fstype = Some("vfat".into());
    assert_eq!(
        plan(&b, "x", "/l", &o, None).unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    let e = plan(&b, "x", "/l", &target_opts(None, Some("-rf")), None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidName);
    let e = plan(&b, "a b", "/l", &target_opts(None, None), None).unwrap_err();
    assert!(e.to_string().contains("--rbdname"), "{e}");
    let e = plan(&b, "x", "/l", &target_opts(None, None), Some("rbd:/dev/rbd/lxc/gone")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(changing(&f).is_empty(), "{:?}", f.calls());
}

#[test]
fn user_and_timeout_on_every_command() {
    let (b, f) = setup();
    let mut o = target_opts(None, None);
    o.defaults.insert(KEY_USER.into(), "lxcuser".into());
    plan(&b, "c9", "/l", &o, None).unwrap();
    let _ = b.exists(&spec_for("lxc", "c1"));
    for c in f.calls() {
        assert!(c.starts_with("rbd --id lxcuser --client_mount_timeout 30 "), "{c}");
    }
    o.defaults.insert(KEY_USER.into(), "bad user".into());
    assert_eq!(plan(&b, "c9", "/l", &o, None).unwrap_err().kind, ErrorKind::InvalidName);
}

#[test]
fn op_timeouts_on_every_command_and_lxc_confs_value() {
    let (b, f) = setup();
    let _ = b.pool_state("t", "lxc");
    let _ = b.exists(&spec_for("lxc", "c1"));
    b.destroy(&spec_for("lxc", "c3")).unwrap();
    assert!(f.calls().len() >= 3);
    for c in f.calls() {
        // Ceph's defaults wait forever for a monitor or an OSD request.
        assert!(
            c.starts_with("rbd --client_mount_timeout 30 --rados_mon_op_timeout 30 --rados_osd_op_timeout 60 "),
            "{c}"
        );
    }
    // lxc.conf's lxc.bdev.rbd.timeout sets every bound, the kernel's too.
    let t = Timeouts::parse(" 12 ").unwrap();
    assert_eq!(t, Timeouts::all(12));
    assert_eq!(
        t.args().join(" "),
        "--client_mount_timeout 12 --rados_mon_op_timeout 12 --rados_osd_op_timeout 12"
    );
    assert_eq!(t.kernel(), "mount_timeout=12,osd_request_timeout=12");
    assert_eq!(t.for_run().kernel(), "mount_timeout=12");
    for bad in ["0", "-1", "1.5", "", "forever", "86401"] {
        let e = Timeouts::parse(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig, "{bad}");
        assert!(e.to_string().contains(KEY_TIMEOUT), "{e}");
    }
    let (f2, run) = testing::fake();
    f2.on("rbd", true, "");
    let b = RbdBackend::with_runner(run).with_user(None).with_timeouts(t);
    let _ = b.exists(&spec_for("lxc", "c1"));
    assert_eq!(
        f2.calls(),
        ["rbd --client_mount_timeout 12 --rados_mon_op_timeout 12 --rados_osd_op_timeout 12 info --format json lxc/c1"]
    );
}

/// `rbd ARGS` answering as Ceph 16's tool does when a request timed out.
fn no_answer(f: &FakeRunner, args: &str, connect: bool) {
    // (Connecting, most verbs print no errno.)
    let err = if connect {
        "2026-12-03T02:02:44.808+0000 7fae 0 monclient(hunting): authenticate timed out after 30\nrbd: couldn't connect to the cluster!\n"
    } else {
        "rbd: listing images failed: (110) Connection timed out\n"
    }
    .to_string();
    f.canned.lock().unwrap().push((
        format!("{RBD} {args}"),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: err,
        },
    ));
}

#[test]
fn a_cluster_that_does_not_answer_is_one_line_naming_the_pool_then_not_asked_again() {
    let (b, f) = setup();
    no_answer(&f, "ls -l --format json --pool lxc", false);
    let e = b.pool_state("list", "lxc").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    let m = e.to_string();
    assert!(!m.contains('\n'), "{m}");
    assert!(
        m.contains("rbd ls lxc: got no answer from the ceph cluster within 0 s"),
        "{m}"
    );
    // Every later command of this process fails at once, naming the first.
    let n = f.calls().len();
    let e = b.destroy(&spec_for("lxc", "c1")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(
        e.to_string()
            .contains("rbd ls lxc: not asked, the ceph cluster did not answer rbd ls lxc within 0 s"),
        "{e}"
    );
    let e = b.usage(&spec_for("lxc", "c1")).unwrap_err();
    assert!(e.to_string().contains("rbd du lxc/c1: not asked"), "{e}");
    assert!(!b.exists(&spec_for("lxc", "c1")));
    assert_eq!(f.calls().len(), n, "{:?}", f.calls());
}

#[test]
fn a_missing_or_refused_key_is_not_a_silent_cluster() {
    let o = |e: &str| Out {
        ok: false,
        stdout: String::new(),
        stderr: e.into(),
    };
    assert!(!super::no_answer(&o("auth: unable to find a keyring on /etc/ceph/ceph.client.nobody.keyring: (2) No such file or directory\nmonclient(hunting): authenticate timed out after 30\nrbd: couldn't connect to the cluster!\n")));
    assert!(!super::no_answer(&o("monclient(hunting): handle_auth_bad_method server allowed_methods [2] but i only support [2]\nrbd: couldn't connect to the cluster!\n")));
    assert!(!super::no_answer(&o(
        "rbd: error opening pool 'x': (2) No such file or directory\n"
    )));
    assert!(super::no_answer(&o("rbd: create error: (110) Connection timed out\n")));
}

#[test]
fn a_create_the_cluster_did_not_answer_is_undone_later_unless_it_never_connected() {
    let lp = PathBuf::from("/l");
    let dir = lp.join("c9");
    let o = target_opts(None, None);
    let t = Target {
        name: "c9",
        lxcpath: &lp,
        dir: &dir,
        build_dir: &dir,
        opts: &o,
    };
    let tmp = build_name("c9", &dir);
    for connect in [false, true] {
        let (b, f) = setup();
        no_answer(&f, "create", connect);
        let e = b.create(&spec_for("lxc", "c9"), &t).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable);
        let why = if connect {
            "could not reach"
        } else {
            "got no answer from"
        };
        assert!(
            e.to_string()
                .contains(&format!("rbd create lxc/{tmp}: {why} the ceph cluster")),
            "{e}"
        );
        let n = f.calls().len();
        let undo = b.undo_build(&spec_for("lxc", "c9"), &dir);
        assert_eq!(f.calls().len(), n, "nothing asked: {:?}", f.calls());
        if connect {
            // Never reached the monitors: nothing made, the build dir can go.
            undo.unwrap();
        } else {
            // The request may yet be done: the build stays recorded, for
            // the next command's reconcile, which asks again.
            assert_eq!(undo.unwrap_err().kind, ErrorKind::Unavailable);
        }
    }
}

#[test]
fn dependents_named_and_flattened_before_destroy() {
    let (b, f) = setup();
    let deps = b.dependents(&spec_for("lxc", "c1")).unwrap();
    assert_eq!(deps, [spec_for("lxc", "c2")]);
    b.destroy(&spec_for("lxc", "c1")).unwrap();
    let calls = changing(&f);
    assert_eq!(
        calls,
        [
            format!("{RBD} flatten --no-progress lxc/c2"),
            format!("{RBD} snap unprotect lxc/c1@strata-c2"),
            format!("{RBD} snap purge --no-progress lxc/c1"),
            format!("{RBD} rm --no-progress lxc/c1"),
        ]
    );
}

#[test]
fn destroy_lists_the_pool_once_with_its_check_of_dependents() {
    let (b, f) = setup();
    assert!(b.dependents(&spec_for("lxc", "c3")).unwrap().is_empty());
    b.destroy(&spec_for("lxc", "c3")).unwrap();
    assert_eq!(
        f.calls(),
        [
            format!("{RBD} ls -l --format json --pool lxc"),
            format!("{RBD} device list --format json"),
            format!("{RBD} rm --no-progress lxc/c3"),
        ]
    );
    // A change made by this process that succeeded is taken into the kept
    // listing: the next look needs no listing.
    f.calls.lock().unwrap().clear();
    b.destroy(&spec_for("lxc", "c1")).unwrap();
    assert!(!f.calls().iter().any(|c| c.contains(" ls ")), "{:?}", f.calls());
    // One that failed (or is not modelled): the next look lists again.
    f.on(&format!("{RBD} rm --no-progress lxc/c2"), false, "");
    assert!(b.destroy(&spec_for("lxc", "c2")).is_err());
    f.calls.lock().unwrap().clear();
    b.pool_state_listed("t", "lxc").unwrap();
    assert_eq!(f.calls(), [format!("{RBD} ls -l --format json --pool lxc")]);
}

#[test]
fn destroy_of_a_clone_drops_its_origin_snapshot() {
    let (b, f) = setup();
    b.destroy(&spec_for("lxc", "c2")).unwrap();
    assert_eq!(
        changing(&f),
        [
            format!("{RBD} rm --no-progress lxc/c2"),
            format!("{RBD} snap unprotect lxc/c1@strata-c2"),
            format!("{RBD} snap rm lxc/c1@strata-c2"),
        ]
    );
}

#[test]
fn destroy_of_a_half_made_clone_drops_the_snapshot_made_for_it() {
    let (b, f) = setup();
    // c4 was never cloned, but a killed clone left c1@strata-c4.
    let ls = LS.replace(
        r#"{"image":"c3""#,
        r#"{"image":"c1","id":"1","snapshot":"strata-c4","snapshot_id":5,"size":1,"protected":"false","format":2},{"image":"c3""#,
    );
    f.on(&format!("{RBD} ls -l --format json --pool lxc"), true, &ls);
    b.destroy(&spec_for("lxc", "c4")).unwrap();
    assert_eq!(changing(&f), [format!("{RBD} snap rm lxc/c1@strata-c4")]);
}

#[test]
fn mapped_image_in_use_is_not_destroyed() {
    let (b, f) = setup();
    f.on(
        &format!("{RBD} device list"),
        true,
        r#"[{"id":"0","pool":"lxc","namespace":"","name":"c3","snap":"-","device":"/dev/rbd0"}]"#,
    );
    f.canned.lock().unwrap().push((
        format!("{RBD} unmap --options noudev /dev/rbd0"),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: "rbd: sysfs write failed\nrbd: unmap failed: (16) Device or resource busy\n".into(),
        },
    ));
    let e = b.destroy(&spec_for("lxc", "c3")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Busy);
    assert!(!f.calls().iter().any(|c| c.contains(" rm ")), "{:?}", f.calls());
    // A release (reconcile) leaves a mapping someone holds open alone.
    let dir = tempfile::tempdir().unwrap();
    b.release(&spec_for("lxc", "c3"), dir.path()).unwrap();
}

#[test]
fn clone_snapshots_protects_and_clones() {
    let (b, f) = setup();
    f.on(
        &format!("{RBD} map --options noudev,mount_timeout=30,osd_request_timeout=60 --pool lxc c9"),
        true,
        "/dev/rbd3\n",
    );
    f.on("blkid", true, "ext4\n");
    let lp = PathBuf::from("/l");
    let dir = lp.join("c9");
    let o = target_opts(None, None);
    let t = Target {
        name: "c9",
        lxcpath: &lp,
        dir: &dir,
        build_dir: &dir,
        opts: &o,
    };
    let tmp = build_name("c9", &dir);
    f.on(
        &format!("{RBD} map --options noudev,mount_timeout=30,osd_request_timeout=60 --pool lxc {tmp}"),
        true,
        "/dev/rbd3\n",
    );
    // The plan's listing is the clone's: one rbd ls for both.
    assert_eq!(
        plan(&b, "c9", "/l", &o, Some("rbd:/dev/rbd/lxc/c3")).unwrap(),
        spec_for("lxc", "c9")
    );
    b.snapshot(&spec_for("lxc", "c3"), &spec_for("lxc", "c9"), &t, false)
        .unwrap();
    let mark = strata_core::build_mark(&dir);
    assert_eq!(tmp, format!("c9.strata-{mark}"));
    let lists = f.calls().iter().filter(|c| c.contains(" ls -l ")).count();
    assert_eq!(lists, 1, "{:?}", f.calls());
    // Made under the build's own name, marked, then given its name.
    assert_eq!(
        changing(&f),
        [
            format!("{RBD} snap create --no-progress lxc/c3@strata-{tmp}"),
            format!("{RBD} snap protect lxc/c3@strata-{tmp}"),
            format!("{RBD} clone lxc/c3@strata-{tmp} lxc/{tmp}"),
            format!("{RBD} map --options noudev,mount_timeout=30,osd_request_timeout=60 --pool lxc {tmp}"),
            "blkid -p -o value -s TYPE /dev/rbd3".to_string(),
            format!("{RBD} image-meta set lxc/{tmp} strata.build {mark}"),
            format!("{RBD} rename lxc/{tmp} lxc/c9"),
        ]
    );
}

fn target<'a>(lp: &'a std::path::Path, dir: &'a std::path::Path, o: &'a BackendOpts) -> Target<'a> {
    Target {
        name: "c9",
        lxcpath: lp,
        dir,
        build_dir: dir,
        opts: o,
    }
}

#[test]
fn create_builds_under_its_own_name_then_renames() {
    let (b, f) = setup();
    let lp = PathBuf::from("/l");
    let dir = lp.join(".strata-tmp.c9.abc");
    let o = target_opts(None, None);
    let tmp = build_name("c9", &dir);
    f.on(
        &format!("{RBD} map --options noudev,mount_timeout=30,osd_request_timeout=60 --pool lxc c9"),
        true,
        "/dev/rbd4\n",
    );
    let spec = plan(&b, "c9", "/l", &o, None).unwrap();
    b.create(&spec, &target(&lp, &dir, &o)).unwrap();
    let mark = strata_core::build_mark(&dir);
    // Four rbd processes and mkfs, no listing (LXC's create is two and
    // mkfs): named and marked first, then mapped once under its name and
    // left mapped for the mount that fills it.
    assert_eq!(
        f.calls(),
        [
            format!("{RBD} create --pool lxc {tmp} --size 64"),
            format!("{RBD} image-meta set lxc/{tmp} strata.build {mark}"),
            format!("{RBD} rename lxc/{tmp} lxc/c9"),
            format!("{RBD} device list --format json"),
            format!("{RBD} map --options noudev,mount_timeout=30,osd_request_timeout=60 --pool lxc c9"),
            "mkfs.ext4 -q -F /dev/rbd4".to_string(),
        ]
    );
}

#[test]
fn a_name_taken_meanwhile_is_already_exists_and_only_the_own_image_goes() {
    let (b, f) = setup();
    let lp = PathBuf::from("/l");
    let dir = lp.join(".strata-tmp.c3.abc");
    let o = target_opts(None, None);
    let tmp = build_name("c3", &dir);
    f.canned.lock().unwrap().push((
        format!("{RBD} rename lxc/{tmp} lxc/c3"),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: "rbd: rename error: (17) File exists\n".into(),
        },
    ));
    // c3 was made by another build in another lxcpath.
    f.on(
        &format!("{RBD} image-meta get lxc/c3 strata.build"),
        true,
        "00000000000000ff\n",
    );
    let e = b.create(&spec_for("lxc", "c3"), &target(&lp, &dir, &o)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
    // Nothing mapped or formatted before the name was its own.
    assert!(
        !f.calls().iter().any(|c| c.contains(" map ") || c.contains("mkfs")),
        "{:?}",
        f.calls()
    );
    // The engine plans again: from a listing this time, which finds c3 taken.
    assert_eq!(plan(&b, "c3", "/l", &o, None).unwrap(), spec_for("lxc", "c3_1"));
    assert!(!b.made_by(&spec_for("lxc", "c3"), &dir));
    f.calls.lock().unwrap().clear();
    b.undo_build(&spec_for("lxc", "c3"), &dir).unwrap();
    assert!(
        !f.calls().iter().any(|c| c.contains(" rm ") && c.ends_with("lxc/c3")),
        "{:?}",
        f.calls()
    );
    // Its own mark: the planned image is this build's, and goes.
    let mark = strata_core::build_mark(&dir);
    f.on(
        &format!("{RBD} image-meta get lxc/c3 strata.build"),
        true,
        &format!("{mark}\n"),
    );
    assert!(b.made_by(&spec_for("lxc", "c3"), &dir));
    b.undo_build(&spec_for("lxc", "c3"), &dir).unwrap();
    assert!(
        f.calls().contains(&format!("{RBD} rm --no-progress lxc/c3")),
        "{:?}",
        f.calls()
    );
}

#[test]
fn undo_of_a_killed_build_removes_its_unrenamed_image_and_snapshot() {
    let (b, f) = setup();
    let dir = PathBuf::from("/l/.strata-tmp.c9.abc");
    let tmp = build_name("c9", &dir);
    // Killed after the clone, before the rename: the image under the
    // build's name, cloned from c1's snapshot made for it.
    let ls = LS.replace(
        r#"{"image":"c3""#,
        &format!(
            r#"{{"image":"c1","id":"1","snapshot":"strata-{tmp}","snapshot_id":6,"size":1,"protected":"true","format":2}},{{"image":"{tmp}","id":"9","size":1,"parent":{{"pool":"lxc","pool_namespace":"","image":"c1","snapshot":"strata-{tmp}"}},"format":2}},{{"image":"c3""#
        ),
    );
    f.on(&format!("{RBD} ls -l --format json --pool lxc"), true, &ls);
    f.canned.lock().unwrap().push((
        format!("{RBD} image-meta get lxc/c9 "),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: "rbd: error opening image c9: (2) No such file or directory\n".into(),
        },
    ));
    f.on(&format!("{RBD} info --format json lxc/c9"), false, "");
    b.undo_build(&spec_for("lxc", "c9"), &dir).unwrap();
    let calls = changing(&f);
    assert!(
        calls.contains(&format!("{RBD} rm --no-progress lxc/{tmp}")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&format!("{RBD} snap rm lxc/c1@strata-{tmp}")),
        "{calls:?}"
    );
}

#[test]
fn an_unmarked_image_is_not_a_builds() {
    let (b, f) = setup();
    f.canned.lock().unwrap().push((
        format!("{RBD} image-meta get lxc/c3 "),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: "failed to get metadata strata.build of image : (2) No such file or directory\n".into(),
        },
    ));
    assert!(!b.made_by(&spec_for("lxc", "c3"), &PathBuf::from("/l/.strata-tmp.c3.x")));
    assert!(b.caps().atomic_snapshot);
}

#[test]
fn a_create_that_never_reached_the_cluster_is_undone_without_it() {
    let (b, f) = setup();
    let o = target_opts(None, None);
    let spec = plan(&b, "x", "/l", &o, None).unwrap();
    f.canned.lock().unwrap().push((
        format!("{RBD} create"),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: "2026-12-02T11:29:13.680+0000 7f 0 monclient(hunting): authenticate timed out after 30\nrbd: couldn't connect to the cluster!\n".into(),
        },
    ));
    let lp = PathBuf::from("/l");
    let dir = lp.join(".strata-tmp.x.abc");
    let e = b.create(&spec, &target(&lp, &dir, &o)).unwrap_err();
    let tmp = build_name("x", &dir);
    assert!(
        e.to_string().contains(&format!(
            "rbd create lxc/{tmp}: could not reach the ceph cluster within"
        )),
        "{e}"
    );
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
    // The engine's undo asks the cluster nothing (it would wait 30 s per
    // command to fail, and leave the staging dir): nothing was made.
    f.calls.lock().unwrap().clear();
    b.undo_build(&spec, &dir).unwrap();
    assert!(f.calls().is_empty(), "{:?}", f.calls());
    // Another build's undo is left for a later command (this process
    // asks the silent cluster nothing more).
    let e = b.undo_build(&spec, &lp.join(".strata-tmp.x.other")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(f.calls().is_empty(), "{:?}", f.calls());
    // A new process (a later command) looks.
    let (b, f) = setup();
    b.undo_build(&spec, &lp.join(".strata-tmp.x.other")).unwrap();
    assert!(!f.calls().is_empty());
}

#[test]
fn a_missing_key_is_not_a_missing_pool() {
    let (b, f) = setup();
    f.canned.lock().unwrap().push((
        format!("{RBD} ls -l --format json --pool lxc"),
        Out {
            ok: false,
            stdout: String::new(),
            stderr: "2026-12-01T21:20:00.000+0000 7f -1 auth: unable to find a keyring on /etc/ceph/ceph.client.nobody.keyring,/etc/ceph/ceph.keyring: (2) No such file or directory\nrbd: couldn't connect to the cluster!\n".into(),
        },
    ));
    let e = plan(&b, "x", "/l", &target_opts(None, Some("x")), None).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("no key for this ceph user") && m.contains("ceph.client.nobody.keyring"),
        "{m}"
    );
    assert!(!m.contains("does not exist"), "{m}");
    assert_eq!(m.lines().count(), 1, "{m}");
}

/// `rbd device list` shows the mapping once; the unmap then fails as it
/// does when another command unmapped the device in between.
struct UnmappedMeanwhile {
    listed: std::sync::atomic::AtomicBool,
    still_mapped: bool,
}

impl strata_core::runner::Runner for UnmappedMeanwhile {
    fn run(&self, argv: &[String]) -> Result<Out> {
        let line = argv.join(" ");
        let fail = |e: &str| Out {
            ok: false,
            stdout: String::new(),
            stderr: e.into(),
        };
        Ok(if line.contains("device list") {
            let first = !self.listed.swap(true, std::sync::atomic::Ordering::SeqCst);
            Out {
                ok: true,
                stdout: if first || self.still_mapped {
                    r#"[{"id":"0","pool":"lxc","namespace":"","name":"c3","snap":"-","device":"/dev/rbd0"}]"#.into()
                } else {
                    "[]".into()
                },
                stderr: String::new(),
            }
        } else if line.contains(" unmap ") {
            fail("rbd: '/dev/rbd0' is not a block device\nrbd: unmap failed: (22) Invalid argument\n")
        } else {
            fail("unexpected")
        })
    }

    fn pipe(&self, _: &[String], _: &[String]) -> Result<Out> {
        unreachable!()
    }
}

#[test]
fn a_device_unmapped_meanwhile_is_not_an_error() {
    let b = |still_mapped| {
        RbdBackend::with_runner(Box::new(UnmappedMeanwhile {
            listed: Default::default(),
            still_mapped,
        }))
        .with_user(None)
        .with_timeouts(Timeouts::default())
    };
    b(false).unmap("lxc", "c3", true).unwrap();
    let e = b(true).unmap("lxc", "c3", true).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Command, "{e}");
}

/// The kernel's list, as sysfs shows it: the head mapping of an image and a
/// snapshot's; a device going away while read, and stray entries, left out.
#[test]
fn mappings_are_read_from_sysfs() {
    let d = tempfile::tempdir().unwrap();
    let dev = |id: &str, pool: &str, name: &str, snap: &str| {
        let p = d.path().join(id);
        std::fs::create_dir(&p).unwrap();
        for (f, v) in [("pool", pool), ("name", name), ("current_snap", snap)] {
            std::fs::write(p.join(f), format!("{v}\n")).unwrap();
        }
    };
    dev("0", "lxc", "c1", "-");
    dev("3", "strata_rbd", "c2", "strata-c4");
    std::fs::create_dir(d.path().join("5")).unwrap();
    std::fs::create_dir(d.path().join("uevent")).unwrap();
    let m = read_mappings(d.path()).unwrap();
    assert_eq!(
        m,
        [
            Mapping {
                pool: "lxc".into(),
                image: "c1".into(),
                snap: "-".into(),
                device: "/dev/rbd0".into()
            },
            Mapping {
                pool: "strata_rbd".into(),
                image: "c2".into(),
                snap: "strata-c4".into(),
                device: "/dev/rbd3".into()
            },
        ]
    );
    assert!(read_mappings(&d.path().join("none")).unwrap().is_empty());
    // The backend finds the head mapping there, without the tool.
    let (f, run) = testing::fake();
    let b = RbdBackend::new_with_sysfs(run, d.path())
        .with_user(None)
        .with_timeouts(Timeouts::default());
    assert_eq!(b.mapped("lxc", "c1").unwrap(), ["/dev/rbd0"]);
    assert!(b.mapped("strata_rbd", "c2").unwrap().is_empty());
    assert!(f.calls().is_empty(), "{:?}", f.calls());
}

/// A device held a moment after it was mapped (the kernel's and udev's
/// first look at it): its unmap fails busy `busy` times, then succeeds.
struct HeldAMoment {
    busy: std::sync::atomic::AtomicU32,
    unmapped: std::sync::atomic::AtomicBool,
}

impl strata_core::runner::Runner for HeldAMoment {
    fn run(&self, argv: &[String]) -> Result<Out> {
        use std::sync::atomic::Ordering::SeqCst;
        let line = argv.join(" ");
        let out = |ok: bool, stdout: &str, stderr: &str| Out {
            ok,
            stdout: stdout.into(),
            stderr: stderr.into(),
        };
        Ok(if line.contains("device list") {
            if self.unmapped.load(SeqCst) {
                out(true, "[]", "")
            } else {
                out(
                    true,
                    r#"[{"id":"0","pool":"lxc","namespace":"","name":"c3","snap":"-","device":"/dev/rbd0"}]"#,
                    "",
                )
            }
        } else if line.contains(" unmap ") {
            if self.busy.load(SeqCst) > 0 {
                self.busy.fetch_sub(1, SeqCst);
                out(
                    false,
                    "",
                    "rbd: sysfs write failed\nrbd: unmap failed: (16) Device or resource busy\n",
                )
            } else {
                self.unmapped.store(true, SeqCst);
                out(true, "", "")
            }
        } else if line.contains(" ls -l ") {
            out(true, r#"[{"image":"c3","id":"3","size":67108864,"format":2}]"#, "")
        } else {
            out(true, "", "")
        })
    }

    fn pipe(&self, _: &[String], _: &[String]) -> Result<Out> {
        unreachable!()
    }
}

/// A command killed between its map and its mount left the mapping, which
/// the kernel and udev may still hold a moment: the next command's release
/// (reconcile) and a build's undo wait for it instead of leaving it mapped.
#[test]
fn a_mapping_held_a_moment_is_released() {
    let b = |busy| {
        let r = StdArc::new(HeldAMoment {
            busy: std::sync::atomic::AtomicU32::new(busy),
            unmapped: Default::default(),
        });
        struct Shared(StdArc<HeldAMoment>);
        impl strata_core::runner::Runner for Shared {
            fn run(&self, argv: &[String]) -> Result<Out> {
                self.0.run(argv)
            }
            fn pipe(&self, a: &[String], b: &[String]) -> Result<Out> {
                self.0.pipe(a, b)
            }
        }
        (
            RbdBackend::with_runner(Box::new(Shared(r.clone())))
                .with_user(None)
                .with_timeouts(Timeouts::default()),
            r,
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let (rb, r) = b(3);
    rb.release(&spec_for("lxc", "c3"), dir.path()).unwrap();
    assert!(r.unmapped.load(std::sync::atomic::Ordering::SeqCst), "left mapped");
    let (db, r) = b(3);
    db.destroy(&spec_for("lxc", "c3")).unwrap();
    assert!(r.unmapped.load(std::sync::atomic::Ordering::SeqCst), "left mapped");
}

/// A device a udev worker holds, open and locked, while its rules run for
/// `held` removal attempts (longer than an unmap's tries, as under load),
/// then lets go; `locked`: whether the worker's lock shows (a mount's
/// hold shows none).
struct HeldByUdev {
    held: std::sync::atomic::AtomicU32,
    locked: bool,
    mapped: std::sync::atomic::AtomicBool,
}

impl Kernel for StdArc<HeldByUdev> {
    fn mappings(&self) -> Result<Vec<Mapping>> {
        let m = Mapping {
            pool: "lxc".into(),
            image: "c3".into(),
            snap: "-".into(),
            device: "/dev/rbd0".into(),
        };
        Ok(if self.mapped.load(std::sync::atomic::Ordering::SeqCst) {
            vec![m]
        } else {
            Vec::new()
        })
    }
    fn remove(&self, _: &str) -> std::io::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.held.load(SeqCst) > 0 {
            self.held.fetch_sub(1, SeqCst);
            return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
        }
        self.mapped.store(false, SeqCst);
        Ok(())
    }
    fn add_options(&self, _: Option<&str>, _: &Timeouts) -> Option<String> {
        None
    }
    fn add(&self, _: &str, _: &str, _: &str) -> std::io::Result<()> {
        unreachable!()
    }
    fn locked(&self, d: &str) -> bool {
        assert_eq!(d, "/dev/rbd0");
        self.locked && self.held.load(std::sync::atomic::Ordering::SeqCst) > 0
    }
}

/// A killed build's undo (reconcile) that finds its new device still held
/// by udev's worker, running the rules of the device's first event for
/// longer than the unmap's tries (seconds in a loaded emulated guest):
/// it waits for the worker and destroys the image, instead of failing busy
/// and leaving it mapped. A holder without udev's lock (a mount) is given
/// the tries alone, as before.
#[test]
fn a_device_udev_still_probes_is_waited_for() {
    let b = |locked| {
        let k = StdArc::new(HeldByUdev {
            held: std::sync::atomic::AtomicU32::new(SETTLE_TRIES + 6),
            locked,
            mapped: std::sync::atomic::AtomicBool::new(true),
        });
        let (f, run) = testing::fake();
        f.on(
            &format!("{RBD} ls -l --format json --pool lxc"),
            true,
            r#"[{"image":"c3","id":"3","size":67108864,"format":2}]"#,
        );
        (RbdBackend::with_kernel(run, Box::new(k.clone())).with_user(None), k, f)
    };
    let (db, k, f) = b(true);
    db.destroy(&spec_for("lxc", "c3")).unwrap();
    assert!(!k.mapped.load(std::sync::atomic::Ordering::SeqCst), "left mapped");
    assert!(f.calls().iter().any(|c| c.contains(" rm ")), "{:?}", f.calls());
    let (db, k, f) = b(false);
    let e = db.destroy(&spec_for("lxc", "c3")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Busy);
    assert!(k.mapped.load(std::sync::atomic::Ordering::SeqCst));
    assert!(!f.calls().iter().any(|c| c.contains(" rm ")), "{:?}", f.calls());
}

/// `/proc/locks` as the kernel writes it: udev's worker's shared lock on
/// the node of /dev/rbd0 (devtmpfs 0:5, inode 1234) is found, a POSIX
/// lock, a waiter's line and another inode are not.
#[test]
fn flock_on_reads_proc_locks() {
    let dev = libc::makedev(0, 5);
    let l = "1: POSIX  ADVISORY  WRITE 88 00:05:1234 0 EOF\n\
             2: FLOCK  ADVISORY  WRITE 90 00:05:999 0 EOF\n\
             2: -> FLOCK  ADVISORY  WRITE 91 00:05:1234 0 EOF\n";
    assert!(!flock_on(l, dev, 1234));
    let l = format!("{l}3: FLOCK  ADVISORY  READ 77 00:05:1234 0 EOF\n");
    assert!(flock_on(&l, dev, 1234));
    assert!(!flock_on(&l, libc::makedev(0x103, 5), 1234));
    assert!(flock_on(
        "1: FLOCK  ADVISORY  READ 7 103:0a:5 0 EOF\n",
        libc::makedev(0x103, 10),
        5
    ));
}

/// An image a map killed inside the kernel left watched: `rbd rm` refuses
/// it while `rbd status` lists the watcher, for `left` more looks.
#[derive(Default)]
struct StaleWatch {
    left: std::sync::atomic::AtomicU32,
    calls: std::sync::Mutex<Vec<String>>,
}

struct StaleWatchRun(StdArc<StaleWatch>);

impl strata_core::runner::Runner for StaleWatchRun {
    fn run(&self, argv: &[String]) -> Result<Out> {
        use std::sync::atomic::Ordering::SeqCst;
        let me = &self.0;
        let line = argv.join(" ");
        me.calls.lock().unwrap().push(line.clone());
        let out = |ok: bool, stdout: &str, stderr: &str| Out {
            ok,
            stdout: stdout.into(),
            stderr: stderr.into(),
        };
        let watched = me.left.load(SeqCst) > 0;
        Ok(if line.contains(" ls -l ") {
            out(true, r#"[{"image":"c3","id":"3","size":67108864,"format":2}]"#, "")
        } else if line.contains(" device list") {
            out(true, "[]", "")
        } else if line.contains(" rm --no-progress lxc/c3") && watched {
            out(
                false,
                "",
                "2026-12-03T02:21:18.300+0000 7f71f34ee6c0 -1 librbd::image::PreRemoveRequest: 0x5639 check_image_watchers: image has watchers - not removing\nrbd: error: image still has watchers\n",
            )
        } else if line.contains(" status --format json lxc/c3") {
            if watched {
                me.left.fetch_sub(1, SeqCst);
                out(
                    true,
                    r#"{"watchers":[{"address":"10.0.2.15:0/3813","client":4412,"cookie":18446462598732840961}]}"#,
                    "",
                )
            } else {
                out(true, r#"{"watchers":[]}"#, "")
            }
        } else {
            out(true, "", "")
        })
    }

    fn pipe(&self, _: &[String], _: &[String]) -> Result<Out> {
        unreachable!()
    }
}

/// The undo of a killed build whose map was killed inside the kernel: its
/// image has no mapping but a watch the OSD keeps until it times out; the
/// undo waits for it to go and removes the image instead of leaving it for
/// a later command. A plain destroy (someone else's image, which may be
/// open on another host) is refused at once, as before.
#[test]
fn a_killed_builds_image_with_a_stale_watch_goes() {
    let b = || {
        let r = StdArc::new(StaleWatch::default());
        r.left.store(1, std::sync::atomic::Ordering::SeqCst);
        (
            RbdBackend::with_runner(Box::new(StaleWatchRun(r.clone()))).with_user(None),
            r,
        )
    };
    let (rb, r) = b();
    rb.destroy_image(&spec_for("lxc", "c3"), true).unwrap();
    let calls = r.calls.lock().unwrap().clone();
    let rms = calls.iter().filter(|c| c.contains(" rm --no-progress lxc/c3")).count();
    assert_eq!(rms, 2, "{calls:?}");
    assert!(calls.last().unwrap().contains(" rm --no-progress lxc/c3"), "{calls:?}");
    let (rb, r) = b();
    let e = rb.destroy(&spec_for("lxc", "c3")).unwrap_err();
    assert!(e.to_string().contains("watchers"), "{e}");
    assert!(!r.calls.lock().unwrap().iter().any(|c| c.contains(" status ")));
    assert_eq!(parse_watchers(r#"{"watchers":[]}"#).unwrap(), 0);
}
