//! The copy engine: a faithful, parallel copy of a root filesystem.
//!
//! Everything is done relative to directory fds with `O_NOFOLLOW`, so a
//! symlink in `src` or one planted in `dst` can never redirect a read or a
//! write. Mount points below `src` are not crossed: they are copied as empty
//! directories (or empty files for bind-mounted files). Directory times are
//! set after their contents are complete. On error the partial copy is left
//! in `dst` for the caller to remove.

mod progress;
mod shift;
mod usage;

pub use progress::show_progress_on_terminal;
pub use shift::{shift_acl, shift_fcaps};
pub use usage::{tree_usage, TreeUsage};

use crate::err;
use crate::error::{Error, Result};
use crate::idmap::IdShift;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Condvar, Mutex};

#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Show a progress bar if stderr is a terminal (every copy does after
    /// [`show_progress_on_terminal`]).
    pub progress: bool,
    /// Shift owners while copying.
    pub shift: Option<IdShift>,
    /// Worker threads; 0 for the number of CPUs.
    pub threads: usize,
    /// A tree that goes away once the copy is in place (the rootfs an
    /// incremental receive replaces): a regular file there at the same
    /// path, with one link, on the destination's filesystem and equal to
    /// the source's by rsync's quick check (size, mtime to the nanosecond,
    /// mode, owner, xattrs) is hardlinked into the destination instead of
    /// copied. Until that tree is removed the two share those inodes, so
    /// the caller must write to neither (new data always goes to a fresh
    /// file). Ignored with `shift`.
    pub link_from: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub specials: u64,
    pub bytes: u64,
    pub reflinked: u64,
    /// Files taken from [`CopyOptions::link_from`] by a hardlink.
    pub linked: u64,
}

const OP: &str = "copy";

/// Copy the tree at `src` into the existing, empty directory `dst`: every
/// entry with owner, mode, times, xattrs (incl. ACLs and file capabilities),
/// hardlinks, symlinks (never followed), device nodes, fifos, sockets and
/// holes of sparse files; `dst` itself gets `src`'s owner, mode and times.
/// Never follows a symlink, in `src` or in `dst`.
pub fn copy_tree(src: &Path, dst: &Path, opts: &CopyOptions) -> Result<CopyStats> {
    let _span = tracing::info_span!("copy_tree", src = %src.display(), dst = %dst.display()).entered();
    raise_nofile_limit();
    let src_fd = open_dir(libc::AT_FDCWD, &cstr(src.as_os_str(), src)?).map_err(|e| Error::errno(OP, src, e))?;
    let dst_fd = open_dir(libc::AT_FDCWD, &cstr(dst.as_os_str(), dst)?).map_err(|e| Error::errno(OP, dst, e))?;
    let mut names = Vec::new();
    read_dir(dst_fd.as_raw_fd(), &mut names).map_err(|e| Error::errno(OP, dst, e))?;
    if !names.is_empty() {
        return Err(err!(InvalidArgument, OP, "destination is not empty").at(dst));
    }
    let st = statx(src_fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map_err(|e| Error::errno(OP, src, e))?;
    let progress = progress::wanted(opts.progress).then(|| progress::Progress::start(src));
    let ref_fd = match &opts.link_from {
        Some(r) if opts.shift.is_none() => match open_dir(libc::AT_FDCWD, &cstr(r.as_os_str(), r)?) {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::debug!("{}: not linked from: {e}", r.display());
                None
            }
        },
        _ => None,
    };
    let ctx = Ctx {
        fresh: fresh_nodes(dst_fd.as_raw_fd()),
        src_root: src,
        dst_fd: dst_fd.as_raw_fd(),
        shift: opts.shift.as_ref(),
        links: Links::default(),
        reflink: AtomicU8::new(UNKNOWN),
        cfr: AtomicU8::new(UNKNOWN),
        link: AtomicU8::new(UNKNOWN),
        stats: Stats::default(),
        progress,
        failed: Mutex::new(None),
        stop: AtomicBool::new(false),
    };
    // Deep trees recurse once per level.
    let mut builder = rayon::ThreadPoolBuilder::new().stack_size(64 << 20);
    if opts.threads > 0 {
        builder = builder.num_threads(opts.threads);
    }
    let pool = builder
        .build()
        .map_err(|e| err!(Io, OP, "cannot start worker threads: {e}"))?;
    let res = pool
        .install(|| {
            let rfd = ref_fd.as_ref().map(|f| f.as_raw_fd());
            ctx.copy_dir(src_fd.as_raw_fd(), dst_fd.as_raw_fd(), rfd, Path::new(""), &st)?;
            ctx.apply_meta(dst_fd.as_raw_fd(), &st, Path::new(""), src_fd.as_raw_fd())
        })
        .map_err(|e| ctx.failed.lock().unwrap().take().unwrap_or(e));
    if let Some(p) = &ctx.progress {
        p.finish(res.is_ok());
    }
    res?;
    let s = &ctx.stats;
    Ok(CopyStats {
        files: s.files.load(Relaxed),
        dirs: s.dirs.load(Relaxed),
        symlinks: s.symlinks.load(Relaxed),
        hardlinks: s.hardlinks.load(Relaxed),
        specials: s.specials.load(Relaxed),
        bytes: s.bytes.load(Relaxed),
        reflinked: s.reflinked.load(Relaxed),
        linked: s.linked.load(Relaxed),
    })
}

const UNKNOWN: u8 = 0;
const WORKS: u8 = 1;
const BROKEN: u8 = 2;

#[derive(Default)]
struct Stats {
    files: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    hardlinks: AtomicU64,
    specials: AtomicU64,
    bytes: AtomicU64,
    reflinked: AtomicU64,
    linked: AtomicU64,
}

enum LinkState {
    Pending,
    /// Copied to `first` (relative to the destination); `left` links of
    /// the inode not met yet (some may be outside the tree).
    Done {
        first: CString,
        left: u32,
    },
    Failed,
}

/// Hardlink groups: the first entry of a group is copied, later ones wait
/// for it (the copier never yields to rayon meanwhile, so no deadlock) and
/// link to it. Only inodes with more than one link are here, and each only
/// until its last link is met, so the map stays small whatever the tree.
#[derive(Default)]
struct Links {
    map: Mutex<HashMap<(u64, u64), LinkState>>,
    cv: Condvar,
}

/// What a node we create below the destination looks like before any
/// chown/chmod, when that is known: owned by us, with the creation mode
/// less the umask. Unknown when the destination dir is setgid or has a
/// default ACL (both change what a new node gets).
#[derive(Clone, Copy)]
struct Fresh {
    owner: (u32, u32),
    umask: u32,
}

fn fresh_nodes(dst: RawFd) -> Option<Fresh> {
    let st = statx(dst, c"", libc::AT_EMPTY_PATH).ok()?;
    if st.stx_mode as u32 & libc::S_ISGID != 0 {
        return None;
    }
    // SAFETY: the attribute name is a NUL-terminated literal and a null buffer of size 0 only asks for the value's
    // size; `dst` is the caller's open destination dir fd.
    let acl = unsafe { libc::fgetxattr(dst, c"system.posix_acl_default".as_ptr(), std::ptr::null_mut(), 0) };
    if acl >= 0 || errno() != nix::errno::Errno::ENODATA && errno() != nix::errno::Errno::EOPNOTSUPP {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let umask = status.lines().find_map(|l| l.strip_prefix("Umask:"))?.trim();
    let umask = u32::from_str_radix(umask, 8).ok()?;
    Some(Fresh {
        // SAFETY: geteuid and getegid take no arguments and cannot fail.
        owner: unsafe { (libc::geteuid(), libc::getegid()) },
        umask,
    })
}

struct Ctx<'a> {
    fresh: Option<Fresh>,
    src_root: &'a Path,
    dst_fd: RawFd,
    shift: Option<&'a IdShift>,
    links: Links,
    reflink: AtomicU8,
    cfr: AtomicU8,
    /// Whether linking from [`CopyOptions::link_from`] works.
    link: AtomicU8,
    stats: Stats,
    progress: Option<progress::Progress>,
    /// The first error met; once set, the walk stops.
    failed: Mutex<Option<Error>>,
    stop: AtomicBool,
}

/// A directory being copied: its source and destination fds, its path
/// relative to the top, and its device (mount points below it are not
/// entered).
#[derive(Clone, Copy)]
struct Dir<'a> {
    sfd: RawFd,
    dfd: RawFd,
    /// The same directory in [`CopyOptions::link_from`]'s tree, where it has one.
    rfd: Option<RawFd>,
    rel: &'a Path,
    dev: (u32, u32),
}

/// Entries of one directory copied by one task (a larger directory is split).
const CHUNK: usize = 256;

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static XBUF: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

fn cstr(s: &OsStr, path: &Path) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| err!(InvalidArgument, OP, "path contains a NUL byte").at(path))
}

fn errno() -> nix::errno::Errno {
    nix::errno::Errno::last()
}

fn check(r: libc::c_int) -> nix::Result<libc::c_int> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

pub(crate) fn open_dir(dirfd: RawFd, name: &CStr) -> nix::Result<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated CStr borrowed for the call; `dirfd` is an open dir fd the caller holds (a
    // stale one only gives EBADF).
    let fd = check(unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: openat succeeded (check above), so `fd` is a new fd owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// [`open_dir`] with a name of bytes (one holding a NUL is `EINVAL`).
pub fn open_dir_at(dirfd: RawFd, name: &[u8]) -> nix::Result<OwnedFd> {
    let c = std::ffi::CString::new(name).map_err(|_| nix::errno::Errno::EINVAL)?;
    open_dir(dirfd, &c)
}

pub(crate) fn raise_nofile_limit() {
    // Deep trees keep two fds per level open.
    // SAFETY: rlimit is two integers (all-zero is valid); `rl` is live and exclusively borrowed for getrlimit to
    // fill and setrlimit to read.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

pub(crate) fn statx(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> nix::Result<libc::statx> {
    // SAFETY: statx is a C struct of integers: all-zero is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is a NUL-terminated CStr and `st` a live, exclusively borrowed statx for the kernel to fill;
    // `dirfd` is the caller's open dir fd.
    check(unsafe {
        crate::rawsys::statx(
            dirfd,
            name,
            flags | libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC,
            libc::STATX_BASIC_STATS,
            &mut st,
        )
    })?;
    Ok(st)
}

/// All names in a directory except `.` and `..`, via getdents64.
pub(crate) fn read_dir(fd: RawFd, out: &mut Vec<CString>) -> nix::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    scan_dirents(fd, &mut buf, |name, _| {
        out.push(CString::new(name).expect("no NUL in a dirent name"));
        true
    })
    .map(drop)
}

/// All entries of a directory except `.` and `..`, each with its `d_type`
/// (`DT_UNKNOWN` where the filesystem gives none), via getdents64.
pub(crate) fn read_dir_typed(fd: RawFd, out: &mut Vec<(CString, u8)>) -> nix::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    scan_dirents(fd, &mut buf, |name, t| {
        out.push((CString::new(name).expect("no NUL in a dirent name"), t));
        true
    })
    .map(drop)
}

/// Whether the directory open at `fd` has no entry but `.` and `..`, read
/// a few entries at a time: the kernel lists no more than the buffer holds.
pub(crate) fn dir_is_empty(fd: RawFd) -> nix::Result<bool> {
    // Room for one entry of the longest name (19 bytes of header, 256 of
    // name, aligned), else getdents64 answers EINVAL.
    let mut buf = [0u8; 512];
    scan_dirents(fd, &mut buf, |_, _| false)
}

/// Call `f` with each entry's name and `d_type`, `.` and `..` left out,
/// until it returns false; whether it never did. getdents64 on the fd
/// itself, no `DIR` stream (whose setup and teardown cost five more calls
/// per directory).
fn scan_dirents(fd: RawFd, buf: &mut [u8], mut f: impl FnMut(&[u8], u8) -> bool) -> nix::Result<bool> {
    loop {
        // SAFETY: `buf` is a live, exclusively borrowed slice and getdents64 writes at most `buf.len()` bytes
        // into it; `fd` is the caller's open dir fd.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            return Err(errno());
        }
        if n == 0 {
            return Ok(true);
        }
        let mut off = 0usize;
        while off < n as usize {
            // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            let dtype = buf[off + 18];
            let name = &buf[off + 19..off + reclen];
            let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            let name = &name[..len];
            if name != b"." && name != b".." && !f(name, dtype) {
                return Ok(false);
            }
            off += reclen;
        }
    }
}

fn join(dir: &Path, name: &CStr) -> PathBuf {
    dir.join(OsStr::from_bytes(name.to_bytes()))
}

/// A mount point below src. The statx attribute is exact; the device
/// fallback (old kernels) would also stop at btrfs subvolumes.
pub(crate) fn is_mount_root(st: &libc::statx, parent_dev: (u32, u32)) -> bool {
    let attr = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if st.stx_attributes_mask & attr != 0 {
        return st.stx_attributes & attr != 0;
    }
    (st.stx_dev_major, st.stx_dev_minor) != parent_dev
}

pub(crate) fn times(st: &libc::statx) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: st.stx_atime.tv_sec,
            tv_nsec: st.stx_atime.tv_nsec as _,
        },
        libc::timespec {
            tv_sec: st.stx_mtime.tv_sec,
            tv_nsec: st.stx_mtime.tv_nsec as _,
        },
    ]
}

/// Where an entry is: an fd of its own, or a name in a directory fd (for
/// symlinks and device nodes, which cannot be opened safely).
#[derive(Clone, Copy)]
enum At<'n> {
    Fd(RawFd),
    Name(RawFd, &'n CStr),
}

pub(crate) fn proc_path(dirfd: RawFd, name: &CStr) -> CString {
    let mut p = format!("/proc/self/fd/{dirfd}/").into_bytes();
    p.extend_from_slice(name.to_bytes());
    CString::new(p).expect("no NUL")
}

/// Call a get-style xattr syscall into `buf`, growing it on ERANGE.
pub(crate) fn xcall(buf: &mut Vec<u8>, f: impl Fn(*mut libc::c_void, usize) -> isize) -> nix::Result<usize> {
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    loop {
        let n = f(buf.as_mut_ptr().cast(), buf.len());
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = errno();
        if e != nix::errno::Errno::ERANGE {
            return Err(e);
        }
        let need = f(std::ptr::null_mut(), 0);
        if need < 0 {
            return Err(errno());
        }
        buf.resize((need as usize).max(buf.len() * 2), 0);
    }
}

impl Ctx<'_> {
    fn fail(&self, path: &Path, e: nix::errno::Errno) -> Error {
        Error::errno(OP, self.src_root.join(path), e)
    }

    fn tick(&self, bytes: u64) {
        if let Some(p) = &self.progress {
            p.tick(bytes);
        }
    }

    fn map_owner(&self, st: &libc::statx, path: &Path) -> Result<(u32, u32)> {
        let Some(s) = self.shift else {
            return Ok((st.stx_uid, st.stx_gid));
        };
        let uid = s.map_uid(st.stx_uid).ok_or_else(|| {
            err!(InvalidArgument, OP, "uid {} is outside the id map", st.stx_uid).at(self.src_root.join(path))
        })?;
        let gid = s.map_gid(st.stx_gid).ok_or_else(|| {
            err!(InvalidArgument, OP, "gid {} is outside the id map", st.stx_gid).at(self.src_root.join(path))
        })?;
        Ok((uid, gid))
    }

    /// Copy the entries of one directory. A directory's entries are one
    /// task (a chunk of [`CHUNK`] for a large one), and each subdirectory a
    /// task of its own, handed to the pool as it is met: the threads work in
    /// different directories, so they seldom wait for each other on a
    /// directory's lock or (xfs) an allocation group's. Returns once the
    /// whole subtree is copied.
    fn copy_dir(&self, sfd: RawFd, dfd: RawFd, rfd: Option<RawFd>, rel: &Path, st: &libc::statx) -> Result<()> {
        let mut names = Vec::new();
        read_dir(sfd, &mut names).map_err(|e| self.fail(rel, e))?;
        let dev = (st.stx_dev_major, st.stx_dev_minor);
        let dir = Dir {
            sfd,
            dfd,
            rfd,
            rel,
            dev,
        };
        rayon::scope(|s| {
            let mut chunks = names.chunks(CHUNK);
            let first = chunks.next();
            for chunk in chunks {
                s.spawn(move |s| self.copy_entries(s, dir, chunk));
            }
            if let Some(chunk) = first {
                self.copy_entries(s, dir, chunk);
            }
        });
        match self.failed.lock().unwrap().as_ref() {
            // The first error is returned by copy_tree; this only stops the walk.
            Some(_) => Err(err!(Io, OP, "stopped")),
            None => Ok(()),
        }
    }

    fn copy_entries<'s>(&'s self, s: &rayon::Scope<'s>, dir: Dir<'s>, names: &'s [CString]) {
        for name in names {
            if self.stop.load(Relaxed) {
                return;
            }
            let res = statx(dir.sfd, name, 0)
                .map_err(|e| self.fail(&join(dir.rel, name), e))
                .and_then(|st| {
                    if st.stx_mode as u32 & libc::S_IFMT == libc::S_IFDIR {
                        s.spawn(move |_| {
                            if !self.stop.load(Relaxed) {
                                if let Err(e) = self.copy_subdir(dir, name, &st) {
                                    self.record(e);
                                }
                            }
                        });
                        Ok(())
                    } else {
                        self.copy_entry(dir, name, st)
                    }
                });
            if let Err(e) = res {
                self.record(e);
                return;
            }
        }
    }

    /// Keep the first error and stop the walk.
    fn record(&self, e: Error) {
        self.stop.store(true, Relaxed);
        let mut f = self.failed.lock().unwrap();
        if f.is_none() {
            *f = Some(e);
        }
    }

    fn copy_subdir(&self, dir: Dir, name: &CStr, st: &libc::statx) -> Result<()> {
        let p = join(dir.rel, name);
        // Made with its final permission bits when they let us in (the
        // staging dir keeps others out), so that most need no chmod later.
        let create_mode = st.stx_mode as u32 & 0o777 | 0o700;
        // SAFETY: `name` is a NUL-terminated CStr borrowed for the call; `dir.dfd` is an open dir fd held by the
        // caller for the whole walk.
        check(unsafe { libc::mkdirat(dir.dfd, name.as_ptr(), create_mode) }).map_err(|e| self.fail(&p, e))?;
        let d = open_dir(dir.dfd, name).map_err(|e| self.fail(&p, e))?;
        let s = open_dir(dir.sfd, name).map_err(|e| self.fail(&p, e))?;
        // Never through a symlink: open_dir refuses one.
        let r = dir.rfd.and_then(|r| open_dir(r, name).ok());
        if !is_mount_root(st, dir.dev) {
            self.copy_dir(s.as_raw_fd(), d.as_raw_fd(), r.as_ref().map(|f| f.as_raw_fd()), &p, st)?;
        }
        self.apply_meta_at(
            At::Fd(d.as_raw_fd()),
            At::Fd(s.as_raw_fd()),
            st,
            &p,
            c"",
            Some(create_mode),
        )?;
        self.stats.dirs.fetch_add(1, Relaxed);
        self.tick(0);
        Ok(())
    }

    /// Copy a non-directory; a hardlink to an inode already copied becomes a link.
    fn copy_entry(&self, dir: Dir, name: &CStr, st: libc::statx) -> Result<()> {
        let (sdir, ddir, rel) = (dir.sfd, dir.dfd, dir.rel);
        let fmt = st.stx_mode as u32 & libc::S_IFMT;
        let path = || join(rel, name);
        let key = (((st.stx_dev_major as u64) << 32) | st.stx_dev_minor as u64, st.stx_ino);
        if st.stx_nlink > 1 {
            let mut map = self.links.map.lock().unwrap();
            if map.contains_key(&key) {
                loop {
                    match map.get_mut(&key) {
                        Some(LinkState::Pending) => map = self.links.cv.wait(map).unwrap(),
                        Some(LinkState::Done { first, left }) => {
                            let first = first.clone();
                            // The inode's last link in the tree: its entry is
                            // no longer needed (the map holds only inodes
                            // with links still to come).
                            *left = left.saturating_sub(1);
                            if *left == 0 {
                                map.remove(&key);
                            }
                            drop(map);
                            // SAFETY: `first` (an owned CString) and `name` are NUL-terminated for the call;
                            // `self.dst_fd` and `ddir` are dir fds held open for the whole copy.
                            check(unsafe { libc::linkat(self.dst_fd, first.as_ptr(), ddir, name.as_ptr(), 0) })
                                .map_err(|e| self.fail(&path(), e))?;
                            self.stats.hardlinks.fetch_add(1, Relaxed);
                            self.tick(0);
                            return Ok(());
                        }
                        _ => return Err(err!(Io, OP, "hardlink target failed to copy").at(self.src_root.join(path()))),
                    }
                }
            }
            map.insert(key, LinkState::Pending);
            drop(map);
            let res = self.copy_nondir(sdir, ddir, rel, name, &st, fmt);
            let mut map = self.links.map.lock().unwrap();
            let state = match &res {
                Ok(()) => LinkState::Done {
                    first: CString::new(path().into_os_string().into_vec()).expect("no NUL"),
                    left: st.stx_nlink - 1,
                },
                Err(_) => LinkState::Failed,
            };
            map.insert(key, state);
            self.links.cv.notify_all();
            return res;
        }
        if let Some(r) = dir.rfd {
            if fmt == libc::S_IFREG && self.link_same(sdir, r, ddir, rel, name, &st)? {
                return Ok(());
            }
        }
        self.copy_nondir(sdir, ddir, rel, name, &st, fmt)
    }

    /// Hardlink the file of [`CopyOptions::link_from`]'s tree at `name` into
    /// `ddir` if it equals the source's by the quick check; whether it did.
    fn link_same(
        &self,
        sdir: RawFd,
        rdir: RawFd,
        ddir: RawFd,
        rel: &Path,
        name: &CStr,
        st: &libc::statx,
    ) -> Result<bool> {
        if self.link.load(Relaxed) == BROKEN
            || st.stx_attributes & st.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
        {
            return Ok(false);
        }
        let Ok(rs) = statx(rdir, name, 0) else {
            return Ok(false);
        };
        let same = rs.stx_mode == st.stx_mode
            && rs.stx_nlink == 1
            && rs.stx_size == st.stx_size
            && (rs.stx_mtime.tv_sec, rs.stx_mtime.tv_nsec) == (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec)
            && (rs.stx_uid, rs.stx_gid) == self.map_owner(st, &join(rel, name))?
            && rs.stx_attributes & rs.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 == 0
            && matches!((xattrs_of(sdir, name), xattrs_of(rdir, name)), (Some(a), Some(b)) if a == b);
        if !same {
            return Ok(false);
        }
        // SAFETY: `name` is NUL-terminated for the call; both dir fds are held open by the caller; without
        // AT_SYMLINK_FOLLOW linkat links the entry itself (a regular file, checked above), never a target.
        if unsafe { libc::linkat(rdir, name.as_ptr(), ddir, name.as_ptr(), 0) } < 0 {
            let e = errno();
            tracing::debug!("{}: not linked: {e}", join(rel, name).display());
            if e == nix::errno::Errno::EXDEV {
                self.link.store(BROKEN, Relaxed);
            }
            return Ok(false);
        }
        self.stats.files.fetch_add(1, Relaxed);
        self.stats.linked.fetch_add(1, Relaxed);
        self.stats.bytes.fetch_add(st.stx_size, Relaxed);
        self.tick(st.stx_size);
        Ok(true)
    }

    fn copy_nondir(&self, sdir: RawFd, ddir: RawFd, rel: &Path, name: &CStr, st: &libc::statx, fmt: u32) -> Result<()> {
        // A bind-mounted file is copied as an empty file, like a mountpoint dir.
        let mount = st.stx_attributes & st.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
        match fmt {
            libc::S_IFREG => {
                let sfd = if mount {
                    None
                } else {
                    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
                    // SAFETY: `name` is a NUL-terminated CStr borrowed for the call; `sdir` is an open dir fd held
                    // by the caller.
                    let mut fd = unsafe { libc::openat(sdir, name.as_ptr(), flags | libc::O_NOATIME) };
                    if fd < 0 && errno() == nix::errno::Errno::EPERM {
                        // SAFETY: `name` is a NUL-terminated CStr borrowed for the call; `sdir` is an open dir fd
                        // held by the caller.
                        fd = unsafe { libc::openat(sdir, name.as_ptr(), flags) };
                    }
                    let fd = check(fd).map_err(|e| self.fail(&join(rel, name), e))?;
                    // SAFETY: openat succeeded (check above), so `fd` is a new fd owned by nothing else.
                    Some(unsafe { OwnedFd::from_raw_fd(fd) })
                };
                // Created with its final permission bits (the staging dir
                // keeps others out) so that most files need no chmod.
                let create_mode = st.stx_mode as u32 & 0o777;
                // SAFETY: `name` is a NUL-terminated CStr borrowed for the call; `ddir` is an open dir fd held by
                // the caller.
                let dfd = check(unsafe {
                    libc::openat(
                        ddir,
                        name.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                        create_mode,
                    )
                })
                .map_err(|e| self.fail(&join(rel, name), e))?;
                // SAFETY: openat succeeded (check above), so `dfd` is a new fd owned by nothing else.
                let dfd = unsafe { OwnedFd::from_raw_fd(dfd) };
                if let Some(sfd) = &sfd {
                    if st.stx_size > 0 {
                        self.copy_data(sfd.as_raw_fd(), dfd.as_raw_fd(), st)
                            .map_err(|e| self.fail(&join(rel, name), e))?;
                    }
                }
                let sat = sfd
                    .as_ref()
                    .map(|f| At::Fd(f.as_raw_fd()))
                    .unwrap_or(At::Name(sdir, name));
                self.apply_meta_at(At::Fd(dfd.as_raw_fd()), sat, st, rel, name, Some(create_mode))?;
                self.stats.files.fetch_add(1, Relaxed);
                self.stats.bytes.fetch_add(st.stx_size, Relaxed);
                self.tick(st.stx_size);
            }
            libc::S_IFLNK => {
                let target = BUF
                    .with_borrow_mut(|buf| {
                        // SAFETY: xcall passes either `buf`'s own pointer with its length or null with 0, so
                        // readlinkat never writes past the buffer; `name` is a NUL-terminated CStr and `sdir` an
                        // open dir fd.
                        let n = xcall(buf, |p, l| unsafe {
                            libc::readlinkat(sdir, name.as_ptr(), p.cast(), l)
                        })?;
                        if n == buf.len() {
                            buf.resize(buf.len() * 4, 0);
                            let n =
                                // SAFETY: `buf` was just resized and readlinkat writes at most `buf.len()` bytes
                                // into it; `name` is NUL-terminated and `sdir` open.
                                unsafe { libc::readlinkat(sdir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
                            if n < 0 {
                                return Err(errno());
                            }
                            return Ok(CString::new(&buf[..n as usize]).expect("no NUL"));
                        }
                        Ok(CString::new(&buf[..n]).expect("no NUL"))
                    })
                    .map_err(|e| self.fail(&join(rel, name), e))?;
                // SAFETY: `target` and `name` are NUL-terminated for the call; `ddir` is an open dir fd held by the
                // caller.
                check(unsafe { libc::symlinkat(target.as_ptr(), ddir, name.as_ptr()) })
                    .map_err(|e| self.fail(&join(rel, name), e))?;
                self.apply_meta_at(At::Name(ddir, name), At::Name(sdir, name), st, rel, name, Some(0o777))?;
                self.stats.symlinks.fetch_add(1, Relaxed);
                self.tick(0);
            }
            _ => {
                let rdev = libc::makedev(st.stx_rdev_major, st.stx_rdev_minor);
                // SAFETY: `name` is NUL-terminated for the call and `ddir` an open dir fd held by the caller;
                // mknodat reads nothing else of ours.
                check(unsafe { libc::mknodat(ddir, name.as_ptr(), fmt | 0o600, rdev) })
                    .map_err(|e| self.fail(&join(rel, name), e))?;
                self.apply_meta_at(At::Name(ddir, name), At::Name(sdir, name), st, rel, name, Some(0o600))?;
                self.stats.specials.fetch_add(1, Relaxed);
                self.tick(0);
            }
        }
        Ok(())
    }

    fn copy_data(&self, sfd: RawFd, dfd: RawFd, st: &libc::statx) -> nix::Result<()> {
        if self.reflink.load(Relaxed) != BROKEN {
            // SAFETY: FICLONE takes the source fd by value; both fds are open Files held by copy_nondir for this
            // call.
            if unsafe { libc::ioctl(dfd, libc::FICLONE, sfd) } == 0 {
                self.reflink.store(WORKS, Relaxed);
                self.stats.reflinked.fetch_add(1, Relaxed);
                return Ok(());
            }
            let e = errno();
            if self.reflink.load(Relaxed) == UNKNOWN {
                tracing::debug!("reflink unavailable: {e}");
                self.reflink.store(BROKEN, Relaxed);
            } else if !matches!(
                e,
                nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EXDEV | nix::errno::Errno::EINVAL
            ) {
                return Err(e);
            }
        }
        let size = st.stx_size as i64;
        if st.stx_blocks * 512 < st.stx_size {
            // Sparse: copy only the data extents so holes stay holes.
            let mut off: i64 = 0;
            while off < size {
                // SAFETY: lseek only moves the offset of `sfd`, an open fd held by the caller, and reads no memory
                // of ours.
                let data = unsafe { libc::lseek(sfd, off, libc::SEEK_DATA) };
                if data < 0 {
                    if errno() == nix::errno::Errno::ENXIO {
                        break;
                    }
                    return Err(errno());
                }
                // SAFETY: lseek only moves the offset of `sfd`, an open fd held by the caller, and reads no memory
                // of ours.
                let hole = unsafe { libc::lseek(sfd, data, libc::SEEK_HOLE) };
                if hole < 0 {
                    return Err(errno());
                }
                self.copy_range(sfd, dfd, data, hole.min(size) - data)?;
                off = hole;
            }
            // SAFETY: ftruncate takes integers only; `dfd` is an open fd held by the caller.
            return check(unsafe { libc::ftruncate(dfd, size) }).map(drop);
        }
        self.copy_range(sfd, dfd, 0, size)
    }

    /// Copy `len` bytes at `off`: copy_file_range, else read/write.
    fn copy_range(&self, sfd: RawFd, dfd: RawFd, off: i64, len: i64) -> nix::Result<()> {
        let (mut so, mut d_off) = (off, off);
        let end = off + len;
        if self.cfr.load(Relaxed) != BROKEN {
            while so < end {
                // SAFETY: `so` and `d_off` are live i64s the kernel reads and advances; no buffer of ours is
                // involved, and both fds are held open by the caller.
                let n =
                    unsafe { crate::rawsys::copy_file_range(sfd, &mut so, dfd, &mut d_off, (end - so) as usize, 0) };
                if n > 0 {
                    continue;
                }
                if n == 0 {
                    break; // file shrank under us
                }
                let e = errno();
                if matches!(
                    e,
                    nix::errno::Errno::EXDEV
                        | nix::errno::Errno::EINVAL
                        | nix::errno::Errno::ENOSYS
                        | nix::errno::Errno::EOPNOTSUPP
                ) && so == off
                {
                    self.cfr.store(BROKEN, Relaxed);
                    break;
                }
                return Err(e);
            }
            if self.cfr.load(Relaxed) != BROKEN {
                return Ok(());
            }
        }
        BUF.with_borrow_mut(|buf| {
            if buf.len() < 256 * 1024 {
                buf.resize(256 * 1024, 0);
            }
            while so < end {
                let want = ((end - so) as usize).min(buf.len());
                // SAFETY: `buf` is at least `want` bytes long (resized above, `want` capped at its length) and
                // exclusively borrowed for pread to write into.
                let n = unsafe { libc::pread(sfd, buf.as_mut_ptr().cast(), want, so) };
                if n < 0 {
                    if errno() == nix::errno::Errno::EINTR {
                        continue;
                    }
                    return Err(errno());
                }
                if n == 0 {
                    break;
                }
                let mut w = 0usize;
                while w < n as usize {
                    // SAFETY: `w < n <= buf.len()`, so `buf[w..]` holds the `n - w` bytes pwrite reads.
                    let m = unsafe { libc::pwrite(dfd, buf[w..].as_ptr().cast(), n as usize - w, so + w as i64) };
                    if m < 0 {
                        if errno() == nix::errno::Errno::EINTR {
                            continue;
                        }
                        return Err(errno());
                    }
                    w += m as usize;
                }
                so += n as i64;
            }
            Ok(())
        })
    }

    fn apply_meta(&self, dfd: RawFd, st: &libc::statx, rel: &Path, sfd: RawFd) -> Result<()> {
        self.apply_meta_at(At::Fd(dfd), At::Fd(sfd), st, rel, c"", None)
    }

    /// Owner, xattrs, mode (after chown, which clears setuid; after the ACL,
    /// which rewrites group bits), then times. `created`: the mode a node we
    /// just made was created with; owner and mode calls it would not change are skipped.
    fn apply_meta_at(
        &self,
        d: At,
        s: At,
        st: &libc::statx,
        rel: &Path,
        name: &CStr,
        created: Option<u32>,
    ) -> Result<()> {
        let path = || {
            if name.is_empty() {
                rel.to_path_buf()
            } else {
                join(rel, name)
            }
        };
        let (uid, gid) = self.map_owner(st, &path())?;
        let fresh = created.zip(self.fresh);
        if fresh.is_none_or(|(_, f)| f.owner != (uid, gid)) {
            let r = match d {
                // SAFETY: fchown takes integers only; `fd` is an open fd held by the caller.
                At::Fd(fd) => unsafe { libc::fchown(fd, uid, gid) },
                // SAFETY: `n` is a NUL-terminated CStr borrowed for the call and `dir` an open dir fd held by the
                // caller; AT_SYMLINK_NOFOLLOW changes a symlink itself, never its target.
                At::Name(dir, n) => unsafe { libc::fchownat(dir, n.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) },
            };
            check(r).map_err(|e| self.fail(&path(), e))?;
        }
        let had_xattrs = self.copy_xattrs(d, s, &path)?;
        let fmt = st.stx_mode as u32 & libc::S_IFMT;
        let mode = st.stx_mode as u32 & 0o7777;
        let mode_right = !had_xattrs && fresh.is_some_and(|(c, f)| c & !f.umask == mode);
        if fmt != libc::S_IFLNK && !mode_right {
            let r = match d {
                // SAFETY: fchmod takes integers only; `fd` is an open fd held by the caller.
                At::Fd(fd) => unsafe { libc::fchmod(fd, mode) },
                // Our own fresh node; not a symlink, so no follow risk.
                // SAFETY: `n` is a NUL-terminated CStr borrowed for the call and `dir` an open dir fd held by the
                // caller.
                At::Name(dir, n) => unsafe { libc::fchmodat(dir, n.as_ptr(), mode, 0) },
            };
            check(r).map_err(|e| self.fail(&path(), e))?;
        }
        let ts = times(st);
        let r = match d {
            // SAFETY: `ts` is a live [timespec; 2], the two entries futimens reads.
            At::Fd(fd) => unsafe { libc::futimens(fd, ts.as_ptr()) },
            // SAFETY: `ts` is a live [timespec; 2], the two entries utimensat reads; `n` is NUL-terminated and
            // `dir` open.
            At::Name(dir, n) => unsafe { libc::utimensat(dir, n.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) },
        };
        check(r).map_err(|e| self.fail(&path(), e))?;
        Ok(())
    }

    /// Returns whether the source had any.
    fn copy_xattrs(&self, d: At, s: At, path: &dyn Fn() -> PathBuf) -> Result<bool> {
        XBUF.with_borrow_mut(|(list, val)| {
            let n = match xcall(list, |p, l| xattr_list(s, p, l)) {
                Ok(n) => n,
                Err(nix::errno::Errno::EOPNOTSUPP) => 0,
                Err(e) => return Err(self.fail(&path(), e)),
            };
            if n == 0 {
                return Ok(false);
            }
            for key in list[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
                let key = CString::new(key).expect("no NUL");
                let len = match xcall(val, |p, l| xattr_get(s, &key, p, l)) {
                    Ok(len) => len,
                    Err(nix::errno::Errno::ENODATA) => continue,
                    Err(e) => return Err(self.fail(&path(), e)),
                };
                let mut value: &[u8] = &val[..len];
                let shifted;
                if let Some(shift) = self.shift {
                    let k = key.to_bytes();
                    let r = if k == b"system.posix_acl_access" || k == b"system.posix_acl_default" {
                        Some(shift_acl(value, shift))
                    } else if k == b"security.capability" {
                        Some(shift_fcaps(value, shift))
                    } else {
                        None
                    };
                    if let Some(r) = r {
                        shifted = r.map_err(|e| e.at(self.src_root.join(path())))?;
                        value = &shifted;
                    }
                }
                if xattr_set(d, &key, value) < 0 {
                    let e = errno();
                    if e == nix::errno::Errno::EOPNOTSUPP {
                        tracing::warn!(
                            "{}: xattr {} not supported by the target filesystem, skipped",
                            self.src_root.join(path()).display(),
                            key.to_string_lossy()
                        );
                        continue;
                    }
                    return Err(Error::errno(OP, self.src_root.join(path()), e)
                        .with_msg(format!("setting xattr {}", key.to_string_lossy())));
                }
            }
            Ok(true)
        })
    }
}

// The *xattrat calls (Linux 6.13) name an entry by directory fd and name
// without following a symlink: no walk of a /proc/self/fd path per
// symlink or device node. Older kernels answer ENOSYS once, and the
// /proc path is used from then on.
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;
static XATTRAT: AtomicU8 = AtomicU8::new(UNKNOWN);

/// `struct xattr_args` of the *xattrat calls.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// Run an *xattrat call, unless the kernel is known to lack them; `None`
/// when it does (the caller falls back to the /proc path).
fn xattrat(f: impl FnOnce() -> libc::c_long) -> Option<isize> {
    if XATTRAT.load(Relaxed) == BROKEN {
        return None;
    }
    let r = f();
    if r < 0 && errno() == nix::errno::Errno::ENOSYS {
        XATTRAT.store(BROKEN, Relaxed);
        return None;
    }
    Some(r as isize)
}

/// getxattrat or setxattrat (`nr`) of `key` on the entry `n` in `dir`
/// itself (a symlink is never followed), its value buffer at `value`, of
/// `size` bytes; `None` where the kernel lacks the call.
///
/// # Safety
/// `value` is null with `size` 0, or points at `size` bytes alive for the
/// call (writable for getxattrat).
unsafe fn xattr_at(nr: libc::c_long, dir: RawFd, n: &CStr, key: &CStr, value: u64, size: usize) -> Option<isize> {
    xattrat(|| {
        let args = XattrArgs {
            value,
            size: size as u32,
            flags: 0,
        };
        // SAFETY: `args` is a live xattr_args of the size passed, pointing at a buffer as the caller promises;
        // `n` and `key` are NUL-terminated and `dir` an open dir fd held by the caller; AT_SYMLINK_NOFOLLOW
        // reaches the entry itself, never a symlink's target.
        unsafe {
            libc::syscall(
                nr,
                dir,
                n.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
                key.as_ptr(),
                &args as *const XattrArgs,
                std::mem::size_of::<XattrArgs>(),
            )
        }
    })
}

fn xattr_list(s: At, p: *mut libc::c_void, l: usize) -> isize {
    match s {
        // SAFETY: `p` is null with `l` 0 or a buffer of `l` bytes (see xcall), which the kernel never writes past;
        // `fd` is an open fd held by the caller.
        At::Fd(fd) => unsafe { libc::flistxattr(fd, p.cast(), l) },
        At::Name(dir, n) => xattrat(|| {
            // SAFETY: as above for the buffer; `n` is a NUL-terminated CStr and `dir` an open dir fd held by the
            // caller; AT_SYMLINK_NOFOLLOW lists the entry itself, never a symlink's target.
            unsafe { libc::syscall(SYS_LISTXATTRAT, dir, n.as_ptr(), libc::AT_SYMLINK_NOFOLLOW, p, l) }
        })
        .unwrap_or_else(|| {
            let sp = proc_path(dir, n);
            // SAFETY: as above for the buffer; `sp` is a NUL-terminated CString alive for the call, and the l*
            // call does not follow its last component.
            unsafe { libc::llistxattr(sp.as_ptr(), p.cast(), l) }
        }),
    }
}

fn xattr_get(s: At, key: &CStr, p: *mut libc::c_void, l: usize) -> isize {
    match s {
        // SAFETY: `p` is null with `l` 0 or a buffer of `l` bytes (see xcall), which the kernel never writes past;
        // `key` is NUL-terminated and `fd` an open fd held by the caller.
        At::Fd(fd) => unsafe { libc::fgetxattr(fd, key.as_ptr(), p, l) },
        // SAFETY: `p` is null with `l` 0 or a buffer of `l` bytes (see xcall), which the kernel never writes past.
        At::Name(dir, n) => unsafe { xattr_at(SYS_GETXATTRAT, dir, n, key, p as u64, l) }.unwrap_or_else(|| {
            let sp = proc_path(dir, n);
            // SAFETY: as above for the buffer; `sp` and `key` are NUL-terminated CStrings alive for the call, and
            // the l* call does not follow the last component.
            unsafe { libc::lgetxattr(sp.as_ptr(), key.as_ptr(), p, l) }
        }),
    }
}

/// Set one xattr on the destination entry; the raw result (errno on failure).
fn xattr_set(d: At, key: &CStr, value: &[u8]) -> isize {
    match d {
        // SAFETY: `value` is a live slice and the length passed is its own; `key` is NUL-terminated and `fd` an
        // open fd held by the caller.
        At::Fd(fd) => unsafe { libc::fsetxattr(fd, key.as_ptr(), value.as_ptr().cast(), value.len(), 0) as isize },
        // SAFETY: `value` is a live slice of the length passed, which the kernel only reads.
        At::Name(dir, n) => unsafe { xattr_at(SYS_SETXATTRAT, dir, n, key, value.as_ptr() as u64, value.len()) }
            .unwrap_or_else(|| {
                let dp = proc_path(dir, n);
                // SAFETY: `value` is a live slice and the length passed is its own; `dp` and `key` are NUL-terminated
                // CStrings alive for the call, and the l* call does not follow the last component.
                unsafe { libc::lsetxattr(dp.as_ptr(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) as isize }
            }),
    }
}

impl Error {
    fn with_msg(mut self, what: String) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }
}

/// The xattrs of `name` in `dir`, sorted, or `None` when they cannot be read.
fn xattrs_of(dir: RawFd, name: &CStr) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let p = proc_path(dir, name);
    let (mut list, mut val) = (Vec::new(), Vec::new());
    // SAFETY: xcall passes either `list`'s own pointer with its length or null with 0; `p` is NUL-terminated.
    let n = match xcall(&mut list, |b, l| unsafe { libc::llistxattr(p.as_ptr(), b.cast(), l) }) {
        Ok(n) => n,
        Err(nix::errno::Errno::EOPNOTSUPP) => 0,
        Err(_) => return None,
    };
    let mut out = Vec::new();
    for key in list[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let k = CString::new(key).expect("no NUL");
        // SAFETY: as above, with `val`'s own pointer and length; `k` is NUL-terminated.
        let len = xcall(&mut val, |b, l| unsafe {
            libc::lgetxattr(p.as_ptr(), k.as_ptr(), b, l)
        })
        .ok()?;
        out.push((key.to_vec(), val[..len].to_vec()));
    }
    out.sort();
    Some(out)
}

/// Entries below `root` and bytes of its regular files (hardlinks once), as a copy would see them.
pub fn measure_tree(root: &Path) -> (u64, u64) {
    let t = progress::measure(root);
    (t.entries, t.bytes)
}

#[cfg(test)]
mod dirent_tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn open(p: &Path) -> OwnedFd {
        open_dir_at(libc::AT_FDCWD, p.as_os_str().as_bytes()).unwrap()
    }

    #[test]
    fn an_empty_dir_is_empty_and_any_entry_makes_it_not() {
        let d = tempfile::tempdir().unwrap();
        assert!(dir_is_empty(open(d.path()).as_raw_fd()).unwrap());
        // One entry whose name is as long as names go: it must fit the small buffer.
        let long = "n".repeat(255);
        std::fs::write(d.path().join(&long), b"").unwrap();
        assert!(!dir_is_empty(open(d.path()).as_raw_fd()).unwrap());
        std::fs::remove_file(d.path().join(&long)).unwrap();
        std::os::unix::fs::symlink("/nonexistent", d.path().join("l")).unwrap();
        assert!(!dir_is_empty(open(d.path()).as_raw_fd()).unwrap());
    }

    #[test]
    fn typed_entries_are_all_there_with_their_types() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..2000 {
            std::fs::write(d.path().join(format!("f{i:04}-{}", "x".repeat(40))), b"").unwrap();
        }
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("sub", d.path().join("link")).unwrap();
        let mut out = Vec::new();
        read_dir_typed(open(d.path()).as_raw_fd(), &mut out).unwrap();
        assert_eq!(out.len(), 2002);
        let ty = |n: &str| out.iter().find(|(c, _)| c.to_bytes() == n.as_bytes()).map(|e| e.1);
        // tmpfs and ext4 both give d_type; DT_UNKNOWN is handled by callers.
        assert!(matches!(ty("sub"), Some(libc::DT_DIR) | Some(libc::DT_UNKNOWN)));
        assert!(matches!(ty("link"), Some(libc::DT_LNK) | Some(libc::DT_UNKNOWN)));
        assert!(!out.iter().any(|(c, _)| c.to_bytes() == b"." || c.to_bytes() == b".."));
    }
}
