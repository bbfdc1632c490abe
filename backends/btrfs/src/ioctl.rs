//! The kernel's btrfs ioctls, declared here (no C library).

use std::os::fd::{AsRawFd, BorrowedFd};

const MAGIC: u8 = 0x94;
pub const SUBVOL_RDONLY: u64 = 1 << 1;
/// The inode number of every subvolume's root directory.
pub const FIRST_FREE_OBJECTID: u64 = 256;
pub const BTRFS_SUPER_MAGIC: i64 = 0x9123683e;
const QUOTA_TREE_OBJECTID: u64 = 8;
const QGROUP_STATUS_KEY: u32 = 240;
const QGROUP_INFO_KEY: u32 = 242;
const QGROUP_STATUS_FLAG_INCONSISTENT: u64 = 1 << 1;

#[repr(C)]
pub struct VolArgs {
    pub fd: i64,
    pub name: [u8; 4088],
}

#[repr(C)]
pub struct VolArgsV2 {
    pub fd: i64,
    pub transid: u64,
    pub flags: u64,
    pub unused: [u64; 4],
    pub name: [u8; 4040],
}

#[repr(C)]
pub struct InoLookupArgs {
    pub treeid: u64,
    pub objectid: u64,
    pub name: [u8; 4080],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SearchKey {
    pub tree_id: u64,
    pub min_objectid: u64,
    pub max_objectid: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    pub min_transid: u64,
    pub max_transid: u64,
    pub min_type: u32,
    pub max_type: u32,
    pub nr_items: u32,
    pub unused: u32,
    pub unused1: [u64; 4],
}

#[repr(C)]
pub struct SearchArgs {
    pub key: SearchKey,
    pub buf: [u8; 4096 - std::mem::size_of::<SearchKey>()],
}

nix::ioctl_write_ptr!(snap_destroy, MAGIC, 15, VolArgs);
nix::ioctl_write_ptr!(subvol_create_v2, MAGIC, 24, VolArgsV2);
nix::ioctl_write_ptr!(snap_create_v2, MAGIC, 23, VolArgsV2);
nix::ioctl_read!(subvol_getflags, MAGIC, 25, u64);
nix::ioctl_write_ptr!(subvol_setflags, MAGIC, 26, u64);
nix::ioctl_readwrite!(ino_lookup, MAGIC, 18, InoLookupArgs);
nix::ioctl_readwrite!(tree_search, MAGIC, 17, SearchArgs);
nix::ioctl_read_buf!(fs_info, MAGIC, 31, u8);

fn put_name(dst: &mut [u8], name: &[u8]) -> nix::Result<()> {
    if name.is_empty() || name.len() >= dst.len() || name.contains(&b'/') || name.contains(&0) {
        return Err(nix::errno::Errno::EINVAL);
    }
    dst[..name.len()].copy_from_slice(name);
    Ok(())
}

/// New empty subvolume `name` in directory `parent`.
pub fn create_subvol(parent: BorrowedFd, name: &[u8]) -> nix::Result<()> {
    // SAFETY: VolArgsV2 is repr(C) integers and byte arrays only, for which all-zero bytes are a valid value (and
    // what the kernel expects in the unused fields).
    let mut a: Box<VolArgsV2> = Box::new(unsafe { std::mem::zeroed() });
    put_name(&mut a.name, name)?;
    // SAFETY: `parent` is a borrowed, open fd for the call's duration and `a` a fully initialised VolArgsV2 of the
    // size the ioctl number encodes; the kernel only reads it, and put_name left the name NUL-terminated.
    unsafe { subvol_create_v2(parent.as_raw_fd(), &*a) }.map(drop)
}

/// Snapshot of the subvolume open at `src` as `name` in directory `parent`.
pub fn snapshot(src: BorrowedFd, parent: BorrowedFd, name: &[u8], readonly: bool) -> nix::Result<()> {
    // SAFETY: VolArgsV2 is repr(C) integers and byte arrays only: all-zero is a valid value.
    let mut a: Box<VolArgsV2> = Box::new(unsafe { std::mem::zeroed() });
    a.fd = src.as_raw_fd() as i64;
    a.flags = if readonly { SUBVOL_RDONLY } else { 0 };
    put_name(&mut a.name, name)?;
    // SAFETY: Both fds are borrowed and open for the call; `a` is a fully initialised VolArgsV2 (the ioctl's
    // declared size) with a NUL-terminated name, read and not kept by the kernel.
    unsafe { snap_create_v2(parent.as_raw_fd(), &*a) }.map(drop)
}

/// Delete subvolume `name` in directory `parent`.
pub fn destroy(parent: BorrowedFd, name: &[u8]) -> nix::Result<()> {
    // SAFETY: VolArgs is repr(C) integers and a byte array only: all-zero is a valid value.
    let mut a: Box<VolArgs> = Box::new(unsafe { std::mem::zeroed() });
    put_name(&mut a.name, name)?;
    // SAFETY: `parent` is borrowed and open for the call; `a` is a fully initialised VolArgs (the ioctl's declared
    // size) with a NUL-terminated name, only read by the kernel.
    unsafe { snap_destroy(parent.as_raw_fd(), &*a) }.map(drop)
}

pub fn get_flags(fd: BorrowedFd) -> nix::Result<u64> {
    let mut f = 0u64;
    // SAFETY: `fd` is borrowed and open; `f` is a live u64, the size SUBVOL_GETFLAGS writes.
    unsafe { subvol_getflags(fd.as_raw_fd(), &mut f) }?;
    Ok(f)
}

pub fn set_readonly(fd: BorrowedFd, ro: bool) -> nix::Result<()> {
    let cur = get_flags(fd)?;
    let new = if ro { cur | SUBVOL_RDONLY } else { cur & !SUBVOL_RDONLY };
    if new == cur {
        return Ok(());
    }
    // SAFETY: `fd` is borrowed and open; `new` is a live u64, the size SUBVOL_SETFLAGS reads.
    unsafe { subvol_setflags(fd.as_raw_fd(), &new) }.map(drop)
}

/// The subvolume (tree) id of the subvolume `fd` is in.
pub fn subvol_id(fd: BorrowedFd) -> nix::Result<u64> {
    // SAFETY: InoLookupArgs is repr(C) integers and a byte array only: all-zero is a valid value.
    let mut a: Box<InoLookupArgs> = Box::new(unsafe { std::mem::zeroed() });
    a.objectid = FIRST_FREE_OBJECTID;
    // SAFETY: `fd` is borrowed and open; `a` is an initialised, exclusively borrowed InoLookupArgs of the ioctl's
    // declared size, which the kernel fills in place.
    unsafe { ino_lookup(fd.as_raw_fd(), &mut *a) }?;
    Ok(a.treeid)
}

/// The filesystem's UUID: equal for every subvolume of one filesystem.
pub fn fsid(fd: BorrowedFd) -> nix::Result<[u8; 16]> {
    let mut buf = [0u8; 1024];
    // SAFETY: `fd` is borrowed and open; FS_INFO writes at most its 1 KiB struct, and `buf` is that size and
    // exclusively borrowed (the macro passes its pointer; its length encodes the ioctl size).
    unsafe { fs_info(fd.as_raw_fd(), &mut buf) }?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&buf[16..32]);
    Ok(id)
}

/// The quota tree's item of type `ty` at `offset` (a qgroup id), `None`
/// when there is none (quotas off: no status item).
fn quota_item(fd: BorrowedFd, ty: u32, offset: u64) -> nix::Result<Option<Vec<u8>>> {
    // SAFETY: SearchArgs is repr(C) integers and a byte array only: all-zero is a valid value.
    let mut a: Box<SearchArgs> = Box::new(unsafe { std::mem::zeroed() });
    a.key.tree_id = QUOTA_TREE_OBJECTID;
    a.key.min_type = ty;
    a.key.max_type = ty;
    a.key.min_offset = offset;
    a.key.max_offset = offset;
    a.key.max_transid = u64::MAX;
    a.key.nr_items = 1;
    // SAFETY: `fd` is borrowed and open; `a` is an initialised, exclusively borrowed 4 KiB SearchArgs, the size
    // TREE_SEARCH reads the key from and writes items into.
    match unsafe { tree_search(fd.as_raw_fd(), &mut *a) } {
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        r => r?,
    };
    if a.key.nr_items == 0 {
        return Ok(None);
    }
    // Header: transid, objectid, offset (u64), type, len (u32).
    let len = u32::from_ne_bytes(a.buf[28..32].try_into().unwrap()) as usize;
    Ok(Some(a.buf[32..32 + len.min(a.buf.len() - 32)].to_vec()))
}

fn le(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap()))
}

/// Whether quotas are on in the filesystem of `fd` (it has a quota status item).
pub fn quotas_on(fd: BorrowedFd) -> nix::Result<bool> {
    Ok(quota_item(fd, QGROUP_STATUS_KEY, 0)?.is_some())
}

/// Referenced and exclusive bytes of qgroup 0/`id`, `None` when quotas are
/// off or their numbers are not consistent (rescan pending).
pub fn qgroup_usage(fd: BorrowedFd, id: u64) -> nix::Result<Option<(u64, u64)>> {
    if !qgroups_counting(fd)? {
        return Ok(None);
    }
    qgroup_info(fd, id)
}

/// Whether the filesystem of `fd` has quotas on and its counts consistent
/// (not waiting for a rescan).
pub fn qgroups_counting(fd: BorrowedFd) -> nix::Result<bool> {
    let Some(status) = quota_item(fd, QGROUP_STATUS_KEY, 0)? else {
        return Ok(false);
    };
    // Status item: version, generation, flags, rescan (le64 each).
    Ok(le(&status, 16).unwrap_or(QGROUP_STATUS_FLAG_INCONSISTENT) & QGROUP_STATUS_FLAG_INCONSISTENT == 0)
}

/// Referenced and exclusive bytes of qgroup 0/`id` as last committed, where
/// it has an info item ([`qgroup_usage`] asks first whether they count).
pub fn qgroup_info(fd: BorrowedFd, id: u64) -> nix::Result<Option<(u64, u64)>> {
    let Some(info) = quota_item(fd, QGROUP_INFO_KEY, id)? else {
        return Ok(None);
    };
    // Info item: generation, rfer, rfer_cmpr, excl, excl_cmpr (le64 each).
    Ok(le(&info, 8).zip(le(&info, 24)))
}

const QGROUP_LIMIT_KEY: u32 = 244;
const QGROUP_LIMIT_MAX_RFER: u64 = 1;

/// The referenced-bytes limit of qgroup 0/`id`, if it has one.
pub fn qgroup_rfer_limit(fd: BorrowedFd, id: u64) -> nix::Result<Option<u64>> {
    let Some(item) = quota_item(fd, QGROUP_LIMIT_KEY, id)? else {
        return Ok(None);
    };
    // Limit item: flags, max_rfer, max_excl, rsv_rfer, rsv_excl (le64 each).
    let flags = le(&item, 0).unwrap_or(0);
    Ok(le(&item, 8).filter(|v| flags & QGROUP_LIMIT_MAX_RFER != 0 && *v != u64::MAX))
}

#[repr(C)]
pub struct QgroupLimitArgs {
    pub qgroupid: u64,
    pub flags: u64,
    pub max_rfer: u64,
    pub max_excl: u64,
    pub rsv_rfer: u64,
    pub rsv_excl: u64,
}

// The kernel declares it _IOR although it only reads the argument.
nix::ioctl_read!(qgroup_limit_ioc, MAGIC, 43, QgroupLimitArgs);

/// Limit the referenced bytes of the subvolume `fd` is in (its own qgroup) to `max`.
pub fn set_qgroup_rfer_limit(fd: BorrowedFd, max: u64) -> nix::Result<()> {
    let mut a = QgroupLimitArgs {
        qgroupid: 0,
        flags: QGROUP_LIMIT_MAX_RFER,
        max_rfer: max,
        max_excl: 0,
        rsv_rfer: 0,
        rsv_excl: 0,
    };
    // SAFETY: `fd` is borrowed and open; `a` is an initialised, exclusively borrowed QgroupLimitArgs, the struct
    // and size the ioctl number declares; the kernel only reads it.
    unsafe { qgroup_limit_ioc(fd.as_raw_fd(), &mut a) }.map(drop)
}

const ROOT_TREE_OBJECTID: u64 = 1;
const ROOT_REF_KEY: u32 = 156;

/// Subvolumes directly below subvolume `id`: (child id, dir inode in the
/// parent, name). Needs CAP_SYS_ADMIN.
pub fn child_subvols(fd: BorrowedFd, id: u64) -> nix::Result<Vec<(u64, u64, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut min_offset = 0u64;
    loop {
        // SAFETY: SearchArgs is repr(C) integers and a byte array only: all-zero is a valid value.
        let mut a: Box<SearchArgs> = Box::new(unsafe { std::mem::zeroed() });
        a.key.tree_id = ROOT_TREE_OBJECTID;
        a.key.min_objectid = id;
        a.key.max_objectid = id;
        a.key.min_type = ROOT_REF_KEY;
        a.key.max_type = ROOT_REF_KEY;
        a.key.min_offset = min_offset;
        a.key.max_offset = u64::MAX;
        a.key.max_transid = u64::MAX;
        a.key.nr_items = 4096;
        // SAFETY: `fd` is borrowed and open; `a` is an initialised, exclusively borrowed 4 KiB SearchArgs, the size
        // TREE_SEARCH reads the key from and writes items into.
        unsafe { tree_search(fd.as_raw_fd(), &mut *a) }?;
        let n = a.key.nr_items;
        if n == 0 {
            return Ok(out);
        }
        let mut pos = 0usize;
        let u64_at = |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
        for _ in 0..n {
            let h = &a.buf[pos..pos + 32];
            let (objectid, offset) = (u64_at(h, 8), u64_at(h, 16));
            let ty = u32::from_ne_bytes(h[24..28].try_into().unwrap());
            let len = u32::from_ne_bytes(h[28..32].try_into().unwrap()) as usize;
            let data = &a.buf[pos + 32..pos + 32 + len];
            pos += 32 + len;
            min_offset = offset.saturating_add(1);
            if objectid != id || ty != ROOT_REF_KEY || len < 18 {
                continue;
            }
            // btrfs_root_ref: dirid, sequence (le64), name_len (le16), name.
            let dirid = u64::from_le_bytes(data[0..8].try_into().unwrap());
            let name_len = u16::from_le_bytes(data[16..18].try_into().unwrap()) as usize;
            let name = data[18..(18 + name_len).min(len)].to_vec();
            out.push((offset, dirid, name));
        }
        if min_offset == 0 {
            return Ok(out);
        }
    }
}

/// Path of directory inode `dirid` inside subvolume `tree`, relative to its
/// root, with a trailing `/` (empty for the root). Needs CAP_SYS_ADMIN.
pub fn dir_path(fd: BorrowedFd, tree: u64, dirid: u64) -> nix::Result<Vec<u8>> {
    // SAFETY: InoLookupArgs is repr(C) integers and a byte array only: all-zero is a valid value.
    let mut a: Box<InoLookupArgs> = Box::new(unsafe { std::mem::zeroed() });
    a.treeid = tree;
    a.objectid = dirid;
    // SAFETY: `fd` is borrowed and open; `a` is an initialised, exclusively borrowed InoLookupArgs of the ioctl's
    // declared size, which the kernel fills in place.
    unsafe { ino_lookup(fd.as_raw_fd(), &mut *a) }?;
    let end = a.name.iter().position(|b| *b == 0).unwrap_or(a.name.len());
    Ok(a.name[..end].to_vec())
}
