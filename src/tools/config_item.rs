//! A config item as LXC's `get_config_item` prints it (`lxc-info -c KEY`),
//! from a container's expanded config: list keys one item per line (some
//! with a newline after the last), signals as numbers, LXC's defaults for
//! unset numeric keys, a rootfs without its `TYPE:` prefix. `None` for a key
//! LXC has no getter for (it prints `KEY invalid`).

use strata_core::config::Config;
use strata_core::config_keys::key_known;

/// Values of `key`, an empty value clearing the list, as LXC's list keys do.
fn list<'a>(cfg: &'a Config, key: &str) -> Vec<&'a str> {
    let mut v = Vec::new();
    for x in cfg.get_all(key) {
        if x.trim().is_empty() {
            v.clear();
        } else {
            v.push(x.trim());
        }
    }
    v
}

/// Whitespace-separated items of a list key (`lxc.cap.drop = a b`).
fn words<'a>(cfg: &'a Config, key: &str) -> Vec<&'a str> {
    list(cfg, key).into_iter().flat_map(str::split_whitespace).collect()
}

/// Each item followed by a newline.
fn lines(items: &[&str]) -> String {
    items.iter().map(|i| format!("{i}\n")).collect()
}

/// Entries under `prefix` as `KEY = VALUE` lines.
fn subkeys(cfg: &Config, prefix: &str) -> String {
    cfg.entries()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| format!("{k} = {}\n", v.trim()))
        .collect()
}

/// Indices of the networks defined (`lxc.net.N.type`), in order.
fn networks(cfg: &Config) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = Vec::new();
    for (k, val) in cfg.entries() {
        let Some(i) = k.strip_prefix("lxc.net.").and_then(|r| r.strip_suffix(".type")) else {
            continue;
        };
        let Ok(i) = i.parse::<u32>() else { continue };
        match v.iter_mut().find(|(j, _)| *j == i) {
            Some(e) => e.1 = val.trim().to_string(),
            None => v.push((i, val.trim().to_string())),
        }
    }
    v.sort();
    v
}

/// `lxc.mount.auto` as LXC prints its flags: the last mode of each of
/// proc, sys and cgroup, in that order.
fn mount_auto(cfg: &Config) -> String {
    let mut slots: [Option<&str>; 3] = [None; 3];
    for t in words(cfg, "lxc.mount.auto") {
        let i = if t.starts_with("proc") {
            0
        } else if t.starts_with("sys") {
            1
        } else if t.starts_with("cgroup") {
            2
        } else {
            continue;
        };
        slots[i] = Some(t);
    }
    slots.iter().flatten().copied().collect::<Vec<_>>().join(" ")
}

use strata_core::spec::KNOWN_PREFIXES as BACKENDS;

/// The value LXC prints for `key`, or `None` when LXC calls the key invalid.
pub fn get(cfg: &Config, key: &str) -> Option<String> {
    if !key_known(key) || matches!(key, "lxc.include" | "lxc.hook") {
        return None;
    }
    let last = || cfg.get(key).map(|v| v.trim().to_string()).unwrap_or_default();
    let num = |default: &str| {
        let v = last();
        if v.is_empty() {
            default.to_string()
        } else {
            v
        }
    };
    if let Some(rest) = key.strip_prefix("lxc.net.") {
        let (idx, sub) = match rest.split_once('.') {
            Some((i, s)) => (i, s),
            None => return None,
        };
        let idx: u32 = idx.parse().ok()?;
        let nets = networks(cfg);
        let (_, ty) = nets.iter().find(|(i, _)| *i == idx)?;
        // Keys of another network type have no getter for this one.
        let kind = sub.split_once('.').map(|(k, _)| k);
        if kind.is_some_and(|k| ["veth", "macvlan", "ipvlan", "vlan"].contains(&k) && k != ty) {
            return None;
        }
        return Some(match sub {
            "ipv4.address" | "ipv6.address" => list(cfg, key).join("\n"),
            _ => last(),
        });
    }
    if let Some(sub) = key
        .strip_prefix("lxc.cgroup2.")
        .or_else(|| key.strip_prefix("lxc.cgroup."))
    {
        let _ = sub;
        return Some(lines(&list(cfg, key)));
    }
    Some(match key {
        "lxc.rootfs.path" => {
            let v = last();
            match v.split_once(':') {
                Some((t, p)) if BACKENDS.contains(&t) => p.to_string(),
                _ => v,
            }
        }
        "lxc.net" => {
            let types: Vec<String> = networks(cfg).into_iter().map(|(_, t)| t).collect();
            types.iter().map(|t| format!("{t}\n")).collect()
        }
        "lxc.cgroup" | "lxc.cgroup2" | "lxc.sysctl" | "lxc.prlimit" | "lxc.proc" => subkeys(cfg, &format!("{key}.")),
        "lxc.cap.drop" | "lxc.cap.keep" => {
            // One list in LXC 5: the keep list when there is one.
            let keep = words(cfg, "lxc.cap.keep");
            lines(&if keep.is_empty() {
                words(cfg, "lxc.cap.drop")
            } else {
                keep
            })
        }
        "lxc.group" | "lxc.namespace.keep" => lines(&words(cfg, key)),
        "lxc.mount.entry" | "lxc.environment" => lines(&list(cfg, key)),
        k if k.starts_with("lxc.hook.") && k != "lxc.hook.version" => lines(&list(cfg, key)),
        "lxc.idmap" => list(cfg, key).join("\n"),
        "lxc.mount.auto" => mount_auto(cfg),
        "lxc.signal.halt" | "lxc.signal.stop" | "lxc.signal.reboot" | "lxc.monitor.signal.pdeath" => {
            let v = last();
            if v.is_empty() {
                if key == "lxc.monitor.signal.pdeath" { "9" } else { "0" }.to_string()
            } else {
                strata_runtime::conf::parse_signal(&v).map_or(v, |s| s.to_string())
            }
        }
        "lxc.autodev" | "lxc.rootfs.managed" => num("1"),
        "lxc.log.level" => num("NOTSET"),
        "lxc.tty.max"
        | "lxc.pty.max"
        | "lxc.init.uid"
        | "lxc.init.gid"
        | "lxc.console.size"
        | "lxc.console.buffer.size"
        | "lxc.console.rotate"
        | "lxc.keyring.session"
        | "lxc.autodev.tmpfs.size"
        | "lxc.apparmor.allow_nesting"
        | "lxc.apparmor.allow_incomplete"
        | "lxc.start.auto"
        | "lxc.start.delay"
        | "lxc.start.order"
        | "lxc.ephemeral"
        | "lxc.no_new_privs"
        | "lxc.monitor.unshare"
        | "lxc.hook.version"
        | "lxc.seccomp.allow_nesting" => num("0"),
        _ => last(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs of LXC 5.0.2's `lxc-info -c KEY` on the same config.
    #[test]
    fn as_lxc_prints_them() {
        let c = Config::parse(
            "lxc.rootfs.path = dir:/var/lib/lxc/c/rootfs\nlxc.uts.name = c\nlxc.group = web\nlxc.group = db\n\
             lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n\
             lxc.cap.drop = mac_admin mac_override\nlxc.cap.drop = sys_time\n\
             lxc.mount.auto = cgroup:mixed proc:mixed sys:mixed\nlxc.mount.auto = proc:mixed sys:ro\n\
             lxc.cgroup.pids.max = 10\nlxc.sysctl.net.ipv4.ip_forward = 1\nlxc.signal.halt = SIGPWR\n\
             lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.0.3.5/24\nlxc.net.0.ipv4.address = 10.0.3.6/24\n\
             lxc.net.1.type = empty\nlxc.environment = A=1\nlxc.environment = B=2\n",
        )
        .unwrap();
        let g = |k: &str| get(&c, k);
        assert_eq!(g("lxc.rootfs.path").unwrap(), "/var/lib/lxc/c/rootfs");
        assert_eq!(g("lxc.group").unwrap(), "web\ndb\n");
        assert_eq!(g("lxc.idmap").unwrap(), "u 0 100000 65536\ng 0 100000 65536");
        assert_eq!(g("lxc.cap.drop").unwrap(), "mac_admin\nmac_override\nsys_time\n");
        assert_eq!(g("lxc.mount.auto").unwrap(), "proc:mixed sys:ro cgroup:mixed");
        assert_eq!(g("lxc.cgroup.pids.max").unwrap(), "10\n");
        assert_eq!(g("lxc.cgroup").unwrap(), "lxc.cgroup.pids.max = 10\n");
        assert_eq!(g("lxc.sysctl.net.ipv4.ip_forward").unwrap(), "1");
        assert_eq!(g("lxc.signal.halt").unwrap(), "30");
        assert_eq!(g("lxc.signal.stop").unwrap(), "0");
        assert_eq!(g("lxc.net").unwrap(), "veth\nempty\n");
        assert_eq!(g("lxc.net.0.ipv4.address").unwrap(), "10.0.3.5/24\n10.0.3.6/24");
        assert_eq!(g("lxc.net.0.link").unwrap(), "");
        assert_eq!(g("lxc.net.0.veth.pair").unwrap(), "");
        assert_eq!(g("lxc.net.1.veth.pair"), None);
        assert_eq!(g("lxc.environment").unwrap(), "A=1\nB=2\n");
        assert_eq!(g("lxc.tty.max").unwrap(), "0");
        assert_eq!(g("lxc.autodev").unwrap(), "1");
        assert_eq!(g("lxc.log.level").unwrap(), "NOTSET");
        assert_eq!(g("lxc.arch").unwrap(), "");
        assert_eq!(g("lxc.net.2.type"), None);
        assert_eq!(g("lxc.net.0"), None);
        assert_eq!(g("lxc.include"), None);
        assert_eq!(g("lxc.foo"), None);
    }
}
