//! Running state shared with LXC, through LXC's command socket: a container
//! Debian's LXC runs is running for strata's tools (shown, and copy,
//! restore, destroy, rename, snapshot and a second start refused with
//! nothing changed), and one strata runs is running for LXC's own
//! lxc-info, lxc-ls, lxc-wait, lxc-attach, lxc-freeze, lxc-console,
//! lxc-stop and lxc-destroy.
//!
//! LXC's binaries are called by their full path (/usr/bin): strata's
//! lxc-* links shadow the names. Without LXC installed the tests say so and
//! skip, unless `STRATA_REQUIRE_LXC` is set.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_core::lxc_cmd::{self, Rsp};
use strata_testkit::lxc::{have_lxc, lxc, lxc_cmd, lxc_ok, LxcStopper, LXC_BIN};
use strata_testkit::{exit_within, wait_for, wait_until};

/// A child killed (and reaped) when the test ends, passed or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const NET: &str = "lxc.net.0.type = empty\n";

/// Wait until the container's init (either runtime's) has its SIGPWR trap:
/// a halt sent before that is ignored by a pid 1 and lxc-stop waits its
/// whole timeout.
fn trapped(rt: &Rt, name: &str) {
    wait_until(&format!("{name}: init traps SIGPWR"), || {
        let pid = rt.ok("lxc-info", &["-n", name, "-p", "-H"]).trim().to_string();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & (1 << (libc::SIGPWR - 1)) != 0)
    });
}

/// The `ret` of command `cmd` asked as user `uid` on abstract socket `name`
/// (from a forked child that takes that uid; 1000 when it had no answer).
fn ask_as(uid: u32, name: &[u8], cmd: i32) -> i32 {
    let (rd, wr) = {
        let mut p = [0; 2];
        // SAFETY: pipe fills the two-int array.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        (p[0], p[1])
    };
    // SAFETY: the child makes raw syscalls only, then _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: all on local buffers; the child never returns.
        unsafe {
            let mut ret: i32 = 1000;
            if libc::setgid(uid) == 0 && libc::setuid(uid) == 0 {
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let mut addr: libc::sockaddr_un = std::mem::zeroed();
                addr.sun_family = libc::AF_UNIX as u16;
                for (i, b) in name.iter().enumerate() {
                    addr.sun_path[i + 1] = *b as libc::c_char;
                }
                let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + name.len()) as u32;
                if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) == 0 {
                    let h = lxc_cmd::req_bytes(cmd, 0);
                    let mut b = [0u8; 16];
                    // The monitor may answer a refusal and close before the
                    // request is written: the answer is read either way.
                    libc::write(fd, h.as_ptr().cast(), 16);
                    if libc::read(fd, b.as_mut_ptr().cast(), 16) == 16 {
                        ret = Rsp::from_bytes(&b).ret;
                    }
                }
            }
            libc::write(wr, (&ret as *const i32).cast(), 4);
            libc::_exit(0);
        }
    }
    // SAFETY: our pipe ends and child.
    unsafe {
        libc::close(wr);
        let mut ret: i32 = 1000;
        libc::read(rd, (&mut ret as *mut i32).cast(), 4);
        libc::close(rd);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        ret
    }
}

fn files(dir: &Path) -> Vec<String> {
    listing(dir)
}

#[test]
fn a_container_lxc_runs_is_running_for_strata() {
    if !have_lxc() {
        return;
    }
    let rt = Rt::new();
    let name = "ilx1";
    let rootfs = rt.container(name, NET);
    // A snapshot of the stopped container, to try a restore over the running one.
    rt.ok("lxc-snapshot", &["-n", name]);
    std::fs::write(rootfs.join("root/after-snap"), "kept\n").unwrap();

    lxc_ok(&rt.lxcpath, "lxc-start", &["-n", name, "-d"]);
    let _stop = LxcStopper::new(&rt.lxcpath, name);
    lxc_ok(&rt.lxcpath, "lxc-wait", &["-n", name, "-s", "RUNNING", "-t", "10"]);
    let lxc_pid = lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-p", "-H"])
        .trim()
        .to_string();
    assert!(pid_alive(lxc_pid.parse().unwrap()));

    // Shown as LXC shows it.
    assert_eq!(rt.state(name), "RUNNING");
    assert_eq!(rt.ok("lxc-info", &["-n", name, "-p", "-H"]).trim(), lxc_pid);
    let info = rt.ok("lxc-info", &["-n", name]);
    assert!(info.contains("State:          RUNNING"), "{info}");
    assert!(info.contains(&format!("PID:            {lxc_pid}")), "{info}");
    assert_eq!(rt.ok("lxc-ls", &["--running"]).trim(), name);
    assert_eq!(rt.ok("lxc-ls", &["--active"]).trim(), name);
    assert_eq!(rt.ok("lxc-ls", &["--stopped"]).trim(), "");
    let fancy = rt.ok("lxc-ls", &["-f", "-F", "NAME,STATE,PID"]);
    assert!(
        fancy
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [name, "RUNNING", lxc_pid.as_str()]),
        "{fancy}"
    );
    lxc_ok(&rt.lxcpath, "lxc-wait", &["-n", name, "-s", "RUNNING", "-t", "0"]);
    rt.ok("lxc-wait", &["-n", name, "-s", "RUNNING", "-t", "0"]);
    // Its cgroups are LXC's: resource use, and a freeze LXC sees.
    let stats = rt.ok("lxc-info", &["-n", name, "-S"]);
    assert!(stats.contains("Memory use:"), "{stats}");
    rt.ok("lxc-freeze", &["-n", name]);
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-s", "-H"]).trim(),
        "FROZEN"
    );
    assert_eq!(rt.state(name), "FROZEN");
    rt.ok("lxc-unfreeze", &["-n", name]);
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-s", "-H"]).trim(),
        "RUNNING"
    );

    // Refused, one line each, and nothing changes on disk or in the run dir.
    let before = (rt.entries(), files(&rt.lxcpath.join(name)), rt.mounts());
    for (tool, args, says) in [
        ("lxc-copy", vec!["-n", name, "-N", "ilx1copy"], "running"),
        ("lxc-copy", vec!["-n", name, "-R", "-N", "ilx1new"], "running"),
        ("lxc-destroy", vec!["-n", name, "-s"], "running"),
        ("lxc-start", vec!["-n", name, "-d"], "already running"),
        ("lxc-execute", vec!["-n", name, "--", "/bin/true"], "already running"),
        ("lxc-snapshot", vec!["-n", name], "running"),
        ("lxc-snapshot", vec!["-n", name, "-r", "snap0"], "running"),
    ] {
        let e = rt.fails(tool, &args);
        assert!(e.contains(says), "{tool} {args:?}: {e}");
        assert_eq!(
            (rt.entries(), files(&rt.lxcpath.join(name)), rt.mounts()),
            before,
            "{tool} {args:?} changed something"
        );
        assert_eq!(rt.records(), Vec::<String>::new(), "{tool} {args:?} left a run record");
    }
    assert_eq!(
        std::fs::read_to_string(rootfs.join("root/after-snap")).unwrap(),
        "kept\n"
    );
    // Still LXC's one init, untouched.
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-p", "-H"]).trim(),
        lxc_pid
    );

    // Stopped by LXC: stopped for strata too, and then strata acts on it.
    trapped(&rt, name);
    lxc_ok(&rt.lxcpath, "lxc-stop", &["-n", name]);
    assert_eq!(rt.state(name), "STOPPED");
    assert_eq!(rt.ok("lxc-ls", &["--running"]).trim(), "");
    rt.ok("lxc-start", &["-n", name, "-d"]);
    trapped(&rt, name);
    rt.ok("lxc-stop", &["-n", name]);
    rt.ok("lxc-snapshot", &["-n", name, "-d", "snap0"]);
    rt.assert_clean(&[name]);

    // strata's lxc-stop and lxc-destroy -f on a container LXC runs: done
    // once LXC's monitor is gone, as LXC's own would be.
    lxc_ok(&rt.lxcpath, "lxc-start", &["-n", name, "-d"]);
    lxc_ok(&rt.lxcpath, "lxc-wait", &["-n", name, "-s", "RUNNING", "-t", "10"]);
    trapped(&rt, name);
    rt.ok("lxc-stop", &["-n", name]);
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-s", "-H"]).trim(),
        "STOPPED"
    );
    lxc_ok(&rt.lxcpath, "lxc-start", &["-n", name, "-d"]);
    lxc_ok(&rt.lxcpath, "lxc-wait", &["-n", name, "-s", "RUNNING", "-t", "10"]);
    let pid: i64 = lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-p", "-H"])
        .trim()
        .parse()
        .unwrap();
    rt.ok("lxc-destroy", &["-n", name, "-f"]);
    assert!(!pid_alive(pid));
    assert_eq!(lxc_ok(&rt.lxcpath, "lxc-ls", &["--active"]).trim(), "");
    rt.assert_clean(&[]);
}

#[test]
fn lxc_tools_act_on_a_container_strata_runs() {
    if !have_lxc() {
        return;
    }
    let rt = Rt::new();
    let name = "ilx2";
    rt.container(name, NET);
    rt.ok("lxc-start", &["-n", name, "-d"]);
    let _stop = LxcStopper::new(&rt.lxcpath, name);
    let pid = rt.ok("lxc-info", &["-n", name, "-p", "-H"]).trim().to_string();

    // lxc-info, lxc-ls, lxc-wait see it running, with strata's init.
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-s", "-H"]).trim(),
        "RUNNING"
    );
    assert_eq!(lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-p", "-H"]).trim(), pid);
    // Its resource use, read through the cgroup fds strata's monitor hands out.
    let stats = lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-S"]);
    for k in ["CPU use:", "BlkIO use:", "Memory use:"] {
        assert!(stats.contains(k), "{k} missing from LXC's lxc-info -S:\n{stats}");
    }
    assert_eq!(lxc_ok(&rt.lxcpath, "lxc-ls", &["--running"]).trim(), name);
    let fancy = lxc_ok(&rt.lxcpath, "lxc-ls", &["-f", "-F", "NAME,STATE,PID"]);
    assert!(
        fancy
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [name, "RUNNING", pid.as_str()]),
        "{fancy}"
    );
    lxc_ok(&rt.lxcpath, "lxc-wait", &["-n", name, "-s", "RUNNING", "-t", "5"]);

    // lxc-attach runs in its namespaces and root.
    let out = lxc_ok(
        &rt.lxcpath,
        "lxc-attach",
        &["-n", name, "--", "/bin/sh", "-c", "cat /etc/base-marker; hostname"],
    );
    assert_eq!(out, format!("base\n{name}\n"));
    lxc_ok(&rt.lxcpath, "lxc-attach", &["-n", name, "--", "/bin/true"]);
    // In the container's cgroup namespace: its cgroups are its roots there.
    let cg = lxc_ok(
        &rt.lxcpath,
        "lxc-attach",
        &["-n", name, "--", "/bin/cat", "/proc/self/cgroup"],
    );
    assert!(!cg.is_empty() && !cg.contains("lxc.payload"), "{cg}");
    let o = lxc(&rt.lxcpath, "lxc-attach", &["-n", name, "--", "/bin/false"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");

    // What LXC's tools do not ask gets LXC's answer for an unsupported
    // command; a malformed or abandoned request costs nothing.
    let raw = |cmd: i32, value: u64, payload: &[u8]| -> Option<Rsp> {
        let addr = lxc_cmd::socket_addr(&rt.lxcpath, name).unwrap();
        let mut s = UnixStream::connect_addr(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut h = lxc_cmd::req_bytes(cmd, payload.len() as i32);
        h[8..].copy_from_slice(&value.to_ne_bytes());
        // The monitor may close before taking a refused payload.
        s.write_all(&h).ok()?;
        s.write_all(payload).ok()?;
        let mut b = [0u8; 16];
        s.read_exact(&mut b).ok()?;
        Some(Rsp::from_bytes(&b))
    };
    // The console (tty 0) is lent through a proxy pty: tty 0, and free
    // again once this client has gone (the next one gets it too).
    let r = raw(lxc_cmd::cmd::GET_TTY_FD, 0, &[]).unwrap();
    assert_eq!((r.ret, r.value), (0, 0));
    // The monitor frees it when it sees the hang-up, which may come after
    // the next request (LXC's monitor has the same order of events).
    wait_for("tty 0 lent again", || {
        let r = raw(lxc_cmd::cmd::GET_TTY_FD, 0, &[]).unwrap();
        match (r.ret, r.value) {
            (0, 0) => Ok(()),
            got => Err(format!("{got:?}")),
        }
    });
    for cmd in [11, 13, 14, 15, 16, 22, 26, 99, -1] {
        let r = raw(cmd, 0, &[]).unwrap_or_else(|| panic!("command {cmd}: no answer"));
        assert_eq!((r.ret, r.datalen), (-libc::ENOSYS, 0), "command {cmd}");
    }
    // A payload longer than any command's: closed unanswered.
    assert_eq!(raw(lxc_cmd::cmd::GET_CONFIG_ITEM, 0, &vec![b'x'; 70000]), None);
    {
        // Half a header, then gone.
        let addr = lxc_cmd::socket_addr(&rt.lxcpath, name).unwrap();
        let mut s = UnixStream::connect_addr(&addr).unwrap();
        s.write_all(&[3, 0, 0]).unwrap();
    }
    let r = raw(lxc_cmd::cmd::GET_CONFIG_ITEM, 0, b"lxc.uts.name\0").unwrap();
    assert_eq!(r.ret, 0);
    assert_eq!(
        raw(lxc_cmd::cmd::GET_CONFIG_ITEM, 0, b"lxc.nosuch.key\0").unwrap().ret,
        -1
    );
    assert_eq!(raw(lxc_cmd::cmd::GET_INIT_PID, 0, &[]).unwrap().value.to_string(), pid);
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-s", "-H"]).trim(),
        "RUNNING"
    );

    // Another user gets EACCES, and nothing else.
    assert_eq!(
        ask_as(65534, &lxc_cmd::socket_name(&rt.lxcpath, name), lxc_cmd::cmd::GET_STATE),
        -libc::EACCES
    );
    assert_eq!(
        ask_as(0, &lxc_cmd::socket_name(&rt.lxcpath, name), lxc_cmd::cmd::GET_STATE),
        0
    );

    // A second start and a destroy without -f are refused, nothing changed.
    let _ = lxc(&rt.lxcpath, "lxc-start", &["-n", name]);
    let o = lxc(&rt.lxcpath, "lxc-destroy", &["-n", name]);
    assert!(!o.status.success(), "LXC's lxc-destroy removed a running container");
    assert!(String::from_utf8_lossy(&o.stderr).contains("is running"), "{o:?}");
    assert_eq!(rt.entries(), [name]);
    assert_eq!(rt.ok("lxc-info", &["-n", name, "-p", "-H"]).trim(), pid);

    // LXC's lxc-freeze (through the v1 freezer or cgroup2, as the host has
    // it) wakes LXC's lxc-wait, and strata sees it frozen; then the other way.
    let mut w = Reaped(
        lxc_cmd(&rt.lxcpath, "lxc-wait", &["-n", name, "-s", "FROZEN", "-t", "20"])
            .spawn()
            .unwrap(),
    );
    assert_eq!(
        exit_within(&mut w.0, Duration::from_millis(300)),
        None,
        "lxc-wait returned early"
    );
    lxc_ok(&rt.lxcpath, "lxc-freeze", &["-n", name]);
    assert_eq!(exit_within(&mut w.0, Duration::from_secs(5)), Some(0));
    assert_eq!(rt.state(name), "FROZEN");
    lxc_ok(&rt.lxcpath, "lxc-unfreeze", &["-n", name]);
    assert_eq!(rt.state(name), "RUNNING");
    let mut w = Reaped(
        lxc_cmd(&rt.lxcpath, "lxc-wait", &["-n", name, "-s", "FROZEN", "-t", "20"])
            .spawn()
            .unwrap(),
    );
    assert_eq!(
        exit_within(&mut w.0, Duration::from_millis(300)),
        None,
        "lxc-wait returned early"
    );
    rt.ok("lxc-freeze", &["-n", name]);
    assert_eq!(exit_within(&mut w.0, Duration::from_secs(5)), Some(0));
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-s", "-H"]).trim(),
        "FROZEN"
    );
    rt.ok("lxc-unfreeze", &["-n", name]);
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-s", "-H"]).trim(),
        "RUNNING"
    );

    // lxc-wait for STOPPED, then lxc-stop: both return once strata tore it down.
    let mut w = Reaped(
        lxc_cmd(&rt.lxcpath, "lxc-wait", &["-n", name, "-s", "STOPPED", "-t", "20"])
            .spawn()
            .unwrap(),
    );
    assert_eq!(
        exit_within(&mut w.0, Duration::from_millis(300)),
        None,
        "lxc-wait returned early"
    );
    let t = Instant::now();
    trapped(&rt, name);
    lxc_ok(&rt.lxcpath, "lxc-stop", &["-n", name]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(exit_within(&mut w.0, Duration::from_secs(5)), Some(0));
    assert_eq!(rt.state(name), "STOPPED");
    assert!(!pid_alive(pid.parse().unwrap()));
    rt.assert_clean(&[name]);

    // lxc-stop -r: the new init comes on the same socket, lxc-stop sees it.
    let rootfs = rt.lxcpath.join(name).join("rootfs");
    std::fs::write(
        rootfs.join("sbin/init"),
        "#!/bin/sh\ntrap 'exit 0' PWR\ntrap '/bin/busybox reboot -f' USR1\necho boot >> /boots\nwhile :; do sleep 0.05; done\n",
    )
    .unwrap();
    let cfg = rt.lxcpath.join(name).join("config");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("lxc.signal.reboot = SIGUSR1\n");
    std::fs::write(&cfg, text).unwrap();
    rt.ok("lxc-start", &["-n", name, "-d"]);
    let pid1 = rt.ok("lxc-info", &["-n", name, "-p", "-H"]).trim().to_string();
    trapped(&rt, name);
    lxc_ok(&rt.lxcpath, "lxc-stop", &["-n", name, "-r", "-t", "10"]);
    let pid2 = lxc_ok(&rt.lxcpath, "lxc-info", &["-n", name, "-p", "-H"])
        .trim()
        .to_string();
    assert_ne!(pid1, pid2);
    assert_eq!(rt.ok("lxc-info", &["-n", name, "-p", "-H"]).trim(), pid2);
    // The new init runs its script (it is RUNNING from its exec on).
    let boots = || std::fs::read_to_string(rootfs.join("boots")).unwrap_or_default();
    wait_for("the new init's boot", || match boots() {
        b if b == "boot\nboot\n" => Ok(()),
        b => Err(format!("{b:?}")),
    });
    trapped(&rt, name);
    lxc_ok(&rt.lxcpath, "lxc-stop", &["-n", name]);
    rt.assert_clean(&[name]);

    // lxc-stop -k.
    rt.ok("lxc-start", &["-n", name, "-d"]);
    lxc_ok(&rt.lxcpath, "lxc-stop", &["-n", name, "-k"]);
    assert_eq!(rt.state(name), "STOPPED");
    rt.assert_clean(&[name]);

    // lxc-destroy -f stops it, strata tears down, then LXC removes it.
    rt.ok("lxc-start", &["-n", name, "-d"]);
    lxc_ok(&rt.lxcpath, "lxc-destroy", &["-n", name, "-f"]);
    rt.assert_clean(&[]);
}

#[test]
fn long_lxcpath_uses_lxcs_hashed_socket_name() {
    if !have_lxc() {
        return;
    }
    let mut rt = Rt::new();
    // Past sun_path with "/NAME/command": LXC hashes the name.
    let long = rt.tmp.path().join("l".repeat(60)).join("m".repeat(40));
    std::fs::create_dir_all(&long).unwrap();
    rt.lxcpath = long;
    let (a, b) = ("ilx3", "ilx4");
    rt.container(a, NET);
    rt.container(b, NET);
    rt.ok("lxc-start", &["-n", a, "-d"]);
    let _sa = LxcStopper::new(&rt.lxcpath, a);
    lxc_ok(&rt.lxcpath, "lxc-start", &["-n", b, "-d"]);
    let _sb = LxcStopper::new(&rt.lxcpath, b);
    lxc_ok(&rt.lxcpath, "lxc-wait", &["-n", b, "-s", "RUNNING", "-t", "10"]);
    // Each side sees the other's.
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-info", &["-n", a, "-s", "-H"]).trim(),
        "RUNNING"
    );
    assert_eq!(rt.state(b), "RUNNING");
    // LXC's lxc-ls finds hashed sockets and asks them their name and lxcpath.
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-ls", &["--active"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        [a, b]
    );
    assert_eq!(
        rt.ok("lxc-ls", &["--active"]).split_whitespace().collect::<Vec<_>>(),
        [a, b]
    );
    trapped(&rt, a);
    lxc_ok(&rt.lxcpath, "lxc-stop", &["-n", a]);
    trapped(&rt, b);
    rt.ok("lxc-stop", &["-n", b]);
    assert_eq!(rt.state(a), "STOPPED");
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-info", &["-n", b, "-s", "-H"]).trim(),
        "STOPPED"
    );
    rt.assert_clean(&[a, b]);
}

/// A tmux server of the test's own, one window running `cmd`; killed on drop.
struct Term(String);

impl Term {
    fn new(cmd: &str) -> Term {
        let t = Term(format!("strata-lxcconsole-{}", std::process::id()));
        let script = format!("{cmd}; echo EXITED=$?; sleep 600");
        let o = t
            .tmux(&["new-session", "-d", "-x", "100", "-y", "30", "-s", "s", &script])
            .output()
            .expect("tmux is needed (scripts/install-test-deps installs it)");
        assert!(o.status.success(), "tmux: {}", String::from_utf8_lossy(&o.stderr));
        t
    }

    fn tmux(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.0, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "s"];
        a.extend(keys);
        assert!(self.tmux(&a).status().unwrap().success());
    }

    /// The screen once it shows `needle` (fails with the screen after 10 s).
    fn wait_for(&self, needle: &str) -> String {
        wait_for(&format!("{needle:?} on the screen:\n"), || {
            let o = self.tmux(&["capture-pane", "-p", "-J", "-t", "s"]).output().unwrap();
            let s = String::from_utf8_lossy(&o.stdout).into_owned();
            if s.contains(needle) {
                Ok(s)
            } else {
                Err(s)
            }
        })
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]).output();
    }
}

#[test]
fn lxc_console_reaches_a_tty_of_a_container_strata_runs() {
    if !have_lxc() {
        return;
    }
    let rt = Rt::new();
    let name = "ilx5";
    let log = rt.outside.join("console.log");
    let rootfs = rt.container(
        name,
        &format!("{NET}lxc.tty.max = 2\nlxc.console.logfile = {}\n", log.display()),
    );
    // A shell on tty1 and one on the console, as gettys would be.
    std::fs::write(
        rootfs.join("sbin/init"),
        "#!/bin/sh\ntrap 'exit 0' PWR\n(while :; do /bin/sh -i </dev/tty1 >/dev/tty1 2>&1; done) &\n\
         (while :; do /bin/sh -i </dev/console >/dev/console 2>&1; done) &\nwhile :; do sleep 0.05; done\n",
    )
    .unwrap();
    rt.ok("lxc-start", &["-n", name, "-d"]);
    let _stop = LxcStopper::new(&rt.lxcpath, name);
    let lp = rt.lxcpath.display().to_string();
    // LXC's default: the first free tty.
    let t = Term::new(&format!("{LXC_BIN}/lxc-console -P {lp} -n {name}"));
    t.wait_for("Connected to tty 1");
    t.keys(&["-l", "echo hello-$((6*7))"]);
    t.keys(&["Enter"]);
    t.wait_for("hello-42");
    // The escape detaches; the container runs on.
    t.keys(&["C-a", "q"]);
    t.wait_for("EXITED=0");
    assert_eq!(rt.state(name), "RUNNING");
    // tty1 is free again once LXC's client has gone: strata's lxc-console takes it.
    let t2 = Term(format!("strata-lxcconsole2-{}", std::process::id()));
    let script = format!(
        "{} -P {lp} -n {name} -t 1; echo EXITED=$?; sleep 600",
        rt.bin.join("lxc-console").display()
    );
    let o = t2
        .tmux(&["new-session", "-d", "-x", "100", "-y", "30", "-s", "s", &script])
        .output()
        .unwrap();
    assert!(o.status.success());
    t2.wait_for("tty 1");
    t2.keys(&["Enter"]);
    t2.keys(&["-l", "echo again-$((6*7))"]);
    t2.keys(&["Enter"]);
    t2.wait_for("again-42");
    // The console (-t 0) through a pty of the monitor's, as LXC's monitor
    // lends it: what the shell there prints still reaches the console log.
    let t3 = Term(format!("strata-lxcconsole3-{}", std::process::id()));
    let script = format!("{LXC_BIN}/lxc-console -P {lp} -n {name} -t 0; echo EXITED=$?; sleep 600");
    let o = t3
        .tmux(&["new-session", "-d", "-x", "100", "-y", "30", "-s", "s", &script])
        .output()
        .unwrap();
    assert!(o.status.success());
    t3.wait_for("Connected to tty 0");
    t3.keys(&["Enter"]);
    t3.keys(&["-l", "echo console-$((6*7))"]);
    t3.keys(&["Enter"]);
    t3.wait_for("console-42");
    wait_until("console-42 in the console log", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("console-42")
    });
    // One user at a time: strata's lxc-console is refused the console meanwhile.
    let err = rt.fails("lxc-console", &["-n", name, "-t", "0"]);
    assert!(err.contains("in use"), "{err}");
    t3.keys(&["C-a", "q"]);
    t3.wait_for("EXITED=0");
    // Free again once LXC's client left: LXC's next client gets it.
    let t4 = Term(format!("strata-lxcconsole4-{}", std::process::id()));
    let script = format!("{LXC_BIN}/lxc-console -P {lp} -n {name} -t 0; echo EXITED=$?; sleep 600");
    let o = t4
        .tmux(&["new-session", "-d", "-x", "100", "-y", "30", "-s", "s", &script])
        .output()
        .unwrap();
    assert!(o.status.success());
    t4.wait_for("Connected to tty 0");
    t4.keys(&["Enter"]);
    t4.keys(&["-l", "echo again-console-$((6*7))"]);
    t4.keys(&["Enter"]);
    t4.wait_for("again-console-42");
    drop(t4);
    trapped(&rt, name);
    rt.ok("lxc-stop", &["-n", name]);
    rt.assert_clean(&[name]);
}

/// LXC's `lxc-stop -k` asks the monitor to stop the container: strata's
/// sends the `lxc.signal.stop` its start read (`-s` here), as LXC's monitor
/// sends its own config's.
#[test]
fn lxc_hard_stop_sends_the_starts_stop_signal() {
    if !have_lxc() {
        return;
    }
    let rt = Rt::new();
    let name = "ilx6";
    let rootfs = rt.container(name, NET);
    std::fs::write(
        rootfs.join("sbin/init"),
        "#!/bin/sh\ntrap 'echo USR2 > /tmp/how; exit 0' USR2\ntouch /tmp/ready\nwhile :; do sleep 0.05; done\n",
    )
    .unwrap();
    rt.ok("lxc-start", &["-n", name, "-d", "-s", "lxc.signal.stop=SIGUSR2"]);
    let _stop = LxcStopper::new(&rt.lxcpath, name);
    wait_until("init's trap", || rootfs.join("tmp/ready").exists());
    lxc_ok(&rt.lxcpath, "lxc-stop", &["-n", name, "-k"]);
    assert_eq!(std::fs::read_to_string(rootfs.join("tmp/how")).unwrap().trim(), "USR2");
    assert_eq!(rt.state(name), "STOPPED");
    rt.assert_clean(&[name]);
}

/// A volatile container (not defined, started from `-f FILE` alone) under
/// LXC and under strata from the same file: the same output and exit code,
/// nothing written in the lxcpath by either, and each runtime's tools see
/// and stop the one the other runs.
#[test]
fn volatile_container_as_under_lxc() {
    if !have_lxc() {
        return;
    }
    let rt = Rt::new();
    let rootfs = rt.outside.join("vrootfs");
    make_rootfs(&rootfs);
    let rc = rt.outside.join("vol.conf");
    std::fs::write(
        &rc,
        format!(
            "lxc.rootfs.path = dir:{}\nlxc.uts.name = volhost\n{NET}lxc.mount.auto = proc:mixed\n",
            rootfs.display()
        ),
    )
    .unwrap();
    let rcs = rc.to_str().unwrap();
    let cmd = ["--", "/bin/sh", "-c", "hostname; exit 3"];
    let mut a = vec!["-n", "ilx7", "-f", rcs];
    a.extend(cmd);
    let theirs = lxc(&rt.lxcpath, "lxc-execute", &a);
    let ours = rt.run("lxc-execute", &a);
    assert_eq!(theirs.status.code(), Some(3), "{theirs:?}");
    assert_eq!(ours.status.code(), Some(3), "{ours:?}");
    assert_eq!(ours.stdout, theirs.stdout);
    assert_eq!(rt.entries(), Vec::<String>::new());
    // LXC runs it: strata's tools see it running and stop it.
    lxc_ok(&rt.lxcpath, "lxc-start", &["-n", "ilx7", "-d", "-f", rcs]);
    let _stop = LxcStopper::new(&rt.lxcpath, "ilx7");
    assert_eq!(rt.state("ilx7"), "RUNNING");
    assert_eq!(rt.entries(), Vec::<String>::new());
    // Listed while it runs, as LXC's lxc-ls lists it (from its bound socket).
    assert_eq!(
        rt.ok("lxc-ls", &["--running"]),
        lxc_ok(&rt.lxcpath, "lxc-ls", &["--running"])
    );
    assert!(rt.ok("lxc-ls", &["--running"]).contains("ilx7"));
    trapped(&rt, "ilx7");
    rt.ok("lxc-stop", &["-n", "ilx7", "-t", "10"]);
    assert!(!lxc(&rt.lxcpath, "lxc-info", &["-n", "ilx7"]).status.success());
    // Strata runs it: LXC's tools see it running and stop it.
    rt.ok("lxc-start", &["-n", "ilx7", "-d", "-f", rcs]);
    assert!(lxc_ok(&rt.lxcpath, "lxc-info", &["-n", "ilx7", "-s"]).contains("RUNNING"));
    assert!(lxc_ok(&rt.lxcpath, "lxc-ls", &["--running"]).contains("ilx7"));
    assert_eq!(
        lxc_ok(&rt.lxcpath, "lxc-attach", &["-n", "ilx7", "--", "/bin/hostname"]),
        "volhost\n"
    );
    trapped(&rt, "ilx7");
    lxc_ok(&rt.lxcpath, "lxc-stop", &["-n", "ilx7", "-t", "10"]);
    wait_until("the run record gone", || rt.records().is_empty());
    rt.assert_clean(&[]);
}

/// A volatile container in an lxcpath so long that LXC hashes its command
/// socket's name (`@lxc/HASH/command`): each runtime's lxc-ls lists the one
/// the other runs, as LXC's lxc-ls finds it (asking the hashed socket for
/// its lxcpath and name).
#[test]
fn volatile_container_in_a_long_lxcpath() {
    if !have_lxc() {
        return;
    }
    let mut rt = Rt::new();
    rt.lxcpath = rt.tmp.path().join("l".repeat(90));
    std::fs::create_dir_all(&rt.lxcpath).unwrap();
    let name = "ilxhash9";
    assert!(
        lxc_cmd::socket_name(&rt.lxcpath, name).starts_with(b"lxc/"),
        "the lxcpath is not long enough to be hashed"
    );
    let rootfs = rt.outside.join("vrootfs");
    make_rootfs(&rootfs);
    let rc = rt.outside.join("vol.conf");
    std::fs::write(
        &rc,
        format!(
            "lxc.rootfs.path = dir:{}\nlxc.uts.name = volhost\n{NET}lxc.mount.auto = proc:mixed\n",
            rootfs.display()
        ),
    )
    .unwrap();
    let rcs = rc.to_str().unwrap();
    // LXC runs it: strata's lxc-ls lists it as LXC's does.
    lxc_ok(&rt.lxcpath, "lxc-start", &["-n", name, "-d", "-f", rcs]);
    let _stop = LxcStopper::new(&rt.lxcpath, name);
    assert_eq!(rt.state(name), "RUNNING");
    assert_eq!(lxc_ok(&rt.lxcpath, "lxc-ls", &["--running"]).trim(), name);
    assert_eq!(rt.ok("lxc-ls", &["--running"]).trim(), name);
    assert_eq!(rt.ok("lxc-ls", &[]).trim(), name);
    // Another lxcpath's listing does not show it.
    let other = rt.tmp.path().join("m".repeat(90));
    std::fs::create_dir_all(&other).unwrap();
    let o = Command::new(rt.bin.join("lxc-ls"))
        .arg("-P")
        .arg(&other)
        .arg("--running")
        .env("STRATA_RUN_DIR", &rt.run_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "");
    trapped(&rt, name);
    rt.ok("lxc-stop", &["-n", name, "-t", "10"]);
    assert_eq!(rt.ok("lxc-ls", &["--running"]).trim(), "");
    // Strata runs it: LXC's lxc-ls lists it.
    rt.ok("lxc-start", &["-n", name, "-d", "-f", rcs]);
    assert_eq!(lxc_ok(&rt.lxcpath, "lxc-ls", &["--running"]).trim(), name);
    assert_eq!(rt.ok("lxc-ls", &["--running"]).trim(), name);
    trapped(&rt, name);
    rt.ok("lxc-stop", &["-n", name, "-t", "10"]);
    rt.assert_clean(&[]);
}
