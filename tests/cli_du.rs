//! `strata du` and lxc-info's disk lines on every host backend, each figure
//! checked against the backend's own tool: `du -sx` for dir and overlay and
//! btrfs without quotas, `btrfs qgroup show` with them, the image's
//! allocated blocks (`stat`) and `btrfs filesystem du` for loop images.

mod common;
use common::*;
use strata_testkit::{sh, LoopFs};

fn du_sx(p: &std::path::Path) -> u64 {
    let o = sh(&["du", "-sxB1", p.to_str().unwrap()]);
    o.split_whitespace().next().unwrap().parse().unwrap()
}

fn rows(env: &Env, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["du", "--json"];
    a.extend(args);
    serde_json::from_str(&env.ok("strata", &a)).unwrap()
}

fn row<'a>(rows: &'a [serde_json::Value], c: &str, snap: Option<&str>) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["container"] == c && r["snapshot"].as_str() == snap)
        .unwrap_or_else(|| panic!("no row {c} {snap:?} in {rows:?}"))
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// A file of `len` random-ish bytes (not compressible, not sparse).
fn blob(p: &std::path::Path, len: usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(p, data).unwrap();
}

#[test]
fn dir_and_overlay_match_du() {
    let env = Env::new();
    let src = env.rootfs("base");
    blob(&src.join("root/blob"), 300_000);
    env.ok("lxc-create", &["-n", "d1", "--rootfs-from", src.to_str().unwrap()]);
    env.ok("lxc-copy", &["-n", "d1", "-N", "o1", "-s"]);
    blob(&env.c("o1/overlay/delta/new"), 100_000);
    env.ok("lxc-snapshot", &["-n", "d1"]);
    let r = rows(&env, &["--snapshots"]);
    assert_eq!(r.len(), 3, "{r:?}");
    let d1 = row(&r, "d1", None);
    let want = du_sx(&env.c("d1/rootfs"));
    assert_eq!(
        (n(d1, "referenced"), n(d1, "exclusive"), n(d1, "shared")),
        (want, want, 0)
    );
    assert_eq!(d1["source"], "walk");
    let o1 = row(&r, "o1", None);
    let upper = du_sx(&env.c("o1/overlay/delta"));
    assert!(upper >= 100_000, "{upper}");
    assert_eq!(n(o1, "exclusive"), upper);
    assert_eq!(n(o1, "referenced"), upper + want);
    assert_eq!(n(o1, "shared"), want);
    let s = row(&r, "d1", Some("snap0"));
    let snap_root = env.c("d1/snaps/snap0");
    let rootfs = env.config_get("d1/snaps/snap0", "lxc.rootfs.path").unwrap();
    let spec = strata_core::RootfsSpec::parse(&rootfs).unwrap();
    let want = match spec.overlay_parts() {
        Some((_, upper)) => du_sx(std::path::Path::new(upper)),
        None => du_sx(&spec.path()),
    };
    assert_eq!(n(s, "exclusive"), want, "{s} under {}", snap_root.display());

    // -n: one container; the text form has it with its backend.
    let text = env.ok("strata", &["du", "-n", "o1", "-H"]);
    let l: Vec<&str> = text.lines().collect();
    assert_eq!(l.len(), 2, "{text}");
    assert!(l[0].starts_with("NAME") && l[0].contains("EXCLUSIVE"), "{text}");
    let f: Vec<&str> = l[1].split_whitespace().collect();
    assert_eq!(f[..2], ["o1", "overlay"]);
    assert_eq!(f[3], upper.to_string());

    // lxc-info's lines, as LXC prints its own (`%-15s %s`; -H: bytes).
    let info = env.ok("lxc-info", &["-n", "o1", "-S", "-H"]);
    assert!(
        info.contains(&format!("Disk use:       {}\n", upper + du_sx(&env.c("d1/rootfs")))),
        "{info}"
    );
    assert!(info.contains(&format!("Disk excl. use: {upper}\n")), "{info}");
    let info = env.ok("lxc-info", &["-n", "d1"]);
    assert!(
        info.starts_with("Name:           d1\nState:          STOPPED\nDisk use:       "),
        "{info}"
    );
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    let env = Env::new();
    env.make_container("b1");
    let before = tree(&env.area);
    for args in [
        &["du", "-n", "nope"][..],
        &["du", "-n", "../b1"],
        &["du", "-n", ""],
        &["du", "--bogus"],
        &["du", "-n", "b1", "extra"],
    ] {
        env.fails("strata", args);
    }
    assert_same_tree("strata du (bad input)", &before, &tree(&env.area));
    // A container whose rootfs went missing: the others listed, then one
    // line and exit 1.
    env.make_container("b2");
    std::fs::rename(env.c("b2/rootfs"), env.src.join("moved")).unwrap();
    let before = tree(&env.area);
    let o = env.run("strata", &["du"]);
    let e = check_failure("strata", &["du"], &o);
    assert!(e.contains("b2"), "{e}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\nb1 "),
        "the others are listed"
    );
    assert_same_tree("strata du", &before, &tree(&env.area));
}

fn qgroup(fs: &std::path::Path, path: &std::path::Path) -> (u64, u64) {
    let id = sh(&["btrfs", "inspect-internal", "rootid", path.to_str().unwrap()]);
    let id = id.trim();
    let out = sh(&["btrfs", "qgroup", "show", "--raw", fs.to_str().unwrap()]);
    let l = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&format!("0/{id}")))
        .unwrap_or_else(|| panic!("0/{id} in {out}"));
    let f: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    (f[0], f[1])
}

#[test]
fn btrfs_walks_without_quotas_and_reads_qgroups_with_them() {
    let env = Env::new();
    let _fs = LoopFs::new("btrfs", 512 << 20, Some(&env.lxcpath), "");
    let src = env.rootfs("base");
    blob(&src.join("root/blob"), 2 << 20);
    env.ok(
        "lxc-create",
        &["-n", "b1", "-B", "btrfs", "--rootfs-from", src.to_str().unwrap()],
    );
    let r = rows(&env, &[]);
    let b1 = row(&r, "b1", None);
    assert_eq!(b1["source"], "walk");
    assert_eq!(n(b1, "referenced"), du_sx(&env.c("b1/rootfs")));
    assert!(b1["exclusive"].is_null(), "{b1}");

    sh(&["btrfs", "quota", "enable", env.lxcpath.to_str().unwrap()]);
    sh(&["btrfs", "quota", "rescan", "-w", env.lxcpath.to_str().unwrap()]);
    env.ok("lxc-copy", &["-n", "b1", "-N", "b2", "-s"]);
    blob(&env.c("b2/rootfs/root/more"), 1 << 20);
    sh(&["sync"]);
    let r = rows(&env, &[]);
    for c in ["b1", "b2"] {
        let v = row(&r, c, None);
        assert_eq!(v["source"], "qgroup", "{v}");
        let (rfer, excl) = qgroup(&env.lxcpath, &env.c(c).join("rootfs"));
        assert_eq!((n(v, "referenced"), n(v, "exclusive")), (rfer, excl), "{c}");
    }
    // The clone shares the base's 2 MiB and holds its own 1 MiB.
    let b2 = row(&r, "b2", None);
    assert!(n(b2, "exclusive") >= 1 << 20 && n(b2, "exclusive") < 2 << 20, "{b2}");
    assert!(n(b2, "shared") >= 2 << 20, "{b2}");
}

fn stat_blocks(p: &std::path::Path) -> u64 {
    let o = sh(&["stat", "-c", "%b %B", p.to_str().unwrap()]);
    let v: Vec<u64> = o.split_whitespace().map(|x| x.parse().unwrap()).collect();
    v[0] * v[1]
}

#[test]
fn loop_reports_allocated_blocks_and_shared_extents() {
    let env = Env::new();
    let _fs = LoopFs::new("btrfs", 1 << 30, Some(&env.lxcpath), "");
    let src = env.rootfs("base");
    blob(&src.join("root/blob"), 3 << 20);
    env.ok(
        "lxc-create",
        &[
            "-n",
            "l1",
            "-B",
            "loop",
            "--fssize",
            "128M",
            "--rootfs-from",
            src.to_str().unwrap(),
        ],
    );
    env.ok("lxc-copy", &["-n", "l1", "-N", "l2", "-s"]);
    sh(&["sync"]);
    let r = rows(&env, &[]);
    for c in ["l1", "l2"] {
        let v = row(&r, c, None);
        let img = env.c(c).join("rootdev");
        assert_eq!(v["source"], "blocks");
        assert_eq!(n(v, "referenced"), stat_blocks(&img), "{c}");
        // btrfs's own count of the image's exclusive bytes.
        let out = sh(&["btrfs", "filesystem", "du", "--raw", "-s", img.to_str().unwrap()]);
        let f: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(n(v, "exclusive"), f[1].parse::<u64>().unwrap(), "{c}: {out}");
    }
    // A reflinked clone shares almost all of its image.
    let l2 = row(&r, "l2", None);
    assert!(n(l2, "shared") >= 3 << 20, "{l2}");
}

#[test]
fn loop_on_ext4_is_all_exclusive() {
    let env = Env::new();
    let _fs = LoopFs::new("ext4", 1 << 30, Some(&env.lxcpath), "");
    let src = env.rootfs("base");
    env.ok(
        "lxc-create",
        &[
            "-n",
            "e1",
            "-B",
            "loop",
            "--fssize",
            "64M",
            "--rootfs-from",
            src.to_str().unwrap(),
        ],
    );
    let r = rows(&env, &[]);
    let v = row(&r, "e1", None);
    let b = stat_blocks(&env.c("e1/rootdev"));
    assert_eq!((n(v, "referenced"), n(v, "exclusive"), n(v, "shared")), (b, b, 0));
}
