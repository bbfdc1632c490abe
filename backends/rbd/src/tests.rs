//! Unit tests with a recording command double: argv built, output parsed,
//! refusals made before any command that changes something. The real
//! cluster runs in the guest tier (tests/vm: rbd-flows, conformance).

use super::*;
use std::path::PathBuf;
use std::sync::Arc as StdArc;
use strata_core::runner::fake::FakeRunner;
use strata_core::{BackendOpts, ErrorKind};

struct Shared(StdArc<FakeRunner>);
impl Runner for Shared {
    fn run(&self, argv: &[String]) -> Result<Out> {
        self.0.run(argv)
    }
    fn pipe(&self, a: &[String], b: &[String]) -> Result<Out> {
        self.0.pipe(a, b)
    }
}

const RBD: &str = "rbd --client_mount_timeout 30";

/// `rbd ls -l --format json` of pool lxc as Ceph 16 prints it: c1 with a
/// protected snapshot that c2 is cloned from, and a plain c3.
const LS: &str = r#"[{"image":"c1","id":"1","size":67108864,"format":2},{"image":"c1","id":"1","snapshot":"strata-c2","snapshot_id":4,"size":67108864,"protected":"true","format":2},{"image":"c2","id":"2","size":67108864,"parent":{"pool":"lxc","pool_namespace":"","image":"c1","snapshot":"strata-c2"},"format":2},{"image":"c3","id":"3","size":1073741824,"format":2}]"#;

fn setup() -> (RbdBackend, StdArc<FakeRunner>) {
    let f = StdArc::new(FakeRunner::default());
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
    let b = RbdBackend::with_runner(Box::new(Shared(f.clone()))).with_user(None);
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
    let lp = PathBuf::from(lxcpath);
    let dir = lp.join(name);
    let t = Target {
        name,
        lxcpath: &lp,
        dir: &dir,
        build_dir: &dir,
        opts,
    };
    let origin = origin.map(|o| RootfsSpec::parse(o).unwrap());
    b.plan(&t, origin.as_ref())
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
    let (b, _) = setup();
    // Default pool lxc; a taken name gets a suffix; snapN of c1 is c1_snapN.
    assert_eq!(
        plan(&b, "c1", "/l", &target_opts(None, None), None)
            .unwrap()
            .to_string(),
        "rbd:/dev/rbd/lxc/c1_1"
    );
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
    let e = plan(&b, "x", "/l", &target_opts(Some("nopool"), None), None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.to_string().contains("\"nopool\" does not exist"), "{e}");
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
        format!("{RBD} unmap /dev/rbd0"),
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
    f.on(&format!("{RBD} map --pool lxc c9"), true, "/dev/rbd3\n");
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
    b.snapshot(&spec_for("lxc", "c3"), &spec_for("lxc", "c9"), &t, false)
        .unwrap();
    let calls = changing(&f);
    assert_eq!(
        &calls[..4],
        [
            format!("{RBD} snap create --no-progress lxc/c3@strata-c9"),
            format!("{RBD} snap protect lxc/c3@strata-c9"),
            format!("{RBD} clone lxc/c3@strata-c9 lxc/c9"),
            format!("{RBD} map --pool lxc c9"),
        ]
    );
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
    let e = plan(&b, "x", "/l", &target_opts(None, None), None).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("no key for this ceph user") && m.contains("ceph.client.nobody.keyring"),
        "{m}"
    );
    assert!(!m.contains("does not exist"), "{m}");
    assert_eq!(m.lines().count(), 1, "{m}");
}
