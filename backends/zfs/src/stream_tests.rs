//! The native stream's argv and its choices (tree snapshots, lineage,
//! raw sends, receive under a temporary name), on the runner double; the
//! real `zfs send`/`zfs receive` run in the guest tier (tests/vm).

use super::runner::fake::FakeRunner;
use super::stream::*;
use super::*;
use std::path::Path;
use std::sync::Arc as StdArc;
use strata_core::block::testing;
use strata_core::{BackendOpts, NativeStream};

const POOL_LIST: &str =
    "zfs list -H -p -o name,origin,guid,written,createtxg,encryption,readonly -t filesystem,volume,snapshot -r tank";

/// Container c1 with snapshots snap0 and snap1 (read-only clones of c1's
/// `@strata-a` and `@strata-b`, whose `written` is not 0: zfs rewrites a
/// clone's objset as it makes it), the clone the engine stages to send
/// the rootfs (of `@strata-c`), a writable clone `changed`, and a received
/// container r1 whose snap0 came whole and whose snap1 came as a clone of
/// it, and a received tree `r1_old` written since.
const LISTING: &str = "\
tank\t-\t1\t0\t1\toff\toff
tank/lxc\t-\t2\t0\t2\toff\toff
tank/lxc/c1\t-\t3\t4096\t10\toff\toff
tank/lxc/c1@strata-a\t-\t101\t0\t20\toff\t-
tank/lxc/c1@strata-b\t-\t102\t8192\t30\toff\t-
tank/lxc/c1@strata-c\t-\t103\t8192\t40\toff\t-
tank/lxc/c1_snap0\ttank/lxc/c1@strata-a\t4\t40960\t21\toff\ton
tank/lxc/c1_snap1\ttank/lxc/c1@strata-b\t5\t40960\t31\toff\ton
tank/lxc/stage\ttank/lxc/c1@strata-c\t6\t40960\t41\toff\ton
tank/lxc/changed\ttank/lxc/c1@strata-c\t7\t512\t42\toff\toff
tank/lxc/r1_snap0\t-\t8\t0\t50\toff\toff
tank/lxc/r1_snap0@received-0000000000000065\t-\t101\t0\t51\toff\t-
tank/lxc/r1_snap1\ttank/lxc/r1_snap0@received-0000000000000065\t9\t0\t52\toff\toff
tank/lxc/r1_snap1@received-0000000000000066\t-\t102\t0\t53\toff\t-
tank/lxc/r1_old\t-\t12\t4096\t54\toff\toff
tank/lxc/r1_old@received-0000000000000069\t-\t105\t0\t55\toff\t-
tank/lxc/sec\t-\t10\t0\t60\taes-256-gcm\toff
tank/lxc/sec@strata-d\t-\t104\t0\t61\taes-256-gcm\t-
tank/lxc/sec_snap0\ttank/lxc/sec@strata-d\t11\t40960\t62\taes-256-gcm\ton
";

fn setup() -> (ZfsBackend, StdArc<FakeRunner>) {
    let (f, run) = testing::fake();
    f.on(POOL_LIST, true, LISTING);
    (ZfsBackend::with_runner(run), f)
}

fn zfs(ds: &str) -> RootfsSpec {
    RootfsSpec::new("zfs", ds)
}

/// A `BEGIN` record as zfs writes it (little-endian here).
fn begin(toguid: u64, fromguid: u64, le: bool) -> Vec<u8> {
    let w = |v: u64| if le { v.to_le_bytes() } else { v.to_be_bytes() };
    let mut b = vec![0u8; 8];
    b.extend(w(0x2_f5ba_cbac));
    b.extend(w(0x11)); // version info
    b.extend(w(1_700_000_000)); // creation time
    b.extend([0u8; 8]); // type and flags
    b.extend(w(toguid));
    b.extend(w(fromguid));
    b.extend(b"tank/lxc/c1@strata-b\0");
    b
}

#[test]
fn begin_record_is_read_in_either_byte_order() {
    for le in [true, false] {
        assert_eq!(
            parse_begin(&begin(102, 101, le)),
            Some(Begin {
                toguid: 102,
                fromguid: 101
            })
        );
    }
    assert_eq!(parse_begin(&begin(102, 101, true)[..BEGIN_LEN - 1]), None);
    let mut bad = begin(102, 0, true);
    bad[8] ^= 1;
    assert_eq!(parse_begin(&bad), None, "another magic");
    let mut other = begin(102, 0, true);
    other[0] = 7;
    assert_eq!(parse_begin(&other), None, "not a BEGIN record");
}

#[test]
fn tree_snapshots_and_lineage() {
    let rows = parse_rows(LISTING);
    let ts = |ds: &str| tree_snap(&rows, ds).map(|r| r.name.clone());
    // An unchanged clone stands for its origin; a received tree for its snapshot.
    assert_eq!(ts("tank/lxc/c1_snap0").as_deref(), Some("tank/lxc/c1@strata-a"));
    assert_eq!(ts("tank/lxc/c1_snap1").as_deref(), Some("tank/lxc/c1@strata-b"));
    assert_eq!(
        ts("tank/lxc/r1_snap1").as_deref(),
        Some("tank/lxc/r1_snap1@received-0000000000000066")
    );
    // A writable clone, or written since its own snapshot: none (a send makes one).
    assert_eq!(ts("tank/lxc/changed"), None);
    assert_eq!(ts("tank/lxc/r1_old"), None);
    assert_eq!(ts("tank/lxc/c1"), None);
    assert_eq!(ts("tank/lxc/nope"), None);
    let r = |n: &str| rows.iter().find(|r| r.name == n).unwrap().clone();
    assert!(is_before(&rows, &r("tank/lxc/c1@strata-a"), &r("tank/lxc/c1@strata-b")));
    assert!(!is_before(
        &rows,
        &r("tank/lxc/c1@strata-b"),
        &r("tank/lxc/c1@strata-a")
    ));
    assert!(!is_before(
        &rows,
        &r("tank/lxc/c1@strata-a"),
        &r("tank/lxc/c1@strata-a")
    ));
    // Across a clone's origin: r1_snap1@native comes after r1_snap0@native.
    assert!(is_before(
        &rows,
        &r("tank/lxc/r1_snap0@received-0000000000000065"),
        &r("tank/lxc/r1_snap1@received-0000000000000066")
    ));
    // Another lineage: no.
    assert!(!is_before(
        &rows,
        &r("tank/lxc/r1_snap0@received-0000000000000065"),
        &r("tank/lxc/c1@strata-b")
    ));
    assert!(r("tank/lxc/sec").encrypted && !r("tank/lxc/c1").encrypted);
}

#[test]
fn sends_incrementally_along_the_lineage_whole_otherwise_raw_when_encrypted() {
    let (b, f) = setup();
    let mut out = Vec::new();
    b.send(&zfs("tank/lxc/c1_snap0"), None, &mut out).unwrap();
    b.send(&zfs("tank/lxc/c1_snap1"), Some(&zfs("tank/lxc/c1_snap0")), &mut out)
        .unwrap();
    b.send(&zfs("tank/lxc/stage"), Some(&zfs("tank/lxc/c1_snap1")), &mut out)
        .unwrap();
    // snap1 after the rootfs's staged clone: not its lineage, whole.
    b.send(&zfs("tank/lxc/c1_snap0"), Some(&zfs("tank/lxc/stage")), &mut out)
        .unwrap();
    b.send(&zfs("tank/lxc/sec_snap0"), None, &mut out).unwrap();
    let sends: Vec<String> = f.calls().into_iter().filter(|c| c.starts_with("zfs send")).collect();
    assert_eq!(
        sends,
        [
            "zfs send -L -e -c tank/lxc/c1@strata-a",
            "zfs send -L -e -c -i tank/lxc/c1@strata-a tank/lxc/c1@strata-b",
            "zfs send -L -e -c -i tank/lxc/c1@strata-b tank/lxc/c1@strata-c",
            "zfs send -L -e -c tank/lxc/c1@strata-a",
            "zfs send -w tank/lxc/sec@strata-d",
        ]
    );
    // Nothing made for trees that have a tree snapshot.
    assert!(
        !f.calls().iter().any(|c| c.starts_with("zfs snapshot")),
        "{:?}",
        f.calls()
    );
}

#[test]
fn a_tree_written_since_its_snapshot_gets_a_new_one() {
    let (b, f) = setup();
    f.on("zfs get -H -p -o value guid tank/lxc/changed@native-", true, "777\n");
    let mut out = Vec::new();
    b.send(&zfs("tank/lxc/changed"), Some(&zfs("tank/lxc/c1_snap1")), &mut out)
        .unwrap();
    let calls = f.calls();
    let snap = calls
        .iter()
        .find_map(|c| c.strip_prefix("zfs snapshot "))
        .expect("a snapshot made");
    assert!(snap.starts_with("tank/lxc/changed@native-"), "{snap}");
    // Its lineage goes through c1@strata-c, after c1@strata-b.
    assert!(
        calls.contains(&format!("zfs send -L -e -c -i tank/lxc/c1@strata-b {snap}")),
        "{calls:?}"
    );
    // Its identity is the new snapshot's guid.
    assert_eq!(b.identity(&zfs("tank/lxc/changed")).unwrap(), "777");
    assert_eq!(b.identity(&zfs("tank/lxc/c1_snap1")).unwrap(), "102");
    assert!(b.is_copy_of(&zfs("tank/lxc/r1_snap1"), "102").unwrap());
    assert!(!b.is_copy_of(&zfs("tank/lxc/r1_snap1"), "101").unwrap());
    assert!(!b.is_copy_of(&zfs("tank/lxc/changed"), "7").unwrap());
}

fn target<'a>(dir: &'a Path, build: &'a Path, opts: &'a BackendOpts) -> Target<'a> {
    Target {
        name: "r1",
        lxcpath: Path::new("/l"),
        dir,
        build_dir: build,
        opts,
    }
}

#[test]
fn receives_under_a_temporary_name_as_a_clone_of_the_base_then_renames() {
    let (b, f) = setup();
    let opts = BackendOpts::default();
    let (dir, build) = (
        Path::new("/l/r1/snaps/snap2"),
        Path::new("/l/.strata-tmp.r1.x/snaps/snap2"),
    );
    let t = target(dir, build, &opts);
    let mark = t.mark();
    let mut stream = begin(103, 102, true);
    stream.extend(vec![9u8; 100_000]);
    b.receive(
        &zfs("tank/lxc/r1_snap2"),
        &t,
        Some(&zfs("tank/lxc/r1_snap1")),
        &mut &stream[..],
        false,
    )
    .unwrap();
    let tmp = format!("tank/lxc/r1_snap2.strata-recv.{mark}");
    let calls: Vec<String> = f.calls().into_iter().filter(|c| !c.starts_with("zfs list")).collect();
    assert_eq!(
        calls,
        [
            format!(
                "zfs receive -u -o origin=tank/lxc/r1_snap1@received-0000000000000066 -o mountpoint=legacy -o strata:build={mark} {tmp}@received-0000000000000067"
            ),
            format!("zfs rename {tmp} tank/lxc/r1_snap2"),
        ]
    );
    assert!(
        f.fed.lock().unwrap()[0] == stream,
        "the whole stream, its first record included"
    );

    // The rootfs: whole here, and its received snapshot dropped.
    let (b, f) = setup();
    b.receive(&zfs("tank/lxc/r1"), &t, None, &mut &begin(103, 0, true)[..], true)
        .unwrap();
    let calls = f.calls();
    assert_eq!(
        calls,
        [
            format!(
                "zfs receive -u -o mountpoint=legacy -o strata:build={mark} {tmp_r}@received-0000000000000067",
                tmp_r = recv_temp("tank/lxc/r1", &mark)
            ),
            format!(
                "zfs destroy {}@received-0000000000000067",
                recv_temp("tank/lxc/r1", &mark)
            ),
            format!("zfs rename {} tank/lxc/r1", recv_temp("tank/lxc/r1", &mark)),
        ]
    );
}

#[test]
fn a_bad_stream_or_a_missing_base_makes_nothing_and_a_failed_receive_drops_its_temporary() {
    let opts = BackendOpts::default();
    let (dir, build) = (Path::new("/l/r1"), Path::new("/l/.strata-tmp.r1.x"));
    let t = target(dir, build, &opts);
    let (b, f) = setup();
    let e = b
        .receive(
            &zfs("tank/lxc/r1"),
            &t,
            None,
            &mut &b"not a stream at all, but long enough to be read as one"[..],
            true,
        )
        .unwrap_err();
    assert!(e.to_string().contains("not a zfs send stream"), "{e}");
    let e = b
        .receive(
            &zfs("tank/lxc/r1"),
            &t,
            Some(&zfs("tank/lxc/c1_snap0")),
            &mut &begin(9, 555, true)[..],
            true,
        )
        .unwrap_err();
    assert!(e.to_string().contains("guid 555"), "{e}");
    let e = b
        .receive(&zfs("tank/lxc/r1"), &t, None, &mut &begin(9, 101, true)[..], true)
        .unwrap_err();
    assert!(e.to_string().contains("no tree before it"), "{e}");
    assert!(f.calls().iter().all(|c| c.starts_with("zfs list")), "{:?}", f.calls());

    // zfs receive fails: what it left under the temporary name goes.
    let tmp = recv_temp("tank/lxc/r1", &t.mark());
    f.on("zfs receive", false, "");
    f.on(&format!("zfs list -H -p -o name {tmp}"), true, &format!("{tmp}\n"));
    b.receive(&zfs("tank/lxc/r1"), &t, None, &mut &begin(9, 0, true)[..], true)
        .unwrap_err();
    assert!(f.calls().contains(&format!("zfs destroy -r {tmp}")), "{:?}", f.calls());

    // The build's undo destroys it too (a kill between receive and rename).
    let (b, f) = setup();
    f.on(&format!("zfs list -H -p -o name {tmp}"), true, &format!("{tmp}\n"));
    // The planned dataset itself is not there.
    for prefix in [
        "zfs list -H -p -o name,origin,createtxg,clones",
        "zfs list -H -p -o name tank/lxc/r1",
    ] {
        f.canned.lock().unwrap().push((
            prefix.into(),
            Out {
                ok: false,
                stdout: String::new(),
                stderr: "cannot open 'tank/lxc/r1': dataset does not exist\n".into(),
            },
        ));
    }
    f.on(&format!("zfs list -H -p -o name {tmp}"), true, &format!("{tmp}\n"));
    b.undo_build(&zfs("tank/lxc/r1"), build).unwrap();
    assert!(f.calls().contains(&format!("zfs destroy -r {tmp}")), "{:?}", f.calls());
}

#[test]
fn check_send_refuses_nested_datasets() {
    let (b, f) = setup();
    f.on(
        "zfs list -H -p -o name -t filesystem,volume -d 1 tank/lxc/c1",
        true,
        "tank/lxc/c1\n",
    );
    b.check_send(&zfs("tank/lxc/c1"), false).unwrap();
    f.on(
        "zfs list -H -p -o name -t filesystem,volume -d 1 tank/lxc/c1",
        true,
        "tank/lxc/c1\ntank/lxc/c1/var\n",
    );
    let e = b.check_send(&zfs("tank/lxc/c1"), false).unwrap_err();
    assert!(e.to_string().contains("tank/lxc/c1/var"), "{e}");
}
