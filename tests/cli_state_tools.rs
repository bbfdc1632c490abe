//! The state tools (lxc-wait, lxc-freeze, lxc-unfreeze, lxc-cgroup,
//! lxc-monitor) and lxc-info's and lxc-ls's state forms, on real
//! containers, with the changes made by other processes; lxc-info -c
//! against Debian's LXC on the same config where it is installed.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use strata_testkit::exit_within;

/// A child killed (and reaped) when the test ends, passed or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A container whose init counts in /tmp/counter (seen from the host in its rootfs).
fn counting(rt: &Rt, name: &str, extra: &str) -> std::path::PathBuf {
    let rootfs = rt.container(name, extra);
    std::fs::write(
        rootfs.join("sbin/init"),
        "#!/bin/sh\ntrap 'exit 0' PWR\ni=0\nwhile :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.02; done\n",
    )
    .unwrap();
    rootfs.join("tmp/counter")
}

fn counter(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

fn init_pid(rt: &Rt, name: &str) -> i64 {
    rt.ok("lxc-info", &["-n", name, "-p", "-H"]).trim().parse().unwrap()
}

fn proc_state(pid: i64) -> char {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s[s.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

#[test]
fn wait_follows_other_processes_and_times_out() {
    let rt = Rt::new();
    rt.container("c1", "");
    // Already there: at once, with -t 0 too.
    rt.ok("lxc-wait", &["-n", "c1", "-s", "STOPPED", "-t", "0"]);
    rt.ok("lxc-wait", &["-n", "c1", "-s", "RUNNING|STOPPED"]);

    // Another process starts it.
    let mut w = Reaped(
        rt.cmd("lxc-wait", &["-n", "c1", "-s", "RUNNING", "-t", "30"])
            .spawn()
            .unwrap(),
    );
    assert_eq!(
        exit_within(&mut w.0, Duration::from_millis(300)),
        None,
        "lxc-wait returned early"
    );
    rt.ok("lxc-start", &["-n", "c1"]);
    let t = Instant::now();
    assert_eq!(exit_within(&mut w.0, Duration::from_secs(5)), Some(0));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // And stops it.
    let mut w = Reaped(
        rt.cmd("lxc-wait", &["-n", "c1", "-s", "STOPPED|FROZEN"])
            .spawn()
            .unwrap(),
    );
    assert_eq!(exit_within(&mut w.0, Duration::from_millis(300)), None);
    rt.ok("lxc-stop", &["-n", "c1"]);
    assert_eq!(exit_within(&mut w.0, Duration::from_secs(5)), Some(0));

    // A state that never comes: exit 1 after the timeout, one line.
    let t = Instant::now();
    let err = rt.fails("lxc-wait", &["-n", "c1", "-s", "RUNNING", "-t", "1"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(err.contains("timed out"), "{err}");
    assert!(rt
        .fails("lxc-wait", &["-n", "c1", "-s", "RUNNING", "-t", "0"])
        .contains("timed out"));
    // What LXC refuses.
    assert!(rt
        .fails("lxc-wait", &["-n", "c1", "-s", "BOGUS"])
        .contains("invalid state 'BOGUS'"));
    assert!(rt
        .fails("lxc-wait", &["-n", "c1", "-s", "running", "-t", "0"])
        .contains("invalid state"));
    assert!(rt.fails("lxc-wait", &["-n", "c1"]).contains("missing state"));
    rt.assert_clean(&["c1"]);
}

/// Thaws a container when the test ends.
struct Thaw<'a>(&'a Rt, &'a str);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        let _ = self.0.run("lxc-unfreeze", &["-n", self.1]);
    }
}

#[test]
fn freeze_stops_the_processes_and_info_shows_it() {
    let rt = Rt::new();
    let count = counting(&rt, "c1", "");
    // A stopped container: freeze is refused, unfreeze has nothing to do (as LXC).
    assert!(rt.fails("lxc-freeze", &["-n", "c1"]).contains("not running"));
    rt.ok("lxc-unfreeze", &["-n", "c1"]);
    rt.fails("lxc-freeze", &["-n", "nosuch"]);

    rt.ok("lxc-start", &["-n", "c1"]);
    let t = Instant::now();
    while counter(&count) < 3 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(counter(&count) >= 3, "the counter does not run");
    let pid = init_pid(&rt, "c1");
    // A failed assertion must not leave frozen processes (no signal kills them).
    let _thaw = Thaw(&rt, "c1");

    rt.ok("lxc-freeze", &["-n", "c1"]);
    assert_eq!(rt.state("c1"), "FROZEN");
    let info = rt.ok("lxc-info", &["-n", "c1"]);
    assert!(info.contains("State:          FROZEN\n"), "{info}");
    assert!(info.contains(&format!("PID:            {pid}\n")), "{info}");
    assert!(matches!(proc_state(pid), 'D' | 'S'), "{}", proc_state(pid));
    let frozen_at = counter(&count);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(counter(&count), frozen_at, "the counter ran while frozen");
    rt.ok("lxc-wait", &["-n", "c1", "-s", "FROZEN", "-t", "0"]);
    // Freezing twice is fine, as in LXC.
    rt.ok("lxc-freeze", &["-n", "c1"]);

    // lxc-wait sees the thaw another process makes.
    let mut w = Reaped(
        rt.cmd("lxc-wait", &["-n", "c1", "-s", "THAWED", "-t", "30"])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(200));
    rt.ok("lxc-unfreeze", &["-n", "c1"]);
    assert_eq!(exit_within(&mut w.0, Duration::from_secs(5)), Some(0));
    assert_eq!(rt.state("c1"), "RUNNING");
    let t = Instant::now();
    while counter(&count) <= frozen_at + 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(counter(&count) > frozen_at + 2, "the counter did not run again");

    // A frozen container stops too.
    rt.ok("lxc-freeze", &["-n", "c1"]);
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    assert_eq!(rt.state("c1"), "STOPPED");
    rt.assert_clean(&["c1"]);
}

#[test]
fn cgroup_reads_and_writes_the_containers_files() {
    let rt = Rt::new();
    rt.container("c1", "");
    rt.container("c2", "");
    assert!(rt
        .fails("lxc-cgroup", &["-n", "c1", "pids.max"])
        .contains("is not running"));
    rt.ok("lxc-start", &["-n", "c1"]);
    // As LXC prints it: the file, then a newline.
    assert_eq!(rt.ok("lxc-cgroup", &["-n", "c1", "pids.max"]), "max\n\n");
    assert_eq!(rt.ok("lxc-cgroup", &["-n", "c1", "pids.max", "100"]), "");
    assert_eq!(rt.ok("lxc-cgroup", &["-n", "c1", "pids.max"]), "100\n\n");
    // It is the container's own cgroup: its pids, and the file the record names.
    let pid = init_pid(&rt, "c1");
    let procs = rt.ok("lxc-cgroup", &["-n", "c1", "cgroup.procs"]);
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    let rec = rt.record("c1").unwrap();
    let dirs: Vec<String> = rec["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert!(
        dirs.iter()
            .any(|d| std::fs::read_to_string(Path::new(d).join("pids.max")).is_ok_and(|v| v == "100\n")),
        "{dirs:?}"
    );
    let mem = if Path::new("/sys/fs/cgroup/memory").is_dir() {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    rt.ok("lxc-cgroup", &["-n", "c1", mem, "64M"]);
    let v = rt.ok("lxc-cgroup", &["-n", "c1", mem]);
    assert_eq!(v.trim(), (64u64 << 20).to_string());
    // Errors are one line, exit 1; nothing outside the container's cgroups.
    assert!(rt
        .fails("lxc-cgroup", &["-n", "c1", "nosuch.file"])
        .contains("nosuch.file"));
    rt.fails("lxc-cgroup", &["-n", "c1", "../pids.max"]);
    rt.fails("lxc-cgroup", &["-n", "c1", "../../cgroup.procs", "1"]);
    assert!(rt
        .fails("lxc-cgroup", &["-n", "c1", "pids.max", "abc"])
        .contains("pids.max"));
    assert!(rt.fails("lxc-cgroup", &["-n", "c1"]).contains("missing state object"));
    rt.fails("lxc-cgroup", &["-n", "nosuch", "pids.max"]);
    assert!(rt
        .fails("lxc-cgroup", &["-n", "c2", "pids.max"])
        .contains("is not running"));
    rt.ok("lxc-stop", &["-n", "c1"]);
    rt.assert_clean(&["c1", "c2"]);
}

#[test]
fn monitor_prints_the_changes_others_make() {
    let rt = Rt::new();
    rt.container("c1", "");
    rt.container("c10", "");
    let mut m = Reaped(
        rt.cmd("lxc-monitor", &["-n", "c1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = m.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    // c10 does not match: the name is a whole-name regular expression.
    rt.ok("lxc-start", &["-n", "c10"]);
    rt.ok("lxc-start", &["-n", "c1"]);
    // lxc-monitor samples the state as it changes: give each a moment.
    std::thread::sleep(Duration::from_millis(150));
    rt.ok("lxc-freeze", &["-n", "c1"]);
    std::thread::sleep(Duration::from_millis(150));
    rt.ok("lxc-unfreeze", &["-n", "c1"]);
    std::thread::sleep(Duration::from_millis(150));
    rt.ok("lxc-stop", &["-n", "c1"]);
    rt.ok("lxc-stop", &["-n", "c10"]);
    let want: Vec<String> = [
        "STARTING", "RUNNING", "FREEZING", "FROZEN", "THAWED", "RUNNING", "STOPPING", "STOPPED",
    ]
    .iter()
    .map(|s| format!("'c1' changed state to [{s}]"))
    .collect();
    let mut got = vec![];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want.len() && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(l);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    got.extend(rx.try_iter());
    assert_eq!(got, want);
    // It runs until interrupted.
    assert_eq!(exit_within(&mut m.0, Duration::from_millis(10)), None);
    // -Q: strata has no lxc-monitord to tell.
    rt.ok("lxc-monitor", &["-Q"]);
    drop(m);
    rt.assert_clean(&["c1", "c10"]);
}

/// lxc-info -c against Debian's LXC on the same config, key by key.
#[test]
fn info_config_items_as_lxc_prints_them() {
    let rt = Rt::new();
    let conf = "lxc.include = /usr/share/lxc/config/common.conf\nlxc.group = web\nlxc.group = db\n\
                lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\nlxc.signal.halt = SIGPWR\n\
                lxc.cgroup.pids.max = 10\nlxc.sysctl.net.ipv4.ip_forward = 1\nlxc.prlimit.nofile = 1024\n\
                lxc.environment = A=1\nlxc.environment = B=2\nlxc.start.auto = 1\nlxc.init.cmd = /sbin/init x\n\
                lxc.net.0.type = veth\nlxc.net.0.link = br0\nlxc.net.0.ipv4.address = 10.0.3.5/24\n\
                lxc.net.0.ipv4.address = 10.0.3.6/24\nlxc.net.1.type = empty\nlxc.hook.pre-start = /bin/true\n";
    let common = Path::new("/usr/share/lxc/config/common.conf").exists();
    rt.container(
        "c1",
        if common {
            conf
        } else {
            "lxc.group = web\nlxc.group = db\n"
        },
    );
    let rootfs = rt.lxcpath.join("c1/rootfs").display().to_string();
    let info = |args: &[&str]| {
        let mut a = vec!["-n", "c1"];
        a.extend(args);
        rt.ok("lxc-info", &a)
    };
    // Without LXC: the forms LXC 5.0.2 printed for this config.
    assert_eq!(
        info(&["-c", "lxc.rootfs.path"]),
        format!("lxc.rootfs.path = {rootfs}\n")
    );
    assert_eq!(info(&["-c", "lxc.group"]), "lxc.group = web\ndb\n\n");
    assert_eq!(info(&["-c", "lxc.group", "-H"]), "web\ndb\n\n");
    assert_eq!(
        info(&["-c", "lxc.uts.name", "-c", "lxc.arch"]),
        "lxc.uts.name = c1\nlxc.arch =\n"
    );
    assert_eq!(
        info(&["-c", "lxc.uts.name", "-c", "lxc.arch", "-H"]),
        "lxc.uts.name = c1\nlxc.arch =\n"
    );
    assert_eq!(info(&["-c", "lxc.arch", "-H"]), "\n");
    let tty = if common { "4" } else { "0" };
    assert_eq!(
        info(&["-c", "lxc.tty.max", "-s"]),
        format!("State:          STOPPED\nlxc.tty.max = {tty}\n")
    );
    let o = rt.cmd("lxc-info", &["-n", "c1", "-c", "lxc.foo"]).output().unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr), "lxc.foo invalid\n");
    // LXC's two lines, then strata's disk lines (LXC's lxc-info has none).
    let plain = info(&["-H"]);
    assert!(
        plain.starts_with("Name:           c1\nState:          STOPPED\nDisk use:       "),
        "{plain}"
    );
    assert_eq!(plain.lines().count(), 4, "{plain}");

    let lxc_info = Path::new("/usr/bin/lxc-info");
    if !lxc_info.exists() || !common {
        eprintln!("LXC's lxc-info or its common.conf is not installed: compared with the recorded forms only");
        return;
    }
    let keys = [
        "lxc.rootfs.path",
        "lxc.uts.name",
        "lxc.group",
        "lxc.idmap",
        "lxc.tty.max",
        "lxc.pty.max",
        "lxc.arch",
        "lxc.cap.drop",
        "lxc.cap.keep",
        "lxc.init.cmd",
        "lxc.log.level",
        "lxc.start.auto",
        "lxc.start.delay",
        "lxc.net",
        "lxc.net.0",
        "lxc.net.0.type",
        "lxc.net.0.link",
        "lxc.net.0.ipv4.address",
        "lxc.net.0.ipv6.address",
        "lxc.net.0.veth.pair",
        "lxc.net.1.type",
        "lxc.net.1.veth.pair",
        "lxc.net.2.type",
        "lxc.mount.entry",
        "lxc.mount.auto",
        "lxc.cgroup.pids.max",
        "lxc.cgroup.memory.limit_in_bytes",
        "lxc.cgroup",
        "lxc.cgroup2",
        "lxc.sysctl.net.ipv4.ip_forward",
        "lxc.sysctl",
        "lxc.prlimit.nofile",
        "lxc.prlimit",
        "lxc.signal.halt",
        "lxc.signal.stop",
        "lxc.monitor.signal.pdeath",
        "lxc.environment",
        "lxc.hook.pre-start",
        "lxc.hook",
        "lxc.include",
        "lxc.seccomp.profile",
        "lxc.autodev",
        "lxc.ephemeral",
        "lxc.rootfs.managed",
        "lxc.init.uid",
        "lxc.namespace.keep",
        "lxc.console.path",
        "lxc.foo",
    ];
    let mut diffs = vec![];
    for k in keys {
        let lxc = std::process::Command::new(lxc_info)
            .args(["-P"])
            .arg(&rt.lxcpath)
            .args(["-n", "c1", "-c", k])
            .output()
            .unwrap();
        let ours = rt.cmd("lxc-info", &["-n", "c1", "-c", k]).output().unwrap();
        let form = |o: &std::process::Output| {
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        };
        if form(&lxc) != form(&ours) {
            diffs.push(format!("{k}: LXC {:?}, strata {:?}", form(&lxc), form(&ours)));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// A veth on a bridge: the container's addresses from inside its namespace,
/// and the host side of its veth with its byte counts.
#[test]
fn info_ips_and_veth_link() {
    let rt = Rt::new();
    let br = format!("stst{}", std::process::id() % 100000);
    let ip = |args: &[&str]| std::process::Command::new("ip").args(args).status().unwrap().success();
    assert!(ip(&["link", "add", &br, "type", "bridge"]));
    struct DelLink(String);
    impl Drop for DelLink {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    let _guard = DelLink(br.clone());
    let rootfs = rt.container(
        "c1",
        &format!("lxc.net.0.type = veth\nlxc.net.0.link = {br}\nlxc.net.0.flags = up\nlxc.net.0.name = eth0\n"),
    );
    std::fs::write(
        rootfs.join("sbin/init"),
        "#!/bin/sh\ntrap 'exit 0' PWR\nip addr add 10.0.3.5/24 dev eth0\nip -6 addr add fd00::5/64 dev eth0\n\
         touch /tmp/ready\nwhile :; do sleep 0.05; done\n",
    )
    .unwrap();
    rt.ok("lxc-start", &["-n", "c1"]);
    let t = Instant::now();
    while !rootfs.join("tmp/ready").exists() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(rt.ok("lxc-info", &["-n", "c1", "-i", "-H"]), "10.0.3.5\nfd00::5\n");
    assert_eq!(
        rt.ok("lxc-info", &["-n", "c1", "-i"]),
        "IP:             10.0.3.5\nIP:             fd00::5\n"
    );
    let info = rt.ok("lxc-info", &["-n", "c1"]);
    let host = info
        .lines()
        .find_map(|l| l.strip_prefix("Link:           "))
        .unwrap_or_else(|| panic!("no Link line: {info}"));
    assert!(
        Path::new(&format!("/sys/class/net/{br}/brif/{host}")).exists(),
        "{host} is not on {br}"
    );
    for l in [" TX bytes:      ", " RX bytes:      ", " Total bytes:   "] {
        assert!(info.contains(l), "{l:?} in {info}");
    }
    let raw = rt.ok("lxc-info", &["-n", "c1", "-S", "-H"]);
    let num = |k: &str| -> u64 {
        raw.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} in {raw}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(num(" TX bytes:") + num(" RX bytes:"), num(" Total bytes:"));
    // Lines in LXC's order.
    let order: Vec<&str> = info.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        order
            .iter()
            .filter(|l| !l.ends_with("use"))
            .copied()
            .collect::<Vec<_>>(),
        [
            "Name",
            "State",
            "PID",
            "IP",
            "IP",
            "Link",
            " TX bytes",
            " RX bytes",
            " Total bytes"
        ]
    );
    rt.ok("lxc-stop", &["-n", "c1"]);
    rt.assert_clean(&["c1"]);
}

#[test]
fn ls_filters_as_lxc() {
    let rt = Rt::new();
    rt.container("frozen", "lxc.group = web\n");
    rt.container("up", "lxc.group = web\nlxc.group = db\n");
    let inner = rt.container("down", "lxc.group = db\nlxc.start.auto = 1\n");
    // A container of the stopped one's own lxcpath, inside its rootfs (--nesting).
    let nested = inner.join(rt.lxcpath.strip_prefix("/").unwrap()).join("inner");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(nested.join("config"), "lxc.rootfs.path = dir:/nonexistent\n").unwrap();
    rt.ok("lxc-start", &["-n", "frozen"]);
    rt.ok("lxc-start", &["-n", "up"]);
    let _thaw = Thaw(&rt, "frozen");
    rt.ok("lxc-freeze", &["-n", "frozen"]);
    let ls = |args: &[&str]| {
        let mut a = vec!["-1"];
        a.extend(args);
        rt.ok("lxc-ls", &a)
    };
    assert_eq!(ls(&[]), "down\nfrozen\nup\n");
    assert_eq!(ls(&["--frozen"]), "frozen\n");
    assert_eq!(ls(&["--running"]), "frozen\nup\n");
    assert_eq!(ls(&["--active"]), "frozen\nup\n");
    assert_eq!(ls(&["--active", "--frozen"]), "frozen\nup\n");
    assert_eq!(ls(&["--stopped"]), "down\n");
    assert_eq!(ls(&["--defined"]), "down\nfrozen\nup\n");
    // Every group asked for; the last -g counts.
    assert_eq!(ls(&["-g", "web"]), "frozen\nup\n");
    assert_eq!(ls(&["-g", "web,db"]), "up\n");
    assert_eq!(ls(&["-g", "web", "-g", "db"]), "down\nup\n");
    assert_eq!(ls(&["-g", "nosuch"]), "");
    assert_eq!(ls(&["--filter", "^(up|down)$"]), "down\nup\n");
    assert_eq!(ls(&["o", "--stopped"]), "down\n");
    assert_eq!(ls(&["--nesting"]), "down\ndown/inner\nfrozen\nup\n");
    assert_eq!(ls(&["--nesting=0"]), "down\nfrozen\nup\n");
    let fancy = rt.ok("lxc-ls", &["-F", "NAME,STATE,PID,GROUPS,AUTOSTART"]);
    let rows: Vec<Vec<&str>> = fancy.lines().map(|l| l.split_whitespace().collect()).collect();
    let fpid = init_pid(&rt, "frozen").to_string();
    let upid = init_pid(&rt, "up").to_string();
    assert_eq!(rows[0], ["NAME", "STATE", "PID", "GROUPS", "AUTOSTART"]);
    assert_eq!(rows[1], ["down", "STOPPED", "-", "db", "1"]);
    assert_eq!(rows[2], ["frozen", "FROZEN", fpid.as_str(), "web", "0"]);
    assert_eq!(rows[3], ["up", "RUNNING", upid.as_str(), "web,", "db", "0"]);
    let nested_fancy = rt.ok("lxc-ls", &["-f", "--nesting", "--stopped"]);
    assert!(nested_fancy.contains("\n\\inner "), "{nested_fancy}");
    let ram = rt.ok("lxc-ls", &["-F", "NAME,RAM,INTERFACE", "--running"]);
    for l in ram.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert!(f[1].ends_with("MB"), "{ram}");
        assert_eq!(f[2], "lo", "{ram}");
    }
    rt.ok("lxc-unfreeze", &["-n", "frozen"]);
    rt.ok("lxc-stop", &["-n", "frozen"]);
    rt.ok("lxc-stop", &["-n", "up"]);
    rt.assert_clean(&["down", "frozen", "up"]);
}
