//! Property tests of the runtime's parsers of user input: seccomp policy
//! text, `lxc.mount.entry`, `lxc.mount.auto`, `lxc.cap.*`, `lxc.prlimit.*`,
//! signals, the cgroup keys and device rules. Bounded (a few hundred cases
//! each); `PROPTEST_CASES` raises the count. The property everywhere:
//! whatever the input, an answer or an error, never a panic.

use proptest::prelude::*;
use proptest::test_runner::Config as PtConfig;
use std::path::Path;
use strata_core::config::Config;
use strata_runtime::cgroup::{device_program, DeviceList, DeviceRule, Spec};
use strata_runtime::conf::{check_implemented, parse_mount_entry, parse_signal, AutoMounts, RunConfig};
use strata_runtime::confine::{parse_cap, CapRule, Confine};
use strata_runtime::seccomp::Filter;

fn cases(n: u32) -> PtConfig {
    PtConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(n),
        failure_persistence: None,
        ..PtConfig::default()
    }
}

fn pick(words: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(words).prop_map(str::to_string)
}

/// Words joined by blanks, with some arbitrary text among them.
fn words(words: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![4 => pick(words), 1 => "[ -~]{0,6}", 1 => any::<String>().prop_map(|s| s.chars().take(4).collect())],
        0..max,
    )
    .prop_map(|v| v.join(" "))
}

/// A config of `key = value` lines; lines the config parser refuses are left out.
fn config_of(lines: &[(String, String)]) -> Config {
    let text: String = lines
        .iter()
        .filter(|(_, v)| !v.contains(['\n', '\r', '\0']))
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    Config::parse(&text).unwrap_or_default()
}

// ---------------------------------------------------------------- mounts

const MOUNT_WORDS: &[&str] = &[
    "proc",
    "/proc",
    "/dev/null",
    "dev/null",
    "none",
    "tmpfs",
    "bind",
    "rbind",
    "ro",
    "rw",
    "bind,ro",
    "create=dir",
    "create=file",
    "create=",
    "create=x",
    "optional",
    "defaults",
    "nosuid,nodev",
    "0",
    "0 0",
    "\\040",
    "\\777",
    "\\400",
    "\\0",
    "\\",
    "..",
    "/..",
    "a/../b",
    "/var/lib/lxc/c/rootfs",
    "mode=755,size=1M",
    ",",
];

proptest! {
    #![proptest_config(cases(1000))]

    /// `lxc.mount.entry`: never a panic; an accepted target stays under the rootfs.
    #[test]
    fn mount_entry(line in words(MOUNT_WORDS, 8), root in prop_oneof![Just(None), Just(Some("/var/lib/lxc/c/rootfs")), Just(Some("/")), Just(Some(""))]) {
        if let Ok(e) = parse_mount_entry(&line, root) {
            prop_assert!(!e.target.starts_with('/'), "{:?}", e);
            prop_assert!(!e.target.split('/').any(|c| c == ".."), "{:?}", e);
        }
    }

    #[test]
    fn mount_auto(vals in prop::collection::vec(words(&[
        "proc", "proc:mixed", "proc:rw", "proc:ro", "sys", "sys:mixed", "sys:ro", "sys:rw", "cgroup", "cgroup:mixed",
        "cgroup:ro:force", "cgroup:force", "cgroup-full", "cgroup-full:rw:force", "cgroup::", "cgroup:rw:x",
        "shmounts:/a", ":", "",
    ], 5), 0..4)) {
        let lines: Vec<(String, String)> = vals.into_iter().map(|v| ("lxc.mount.auto".to_string(), v)).collect();
        let _ = AutoMounts::parse(&config_of(&lines));
    }

    /// Signals as `lxc.signal.halt` takes them: a number from 1 to SIGRTMAX.
    #[test]
    fn signal(s in prop_oneof![
        pick(&["SIGPWR", "PWR", "30", "0", "-1", "65", "SIGRTMIN", "RTMIN+3", "SIGRTMAX-2", "sigrtmin+", "SIGRTMIN+-5",
               "RTMAX-99", "RTMIN+99", "SIGKILL", "sigterm", "SIG", ""]),
        ("(SIG)?RT(MIN|MAX)[+-]{0,2}", any::<i32>()).prop_map(|(a, n)| format!("{a}{n}")),
        any::<String>(),
    ]) {
        if let Ok(n) = parse_signal(&s) {
            prop_assert!((1..=libc::SIGRTMAX()).contains(&n), "{:?} -> {}", s, n);
            if s.to_ascii_uppercase().contains("RTM") {
                prop_assert!((libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n), "{:?} -> {}", s, n);
            }
        }
    }
}

// ---------------------------------------------------------------- confinement

const CAP_WORDS: &[&str] = &[
    "sys_admin",
    "CAP_SYS_ADMIN",
    "cap_net_raw",
    "mknod",
    "21",
    "40",
    "41",
    "255",
    "256",
    "-1",
    "none",
    "all",
    "",
    "sys_module sys_time",
    "CAP_",
    "cap_cap_chown",
];

const PRLIMIT_NAMES: &[&str] = &[
    "nofile", "nproc", "as", "core", "cpu", "stack", "rttime", "bogus", "", "NOFILE", "nofile.x",
];

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn cap_names(s in prop_oneof![pick(CAP_WORDS), any::<String>()]) {
        let _ = parse_cap(&s);
    }

    /// `lxc.cap.drop`/`keep`, `lxc.prlimit.*`, `lxc.sysctl.*`, init ids:
    /// never a panic; prlimits kept have soft <= hard.
    #[test]
    fn confine(lines in prop::collection::vec(prop_oneof![
        (pick(&["lxc.cap.drop", "lxc.cap.keep"]), words(CAP_WORDS, 4)),
        (pick(PRLIMIT_NAMES).prop_map(|n| format!("lxc.prlimit.{n}")), words(&[
            "1024", "1024:2048", "2048:1024", "unlimited", "unlimited:unlimited", "1:unlimited", "unlimited:1",
            "18446744073709551615", "18446744073709551616", ":", "1:", ":1", "-1", "", "1:2:3",
        ], 2)),
        (pick(PRLIMIT_NAMES).prop_map(|n| format!("lxc.limit.{n}")), pick(&["1", "2:3"])),
        ("lxc\\.sysctl\\.[a-z./]{0,10}", pick(&["1", "", "0 1"])),
        (pick(&["lxc.init.uid", "lxc.init.gid", "lxc.no_new_privs", "lxc.init.cwd"]), pick(&["0", "1", "-1", "4294967296", "/", "x", ""])),
    ], 0..8)) {
        let cfg = config_of(&lines);
        if let Ok(c) = Confine::from_config(&cfg) {
            for p in &c.prlimits {
                prop_assert!(p.soft <= p.hard);
            }
            if let CapRule::Keep(k) = &c.caps {
                prop_assert!(!k.is_empty() || cfg.get_all("lxc.cap.keep").iter().any(|v| v.split_whitespace().any(|w| w == "none")));
            }
        }
    }

    /// The whole run config (mounts, signals, environment, ttys, network,
    /// confinement) and the implemented-key check.
    #[test]
    fn run_config(lines in prop::collection::vec(prop_oneof![
        (Just("lxc.mount.entry".to_string()), words(MOUNT_WORDS, 6)),
        (pick(&["lxc.signal.halt", "lxc.tty.max", "lxc.pty.max", "lxc.tty.dir", "lxc.autodev", "lxc.ephemeral",
                "lxc.init.cmd", "lxc.environment", "lxc.uts.name", "lxc.net.0.type", "lxc.net.1.type", "lxc.net.0.link",
                "lxc.net.x.type", "lxc.network.type", "lxc.net.0.mtu", "lxc.console.path", "lxc.rootfs.managed"]),
         words(&["veth", "none", "empty", "br0", "1", "0", "64", "65", "SIGRTMIN+1", "..", "a/b", "A=b", "PATH", "up"], 2)),
    ], 0..8)) {
        let cfg = config_of(&lines);
        let _ = RunConfig::from_config("c", &cfg, Some("/var/lib/lxc/c/rootfs"));
        let _ = check_implemented(&cfg);
    }
}

// ---------------------------------------------------------------- cgroups

const DEVICE_WORDS: &[&str] = &[
    "a",
    "b",
    "c",
    "x",
    "*:*",
    "1:3",
    "1:*",
    "*:1",
    "4294967295:0",
    "4294967296:0",
    ":",
    "1:",
    ":1",
    "rwm",
    "r",
    "w",
    "m",
    "mm",
    "rwmr",
    "",
    "/dev/null",
    "/dev/zero",
    "/",
    "/nonexistent",
    "-1:2",
];

proptest! {
    #![proptest_config(cases(1000))]

    /// A device rule: never a panic; a number rule prints (v1 line) to
    /// text that parses back to the same rule.
    #[test]
    fn device_rule(v in words(DEVICE_WORDS, 5), allow in any::<bool>()) {
        let key = if allow { "lxc.cgroup2.devices.allow" } else { "lxc.cgroup2.devices.deny" };
        if let Ok(r) = DeviceRule::parse(key, &v) {
            prop_assert_eq!(r.allow, allow);
            let back = DeviceRule::parse(key, &r.v1_line());
            prop_assert_eq!(back.ok(), Some(r.clone()), "{:?}", v);
            let mut l = DeviceList::default();
            l.add(r);
            let _ = device_program(&l);
        }
    }

    /// The cgroup keys of a config, device lists and their BPF programs.
    #[test]
    fn cgroup_spec(lines in prop::collection::vec(prop_oneof![
        (pick(&["lxc.cgroup.devices.allow", "lxc.cgroup.devices.deny", "lxc.cgroup2.devices.allow", "lxc.cgroup2.devices.deny"]),
         words(DEVICE_WORDS, 4)),
        (pick(&["lxc.cgroup.dir", "lxc.cgroup.dir.container", "lxc.cgroup.dir.container.inner", "lxc.cgroup.dir.monitor",
                "lxc.cgroup.dir.monitor.pivot", "lxc.cgroup.relative", "lxc.cgroup", "lxc.cgroup2", "lxc.cgroup.pattern"]),
         pick(&["", "0", "1", "a", "a/b", "/a", "..", "a/../b", "a/", "x//y"])),
        ("lxc\\.cgroup2?\\.[a-z./]{0,12}", pick(&["", "1", "max", "10M"])),
    ], 0..10)) {
        let cfg = config_of(&lines);
        if let Ok(s) = Spec::from_config(&cfg) {
            for set in s.v1.iter().chain(&s.v2) {
                prop_assert!(!set.file.contains('/'));
            }
            for list in [&s.v1, &s.v2] {
                if let Ok(l) = DeviceList::from_settings(list.iter()) {
                    let _ = device_program(&l);
                    let _ = l.allows('c', 1, 3, 'r');
                }
            }
            let _ = s.has_limits();
        }
    }
}

// ---------------------------------------------------------------- seccomp

const SECCOMP_HEADS: &[&str] = &[
    "allowlist",
    "whitelist",
    "denylist",
    "blacklist",
    "denylist errno 1",
    "allowlist errno 0",
    "denylist kill",
    "denylist trap",
    "denylist log",
    "denylist notify",
    "allowlist errno",
    "allowlist errno4096",
    "denylist errno1 x",
    "denylist debug",
    "allowlist # comment",
    "",
    "x",
];

const SECCOMP_RULES: &[&str] = &[
    "read",
    "write",
    "mount",
    "umount2",
    "kexec_load",
    "open_by_handle_at",
    "reject_force_umount",
    "nosuchcall",
    "errno 1",
    "errno1",
    "errno 4095",
    "errno 4096",
    "errno -1",
    "kill",
    "trap",
    "allow",
    "log",
    "notify",
    "[0,1,SCMP_CMP_EQ]",
    "[1,0x10,&=,0x10]",
    "[5,0,!=]",
    "[6,0,==]",
    "[0,0,<]",
    "[2, 010, >=]",
    "[0,1]",
    "[0,1,EQ]",
    "[",
    "]",
    "[]",
    "[,,,]",
    "[0,18446744073709551616,==]",
    "[0,0xffffffffffffffff,SCMP_CMP_MASKED_EQ,07]",
    "[x86]",
    "[all]",
    "[x86_64]",
    "[arm64]",
    "[mips]",
    "[ppc64le]",
    "[s390x]",
    "[bogus]",
    "[ALL",
    "# c",
    "12",
    "-3",
    "2147483647",
];

fn seccomp_text() -> impl Strategy<Value = String> {
    let rule = prop_oneof![
        6 => words(SECCOMP_RULES, 5),
        1 => pick(&["[0,1,==][1,2,==][2,3,==][3,4,==][4,5,==][5,6,==][0,7,==]"]).prop_map(|a| format!("mount {a}")),
    ];
    (
        pick(&["1", "2", " 2 ", "3", "", "2 # v"]),
        pick(SECCOMP_HEADS),
        prop::collection::vec(rule, 0..10),
        any::<bool>(),
    )
        .prop_map(|(v, h, rules, nl)| {
            let mut s = format!("{v}\n{h}\n{}", rules.join("\n"));
            if nl {
                s.push('\n');
            }
            s
        })
}

/// The profile through the public path: a temp file named by
/// `lxc.seccomp.profile`, parsed and compiled (allow_nesting, so that a
/// test run under a seccomp filter still compiles it).
fn compile_profile(dir: &Path, text: &[u8]) -> Result<Option<Filter>, String> {
    let p = dir.join("profile.seccomp");
    std::fs::write(&p, text).unwrap();
    let cfg = Config::parse(&format!(
        "lxc.seccomp.profile = {}\nlxc.seccomp.allow_nesting = 1\n",
        p.display()
    ))
    .unwrap();
    Filter::from_config(&cfg).map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(cases(512))]

    /// Profile text from the grammar and its near misses: a filter or an
    /// error naming a line, never a panic; a filter has instructions.
    #[test]
    fn seccomp_policy(text in seccomp_text()) {
        let dir = tempfile::tempdir().unwrap();
        if let Ok(Some(f)) = compile_profile(dir.path(), text.as_bytes()) {
            prop_assert!(f.instructions() > 0);
        }
    }

    /// Arbitrary bytes (bad UTF-8, NULs) as a profile.
    #[test]
    fn seccomp_policy_bytes(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..96),
        any::<String>().prop_map(|s| format!("2\ndenylist\n{s}").into_bytes()),
    ]) {
        let dir = tempfile::tempdir().unwrap();
        let _ = compile_profile(dir.path(), &bytes);
    }
}

// ---------------------------------------------------------------- regressions (fixed)

/// Found by `mount_entry`: an fstab escape above `\377` (`\400`..`\777`)
/// in `lxc.mount.entry` panics in `conf::unescape` (u8 multiply overflow in
/// a debug build; wraps silently to another byte in a release build).
/// Expected: an error, or the escape kept as written.
#[test]
fn regression_mount_entry_escape_overflow() {
    for line in ["\\777 0 0", "\\400 /mnt none bind 0 0", "/src /mnt\\777 none bind 0 0"] {
        assert!(
            std::panic::catch_unwind(|| parse_mount_entry(line, None)).is_ok(),
            "{line:?} panics"
        );
    }
}

/// Found by `signal`: `RTMIN` takes a signed offset, so `RTMIN-34` is
/// signal 0 and `RTMIN-5` a standard signal (LXC takes only `RTMIN+N`
/// and `RTMAX-N` landing in SIGRTMIN..=SIGRTMAX), and `RTMIN+2147483647`
/// overflows an i32 (a panic in a debug build, a negative signal in a
/// release build).
#[test]
fn regression_signal_rtmin_offset() {
    for s in [
        "RTMIN-34",
        "SIGRTMIN-5",
        "RTMIN+-1",
        "RTMIN+2147483647",
        "SIGRTMIN+2147483647",
    ] {
        let r = std::panic::catch_unwind(|| parse_signal(s));
        assert!(r.is_ok(), "{s:?} panics");
        if let Ok(Ok(n)) = r {
            assert!((libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n), "{s:?} -> {n}");
        }
    }
}

/// Found by reading profiles as the config reader reads its files: a
/// `lxc.seccomp.profile` that is a fifo blocks `Filter::from_config` for
/// ever (`std::fs::read`), and one that is `/dev/zero` is read into memory
/// without end. Expected: an error for anything but a regular file of a
/// bounded size, as `Config::load` does.
#[test]
fn regression_seccomp_profile_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("profile.seccomp");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let cfg = Config::parse(&format!(
        "lxc.seccomp.profile = {}\nlxc.seccomp.allow_nesting = 1\n",
        fifo.display()
    ))
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Filter::from_config(&cfg).is_err());
    });
    let r = rx.recv_timeout(std::time::Duration::from_secs(5));
    if r.is_err() {
        // Unblock the reader before failing.
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    }
    assert_eq!(r.ok(), Some(true), "a fifo profile blocks or is accepted");
}
