use super::runner::fake::FakeRunner;
use super::*;
use std::path::PathBuf;
use std::sync::Arc as StdArc;
use strata_core::block::testing;
use strata_core::{BackendOpts, ErrorKind};

const VGS: &str = r#"{"report":[{"vg":[{"vg_name":"vg0","vg_size":"2143289344","vg_free":"1069547520"}]}]}"#;
const LVS: &str = r#"{"report":[{"lv":[
 {"lv_name":"lxc","vg_name":"vg0","lv_attr":"twi-aotz--","lv_size":"1073741824","pool_lv":"","origin":"","data_percent":"3.00"},
 {"lv_name":"c1","vg_name":"vg0","lv_attr":"Vwi-a-tz--","lv_size":"536870912","pool_lv":"lxc","origin":"","data_percent":"10.00","lv_tags":"strata_build_00000000000000aa,other"},
 {"lv_name":"plain","vg_name":"vg0","lv_attr":"owi-a-s---","lv_size":"104857600","pool_lv":"","origin":"","data_percent":""},
 {"lv_name":"psnap","vg_name":"vg0","lv_attr":"swi-a-s---","lv_size":"104857600","pool_lv":"","origin":"plain","data_percent":"0.01"}
]}]}"#;

fn setup() -> (LvmBackend, StdArc<FakeRunner>) {
    let (f, run) = testing::fake();
    f.on("vgs", true, VGS);
    f.on("lvs", true, LVS);
    (LvmBackend::with_runner(run), f)
}

fn plan(b: &LvmBackend, name: &str, lxcpath: &str, opts: &BackendOpts, origin: Option<&str>) -> Result<RootfsSpec> {
    testing::plan(b, name, lxcpath, opts, origin)
}

fn opts_vg() -> BackendOpts {
    BackendOpts {
        vgname: Some("vg0".into()),
        ..BackendOpts::default()
    }
}

#[test]
fn parses_reports() {
    let lvs = parse_lvs(LVS).unwrap();
    assert_eq!(lvs.len(), 4);
    assert!(lvs[0].is_thin_pool() && lvs[1].is_thin() && lvs[3].is_classic_snapshot());
    assert_eq!(lvs[1].size, 536870912);
    assert_eq!(lvs[3].origin, "plain");
    let vgs = parse_vgs(VGS).unwrap();
    assert_eq!(vgs[0].free, 1069547520);
    assert!(parse_lvs("not json").is_err());
}

#[test]
fn names_follow_lvm_rules() {
    for bad in [
        "-x",
        "a@b",
        ".",
        "..",
        "a/b",
        "snapshot1",
        "pvmove0",
        "x_tmeta",
        "a b",
        "",
    ] {
        assert_eq!(
            validate_name("logical volume", bad).unwrap_err().kind(),
            ErrorKind::InvalidName,
            "{bad:?}"
        );
    }
    for ok in ["c1", "web-01", "a.b", "x_y", "a+b"] {
        validate_name("logical volume", ok).unwrap();
    }
}

#[test]
fn plan_picks_free_names() {
    let (b, f) = setup();
    assert_eq!(
        plan(&b, "c2", "/l", &opts_vg(), None).unwrap().to_string(),
        "lvm:/dev/vg0/c2"
    );
    // c1 is taken (a restore of c1): the next free name.
    assert_eq!(
        plan(&b, "c1", "/l", &opts_vg(), None).unwrap().to_string(),
        "lvm:/dev/vg0/c1_1"
    );
    // snapshot snap0 of c1 lives in /l/c1/snaps.
    let s = plan(
        &b,
        "snap0",
        "/l/c1/snaps",
        &BackendOpts::default(),
        Some("lvm:/dev/vg0/c1"),
    )
    .unwrap();
    assert_eq!(s.to_string(), "lvm:/dev/vg0/c1_snap0");
    // Planning runs only queries.
    assert!(
        f.calls().iter().all(|c| c.starts_with("vgs ") || c.starts_with("lvs ")),
        "{:?}",
        f.calls()
    );
    assert!(f
        .calls()
        .iter()
        .any(|c| c.contains("--reportformat json --units b --nosuffix")));
}

#[test]
fn plan_refuses_bad_input_before_anything_runs() {
    let (b, f) = setup();
    let mut o = opts_vg();
    o.lvname = Some("-x".into());
    assert_eq!(
        plan(&b, "c2", "/l", &o, None).unwrap_err().kind(),
        ErrorKind::InvalidName
    );
    let mut o = opts_vg();
    o.vgname = Some("nope".into());
    assert_eq!(plan(&b, "c2", "/l", &o, None).unwrap_err().kind(), ErrorKind::NotFound);
    let mut o = opts_vg();
    o.thinpool = Some("nopool".into());
    let e = plan(&b, "c2", "/l", &o, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("thin pool vg0/nopool"), "{e}");
    let mut o = opts_vg();
    o.fssize = Some(2 << 30);
    assert_eq!(
        plan(&b, "c2", "/l", &o, None).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let mut o = opts_vg();
    o.lvname = Some("c1".into());
    assert_eq!(
        plan(&b, "c2", "/l", &o, None).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let mut o = opts_vg();
    o.fstype = Some("vfat".into());
    assert_eq!(
        plan(&b, "c2", "/l", &o, None).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // Snapshot of a classic snapshot.
    let e = plan(&b, "c3", "/l", &opts_vg(), Some("lvm:/dev/vg0/psnap")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(f.calls().iter().all(|c| c.starts_with("vgs ") || c.starts_with("lvs ")));
}

#[test]
fn create_thin_and_snapshot_argv() {
    let (b, f) = setup();
    let lp = PathBuf::from("/l");
    let dir = lp.join("c2");
    let o = opts_vg();
    let t = Target {
        name: "c2",
        lxcpath: &lp,
        dir: &dir,
        build_dir: &dir,
        opts: &o,
    };
    let spec = RootfsSpec::parse("lvm:/dev/vg0/c2").unwrap();
    b.create(&spec, &t).unwrap();
    let calls = f.calls();
    let tag = format!("strata_build_{}", strata_core::build_mark(&dir));
    assert!(
        calls.contains(&format!(
            "lvcreate -y -Wy -n c2 -V 1073741824b --thinpool vg0/lxc --addtag {tag}"
        )),
        "{calls:?}"
    );
    assert!(calls.contains(&"mkfs.ext4 -q -F /dev/vg0/c2".to_string()));
    f.on("blkid", true, "ext4\n");
    let src = RootfsSpec::parse("lvm:/dev/vg0/c1").unwrap();
    let snap = RootfsSpec::parse("lvm:/dev/vg0/c1_snap0").unwrap();
    b.snapshot(&src, &snap, &t, true).unwrap();
    let calls = f.calls();
    assert!(
        calls.contains(&format!("lvcreate -y -s -n c1_snap0 --addtag {tag} vg0/c1")),
        "{calls:?}"
    );
    assert!(calls.contains(&"lvchange -ay -K vg0/c1_snap0".to_string()));
    // Plain origin: a classic snapshot with the origin's size.
    let p = RootfsSpec::parse("lvm:/dev/vg0/plain").unwrap();
    let ps = RootfsSpec::parse("lvm:/dev/vg0/plain_1").unwrap();
    b.snapshot(&p, &ps, &t, false).unwrap();
    assert!(f.calls().contains(&format!(
        "lvcreate -y -s -n plain_1 -L 104857600b --addtag {tag} vg0/plain"
    )));
}

#[test]
fn destroy_refuses_to_lose_classic_snapshots_and_ignores_missing() {
    let (b, f) = setup();
    let e = b
        .destroy(&RootfsSpec::parse("lvm:/dev/vg0/plain").unwrap())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HasDependents);
    assert!(e.to_string().contains("psnap"), "{e}");
    b.destroy(&RootfsSpec::parse("lvm:/dev/vg0/gone").unwrap()).unwrap();
    b.destroy(&RootfsSpec::parse("lvm:/dev/novg/gone").unwrap()).unwrap();
    assert!(!f.calls().iter().any(|c| c.starts_with("lvremove")));
    b.destroy(&RootfsSpec::parse("lvm:/dev/vg0/c1").unwrap()).unwrap();
    assert!(f.calls().contains(&"lvremove -f -y vg0/c1".to_string()));
}

#[test]
fn usage_of_thin_volume() {
    let (b, _) = setup();
    let u = b.usage(&RootfsSpec::parse("lvm:/dev/vg0/c1").unwrap()).unwrap();
    assert_eq!(u.referenced, Some(53687091));
}

#[test]
fn a_copy_goes_to_its_sources_vg_and_thin_pool_with_its_size() {
    let (b, f) = setup();
    // No --vgname, no lxc.conf: the VG and thin pool of the LV copied (as LXC places it),
    // and without --fssize its size (LXC's clone reads the source device's).
    let o = BackendOpts {
        copy_of: Some(RootfsSpec::parse("lvm:/dev/vg0/c1").unwrap()),
        ..BackendOpts::default()
    };
    assert_eq!(plan(&b, "c2", "/l", &o, None).unwrap().to_string(), "lvm:/dev/vg0/c2");
    let lp = PathBuf::from("/l");
    let dir = lp.join("c2");
    let t = Target {
        name: "c2",
        lxcpath: &lp,
        dir: &dir,
        build_dir: &dir,
        opts: &o,
    };
    b.create(&RootfsSpec::parse("lvm:/dev/vg0/c2").unwrap(), &t).unwrap();
    assert!(
        f.calls()
            .iter()
            .any(|c| c.starts_with("lvcreate -y -Wy -n c2 -V 536870912b ") && c.contains(" --thinpool vg0/lxc ")),
        "{:?}",
        f.calls()
    );
    // --vgname wins over the source's VG.
    let o = BackendOpts {
        vgname: Some("other".into()),
        copy_of: Some(RootfsSpec::parse("lvm:/dev/vg0/c1").unwrap()),
        ..BackendOpts::default()
    };
    assert_eq!(plan(&b, "c2", "/l", &o, None).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn undoing_a_build_spares_a_volume_another_build_made() {
    let (b, _) = setup();
    let spec = RootfsSpec::parse("lvm:/dev/vg0/c1").unwrap();
    let lvs = parse_lvs(LVS).unwrap();
    assert_eq!(lvs[1].tags, vec!["strata_build_00000000000000aa", "other"]);
    // c1 carries another build's tag: not this build's to destroy.
    assert!(!b.made_by(&spec, Path::new("/l/.strata-tmp.c1.1")));
    assert!(!b.unmarked(&spec));
    // Gone: nothing to spare, nothing unmarked.
    let gone = RootfsSpec::parse("lvm:/dev/vg0/gone").unwrap();
    assert!(b.made_by(&gone, Path::new("/l/x")));
    assert!(!b.unmarked(&gone));
    // No tag at all: made by a strata from before the marks, or by hand.
    let plain = RootfsSpec::parse("lvm:/dev/vg0/plain").unwrap();
    assert!(!b.made_by(&plain, Path::new("/l/x")));
    assert!(b.unmarked(&plain));
    // The mark goes by the build dir's own name, whatever the lxcpath's spelling.
    assert_eq!(
        strata_core::build_mark(Path::new("/a/.strata-tmp.c1.9")),
        strata_core::build_mark(Path::new("/b/../a/.strata-tmp.c1.9"))
    );
    assert_ne!(
        strata_core::build_mark(Path::new("/a/.strata-tmp.c1.9")),
        strata_core::build_mark(Path::new("/a/.strata-tmp.c1.a"))
    );
    // A received container's snapshot goes by its build's dir too: two
    // receives' snap0 (whose LVs may be planned under one name) differ.
    assert_eq!(
        strata_core::build_mark(Path::new("/a/.strata-tmp.c1.9/snaps/snap0")),
        strata_core::build_mark(Path::new("/b/../a/.strata-tmp.c1.9/snaps/snap0"))
    );
    assert_ne!(
        strata_core::build_mark(Path::new("/a/.strata-tmp.c1.9/snaps/snap0")),
        strata_core::build_mark(Path::new("/b/.strata-tmp.c1.a/snaps/snap0"))
    );
}

#[test]
fn a_failed_lookup_is_no_proof_that_a_volume_is_gone() {
    let (b, f) = setup();
    // lvs fails while the VG is there: destroy and undo fail, nothing removed,
    // rather than report success and leave the LV behind.
    f.on("lvs", false, "");
    let c1 = RootfsSpec::parse("lvm:/dev/vg0/c1").unwrap();
    assert_eq!(b.destroy(&c1).unwrap_err().kind(), ErrorKind::Command);
    let build = Path::new("/l/.strata-tmp.c1.1");
    assert_eq!(b.undo_build(&c1, build).unwrap_err().kind(), ErrorKind::Command);
    // lvs fails because the VG is gone: so is the LV.
    b.destroy(&RootfsSpec::parse("lvm:/dev/novg/c1").unwrap()).unwrap();
    b.undo_build(&RootfsSpec::parse("lvm:/dev/novg/c1").unwrap(), build)
        .unwrap();
    assert!(!f.calls().iter().any(|c| c.starts_with("lvremove")), "{:?}", f.calls());
    // lvs answers again: the build's own LV goes, another build's stays.
    f.on("lvs", true, LVS);
    b.undo_build(&c1, build).unwrap();
    assert!(!f.calls().iter().any(|c| c.starts_with("lvremove")));
    let own = Path::new("/l/.strata-tmp.c1.2");
    let tag = format!("{TAG_PREFIX}{}", strata_core::build_mark(own));
    f.on("lvs", true, &LVS.replace("strata_build_00000000000000aa", &tag));
    b.undo_build(&c1, own).unwrap();
    assert!(f.calls().contains(&"lvremove -f -y vg0/c1".to_string()));
}

#[test]
fn resize_grows_online_and_shrinks_only_ext4_stopped() {
    let (b, f) = setup();
    let r = b.resizer().expect("lvm declares a resizer");
    let spec = RootfsSpec::parse("lvm:/dev/vg0/c1").unwrap();
    f.on("blkid", true, "xfs\n");
    // Larger than the thin pool: refused before any tool changes anything.
    let e = r.resize(&spec, 2 << 30, false).unwrap_err();
    assert!(e.to_string().contains("larger than thin pool vg0/lxc"), "{e}");
    // xfs cannot shrink; nor may a running container's volume.
    let e = r.resize(&spec, 256 << 20, false).unwrap_err();
    assert!(e.to_string().contains("xfs cannot shrink"), "{e}");
    let e = r.resize(&spec, 256 << 20, true).unwrap_err();
    assert!(e.to_string().contains("stop it to shrink"), "{e}");
    assert!(
        !f.calls()
            .iter()
            .any(|c| c.starts_with("lvextend") || c.starts_with("lvreduce")),
        "{:?}",
        f.calls()
    );
    // ext4 below what its files need: refused after the check, nothing resized.
    f.on("blkid", true, "ext4\n");
    f.on(
        "resize2fs -P",
        true,
        "Estimated minimum size of the filesystem: 100000\n",
    );
    f.on("dumpe2fs -h", true, "Block size:               1024\n");
    let e = r.resize(&spec, 64 << 20, false).unwrap_err();
    assert!(e.to_string().contains("need at least 98 MiB"), "{e}");
    assert!(!f.calls().iter().any(|c| c.starts_with("lvreduce")));
    // Shrunk: the filesystem first, then the volume.
    r.resize(&spec, 256 << 20, false).unwrap();
    let calls = f.calls();
    let fs = calls
        .iter()
        .position(|c| c == "resize2fs -f /dev/vg0/c1 262144K")
        .unwrap();
    let lv = calls
        .iter()
        .position(|c| c == "lvreduce -y -f -L 268435456b vg0/c1")
        .unwrap();
    assert!(fs < lv, "{calls:?}");
}
