//! What the runtime needs from an LXC config, checked before anything is made.

use std::path::PathBuf;
use strata_core::config::Config;
use strata_core::{err, Result};

/// Network of the container (`lxc.net.N.*`): see [`crate::net`].
pub use crate::net::{Net, Netdev};

/// How a missing mount target is made (`create=dir|file`): the system-call
/// layer makes it, so the type lives there.
pub use crate::sys::Create;

/// One `lxc.mount.entry` (fstab format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    /// Relative to the rootfs.
    pub target: String,
    pub fstype: String,
    pub flags: u64,
    pub data: String,
    pub create: Option<Create>,
    pub optional: bool,
}

impl MountEntry {
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }

    /// A bind mount of `src` at `dest` (relative to the rootfs).
    pub fn bind(src: &str, dest: &str, ro: bool) -> MountEntry {
        let is_file = std::fs::metadata(src).map(|m| !m.is_dir()).unwrap_or(false);
        MountEntry {
            source: src.to_string(),
            target: dest.trim_start_matches('/').to_string(),
            fstype: "none".into(),
            flags: libc::MS_BIND | libc::MS_REC | if ro { libc::MS_RDONLY } else { 0 },
            data: String::new(),
            create: Some(if is_file { Create::File } else { Create::Dir }),
            optional: false,
        }
    }
}

/// `proc:mixed` or `proc:rw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcMode {
    Mixed,
    Rw,
}

/// `sys:mixed`, `sys:ro` or `sys:rw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysMode {
    Mixed,
    Ro,
    Rw,
}

/// `cgroup[-full][:mixed|:ro|:rw][:force]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupAuto {
    /// `None`: no access given (rw when init keeps CAP_SYS_ADMIN, else mixed).
    pub mode: Option<SysMode>,
    pub full: bool,
    pub force: bool,
}

/// `lxc.mount.auto`: what LXC mounts without an `lxc.mount.entry`; nothing
/// without the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoMounts {
    pub proc: Option<ProcMode>,
    pub sys: Option<SysMode>,
    pub cgroup: Option<CgroupAuto>,
}

impl AutoMounts {
    pub fn parse(cfg: &Config) -> Result<AutoMounts> {
        let mut a = AutoMounts::default();
        for v in cfg.get_all("lxc.mount.auto") {
            if v.trim().is_empty() {
                a = AutoMounts::default();
            }
            for t in v.split_whitespace() {
                let bad = || {
                    err!(
                        InvalidConfig,
                        "read lxc.mount.auto",
                        "lxc.mount.auto: invalid filesystem to automount {t:?}"
                    )
                };
                let (what, rest) = t.split_once(':').unwrap_or((t, ""));
                match what {
                    "proc" => {
                        a.proc = Some(match rest {
                            "" | "mixed" => ProcMode::Mixed,
                            "rw" => ProcMode::Rw,
                            _ => return Err(bad()),
                        })
                    }
                    "sys" => {
                        a.sys = Some(match rest {
                            "" | "mixed" => SysMode::Mixed,
                            "ro" => SysMode::Ro,
                            "rw" => SysMode::Rw,
                            _ => return Err(bad()),
                        })
                    }
                    "cgroup" | "cgroup-full" => {
                        let (mode, force) = match rest {
                            "" => (None, false),
                            "force" => (None, true),
                            r => {
                                let (m, f) = r.split_once(':').unwrap_or((r, ""));
                                let m = match m {
                                    "mixed" => SysMode::Mixed,
                                    "ro" => SysMode::Ro,
                                    "rw" => SysMode::Rw,
                                    _ => return Err(bad()),
                                };
                                match f {
                                    "" => (Some(m), false),
                                    "force" => (Some(m), true),
                                    _ => return Err(bad()),
                                }
                            }
                        };
                        a.cgroup = Some(CgroupAuto {
                            mode,
                            full: what == "cgroup-full",
                            force,
                        });
                    }
                    "shmounts" => {
                        return Err(err!(
                            Unsupported,
                            "read lxc.mount.auto",
                            "lxc.mount.auto: {t}: shmounts is not supported by strata"
                        ))
                    }
                    _ => return Err(bad()),
                }
            }
        }
        Ok(a)
    }
}

/// The namespace names LXC takes, with their clone flags.
pub const NAMESPACES: &[(&str, i32)] = &[
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("ipc", libc::CLONE_NEWIPC),
    ("mnt", libc::CLONE_NEWNS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("time", libc::CLONE_NEWTIME),
    ("user", libc::CLONE_NEWUSER),
    ("uts", libc::CLONE_NEWUTS),
];

/// `lxc.namespace.clone`, `lxc.namespace.keep` and `lxc.namespace.share.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// `lxc.namespace.clone`: only these are made (None: LXC's default set).
    pub clone: Option<i32>,
    /// `lxc.namespace.keep`: these are the monitor's, not new ones.
    pub keep: i32,
    /// `lxc.namespace.share.NS = container name | pid | /proc/PID/ns/NS`.
    pub share: Vec<(String, i32, String)>,
}

impl Namespaces {
    pub fn parse(cfg: &Config) -> Result<Namespaces> {
        const OP: &str = "read namespace config";
        let flags = |key: &str, v: &str| -> Result<i32> {
            let mut f = 0;
            for t in v.split_whitespace() {
                f |= NAMESPACES
                    .iter()
                    .find(|(n, _)| *n == t)
                    .map(|(_, fl)| *fl)
                    .ok_or_else(|| err!(InvalidConfig, OP, "{key}: unknown namespace {t:?}"))?;
            }
            Ok(f)
        };
        let mut n = Namespaces::default();
        for v in cfg.get_all("lxc.namespace.clone") {
            n.clone = (!v.trim().is_empty())
                .then(|| flags("lxc.namespace.clone", v))
                .transpose()?;
        }
        for v in cfg.get_all("lxc.namespace.keep") {
            n.keep = if v.trim().is_empty() {
                0
            } else {
                flags("lxc.namespace.keep", v)?
            };
        }
        if n.clone.is_some() && n.keep != 0 {
            return Err(err!(
                InvalidConfig,
                OP,
                "lxc.namespace.clone and lxc.namespace.keep cannot both be set (as in LXC)"
            ));
        }
        for (k, v) in cfg.entries() {
            let Some(ns) = k.strip_prefix("lxc.namespace.share.") else {
                continue;
            };
            let flag = NAMESPACES
                .iter()
                .find(|(n, _)| *n == ns)
                .map(|(_, f)| *f)
                .ok_or_else(|| err!(InvalidConfig, OP, "{k}: unknown namespace {ns:?}"))?;
            n.share.retain(|(s, _, _)| s != ns);
            if v.trim().is_empty() {
                continue;
            }
            if matches!(ns, "user" | "mnt" | "time") {
                return Err(err!(
                    Unsupported,
                    OP,
                    "{k} = {v}: strata shares the net, ipc, uts, pid and cgroup namespaces only"
                ));
            }
            n.share.push((ns.to_string(), flag, v.trim().to_string()));
        }
        Ok(n)
    }

    /// Whether the container gets a new namespace of this kind, given what
    /// it would get by default.
    pub fn makes(&self, flag: i32, default: bool) -> bool {
        if self.share.iter().any(|(_, f, _)| *f == flag) || self.keep & flag != 0 {
            return false;
        }
        match self.clone {
            Some(c) => c & flag != 0,
            None => default,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub hostname: String,
    pub net: Net,
    pub mounts: Vec<MountEntry>,
    /// `lxc.environment`, resolved.
    pub env: Vec<(String, String)>,
    /// `lxc.init.cmd` split, or `/sbin/init`.
    pub init: Vec<String>,
    /// `lxc.signal.halt/reboot/stop`, recorded for lxc-stop.
    pub signals: strata_core::state::Signals,
    pub ephemeral: bool,
    pub auto: AutoMounts,
    /// `lxc.autodev` (default 1): a tmpfs /dev with the basic nodes.
    pub autodev: bool,
    pub confine: crate::confine::Confine,
    pub ns: Namespaces,
    pub hooks: crate::hooks::Hooks,
    /// `lxc.rootfs.options`: mount flags for the rootfs (applied by a
    /// remount of it just before pivot_root).
    pub rootfs_flags: u64,
    /// `lxc.console.path = none`: no console.
    pub console: bool,
    /// `lxc.console.path = DEVICE`: a host terminal the console is copied to and read from.
    pub console_peer: Option<PathBuf>,
    /// `lxc.console.size`: the most `lxc.console.logfile` holds (None: no limit).
    pub console_log_size: Option<u64>,
    /// `lxc.console.rotate`: a full log moves to FILE.1 rather than starting over.
    pub console_rotate: bool,
    /// `lxc.tty.max`, `lxc.tty.dir`, `lxc.pty.max`.
    pub tty_max: u32,
    pub tty_dir: Option<String>,
    pub pty_max: Option<u32>,
}

impl RunConfig {
    /// `rootfs_path` is where the config says the rootfs is (absolute mount
    /// targets under it are taken as relative to the rootfs).
    pub fn from_config(name: &str, cfg: &Config, rootfs_path: Option<&str>) -> Result<RunConfig> {
        let hostname = cfg.get("lxc.uts.name").unwrap_or(name).to_string();
        let mut mounts = Vec::new();
        for line in cfg.get_all("lxc.mount.entry") {
            mounts.push(parse_mount_entry(line, rootfs_path)?);
        }
        let mut env = Vec::new();
        for e in cfg.get_all("lxc.environment") {
            match e.split_once('=') {
                Some((k, v)) => env.push((k.trim().to_string(), v.trim().to_string())),
                None => {
                    if let Ok(v) = std::env::var(e.trim()) {
                        env.push((e.trim().to_string(), v));
                    }
                }
            }
        }
        let init = match cfg.get("lxc.init.cmd") {
            Some(c) if !c.trim().is_empty() => c.split_whitespace().map(str::to_string).collect(),
            _ => vec!["/sbin/init".to_string()],
        };
        let signal = |key: &str| -> Result<Option<i32>> {
            match cfg.get(key).map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => parse_signal(v)
                    .map(Some)
                    .map_err(|_| err!(InvalidConfig, "read config", "{key} = {v}: unknown signal")),
            }
        };
        let signals = strata_core::state::Signals {
            halt: signal("lxc.signal.halt")?,
            reboot: signal("lxc.signal.reboot")?,
            stop: signal("lxc.signal.stop")?,
        };
        let ephemeral = cfg.get("lxc.ephemeral").is_some_and(|v| v.trim() == "1");
        let autodev = match cfg.get("lxc.autodev").map(str::trim) {
            None | Some("") | Some("1") => true,
            Some("0") => false,
            Some(v) => return Err(err!(InvalidConfig, "read config", "lxc.autodev = {v}: expected 0 or 1")),
        };
        let num = |key: &str| -> Result<Option<u32>> {
            match cfg.get(key).map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| err!(InvalidConfig, "read config", "{key} = {v}: not a number")),
            }
        };
        let tty_dir = cfg.get("lxc.tty.dir").map(str::trim).filter(|d| !d.is_empty());
        if let Some(d) = tty_dir {
            if d.contains('/') || d == ".." || d == "." {
                return Err(err!(
                    InvalidConfig,
                    "read config",
                    "lxc.tty.dir = {d}: a single directory name under /dev"
                ));
            }
        }
        let tty_max = num("lxc.tty.max")?.unwrap_or(0);
        if tty_max > 64 {
            return Err(err!(
                InvalidConfig,
                "read config",
                "lxc.tty.max = {tty_max}: at most 64"
            ));
        }
        let (console, console_peer) = console_path(cfg.get("lxc.console.path").unwrap_or(""))?;
        let console_log_size = console_size(cfg.get("lxc.console.size").unwrap_or(""))?;
        let console_rotate = match cfg.get("lxc.console.rotate").map(str::trim) {
            None | Some("") | Some("0") => false,
            Some("1") => true,
            Some(v) => {
                return Err(err!(
                    InvalidConfig,
                    "read config",
                    "lxc.console.rotate = {v}: expected 0 or 1"
                ))
            }
        };
        if let Some(m) = cfg.get("lxc.rootfs.mount").map(str::trim).filter(|m| !m.is_empty()) {
            // LXC mounts the rootfs there inside the container's mount
            // namespace, so it must be a directory; strata mounts it in its
            // run dir instead, which no one else sees either.
            if !std::path::Path::new(m).is_dir() {
                return Err(err!(NotFound, "read config", "lxc.rootfs.mount = {m}: not a directory"));
            }
        }
        Ok(RunConfig {
            rootfs_flags: rootfs_flags(cfg)?,
            console,
            console_peer,
            console_log_size,
            console_rotate,
            ns: Namespaces::parse(cfg)?,
            hooks: crate::hooks::Hooks::from_config(cfg)?,
            tty_max,
            tty_dir: tty_dir.map(str::to_string),
            pty_max: num("lxc.pty.max")?.filter(|n| *n > 0),
            auto: AutoMounts::parse(cfg)?,
            autodev,
            confine: crate::confine::Confine::from_config(cfg)?,
            hostname,
            net: parse_net(cfg)?,
            mounts,
            env,
            init,
            signals,
            ephemeral,
        })
    }
}

fn parse_net(cfg: &Config) -> Result<Net> {
    crate::net::parse(cfg)
}

/// `SIGPWR`, `PWR`, `30`, `SIGRTMIN+3`.
pub fn parse_signal(s: &str) -> Result<i32> {
    let t = s.trim();
    let bad = || err!(InvalidConfig, "parse signal", "unknown signal {t:?}");
    if let Ok(n) = t.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let u = t.to_ascii_uppercase();
    let name = u.strip_prefix("SIG").unwrap_or(&u);
    // As LXC: RTMIN+N and RTMAX-N, landing between SIGRTMIN and SIGRTMAX.
    let offset = |rest: &str, sign: char| -> Result<i32> {
        if rest.is_empty() {
            return Ok(0);
        }
        let digits = rest.strip_prefix(sign).ok_or_else(bad)?;
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse::<i32>().map_err(|_| bad())
    };
    let rt = if let Some(rest) = name.strip_prefix("RTMIN") {
        Some(libc::SIGRTMIN().checked_add(offset(rest, '+')?))
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        Some(libc::SIGRTMAX().checked_sub(offset(rest, '-')?))
    } else {
        None
    };
    if let Some(n) = rt {
        return n
            .filter(|n| (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(n))
            .ok_or_else(bad);
    }
    let sig: nix::sys::signal::Signal = format!("SIG{name}").parse().map_err(|_| bad())?;
    Ok(sig as i32)
}

pub fn parse_mount_entry(line: &str, rootfs_path: Option<&str>) -> Result<MountEntry> {
    const OP: &str = "parse lxc.mount.entry";
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 3 {
        return Err(err!(
            InvalidConfig,
            OP,
            "{line:?}: expected SOURCE TARGET TYPE [OPTIONS]"
        ));
    }
    // fstab escapes (`\040` for a space), the same octal form as mountinfo.
    let source = strata_core::mountinfo::unescape(f[0]);
    let mut target = strata_core::mountinfo::unescape(f[1]);
    if let Some(root) = rootfs_path.map(|r| r.trim_end_matches('/')) {
        if let Some(rest) = target.strip_prefix(root).filter(|r| r.is_empty() || r.starts_with('/')) {
            target = rest.to_string();
        }
    }
    let target = target.trim_start_matches('/').to_string();
    if target.split('/').any(|c| c == "..") {
        return Err(err!(InvalidConfig, OP, "{line:?}: target may not contain '..'"));
    }
    let mut e = MountEntry {
        source,
        target,
        fstype: f[2].to_string(),
        flags: 0,
        data: String::new(),
        create: None,
        optional: false,
    };
    let mut data = Vec::new();
    for o in f.get(3).copied().unwrap_or("defaults").split(',') {
        match o {
            "" | "defaults" | "rw" => {}
            "ro" => e.flags |= libc::MS_RDONLY,
            "bind" => e.flags |= libc::MS_BIND,
            "rbind" => e.flags |= libc::MS_BIND | libc::MS_REC,
            "nosuid" => e.flags |= libc::MS_NOSUID,
            "nodev" => e.flags |= libc::MS_NODEV,
            "noexec" => e.flags |= libc::MS_NOEXEC,
            "noatime" => e.flags |= libc::MS_NOATIME,
            "nodiratime" => e.flags |= libc::MS_NODIRATIME,
            "relatime" => e.flags |= libc::MS_RELATIME,
            "strictatime" => e.flags |= libc::MS_STRICTATIME,
            "create=dir" => e.create = Some(Create::Dir),
            "create=file" => e.create = Some(Create::File),
            "optional" => e.optional = true,
            o if o.starts_with("create=") => return Err(err!(InvalidConfig, OP, "{line:?}: unknown option {o:?}")),
            o => data.push(o),
        }
    }
    e.data = data.join(",");
    Ok(e)
}

/// `lxc.rootfs.options`: the mount flags LXC takes for the rootfs.
fn rootfs_flags(cfg: &Config) -> Result<u64> {
    let mut f = 0;
    let Some(v) = cfg.get("lxc.rootfs.options") else {
        return Ok(0);
    };
    for o in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        f |= match o {
            "defaults" | "rw" => 0,
            "ro" => libc::MS_RDONLY,
            "nosuid" => libc::MS_NOSUID,
            "nodev" => libc::MS_NODEV,
            "noexec" => libc::MS_NOEXEC,
            "noatime" => libc::MS_NOATIME,
            "nodiratime" => libc::MS_NODIRATIME,
            "relatime" => libc::MS_RELATIME,
            "strictatime" => libc::MS_STRICTATIME,
            // strata maps an unshifted rootfs through an idmapped mount by itself.
            "idmap=container" => 0,
            o => {
                return Err(err!(
                    Unsupported,
                    "read config",
                    "lxc.rootfs.options: {o:?} is not supported by strata (mount flags only)"
                ))
            }
        };
    }
    Ok(f)
}

/// The keys a start honours, as LXC does: a prefix ends with '.'. Keys LXC
/// knows that are not here are refused at start, one line naming the key.
const IMPLEMENTED: &[&str] = &[
    "lxc.include",
    "lxc.net",
    "lxc.rootfs.path",
    "lxc.rootfs.backend",
    "lxc.uts.name",
    "lxc.utsname",
    "lxc.mount.entry",
    "lxc.mount.auto",
    "lxc.environment",
    "lxc.init.cmd",
    "lxc.execute.cmd",
    "lxc.init.uid",
    "lxc.init.gid",
    "lxc.init.cwd",
    "lxc.signal.halt",
    "lxc.signal.stop",
    "lxc.signal.reboot",
    "lxc.ephemeral",
    "lxc.idmap",
    "lxc.id_map",
    "lxc.hook.",
    "lxc.cap.drop",
    "lxc.cap.keep",
    "lxc.no_new_privs",
    "lxc.prlimit.",
    "lxc.sysctl.",
    "lxc.apparmor.profile",
    "lxc.apparmor.allow_incomplete",
    "lxc.apparmor.allow_nesting",
    "lxc.selinux.context",
    "lxc.selinux.context.keyring",
    "lxc.seccomp.profile",
    "lxc.seccomp.allow_nesting",
    "lxc.cgroup.",
    "lxc.cgroup2.",
    "lxc.autodev",
    "lxc.rootfs.options",
    "lxc.rootfs.mount",
    "lxc.console.path",
    "lxc.console.logfile",
    "lxc.console.size",
    "lxc.console.rotate",
    "lxc.arch",
    // Read by lxc-autostart, not by a start.
    "lxc.start.auto",
    "lxc.start.delay",
    "lxc.start.order",
    "lxc.group",
];

/// `lxc.console.path` (or `lxc-start --console`): whether the container has a
/// console, and the host terminal it is copied to, if one is named. As in
/// LXC, that must be a terminal; `none` means no console at all.
pub fn console_path(v: &str) -> Result<(bool, Option<PathBuf>)> {
    match v.trim() {
        "" | "/dev/console" => Ok((true, None)),
        "none" => Ok((false, None)),
        p if !p.starts_with('/') => Err(err!(
            InvalidConfig,
            "read config",
            "lxc.console.path = {p}: not an absolute path"
        )),
        p => Ok((true, Some(PathBuf::from(p)))),
    }
}

/// `lxc.console.size` as LXC reads it: `auto` is 128 KiB, `0` or nothing no
/// limit, else a number with an optional KB/MB/GB suffix (powers of 1024,
/// any case), at least a page.
pub fn console_size(v: &str) -> Result<Option<u64>> {
    let v = v.trim();
    if v.is_empty() || v == "0" {
        return Ok(None);
    }
    if v == "auto" {
        return Ok(Some(128 << 10));
    }
    let bad = || {
        err!(
            InvalidConfig,
            "read config",
            "lxc.console.size = {v}: a size (4096, 64KB, 1MB) or auto"
        )
    };
    let lower = v.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim_end();
    let shift = match lower[digits.len()..].trim() {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let n = n.checked_shl(shift).filter(|x| x >> shift == n).ok_or_else(bad)?;
    Ok(Some(n.max(4096)))
}

/// Keys honoured only with the value they have when LXC does nothing.
const ONLY_DEFAULT: &[(&str, &[&str])] = &[
    ("lxc.rootfs.managed", &["1"]),
    ("lxc.keyring.session", &["1"]),
    ("lxc.monitor.unshare", &["0"]),
    ("lxc.apparmor.raw", &[""]),
    // No in-memory ring buffer (only LXC's API reads it).
    ("lxc.console.buffer.size", &["0"]),
    ("lxc.tty.max", &[]),
    ("lxc.tty.dir", &[]),
    ("lxc.pty.max", &[]),
    ("lxc.namespace.clone", &[]),
    ("lxc.namespace.keep", &[]),
    ("lxc.namespace.share.net", &[]),
    ("lxc.namespace.share.ipc", &[]),
    ("lxc.namespace.share.uts", &[]),
    ("lxc.namespace.share.pid", &[]),
    ("lxc.namespace.share.cgroup", &[]),
];

/// Refuse keys LXC knows and strata's runtime does not honour, so that no
/// part of a config is dropped silently. `cfg` is the expanded config.
pub fn check_implemented(cfg: &Config) -> Result<()> {
    for (k, v) in cfg.entries() {
        let k: &str = &k;
        if !k.starts_with("lxc.") {
            continue;
        }
        if IMPLEMENTED
            .iter()
            .any(|i| k == *i || (i.ends_with('.') && k.starts_with(i)))
        {
            continue;
        }
        if let Some(rest) = k.strip_prefix("lxc.net.") {
            if net_key_ok(rest, v) {
                continue;
            }
        }
        if let Some((_, ok)) = ONLY_DEFAULT.iter().find(|(key, _)| *key == k) {
            // An empty list: the runtime handles every value of the key.
            if ok.is_empty() || ok.contains(&v.trim()) || v.trim().is_empty() {
                continue;
            }
        }
        return Err(err!(
            Unsupported,
            "start",
            "{k} = {v}: not supported by strata's runtime (refused rather than ignored)"
        ));
    }
    Ok(())
}

/// The network keys the runtime honours (see [`parse_net`]), every value.
fn net_key_ok(rest: &str, _v: &str) -> bool {
    crate::net::key_ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("SIGPWR").unwrap(), libc::SIGPWR);
        assert_eq!(parse_signal("term").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), libc::SIGRTMIN() + 3);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn mount_entries() {
        let e = parse_mount_entry("/src mnt/x none bind,ro,create=dir 0 0", None).unwrap();
        assert_eq!(e.target, "mnt/x");
        assert!(e.is_bind());
        assert_ne!(e.flags & libc::MS_RDONLY, 0);
        assert_eq!(e.create, Some(Create::Dir));
        let e = parse_mount_entry(
            "/a\\040b /var/lib/lxc/c/rootfs/opt none bind 0 0",
            Some("/var/lib/lxc/c/rootfs"),
        )
        .unwrap();
        assert_eq!((e.source.as_str(), e.target.as_str()), ("/a b", "opt"));
        let e = parse_mount_entry("tmpfs tmp tmpfs size=10m,nosuid 0 0", None).unwrap();
        assert_eq!(e.data, "size=10m");
        assert!(parse_mount_entry("/a ../../etc none bind", None).is_err());
        assert!(parse_mount_entry("/a", None).is_err());
    }

    #[test]
    fn unimplemented_keys_refused() {
        let c = |t: &str| check_implemented(&Config::parse(t).unwrap());
        c("lxc.cap.drop = sys_time\nlxc.cgroup.devices.deny = a\nlxc.net.0.type = veth\nlxc.net.0.link = br0\n")
            .unwrap();
        c("lxc.tty.max = 0\nlxc.console.path = none\nlxc.net.0.ipv4.address =\n").unwrap();
        c("lxc.net.0.ipv4.address = 10.0.0.2/24\nlxc.net.1.macvlan.mode = vepa\nlxc.net =\n").unwrap();
        for bad in [
            "lxc.monitor.unshare = 1",
            "lxc.console.buffer.size = 128k",
            "lxc.net.0.l2proxy = 1",
            "lxc.net.0.veth.mode = router",
            "lxc.time.offset.boot = 1s",
            "lxc.rootfs.managed = 0",
        ] {
            let e = c(&format!("{bad}\n")).unwrap_err();
            let key = bad.split(' ').next().unwrap();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn console_sizes() {
        assert_eq!(console_size("").unwrap(), None);
        assert_eq!(console_size("0").unwrap(), None);
        assert_eq!(console_size("auto").unwrap(), Some(128 << 10));
        assert_eq!(console_size("64KB").unwrap(), Some(64 << 10));
        assert_eq!(console_size("1mb").unwrap(), Some(1 << 20));
        assert_eq!(console_size("100").unwrap(), Some(4096));
        for bad in ["x", "1TB", "-1", "KB", "99999999999GB"] {
            assert!(console_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auto_mounts() {
        let a = |t: &str| AutoMounts::parse(&Config::parse(t).unwrap());
        assert_eq!(a("").unwrap(), AutoMounts::default());
        let m = a("lxc.mount.auto = cgroup:mixed proc:mixed sys:mixed\n").unwrap();
        assert_eq!((m.proc, m.sys), (Some(ProcMode::Mixed), Some(SysMode::Mixed)));
        assert_eq!(
            m.cgroup,
            Some(CgroupAuto {
                mode: Some(SysMode::Mixed),
                full: false,
                force: false
            })
        );
        let m = a("lxc.mount.auto = proc sys:ro\nlxc.mount.auto = cgroup-full:rw:force\n").unwrap();
        assert_eq!((m.proc, m.sys), (Some(ProcMode::Mixed), Some(SysMode::Ro)));
        assert!(m
            .cgroup
            .is_some_and(|c| c.full && c.force && c.mode == Some(SysMode::Rw)));
        assert_eq!(
            a("lxc.mount.auto = proc\nlxc.mount.auto =\n").unwrap(),
            AutoMounts::default()
        );
        for bad in ["proc:ro", "sys:mixed:force", "cgroup:rw:x", "dev", "shmounts:/a"] {
            assert!(a(&format!("lxc.mount.auto = {bad}\n")).is_err(), "{bad}");
        }
    }

    #[test]
    fn network_types() {
        let c = Config::parse("lxc.net.0.type = none\n").unwrap();
        assert_eq!(RunConfig::from_config("c", &c, None).unwrap().net, Net::Host);
        let c = Config::parse("lxc.net.0.type = macvlan\n").unwrap();
        assert!(RunConfig::from_config("c", &c, None).is_err());
        let c = Config::parse("lxc.net.0.type = veth\nlxc.net.0.link = br0\nlxc.net.0.flags = up\n").unwrap();
        let net = RunConfig::from_config("c", &c, None).unwrap().net;
        assert!(net.devices()[0].up && net.devices()[0].name.as_deref() == Some("eth0"));
        let c = Config::parse("lxc.uts.name = h\nlxc.signal.halt = SIGTERM\nlxc.signal.stop = 12\nlxc.ephemeral = 1\n")
            .unwrap();
        let rc = RunConfig::from_config("c", &c, None).unwrap();
        assert_eq!(
            (
                rc.hostname.as_str(),
                rc.signals.halt,
                rc.signals.reboot,
                rc.signals.stop,
                rc.ephemeral
            ),
            ("h", Some(libc::SIGTERM), None, Some(12), true)
        );
        let c = Config::parse("lxc.signal.reboot = SIGNOPE\n").unwrap();
        let e = RunConfig::from_config("c", &c, None).unwrap_err().to_string();
        assert!(e.contains("lxc.signal.reboot"), "{e}");
    }
}
