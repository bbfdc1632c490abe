//! What the runtime needs from an LXC config, checked before anything is made.

use strata_core::config::Config;
use strata_core::{err, Result};

/// Network of the container (`lxc.net.0.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net {
    /// `none`: the host's network namespace, as LXC.
    Host,
    /// `empty` (or nothing configured): a new namespace with only `lo`.
    Empty,
    /// `veth` attached to the bridge `link`.
    Veth {
        link: String,
        name: String,
        pair: Option<String>,
        up: bool,
        hwaddr: Option<String>,
    },
}

/// How a missing mount target is made (`create=dir|file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Dir,
    File,
}

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

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub hostname: String,
    pub net: Net,
    pub mounts: Vec<MountEntry>,
    /// `lxc.environment`, resolved.
    pub env: Vec<(String, String)>,
    /// `lxc.init.cmd` split, or `/sbin/init`.
    pub init: Vec<String>,
    pub halt_signal: i32,
    pub ephemeral: bool,
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
        let halt_signal = match cfg.get("lxc.signal.halt") {
            Some(s) => parse_signal(s)?,
            None => libc::SIGPWR,
        };
        let ephemeral = cfg.get("lxc.ephemeral").is_some_and(|v| v.trim() == "1");
        Ok(RunConfig {
            hostname,
            net: parse_net(cfg)?,
            mounts,
            env,
            init,
            halt_signal,
            ephemeral,
        })
    }
}

fn parse_net(cfg: &Config) -> Result<Net> {
    const OP: &str = "read network config";
    let Some(ty) = cfg.get("lxc.net.0.type") else {
        return Ok(Net::Empty);
    };
    for (k, v) in cfg.entries() {
        if let Some(rest) = k.strip_prefix("lxc.net.") {
            if rest.split('.').next().is_some_and(|i| i != "0") && rest.ends_with(".type") && v != "empty" {
                return Err(err!(Unsupported, OP, "only one network (lxc.net.0) is supported"));
            }
        }
    }
    match ty.trim() {
        "none" => Ok(Net::Host),
        "empty" | "" => Ok(Net::Empty),
        "veth" => {
            let link = cfg.get("lxc.net.0.link").filter(|l| !l.is_empty()).ok_or_else(|| {
                err!(
                    InvalidConfig,
                    OP,
                    "lxc.net.0.type = veth needs lxc.net.0.link (a bridge)"
                )
            })?;
            Ok(Net::Veth {
                link: link.to_string(),
                name: cfg.get("lxc.net.0.name").unwrap_or("eth0").to_string(),
                pair: cfg.get("lxc.net.0.veth.pair").map(str::to_string),
                up: cfg.get("lxc.net.0.flags").is_some_and(|f| f.trim() == "up"),
                hwaddr: cfg
                    .get("lxc.net.0.hwaddr")
                    .filter(|h| !h.contains('x'))
                    .map(str::to_string),
            })
        }
        t => Err(err!(
            Unsupported,
            OP,
            "network type {t:?} is not supported (none, empty, veth)"
        )),
    }
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
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('+').parse().map_err(|_| bad())?
        };
        let n = libc::SIGRTMIN() + off;
        return if n <= libc::SIGRTMAX() { Ok(n) } else { Err(bad()) };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('-').parse().map_err(|_| bad())?
        };
        let n = libc::SIGRTMAX() - off;
        return if n >= libc::SIGRTMIN() { Ok(n) } else { Err(bad()) };
    }
    let sig: nix::sys::signal::Signal = format!("SIG{name}").parse().map_err(|_| bad())?;
    Ok(sig as i32)
}

/// fstab escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    let source = unescape(f[0]);
    let mut target = unescape(f[1]);
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
    fn network_types() {
        let c = Config::parse("lxc.net.0.type = none\n").unwrap();
        assert_eq!(RunConfig::from_config("c", &c, None).unwrap().net, Net::Host);
        let c = Config::parse("lxc.net.0.type = macvlan\n").unwrap();
        assert!(RunConfig::from_config("c", &c, None).is_err());
        let c = Config::parse("lxc.net.0.type = veth\nlxc.net.0.link = br0\nlxc.net.0.flags = up\n").unwrap();
        assert!(matches!(
            RunConfig::from_config("c", &c, None).unwrap().net,
            Net::Veth { up: true, .. }
        ));
        let c = Config::parse("lxc.uts.name = h\nlxc.signal.halt = SIGTERM\nlxc.ephemeral = 1\n").unwrap();
        let rc = RunConfig::from_config("c", &c, None).unwrap();
        assert_eq!(
            (rc.hostname.as_str(), rc.halt_signal, rc.ephemeral),
            ("h", libc::SIGTERM, true)
        );
    }
}
