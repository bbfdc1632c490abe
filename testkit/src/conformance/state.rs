//! What the conformance cases look at: rootfs trees by content, the
//! containers and snapshots of an lxcpath, dependency files and leftovers.

use super::Fixture;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use strata_core::RootfsSpec;

/// One entry of a rootfs by content: kind, mode, owner, size, data hash,
/// link target. Times and inode numbers differ between a tree and its copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub hash: u64,
    pub link: Option<PathBuf>,
}

/// A rootfs by content, keyed by path relative to its top. `etc/hostname`
/// (a clone gets its own) and a top-level `lost+found` (an image's) are
/// left out.
pub type Tree = BTreeMap<PathBuf, Entry>;

/// Every entry under `root` (not `root` itself).
pub fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    crate::tree::walk(root, |rel, md| {
        if rel.as_os_str().is_empty() {
            return;
        }
        let p = root.join(rel);
        let ft = md.file_type();
        out.insert(
            rel.to_path_buf(),
            Entry {
                kind: crate::tree::kind_of(&ft),
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                size: if ft.is_dir() { 0 } else { md.size() },
                hash: if ft.is_file() { crate::tree::content_hash(&p) } else { 0 },
                link: ft.is_symlink().then(|| std::fs::read_link(&p).unwrap()),
            },
        );
    });
    out.remove(Path::new("etc/hostname"));
    out.retain(|p, _| !p.starts_with("lost+found"));
    out
}

/// The first differences between two trees, for messages.
pub fn tree_diff(a: &Tree, b: &Tree) -> Vec<String> {
    let mut d = crate::tree::differences(a, b);
    d.truncate(10);
    d
}

/// The value of `key` in a config text (the last one wins).
pub fn config_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .rev()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
}

/// The rootfs spec a container dir's config names.
pub fn rootfs_spec(dir: &Path) -> Result<RootfsSpec, String> {
    let cfg = std::fs::read_to_string(dir.join("config")).map_err(|e| format!("{}/config: {e}", dir.display()))?;
    let v = config_value(&cfg, "lxc.rootfs.path").ok_or_else(|| format!("{}: no lxc.rootfs.path", dir.display()))?;
    RootfsSpec::parse(&v).map_err(|e| format!("{}: {v}: {e}", dir.display()))
}

/// Reads the tree of the rootfs `spec` through its backend: its own path,
/// or a read-only mount on a temporary dir.
pub fn rootfs_tree(fx: &Fixture, spec: &RootfsSpec) -> Result<Tree, String> {
    let b = fx.backends.for_spec(spec).map_err(|e| e.to_string())?;
    if let Some(p) = b.local_path(spec) {
        if !b.exists(spec) {
            return Err(format!("rootfs {spec} does not exist"));
        }
        return Ok(tree(&p));
    }
    // A rootfs that must be mounted: one that is not there fails to mount
    // (no separate look, which costs an lvs or a zfs list).
    let d = tempfile::Builder::new()
        .prefix("strata-conf-mnt-")
        .tempdir_in(&fx.scratch)
        .unwrap();
    b.mount(spec, d.path(), true)
        .map_err(|e| format!("mount {spec}: {e}"))?;
    let t = tree(d.path());
    b.umount(spec, d.path()).map_err(|e| format!("unmount {spec}: {e}"))?;
    Ok(t)
}

/// Runs `f` on the rootfs of container dir `dir`, mounted writable if it
/// must be mounted.
pub fn with_rootfs_rw<R>(fx: &Fixture, dir: &Path, f: impl FnOnce(&Path) -> R) -> R {
    let spec = rootfs_spec(dir).unwrap();
    let b = fx.backends.for_spec(&spec).unwrap();
    if let Some(p) = b.local_path(&spec) {
        return f(&p);
    }
    let d = tempfile::Builder::new()
        .prefix("strata-conf-mnt-")
        .tempdir_in(&fx.scratch)
        .unwrap();
    b.mount(&spec, d.path(), false).unwrap();
    let r = f(d.path());
    b.umount(&spec, d.path()).unwrap();
    r
}

/// Container dirs of an lxcpath: `NAME` and `NAME@snapN` (its snapshots).
pub fn container_dirs(lxcpath: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(lxcpath) else {
        return out;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if n.starts_with('.') || !p.join("config").is_file() {
            continue;
        }
        if let Ok(srd) = std::fs::read_dir(p.join("snaps")) {
            for s in srd.flatten() {
                let sn = s.file_name().to_string_lossy().into_owned();
                if !sn.starts_with('.') && s.path().join("config").is_file() {
                    out.insert(format!("{n}@{sn}"), s.path());
                }
            }
        }
        out.insert(n, p);
    }
    out
}

/// The state of an lxcpath: every container and snapshot by its rootfs's
/// content.
pub type State = BTreeMap<String, Tree>;

/// Reads every container's and snapshot's rootfs; an error names one whose
/// config or rootfs is missing or unreadable.
pub fn state(fx: &Fixture, lxcpath: &Path) -> Result<State, String> {
    let mut out = State::new();
    for (n, d) in container_dirs(lxcpath) {
        let spec = rootfs_spec(&d)?;
        out.insert(n.clone(), rootfs_tree(fx, &spec).map_err(|e| format!("{n}: {e}"))?);
    }
    Ok(out)
}

/// The first differences between two states, for messages.
pub fn state_diff(a: &State, b: &State) -> Vec<String> {
    let mut d = Vec::new();
    for (n, t) in a {
        match b.get(n) {
            None => d.push(format!("{n}: gone")),
            Some(u) if u != t => d.push(format!("{n}: {:?}", tree_diff(t, u))),
            _ => {}
        }
    }
    d.extend(b.keys().filter(|n| !a.contains_key(*n)).map(|n| format!("{n}: new")));
    d
}

/// Configs of every container and snapshot, as text.
pub fn configs(lxcpath: &Path) -> BTreeMap<String, String> {
    container_dirs(lxcpath)
        .into_iter()
        .map(|(n, d)| (n, std::fs::read_to_string(d.join("config")).unwrap_or_default()))
        .collect()
}

/// Container dirs named by a dependency file (line pairs lxcpath / name).
pub fn dep_file(p: &Path) -> Result<BTreeSet<PathBuf>, String> {
    let Ok(t) = std::fs::read_to_string(p) else {
        return Ok(BTreeSet::new());
    };
    let l: Vec<&str> = t.split('\n').filter(|l| !l.is_empty()).collect();
    if !l.len().is_multiple_of(2) {
        return Err(format!("{}: odd number of lines: {t:?}", p.display()));
    }
    Ok(l.chunks(2).map(|c| Path::new(c[0]).join(c[1])).collect())
}

/// Mismatches of the dependency files: every `lxc_snapshots` entry is a
/// live container whose `lxc_rdepends` names the origin back and the other
/// way round; an overlay rootfs whose lower lies in another container is
/// listed by that container.
pub fn dep_mismatches(lxcpath: &Path) -> Vec<String> {
    let dirs: BTreeSet<PathBuf> = container_dirs(lxcpath).into_values().collect();
    let mut bad = Vec::new();
    let read = |p: PathBuf, bad: &mut Vec<String>| {
        dep_file(&p).unwrap_or_else(|e| {
            bad.push(e);
            BTreeSet::new()
        })
    };
    for d in &dirs {
        for c in read(d.join("lxc_snapshots"), &mut bad) {
            if !dirs.contains(&c) {
                bad.push(format!(
                    "{}: lxc_snapshots names {}, which is gone",
                    d.display(),
                    c.display()
                ));
            } else if !read(c.join("lxc_rdepends"), &mut bad).contains(d) {
                bad.push(format!("{}: lxc_rdepends does not name {}", c.display(), d.display()));
            }
        }
        for o in read(d.join("lxc_rdepends"), &mut bad) {
            if !dirs.contains(&o) {
                bad.push(format!(
                    "{}: lxc_rdepends names {}, which is gone",
                    d.display(),
                    o.display()
                ));
            } else if !read(o.join("lxc_snapshots"), &mut bad).contains(d) {
                bad.push(format!("{}: lxc_snapshots does not name {}", o.display(), d.display()));
            }
        }
        if let Ok(spec) = rootfs_spec(d) {
            if let Some((lower, _)) = spec.overlay_parts() {
                // The first of `:`-separated lowers; its container is its parent.
                let lower = Path::new(lower.split(':').next().unwrap_or(lower));
                if let Some(owner) = dirs.iter().find(|o| *o != d && lower.parent() == Some(o.as_path())) {
                    if !read(owner.join("lxc_snapshots"), &mut bad).contains(d) {
                        bad.push(format!(
                            "{}: its lower's container {} does not list it",
                            d.display(),
                            owner.display()
                        ));
                    }
                }
            }
        }
    }
    bad
}

/// Leftovers of killed or crashed commands in an lxcpath: staging dirs
/// (`.strata-*`) and temp files (`*.strata-tmp-*`) in the lxcpath, the
/// container dirs, `snaps` and the snapshot dirs.
pub fn leftovers(lxcpath: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(lxcpath.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            if n.starts_with(".strata-") || n.contains(".strata-tmp-") {
                out.push(p.clone());
            }
            if depth < 3 && e.file_type().is_ok_and(|t| t.is_dir()) && n != "rootfs" && n != "overlay" {
                stack.push((p, depth + 1));
            }
        }
    }
    out.sort();
    out
}

/// Mount points at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let t = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    t.lines()
        .filter_map(|l| l.split(' ').nth(4).map(|m| m.replace("\\040", " ")))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// What a killed command may hold once the next command has run: staging
/// dirs and temp files, mounts below the lxcpath or the run dir, loop
/// devices on files in the lxcpath, scratch records in the run dir; with
/// a pool, its volumes no config names and mounts of them.
pub fn leaks(fx: &Fixture, lxcpath: &Path) -> Vec<String> {
    let mut out: Vec<String> = leftovers(lxcpath).iter().map(|p| p.display().to_string()).collect();
    out.extend(mounts_under(lxcpath).into_iter().map(|m| format!("mount {m}")));
    out.extend(mounts_under(&fx.run_dir).into_iter().map(|m| format!("mount {m}")));
    // Autoclear detaches a device after its last close, not at once.
    for i in 0..100 {
        let devs = crate::attached_under(lxcpath);
        if devs.is_empty() {
            break;
        }
        if i == 99 {
            out.extend(devs.into_iter().map(|d| format!("loop device {d}")));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if let Ok(rd) = std::fs::read_dir(fx.run_dir.join("tmp")) {
        out.extend(rd.flatten().map(|e| format!("scratch {}", e.path().display())));
    }
    if let Some((pool, baseline)) = &fx.pool {
        out.extend(pool.leaks(baseline, &fx.root));
    }
    out
}
