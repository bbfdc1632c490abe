//! LXC's flags of lxc-start, lxc-execute and lxc-attach, and the common
//! `--rcfile` and `--usage`, on real containers.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// `tool args` run by a shell that first opens fd 7 (inherited, not close-on-exec).
fn with_fd7(rt: &Rt, tool: &str, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("exec 7</etc/hostname; exec \"$0\" \"$@\"")
        .arg(rt.bin.join(tool))
        .arg("-P")
        .arg(&rt.lxcpath)
        .args(args)
        .env("STRATA_RUN_DIR", &rt.run_dir)
        .env("LXC_GLOBAL_CONF", rt.tmp.path().join("lxc.conf"))
        .stdin(std::process::Stdio::null());
    c.output().unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn start_define_and_rcfile() {
    let rt = Rt::new();
    let rootfs = rt.container("c1", "");
    // -s sets items on the config read, as if appended to it.
    let out = rt.ok(
        "lxc-execute",
        &[
            "-n",
            "c1",
            "-s",
            "lxc.uts.name=fromdefine",
            "--define",
            "lxc.environment = X=1",
            "--",
            "/bin/sh",
            "-c",
            "hostname; echo X=$X",
        ],
    );
    assert_eq!(out, "fromdefine\nX=1\n");
    // The container's config is not changed by -s.
    let cfg = std::fs::read_to_string(rt.lxcpath.join("c1/config")).unwrap();
    assert!(!cfg.contains("fromdefine"), "{cfg}");

    // -f: another config file, for the same rootfs.
    let rc = rt.outside.join("rc.conf");
    std::fs::write(
        &rc,
        format!(
            "lxc.rootfs.path = dir:{}\nlxc.uts.name = fromrc\nlxc.execute.cmd = /bin/hostname\n",
            rootfs.display()
        ),
    )
    .unwrap();
    let rcs = rc.to_str().unwrap();
    assert_eq!(
        rt.ok("lxc-execute", &["-n", "c1", "-f", rcs, "--", "/bin/hostname"]),
        "fromrc\n"
    );
    // Its lxc.execute.cmd too, and -s on top of it.
    assert_eq!(rt.ok("lxc-execute", &["-n", "c1", "--rcfile", rcs]), "fromrc\n");
    assert_eq!(
        rt.ok("lxc-execute", &["-n", "c1", "-f", rcs, "-s", "lxc.uts.name=both"]),
        "both\n"
    );
    // lxc-info reads it too.
    assert_eq!(
        rt.ok("lxc-info", &["-n", "c1", "--rcfile", rcs, "-c", "lxc.uts.name", "-H"]),
        "fromrc\n"
    );

    // Refused with one line, nothing left behind.
    let other = rt.outside.join("other.conf");
    std::fs::write(&other, "lxc.rootfs.path = dir:/var/empty\n").unwrap();
    for (args, says) in [
        (vec!["-s", "lxc.bogus.key=1"], "unknown configuration key"),
        (vec!["-s", "lxc.utsname=old"], "unknown configuration key"),
        (vec!["-s", "novalue"], "KEY=VAL"),
        (vec!["-f", other.to_str().unwrap()], "own rootfs"),
        (vec!["-f", "/nonexistent/rc"], "rcfile"),
        (vec!["-s", "lxc.rootfs.path=dir:/var/empty"], "own rootfs"),
    ] {
        let mut a = vec!["-n", "c1"];
        a.extend(args.iter().copied());
        a.extend(["--", "/bin/true"]);
        let e = rt.fails("lxc-execute", &a);
        assert!(e.contains(says), "{a:?}: {e}");
        let e = rt.fails("lxc-start", &a);
        assert!(e.contains(says), "{a:?}: {e}");
    }
    rt.assert_clean(&["c1"]);
}

#[test]
fn execute_uid_and_gid() {
    let rt = Rt::new();
    rt.container("c1", "");
    let out = rt.ok(
        "lxc-execute",
        &[
            "-n",
            "c1",
            "-u",
            "1234",
            "-g",
            "4321",
            "--",
            "/bin/sh",
            "-c",
            "id -u; id -g",
        ],
    );
    assert_eq!(out, "1234\n4321\n");
    let out = rt.ok(
        "lxc-execute",
        &["-n", "c1", "--uid", "77", "--", "/bin/sh", "-c", "id -u; id -g"],
    );
    assert_eq!(out, "77\n0\n");
    let e = rt.fails("lxc-execute", &["-n", "c1", "-u", "nobody", "--", "/bin/true"]);
    assert!(e.contains("nobody"), "{e}");
    rt.assert_clean(&["c1"]);
}

#[test]
fn start_pidfile_is_the_monitor_and_goes_at_stop() {
    let rt = Rt::new();
    rt.container("c1", "");
    let pf = rt.outside.join("c1.pid");
    rt.ok("lxc-start", &["-n", "c1", "-d", "-p", pf.to_str().unwrap()]);
    let text = std::fs::read_to_string(&pf).unwrap();
    let rec = rt.record("c1").unwrap();
    assert_eq!(
        text,
        rec["monitor_pid"].as_i64().unwrap().to_string(),
        "no newline, the monitor's pid"
    );
    let mode = std::fs::metadata(&pf).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    rt.ok("lxc-stop", &["-n", "c1"]);
    wait_for("pidfile removed", || !pf.exists());
    // A relative path is taken from where lxc-start was run (the daemon works in /).
    let o = rt
        .cmd("lxc-start", &["-n", "c1", "--pidfile", "rel.pid"])
        .current_dir(&rt.outside)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(rt.outside.join("rel.pid").exists());
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    wait_for("pidfile removed", || !rt.outside.join("rel.pid").exists());
    // One that cannot be written: the start fails, nothing runs.
    let e = rt.fails("lxc-start", &["-n", "c1", "-p", "/nonexistent/dir/x.pid"]);
    assert!(e.contains("pidfile"), "{e}");
    rt.assert_clean(&["c1"]);
}

#[test]
fn close_all_fds() {
    let rt = Rt::new();
    let rootfs = rt.container("c1", "");
    let fds = |args: &[&str]| {
        let _ = std::fs::remove_file(rootfs.join("fds"));
        let mut a = vec!["-n", "c1"];
        a.extend(args);
        a.extend(["--", "/bin/sh", "-c", "ls /proc/self/fd > /fds"]);
        let o = with_fd7(&rt, "lxc-start", &a);
        assert!(o.status.success(), "{a:?}: {}", String::from_utf8_lossy(&o.stderr));
        wait_for("the command ran", || {
            std::fs::read_to_string(rootfs.join("fds")).is_ok_and(|s| !s.is_empty()) && rt.records().is_empty()
        });
        std::fs::read_to_string(rootfs.join("fds")).unwrap()
    };
    // In the foreground the inherited fd reaches init (as in LXC, which warns).
    assert!(fds(&["-F"]).lines().any(|l| l == "7"));
    assert!(!fds(&["-F", "-C"]).lines().any(|l| l == "7"));
    assert!(!fds(&["-F", "--close-all-fds"]).lines().any(|l| l == "7"));
    // A daemon always closes them.
    assert!(!fds(&["-d"]).lines().any(|l| l == "7"));
    rt.assert_clean(&["c1"]);
}

#[test]
fn start_shares_namespaces() {
    let rt = Rt::new();
    rt.container("c1", "");
    let r2 = rt.container("c2", "");
    rt.ok("lxc-start", &["-n", "c1"]);
    let pid: i64 = rt.ok("lxc-info", &["-n", "c1", "-p", "-H"]).trim().parse().unwrap();
    let ns = |p: &str, n: &str| std::fs::read_link(format!("/proc/{p}/ns/{n}")).unwrap();
    let p1 = pid.to_string();
    let script = "hostname > /out; for n in net ipc uts pid; do readlink /proc/self/ns/$n >> /out; done";
    rt.ok(
        "lxc-start",
        &[
            "-n",
            "c2",
            "-F",
            "--share-net",
            "c1",
            "--share-ipc",
            "c1",
            "--share-uts",
            &p1,
            "--share-pid",
            "c1",
            "--",
            "/bin/sh",
            "-c",
            script,
        ],
    );
    let out = std::fs::read_to_string(r2.join("out")).unwrap();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "c1", "a shared uts namespace is not renamed: {out}");
    for (i, n) in ["net", "ipc", "uts", "pid"].iter().enumerate() {
        assert_eq!(l[i + 1], ns(&p1, n).to_str().unwrap(), "{n}: {out}");
    }
    let e = rt.fails("lxc-start", &["-n", "c2", "--share-net", "nosuch", "--", "/bin/true"]);
    assert!(e.contains("nosuch is not running"), "{e}");
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    rt.assert_clean(&["c1", "c2"]);
}
