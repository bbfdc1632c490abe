//! lxc-top and lxc-device on real running containers: the figures lxc-top
//! prints are the containers' cgroup files, sorted as asked; lxc-device
//! puts a host device node and a host interface into a running container
//! and takes them out again, with the device cgroup following.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use strata_testkit::lxc::{lxc_ok, LxcStopper};

/// A child killed (and reaped) when the test ends, passed or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The container's recorded cgroup directories.
fn cgroups(rt: &Rt, name: &str) -> Vec<PathBuf> {
    rt.record(name).unwrap()["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| PathBuf::from(d.as_str().unwrap()))
        .collect()
}

/// The first of the container's cgroup dirs that has `file`, read as a number.
fn cg_num(rt: &Rt, name: &str, file: &str) -> Option<u64> {
    cgroups(rt, name)
        .iter()
        .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
        .and_then(|t| t.trim().parse().ok())
}

/// One batch line: name and its ten fields.
#[derive(Debug)]
struct Row {
    name: String,
    f: Vec<u64>,
}

/// Read batch output until `rounds` rounds of `n` lines each have come.
fn batch_rounds(child: &mut Child, n: usize, rounds: usize) -> (String, Vec<Vec<Row>>) {
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let header = lines.next().unwrap().unwrap();
    let mut all = Vec::new();
    for _ in 0..rounds {
        let mut round = Vec::new();
        for _ in 0..n {
            let l = lines.next().unwrap().unwrap();
            let mut it = l.split(',');
            let t: u64 = it.next().unwrap().parse().unwrap();
            let name = it.next().unwrap().to_string();
            let mut f = vec![t];
            f.extend(it.map(|x| x.parse::<u64>().unwrap()));
            assert_eq!(f.len(), 9, "{l}");
            round.push(Row { name, f });
        }
        all.push(round);
    }
    (header, all)
}

#[test]
fn top_batch_prints_the_containers_cgroup_figures() {
    let rt = Rt::new();
    let big = rt.container("big", "");
    rt.container("small", "");
    rt.container("idle", "");
    // The init of `big` keeps 24 MiB of page cache charged to its memory cgroup.
    std::fs::write(
        big.join("sbin/init"),
        "#!/bin/sh\ntrap 'exit 0' PWR\n/bin/busybox dd if=/dev/zero of=/tmp/fill bs=1M count=24 2>/dev/null\nwhile :; do sleep 0.05; done\n",
    )
    .unwrap();
    rt.ok("lxc-start", &["-n", "big"]);
    rt.ok("lxc-start", &["-n", "small"]);
    // The fill is done once the file has its size.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(big.join("tmp/fill")).map_or(0, |m| m.len()) < 24 << 20 {
        assert!(Instant::now() < deadline, "the fill did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = Reaped(
        rt.cmd("lxc-top", &["-b", "-d", "1", "-s", "m"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (header, rounds) = batch_rounds(&mut c.0, 2, 2);
    assert_eq!(
        header,
        "time_ms,container,cpu_nanos,cpu_sys_userhz,cpu_user_userhz,blkio_bytes,blkio_iops,mem_used_bytes,memsw_used_bytes,kernel_mem_used_bytes"
    );
    // Only the running ones, the largest memory first.
    for r in &rounds {
        let names: Vec<&str> = r.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["big", "small"], "{rounds:?}");
        assert!(r[0].f[6] > r[1].f[6], "{rounds:?}");
    }
    // A second later: a later time, and CPU time that only grows.
    assert!(rounds[1][0].f[0] >= rounds[0][0].f[0] + 900, "{rounds:?}");
    for i in 0..2 {
        assert!(rounds[0][i].f[1] > 0, "{rounds:?}");
        assert!(rounds[1][i].f[1] >= rounds[0][i].f[1], "{rounds:?}");
    }
    // The figures are the containers' own cgroup files.
    let mem_file = if cg_num(&rt, "big", "memory.usage_in_bytes").is_some() {
        "memory.usage_in_bytes"
    } else {
        "memory.current"
    };
    let mem = cg_num(&rt, "big", mem_file).unwrap();
    let shown = rounds[1][0].f[6];
    assert!(mem >= 24 << 20 && shown >= 24 << 20, "{mem_file} {mem}, shown {shown}");
    assert!(shown.abs_diff(mem) < 8 << 20, "{mem_file} {mem}, shown {shown}");
    let cpu_file = cg_num(&rt, "small", "cpuacct.usage");
    if let Some(ns) = cpu_file {
        assert!(ns >= rounds[1][1].f[1], "cpuacct.usage {ns} < {:?}", rounds[1][1]);
    }
    drop(c);
    // -r: the smallest first; -s n: by name.
    for (args, want) in [
        (&["-b", "-d", "1", "-s", "m", "-r"][..], ["small", "big"]),
        (&["-b", "-d", "1", "-s", "n"][..], ["big", "small"]),
        (&["-b", "-d", "1", "-s", "n", "-r"][..], ["small", "big"]),
    ] {
        let mut c = Reaped(rt.cmd("lxc-top", args).stdout(Stdio::piped()).spawn().unwrap());
        let (_, r) = batch_rounds(&mut c.0, 2, 1);
        let names: Vec<&str> = r[0].iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, want, "{args:?}");
    }
    // Bad input: one line, exit 1, at once.
    assert!(rt.fails("lxc-top", &["-b", "-s", "x"]).contains("\"x\""));
    rt.fails("lxc-top", &["-b", "-d", "soon"]);
    // Without --batch it needs a terminal on stdin (the tests give it none).
    assert!(rt.fails("lxc-top", &[]).contains("terminal"));
    rt.ok("lxc-stop", &["-n", "big"]);
    rt.ok("lxc-stop", &["-n", "small"]);
    // Nothing running: the header alone.
    let mut c = Reaped(
        rt.cmd("lxc-top", &["-b", "-d", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = c.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    assert!(rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .starts_with("time_ms,"));
    assert!(
        rx.recv_timeout(Duration::from_millis(2500)).is_err(),
        "a line for a stopped container"
    );
    drop(c);
    rt.assert_clean(&["big", "idle", "small"]);
}

#[test]
fn top_table_on_a_terminal() {
    if Path::new("/usr/bin/script").exists() {
        let rt = Rt::new();
        rt.container("t1", "");
        rt.ok("lxc-start", &["-n", "t1"]);
        // `script` gives lxc-top a terminal; `q` ends it.
        let cmd = rt.cmd("lxc-top", &["-d", "1"]);
        let line = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let mut c = Reaped(
            std::process::Command::new("script")
                .args(["-qec", &line, "/dev/null"])
                .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(1500));
        use std::io::Write;
        c.0.stdin.as_mut().unwrap().write_all(b"q").unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = c.0.try_wait().unwrap() {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "q did not end lxc-top");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success());
        let mut out = String::new();
        use std::io::Read;
        c.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert!(
            out.contains("Container                   CPU          CPU          CPU"),
            "{out}"
        );
        assert!(
            out.contains("Name                       Used          Sys         User"),
            "{out}"
        );
        // The first row follows the header's attribute reset, as in LXC's.
        assert!(out.lines().any(|l| l.starts_with("\x1b[0mt1 ")), "{out}");
        assert!(out.contains("TOTAL 1 of 1"), "{out}");
        rt.ok("lxc-stop", &["-n", "t1"]);
        rt.assert_clean(&["t1"]);
    } else {
        eprintln!("skipped: no script(1) to give lxc-top a terminal");
    }
}

/// A veth pair on the host, deleted when the test ends.
struct Veth(String, String);

impl Veth {
    fn new() -> Veth {
        // Unique across the tests of this process too (they run in parallel).
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = std::process::id() % 100_000;
        let v = Veth(format!("sdv{id}{n}a"), format!("sdv{id}{n}b"));
        let st = std::process::Command::new("ip")
            .args(["link", "add", &v.0, "type", "veth", "peer", "name", &v.1])
            .status()
            .unwrap();
        assert!(st.success());
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        for n in [&self.0, &self.1] {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", n])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn host_has(link: &str) -> bool {
    Path::new("/sys/class/net").join(link).exists()
}

/// `sh -c SCRIPT` in the container: (exit code, stdout + stderr).
fn inside(rt: &Rt, name: &str, script: &str) -> (i32, String) {
    let o = rt.run("lxc-attach", &["-n", name, "--", "/bin/sh", "-c", script]);
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), s)
}

#[test]
fn device_lends_a_node_and_an_interface_to_a_running_container() {
    let rt = Rt::new();
    // Only /dev/null to open, and any node made: /dev/zero (1:5) is refused.
    let rootfs = rt.container(
        "d1",
        "lxc.cgroup.devices.deny = a\nlxc.cgroup.devices.allow = c 1:3 rwm\nlxc.cgroup.devices.allow = c *:* m\n\
         lxc.net.0.type = empty\n",
    );
    rt.container("d2", "");
    assert!(rt
        .fails("lxc-device", &["-n", "d1", "add", "/dev/zero", "/dev/z"])
        .contains("is not running"));
    rt.ok("lxc-start", &["-n", "d1"]);
    node_round_trip(&rt, "d1", &rootfs);
    for (args, msg) in [
        (&["-n", "d1", "add", "/etc/passwd"][..], "not a device node"),
        (&["-n", "d1", "add", "/dev/zero", "rel/z"], "absolute"),
        (&["-n", "d1", "add", "/dev/zero", "/dev/../z"], "not allowed"),
        (&["-n", "d1", "frob", "/dev/zero"], "use add or del"),
        (&["-n", "d1"], "no command"),
        (&["-n", "d1", "add", "nosuchif0"], "neither a network interface"),
        (&["-n", "nosuch", "add", "/dev/zero"], "does not exist"),
    ] {
        let e = rt.fails("lxc-device", args);
        assert!(e.contains(msg), "{args:?}: {e}");
    }
    // A host interface into the container, renamed, and back.
    let v = Veth::new();
    rt.ok("lxc-device", &["-n", "d1", "add", &v.0, "eth5"]);
    assert!(!host_has(&v.0));
    let (_, links) = inside(&rt, "d1", "ip -o link");
    assert!(links.contains(": eth5@"), "{links}");
    // A name taken inside: refused before anything moves.
    assert!(rt
        .fails("lxc-device", &["-n", "d1", "add", &v.1, "eth5"])
        .contains("eth5 already"));
    assert!(host_has(&v.1));
    assert!(rt
        .fails("lxc-device", &["-n", "d1", "del", "eth9"])
        .contains("no network interface eth9"));
    rt.ok("lxc-device", &["-n", "d1", "del", "eth5", &v.0]);
    assert!(host_has(&v.0));
    let (_, links) = inside(&rt, "d1", "ip -o link");
    assert!(!links.contains("eth5"), "{links}");
    drop(v);
    rt.ok("lxc-stop", &["-n", "d1"]);
    rt.assert_clean(&["d1", "d2"]);
}

/// /dev/zero (refused by the container's rules) lent at /dev/sub/z2 and
/// taken back; the v1 devices list follows where the host has one.
fn node_round_trip(rt: &Rt, name: &str, rootfs: &Path) {
    let zero = "/bin/busybox head -c 4 /dev/zero | /bin/busybox wc -c";
    let (_, out) = inside(rt, name, zero);
    assert!(out.contains("Operation not permitted"), "{out}");
    let list = || {
        cgroups(rt, name)
            .into_iter()
            .find(|d| d.join("devices.list").exists())
            .map(|d| std::fs::read_to_string(d.join("devices.list")).unwrap())
            .unwrap_or_default()
    };
    let v1_rules = list().contains("c 1:3 rwm");
    assert!(!list().contains("c 1:5 rwm"));
    rt.ok("lxc-device", &["-n", name, "add", "/dev/zero", "/dev/sub/z2"]);
    // The node, as the host's (type, numbers, mode), in a new directory.
    let (code, out) = inside(rt, name, "/bin/busybox stat -c '%F %t:%T %a' /dev/sub/z2");
    assert_eq!((code, out.as_str()), (0, "character special file 1:5 666\n"));
    let (_, out) = inside(rt, name, "/bin/busybox head -c 4 /dev/sub/z2 | /bin/busybox wc -c");
    assert_eq!(out.trim(), "4");
    assert_eq!(list().contains("c 1:5 rwm"), v1_rules, "{}", list());
    // Errors: one line, exit 1, nothing changed.
    assert!(rt
        .fails("lxc-device", &["-n", name, "add", "/dev/zero", "/dev/sub/z2"])
        .contains("exists already"));
    assert!(rt
        .fails("lxc-device", &["-n", name, "del", "/dev/null", "/dev/sub/z2"])
        .contains("not the device /dev/null"));
    assert_eq!(inside(rt, name, "/bin/busybox test -c /dev/sub/z2").0, 0);
    // No symlink of the container is followed: /dev/evil -> /tmp.
    inside(rt, name, "/bin/busybox ln -s /tmp /dev/evil");
    assert!(rt
        .fails("lxc-device", &["-n", name, "add", "/dev/zero", "/dev/evil/z"])
        .contains("symlink"));
    assert!(!rootfs.join("tmp/z").exists());
    // del: denied again and the node gone.
    rt.ok("lxc-device", &["-n", name, "del", "/dev/zero", "/dev/sub/z2"]);
    assert_ne!(inside(rt, name, "/bin/busybox test -e /dev/sub/z2").0, 0);
    assert!(!list().contains("c 1:5 rwm"), "{}", list());
    let (_, out) = inside(rt, name, zero);
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
fn device_extends_a_cgroup2_device_program() {
    let Some(unified) = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .find(|p| Path::new(p).join("cgroup.controllers").exists())
    else {
        eprintln!("skipped: no cgroup2 tree");
        return;
    };
    let rt = Rt::new();
    // cgroup2 rules alone: on a hybrid host too they are a device program.
    let rootfs = rt.container(
        "p1",
        "lxc.cgroup2.devices.deny = a\nlxc.cgroup2.devices.allow = c 1:3 rwm\nlxc.cgroup2.devices.allow = c *:* m\n",
    );
    rt.ok("lxc-start", &["-n", "p1"]);
    let dirs: Vec<PathBuf> = cgroups(&rt, "p1")
        .into_iter()
        .filter(|d| d.starts_with(unified) && !strata_runtime::cgroup::device_program_ids(d).unwrap().is_empty())
        .collect();
    assert_eq!(dirs.len(), 1, "{:?}", cgroups(&rt, "p1"));
    let before = strata_runtime::cgroup::device_program_ids(&dirs[0]).unwrap();
    node_round_trip(&rt, "p1", &rootfs);
    // Replaced, not stacked: still one program, a new one.
    let after = strata_runtime::cgroup::device_program_ids(&dirs[0]).unwrap();
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
    rt.ok("lxc-stop", &["-n", "p1"]);
    rt.assert_clean(&["p1"]);
}

#[test]
fn top_and_device_on_a_container_lxc_runs() {
    if !Path::new("/usr/bin/lxc-start").exists() || !Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: LXC (/usr/bin/lxc-start) or script(1) is not installed");
        return;
    }
    let rt = Rt::new();
    rt.container(
        "lx1",
        "lxc.net.0.type = empty\nlxc.cgroup.devices.deny = a\nlxc.cgroup.devices.allow = c 1:3 rwm\n\
         lxc.cgroup.devices.allow = c *:* m\n",
    );
    lxc_ok(&rt.lxcpath, "lxc-start", &["-n", "lx1", "-d"]);
    let _stop = LxcStopper::new(&rt.lxcpath, "lx1");
    lxc_ok(&rt.lxcpath, "lxc-wait", &["-n", "lx1", "-s", "RUNNING", "-t", "10"]);
    // LXC's lxc-top first (it wants a terminal, even with -b), then strata's.
    // Its rows are as many as the terminal has lines, less three: give it some.
    // Read until its row for lx1 shows: on a loaded machine its first round
    // can take seconds. A `timeout` inside is the backstop if it never does.
    let line = format!(
        "stty rows 40 cols 200; exec timeout 30 /usr/bin/lxc-top -P '{}' -b -d 1",
        rt.lxcpath.display()
    );
    let mut script = Reaped(
        std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let out = script.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l.replace('\r', "")).is_err() {
                break;
            }
        }
    });
    let mut theirs = String::new();
    let deadline = Instant::now() + Duration::from_secs(25);
    while !theirs.contains(",lx1,") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                theirs.push_str(&l);
                theirs.push('\n');
            }
            Err(_) => break,
        }
    }
    drop(script);
    let their_row: Vec<u64> = theirs
        .lines()
        .find(|l| l.contains(",lx1,"))
        .unwrap_or_else(|| panic!("no row for lx1 in LXC's lxc-top:\n{theirs}"))
        .split(',')
        .filter_map(|f| f.parse().ok())
        .collect();
    let mut c = Reaped(
        rt.cmd("lxc-top", &["-b", "-d", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (header, rounds) = batch_rounds(&mut c.0, 1, 1);
    drop(c);
    assert_eq!(theirs.lines().next().unwrap(), header, "{theirs}");
    let ours = &rounds[0][0];
    assert_eq!(ours.name, "lx1");
    // Same fields; CPU time only grows, memory moves little.
    assert_eq!(their_row.len(), ours.f.len(), "{theirs}");
    assert!(ours.f[1] >= their_row[1], "cpu: ours {:?}, LXC's {their_row:?}", ours.f);
    assert!(
        ours.f[6].abs_diff(their_row[6]) < 4 << 20,
        "mem: ours {:?}, LXC's {their_row:?}",
        ours.f
    );
    // A device node into the container LXC runs, and out again.
    if Path::new("/sys/fs/cgroup/devices").is_dir() {
        let attach = |script: &str| {
            std::process::Command::new("timeout")
                .args(["30", "/usr/bin/lxc-attach", "-P"])
                .arg(&rt.lxcpath)
                .args(["-n", "lx1", "--", "/bin/sh", "-c", script])
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        let read = "/bin/busybox head -c 4 /dev/z9 | /bin/busybox wc -c";
        rt.ok("lxc-device", &["-n", "lx1", "add", "/dev/zero", "/dev/z9"]);
        assert_eq!(String::from_utf8_lossy(&attach(read).stdout).trim(), "4");
        rt.ok("lxc-device", &["-n", "lx1", "del", "/dev/zero", "/dev/z9"]);
        assert!(!attach("/bin/busybox test -e /dev/z9").status.success());
    } else {
        eprintln!("note: no v1 devices controller here; lxc-device on LXC's container not tried");
    }
    lxc_ok(&rt.lxcpath, "lxc-stop", &["-n", "lx1"]);
    rt.assert_clean(&["lx1"]);
}

/// Owners under `p` moved up by `by` (the container's map), no symlink followed.
fn shift_tree(p: &Path, by: u32) {
    use std::os::unix::fs::MetadataExt;
    let md = p.symlink_metadata().unwrap();
    std::os::unix::fs::lchown(p, Some(md.uid() + by), Some(md.gid() + by)).unwrap();
    if md.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            shift_tree(&e.unwrap().path(), by);
        }
    }
}

#[test]
fn device_on_an_unprivileged_container() {
    let rt = Rt::new();
    let rootfs = rt.container(
        "u1",
        "lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\nlxc.net.0.type = empty\n",
    );
    shift_tree(&rootfs, 100000);
    rt.ok("lxc-start", &["-n", "u1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while inside(&rt, "u1", "true").0 != 0 {
        assert!(Instant::now() < deadline, "u1 did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its /dev belongs to its user namespace, where no node opens: refused,
    // nothing made.
    let e = rt.fails("lxc-device", &["-n", "u1", "add", "/dev/zero", "/dev/sub/z"]);
    assert!(e.contains("unprivileged"), "{e}");
    assert_ne!(inside(&rt, "u1", "/bin/busybox test -e /dev/sub").0, 0);
    // An interface goes into its network namespace and back as to any other.
    let v = Veth::new();
    rt.ok("lxc-device", &["-n", "u1", "add", &v.0, "eth7"]);
    assert!(!host_has(&v.0));
    assert!(inside(&rt, "u1", "ip -o link").1.contains(": eth7@"));
    rt.ok("lxc-device", &["-n", "u1", "del", "eth7", &v.0]);
    assert!(host_has(&v.0));
    drop(v);
    rt.ok("lxc-stop", &["-n", "u1", "-t", "10"]);
    rt.assert_clean(&["u1"]);
}
