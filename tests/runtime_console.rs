//! `lxc-console` on real terminals, driven through tmux as a user types:
//! a busybox container started with `lxc-start -d` shows its shells on its
//! ttys and console, the escape sequence detaches and leaves it running,
//! resizes reach the container; `lxc-start --console/--console-log`; bad
//! input is a one-line error. And a Debian bookworm systemd container
//! (the cached rootfs of tests/runtime_systemd.rs) shows a login prompt
//! and stops in under 5 s, under strata and, where installed, under LXC.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One tmux server of the test's own, with one window running a command.
struct Tmux {
    sock: String,
}

impl Tmux {
    /// `cmd` in a 100x30 window; what it exits with is printed after it,
    /// and the window stays for the test to read.
    fn new(cmd: &str) -> Tmux {
        let sock = format!(
            "strata-console-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let t = Tmux { sock };
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
        c.args(["-L", &self.sock, "-f", "/dev/null"]).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "s"];
        a.extend(keys);
        assert!(self.tmux(&a).status().unwrap().success());
    }

    /// Type `line` and Enter.
    fn line(&self, line: &str) {
        self.keys(&["-l", line]);
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        let o = self
            .tmux(&["capture-pane", "-p", "-J", "-S", "-200", "-t", "s"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The screen once it shows `needle`; fails with the screen after `limit`.
    fn wait_for(&self, needle: &str, limit: Duration) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(needle) {
                return s;
            }
            assert!(t.elapsed() < limit, "no {needle:?} on the screen after {limit:?}:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The window's terminal device.
    fn pane_tty(&self) -> String {
        let o = self
            .tmux(&["display", "-p", "-t", "s", "#{pane_tty}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn resize(&self, x: u32, y: u32) {
        let (x, y) = (x.to_string(), y.to_string());
        assert!(self
            .tmux(&["resize-window", "-t", "s", "-x", &x, "-y", &y])
            .status()
            .unwrap()
            .success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]).output();
    }
}

const T: Duration = Duration::from_secs(10);

/// A shell line that runs strata's `tool` on the test's lxcpath and run dir.
fn strata_line(rt: &Rt, tool: &str, args: &str) -> String {
    format!(
        "env STRATA_RUN_DIR={} LXC_GLOBAL_CONF={} {} -P {} {args}",
        rt.run_dir.display(),
        rt.tmp.path().join("lxc.conf").display(),
        rt.bin.join(tool).display(),
        rt.lxcpath.display()
    )
}

/// A busybox container whose init keeps a shell on tty1, tty2 and the
/// console, each with a prompt that names it.
fn shells_container(rt: &Rt, name: &str, extra: &str) -> PathBuf {
    let root = rt.container(name, &format!("lxc.tty.max = 2\n{extra}"));
    for a in ["setsid", "stty"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    let init = root.join("sbin/init");
    std::fs::write(
        &init,
        "#!/bin/sh\ntrap 'exit 0' PWR\n\
         for t in tty1 tty2 console; do\n\
         (while :; do PS1=\"$t# \" setsid sh -i <>/dev/$t >&0 2>&1; sleep 0.2; done) &\n\
         done\n\
         while :; do sleep 0.05; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    root
}

#[test]
fn console_and_ttys_of_a_daemonized_container() {
    let rt = Rt::new();
    let log = rt.outside.join("console.log");
    shells_container(&rt, "c1", &format!("lxc.console.logfile = {}\n", log.display()));
    rt.ok("lxc-start", &["-n", "c1", "-d"]);
    assert_eq!(rt.state("c1"), "RUNNING");

    // Default: the first free tty, as LXC picks. Escape detaches.
    let t = Tmux::new(&strata_line(&rt, "lxc-console", "-n c1"));
    t.wait_for("Connected to tty 1", T);
    t.wait_for("Type <Ctrl+a q> to exit the console", T);
    t.line("echo one-$((6*7))");
    let s = t.wait_for("one-42", T);
    assert!(s.contains("tty1# "), "not tty1's shell:\n{s}");
    // The terminal's size, and a resize, reach the container's tty.
    t.line("stty size");
    t.wait_for("30 100", T);
    t.resize(90, 20);
    std::thread::sleep(Duration::from_millis(300));
    t.line("stty size");
    t.wait_for("20 90", T);
    // tty1 is taken while attached: another lxc-console gets tty2.
    let o = rt.cmd("lxc-console", &["-n", "c1", "-t", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.trim().lines().count() == 1, "{err}");
    assert!(err.contains("tty 1 is in use"), "{err}");
    t.keys(&["C-a", "q"]);
    t.wait_for("EXITED=0", T);
    assert_eq!(rt.state("c1"), "RUNNING", "detaching stopped the container");
    drop(t);

    // -t N reaches ttyN; what was typed before is still there after a reattach.
    let t = Tmux::new(&strata_line(&rt, "lxc-console", "-n c1 -t 2"));
    t.wait_for("Connected to tty 2", T);
    t.line("echo two-$((6*7))");
    let s = t.wait_for("two-42", T);
    assert!(s.contains("tty2# "), "not tty2's shell:\n{s}");
    t.keys(&["C-a", "q"]);
    t.wait_for("EXITED=0", T);
    drop(t);

    // The console with another escape; Ctrl-a goes through to the container.
    let t = Tmux::new(&strata_line(&rt, "lxc-console", "-n c1 -t 0 -e ^b"));
    t.wait_for("Type <Ctrl+b q>", T);
    t.line("echo con-$((6*7))");
    t.wait_for("con-42", T);
    t.keys(&["C-a", "q"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!t.screen().contains("EXITED="), "Ctrl-a q detached with -e ^b");
    t.keys(&["C-b", "q"]);
    t.wait_for("EXITED=0", T);
    drop(t);
    // The console was logged while attached too.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("con-42") && logged.contains("console# "), "{logged}");

    // Bad tty numbers: one line each, nothing attached.
    for (args, says) in [
        (&["-n", "c1", "-t", "7"][..], "no tty 7"),
        (&["-n", "c1", "-e", "^1"][..], "invalid escape"),
        (&["-n", "nosuch"][..], "nosuch"),
    ] {
        let e = rt.fails("lxc-console", args);
        assert!(e.contains(says), "{args:?}: {e}");
    }

    // The container stopping ends an attached lxc-console.
    let t = Tmux::new(&strata_line(&rt, "lxc-console", "-n c1 -t 1"));
    t.wait_for("Connected to tty 1", T);
    rt.ok("lxc-stop", &["-n", "c1"]);
    t.wait_for("EXITED=0", T);
    drop(t);
    let e = rt.fails("lxc-console", &["-n", "c1"]);
    assert!(e.contains("c1 is not running"), "{e}");
    rt.assert_clean(&["c1"]);
}

#[test]
fn start_console_flags_and_console_keys() {
    let rt = Rt::new();
    shells_container(&rt, "c1", "");
    // --console: the container's console on that terminal, both ways;
    // --console-log: a copy of it.
    let t = Tmux::new("sleep 600");
    let tty = t.pane_tty();
    let log = rt.outside.join("start-console.log");
    rt.ok(
        "lxc-start",
        &["-n", "c1", "--console", &tty, "--console-log", log.to_str().unwrap()],
    );
    t.wait_for("console# ", T);
    t.line("echo peer-$((6*7))");
    t.wait_for("peer-42", T);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("peer-42"), "{logged}");
    // The console is on that terminal: lxc-console cannot take it too.
    let e = rt.fails("lxc-console", &["-n", "c1", "-t", "0"]);
    assert!(e.contains(&tty), "{e}");
    rt.ok("lxc-stop", &["-n", "c1"]);
    drop(t);

    // Not a terminal, or missing: refused by name, nothing started.
    let e = rt.fails("lxc-start", &["-n", "c1", "--console", log.to_str().unwrap()]);
    assert!(e.contains("not a terminal"), "{e}");
    let e = rt.fails("lxc-start", &["-n", "c1", "-c", "/nonexistent/tty"]);
    assert!(e.contains("/nonexistent/tty"), "{e}");
    assert_eq!(rt.state("c1"), "STOPPED");

    // lxc.console.path = none: no console to attach to, ttys still there.
    let cfg = rt.lxcpath.join("c1/config");
    let base = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{base}lxc.console.path = none\n")).unwrap();
    rt.ok("lxc-start", &["-n", "c1"]);
    let e = rt.fails("lxc-console", &["-n", "c1", "-t", "0"]);
    assert!(e.contains("no console"), "{e}");
    let t = Tmux::new(&strata_line(&rt, "lxc-console", "-n c1 -q"));
    t.wait_for("tty1# ", T);
    assert!(!t.screen().contains("Connected to"), "-q printed the banner");
    rt.ok("lxc-stop", &["-n", "c1"]);
    t.wait_for("EXITED=0", T);
    drop(t);

    // Console keys strata cannot honour, or bad values, are refused by name at start.
    for bad in [
        "lxc.console.buffer.size = 128k",
        "lxc.console.size = 1TB",
        "lxc.console.rotate = 2",
    ] {
        std::fs::write(&cfg, format!("{base}{bad}\n")).unwrap();
        let e = rt.fails("lxc-start", &["-n", "c1"]);
        assert!(e.contains(bad.split(' ').next().unwrap()), "{bad}: {e}");
        assert_eq!(rt.state("c1"), "STOPPED");
    }
    std::fs::write(&cfg, &base).unwrap();

    // LXC's --usage and --help.
    let u = rt.ok("lxc-console", &["--usage"]);
    assert!(
        u.starts_with("Usage: lxc-console ") && u.contains("[-t|--tty=TTY]"),
        "{u}"
    );
    let h = rt.ok("lxc-console", &["-?"]);
    for opt in [
        "--name",
        "--tty",
        "--escape",
        "--rcfile",
        "--lxcpath",
        "--logfile",
        "--quiet",
    ] {
        assert!(h.contains(opt), "{opt} missing from --help:\n{h}");
    }
    rt.assert_clean(&["c1"]);
}

/// strata's lxc-console on a container Debian's LXC runs: LXC's monitor
/// lends its ttys and console through its command socket.
#[test]
fn strata_console_on_a_container_lxc_runs() {
    if !Path::new("/usr/bin/lxc-start").exists() {
        eprintln!("skipped: LXC is not installed");
        return;
    }
    let rt = Rt::new();
    shells_container(&rt, "c1", "lxc.apparmor.profile = unconfined\n");
    let lxc = |tool: &str, args: &[&str]| {
        let o = Command::new(Path::new("/usr/bin").join(tool))
            .arg("-P")
            .arg(&rt.lxcpath)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{tool}: {}", String::from_utf8_lossy(&o.stderr));
    };
    lxc("lxc-start", &["-n", "c1", "-d"]);
    struct Stop<'a>(&'a Rt);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = Command::new("/usr/bin/lxc-stop")
                .arg("-P")
                .arg(&self.0.lxcpath)
                .args(["-n", "c1", "-k"])
                .output();
        }
    }
    let _stop = Stop(&rt);
    lxc("lxc-wait", &["-n", "c1", "-s", "RUNNING", "-t", "10"]);
    let t = Tmux::new(&strata_line(&rt, "lxc-console", "-n c1 -t 2"));
    t.wait_for("Connected to tty 2", T);
    t.line("echo lxc-$((6*7))");
    let s = t.wait_for("lxc-42", T);
    assert!(s.contains("tty2# "), "not tty2's shell:\n{s}");
    t.resize(80, 25);
    std::thread::sleep(Duration::from_millis(300));
    t.line("stty size");
    t.wait_for("25 80", T);
    t.keys(&["C-a", "q"]);
    t.wait_for("EXITED=0", T);
    drop(t);
    let e = rt.fails("lxc-console", &["-n", "c1", "-t", "9"]);
    assert!(e.contains("tty 9"), "{e}");
    // The console; LXC stopping the container ends lxc-console.
    let t = Tmux::new(&strata_line(&rt, "lxc-console", "-n c1 -t 0"));
    t.wait_for("Connected to tty 0", T);
    t.line("echo con-$((6*7))");
    t.wait_for("con-42", T);
    lxc("lxc-stop", &["-n", "c1", "-k"]);
    t.wait_for("EXITED=0", T);
}

const USER: &str = "stratatest";

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if p.symlink_metadata().unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

/// A shell line that runs strata's `tool` as the test user.
fn user_line(rt: &Rt, tool: &str, args: &str) -> String {
    format!(
        "setpriv --reuid={USER} --regid={USER} --init-groups env -i HOME=/home/{USER} PATH=/usr/bin:/bin \
         STRATA_RUN_DIR={} {} -P {} {args}",
        rt.run_dir.display(),
        rt.bin.join(tool).display(),
        rt.lxcpath.display()
    )
}

/// A user's unprivileged container (started by the user, its monitor not
/// root): its console comes from the container's own devpts, so that its
/// mapped root can open it, and lxc-console reaches it and the ttys.
#[test]
fn test_users_container_console_and_ttys() {
    if !strata_testkit::is_root() || strata_core::idmap::find_in_path("newuidmap").is_none() {
        eprintln!("skipped: needs root and newuidmap");
        return;
    }
    let Some(u) = nix::unistd::User::from_name(USER).ok().flatten() else {
        eprintln!("skipped: no user {USER} (run scripts/setup-test-user)");
        return;
    };
    let rt = Rt::new();
    let log = rt.outside.join("u1.log");
    let root = shells_container(
        &rt,
        "u1",
        &format!(
            "lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\nlxc.console.logfile = {}\n",
            log.display()
        ),
    );
    chown_tree(rt.tmp.path(), u.uid.as_raw(), u.gid.as_raw());
    chown_tree(&root, 100000, 100000);
    // Output to a file, under a time limit: a daemonized monitor holding
    // the caller's pipe must not hang the test.
    let run = |line: String| {
        let mut c = Command::new("sh");
        c.arg("-c").arg(&line);
        let (code, out, _) = run_for(c, Duration::from_secs(30));
        assert_eq!(code, Some(0), "{line}: {out}");
    };
    run(user_line(&rt, "lxc-start", "-n u1"));
    let t = Tmux::new(&user_line(&rt, "lxc-console", "-n u1 -t 0"));
    t.wait_for("Connected to tty 0", T);
    t.line("echo con-$((6*7)); id -u");
    let s = t.wait_for("con-42", T);
    assert!(s.contains("console# "), "{s}");
    t.keys(&["C-a", "q"]);
    t.wait_for("EXITED=0", T);
    drop(t);
    let t = Tmux::new(&user_line(&rt, "lxc-console", "-n u1"));
    t.wait_for("Connected to tty 1", T);
    t.line("echo one-$((6*7))");
    let s = t.wait_for("one-42", T);
    assert!(s.contains("tty1# "), "{s}");
    t.keys(&["C-a", "q"]);
    t.wait_for("EXITED=0", T);
    drop(t);
    run(user_line(&rt, "lxc-stop", "-n u1"));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("con-42"), "{logged}");
    rt.assert_clean(&["u1"]);
}

/// `lxc.console.size` keeps the log within its size: without
/// `lxc.console.rotate` it starts over when full, with it the full log
/// moves to FILE.1 first. The latest output is always in FILE.
#[test]
fn console_log_size_and_rotate() {
    let rt = Rt::new();
    for (name, rotate) in [("c1", false), ("c2", true)] {
        let log = rt.outside.join(format!("{name}.log"));
        let root = rt.container(
            name,
            &format!(
                "lxc.console.logfile = {}\nlxc.console.size = 4KB\nlxc.console.rotate = {}\n",
                log.display(),
                rotate as u8
            ),
        );
        std::fs::write(
            root.join("sbin/init"),
            "#!/bin/sh\ntrap 'exit 0' PWR\ni=0\nwhile [ $i -lt 2000 ]; do i=$((i+1)); echo line-$i; done > /dev/console\n\
             while :; do sleep 0.05; done\n",
        )
        .unwrap();
        rt.ok("lxc-start", &["-n", name]);
        let t = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("line-2000\r\n")
        {
            assert!(t.elapsed() < T, "{name}: line-2000 never logged");
            std::thread::sleep(Duration::from_millis(50));
        }
        rt.ok("lxc-stop", &["-n", name]);
        let size = std::fs::metadata(&log).unwrap().len();
        assert!(size > 0 && size <= 4096, "{name}: log of {size} bytes");
        let old = rt.outside.join(format!("{name}.log.1"));
        if rotate {
            let prev = std::fs::read_to_string(&old).unwrap();
            assert_eq!(prev.len(), 4096, "{name}: rotated log");
            assert!(prev.contains("line-"), "{prev}");
        } else {
            assert!(!old.exists(), "{name}: rotated without lxc.console.rotate");
        }
    }
    rt.assert_clean(&["c1", "c2"]);
}

const CACHE: &str = "/var/cache/strata-test/bookworm-systemd.tar";

/// The cached bookworm rootfs, or why the test is skipped (a failure when
/// `STRATA_REQUIRE_SYSTEMD` is set).
fn cached_rootfs() -> Option<PathBuf> {
    let required = std::env::var_os("STRATA_REQUIRE_SYSTEMD").is_some_and(|v| !v.is_empty() && v != "0");
    let p = PathBuf::from(std::env::var_os("STRATA_BOOKWORM_ROOTFS").unwrap_or_else(|| CACHE.into()));
    if p.is_file() {
        return Some(p);
    }
    let why = format!(
        "no cached bookworm rootfs at {} (scripts/make-bookworm-rootfs builds it)",
        p.display()
    );
    assert!(!required, "STRATA_REQUIRE_SYSTEMD is set but: {why}");
    eprintln!("skipped: {why}");
    None
}

/// A command under a time limit (killed at it): exit code (None if killed), stdout.
fn run_for(mut c: Command, limit: Duration) -> (Option<i32>, String, Duration) {
    use std::os::unix::process::CommandExt;
    let out = tempfile::NamedTempFile::new().unwrap();
    c.stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .process_group(0);
    let t = Instant::now();
    let mut child = c.spawn().unwrap();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if t.elapsed() > limit {
            // SAFETY: kill takes integers only and touches no memory; the negative pid is the process group of the
            // child this test spawned and still holds (not yet waited for).
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        code,
        std::fs::read_to_string(out.path()).unwrap_or_default(),
        t.elapsed(),
    )
}

/// One runtime's tools: strata's (through the test's links) or LXC's.
struct Tools<'a> {
    rt: &'a Rt,
    lxc: Option<PathBuf>,
}

impl Tools<'_> {
    fn cmd(&self, tool: &str, args: &[&str]) -> Command {
        match &self.lxc {
            None => self.rt.cmd(tool, args),
            Some(lxcpath) => {
                let mut c = Command::new(Path::new("/usr/bin").join(tool));
                c.arg("-P").arg(lxcpath).args(args);
                c
            }
        }
    }
    fn run(&self, tool: &str, args: &[&str], limit: Duration) -> (Option<i32>, String, Duration) {
        run_for(self.cmd(tool, args), limit)
    }
    fn console_line(&self, args: &str) -> String {
        match &self.lxc {
            None => strata_line(self.rt, "lxc-console", args),
            Some(p) => format!("/usr/bin/lxc-console -P {} {args}", p.display()),
        }
    }
    fn who(&self) -> &'static str {
        if self.lxc.is_some() {
            "LXC"
        } else {
            "strata"
        }
    }
}

/// Boot `name` in `lxcpath` with `tools`: RUNNING, systemd up, a login
/// prompt on each of `consoles` (an lxc-console command line, and the
/// banner it prints), lxc-stop in under 5 s.
fn boot_and_login(tools: &Tools, lxcpath: &Path, tarball: &Path, name: &str, consoles: &[(String, &str)]) {
    let who = tools.who();
    let rootfs = lxcpath.join(name).join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let mut tar = Command::new("tar");
    tar.args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-xf"])
        .arg(tarball)
        .arg("-C")
        .arg(&rootfs);
    assert_eq!(
        run_for(tar, Duration::from_secs(120)).0,
        Some(0),
        "unpacking {}",
        tarball.display()
    );
    std::fs::write(
        lxcpath.join(name).join("config"),
        format!(
            "lxc.include = /usr/share/lxc/config/common.conf\nlxc.rootfs.path = dir:{}\n\
             lxc.uts.name = {name}\nlxc.net.0.type = empty\n",
            rootfs.display()
        ),
    )
    .unwrap();
    let (code, out, _) = tools.run("lxc-start", &["-n", name, "-d"], Duration::from_secs(30));
    assert_eq!(code, Some(0), "{who}: lxc-start -d: {out}");
    let guard = KillOnDrop(tools, name);
    let (code, out, _) = tools.run(
        "lxc-wait",
        &["-n", name, "-s", "RUNNING", "-t", "20"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{who}: lxc-wait -s RUNNING: {out}");
    // systemctl answers once systemd listens on its socket: retried until then.
    let t = Instant::now();
    let state = loop {
        let (code, out, _) = tools.run(
            "lxc-attach",
            &["-n", name, "--", "systemctl", "is-system-running", "--wait"],
            Duration::from_secs(90),
        );
        let s = out.lines().last().unwrap_or("").trim().to_string();
        if code.is_some() && (s == "running" || s == "degraded") || t.elapsed() > Duration::from_secs(90) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        state == "running" || state == "degraded",
        "{who}: systemd says {state:?}"
    );
    // A getty on each: Enter shows the login prompt.
    for (line, banner) in consoles {
        let t = Tmux::new(line);
        t.wait_for(banner, T);
        let start = Instant::now();
        let s = loop {
            t.keys(&["Enter"]);
            std::thread::sleep(Duration::from_millis(500));
            let s = t.screen();
            if s.contains(" login:") || start.elapsed() > Duration::from_secs(30) {
                break s;
            }
        };
        // The rootfs's /etc/hostname names the host in the prompt.
        assert!(s.contains(" login:"), "{who}: no login prompt on {line}:\n{s}");
        t.keys(&["C-a", "q"]);
        t.wait_for("EXITED=0", T);
    }
    let (code, out, took) = tools.run("lxc-stop", &["-n", name], Duration::from_secs(20));
    assert_eq!(code, Some(0), "{who}: lxc-stop: {out}");
    assert!(took < Duration::from_secs(5), "{who}: lxc-stop took {took:?}");
    eprintln!("{who}: login prompt on lxc-console; lxc-stop in {took:.2?}");
    std::mem::forget(guard);
}

/// Kills a container a failed assertion left running.
struct KillOnDrop<'a>(&'a Tools<'a>, &'a str);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        self.0.run("lxc-stop", &["-n", self.1, "-k"], Duration::from_secs(20));
    }
}

#[test]
fn systemd_container_login_prompt_under_strata_and_lxc() {
    let Some(tarball) = cached_rootfs() else { return };
    let rt = Rt::new();
    // The first free tty (container-getty@ on tty1), and the console (console-getty).
    let own = Tools { rt: &rt, lxc: None };
    let consoles = [
        (own.console_line("-n sd1"), "Connected to tty 1"),
        (own.console_line("-n sd1 -t 0"), "Connected to tty 0"),
    ];
    boot_and_login(&own, &rt.lxcpath, &tarball, "sd1", &consoles);
    rt.assert_clean(&["sd1"]);
    if Path::new("/usr/bin/lxc-start").exists() {
        let lxcpath = rt.tmp.path().join("lxc-own");
        std::fs::create_dir_all(&lxcpath).unwrap();
        let lxc = Tools {
            rt: &rt,
            lxc: Some(lxcpath.clone()),
        };
        // LXC's own lxc-console, and strata's on the container LXC runs
        // (through LXC's command socket). Under LXC the console has the getty.
        let strata_on_lxc = strata_line(&rt, "lxc-console", "-n sd2 -t 0").replace(
            &format!("-P {}", rt.lxcpath.display()),
            &format!("-P {}", lxcpath.display()),
        );
        let consoles = [
            (lxc.console_line("-n sd2 -t 0"), "Connected to tty 0"),
            (strata_on_lxc, "Connected to tty 0"),
        ];
        boot_and_login(&lxc, &lxcpath, &tarball, "sd2", &consoles);
    } else {
        eprintln!("LXC is not installed: its side skipped");
    }
}
