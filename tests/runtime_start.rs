//! The runtime on real namespaces: start, execute, attach, stop, state, mounts, bad input.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::time::{Duration, Instant};

#[test]
fn execute_runs_command_as_pid1_in_new_namespaces() {
    let rt = Rt::new();
    rt.container("c1", "lxc.environment = FOO=bar baz\n");
    let script = "echo pid=$$; hostname; ls /sys/class/net; ps | wc -l; echo FOO=$FOO; \
                  cat /proc/mounts; exit 7";
    let o = rt.run("lxc-execute", &["-n", "c1", "--", "/bin/sh", "-c", script]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(7), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "c1");
    assert_eq!(lines[2], "lo", "only loopback in the netns: {out}");
    // header + sh + ps + wc (+ subshell): the host's processes are not there.
    let nproc: usize = lines[3].trim().parse().unwrap();
    assert!(nproc <= 5, "{nproc} processes visible: {out}");
    assert_eq!(lines[4], "FOO=bar baz");
    assert!(out.contains("proc /proc proc "), "{out}");
    assert!(out.contains("sysfs /sys sysfs ro,"), "{out}");
    assert!(out.contains("tmpfs /dev tmpfs "), "{out}");
    assert!(
        out.contains("devpts /dev/pts devpts ") && out.contains("ptmxmode=666"),
        "{out}"
    );
    // No host mount is visible inside: the old root is gone.
    assert!(!out.contains(rt.tmp.path().to_str().unwrap()), "{out}");
    rt.assert_clean(&["c1"]);
}

#[test]
fn loopback_is_up_and_dev_nodes_work() {
    let rt = Rt::new();
    rt.container("c1", "");
    let out = rt.ok(
        "lxc-execute",
        &[
            "-n",
            "c1",
            "--",
            "/bin/sh",
            "-c",
            "ip link show lo; echo x > /dev/null && echo null-ok; ls -l /dev/ptmx",
        ],
    );
    assert!(out.contains("UP"), "{out}");
    assert!(out.contains("null-ok"), "{out}");
    assert!(out.contains("/dev/ptmx -> pts/ptmx"), "{out}");
}

#[test]
fn exit_status_and_signals_pass_through() {
    let rt = Rt::new();
    rt.container("c1", "");
    // The exit code, and stderr to say why when it is not the one expected.
    let code = |tool: &str, args: &[&str]| {
        let o = rt.run(tool, args);
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (c, err) = code("lxc-execute", &["-n", "c1", "--", "/bin/true"]);
    assert_eq!(c, Some(0), "{err}");
    let (c, err) = code("lxc-execute", &["-n", "c1", "--", "/bin/false"]);
    assert_eq!(c, Some(1), "{err}");
    let (c, err) = code("lxc-start", &["-F", "-n", "c1", "--", "/bin/sh", "-c", "exit 42"]);
    assert_eq!(c, Some(42), "{err}");
    // Init killed by a signal: 128 + N, as a shell reports it.
    let child = rt
        .cmd("lxc-start", &["-F", "-n", "c1", "--", "/bin/sleep", "1000"])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while rt.state("c1") != "RUNNING" && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(137));
    rt.assert_clean(&["c1"]);
}

#[test]
fn start_attach_stop_and_info() {
    let rt = Rt::new();
    rt.container("c1", "");
    assert_eq!(rt.state("c1"), "STOPPED");
    rt.ok("lxc-start", &["-n", "c1"]);
    let info = rt.ok("lxc-info", &["-n", "c1"]);
    assert!(info.contains("Name:           c1\n"), "{info}");
    assert!(info.contains("State:          RUNNING\n"), "{info}");
    let pid: i64 = rt.ok("lxc-info", &["-n", "c1", "-p", "-H"]).trim().parse().unwrap();
    assert!(pid_alive(pid));
    assert_eq!(rt.record("c1").unwrap()["init_pid"].as_i64(), Some(pid));
    // The rootfs is mounted in the container's own mount namespace only:
    // nothing of it on the host while it runs.
    assert_eq!(rt.mounts(), Vec::<String>::new());

    let o = rt.run(
        "lxc-attach",
        &[
            "-n",
            "c1",
            "--",
            "/bin/sh",
            "-c",
            "hostname; echo $$; cat /proc/1/cmdline; exit 5",
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "c1");
    assert_ne!(l[1], "1", "attached process is not init");
    assert!(l[2].contains("/sbin/init"), "{out}");

    let e = rt.fails("lxc-start", &["-n", "c1"]);
    assert!(e.contains("already running"), "{e}");

    let t = Instant::now();
    rt.ok("lxc-stop", &["-n", "c1"]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "init honours SIGPWR: {:?}",
        t.elapsed()
    );
    assert!(!pid_alive(pid));
    assert_eq!(rt.state("c1"), "STOPPED");
    assert_eq!(rt.ok("lxc-info", &["-n", "c1", "-p"]), "");
    let e = rt.fails("lxc-stop", &["-n", "c1"]);
    assert!(e.contains("not running"), "{e}");
    let e = rt.fails("lxc-attach", &["-n", "c1", "--", "/bin/true"]);
    assert!(e.contains("not running"), "{e}");
    rt.assert_clean(&["c1"]);
}

#[test]
fn stop_kills_after_timeout_when_init_ignores_halt_signal() {
    let rt = Rt::new();
    // sleep as pid 1 has no handler: SIGPWR is ignored.
    rt.container("c1", "lxc.init.cmd = /bin/sleep 1000\n");
    rt.ok("lxc-start", &["-n", "c1"]);
    let t = Instant::now();
    rt.ok("lxc-stop", &["-n", "c1", "-t", "1"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(rt.state("c1"), "STOPPED");
    rt.ok("lxc-start", &["-n", "c1"]);
    let t = Instant::now();
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    assert!(t.elapsed() < Duration::from_secs(2));
    // The configured halt signal is the one sent: /sbin/init stops on SIGPWR only.
    let cfg = std::fs::read_to_string(rt.lxcpath.join("c1/config")).unwrap();
    let cfg = cfg.replace("lxc.init.cmd = /bin/sleep 1000\n", "lxc.signal.halt = SIGUSR1\n");
    std::fs::write(rt.lxcpath.join("c1/config"), cfg).unwrap();
    rt.ok("lxc-start", &["-n", "c1"]);
    let t = Instant::now();
    rt.ok("lxc-stop", &["-n", "c1", "-t", "1"]);
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "SIGUSR1 ignored, then SIGKILL"
    );
    rt.assert_clean(&["c1"]);
}

#[test]
fn state_is_right_after_the_monitor_is_killed() {
    let rt = Rt::new();
    rt.container("c1", "");
    rt.ok("lxc-start", &["-n", "c1"]);
    let rec = rt.record("c1").unwrap();
    let (monitor, init) = (rec["monitor_pid"].as_i64().unwrap(), rec["init_pid"].as_i64().unwrap());
    // SAFETY: kill takes integers only and touches no memory; the pid comes from the run record of a container this
    // test started.
    unsafe { libc::kill(monitor as i32, libc::SIGKILL) };
    let t = Instant::now();
    while pid_alive(monitor) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(rt.state("c1"), "RUNNING");
    assert_eq!(rt.ok("lxc-info", &["-n", "c1", "-p", "-H"]).trim(), init.to_string());
    assert!(rt.ok("lxc-ls", &["--fancy"]).contains("RUNNING"));
    // Stop without a monitor: the stopper unmounts and removes the record.
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    assert_eq!(rt.state("c1"), "STOPPED");
    rt.assert_clean(&["c1"]);
    // And init gone while its monitor is dead: STOPPED, and cleaned by the next start.
    rt.ok("lxc-start", &["-n", "c1"]);
    let rec = rt.record("c1").unwrap();
    // SAFETY: kill takes integers only and touches no memory; the pid comes from the run record of a container this
    // test started.
    unsafe { libc::kill(rec["monitor_pid"].as_i64().unwrap() as i32, libc::SIGKILL) };
    // SAFETY: kill takes integers only and touches no memory; the pid comes from the run record of a container this
    // test started.
    unsafe { libc::kill(rec["init_pid"].as_i64().unwrap() as i32, libc::SIGKILL) };
    let t = Instant::now();
    while rt.state("c1") != "STOPPED" && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(rt.state("c1"), "STOPPED");
    rt.ok("lxc-start", &["-n", "c1"]);
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    rt.assert_clean(&["c1"]);
}

#[test]
fn mount_entries_bind_and_never_escape_the_rootfs() {
    let rt = Rt::new();
    let src = rt.outside.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "hello\n").unwrap();
    let escape = rt.outside.join("escape");
    std::fs::create_dir(&escape).unwrap();
    let tag = format!("strata-test-{}", std::process::id());
    let rootfs = rt.container(
        "c1",
        &format!(
            "lxc.mount.entry = {s} mnt/data none bind,ro,create=dir 0 0\n\
             lxc.mount.entry = {s} esc/{tag} none bind,create=dir 0 0\n\
             lxc.mount.entry = {s}/f etc/file none bind,create=file 0 0\n",
            s = src.display()
        ),
    );
    // A symlink in the rootfs pointing at /etc: resolved inside the rootfs, never the host's /etc.
    std::os::unix::fs::symlink("/etc", rootfs.join("esc")).unwrap();
    let esc_inside = format!("/etc/{tag}/f");
    let out = rt.ok(
        "lxc-execute",
        &[
            "-n",
            "c1",
            "--",
            "/bin/sh",
            "-c",
            &format!("cat /mnt/data/f; cat /etc/file; cat {esc_inside}; touch /mnt/data/new 2>/dev/null || echo ro"),
        ],
    );
    assert_eq!(out, "hello\nhello\nhello\nro\n");
    assert!(
        !std::path::Path::new("/etc").join(&tag).exists(),
        "a mount target was made outside the rootfs"
    );
    assert!(rootfs.join("etc").join(&tag).is_dir());
    assert!(!src.join("new").exists());
    rt.assert_clean(&["c1"]);
    // A symlink to a host dir missing in the rootfs: refused, nothing made on the host.
    std::fs::remove_file(rootfs.join("esc")).unwrap();
    std::os::unix::fs::symlink(&escape, rootfs.join("esc")).unwrap();
    let e = rt.fails("lxc-execute", &["-n", "c1", "--", "/bin/true"]);
    assert!(e.contains(&format!("esc/{tag}")), "{e}");
    assert_eq!(
        std::fs::read_dir(&escape).unwrap().count(),
        0,
        "made outside the rootfs"
    );
    rt.assert_clean(&["c1"]);
}

#[test]
fn bad_input_is_one_line_and_leaks_nothing() {
    let rt = Rt::new();
    let rootfs = rt.container("c1", "lxc.init.cmd = /sbin/missing\n");
    let e = rt.fails("lxc-start", &["-n", "c1", "-F"]);
    assert!(e.contains("/sbin/missing") && e.contains("not found"), "{e}");
    let e = rt.fails("lxc-start", &["-n", "c1"]);
    assert!(e.contains("/sbin/missing"), "{e}");
    rt.assert_clean(&["c1"]);

    let cfg = |extra: &str| {
        std::fs::write(
            rt.lxcpath.join("c1/config"),
            format!("lxc.rootfs.path = dir:{}\n{extra}", rootfs.display()),
        )
        .unwrap()
    };
    cfg("lxc.mount.entry = /nonexistent/src mnt none bind,create=dir 0 0\n");
    let e = rt.fails("lxc-execute", &["-n", "c1", "--", "/bin/true"]);
    assert!(e.contains("/nonexistent/src") && e.contains("does not exist"), "{e}");
    rt.assert_clean(&["c1"]);
    // An optional one is skipped.
    cfg("lxc.mount.entry = /nonexistent/src mnt none bind,optional,create=dir 0 0\n");
    rt.ok("lxc-execute", &["-n", "c1", "--", "/bin/true"]);

    cfg("lxc.net.0.type = veth\nlxc.net.0.link = strata-nobr0\n");
    let e = rt.fails("lxc-execute", &["-n", "c1", "--", "/bin/true"]);
    assert!(e.contains("strata-nobr0") && e.contains("does not exist"), "{e}");
    rt.assert_clean(&["c1"]);

    std::fs::write(
        rt.lxcpath.join("c1/config"),
        "lxc.rootfs.path = dir:/nonexistent/rootfs\n",
    )
    .unwrap();
    let e = rt.fails("lxc-execute", &["-n", "c1", "--", "/bin/true"]);
    assert!(e.contains("does not mount"), "{e}");
    rt.assert_clean(&["c1"]);

    let e = rt.fails("lxc-start", &["-n", "nope"]);
    assert!(e.contains("does not exist"), "{e}");
    let e = rt.fails("lxc-stop", &["-n", "nope"]);
    assert!(e.contains("does not exist"), "{e}");
    rt.assert_clean(&["c1"]);
}

#[test]
fn net_none_shares_the_host_network() {
    let rt = Rt::new();
    rt.container("c1", "lxc.net.0.type = none\n");
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let out = rt.ok("lxc-execute", &["-n", "c1", "--", "/bin/ls", "/sys/class/net"]);
    assert_eq!(out.split_whitespace().count(), host.len(), "{out} vs {host:?}");
}

#[test]
fn veth_on_an_existing_bridge() {
    let rt = Rt::new();
    let br = format!("stbr{}", std::process::id() % 100000);
    let ip = |args: &[&str]| std::process::Command::new("ip").args(args).status().unwrap().success();
    assert!(ip(&["link", "add", &br, "type", "bridge"]));
    struct DelLink(String);
    impl Drop for DelLink {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    let _guard = DelLink(br.clone());
    rt.container(
        "c1",
        &format!("lxc.net.0.type = veth\nlxc.net.0.link = {br}\nlxc.net.0.flags = up\nlxc.net.0.name = eth0\n"),
    );
    let out = rt.ok(
        "lxc-execute",
        &[
            "-n",
            "c1",
            "--",
            "/bin/sh",
            "-c",
            "ls /sys/class/net; ip link show eth0",
        ],
    );
    assert!(out.starts_with("eth0\nlo\n"), "{out}");
    assert!(out.contains("UP"), "{out}");
    // The host end was on the bridge and went away with the namespace.
    let t = Instant::now();
    let brif = || std::fs::read_dir(format!("/sys/class/net/{br}/brif")).unwrap().count();
    while brif() > 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(brif(), 0);
    rt.assert_clean(&["c1"]);
}

/// `lxc.namespace.share.*` joins another container's namespaces (by name or
/// pid), `lxc.namespace.keep` keeps the host's, and what LXC refuses is
/// refused in one line.
#[test]
fn namespaces_shared_kept_and_refused() {
    let rt = Rt::new();
    rt.container("c1", "");
    rt.ok("lxc-start", &["-n", "c1"]);
    let pid: i64 = rt.ok("lxc-info", &["-n", "c1", "-p", "-H"]).trim().parse().unwrap();
    let ns = |p: &str, n: &str| std::fs::read_link(format!("/proc/{p}/ns/{n}")).unwrap();
    let p1 = pid.to_string();
    rt.container(
        "c2",
        &format!("lxc.namespace.share.net = c1\nlxc.namespace.share.uts = {pid}\nlxc.namespace.share.ipc = c1\n"),
    );
    let out = rt.ok(
        "lxc-execute",
        &[
            "-n",
            "c2",
            "--",
            "/bin/sh",
            "-c",
            "hostname; for n in net ipc uts; do readlink /proc/self/ns/$n; done",
        ],
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "c1", "a shared uts namespace is not renamed: {out}");
    assert_eq!(l[1], ns(&p1, "net").to_str().unwrap(), "{out}");
    assert_eq!(l[2], ns(&p1, "ipc").to_str().unwrap(), "{out}");
    assert_eq!(l[3], ns(&p1, "uts").to_str().unwrap(), "{out}");

    rt.container("c3", "lxc.namespace.keep = net ipc\n");
    let out = rt.ok(
        "lxc-execute",
        &[
            "-n",
            "c3",
            "--",
            "/bin/sh",
            "-c",
            "for n in net ipc pid; do readlink /proc/self/ns/$n; done",
        ],
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], ns("self", "net").to_str().unwrap());
    assert_eq!(l[1], ns("self", "ipc").to_str().unwrap());
    assert_ne!(l[2], ns("self", "pid").to_str().unwrap());

    for (name, cfg, says) in [
        ("b1", "lxc.namespace.keep = mnt\n", "mount namespace"),
        (
            "b2",
            "lxc.namespace.clone = mnt pid\nlxc.namespace.keep = net\n",
            "cannot both",
        ),
        ("b3", "lxc.namespace.share.net = nosuch\n", "nosuch is not running"),
        ("b4", "lxc.namespace.share.mnt = c1\n", "lxc.namespace.share.mnt"),
        ("b5", "lxc.namespace.clone = mnt bogus\n", "bogus"),
    ] {
        rt.container(name, cfg);
        let e = rt.fails("lxc-execute", &["-n", name, "--", "/bin/true"]);
        assert!(e.contains(says), "{name}: {e}");
    }
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    rt.assert_clean(&["b1", "b2", "b3", "b4", "b5", "c1", "c2", "c3"]);
}

/// `lxc.rootfs.options` remounts the rootfs with its flags (read-only here),
/// `lxc.rootfs.mount` must name a directory, and options strata cannot
/// apply are refused by name.
#[test]
fn rootfs_options_and_mount() {
    let rt = Rt::new();
    let mnt = rt.outside.join("rootfs-mnt");
    std::fs::create_dir(&mnt).unwrap();
    rt.container(
        "c1",
        &format!("lxc.rootfs.options = ro,nosuid\nlxc.rootfs.mount = {}\n", mnt.display()),
    );
    let out = rt.ok(
        "lxc-execute",
        &[
            "-n",
            "c1",
            "--",
            "/bin/sh",
            "-c",
            "touch /etc/x 2>&1 || echo REFUSED; grep ' / ' /proc/mounts",
        ],
    );
    assert!(out.contains("REFUSED"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(" / ") && l.contains(" ro,") && l.contains("nosuid")),
        "{out}"
    );
    assert!(!rt.lxcpath.join("c1/rootfs/etc/x").exists());
    rt.container("c2", "lxc.rootfs.options = discard\n");
    let e = rt.fails("lxc-execute", &["-n", "c2", "--", "/bin/true"]);
    assert!(e.contains("lxc.rootfs.options") && e.contains("discard"), "{e}");
    rt.container("c3", "lxc.rootfs.mount = /nonexistent/dir\n");
    let e = rt.fails("lxc-execute", &["-n", "c3", "--", "/bin/true"]);
    assert!(e.contains("lxc.rootfs.mount"), "{e}");
    rt.assert_clean(&["c1", "c2", "c3"]);
}

/// `lxc.sysctl.*` (in the container's own network namespace), `lxc.prlimit.*`,
/// `lxc.init.uid/gid/cwd` and `lxc.no_new_privs`, seen from inside.
#[test]
fn sysctls_limits_ids_and_cwd_apply_inside() {
    let rt = Rt::new();
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let want_fwd = if host_fwd.trim() == "1" { "0" } else { "1" };
    rt.container(
        "c1",
        &format!(
            "lxc.sysctl.net.ipv4.ip_forward = {want_fwd}\nlxc.prlimit.nofile = 512:1024\nlxc.prlimit.core = 0\n\
             lxc.init.uid = 1000\nlxc.init.gid = 1001\nlxc.init.cwd = /tmp\nlxc.no_new_privs = 1\n"
        ),
    );
    let out = rt.ok(
        "lxc-execute",
        &[
            "-n",
            "c1",
            "--",
            "/bin/sh",
            "-c",
            "cat /proc/sys/net/ipv4/ip_forward; ulimit -n; ulimit -Hn; ulimit -c; id -u; id -g; pwd; \
             grep -E '^(NoNewPrivs|CapEff):' /proc/self/status",
        ],
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[..7], [want_fwd, "512", "1024", "0", "1000", "1001", "/tmp"], "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
    rt.assert_clean(&["c1"]);
}

/// The container's cgroups go when it stops, and after a kill -9 of both
/// monitor and init, with the next command (reconcile).
#[test]
fn cgroups_are_removed_at_stop_and_by_reconcile() {
    // Its own name: cgroup names are per host, and another test's "c1"
    // may take lxc.payload.c1 the moment this one frees it.
    let rt = Rt::new();
    rt.container("cgrm", "lxc.cgroup.pids.max = 50\n");
    let cgroups = |rt: &Rt| -> Vec<String> {
        rt.record("cgrm").unwrap()["cgroups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    rt.ok("lxc-start", &["-n", "cgrm"]);
    let cg = cgroups(&rt);
    assert!(
        !cg.is_empty() && cg.iter().all(|c| std::path::Path::new(c).is_dir()),
        "{cg:?}"
    );
    assert!(cg
        .iter()
        .any(|c| std::fs::read_to_string(format!("{c}/pids.max")).is_ok_and(|v| v.trim() == "50")));
    rt.ok("lxc-stop", &["-n", "cgrm", "-k"]);
    assert!(
        cg.iter().all(|c| !std::path::Path::new(c).exists()),
        "left at stop: {cg:?}"
    );
    rt.ok("lxc-start", &["-n", "cgrm"]);
    let cg = cgroups(&rt);
    let rec = rt.record("cgrm").unwrap();
    for k in ["monitor_pid", "init_pid"] {
        // SAFETY: kill takes integers only and touches no memory; the pid comes from the run record of a container
        // this test started.
        unsafe { libc::kill(rec[k].as_i64().unwrap() as i32, libc::SIGKILL) };
    }
    let t = Instant::now();
    while cg.iter().any(|c| std::path::Path::new(c).exists()) && t.elapsed() < Duration::from_secs(10) {
        rt.ok("lxc-ls", &[]);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        cg.iter().all(|c| !std::path::Path::new(c).exists()),
        "left after reconcile: {cg:?}"
    );
    rt.assert_clean(&["cgrm"]);
}

/// A daemonized container gets a console of its own (a pty the monitor
/// holds and drains), and `lxc.console.logfile` records what it says.
#[test]
fn daemon_console_is_a_pty_logged_to_the_logfile() {
    let rt = Rt::new();
    let log = rt.outside.join("console.log");
    let rootfs = rt.container("c1", &format!("lxc.console.logfile = {}\n", log.display()));
    std::fs::write(
        rootfs.join("bin/hello"),
        "#!/bin/sh\nfor i in $(seq 1 2000); do echo hello-console-$i > /dev/console; done\nexec sleep 1000\n",
    )
    .unwrap();
    std::fs::set_permissions(
        rootfs.join("bin/hello"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    rt.ok("lxc-start", &["-n", "c1", "--", "/bin/hello"]);
    let t = Instant::now();
    // 2000 lines are far more than a pty buffers: init would block if no one drained it.
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("hello-console-2000")
        && t.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("hello-console-1\r\n") && text.contains("hello-console-2000"),
        "{text:.200}"
    );
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    rt.assert_clean(&["c1"]);
}

/// `lxc-stop -r` sends `lxc.signal.reboot` (SIGINT unless set); an init that
/// then calls reboot(2) is started again by its monitor, as under LXC.
#[test]
fn reboot_restarts_the_container() {
    let rt = Rt::new();
    let rootfs = rt.container("c1", "lxc.signal.reboot = SIGUSR1\n");
    std::fs::write(
        rootfs.join("sbin/init"),
        "#!/bin/sh\necho boot >> /boots\ntrap '/bin/busybox reboot -f' USR1\nwhile :; do sleep 0.1; done\n",
    )
    .unwrap();
    rt.ok("lxc-start", &["-n", "c1"]);
    let boots = || {
        std::fs::read_to_string(rootfs.join("boots"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let t = Instant::now();
    while boots() < 1 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid1 = rt.record("c1").unwrap()["init_pid"].as_i64().unwrap();
    rt.ok("lxc-stop", &["-n", "c1", "-r", "-t", "10"]);
    let pid2 = rt.record("c1").unwrap()["init_pid"].as_i64().unwrap();
    assert_ne!(pid1, pid2);
    assert_eq!(rt.state("c1"), "RUNNING");
    let t = Instant::now();
    while boots() < 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(boots(), 2);
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    rt.assert_clean(&["c1"]);
}

/// `lxc-execute` without a command runs `lxc.execute.cmd`, as LXC does.
#[test]
fn execute_runs_lxc_execute_cmd() {
    let rt = Rt::new();
    rt.container("c2", "lxc.execute.cmd = /bin/hostname\n");
    assert_eq!(rt.ok("lxc-execute", &["-n", "c2"]).trim(), "c2");
    rt.container("c3", "");
    let e = rt.fails("lxc-execute", &["-n", "c3"]);
    assert!(e.contains("lxc.execute.cmd"), "{e}");
    rt.assert_clean(&["c2", "c3"]);
}

/// `lxc.arch = i686` runs init with the linux32 personality (uname says
/// i686), `amd64` as the host; another architecture is refused by name.
#[test]
fn lxc_arch_sets_the_personality() {
    let rt = Rt::new();
    rt.container("c1", "lxc.arch = i686\n");
    rt.container("c2", "lxc.arch = amd64\n");
    rt.container("c3", "lxc.arch = arm64\n");
    let m = |n: &str| rt.ok("lxc-execute", &["-n", n, "--", "/bin/busybox", "uname", "-m"]);
    assert_eq!(m("c1").trim(), "i686");
    assert_eq!(m("c2").trim(), "x86_64");
    let e = rt.fails("lxc-execute", &["-n", "c3", "--", "/bin/true"]);
    assert!(e.contains("lxc.arch"), "{e}");
    rt.assert_clean(&["c1", "c2", "c3"]);
}
