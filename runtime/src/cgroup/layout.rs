//! The host's cgroup hierarchies, from /proc/self/mountinfo and
//! /proc/self/cgroup (and /proc/1/cgroup: LXC bases a root-started
//! container on init's cgroups, see [`Hierarchy::base`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use strata_core::{err, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// A legacy hierarchy (`cgroup` filesystem).
    V1,
    /// The unified hierarchy (`cgroup2` filesystem).
    V2,
}

/// How the host mounts its cgroups, as LXC names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutKind {
    /// v1 hierarchies only.
    Legacy,
    /// v1 hierarchies plus a unified tree (usually empty of controllers).
    Hybrid,
    /// cgroup2 only.
    Unified,
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    /// v1: the controllers as /proc/self/cgroup lists them (`cpu`,
    /// `name=systemd`); v2: empty (the unified tree's controllers depend on
    /// the cgroup: see [`Hierarchy::controllers_at`]).
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted.
    pub mount: PathBuf,
    /// The cgroup mounted there (mountinfo's root field, `/` unless bound).
    pub mount_root: String,
    /// The caller's cgroup, as /proc/self/cgroup gives it.
    pub own: String,
    /// Init's cgroup with a trailing `/init.scope` pruned, when known.
    pub init: Option<String>,
}

impl Hierarchy {
    /// The directory of cgroup `cg` (a /proc/PID/cgroup path), `None` when
    /// it lies outside what is mounted.
    pub fn dir_of(&self, cg: &str) -> Option<PathBuf> {
        let root = self.mount_root.trim_end_matches('/');
        let rest = cg.strip_prefix(root)?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        let rest = rest.trim_start_matches('/');
        if rest.split('/').any(|c| c == "..") {
            return None;
        }
        Some(if rest.is_empty() {
            self.mount.clone()
        } else {
            self.mount.join(rest)
        })
    }

    /// The cgroup a container is made under, as LXC 5 picks it: init's
    /// cgroup for root unless `lxc.cgroup.relative` (root escapes to it),
    /// the caller's own otherwise.
    pub fn base(&self, root: bool, relative: bool) -> Option<PathBuf> {
        let cg = match (&self.init, root && !relative) {
            (Some(i), true) => i.as_str(),
            _ => self.own.as_str(),
        };
        self.dir_of(cg)
    }

    /// Whether this v1 hierarchy holds `controller` (`memory`, `name=systemd`).
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// The controllers a child of `dir` can use in the unified tree: those
    /// listed in `dir/cgroup.controllers`.
    pub fn controllers_at(&self, dir: &Path) -> Vec<String> {
        super::read_file(dir, "cgroup.controllers")
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The mount's name under /sys/fs/cgroup (`cpu`, `systemd`, `unified`),
    /// which LXC also uses inside the container.
    pub fn mount_name(&self) -> String {
        self.mount
            .strip_prefix("/sys/fs/cgroup")
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty() || self.version == Version::V2)
            .unwrap_or_else(|| {
                self.mount
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
    }
}

/// Every hierarchy the caller is in and can see mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub hierarchies: Vec<Hierarchy>,
}

use strata_core::mountinfo::{self, Mount};

/// `/proc/PID/cgroup` lines: (hierarchy id, controllers, path).
fn parse_proc_cgroup(text: &str) -> Vec<(String, Vec<String>, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let id = it.next()?.to_string();
            let ctl = it.next()?;
            let path = it.next()?.to_string();
            let ctl = ctl.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect();
            Some((id, ctl, path))
        })
        .collect()
}

/// LXC's `prune_init_scope`: init's cgroup without a trailing `/init.scope`.
fn prune_init_scope(cg: &str) -> String {
    match cg.strip_suffix("/init.scope") {
        Some("") => "/".to_string(),
        Some(p) => p.to_string(),
        None => cg.to_string(),
    }
}

impl Layout {
    /// The hierarchies of the calling process.
    pub fn detect() -> Result<Layout> {
        let mi = strata_core::procfs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| super::io_err("read mount table", Path::new("/proc/self/mountinfo"), e))?;
        let me = strata_core::procfs::read_to_string("/proc/self/cgroup")
            .map_err(|e| super::io_err("read own cgroups", Path::new("/proc/self/cgroup"), e))?;
        let init = strata_core::procfs::read_to_string("/proc/1/cgroup").ok();
        Ok(Layout::parse(&mi, &me, init.as_deref()))
    }

    /// The layout from the text of /proc/self/mountinfo, /proc/self/cgroup
    /// and (when readable) /proc/1/cgroup. Mounts under /sys/fs/cgroup win
    /// over other mounts of the same hierarchy; a hierarchy whose mounted
    /// root does not contain the caller's cgroup is left out (as LXC does).
    pub fn parse(mountinfo: &str, self_cgroup: &str, init_cgroup: Option<&str>) -> Layout {
        let mounts = mountinfo::parse(mountinfo);
        let init: HashMap<Vec<String>, String> = init_cgroup
            .map(parse_proc_cgroup)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, _, p)| !p.starts_with("/.."))
            .map(|(_, c, p)| (c, prune_init_scope(&p)))
            .collect();
        let mut hierarchies = Vec::new();
        for (id, ctl, own) in parse_proc_cgroup(self_cgroup) {
            let v2 = id == "0" && ctl.is_empty();
            let cands = mounts.iter().filter(|m| {
                if v2 {
                    m.fstype == "cgroup2"
                } else {
                    m.fstype == "cgroup" && ctl.iter().all(|c| m.super_options.contains(c))
                }
            });
            let mut cands: Vec<&Mount> = cands.collect();
            cands.sort_by_key(|m| !m.mount_point.starts_with("/sys/fs/cgroup"));
            let h = cands.into_iter().find_map(|m| {
                let h = Hierarchy {
                    version: if v2 { Version::V2 } else { Version::V1 },
                    controllers: ctl.clone(),
                    mount: m.mount_point.clone(),
                    mount_root: m.root.clone(),
                    own: own.clone(),
                    init: init.get(&ctl).cloned(),
                };
                h.dir_of(&own).map(|_| h)
            });
            if let Some(h) = h {
                if !hierarchies.iter().any(|x: &Hierarchy| x.mount == h.mount) {
                    hierarchies.push(h);
                }
            }
        }
        Layout { hierarchies }
    }

    pub fn unified(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.version == Version::V2)
    }

    /// The v1 hierarchy holding `controller`.
    pub fn v1(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| h.version == Version::V1 && h.has(controller))
    }

    pub fn kind(&self) -> LayoutKind {
        let v1 = self.hierarchies.iter().any(|h| h.version == Version::V1);
        match (v1, self.unified().is_some()) {
            (true, true) => LayoutKind::Hybrid,
            (true, false) => LayoutKind::Legacy,
            _ => LayoutKind::Unified,
        }
    }

    /// An error when there is nothing to work with.
    pub fn require(&self) -> Result<()> {
        if self.hierarchies.is_empty() {
            return Err(err!(
                NotFound,
                "cgroups",
                "no cgroup hierarchy is mounted (checked /proc/self/mountinfo against /proc/self/cgroup)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const HYBRID_MI: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 /process_api /mnt/mem\\040x rw,relatime - cgroup cgroup rw,memory
";
    pub(crate) const HYBRID_SELF: &str = "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    #[test]
    fn cgroup_layout_hybrid() {
        let init = "9:name=systemd:/init.scope\n4:memory:/\n2:cpuacct:/\n1:cpu:/\n0::/init.scope\n";
        let l = Layout::parse(HYBRID_MI, HYBRID_SELF, Some(init));
        assert_eq!(l.kind(), LayoutKind::Hybrid);
        assert_eq!(l.hierarchies.len(), 5);
        let mem = l.v1("memory").unwrap();
        assert_eq!(mem.mount, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(
            mem.dir_of(&mem.own).unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(mem.base(true, false).unwrap(), Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(
            mem.base(true, true).unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(
            mem.base(false, false).unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        let sd = l.v1("name=systemd").unwrap();
        assert_eq!(sd.init.as_deref(), Some("/"));
        assert_eq!(sd.mount_name(), "systemd");
        let u = l.unified().unwrap();
        assert_eq!(u.mount_name(), "unified");
        assert_eq!(u.init.as_deref(), Some("/"));
    }

    #[test]
    fn cgroup_layout_bound_root_and_escapes() {
        let mi = "99 1 0:32 /process_api /mnt/mem\\040x rw - cgroup cgroup rw,memory\n";
        let l = Layout::parse(mi, "4:memory:/process_api/abc\n", None);
        let m = &l.hierarchies[0];
        assert_eq!(m.mount, Path::new("/mnt/mem x"));
        assert_eq!(m.dir_of("/process_api/abc").unwrap(), Path::new("/mnt/mem x/abc"));
        assert!(m.dir_of("/other").is_none());
        assert!(m.dir_of("/process_apix").is_none());
        // Outside the mounted root: left out.
        let l = Layout::parse(mi, "4:memory:/elsewhere\n", None);
        assert!(l.hierarchies.is_empty());
        assert!(l.require().is_err());
    }

    #[test]
    fn cgroup_layout_pure_v2() {
        let mi = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = Layout::parse(
            mi,
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            Some("0::/init.scope\n"),
        );
        assert_eq!(l.kind(), LayoutKind::Unified);
        let u = l.unified().unwrap();
        assert_eq!(u.mount_name(), "");
        assert_eq!(u.base(true, false).unwrap(), Path::new("/sys/fs/cgroup"));
        assert_eq!(
            u.base(false, false).unwrap(),
            Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope")
        );
    }
}
