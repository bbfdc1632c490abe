//! `strata convert` end to end (root): to an id map and back, and bad input
//! that must print one line, exit non-zero and change nothing. Skipped while
//! the binary has no `convert` subcommand.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> PathBuf {
    std::env::var_os("STRATA_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_strata")))
}

fn ready() -> bool {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return false;
    }
    let ok = Command::new(bin())
        .args(["convert", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: this strata has no convert subcommand yet");
    }
    ok
}

/// Run strata with its run dir (locks) next to the lxcpath.
fn strata(args: &[&str], lxcpath: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .env("STRATA_RUN_DIR", lxcpath.with_file_name("run"))
        .output()
        .unwrap()
}

/// Owner, group and mode of every entry, and the config text.
fn state(lxcpath: &Path) -> (BTreeMap<PathBuf, (u32, u32, u32)>, String) {
    let mut out = BTreeMap::new();
    let mut stack = vec![lxcpath.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        out.insert(p.clone(), (m.uid(), m.gid(), m.mode()));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    (out, std::fs::read_to_string(lxcpath.join("c1/config")).unwrap())
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("strata-convert-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let lxcpath = tmp.path().join("lxc");
    let rootfs = lxcpath.join("c1/rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/f"), b"x").unwrap();
    std::os::unix::fs::chown(rootfs.join("etc/f"), Some(1000), Some(100)).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", rootfs.join("etc/s")).unwrap();
    std::fs::write(
        lxcpath.join("c1/config"),
        format!("lxc.uts.name = c1\nlxc.rootfs.path = dir:{}\n", rootfs.display()),
    )
    .unwrap();
    (tmp, lxcpath)
}

#[test]
fn convert_to_map_and_back() {
    if !ready() {
        return;
    }
    let (_tmp, lxcpath) = setup();
    let lp = lxcpath.to_str().unwrap();
    let before = state(&lxcpath);
    let out = strata(
        &[
            "convert",
            "-n",
            "c1",
            "-P",
            lp,
            "--to-unprivileged",
            "--map",
            "u 0 100000 65536",
            "--map",
            "g 0 200000 65536",
        ],
        &lxcpath,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let f = std::fs::metadata(lxcpath.join("c1/rootfs/etc/f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (101000, 200100));
    let cfg = std::fs::read_to_string(lxcpath.join("c1/config")).unwrap();
    assert!(
        cfg.ends_with("lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 200000 65536\n"),
        "{cfg}"
    );
    assert_eq!(std::fs::metadata("/etc/shadow").unwrap().uid(), 0);
    let out = strata(&["convert", "-n", "c1", "-P", lp, "--to-privileged"], &lxcpath);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(state(&lxcpath), before);
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    if !ready() {
        return;
    }
    let (_tmp, lxcpath) = setup();
    let lp = lxcpath.to_str().unwrap();
    let before = state(&lxcpath);
    for (args, want) in [
        (vec!["--to-unprivileged", "--map", "u 0 100000 0"], "count is zero"),
        (
            vec![
                "--to-unprivileged",
                "--map",
                "b 0 100000 65536",
                "--map",
                "u 10 300000 5",
            ],
            "overlap",
        ),
        (
            vec!["--to-unprivileged", "--map", "b 0 100000 500"],
            "uid 1000 is outside the id map",
        ),
        (vec!["--to-privileged"], "already privileged"),
        (vec!["--to-privileged", "--to-unprivileged"], "cannot be used with"),
    ] {
        let mut a = vec!["convert", "-n", "c1", "-P", lp];
        a.extend(args.iter());
        let out = strata(&a, &lxcpath);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(state(&lxcpath), before, "{args:?} changed something");
    }
}

/// Owner and group of every entry below `root`, by relative path.
fn owners(root: &Path) -> BTreeMap<PathBuf, (u32, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        out.insert(p.strip_prefix(root).unwrap().to_path_buf(), (m.uid(), m.gid()));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

fn acl(p: &Path) -> String {
    let o = Command::new("getfacl")
        .args(["-n", "-c", "-p"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn copy_into_another_map_shifts_in_the_copy() {
    if !ready() {
        return;
    }
    let (_tmp, lxcpath) = setup();
    let lp = lxcpath.to_str().unwrap();
    let c1 = lxcpath.join("c1/rootfs");
    let acl_ok = Command::new("setfacl")
        .args(["-m", "u:1000:r,g:100:w"])
        .arg(c1.join("etc/f"))
        .status()
        .is_ok_and(|s| s.success());
    let c1_before = state(&lxcpath);
    let copy = |args: &[&str]| {
        let mut a = vec!["clone", "-P", lp];
        a.extend(args);
        strata(&a, &lxcpath)
    };
    // Privileged -> mapped, in the copy pass.
    let out = copy(&[
        "-n",
        "c1",
        "-N",
        "u1",
        "--idmap",
        "u 0 100000 65536",
        "--idmap",
        "g 0 200000 65536",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let u1 = lxcpath.join("u1/rootfs");
    let f = std::fs::metadata(u1.join("etc/f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (101000, 200100));
    let top = std::fs::metadata(&u1).unwrap();
    assert_eq!((top.uid(), top.gid()), (100000, 200000));
    assert_eq!(std::fs::read_link(u1.join("etc/s")).unwrap(), Path::new("/etc/shadow"));
    if acl_ok {
        let a = acl(&u1.join("etc/f"));
        assert!(a.contains("user:101000:r--") && a.contains("group:200100:-w-"), "{a}");
    }
    let cfg = std::fs::read_to_string(lxcpath.join("u1/config")).unwrap();
    assert!(
        cfg.contains("lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 200000 65536\n"),
        "{cfg}"
    );
    assert!(lxcpath.join("u1/strata_shifted").is_file());
    assert_eq!(std::fs::metadata("/etc/shadow").unwrap().uid(), 0);
    // Mapped -> privileged again: the same owners as the original.
    let out = copy(&["-n", "u1", "-N", "p1", "--idmap", "none"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(owners(&lxcpath.join("p1/rootfs")), owners(&c1));
    if acl_ok {
        assert_eq!(acl(&lxcpath.join("p1/rootfs/etc/f")), acl(&c1.join("etc/f")));
    }
    let cfg = std::fs::read_to_string(lxcpath.join("p1/config")).unwrap();
    assert!(!cfg.contains("lxc.idmap"), "{cfg}");
    assert!(!lxcpath.join("p1/strata_shifted").exists());
    // The sources are untouched.
    let now = state(&lxcpath);
    for (p, v) in &c1_before.0 {
        assert_eq!(now.0.get(p), Some(v), "{} changed", p.display());
    }
    // Bad input: one line, nothing made.
    std::fs::write(c1.join("far"), b"x").unwrap();
    std::os::unix::fs::chown(c1.join("far"), Some(70000), Some(0)).unwrap();
    let before = state(&lxcpath);
    for (args, want) in [
        (
            vec!["-n", "c1", "-N", "x", "-s", "--idmap", "b 0 100000 65536"],
            "snapshot clone",
        ),
        (vec!["-n", "c1", "-N", "x", "--idmap", "b 0 100000 65536"], "70000"),
        (vec!["-n", "c1", "-N", "x", "--idmap", "u 0 100000 0"], "count is zero"),
        (vec!["-n", "c1", "-N", "x", "-R", "--idmap", "b 0 100000 65536"], "-R"),
    ] {
        let out = copy(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(state(&lxcpath), before, "{args:?} changed something");
    }
}
