//! LXC's flags of lxc-start, lxc-execute and lxc-attach, and the common
//! `--rcfile` and `--usage`, on real containers.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use strata_testkit::wait_until;

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
    // The hooks are told which file was read.
    let hook = rt.outside.join("hook.sh");
    let seen = rt.outside.join("hook.seen");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$LXC_CONFIG_FILE\" > {}\n", seen.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rc2 = rt.outside.join("rc2.conf");
    std::fs::write(
        &rc2,
        format!(
            "lxc.rootfs.path = dir:{}\nlxc.hook.pre-start = {}\n",
            rootfs.display(),
            hook.display()
        ),
    )
    .unwrap();
    rt.ok(
        "lxc-execute",
        &["-n", "c1", "-f", rc2.to_str().unwrap(), "--", "/bin/true"],
    );
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), rc2.to_str().unwrap());
    // lxc-info reads it too.
    assert_eq!(
        rt.ok("lxc-info", &["-n", "c1", "--rcfile", rcs, "-c", "lxc.uts.name", "-H"]),
        "fromrc\n"
    );

    // Refused with one line, nothing left behind.
    let norootfs = rt.outside.join("norootfs.conf");
    std::fs::write(&norootfs, "lxc.uts.name = x\n").unwrap();
    let eph = rt.outside.join("eph.conf");
    std::fs::write(&eph, "lxc.rootfs.path = dir:/var/empty\nlxc.ephemeral = 1\n").unwrap();
    for (args, says) in [
        (vec!["-s", "lxc.bogus.key=1"], "unknown configuration key"),
        (vec!["-s", "lxc.utsname=old"], "unknown configuration key"),
        (vec!["-s", "novalue"], "KEY=VAL"),
        (vec!["-f", "/nonexistent/rc"], "rcfile"),
        (vec!["-f", norootfs.to_str().unwrap()], "no lxc.rootfs.path"),
        (vec!["-f", eph.to_str().unwrap()], "lxc.ephemeral = 1"),
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

/// Init of `rootfs`: notes which of SIGPWR, SIGUSR1, SIGUSR2 stopped it in
/// /tmp/how, and writes /tmp/ready once its traps are set.
fn signal_noting_init(rootfs: &std::path::Path) {
    std::fs::write(
        rootfs.join("sbin/init"),
        "#!/bin/sh\nfor s in PWR USR1 USR2; do trap \"echo $s > /tmp/how; exit 0\" $s; done\n\
         rm -f /tmp/how; touch /tmp/ready\nwhile :; do sleep 0.05; done\n",
    )
    .unwrap();
}

/// Start `name` with `args`, wait for its traps, stop it with `stop`; the
/// signal that stopped it.
fn stopped_by(rt: &Rt, rootfs: &std::path::Path, name: &str, args: &[&str], stop: &[&str]) -> String {
    start_trapping(rt, rootfs, name, args);
    stop_noted(rt, rootfs, name, stop)
}

/// Start `name` (daemonized) with `args` and wait for its init's traps.
fn start_trapping(rt: &Rt, rootfs: &std::path::Path, name: &str, args: &[&str]) {
    let _ = std::fs::remove_file(rootfs.join("tmp/ready"));
    let mut a = vec!["-n", name, "-d"];
    a.extend(args);
    rt.ok("lxc-start", &a);
    wait_until("init's traps", || rootfs.join("tmp/ready").exists());
}

/// `lxc-stop -n name STOP`, which must not wait out a timeout; the signal
/// that stopped init.
fn stop_noted(rt: &Rt, rootfs: &std::path::Path, name: &str, stop: &[&str]) -> String {
    let mut a = vec!["-n", name];
    a.extend(stop);
    let t = std::time::Instant::now();
    rt.ok("lxc-stop", &a);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "lxc-stop {a:?} waited"
    );
    assert_eq!(rt.state(name), "STOPPED");
    std::fs::read_to_string(rootfs.join("tmp/how"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `lxc.signal.*` given to the start (`-s`, `-f`) are the ones lxc-stop
/// uses: the monitor records them; `lxc-stop --rcfile` gives the halt
/// signal, as LXC's lxc-stop reads it from the file it loaded.
#[test]
fn stop_signals_from_the_start() {
    let rt = Rt::new();
    let rootfs = rt.container("c1", "");
    signal_noting_init(&rootfs);
    // The container's own config: LXC's default halt signal.
    assert_eq!(stopped_by(&rt, &rootfs, "c1", &[], &[]), "PWR");
    assert_eq!(
        stopped_by(&rt, &rootfs, "c1", &["-s", "lxc.signal.halt=SIGUSR1"], &[]),
        "USR1"
    );
    // A hard stop sends lxc.signal.stop.
    assert_eq!(
        stopped_by(&rt, &rootfs, "c1", &["-s", "lxc.signal.stop=USR2"], &["-k"]),
        "USR2"
    );
    let rc = rt.outside.join("rc.conf");
    std::fs::write(
        &rc,
        format!(
            "lxc.rootfs.path = dir:{}\nlxc.mount.auto = proc:mixed\nlxc.signal.halt = SIGUSR2\n",
            rootfs.display()
        ),
    )
    .unwrap();
    let rcs = rc.to_str().unwrap();
    assert_eq!(stopped_by(&rt, &rootfs, "c1", &["-f", rcs], &[]), "USR2");
    // lxc-stop --rcfile: that file's halt signal.
    assert_eq!(
        stopped_by(
            &rt,
            &rootfs,
            "c1",
            &["-s", "lxc.signal.halt=SIGUSR1"],
            &["--rcfile", rcs]
        ),
        "USR2"
    );
    // A bad one is refused by the start, naming the key, nothing left.
    let e = rt.fails("lxc-start", &["-n", "c1", "-s", "lxc.signal.halt=SIGNOPE"]);
    assert!(e.contains("lxc.signal.halt"), "{e}");
    rt.assert_clean(&["c1"]);
}

/// A run record an older strata wrote has no signals: lxc-stop then reads
/// `lxc.signal.*` from the container's config as it is now, as LXC's
/// lxc-stop reads them, instead of falling back to LXC's defaults.
#[test]
fn stop_signals_of_an_older_record_from_the_config() {
    let rt = Rt::new();
    let rootfs = rt.container("parsig1", "");
    signal_noting_init(&rootfs);
    let older = |name: &str| {
        let key = rt.lxcpath.display().to_string().replace('_', "__").replace('/', "_");
        let p = rt.run_dir.join("state").join(key).join(format!("{name}.json"));
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert!(v.get("signals").is_some(), "a new record has its signals: {v}");
        v.as_object_mut().unwrap().remove("signals");
        let tmp = p.with_extension("older");
        std::fs::write(&tmp, serde_json::to_vec(&v).unwrap()).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
    };
    let cfg = rt.lxcpath.join("parsig1/config");
    let base = std::fs::read_to_string(&cfg).unwrap();
    for (conf, stop, sig) in [
        ("lxc.signal.halt = SIGUSR1\n", &[][..], "USR1"),
        ("lxc.signal.stop = SIGUSR2\n", &["-k"][..], "USR2"),
        ("", &[][..], "PWR"),
    ] {
        std::fs::write(&cfg, &base).unwrap();
        start_trapping(&rt, &rootfs, "parsig1", &[]);
        older("parsig1");
        // Set after the start: only a stop that reads the config sees it.
        std::fs::write(&cfg, format!("{base}{conf}")).unwrap();
        assert_eq!(stop_noted(&rt, &rootfs, "parsig1", stop), sig, "{conf}");
    }
    rt.assert_clean(&["parsig1"]);
}

/// `-f FILE` (or `-s`) naming another rootfs than the defined container's:
/// LXC's lxc-start clears the container's config and loads the file alone,
/// so the container runs on the file's rootfs, and so does strata's; its
/// own rootfs is not touched, and the tools see the run under its name.
#[test]
fn rcfile_with_another_rootfs_runs_on_it() {
    let rt = Rt::new();
    let own = rt.container("parrc1", "");
    let other = rt.outside.join("otherfs");
    make_rootfs(&other);
    std::fs::write(other.join("etc/base-marker"), "other\n").unwrap();
    let before = listing(&own);
    let rc = rt.outside.join("other.conf");
    std::fs::write(
        &rc,
        format!(
            "lxc.rootfs.path = dir:{}\nlxc.uts.name = otherhost\nlxc.mount.auto = proc:mixed\n",
            other.display()
        ),
    )
    .unwrap();
    let rcs = rc.to_str().unwrap();
    let cat = ["--", "/bin/sh", "-c", "hostname; cat /etc/base-marker"];
    let mut a = vec!["-n", "parrc1", "-f", rcs];
    a.extend(cat);
    assert_eq!(rt.ok("lxc-execute", &a), "otherhost\nother\n");
    let spec = format!("lxc.rootfs.path=dir:{}", other.display());
    let mut a = vec!["-n", "parrc1", "-s", spec.as_str()];
    a.extend(cat);
    assert_eq!(rt.ok("lxc-execute", &a), "parrc1\nother\n");
    // Started in the background: running under its name, on that rootfs.
    rt.ok("lxc-start", &["-n", "parrc1", "-d", "-f", rcs]);
    assert_eq!(rt.state("parrc1"), "RUNNING");
    assert_eq!(
        rt.ok("lxc-attach", &["-n", "parrc1", "--", "/bin/cat", "/etc/base-marker"]),
        "other\n"
    );
    // lxc-info -c reads the container's config file, as LXC's does.
    assert_eq!(
        rt.ok("lxc-info", &["-n", "parrc1", "-c", "lxc.rootfs.path", "-H"])
            .trim(),
        own.display().to_string()
    );
    // A second start of the same name is refused, whichever file it names.
    let e = rt.fails("lxc-start", &["-n", "parrc1", "-d"]);
    assert!(e.contains("running"), "{e}");
    rt.ok("lxc-stop", &["-n", "parrc1", "-t", "10"]);
    assert_eq!(rt.state("parrc1"), "STOPPED");
    assert_eq!(listing(&own), before, "the container's own rootfs was touched");
    assert_eq!(std::fs::read_to_string(own.join("etc/base-marker")).unwrap(), "base\n");
    rt.assert_clean(&["parrc1"]);
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
    wait_until("pidfile removed", || !pf.exists());
    // A relative path is taken from where lxc-start was run (the daemon works in /).
    let o = rt
        .cmd("lxc-start", &["-n", "c1", "--pidfile", "rel.pid"])
        .current_dir(&rt.outside)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(rt.outside.join("rel.pid").exists());
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    wait_until("pidfile removed", || !rt.outside.join("rel.pid").exists());
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
        wait_until("the command ran", || {
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

/// The container's bounding set as a number, from inside an attach.
fn cap_bnd(out: &str) -> u64 {
    let v = out
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap_or_else(|| panic!("no CapBnd in {out}"));
    u64::from_str_radix(v.trim(), 16).unwrap()
}

#[test]
fn attach_elevated_namespaces_env_arch_and_rcfile() {
    let rt = Rt::new();
    let rootfs = rt.container("c1", "lxc.cap.drop = sys_time\n");
    rt.ok("lxc-start", &["-n", "c1"]);
    let pid: i64 = rt.ok("lxc-info", &["-n", "c1", "-p", "-H"]).trim().parse().unwrap();
    let ns = |p: &str, n: &str| std::fs::read_link(format!("/proc/{p}/ns/{n}")).unwrap();
    let p1 = pid.to_string();
    let sys_time = 1u64 << 25;
    let sys_admin = 1u64 << 21;

    // -e CAP keeps the caller's bounding set; by default it is the container's.
    let status = ["--", "/bin/cat", "/proc/self/status"];
    let mut a = vec!["-n", "c1"];
    a.extend(status);
    assert_eq!(cap_bnd(&rt.ok("lxc-attach", &a)) & sys_time, 0);
    let mut a = vec!["-n", "c1", "--elevated-privileges=CAP"];
    a.extend(status);
    assert_ne!(cap_bnd(&rt.ok("lxc-attach", &a)) & sys_time, 0);
    // -f: the rcfile's confinement instead of the container's.
    let rc = rt.outside.join("rc.conf");
    std::fs::write(
        &rc,
        format!("lxc.rootfs.path = dir:{}\nlxc.cap.drop = sys_admin\n", rootfs.display()),
    )
    .unwrap();
    let mut a = vec!["-n", "c1", "-f", rc.to_str().unwrap()];
    a.extend(status);
    let b = cap_bnd(&rt.ok("lxc-attach", &a));
    assert_eq!(b & sys_admin, 0, "{b:x}");
    assert_ne!(b & sys_time, 0, "{b:x}");

    // -e CGROUP leaves the command in the caller's cgroups (outside the
    // container's cgroup namespace root, so shown with ..).
    let cg = ["--", "/bin/cat", "/proc/self/cgroup"];
    let mut a = vec!["-n", "c1"];
    a.extend(cg);
    let inside = rt.ok("lxc-attach", &a);
    assert!(!inside.contains(".."), "{inside}");
    let mut a = vec!["-n", "c1", "-e=CGROUP"];
    a.extend(cg);
    let outside = rt.ok("lxc-attach", &a);
    assert!(outside.contains("/.."), "{outside}");
    let mut a = vec!["-n", "c1", "-e"];
    a.extend(status);
    assert_ne!(cap_bnd(&rt.ok("lxc-attach", &a)) & sys_time, 0);

    // -s: only the named namespaces; without MOUNT the command runs on the host's files.
    let out = rt.ok(
        "lxc-attach",
        &[
            "-n",
            "c1",
            "-s",
            "UTSNAME|NETWORK",
            "--",
            "/bin/sh",
            "-c",
            "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/mnt; test -e /etc/os-release && echo host-fs",
        ],
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "c1", "{out}");
    assert_eq!(l[1], ns(&p1, "net").to_str().unwrap(), "{out}");
    assert_eq!(l[2], ns("self", "mnt").to_str().unwrap(), "{out}");
    assert_eq!(l[3], "host-fs", "{out}");
    assert!(!rootfs.join("etc/os-release").exists());
    // -R: /proc and /sys of the joined pid and network namespaces.
    let script = "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /sys/class/net";
    let plain = rt.ok(
        "lxc-attach",
        &["-n", "c1", "-s", "PID|NETWORK", "--", "/bin/sh", "-c", script],
    );
    let remounted = rt.ok(
        "lxc-attach",
        &["-n", "c1", "-s", "PID|NETWORK", "-R", "--", "/bin/sh", "-c", script],
    );
    let cmdline = |p: &str| {
        let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap();
        let mut s: String = String::from_utf8_lossy(&c).replace('\0', " ");
        s.push('\n');
        s
    };
    assert!(remounted.starts_with(&cmdline(&p1)), "{remounted}");
    assert_eq!(remounted.lines().skip(1).collect::<Vec<_>>(), ["lo"], "{remounted}");
    assert!(plain.starts_with(&cmdline("1")), "the host's /proc without -R: {plain}");
    // The host's /proc is untouched.
    assert!(std::fs::read_to_string("/proc/1/cmdline").is_ok());

    // --clear-env keeps only container=lxc, a PATH, and --keep-var's.
    let o = rt
        .cmd(
            "lxc-attach",
            &[
                "-n",
                "c1",
                "--clear-env",
                "--keep-var",
                "FOO",
                "-v",
                "BAR=2",
                "--",
                "/bin/sh",
                "-c",
                "env | sort",
            ],
        )
        .env("FOO", "1")
        .env("OTHER", "x")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let env = String::from_utf8_lossy(&o.stdout);
    let names: Vec<&str> = env.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect();
    for want in ["BAR", "FOO", "PATH", "container"] {
        assert!(names.contains(&want), "{want}: {env}");
    }
    assert!(!names.contains(&"OTHER"), "{env}");
    assert!(env.contains("FOO=1\n") && env.contains("container=lxc\n"), "{env}");
    let o = rt
        .cmd(
            "lxc-attach",
            &["-n", "c1", "--keep-env", "--", "/bin/sh", "-c", "echo $OTHER"],
        )
        .env("OTHER", "x")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "x\n");

    // -a: the personality.
    assert_eq!(
        rt.ok(
            "lxc-attach",
            &["-n", "c1", "-a", "i686", "--", "/bin/sh", "-c", "uname -m"]
        ),
        "i686\n"
    );
    assert_eq!(
        rt.ok("lxc-attach", &["-n", "c1", "--", "/bin/sh", "-c", "uname -m"]),
        "x86_64\n"
    );

    // What cannot be honoured: one line, nothing run.
    let selinux = std::path::Path::new("/sys/fs/selinux/enforce").exists();
    let mut refusals = vec![
        (vec!["-e=BOGUS"], "BOGUS"),
        (vec!["-s", "MOUNT|BOGUS"], "BOGUS"),
        (vec!["-a", "arm64"], "arm64"),
        (vec!["--keep-var", "FOO"], "--clear-env"),
        (vec!["-R"], "-s without MOUNT"),
        (vec!["-s", "MOUNT|PID", "-R"], "-s without MOUNT"),
        (vec!["-e", "-c", "system_u:system_r:unconfined_t:s0"], "LSM"),
    ];
    if !selinux {
        refusals.push((
            vec!["-c", "system_u:system_r:unconfined_t:s0"],
            "SELinux is not enabled",
        ));
    }
    for (args, says) in refusals {
        let mut a = vec!["-n", "c1"];
        a.extend(args.iter().copied());
        a.extend(["--", "/bin/touch", "/ran"]);
        let e = rt.fails("lxc-attach", &a);
        assert!(e.contains(says), "{a:?}: {e}");
        assert!(!rootfs.join("ran").exists(), "{a:?} ran the command");
    }
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    rt.assert_clean(&["c1"]);
}

#[test]
fn usage_and_rcfile_everywhere() {
    let rt = Rt::new();
    rt.container("c1", "");
    for t in [
        "lxc-start",
        "lxc-stop",
        "lxc-execute",
        "lxc-attach",
        "lxc-info",
        "lxc-copy",
        "lxc-ls",
        "lxc-destroy",
        "lxc-create",
        "lxc-wait",
        "lxc-freeze",
        "lxc-unfreeze",
        "lxc-cgroup",
        "lxc-monitor",
        "lxc-autostart",
    ] {
        let o = rt.run(t, &["--usage"]);
        assert!(o.status.success(), "{t}: {}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with(&format!("Usage: {t} ")), "{t}: {out}");
        let help = rt.ok(t, &["--help"]);
        assert!(help.contains("--usage") && help.contains("--rcfile"), "{t}: {help}");
        assert_eq!(rt.ok(t, &["-?"]), help, "{t}: -? is --help, as in LXC");
    }
    let own = rt.lxcpath.join("c1/config");
    let own = own.to_str().unwrap();
    let other = rt.outside.join("other.conf");
    std::fs::write(&other, "lxc.uts.name = x\n").unwrap();
    let other = other.to_str().unwrap();
    // Tools without a container config of their own refuse it by name.
    for t in ["lxc-ls", "lxc-autostart", "lxc-monitor"] {
        let e = rt.fails(t, &["--rcfile", own]);
        assert!(e.contains("--rcfile"), "{t}: {e}");
    }
    // Storage tools take the container's own config only.
    let e = rt.fails("lxc-destroy", &["-n", "c1", "--rcfile", other]);
    assert!(e.contains("own config"), "{e}");
    let e = rt.fails("lxc-copy", &["-n", "c1", "-N", "c2", "--rcfile", other]);
    assert!(e.contains("own config"), "{e}");
    rt.ok("lxc-copy", &["-n", "c1", "-N", "c2", "--rcfile", own]);
    // One that does not load is refused.
    let e = rt.fails("lxc-freeze", &["-n", "c1", "--rcfile", "/nonexistent"]);
    assert!(e.contains("rcfile"), "{e}");
    rt.ok(
        "lxc-destroy",
        &["-n", "c2", "--rcfile", rt.lxcpath.join("c2/config").to_str().unwrap()],
    );
    rt.assert_clean(&["c1"]);
}

/// `tool args` on a pseudo-terminal (util-linux `script`); what it drew.
fn on_pty(rt: &Rt, tool: &str, args: &[&str]) -> String {
    let ts = rt.outside.join("typescript");
    let mut line = format!("{} -P {}", rt.bin.join(tool).display(), rt.lxcpath.display());
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let o = Command::new("script")
        .args(["-qec", &line])
        .arg(&ts)
        .env("STRATA_RUN_DIR", &rt.run_dir)
        .env("LXC_GLOBAL_CONF", rt.tmp.path().join("lxc.conf"))
        .env("COLUMNS", "100")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{line}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&std::fs::read(&ts).unwrap()).into_owned()
}

#[test]
fn copies_show_a_bar_and_a_summary_on_a_terminal_only() {
    let rt = Rt::new();
    let rootfs = rt.container("c1", "");
    std::fs::write(rootfs.join("big"), vec![7u8; 3 << 20]).unwrap();
    let n = walk_count(&rootfs);
    let shown = on_pty(&rt, "lxc-copy", &["-n", "c1", "-N", "c2"]);
    // The bar with the totals known before the copy, and the summary.
    assert!(shown.contains("  0% 0 B/"), "{shown}");
    assert!(shown.contains(&format!("/{n} entries")), "{shown}");
    assert!(shown.contains("ETA"), "{shown}");
    assert!(shown.contains(&format!("copied {n} entries, ")), "{shown}");
    // Snapshots and restores go through the same engine.
    let shown = on_pty(&rt, "lxc-snapshot", &["-n", "c2"]);
    assert!(shown.contains(&format!("copied {n} entries, ")), "{shown}");
    let shown = on_pty(&rt, "lxc-snapshot", &["-n", "c2", "-r", "snap0", "-N", "c3"]);
    assert!(shown.contains(&format!("copied {n} entries, ")), "{shown}");
    // Without a terminal: nothing extra.
    let o = rt.run("lxc-copy", &["-n", "c1", "-N", "c4"]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    for c in ["c4", "c3", "c2"] {
        rt.ok("lxc-destroy", &["-n", c, "-s"]);
    }
    rt.assert_clean(&["c1"]);
}

/// Entries below `d`, as the copy counts them.
fn walk_count(d: &std::path::Path) -> usize {
    let mut n = 0;
    strata_testkit::tree::walk(d, |_, _| n += 1);
    n - 1
}

#[test]
fn create_template_help_shows_the_templates_options() {
    let rt = Rt::new();
    let tdir = rt.outside.join("templates");
    std::fs::create_dir(&tdir).unwrap();
    let tpl = tdir.join("lxc-mine");
    std::fs::write(
        &tpl,
        "#!/bin/sh\n[ \"$1\" = -h ] && { echo 'mine template: --release R'; exit 0; }\ntouch \"$0.ran\"; exit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&tpl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let help = |args: &[&str]| {
        let o = rt
            .cmd("lxc-create", args)
            .env("STRATA_TEMPLATE_DIR", &tdir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    for args in [
        &["-t", "mine", "-h"][..],
        &["--template", "mine", "--help"],
        &["--template=mine", "-h"],
        &["-tmine", "-h"],
    ] {
        let out = help(args);
        // lxc-create's own help, then the template's.
        let own = out.find("--template").unwrap_or_else(|| panic!("{args:?}: {out}"));
        let theirs = out
            .find("mine template: --release R")
            .unwrap_or_else(|| panic!("{args:?}: {out}"));
        assert!(own < theirs, "{out}");
    }
    // As LXC: a template named after -h is not known yet.
    assert!(!help(&["-h", "-t", "mine"]).contains("mine template"));
    assert!(
        !tdir.join("lxc-mine.ran").exists(),
        "the template was only asked for its help"
    );
    let e = rt.fails("lxc-create", &["-t", "nosuch", "-h"]);
    assert!(e.contains("nosuch"), "{e}");
    assert!(rt.entries().is_empty());
    // The template section is what Debian's LXC shows for its busybox template.
    let busybox = std::path::Path::new("/usr/share/lxc/templates/lxc-busybox");
    if busybox.exists() && std::path::Path::new("/usr/bin/lxc-create").exists() {
        let theirs = Command::new("/usr/bin/lxc-create")
            .args(["-t", "busybox", "-h"])
            .output()
            .unwrap();
        let ours = rt.ok("lxc-create", &["-t", "busybox", "-h"]);
        let tpl = Command::new(busybox).arg("-h").output().unwrap();
        let tpl = String::from_utf8_lossy(&tpl.stdout).into_owned();
        assert!(String::from_utf8_lossy(&theirs.stdout).contains(&tpl));
        assert!(ours.ends_with(&tpl), "{ours}");
    }
}

#[test]
fn stop_nolock_and_create_rbd_flags() {
    let rt = Rt::new();
    rt.container("c1", "");
    rt.ok("lxc-start", &["-n", "c1"]);
    let e = rt.fails("lxc-stop", &["-n", "c1", "--nolock"]);
    assert!(e.contains("-k"), "{e}");
    assert_eq!(rt.state("c1"), "RUNNING");
    rt.ok("lxc-stop", &["-n", "c1", "-k", "--nolock"]);
    assert_eq!(rt.state("c1"), "STOPPED");
    let e = rt.fails("lxc-create", &["-n", "c2", "-t", "none", "--rbdname", "x"]);
    assert!(e.contains("-B rbd"), "{e}");
    let e = rt.fails("lxc-create", &["-n", "c2", "-t", "none", "-B", "dir", "--rbdpool", "p"]);
    assert!(e.contains("--rbdpool needs -B rbd"), "{e}");
    assert!(!rt.lxcpath.join("c2").exists());
    rt.assert_clean(&["c1"]);
}

#[test]
fn attach_pty_log() {
    let rt = Rt::new();
    let rootfs = rt.container("c1", "");
    rt.ok("lxc-start", &["-n", "c1"]);
    let log = rt.outside.join("pty.log");
    let logs = log.to_str().unwrap();
    // Without a terminal the pty is raw: the output is what the command wrote.
    let o = rt.run(
        "lxc-attach",
        &[
            "-n",
            "c1",
            "-L",
            logs,
            "--",
            "/bin/sh",
            "-c",
            "echo hello; tty; test -t 0 && echo on-a-tty; exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "hello", "{out}");
    assert!(l[1].starts_with("/dev/pts/"), "{out}");
    assert_eq!(l[2], "on-a-tty", "{out}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        out,
        "the log has what was shown"
    );
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    // Input goes through the pty to the command; the log is appended to.
    let mut c = rt.cmd(
        "lxc-attach",
        &[
            "-n",
            "c1",
            "--pty-log",
            logs,
            "--",
            "/bin/sh",
            "-c",
            "read x; echo got $x",
        ],
    );
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut ch = c.spawn().unwrap();
    {
        use std::io::Write;
        ch.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    }
    let o = ch.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "got abc\n");
    assert!(std::fs::read_to_string(&log).unwrap().ends_with("on-a-tty\ngot abc\n"));
    // On a terminal: the caller's terminal lends its input and shows the output.
    let shown = on_pty(
        &rt,
        "lxc-attach",
        &["-n", "c1", "-L", logs, "--", "/bin/echo", "via-terminal"],
    );
    assert!(shown.contains("via-terminal"), "{shown}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("via-terminal"));
    // A log that cannot be written: one line, nothing run.
    let e = rt.fails(
        "lxc-attach",
        &["-n", "c1", "-L", "/nonexistent/dir/log", "--", "/bin/touch", "/ran"],
    );
    assert!(e.contains("/nonexistent/dir/log"), "{e}");
    assert!(!rootfs.join("ran").exists());
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    rt.assert_clean(&["c1"]);
}

/// Debian's LXC, if installed with its init for lxc-execute.
fn lxc_installed() -> bool {
    std::path::Path::new("/usr/bin/lxc-execute").exists()
        && (std::path::Path::new("/usr/sbin/init.lxc.static").exists()
            || std::path::Path::new("/usr/sbin/init.lxc").exists())
}

/// The same flags under strata and under Debian's LXC, on the same kind of container.
#[test]
fn start_and_execute_flags_match_lxc() {
    if !lxc_installed() {
        eprintln!("skipped: Debian's lxc is not installed");
        return;
    }
    let rt = Rt::new();
    let lxc_path = rt.tmp.path().join("lxc-side");
    std::fs::create_dir(&lxc_path).unwrap();
    let config = |rootfs: &std::path::Path, name: &str| {
        format!(
            "lxc.rootfs.path = dir:{}\nlxc.uts.name = {name}\nlxc.mount.auto = proc:mixed sys:ro\nlxc.net.0.type = empty\n",
            rootfs.display()
        )
    };
    let ours = rt.lxcpath.join("c1");
    make_rootfs(&ours.join("rootfs"));
    std::fs::write(ours.join("config"), config(&ours.join("rootfs"), "c1")).unwrap();
    let theirs = lxc_path.join("c1");
    make_rootfs(&theirs.join("rootfs"));
    std::fs::write(theirs.join("config"), config(&theirs.join("rootfs"), "c1")).unwrap();
    let lxc = |tool: &str, args: &[&str]| {
        Command::new(format!("/usr/bin/{tool}"))
            .arg("-P")
            .arg(&lxc_path)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // -s and -u/-g of lxc-execute.
    let args = [
        "-n",
        "c1",
        "-s",
        "lxc.uts.name=fromdefine",
        "-u",
        "1234",
        "-g",
        "4321",
        "--",
        "/bin/sh",
        "-c",
        "hostname; id -u; id -g",
    ];
    let o = lxc("lxc-execute", &args);
    assert!(o.status.success(), "LXC: {}", String::from_utf8_lossy(&o.stderr));
    let want = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(want, "fromdefine\n1234\n4321\n", "LXC itself");
    assert_eq!(rt.ok("lxc-execute", &args), want);
    // -p: the monitor's pid, without a newline, 0600, gone after the stop.
    for (side, pf) in [("lxc", lxc_path.join("c1.pid")), ("strata", rt.outside.join("c1.pid"))] {
        let pfs = pf.to_str().unwrap();
        if side == "lxc" {
            let o = lxc("lxc-start", &["-n", "c1", "-d", "-p", pfs]);
            assert!(o.status.success(), "LXC: {}", String::from_utf8_lossy(&o.stderr));
        } else {
            rt.ok("lxc-start", &["-n", "c1", "-d", "-p", pfs]);
        }
        wait_until("pidfile", || pf.exists());
        let text = std::fs::read_to_string(&pf).unwrap();
        let pid: i32 = text.parse().unwrap_or_else(|_| panic!("{side}: {text:?}"));
        assert!(!text.ends_with('\n'), "{side}");
        assert_eq!(
            std::fs::metadata(&pf).unwrap().permissions().mode() & 0o777,
            0o600,
            "{side}"
        );
        // The monitor: the parent of the container's init.
        let init = if side == "lxc" {
            String::from_utf8_lossy(&lxc("lxc-info", &["-n", "c1", "-p", "-H"]).stdout)
                .trim()
                .to_string()
        } else {
            rt.ok("lxc-info", &["-n", "c1", "-p", "-H"]).trim().to_string()
        };
        let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
        let ppid: i32 = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ppid, pid, "{side}: the pidfile holds the monitor's pid");
        if side == "lxc" {
            assert!(lxc("lxc-stop", &["-n", "c1", "-k"]).status.success());
        } else {
            rt.ok("lxc-stop", &["-n", "c1", "-k"]);
        }
        wait_until("pidfile removed", || !pf.exists());
    }
    rt.assert_clean(&["c1"]);
}

#[test]
fn copy_of_a_running_container_needs_allowrunning() {
    let rt = Rt::new();
    rt.container("c1", "");
    rt.ok("lxc-start", &["-n", "c1"]);
    for args in [
        vec!["-n", "c1", "-N", "c2"],
        vec!["-n", "c1", "-N", "c2", "-s"],
        vec!["-n", "c1", "-R", "-N", "c2"],
        vec!["-n", "c1", "-N", "c2", "-e", "-F", "--", "/bin/true"],
    ] {
        let e = rt.fails("lxc-copy", &args);
        assert!(e.contains("--allowrunning"), "{args:?}: {e}");
        assert_eq!(rt.entries(), ["c1"], "{args:?}");
    }
    // Frozen is not stopped either.
    rt.ok("lxc-freeze", &["-n", "c1"]);
    let e = rt.fails("lxc-copy", &["-n", "c1", "-N", "c2"]);
    assert!(e.contains("FROZEN"), "{e}");
    rt.ok("lxc-unfreeze", &["-n", "c1"]);
    // With -a a live dir tree is still not copied (strata's rule: only
    // btrfs, zfs and lvm snapshots of a running container).
    let e = rt.fails("lxc-copy", &["-n", "c1", "-N", "c2", "--allowrunning"]);
    assert!(e.contains("stop it first"), "{e}");
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    rt.ok("lxc-copy", &["-n", "c1", "-N", "c2"]);
    rt.ok("lxc-destroy", &["-n", "c2"]);
    rt.assert_clean(&["c1"]);
}

#[test]
fn allowrunning_lets_a_btrfs_snapshot_of_a_running_container_through() {
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
    rt.ok(
        "lxc-create",
        &["-n", "b1", "-B", "btrfs", "--rootfs-from", src.to_str().unwrap()],
    );
    std::fs::write(
        rt.lxcpath.join("b1/config"),
        std::fs::read_to_string(rt.lxcpath.join("b1/config")).unwrap() + "lxc.mount.auto = proc:mixed sys:ro\n",
    )
    .unwrap();
    rt.ok("lxc-start", &["-n", "b1"]);
    let e = rt.fails("lxc-copy", &["-n", "b1", "-N", "b2", "-s"]);
    assert!(e.contains("--allowrunning"), "{e}");
    rt.ok("lxc-copy", &["-n", "b1", "-N", "b2", "-s", "-a"]);
    assert!(rt.lxcpath.join("b2/rootfs/bin/busybox").exists());
    rt.ok("lxc-stop", &["-n", "b1", "-k"]);
    rt.ok("lxc-destroy", &["-n", "b2"]);
    rt.ok("lxc-destroy", &["-n", "b1"]);
    rt.assert_clean(&[]);
}

/// LXC's volatile container: not defined in the lxcpath, started from
/// `-f FILE` alone. It runs, the tools that act on a running container
/// reach it, and nothing of it is ever written in the lxcpath.
#[test]
fn volatile_container_from_a_file_alone() {
    let rt = Rt::new();
    let rootfs = rt.outside.join("vrootfs");
    make_rootfs(&rootfs);
    let rc = rt.outside.join("vol.conf");
    std::fs::write(
        &rc,
        format!(
            "lxc.rootfs.path = dir:{}\nlxc.uts.name = volhost\nlxc.mount.auto = proc:mixed\nlxc.signal.halt = SIGPWR\n",
            rootfs.display()
        ),
    )
    .unwrap();
    let rcs = rc.to_str().unwrap();
    let o = rt.run(
        "lxc-execute",
        &["-n", "vol1", "-f", rcs, "--", "/bin/sh", "-c", "hostname; exit 3"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "volhost\n");
    assert_eq!(rt.entries(), Vec::<String>::new(), "nothing in the lxcpath");
    // In the background: seen running, attached to, stopped.
    rt.ok("lxc-start", &["-n", "vol1", "-d", "-f", rcs]);
    assert_eq!(rt.state("vol1"), "RUNNING");
    assert_eq!(
        rt.entries(),
        Vec::<String>::new(),
        "nothing in the lxcpath while it runs"
    );
    assert_eq!(rt.ok("lxc-attach", &["-n", "vol1", "--", "/bin/hostname"]), "volhost\n");
    assert!(rt.ok("lxc-ls", &["--running"]).contains("vol1"));
    // A second start is refused while it runs.
    let e = rt.fails("lxc-start", &["-n", "vol1", "-d", "-f", rcs]);
    assert!(e.contains("already running"), "{e}");
    rt.ok("lxc-stop", &["-n", "vol1", "-t", "10"]);
    // Stopped, it is gone: as in LXC, a name not defined and not running.
    let e = rt.fails("lxc-info", &["-n", "vol1"]);
    assert!(e.contains("does not exist"), "{e}");
    // Without -f there is nothing to start.
    let e = rt.fails("lxc-start", &["-n", "vol1", "-d"]);
    assert!(e.contains("does not exist"), "{e}");
    // What strata cannot run from a file alone: one line naming the key.
    for (text, says) in [
        ("lxc.uts.name = x\n".to_string(), "lxc.rootfs.path"),
        (
            format!("lxc.rootfs.path = dir:{}\nlxc.ephemeral = 1\n", rootfs.display()),
            "lxc.ephemeral",
        ),
    ] {
        std::fs::write(&rc, text).unwrap();
        let e = rt.fails("lxc-start", &["-n", "vol2", "-d", "-f", rcs]);
        assert!(e.contains(says), "{e}");
    }
    rt.assert_clean(&[]);
}

/// `lxc-stop -W` sends the halt signal and returns at once; `--nokill`
/// never kills: an init that ignores the halt signal is still running after
/// `-t`, and lxc-stop fails, as LXC's.
#[test]
fn stop_nowait_and_nokill() {
    let rt = Rt::new();
    let rootfs = rt.container("parstopw", "");
    rt.ok("lxc-start", &["-n", "parstopw", "-d"]);
    wait_until("init", || rt.state("parstopw") == "RUNNING");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let t = std::time::Instant::now();
    rt.ok("lxc-stop", &["-n", "parstopw", "-W"]);
    assert!(t.elapsed() < std::time::Duration::from_secs(2), "-W waited");
    wait_until("stopped after -W", || rt.state("parstopw") == "STOPPED");
    // An init that ignores SIGPWR.
    std::fs::write(rootfs.join("sbin/init"), "#!/bin/sh\nwhile :; do sleep 0.05; done\n").unwrap();
    rt.ok("lxc-start", &["-n", "parstopw", "-d"]);
    wait_until("init", || rt.state("parstopw") == "RUNNING");
    let e = rt.fails("lxc-stop", &["-n", "parstopw", "--nokill", "-t", "1"]);
    assert!(e.contains("did not stop within 1s"), "{e}");
    assert_eq!(rt.state("parstopw"), "RUNNING");
    rt.ok("lxc-stop", &["-n", "parstopw", "-t", "1"]);
    assert_eq!(rt.state("parstopw"), "STOPPED");
    rt.assert_clean(&["parstopw"]);
}

/// `lxc.tty.dir`: the ttys live in /dev/DIR, /dev/ttyN point there, as in LXC.
#[test]
fn tty_dir_holds_the_ttys() {
    let rt = Rt::new();
    let rootfs = rt.container(
        "parttyd",
        "lxc.autodev = 1\nlxc.tty.max = 2\nlxc.tty.dir = lxc\nlxc.net.0.type = empty\n",
    );
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/readlink")).unwrap();
    rt.ok("lxc-start", &["-n", "parttyd", "-d"]);
    let out = rt.ok(
        "lxc-attach",
        &[
            "-n",
            "parttyd",
            "--",
            "/bin/sh",
            "-c",
            "for t in 1 2; do readlink /dev/tty$t; test -c /dev/lxc/tty$t && echo char; done; test -e /dev/tty3 || echo no3",
        ],
    );
    assert_eq!(out, "lxc/tty1\nchar\nlxc/tty2\nchar\nno3\n");
    rt.ok("lxc-stop", &["-n", "parttyd", "-t", "10"]);
    rt.assert_clean(&["parttyd"]);
}

/// `lxc-autostart -L`: the containers with `lxc.start.auto = 1`, one pass
/// per group asked (none: those without `lxc.group`; `-a`: all; an empty
/// field the no-group pass, LXC dropping what follows it), each pass in
/// ascending `lxc.start.order` whatever the action, a start listing the
/// stopped ones with their `lxc.start.delay`, a shutdown the running ones;
/// the same listings as LXC's.
#[test]
fn autostart_lists_by_group_order_and_delay() {
    let rt = Rt::new();
    for (name, extra) in [
        (
            "paraua",
            "lxc.start.auto = 1\nlxc.start.order = 1\nlxc.start.delay = 2\nlxc.group = web\n",
        ),
        ("paraub", "lxc.start.auto = 1\nlxc.start.order = 5\n"),
        (
            "parauc",
            "lxc.start.auto = 1\nlxc.start.order = 3\nlxc.group = web\nlxc.group = db\n",
        ),
        ("paraud", "lxc.start.order = 9\n"),
        ("paraue", "lxc.start.auto = 1\nlxc.start.order = -2\n"),
    ] {
        rt.container(name, extra);
    }
    let check = |cases: &[(&[&str], &str)]| {
        for (args, want) in cases {
            assert_eq!(rt.ok("lxc-autostart", args), *want, "{args:?}");
            if std::path::Path::new("/usr/bin/lxc-autostart").exists() {
                let o = Command::new("timeout")
                    .arg("30")
                    .arg("/usr/bin/lxc-autostart")
                    .arg("-P")
                    .arg(&rt.lxcpath)
                    .args(*args)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap();
                assert_eq!(String::from_utf8_lossy(&o.stdout), *want, "LXC's {args:?}");
            }
        }
    };
    check(&[
        (&["-L"], "paraue 0\nparaub 0\n"),
        (&["-L", "-g", "web"], "paraua 2\nparauc 0\n"),
        (&["-L", "-a"], "paraue 0\nparaua 2\nparauc 0\nparaub 0\n"),
        (&["-L", "-A"], "paraue 0\nparaub 0\nparaud 0\n"),
        (&["-L", "-a", "-s"], ""),
        (&["-L", "-g", "db,"], "parauc 0\nparaue 0\nparaub 0\n"),
        (&["-L", "-g", "db", "-g", "web"], "parauc 0\nparaua 2\n"),
        (&["-L", "-g", ",web"], "paraue 0\nparaub 0\n"),
    ]);
    rt.ok("lxc-start", &["-n", "paraub", "-d"]);
    rt.ok("lxc-start", &["-n", "paraue", "-d"]);
    check(&[
        (&["-L", "-a"], "paraua 2\nparauc 0\n"),
        (&["-L", "-a", "-s"], "paraub\nparaue\n"),
        (&["-L", "-a", "-k"], "paraub\nparaue\n"),
        (&["-L", "-a", "-r"], "paraue 0\nparaub 0\n"),
    ]);
    // Acting: the no-group pass stops both.
    rt.ok("lxc-autostart", &["-s", "-t", "10"]);
    assert_eq!(rt.state("paraub"), "STOPPED");
    assert_eq!(rt.state("paraue"), "STOPPED");
    rt.assert_clean(&["paraua", "paraub", "parauc", "paraud", "paraue"]);
}
