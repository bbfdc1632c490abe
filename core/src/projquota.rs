//! Project quotas (ext4, xfs): a directory tree whose files carry one
//! project id, with a limit on the bytes that project holds. The id is set
//! on the tree's top dir with the inherit flag (FS_IOC_FSSETXATTR), so
//! every file made below it later carries it too; the limit is set and
//! read with quotactl_fd (Linux 5.14), on the filesystem itself, with no
//! need to find its block device. The filesystem must account and enforce
//! project quotas: ext4 made with `-O quota,project` and mounted with
//! `prjquota`, xfs mounted with `prjquota`. Only root of the initial user
//! namespace may change a file's project id, so a container's root cannot
//! move its files out of the quota (an unprivileged one; a privileged
//! container's root is the host's root anyway).

use crate::err;
use crate::error::{Error, Result};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

const OP: &str = "project quota";

/// `struct fsxattr` of linux/fs.h.
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
const FS_XFLAG_PROJINHERIT: u32 = 0x200;

/// `struct fs_qfilestatv` and `struct fs_quota_statv` of linux/dqblk_xfs.h.
#[repr(C)]
#[derive(Default)]
struct QFileStatV {
    ino: u64,
    nblks: u64,
    nextents: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct QuotaStatV {
    version: i8,
    pad1: u8,
    flags: u16,
    incoredqs: u32,
    uquota: QFileStatV,
    gquota: QFileStatV,
    pquota: QFileStatV,
    btimelimit: i32,
    itimelimit: i32,
    rtbtimelimit: i32,
    bwarnlimit: u16,
    iwarnlimit: u16,
    rtbwarnlimit: u16,
    pad3: u16,
    pad4: u32,
    pad2: [u64; 7],
}

const PRJQUOTA: libc::c_int = 2;
const Q_XGETQSTATV: libc::c_int = (b'X' as libc::c_int) << 8 | 8;
const FS_QSTATV_VERSION1: i8 = 1;
const FS_QUOTA_PDQ_ACCT: u16 = 1 << 4;
const FS_QUOTA_PDQ_ENFD: u16 = 1 << 5;

fn qcmd(cmd: libc::c_int) -> libc::c_int {
    (cmd << 8) | (PRJQUOTA & 0xff)
}

/// `quotactl_fd(fd, QCMD(cmd, PRJQUOTA), id, addr)`.
fn quotactl(fd: BorrowedFd, cmd: libc::c_int, id: u32, addr: *mut libc::c_void) -> nix::Result<()> {
    let c = qcmd(cmd);
    // SAFETY: `fd` is a live descriptor for the duration of the call and `addr` points to a
    // properly sized, writable struct of the type the command reads or fills (checked by callers).
    let r = unsafe { libc::syscall(libc::SYS_quotactl_fd, fd.as_raw_fd(), c, id as libc::c_int, addr) };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// Whether the filesystem of `fd` accounts and enforces project quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub accounting: bool,
    pub enforced: bool,
}

/// The project quota state of the filesystem `fd` is on. ENOSYS: the
/// kernel (no quotactl_fd, or no quota support) or the filesystem has no
/// quotas at all.
pub fn state(fd: BorrowedFd) -> nix::Result<State> {
    let mut s = QuotaStatV {
        version: FS_QSTATV_VERSION1,
        ..Default::default()
    };
    quotactl(fd, Q_XGETQSTATV, 0, (&mut s as *mut QuotaStatV).cast())?;
    Ok(State {
        accounting: s.flags & FS_QUOTA_PDQ_ACCT != 0,
        enforced: s.flags & FS_QUOTA_PDQ_ENFD != 0,
    })
}

/// The project id of the file `fd` and whether it passes it on to what is
/// made below it (the inherit flag, on a directory).
pub fn project_of(fd: BorrowedFd) -> nix::Result<(u32, bool)> {
    let mut x = FsXattr::default();
    // SAFETY: FS_IOC_FSGETXATTR fills a `struct fsxattr`, which `x` is (same layout, 28 bytes).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSGETXATTR, &mut x as *mut FsXattr) };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok((x.projid, x.xflags & FS_XFLAG_PROJINHERIT != 0))
}

/// Give the file `fd` project `id`, and on a directory the inherit flag.
fn set_project(fd: BorrowedFd, id: u32, dir: bool) -> nix::Result<()> {
    let mut x = FsXattr::default();
    // SAFETY: as in project_of: `x` is a `struct fsxattr`, read back and written whole.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSGETXATTR, &mut x as *mut FsXattr) };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    if x.projid == id && (!dir || x.xflags & FS_XFLAG_PROJINHERIT != 0) {
        return Ok(());
    }
    x.projid = id;
    if dir {
        x.xflags |= FS_XFLAG_PROJINHERIT;
    }
    // SAFETY: FS_IOC_FSSETXATTR reads a `struct fsxattr`; `x` is one, filled by the kernel above.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSSETXATTR, &x as *const FsXattr) };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// A project's limit and use, in bytes (limit 0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub used: u64,
    pub inodes: u64,
}

/// Project `id`'s quota on the filesystem of `fd` (all zero for an id
/// the filesystem has no record of: xfs says ENOENT, ext4 gives zeros).
pub fn get(fd: BorrowedFd, id: u32) -> nix::Result<Quota> {
    // SAFETY: dqblk is plain integers; all zero is a valid value.
    let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
    match quotactl(fd, libc::Q_GETQUOTA, id, (&mut q as *mut libc::dqblk).cast()) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => {
            return Ok(Quota {
                limit: 0,
                used: 0,
                inodes: 0,
            })
        }
        Err(e) => return Err(e),
    }
    Ok(Quota {
        limit: q.dqb_bhardlimit * 1024,
        used: q.dqb_curspace,
        inodes: q.dqb_curinodes,
    })
}

/// Set project `id`'s limit to `bytes` (rounded up to KiB; 0: none).
pub fn set_limit(fd: BorrowedFd, id: u32, bytes: u64) -> nix::Result<()> {
    // SAFETY: as in get.
    let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
    q.dqb_bhardlimit = bytes.div_ceil(1024);
    q.dqb_bsoftlimit = q.dqb_bhardlimit;
    q.dqb_valid = libc::QIF_BLIMITS;
    quotactl(fd, libc::Q_SETQUOTA, id, (&mut q as *mut libc::dqblk).cast())
}

fn open_flags(dir: bool) -> libc::c_int {
    let base = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    if dir {
        base | libc::O_DIRECTORY
    } else {
        base
    }
}

fn open_at(dirfd: libc::c_int, name: &std::ffi::CStr, dir: bool) -> nix::Result<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated string and `dirfd` a live descriptor (or AT_FDCWD).
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), open_flags(dir)) };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: `fd` was just returned by a successful openat and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open the directory `p` (not following a last symlink).
pub fn open_dir(p: &Path) -> Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| err!(InvalidArgument, OP, "path holds a NUL byte").at(p))?;
    open_at(libc::AT_FDCWD, &c, true).map_err(|e| Error::errno(OP, p, e))
}

/// [`check`] on the nearest existing dir at or above `p`: what a plan asks
/// for (a rootfs, an overlay dir) is not made yet.
pub fn check_nearest(p: &Path) -> Result<()> {
    check(crate::paths::nearest_existing_dir(p))
}

/// Refuse, with the reason, a project quota on the filesystem `dir` is on.
pub fn check(dir: &Path) -> Result<()> {
    let fd = open_dir(dir)?;
    let fstype = fs_name(fd.as_raw_fd());
    let how = "ext4: made with -O quota,project and mounted with prjquota; xfs: mounted with prjquota";
    match state(fd.as_fd()) {
        Ok(State { enforced: true, .. }) => {}
        Ok(_) | Err(nix::errno::Errno::ESRCH | nix::errno::Errno::EINVAL) => {
            return Err(err!(
                Unsupported,
                OP,
                "project quotas are not enforced on the {fstype} filesystem of {} ({how})",
                dir.display()
            ))
        }
        Err(nix::errno::Errno::ENOSYS) if !Path::new("/proc/sys/fs/quota").exists() => {
            return Err(err!(Unsupported, OP, "this kernel has no quota support"));
        }
        Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::ENOTTY | nix::errno::Errno::EOPNOTSUPP) => {
            return Err(err!(
                Unsupported,
                OP,
                "project quotas are not available on the {fstype} filesystem of {} (none in this kernel or filesystem; {how})",
                dir.display()
            ))
        }
        Err(e) => return Err(Error::errno(OP, dir, e)),
    }
    if !crate::paths::is_root() {
        return Err(err!(
            PermissionDenied,
            OP,
            "only root sets a project quota (the project id of the files)"
        ));
    }
    Ok(())
}

/// The filesystem type name of `fd`, for messages.
fn fs_name(fd: libc::c_int) -> &'static str {
    // SAFETY: statfs is plain integers; zeroed is valid and fstatfs fills it.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is live and `s` a writable statfs.
    if unsafe { libc::fstatfs(fd, &mut s) } != 0 {
        return "unknown";
    }
    match s.f_type {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlay",
        0x2FC1_2FC1 => "zfs",
        _ => "this",
    }
}

/// The project of the tree at `root`: its id when the top dir has one with
/// the inherit flag (set by [`bind`]), else `None`.
pub fn project(root: &Path) -> Result<Option<u32>> {
    let fd = open_dir(root)?;
    match project_of(fd.as_fd()) {
        Ok((id, true)) if id != 0 => Ok(Some(id)),
        Ok(_) | Err(nix::errno::Errno::ENOTTY | nix::errno::Errno::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(Error::errno(OP, root, e)),
    }
}

/// The quota of the tree at `root`, where it has a project and the
/// filesystem accounts for it.
pub fn quota(root: &Path) -> Result<Option<Quota>> {
    let fd = open_dir(root)?;
    let id = match project_of(fd.as_fd()) {
        Ok((id, true)) if id != 0 => id,
        _ => return Ok(None),
    };
    match state(fd.as_fd()) {
        Ok(s) if s.accounting => {}
        _ => return Ok(None),
    }
    get(fd.as_fd(), id).map(Some).map_err(|e| Error::errno(OP, root, e))
}

/// A project id for a new tree at `root`: its top dir's inode number (no
/// two live dirs of one filesystem share it) where it fits, else one
/// derived from it; passed over while the quota of that id holds files
/// (another tree's, set by hand or by a tool) or a limit.
fn pick_id(fd: BorrowedFd, ino: u64) -> nix::Result<u32> {
    let mut id = match u32::try_from(ino) {
        Ok(v) if v > 1 && v < u32::MAX => v,
        _ => ((ino ^ (ino >> 32)) as u32).clamp(2, u32::MAX - 1),
    };
    for _ in 0..64 {
        let q = get(fd, id)?;
        if q.inodes == 0 && q.used == 0 && q.limit == 0 {
            return Ok(id);
        }
        id = if id >= u32::MAX - 1 { 2 } else { id + 1 };
    }
    Err(nix::errno::Errno::EEXIST)
}

/// Bind the tree at `root` to `bytes`: its project (a new one when it has
/// none) set on its top dir with the inherit flag, and on every directory
/// and regular file below it that does not carry it yet (a tree filled
/// before; not through symlinks, not into other filesystems: symlinks and
/// device nodes keep theirs, a few bytes outside the quota), then the
/// limit. Refused, nothing changed, when it holds more than `bytes`
/// already. Each step is idempotent: a kill in the middle leaves a tree
/// partly in the project and no limit, and the next bind finishes it.
pub fn bind(root: &Path, bytes: u64) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let fd = open_dir(root)?;
    let top = fd.as_fd();
    let id = match project_of(top) {
        Ok((id, true)) if id != 0 => id,
        Ok(_) => {
            let ino = std::fs::metadata(root).map_err(|e| Error::io(OP, root, e))?.ino();
            pick_id(top, ino).map_err(|e| Error::errno(OP, root, e))?
        }
        Err(e) => return Err(Error::errno(OP, root, e)),
    };
    if let Ok(q) = get(top, id) {
        if q.used > bytes {
            return Err(err!(
                InvalidArgument,
                OP,
                "{} holds {} MiB already: a limit of {} MiB is too small",
                root.display(),
                q.used.div_ceil(1 << 20),
                bytes >> 20
            ));
        }
    }
    set_project(top, id, true).map_err(|e| Error::errno(OP, root, e))?;
    tag_tree(&fd, id, root)?;
    // The files just moved into the project may hold more than the limit.
    let q = get(top, id).map_err(|e| Error::errno(OP, root, e))?;
    if q.used > bytes {
        return Err(err!(
            InvalidArgument,
            OP,
            "{} holds {} MiB: a limit of {} MiB is too small",
            root.display(),
            q.used.div_ceil(1 << 20),
            bytes >> 20
        ));
    }
    set_limit(top, id, bytes).map_err(|e| Error::errno(OP, root, e))
}

/// Every directory and regular file below `top` into project `id`, through
/// descriptors (openat with O_NOFOLLOW from the parent's), never leaving
/// the filesystem.
fn tag_tree(top: &OwnedFd, id: u32, root: &Path) -> Result<()> {
    let dev = nix::sys::stat::fstat(top.as_raw_fd())
        .map_err(|e| Error::errno(OP, root, e))?
        .st_dev;
    let dup = nix::unistd::dup(top.as_raw_fd()).map_err(|e| Error::errno(OP, root, e))?;
    // SAFETY: `dup` was just returned by a successful dup and is owned by nothing else.
    let mut stack = vec![unsafe { OwnedFd::from_raw_fd(dup) }];
    while let Some(dfd) = stack.pop() {
        let mut dir =
            nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(dfd)).map_err(|e| Error::errno(OP, root, e))?;
        let dirfd = dir.as_raw_fd();
        let mut subdirs = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(|e| Error::errno(OP, root, e))?;
            let name = e.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let is_dir = match e.file_type() {
                Some(nix::dir::Type::Directory) => true,
                Some(nix::dir::Type::File) => false,
                Some(_) => continue,
                None => match nix::sys::stat::fstatat(Some(dirfd), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => true,
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => false,
                    _ => continue,
                },
            };
            let fd = match open_at(dirfd, name, is_dir) {
                Ok(fd) => fd,
                // Gone, or swapped for a symlink or something else meanwhile.
                Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => continue,
                Err(e) => return Err(Error::errno(OP, root, e)),
            };
            let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::errno(OP, root, e))?;
            let kind = st.st_mode & libc::S_IFMT;
            if st.st_dev != dev || (kind != libc::S_IFDIR && kind != libc::S_IFREG) {
                continue;
            }
            set_project(fd.as_fd(), id, kind == libc::S_IFDIR).map_err(|e| Error::errno(OP, root, e))?;
            if kind == libc::S_IFDIR {
                subdirs.push(fd);
            }
        }
        stack.extend(subdirs);
    }
    Ok(())
}

/// Drop the limit of the tree at `root`'s project, before the tree goes
/// (its files leave the project's count as they are removed): no limit
/// is left behind for an id a later tree may get. Best effort.
pub fn release(root: &Path) {
    let Ok(fd) = open_dir(root) else { return };
    if let Ok((id, true)) = project_of(fd.as_fd()) {
        if id != 0 && get(fd.as_fd(), id).is_ok_and(|q| q.limit != 0) {
            let _ = set_limit(fd.as_fd(), id, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<FsXattr>(), 28);
        assert_eq!(std::mem::size_of::<QFileStatV>(), 24);
        assert_eq!(std::mem::size_of::<QuotaStatV>(), 160);
        assert_eq!(std::mem::size_of::<libc::dqblk>(), 72);
        assert_eq!(Q_XGETQSTATV, 0x5808);
        assert_eq!(qcmd(Q_XGETQSTATV), 0x580802);
    }

    #[test]
    fn a_tree_without_a_project_has_no_quota() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(project(d.path()).unwrap(), None);
        assert_eq!(quota(d.path()).unwrap(), None);
    }
}
