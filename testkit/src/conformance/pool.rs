//! The volumes of the guest backends (LVM thin, zfs, Ceph RBD): what a killed
//! command may leave outside the lxcpath. A volume is leaked when no
//! container or snapshot config of the fixture names it and it was not
//! there when the fixture was made; a zfs snapshot nothing is cloned from
//! is leaked too (strata makes snapshots only as clone origins and for a
//! send, which drops it); any mount of a volume is leaked once the next
//! command has run (no case leaves a container running).

use super::state::{container_dirs, rootfs_spec};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Where a backend keeps its volumes.
#[derive(Debug, Clone)]
pub enum Pool {
    /// An LVM volume group.
    Lvm(String),
    /// A zfs pool (or any dataset under which the fixture's ones go).
    Zfs(String),
    /// A Ceph pool of RBD images: its images, its snapshots nothing is
    /// cloned from, and the kernel's mappings of its images.
    Rbd(String),
}

/// `rbd ls -l` of `pool` as `name` / `name@snap` (snapshots with no clone),
/// and `mapped name` for each mapping of one of its images.
fn rbd_volumes(pool: &str) -> BTreeSet<String> {
    let ls = run(&["rbd", "ls", "-l", "--format", "json", "--pool", pool]);
    let v: Vec<serde_json::Value> = if ls.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&ls).unwrap()
    };
    let s = |e: &serde_json::Value, k: &str| e.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let parents: BTreeSet<String> = v
        .iter()
        .filter_map(|e| e.get("parent"))
        .filter(|p| s(p, "pool") == pool)
        .map(|p| format!("{}@{}", s(p, "image"), s(p, "snapshot")))
        .collect();
    let mut out: BTreeSet<String> = v
        .iter()
        .map(|e| match e.get("snapshot") {
            Some(sn) => format!("{}@{}", s(e, "image"), sn.as_str().unwrap_or("")),
            None => s(e, "image"),
        })
        .filter(|n| !parents.contains(n))
        .map(|n| format!("{pool}/{n}"))
        .collect();
    out.extend(
        rbd_mappings()
            .into_iter()
            .filter(|(p, _, _)| p == pool)
            .map(|(_, name, dev)| format!("mapped {pool}/{name} at {dev}")),
    );
    out
}

/// The kernel's rbd mappings (pool, image, device) from sysfs, where `rbd
/// device list` reads them: no process of the tool (seconds under emulation).
fn rbd_mappings() -> Vec<(String, String, String)> {
    let Ok(rd) = std::fs::read_dir("/sys/bus/rbd/devices") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let read = |f: &str| {
                std::fs::read_to_string(e.path().join(f))
                    .ok()
                    .map(|v| v.trim().to_string())
            };
            let id = e.file_name().to_string_lossy().into_owned();
            Some((read("pool")?, read("name")?, format!("/dev/rbd{id}")))
        })
        .collect()
}

fn run(argv: &[&str]) -> String {
    let o = Command::new(argv[0])
        .args(&argv[1..])
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(o.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Pool {
    /// Every volume now: the VG's LVs but its thin pools (`VG/LV`), or the
    /// pool's filesystems and its snapshots without clones (`ds@snap`).
    pub fn volumes(&self) -> BTreeSet<String> {
        match self {
            Pool::Lvm(vg) => run(&["lvs", "--noheadings", "--separator", ",", "-o", "lv_name,lv_attr", vg])
                .lines()
                .filter_map(|l| l.trim().split_once(','))
                .filter(|(_, attr)| !attr.starts_with('t'))
                .map(|(n, _)| format!("{vg}/{n}"))
                .collect(),
            Pool::Zfs(root) => run(&[
                "zfs",
                "list",
                "-H",
                "-o",
                "name,clones",
                "-t",
                "filesystem,snapshot",
                "-r",
                root,
            ])
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(n, clones)| !n.contains('@') || clones.trim() == "-" || clones.trim().is_empty())
            .map(|(n, _)| n.to_string())
            .collect(),
            Pool::Rbd(pool) => rbd_volumes(pool),
        }
    }

    /// The volume `spec` names, if it is one of this pool's.
    fn volume_of(&self, spec: &strata_core::RootfsSpec) -> Option<String> {
        match self {
            Pool::Lvm(vg) if spec.kind() == "lvm" => {
                let v = spec.source().strip_prefix("/dev/")?;
                v.starts_with(&format!("{vg}/")).then(|| v.to_string())
            }
            Pool::Zfs(root) if spec.kind() == "zfs" => {
                let v = spec.source();
                v.starts_with(&format!("{root}/")).then(|| v.to_string())
            }
            Pool::Rbd(pool) if spec.kind() == "rbd" => {
                let v = spec.source().strip_prefix("/dev/rbd/")?;
                v.starts_with(&format!("{pool}/")).then(|| v.to_string())
            }
            _ => None,
        }
    }

    /// Mounts of this pool's volumes, anywhere.
    fn mounts(&self) -> Vec<String> {
        let t = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mapper = match self {
            Pool::Lvm(vg) => format!("/dev/mapper/{}-", vg.replace('-', "--")),
            Pool::Zfs(_) | Pool::Rbd(_) => String::new(),
        };
        t.lines()
            .filter_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                let mp = pre.split(' ').nth(4)?;
                let mut f = post.split(' ');
                let (fstype, source) = (f.next()?, f.next()?);
                let ours = match self {
                    Pool::Lvm(vg) => source.starts_with(&mapper) || source.starts_with(&format!("/dev/{vg}/")),
                    Pool::Zfs(root) => fstype == "zfs" && (source == root || source.starts_with(&format!("{root}/"))),
                    // Any rbd device: the guest maps nothing else.
                    Pool::Rbd(_) => source.starts_with("/dev/rbd"),
                };
                ours.then(|| format!("mount of {source} on {mp}"))
            })
            .collect()
    }

    /// Volumes under `root` (the fixture's dir: every lxcpath of every
    /// case) that a container or snapshot config names.
    fn named_under(&self, root: &Path) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Ok(rd) = std::fs::read_dir(root) else { return out };
        for case in rd.flatten() {
            for (_, d) in container_dirs(&case.path().join("lxc")) {
                if let Some(v) = rootfs_spec(&d).ok().and_then(|s| self.volume_of(&s)) {
                    out.insert(v);
                }
            }
        }
        out
    }

    /// What is leaked now: volumes neither in `baseline` nor named under
    /// `root`, and mounts of volumes.
    pub fn leaks(&self, baseline: &BTreeSet<String>, root: &Path) -> Vec<String> {
        let named = self.named_under(root);
        let mut out: Vec<String> = self
            .volumes()
            .into_iter()
            .filter(|v| !baseline.contains(v) && !named.contains(v))
            .map(|v| format!("volume {v}"))
            .collect();
        out.extend(self.mounts());
        out
    }
}
