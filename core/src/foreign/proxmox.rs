//! A Proxmox VE backup of a container (`vzdump-lxc-ID-DATE.tar.{zst,gz}`).
//!
//! vzdump runs GNU tar (`--numeric-owner --acls --xattrs --sparse`) with
//! `./etc/vzdump/pct.conf` (the container's config, snapshot sections
//! dropped) and `./etc/vzdump/pct.fw` (its firewall rules) from a scratch
//! dir first, then `.` of the mounted rootfs (with the mount points whose
//! `backup=1`). For an unprivileged container tar runs inside its user
//! namespace, so the owners are the ids seen inside the container.
//!
//! pct.conf is `key: value` lines; `#` lines are the description; raw
//! `lxc.*` keys are written `lxc.KEY: VALUE`; a `[NAME]` line starts a
//! snapshot (or pending) section.

use super::lxc::{first_cpus, Out};
use super::{bad, scan, Note, MAX_META};
use crate::engine::{Adoption, Place};
use crate::error::Result;
use crate::idmap::IdMap;
use std::path::Path;

const CONF: &[u8] = b"./etc/vzdump/pct.conf";
const FW: &[u8] = b"./etc/vzdump/pct.fw";

/// vzdump's own files are skipped (as Proxmox's restore deletes them); all
/// else is the rootfs, below `.`.
pub fn place(name: &[u8]) -> Option<Place> {
    let bare = |n: &[u8]| name == n || name == &n[2..];
    if bare(CONF) || bare(FW) {
        return Some(Place::Skip);
    }
    (name.starts_with(b"./") || name == b".").then(|| Place::Tree(None, ".".into()))
}

pub struct Read {
    pub adoption: Adoption,
    pub notes: Vec<Note>,
}

/// Proxmox's map for an unprivileged container unless its config says otherwise.
const DEFAULT_MAP: [&str; 2] = ["u 0 100000 65536", "g 0 100000 65536"];

/// Read the settings of the vzdump archive at `path` (first pass).
/// `map`: the caller's `--map`, which wins over the container's own.
pub fn read(path: &Path, map: Option<IdMap>) -> Result<Read> {
    let mut conf: Option<String> = None;
    let mut fw: Option<String> = None;
    scan(path, MAX_META, &mut |name, data| {
        let n = name.strip_prefix(b"./").unwrap_or(name);
        if n == &CONF[2..] {
            let d = data.ok_or_else(|| bad("etc/vzdump/pct.conf: not a small regular file".into()))?;
            conf = Some(String::from_utf8(d.to_vec()).map_err(|_| bad("etc/vzdump/pct.conf: not UTF-8".into()))?);
            return Ok(false);
        }
        if n == &FW[2..] {
            fw = data.map(|d| String::from_utf8_lossy(d).into_owned());
            return Ok(false);
        }
        // The settings come first; the rootfs follows.
        Ok(true)
    })?;
    let conf = conf.ok_or_else(|| bad("a vzdump archive without etc/vzdump/pct.conf".into()))?;
    let mut out = Out::default();
    let (name, map) = convert(&conf, map, &mut out)?;
    if fw.as_deref().is_some_and(|f| {
        f.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    }) {
        out.note("pct.fw", "", "Proxmox firewall rules have no LXC equivalent");
    }
    let config = out.config(&format!("the Proxmox vzdump of {name}"))?;
    Ok(Read {
        adoption: Adoption {
            name,
            config,
            snapshots: Vec::new(),
            map,
            native: None,
        },
        notes: out.notes,
    })
}

/// `a=1,b=x` option lists; the first item may be bare (`VOLUME,size=8G`).
fn opts(v: &str) -> (Option<&str>, Vec<(&str, &str)>) {
    let mut first = None;
    let mut kv = Vec::new();
    for (i, p) in v.split(',').enumerate() {
        match p.split_once('=') {
            Some((k, x)) => kv.push((k.trim(), x.trim())),
            None if i == 0 => first = Some(p.trim()),
            None => kv.push((p.trim(), "")),
        }
    }
    (first, kv)
}

fn get<'a>(kv: &[(&str, &'a str)], k: &str) -> Option<&'a str> {
    kv.iter().find(|(x, _)| *x == k).map(|(_, v)| *v)
}

/// pct.conf as LXC keys; returns the container's name and map.
fn convert(conf: &str, map: Option<IdMap>, out: &mut Out) -> Result<(String, Option<IdMap>)> {
    let mut hostname = None;
    let mut unprivileged = false;
    let mut idmap_lines = Vec::new();
    let mut description = Vec::new();
    let mut sections = Vec::new();
    out.system_mounts();
    for line in conf.lines() {
        if let Some(s) = line.trim().strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            sections.push(s.to_string());
            continue;
        }
        if !sections.is_empty() {
            continue;
        }
        if let Some(d) = line.strip_prefix('#') {
            description.push(d.to_string());
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(bad(format!("etc/vzdump/pct.conf: {line:?}: not a `key: value` line")));
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "arch" => out.set(
                "lxc.arch",
                match v {
                    "amd64" => "x86_64",
                    "i386" => "i686",
                    "arm64" => "aarch64",
                    other => other,
                },
            ),
            "hostname" => {
                out.set("lxc.uts.name", v);
                hostname = Some(v.to_string());
            }
            "memory" => match v.parse::<u64>() {
                Ok(m) => out.limits.memory_max = m.checked_mul(1 << 20),
                Err(_) => out.note(k, v, "not a number of MiB"),
            },
            "swap" => match v.parse::<u64>() {
                Ok(m) => out.limits.swap_max = m.checked_mul(1 << 20),
                Err(_) => out.note(k, v, "not a number of MiB"),
            },
            "cores" => match v.parse::<u64>() {
                Ok(n) if n > 0 => out.limits.cpus = Some(first_cpus(n)),
                _ => out.note(k, v, "not a CPU count"),
            },
            "cpulimit" => match v.parse::<f64>() {
                Ok(0.0) => {}
                Ok(x) if x > 0.0 && x <= 8192.0 => out.limits.cpu_max = Some(((x * 100000.0).round() as u64, 100000)),
                _ => out.note(k, v, "not a CPU limit"),
            },
            "cpuunits" => match v.parse::<u64>() {
                Ok(n) if (1..=10000).contains(&n) => out.limits.cpu_units = Some(n),
                _ => out.note(k, v, "outside the range of cgroup2's cpu.weight"),
            },
            "unprivileged" => unprivileged = v == "1",
            "onboot" => out.set("lxc.start.auto", u8::from(v == "1")),
            "startup" => {
                let (_, kv) = opts(v);
                for (sk, sv) in kv {
                    match sk {
                        "order" => out.set("lxc.start.order", sv),
                        "up" => out.set("lxc.start.delay", sv),
                        _ => out.note(&format!("startup.{sk}"), sv, "no LXC equivalent"),
                    }
                }
            }
            "features" => features(v, out),
            "rootfs" => {
                let (vol, kv) = opts(v);
                out.note(
                    k,
                    v,
                    &format!(
                        "its files are the archive's rootfs; the volume {}{} is not carried (the backend decides; --fssize)",
                        vol.unwrap_or("?"),
                        get(&kv, "size").map(|s| format!(" of {s}")).unwrap_or_default()
                    ),
                );
            }
            k if k.starts_with("mp") && k[2..].parse::<u32>().is_ok() => mount_point(k, v, out),
            k if k.starts_with("net") && k[3..].parse::<u32>().is_ok() => net(k, v, out),
            k if k.starts_with("lxc.") => {
                if k == "lxc.idmap" || k == "lxc.id_map" {
                    idmap_lines.push(v.to_string());
                } else {
                    out.raw("pct.conf", &format!("{k} = {v}"))?;
                }
            }
            "description" => description.push(v.to_string()),
            "tty" | "console" | "cmode" => out.note(k, v, "Proxmox's console setup; LXC's defaults apply"),
            "ostype" => out.note(
                k,
                v,
                "Proxmox's per-distribution setup inside the rootfs; the rootfs is used as it is",
            ),
            "nameserver" | "searchdomain" | "timezone" => out.note(
                k,
                v,
                "Proxmox writes it into the rootfs at start; the rootfs is used as it is",
            ),
            _ => out.note(k, v, "no LXC equivalent"),
        }
    }
    if !description.is_empty() {
        out.note(
            "description",
            &description.join(" ").trim().chars().take(200).collect::<String>(),
            "no LXC equivalent",
        );
    }
    if !sections.is_empty() {
        out.note(
            "snapshots",
            &sections.join(", "),
            "snapshot sections of pct.conf: vzdump archives only the current rootfs, so they are not in the archive",
        );
    }
    let name = hostname.unwrap_or_default();
    let map = match map {
        Some(m) => Some(m),
        None if !unprivileged => None,
        None if idmap_lines.is_empty() => Some(IdMap::parse(DEFAULT_MAP)?),
        None => Some(IdMap::parse(idmap_lines.iter().map(String::as_str))?),
    };
    Ok((name, map))
}

fn features(v: &str, out: &mut Out) {
    let (_, kv) = opts(v);
    for (k, x) in kv {
        let on = x == "1";
        match k {
            "nesting" if on => out.set("lxc.apparmor.allow_nesting", 1),
            "fuse" if on => {
                out.set(
                    "lxc.mount.entry",
                    "/dev/fuse dev/fuse none bind,create=file,optional 0 0",
                );
                out.limits.devices_allow.push("c 10:229 rwm".into());
            }
            "nesting" | "fuse" | "keyctl" if !on => {}
            _ => out.note(&format!("features.{k}"), x, "no LXC equivalent"),
        }
    }
}

fn mount_point(k: &str, v: &str, out: &mut Out) {
    let (vol, kv) = opts(v);
    let mp = get(&kv, "mp").unwrap_or("");
    match vol {
        Some(src) if src.starts_with('/') && !mp.is_empty() => {
            let mut o = "bind,create=dir".to_string();
            if get(&kv, "ro") == Some("1") {
                o.push_str(",ro");
            }
            out.set(
                "lxc.mount.entry",
                format!("{src} {} none {o} 0 0", mp.trim_start_matches('/')),
            );
        }
        _ if get(&kv, "backup") == Some("1") => out.note(
            k,
            v,
            &format!("a volume; its files are in the archive and land in the rootfs at {mp} (no separate volume)"),
        ),
        _ => out.note(k, v, "a volume without backup=1: not in the archive"),
    }
}

fn net(k: &str, v: &str, out: &mut Out) {
    let (_, kv) = opts(v);
    let n = out.next_net();
    let p = format!("lxc.net.{n}");
    out.set(&format!("{p}.type"), "veth");
    out.set(&format!("{p}.flags"), "up");
    for (sk, sv) in kv {
        let key = |s: &str| format!("{p}.{s}");
        match sk {
            "name" => out.set(&key("name"), sv),
            "bridge" => out.set(&key("link"), sv),
            "hwaddr" => out.set(&key("hwaddr"), sv),
            "mtu" => out.set(&key("mtu"), sv),
            "type" if sv == "veth" => {}
            "ip" if sv.contains('/') => out.set(&key("ipv4.address"), sv),
            "gw" => out.set(&key("ipv4.gateway"), sv),
            "ip6" if sv.contains('/') => out.set(&key("ipv6.address"), sv),
            "gw6" => out.set(&key("ipv6.gateway"), sv),
            "ip" | "ip6" => out.note(
                &format!("{k}.{sk}"),
                sv,
                "configured by Proxmox inside the rootfs (dhcp, auto, manual): LXC sets no address",
            ),
            _ => out.note(&format!("{k}.{sk}"), sv, "no LXC equivalent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places() {
        assert_eq!(place(b"./etc/vzdump/pct.conf"), Some(Place::Skip));
        assert_eq!(place(b"./etc/vzdump/pct.fw"), Some(Place::Skip));
        assert_eq!(place(b"./etc/passwd"), Some(Place::Tree(None, ".".into())));
        assert_eq!(place(b"./"), Some(Place::Tree(None, ".".into())));
        assert_eq!(place(b"etc/passwd"), None);
    }

    #[test]
    fn own_map_and_privileged() {
        let mut out = Out::default();
        let conf = "hostname: h\nunprivileged: 1\nlxc.idmap: u 0 200000 65536\nlxc.idmap: g 0 200000 65536\n";
        let (_, map) = convert(conf, None, &mut out).unwrap();
        assert_eq!(map.unwrap().config_values(), ["u 0 200000 65536", "g 0 200000 65536"]);
        // Written once, from the map, by the import: not as raw lines too.
        assert!(out.config("t").unwrap().get("lxc.idmap").is_none());
        let (_, map) = convert("hostname: h\nunprivileged: 0\n", None, &mut Out::default()).unwrap();
        assert!(map.is_none());
        let given = IdMap::parse(["b 0 300000 65536"]).unwrap();
        let (_, map) = convert(conf, Some(given.clone()), &mut Out::default()).unwrap();
        assert_eq!(map, Some(given));
    }

    #[test]
    fn conf() {
        let mut out = Out::default();
        let (name, map) = convert(
            "#my%20box\narch: amd64\nhostname: web1\nmemory: 512\nswap: 256\ncores: 2\ncpulimit: 1.5\n\
             net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=10.0.3.5/24,gw=10.0.3.1,type=veth,firewall=1\n\
             rootfs: local-lvm:vm-100-disk-0,size=8G\nmp0: local-lvm:vm-100-disk-1,mp=/data,backup=1\n\
             unprivileged: 1\nfeatures: nesting=1,keyctl=1\nlxc.apparmor.profile: unconfined\ntags: a;b\n\
             [before]\nmemory: 256\n",
            None,
            &mut out,
        )
        .unwrap();
        assert_eq!(name, "web1");
        assert_eq!(map.unwrap().config_values(), ["u 0 100000 65536", "g 0 100000 65536"]);
        let c = out.config("test").unwrap();
        let either = |v2: &str, v1: &str| c.get(v2).or(c.get(v1)).map(str::to_string);
        assert_eq!(
            either("lxc.cgroup2.memory.max", "lxc.cgroup.memory.limit_in_bytes").as_deref(),
            Some("536870912")
        );
        assert_eq!(
            either("lxc.cgroup2.memory.swap.max", "lxc.cgroup.memory.memsw.limit_in_bytes").as_deref(),
            Some(if c.get("lxc.cgroup2.memory.swap.max").is_some() {
                "268435456"
            } else {
                "805306368"
            })
        );
        assert_eq!(
            either("lxc.cgroup2.cpuset.cpus", "lxc.cgroup.cpuset.cpus").as_deref(),
            Some("0-1")
        );
        assert_eq!(
            either("lxc.cgroup2.cpu.max", "lxc.cgroup.cpu.cfs_quota_us").as_deref(),
            Some(if c.get("lxc.cgroup2.cpu.max").is_some() {
                "150000 100000"
            } else {
                "150000"
            })
        );
        assert_eq!(c.get("lxc.net.0.link"), Some("vmbr0"));
        assert_eq!(c.get("lxc.net.0.ipv4.address"), Some("10.0.3.5/24"));
        assert_eq!(c.get("lxc.apparmor.allow_nesting"), Some("1"));
        assert_eq!(c.get("lxc.apparmor.profile"), Some("unconfined"));
        let keys: Vec<&str> = out.notes.iter().map(|n| n.key.as_str()).collect();
        for k in [
            "net0.firewall",
            "rootfs",
            "mp0",
            "features.keyctl",
            "tags",
            "description",
            "snapshots",
        ] {
            assert!(keys.contains(&k), "{k} not named: {keys:?}");
        }
    }
}
