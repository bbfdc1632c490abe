//! An Incus instance export (`incus export NAME FILE`), container type.
//!
//! Layout (as Incus 6 writes it, gzip by default, zstd with `--compression
//! zstd`): `backup/index.yaml` first (the instance's name, backend, its
//! snapshots' names, whether the storage is "optimized", and since Incus
//! 0.x the whole instance and snapshot configs under `config:`), then each
//! snapshot as `backup/snapshots/NAME/{backup.yaml,metadata.yaml,rootfs/}`,
//! then `backup/container/{backup.yaml,metadata.yaml,templates/,rootfs/}`.
//! Owners in the trees are the ids seen inside the container (Incus
//! unshifts them on export).
//!
//! `--optimized-storage` exports hold the storage driver's own stream of
//! each volume instead of trees: `backup/optimized_header.yaml` (btrfs: the
//! volumes' subvolumes), `backup/snapshots/NAME.bin` for each snapshot,
//! oldest first, the first whole and each next one from the one before,
//! then `backup/container.bin` from the last. A volume holds `rootfs/`
//! beside Incus's own files, with owners as they lay on Incus's disk
//! (shifted into `volatile.last_state.idmap`, empty when unshifted). They
//! go onto the backend declaring that stream's format, are made rootfs and
//! have their owners shifted into the container's map (see
//! [`crate::engine::AdoptNative`]); a volume with nested subvolumes is
//! refused.

use super::lxc::{bytes, first_cpus, is_cpu_list, rfc3339, Out};
use super::{bad, scan, Note, MAX_META};
use crate::engine::{AdoptNative, AdoptSnap, Adoption, Place};
use crate::error::Result;
use crate::idmap::IdMap;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Deserialize)]
struct Index {
    name: String,
    #[serde(default)]
    backend: String,
    #[serde(default)]
    snapshots: Vec<String>,
    #[serde(default)]
    optimized: bool,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    config: Option<Backup>,
}

/// `backup.yaml`, and `config:` of a recent index.
#[derive(Debug, Deserialize, Default)]
struct Backup {
    #[serde(default)]
    container: Option<Instance>,
    #[serde(default)]
    snapshots: Vec<Instance>,
}

#[derive(Debug, Deserialize, Default, Clone)]
struct Instance {
    #[serde(default)]
    name: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    devices: BTreeMap<String, BTreeMap<String, String>>,
    /// With the profiles' settings: what the instance ran with.
    #[serde(default)]
    expanded_config: BTreeMap<String, String>,
    #[serde(default)]
    expanded_devices: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    ephemeral: bool,
    #[serde(default)]
    stateful: bool,
    #[serde(default)]
    profiles: Vec<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl Instance {
    fn effective_config(&self) -> &BTreeMap<String, String> {
        if self.expanded_config.is_empty() {
            &self.config
        } else {
            &self.expanded_config
        }
    }
    fn effective_devices(&self) -> &BTreeMap<String, BTreeMap<String, String>> {
        if self.expanded_devices.is_empty() {
            &self.devices
        } else {
            &self.expanded_devices
        }
    }
}

/// Where the trees are in this archive.
#[derive(Debug, Clone)]
pub struct Layout {
    snapshots: Vec<String>,
    /// An optimized export: the trees are native streams.
    optimized: bool,
}

const ROOT: &str = "backup/container/rootfs";

impl Layout {
    pub fn place(&self, name: &[u8]) -> Option<Place> {
        let n = std::str::from_utf8(name).ok();
        if self.optimized {
            let n = n?;
            if n == "backup/container.bin" {
                return Some(Place::Native(None));
            }
            if let Some(i) = self
                .snapshots
                .iter()
                .position(|s| n == format!("backup/snapshots/{s}.bin"))
            {
                return Some(Place::Native(Some(i)));
            }
            return matches!(
                n.trim_end_matches('/'),
                "backup" | "backup/snapshots" | "backup/index.yaml" | "backup/optimized_header.yaml"
            )
            .then_some(Place::Skip);
        }
        let tree = |prefix: &str| crate::stream::strip_tree(prefix.as_bytes(), name).is_some();
        if tree(ROOT) {
            return Some(Place::Tree(None, ROOT.into()));
        }
        for (i, s) in self.snapshots.iter().enumerate() {
            // Incus writes `backup/snapshots/NAME`; older writers put them below the container.
            for base in ["backup/snapshots", "backup/container/snapshots"] {
                let p = format!("{base}/{s}/rootfs");
                if tree(&p) {
                    return Some(Place::Tree(Some(i), p));
                }
                let d = format!("{base}/{s}");
                if let Some(rest) = crate::stream::strip_tree(d.as_bytes(), name) {
                    if meta_entry(rest) {
                        return Some(Place::Skip);
                    }
                }
            }
        }
        let n = n?.trim_end_matches('/');
        if matches!(
            n,
            "backup" | "backup/snapshots" | "backup/container/snapshots" | "backup/index.yaml"
        ) {
            return Some(Place::Skip);
        }
        crate::stream::strip_tree(b"backup/container", n.as_bytes())
            .filter(|rest| meta_entry(rest))
            .map(|_| Place::Skip)
    }
}

/// The metadata beside a tree: backup.yaml, metadata.yaml, templates/.
fn meta_entry(rest: &[u8]) -> bool {
    let r = std::str::from_utf8(rest).unwrap_or("\0");
    let r = r.trim_end_matches('/');
    r.is_empty() || r == "backup.yaml" || r == "metadata.yaml" || r == "templates" || r.starts_with("templates/")
}

pub struct Read {
    pub adoption: Adoption,
    pub notes: Vec<Note>,
    pub layout: Layout,
}

fn yaml<T: serde::de::DeserializeOwned>(what: &str, d: &[u8]) -> Result<T> {
    serde_yaml::from_slice(d).map_err(|e| bad(format!("{what}: {}", e.to_string().replace('\n', " "))))
}

/// Read the settings of the Incus export at `path` (first pass).
/// `map`: the caller's `--map`, which wins over the instance's own.
pub fn read(path: &Path, map: Option<IdMap>) -> Result<Read> {
    let mut index: Option<Index> = None;
    let mut backup: Option<Backup> = None;
    let mut templates = false;
    let mut header: Option<OptimizedHeader> = None;
    scan(path, MAX_META, &mut |name, data| {
        match (name, data) {
            (b"backup/index.yaml", Some(d)) => {
                let i: Index = yaml("backup/index.yaml", d)?;
                // An optimized export's header comes next.
                let done = i.config.as_ref().is_some_and(|c| c.container.is_some()) && !i.optimized;
                index = Some(i);
                return Ok(done);
            }
            (b"backup/optimized_header.yaml", Some(d)) => {
                header = Some(yaml("backup/optimized_header.yaml", d)?);
                return Ok(true);
            }
            (n, _) if n.ends_with(b".bin") => return Ok(true),
            (b"backup/container/backup.yaml", Some(d)) => {
                backup = Some(yaml("backup/container/backup.yaml", d)?);
                return Ok(true);
            }
            _ => {}
        }
        if name.starts_with(b"backup/container/templates/") {
            templates = true;
        }
        Ok(false)
    })?;
    let mut index = index.ok_or_else(|| bad("an Incus export without backup/index.yaml".into()))?;
    if let Some(k) = index.kind.as_deref().filter(|k| *k != "container") {
        return Err(bad(format!("an Incus export of a {k}: strata imports containers only")));
    }
    if index.optimized {
        if index.backend.is_empty() {
            return Err(bad(
                "an Incus export made with --optimized-storage that names no storage driver: \
                 export it again without --optimized-storage"
                    .into(),
            ));
        }
        if let Some(v) = header.iter().flat_map(|h| &h.subvolumes).find(|v| v.path != "/") {
            return Err(bad(format!(
                "an Incus --optimized-storage export with a nested subvolume ({}): not supported; \
                 export it again without --optimized-storage",
                v.path
            )));
        }
        if index.config.as_ref().is_none_or(|c| c.container.is_none()) {
            return Err(bad(
                "an Incus --optimized-storage export whose backup/index.yaml holds no config \
                 (an older Incus or LXD): export it again without --optimized-storage"
                    .into(),
            ));
        }
    }
    let b = match index.config.take().filter(|c| c.container.is_some()) {
        Some(b) => b,
        None => backup.ok_or_else(|| bad("an Incus export without backup/container/backup.yaml".into()))?,
    };
    let inst = b.container.clone().unwrap_or_default();
    if let Some(k) = inst.kind.as_deref().filter(|k| *k != "container") {
        return Err(bad(format!("an Incus export of a {k}: strata imports containers only")));
    }
    let name = if index.name.is_empty() {
        inst.name.clone()
    } else {
        index.name.clone()
    };
    let privileged = truthy(inst.effective_config().get("security.privileged"));
    let given = map.is_some();
    let map = match map {
        Some(m) => Some(m),
        None if privileged => None,
        None => Some(instance_map(&inst)?),
    };
    let map_from_volatile = map.is_some() && !given;
    let mut out = Out::default();
    let own_map = map_from_volatile;
    convert(&inst, &name, own_map, &mut out)?;
    if templates {
        out.note(
            "templates",
            "",
            "Incus's file templates (backup/container/templates) are not applied",
        );
    }
    if !inst.profiles.is_empty() {
        out.note(
            "profiles",
            &inst.profiles.join(", "),
            "no LXC equivalent; their settings are carried as part of the instance's expanded config",
        );
    }
    let config = out.config(&format!("the Incus export of {name}"))?;
    let native = match index.optimized {
        true => Some(AdoptNative {
            format: native_format(&index.backend),
            subdir: "rootfs".into(),
            on_disk: on_disk_map(&inst)?,
        }),
        false => None,
    };
    let mut snapshots = Vec::new();
    for s in &index.snapshots {
        let si = b
            .snapshots
            .iter()
            .find(|x| &x.name == s)
            .cloned()
            .unwrap_or_else(|| inst.clone());
        let mut so = Out::default();
        convert(&si, &name, own_map, &mut so)?;
        let ts = si
            .created_at
            .as_deref()
            .and_then(rfc3339)
            .filter(|t| *t > 0)
            .map(crate::clock::format_ts)
            .unwrap_or_else(|| crate::clock::format_ts(crate::clock::now()));
        snapshots.push(AdoptSnap {
            name: s.clone(),
            ts,
            comment: None,
            config: so.config(&format!("the Incus export of {name}, snapshot {s}"))?,
        });
    }
    Ok(Read {
        adoption: Adoption {
            name,
            config,
            snapshots,
            native,
            map,
        },
        notes: out.notes,
        layout: Layout {
            snapshots: index.snapshots.clone(),
            optimized: index.optimized,
        },
    })
}

fn truthy(v: Option<&String>) -> bool {
    matches!(
        v.map(|s| s.trim().to_ascii_lowercase()).as_deref(),
        Some("true" | "1" | "yes" | "on")
    )
}

/// The stream format of an Incus storage driver's optimized backups (see
/// [`crate::backend::NativeStream::format`]).
fn native_format(driver: &str) -> String {
    match driver {
        "btrfs" => "btrfs-send".into(),
        "zfs" => "zfs-send".into(),
        other => format!("{other} (Incus's)"),
    }
}

/// `backup/optimized_header.yaml` (btrfs): the subvolumes of each volume.
#[derive(Debug, Deserialize)]
struct OptimizedHeader {
    #[serde(default)]
    subvolumes: Vec<Subvolume>,
}

#[derive(Debug, Deserialize)]
struct Subvolume {
    /// Relative to the volume, `/` for the volume itself.
    #[serde(default)]
    path: String,
}

/// The map the owners on Incus's disk were shifted into
/// (`volatile.last_state.idmap`; empty: unshifted).
fn on_disk_map(inst: &Instance) -> Result<IdMap> {
    match inst.effective_config().get("volatile.last_state.idmap") {
        Some(v) if !v.trim().is_empty() && v.trim() != "[]" => map_of(v, "volatile.last_state.idmap"),
        _ => Ok(IdMap::default()),
    }
}

/// The instance's own id map (`volatile.idmap.next`, else `.current`), as
/// Incus records it: JSON ranges `{Isuid, Isgid, Hostid, Nsid, Maprange}`.
fn instance_map(inst: &Instance) -> Result<IdMap> {
    let c = inst.effective_config();
    let raw = ["volatile.idmap.next", "volatile.idmap.current"]
        .iter()
        .filter_map(|k| c.get(*k))
        .find(|v| !v.trim().is_empty() && v.trim() != "[]")
        .ok_or_else(|| {
            bad("an unprivileged Incus container without volatile.idmap.next: give its map with --map".into())
        })?;
    map_of(raw, "volatile.idmap.next")
}

/// An Incus id map as it records them: JSON ranges `{Isuid, Isgid, Hostid, Nsid, Maprange}`.
fn map_of(raw: &str, key: &str) -> Result<IdMap> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct R {
        #[serde(default)]
        isuid: bool,
        #[serde(default)]
        isgid: bool,
        hostid: u64,
        nsid: u64,
        maprange: u64,
    }
    let rs: Vec<R> = serde_json::from_str(raw).map_err(|e| bad(format!("{key}: {e}")))?;
    let mut lines = Vec::new();
    for r in rs {
        for (on, k) in [(r.isuid, "u"), (r.isgid, "g")] {
            if on {
                lines.push(format!("{k} {} {} {}", r.nsid, r.hostid, r.maprange));
            }
        }
    }
    IdMap::parse(lines.iter().map(String::as_str))
}

/// The instance's settings as LXC keys, and notes on the rest;
/// `own_map`: the map was taken from `volatile.idmap.*`.
fn convert(inst: &Instance, name: &str, own_map: bool, out: &mut Out) -> Result<()> {
    let c = inst.effective_config();
    out.set("lxc.uts.name", name);
    out.system_mounts();
    if !inst.architecture.is_empty() {
        out.set("lxc.arch", &inst.architecture);
    }
    let mut grouped: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let soft = c.get("limits.memory.enforce").map(String::as_str) == Some("soft");
    for (k, v) in c {
        let v = v.as_str();
        match k.as_str() {
            "limits.memory" => match bytes(v) {
                Some(b) if soft => out.limits.memory_high = Some(b),
                Some(b) => out.limits.memory_max = Some(b),
                None => out.note(
                    k,
                    v,
                    "not a byte size (a share of the host's memory has no LXC equivalent)",
                ),
            },
            "limits.memory.enforce" => {}
            "limits.memory.swap" => match v {
                "false" => out.limits.swap_max = Some(0),
                "true" => {}
                _ => match bytes(v) {
                    Some(b) => out.limits.swap_max = Some(b),
                    None => out.note(k, v, "no LXC equivalent"),
                },
            },
            "limits.cpu" => match v.parse::<u64>() {
                Ok(n) if n > 0 => out.limits.cpus = Some(first_cpus(n)),
                _ if is_cpu_list(v) => out.limits.cpus = Some(v.to_string()),
                _ => out.note(k, v, "not a CPU count or list"),
            },
            "limits.cpu.allowance" => match cpu_max(v) {
                Some(m) => out.limits.cpu_max = Some(m),
                None => out.note(
                    k,
                    v,
                    "a share of CPU time (no fixed LXC equivalent); only TIME/PERIOD is carried",
                ),
            },
            "limits.processes" => match v.parse::<u64>() {
                Ok(n) => out.limits.pids_max = Some(n),
                Err(_) => out.note(k, v, "not a number"),
            },
            "security.privileged" => {}
            "security.nesting" => {
                if truthy(Some(&v.to_string())) {
                    out.set("lxc.apparmor.allow_nesting", 1);
                }
            }
            "raw.lxc" => out.raw("raw.lxc", v)?,
            "boot.autostart" => out.set("lxc.start.auto", u8::from(truthy(Some(&v.to_string())))),
            "boot.autostart.delay" => out.set("lxc.start.delay", v),
            "boot.autostart.priority" => out.set("lxc.start.order", v),
            k if k.starts_with("environment.") => {
                out.set("lxc.environment", format!("{}={v}", &k["environment.".len()..]))
            }
            // Carried: the nics' names and addresses, the map.
            k if k.starts_with("volatile.") && (k.ends_with(".name") || k.ends_with(".hwaddr")) => {}
            "volatile.idmap.next" | "volatile.idmap.current" if own_map => {}
            k if k.starts_with("volatile.") => grouped.entry("volatile.*").or_default().push(k),
            k if k.starts_with("image.") => grouped.entry("image.*").or_default().push(k),
            k if k.starts_with("user.") => grouped.entry("user.*").or_default().push(k),
            k if k.starts_with("security.idmap.") => {
                out.note(k, v, "carried through the id map Incus chose (volatile.idmap.next)")
            }
            _ => out.note(k, v, "no LXC equivalent"),
        }
    }
    for (g, keys) in grouped {
        let why = match g {
            "volatile.*" => "Incus's own state",
            "image.*" => "the image's description, no LXC equivalent",
            _ => "user metadata, no LXC equivalent",
        };
        out.note(g, &keys.join(", "), why);
    }
    if inst.ephemeral {
        out.set("lxc.ephemeral", 1);
    }
    if inst.stateful {
        out.note("stateful", "true", "no saved state is carried");
    }
    for (dev, d) in inst.effective_devices() {
        device(dev, d, c, out);
    }
    Ok(())
}

/// `limits.cpu.allowance = 25ms/100ms` as cgroup2's `cpu.max` (microseconds).
fn cpu_max(v: &str) -> Option<(u64, u64)> {
    let (t, p) = v.split_once('/')?;
    let ms = |s: &str| s.trim().strip_suffix("ms")?.trim().parse::<u64>().ok();
    Some((ms(t)?.checked_mul(1000)?, ms(p)?.checked_mul(1000)?))
}

fn device(dev: &str, d: &BTreeMap<String, String>, c: &BTreeMap<String, String>, out: &mut Out) {
    let get = |k: &str| d.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let key = format!("devices.{dev}");
    let others = |out: &mut Out, used: &[&str]| {
        for (k, v) in d {
            if !used.contains(&k.as_str()) {
                out.note(&format!("{key}.{k}"), v, "no LXC equivalent");
            }
        }
    };
    match get("type") {
        Some("disk") if get("path") == Some("/") => {
            if let Some(s) = get("size") {
                out.note(&format!("{key}.size"), s, "the rootfs size is the backend's (--fssize)");
            }
            others(out, &["type", "path", "pool", "size"]);
        }
        Some("disk") => match (get("source"), get("path")) {
            (Some(src), Some(p)) if src.starts_with('/') && get("pool").is_none() => {
                let mut opts = "bind,create=dir".to_string();
                if truthy(d.get("readonly")) {
                    opts.push_str(",ro");
                }
                if truthy(d.get("optional")) {
                    opts.push_str(",optional");
                }
                out.set(
                    "lxc.mount.entry",
                    format!("{src} {} none {opts} 0 0", p.trim_start_matches('/')),
                );
                others(out, &["type", "source", "path", "readonly", "optional"]);
            }
            _ => out.note(&key, &describe(d), "a storage volume, not in the export"),
        },
        Some("nic") => {
            let nictype = get("nictype").unwrap_or(if get("network").is_some() { "bridged" } else { "" });
            let (kind, link) = match nictype {
                "bridged" => ("veth", get("parent").or(get("network"))),
                "macvlan" => ("macvlan", get("parent").or(get("network"))),
                "physical" => ("phys", get("parent")),
                "p2p" => ("veth", None),
                _ => {
                    out.note(&key, &describe(d), "a nic type with no LXC equivalent");
                    return;
                }
            };
            let n = out.next_net();
            let p = format!("lxc.net.{n}");
            out.set(&format!("{p}.type"), kind);
            if let Some(l) = link {
                out.set(&format!("{p}.link"), l);
            }
            if kind == "macvlan" {
                out.set(&format!("{p}.macvlan.mode"), "bridge");
            }
            out.set(&format!("{p}.flags"), "up");
            let vol = |k: &str| {
                c.get(&format!("volatile.{dev}.{k}"))
                    .map(String::as_str)
                    .filter(|v| !v.is_empty())
            };
            if let Some(name) = get("name").or(vol("name")) {
                out.set(&format!("{p}.name"), name);
            }
            if let Some(h) = get("hwaddr").or(vol("hwaddr")) {
                out.set(&format!("{p}.hwaddr"), h);
            }
            if let Some(m) = get("mtu") {
                out.set(&format!("{p}.mtu"), m);
            }
            if let Some(h) = get("host_name") {
                if kind == "veth" {
                    out.set(&format!("{p}.veth.pair"), h);
                }
            }
            if get("network").is_some() && get("nictype").is_none() {
                out.note(
                    &format!("{key}.network"),
                    get("network").unwrap_or_default(),
                    "Incus's managed network: linked to a bridge of that name, which must exist here",
                );
            }
            others(
                out,
                &[
                    "type",
                    "nictype",
                    "parent",
                    "network",
                    "name",
                    "hwaddr",
                    "mtu",
                    "host_name",
                ],
            );
        }
        _ => out.note(&key, &describe(d), "a device type with no LXC equivalent"),
    }
}

fn describe(d: &BTreeMap<String, String>) -> String {
    d.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places() {
        let l = Layout {
            snapshots: vec!["snap0".into()],
            optimized: false,
        };
        let p = |n: &str| l.place(n.as_bytes());
        assert_eq!(p("backup/index.yaml"), Some(Place::Skip));
        assert_eq!(p("backup/container/backup.yaml"), Some(Place::Skip));
        assert_eq!(p("backup/container/rootfs/etc/x"), Some(Place::Tree(None, ROOT.into())));
        assert_eq!(
            p("backup/snapshots/snap0/rootfs"),
            Some(Place::Tree(Some(0), "backup/snapshots/snap0/rootfs".into()))
        );
        assert_eq!(p("backup/snapshots/snap0/backup.yaml"), Some(Place::Skip));
        assert_eq!(p("backup/snapshots/other/rootfs/x"), None);
        assert_eq!(p("backup/container.bin"), None);
        assert_eq!(p("etc/passwd"), None);
    }

    #[test]
    fn places_of_an_optimized_export() {
        let l = Layout {
            snapshots: vec!["snap0".into(), "snap1".into()],
            optimized: true,
        };
        let p = |n: &str| l.place(n.as_bytes());
        assert_eq!(p("backup/index.yaml"), Some(Place::Skip));
        assert_eq!(p("backup/optimized_header.yaml"), Some(Place::Skip));
        assert_eq!(p("backup/snapshots/snap1.bin"), Some(Place::Native(Some(1))));
        assert_eq!(p("backup/container.bin"), Some(Place::Native(None)));
        assert_eq!(p("backup/container_var.bin"), None);
        assert_eq!(p("backup/snapshots/other.bin"), None);
        assert_eq!(p("backup/container/rootfs/etc"), None);
    }

    #[test]
    fn allowance() {
        assert_eq!(cpu_max("25ms/100ms"), Some((25000, 100000)));
        assert_eq!(cpu_max("50%"), None);
    }
}
