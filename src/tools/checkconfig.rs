//! `lxc-checkconfig`: what this kernel offers containers, in the sections
//! and lines of LXC's script (Namespaces, Control groups, Misc,
//! Checkpoint/Restore), from the kernel's build config (`$CONFIG`, else
//! /proc/config.gz, else the headers' .config or /boot/config-RELEASE) and
//! the cgroup mounts of /proc/self/mounts. On a terminal the states are in
//! LXC's colours; otherwise plain, so that the two outputs can be compared.
//!
//! LXC's quirks of shape are kept: a missing cpuset loses the blank line
//! after it, the module state (`, loaded`) is only shown when
//! /proc/modules exists, and the version-dependent lines follow the
//! version in the config's header.

use anyhow::{anyhow, Context};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(clap::Parser, Debug)]
#[command(
    about = "Check the kernel's support for containers",
    long_about = "Check the kernel's support for containers. CONFIG=/path/to/config checks another kernel's build config.",
    version
)]
pub struct Args {}

/// The kernel's build config, as text.
struct KConfig {
    text: String,
}

impl KConfig {
    /// `NAME=y`, `NAME=m` (or LXC's `NAME=|`) anywhere in a line, as the
    /// script's grep matches it.
    fn is_set(&self, name: &str) -> bool {
        let pat = format!("{name}=");
        self.text.lines().any(|l| {
            l.match_indices(&pat)
                .any(|(i, _)| matches!(l.as_bytes().get(i + pat.len()), Some(b'y' | b'm' | b'|')))
        })
    }

    /// Major and minor from the `# Linux/ARCH X.Y.Z Kernel Configuration` header.
    fn version(&self) -> Option<(u32, u32)> {
        let h = self
            .text
            .lines()
            .find(|l| l.starts_with("# Linux") && l.contains("Kernel Configuration"))?;
        h.split_whitespace().find_map(|w| {
            let mut it = w.split('.');
            let major = it.next()?;
            let minor = it.next()?;
            let patch: String = it.next()?.chars().take_while(char::is_ascii_digit).collect();
            if major.len() != 1 || patch.is_empty() || minor.is_empty() || minor.len() > 3 {
                return None;
            }
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
    }
}

/// Read `path`, decompressing it when it is gzip data (as the script's zcat).
fn read_config(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(|e| anyhow!("decompress {}: gzip: {e}", path.display()))?;
        if !out.status.success() {
            return Err(anyhow!("decompress {}: gzip failed ({})", path.display(), out.status));
        }
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Where the config is: `$CONFIG` (default /proc/config.gz), else the
/// kernel headers' or /boot's; the bool says a search was needed.
fn locate() -> anyhow::Result<(PathBuf, bool)> {
    let given = std::env::var_os("CONFIG")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/proc/config.gz"), PathBuf::from);
    if given.is_file() {
        return Ok((given, false));
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let candidates = [
        PathBuf::from(format!("/boot/config-{release}")),
        PathBuf::from(format!("/lib/modules/{release}/build/.config")),
    ];
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => Ok((p.clone(), true)),
        None => Err(anyhow!(
            "unable to retrieve kernel configuration: none at {}, {} or {} (build the kernel with IKCONFIG_PROC, install its headers, or give the path as CONFIG=<path> lxc-checkconfig)",
            given.display(),
            candidates[0].display(),
            candidates[1].display()
        )),
    }
}

/// Output with LXC's colours on a terminal.
struct Out {
    buf: String,
    color: bool,
}

impl Out {
    fn put(&mut self, s: &str) {
        self.buf.push_str(s);
    }

    fn colored(&mut self, code: &str, s: &str) {
        if self.color {
            self.buf.push_str(&format!("\x1b[{code}m{s}\x1b[0;39m"));
        } else {
            self.buf.push_str(s);
        }
    }

    /// `enabled`, or `required`/`missing`; returns whether it is set.
    fn state(&mut self, set: bool, mandatory: bool) -> bool {
        match (set, mandatory) {
            (true, _) => self.colored("1;32", "enabled"),
            (false, true) => self.colored("1;31", "required"),
            (false, false) => self.colored("1;33", "missing"),
        }
        set
    }
}

/// Mount points of filesystems of `fstype` in /proc/self/mounts, as written there.
fn mounts_of(mounts: &str, fstype: &str) -> Vec<String> {
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && !f[0].contains('#') && f[2] == fstype).then(|| f[1].to_string())
        })
        .collect()
}

/// A setuid-root helper on PATH: `None` when it is fine, else the line to print.
fn helper_check(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    match found {
        None => Some(format!("{name} is not installed\n")),
        Some(p) if p.metadata().is_ok_and(|m| m.permissions().mode() & 0o4000 == 0) => {
            Some(format!("Warning: {name} is not setuid-root\n"))
        }
        Some(_) => None,
    }
}

/// The report for `cfg`; `modules` is /proc/modules when there is one.
fn report(cfg: &KConfig, mounts: &str, modules: Option<&str>, color: bool, me: &str) -> String {
    let mut o = Out {
        buf: String::new(),
        color,
    };
    let probed = |o: &mut Out, module: &str| {
        if let Some(m) = modules {
            o.put(if m.contains(module) { ", loaded" } else { ", not loaded" });
        }
    };
    let (major, minor) = match cfg.version() {
        Some(v) => v,
        None => {
            o.put("WARNING: Unable to detect version from configuration, assuming latest\n\n");
            (100, 0)
        }
    };
    o.put("\n--- Namespaces ---\n");
    for (label, key, mandatory) in [
        ("Namespaces", "CONFIG_NAMESPACES", true),
        ("Utsname namespace", "CONFIG_UTS_NS", false),
        ("Ipc namespace", "CONFIG_IPC_NS", true),
        ("Pid namespace", "CONFIG_PID_NS", true),
        ("User namespace", "CONFIG_USER_NS", false),
    ] {
        o.put(&format!("{label}: "));
        o.state(cfg.is_set(key), mandatory);
        o.put("\n");
    }
    if cfg.is_set("CONFIG_USER_NS") {
        for h in ["newuidmap", "newgidmap"] {
            if let Some(l) = helper_check(h) {
                o.put(&l);
            }
        }
    }
    o.put("Network namespace: ");
    o.state(cfg.is_set("CONFIG_NET_NS"), false);
    o.put("\n");
    if major < 4 || (major == 4 && minor < 7) {
        o.put("Multiple /dev/pts instances: ");
        o.state(cfg.is_set("DEVPTS_MULTIPLE_INSTANCES"), false);
        o.put("\n");
    }
    o.put("\n--- Control groups ---\nCgroups: ");
    o.state(cfg.is_set("CONFIG_CGROUPS"), false);
    o.put("\nCgroup namespace: ");
    o.state(Path::new("/proc/self/ns/cgroup").is_file(), false);
    o.put("\n");
    let v1 = mounts_of(mounts, "cgroup");
    let v2 = mounts_of(mounts, "cgroup2");
    o.put("Cgroup v1 mount points: \n");
    for m in &v1 {
        o.put(&format!(" - {m}\n"));
    }
    o.put("Cgroup v2 mount points: \n");
    for m in &v2 {
        o.put(&format!(" - {m}\n"));
    }
    // A hybrid or v1 host: LXC wants v1's systemd and freezer hierarchies.
    if v2 != ["/sys/fs/cgroup"] {
        for (ctrl, label) in [("/systemd", "systemd"), ("/freezer", "freezer")] {
            if !v1.iter().any(|m| m.contains(ctrl)) {
                o.put(&format!("Cgroup v1 {label} controller: "));
                o.colored("1;31", "missing");
                o.put("\n");
            }
        }
        if v1
            .first()
            .is_some_and(|m| Path::new(m).join("cgroup.clone_children").is_file())
        {
            o.put("Cgroup v1 clone_children flag: ");
            o.colored("1;32", "enabled\n");
        }
    }
    let memcg = if major > 3 || (major == 3 && minor >= 6) {
        "CONFIG_MEMCG"
    } else {
        "CONFIG_CGROUP_MEM_RES_CTLR"
    };
    for (label, key) in [
        ("Cgroup device", "CONFIG_CGROUP_DEVICE"),
        ("Cgroup sched", "CONFIG_CGROUP_SCHED"),
        ("Cgroup cpu account", "CONFIG_CGROUP_CPUACCT"),
        ("Cgroup memory controller", memcg),
    ] {
        o.put(&format!("{label}: "));
        o.state(cfg.is_set(key), false);
        o.put("\n");
    }
    if cfg.is_set("CONFIG_SMP") {
        o.put("Cgroup cpuset: ");
        // As the script: the line's newline only when it is enabled.
        if o.state(cfg.is_set("CONFIG_CPUSETS"), false) {
            o.put("\n");
        }
    }
    o.put("\n--- Misc ---\n");
    let mut misc = vec![
        ("Veth pair device", "CONFIG_VETH", "veth"),
        ("Macvlan", "CONFIG_MACVLAN", "macvlan"),
        ("Vlan", "CONFIG_VLAN_8021Q", "8021q"),
        ("Bridges", "CONFIG_BRIDGE", "bridge"),
        ("Advanced netfilter", "CONFIG_NETFILTER_ADVANCED", "nf_tables"),
    ];
    if major == 4 && minor > 6 {
        misc.push(("CONFIG_NF_NAT_IPV4", "CONFIG_NF_NAT_IPV4", "nf_nat_ipv4"));
        misc.push(("CONFIG_NF_NAT_IPV6", "CONFIG_NF_NAT_IPV6", "nf_nat_ipv6"));
    }
    misc.extend([
        (
            "CONFIG_IP_NF_TARGET_MASQUERADE",
            "CONFIG_IP_NF_TARGET_MASQUERADE",
            "nf_nat_masquerade_ipv4",
        ),
        (
            "CONFIG_IP6_NF_TARGET_MASQUERADE",
            "CONFIG_IP6_NF_TARGET_MASQUERADE",
            "nf_nat_masquerade_ipv6",
        ),
        (
            "CONFIG_NETFILTER_XT_TARGET_CHECKSUM",
            "CONFIG_NETFILTER_XT_TARGET_CHECKSUM",
            "xt_CHECKSUM",
        ),
        (
            "CONFIG_NETFILTER_XT_MATCH_COMMENT",
            "CONFIG_NETFILTER_XT_MATCH_COMMENT",
            "xt_comment",
        ),
        ("FUSE (for use with lxcfs)", "CONFIG_FUSE_FS", "fuse"),
    ]);
    for (label, key, module) in misc {
        o.put(&format!("{label}: "));
        if o.state(cfg.is_set(key), false) {
            probed(&mut o, module);
        }
        o.put("\n");
    }
    o.put("\n--- Checkpoint/Restore ---\ncheckpoint restore: ");
    o.state(cfg.is_set("CONFIG_CHECKPOINT_RESTORE"), false);
    o.put("\n");
    for key in [
        "CONFIG_FHANDLE",
        "CONFIG_EVENTFD",
        "CONFIG_EPOLL",
        "CONFIG_UNIX_DIAG",
        "CONFIG_INET_DIAG",
        "CONFIG_PACKET_DIAG",
        "CONFIG_NETLINK_DIAG",
    ] {
        o.put(&format!("{key}: "));
        o.state(cfg.is_set(key), false);
        o.put("\n");
    }
    o.put("File capabilities: ");
    if major == 2 && minor < 33 {
        o.state(cfg.is_set("CONFIG_SECURITY_FILE_CAPABILITIES"), false);
        o.put("\n");
    } else {
        o.colored("1;32", "enabled\n");
    }
    o.put(&format!(
        "\nNote : Before booting a new kernel, you can check its configuration\nusage : CONFIG=/path/to/config {me}\n\n"
    ));
    o.buf
}

/// `lxc-start --version` of the lxc-start on PATH, as the script prints it.
fn lxc_version() -> Option<String> {
    let out = std::process::Command::new("lxc-start")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

pub fn run(_a: Args) -> anyhow::Result<i32> {
    let _span = tracing::info_span!("lxc-checkconfig").entered();
    // The usage line names the program as it was called, as the script's does.
    let me = std::env::args_os()
        .next()
        .map_or("lxc-checkconfig".into(), |a| a.to_string_lossy().into_owned());
    let mut head = String::new();
    if let Some(v) = lxc_version() {
        head.push_str(&format!("LXC version {v}\n"));
    }
    let (path, searched) = locate()?;
    if searched {
        head.push_str(&format!(
            "Kernel configuration not found at {}; searching...\nKernel configuration found at {}\n",
            std::env::var("CONFIG").unwrap_or_else(|_| "/proc/config.gz".into()),
            path.display()
        ));
    }
    let cfg = KConfig {
        text: read_config(&path)?,
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("read /proc/self/mounts")?;
    let modules = std::fs::read_to_string("/proc/modules").ok();
    let color = std::io::stdout().is_terminal();
    let text = report(&cfg, &mounts, modules.as_deref(), color, &me);
    let mut out = std::io::stdout().lock();
    out.write_all(head.as_bytes())?;
    out.write_all(text.as_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines_as_the_script_greps_them() {
        let c = KConfig {
            text: "# Linux/x86 4.9.120 Kernel Configuration\nCONFIG_VETH=m\n# CONFIG_VLAN_8021Q is not set\n\
                   CONFIG_MEMCG=y\nCONFIG_MEMCG_KMEM=y\nCONFIG_SMP=y\n"
                .into(),
        };
        assert!(c.is_set("CONFIG_VETH") && c.is_set("CONFIG_MEMCG"));
        assert!(!c.is_set("CONFIG_VLAN_8021Q") && !c.is_set("CONFIG_CPUSETS"));
        assert_eq!(c.version(), Some((4, 9)));
        let r = report(
            &c,
            "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n",
            Some("veth 1 0\n"),
            false,
            "x",
        );
        // 4.9: the NAT lines; a missing cpuset takes the blank line with it.
        assert!(r.contains("CONFIG_NF_NAT_IPV4: missing\n"), "{r}");
        assert!(r.contains("Cgroup cpuset: missing\n--- Misc ---\n"), "{r}");
        assert!(r.contains("Veth pair device: enabled, loaded\n"), "{r}");
        assert!(
            r.contains("Cgroup v2 mount points: \n - /sys/fs/cgroup\nCgroup device"),
            "{r}"
        );
        assert!(!r.contains("systemd controller"), "{r}");
        assert!(r.contains("Namespaces: required\n"), "{r}");
        let none = KConfig { text: String::new() };
        assert!(report(&none, "", None, false, "x").starts_with("WARNING: Unable to detect version"));
    }
}
