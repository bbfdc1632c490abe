//! `lxc.hook.*` run where and when LXC runs them, with its arguments and
//! environment; a failing pre-start, start-host or destroy hook stops what it
//! guards and leaves nothing behind.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn script(p: &Path, body: &str) {
    std::fs::write(p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn every_hook_runs_in_order_with_lxcs_environment() {
    let rt = Rt::new();
    let log = rt.outside.join("hooks.log");
    let host = rt.outside.join("hook");
    script(
        &host,
        &format!(
            "echo \"$3 $1 $2 $LXC_HOOK_TYPE $LXC_NAME pid=$LXC_PID target=$LXC_TARGET cfg=$LXC_CONFIG_FILE rootfs=$LXC_ROOTFS_PATH ns=$4\" >> {}",
            log.display()
        ),
    );
    let mut cfg = String::new();
    for t in [
        "pre-start",
        "pre-mount",
        "mount",
        "autodev",
        "start-host",
        "stop",
        "post-stop",
    ] {
        cfg.push_str(&format!("lxc.hook.{t} = {}\n", host.display()));
    }
    cfg.push_str("lxc.hook.start = /bin/hookstart\n");
    let rootfs = rt.container("c1", &cfg);
    script(
        &rootfs.join("bin/hookstart"),
        "echo \"$3 $1 $LXC_HOOK_TYPE\" > /tmp/hook-start",
    );
    rt.ok("lxc-start", &["-n", "c1"]);
    let inside = rt.ok("lxc-attach", &["-n", "c1", "--", "/bin/cat", "/tmp/hook-start"]);
    assert_eq!(inside.trim(), "start c1 start");
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    let t = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("post-stop")
        && t.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "pre-start",
            "pre-mount",
            "mount",
            "autodev",
            "start-host",
            "stop",
            "post-stop"
        ],
        "{text}"
    );
    for l in &lines {
        let ty = l.split(' ').next().unwrap();
        assert!(l.starts_with(&format!("{ty} c1 lxc {ty} c1 ")), "{l}");
        assert!(
            l.contains(&format!("cfg={}", rt.lxcpath.join("c1/config").display())),
            "{l}"
        );
        assert!(l.contains("rootfs=dir:"), "{l}");
    }
    assert!(!lines[4].contains("pid= "), "start-host gets LXC_PID: {}", lines[4]);
    assert!(
        lines[5].contains("target=stop") && lines[5].contains("ns=mnt:/proc/"),
        "{}",
        lines[5]
    );
    rt.assert_clean(&["c1"]);
}

#[test]
fn failing_hooks_stop_what_they_guard() {
    let rt = Rt::new();
    for (name, hook) in [("p1", "pre-start"), ("p2", "start-host"), ("p3", "mount")] {
        rt.container(
            name,
            &format!("lxc.hook.{hook} = /bin/false\nlxc.cgroup.pids.max = 20\n"),
        );
        let e = rt.fails("lxc-start", &["-n", name]);
        assert!(e.contains(&format!("lxc.hook.{hook}")), "{name}: {e}");
        assert_eq!(rt.state(name), "STOPPED");
    }
    rt.assert_clean(&["p1", "p2", "p3"]);
    let log = rt.outside.join("destroyed");
    let hook = rt.outside.join("destroy-hook");
    script(&hook, &format!("echo \"$3 $1\" > {}", log.display()));
    rt.container("d1", &format!("lxc.hook.destroy = {}\n", hook.display()));
    rt.container("d2", "lxc.hook.destroy = /bin/false\n");
    rt.ok("lxc-destroy", &["-n", "d1"]);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "destroy d1\n",
        "the destroy hook did not run"
    );
    let e = rt.fails("lxc-destroy", &["-n", "d2"]);
    assert!(e.contains("lxc.hook.destroy"), "{e}");
    rt.assert_clean(&["d2", "p1", "p2", "p3"]);
}
