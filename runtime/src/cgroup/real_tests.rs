//! Tests on the host's real cgroups (as root; skipped otherwise): what the
//! kernel reports after create/attach, limits enforced on a child, removal.

use super::*;
use std::ffi::{CStr, CString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;
use strata_core::config::Config;

/// A forked child that waits until `setup(pid)` is done, then runs `f`
/// (which must not allocate: the test harness has other threads) and
/// exits with its result. Returns (setup's result, exit status).
pub(crate) fn with_child<T>(setup: impl FnOnce(i32) -> T, f: impl FnOnce() -> i32) -> (T, i32) {
    let (r, w) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only makes system calls and exits.
    match unsafe { libc::fork() } {
        0 => {
            drop(w);
            let mut b = [0u8; 1];
            // Wait for the parent's byte, not for end of file: a child that
            // another test thread forks meanwhile inherits our write end,
            // and end of file would then never come.
            // SAFETY: plain read of a pipe we own into a local buffer.
            unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            let code = f();
            // SAFETY: leaving the forked child without unwinding.
            unsafe { libc::_exit(code) }
        }
        pid => {
            drop(r);
            let t = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup(pid)));
            if t.is_err() {
                // SAFETY: our own child, which must not outlive a failed setup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            } else {
                // SAFETY: one byte from a local buffer to a pipe we own.
                unsafe { libc::write(w.as_raw_fd(), b"g".as_ptr().cast(), 1) };
            }
            drop(w);
            let mut st = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            let code = if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else {
                255
            };
            match t {
                Ok(t) => (t, code),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    }
}

/// Bit 0: /dev/null opens read-write; bit 1: mknod of a 1:11 node at
/// `node` works; bit 2: opening that node fails with EPERM.
pub(crate) fn probe_devices(node: &CStr) -> i32 {
    let mut out = 0;
    // SAFETY: system calls on NUL-terminated strings that outlive them.
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            out |= 1;
            libc::close(fd);
        }
        if libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 11)) == 0 {
            out |= 2;
        }
        let fd = libc::open(node.as_ptr(), libc::O_RDONLY);
        if fd < 0 && *libc::__errno_location() == libc::EPERM {
            out |= 4;
        } else if fd >= 0 {
            libc::close(fd);
        }
    }
    out
}

/// Fork until the kernel refuses; the children wait and are killed after.
/// Returns how many forks worked (at most 63).
fn fork_bomb() -> i32 {
    let mut pids = [0i32; 64];
    let mut n = 0;
    while n < 63 {
        // SAFETY: the grandchild only pauses until it is killed.
        let p = unsafe { libc::fork() };
        if p == 0 {
            // SAFETY: as above.
            unsafe {
                libc::pause();
                libc::_exit(0)
            }
        }
        if p < 0 {
            break;
        }
        pids[n] = p;
        n += 1;
    }
    for &p in &pids[..n] {
        // SAFETY: our own children.
        unsafe {
            libc::kill(p, libc::SIGKILL);
            libc::waitpid(p, std::ptr::null_mut(), 0);
        }
    }
    n as i32
}

fn ready(ctls: &[&str]) -> Option<Layout> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    let l = Layout::detect().ok()?;
    if let Some(c) = ctls.iter().find(|c| l.v1(c).is_none()) {
        eprintln!("skipped: no cgroup v1 {c} controller");
        return None;
    }
    Some(l)
}

fn name(tag: &str) -> String {
    format!("strata-test-{}-{tag}", std::process::id())
}

fn spec(text: &str) -> Spec {
    Spec::from_config(&Config::parse(text).unwrap()).unwrap()
}

fn leaf(p: &Plan, ctl: &str) -> PathBuf {
    p.dirs
        .iter()
        .find(|d| d.controllers.iter().any(|c| c == ctl))
        .unwrap()
        .leaf
        .clone()
}

#[test]
fn cgroup_real_limits_devices_attach_remove() {
    let Some(layout) = ready(&["memory", "pids", "cpuset", "devices"]) else {
        return;
    };
    let common = std::fs::read_to_string("/usr/share/lxc/config/common.conf").unwrap_or_else(|_| {
        "lxc.cgroup.devices.deny = a\nlxc.cgroup.devices.allow = c *:* m\nlxc.cgroup.devices.allow = c 1:3 rwm\n\
         lxc.cgroup2.devices.deny = a\nlxc.cgroup2.devices.allow = c *:* m\nlxc.cgroup2.devices.allow = c 1:3 rwm\n"
            .into()
    });
    let s = spec(&format!(
        "{common}\nlxc.cgroup.memory.limit_in_bytes = 64M\nlxc.cgroup.pids.max = 20\nlxc.cgroup.cpuset.cpus = 0\n"
    ));
    let p = plan(&layout, &s, &name("a")).unwrap();
    let paths = p.paths();
    assert_eq!(paths.len(), layout.hierarchies.len());
    assert!(paths.iter().all(|d| !d.exists()));
    // The same list in both trees: the v1 controller enforces it, no program (as LXC).
    assert_eq!(
        p.has_device_program(),
        layout.unified().is_some() && layout.v1("devices").is_none()
    );
    create(&p).unwrap();
    let res = std::panic::catch_unwind(|| {
        let mem = leaf(&p, "memory");
        assert!(mem.ends_with(format!("lxc.payload.{}", name("a"))));
        assert_eq!(read_file(&mem, "memory.limit_in_bytes").unwrap().trim(), "67108864");
        assert_eq!(read_file(&leaf(&p, "pids"), "pids.max").unwrap().trim(), "20");
        assert_eq!(read_file(&leaf(&p, "cpuset"), "cpuset.cpus").unwrap().trim(), "0");
        let dl = read_file(&leaf(&p, "devices"), "devices.list").unwrap();
        assert!(dl.contains("c 1:3 rwm") && !dl.contains("a *:* rwm"), "{dl}");
        let tmp = tempfile::tempdir().unwrap();
        let node = CString::new(tmp.path().join("kmsg").as_os_str().as_bytes()).unwrap();
        let (cg, st) = with_child(
            |pid| {
                attach(&p, pid).unwrap();
                std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap()
            },
            || probe_devices(&node) | (fork_bomb() << 3),
        );
        for d in &p.dirs {
            let line = if d.version == Version::V2 {
                format!("0::/{}", p.name)
            } else {
                format!(":{}:/{}", d.controllers.join(","), p.name)
            };
            assert!(cg.contains(&line), "{line} not in {cg}");
        }
        assert_eq!(
            st & 7,
            7,
            "/dev/null opens, mknod works (c *:* m), the 1:11 node gives EPERM"
        );
        assert_eq!(st >> 3, 19, "pids.max = 20 stops the fork bomb at 19 children");
        let stats = stats(&paths);
        assert!(stats.cpu_ns.is_some() && stats.memory_bytes.is_some(), "{stats:?}");
        assert!(format_stats(&stats, true).contains("CPU use:"));
    });
    remove(&paths).unwrap();
    assert!(paths.iter().all(|d| !d.exists()));
    remove(&paths).unwrap();
    if let Err(e) = res {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn cgroup_real_remove_busy_nested_and_suffix() {
    let Some(layout) = ready(&["memory"]) else { return };
    let n = name("b");
    let p = plan(&layout, &spec(""), &n).unwrap();
    create(&p).unwrap();
    // An idmapped container's root group gets the cgroups (LXC's chown).
    chown(&p, 54321).unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        let m = leaf(&p, "memory");
        let md = std::fs::metadata(&m).unwrap();
        assert_eq!((md.gid(), md.mode() & 0o7777), (54321, 0o775));
        let md = std::fs::metadata(m.join("cgroup.procs")).unwrap();
        assert_eq!((md.gid(), md.mode() & 0o777), (54321, 0o664));
    }
    // The same name again: LXC's -1 suffix.
    let p2 = plan(&layout, &spec(""), &n).unwrap();
    assert_eq!(p2.name, format!("lxc.payload.{n}-1"));
    let paths = p.paths();
    // Cgroups made inside (a container's systemd does that).
    let mem = leaf(&p, "memory");
    std::fs::create_dir_all(mem.join("init.scope/sub")).unwrap();
    let (err, _) = with_child(
        |pid| {
            // From the recorded list alone, as lxc-attach does.
            enter(&paths, pid).unwrap();
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            assert!(cg.contains(&format!(":memory:/{}\n", p.name)), "{cg}");
            let e = remove(&paths).unwrap_err();
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            e
        },
        || {
            // SAFETY: waits to be killed.
            unsafe { libc::pause() };
            0
        },
    );
    assert_eq!(err.kind(), strata_core::ErrorKind::Busy);
    assert!(err.to_string().contains("processes remain"), "{err}");
    remove(&paths).unwrap();
    assert!(paths.iter().all(|d| !d.exists()));
}

#[test]
fn cgroup_real_freeze_and_missing_file() {
    let Some(layout) = ready(&["freezer"]) else { return };
    let p = plan(&layout, &spec(""), &name("c")).unwrap();
    create(&p).unwrap();
    let paths = p.paths();
    let (r, _) = with_child(
        |pid| {
            attach(&p, pid).unwrap();
            let f = freeze(&paths, Duration::from_secs(2));
            let state = read_file(&leaf(&p, "freezer"), "freezer.state").unwrap_or_default();
            let t = thaw(&paths, Duration::from_secs(2));
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            (f, state, t)
        },
        || {
            // SAFETY: waits to be killed.
            unsafe { libc::pause() };
            0
        },
    );
    remove(&paths).unwrap();
    r.0.unwrap();
    assert_eq!(r.1.trim(), "FROZEN");
    r.2.unwrap();
    // A file the controller does not have: an error naming the key, nothing left behind.
    let s = spec("lxc.cgroup.freezer.nonsense = 1\n");
    let p = plan(&layout, &s, &name("d")).unwrap();
    let e = create(&p).unwrap_err().to_string();
    assert!(
        e.contains("lxc.cgroup.freezer.nonsense: the freezer controller has no file"),
        "{e}"
    );
    assert!(p.paths().iter().all(|d| !d.exists()));
    // A value the kernel refuses: named with its key.
    if layout.v1("pids").is_some() {
        let p = plan(&layout, &spec("lxc.cgroup.pids.max = lots\n"), &name("e")).unwrap();
        let e = create(&p).unwrap_err().to_string();
        assert!(e.contains("lxc.cgroup.pids.max = lots: the kernel refused it"), "{e}");
        assert!(p.paths().iter().all(|d| !d.exists()));
    }
}

#[test]
fn cgroup_real_v2_key_on_hybrid_is_an_error() {
    let Some(layout) = ready(&["memory"]) else { return };
    if layout.kind() != LayoutKind::Hybrid {
        eprintln!("skipped: not a hybrid host");
        return;
    }
    let e = plan(&layout, &spec("lxc.cgroup2.memory.max = 64M\n"), &name("f"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lxc.cgroup2.memory.max:") && e.contains("cgroup v1 controller here"),
        "{e}"
    );
}

/// In a child that joined the container's cgroups and unshared its mount
/// and cgroup namespaces, mount the cgroups into a scratch root and look:
/// exit 0 when every check passes, else the number of the failed one.
#[test]
fn cgroup_real_mount_in_container() {
    let Some(layout) = ready(&["memory"]) else { return };
    let p = plan(&layout, &spec("lxc.cgroup.memory.limit_in_bytes = 32M\n"), &name("m")).unwrap();
    create(&p).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root_path = tmp.path().to_path_buf();
    let (_, st) = with_child(
        |pid| attach(&p, pid).unwrap(),
        || {
            let top = root_path.join("sys/fs/cgroup");
            let run = || -> std::result::Result<i32, String> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS | nix::sched::CloneFlags::CLONE_NEWCGROUP)
                    .map_err(|e| e.to_string())?;
                crate::sys::mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None).map_err(|e| e.to_string())?;
                let root = crate::sys::open_dir(&root_path).map_err(|e| e.to_string())?;
                let auto = CgroupAuto {
                    mode: Some(CgroupAccess::Mixed),
                    full: false,
                    force: true,
                };
                mount_in_container(&auto, true, &layout, &root, &mut crate::syscall::RealSyscall)
                    .map_err(|e| e.to_string())?;
                let me = std::process::id().to_string();
                // The memory hierarchy, rooted at the container's cgroup by the namespace.
                let lim = std::fs::read_to_string(top.join("memory/memory.limit_in_bytes")).unwrap_or_default();
                if lim.trim() != "33554432" {
                    return Ok(2);
                }
                let procs = std::fs::read_to_string(top.join("memory/cgroup.procs")).unwrap_or_default();
                if !procs.lines().any(|l| l == me) {
                    return Ok(3);
                }
                // Every hierarchy has its directory; named ones too.
                for h in &layout.hierarchies {
                    if !top.join(h.mount_name()).join("cgroup.procs").exists() {
                        return Ok(4);
                    }
                }
                // Mixed in a cgroup namespace: the container's cgroup is writable.
                if std::fs::create_dir(top.join("memory/sub")).is_err() {
                    return Ok(5);
                }
                let _ = std::fs::remove_dir(top.join("memory/sub"));
                Ok(0)
            };
            match run() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            }
        },
    );
    remove(&p.paths()).unwrap();
    assert_eq!(st, 0, "check {st} failed in the child");
}

/// A user without a delegated cgroup (nobody, on this host): no cgroup is
/// planned, device rules are no error, a resource limit is.
#[test]
fn cgroup_real_unprivileged_plan() {
    let Some(_) = ready(&[]) else { return };
    let n = name("u");
    let (_, st) = with_child(
        |_| (),
        || {
            let run = || -> i32 {
                let nobody = 65534;
                // SAFETY: plain credential calls in this single-threaded child.
                let dropped = unsafe {
                    libc::setgroups(0, std::ptr::null()) == 0
                        && libc::setresgid(nobody, nobody, nobody) == 0
                        && libc::setresuid(nobody, nobody, nobody) == 0
                };
                if !dropped {
                    return 10;
                }
                let Ok(layout) = Layout::detect() else { return 11 };
                match plan(
                    &layout,
                    &spec("lxc.cgroup.devices.deny = a\nlxc.cgroup2.devices.deny = a\n"),
                    &n,
                ) {
                    Ok(p) if p.dirs.is_empty() && !p.has_device_program() => {}
                    Ok(_) => return 2,
                    Err(_) => return 3,
                }
                let who = super::user_name();
                match plan(&layout, &spec("lxc.cgroup.memory.limit_in_bytes = 64M\n"), &n) {
                    Err(e)
                        if e.to_string()
                            == format!(
                                "lxc.cgroup.memory.limit_in_bytes: no cgroup can be delegated to {who} on this host"
                            ) =>
                    {
                        0
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        4
                    }
                    Ok(_) => 5,
                }
            };
            run()
        },
    );
    assert_eq!(st, 0, "check {st} failed in the child");
}

/// The cgroup2 code paths for real, on this host's unified tree alone (as
/// a cgroup2-only host would have it, minus controllers): a v2 core file,
/// the device program, cgroup.freeze, cpu.stat, the cgroup2 mount.
#[test]
fn cgroup_real_unified_only() {
    let Some(full) = ready(&[]) else { return };
    let Some(u) = full.unified().cloned() else {
        eprintln!("skipped: no unified cgroup tree");
        return;
    };
    let layout = Layout { hierarchies: vec![u] };
    let s = spec(
        "lxc.cgroup2.devices.deny = a\nlxc.cgroup2.devices.allow = c *:* m\nlxc.cgroup2.devices.allow = c 1:3 rwm\n\
         lxc.cgroup2.cgroup.max.depth = 2\n",
    );
    let p = plan(&layout, &s, &name("v2")).unwrap();
    assert!(p.has_device_program());
    create(&p).unwrap();
    let paths = p.paths();
    let dir = p.dirs[0].leaf.clone();
    assert_eq!(read_file(&dir, "cgroup.max.depth").unwrap().trim(), "2");
    let tmp = tempfile::tempdir().unwrap();
    let node = CString::new(tmp.path().join("kmsg").as_os_str().as_bytes()).unwrap();
    let root_path = tmp.path().join("root");
    std::fs::create_dir(&root_path).unwrap();
    let ((frozen, thawed, st2), st) = with_child(
        |pid| {
            attach(&p, pid).unwrap();
            freeze(&paths, Duration::from_secs(2)).unwrap();
            let frozen = read_file(&dir, "cgroup.events").unwrap_or_default();
            thaw(&paths, Duration::from_secs(2)).unwrap();
            let thawed = read_file(&dir, "cgroup.events").unwrap_or_default();
            // The cgroup2 mount, in a second child in the same cgroup.
            let (_, st2) = with_child(
                |pid2| enter(&paths, pid2).unwrap(),
                || {
                    let run = || -> std::result::Result<i32, String> {
                        nix::sched::unshare(
                            nix::sched::CloneFlags::CLONE_NEWNS | nix::sched::CloneFlags::CLONE_NEWCGROUP,
                        )
                        .map_err(|e| e.to_string())?;
                        crate::sys::mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)
                            .map_err(|e| e.to_string())?;
                        let root = crate::sys::open_dir(&root_path).map_err(|e| e.to_string())?;
                        let auto = CgroupAuto {
                            mode: Some(CgroupAccess::Ro),
                            full: false,
                            force: false, // a cgroup2-only layout mounts without force
                        };
                        mount_in_container(&auto, true, &layout, &root, &mut crate::syscall::RealSyscall)
                            .map_err(|e| e.to_string())?;
                        let top = root_path.join("sys/fs/cgroup");
                        let depth = std::fs::read_to_string(top.join("cgroup.max.depth")).unwrap_or_default();
                        if depth.trim() != "2" {
                            return Ok(2);
                        }
                        // Read-only.
                        if std::fs::create_dir(top.join("sub")).map_err(|e| e.raw_os_error()) != Err(Some(libc::EROFS))
                        {
                            return Ok(3);
                        }
                        Ok(0)
                    };
                    run().unwrap_or_else(|e| {
                        eprintln!("{e}");
                        1
                    })
                },
            );
            (frozen, thawed, st2)
        },
        || probe_devices(&node),
    );
    let stats = stats(&paths);
    remove(&paths).unwrap();
    assert!(!dir.exists());
    assert!(frozen.contains("frozen 1"), "{frozen}");
    assert!(thawed.contains("frozen 0"), "{thawed}");
    assert_eq!(st, 7, "/dev/null opens, mknod works, the 1:11 node gives EPERM");
    assert_eq!(st2, 0, "check {st2} of the cgroup2 mount failed");
    assert!(stats.cpu_ns.is_some(), "{stats:?}");
}

/// LXC's monitor cgroup: made, entered, left for lxc.pivot, removed.
#[test]
fn cgroup_real_monitor_cgroup() {
    let Some(layout) = ready(&["memory"]) else { return };
    let s = spec("");
    let m = plan_monitor(&layout, &s, &name("mon")).unwrap();
    assert!(m.name.starts_with("lxc.monitor."));
    create(&m).unwrap();
    let (cg, _) = with_child(
        |pid| {
            attach(&m, pid).unwrap();
            leave(&layout, &s, pid).unwrap();
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            cg
        },
        || {
            // SAFETY: waits to be killed.
            unsafe { libc::pause() };
            0
        },
    );
    remove(&m.paths()).unwrap();
    // lxc.pivot is shared and stays for LXC; the test's own leftovers go when empty.
    for d in &m.dirs {
        let _ = std::fs::remove_dir(d.base.join("lxc.pivot"));
    }
    assert!(cg.contains(":memory:/lxc.pivot\n"), "{cg}");
}
