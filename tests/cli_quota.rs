//! Sizes that hold: `--fssize` on btrfs as a qgroup limit (only with
//! quotas on, refused without), refused with one line where a backend
//! cannot bound a rootfs (dir and overlay here: this kernel has no ext4 or
//! xfs project quotas, the guest tier tests them); a write beyond the size fails inside a running container with
//! EDQUOT (btrfs) or ENOSPC (loop) and harms nothing else; `strata resize`
//! grows and shrinks a loop image (ext4; xfs only grows) and a btrfs
//! limit, refuses what it cannot do leaving the disk as it was, and a kill
//! -9 in the middle leaves the old image and a temp file reconcile removes;
//! a restore in place keeps the container's size as it is, not the snapshot's;
//! a restore to a new name has the container's limit where the snapshot keeps
//! none (a btrfs qgroup), the snapshot's size where it has one (a loop image).

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::path::Path;

fn has(tool: &str) -> bool {
    std::process::Command::new(tool).arg("--version").output().is_ok()
}

/// 80 MiB written inside the container (beyond its size); the error
/// line. Bounded: the writer is killed after a minute.
fn fill(rt: &Rt, name: &str, file: &str) -> String {
    let mut c = rt
        .cmd(
            "lxc-attach",
            &[
                "-n",
                name,
                "--",
                "/bin/sh",
                "-c",
                &format!("/bin/dd if=/dev/zero of={file} bs=1M count=80"),
            ],
        )
        .stdout(std::process::Stdio::null())
        // A file, not a pipe: a writer left inside never holds the test up.
        .stderr(std::fs::File::create(rt.outside.join("fill.err")).unwrap())
        .spawn()
        .unwrap();
    let code = strata_testkit::exit_within(&mut c, std::time::Duration::from_secs(60));
    if code.is_none() {
        let _ = c.kill();
    }
    let _ = c.wait();
    assert!(code.is_some(), "the write did not end");
    assert_ne!(code, Some(0), "the write beyond the size succeeded");
    std::fs::read_to_string(rt.outside.join("fill.err")).unwrap()
}

fn add_applets(rootfs: &Path) {
    for a in ["dd", "rm"] {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a));
    }
}

/// `strata ARGS -P LXCPATH` (the lxcpath after the subcommand).
fn strata(rt: &Rt, args: &[&str]) -> std::process::Command {
    let c = rt.cmd("lxc-ls", &[]);
    let mut c2 = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    c2.args(args).arg("-P").arg(&rt.lxcpath);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => c2.env(k, v),
            None => c2.env_remove(k),
        };
    }
    c2.stdin(std::process::Stdio::null());
    c2
}

fn strata_ok(rt: &Rt, args: &[&str]) -> String {
    let o = strata(rt, args).output().unwrap();
    assert!(
        o.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A one-line failure of `strata ARGS`.
fn strata_fails(rt: &Rt, args: &[&str]) -> String {
    let o = strata(rt, args).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "strata {args:?} succeeded");
    assert_eq!(e.trim_end().lines().count(), 1, "{e:?}");
    assert!(e.starts_with("strata: "), "{e:?}");
    e
}

fn size_of(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn fssize_on_backends_without_a_size_is_refused_and_nothing_is_made() {
    let rt = Rt::new();
    let src = rt.outside.join("tree");
    make_rootfs(&src);
    for b in ["dir", "overlay"] {
        let e = rt.fails(
            "lxc-create",
            &[
                "-n",
                "q1",
                "-B",
                b,
                "--fssize",
                "64M",
                "--rootfs-from",
                src.to_str().unwrap(),
            ],
        );
        // A project quota (on the tree, on an overlay's upper dir), which this kernel lacks.
        let a = if b == "dir" { "a" } else { "an" };
        assert!(
            e.contains(&format!("--fssize on {a} {b} rootfs is a project quota")) && e.contains("quota"),
            "{e}"
        );
        assert_eq!(rt.entries(), Vec::<String>::new(), "{b}");
    }
    rt.container("qd", "");
    let e = rt.fails("lxc-copy", &["-n", "qd", "-N", "q2", "-L", "64M"]);
    assert!(e.contains("--fssize"), "{e}");
    let e = strata_fails(&rt, &["resize", "-n", "qd", "1G"]);
    // A dir rootfs is sized by a project quota, which this filesystem does not enforce.
    assert!(
        e.contains("dir rootfs is a project quota") && e.contains("project quotas are"),
        "{e}"
    );
    assert_eq!(rt.entries(), ["qd"]);
}

#[test]
fn btrfs_fssize_is_a_qgroup_limit_that_holds_and_resizes() {
    if !has("mkfs.btrfs") {
        eprintln!("skipped: no mkfs.btrfs");
        return;
    }
    let rt = Rt::on_fs("btrfs");
    let mnt = rt.fs.as_ref().unwrap().mnt().to_path_buf();
    let src = rt.outside.join("tree");
    make_rootfs(&src);
    add_applets(&src);
    let s = src.to_str().unwrap();
    // Quotas off: refused, nothing made, quotas left off.
    let e = rt.fails(
        "lxc-create",
        &["-n", "qb1", "-B", "btrfs", "--fssize", "40M", "--rootfs-from", s],
    );
    assert!(e.contains("quotas are off") && e.contains("btrfs quota enable"), "{e}");
    assert_eq!(rt.entries(), Vec::<String>::new());
    let o = std::process::Command::new("btrfs")
        .args(["qgroup", "show"])
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(!o.status.success(), "quotas were turned on");

    strata_testkit::sh(&["btrfs", "quota", "enable", mnt.to_str().unwrap()]);
    rt.ok(
        "lxc-create",
        &["-n", "qb1", "-B", "btrfs", "--fssize", "40M", "--rootfs-from", s],
    );
    // A neighbour without a limit on the same filesystem.
    rt.ok("lxc-create", &["-n", "qb2", "-B", "btrfs", "--rootfs-from", s]);
    let limit = |n: &str| {
        let p = rt.lxcpath.join(n).join("rootfs");
        let out = strata_testkit::sh(&["btrfs", "qgroup", "show", "-r", "--raw", p.to_str().unwrap()]);
        let id = strata_testkit::sh(&["btrfs", "inspect-internal", "rootid", p.to_str().unwrap()]);
        let q = format!("0/{}", id.trim());
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(q.as_str()))
            .unwrap_or_else(|| panic!("no {q} in {out}"))
            .split_whitespace()
            .nth(3)
            .unwrap()
            .to_string()
    };
    assert_eq!(limit("qb1"), (40u64 << 20).to_string());
    for n in ["qb1", "qb2"] {
        let cfg = rt.lxcpath.join(n).join("config");
        std::fs::write(
            &cfg,
            std::fs::read_to_string(&cfg).unwrap() + "lxc.mount.auto = proc:mixed sys:ro\n",
        )
        .unwrap();
    }
    rt.ok("lxc-start", &["-n", "qb1"]);
    let e = fill(&rt, "qb1", "/root/fill");
    assert!(e.contains("quota exceeded"), "{e}");
    // The container runs on, the neighbour writes freely.
    assert_eq!(rt.state("qb1"), "RUNNING");
    let big = rt.lxcpath.join("qb2/rootfs/root/big");
    std::fs::write(&big, vec![7u8; 60 << 20]).unwrap();
    std::fs::remove_file(&big).unwrap();
    rt.ok("lxc-attach", &["-n", "qb1", "--", "/bin/rm", "/root/fill"]);
    rt.ok("lxc-stop", &["-n", "qb1", "-k"]);

    // Resized: grown, shrunk while it fits, refused below what it holds.
    strata_ok(&rt, &["resize", "-n", "qb1", "80M"]);
    assert_eq!(limit("qb1"), (80u64 << 20).to_string());
    strata_ok(&rt, &["resize", "-n", "qb1", "30M"]);
    assert_eq!(limit("qb1"), (30u64 << 20).to_string());
    std::fs::write(rt.lxcpath.join("qb1/rootfs/root/keep"), vec![1u8; 20 << 20]).unwrap();
    strata_testkit::sh(&["sync"]);
    let e = strata_fails(&rt, &["resize", "-n", "qb1", "8M"]);
    assert!(e.contains("too small"), "{e}");
    assert_eq!(limit("qb1"), (30u64 << 20).to_string());
    // A restore in place keeps the container's limit, not the one it had at the snapshot.
    rt.ok("lxc-snapshot", &["-n", "qb1"]);
    strata_ok(&rt, &["resize", "-n", "qb1", "50M"]);
    rt.ok("lxc-snapshot", &["-n", "qb1", "-r", "snap0"]);
    assert_eq!(limit("qb1"), (50u64 << 20).to_string());
    assert!(rt.lxcpath.join("qb1/rootfs/root/keep").exists());
    // A restore to a new name has the container's limit too: a snapshot of a subvolume keeps none.
    strata_ok(&rt, &["resize", "-n", "qb1", "60M"]);
    rt.ok("lxc-snapshot", &["-n", "qb1", "-r", "snap0", "-N", "qb3"]);
    assert_eq!(limit("qb3"), (60u64 << 20).to_string());
    assert_eq!(limit("qb1"), (60u64 << 20).to_string());
    assert!(rt.lxcpath.join("qb3/rootfs/root/keep").exists());
    rt.ok("lxc-destroy", &["-n", "qb3"]);
    rt.ok("lxc-snapshot", &["-n", "qb1", "-d", "snap0"]);
    rt.ok("lxc-destroy", &["-n", "qb1"]);
    rt.ok("lxc-destroy", &["-n", "qb2"]);
    rt.assert_clean(&[]);
}

#[test]
fn loop_size_holds_and_resize_grows_and_shrinks_the_image() {
    let rt = Rt::new();
    let src = rt.outside.join("tree");
    make_rootfs(&src);
    add_applets(&src);
    let s = src.to_str().unwrap();
    rt.ok(
        "lxc-create",
        &["-n", "ql1", "-B", "loop", "--fssize", "32M", "--rootfs-from", s],
    );
    let img = rt.lxcpath.join("ql1/rootdev");
    assert_eq!(size_of(&img), 32 << 20);
    let cfg = rt.lxcpath.join("ql1/config");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap() + "lxc.mount.auto = proc:mixed sys:ro\n",
    )
    .unwrap();

    // The device size holds: ENOSPC inside, the container runs on.
    rt.ok("lxc-start", &["-n", "ql1"]);
    let e = fill(&rt, "ql1", "/root/fill");
    assert!(e.contains("No space left on device"), "{e}");
    assert_eq!(rt.state("ql1"), "RUNNING");
    rt.ok("lxc-attach", &["-n", "ql1", "--", "/bin/rm", "/root/fill"]);
    // Not while it runs: refused, the image as it was.
    let e = strata_fails(&rt, &["resize", "-n", "ql1", "64M"]);
    assert!(e.contains("stop it"), "{e}");
    assert_eq!(size_of(&img), 32 << 20);
    rt.ok("lxc-stop", &["-n", "ql1", "-k"]);

    // Grown, the files kept, the filesystem clean and as big as the image.
    strata_ok(&rt, &["resize", "-n", "ql1", "64M"]);
    assert_eq!(size_of(&img), 64 << 20);
    strata_testkit::sh(&["e2fsck", "-f", "-n", img.to_str().unwrap()]);
    let blocks = |img: &Path| -> u64 {
        let out = strata_testkit::sh(&["dumpe2fs", "-h", img.to_str().unwrap()]);
        let v = |k: &str| -> u64 {
            out.lines()
                .find(|l| l.starts_with(k))
                .unwrap()
                .split(':')
                .nth(1)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        v("Block count") * v("Block size")
    };
    assert_eq!(blocks(&img), 64 << 20);
    let o = rt.run("lxc-execute", &["-n", "ql1", "--", "/bin/cat", "/etc/base-marker"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "base\n");
    // Shrunk (ext4, offline).
    strata_ok(&rt, &["resize", "-n", "ql1", "24M"]);
    assert_eq!((size_of(&img), blocks(&img)), (24 << 20, 24 << 20));
    // Too small for what it holds: refused, nothing changed, no temp left.
    let e = strata_fails(&rt, &["resize", "-n", "ql1", "3M"]);
    assert!(e.contains("files need at least"), "{e}");
    assert_eq!(size_of(&img), 24 << 20);
    // Killed before its copy is renamed over the image: the old image whole, the temp removed by the next command.
    let o = strata(&rt, &["resize", "-n", "ql1", "40M"])
        .env("STRATA_FAILPOINT", "resize-before-rename")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(99), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(size_of(&img), 24 << 20);
    rt.ok("lxc-ls", &[]);
    let left: Vec<_> = std::fs::read_dir(rt.lxcpath.join("ql1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("strata-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    strata_testkit::sh(&["e2fsck", "-f", "-n", img.to_str().unwrap()]);
    // A restore in place keeps the image's size as it is now, not as it was at the snapshot.
    rt.ok("lxc-snapshot", &["-n", "ql1"]);
    strata_ok(&rt, &["resize", "-n", "ql1", "40M"]);
    rt.ok("lxc-snapshot", &["-n", "ql1", "-r", "snap0"]);
    assert_eq!((size_of(&img), blocks(&img)), (40 << 20, 40 << 20));
    let o = rt.run("lxc-execute", &["-n", "ql1", "--", "/bin/cat", "/etc/base-marker"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "base\n");
    // A restore to a new name has the snapshot's size: its image is copied, the size with it.
    rt.ok("lxc-snapshot", &["-n", "ql1", "-r", "snap0", "-N", "ql2"]);
    let img2 = rt.lxcpath.join("ql2/rootdev");
    assert_eq!((size_of(&img2), blocks(&img2)), (24 << 20, 24 << 20));
    assert_eq!(size_of(&img), 40 << 20);
    let o = rt.run("lxc-execute", &["-n", "ql2", "--", "/bin/cat", "/etc/base-marker"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "base\n");
    // lxc-copy too (LXC's would make its 1 GiB default: strata copies the image as it is).
    rt.ok("lxc-copy", &["-n", "ql2", "-N", "ql3"]);
    assert_eq!(size_of(&rt.lxcpath.join("ql3/rootdev")), 24 << 20);
    rt.ok("lxc-destroy", &["-n", "ql3"]);
    rt.ok("lxc-destroy", &["-n", "ql2"]);
    rt.ok("lxc-snapshot", &["-n", "ql1", "-d", "snap0"]);
    rt.ok("lxc-destroy", &["-n", "ql1"]);

    // xfs grows and cannot shrink.
    if has("mkfs.xfs") {
        rt.ok(
            "lxc-create",
            &[
                "-n",
                "qx1",
                "-B",
                "loop",
                "--fstype",
                "xfs",
                "--fssize",
                "320M",
                "--rootfs-from",
                s,
            ],
        );
        let img = rt.lxcpath.join("qx1/rootdev");
        strata_ok(&rt, &["resize", "-n", "qx1", "400M"]);
        assert_eq!(size_of(&img), 400 << 20);
        let e = strata_fails(&rt, &["resize", "-n", "qx1", "320M"]);
        assert!(e.contains("xfs cannot shrink"), "{e}");
        assert_eq!(size_of(&img), 400 << 20);
        let o = rt.run("lxc-execute", &["-n", "qx1", "--", "/bin/cat", "/etc/base-marker"]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "base\n");
        rt.ok("lxc-destroy", &["-n", "qx1"]);
    }
    rt.assert_clean(&[]);
}
