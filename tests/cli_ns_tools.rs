//! lxc-usernsexec and lxc-unshare on real namespaces, as root and as the
//! non-root test user (scripts/setup-test-user): the maps a command sees
//! in /proc/self/uid_map, the owners of the files it makes, hostnames,
//! PID 1, a fresh /proc, moved interfaces, exit statuses, and bad input
//! refused with one line before anything runs.

#[path = "runtime_helpers.rs"]
mod helpers;
#[path = "common/unpriv.rs"]
#[macro_use]
mod unpriv;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use strata_core::idmap::SubIds;
use unpriv::*;

/// The binary under the two names, in a directory any user can read.
struct Bin(tempfile::TempDir);

impl Bin {
    fn new() -> Bin {
        let d = tempfile::Builder::new().prefix("strata-nstools-").tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_strata"));
        strata_testkit::link_tools(exe, d.path(), ["lxc-usernsexec", "lxc-unshare"]);
        Bin(d)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        Command::new(self.0.path().join(tool))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, tool: &str, args: &[&str]) -> String {
        let o = self.run(tool, args);
        assert!(
            o.status.success(),
            "{tool} {args:?}: {:?}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A refusal: exit 1, one line naming the tool, and `marker` (which the
    /// command would have made) not there.
    fn refused(&self, tool: &str, args: &[&str], marker: &Path) -> String {
        let o = self.run(tool, args);
        let e = one_line_failure(&o, tool, args);
        assert!(!marker.exists(), "{tool} {args:?} ran the command: {e}");
        e
    }
}

/// Lines of a uid_map/gid_map text as numbers.
fn map_lines(text: &str) -> Vec<Vec<u64>> {
    text.lines()
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect()
}

/// The caller's first subordinate uid and gid ranges of at least `n` ids.
fn big_ranges(n: u32) -> (u32, u32) {
    let s = SubIds::for_caller().unwrap();
    let pick = |v: &[(u32, u32)]| {
        v.iter()
            .find(|r| r.1 >= n)
            .expect("a subordinate range of 200 ids or more")
            .0
    };
    (pick(&s.uids), pick(&s.gids))
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

/// A scratch dir the command (root of a user namespace) may write in.
fn open_scratch() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("strata-nstools-w").tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// Removes files made under ids the caller cannot unlink directly.
fn remove_as_owner(bin: &Bin, dir: &Path) {
    if !is_root() {
        let d = dir.to_str().unwrap();
        let _ = bin.run("lxc-usernsexec", &["-s", "--", "sh", "-c", &format!("rm -rf {d}/*")]);
    }
}

user_test!(usernsexec_default_map_is_the_first_subordinate_range, &[], {
    let bin = Bin::new();
    let s = SubIds::for_caller().unwrap();
    let (u0, uc) = s.uids[0];
    let (g0, gc) = s.gids[0];
    let w = open_scratch();
    let f = w.path().join("made-inside");
    let out = bin.ok(
        "lxc-usernsexec",
        &[
            "--",
            "sh",
            "-c",
            &format!(
                "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; touch {}",
                f.display()
            ),
        ],
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"), "{out}");
    assert_eq!(lines.next(), Some("0"), "{out}");
    let maps = map_lines(&lines.collect::<Vec<_>>().join("\n"));
    assert_eq!(
        maps,
        vec![vec![0, u0 as u64, uc as u64], vec![0, g0 as u64, gc as u64]],
        "{out}"
    );
    // Root inside is the first subordinate id outside.
    assert_eq!(owner(&f), (u0, g0));
    remove_as_owner(&bin, w.path());
});

user_test!(usernsexec_own_and_subordinate_ids_own_the_files, &[], {
    let bin = Bin::new();
    let s = SubIds::for_caller().unwrap();
    let (u0, g0) = (s.uids[0].0, s.gids[0].0);
    let (uid, gid) = own_ids();
    let w = open_scratch();
    let d = w.path().display().to_string();
    let maps = [
        format!("-mu:0:{uid}:1"),
        format!("-mg:0:{gid}:1"),
        format!("-mu:1:{u0}:1"),
        format!("-mg:1:{g0}:1"),
    ];
    let script = format!("cd {d} && touch f0 f1 f2 && chown 1:1 f1 && chgrp 1 f2 && stat -c '%n:%u:%g' f0 f1 f2");
    let mut args: Vec<&str> = maps.iter().map(String::as_str).collect();
    args.extend(["--", "sh", "-c", &script]);
    let out = bin.ok("lxc-usernsexec", &args);
    // Inside: the ids as the namespace sees them.
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["f0:0:0", "f1:1:1", "f2:0:1"]
    );
    // Outside: the host ids they map to.
    assert_eq!(owner(&w.path().join("f0")), (uid, gid));
    assert_eq!(owner(&w.path().join("f1")), (u0, g0));
    assert_eq!(owner(&w.path().join("f2")), (uid, g0));
    remove_as_owner(&bin, w.path());
});

user_test!(usernsexec_map_self_goes_above_the_ranges, &[], {
    let bin = Bin::new();
    let (u0, g0) = big_ranges(200);
    let (uid, gid) = own_ids();
    let out = bin.ok(
        "lxc-usernsexec",
        &[
            &format!("-mu:0:{u0}:10"),
            &format!("-mg:0:{g0}:20"),
            "-s",
            "--",
            "sh",
            "-c",
            "cat /proc/self/uid_map; echo; cat /proc/self/gid_map",
        ],
    );
    let (u, g) = out.split_once("\n\n").unwrap();
    assert_eq!(
        map_lines(u),
        vec![vec![0, u0 as u64, 10], vec![10, uid as u64, 1]],
        "{out}"
    );
    assert_eq!(
        map_lines(g),
        vec![vec![0, g0 as u64, 20], vec![20, gid as u64, 1]],
        "{out}"
    );
});

user_test!(usernsexec_refuses_bad_maps_with_one_line, &[], {
    let bin = Bin::new();
    let (u0, g0) = big_ranges(200);
    let w = open_scratch();
    let marker = w.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["-m".into(), "u:0:x:1".into()], "invalid map"),
        (vec!["-m".into(), "q:0:1:1".into()], "invalid map"),
        (vec!["-m".into(), "u:0:1:0".into()], "invalid map"),
        (vec!["-m".into(), "u:0:1".into()], "invalid map"),
        // Host uid 1 is neither the user's own nor subordinate.
        (vec!["-mu:0:1:1".into(), format!("-mg:0:{g0}:1")], "uid"),
        // No uid 0 inside: the command could not become root.
        (
            vec![format!("-mu:1:{u0}:1"), format!("-mg:0:{g0}:1")],
            "uid 0 is not mapped",
        ),
        (
            vec![
                format!("-mu:0:{u0}:10"),
                format!("-mu:5:{}:10", u0 + 100),
                format!("-mg:0:{g0}:1"),
            ],
            "overlap",
        ),
    ];
    for (maps, want) in cases {
        let mut args: Vec<&str> = maps.iter().map(String::as_str).collect();
        args.extend(["--", "sh", "-c", &touch]);
        let e = bin.refused("lxc-usernsexec", &args, &marker);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // The command's own status comes back; a missing command is one line.
    let o = bin.run("lxc-usernsexec", &["--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let e = one_line_failure(
        &bin.run("lxc-usernsexec", &["--", "/nonexistent/cmd"]),
        "lxc-usernsexec",
        &[],
    );
    assert!(e.contains("/nonexistent/cmd"), "{e}");
});

#[test]
fn usernsexec_as_root_maps_roots_range() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let s = SubIds::for_caller().unwrap();
    let Some(&(u0, uc)) = s.uids.first() else {
        eprintln!("skipped: root has no /etc/subuid range (scripts/setup-test-user adds one)");
        return;
    };
    let bin = Bin::new();
    let out = bin.ok("lxc-usernsexec", &["--", "cat", "/proc/self/uid_map"]);
    assert_eq!(map_lines(&out), vec![vec![0, u0 as u64, uc as u64]]);
    // The mount namespace is new and a slave: mounts inside stay inside.
    let w = open_scratch();
    let d = w.path().display().to_string();
    bin.ok(
        "lxc-usernsexec",
        &[
            "-m",
            "b:0:0:1",
            "--",
            "sh",
            "-c",
            &format!("mount -t tmpfs none {d} && touch {d}/inside"),
        ],
    );
    assert!(!w.path().join("inside").exists());
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.contains(&format!(" {d} ")), "{mi}");
}

user_test!(unshare_user_maps_the_given_uid_to_the_caller, &[], {
    let bin = Bin::new();
    let (uid, _) = own_ids();
    let out = bin.ok(
        "lxc-unshare",
        &[
            "-s",
            "USER",
            "-u",
            "0",
            "--",
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map",
        ],
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"), "{out}");
    assert_eq!(
        map_lines(&lines.collect::<Vec<_>>().join("\n")),
        vec![vec![0, uid as u64, 1]]
    );
    // A user namespace first lets a user have the others: PID 1 and a fresh /proc.
    let out = bin.ok(
        "lxc-unshare",
        &[
            "-s",
            "USER|MOUNT|PID|UTSNAME|IPC|NETWORK",
            "-u",
            "0",
            "-M",
            "-H",
            "userns-test",
            "--",
            "sh",
            "-c",
            "echo $$; hostname; ls /proc | grep -c '^[0-9]'; ip -o link | wc -l",
        ],
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1", "{out}");
    assert_eq!(l[1], "userns-test", "{out}");
    let procs: u32 = l[2].trim().parse().unwrap();
    assert!(procs <= 3, "a fresh /proc shows the namespace's processes only: {out}");
    assert_eq!(l[3].trim(), "1", "only lo: {out}");
    // Without USER a user may not make the others.
    let w = open_scratch();
    let marker = w.path().join("ran");
    let e = bin.refused(
        "lxc-unshare",
        &["-s", "NETWORK", "--", "touch", marker.to_str().unwrap()],
        &marker,
    );
    assert!(e.contains("USER"), "{e}");
});

fn root_only() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root");
    }
    is_root()
}

#[test]
fn unshare_hostname_pid_and_proc() {
    if !root_only() {
        return;
    }
    let bin = Bin::new();
    let host = nix::unistd::gethostname().unwrap();
    let out = bin.ok(
        "lxc-unshare",
        &["-s", "UTSNAME", "-H", "strata-ns-test", "--", "hostname"],
    );
    assert_eq!(out.trim(), "strata-ns-test");
    assert_eq!(nix::unistd::gethostname().unwrap(), host);
    // Mounts on /proc itself (others' tests mount elsewhere meanwhile).
    let proc_mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some("/proc"))
            .count()
    };
    let before = proc_mounts();
    let out = bin.ok(
        "lxc-unshare",
        &[
            "-s",
            "MOUNT|PID",
            "-M",
            "--",
            "sh",
            "-c",
            "echo $$; ls /proc | grep -c '^[0-9]'",
        ],
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1", "{out}");
    assert!(l[1].trim().parse::<u32>().unwrap() <= 3, "{out}");
    // The host's /proc and mount table are as they were.
    assert!(Path::new("/proc/1/status").exists());
    assert_eq!(proc_mounts(), before);
    // The exit status is the command's.
    assert_eq!(
        bin.run("lxc-unshare", &["-s", "UTSNAME", "--", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
}

#[test]
fn unshare_user_without_user_namespace_becomes_that_user() {
    if !root_only() {
        return;
    }
    let Some(u) = test_user() else {
        eprintln!("skipped: no user {USER}");
        return;
    };
    let bin = Bin::new();
    let out = bin.ok(
        "lxc-unshare",
        &["-s", "IPC", "-u", USER, "--", "sh", "-c", "id -u; id -g; id -G"],
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], u.uid.to_string());
    assert_eq!(l[1], u.gid.to_string());
    assert!(!l[2].split_whitespace().any(|g| g == "0"), "root's groups kept: {out}");
}

/// A veth pair removed on drop (if still on the host).
struct Veth(String);

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn unshare_moves_interfaces_into_the_new_network() {
    if !root_only() {
        return;
    }
    let bin = Bin::new();
    let name = format!("strns{}", std::process::id() % 100000);
    let peer = format!("{name}p");
    let st = Command::new("ip")
        .args(["link", "add", &name, "type", "veth", "peer", "name", &peer])
        .status()
        .unwrap();
    assert!(st.success());
    let _g = Veth(peer.clone());
    let out = bin.ok("lxc-unshare", &["-s", "NETWORK", "-i", &name, "--", "ip", "-o", "link"]);
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap())
        .collect();
    assert_eq!(names, ["lo", name.as_str()], "{out}");
    // A veth dies with its namespace (its peer on the host too).
    let gone = Instant::now() + Duration::from_secs(10);
    while Path::new("/sys/class/net").join(&name).exists() || Path::new("/sys/class/net").join(&peer).exists() {
        assert!(Instant::now() < gone, "{name} still on the host");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unshare_daemon_returns_while_the_command_runs() {
    if !root_only() {
        return;
    }
    let bin = Bin::new();
    let w = open_scratch();
    let marker = w.path().join("done");
    let t = Instant::now();
    // Not output(): the command keeps the pipes open while it runs.
    let st = Command::new(bin.0.path().join("lxc-unshare"))
        .args([
            "-s",
            "PID",
            "-d",
            "--",
            "sh",
            "-c",
            &format!("sleep 3; touch {}", marker.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(t.elapsed() < Duration::from_millis(2500), "{:?}", t.elapsed());
    assert!(!marker.exists());
    wait_until("the daemonized command finishes", || marker.exists());
}

#[test]
fn unshare_refuses_bad_input_with_one_line() {
    if !root_only() {
        return;
    }
    let bin = Bin::new();
    let w = open_scratch();
    let marker = w.path().join("ran");
    let m = marker.to_str().unwrap().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["-s", "BOGUS"], "BOGUS"),
        (&["-s", "MOUNT,PID"], "MOUNT,PID"),
        (&["-s", ""], "namespace"),
        (&[], "namespace"),
        (&["-s", "PID", "-H", "x"], "UTSNAME"),
        (&["-s", "PID", "-M"], "MOUNT"),
        (&["-s", "PID", "-i", "lo"], "NETWORK"),
        (&["-s", "NETWORK", "-i", "nosuchif0"], "nosuchif0"),
        (&["-s", "USER", "-u", "nosuchuser-x"], "nosuchuser-x"),
        (&["-s", "PID", "--bogus"], "bogus"),
    ];
    for (opts, want) in cases {
        let mut args: Vec<&str> = opts.to_vec();
        args.extend(["--", "touch", &m]);
        let e = bin.refused("lxc-unshare", &args, &marker);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    let e = one_line_failure(&bin.run("lxc-unshare", &["-s", "PID"]), "lxc-unshare", &[]);
    assert!(e.contains("command"), "{e}");
}

/// LXC's own tool, when installed, for side-by-side checks.
fn lxc_tool(name: &str) -> Option<std::path::PathBuf> {
    let p = Path::new("/usr/bin").join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped the comparison: LXC's {name} is not installed");
        None
    }
}

user_test!(usernsexec_sees_what_lxcs_sees, &[], {
    let Some(lxc) = lxc_tool("lxc-usernsexec") else {
        return;
    };
    let bin = Bin::new();
    let (u0, g0) = big_ranges(200);
    let (uid, gid) = own_ids();
    let w = open_scratch();
    let show = "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; touch f; stat -c '%u:%g' f";
    // The default map may be a single id (the first range listed): no chown there.
    let chown = "; chown 1:1 f; stat -c '%u:%g' f";
    let custom = [
        format!("-mu:0:{uid}:1"),
        format!("-mg:0:{gid}:1"),
        format!("-mu:1:{u0}:100"),
        format!("-mg:1:{g0}:100"),
    ];
    let self_map = [format!("-mu:0:{u0}:100"), format!("-mg:0:{g0}:100"), "-s".to_string()];
    for maps in [&[][..], &custom[..], &self_map[..]] {
        let mut args: Vec<&str> = maps.iter().map(String::as_str).collect();
        let extra = if maps.is_empty() { "" } else { chown };
        let script = format!("cd {} && {show}{extra}; rm f", w.path().display());
        args.extend(["--", "sh", "-c", &script]);
        let theirs = Command::new(&lxc).args(&args).stdin(Stdio::null()).output().unwrap();
        assert!(
            theirs.status.success(),
            "LXC {args:?}: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let ours = bin.ok("lxc-usernsexec", &args);
        assert_eq!(ours, String::from_utf8_lossy(&theirs.stdout), "{args:?}");
    }
});

#[test]
fn unshare_sees_what_lxcs_sees() {
    if !root_only() {
        return;
    }
    let Some(lxc) = lxc_tool("lxc-unshare") else {
        return;
    };
    let bin = Bin::new();
    let show = "echo $$; hostname; readlink /proc/self/ns/uts >/dev/null && echo uts; ip -o link | cut -d: -f2";
    for ns in ["UTSNAME|PID|NETWORK", "UTSNAME|IPC|MOUNT"] {
        let args = ["-s", ns, "-H", "side-by-side", "--", "sh", "-c", show];
        let theirs = Command::new(&lxc).args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            theirs.status.success(),
            "LXC {args:?}: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let ours = bin.ok("lxc-unshare", &args);
        let theirs = String::from_utf8_lossy(&theirs.stdout);
        // The pid differs outside a new PID namespace; the rest must not.
        let rest = |s: &str| s.lines().skip(1).map(str::to_string).collect::<Vec<_>>();
        assert_eq!(rest(&ours), rest(&theirs), "{args:?}");
        if ns.contains("PID") {
            assert_eq!(ours.lines().next(), theirs.lines().next());
        }
    }
}
