//! Snapshot retention with a fixed clock (`STRATA_TEST_NOW`):
//! `lxc-snapshot --expire`, `strata snapshot prune` (never a snapshot a
//! clone depends on) and `strata snapshot auto` from a container's
//! `strata.conf` schedule.

mod common;
use common::*;
use std::process::Output;

const T0: i64 = 1_700_000_000;
const H: i64 = 3600;
const D: i64 = 86400;

fn at(env: &Env, now: i64, tool: &str, args: &[&str]) -> Output {
    let mut c = env.cmd(tool);
    c.env("STRATA_TEST_NOW", now.to_string()).env("TZ", "UTC");
    if tool == "strata" {
        c.arg(args[0]);
        let mut rest = 1;
        if matches!(args.get(1), Some(&"prune") | Some(&"auto")) {
            c.arg(args[1]);
            rest = 2;
        }
        c.arg("-P").arg(&env.lxcpath).args(&args[rest..]);
    } else {
        c.arg("-P").arg(&env.lxcpath).args(args);
    }
    c.output().unwrap()
}

fn ok_at(env: &Env, now: i64, tool: &str, args: &[&str]) -> String {
    let o = at(env, now, tool, args);
    assert!(
        o.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn snaps(env: &Env, c: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.c(c).join("snaps"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn expire_and_prune_with_a_fixed_clock() {
    let env = Env::new();
    env.make_container("r1");
    ok_at(&env, T0, "lxc-snapshot", &["-n", "r1", "--expire", "7d"]);
    ok_at(&env, T0, "lxc-snapshot", &["-n", "r1"]);
    let s0 = env.c("r1/snaps/snap0");
    assert_eq!(
        std::fs::read_to_string(s0.join("expire")).unwrap(),
        format!("{}\n", T0 + 7 * D)
    );
    // ts from the same clock, in LXC's form.
    assert_eq!(std::fs::read_to_string(s0.join("ts")).unwrap(), "2023:11:14 22:13:20");
    assert!(!env.c("r1/snaps/snap1/expire").exists());

    // Not yet expired: nothing pruned.
    assert_eq!(ok_at(&env, T0 + 7 * D - 1, "strata", &["snapshot", "prune"]), "");
    assert_eq!(snaps(&env, "r1"), ["snap0", "snap1"]);
    // Expired: removed; the one without expiry stays.
    assert_eq!(
        ok_at(&env, T0 + 7 * D, "strata", &["snapshot", "prune", "-n", "r1"]),
        "pruned r1/snap0\n"
    );
    assert_eq!(snaps(&env, "r1"), ["snap1"]);

    // A clone made from an expiring snapshot keeps it.
    ok_at(&env, T0, "lxc-snapshot", &["-n", "r1", "--expire", "1h"]);
    let snaps_lp = env.c("r1/snaps");
    let o = env
        .cmd("lxc-copy")
        .args(["-P", snaps_lp.to_str().unwrap(), "-n", "snap0", "-N", "k1", "-s", "-p"])
        .arg(&env.lxcpath)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = ok_at(&env, T0 + 2 * H, "strata", &["snapshot", "prune"]);
    assert!(out.starts_with("r1/snap0: expired, kept: clones depend on it"), "{out}");
    assert_eq!(snaps(&env, "r1"), ["snap0", "snap1"]);
    env.ok("lxc-destroy", &["-n", "k1"]);
    assert_eq!(
        ok_at(&env, T0 + 2 * H, "strata", &["snapshot", "prune"]),
        "pruned r1/snap0\n"
    );
}

#[test]
fn bad_input_changes_nothing() {
    let env = Env::new();
    env.make_container("b1");
    ok_at(&env, T0, "lxc-snapshot", &["-n", "b1", "--expire", "1d"]);
    std::fs::write(env.c("b1/strata.conf"), "lxc.snapshot.schedule = sometimes\n").unwrap();
    let before = tree(&env.area);
    for (tool, args) in [
        ("lxc-snapshot", &["-n", "b1", "--expire", "soon"][..]),
        ("lxc-snapshot", &["-n", "b1", "--expire", "0d"]),
        ("lxc-snapshot", &["-n", "b1", "--expire", "1d", "-L"]),
        ("lxc-snapshot", &["-n", "b1", "--expire", "1d", "-d", "snap0"]),
        ("strata", &["snapshot", "prune", "-n", "nope"]),
        ("strata", &["snapshot", "prune", "--bogus"]),
        ("strata", &["snapshot", "auto", "-n", "b1"]),
        ("strata", &["snapshot", "auto", "-n", "../b1"]),
    ] {
        let o = at(&env, T0 + 30 * D, tool, args);
        check_failure(tool, args, &o);
    }
    assert_same_tree("refused retention commands", &before, &tree(&env.area));
    // A key of LXC's in strata.conf: refused by name, nothing done.
    std::fs::write(
        env.c("b1/strata.conf"),
        "lxc.snapshot.schedule = daily\nlxc.rootfs.path = /x\n",
    )
    .unwrap();
    let before = tree(&env.area);
    let e = check_failure("strata", &[], &at(&env, T0 + 30 * D, "strata", &["snapshot", "auto"]));
    assert!(
        e.contains("unknown key lxc.rootfs.path") && e.contains("strata.conf"),
        "{e}"
    );
    assert_same_tree("refused schedule", &before, &tree(&env.area));
}

#[test]
fn auto_snapshots_on_schedule_and_prunes() {
    let env = Env::new();
    env.make_container("a1");
    env.make_container("plain");
    std::fs::write(
        env.c("a1/strata.conf"),
        "# strata's own keys\nlxc.snapshot.schedule = daily\nlxc.snapshot.expire = 2d\n",
    )
    .unwrap();
    assert_eq!(ok_at(&env, T0, "strata", &["snapshot", "auto"]), "snapshot a1/snap0\n");
    assert_eq!(ok_at(&env, T0 + H, "strata", &["snapshot", "auto"]), "");
    assert_eq!(
        ok_at(&env, T0 + 25 * H, "strata", &["snapshot", "auto"]),
        "snapshot a1/snap1\n"
    );
    assert_eq!(
        std::fs::read_to_string(env.c("a1/snaps/snap1/comment")).unwrap(),
        "strata snapshot auto\n"
    );
    // At T0+50h snap0 (expired at T0+48h) goes, snap1 (T0+73h) stays.
    assert_eq!(
        ok_at(&env, T0 + 50 * H, "strata", &["snapshot", "auto"]),
        "snapshot a1/snap0\npruned a1/snap0\n".replace("snapshot a1/snap0\n", "snapshot a1/snap2\n")
    );
    assert_eq!(snaps(&env, "a1"), ["snap1", "snap2"]);
    assert!(snaps(&env, "plain").is_empty(), "no schedule, no snapshot");
    // In the container's config the key is refused, as LXC refuses it,
    // pointing to strata.conf; the config is left as it was.
    let cfg = env.src.join("with-schedule.conf");
    std::fs::write(&cfg, "lxc.snapshot.schedule = daily\n").unwrap();
    let e = env.fails("lxc-create", &["-n", "a2", "-f", cfg.to_str().unwrap(), "-t", "none"]);
    assert!(e.contains("lxc.snapshot.schedule") && e.contains("strata.conf"), "{e}");
    assert!(!env.c("a2").exists());
}

#[test]
fn copy_and_send_carry_the_schedule_and_the_expiry() {
    let env = Env::new();
    env.make_container("k1");
    let conf = "lxc.snapshot.schedule = daily\nlxc.snapshot.expire = 2d\n";
    std::fs::write(env.c("k1/strata.conf"), conf).unwrap();
    ok_at(&env, T0, "lxc-snapshot", &["-n", "k1", "--expire", "7d"]);
    // A copy keeps the schedule (not the snapshots); the snapshot took none.
    ok_at(&env, T0, "lxc-copy", &["-n", "k1", "-N", "k2"]);
    assert_eq!(std::fs::read_to_string(env.c("k2/strata.conf")).unwrap(), conf);
    assert!(!env.c("k1/snaps/snap0/strata.conf").exists());
    // send | receive carries both.
    let stream = env.c("k1.stream");
    let o = at(&env, T0, "strata", &["send", "-n", "k1", "--snapshots"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(&stream, &o.stdout).unwrap();
    let o = env
        .cmd("strata")
        .args(["receive", "-P"])
        .arg(&env.lxcpath)
        .args(["-n", "k3"])
        .stdin(std::fs::File::open(&stream).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(env.c("k3/strata.conf")).unwrap(), conf);
    assert_eq!(
        std::fs::read_to_string(env.c("k3/snaps/snap0/expire")).unwrap(),
        format!("{}\n", T0 + 7 * D)
    );
    // And prune sees it: expired after 7 days there too.
    ok_at(&env, T0 + 8 * D, "strata", &["snapshot", "prune", "-n", "k3"]);
    assert!(snaps(&env, "k3").is_empty());
    std::fs::remove_file(&stream).unwrap();
}
