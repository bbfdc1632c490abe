//! `lxc.mount.auto = cgroup[-full][:mixed|:ro|:rw][:force]` inside the
//! container, as LXC 5's cgfsng_mount does it in a cgroup namespace.
//!
//! LXC 5 leaves the mounting to the container's init (safe in a cgroup
//! namespace) unless `:force` is given, init loses CAP_SYS_ADMIN, or the
//! host is cgroup2-only (most inits then fail to boot otherwise). When it
//! mounts: on a cgroup2-only host, the cgroup2 filesystem at
//! /sys/fs/cgroup; otherwise a tmpfs (`size=10240k,mode=755`) at
//! /sys/fs/cgroup and in it, for every hierarchy, a directory named as on
//! the host (`cpu`, `memory`, `systemd`, `unified`...) with a fresh cgroup
//! (or cgroup2) mount, which the cgroup namespace roots at the container's
//! own cgroup. Read-only for `ro`; `mixed` is read-write in a cgroup
//! namespace (nothing above the container's cgroup is visible to protect),
//! and `cgroup-full` is the same as `cgroup` there. LXC 5 does not remount
//! the tmpfs read-only afterwards; neither does strata.

use super::{Layout, LayoutKind, Version};
use crate::conf::Create;
use crate::sys::{fd_path, open_in_root};
use crate::syscall::Syscall;
use rustix::fs::Mode;
use std::os::fd::OwnedFd;
use strata_core::{Error, Result};

/// Where the cgroups go in the rootfs.
const TOP: &str = "sys/fs/cgroup";

/// The access part of `cgroup:ACCESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupAccess {
    Mixed,
    Ro,
    Rw,
}

/// `lxc.mount.auto = cgroup[-full][:mixed|:ro|:rw][:force]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupAuto {
    /// `None`: no access given.
    pub mode: Option<CgroupAccess>,
    /// `cgroup-full`: the same as `cgroup` in a cgroup namespace.
    pub full: bool,
    pub force: bool,
}

/// The access LXC ends up with for `auto`: no access given means rw when
/// init keeps CAP_SYS_ADMIN (it could remount anyway), mixed otherwise.
pub fn auto_mode(auto: &CgroupAuto, keeps_sys_admin: bool) -> CgroupAccess {
    auto.mode.unwrap_or(if keeps_sys_admin {
        CgroupAccess::Rw
    } else {
        CgroupAccess::Mixed
    })
}

/// Whether LXC mounts anything for `auto` (see the module doc).
pub fn wants_mount(auto: &CgroupAuto, keeps_sys_admin: bool, layout: &Layout) -> bool {
    auto.force || !keeps_sys_admin || layout.kind() == LayoutKind::Unified
}

/// Mount the container's cgroups at ROOT/sys/fs/cgroup. Runs in init,
/// in the container's mount namespace, after init joined its cgroups and
/// unshared its cgroup namespace. `root` is the rootfs (paths in it are
/// resolved without following its symlinks out of it); `layout` the
/// hierarchies the container was put in.
pub fn mount_in_container(
    auto: &CgroupAuto,
    keeps_sys_admin: bool,
    layout: &Layout,
    root: &OwnedFd,
    sys: &mut impl Syscall,
) -> Result<()> {
    if !wants_mount(auto, keeps_sys_admin, layout) || layout.hierarchies.is_empty() {
        return Ok(());
    }
    let mode = auto_mode(auto, keeps_sys_admin);
    let ro = if mode == CgroupAccess::Ro { libc::MS_RDONLY } else { 0 };
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME;
    let top = open_in_root(root, TOP, Some(Create::Dir))?;
    if layout.kind() == LayoutKind::Unified {
        return sys.mount(Some("cgroup2"), &fd_path(&top), Some("cgroup2"), flags | ro, None);
    }
    sys.mount(
        Some("tmpfs"),
        &fd_path(&top),
        Some("tmpfs"),
        flags,
        Some("size=10240k,mode=755"),
    )?;
    // Reopen: the fd above is the directory under the new tmpfs.
    let top = open_in_root(root, TOP, None)?;
    for h in &layout.hierarchies {
        let name = h.mount_name();
        if name.is_empty() || name.contains('/') {
            continue;
        }
        match rustix::fs::mkdirat(&top, name.as_str(), Mode::empty()) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(Error::io(
                    "create cgroup mount point",
                    format!("/{TOP}/{name}"),
                    e.into(),
                ))
            }
        }
        let at = open_in_root(root, &format!("{TOP}/{name}"), None)?;
        match h.version {
            Version::V1 => {
                let data = h.controllers.join(",");
                sys.mount(Some("cgroup"), &fd_path(&at), Some("cgroup"), flags | ro, Some(&data))?
            }
            Version::V2 => sys.mount(Some("cgroup2"), &fd_path(&at), Some("cgroup2"), flags | ro, None)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::layout::Hierarchy;
    use super::*;
    use std::path::{Path, PathBuf};

    #[derive(Default)]
    struct Rec(Vec<(String, PathBuf, String, u64, String)>);

    impl Syscall for Rec {
        fn mount(
            &mut self,
            src: Option<&str>,
            target: &str,
            fstype: Option<&str>,
            flags: u64,
            data: Option<&str>,
        ) -> Result<()> {
            let t = std::fs::read_link(target).unwrap();
            self.0.push((
                src.unwrap_or("").into(),
                t,
                fstype.unwrap_or("").into(),
                flags,
                data.unwrap_or("").into(),
            ));
            Ok(())
        }
        fn sethostname(&mut self, _: &str) -> Result<()> {
            Ok(())
        }
        fn link_up(&mut self, _: &str) -> Result<()> {
            Ok(())
        }
        fn pivot_root(&mut self, _: &OwnedFd, _: &Path) -> Result<()> {
            Ok(())
        }
    }

    fn h(v: Version, mount: &str, ctl: &[&str]) -> Hierarchy {
        Hierarchy {
            version: v,
            controllers: ctl.iter().map(|s| s.to_string()).collect(),
            mount: mount.into(),
            mount_root: "/".into(),
            own: "/".into(),
            init: None,
        }
    }

    fn auto(mode: Option<CgroupAccess>, force: bool) -> CgroupAuto {
        CgroupAuto {
            mode,
            full: false,
            force,
        }
    }

    #[test]
    fn cgroup_mount_hybrid_force() {
        let t = tempfile::tempdir().unwrap();
        let root = crate::sys::open_dir(t.path()).unwrap();
        let l = Layout {
            hierarchies: vec![
                h(Version::V1, "/sys/fs/cgroup/cpu", &["cpu"]),
                h(Version::V1, "/sys/fs/cgroup/systemd", &["name=systemd"]),
                h(Version::V2, "/sys/fs/cgroup/unified", &[]),
            ],
        };
        let mut r = Rec::default();
        // Without force, init keeping CAP_SYS_ADMIN: nothing (init mounts).
        mount_in_container(&auto(Some(CgroupAccess::Mixed), false), true, &l, &root, &mut r).unwrap();
        assert!(r.0.is_empty());
        mount_in_container(&auto(Some(CgroupAccess::Ro), true), true, &l, &root, &mut r).unwrap();
        let top = t.path().join("sys/fs/cgroup");
        let base = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME;
        assert_eq!(
            r.0[0],
            (
                "tmpfs".into(),
                top.clone(),
                "tmpfs".into(),
                base,
                "size=10240k,mode=755".into()
            )
        );
        assert_eq!(
            r.0[1],
            (
                "cgroup".into(),
                top.join("cpu"),
                "cgroup".into(),
                base | libc::MS_RDONLY,
                "cpu".into()
            )
        );
        assert_eq!(r.0[2].4, "name=systemd");
        assert_eq!(r.0[2].1, top.join("systemd"));
        assert_eq!(
            r.0[3],
            (
                "cgroup2".into(),
                top.join("unified"),
                "cgroup2".into(),
                base | libc::MS_RDONLY,
                "".into()
            )
        );
        assert_eq!(r.0.len(), 4);
        // Mixed: read-write in a cgroup namespace; no access given and no CAP_SYS_ADMIN: mixed, mounted.
        let mut r = Rec::default();
        mount_in_container(&auto(None, false), false, &l, &root, &mut r).unwrap();
        assert_eq!(r.0[1].3, base);
    }

    #[test]
    fn cgroup_mount_pure_v2() {
        let t = tempfile::tempdir().unwrap();
        let root = crate::sys::open_dir(t.path()).unwrap();
        let l = Layout {
            hierarchies: vec![h(Version::V2, "/sys/fs/cgroup", &[])],
        };
        let mut r = Rec::default();
        mount_in_container(&auto(Some(CgroupAccess::Mixed), false), true, &l, &root, &mut r).unwrap();
        assert_eq!(r.0.len(), 1);
        assert_eq!(r.0[0].1, t.path().join("sys/fs/cgroup"));
        assert_eq!(r.0[0].2, "cgroup2");
    }
}
