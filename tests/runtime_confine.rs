//! The escape suite: a probe (tests/probe/escape_probe.c) tries each escape
//! from inside a privileged container started with LXC's common config plus
//! memory and pids limits, under strata and under Debian's LXC with the very
//! same config, through `lxc-start -F`, `lxc-execute`, an ephemeral
//! `lxc-copy -e` and `lxc-attach` into a running container. strata must
//! refuse every case marked "refuses" whatever LXC does, and at least
//! whatever LXC refuses; its capability sets and seccomp mode are LXC's. The
//! probe also runs once on the host, outside any container, to show that it
//! can see an escape succeed at all (a case the host refuses too proves
//! nothing). A side-by-side table goes to stdout (`--nocapture`).
//!
//! Some cases only follow LXC, because without an LSM (this host has no
//! AppArmor) neither runtime can refuse them to a privileged container's
//! root, which keeps CAP_SYS_ADMIN: mounting a block device whose
//! filesystem the host has mounted (`mount_rootdev`: the superblock exists
//! already, so the device cgroup is never asked, and a fresh devtmpfs
//! would hand out the node even if mknod of block nodes were filtered),
//! mounting its own cgroup hierarchies to rewrite its limits, and a fresh
//! procfs or sysfs where no read-only bind mount covers /proc/sys or /sys
//! (`cgroup_*`, `*_fresh_*`). LXC relies on AppArmor for those; the README
//! says so, and unprivileged containers are the answer. Without the include
//! and the limits neither runtime confines anything, and
//! `lxc.cap.drop`/`lxc.cap.keep` give LXC's sets.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const LXC_BIN: &str = "/usr/bin";
/// The limits in the confined config.
const PIDS_MAX: u32 = 64;
/// Capabilities common.conf drops: mac_admin mac_override sys_time sys_module sys_rawio.
const COMMON_DROPS: &[u32] = &[33, 32, 25, 16, 17];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Want {
    /// strata refuses it whatever LXC does.
    Refused,
    /// strata allows it (a positive check of the mixed mounts).
    Allowed,
    /// strata refuses it if LXC does.
    AsLxcRefuses,
    /// strata allows it if LXC does.
    AsLxcAllows,
    /// A value strata reports as LXC does.
    SameValue,
    /// Printed only.
    Info,
}
use Want::*;

const CASES: &[(&str, Want)] = &[
    ("status_CapBnd", SameValue),
    ("status_CapEff", SameValue),
    ("status_CapPrm", SameValue),
    ("status_CapInh", SameValue),
    ("status_CapAmb", SameValue),
    ("status_Seccomp", SameValue),
    ("status_NoNewPrivs", Info),
    ("core_pattern", Refused),
    ("core_pattern_fresh_proc", AsLxcRefuses),
    ("sysrq_trigger", Refused),
    ("dev_kmsg", Refused),
    ("dev_mem", Refused),
    ("dev_loop0", Refused),
    ("dev_rootdev", Refused),
    ("mount_rootdev", AsLxcRefuses),
    ("init_module", Refused),
    ("finit_module", Refused),
    ("delete_module", Refused),
    ("kexec_load", Refused),
    ("open_by_handle_at", Refused),
    ("sys_write", Refused),
    ("sys_write_fresh_sysfs", AsLxcRefuses),
    ("memory_hog", Refused),
    ("fork_bomb", Refused),
    ("cgroup_pids", AsLxcRefuses),
    ("cgroup_memory", AsLxcRefuses),
    ("cgroup_devices", AsLxcRefuses),
    ("proc_sys_net", Allowed),
    ("sys_net", AsLxcAllows),
];

/// One probe run: case -> (verdict, detail).
type Results = BTreeMap<String, (String, String)>;

fn parse(out: &str) -> Results {
    out.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| {
            let (verdict, detail) = v.split_once(' ').unwrap_or((v, ""));
            (k.to_string(), (verdict.to_string(), detail.to_string()))
        })
        .collect()
}

/// Whether a verdict means the escape worked (or got past every check).
fn escaped(verdict: &str) -> bool {
    matches!(verdict, "ALLOWED" | "reached")
}

fn lxc_installed() -> bool {
    Path::new(LXC_BIN).join("lxc-execute").exists()
        && (Path::new("/usr/sbin/init.lxc.static").exists() || Path::new("/usr/sbin/init.lxc").exists())
}

/// The host's root filesystem: its device (major:minor) and type, if it is on a block device.
fn host_root_dev() -> Option<(String, String)> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mi.lines().rev().find(|l| l.split(' ').nth(4) == Some("/"))?;
    let dev = line.split(' ').nth(2)?;
    let fstype = line.split(" - ").nth(1)?.split(' ').next()?;
    (!dev.starts_with("0:")).then(|| (dev.to_string(), fstype.to_string()))
}

/// The probe's arguments (in a container it makes its nodes in /dev).
fn probe_args(cases: &[&str]) -> Vec<String> {
    let mut a = vec![];
    if let Some((dev, fstype)) = host_root_dev() {
        a.extend(["--rootdev".to_string(), dev, "--rootfstype".to_string(), fstype]);
    }
    a.extend(cases.iter().map(|c| c.to_string()));
    a
}

/// Compile the probe into `dir`.
fn build_probe(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe/escape_probe.c");
    let out = dir.join("escape_probe");
    let o = Command::new("gcc")
        .args(["-static", "-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .expect("gcc");
    assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// Run with a deadline; the probe's lines (stdout, or `out_file` when given),
/// and a description of what went wrong if anything did.
fn run_for(mut c: Command, secs: u64, out_file: Option<&Path>) -> (String, Option<String>) {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut so, &mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut se, &mut s).ok();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut out, err) = (t_out.join().unwrap(), t_err.join().unwrap());
    if let Some(f) = out_file {
        out = std::fs::read_to_string(f).unwrap_or_default();
    }
    let problem = match status {
        None => Some(format!("timed out after {secs} s; stderr: {err}")),
        Some(st) if !st.success() || !out.lines().any(|l| l == "done") => {
            Some(format!("{st:?}; stderr: {}", err.trim_end()))
        }
        _ => None,
    };
    (out, problem)
}

/// The probe on the host, outside any container (in a private mount
/// namespace, so that its mount is seen nowhere else): which escapes it can
/// see succeed here. Once per test process.
fn host_results(probe: &Path, scratch: &Path) -> &'static Results {
    static HOST: OnceLock<Results> = OnceLock::new();
    HOST.get_or_init(|| {
        let mut c = Command::new(probe);
        c.arg("--dir").arg(scratch).args(probe_args(&["all"]));
        // SAFETY: the pre_exec closure runs in the forked child before exec and only makes two raw system calls
        // (unshare with flags, mount with null pointers and a NUL-terminated literal), which are async-signal-safe;
        // it allocates nothing.
        unsafe {
            c.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (out, problem) = run_for(c, 30, None);
        assert!(problem.is_none(), "probe on the host: {problem:?}\n{out}");
        let r = parse(&out);
        // The probe can see these succeed (or get past every check, to a
        // driver or a kernel without the feature): otherwise it could not
        // tell a refusal from its own bug.
        for case in [
            "core_pattern",
            "core_pattern_fresh_proc",
            "memory_hog",
            "fork_bomb",
            "proc_sys_net",
        ] {
            assert_eq!(r[case].0, "ALLOWED", "probe on the host, {case}: {:?}\n{out}", r[case]);
        }
        for case in [
            "dev_kmsg",
            "dev_loop0",
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "open_by_handle_at",
        ] {
            assert!(escaped(&r[case].0), "probe on the host, {case}: {:?}\n{out}", r[case]);
        }
        r
    })
}

fn host_capbnd() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let v = s.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim();
    u64::from_str_radix(v, 16).unwrap()
}

/// The bounding set LXC gives a container with common.conf: the host's minus common.conf's drops.
fn expected_confined_capbnd() -> String {
    let mut b = host_capbnd();
    for c in COMMON_DROPS {
        b &= !(1u64 << c);
    }
    format!("{b:016x}")
}

/// What LXC reports for a `status_*` value with common.conf (for when LXC is not there to ask).
fn confined_value(case: &str) -> String {
    match case {
        "status_CapBnd" | "status_CapEff" | "status_CapPrm" => expected_confined_capbnd(),
        "status_Seccomp" => "2".into(),
        _ => "0000000000000000".into(),
    }
}

fn confined_config(rootfs: &Path, name: &str) -> String {
    format!(
        "lxc.include = /usr/share/lxc/config/common.conf\n\
         lxc.rootfs.path = dir:{}\n\
         lxc.uts.name = {name}\n\
         lxc.net.0.type = empty\n\
         lxc.cgroup.memory.limit_in_bytes = 64M\n\
         lxc.cgroup.pids.max = {PIDS_MAX}\n",
        rootfs.display()
    )
}

fn bare_config(rootfs: &Path, name: &str) -> String {
    format!(
        "lxc.rootfs.path = dir:{}\nlxc.uts.name = {name}\nlxc.net.0.type = empty\n",
        rootfs.display()
    )
}

/// Where the probe runs.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `lxc-start -F -- /probe`: the probe is the container's init.
    Start,
    Execute,
    Ephemeral,
    Attach,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Start => "lxc-start -F",
            Mode::Execute => "lxc-execute",
            Mode::Ephemeral => "lxc-copy -e -F",
            Mode::Attach => "lxc-attach into lxc-start -d",
        }
    }
}

/// One runtime: strata through Rt's lxc-* names, or LXC's own tools.
struct Side<'a> {
    rt: &'a Rt,
    /// None: strata.
    lxcpath: Option<PathBuf>,
}

impl Side<'_> {
    fn cmd(&self, tool: &str, args: &[&str]) -> Command {
        match &self.lxcpath {
            None => self.rt.cmd(tool, args),
            Some(p) => {
                let mut c = Command::new(Path::new(LXC_BIN).join(tool));
                c.arg("-P").arg(p).args(args);
                c
            }
        }
    }

    fn lxcpath(&self) -> &Path {
        self.lxcpath.as_deref().unwrap_or(&self.rt.lxcpath)
    }

    /// A container NAME with a busybox rootfs, the probe at /probe and as
    /// /sbin/init (an init that forks nothing, so that the fork bomb cannot
    /// kill it), and `config`.
    fn container(&self, name: &str, probe: &Path, config: fn(&Path, &str) -> String) {
        let dir = self.lxcpath().join(name);
        let rootfs = dir.join("rootfs");
        make_rootfs(&rootfs);
        std::fs::copy(probe, rootfs.join("probe")).unwrap();
        std::fs::remove_file(rootfs.join("sbin/init")).unwrap();
        std::os::unix::fs::symlink("/probe", rootfs.join("sbin/init")).unwrap();
        std::fs::write(dir.join("config"), config(&rootfs, name)).unwrap();
    }

    fn state(&self, name: &str) -> String {
        let o = self.cmd("lxc-info", &["-n", name, "-s", "-H"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Run the probe in `mode`; its results, or why there are none.
    fn probe(&self, name: &str, mode: Mode, cases: &[&str]) -> Result<Results, String> {
        let args = probe_args(cases);
        let mut argv: Vec<&str> = vec!["-n", name];
        let out_file = self.lxcpath().join(name).join("rootfs/probe.out");
        let run = |argv: &[&str]| {
            let f = (mode == Mode::Start).then_some(out_file.as_path());
            let (out, problem) = run_for(self.cmd(argv[0], &argv[1..]), 30, f);
            match problem {
                None => Ok(parse(&out)),
                Some(p) => Err(format!("{}: {p}\n{out}", argv[..3].join(" "))),
            }
        };
        match mode {
            Mode::Start => {
                argv.extend(["-F", "--", "/probe", "--out", "/probe.out"]);
                argv.insert(0, "lxc-start");
                argv.extend(args.iter().map(String::as_str));
                run(&argv)
            }
            Mode::Execute | Mode::Ephemeral => {
                let tool = if mode == Mode::Execute {
                    "lxc-execute"
                } else {
                    "lxc-copy"
                };
                argv.insert(0, tool);
                if mode == Mode::Ephemeral {
                    argv.extend(["-e", "-F"]);
                }
                argv.extend(["--", "/probe"]);
                argv.extend(args.iter().map(String::as_str));
                run(&argv)
            }
            Mode::Attach => {
                let o = self
                    .cmd("lxc-start", &["-n", name, "-d"])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                if !o.status.success() {
                    return Err(format!("lxc-start -d: {}", String::from_utf8_lossy(&o.stderr)));
                }
                let t = Instant::now();
                while self.state(name) != "RUNNING" && t.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                argv.insert(0, "lxc-attach");
                argv.extend(["--", "/probe"]);
                argv.extend(args.iter().map(String::as_str));
                let r = run(&argv);
                let o = self
                    .cmd("lxc-stop", &["-n", name, "-k"])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                assert!(o.status.success(), "lxc-stop: {}", String::from_utf8_lossy(&o.stderr));
                r
            }
        }
    }
}

/// A table cell: verdict and detail, cut to 40 characters.
fn cell(r: &Result<Results, String>, case: &str) -> String {
    let text = match r {
        Err(e) if e.starts_with("not installed") => "(not installed)".into(),
        Err(_) => "(did not run)".into(),
        Ok(r) => r
            .get(case)
            .map_or("(no line)".into(), |(v, d)| format!("{v} {d}").trim().to_string()),
    };
    match text.char_indices().nth(39) {
        Some((i, _)) => format!("{}~", &text[..i]),
        None => text,
    }
}

fn print_table(title: &str, cases: &[&str], lxc: &Result<Results, String>, strata: &Results, host: &Results) {
    println!("\n== {title}");
    println!(
        "{:<24} {:<8} {:<40} {:<40} host, outside any container",
        "case", "must", "LXC 5.0.2", "strata"
    );
    for c in cases {
        let want = match CASES.iter().find(|w| w.0 == *c).map(|w| w.1) {
            Some(Refused) => "refuses",
            Some(Allowed) => "allows",
            Some(AsLxcRefuses) | Some(AsLxcAllows) | Some(SameValue) => "as LXC",
            _ => "",
        };
        let s = cell(&Ok(strata.clone()), c);
        let h = cell(&Ok(host.clone()), c);
        println!("{c:<24} {want:<8} {:<40} {s:<40} {h}", cell(lxc, c));
    }
    if let Err(e) = lxc {
        println!("LXC: {e}");
    }
}

/// The checks of one confined run; the failures, all of them.
fn judge(mode: Mode, lxc: Option<&Results>, strata: &Results, host: &Results) -> Vec<String> {
    let mut bad = vec![];
    for (case, want) in CASES {
        let Some((sv, sd)) = strata.get(*case) else {
            bad.push(format!("{case}: no result from strata's run"));
            continue;
        };
        let l = lxc.and_then(|l| l.get(*case));
        let host_note = match host.get(*case) {
            Some((v, _)) if !escaped(v) && *want == Refused => " (the host refuses it too)",
            _ => "",
        };
        let lxc_refuses = l.is_some_and(|(v, _)| !escaped(v));
        let lxc_allows = l.is_some_and(|(v, _)| v == "ALLOWED");
        let what = format!("{case}: strata {sv} {sd}; LXC {l:?}{host_note}");
        match want {
            Refused if escaped(sv) => bad.push(format!("{what}: must be refused")),
            AsLxcRefuses if lxc_refuses && escaped(sv) => bad.push(format!("{what}: LXC refuses it")),
            Allowed if sv != "ALLOWED" => bad.push(format!("{what}: must stay allowed")),
            AsLxcAllows if lxc_allows && sv != "ALLOWED" => bad.push(format!("{what}: LXC allows it")),
            SameValue => match l {
                Some((lv, _)) if lv != sv || l.map(|l| &l.1) != Some(sd) => {
                    bad.push(format!("{what}: LXC reports another value"))
                }
                None if *sd != confined_value(case) => bad.push(format!(
                    "{what}: expected {} (what LXC gives with common.conf)",
                    confined_value(case)
                )),
                _ => {}
            },
            _ => {}
        }
    }
    // The fork bomb stops at the limit: the probe and whatever else runs count too.
    if let Some((_, d)) = strata.get("fork_bomb") {
        let n: u32 = d.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(u32::MAX);
        if n >= PIDS_MAX {
            bad.push(format!("fork_bomb: {n} forks under pids.max = {PIDS_MAX}"));
        }
    }
    bad.into_iter().map(|b| format!("[{}] {b}", mode.label())).collect()
}

/// LXC 5.0.2's ephemeral runs leave their (empty) monitor cgroup, named
/// after the clone, in every hierarchy: remove those of NAME's clones.
fn remove_lxc_leftover_cgroups(name: &str) {
    fn walk(dir: &Path, prefixes: &[String], depth: u32) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let n = e.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| n.starts_with(p.as_str())) {
                std::fs::remove_dir(e.path()).ok();
            } else if depth > 0 {
                walk(&e.path(), prefixes, depth - 1);
            }
        }
    }
    let prefixes = [format!("lxc.monitor.{name}_"), format!("lxc.payload.{name}_")];
    walk(Path::new("/sys/fs/cgroup"), &prefixes, 3);
}

/// The whole suite in one mode, under LXC (when installed) and strata.
fn suite(mode: Mode) {
    let rt = Rt::new();
    let probe = build_probe(rt.tmp.path());
    let host = host_results(&probe, &rt.outside);
    // One name per mode: LXC's cgroups are named after the container.
    let name = format!("esc{}{}", mode.label().as_bytes()[4] as char, std::process::id());
    let lxc = if lxc_installed() {
        let side = Side {
            rt: &rt,
            lxcpath: Some(rt.tmp.path().join("lxc-real")),
        };
        side.container(&name, &probe, confined_config);
        let r = side.probe(&name, mode, &["all"]);
        // An ephemeral run leaves nothing behind.
        let t = Instant::now();
        while mode == Mode::Ephemeral
            && std::fs::read_dir(side.lxcpath()).unwrap().count() > 1
            && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        remove_lxc_leftover_cgroups(&name);
        Some(r)
    } else {
        None
    };
    let side = Side { rt: &rt, lxcpath: None };
    side.container(&name, &probe, confined_config);
    let strata = side
        .probe(&name, mode, &["all"])
        .unwrap_or_else(|e| panic!("strata: {e}"));
    let cases: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    let lxc_shown = lxc.clone().unwrap_or(Err("not installed: LXC side skipped".into()));
    print_table(mode.label(), &cases, &lxc_shown, &strata, host);
    if let Some(Ok(l)) = &lxc {
        // LXC itself gives what its config says: the harness reads it right.
        assert_eq!(l["status_CapBnd"].1, expected_confined_capbnd(), "LXC's bounding set");
    }
    rt.assert_clean(&[&name]);
    let bad = judge(mode, lxc.as_ref().and_then(|r| r.as_ref().ok()), &strata, host);
    assert!(bad.is_empty(), "{} escape(s):\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn escapes_are_refused_in_lxc_start() {
    suite(Mode::Start);
}

#[test]
fn escapes_are_refused_in_lxc_execute() {
    suite(Mode::Execute);
}

#[test]
fn escapes_are_refused_in_an_ephemeral_run() {
    suite(Mode::Ephemeral);
}

#[test]
fn escapes_are_refused_in_lxc_attach() {
    suite(Mode::Attach);
}

/// Without common.conf and without limits, neither LXC nor strata confines
/// anything: the keys do the work, not the runtime.
#[test]
fn nothing_is_dropped_without_the_keys() {
    let rt = Rt::new();
    let probe = build_probe(rt.tmp.path());
    let host = host_results(&probe, &rt.outside);
    let name = format!("bare{}", std::process::id());
    let cases = [
        "status_CapBnd",
        "status_CapEff",
        "status_CapPrm",
        "status_CapInh",
        "status_CapAmb",
        "status_Seccomp",
        "status_NoNewPrivs",
        "dev_kmsg",
        "dev_loop0",
        "init_module",
        "open_by_handle_at",
        "memory_hog",
        "fork_bomb",
    ];
    let args = [
        "status",
        "dev_kmsg",
        "dev_loop0",
        "init_module",
        "open_by_handle_at",
        "memory_hog",
        "fork_bomb",
    ];
    let lxc = lxc_installed().then(|| {
        let side = Side {
            rt: &rt,
            lxcpath: Some(rt.tmp.path().join("lxc-real")),
        };
        side.container(&name, &probe, bare_config);
        side.probe(&name, Mode::Execute, &args)
    });
    let side = Side { rt: &rt, lxcpath: None };
    side.container(&name, &probe, bare_config);
    let strata = side
        .probe(&name, Mode::Execute, &args)
        .unwrap_or_else(|e| panic!("strata: {e}"));
    let lxc_shown = lxc.clone().unwrap_or(Err("not installed: LXC side skipped".into()));
    print_table("no include, no limits (lxc-execute)", &cases, &lxc_shown, &strata, host);
    let full = format!("{:016x}", host_capbnd());
    let mut bad = vec![];
    for c in &cases[..5] {
        let v = &strata[*c].1;
        let want = if *c == "status_CapBnd" || (*c != "status_CapInh" && *c != "status_CapAmb") {
            full.clone()
        } else {
            "0000000000000000".into()
        };
        if *v != want {
            bad.push(format!("{c}: strata {v}, not {want}"));
        }
    }
    if strata["status_Seccomp"].1 != "0" {
        bad.push(format!("seccomp: strata {:?}", strata["status_Seccomp"]));
    }
    if let Some(Ok(l)) = &lxc {
        for c in cases {
            let (lv, sv) = (&l[c], &strata[c]);
            let same = if c.starts_with("status_") || c == "init_module" || c == "open_by_handle_at" {
                lv == sv
            } else {
                escaped(&lv.0) == escaped(&sv.0)
            };
            if !same {
                bad.push(format!("{c}: LXC {lv:?}, strata {sv:?}"));
            }
        }
    }
    rt.assert_clean(&[&name]);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// lxc.cap.drop, lxc.cap.keep and lxc.no_new_privs as LXC reads them: the
/// sets and flag LXC gives (or its refusal of the config), under strata too.
/// Without LXC the expectations are computed from the host's bounding set.
#[test]
fn capability_keys_as_lxc() {
    const KEYS: [&str; 4] = ["status_CapBnd", "status_CapEff", "status_CapPrm", "status_NoNewPrivs"];
    let rt = Rt::new();
    let probe = build_probe(rt.tmp.path());
    let host = host_capbnd();
    let bits = |caps: &[u32]| caps.iter().fold(0u64, |b, c| b | 1 << c);
    let include = "lxc.include = /usr/share/lxc/config/common.conf\n";
    // (extra config, the bounding set and no_new_privs LXC gives; None: LXC refuses the config)
    let cases: Vec<(String, Option<(u64, &str)>)> = vec![
        (
            "lxc.cap.drop = sys_module mknod\n".into(),
            Some((host & !bits(&[16, 27]), "0")),
        ),
        (
            "lxc.cap.keep = sys_admin net_admin chown\n".into(),
            Some((host & bits(&[21, 12, 0]), "0")),
        ),
        ("lxc.cap.keep = none\n".into(), Some((0, "0"))),
        (format!("{include}lxc.cap.drop =\n"), Some((host, "0"))),
        (format!("{include}lxc.cap.keep = sys_admin\n"), None),
        ("lxc.cap.drop = all\n".into(), None),
        ("lxc.no_new_privs = 1\n".into(), Some((host, "1"))),
    ];
    let names: Vec<String> = (0..cases.len())
        .map(|i| format!("cap{i}x{}", std::process::id()))
        .collect();
    let mut bad = vec![];
    println!(
        "\n== lxc.cap.drop / lxc.cap.keep / lxc.no_new_privs (lxc-execute; CapBnd and NoNewPrivs, or the refusal)"
    );
    for ((extra, want), name) in cases.iter().zip(&names) {
        let config = format!(
            "lxc.rootfs.path = dir:ROOTFS\nlxc.uts.name = {name}\nlxc.net.0.type = empty\n\
             lxc.mount.auto = proc:mixed\n{extra}"
        );
        let mut got = vec![];
        for lxcpath in [lxc_installed().then(|| rt.tmp.path().join("lxc-real")), None] {
            let side = Side { rt: &rt, lxcpath };
            let dir = side.lxcpath().join(name);
            make_rootfs(&dir.join("rootfs"));
            std::fs::copy(&probe, dir.join("rootfs/probe")).unwrap();
            let rootfs = dir.join("rootfs").display().to_string();
            std::fs::write(dir.join("config"), config.replace("ROOTFS", &rootfs)).unwrap();
            let r = side.probe(name, Mode::Execute, &["status"]);
            let values = r.as_ref().ok().map(|r| KEYS.map(|k| r.get(k).map(|v| v.1.clone())));
            got.push((side.lxcpath.is_some(), values));
        }
        let show = |c: &Option<[Option<String>; 4]>| {
            c.as_ref().map_or("refused".to_string(), |c| {
                format!(
                    "{} nnp={}",
                    c[0].clone().unwrap_or_default(),
                    c[3].clone().unwrap_or_default()
                )
            })
        };
        let strata = &got.last().unwrap().1;
        let lxc = got.iter().find(|g| g.0).map(|g| &g.1);
        println!(
            "{:<72} LXC {:<24} strata {}",
            extra.trim().replace('\n', "; "),
            lxc.map_or("(not installed)".into(), show),
            show(strata)
        );
        // LXC gives what the keys say: the expectations are LXC's.
        let want = want.map(|(caps, nnp)| {
            let c = format!("{caps:016x}");
            [Some(c.clone()), Some(c.clone()), Some(c), Some(nnp.to_string())]
        });
        if let Some(l) = lxc {
            assert_eq!(*l, want, "LXC with {extra:?}");
        }
        if *strata != want {
            bad.push(format!("{extra:?}: strata {strata:?}, LXC {want:?}"));
        }
    }
    rt.assert_clean(&names.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The host's nodes the test changes from inside: mode bits and owner.
const NODES: [&str; 3] = ["/dev/null", "/dev/zero", "/dev/tty"];

fn host_nodes() -> Vec<(u32, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    NODES
        .iter()
        .map(|n| {
            let m = std::fs::metadata(n).unwrap();
            (m.mode() & 0o7777, m.uid(), m.gid())
        })
        .collect()
}

/// Puts the host's nodes back as they were, whatever the test saw.
struct NodesGuard(Vec<(u32, u32, u32)>);

impl Drop for NodesGuard {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        for (n, &(mode, uid, gid)) in NODES.iter().zip(&self.0) {
            let _ = std::os::unix::fs::chown(n, Some(uid), Some(gid));
            let _ = std::fs::set_permissions(n, std::fs::Permissions::from_mode(mode));
        }
    }
}

/// A privileged container's root changes the owner and mode of its
/// /dev/null: the host's stays as it is (its /dev holds nodes of its own,
/// as LXC makes them; a bind of the host's node handed that root the host's
/// inode). Under LXC too, with the same config.
#[test]
fn a_privileged_container_cannot_change_the_hosts_dev_nodes() {
    let before = host_nodes();
    let _guard = NodesGuard(before.clone());
    let rt = Rt::new();
    let sides = [
        ("strata", Side { rt: &rt, lxcpath: None }),
        (
            "LXC",
            Side {
                rt: &rt,
                lxcpath: Some(rt.tmp.path().join("lxc-side")),
            },
        ),
    ];
    for (label, side) in &sides {
        if *label == "LXC" && !lxc_installed() {
            eprintln!("LXC side skipped: not installed");
            continue;
        }
        let dir = side.lxcpath().join("devnull");
        let rootfs = dir.join("rootfs");
        make_rootfs(&rootfs);
        std::fs::write(dir.join("config"), confined_config(&rootfs, "devnull")).unwrap();
        let o = side
            .cmd(
                "lxc-execute",
                &[
                    "-n",
                    "devnull",
                    "--",
                    "/bin/sh",
                    "-c",
                    "chmod 600 /dev/null /dev/zero /dev/tty; chown 1:1 /dev/null /dev/zero /dev/tty; stat -c '%a %u' /dev/null",
                ],
            )
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{label}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Inside, root changed its own node...
        assert_eq!(out.trim(), "600 1", "{label}: {out}");
        // ...and the host's is as it was.
        assert_eq!(host_nodes(), before, "{label}: the host's {NODES:?} changed");
    }
}
