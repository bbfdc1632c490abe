//! Unprivileged containers in the runtime (run as root): a config with
//! `lxc.idmap` starts in a user namespace with those maps; inside, init is
//! root; on the host, it runs as the mapped uid. The rootfs is used as it is
//! when already owned by the mapped ids, else through an idmapped mount.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

const MAP: &str = "lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n";
const USER: &str = "stratatest";

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Shift owners of every entry under `p` by `by`, never following a symlink.
fn shift_tree(p: &Path, by: u32) {
    let md = p.symlink_metadata().unwrap();
    std::os::unix::fs::lchown(p, Some(md.uid() + by), Some(md.gid() + by)).unwrap();
    if md.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            shift_tree(&e.unwrap().path(), by);
        }
    }
}

/// `Uid:` and `Gid:` lines of /proc/PID/status (real, effective, saved, fs).
fn host_ids(pid: i64) -> (String, String) {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let get = |k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (get("Uid:"), get("Gid:"))
}

fn wait_running(rt: &Rt, name: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = rt.record(name).and_then(|r| r["init_pid"].as_i64()).filter(|p| *p > 0) {
            // Past the exec: init (our /sbin/init script) runs as the mapped root.
            if host_ids(pid).0.starts_with("100000") {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "{name} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shifted_rootfs_root_inside_mapped_uid_outside() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let rt = Rt::new();
    let rootfs = rt.container("c1", MAP);
    shift_tree(&rootfs, 100000);
    let o = rt.run(
        "lxc-execute",
        &[
            "-n",
            "c1",
            "--",
            "/bin/sh",
            "-c",
            "id -u; id -g; hostname; cat /proc/self/uid_map; touch /tmp/made; exit 5",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(5), "{out}{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["0", "0", "c1"], "{out}");
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"],
        "{out}"
    );
    // A file made by container root belongs to the mapped uid on the host.
    let md = rootfs.join("tmp/made").metadata().unwrap();
    assert_eq!((md.uid(), md.gid()), (100000, 100000));
    rt.assert_clean(&["c1"]);

    // Running in the background: the host sees init as uid 100000.
    rt.ok("lxc-start", &["-n", "c1"]);
    let pid = wait_running(&rt, "c1");
    assert_eq!(
        host_ids(pid),
        (
            "100000 100000 100000 100000".into(),
            "100000 100000 100000 100000".into()
        )
    );
    assert_eq!(rt.state("c1"), "RUNNING");
    let out = rt.ok("lxc-attach", &["-n", "c1", "--", "/bin/hostname"]);
    assert_eq!(out.trim(), "c1");
    rt.ok("lxc-stop", &["-n", "c1", "-t", "10"]);
    assert!(!pid_alive(pid));
    rt.assert_clean(&["c1"]);
}

#[test]
fn host_network_gets_the_hosts_sysfs_read_only() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let rt = Rt::new();
    let rootfs = rt.container("c1", &format!("{MAP}lxc.net.0.type = none\n"));
    shift_tree(&rootfs, 100000);
    let out = rt.ok(
        "lxc-execute",
        &[
            "-n",
            "c1",
            "--",
            "/bin/sh",
            "-c",
            "id -u; grep ' /sys ' /proc/mounts; ls /sys",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert!(lines[1].starts_with("sysfs /sys sysfs ro,"), "{out}");
    assert!(out.contains("class"), "{out}");
    rt.assert_clean(&["c1"]);
}

#[test]
fn unshifted_rootfs_through_an_idmapped_mount() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let rt = Rt::new();
    let rootfs = rt.container("c1", MAP);
    if !strata_runtime::userns::supports_idmapped(&rootfs) {
        eprintln!("skipped: no idmapped mounts on {}", rootfs.display());
        return;
    }
    let before = listing(&rootfs);
    let out = rt.ok(
        "lxc-execute",
        &[
            "-n",
            "c1",
            "--",
            "/bin/sh",
            "-c",
            "id -u; ls -ln /etc/base-marker; grep ' / ' /proc/mounts",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    // Host root's files are container root's, through the mount.
    let f: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!((f[2], f[3]), ("0", "0"), "{out}");
    assert!(lines[2].contains("idmapped"), "{out}");
    // Nothing was chowned on disk.
    assert_eq!(rootfs.join("etc/base-marker").metadata().unwrap().uid(), 0);
    assert_eq!(listing(&rootfs), before);
    rt.assert_clean(&["c1"]);
}

#[test]
fn map_without_root_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let rt = Rt::new();
    rt.container("c1", "lxc.idmap = u 1 100000 10\nlxc.idmap = g 1 100000 10\n");
    let e = rt.fails("lxc-execute", &["-n", "c1", "--", "/bin/true"]);
    assert!(e.contains("does not map container root"), "{e}");
    rt.assert_clean(&["c1"]);
    // Overlapping ranges: the line is named, nothing is started.
    let cfg = rt.lxcpath.join("c1/config");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "lxc.idmap = u 1 100000 10\n",
            "lxc.idmap = u 0 100000 65536\nlxc.idmap = u 10 200000 5\n",
        ),
    )
    .unwrap();
    let e = rt.fails("lxc-execute", &["-n", "c1", "--", "/bin/true"]);
    assert!(e.contains("lxc.idmap = u 10 200000 5"), "{e}");
    rt.assert_clean(&["c1"]);
}

/// Run a tool as the test user with its own run dir.
fn as_user(rt: &Rt, run_dir: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new("setpriv");
    c.args([
        &format!("--reuid={USER}"),
        &format!("--regid={USER}"),
        "--init-groups",
        "env",
        "-i",
    ])
    .arg(format!("HOME=/home/{USER}"))
    .arg("PATH=/usr/local/bin:/usr/bin:/bin")
    .arg(format!("STRATA_RUN_DIR={}", run_dir.display()))
    .arg(rt.bin.join(tool))
    .arg("-P")
    .arg(&rt.lxcpath)
    .args(args)
    .current_dir("/")
    .stdin(std::process::Stdio::null());
    c.output().unwrap()
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if p.symlink_metadata().unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

#[test]
fn user_map_outside_subordinate_ranges_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let Some(u) = nix::unistd::User::from_name(USER).ok().flatten() else {
        eprintln!("skipped: no user {USER} (run scripts/setup-test-user)");
        return;
    };
    let rt = Rt::new();
    let rootfs = rt.container("c1", "lxc.idmap = u 0 300000 65536\nlxc.idmap = g 0 300000 65536\n");
    let run_dir = rt.tmp.path().join("userrun");
    std::fs::create_dir(&run_dir).unwrap();
    chown_tree(rt.tmp.path(), u.uid.as_raw(), u.gid.as_raw());
    chown_tree(&rootfs, 300000, 300000);
    let o = as_user(&rt, &run_dir, "lxc-execute", &["-n", "c1", "--", "/bin/true"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("lxc-execute: ") && err.contains("300000-365535 are not allowed for user stratatest"),
        "{err}"
    );
    // Nothing started: no record, no mount, no mount point.
    assert!(
        !run_dir.join("state").exists()
            || std::fs::read_dir(run_dir.join("state"))
                .unwrap()
                .all(|d| { std::fs::read_dir(d.unwrap().path()).unwrap().next().is_none() })
    );
    assert_eq!(rt.mounts(), Vec::<String>::new());
    assert!(!run_dir.join("mnt").exists() || listing(&run_dir.join("mnt")).iter().all(|l| !l.contains("c1")));
}

/// The test user and newuidmap, or why the test is skipped.
fn user_ready() -> Option<nix::unistd::User> {
    if !is_root() {
        eprintln!("skipped: run as root (the test switches to user {USER})");
        return None;
    }
    if strata_core::idmap::find_in_path("newuidmap").is_none() {
        eprintln!("skipped: no newuidmap (install uidmap)");
        return None;
    }
    let u = nix::unistd::User::from_name(USER).ok().flatten();
    if u.is_none() {
        eprintln!("skipped: no user {USER} (run scripts/setup-test-user)");
    }
    u
}

#[test]
fn test_user_starts_runs_and_stops_a_container() {
    let Some(u) = user_ready() else { return };
    let rt = Rt::new();
    let rootfs = rt.container("c1", MAP);
    chown_tree(rt.tmp.path(), u.uid.as_raw(), u.gid.as_raw());
    shift_tree(&rootfs, 100000 - u.uid.as_raw());
    assert_eq!(rootfs.join("bin/busybox").metadata().unwrap().uid(), 100000);
    let run = |tool: &str, args: &[&str]| as_user(&rt, &rt.run_dir, tool, args);
    let o = run(
        "lxc-execute",
        &["-n", "c1", "--", "/bin/sh", "-c", "id -u; id -g; hostname; exit 6"],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(6), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "0", "c1"]);
    rt.assert_clean(&["c1"]);

    let o = run("lxc-start", &["-n", "c1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pid = wait_running(&rt, "c1");
    assert_eq!(
        host_ids(pid),
        (
            "100000 100000 100000 100000".into(),
            "100000 100000 100000 100000".into()
        )
    );
    let o = run("lxc-attach", &["-n", "c1", "--", "/bin/sh", "-c", "id -u; hostname"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().collect::<Vec<_>>(),
        ["0", "c1"],
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run("lxc-stop", &["-n", "c1", "-t", "10"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!pid_alive(pid));
    rt.assert_clean(&["c1"]);
}

#[test]
fn test_user_with_an_unshifted_rootfs_gets_a_clear_error() {
    let Some(u) = user_ready() else { return };
    let rt = Rt::new();
    let rootfs = rt.container("c1", MAP);
    chown_tree(rt.tmp.path(), u.uid.as_raw(), u.gid.as_raw());
    // Container-root-owned files as a privileged container has them: uid 0 on disk.
    chown_tree(&rootfs, 0, 0);
    let o = as_user(&rt, &rt.run_dir, "lxc-execute", &["-n", "c1", "--", "/bin/true"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("strata convert"), "{err}");
    rt.assert_clean(&["c1"]);
}

#[test]
fn ephemeral_overlay_clone_of_a_shifted_container() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let rt = Rt::new();
    // The legacy key name too.
    let rootfs = rt.container("c1", "lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n");
    shift_tree(&rootfs, 100000);
    let before = listing(&rootfs);
    let o = rt.run(
        "lxc-copy",
        &[
            "-n",
            "c1",
            "-e",
            "-N",
            "e1",
            "--",
            "/bin/sh",
            "-c",
            "id -u; hostname; grep -c '^overlay / ' /proc/mounts; touch /etc/new; exit 2",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "e1", "1"]);
    assert_eq!(listing(&rootfs), before, "the base changed");
    rt.assert_clean(&["c1"]);
}

#[test]
fn test_user_runs_an_overlay_snapshot_clone() {
    let Some(u) = user_ready() else { return };
    let rt = Rt::new();
    let rootfs = rt.container("c1", MAP);
    chown_tree(rt.tmp.path(), u.uid.as_raw(), u.gid.as_raw());
    shift_tree(&rootfs, 100000 - u.uid.as_raw());
    let before = listing(&rootfs);
    let run = |tool: &str, args: &[&str]| as_user(&rt, &rt.run_dir, tool, args);
    let o = run("lxc-copy", &["-n", "c1", "-N", "s1", "-s", "-B", "overlay"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(
        "lxc-execute",
        &[
            "-n",
            "s1",
            "--",
            "/bin/sh",
            "-c",
            "id -u; hostname; grep -c '^overlay / ' /proc/mounts; touch /etc/new && echo wrote",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "s1", "1", "wrote"]);
    // Written through the overlay, by the mapped root.
    let made = rt.lxcpath.join("s1/overlay/delta/etc/new");
    let md = made.metadata().unwrap();
    assert_eq!((md.uid(), md.gid()), (100000, 100000));
    assert_eq!(listing(&rootfs), before, "the base changed");
    rt.assert_clean(&["c1", "s1"]);
}

/// LXC's own config for unprivileged containers (common.conf, then
/// userns.conf), with limits, run by root: the container gets its cgroups
/// (handed to its root), the limits, the seccomp profile and a read-only
/// /proc/sys, and its cgroups are gone after it stops.
#[test]
fn root_runs_an_unprivileged_container_with_lxcs_config_confined() {
    if !is_root() || !Path::new("/usr/share/lxc/config/userns.conf").exists() {
        eprintln!("skipped: needs root and LXC's config files");
        return;
    }
    // Its own name: cgroup names are per host, and another test's "c1" may
    // take lxc.payload.c1 the moment this one frees it.
    let rt = Rt::new();
    let rootfs = rt.container(
        "uconfined",
        &format!(
            "{MAP}lxc.include = /usr/share/lxc/config/common.conf\nlxc.include = /usr/share/lxc/config/userns.conf\n\
             lxc.cgroup.pids.max = 32\nlxc.cgroup.memory.limit_in_bytes = 64M\n"
        ),
    );
    shift_tree(&rootfs, 100000);
    rt.ok("lxc-start", &["-n", "uconfined"]);
    let pid = wait_running(&rt, "uconfined");
    let cgroups: Vec<String> = rt.record("uconfined").unwrap()["cgroups"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let leaf = |ctl: &str| {
        cgroups
            .iter()
            .filter(|p| p.contains(&format!("/{ctl}/")) || p.contains(&format!("/{ctl},")))
            .max_by_key(|p| p.len())
            .unwrap_or_else(|| panic!("no {ctl} cgroup in {cgroups:?}"))
            .clone()
    };
    let read = |p: String| std::fs::read_to_string(p).unwrap().trim().to_string();
    assert_eq!(read(format!("{}/pids.max", leaf("pids"))), "32");
    assert_eq!(read(format!("{}/memory.limit_in_bytes", leaf("memory"))), "67108864");
    assert!(read(format!("{}/cgroup.procs", leaf("pids")))
        .lines()
        .any(|l| l == pid.to_string()));
    // Handed to the container's root group, as LXC does.
    assert_eq!(Path::new(&leaf("pids")).metadata().unwrap().gid(), 100000);
    let out = rt.ok(
        "lxc-attach",
        &[
            "-n",
            "uconfined",
            "--",
            "/bin/sh",
            "-c",
            "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; echo x > /proc/sys/kernel/core_pattern && echo WROTE; true",
        ],
    );
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    rt.ok("lxc-stop", &["-n", "uconfined", "-k"]);
    assert!(!pid_alive(pid));
    for c in &cgroups {
        assert!(!Path::new(c).exists(), "cgroup {c} left after stop");
    }
    rt.assert_clean(&["uconfined"]);
}

/// A user without a delegated cgroup (this host offers none to it): limits
/// are refused by name with nothing made, and without them LXC's
/// unprivileged config runs.
#[test]
fn test_user_limits_without_a_delegated_cgroup_are_refused() {
    let Some(u) = user_ready() else { return };
    if !Path::new("/usr/share/lxc/config/userns.conf").exists() {
        eprintln!("skipped: needs LXC's config files");
        return;
    }
    let rt = Rt::new();
    let inc = "lxc.include = /usr/share/lxc/config/common.conf\nlxc.include = /usr/share/lxc/config/userns.conf\n";
    let rootfs = rt.container("c1", &format!("{MAP}{inc}lxc.cgroup.pids.max = 32\n"));
    chown_tree(rt.tmp.path(), u.uid.as_raw(), u.gid.as_raw());
    shift_tree(&rootfs, 100000 - u.uid.as_raw());
    let run = |tool: &str, args: &[&str]| as_user(&rt, &rt.run_dir, tool, args);
    let o = run("lxc-execute", &["-n", "c1", "--", "/bin/true"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("lxc.cgroup.pids.max"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    rt.assert_clean(&["c1"]);
    let cfg = rt.lxcpath.join("c1/config");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("lxc.cgroup.pids.max = 32\n", "");
    std::fs::write(&cfg, text).unwrap();
    let o = run(
        "lxc-execute",
        &[
            "-n",
            "c1",
            "--",
            "/bin/sh",
            "-c",
            "id -u; grep ^Seccomp: /proc/self/status",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.starts_with("0\nSeccomp:\t2"), "{out}");
    rt.assert_clean(&["c1"]);
}
