//! Debian's lxcfs hooks (`/usr/share/lxcfs/lxc.mount.hook` and
//! `lxc.reboot.hook`, the two lines of its `00-lxcfs.conf`) on a container
//! that includes LXC's common.conf: it starts, sees lxcfs' `/proc` files
//! (its memory limit as `MemTotal`), stops, and leaves nothing behind;
//! under strata and under LXC, privileged and in a user namespace.
//!
//! scripts/install-test-deps installs lxcfs with its `00-lxcfs.conf`
//! diverted out of LXC's `common.conf.d` (see there), so the config names
//! it. The test runs lxcfs on `/var/lib/lxcfs` (the path the hook reads)
//! when nothing serves it yet, and stops it at the end.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_testkit::lxc::lxc_ok;

const HOOKS: &str = "/usr/share/lxcfs/00-lxcfs.conf";
const MNT: &str = "/var/lib/lxcfs";

fn have_lxcfs() -> bool {
    if Path::new("/usr/bin/lxcfs").exists() && Path::new(HOOKS).exists() {
        return true;
    }
    assert!(
        std::env::var_os("STRATA_REQUIRE_LXCFS").is_none(),
        "lxcfs (or {HOOKS}) is not installed and STRATA_REQUIRE_LXCFS is set: run scripts/install-test-deps"
    );
    eprintln!("lxcfs is not installed: skipped");
    false
}

fn served() -> bool {
    std::fs::read_to_string(Path::new(MNT).join("proc/meminfo")).is_ok_and(|m| m.contains("MemTotal"))
}

/// lxcfs on /var/lib/lxcfs for the test's length: started (and stopped at
/// the end) only if nothing serves it yet.
struct Lxcfs(Option<Child>);

impl Lxcfs {
    fn ensure(pidfile: &Path) -> Lxcfs {
        if served() {
            return Lxcfs(None);
        }
        std::fs::create_dir_all(MNT).unwrap();
        let child = Command::new("/usr/bin/lxcfs")
            .arg("-f")
            .arg("-p")
            .arg(pidfile)
            .arg(MNT)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let me = Lxcfs(Some(child));
        strata_testkit::wait_until(&format!("lxcfs up on {MNT}"), served);
        me
    }
}

impl Drop for Lxcfs {
    fn drop(&mut self) {
        let Some(c) = self.0.as_mut() else {
            return;
        };
        // SAFETY: kill takes integers only; the pid is our own unreaped child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while c.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        let mounted = std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(MNT));
        if mounted {
            let _ = Command::new("umount").arg("-l").arg(MNT).status();
        }
    }
}

/// The memory limit key of this host's cgroup layout, for 256 MiB.
fn memory_limit() -> &'static str {
    if Path::new("/sys/fs/cgroup/memory").is_dir() {
        "lxc.cgroup.memory.limit_in_bytes = 256M\n"
    } else {
        "lxc.cgroup2.memory.max = 256M\n"
    }
}

fn config(rootfs: &Path, name: &str, extra: &str) -> String {
    format!(
        "lxc.include = /usr/share/lxc/config/common.conf\n\
         lxc.include = {HOOKS}\n\
         lxc.rootfs.path = dir:{}\n\
         lxc.uts.name = {name}\n\
         lxc.net.0.type = empty\n\
         {}{extra}",
        rootfs.display(),
        memory_limit()
    )
}

/// What the container sees: its MemTotal line, and which of its /proc
/// files are lxcfs mounts.
const PROBE: &str = "grep MemTotal /proc/meminfo; grep fuse.lxcfs /proc/mounts | while read a b c; do echo $b; done";

fn check_sees_lxcfs(out: &str) {
    let mut lines = out.lines();
    let mem: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(mem, ["MemTotal:", "262144", "kB"], "{out}");
    let mounts: Vec<&str> = lines.collect();
    for f in ["/proc/meminfo", "/proc/uptime", "/proc/cpuinfo", "/proc/stat"] {
        assert!(mounts.contains(&f), "{f} is not lxcfs': {out}");
    }
}

fn stop_in_time(rt: &Rt, name: &str) {
    let t = Instant::now();
    rt.ok("lxc-stop", &["-n", name, "-t", "10"]);
    // The post-stop hook sleeps half a second.
    assert!(t.elapsed() < Duration::from_secs(10), "lxc-stop waited");
    assert_eq!(rt.state(name), "STOPPED");
}

#[test]
fn debian_lxcfs_hooks() {
    if !have_lxcfs() {
        return;
    }
    let rt = Rt::new();
    let _lxcfs = Lxcfs::ensure(&rt.outside.join("lxcfs.pid"));
    let base = rt.mounts();

    // Privileged.
    let name = "parlxcfsp";
    let dir = rt.lxcpath.join(name);
    let rootfs = dir.join("rootfs");
    make_rootfs(&rootfs);
    std::fs::write(dir.join("config"), config(&rootfs, name, "")).unwrap();
    rt.ok("lxc-start", &["-n", name, "-d"]);
    let ours = rt.ok("lxc-attach", &["-n", name, "--", "/bin/sh", "-c", PROBE]);
    check_sees_lxcfs(&ours);
    stop_in_time(&rt, name);
    assert_eq!(rt.mounts(), base);

    // The same container under LXC sees the same.
    if Path::new("/usr/bin/lxc-start").exists() {
        let lxc = |tool: &str, args: &[&str]| lxc_ok(&rt.lxcpath, tool, args);
        lxc("lxc-start", &["-n", name]);
        let theirs = lxc("lxc-attach", &["-n", name, "--", "/bin/sh", "-c", PROBE]);
        lxc("lxc-stop", &["-n", name, "-k"]);
        check_sees_lxcfs(&theirs);
        assert_eq!(ours, theirs);
    }

    // In a user namespace the hook runs as the mapped root, which must
    // reach the rootfs by path: a dir on the way it cannot search is
    // refused before anything runs, naming it.
    let name = "parlxcfsu";
    let dir = rt.lxcpath.join(name);
    let rootfs = dir.join("rootfs");
    make_rootfs(&rootfs);
    std::fs::write(
        dir.join("config"),
        config(
            &rootfs,
            name,
            "lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n",
        ),
    )
    .unwrap();
    let top = rt.tmp.path();
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o700)).unwrap();
    let e = rt.fails("lxc-start", &["-n", name, "-d"]);
    assert!(
        e.contains("lxc.hook.mount") && e.contains(&top.display().to_string()),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert_eq!(rt.state(name), "STOPPED");
    assert_eq!(rt.records(), Vec::<String>::new());
    assert_eq!(rt.mounts(), base);
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o711)).unwrap();
    rt.ok("lxc-start", &["-n", name, "-d"]);
    let out = rt.ok("lxc-attach", &["-n", name, "--", "/bin/sh", "-c", PROBE]);
    check_sees_lxcfs(&out);
    let map = rt.ok("lxc-attach", &["-n", name, "--", "/bin/cat", "/proc/self/uid_map"]);
    assert_eq!(map.split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"]);
    stop_in_time(&rt, name);
    rt.assert_clean(&["parlxcfsp", "parlxcfsu"]);
}
