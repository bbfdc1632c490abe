//! The system calls of a container's setup sequence (mounts, device nodes,
//! hostname, pivot_root) behind one trait, so that the setup code in
//! `container` and `cgroup` can be checked against a recording double in
//! unit tests; the real calls are tested on real namespaces.

use crate::sys::{self, cstr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use strata_core::{Error, Result};

/// The setup sequence's system calls.
pub trait Syscall {
    fn mount(
        &mut self,
        src: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> Result<()>;
    fn sethostname(&mut self, name: &str) -> Result<()>;
    /// Detach the mount at `target`.
    fn umount(&mut self, target: &str) -> Result<()> {
        nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).map_err(|e| Error::errno("unmount", target, e))
    }
    fn link_up(&mut self, name: &str) -> Result<()>;
    /// Make a character device node at `target` with exactly `mode`.
    fn mknod_char(&mut self, target: &str, mode: u32, major: u32, minor: u32) -> Result<()> {
        let c = std::ffi::CString::new(target)
            .map_err(|_| Error::errno("create device node", target, nix::errno::Errno::EINVAL))?;
        // SAFETY: mknod on a NUL-terminated path we own; no memory is shared.
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | mode, libc::makedev(major, minor)) } != 0 {
            return Err(Error::errno("create device node", target, nix::errno::Errno::last()));
        }
        // The umask took bits off; the node is in a tmpfs only this setup sees yet.
        std::fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(|e| Error::io("create device node", target, e))
    }
    /// Make `root` the root and detach the old one.
    fn pivot_root(&mut self, root: &OwnedFd, path: &Path) -> Result<()>;
}

pub struct RealSyscall;

impl Syscall for RealSyscall {
    fn mount(
        &mut self,
        src: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> Result<()> {
        sys::mount(src, target, fstype, flags, data)
    }

    fn sethostname(&mut self, name: &str) -> Result<()> {
        nix::unistd::sethostname(name).map_err(|e| Error::errno("set hostname", "", e))
    }

    fn link_up(&mut self, name: &str) -> Result<()> {
        sys::link_up(name)
    }

    fn pivot_root(&mut self, root: &OwnedFd, path: &Path) -> Result<()> {
        // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves the rootfs alone.
        nix::unistd::fchdir(root.as_raw_fd()).map_err(|e| Error::errno("enter rootfs", path, e))?;
        let dot = cstr(".");
        // SAFETY: `dot` is a CString alive for the call; pivot_root only reads the two paths.
        if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } != 0 {
            return Err(Error::errno("pivot_root", path, sys::errno()));
        }
        nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| Error::errno("detach old root", "/", e))?;
        nix::unistd::chdir("/").map_err(|e| Error::errno("chdir", "/", e))
    }
}
