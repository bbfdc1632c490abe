//! `strata send --native` / `export --optimized`: btrfs send/receive
//! framed in the container stream, full and incremental, on a real btrfs
//! filesystem on a loop device. The received trees equal the sent ones
//! entry by entry, snapshots come read-only with their times and comments,
//! the container starts; another backend refuses the stream in one line;
//! a cut or killed receive leaves nothing (an incremental one leaves the
//! target as it was). Root only.

mod common;

use common::special::{diff, special_tree, view, View};
use common::stream::{archive_listing, busybox_tree, fails, ok, snapshot_listing, spawn_receive};
use common::Env;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use strata_core::Store;
use strata_testkit::LoopFs;

fn rootfs_of(env: &Env, name: &str) -> strata_core::RootfsSpec {
    Store::new(&env.lxcpath).load(name).unwrap().rootfs
}

fn snap_rootfs(env: &Env, name: &str, snap: &str) -> strata_core::RootfsSpec {
    Store::new(env.c(name).join("snaps")).load(snap).unwrap().rootfs
}

fn tree_view(spec: &strata_core::RootfsSpec) -> View {
    assert_eq!(spec.kind(), "btrfs", "{spec}");
    view(&spec.path())
}

/// The subvolumes of the filesystem, as paths relative to its top.
fn subvolumes(env: &Env) -> Vec<String> {
    let out = strata_testkit::sh(&["btrfs", "subvolume", "list", env.lxcpath.to_str().unwrap()]);
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(" path ").nth(1))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Only these containers in the lxcpath, and only their subvolumes.
fn clean(env: &Env, names: &[&str]) {
    let mut got: Vec<String> = std::fs::read_dir(&env.lxcpath)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "entries of the lxcpath");
    for s in subvolumes(env) {
        assert!(
            names.iter().any(|n| s.starts_with(&format!("{n}/"))),
            "subvolume {s} left (containers: {names:?})"
        );
    }
}

fn is_readonly(p: &Path) -> bool {
    strata_testkit::sh(&["btrfs", "property", "get", p.to_str().unwrap(), "ro"]).trim() == "ro=true"
}

fn write_in(env: &Env, name: &str, rel: &str, data: &str) {
    std::fs::write(rootfs_of(env, name).path().join(rel), data).unwrap();
}

fn starts_and_reads_hostname(env: &Env, name: &str) -> Option<String> {
    Path::new("/bin/busybox").is_file().then(|| {
        env.ok(
            "strata",
            &["execute", "-n", name, "--", "/bin/sh", "-c", "cat /etc/hostname"],
        )
    })
}

#[test]
fn native_btrfs_round_trip_full_and_incremental() {
    let env = Env::new();
    let _fs = LoopFs::new("btrfs", 3 << 30, Some(&env.lxcpath), "");
    let src = env.src.join("special");
    busybox_tree(&src);
    // Some bulk, so that an incremental stream's size means something.
    let bulk: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("var/bulk"), &bulk).unwrap();
    let conf = env.src.join("conf");
    std::fs::write(&conf, "lxc.mount.auto = proc:mixed sys:ro\nlxc.net.0.type = none\n").unwrap();
    let comment = env.src.join("comment");
    std::fs::write(&comment, "before the change\n").unwrap();
    env.ok(
        "lxc-create",
        &[
            "-n",
            "c1",
            "-B",
            "btrfs",
            "-f",
            conf.to_str().unwrap(),
            "--rootfs-from",
            src.to_str().unwrap(),
        ],
    );
    env.ok("lxc-snapshot", &["-n", "c1", "-c", comment.to_str().unwrap()]);
    write_in(&env, "c1", "etc/hostname", "changed\n");
    std::fs::remove_file(rootfs_of(&env, "c1").path().join("etc/passwd")).unwrap();

    // Full: the snapshot whole, the rootfs as its difference from it.
    let full = ok(&env, &["send", "-n", "c1", "--snapshots", "--native"], None);
    let l = archive_listing(&full);
    assert!(l.contains("snaps/snap0/rootfs.native.00000000\n"), "{l}");
    assert!(l.contains("rootfs.native-end\n"), "{l}");
    assert!(!l.contains("rootfs/etc"), "a native stream holds no tar tree:\n{l}");
    ok(&env, &["receive", "-n", "c2"], Some(&full));
    diff(
        "native receive",
        &tree_view(&rootfs_of(&env, "c1")),
        &tree_view(&rootfs_of(&env, "c2")),
    );
    diff(
        "native receive, snap0",
        &tree_view(&snap_rootfs(&env, "c1", "snap0")),
        &tree_view(&snap_rootfs(&env, "c2", "snap0")),
    );
    assert_eq!(snapshot_listing(&env, "c1"), snapshot_listing(&env, "c2"));
    assert!(is_readonly(&snap_rootfs(&env, "c2", "snap0").path()));
    assert!(!is_readonly(&rootfs_of(&env, "c2").path()));
    assert_eq!(env.config_get("c2", "lxc.uts.name").as_deref(), Some("c2"));
    if let Some(h) = starts_and_reads_hostname(&env, "c2") {
        assert_eq!(h, "changed\n");
    }

    // Another backend refuses it, naming both; nothing is made.
    for b in ["dir", "overlay", "loop"] {
        let e = fails(&env, &["receive", "-n", "c3", "-B", b], Some(&full));
        assert!(e.contains("btrfs") && e.contains(&format!("on {b}")), "{e}");
    }
    clean(&env, &["c1", "c2"]);
    // A container that cannot go native says so, before a byte is written.
    env.ok("lxc-create", &["-n", "d1", "--rootfs-from", src.to_str().unwrap()]);
    let o = env.strata_with_input(&["send", "-n", "d1", "--native"], None);
    assert!(!o.status.success() && o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no native stream"));
    env.ok("lxc-destroy", &["-n", "d1"]);
    // Nor one whose snapshot is writable (as LXC's are on btrfs): btrfs send reads read-only ones only.
    env.ok(
        "lxc-create",
        &["-n", "w1", "-B", "btrfs", "--rootfs-from", src.to_str().unwrap()],
    );
    env.ok("lxc-snapshot", &["-n", "w1"]);
    let snap = snap_rootfs(&env, "w1", "snap0").path();
    strata_testkit::sh(&["btrfs", "property", "set", "-f", snap.to_str().unwrap(), "ro", "false"]);
    let o = env.strata_with_input(&["send", "-n", "w1", "--snapshots", "--native"], None);
    assert!(!o.status.success() && o.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("writable snapshot"),
        "{o:?}"
    );
    env.ok("lxc-destroy", &["-n", "w1", "-s"]);

    // An archive: export --optimized holds the same sections, import uses them.
    let file = env.src.join("c1.tar.zst");
    ok(
        &env,
        &[
            "export",
            "-n",
            "c1",
            file.to_str().unwrap(),
            "--snapshots",
            "--optimized",
        ],
        None,
    );
    assert_eq!(archive_listing(&std::fs::read(&file).unwrap()), l);
    let e = fails(&env, &["import", file.to_str().unwrap(), "-n", "c3", "-B", "dir"], None);
    assert!(e.contains("btrfs") && e.contains("on dir"), "{e}");
    ok(&env, &["import", file.to_str().unwrap(), "-n", "c3"], None);
    diff(
        "optimized import",
        &tree_view(&rootfs_of(&env, "c1")),
        &tree_view(&rootfs_of(&env, "c3")),
    );
    env.ok("lxc-destroy", &["-n", "c3", "-s"]);

    // Incremental: a new snapshot and a small change, from snap0.
    env.ok("lxc-snapshot", &["-n", "c1"]);
    write_in(&env, "c1", "etc/hostname", "again\n");
    write_in(&env, "c1", "etc/motd", "new file\n");
    let inc = ok(
        &env,
        &["send", "-n", "c1", "--snapshots", "--native", "--from", "snap0"],
        None,
    );
    assert!(
        inc.len() * 20 < full.len(),
        "incremental {} bytes, full {}",
        inc.len(),
        full.len()
    );
    eprintln!("native stream: full {} bytes, incremental {}", full.len(), inc.len());
    for round in 0..2 {
        // Twice: the second finds snap1 there and is harmless.
        ok(&env, &["receive", "-n", "c2"], Some(&inc));
        diff(
            &format!("incremental round {round}"),
            &tree_view(&rootfs_of(&env, "c1")),
            &tree_view(&rootfs_of(&env, "c2")),
        );
        diff(
            "incremental, snap1",
            &tree_view(&snap_rootfs(&env, "c1", "snap1")),
            &tree_view(&snap_rootfs(&env, "c2", "snap1")),
        );
        assert_eq!(snapshot_listing(&env, "c1"), snapshot_listing(&env, "c2"));
    }
    if let Some(h) = starts_and_reads_hostname(&env, "c2") {
        assert_eq!(h, "again\n");
    }

    // A target whose base came by tar has no native copy of it: refused, left as it was.
    let tar_full = ok(&env, &["send", "-n", "c1", "--snapshots"], None);
    ok(&env, &["receive", "-n", "c4", "-B", "btrfs"], Some(&tar_full));
    let before = tree_view(&rootfs_of(&env, "c4"));
    let e = fails(&env, &["receive", "-n", "c4"], Some(&inc));
    assert!(e.contains("not a native copy"), "{e}");
    diff("refused refresh", &before, &tree_view(&rootfs_of(&env, "c4")));
    for c in ["c4", "c2", "c1"] {
        env.ok("lxc-destroy", &["-n", c, "-s"]);
    }
    clean(&env, &[]);
}

#[test]
fn native_receive_cut_or_killed_leaves_nothing() {
    let env = Env::new();
    let _fs = LoopFs::new("btrfs", 2 << 30, Some(&env.lxcpath), "");
    let src = env.src.join("special");
    special_tree(&src);
    let bulk: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(src.join("var/bulk"), &bulk).unwrap();
    env.ok(
        "lxc-create",
        &["-n", "c1", "-B", "btrfs", "--rootfs-from", src.to_str().unwrap()],
    );
    env.ok("lxc-snapshot", &["-n", "c1"]);
    write_in(&env, "c1", "etc/hostname", "changed\n");
    let full = ok(&env, &["send", "-n", "c1", "--snapshots", "--native"], None);
    // Cut short: one line, nothing left.
    for cut in [full.len() / 3, full.len() * 2 / 3, full.len() - 100] {
        let e = fails(&env, &["receive", "-n", "c2"], Some(&full[..cut]));
        assert!(e.contains("cut short") || e.contains("ends"), "cut at {cut}: {e}");
        clean(&env, &["c1"]);
    }
    let mut seed: u64 = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // Killed at a random moment with the whole stream fed: after
    // reconcile, either nothing or the whole container.
    let mut whole = 0;
    for i in 0..6 {
        let (mut ch, mut stdin) = spawn_receive(&env, &["-n", "c2"]);
        let data = full.clone();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        std::thread::sleep(std::time::Duration::from_millis(rnd(1500)));
        let _ = ch.kill();
        ch.wait().unwrap();
        feeder.join().unwrap();
        env.ok("strata", &["reconcile"]);
        if env.c("c2").exists() {
            whole += 1;
            diff(
                &format!("round {i}: received whole"),
                &tree_view(&rootfs_of(&env, "c1")),
                &tree_view(&rootfs_of(&env, "c2")),
            );
            env.ok("lxc-destroy", &["-n", "c2", "-s"]);
        }
        clean(&env, &["c1"]);
    }
    eprintln!("{whole} of 6 native receives finished before the kill");
    // A native send killed while it sends the rootfs (from a read-only
    // snapshot it staged): reconcile removes that snapshot.
    for ms in [150, 600] {
        let mut c = env.cmd("strata");
        c.args(["send", "-P"])
            .arg(&env.lxcpath)
            .args(["-n", "c1", "--snapshots", "--native"]);
        let mut ch = c.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut out = ch.stdout.take().unwrap();
        // Read slowly: the send blocks on a full pipe, somewhere in the stream.
        let mut buf = vec![0u8; 64 << 10];
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(ms) {
            use std::io::Read;
            if out.read(&mut buf).unwrap_or(0) == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = ch.kill();
        ch.wait().unwrap();
        drop(out);
        env.ok("strata", &["reconcile"]);
        clean(&env, &["c1"]);
    }

    // An incremental receive killed or cut: the target stays as it was.
    ok(&env, &["receive", "-n", "c2"], Some(&full));
    env.ok("lxc-snapshot", &["-n", "c1"]);
    write_in(&env, "c1", "etc/hostname", "later\n");
    std::fs::write(rootfs_of(&env, "c1").path().join("var/bulk2"), &bulk).unwrap();
    let inc = ok(&env, &["send", "-n", "c1", "--native", "--from", "snap0"], None);
    let before = tree_view(&rootfs_of(&env, "c2"));
    let e = fails(&env, &["receive", "-n", "c2"], Some(&inc[..inc.len() / 2]));
    assert!(e.contains("cut short") || e.contains("ends"), "{e}");
    diff("cut refresh", &before, &tree_view(&rootfs_of(&env, "c2")));
    clean(&env, &["c1", "c2"]);
    for _ in 0..3 {
        let (mut ch, mut stdin) = spawn_receive(&env, &["-n", "c2"]);
        let data = inc.clone();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        std::thread::sleep(std::time::Duration::from_millis(rnd(800)));
        let _ = ch.kill();
        ch.wait().unwrap();
        feeder.join().unwrap();
        env.ok("strata", &["reconcile"]);
        let now = tree_view(&rootfs_of(&env, "c2"));
        if now != before {
            diff("killed refresh: finished", &tree_view(&rootfs_of(&env, "c1")), &now);
        }
        clean(&env, &["c1", "c2"]);
    }
    ok(&env, &["receive", "-n", "c2"], Some(&inc));
    diff(
        "refresh after the kills",
        &tree_view(&rootfs_of(&env, "c1")),
        &tree_view(&rootfs_of(&env, "c2")),
    );
    env.ok("lxc-destroy", &["-n", "c2", "-s"]);
    env.ok("lxc-destroy", &["-n", "c1", "-s"]);
    clean(&env, &[]);
}
