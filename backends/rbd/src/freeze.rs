//! A consistent snapshot of an image in use: its filesystem frozen
//! (FIFREEZE: dirty data written, the journal settled, writers held) for
//! the instant of `rbd snap create`. The freeze goes through a second
//! mount of the same device, which shares the filesystem of the mount the
//! container uses, in whatever mount namespace that one is. That mount is
//! a scratch mount recorded before it is made: a command killed while the
//! filesystem is frozen leaves the record, and the next command's reconcile
//! thaws the filesystem through it ([`thaw`]) and unmounts it.
//!
//! The cgroup freezer would not do: it stops the processes, not the page
//! cache, so what they wrote last may not be on the image yet.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use strata_core::scratch::ScratchMount;
use strata_core::{err, IoContext, Result, RootfsSpec};

/// `_IOWR('X', 119, int)` and `_IOWR('X', 120, int)` of linux/fs.h.
const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;

/// Whether the block device `dev` holds a mounted filesystem: the kernel
/// refuses an exclusive open of a device a filesystem has claimed.
pub fn in_use(dev: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
        .open(dev)
    {
        Ok(_) => false,
        Err(e) => e.raw_os_error() == Some(libc::EBUSY),
    }
}

fn ioctl(dir: &std::fs::File, req: libc::c_ulong) -> std::io::Result<()> {
    // SAFETY: FIFREEZE and FITHAW take no argument (the int is unused); the
    // fd is an open directory of the filesystem for the whole call.
    let r = unsafe { libc::ioctl(dir.as_raw_fd(), req as _, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Thaw the filesystem mounted at `target`, if frozen (reconcile, after a
/// command killed during a freeze; a filesystem that is not frozen says
/// EINVAL, which is fine).
pub fn thaw(target: &Path) {
    if let Ok(dir) = std::fs::File::open(target) {
        match ioctl(&dir, FITHAW) {
            Ok(()) => tracing::info!("thawed the filesystem at {}", target.display()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => tracing::warn!("thaw {}: {e}", target.display()),
        }
    }
}

/// Run `f` with the filesystem (of type `fstype`) on `dev`, the image of
/// rootfs `spec`, frozen; thawed again whatever `f` returns.
pub fn frozen<T>(spec: &RootfsSpec, dev: &str, fstype: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    const OP: &str = "freeze filesystem for a snapshot";
    // Recorded before the mount: reconcile thaws and releases it if we die.
    let tmp = ScratchMount::new(&spec.to_string())?;
    let at = tmp.path();
    // The same device again: the kernel hands back the mounted filesystem.
    // One mounted read-only takes a read-only mount only.
    let mounted = mount(Some(dev), at, Some(fstype), MsFlags::empty(), None::<&str>)
        .or_else(|_| mount(Some(dev), at, Some(fstype), MsFlags::MS_RDONLY, None::<&str>));
    mounted.ctx(OP, at)?;
    let res = (|| {
        let dir = std::fs::File::open(at).ctx(OP, at)?;
        ioctl(&dir, FIFREEZE).ctx(OP, at)?;
        let out = f();
        let thawed = ioctl(&dir, FITHAW);
        let out = out?;
        thawed.map_err(|e| err!(Io, OP, "thaw {}: {e}", at.display()))?;
        Ok(out)
    })();
    // Lazy: only this mount goes, the container's stays.
    if let Err(e) = umount2(at, MntFlags::MNT_DETACH) {
        tracing::warn!("unmount {}: {e}", at.display());
    }
    res
}
