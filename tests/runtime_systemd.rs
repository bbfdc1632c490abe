//! A Debian bookworm container with systemd as init boots under strata as it
//! does under LXC: `lxc-wait -s RUNNING` returns after `lxc-start -d`,
//! `systemctl is-system-running --wait` says `running` or
//! `degraded` with no failed unit that LXC's own run does not also fail,
//! `lxc-console -t 0` (strata's, and LXC's through the command socket) shows
//! the console getty's login prompt when it does under LXC, the
//! memory limit of the config is what the container sees in its cgroup,
//! `lxc-stop` returns within 5 s, and nothing is left running, mounted or in
//! the caller's cgroups. Privileged, and unprivileged (an unshifted rootfs
//! through an idmapped mount under strata; a shifted copy under LXC, which
//! needs one).
//!
//! The rootfs is the tarball scripts/make-bookworm-rootfs caches
//! (`STRATA_BOOKWORM_ROOTFS`, default /var/cache/strata-test/bookworm-systemd.tar).
//! Without it the tests are skipped, saying so, unless `STRATA_REQUIRE_SYSTEMD`
//! is set. When LXC is installed (/usr/bin/lxc-start) the same rootfs and
//! config boot under LXC first, as the baseline.
//!
//! Every command runs under a time limit and a failed run is killed, so that
//! the test never hangs: about 10 s per runtime and mode when all is well.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CACHE: &str = "/var/cache/strata-test/bookworm-systemd.tar";
const LXC_BIN: &str = "/usr/bin";
const MAP: &str = "lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n";
const LIMIT: u64 = 512 << 20;
/// `systemctl is-system-running --wait`, retried until systemd listens.
const BOOT: Duration = Duration::from_secs(90);
/// `lxc-stop` without `-k` must return within this.
const STOP: Duration = Duration::from_secs(5);
/// Any other command.
const CMD: Duration = Duration::from_secs(20);

/// The cached rootfs, or why the test is skipped (a failure when
/// `STRATA_REQUIRE_SYSTEMD` is set).
fn cached_rootfs() -> Option<PathBuf> {
    let required = std::env::var_os("STRATA_REQUIRE_SYSTEMD").is_some_and(|v| !v.is_empty() && v != "0");
    let why = if !strata_testkit::is_root() {
        "needs root".to_string()
    } else {
        let p = PathBuf::from(std::env::var_os("STRATA_BOOKWORM_ROOTFS").unwrap_or_else(|| CACHE.into()));
        if p.is_file() {
            return Some(p);
        }
        format!(
            "no cached bookworm rootfs at {} (scripts/make-bookworm-rootfs builds it)",
            p.display()
        )
    };
    assert!(!required, "STRATA_REQUIRE_SYSTEMD is set but: {why}");
    eprintln!("skipped: {why}");
    None
}

/// What a command did within its time limit.
struct Out {
    /// None: still running at the limit, and killed.
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Out {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
    fn text(&self) -> String {
        format!(
            "exit {:?} after {:.1?}\nstdout: {}\nstderr: {}",
            self.code,
            self.took,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Runs `c` in its own process group with its output in files under `logs`
/// (a pipe could be held open by a daemonised monitor), and kills the group
/// at `limit`.
fn run_for(mut c: Command, logs: &Path, limit: Duration) -> Out {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    std::fs::create_dir_all(logs).unwrap();
    let (o, e) = (logs.join(format!("{n}.out")), logs.join(format!("{n}.err")));
    c.stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .process_group(0);
    let t = Instant::now();
    let mut child = c.spawn().unwrap_or_else(|err| panic!("{c:?}: {err}"));
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
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
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Out {
        code,
        stdout: read(&o),
        stderr: read(&e),
        took: t.elapsed(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Runtime {
    Lxc,
    Strata,
}

/// One container under one runtime.
struct Ctr<'a> {
    rt: &'a Rt,
    runtime: Runtime,
    lxcpath: PathBuf,
    name: &'static str,
    logs: PathBuf,
}

impl Ctr<'_> {
    fn run(&self, tool: &str, args: &[&str], limit: Duration) -> Out {
        let mut c = match self.runtime {
            Runtime::Strata => self.rt.cmd(tool, &[]),
            Runtime::Lxc => {
                let mut c = Command::new(Path::new(LXC_BIN).join(tool));
                c.arg("-P").arg(&self.lxcpath);
                c
            }
        };
        c.arg("-n").arg(self.name).args(args);
        let o = run_for(c, &self.logs, limit);
        if std::env::var_os("STRATA_SYSTEMD_TRACE").is_some() {
            eprintln!(
                "{:?} {tool} {args:?}: {:?} in {:.2?}",
                self.runtime as u8, o.code, o.took
            );
        }
        o
    }

    fn attach(&self, script: &str) -> Out {
        self.run("lxc-attach", &["--", "/bin/sh", "-c", script], CMD)
    }

    fn state(&self) -> String {
        self.run("lxc-info", &["-s", "-H"], CMD).stdout.trim().to_string()
    }

    fn wait_state(&self, want: &str, limit: Duration) -> bool {
        let t = Instant::now();
        loop {
            if self.state() == want {
                return true;
            }
            if t.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Unpacks the cached rootfs and writes the config: the same for both
    /// runtimes, but for LXC's own log files.
    fn create(&self, tarball: &Path, mapped: bool) -> PathBuf {
        let dir = self.lxcpath.join(self.name);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let mut tar = Command::new("tar");
        tar.args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-xf"])
            .arg(tarball)
            .arg("-C")
            .arg(&rootfs);
        let o = run_for(tar, &self.logs, Duration::from_secs(60));
        assert!(o.ok(), "unpacking {}: {}", tarball.display(), o.text());
        let mut config = format!(
            "lxc.include = /usr/share/lxc/config/common.conf\n\
             lxc.rootfs.path = dir:{}\n\
             lxc.uts.name = {}\n\
             lxc.net.0.type = empty\n\
             {}\n",
            rootfs.display(),
            self.name,
            memory_limit_key()
        );
        if self.runtime == Runtime::Lxc {
            config += &format!(
                "lxc.console.logfile = {}\nlxc.log.file = {}\nlxc.log.level = INFO\n",
                self.logs.join("console").display(),
                self.logs.join("lxc.log").display()
            );
        }
        std::fs::write(dir.join("config"), config).unwrap();
        if mapped {
            match self.runtime {
                // strata root starts the unshifted rootfs through an idmapped mount.
                Runtime::Strata => {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(dir.join("config"))
                        .unwrap();
                    std::io::Write::write_all(&mut f, MAP.as_bytes()).unwrap();
                }
                // LXC needs the owners shifted on disk.
                Runtime::Lxc => {
                    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
                    c.args(["convert", "-P"]).arg(&self.lxcpath).args([
                        "-n",
                        self.name,
                        "--to-unprivileged",
                        "--map",
                        "b 0 100000 65536",
                    ]);
                    let o = run_for(c, &self.logs, Duration::from_secs(60));
                    assert!(o.ok(), "strata convert: {}", o.text());
                }
            }
        }
        rootfs
    }

    fn console_tail(&self) -> String {
        let c = std::fs::read_to_string(self.logs.join("console")).unwrap_or_default();
        let l: Vec<&str> = c.lines().collect();
        l[l.len().saturating_sub(40)..].join("\n")
    }
}

/// The 512M memory limit in the key of the hierarchy that has the memory
/// controller here: cgroup2's if the unified tree has it, else cgroup v1's.
fn memory_limit_key() -> &'static str {
    let v2 = [
        "/sys/fs/cgroup/cgroup.controllers",
        "/sys/fs/cgroup/unified/cgroup.controllers",
    ]
    .iter()
    .any(|f| std::fs::read_to_string(f).is_ok_and(|c| c.split_whitespace().any(|w| w == "memory")));
    if v2 {
        "lxc.cgroup2.memory.max = 512M"
    } else {
        "lxc.cgroup.memory.limit_in_bytes = 512M"
    }
}

/// Kills an LXC container a failed test left running.
struct LxcGuard<'a>(&'a Ctr<'a>);

impl Drop for LxcGuard<'_> {
    fn drop(&mut self) {
        if self.0.state() != "STOPPED" {
            self.0.run("lxc-stop", &["-k"], CMD);
        }
    }
}

/// What one boot showed.
#[derive(Default)]
struct Boot {
    /// `systemctl is-system-running --wait`, or what kept it from answering.
    state: String,
    failed: BTreeSet<String>,
    console_getty: String,
    /// `lxc-wait -s RUNNING` returned 0 after `lxc-start -d`.
    waited: bool,
    /// The runtime's own `lxc-console -t 0` showed the getty's login prompt.
    login: bool,
    /// So did LXC's `lxc-console -t 0` (on strata's container: through its
    /// command socket).
    login_lxc: bool,
    /// The memory limit the container sees for its own cgroup.
    mem_limit: Option<u64>,
    started: bool,
    /// How long `lxc-stop` took, if it returned within `STOP`.
    stop: Option<Duration>,
    stopped: bool,
    diag: String,
}

impl Boot {
    fn booted(&self) -> bool {
        self.state == "running" || self.state == "degraded"
    }
}

/// Starts `c`, waits for systemd to finish booting, looks around, stops it.
fn boot(c: &Ctr) -> Boot {
    let mut b = Boot::default();
    let o = c.run("lxc-start", &["-d"], CMD);
    if !o.ok() {
        b.state = format!("lxc-start failed: {}", o.text());
        if c.state() == "RUNNING" {
            c.run("lxc-stop", &["-k"], CMD);
        }
        b.stopped = true;
        return b;
    }
    b.started = true;
    b.waited = c.run("lxc-wait", &["-s", "RUNNING", "-t", "10"], CMD).ok();
    // Started with -d, the container is RUNNING at once; STOPPED for a second
    // means init is gone.
    let t = Instant::now();
    let running = loop {
        match c.state().as_str() {
            "RUNNING" => break true,
            "STOPPED" if t.elapsed() > Duration::from_secs(1) => break false,
            _ if t.elapsed() > Duration::from_secs(10) => break false,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    if !running {
        b.state = format!("not RUNNING after lxc-start: init exited (state {:?})", c.state());
    } else {
        // systemctl fails with "Failed to connect to bus" until systemd listens
        // on its private socket: retry until then, as long as the container runs.
        let t = Instant::now();
        b.state = loop {
            let left = BOOT.saturating_sub(t.elapsed());
            let o = c.run("lxc-attach", &["--", "systemctl", "is-system-running", "--wait"], left);
            let s = o.stdout.trim();
            if o.code.is_none() {
                break format!("no answer in {BOOT:?}");
            }
            if !s.is_empty() && s != "offline" {
                break s.to_string();
            }
            if c.state() != "RUNNING" {
                break format!("init exited before systemd answered ({})", o.text());
            }
            if t.elapsed() > BOOT {
                break format!("no answer in {BOOT:?}: {}", o.text());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
    }
    if c.state() == "RUNNING" {
        let o = c.attach("systemctl --failed --no-legend --plain");
        b.failed = o
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        b.console_getty = c
            .attach("systemctl is-active console-getty.service")
            .stdout
            .trim()
            .to_string();
        if b.console_getty == "active" {
            let own = match c.runtime {
                Runtime::Strata => format!(
                    "env STRATA_RUN_DIR={} LXC_GLOBAL_CONF={} {}",
                    c.rt.run_dir.display(),
                    c.rt.tmp.path().join("lxc.conf").display(),
                    c.rt.bin.join("lxc-console").display()
                ),
                Runtime::Lxc => Path::new(LXC_BIN).join("lxc-console").display().to_string(),
            };
            b.login = login_prompt(c, &own);
            b.login_lxc = login_prompt(c, &Path::new(LXC_BIN).join("lxc-console").display().to_string());
        }
        let o = c.attach(
            "for f in /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max; do \
             [ -r $f ] && exec cat $f; done",
        );
        b.mem_limit = o.stdout.trim().parse().ok();
        b.diag = c
            .attach(
                "echo '# /proc/1/cgroup'; cat /proc/1/cgroup; echo '# cgroup mounts'; \
                 grep cgroup /proc/self/mountinfo; echo '# /dev'; ls /dev /dev/pts; \
                 echo '# failed units'; systemctl --failed --no-pager --full; \
                 echo '# journal warnings'; journalctl -b -q -p warning --no-pager | tail -n 40",
            )
            .stdout;
    }
    // lxc-stop as a user types it: the runtime picks the halt signal.
    let o = c.run("lxc-stop", &[], STOP);
    if o.code.is_some() {
        b.stop = Some(o.took);
    }
    if !o.ok() || c.state() != "STOPPED" {
        c.run("lxc-stop", &["-k"], CMD);
    }
    b.stopped = c.wait_state("STOPPED", Duration::from_secs(10));
    b
}

/// `console` (an lxc-console binary, with its environment) attached to
/// `c`'s console in a tmux of its own: whether Enter brings up the getty's
/// login prompt within 20 s; detached with the escape.
fn login_prompt(c: &Ctr, console: &str) -> bool {
    let sock = format!(
        "strata-sd-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let tmux = |args: &[&str]| {
        let mut t = Command::new("timeout");
        t.args(["10", "tmux", "-L", &sock, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        t.output()
            .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned()))
    };
    let script = format!("{console} -P {} -n {} -t 0; sleep 600", c.lxcpath.display(), c.name);
    if !matches!(
        tmux(&["new-session", "-d", "-x", "120", "-y", "30", "-s", "s", &script]),
        Ok((true, _))
    ) {
        return false;
    }
    let t = Instant::now();
    let mut seen = false;
    while !seen && t.elapsed() < Duration::from_secs(20) {
        let _ = tmux(&["send-keys", "-t", "s", "Enter"]);
        std::thread::sleep(Duration::from_millis(500));
        seen = tmux(&["capture-pane", "-p", "-J", "-t", "s"]).is_ok_and(|(_, s)| s.contains("login:"));
    }
    let _ = tmux(&["send-keys", "-t", "s", "C-a", "q"]);
    let _ = tmux(&["kill-server"]);
    seen
}

fn show(label: &str, b: &Boot) {
    eprintln!(
        "{label}: state {:?}, lxc-wait {}, failed units {:?}, console-getty {:?}, login prompt {}/{} (own/LXC's lxc-console), memory limit {:?}, lxc-stop {}",
        b.state,
        b.waited,
        b.failed,
        b.console_getty,
        b.login,
        b.login_lxc,
        b.mem_limit,
        b.stop
            .map_or(format!("did not return in {STOP:?}"), |d| format!("{d:.2?}"))
    );
}

/// The dirs of the caller's own cgroups (one per hierarchy, host view).
fn own_cgroups() -> Vec<PathBuf> {
    let mine: Vec<(String, String)> = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctl.to_string(), path.to_string()))
        })
        .collect();
    let mut dirs = BTreeSet::new();
    for l in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        let (pre, post) = match l.split_once(" - ") {
            Some(x) => x,
            None => continue,
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (root, point, fstype, opts) = (pre[3], pre[4], post[0], post.get(2).copied().unwrap_or(""));
        let opts: BTreeSet<&str> = opts.split(',').collect();
        for (ctl, path) in &mine {
            let fits = match fstype {
                "cgroup2" => ctl.is_empty(),
                "cgroup" => !ctl.is_empty() && ctl.split(',').all(|c| opts.contains(c)),
                _ => false,
            };
            if let (true, Ok(rel)) = (fits, Path::new(path).strip_prefix(root)) {
                dirs.insert(Path::new(point).join(rel));
            }
        }
    }
    dirs.into_iter().collect()
}

/// Cgroups named as systemd names its units, right below the caller's own:
/// where a systemd that was not given a cgroup of its own puts its units.
fn unit_cgroups(own: &[PathBuf]) -> BTreeSet<PathBuf> {
    let unit = |n: &str| {
        [".scope", ".slice", ".service", ".mount", ".socket"]
            .iter()
            .any(|s| n.ends_with(s))
    };
    own.iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && unit(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect()
}

/// Removes an empty cgroup tree, deepest first.
fn remove_cgroup(d: &Path) {
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&e.path());
        }
    }
    let _ = std::fs::remove_dir(d);
}

/// Why LXC, run by root, cannot set up `MAP`: with newuidmap installed
/// LXC 5 maps through it even for root, which then needs the range in
/// /etc/subuid and /etc/subgid.
fn lxc_cannot_map() -> Option<String> {
    if !["/usr/bin/newuidmap", "/bin/newuidmap"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        return None;
    }
    let covered = |f: &str| {
        std::fs::read_to_string(f).unwrap_or_default().lines().any(|l| {
            let v: Vec<&str> = l.trim().split(':').collect();
            let n = |i: usize| v.get(i).and_then(|x| x.parse::<u64>().ok());
            matches!(v.first(), Some(&"root") | Some(&"0"))
                && matches!((n(1), n(2)), (Some(s), Some(c)) if s <= 100000 && s + c >= 165536)
        })
    };
    let missing: Vec<&str> = ["/etc/subuid", "/etc/subgid"]
        .into_iter()
        .filter(|f| !covered(f))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "newuidmap is installed and root has no range 100000:65536 in {} (LXC maps through it)",
            missing.join(" and ")
        )
    })
}

/// The two tests run one after the other: each checks the caller's cgroups
/// (which they share) for what its container's systemd left there.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn systemd_boots(mapped: bool) {
    let Some(tarball) = cached_rootfs() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Rt::new();
    if mapped && !strata_runtime::userns::supports_idmapped(&rt.lxcpath) {
        assert!(
            std::env::var_os("STRATA_REQUIRE_SYSTEMD").is_none(),
            "no idmapped mounts on {}",
            rt.lxcpath.display()
        );
        eprintln!("skipped: no idmapped mounts on {}", rt.lxcpath.display());
        return;
    }
    // The container's root must reach its rootfs.
    std::fs::set_permissions(rt.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mode = if mapped { "unprivileged" } else { "privileged" };
    let mut problems = Vec::new();

    // The baseline: LXC itself, same rootfs, same config.
    let lxc_path = rt.tmp.path().join("lxc-real");
    let lxc = Ctr {
        rt: &rt,
        runtime: Runtime::Lxc,
        lxcpath: lxc_path.clone(),
        name: "sd",
        logs: rt.tmp.path().join("logs-lxc"),
    };
    let baseline = if !Path::new(LXC_BIN).join("lxc-start").exists() {
        eprintln!("no LXC baseline: {LXC_BIN}/lxc-start is not installed");
        None
    } else if let Some(why) = mapped.then(lxc_cannot_map).flatten() {
        eprintln!("no LXC baseline: {why}");
        None
    } else {
        lxc.create(&tarball, mapped);
        let _guard = LxcGuard(&lxc);
        let b = boot(&lxc);
        show(&format!("LXC {mode}"), &b);
        if !b.booted() || !b.stopped {
            problems.push(format!(
                "LXC itself did not boot the rootfs: {}\n{}\n{}",
                b.state,
                b.diag,
                lxc.console_tail()
            ));
        }
        Some(b)
    };

    let own = own_cgroups();
    let cgroups_before = unit_cgroups(&own);
    let st = Ctr {
        rt: &rt,
        runtime: Runtime::Strata,
        lxcpath: rt.lxcpath.clone(),
        name: "sd",
        logs: rt.tmp.path().join("logs-strata"),
    };
    st.create(&tarball, mapped);
    let b = boot(&st);
    show(&format!("strata {mode}"), &b);

    if !b.booted() {
        problems.push(format!("strata: systemd did not boot: {}", b.state));
    }
    let allowed = baseline.as_ref().map(|l| &l.failed);
    if let Some(allowed) = allowed {
        let extra: Vec<&String> = b.failed.difference(allowed).collect();
        if !extra.is_empty() {
            problems.push(format!("strata: units failed that LXC runs: {extra:?}"));
        }
    }
    // The rootfs enables a getty on /dev/console, and LXC runs it: it needs
    // a console, which LXC gives every container (a pty pair the monitor holds).
    if b.booted() && b.console_getty != "active" {
        problems.push(format!(
            "strata: console-getty.service is {:?}, not active (no /dev/console in the container?)",
            b.console_getty
        ));
    }
    if b.started && !b.waited {
        problems.push("strata: lxc-wait -s RUNNING did not return 0 after lxc-start -d".to_string());
    }
    // A login prompt on the console, as under LXC, through strata's
    // lxc-console and LXC's.
    if let Some(l) = baseline.as_ref().filter(|l| l.login) {
        if b.booted() && !b.login {
            problems.push("strata: lxc-console -t 0 showed no login prompt (LXC's run did)".to_string());
        }
        if b.booted() && l.login_lxc && !b.login_lxc {
            problems.push("strata: LXC's lxc-console -t 0 showed no login prompt (LXC's run did)".to_string());
        }
    }
    if b.booted() && b.mem_limit != Some(LIMIT) {
        problems.push(format!(
            "strata: the container's cgroup shows memory limit {:?}, not {LIMIT} ({})",
            b.mem_limit,
            memory_limit_key()
        ));
    }
    if b.started && b.stop.is_none() {
        problems.push(format!("strata: lxc-stop did not return within {STOP:?} (killed)"));
    }
    if !b.stopped {
        problems.push("strata: container not STOPPED after lxc-stop -k".to_string());
    }
    let left = rt.mounts();
    if !left.is_empty() {
        problems.push(format!("strata: mounts left: {left:?}"));
    }
    let records = rt.records();
    if !records.is_empty() {
        problems.push(format!("strata: run records left: {records:?}"));
    }
    let new: Vec<PathBuf> = unit_cgroups(&own).difference(&cgroups_before).cloned().collect();
    if !new.is_empty() {
        problems.push(format!(
            "strata: the container's systemd made its cgroups in the caller's own (no cgroup of its own): {new:?}"
        ));
        for d in &new {
            remove_cgroup(d);
        }
    }
    assert!(
        problems.is_empty(),
        "{mode} systemd container:\n- {}\nstrata's container, seen from inside:\n{}",
        problems.join("\n- "),
        b.diag
    );
}

#[test]
fn systemd_boots_privileged() {
    systemd_boots(false);
}

#[test]
fn systemd_boots_unprivileged() {
    systemd_boots(true);
}
