//! The host tools that need no container: lxc-config, lxc-checkconfig and
//! lxc-update-config, side by side with Debian's LXC 5 where it is
//! installed (same lxc.conf, same kernel config, same input file).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn strata() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strata"))
}

/// A scratch dir with the binary linked under LXC's names.
struct Scratch {
    tmp: tempfile::TempDir,
    bin: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let tmp = tempfile::Builder::new()
            .prefix("strata-host-tools-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tools = [
            "lxc-config",
            "lxc-checkconfig",
            "lxc-update-config",
            "lxc-ls",
            "lxc-start",
        ];
        strata_testkit::link_tools(&strata(), &bin, tools);
        Scratch { tmp, bin }
    }

    fn tool(&self, t: &str) -> PathBuf {
        self.bin.join(t)
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn lxc(tool: &str) -> Option<PathBuf> {
    let p = Path::new("/usr/bin").join(tool);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("note: {tool} of LXC is not installed; strata checked against the expected values alone");
        None
    }
}

/// Run `prog args` in a private mount namespace where `etc` is mounted
/// over /etc/lxc: both LXC and strata then read `etc/lxc.conf` as root's
/// lxc.conf, and the host's /etc/lxc is not touched.
fn with_etc(etc: &Path, prog: &Path, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$1\" /etc/lxc && shift && exec \"$@\"")
        .arg("sh")
        .arg(etc)
        .arg(prog)
        .args(args)
        .env_remove("LXC_GLOBAL_CONF")
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, i32) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

#[test]
fn config_items_as_lxc_reads_lxc_conf() {
    if !root() {
        eprintln!("skipped: needs root (a private mount namespace over /etc/lxc)");
        return;
    }
    let s = Scratch::new();
    let etc = s.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let lxc_config = lxc("lxc-config");
    let args = [
        "-l",
        "lxc.lxcpath",
        "lxc.default_config",
        "lxc.bdev.lvm.vg",
        "lxc.bdev.lvm.thin_pool",
        "lxc.bdev.zfs.root",
        "lxc.cgroup.use",
        "lxc.cgroup.pattern",
        "lxc.bdev",
        "lxc.cg",
    ];
    // No lxc.conf: LXC's defaults for root.
    let want_default = [
        ("lxc.lxcpath", "/var/lib/lxc\n"),
        ("lxc.default_config", "/etc/lxc/default.conf\n"),
        ("lxc.bdev.lvm.vg", "lxc\n"),
        ("lxc.bdev.zfs.root", "lxc\n"),
        ("lxc.cgroup.use", "lxc.cgroup.use is not set.\n"),
    ];
    for (k, v) in want_default {
        assert_eq!(
            text(&with_etc(&etc, &s.tool("lxc-config"), &[k])),
            (v.to_string(), 0),
            "{k}"
        );
    }
    // The first line of a key wins; values are kept as written; an empty
    // value is a value.
    std::fs::write(
        etc.join("lxc.conf"),
        "# a comment\n\n  lxc.lxcpath   =   /srv/lxc\nlxc.lxcpath = /second\n\
         lxc.lxcpathx = /nope\n\tlxc.bdev.lvm.vg\t=\tvg2\nlxc.bdev.lvm.thin_pool =\n\
         lxc.bdev.zfs.root=tank/lxc\nlxc.cgroup.use = memory,cpu\nlxc.cgroup.pattern = \"lxc/%n\"\n\
         lxc.default_config = /etc/lxc/other.conf\n",
    )
    .unwrap();
    let want = [
        ("lxc.lxcpath", "/srv/lxc\n"),
        ("lxc.bdev.lvm.vg", "vg2\n"),
        ("lxc.bdev.lvm.thin_pool", "\n"),
        ("lxc.bdev.zfs.root", "tank/lxc\n"),
        ("lxc.cgroup.use", "memory,cpu\n"),
        ("lxc.cgroup.pattern", "\"lxc/%n\"\n"),
        ("lxc.default_config", "/etc/lxc/other.conf\n"),
        // An abbreviation is the first item it starts.
        ("lxc.bdev", "vg2\n"),
    ];
    for (k, v) in want {
        assert_eq!(
            text(&with_etc(&etc, &s.tool("lxc-config"), &[k])),
            (v.to_string(), 0),
            "{k}"
        );
    }
    let list = text(&with_etc(&etc, &s.tool("lxc-config"), &["-l"])).0;
    assert_eq!(list.lines().count(), 7, "{list}");
    if let Some(l) = &lxc_config {
        for a in args {
            assert_eq!(
                text(&with_etc(&etc, &s.tool("lxc-config"), &[a])),
                text(&with_etc(&etc, l, &[a])),
                "lxc-config {a}"
            );
        }
    }
    // A line that is not KEY = VALUE, which LXC skips: one line naming it,
    // exit 1 (a typo must not send containers elsewhere unseen).
    let good = std::fs::read_to_string(etc.join("lxc.conf")).unwrap();
    std::fs::write(etc.join("lxc.conf"), format!("{good}not a config line\n")).unwrap();
    let o = with_etc(&etc, &s.tool("lxc-config"), &["lxc.lxcpath"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not a config line") && err.trim().lines().count() == 1,
        "{err}"
    );
    std::fs::write(etc.join("lxc.conf"), good).unwrap();
    // An unknown item: one line naming it, exit 1.
    let o = with_etc(&etc, &s.tool("lxc-config"), &["lxc.foo"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("Unknown configuration item: lxc.foo"), "{err}");
    if let Some(l) = &lxc_config {
        assert_eq!(with_etc(&etc, l, &["lxc.foo"]).status.code(), Some(1));
    }
    // The usage, exit 0, as LXC.
    for a in [&[][..], &["-h"], &["--help"]] {
        let (out, code) = text(&with_etc(&etc, &s.tool("lxc-config"), a));
        assert_eq!(code, 0);
        let me = s.tool("lxc-config").display().to_string();
        let want = format!(
            "Usage: {me} -l: list all available configuration items\n       {me} item: print configuration item\n"
        );
        assert_eq!(out, want);
        if let Some(l) = &lxc_config {
            let theirs = text(&with_etc(&etc, l, a)).0;
            assert_eq!(theirs.replace(&l.display().to_string(), &me), want);
        }
    }
    // strata's tools use the lxcpath lxc-config shows: the first line's.
    let first = s.path().join("first");
    let second = s.path().join("second");
    for (dir, name) in [(&first, "in-first"), (&second, "in-second")] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("config"), "lxc.uts.name = x\n").unwrap();
    }
    std::fs::write(
        etc.join("lxc.conf"),
        format!(
            "lxc.lxcpath = {}\nlxc.lxcpath = {}\n",
            first.display(),
            second.display()
        ),
    )
    .unwrap();
    let shown = text(&with_etc(&etc, &s.tool("lxc-config"), &["lxc.lxcpath"])).0;
    assert_eq!(shown.trim_end(), first.display().to_string());
    let ls = text(&with_etc(&etc, &s.tool("lxc-ls"), &["-1"])).0;
    assert_eq!(ls, "in-first\n");
    if let Some(l) = &lxc_config {
        assert_eq!(text(&with_etc(&etc, l, &["lxc.lxcpath"])).0, shown);
    }
}

#[test]
fn config_defaults_of_a_user() {
    if !root() {
        eprintln!("skipped: needs root (it switches to the test user)");
        return;
    }
    let Some(u) = nix::unistd::User::from_name("stratatest").ok().flatten() else {
        eprintln!("skipped: no user stratatest (run scripts/setup-test-user)");
        return;
    };
    let s = Scratch::new();
    // The binary must be reachable by the user.
    let exe = PathBuf::from("/var/tmp").join(format!("strata-host-tools-user-{}", std::process::id()));
    std::fs::create_dir(&exe).unwrap();
    let _cleanup = RemoveDir(exe.clone());
    std::fs::copy(strata(), exe.join("strata")).unwrap();
    std::os::unix::fs::symlink(exe.join("strata"), exe.join("lxc-config")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |prog: &Path, k: &str| {
        let o = Command::new("setpriv")
            .arg(format!("--reuid={}", u.uid))
            .arg(format!("--regid={}", u.gid))
            .arg("--init-groups")
            .args(["env", "-i"])
            .arg(format!("HOME={}", u.dir.display()))
            .arg(prog)
            .arg(k)
            .current_dir("/")
            .output()
            .unwrap();
        text(&o)
    };
    let _ = s;
    let home = u.dir.display().to_string();
    assert_eq!(
        run(&exe.join("lxc-config"), "lxc.lxcpath"),
        (format!("{home}/.local/share/lxc\n"), 0)
    );
    assert_eq!(
        run(&exe.join("lxc-config"), "lxc.default_config"),
        (format!("{home}/.config/lxc/default.conf\n"), 0)
    );
    if let Some(l) = lxc("lxc-config") {
        for k in [
            "lxc.lxcpath",
            "lxc.default_config",
            "lxc.bdev.lvm.vg",
            "lxc.cgroup.pattern",
        ] {
            assert_eq!(run(&exe.join("lxc-config"), k), run(&l, k), "{k}");
        }
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An LXC 2.x config as LXC's templates wrote it, with the keys LXC's
/// script renames, drops and numbers.
const LEGACY: &str = "# Template used to create this container: /usr/share/lxc/templates/lxc-ubuntu
# For additional config options, please look at lxc.container.conf(5)

# Uncomment the following line to support nesting containers:
#lxc.include = /usr/share/lxc/config/nesting.conf

# Container specific configuration
lxc.rootfs = /var/lib/lxc/u1/rootfs
lxc.rootfs.backend = dir
lxc.utsname = u1
lxc.arch = amd64
lxc.id_map = u 0 100000 65536
lxc.id_map = g 0 100000 65536
lxc.aa_profile = lxc-container-default-with-nesting
#lxc.aa_allow_incomplete = 1
lxc.tty = 4
lxc.pts = 1024
lxc.devttydir = lxc
lxc.haltsignal = SIGPWR
lxc.loglevel = 1
lxc.logfile = /var/log/lxc/u1.log
lxc.mount = /var/lib/lxc/u1/fstab
lxc.mount.entry = proc proc proc nodev,noexec,nosuid 0 0
lxc.console = none
lxc.seccomp = /usr/share/lxc/config/common.seccomp
lxc.init_cmd = /sbin/init
lxc.pivotdir = lxc_putold
lxc.kmsg = 0
lxc.start.auto = 1

# Network configuration
lxc.network.type = veth
lxc.network.link = lxcbr0
lxc.network.flags = up
lxc.network.hwaddr = 00:16:3e:8d:4c:0f
lxc.network.ipv4 = 10.0.3.5/24
lxc.network.ipv4.gateway = auto

lxc.network.type = veth
lxc.network.link= br1
lxc.network.name=eth1
lxc.network.ipv6 = fe80::2/64
";

fn update(tool: &Path, file: &Path) -> Output {
    Command::new(tool).arg("-c").arg(file).output().unwrap()
}

/// Every file in `dir` with its content and mode.
fn files(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
                md.mode(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn update_config_as_lxc_converts() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s = Scratch::new();
    let dir = s.path().join("c");
    std::fs::create_dir(&dir).unwrap();
    let f = dir.join("config");
    std::fs::write(&f, LEGACY).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = update(&s.tool("lxc-update-config"), &f);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b"");
    let new = std::fs::read_to_string(&f).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("config.backup")).unwrap(), LEGACY);
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o640);
    for line in [
        "lxc.rootfs.path = dir:/var/lib/lxc/u1/rootfs\n",
        "lxc.uts.name = u1\n",
        "#lxc.apparmor.allow_incomplete = 1\n",
        "lxc.mount.fstab = /var/lib/lxc/u1/fstab\n",
        "lxc.net.0.ipv4.address = 10.0.3.5/24\n",
        "lxc.net.0.ipv4.gateway = auto\n",
        "lxc.net.1.link= br1\n",
        "lxc.net.1.ipv6.address = fe80::2/64\n",
    ] {
        assert!(new.contains(line), "{line:?} not in:\n{new}");
    }
    for gone in [
        "lxc.pivotdir",
        "lxc.kmsg",
        "lxc.rootfs.backend",
        "lxc.network",
        "lxc.utsname",
    ] {
        assert!(!new.contains(gone), "{gone} left in:\n{new}");
    }
    // Comments and blank lines stay where they were.
    assert_eq!(new.lines().filter(|l| l.starts_with("# ")).count(), 5);
    // Every key of the result is one LXC 5 reads: strata's lxc-start check agrees.
    for l in new.lines().filter(|l| l.starts_with("lxc.")) {
        let k = l.split('=').next().unwrap().trim();
        assert!(strata_core::config_keys::key_known(k), "{k}");
    }
    // Again: nothing left to convert, the file as it was.
    assert!(update(&s.tool("lxc-update-config"), &f).status.success());
    assert_eq!(std::fs::read_to_string(&f).unwrap(), new);
    assert_eq!(std::fs::read_to_string(dir.join("config.backup")).unwrap(), new);
    // LXC's script on the same input writes the same file.
    if lxc("lxc-update-config").is_some() {
        let g = s.path().join("lxc-config");
        std::fs::write(&g, LEGACY).unwrap();
        let o = update(Path::new("/usr/bin/lxc-update-config"), &g);
        assert!(o.status.success());
        assert_eq!(std::fs::read_to_string(&g).unwrap(), new);
        assert_eq!(
            std::fs::read_to_string(s.path().join("lxc-config.backup")).unwrap(),
            LEGACY
        );
    }
}

#[test]
fn update_config_writes_keys_lxc5_reads_where_lxcs_script_does_not() {
    let s = Scratch::new();
    let f = s.path().join("config");
    let input = "lxc.rootfs = /dev/vg0/c1\nlxc.rootfs.backend = lvm\nlxc.network.0.type = veth\n\
                 lxc.network.0.ipv4 = 10.0.3.7/24\nlxc.limit.nofile = 1024\n";
    std::fs::write(&f, input).unwrap();
    assert!(update(&s.tool("lxc-update-config"), &f).status.success());
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "lxc.rootfs.path = lvm:/dev/vg0/c1\nlxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.0.3.7/24\n\
         lxc.prlimit.nofile = 1024\n"
    );
    if lxc("lxc-update-config").is_some() {
        // LXC's script leaves keys that LXC 5 itself refuses.
        let g = s.path().join("lxc-config");
        std::fs::write(&g, input).unwrap();
        assert!(update(Path::new("/usr/bin/lxc-update-config"), &g).status.success());
        let theirs = std::fs::read_to_string(&g).unwrap();
        let refused: Vec<&str> = theirs
            .lines()
            .map(|l| l.split('=').next().unwrap().trim())
            .filter(|k| !strata_core::config_keys::key_known(k))
            .collect();
        assert_eq!(refused, ["lxc.net.0.ipv4", "lxc.limit.nofile"], "{theirs}");
    }
}

#[test]
fn update_config_refuses_what_it_cannot_convert() {
    let s = Scratch::new();
    let tool = s.tool("lxc-update-config");
    for (input, named) in [
        (
            "lxc.utsname = a\nlxc.network.flags = up\nlxc.network.type = veth\n",
            "lxc.network.flags",
        ),
        ("lxc.utsname = a\nlxc.bogus = 1\n", "lxc.bogus"),
        ("lxc.utsname = a\nthis is not a config line\n", "line 2"),
    ] {
        let dir = s.path().join("refuse");
        std::fs::create_dir(&dir).unwrap();
        let f = dir.join("config");
        std::fs::write(&f, input).unwrap();
        let before = files(&dir);
        let o = update(&tool, &f);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{input:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("lxc-update-config: ") && err.contains(named), "{err}");
        assert_eq!(files(&dir), before, "{input:?}: the disk changed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // A file that is not there: one line, and no backup made.
    let o = update(&tool, &s.path().join("nosuch"));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
    assert!(!s.path().join("nosuch.backup").exists());
    // No file given: the usage, exit 0, as LXC's script.
    let o = Command::new(&tool).output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("-c|--config"));
}

fn checkconfig(tool: &Path, config: Option<&Path>) -> (String, String, i32) {
    let mut c = Command::new(tool);
    if let Some(p) = config {
        c.env("CONFIG", p);
    } else {
        c.env_remove("CONFIG");
    }
    let o = c.output().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// The output without its last `usage :` line, which names the program as called.
fn without_usage(out: &str, prog: &Path) -> String {
    let usage = format!("usage : CONFIG=/path/to/config {}\n", prog.display());
    assert!(out.contains(&usage), "{out}");
    out.replace(&usage, "")
}

#[test]
fn checkconfig_reports_the_kernel_as_lxc() {
    let s = Scratch::new();
    let tool = s.tool("lxc-checkconfig");
    // A 4.9 kernel's config without cpusets, veth and namespaces: LXC's
    // version-dependent lines and its states.
    let k = s.path().join("config-4.9");
    std::fs::write(
        &k,
        "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 4.9.120 Kernel Configuration\n#\n\
         CONFIG_SMP=y\nCONFIG_UTS_NS=y\nCONFIG_IPC_NS=y\nCONFIG_PID_NS=y\nCONFIG_NET_NS=y\n\
         # CONFIG_USER_NS is not set\nCONFIG_CGROUPS=y\nCONFIG_CGROUP_DEVICE=y\nCONFIG_MEMCG=y\n\
         CONFIG_MACVLAN=m\nCONFIG_BRIDGE=m\nCONFIG_NF_NAT_IPV4=m\nCONFIG_FUSE_FS=y\nCONFIG_EPOLL=y\n",
    )
    .unwrap();
    let (out, err, code) = checkconfig(&tool, Some(&k));
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    for line in [
        "\n--- Namespaces ---\nNamespaces: required\nUtsname namespace: enabled\n",
        "User namespace: missing\nNetwork namespace: enabled\n\n--- Control groups ---\nCgroups: enabled\n",
        "Cgroup device: enabled\nCgroup sched: missing\nCgroup cpu account: missing\nCgroup memory controller: enabled\n",
        // No cpuset: the script's line loses its blank line.
        "Cgroup cpuset: missing\n--- Misc ---\nVeth pair device: missing\n",
        "CONFIG_NF_NAT_IPV4: enabled",
        "FUSE (for use with lxcfs): enabled",
        "\n--- Checkpoint/Restore ---\ncheckpoint restore: missing\n",
        "CONFIG_EPOLL: enabled\n",
        "File capabilities: enabled\n",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    // The cgroup mounts of this host, as /proc/self/mounts has them.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f[2] == "cgroup" || f[2] == "cgroup2" {
            assert!(out.contains(&format!(" - {}\n", f[1])), "{} not listed:\n{out}", f[1]);
        }
    }
    // A gzip'd config reads the same.
    let gz = s.path().join("config.gz");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", k.display(), gz.display()))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(checkconfig(&tool, Some(&gz)).0, out);
    // No config anywhere: one line, exit 1, nothing on stdout but the version.
    let (out2, err2, code2) = checkconfig(&tool, Some(&s.path().join("nosuch")));
    assert_eq!(code2, 1);
    assert_eq!(err2.lines().count(), 1, "{err2}");
    assert!(err2.contains("unable to retrieve kernel configuration"), "{err2}");
    assert!(!out2.contains("---"), "{out2}");
    // Side by side with LXC's script: this kernel's config and the 4.9 one.
    if let Some(l) = lxc("lxc-checkconfig") {
        let mut configs = vec![Some(k.clone()), Some(gz.clone())];
        if Path::new("/proc/config.gz").exists() || Path::new("/boot").read_dir().is_ok() {
            configs.push(None);
        }
        for c in configs {
            let ours = checkconfig(&tool, c.as_deref());
            let theirs = checkconfig(&l, c.as_deref());
            assert_eq!(ours.2, theirs.2, "{c:?}");
            if ours.2 == 0 {
                assert_eq!(without_usage(&ours.0, &tool), without_usage(&theirs.0, &l), "{c:?}");
            }
        }
    }
}
