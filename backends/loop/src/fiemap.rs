//! The shared extents of a file (FS_IOC_FIEMAP): how much of a loop image
//! it shares with reflinked copies, for its exclusive usage.

use nix::errno::Errno;
use std::fs::File;
use std::os::fd::AsRawFd;

const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
const FIEMAP_EXTENT_SHARED: u32 = 0x2000;
const BATCH: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Extent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

#[repr(C)]
struct Fiemap {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [Extent; BATCH],
}

/// Bytes of `f`'s extents that are shared with other files. `Err` where
/// the filesystem cannot map extents.
pub fn shared_bytes(f: &File) -> Result<u64, Errno> {
    let mut shared = 0u64;
    let mut start = 0u64;
    loop {
        let mut m = Box::new(Fiemap {
            start,
            length: u64::MAX - start,
            flags: 0,
            mapped_extents: 0,
            extent_count: BATCH as u32,
            reserved: 0,
            extents: [Extent::default(); BATCH],
        });
        // SAFETY: `f` is an open File borrowed for the call; `m` is an initialised, exclusively borrowed repr(C)
        // struct fiemap with room for `extent_count` extents, which is all the kernel writes.
        Errno::result(unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FIEMAP as _, &mut *m) })?;
        let n = (m.mapped_extents as usize).min(BATCH);
        if n == 0 {
            return Ok(shared);
        }
        for e in &m.extents[..n] {
            if e.flags & FIEMAP_EXTENT_SHARED != 0 {
                shared += e.length;
            }
        }
        let last = m.extents[n - 1];
        if last.flags & FIEMAP_EXTENT_LAST != 0 {
            return Ok(shared);
        }
        start = last.logical + last.length;
    }
}
