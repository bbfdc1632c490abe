//! `strata send --from SNAP | strata receive`: an incremental refresh of a
//! container the receiver has from an earlier send. What a user checks: the
//! trees equal afterwards, the stream carries only what changed (its size),
//! the same stream received twice is harmless, snapshots only the target
//! has are kept and named, a diverged snapshot is refused, and a receive
//! killed anywhere leaves the target as it was.
//! Root only: the lxcpath is a real btrfs filesystem on a loop device.

mod common;

use common::special::{diff, set_mtime, setxattr, special_tree, view, View};
use common::stream::{fails, snapshot_listing, spawn_receive};
use common::Env;
use std::io::Write;
use std::path::Path;
use strata_core::{Backend, Opened, Store};
use strata_testkit::LoopFs;

fn backend(kind: &str) -> std::sync::Arc<dyn Backend> {
    match kind {
        "dir" => strata_dir::backend(),
        "overlay" => strata_overlay::backend(),
        "btrfs" => strata_btrfs::backend(),
        "loop" => strata_loop::backend(),
        k => panic!("{k}"),
    }
}

fn spec_view(spec: &strata_core::RootfsSpec) -> View {
    let b = backend(spec.kind());
    let o = Opened::open(b.as_ref(), spec, true).unwrap();
    let v = view(o.path());
    o.close().unwrap();
    v
}

fn rootfs_view(env: &Env, name: &str) -> View {
    spec_view(&Store::new(&env.lxcpath).load(name).unwrap().rootfs)
}

fn snap_view(env: &Env, name: &str, snap: &str) -> View {
    spec_view(&Store::new(env.c(name).join("snaps")).load(snap).unwrap().rootfs)
}

/// Change the container's rootfs in place.
fn modify(env: &Env, name: &str, f: impl FnOnce(&Path)) {
    let spec = Store::new(&env.lxcpath).load(name).unwrap().rootfs;
    let b = backend(spec.kind());
    let o = Opened::open(b.as_ref(), &spec, false).unwrap();
    f(o.path());
    o.close().unwrap();
}

fn ok(env: &Env, args: &[&str], input: Option<&[u8]>) -> (Vec<u8>, String) {
    let o = env.strata_with_input(args, input);
    assert!(
        o.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (o.stdout, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A fresh lxcpath on a `fs` filesystem of `size` bytes holding c1 (a dir
/// container of the source tree) with one snapshot, and c1's stream with it.
fn c1_with_snapshot(fs: &str, size: u64) -> (Env, LoopFs, Vec<u8>) {
    let env = Env::new();
    let lfs = LoopFs::new(fs, size, Some(&env.lxcpath), "");
    let src = env.src.join("tree");
    source_tree(&src);
    env.ok("lxc-create", &["-n", "c1", "--rootfs-from", src.to_str().unwrap()]);
    env.ok("lxc-snapshot", &["-n", "c1"]);
    let (full, _) = ok(&env, &["send", "-n", "c1", "--snapshots"], None);
    (env, lfs, full)
}

/// Incompressible data (xorshift), so that stream sizes mean file sizes.
fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn source_tree(src: &Path) {
    special_tree(src);
    std::fs::create_dir_all(src.join("usr/lib")).unwrap();
    for i in 0..8 {
        std::fs::write(src.join(format!("usr/lib/big{i}")), noise(1 << 20, 7 + i)).unwrap();
    }
    std::fs::write(src.join("usr/lib/small"), noise(16 << 10, 3)).unwrap();
    std::fs::create_dir_all(src.join("srv/gone/below")).unwrap();
    std::fs::write(src.join("srv/gone/below/f"), "x").unwrap();
    std::fs::create_dir_all(src.join("srv/becomes-file")).unwrap();
    std::fs::write(src.join("srv/becomes-file/f"), "y").unwrap();
    std::fs::write(src.join("srv/becomes-dir"), "z").unwrap();
    std::fs::create_dir_all(src.join("srv/acl")).unwrap();
    std::process::Command::new("setfacl")
        .args(["-m", "u:4321:rwx"])
        .arg(src.join("srv/acl"))
        .status()
        .unwrap();
}

/// Small changes of every kind: content, a new file, removals, a dir
/// replaced by a file and back, an ACL dropped, an xattr, a mode, an owner.
fn small_change(r: &Path, round: u32) {
    std::fs::write(r.join("etc/hostname"), format!("changed {round}\n")).unwrap();
    std::fs::write(r.join(format!("etc/new-{round}")), "new file").unwrap();
    let big = r.join("usr/lib/small");
    let mut d = std::fs::read(&big).unwrap();
    d[1000] ^= 0xff;
    std::fs::write(&big, d).unwrap();
    if round == 1 {
        std::fs::remove_dir_all(r.join("srv/gone")).unwrap();
        std::fs::remove_file(r.join("etc/passwd")).unwrap();
        std::fs::remove_dir_all(r.join("srv/becomes-file")).unwrap();
        std::fs::write(r.join("srv/becomes-file"), "now a file").unwrap();
        std::fs::remove_file(r.join("srv/becomes-dir")).unwrap();
        std::fs::create_dir(r.join("srv/becomes-dir")).unwrap();
        std::fs::write(r.join("srv/becomes-dir/inside"), "inside").unwrap();
        std::process::Command::new("setfacl")
            .arg("-b")
            .arg(r.join("srv/acl"))
            .status()
            .unwrap();
    }
    setxattr(&r.join("home/user/x"), "user.note", format!("round {round}").as_bytes());
    std::os::unix::fs::chown(r.join("etc/odd"), Some(round + 10), None).unwrap();
    // Same size and content, a new mtime: sent again (the quick check sees it).
    set_mtime(&r.join("empty"), 1_600_000_000 + round as i64, 0);
}

#[test]
fn incremental_refresh_sends_only_changes_keeps_target_snapshots_and_can_repeat() {
    let env = Env::new();
    let _fs = LoopFs::new("btrfs", 6 << 30, Some(&env.lxcpath), "");
    let src = env.src.join("tree");
    source_tree(&src);
    for s in ["dir", "btrfs"] {
        let name = format!("src-{s}");
        env.ok(
            "lxc-create",
            &["-n", &name, "-B", s, "--rootfs-from", src.to_str().unwrap()],
        );
        env.ok("lxc-snapshot", &["-n", &name]);
        let (full, _) = ok(&env, &["send", "-n", &name, "--snapshots"], None);
        for t in ["dir", "btrfs", "loop"] {
            let got = format!("{s}-to-{t}");
            let mut args = vec!["receive", "-n", got.as_str(), "-B", t];
            if t == "loop" {
                args.extend(["--fssize", "512M"]);
            }
            ok(&env, &args, Some(&full));
        }
        // The source moves on; each target also takes a snapshot of its own.
        modify(&env, &name, |r| small_change(r, 1));
        for t in ["dir", "btrfs", "loop"] {
            let got = format!("{s}-to-{t}");
            modify(&env, &got, |r| {
                std::fs::write(r.join("local-change"), "target only").unwrap()
            });
            env.ok("lxc-snapshot", &["-n", &got]);
        }
        let (delta, _) = ok(&env, &["send", "-n", &name, "--from", "snap0"], None);
        assert!(
            delta.len() * 20 < full.len(),
            "{s}: incremental stream {} bytes, full {} bytes",
            delta.len(),
            full.len()
        );
        let want = rootfs_view(&env, &name);
        for t in ["dir", "btrfs", "loop"] {
            let got = format!("{s}-to-{t}");
            let before_snaps = snapshot_listing(&env, &got);
            let snap1 = snap_view(&env, &got, "snap1");
            let (_, err) = ok(&env, &["receive", "-n", &got], Some(&delta));
            assert!(
                err.contains("kept snapshots the sender does not have: snap1"),
                "{got}: {err}"
            );
            diff(&format!("{got} after refresh"), &want, &rootfs_view(&env, &got));
            assert_eq!(Store::new(&env.lxcpath).load(&got).unwrap().rootfs.kind(), t);
            // The target's own snapshot is kept as it was.
            assert_eq!(snapshot_listing(&env, &got), before_snaps, "{got}");
            diff(&format!("{got} snap1 kept"), &snap1, &snap_view(&env, &got, "snap1"));
            // Twice: harmless, same result.
            ok(&env, &["receive", "-n", &got], Some(&delta));
            diff(
                &format!("{got} after a second refresh"),
                &want,
                &rootfs_view(&env, &got),
            );
            assert_eq!(snapshot_listing(&env, &got), before_snaps, "{got}");
            let cfg = env.config(&got);
            assert!(!cfg.contains(&format!("/{name}/")), "{cfg}");
            assert_eq!(env.config_get(&got, "lxc.uts.name").as_deref(), Some(got.as_str()));
        }
        // With --snapshots the sender's snap1 would replace the targets' own
        // snap1: refused, naming it, the target left as it was.
        env.ok("lxc-snapshot", &["-n", &name]);
        let (delta2, _) = ok(&env, &["send", "-n", &name, "--from", "snap0", "--snapshots"], None);
        let got = format!("{s}-to-dir");
        let before = (rootfs_view(&env, &got), snapshot_listing(&env, &got), env.config(&got));
        let e = fails(&env, &["receive", "-n", &got], Some(&delta2));
        assert!(e.contains("snapshot snap1") && e.contains("diverged"), "{e}");
        assert_eq!(
            before,
            (rootfs_view(&env, &got), snapshot_listing(&env, &got), env.config(&got))
        );
        for t in ["dir", "btrfs", "loop"] {
            env.ok("lxc-destroy", &["-n", &format!("{s}-to-{t}"), "-s"]);
        }
        env.ok("lxc-destroy", &["-n", &name, "-s"]);
    }
    strata_testkit::no_leak(&env.lxcpath);
}

/// Into overlay: the refreshed container is an overlay on the base
/// snapshot's tree (as a restore makes it), refreshed again as often as
/// wanted; a snapshot of this side that is an overlay on the container's
/// own rootfs dir (which a refresh replaces) makes it refuse, naming it.
#[test]
fn incremental_receive_into_overlay() {
    let (env, _fs, full) = c1_with_snapshot("ext4", 1 << 30);
    for t in ["o1", "o2"] {
        ok(&env, &["receive", "-n", t, "-B", "overlay"], Some(&full));
    }
    // o2 takes a snapshot of its own: an overlay on o2's rootfs dir.
    env.ok("lxc-snapshot", &["-n", "o2"]);
    modify(&env, "c1", |r| small_change(r, 1));
    let (delta, _) = ok(&env, &["send", "-n", "c1", "--from", "snap0"], None);
    let before = (rootfs_view(&env, "o2"), snapshot_listing(&env, "o2"), env.config("o2"));
    let e = fails(&env, &["receive", "-n", "o2"], Some(&delta));
    assert!(e.contains("snapshot snap1 of o2 is an overlay on its rootfs"), "{e}");
    assert_eq!(
        before,
        (rootfs_view(&env, "o2"), snapshot_listing(&env, "o2"), env.config("o2"))
    );
    let want = rootfs_view(&env, "c1");
    for round in 0..2 {
        ok(&env, &["receive", "-n", "o1"], Some(&delta));
        diff(&format!("o1 round {round}"), &want, &rootfs_view(&env, "o1"));
        assert_eq!(Store::new(&env.lxcpath).load("o1").unwrap().rootfs.kind(), "overlay");
    }
    // A snapshot taken now is an overlay on snap0's tree; the next refresh keeps it whole.
    env.ok("lxc-snapshot", &["-n", "o1"]);
    let s1 = snap_view(&env, "o1", "snap1");
    modify(&env, "c1", |r| small_change(r, 2));
    let (delta, _) = ok(&env, &["send", "-n", "c1", "--from", "snap0"], None);
    ok(&env, &["receive", "-n", "o1"], Some(&delta));
    diff(
        "o1 after a third refresh",
        &rootfs_view(&env, "c1"),
        &rootfs_view(&env, "o1"),
    );
    diff("o1 snap1 kept", &s1, &snap_view(&env, "o1", "snap1"));
    for c in ["o1", "o2", "c1"] {
        env.ok("lxc-destroy", &["-n", c, "-s"]);
    }
    strata_testkit::no_leak(&env.lxcpath);
}

#[test]
fn incremental_with_snapshots_carries_the_chain() {
    let env = Env::new();
    let _fs = LoopFs::new("btrfs", 4 << 30, Some(&env.lxcpath), "");
    let src = env.src.join("tree");
    source_tree(&src);
    for s in ["dir", "btrfs"] {
        let name = format!("c-{s}");
        env.ok(
            "lxc-create",
            &["-n", &name, "-B", s, "--rootfs-from", src.to_str().unwrap()],
        );
        env.ok("lxc-snapshot", &["-n", &name]);
        let (full, _) = ok(&env, &["send", "-n", &name, "--snapshots"], None);
        let got = format!("{s}-copy");
        ok(&env, &["receive", "-n", &got, "-B", s], Some(&full));
        let mut from = "snap0".to_string();
        for round in 1..=2u32 {
            modify(&env, &name, |r| small_change(r, round));
            env.ok("lxc-snapshot", &["-n", &name]);
            modify(&env, &name, |r| {
                std::fs::write(r.join("after-snap"), format!("{round}")).unwrap()
            });
            let (delta, _) = ok(&env, &["send", "-n", &name, "--from", &from, "--snapshots"], None);
            assert!(delta.len() * 20 < full.len(), "{} vs {}", delta.len(), full.len());
            ok(&env, &["receive", "-n", &got], Some(&delta));
            ok(&env, &["receive", "-n", &got], Some(&delta));
            diff(
                &format!("{got} round {round}"),
                &rootfs_view(&env, &name),
                &rootfs_view(&env, &got),
            );
            let snap = format!("snap{round}");
            diff(
                &format!("{got} {snap}"),
                &snap_view(&env, &name, &snap),
                &snap_view(&env, &got, &snap),
            );
            assert_eq!(snapshot_listing(&env, &name), snapshot_listing(&env, &got));
            from = snap;
        }
        // A base the target lacks, or one taken at another time: refused.
        let e = fails(
            &env,
            &["receive", "-n", "nothere"],
            Some(&ok(&env, &["send", "-n", &name, "--from", "snap1"], None).0),
        );
        assert!(
            e.contains("does not exist here") && e.contains("send it in full"),
            "{e}"
        );
        let e = fails(&env, &["send", "-n", &name, "--from", "snap9"], None);
        assert!(e.contains("no snapshot snap9"), "{e}");
        env.ok("lxc-destroy", &["-n", &got, "-s"]);
        env.ok("lxc-destroy", &["-n", &name, "-s"]);
    }
    strata_testkit::no_leak(&env.lxcpath);
}

/// Inode number and link count of `p`.
fn ino(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.ino(), m.nlink())
}

/// Regular files below `root` with more links than the tree itself holds
/// (a link left into another tree).
fn links_out(root: &Path) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut seen: std::collections::HashMap<u64, (u64, Vec<std::path::PathBuf>)> = Default::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                let x = seen.entry(m.ino()).or_insert((m.nlink(), vec![]));
                x.1.push(p);
            }
        }
    }
    seen.into_values()
        .filter(|(n, ps)| *n as usize > ps.len())
        .flat_map(|(_, ps)| ps)
        .collect()
}

/// On a filesystem without reflinks (ext4), an incremental receive into a
/// dir container does not copy the base: the files this side has
/// unchanged are taken over (same inode), a file this side changed comes
/// back from the base, and the result shares nothing with the snapshots.
#[test]
fn incremental_receive_into_dir_takes_unchanged_files_over() {
    let (env, _fs, full) = c1_with_snapshot("ext4", 1 << 30);
    ok(&env, &["receive", "-n", "c2"], Some(&full));
    ok(&env, &["receive", "-n", "c3", "--map", "b 0 200000 65536"], Some(&full));
    modify(&env, "c1", |r| small_change(r, 1));
    let (delta, _) = ok(&env, &["send", "-n", "c1", "--from", "snap0"], None);
    let want = rootfs_view(&env, "c1");
    for t in ["c2", "c3"] {
        let r = env.c(t).join("rootfs");
        let kept = ino(&r.join("usr/lib/big0"));
        // This side's own edit of a base file: same size, another mtime.
        std::fs::write(r.join("usr/lib/big1"), noise(1 << 20, 1234)).unwrap();
        ok(&env, &["receive", "-n", t], Some(&delta));
        let got = rootfs_view(&env, t);
        if t == "c2" {
            diff("c2 after refresh", &want, &got);
        } else {
            // Received into a map: the same tree, its owners shifted.
            for (p, e) in &want.entries {
                let g = &got.entries[p];
                assert_eq!((g.uid, g.gid), (e.uid + 200000, e.gid + 200000), "c3: {}", p.display());
                assert_eq!(
                    (g.mode, g.hash, g.mtime),
                    (e.mode, e.hash, e.mtime),
                    "c3: {}",
                    p.display()
                );
            }
            assert_eq!(want.entries.len(), got.entries.len());
        }
        assert_eq!(
            std::fs::read(r.join("usr/lib/big1")).unwrap(),
            std::fs::read(env.c("c1").join("rootfs").join("usr/lib/big1")).unwrap()
        );
        // Taken over, not copied; and linked to nothing outside the rootfs now.
        assert_eq!(ino(&r.join("usr/lib/big0")), kept, "{t}");
        assert_eq!(links_out(&r), Vec::<std::path::PathBuf>::new(), "{t}");
        // A write into the container's file leaves its snapshot as it was.
        let snap = snap_view(&env, t, "snap0");
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(r.join("usr/lib/big0"))
                .unwrap();
            f.write_all_at(b"written in place", 0).unwrap();
        }
        diff(&format!("{t} snap0 after a write"), &snap, &snap_view(&env, t, "snap0"));
    }
    for c in ["c1", "c2", "c3"] {
        env.ok("lxc-destroy", &["-n", c, "-s"]);
    }
    strata_testkit::no_leak(&env.lxcpath);
}

#[test]
fn incremental_receive_killed_anywhere_leaves_the_target_as_it_was() {
    killed_refresh("btrfs", "btrfs");
}

/// Into dir on ext4, where the new rootfs takes the old one's files by hardlink.
#[test]
fn incremental_receive_into_dir_killed_anywhere_leaves_the_target_as_it_was() {
    killed_refresh("ext4", "dir");
}

fn killed_refresh(fs: &str, target: &str) {
    let (env, _fs, full) = c1_with_snapshot(fs, 2 << 30);
    ok(&env, &["receive", "-n", "c2", "-B", target], Some(&full));
    modify(&env, "c1", |r| {
        small_change(r, 1);
        std::fs::write(r.join("usr/lib/new-big"), noise(4 << 20, 99)).unwrap();
    });
    let (delta, _) = ok(&env, &["send", "-n", "c1", "--from", "snap0"], None);
    let before = (rootfs_view(&env, "c2"), snapshot_listing(&env, "c2"), env.config("c2"));
    let after = rootfs_view(&env, "c1");
    let mut seed: u64 = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut whole = 0;
    for i in 0..8 {
        let (mut ch, mut stdin) = spawn_receive(&env, &["-n", "c2"]);
        // Half the rounds fed a random part, half the whole stream; killed at a random moment.
        let data = if i % 2 == 0 {
            delta[..1 + rnd(delta.len() as u64 - 1) as usize].to_vec()
        } else {
            delta.clone()
        };
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
            // Held open (not EOF) until the kill, bounded by it.
            stdin
        });
        std::thread::sleep(std::time::Duration::from_millis(rnd(400)));
        let _ = ch.kill();
        ch.wait().unwrap();
        drop(feeder.join().unwrap());
        env.ok("strata", &["reconcile"]);
        let now = (rootfs_view(&env, "c2"), snapshot_listing(&env, "c2"), env.config("c2"));
        let spec = Store::new(&env.lxcpath).load("c2").unwrap().rootfs;
        if target == "dir" {
            assert_eq!(links_out(&spec.path()), Vec::<std::path::PathBuf>::new(), "round {i}");
        }
        if now.0 == after {
            whole += 1;
            // Finished before the kill: back to the old state for the next round.
            ok(&env, &["receive", "-n", "c2"], Some(&delta));
        } else {
            assert!(now == before, "round {i}: the target changed after a killed receive");
        }
        let left: Vec<String> = std::fs::read_dir(&env.lxcpath)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "round {i}: left {left:?}");
        if whole > 0 {
            break;
        }
    }
    eprintln!("{whole} receives finished before the kill");
    ok(&env, &["receive", "-n", "c2"], Some(&delta));
    diff("after the kills", &after, &rootfs_view(&env, "c2"));
    env.ok("lxc-destroy", &["-n", "c2", "-s"]);
    env.ok("lxc-destroy", &["-n", "c1", "-s"]);
    strata_testkit::no_leak(&env.lxcpath);
}

#[test]
fn progress_as_json_lines() {
    let env = Env::new();
    let _fs = LoopFs::new("btrfs", 1 << 30, Some(&env.lxcpath), "");
    let src = env.src.join("tree");
    source_tree(&src);
    env.ok("lxc-create", &["-n", "c1", "--rootfs-from", src.to_str().unwrap()]);
    let (stream, err) = ok(&env, &["send", "-n", "c1", "--json"], None);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let last = lines.last().expect("a progress line");
    assert_eq!(last["op"], "send");
    assert_eq!(last["done"], true);
    assert!(last["bytes"].as_u64().unwrap() >= 8 << 20, "{last}");
    assert_eq!(last["bytes"], last["total_bytes"], "{last}");
    assert_eq!(last["entries"], last["total_entries"], "{last}");
    let (_, err) = ok(&env, &["receive", "-n", "c2", "--json"], Some(&stream));
    let last: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(last["op"], "receive");
    assert_eq!(last["done"], true);
    assert!(last["bytes"].as_u64().unwrap() >= 8 << 20, "{last}");
    // A sparse file counts its size, holes included, as the sender's totals do.
    assert_eq!(last["bytes"], last["total_bytes"], "{last}");
    assert_eq!(last["entries"], last["total_entries"], "{last}");
    // Without --json and with stderr not a terminal: nothing.
    let (_, err) = ok(&env, &["send", "-n", "c1"], None);
    assert!(err.is_empty(), "{err}");
    env.ok("lxc-destroy", &["-n", "c2"]);
    env.ok("lxc-destroy", &["-n", "c1"]);
    strata_testkit::no_leak(&env.lxcpath);
}

/// On a terminal (stderr a pty, through script(1)), send and receive draw a bar: bytes and their total, entries, the rate and the
/// ETA while the stream flows (each held back by a slow pipe, so that the
/// bar is drawn a few times), then one summary line.
#[test]
fn progress_bar_on_a_terminal() {
    let env = Env::new();
    let _fs = LoopFs::new("btrfs", 1 << 30, Some(&env.lxcpath), "");
    let src = env.src.join("tree");
    source_tree(&src);
    env.ok("lxc-create", &["-n", "c1", "--rootfs-from", src.to_str().unwrap()]);
    let (s, lp) = (env!("CARGO_BIN_EXE_strata"), env.lxcpath.display());
    let stream = env.src.join("c1.stream");
    let st = stream.display();
    // What a terminal shows for `cmd` (stderr and stdout on a pty), escapes taken out.
    let on_tty = |cmd: &str| -> String {
        let o = std::process::Command::new("script")
            .args(["-qefc", cmd, "/dev/null"])
            .env("LXC_GLOBAL_CONF", &env.conf)
            .env("STRATA_RUN_DIR", &env.run_dir)
            .env("STRATA_TEMPLATE_DIR", &env.templates)
            .env("TERM", "xterm")
            .env("COLUMNS", "120")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "{cmd}: {out}");
        let mut plain = String::new();
        let mut esc = false;
        for c in out.chars() {
            match (esc, c) {
                (false, '\x1b') => esc = true,
                (true, c) if c.is_ascii_alphabetic() => esc = false,
                (true, _) => {}
                (false, '\r') => plain.push('\n'),
                (false, c) => plain.push(c),
            }
        }
        plain
    };
    // A bar line while the stream flowed: percent, bytes of a total, entries of a total, a rate, an ETA.
    let drawn = |out: &str, op: &str, summary: &str| {
        let bar = out
            .lines()
            .find(|l| l.contains("% ") && l.contains(" entries") && l.contains("ETA"));
        let bar = bar.unwrap_or_else(|| panic!("{op}: no bar drawn:\n{out}"));
        // `{bytes}/{total_bytes} {entries}/{total} entries {rate}/s`
        let after = bar.split("% ").nth(1).unwrap_or("");
        let w: Vec<&str> = after.split_whitespace().collect();
        assert!(w.len() >= 6, "{op}: {bar}");
        assert!(w.iter().any(|x| x.ends_with("/s")), "{op}: no rate: {bar}");
        assert!(
            w.windows(2)
                .any(|p| p[1] == "entries" && p[0].split_once('/').is_some()),
            "{op}: no entries of a total: {bar}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with(summary) && l.contains(" entries, ") && l.contains("/s)")),
            "{op}: no summary:\n{out}"
        );
    };
    let out = on_tty(&format!("{s} send -P {lp} -n c1 | (sleep 1.5; cat > {st})"));
    drawn(&out, "send", "sent ");
    let out = on_tty(&format!(
        "(head -c 1048576 {st}; sleep 1.5; tail -c +1048577 {st}) | {s} receive -P {lp} -n c2"
    ));
    drawn(&out, "receive", "received ");
    env.ok("lxc-destroy", &["-n", "c2"]);
    env.ok("lxc-destroy", &["-n", "c1"]);
    strata_testkit::no_leak(&env.lxcpath);
}
