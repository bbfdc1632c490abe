//! Ephemeral containers: snapshot clones that live for one run.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::time::{Duration, Instant};

#[test]
fn foreground_run_is_destroyed_and_base_untouched() {
    let rt = Rt::new();
    let rootfs = rt.container("base", "");
    let before = listing(&rootfs);
    let o = rt.run(
        "lxc-copy",
        &[
            "-n",
            "base",
            "-N",
            "e1",
            "-e",
            "-F",
            "--",
            "/bin/sh",
            "-c",
            "echo x > /newfile; rm /etc/base-marker; hostname; exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "e1\n");
    assert_eq!(listing(&rootfs), before, "the base was modified");
    assert!(!rt.lxcpath.join("base/lxc_snapshots").exists());
    rt.assert_clean(&["base"]);
}

#[test]
fn keep_data_tmpfs_and_bind_mounts() {
    let rt = Rt::new();
    rt.container("base", "");
    let src = rt.outside.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "data\n").unwrap();
    let bind = format!("bind={}:/mnt/b:ro", src.display());
    let out = rt.ok(
        "lxc-copy",
        &[
            "-n",
            "base",
            "-N",
            "e2",
            "-e",
            "-t",
            "-m",
            &bind,
            "-F",
            "--",
            "/bin/sh",
            "-c",
            "cat /mnt/b/f; touch /mnt/b/g 2>/dev/null || echo ro; echo x > /up",
        ],
    );
    assert_eq!(out, "data\nro\n");
    assert!(!src.join("g").exists());
    rt.assert_clean(&["base"]);
    // -D keeps the container, and its changes.
    rt.ok(
        "lxc-copy",
        &[
            "-n",
            "base",
            "-N",
            "kept",
            "-e",
            "-D",
            "-F",
            "--",
            "/bin/sh",
            "-c",
            "echo x > /up",
        ],
    );
    rt.assert_clean(&["base", "kept"]);
    let out = rt.ok("lxc-execute", &["-n", "kept", "--", "/bin/cat", "/up"]);
    assert_eq!(out, "x\n");
    // Bad input: nothing made.
    let e = rt.fails(
        "lxc-copy",
        &["-n", "base", "-N", "e3", "-e", "-m", "bind=/nonexistent/x:/mnt", "-F"],
    );
    assert!(e.contains("/nonexistent/x"), "{e}");
    let e = rt.fails("lxc-copy", &["-n", "base", "-N", "kept", "-e", "-F"]);
    assert!(e.contains("exists"), "{e}");
    let e = rt.fails("lxc-copy", &["-n", "nope", "-e", "-F"]);
    assert!(e.contains("does not exist"), "{e}");
    rt.assert_clean(&["base", "kept"]);
}

#[test]
fn daemon_run_then_stop_destroys_it() {
    let rt = Rt::new();
    rt.container("base", "");
    let out = rt.ok("lxc-copy", &["-n", "base", "-e"]);
    let name = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(name.starts_with("base_") && name.len() == "base_".len() + 6, "{out}");
    assert_eq!(rt.state(&name), "RUNNING");
    assert_eq!(rt.record(&name).unwrap()["ephemeral"], true);
    // The engine refuses to destroy it while it runs.
    let o = rt.run("lxc-destroy", &["-n", &name]);
    assert!(!o.status.success());
    rt.ok("lxc-stop", &["-n", &name]);
    rt.assert_clean(&["base"]);
}

#[test]
fn killed_monitor_leaves_nothing_after_the_next_command() {
    let rt = Rt::new();
    rt.container("base", "");
    rt.ok("lxc-copy", &["-n", "base", "-N", "e1", "-e", "-t"]);
    rt.ok("lxc-copy", &["-n", "base", "-N", "e2", "-e"]);
    for n in ["e1", "e2"] {
        let rec = rt.record(n).unwrap();
        let m = rec["monitor_pid"].as_i64().unwrap();
        // SAFETY: kill takes integers only and touches no memory; the pid comes from the run record of a container
        // this test started.
        unsafe { libc::kill(m as i32, libc::SIGKILL) };
        let t = Instant::now();
        while pid_alive(m) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(rt.entries().contains(&"e1".to_string()));
    // Any strata command on the lxcpath reaps them first.
    let out = rt.ok("lxc-info", &["-n", "base"]);
    assert!(out.contains("STOPPED"));
    rt.assert_clean(&["base"]);

    // A run cut short with its record gone (a reboot empties the run dir):
    // the config and the mark a started ephemeral run leaves tell it.
    rt.ok(
        "lxc-copy",
        &["-n", "base", "-N", "e3", "-e", "-D", "-F", "--", "/bin/true"],
    );
    let cfg = rt.lxcpath.join("e3/config");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("lxc.ephemeral = 1\n");
    std::fs::write(&cfg, text).unwrap();
    rt.ok("lxc-info", &["-n", "base"]);
    assert!(
        rt.entries().contains(&"e3".to_string()),
        "never started as ephemeral: kept"
    );
    // Began before a reboot: the mark it left, and the run dir emptied.
    std::fs::write(rt.lxcpath.join("e3/.strata-ephemeral-ran"), "").unwrap();
    std::fs::remove_dir_all(&rt.run_dir).unwrap();
    std::fs::create_dir(&rt.run_dir).unwrap();
    rt.ok("lxc-info", &["-n", "base"]);
    rt.assert_clean(&["base"]);

    // Killed in this boot after its mark, before its record: the mark and
    // the registration the reaper reads (of a dead command) tell it.
    rt.ok(
        "lxc-copy",
        &["-n", "base", "-N", "e4", "-e", "-D", "-F", "--", "/bin/true"],
    );
    let cfg = rt.lxcpath.join("e4/config");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("lxc.ephemeral = 1\n");
    std::fs::write(&cfg, text).unwrap();
    std::fs::write(rt.lxcpath.join("e4/.strata-ephemeral-ran"), "").unwrap();
    rt.ok("lxc-info", &["-n", "base"]);
    assert!(
        rt.entries().contains(&"e4".to_string()),
        "reaped with no registration: every config was read again"
    );
    let key: String = rt
        .lxcpath
        .display()
        .to_string()
        .chars()
        .flat_map(|c| match c {
            '/' => vec!['_'],
            '_' => vec!['_', '_'],
            c => vec![c],
        })
        .collect();
    let reg = rt.run_dir.join("inflight/ran").join(key);
    std::fs::create_dir_all(&reg).unwrap();
    std::fs::write(reg.join("e4"), "2147483646 1\n").unwrap();
    rt.ok("lxc-info", &["-n", "base"]);
    rt.assert_clean(&["base"]);
    assert!(!reg.join("e4").exists(), "the registration outlived its container");
}

#[test]
fn concurrent_runs_of_one_base() {
    let rt = Rt::new();
    let rootfs = rt.container("base", "");
    let before = listing(&rootfs);
    let kids: Vec<_> = (0..4)
        .map(|i| {
            rt.cmd(
                "lxc-copy",
                &[
                    "-n",
                    "base",
                    "-e",
                    "-F",
                    "--",
                    "/bin/sh",
                    "-c",
                    &format!("echo {i} > /f; sleep 0.2; cat /f"),
                ],
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (i, k) in kids.into_iter().enumerate() {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{i}\n"));
    }
    assert_eq!(listing(&rootfs), before);
    rt.assert_clean(&["base"]);
}

#[test]
fn lxc_start_ephemeral() {
    let rt = Rt::new();
    rt.container("base", "");
    let src = rt.outside.join("b");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "b\n").unwrap();
    let b = src.display().to_string();
    let out = rt.ok(
        "lxc-start-ephemeral",
        &["-o", "base", "-n", "se", "-b", &b, "--", "/bin/cat", &format!("{b}/f")],
    );
    assert_eq!(out, "b\n");
    rt.assert_clean(&["base"]);
    let o = rt.run("lxc-start-ephemeral", &["-o", "base", "--", "/bin/sh", "-c", "exit 6"]);
    assert_eq!(o.status.code(), Some(6));
    rt.ok(
        "lxc-start-ephemeral",
        &["-o", "base", "-n", "kept", "-k", "--", "/bin/true"],
    );
    rt.assert_clean(&["base", "kept"]);
    // -U names the union type: overlayfs (or its newer name) runs, another is refused before anything is made.
    for u in ["overlayfs", "overlay"] {
        rt.ok("lxc-start-ephemeral", &["-o", "base", "-U", u, "--", "/bin/true"]);
    }
    for u in ["aufs", "dir", "btrfs"] {
        let e = rt.fails("lxc-start-ephemeral", &["-o", "base", "-U", u, "--", "/bin/true"]);
        assert!(e.contains(&format!("-U {u}: only overlayfs is supported")), "{e}");
    }
    rt.assert_clean(&["base", "kept"]);
    rt.ok("lxc-start-ephemeral", &["-o", "base", "-n", "d", "-d"]);
    assert_eq!(rt.state("d"), "RUNNING");
    rt.ok("lxc-stop", &["-n", "d"]);
    rt.assert_clean(&["base", "kept"]);
}

/// An ephemeral run of a base on `backend`, with the lxcpath on `fstype`:
/// a snapshot clone of that backend, gone afterwards with its mounts and loop devices.
fn ephemeral_on(backend: &str, fstype: &str) {
    let rt = Rt::on_fs(fstype);
    let src = rt.outside.join("rootfs");
    make_rootfs(&src);
    let mut args = vec!["-n", "base", "-B", backend, "--rootfs-from", src.to_str().unwrap()];
    if backend == "loop" {
        args.extend(["--fssize", "64M"]);
    }
    rt.ok("lxc-create", &args);
    // default.conf may name a bridge this host lacks.
    let cfg = rt.lxcpath.join("base/config");
    let text = std::fs::read_to_string(&cfg).unwrap() + "lxc.net.0.type = empty\n";
    std::fs::write(&cfg, text).unwrap();
    let o = rt.run(
        "lxc-copy",
        &[
            "-n",
            "base",
            "-N",
            "e1",
            "-e",
            "-F",
            "--",
            "/bin/sh",
            "-c",
            "echo x > /new; cat /etc/base-marker; exit 2",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "base\n");
    rt.assert_clean(&["base"]);
    // Killed while running: the next command removes it all.
    rt.ok("lxc-copy", &["-n", "base", "-N", "e2", "-e"]);
    let m = rt.record("e2").unwrap()["monitor_pid"].as_i64().unwrap();
    // SAFETY: kill takes integers only and touches no memory; the pid comes from the run record of a container this
    // test started.
    unsafe { libc::kill(m as i32, libc::SIGKILL) };
    let t = Instant::now();
    while pid_alive(m) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    rt.ok("lxc-info", &["-n", "base"]);
    rt.assert_clean(&["base"]);
    // The base never saw the writes.
    let out = rt.ok(
        "lxc-execute",
        &["-n", "base", "--", "/bin/sh", "-c", "ls /new 2>/dev/null || echo clean"],
    );
    assert_eq!(out, "clean\n");
    rt.assert_clean(&["base"]);
}

#[test]
fn ephemeral_on_btrfs() {
    ephemeral_on("btrfs", "btrfs");
}

#[test]
fn ephemeral_on_loop() {
    // A loop image is cloned by reflink, which needs xfs (or btrfs) under the lxcpath.
    ephemeral_on("loop", "xfs");
}

#[test]
fn sigterm_to_a_foreground_run_stops_and_destroys_it() {
    let rt = Rt::new();
    rt.container("base", "");
    let child = rt
        .cmd(
            "lxc-copy",
            &["-n", "base", "-N", "e1", "-e", "-F", "--", "/bin/sleep", "100"],
        )
        .spawn()
        .unwrap();
    let t = Instant::now();
    while rt.record("e1").is_none_or(|r| r["init_pid"] == 0) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill takes integers only and touches no memory; `child` is this test's own process, not yet waited
    // for, so its pid cannot be reused.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(128 + libc::SIGKILL));
    rt.assert_clean(&["base"]);
}

#[test]
fn throwaway_upper_is_volatile_a_kept_one_is_not() {
    let rt = Rt::new();
    rt.container("base", "");
    let root_opts = |out: &str| {
        out.lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .unwrap_or_else(|| panic!("no root mount in {out}"))
            .to_string()
    };
    // Nothing of a throwaway run is kept: its upper skips the sync at unmount.
    let out = rt.ok(
        "lxc-copy",
        &[
            "-n",
            "base",
            "-N",
            "v1",
            "-e",
            "-F",
            "--",
            "/bin/cat",
            "/proc/self/mountinfo",
        ],
    );
    assert!(root_opts(&out).contains("volatile"), "{out}");
    // A kept one must mount again later, which a volatile upper would refuse.
    let out = rt.ok(
        "lxc-copy",
        &[
            "-n",
            "base",
            "-N",
            "v2",
            "-e",
            "-D",
            "-F",
            "--",
            "/bin/cat",
            "/proc/self/mountinfo",
        ],
    );
    assert!(!root_opts(&out).contains("volatile"), "{out}");
    rt.ok("lxc-execute", &["-n", "v2", "--", "/bin/true"]);
    rt.assert_clean(&["base", "v2"]);
}

/// `lxc.ephemeral = 1` means "destroyed when it stops" (LXC): a container
/// that has never run stays, whatever commands run meanwhile; after its first
/// run it is gone.
#[test]
fn ephemeral_key_keeps_a_container_that_never_ran() {
    let rt = Rt::new();
    rt.container("eph", "lxc.ephemeral = 1\n");
    for _ in 0..2 {
        rt.ok("lxc-ls", &[]);
        rt.ok("lxc-info", &["-n", "eph"]);
    }
    assert!(
        rt.lxcpath.join("eph/config").exists(),
        "a never-run ephemeral container was destroyed"
    );
    let o = rt.run("lxc-start", &["-n", "eph", "-F", "--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !rt.lxcpath.join("eph").exists(),
        "an ephemeral container outlived its run"
    );
    rt.assert_clean(&[]);
}
