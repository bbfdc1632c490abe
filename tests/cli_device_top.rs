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

/// The tools of this file, linked next to the helpers' ones.
fn link_tools(rt: &Rt) {
    for t in ["lxc-top", "lxc-device"] {
        let p = rt.bin.join(t);
        if !p.exists() {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_strata"), p).unwrap();
        }
    }
}

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
    link_tools(&rt);
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
        link_tools(&rt);
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
