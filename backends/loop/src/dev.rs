//! Loop devices, claimed and configured through the kernel's ioctls.

use nix::errno::Errno;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use strata_core::{err, Error, Result};

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_SET_DIRECT_IO: libc::c_ulong = 0x4C08;
const LOOP_SET_BLOCK_SIZE: libc::c_ulong = 0x4C09;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;

/// How often a free device is claimed again when another process took it first.
const CLAIM_RETRIES: usize = 16;

#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn ioctl_ptr<T>(fd: &File, req: libc::c_ulong, arg: *const T) -> nix::Result<libc::c_int> {
    // SAFETY: `fd` is an open File borrowed for the call; the callers pass `arg` pointing to a live, initialised
    // LoopConfig or LoopInfo64 whose size and layout are what `req` (LOOP_CONFIGURE, LOOP_SET_STATUS64) reads, and
    // the kernel keeps no pointer to it.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) })
}

fn ioctl_val(fd: &File, req: libc::c_ulong, arg: libc::c_ulong) -> nix::Result<libc::c_int> {
    // SAFETY: `fd` is an open File borrowed for the call; every request passed here (LOOP_SET_FD, LOOP_CLR_FD,
    // LOOP_CTL_GET_FREE, BLKFLSBUF, LOOP_SET_BLOCK_SIZE, LOOP_SET_DIRECT_IO) takes its argument by value, so no
    // memory is touched.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) })
}

fn info(flags: u32, image: &Path) -> LoopInfo64 {
    // SAFETY: LoopInfo64 is repr(C) integers and byte arrays only: all-zero is a valid value (and the kernel's
    // default for every field left alone).
    let mut i: LoopInfo64 = unsafe { std::mem::zeroed() };
    i.lo_flags = flags;
    let name = image.as_os_str().as_encoded_bytes();
    let n = name.len().min(63);
    i.lo_file_name[..n].copy_from_slice(&name[..n]);
    i
}

/// A loop device bound to an image. Detached on drop unless [`Attached::keep`]
/// was called (then autoclear detaches it when its last user, the mount, goes).
#[derive(Debug)]
pub struct Attached {
    pub path: PathBuf,
    dev: Option<File>,
    keep: bool,
}

impl Attached {
    /// Let autoclear detach it once the mount is gone.
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// Detach now.
    pub fn detach(self) {}

    /// Drop the device's own cached blocks, read (by a udev probe, say)
    /// while its backing file was still being written.
    pub fn drop_cached_blocks(&self) -> Result<()> {
        const BLKFLSBUF: libc::c_ulong = 0x1261;
        match &self.dev {
            Some(d) => ioctl_val(d, BLKFLSBUF, 0)
                .map(drop)
                .map_err(|e| Error::errno("flush loop device buffers", &self.path, e)),
            None => Ok(()),
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(dev) = self.dev.take() {
            if !self.keep {
                let _ = ioctl_val(&dev, LOOP_CLR_FD, 0);
            }
        }
    }
}

/// Bind `image` to a free loop device: LOOP_CONFIGURE with autoclear, direct
/// I/O and `block_size`, stepping down (no direct I/O, 512-byte blocks, the
/// older SET_FD/SET_STATUS64) where the kernel or backing filesystem refuse.
pub fn attach(image: &Path, readonly: bool, block_size: u32) -> Result<Attached> {
    attach_with(image, readonly, block_size, false)
}

/// [`attach`], with `legacy` forcing the pre-5.8 ioctls (for tests).
pub fn attach_with(image: &Path, readonly: bool, block_size: u32, legacy: bool) -> Result<Attached> {
    attach_opts(image, readonly, block_size, legacy, true)
}

/// [`attach`] through the page cache (no direct I/O): for a short internal
/// use of an image that was just written, whose dirty pages direct I/O
/// would first have to write out.
pub fn attach_buffered(image: &Path, readonly: bool, block_size: u32) -> Result<Attached> {
    attach_opts(image, readonly, block_size, false, false)
}

fn attach_opts(image: &Path, readonly: bool, block_size: u32, legacy: bool, direct_io: bool) -> Result<Attached> {
    const OP: &str = "attach loop device";
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(!readonly)
        .custom_flags(libc::O_CLOEXEC)
        .open(image)
        .map_err(|e| Error::io(OP, image, e))?;
    let ctl = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err!(
                NotFound,
                OP,
                "/dev/loop-control is missing: no loop device support"
            ))
        }
        Err(e) => return Err(Error::io(OP, "/dev/loop-control", e)),
    };
    for _ in 0..CLAIM_RETRIES {
        let n = match ioctl_val(&ctl, LOOP_CTL_GET_FREE, 0) {
            Ok(n) => n,
            Err(e) => {
                return Err(err!(Busy, OP, "no free loop device ({e}); detach some with losetup -d").at(image));
            }
        };
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = match std::fs::OpenOptions::new()
            .read(true)
            .write(!readonly)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            // Not yet made by devtmpfs, or taken and removed meanwhile
            // (a device being removed answers ENXIO).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENXIO) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(Error::io(OP, &path, e)),
        };
        match configure(&dev, &backing, image, readonly, block_size, legacy, direct_io) {
            Ok(()) => {
                tracing::debug!(dev = %path.display(), image = %image.display(), "attached");
                return Ok(Attached {
                    path,
                    dev: Some(dev),
                    keep: false,
                });
            }
            // Another process bound it between GET_FREE and our call, or
            // removed it (ENXIO).
            Err(Errno::EBUSY) | Err(Errno::ENXIO) => continue,
            Err(e) => return Err(Error::errno(OP, &path, e)),
        }
    }
    Err(err!(
        Busy,
        OP,
        "could not claim a free loop device in {CLAIM_RETRIES} attempts: others keep taking them"
    )
    .at(image))
}

fn configure(
    dev: &File,
    backing: &File,
    image: &Path,
    readonly: bool,
    block_size: u32,
    legacy: bool,
    direct_io: bool,
) -> nix::Result<()> {
    let ro = if readonly { LO_FLAGS_READ_ONLY } else { 0 };
    let mut tries = vec![(LO_FLAGS_DIRECT_IO, block_size), (0, block_size)];
    if !direct_io {
        tries.remove(0);
    }
    if legacy {
        tries.clear();
    } else if block_size != 512 {
        tries.push((0, 512));
    }
    for (dio, bs) in tries {
        let cfg = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: bs,
            info: info(LO_FLAGS_AUTOCLEAR | dio | ro, image),
            reserved: [0; 8],
        };
        match ioctl_ptr(dev, LOOP_CONFIGURE, &cfg) {
            Ok(_) => return Ok(()),
            Err(Errno::EINVAL) => continue,
            Err(Errno::ENOTTY) => break,
            Err(e) => return Err(e),
        }
    }
    // Kernels before 5.8: bind, then set flags, block size and direct I/O.
    ioctl_val(dev, LOOP_SET_FD, backing.as_raw_fd() as libc::c_ulong)?;
    let inf = info(LO_FLAGS_AUTOCLEAR | ro, image);
    if let Err(e) = ioctl_ptr(dev, LOOP_SET_STATUS64, &inf) {
        let _ = ioctl_val(dev, LOOP_CLR_FD, 0);
        return Err(e);
    }
    if ioctl_val(dev, LOOP_SET_BLOCK_SIZE, block_size as libc::c_ulong).is_err() {
        let _ = ioctl_val(dev, LOOP_SET_BLOCK_SIZE, 512);
    }
    if direct_io {
        let _ = ioctl_val(dev, LOOP_SET_DIRECT_IO, 1);
    }
    Ok(())
}

/// The backing file of loop device `dev` (`/dev/loopN`), if bound.
pub fn backing_file(dev: &Path) -> Option<PathBuf> {
    let name = dev.file_name()?.to_str()?;
    let s = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(s.trim_end_matches('\n')))
}

/// Detach `dev` if it is still bound to `image` (autoclear normally has).
pub fn detach_if_bound(dev: &Path, image: &Path) {
    let canon = std::fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf());
    for _ in 0..50 {
        match backing_file(dev) {
            Some(b) if b == canon || b == image => {}
            _ => return,
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if let Ok(f) = File::open(dev) {
        let _ = ioctl_val(&f, LOOP_CLR_FD, 0);
    }
}

/// A loop device bound to an image, and whether this mount namespace
/// uses it (mounted here, or held by another block device).
struct Bound {
    dev: PathBuf,
    in_use_here: bool,
}

/// Every loop device bound to `image` (also once it is deleted: the kernel
/// then shows `IMAGE (deleted)`).
fn bound(image: &Path) -> Vec<Bound> {
    let canon = std::fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf());
    let names = [image.to_path_buf(), canon];
    let deleted: Vec<String> = names.iter().map(|n| format!("{} (deleted)", n.display())).collect();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    let mut mounts = None;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        let b = b.trim_end_matches('\n');
        if !names.iter().any(|n| Path::new(b) == n) && !deleted.iter().any(|d| d == b) {
            continue;
        }
        let dev = PathBuf::from(format!("/dev/{name}"));
        let devs = dev.display().to_string();
        let mounts = mounts.get_or_insert_with(strata_core::mountinfo::mounts);
        let mounted = mounts.iter().any(|m| m.source == devs);
        let held = std::fs::read_dir(e.path().join("holders")).is_ok_and(|mut d| d.next().is_some());
        out.push(Bound {
            dev,
            in_use_here: mounted || held,
        });
    }
    out
}

/// Detach every loop device bound to `image` that nothing holds: not
/// mounted, no holders. One in use is left alone (the kernel would only
/// mark it autoclear anyway).
pub fn detach_unused(image: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for b in bound(image).into_iter().filter(|b| !b.in_use_here) {
        if let Ok(f) = File::open(&b.dev) {
            if ioctl_val(&f, LOOP_CLR_FD, 0).is_ok() {
                tracing::info!(dev = %b.dev.display(), image = %image.display(), "detached a leftover loop device");
                out.push(b.dev);
            }
        }
    }
    out
}

/// Wait until no loop device is bound to `image`, so that a mount never
/// makes a second live filesystem on the same image (two superblocks on
/// one ext4 or xfs image corrupt it). A device mounted here is a live use:
/// refused at once. One that is not is a mount that has ended here but is
/// still pinned by a copy of this mount namespace taken just before (a
/// container being started clones the host's mounts, and releases them
/// when it drops its old root): that ends in milliseconds, so wait for it.
pub fn wait_unbound(image: &Path, timeout: std::time::Duration) -> Result<()> {
    const OP: &str = "mount loop rootfs";
    let until = std::time::Instant::now() + timeout;
    loop {
        let b = bound(image);
        let Some(first) = b.first() else { return Ok(()) };
        if let Some(live) = b.iter().find(|b| b.in_use_here) {
            return Err(err!(
                Busy,
                OP,
                "the image is in use through {} (mounted or held here); a second mount of it would corrupt it",
                live.dev.display()
            )
            .at(image));
        }
        if std::time::Instant::now() >= until {
            return Err(err!(
                Busy,
                OP,
                "the image is still bound to {} after {} s (its filesystem is in use in another mount namespace); a second mount of it would corrupt it",
                first.dev.display(),
                timeout.as_secs()
            )
            .at(image));
        }
        // A device nobody holds any more but that autoclear has not yet
        // released is let go at once; the others are waited for.
        detach_unused(image);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
