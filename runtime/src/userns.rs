//! User namespaces for unprivileged containers: a namespace fd with a given
//! id map, idmapped bind mounts (`mount_setattr` with `MOUNT_ATTR_IDMAP`)
//! and a probe for them.

use rustix::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use rustix::mount::{MoveMountFlags, OpenTreeFlags};
use std::path::Path;
use strata_core::err;
use strata_core::error::{Error, IoContext, Result};
use strata_core::idmap::IdMap;

pub use strata_core::idmap::write_maps;

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn mount_setattr_idmap(tree: BorrowedFd, userns: BorrowedFd) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: a valid fd, a NUL-terminated empty path and a correctly sized struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A detached clone of the mount at `src` with ids mapped through `userns`.
fn idmapped_tree(src: &Path, userns: BorrowedFd) -> Result<OwnedFd> {
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        src,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| Error::io("open_tree", src, e.into()))?;
    mount_setattr_idmap(tree.as_fd(), userns).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => "the filesystem does not support idmapped mounts",
            Some(libc::EPERM) => "not permitted (idmapped mounts of host filesystems need root)",
            _ => "",
        };
        let mut er = Error::io("idmap mount", src, e);
        if !why.is_empty() {
            er.msg = format!("{why}: {}", er.msg);
            er.kind = strata_core::ErrorKind::Unsupported;
        }
        er
    })?;
    Ok(tree)
}

/// Bind `src` on `dst` with its ids mapped through the user namespace
/// `userns` (files owned by host id H appear owned by the id H maps to).
pub fn idmapped_bind(src: &Path, dst: &Path, userns: BorrowedFd) -> Result<()> {
    let _s = tracing::debug_span!("idmapped bind", src = %src.display(), dst = %dst.display()).entered();
    let tree = idmapped_tree(src, userns)?;
    rustix::mount::move_mount(
        tree.as_fd(),
        c"",
        rustix::fs::CWD,
        dst,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| Error::io("move_mount", dst, e.into()))
}

/// Whether an idmapped mount of `path` can be made here (kernel, filesystem
/// and privileges). Tries on a detached clone, so nothing is left mounted.
pub fn supports_idmapped(path: &Path) -> bool {
    let map = match IdMap::parse(["b 0 100000 65536"]) {
        Ok(m) => m,
        Err(_) => return false,
    };
    if !strata_core::paths::is_root() {
        // Host filesystems need CAP_SYS_ADMIN in the initial namespace.
        return false;
    }
    let ns = match userns_fd(&map) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!("no user namespace for the probe: {e}");
            return false;
        }
    };
    match idmapped_tree(path, ns.as_fd()) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!("no idmapped mounts on {}: {e}", path.display());
            false
        }
    }
}

/// A user namespace fd with `map`: a child unshares CLONE_NEWUSER, the
/// parent writes its maps (newuidmap/newgidmap for non-root) and keeps a
/// handle on its namespace; the child then exits.
pub fn userns_fd(map: &IdMap) -> Result<OwnedFd> {
    const OP: &str = "create user namespace";
    let _s = tracing::debug_span!("userns fd").entered();
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(OP, "pipe")?;
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(OP, "pipe")?;
    // SAFETY: the child only makes async-signal-safe calls and exits with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io(OP, "fork", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        use std::os::fd::AsRawFd;
        // SAFETY: in the forked child, which only makes async-signal-safe calls (close, unshare, write, read,
        // _exit): the closed fds are this child's copies of open pipe ends, never used again because _exit follows
        // without running destructors; `ok` and `b` are live single bytes.
        unsafe {
            // Our copies of the parent's ends, or the read below never sees EOF.
            libc::close(go_w.as_raw_fd());
            libc::close(ready_r.as_raw_fd());
            let ok: u8 = if libc::unshare(libc::CLONE_NEWUSER) == 0 { 1 } else { 0 };
            libc::write(ready_w.as_raw_fd(), &ok as *const u8 as *const _, 1);
            let mut b = 0u8;
            // Wait until the parent has what it needs: its byte, or EOF if it
            // died. Not EOF alone: a child another thread forks meanwhile
            // holds a copy of the write end, and two such children would
            // wait on each other for ever.
            libc::read(go_r.as_raw_fd(), &mut b as *mut u8 as *mut _, 1);
            libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(go_r);
    let reap = |go_w: OwnedFd| {
        let _ = nix::unistd::write(&go_w, b"g");
        drop(go_w);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    };
    let mut b = [0u8; 1];
    let n = std::io::Read::read(&mut std::fs::File::from(ready_r), &mut b).unwrap_or(0);
    if n != 1 || b[0] != 1 {
        reap(go_w);
        return Err(err!(
            PermissionDenied,
            OP,
            "unshare(CLONE_NEWUSER) failed in the child (user namespaces disabled?)"
        ));
    }
    let r = write_maps(pid, map).and_then(|()| {
        let p = format!("/proc/{pid}/ns/user");
        std::fs::File::open(&p).ctx(OP, &p).map(OwnedFd::from)
    });
    reap(go_w);
    r
}

/// For the container's init, right after the parent wrote its maps: become
/// root of the new user namespace (its ids are unmapped until then).
pub fn become_root() -> Result<()> {
    nix::unistd::setresgid(0.into(), 0.into(), 0.into()).ctx("setresgid", "0")?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into()).ctx("setresuid", "0")?;
    // Drop supplementary groups of the host (allowed: root writes maps without setgroups "deny").
    let _ = nix::unistd::setgroups(&[]);
    Ok(())
}

/// Where [`idmap_rootfs`] puts the idmapped view of a mounted rootfs.
pub fn idmapped_path(mounted: &Path) -> std::path::PathBuf {
    let mut s = mounted.as_os_str().to_owned();
    s.push(".idmapped");
    s.into()
}

/// How a container's rootfs is presented to its user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsView {
    /// Use the mounted rootfs as it is (privileged, or owners already shifted).
    AsIs,
    /// An idmapped bind of it at this path: use this as the root, and
    /// [`remove_idmapped`] it on teardown.
    Idmapped(std::path::PathBuf),
}

/// Decide and prepare the rootfs view of container dir `dir` whose rootfs
/// is mounted at `mounted`, for `map`: as is when its owners are already
/// the map's host ids (the marker or the top directory's owner says so),
/// else an idmapped bind when the kernel and filesystem allow it, else a
/// clear error pointing at `strata convert`. Never changes owners on disk.
pub fn idmap_rootfs(dir: &Path, mounted: &Path, map: &IdMap) -> Result<RootfsView> {
    use strata_core::shift::{ownership, Ownership};
    const OP: &str = "idmap rootfs";
    if map.is_empty() || ownership(dir, mounted, map)? == Ownership::Shifted {
        return Ok(RootfsView::AsIs);
    }
    if !supports_idmapped(mounted) {
        return Err(err!(
            Unsupported,
            OP,
            "the rootfs is owned by container ids and idmapped mounts are not available here: run strata convert --to-unprivileged"
        )
        .at(mounted));
    }
    let ns = userns_fd(map)?;
    let view = idmapped_path(mounted);
    std::fs::create_dir(&view).ctx(OP, &view)?;
    if let Err(e) = idmapped_bind(mounted, &view, ns.as_fd()) {
        let _ = std::fs::remove_dir(&view);
        return Err(e);
    }
    Ok(RootfsView::Idmapped(view))
}

/// Undo [`RootfsView::Idmapped`]: detach the mount and remove its directory.
pub fn remove_idmapped(view: &Path) -> Result<()> {
    match nix::mount::umount2(view, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::errno("unmount idmapped rootfs", view, e)),
    }
    match std::fs::remove_dir(view) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove idmapped rootfs", view, e)),
        _ => Ok(()),
    }
}

/// Wrap a raw fd received from elsewhere (e.g. a namespace fd passed by the runtime).
///
/// # Safety
/// `fd` must be an open fd owned by the caller.
pub unsafe fn owned(fd: i32) -> OwnedFd {
    OwnedFd::from_raw_fd(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    #[test]
    fn userns_fd_and_idmapped_bind_as_root() {
        if !strata_core::paths::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let map = IdMap::parse(["b 0 100000 65536"]).unwrap();
        let ns = userns_fd(&map).unwrap();
        // The namespace has the map we asked for.
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let src = dir.path().join("src");
        let dst = dir.path().join("dst");
        std::fs::create_dir(&src).unwrap();
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(src.join("f"), b"x").unwrap();
        std::os::unix::fs::chown(src.join("f"), Some(5), Some(7)).unwrap();
        if !supports_idmapped(&src) {
            eprintln!("skipped: no idmapped mounts on {}", src.display());
            return;
        }
        idmapped_bind(&src, &dst, ns.as_fd()).unwrap();
        let _g = Umount(dst.clone());
        let md = std::fs::metadata(dst.join("f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (100005, 100007));
        // The source is unchanged.
        let md = std::fs::metadata(src.join("f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (5, 7));
    }

    #[test]
    fn rootfs_view_idmapped_or_as_is() {
        if !strata_core::paths::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        std::fs::write(rootfs.join("f"), b"x").unwrap();
        std::os::unix::fs::chown(rootfs.join("f"), Some(1000), Some(1000)).unwrap();
        let map = IdMap::parse(["b 0 100000 65536"]).unwrap();
        assert_eq!(
            idmap_rootfs(dir.path(), &rootfs, &IdMap::default()).unwrap(),
            RootfsView::AsIs
        );
        if !supports_idmapped(&rootfs) {
            eprintln!("skipped: no idmapped mounts on {}", rootfs.display());
            return;
        }
        let RootfsView::Idmapped(view) = idmap_rootfs(dir.path(), &rootfs, &map).unwrap() else {
            panic!("a privileged-layout rootfs needs an idmapped view");
        };
        let _g = Umount(view.clone());
        let md = std::fs::metadata(view.join("f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (101000, 101000));
        assert_eq!(std::fs::metadata(&view).unwrap().uid(), 100000);
        remove_idmapped(&view).unwrap();
        assert!(!view.exists());
        // Once shifted (marker), the rootfs is used as it is.
        strata_core::shift::record_shifted(dir.path(), &map).unwrap();
        assert_eq!(idmap_rootfs(dir.path(), &rootfs, &map).unwrap(), RootfsView::AsIs);
    }
}
