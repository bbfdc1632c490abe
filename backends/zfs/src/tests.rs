use super::runner::fake::FakeRunner;
use super::*;
use std::path::PathBuf;
use std::sync::Arc as StdArc;
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

fn setup() -> (ZfsBackend, StdArc<FakeRunner>) {
    let f = StdArc::new(FakeRunner::default());
    f.on("zfs list -H -p -o name ", false, "");
    f.on("zfs list -H -p -o name tank/lxc", true, "tank/lxc\n");
    f.on("zfs list -H -p -o name tank/lxc/", false, "");
    f.on("zfs list -H -p -o name tank/lxc/c1", true, "tank/lxc/c1\n");
    f.on(
        "zfs list -H -p -o name -d 1 -t filesystem tank/lxc",
        true,
        "tank/lxc\ntank/lxc/c1\ntank/lxc/c1_snap0\n",
    );
    (ZfsBackend::with_runner(Box::new(Shared(f.clone()))), f)
}

fn plan(b: &ZfsBackend, name: &str, lxcpath: &str, root: Option<&str>, origin: Option<&str>) -> Result<RootfsSpec> {
    let lp = PathBuf::from(lxcpath);
    let dir = lp.join(name);
    let opts = BackendOpts {
        zfsroot: root.map(String::from),
        ..BackendOpts::default()
    };
    let t = Target {
        name,
        lxcpath: &lp,
        dir: &dir,
        build_dir: &dir,
        opts: &opts,
    };
    let o = origin.map(|o| RootfsSpec::parse(o).unwrap());
    b.plan(&t, o.as_ref())
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
    // A second container's snap0 gets its own dataset (not LXC's shared snapN).
    let s = plan(&b, "snap0", "/l/c1/snaps", None, Some("zfs:tank/lxc/c1")).unwrap();
    assert_eq!(s.to_string(), "zfs:tank/lxc/c1_snap0_1");
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
    assert!(c[0].starts_with("zfs snapshot tank/lxc/c1@strata-"), "{c:?}");
    let snap = c[0].rsplit(' ').next().unwrap().to_string();
    assert_eq!(c[1], format!("zfs clone -o mountpoint=legacy {snap} tank/lxc/c2"));
    assert!(b.fast_copy(&src, &dst, &t).unwrap());
    let c = f.calls();
    assert!(c.iter().any(|l| l.starts_with("zfs send tank/lxc/c1@strata-")));
    assert!(c.contains(&"zfs receive -u -o mountpoint=legacy tank/lxc/c2".to_string()));
    let other = RootfsSpec::parse("zfs:other/c2").unwrap();
    assert_eq!(
        b.snapshot(&src, &other, &t, false).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

#[test]
fn destroy_promotes_the_newest_clone() {
    let (b, f) = setup();
    f.on(
        "zfs list -H -p -o name,createtxg,clones -t snapshot -d 1 tank/lxc/c1",
        true,
        "tank/lxc/c1@strata-a\t10\ttank/lxc/c1_snap0\ntank/lxc/c1@strata-b\t20\ttank/lxc/c2,tank/lxc/c3\ntank/lxc/c1@x\t30\t\n",
    );
    let c1 = RootfsSpec::parse("zfs:tank/lxc/c1").unwrap();
    let deps: Vec<String> = b.dependents(&c1).unwrap().iter().map(|d| d.to_string()).collect();
    assert_eq!(deps, ["zfs:tank/lxc/c1_snap0", "zfs:tank/lxc/c2", "zfs:tank/lxc/c3"]);
    // The canned listing never changes, so promotion stops at the loop bound: an error, no destroy.
    assert!(b.destroy(&c1).is_err());
    let c = f.calls();
    assert!(c.contains(&"zfs promote tank/lxc/c3".to_string()), "{c:?}");
    assert!(!c.iter().any(|l| l.starts_with("zfs destroy")));
}

#[test]
fn usage_parses_used_and_referenced() {
    let (b, f) = setup();
    f.canned.lock().unwrap().insert(
        0,
        (
            "zfs get -H -p -o value used,referenced".into(),
            Out {
                ok: true,
                stdout: "12345\n67890\n".into(),
                stderr: String::new(),
            },
        ),
    );
    let u = b.usage(&RootfsSpec::parse("zfs:tank/lxc/c1").unwrap()).unwrap();
    assert_eq!((u.exclusive, u.referenced), (Some(12345), Some(67890)));
}

#[test]
fn destroy_of_missing_dataset_is_fine() {
    let (b, f) = setup();
    b.destroy(&RootfsSpec::parse("zfs:tank/lxc/gone").unwrap()).unwrap();
    assert!(!f.calls().iter().any(|l| l.starts_with("zfs destroy")));
}
