//! Snapshots of a running container: lxc-snapshot and lxc-copy -s -a
//! freeze it (cgroup freezer) for the instant of the snapshot, say so on
//! stderr, and thaw it after; a command killed while it is frozen leaves
//! it to the next command's reconcile, which thaws it. On overlay (the
//! upper dir copied while frozen) and btrfs (a subvolume snapshot), with a
//! busybox init that writes all the time.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An init that writes a counter to /tmp/a, then to /tmp/b, without end:
/// a snapshot taken while it is frozen has b equal to a or one behind.
const WRITER: &str = "#!/bin/sh\ntrap 'exit 0' PWR\ni=0\nwhile :; do i=$((i+1)); echo $i > /tmp/a; echo $i > /tmp/b; sleep 0.005; done\n";

fn read_n(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The freezer file of the running container `name` (v1 first, as LXC on a hybrid host).
fn freezer_state(rt: &Rt, name: &str) -> String {
    let rec = rt.record(name).expect("run record");
    let cgs: Vec<PathBuf> = rec["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| PathBuf::from(v.as_str().unwrap()))
        .collect();
    for c in &cgs {
        if let Ok(s) = std::fs::read_to_string(c.join("freezer.state")) {
            return s.trim().to_string();
        }
    }
    for c in &cgs {
        if let Ok(s) = std::fs::read_to_string(c.join("cgroup.events")) {
            if s.lines().any(|l| l == "frozen 1") {
                return "FROZEN".into();
            }
            return "THAWED".into();
        }
    }
    panic!("no freezer among {cgs:?}")
}

/// Waits (bounded) until the counter under `upper` moves past `from`.
fn moves(p: &Path, from: u64) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if read_n(p) > from + 2 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Stops the container when the test ends, passed or not (thawed first: a frozen one ignores signals).
struct Stop<'a>(&'a Rt, &'a str);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        let _ = self.0.run("lxc-unfreeze", &["-n", self.1]);
        let _ = self.0.run("lxc-stop", &["-n", self.1, "-k"]);
    }
}

/// The upper dir of an overlay container or snapshot dir.
fn upper(dir: &Path) -> PathBuf {
    let cfg = std::fs::read_to_string(dir.join("config")).unwrap();
    let spec = common_value(&cfg, "lxc.rootfs.path");
    PathBuf::from(spec.rsplit(':').next().unwrap())
}

fn common_value(cfg: &str, key: &str) -> String {
    cfg.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {key} in {cfg}"))
}

fn assert_consistent(tree: &Path) {
    // `echo > file` truncates, then writes: frozen in between, one file is
    // empty (0 here), the other one complete.
    let (a, b) = (read_n(&tree.join("tmp/a")), read_n(&tree.join("tmp/b")));
    assert!(a > 0 || b > 0, "no counter in {}", tree.display());
    let ok = a == 0 || b == 0 || b == a || b + 1 == a;
    assert!(ok, "torn snapshot in {}: a={a} b={b}", tree.display());
}

fn frozen_line(stderr: &[u8], name: &str) {
    let e = String::from_utf8_lossy(stderr);
    assert!(
        e.lines().any(
            |l| l.starts_with(&format!("lxc-snapshot: {name}: running container frozen for "))
                || l.starts_with(&format!("lxc-copy: {name}: running container frozen for "))
        ),
        "no line saying it froze: {e:?}"
    );
    assert_eq!(e.lines().count(), 1, "{e:?}");
}

#[test]
fn overlay_snapshot_of_a_running_container_is_taken_frozen() {
    let rt = Rt::new();
    let base = rt.container("fzbase", "");
    std::fs::write(base.join("sbin/init"), WRITER).unwrap();
    rt.ok("lxc-copy", &["-n", "fzbase", "-N", "fzov", "-s"]);
    let up = upper(&rt.lxcpath.join("fzov"));
    rt.ok("lxc-start", &["-n", "fzov"]);
    let _stop = Stop(&rt, "fzov");
    assert!(moves(&up.join("tmp/a"), 0), "the writer does not run");

    for _ in 0..3 {
        let o = rt.run("lxc-snapshot", &["-n", "fzov"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        frozen_line(&o.stderr, "fzov");
        assert_eq!(freezer_state(&rt, "fzov"), "THAWED");
    }
    for s in ["snap0", "snap1", "snap2"] {
        assert_consistent(&upper(&rt.lxcpath.join("fzov/snaps").join(s)));
    }
    // lxc-copy -s of it needs -a, then is taken frozen too.
    let e = rt.fails("lxc-copy", &["-n", "fzov", "-N", "fzov2", "-s"]);
    assert!(e.contains("--allowrunning"), "{e}");
    let o = rt.run("lxc-copy", &["-n", "fzov", "-N", "fzov2", "-s", "-a"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    frozen_line(&o.stderr, "fzov");
    assert_consistent(&upper(&rt.lxcpath.join("fzov2")));
    // A full copy of a running one is still refused, -a or not: nothing is made.
    let e = rt.fails("lxc-copy", &["-n", "fzov", "-N", "fzov3", "-a"]);
    assert!(e.contains("stop it first"), "{e}");
    assert!(!rt.lxcpath.join("fzov3").exists());

    // Frozen by the user: snapshotted as it is, and left frozen.
    rt.ok("lxc-freeze", &["-n", "fzov"]);
    let o = rt.run("lxc-snapshot", &["-n", "fzov"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(freezer_state(&rt, "fzov"), "FROZEN");
    rt.ok("lxc-unfreeze", &["-n", "fzov"]);

    // Killed while it is frozen: the container stays frozen until the next
    // command, whose reconcile thaws it; the half-made snapshot goes.
    let o = rt
        .cmd("lxc-snapshot", &["-n", "fzov"])
        .env("STRATA_FAILPOINT", "frozen")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(99), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(freezer_state(&rt, "fzov"), "FROZEN");
    let at = read_n(&up.join("tmp/a"));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(read_n(&up.join("tmp/a")), at, "the writer ran while frozen");
    rt.ok("lxc-ls", &[]);
    assert_eq!(freezer_state(&rt, "fzov"), "THAWED");
    assert!(moves(&up.join("tmp/a"), at), "the writer did not run again");
    assert_eq!(
        std::fs::read_dir(rt.run_dir.join("frozen")).unwrap().count(),
        0,
        "freeze records left"
    );
    let list = rt.ok("lxc-snapshot", &["-n", "fzov", "-L"]);
    assert_eq!(list.lines().count(), 4, "{list}");

    rt.ok("lxc-stop", &["-n", "fzov", "-k"]);
    rt.ok("lxc-destroy", &["-n", "fzov2"]);
    rt.ok("lxc-destroy", &["-n", "fzov", "-s"]);
    rt.ok("lxc-destroy", &["-n", "fzbase"]);
    rt.assert_clean(&[]);
}

#[test]
fn btrfs_snapshot_of_a_running_container_is_taken_frozen() {
    if std::process::Command::new("mkfs.btrfs")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no mkfs.btrfs");
        return;
    }
    let rt = Rt::on_fs("btrfs");
    let src = rt.outside.join("tree");
    make_rootfs(&src);
    std::fs::write(src.join("sbin/init"), WRITER).unwrap();
    rt.ok(
        "lxc-create",
        &["-n", "fzbt", "-B", "btrfs", "--rootfs-from", src.to_str().unwrap()],
    );
    let cfg = rt.lxcpath.join("fzbt/config");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap() + "lxc.mount.auto = proc:mixed sys:ro\n",
    )
    .unwrap();
    let rootfs = rt.lxcpath.join("fzbt/rootfs");
    rt.ok("lxc-start", &["-n", "fzbt"]);
    let _stop = Stop(&rt, "fzbt");
    assert!(moves(&rootfs.join("tmp/a"), 0), "the writer does not run");
    for _ in 0..3 {
        let o = rt.run("lxc-snapshot", &["-n", "fzbt"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        frozen_line(&o.stderr, "fzbt");
        assert_eq!(freezer_state(&rt, "fzbt"), "THAWED");
    }
    for s in ["snap0", "snap1", "snap2"] {
        assert_consistent(&rt.lxcpath.join("fzbt/snaps").join(s).join("rootfs"));
    }
    let o = rt.run("lxc-copy", &["-n", "fzbt", "-N", "fzbt2", "-s", "-a"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    frozen_line(&o.stderr, "fzbt");
    assert_consistent(&rt.lxcpath.join("fzbt2/rootfs"));

    // Killed while frozen: thawed by the next command.
    let o = rt
        .cmd("lxc-copy", &["-n", "fzbt", "-N", "fzbt3", "-s", "-a"])
        .env("STRATA_FAILPOINT", "frozen")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(99), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(freezer_state(&rt, "fzbt"), "FROZEN");
    rt.ok("lxc-ls", &[]);
    assert_eq!(freezer_state(&rt, "fzbt"), "THAWED");
    assert!(!rt.lxcpath.join("fzbt3").exists());
    assert!(moves(&rootfs.join("tmp/a"), read_n(&rootfs.join("tmp/a"))));

    rt.ok("lxc-stop", &["-n", "fzbt", "-k"]);
    rt.ok("lxc-destroy", &["-n", "fzbt2"]);
    rt.ok("lxc-destroy", &["-n", "fzbt", "-s"]);
    rt.assert_clean(&[]);
}
