//! Reading a tree out of a container stream into a directory.
//!
//! The stream is not trusted: every entry is made relative to directory
//! fds opened with `O_NOFOLLOW` from the root down, so a symlink in the
//! tree (one the stream itself made a moment ago, say `etc -> /etc`) can
//! never redirect a write outside it; `..` and absolute names are refused;
//! a hardlink may only point at an entry already made in the same tree.

use super::pax::Records;
use crate::copy::{open_dir, proc_path, shift_acl, shift_fcaps};
use crate::err;
use crate::error::{Error, Result};
use crate::idmap::IdShift;
use std::ffi::{CStr, CString, OsStr};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const OP: &str = "receive";

/// Fills one directory from tar entries.
pub struct Unpacker {
    root: OwnedFd,
    root_path: PathBuf,
    /// The tree's archive name (`rootfs`): entry and hardlink names are below it.
    prefix: Vec<u8>,
    /// The dirs from the root down to the last entry's parent, kept open:
    /// entries come dir by dir, depth first, so the next one's parent is
    /// almost always on this path (one `openat` per new dir, not per level).
    stack: Vec<(Vec<u8>, OwnedFd)>,
    /// Directory times and default ACLs, set once everything below them is
    /// made (an entry made in a dir with a default ACL would inherit an ACL
    /// the sender's does not have).
    dirs: Vec<DirLater>,
    shift: Option<IdShift>,
    pub entries: u64,
    pub bytes: u64,
    /// Applying an incremental tree onto a copy of its base: a directory
    /// may be replaced (removed whole), and xattrs not sent are removed
    /// from directories kept.
    pub delta: bool,
    /// File data on its way to disk, kept from one file to the next.
    buf: Vec<u8>,
}

/// A directory's path components, times and default ACL, applied last.
type DirLater = (Vec<Vec<u8>>, [libc::timespec; 2], Option<Vec<u8>>);

/// What the PAX records of an entry say.
#[derive(Default)]
struct Meta {
    mtime: Option<(i64, i64)>,
    uid: Option<u64>,
    gid: Option<u64>,
    xattrs: Vec<(CString, Vec<u8>)>,
    sparse: Option<PaxSparse>,
}

/// GNU tar's POSIX sparse records (`--format=posix --sparse`): formats 0.0
/// (`GNU.sparse.offset`/`numbytes` pairs), 0.1 (`GNU.sparse.map`) and 1.0
/// (the map at the start of the entry's data).
#[derive(Default)]
struct PaxSparse {
    major: Option<u64>,
    /// The file's real name (0.1 and 1.0 store a made-up one in the header).
    name: Option<Vec<u8>>,
    /// The file's real size.
    size: Option<u64>,
    /// Data regions (offset, length), in file order.
    map: Vec<(u64, u64)>,
    /// A 0.0 offset waiting for its `numbytes`.
    offset: Option<u64>,
}

/// Bytes of file data read from the stream at a time.
const DATA_BUF: usize = 256 * 1024;

/// Most regions a sparse map may list (a real file has far fewer).
const MAX_SPARSE_REGIONS: u64 = 1 << 20;

fn last<'a>(pax: Option<&'a Records>, key: &[u8]) -> Option<&'a [u8]> {
    pax?.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
}

/// Whether the `tar` crate's own reading of the PAX header found `key`
/// (then, where the length-framed records lack it, the crate took the
/// tail of some value for a record: refused).
fn crate_sees<R: Read>(e: &mut tar::Entry<'_, R>, key: &[u8]) -> std::io::Result<bool> {
    Ok(e.pax_extensions()?
        .is_some_and(|x| x.filter_map(|r| r.ok()).any(|r| r.key_bytes() == key)))
}

fn ambiguous(what: &str) -> std::io::Error {
    std::io::Error::other(format!("a PAX header read two ways (its {what})"))
}

/// The archive name of an entry: from its PAX records (GNU's sparse
/// `GNU.sparse.name`, then `path`), else the header's or a GNU long name.
pub fn entry_name<R: Read>(e: &mut tar::Entry<'_, R>, pax: Option<&Records>) -> std::io::Result<Vec<u8>> {
    if let Some(v) = last(pax, b"GNU.sparse.name").or_else(|| last(pax, b"path")) {
        return Ok(v.to_vec());
    }
    if crate_sees(e, b"path")? {
        return Err(ambiguous("path"));
    }
    Ok(e.path_bytes().into_owned())
}

/// A link's target, by the same rule as [`entry_name`].
fn link_name<R: Read>(e: &mut tar::Entry<'_, R>, pax: Option<&Records>) -> std::io::Result<Option<Vec<u8>>> {
    if let Some(v) = last(pax, b"linkpath") {
        return Ok(Some(v.to_vec()));
    }
    if crate_sees(e, b"linkpath")? {
        return Err(ambiguous("linkpath"));
    }
    Ok(e.link_name_bytes().map(|c| c.into_owned()))
}

fn errno() -> nix::errno::Errno {
    nix::errno::Errno::last()
}

impl Unpacker {
    /// Unpack into the existing directory `root`; `shift` maps owners, ACLs
    /// and file capabilities on the way in.
    pub fn new(root: &Path, prefix: &str, shift: Option<IdShift>) -> Result<Self> {
        let c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| err!(InvalidArgument, OP, "path contains a NUL byte").at(root))?;
        let fd = open_dir(libc::AT_FDCWD, &c).map_err(|e| Error::errno(OP, root, e))?;
        Ok(Unpacker {
            root: fd,
            root_path: root.to_path_buf(),
            prefix: prefix.as_bytes().to_vec(),
            stack: Vec::new(),
            dirs: Vec::new(),
            shift,
            entries: 0,
            bytes: 0,
            delta: false,
            buf: vec![0u8; DATA_BUF],
        })
    }

    fn at(&self, comps: &[Vec<u8>]) -> PathBuf {
        let mut p = self.root_path.clone();
        for c in comps {
            p.push(OsStr::from_bytes(c));
        }
        p
    }

    fn bad(&self, rel: &[u8], why: &str) -> Error {
        err!(
            InvalidArgument,
            OP,
            "stream entry {:?}: {why}",
            String::from_utf8_lossy(rel)
        )
    }

    /// Split a name relative to the tree's root; refuse what could leave it.
    fn components(&self, rel: &[u8]) -> Result<Vec<Vec<u8>>> {
        if rel.first() == Some(&b'/') {
            return Err(self.bad(rel, "absolute name"));
        }
        let mut out = Vec::new();
        for c in rel.split(|&b| b == b'/') {
            match c {
                b"" | b"." => continue,
                b".." => return Err(self.bad(rel, "name with `..`")),
                c if c.contains(&0) => return Err(self.bad(rel, "name with a NUL byte")),
                c => out.push(c.to_vec()),
            }
        }
        Ok(out)
    }

    /// The directory holding `comps`' last component, walked from the root
    /// without following any symlink.
    fn parent(&mut self, comps: &[Vec<u8>]) -> Result<RawFd> {
        let dir = &comps[..comps.len() - 1];
        let common = self.stack.iter().zip(dir).take_while(|((n, _), c)| n == *c).count();
        self.stack.truncate(common);
        for (i, c) in dir.iter().enumerate().skip(common) {
            let cur = self.stack.last().map_or(self.root.as_raw_fd(), |(_, f)| f.as_raw_fd());
            let name = CString::new(c.as_slice()).expect("checked for NUL");
            let next = open_dir(cur, &name).map_err(|e| {
                let why = match e {
                    nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => {
                        "lies beneath a symlink or a non-directory (refused: it could lead outside the tree)"
                            .to_string()
                    }
                    nix::errno::Errno::ENOENT => "its directory is not in the stream before it".to_string(),
                    e => e.desc().to_string(),
                };
                err!(
                    InvalidArgument,
                    OP,
                    "stream entry {}: {why}",
                    self.at(&comps[..=i]).display()
                )
            })?;
            self.stack.push((c.clone(), next));
        }
        Ok(self.stack.last().map_or(self.root.as_raw_fd(), |(_, f)| f.as_raw_fd()))
    }

    fn owner(&self, uid: u64, gid: u64, path: &Path) -> Result<(u32, u32)> {
        let (uid, gid) = (
            u32::try_from(uid).map_err(|_| err!(InvalidArgument, OP, "uid {uid} out of range").at(path))?,
            u32::try_from(gid).map_err(|_| err!(InvalidArgument, OP, "gid {gid} out of range").at(path))?,
        );
        match &self.shift {
            None => Ok((uid, gid)),
            Some(s) => Ok((
                s.map_uid(uid)
                    .ok_or_else(|| err!(InvalidArgument, OP, "uid {uid} is not in the target map").at(path))?,
                s.map_gid(gid)
                    .ok_or_else(|| err!(InvalidArgument, OP, "gid {gid} is not in the target map").at(path))?,
            )),
        }
    }

    /// Make one entry, given its archive name (below the prefix).
    pub fn entry<R: Read>(&mut self, name: &[u8], e: &mut tar::Entry<'_, R>, pax: Option<&Records>) -> Result<()> {
        let rel = strip_tree(&self.prefix, name).ok_or_else(|| self.bad(name, "not in this tree"))?;
        let comps = self.components(rel)?;
        let path = self.at(&comps);
        let ioe = |e: std::io::Error| Error::io(OP, &path, e);
        let mut meta = read_pax(pax).map_err(ioe)?;
        let h = e.header();
        let kind = h.entry_type();
        let mode = h.mode().map_err(ioe)? & 0o7777;
        let (uid, gid) = self.owner(
            meta.uid.unwrap_or(h.uid().map_err(ioe)?),
            meta.gid.unwrap_or(h.gid().map_err(ioe)?),
            &path,
        )?;
        let mtime = meta.mtime.unwrap_or((h.mtime().map_err(ioe)? as i64, 0));
        let ts = [
            libc::timespec {
                tv_sec: mtime.0,
                tv_nsec: mtime.1 as _,
            },
            libc::timespec {
                tv_sec: mtime.0,
                tv_nsec: mtime.1 as _,
            },
        ];
        let mut xattrs = self.shifted_xattrs(meta.xattrs, &path)?;
        // A directory's default ACL waits for `finish` (see `dirs`).
        let default_acl = if kind == tar::EntryType::Directory {
            let i = xattrs.iter().position(|(k, _)| k.to_bytes() == ACL_DEFAULT);
            i.map(|i| xattrs.remove(i).1)
        } else {
            None
        };
        self.entries += 1;
        if comps.is_empty() {
            if kind != tar::EntryType::Directory {
                return Err(self.bad(rel, "the tree's root is not a directory"));
            }
            let fd = self.root.as_raw_fd();
            if self.delta {
                prune_xattrs(fd, &xattrs).map_err(|e| Error::errno(OP, &path, e))?;
            }
            set_meta(At::Fd(fd), uid, gid, mode, &xattrs, &path)?;
            self.dirs.push((comps, ts, default_acl));
            return Ok(());
        }
        let pfd = self.parent(&comps)?;
        let name = CString::new(comps[comps.len() - 1].as_slice()).expect("checked for NUL");
        let is_dir = kind == tar::EntryType::Directory;
        // A name made twice: a directory is kept (its metadata applied again), anything else replaced.
        match nix::sys::stat::fstatat(Some(pfd), name.as_c_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let was_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                if was_dir && !is_dir {
                    if !self.delta {
                        return Err(self.bad(rel, "would replace a directory"));
                    }
                    remove_at(pfd, &name).map_err(|e| Error::errno(OP, &path, e))?;
                }
                if !was_dir {
                    nix::unistd::unlinkat(Some(pfd), name.as_c_str(), nix::unistd::UnlinkatFlags::NoRemoveDir)
                        .map_err(|e| Error::errno(OP, &path, e))?;
                }
            }
            Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(Error::errno(OP, &path, e)),
        }
        let fail = |e: nix::errno::Errno| Error::errno(OP, &path, e);
        match kind {
            tar::EntryType::Directory => {
                // SAFETY: mkdirat with a NUL-terminated name below an fd we opened.
                let r = unsafe { libc::mkdirat(pfd, name.as_ptr(), 0o700) };
                if r < 0 && errno() != nix::errno::Errno::EEXIST {
                    return Err(fail(errno()));
                }
                let fd = open_dir(pfd, &name).map_err(fail)?;
                if self.delta {
                    prune_xattrs(fd.as_raw_fd(), &xattrs).map_err(fail)?;
                }
                set_meta(At::Fd(fd.as_raw_fd()), uid, gid, mode, &xattrs, &path)?;
                // Its entries come next: keep it open on the dir stack.
                let last = comps[comps.len() - 1].clone();
                self.dirs.push((comps, ts, default_acl));
                self.stack.push((last, fd));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                // SAFETY: openat with a NUL-terminated name; O_EXCL|O_NOFOLLOW make a fresh file or fail.
                let fd = unsafe {
                    libc::openat(
                        pfd,
                        name.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                        0o600,
                    )
                };
                if fd < 0 {
                    return Err(fail(errno()));
                }
                // SAFETY: fd was just opened and is owned by nobody else.
                let f = unsafe { std::fs::File::from_raw_fd(fd) };
                self.bytes += match meta.sparse.take() {
                    Some(sp) => write_pax_sparse(&f, e, sp, &mut self.buf),
                    None => write_data(&f, e, &mut self.buf),
                }
                .map_err(|e| Error::io(OP, &path, e))?;
                set_meta(At::Fd(fd), uid, gid, mode, &xattrs, &path)?;
                // SAFETY: futimens on our own open fd with two timespecs.
                if unsafe { libc::futimens(fd, ts.as_ptr()) } < 0 {
                    return Err(fail(errno()));
                }
            }
            tar::EntryType::Symlink => {
                let target = link_name(e, pax)
                    .map_err(ioe)?
                    .ok_or_else(|| self.bad(rel, "symlink without a target"))?;
                let t = CString::new(target).map_err(|_| self.bad(rel, "target with a NUL byte"))?;
                // SAFETY: symlinkat with NUL-terminated strings; it never follows anything.
                if unsafe { libc::symlinkat(t.as_ptr(), pfd, name.as_ptr()) } < 0 {
                    return Err(fail(errno()));
                }
                set_meta(At::Name(pfd, &name, true), uid, gid, mode, &xattrs, &path)?;
                utimes_at(pfd, &name, &ts).map_err(fail)?;
            }
            tar::EntryType::Link => {
                let target = link_name(e, pax)
                    .map_err(ioe)?
                    .ok_or_else(|| self.bad(rel, "hardlink without a target"))?;
                let trel = strip_tree(&self.prefix, &target)
                    .ok_or_else(|| self.bad(rel, "hardlink to an entry outside the tree"))?;
                let tcomps = self.components(trel)?;
                if tcomps.is_empty() {
                    return Err(self.bad(rel, "hardlink to the tree's root"));
                }
                let tpath = self.at(&tcomps);
                // The dir stack holds one path: take the target's dir, then ours again.
                let tdir = self.parent(&tcomps)?;
                let tdir = nix::unistd::dup(tdir).map_err(fail)?;
                // SAFETY: dup just gave us this fd; nothing else owns it.
                let tdir = unsafe { OwnedFd::from_raw_fd(tdir) };
                let tname = CString::new(tcomps[tcomps.len() - 1].as_slice()).expect("checked for NUL");
                let pfd = self.parent(&comps)?;
                // SAFETY: linkat without AT_SYMLINK_FOLLOW links the entry itself, never what it points to.
                if unsafe { libc::linkat(tdir.as_raw_fd(), tname.as_ptr(), pfd, name.as_ptr(), 0) } < 0 {
                    return Err(err!(
                        InvalidArgument,
                        OP,
                        "stream entry {}: hardlink to {}: {}",
                        path.display(),
                        tpath.display(),
                        errno().desc()
                    ));
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (t, dev) = match kind {
                    tar::EntryType::Fifo => (libc::S_IFIFO, 0),
                    _ => {
                        let maj = h.device_major().map_err(ioe)?.unwrap_or(0);
                        let min = h.device_minor().map_err(ioe)?.unwrap_or(0);
                        let t = if kind == tar::EntryType::Char {
                            libc::S_IFCHR
                        } else {
                            libc::S_IFBLK
                        };
                        (t, libc::makedev(maj, min))
                    }
                };
                // SAFETY: mknodat with a NUL-terminated name below an fd we opened.
                if unsafe { libc::mknodat(pfd, name.as_ptr(), t | 0o600, dev) } < 0 {
                    return Err(fail(errno()));
                }
                set_meta(At::Name(pfd, &name, false), uid, gid, mode, &xattrs, &path)?;
                utimes_at(pfd, &name, &ts).map_err(fail)?;
            }
            other => {
                return Err(self.bad(rel, &format!("unsupported entry type {other:?}")));
            }
        }
        Ok(())
    }

    fn shifted_xattrs(&self, xs: Vec<(CString, Vec<u8>)>, path: &Path) -> Result<Vec<(CString, Vec<u8>)>> {
        let Some(s) = &self.shift else { return Ok(xs) };
        xs.into_iter()
            .map(|(k, v)| {
                let b = k.to_bytes();
                let v = if b == b"system.posix_acl_access" || b == b"system.posix_acl_default" {
                    shift_acl(&v, s).map_err(|e| e.at(path))?
                } else if b == b"security.capability" {
                    shift_fcaps(&v, s).map_err(|e| e.at(path))?
                } else {
                    v
                };
                Ok((k, v))
            })
            .collect()
    }

    /// Incremental: remove what the tree no longer holds, `list` being
    /// NUL-separated names relative to it (what is already gone is skipped).
    pub fn remove_listed(&mut self, list: &[u8]) -> Result<()> {
        for rel in list.split(|&b| b == 0).filter(|r| !r.is_empty()) {
            let comps = self.components(rel)?;
            if comps.is_empty() {
                return Err(self.bad(rel, "would remove the tree's root"));
            }
            let path = self.at(&comps);
            let pfd = match self.parent(&comps) {
                Ok(fd) => fd,
                Err(_) if !exists_beneath(self.root.as_raw_fd(), &comps) => continue,
                Err(e) => return Err(e),
            };
            let name = CString::new(comps[comps.len() - 1].as_slice()).expect("checked for NUL");
            match remove_at(pfd, &name) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(Error::errno(OP, &path, e)),
            }
        }
        Ok(())
    }

    /// Set directory default ACLs and times, deepest first (making an entry
    /// changes its dir's mtime).
    pub fn finish(mut self) -> Result<()> {
        self.stack.clear();
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
        for (comps, ts, acl) in dirs {
            let path = self.at(&comps);
            let fd = if comps.is_empty() {
                self.root.try_clone().map_err(|e| Error::io(OP, &path, e))?
            } else {
                let pfd = self.parent(&comps)?;
                let name = CString::new(comps[comps.len() - 1].as_slice()).expect("checked for NUL");
                open_dir(pfd, &name).map_err(|e| Error::errno(OP, &path, e))?
            };
            if let Some(v) = acl {
                let k = CString::new(ACL_DEFAULT).expect("no NUL");
                set_xattr(At::Fd(fd.as_raw_fd()), None, &k, &v, &path)?;
            }
            // SAFETY: futimens on an fd we own, with two timespecs.
            if unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) } < 0 {
                return Err(Error::errno(OP, &path, errno()));
            }
        }
        Ok(())
    }
}

/// `name` relative to the tree `prefix` (`rootfs`, `snaps/snap0/rootfs`),
/// or `None` if it is not below it.
pub fn strip_tree<'a>(prefix: &[u8], name: &'a [u8]) -> Option<&'a [u8]> {
    let rest = name.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some(rest);
    }
    rest.strip_prefix(b"/")
}

/// Whether every directory above `comps` exists (as a directory, not followed through a symlink).
fn exists_beneath(root: RawFd, comps: &[Vec<u8>]) -> bool {
    let mut cur: Option<OwnedFd> = None;
    for c in &comps[..comps.len() - 1] {
        let name = CString::new(c.as_slice()).expect("checked for NUL");
        match open_dir(cur.as_ref().map_or(root, |f| f.as_raw_fd()), &name) {
            Ok(f) => cur = Some(f),
            Err(_) => return false,
        }
    }
    true
}

/// Remove `name` in `dir`, a directory with everything below it; no symlink is followed.
pub(crate) fn remove_at(dir: RawFd, name: &CStr) -> nix::Result<()> {
    use nix::unistd::{unlinkat, UnlinkatFlags};
    let st = nix::sys::stat::fstatat(Some(dir), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir);
    }
    let fd = open_dir(dir, name)?;
    let mut names = Vec::new();
    crate::copy::read_dir(fd.as_raw_fd(), &mut names)?;
    for n in names {
        remove_at(fd.as_raw_fd(), &n)?;
    }
    unlinkat(Some(dir), name, UnlinkatFlags::RemoveDir)
}

/// Remove a directory's xattrs that are not in `keep` (an ACL or a label
/// dropped on the sending side since the base).
fn prune_xattrs(fd: RawFd, keep: &[(CString, Vec<u8>)]) -> nix::Result<()> {
    let mut list = Vec::new();
    // SAFETY: the buffer pointer and length come from xcall's own Vec.
    let n = match crate::copy::xcall(&mut list, |b, l| unsafe { libc::flistxattr(fd, b.cast(), l) }) {
        Ok(n) => n,
        Err(nix::errno::Errno::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for k in list[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        if keep.iter().any(|(kk, _)| kk.to_bytes() == k) {
            continue;
        }
        let key = CString::new(k).expect("no NUL in an xattr name");
        // SAFETY: fremovexattr on our own fd with a NUL-terminated name.
        if unsafe { libc::fremovexattr(fd, key.as_ptr()) } < 0 && errno() != nix::errno::Errno::ENODATA {
            return Err(errno());
        }
    }
    Ok(())
}

enum At<'n> {
    Fd(RawFd),
    /// A node in a dir; `true` for a symlink (no chmod, only some xattrs).
    Name(RawFd, &'n CStr, bool),
}

/// Owner, xattrs (after chown, which would drop a file capability), then mode
/// (after the ACL, which sets group bits).
fn set_meta(at: At, uid: u32, gid: u32, mode: u32, xattrs: &[(CString, Vec<u8>)], path: &Path) -> Result<()> {
    let fail = |e: nix::errno::Errno| Error::errno(OP, path, e);
    // SAFETY: plain syscalls on fds we own and NUL-terminated names; fchownat never follows.
    let r = unsafe {
        match at {
            At::Fd(fd) => libc::fchown(fd, uid, gid),
            At::Name(d, n, _) => libc::fchownat(d, n.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW),
        }
    };
    if r < 0 {
        return Err(fail(errno()));
    }
    let pp = match at {
        At::Name(d, n, _) => Some(proc_path(d, n)),
        At::Fd(_) => None,
    };
    for (k, v) in xattrs {
        set_xattr(at_ref(&at), pp.as_deref(), k, v, path)?;
    }
    // SAFETY: as above; the named node is one we just made and not a symlink.
    let r = unsafe {
        match at {
            At::Fd(fd) => libc::fchmod(fd, mode),
            At::Name(_, _, true) => 0,
            At::Name(d, n, false) => libc::fchmodat(d, n.as_ptr(), mode, 0),
        }
    };
    if r < 0 {
        return Err(fail(errno()));
    }
    Ok(())
}

/// The name of a directory's default ACL.
const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

fn at_ref<'a>(at: &At<'a>) -> At<'a> {
    match at {
        At::Fd(fd) => At::Fd(*fd),
        At::Name(d, n, l) => At::Name(*d, n, *l),
    }
}

/// One xattr of `at` (by its `/proc` path `pp` for a node in a dir); one
/// the target filesystem does not support is skipped with a warning.
fn set_xattr(at: At, pp: Option<&CStr>, k: &CStr, v: &[u8], path: &Path) -> Result<()> {
    // SAFETY: the value pointer and length come from one slice; lsetxattr does not follow the last component.
    let r = unsafe {
        match (&at, pp) {
            (At::Fd(fd), _) => libc::fsetxattr(*fd, k.as_ptr(), v.as_ptr().cast(), v.len(), 0),
            (_, Some(p)) => libc::lsetxattr(p.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0),
            _ => unreachable!(),
        }
    };
    if r < 0 {
        let e = errno();
        if e == nix::errno::Errno::EOPNOTSUPP {
            tracing::warn!(
                "{}: xattr {} not supported by the target filesystem, skipped",
                path.display(),
                k.to_string_lossy()
            );
            return Ok(());
        }
        return Err(err!(
            Io,
            OP,
            "{}: setting xattr {}: {}",
            path.display(),
            k.to_string_lossy(),
            e.desc()
        ));
    }
    Ok(())
}

fn utimes_at(dir: RawFd, name: &CStr, ts: &[libc::timespec; 2]) -> nix::Result<()> {
    // SAFETY: utimensat with AT_SYMLINK_NOFOLLOW on a NUL-terminated name.
    if unsafe { libc::utimensat(dir, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } < 0 {
        return Err(errno());
    }
    Ok(())
}

/// Copy an entry's data; runs of zero blocks become holes. Returns the
/// file's size (holes counted).
fn write_data(f: &std::fs::File, r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    const BLK: usize = 4096;
    let mut off: u64 = 0;
    // Where data last ended: a hole at the end needs the size set.
    let mut data_end = 0u64;
    loop {
        // Fill the buffer as far as the reader goes, so blocks stay aligned.
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if n == 0 {
            break;
        }
        let mut i = 0;
        while i < n {
            let end = (i + BLK).min(n);
            let mut j = i;
            // Extend the run of non-zero blocks.
            while j < n {
                let e = (j + BLK).min(n);
                if buf[j..e].iter().all(|&b| b == 0) {
                    break;
                }
                j = e;
            }
            if j > i {
                f.write_all_at(&buf[i..j], off + i as u64)?;
                data_end = off + j as u64;
                i = j;
            } else {
                i = end;
            }
        }
        off += n as u64;
        if n < buf.len() {
            break;
        }
    }
    if off > data_end {
        f.set_len(off)?;
    }
    // Its size, holes included, as the sender counts it and the index's totals do.
    Ok(off)
}

/// Write a GNU PAX sparse entry: its regions at their offsets, holes left
/// as holes. Format 1.0 carries the map in front of the data, as decimal
/// lines padded to a 512-byte block.
fn write_pax_sparse(f: &std::fs::File, r: &mut impl Read, mut sp: PaxSparse, buf: &mut [u8]) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let bad = |m: &str| std::io::Error::other(format!("GNU PAX sparse entry: {m}"));
    let size = sp.size.ok_or_else(|| bad("no real size"))?;
    if sp.major == Some(1) {
        let mut used = 0u64;
        let mut next = |r: &mut dyn Read| -> std::io::Result<u64> {
            let mut v: u64 = 0;
            for i in 0.. {
                let mut b = [0u8];
                r.read_exact(&mut b)?;
                used += 1;
                match b[0] {
                    b'\n' if i > 0 => return Ok(v),
                    c @ b'0'..=b'9' if i < 20 => {
                        v = v
                            .checked_mul(10)
                            .and_then(|v| v.checked_add(u64::from(c - b'0')))
                            .ok_or_else(|| bad("number out of range"))?
                    }
                    _ => return Err(bad("bad map")),
                }
            }
            unreachable!()
        };
        let count = next(r)?;
        if count > MAX_SPARSE_REGIONS {
            return Err(bad("too many regions"));
        }
        sp.map.clear();
        for _ in 0..count {
            let off = next(r)?;
            let len = next(r)?;
            sp.map.push((off, len));
        }
        let pad = (512 - used % 512) % 512;
        std::io::copy(&mut r.take(pad), &mut std::io::sink())?;
    } else if sp.major.is_some() {
        return Err(bad("unknown format version"));
    }
    let mut end = 0u64;
    for &(off, len) in &sp.map {
        if off < end || off.checked_add(len).is_none_or(|e| e > size) {
            return Err(bad("regions overlap or lie past the end"));
        }
        end = off + len;
    }
    for (off, len) in sp.map {
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            r.read_exact(&mut buf[..want])?;
            f.write_all_at(&buf[..want], off + done)?;
            done += want as u64;
        }
    }
    f.set_len(size)?;
    // Its size, holes included, as the sender counts it and the index's totals do.
    Ok(size)
}

fn read_pax(pax: Option<&Records>) -> std::io::Result<Meta> {
    let mut m = Meta::default();
    let Some(exts) = pax else { return Ok(m) };
    let mut acls: Vec<(CString, Vec<u8>)> = Vec::new();
    for (key, val) in exts {
        let (key, val) = (key.as_slice(), val.as_slice());
        let num = || std::str::from_utf8(val).ok().and_then(|s| s.trim().parse::<u64>().ok());
        match key {
            b"mtime" => {
                let s = std::str::from_utf8(val).unwrap_or("");
                let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
                if let Ok(sec) = sec.parse::<i64>() {
                    let mut f = frac.chars().take(9).collect::<String>();
                    while f.len() < 9 {
                        f.push('0');
                    }
                    m.mtime = Some((sec, f.parse::<i64>().unwrap_or(0)));
                }
            }
            b"uid" => m.uid = num(),
            b"gid" => m.gid = num(),
            k if k.starts_with(b"SCHILY.xattr.") => {
                let name = &k[b"SCHILY.xattr.".len()..];
                if let Ok(c) = CString::new(name) {
                    m.xattrs.push((c, val.to_vec()));
                }
            }
            b"SCHILY.acl.access" | b"SCHILY.acl.default" => {
                // GNU tar's text form; the xattr record, where there is one, wins.
                let name = if key == b"SCHILY.acl.access" {
                    c"system.posix_acl_access"
                } else {
                    c"system.posix_acl_default"
                };
                let t = std::str::from_utf8(val).map_err(|_| std::io::Error::other("ACL text is not UTF-8"))?;
                let x = super::acl::from_text(t)
                    .ok_or_else(|| std::io::Error::other(format!("ACL {t:?} does not parse (numeric ids only)")))?;
                acls.push((name.to_owned(), x));
            }
            k if k.starts_with(b"GNU.sparse.") => {
                let sp = m.sparse.get_or_insert_with(PaxSparse::default);
                let n = || {
                    num().ok_or_else(|| {
                        std::io::Error::other(format!("PAX record {} is not a number", String::from_utf8_lossy(k)))
                    })
                };
                match &k[b"GNU.sparse.".len()..] {
                    b"major" => sp.major = Some(n()?),
                    b"minor" | b"numblocks" => {
                        n()?;
                    }
                    b"name" => sp.name = Some(val.to_vec()),
                    b"size" | b"realsize" => sp.size = Some(n()?),
                    b"offset" => sp.offset = Some(n()?),
                    b"numbytes" => {
                        let off = sp
                            .offset
                            .take()
                            .ok_or_else(|| std::io::Error::other("GNU.sparse.numbytes without an offset"))?;
                        sp.map.push((off, n()?));
                    }
                    b"map" => {
                        let v: Vec<u64> = std::str::from_utf8(val)
                            .ok()
                            .and_then(|s| s.split(',').map(|x| x.trim().parse().ok()).collect())
                            .ok_or_else(|| std::io::Error::other("GNU.sparse.map does not parse"))?;
                        if !v.len().is_multiple_of(2) {
                            return Err(std::io::Error::other("GNU.sparse.map has an odd count"));
                        }
                        sp.map = v.chunks(2).map(|c| (c[0], c[1])).collect();
                    }
                    other => {
                        return Err(std::io::Error::other(format!(
                            "unknown PAX sparse record GNU.sparse.{}",
                            String::from_utf8_lossy(other)
                        )))
                    }
                }
            }
            _ => {}
        }
    }
    for (k, v) in acls {
        if !m.xattrs.iter().any(|(n, _)| *n == k) {
            m.xattrs.push((k, v));
        }
    }
    Ok(m)
}
