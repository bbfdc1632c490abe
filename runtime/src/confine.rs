//! What init's process is confined by before it execs, from the config:
//! capabilities (`lxc.cap.drop`/`lxc.cap.keep`), `lxc.no_new_privs`,
//! resource limits (`lxc.prlimit.*`), sysctls (`lxc.sysctl.*`), init's ids
//! and working dir (`lxc.init.uid/gid/cwd`) and the LSM labels
//! (`lxc.apparmor.profile`, `lxc.selinux.context`).
//!
//! Everything is parsed and checked in the monitor, before anything is made,
//! so that a bad value is one line and nothing to undo; the child only makes
//! system calls.

use caps::{CapSet, Capability};
use std::str::FromStr;
use strata_core::config::Config;
use strata_core::{err, Error, Result};

const OP: &str = "read confinement config";

/// `lxc.cap.drop` or `lxc.cap.keep` (LXC refuses both at once).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CapRule {
    /// Neither key: the bounding set is left as it is.
    #[default]
    All,
    /// Drop these from the bounding set.
    Drop(Vec<Capability>),
    /// Drop everything else (`none`: keep nothing).
    Keep(Vec<Capability>),
}

/// One `lxc.prlimit.NAME = SOFT[:HARD]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prlimit {
    pub name: String,
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

/// An LSM label to put on init at exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The file under /proc/self/attr written before exec.
    pub attr: &'static str,
    pub value: String,
}

#[derive(Debug, Clone, Default)]
pub struct Confine {
    pub caps: CapRule,
    pub no_new_privs: bool,
    pub prlimits: Vec<Prlimit>,
    /// (path under /proc/sys, value)
    pub sysctls: Vec<(String, String)>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub cwd: Option<String>,
    pub labels: Vec<Label>,
    /// `lxc.arch` of a 32-bit x86: init runs with the linux32 personality.
    pub linux32: bool,
}

/// Whether an architecture name (`lxc.arch`, `lxc-attach -a`) asks for
/// the linux32 personality; `Err` names one this x86_64 host does not run.
pub fn arch_is_linux32(a: &str) -> std::result::Result<bool, String> {
    match a.trim() {
        "x86_64" | "amd64" | "linux64" => Ok(false),
        "i386" | "i486" | "i586" | "i686" | "x86" | "linux32" => Ok(true),
        a => Err(format!("{a}: not an architecture this x86_64 host runs")),
    }
}

/// `sys_admin`, `CAP_SYS_ADMIN`, `21`.
pub fn parse_cap(s: &str) -> Result<Capability> {
    let up = s.trim().to_ascii_uppercase();
    let name = if up.starts_with("CAP_") {
        up.clone()
    } else {
        format!("CAP_{up}")
    };
    if let Ok(c) = Capability::from_str(&name) {
        return Ok(c);
    }
    if let Ok(n) = s.trim().parse::<u8>() {
        if let Some(c) = caps::all().into_iter().find(|c| c.index() == n) {
            return Ok(c);
        }
    }
    Err(err!(InvalidConfig, OP, "unknown capability {:?}", s.trim()))
}

/// The capabilities of a list value; later lines add to earlier ones and
/// an empty value clears them, as in LXC.
fn cap_list(cfg: &Config, key: &str) -> Result<Option<Vec<String>>> {
    let mut out: Option<Vec<String>> = None;
    for v in cfg.get_all(key) {
        if v.trim().is_empty() {
            out = None;
            continue;
        }
        out.get_or_insert_with(Vec::new)
            .extend(v.split_whitespace().map(str::to_string));
    }
    Ok(out)
}

fn parse_caps(cfg: &Config) -> Result<CapRule> {
    let drop = cap_list(cfg, "lxc.cap.drop")?;
    let keep = cap_list(cfg, "lxc.cap.keep")?;
    match (drop, keep) {
        (Some(_), Some(_)) => Err(err!(
            InvalidConfig,
            OP,
            "lxc.cap.drop and lxc.cap.keep are both set: use one of them, as LXC requires"
        )),
        (Some(d), None) => Ok(CapRule::Drop(
            d.iter().map(|c| parse_cap(c)).collect::<Result<Vec<_>>>()?,
        )),
        (None, Some(k)) => {
            if k.iter().any(|c| c == "none") {
                if k.len() > 1 {
                    return Err(err!(
                        InvalidConfig,
                        OP,
                        "lxc.cap.keep = none cannot be combined with other capabilities"
                    ));
                }
                return Ok(CapRule::Keep(Vec::new()));
            }
            Ok(CapRule::Keep(
                k.iter().map(|c| parse_cap(c)).collect::<Result<Vec<_>>>()?,
            ))
        }
        (None, None) => Ok(CapRule::All),
    }
}

const RLIMITS: &[(&str, libc::__rlimit_resource_t)] = &[
    ("as", libc::RLIMIT_AS),
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
];

fn parse_prlimit(key: &str, name: &str, value: &str) -> Result<Prlimit> {
    let resource = RLIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, r)| *r as i32)
        .ok_or_else(|| err!(InvalidConfig, OP, "{key}: unknown resource limit {name:?}"))?;
    let one = |s: &str| -> Result<u64> {
        match s.trim() {
            "unlimited" => Ok(libc::RLIM_INFINITY),
            n => n
                .parse::<u64>()
                .map_err(|_| err!(InvalidConfig, OP, "{key} = {value}: not a number or 'unlimited'")),
        }
    };
    let (soft, hard) = match value.split_once(':') {
        Some((s, h)) => (one(s)?, one(h)?),
        None => {
            let v = one(value)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(err!(
            InvalidConfig,
            OP,
            "{key} = {value}: the soft limit is above the hard one"
        ));
    }
    Ok(Prlimit {
        name: name.to_string(),
        resource,
        soft,
        hard,
    })
}

fn parse_id(cfg: &Config, key: &str) -> Result<Option<u32>> {
    match cfg.get(key).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<u32>()
            .map(Some)
            .map_err(|_| err!(InvalidConfig, OP, "{key} = {v}: not a numeric id")),
    }
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Whether AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    read_trim("/sys/module/apparmor/parameters/enabled").is_some_and(|v| v == "Y")
        && std::path::Path::new("/sys/kernel/security/apparmor").exists()
}

/// Whether SELinux is enabled on this host.
pub fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

fn parse_labels(cfg: &Config) -> Result<Vec<Label>> {
    let mut out = Vec::new();
    if let Some(p) = cfg.get("lxc.apparmor.profile").map(str::trim).filter(|p| !p.is_empty()) {
        let aa = apparmor_enabled();
        match p {
            "unconfined" => {}
            "generated" if !aa => {}
            "generated" => {
                return Err(err!(
                    Unsupported,
                    OP,
                    "lxc.apparmor.profile = generated: strata does not generate AppArmor profiles; name a loaded profile or use unconfined"
                ))
            }
            _ if !aa => {
                return Err(err!(
                    Unsupported,
                    OP,
                    "lxc.apparmor.profile = {p}: AppArmor is not enabled on this host (use unconfined)"
                ))
            }
            _ => out.push(Label {
                attr: "/proc/self/attr/apparmor/exec",
                value: format!("exec {p}"),
            }),
        }
    }
    for (key, attr) in [
        ("lxc.selinux.context", "/proc/self/attr/exec"),
        ("lxc.selinux.context.keyring", "/proc/self/attr/keycreate"),
    ] {
        if let Some(c) = cfg.get(key).map(str::trim).filter(|p| !p.is_empty()) {
            if c == "unconfined" {
                continue;
            }
            if !selinux_enabled() {
                return Err(err!(
                    Unsupported,
                    OP,
                    "{key} = {c}: SELinux is not enabled on this host (use unconfined)"
                ));
            }
            out.push(Label {
                attr,
                value: c.to_string(),
            });
        }
    }
    Ok(out)
}

impl Confine {
    pub fn from_config(cfg: &Config) -> Result<Confine> {
        let mut prlimits = Vec::new();
        let mut sysctls: Vec<(String, String)> = Vec::new();
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (k, v) in cfg.entries() {
            if let Some(name) = k.strip_prefix("lxc.prlimit.") {
                // The last line of a key wins; an empty value clears it.
                let new = (!v.trim().is_empty()).then(|| parse_prlimit(&k, name, v)).transpose()?;
                match (prlimits.iter().position(|p: &Prlimit| p.name == name), new) {
                    (Some(i), Some(p)) => prlimits[i] = p,
                    (Some(i), None) => {
                        prlimits.remove(i);
                    }
                    (None, Some(p)) => prlimits.push(p),
                    (None, None) => {}
                }
            } else if let Some(name) = k.strip_prefix("lxc.sysctl.") {
                if name.is_empty() || name.split('.').any(|c| c.is_empty() || c == "..") || name.contains('/') {
                    return Err(err!(InvalidConfig, OP, "{k}: not a sysctl name"));
                }
                let path = name.replace('.', "/");
                // The last line of a key wins (an index by path keeps this linear).
                match (seen.get(&path).copied(), v.trim()) {
                    (Some(i), "") => sysctls[i].1.clear(),
                    (Some(i), val) => sysctls[i].1 = val.to_string(),
                    (None, "") => {}
                    (None, val) => {
                        seen.insert(path.clone(), sysctls.len());
                        sysctls.push((path, val.to_string()));
                    }
                }
            }
        }
        sysctls.retain(|(_, v)| !v.is_empty());
        let no_new_privs = match cfg.get("lxc.no_new_privs").map(str::trim) {
            None | Some("") | Some("0") => false,
            Some("1") => true,
            Some(v) => return Err(err!(InvalidConfig, OP, "lxc.no_new_privs = {v}: expected 0 or 1")),
        };
        let cwd = cfg.get("lxc.init.cwd").map(str::trim).filter(|c| !c.is_empty());
        if let Some(c) = cwd {
            if !c.starts_with('/') {
                return Err(err!(InvalidConfig, OP, "lxc.init.cwd = {c}: must be an absolute path"));
            }
        }
        let linux32 = match cfg.get("lxc.arch").map(str::trim) {
            None | Some("") => false,
            Some(a) => arch_is_linux32(a).map_err(|e| err!(Unsupported, OP, "lxc.arch = {e}"))?,
        };
        Ok(Confine {
            linux32,
            caps: parse_caps(cfg)?,
            no_new_privs,
            prlimits,
            sysctls,
            uid: parse_id(cfg, "lxc.init.uid")?,
            gid: parse_id(cfg, "lxc.init.gid")?,
            cwd: cwd.map(str::to_string),
            labels: parse_labels(cfg)?,
        })
    }

    /// Whether init keeps `cap` in its bounding set.
    pub fn keeps(&self, cap: Capability) -> bool {
        match &self.caps {
            CapRule::All => true,
            CapRule::Drop(d) => !d.contains(&cap),
            CapRule::Keep(k) => k.contains(&cap),
        }
    }

    /// In init, before pivot_root (its namespaces, the host's /proc still
    /// visible): sysctls, as LXC writes them, and resource limits.
    pub fn early(&self) -> Result<()> {
        for (path, value) in &self.sysctls {
            let p = format!("/proc/sys/{path}");
            std::fs::write(&p, value.as_bytes())
                .map_err(|e| err!(Io, "set sysctl", "lxc.sysctl.{} = {value}: {e}", path.replace('/', ".")))?;
        }
        for l in &self.prlimits {
            let r = libc::rlimit {
                rlim_cur: l.soft,
                rlim_max: l.hard,
            };
            // SAFETY: setrlimit reads the struct we pass; the resource is one of RLIMITS.
            if unsafe { libc::setrlimit(l.resource as libc::__rlimit_resource_t, &r) } != 0 {
                return Err(err!(
                    PermissionDenied,
                    "set resource limit",
                    "lxc.prlimit.{}: {}",
                    l.name,
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(())
    }

    /// In init after pivot_root: the bounding set, the working dir and the
    /// LSM label for exec. Runs while init is still root with all its
    /// capabilities (dropping from the bounding set needs CAP_SETPCAP).
    pub fn drop_caps(&self) -> Result<()> {
        let drop: Vec<Capability> = match &self.caps {
            CapRule::All => Vec::new(),
            CapRule::Drop(d) => d.clone(),
            CapRule::Keep(k) => caps::runtime::thread_all_supported()
                .into_iter()
                .filter(|c| !k.contains(c))
                .collect(),
        };
        for c in drop {
            match caps::drop(None, CapSet::Bounding, c) {
                Ok(()) => {}
                // A capability the kernel does not know is not in the set.
                Err(_) if !caps::runtime::thread_all_supported().contains(&c) => {}
                Err(e) => return Err(err!(PermissionDenied, "drop capability", "{c}: {e}")),
            }
        }
        // Nothing rides along into init through the ambient set.
        let _ = caps::clear(None, CapSet::Ambient);
        Ok(())
    }

    /// In init, last before seccomp and exec.
    pub fn before_exec(&self) -> Result<()> {
        if let Some(c) = &self.cwd {
            std::env::set_current_dir(c).map_err(|e| err!(NotFound, "start", "lxc.init.cwd = {c}: {e}"))?;
        }
        for l in &self.labels {
            std::fs::write(l.attr, l.value.as_bytes())
                .map_err(|e| err!(PermissionDenied, "set LSM label", "{} ({}): {e}", l.value, l.attr))?;
        }
        if self.linux32 {
            const PER_LINUX32: libc::c_ulong = 0x0008;
            // SAFETY: personality takes a flag word only.
            if unsafe { libc::personality(PER_LINUX32) } < 0 {
                return Err(Error::errno("lxc.arch", "linux32", nix::errno::Errno::last()));
            }
        }
        if self.no_new_privs {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(Error::errno("set no_new_privs", "", nix::errno::Errno::last()));
            }
        }
        Ok(())
    }

    /// [`Confine::before_exec`] for `lxc-attach`: the label and
    /// no_new_privs, not init's working dir.
    pub fn before_exec_attach(&self) -> Result<()> {
        Confine {
            cwd: None,
            ..self.clone()
        }
        .before_exec()
    }

    /// In init, after seccomp: become `lxc.init.uid`/`gid` (which drops
    /// init's capabilities, as it does under LXC).
    pub fn switch_ids(&self) -> Result<()> {
        if self.uid.is_none() && self.gid.is_none() {
            return Ok(());
        }
        let gid = self.gid.unwrap_or(0);
        // SAFETY: plain system calls with integer arguments.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 && nix::errno::Errno::last() != nix::errno::Errno::EPERM {
                return Err(Error::errno("setgroups", "", nix::errno::Errno::last()));
            }
            if libc::setresgid(gid, gid, gid) != 0 {
                return Err(Error::errno("lxc.init.gid", gid.to_string(), nix::errno::Errno::last()));
            }
            if let Some(uid) = self.uid {
                if libc::setresuid(uid, uid, uid) != 0 {
                    return Err(Error::errno("lxc.init.uid", uid.to_string(), nix::errno::Errno::last()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(t: &str) -> Result<Confine> {
        Confine::from_config(&Config::parse(t).unwrap())
    }

    #[test]
    fn capability_rules() {
        let c = conf("lxc.cap.drop = mac_admin mac_override sys_time sys_module sys_rawio\n").unwrap();
        assert_eq!(
            c.caps,
            CapRule::Drop(vec![
                Capability::CAP_MAC_ADMIN,
                Capability::CAP_MAC_OVERRIDE,
                Capability::CAP_SYS_TIME,
                Capability::CAP_SYS_MODULE,
                Capability::CAP_SYS_RAWIO
            ])
        );
        assert!(!c.keeps(Capability::CAP_SYS_MODULE) && c.keeps(Capability::CAP_SYS_ADMIN));
        // An empty value clears what came before it.
        assert_eq!(
            conf("lxc.cap.drop = sys_time\nlxc.cap.drop =\n").unwrap().caps,
            CapRule::All
        );
        assert_eq!(conf("lxc.cap.keep = none\n").unwrap().caps, CapRule::Keep(vec![]));
        assert_eq!(
            conf("lxc.cap.keep = CAP_CHOWN 21\n").unwrap().caps,
            CapRule::Keep(vec![Capability::CAP_CHOWN, Capability::CAP_SYS_ADMIN])
        );
        let e = conf("lxc.cap.drop = sys_time\nlxc.cap.keep = chown\n").unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
        let e = conf("lxc.cap.drop = sys_tyme\n").unwrap_err();
        assert!(e.to_string().contains("sys_tyme"), "{e}");
    }

    #[test]
    fn limits_sysctls_ids() {
        let c = conf(
            "lxc.prlimit.nofile = 1024:4096\nlxc.prlimit.core = unlimited\nlxc.sysctl.net.ipv4.ip_forward = 1\n\
             lxc.init.uid = 1000\nlxc.init.gid = 100\nlxc.init.cwd = /tmp\nlxc.no_new_privs = 1\n",
        )
        .unwrap();
        assert_eq!((c.prlimits[0].soft, c.prlimits[0].hard), (1024, 4096));
        assert_eq!(c.prlimits[1].soft, libc::RLIM_INFINITY);
        assert_eq!(c.sysctls, vec![("net/ipv4/ip_forward".to_string(), "1".to_string())]);
        assert_eq!((c.uid, c.gid, c.cwd.as_deref()), (Some(1000), Some(100), Some("/tmp")));
        assert!(c.no_new_privs);
        for bad in [
            "lxc.prlimit.nofiles = 1\n",
            "lxc.prlimit.nofile = 10:5\n",
            "lxc.prlimit.nofile = lots\n",
            "lxc.sysctl.net..x = 1\n",
            "lxc.init.uid = root\n",
            "lxc.init.cwd = tmp\n",
            "lxc.no_new_privs = yes\n",
        ] {
            assert!(conf(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lsm_labels_on_a_host_without_them() {
        assert!(
            conf("lxc.apparmor.profile = unconfined\nlxc.selinux.context = unconfined\n")
                .unwrap()
                .labels
                .is_empty()
        );
        if !apparmor_enabled() {
            assert!(conf("lxc.apparmor.profile = generated\n").unwrap().labels.is_empty());
            let e = conf("lxc.apparmor.profile = lxc-container-default\n").unwrap_err();
            assert!(e.to_string().contains("AppArmor is not enabled"), "{e}");
        }
        if !selinux_enabled() {
            let e = conf("lxc.selinux.context = system_u:system_r:lxc_t:s0\n").unwrap_err();
            assert!(e.to_string().contains("SELinux is not enabled"), "{e}");
        }
    }
}
