//! Writing trees into a container stream's tar archive.

use super::StreamStats;
use crate::copy::{is_mount_root, open_dir, proc_path, raise_nofile_limit, read_dir, statx, xcall};
use crate::err;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const OP: &str = "send";

/// A tar archive being written, entry by entry.
pub struct Packer<W: Write> {
    b: tar::Builder<W>,
    /// First archive name of each multiply-linked inode, by (dev, ino).
    links: HashMap<(u32, u32, u64), Vec<u8>>,
    pub stats: StreamStats,
    /// Called after each entry with the file bytes it carried.
    pub tick: Option<Box<dyn FnMut(u64)>>,
    /// The data of the current small file (one read, kept between files).
    buf: Vec<u8>,
    /// Incremental: entries of the base gone from the tree, relative to it.
    deleted: Vec<Vec<u8>>,
    /// Length of the current tree's prefix and its slash.
    plen: usize,
}

/// Files up to this size are read whole with one read.
const SMALL: u64 = 4 << 20;

/// A reader that counts what it gave.
struct Counted<R> {
    r: R,
    n: u64,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let k = self.r.read(b)?;
        self.n += k as u64;
        Ok(k)
    }
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::io(OP, path, e)
}

impl<W: Write> Packer<W> {
    pub fn new(w: W) -> Self {
        let mut b = tar::Builder::new(w);
        b.mode(tar::HeaderMode::Complete);
        b.follow_symlinks(false);
        // Per file, where it has holes (see add_entry).
        b.sparse(false);
        Packer {
            b,
            links: HashMap::new(),
            stats: StreamStats::default(),
            tick: None,
            buf: Vec::new(),
            deleted: Vec::new(),
            plen: 0,
        }
    }

    /// A small file made of `data` (the index, configs), mode 0644, owned by root.
    pub fn add_bytes(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(now());
        self.b
            .append_data(&mut h, name, data)
            .map_err(|e| io_err(Path::new(name), e))
    }

    /// A file carried beside the trees (a hook script), with its mode, owned by root.
    pub fn add_file(&mut self, name: &str, data: &[u8], mode: u32) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode & 0o777);
        h.set_size(data.len() as u64);
        h.set_mtime(now());
        self.b
            .append_data(&mut h, name, data)
            .map_err(|e| io_err(Path::new(name), e))
    }

    /// The tree at `root` under the archive name `prefix` (its own entry
    /// `prefix/`, then everything below). Symlinks are never followed;
    /// other filesystems mounted below are entered as empty directories.
    pub fn add_tree(&mut self, prefix: &str, root: &Path) -> Result<()> {
        let _span = tracing::info_span!("pack tree", root = %root.display(), prefix).entered();
        raise_nofile_limit();
        let c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| err!(InvalidArgument, OP, "path contains a NUL byte").at(root))?;
        let fd = open_dir(libc::AT_FDCWD, &c).map_err(|e| Error::errno(OP, root, e))?;
        let st = statx(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map_err(|e| Error::errno(OP, root, e))?;
        self.links.clear();
        let name = prefix.as_bytes().to_vec();
        self.add_dir(fd.as_raw_fd(), &st, &name, root, None)
    }

    /// Incremental: what changed in the tree at `root` since `base` (see
    /// [`super`]), then `PREFIX.deleted` listing what is gone.
    pub fn add_tree_delta(&mut self, prefix: &str, root: &Path, base: &Path) -> Result<()> {
        let _span = tracing::info_span!("pack delta", root = %root.display(), base = %base.display()).entered();
        raise_nofile_limit();
        let open = |p: &Path| -> Result<std::os::fd::OwnedFd> {
            let c = CString::new(p.as_os_str().as_bytes())
                .map_err(|_| err!(InvalidArgument, OP, "path contains a NUL byte").at(p))?;
            open_dir(libc::AT_FDCWD, &c).map_err(|e| Error::errno(OP, p, e))
        };
        let fd = open(root)?;
        let bfd = open(base)?;
        let st = statx(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map_err(|e| Error::errno(OP, root, e))?;
        self.links.clear();
        self.deleted.clear();
        self.plen = prefix.len() + 1;
        let name = prefix.as_bytes().to_vec();
        self.add_dir(fd.as_raw_fd(), &st, &name, root, Some(bfd.as_raw_fd()))?;
        let mut list = Vec::new();
        for d in std::mem::take(&mut self.deleted) {
            list.extend_from_slice(&d);
            list.push(0);
        }
        self.add_bytes(&format!("{prefix}{}", super::DELETED), &list)
    }

    pub fn finish(self) -> Result<W> {
        self.b.into_inner().map_err(|e| err!(Io, OP, "finish archive: {e}"))
    }

    /// A directory (always sent, also in an incremental stream: its
    /// metadata is small and its mtime is set after its entries), then its
    /// entries; `base`: the same directory in the base tree.
    fn add_dir(&mut self, fd: RawFd, st: &libc::statx, name: &[u8], host: &Path, base: Option<RawFd>) -> Result<()> {
        let mut dname = name.to_vec();
        dname.push(b'/');
        self.header_only(fd, c"", st, &dname, tar::EntryType::Directory, host)?;
        let mut names = Vec::new();
        read_dir(fd, &mut names).map_err(|e| Error::errno(OP, host, e))?;
        // Sorted: the same tree always gives the same stream.
        names.sort();
        if let Some(b) = base {
            let mut old = Vec::new();
            read_dir(b, &mut old).map_err(|e| Error::errno(OP, host, e))?;
            for o in old {
                if names.binary_search(&o).is_err() {
                    let mut rel = name.get(self.plen..).unwrap_or_default().to_vec();
                    if !rel.is_empty() {
                        rel.push(b'/');
                    }
                    rel.extend_from_slice(o.to_bytes());
                    self.deleted.push(rel);
                }
            }
        }
        let dev = (st.stx_dev_major, st.stx_dev_minor);
        for n in names {
            let child_host = host.join(OsStr::from_bytes(n.to_bytes()));
            let mut child = name.to_vec();
            child.push(b'/');
            child.extend_from_slice(n.to_bytes());
            self.add_entry(fd, &n, &child, dev, &child_host, base)?;
        }
        Ok(())
    }

    fn add_entry(
        &mut self,
        dir: RawFd,
        n: &CStr,
        name: &[u8],
        dev: (u32, u32),
        host: &Path,
        base: Option<RawFd>,
    ) -> Result<()> {
        let st = statx(dir, n, 0).map_err(|e| Error::errno(OP, host, e))?;
        let fmt = st.stx_mode as u32 & libc::S_IFMT;
        // Incremental: the base's entry of that name, if of the same type.
        let old = base
            .and_then(|b| statx(b, n, 0).ok())
            .filter(|o| o.stx_mode as u32 & libc::S_IFMT == fmt);
        if let (Some(b), Some(o)) = (base, &old) {
            if fmt != libc::S_IFDIR && unchanged(&st, o, dir, b, n).map_err(|e| Error::errno(OP, host, e))? {
                return Ok(());
            }
        }
        if fmt != libc::S_IFDIR && st.stx_nlink > 1 {
            let key = (st.stx_dev_major, st.stx_dev_minor, st.stx_ino);
            if let Some(first) = self.links.get(&key) {
                let mut h = base_header(&st, tar::EntryType::Link);
                let first = first.clone();
                self.b
                    .append_link(&mut h, OsStr::from_bytes(name), OsStr::from_bytes(&first))
                    .map_err(|e| io_err(host, e))?;
                self.counted(0);
                return Ok(());
            }
            self.links.insert(key, name.to_vec());
        }
        match fmt {
            libc::S_IFDIR => {
                if is_mount_root(&st, dev) {
                    // Another filesystem: its mount point only, as the copy engine does.
                    let mut dname = name.to_vec();
                    dname.push(b'/');
                    return self.header_only(dir, n, &st, &dname, tar::EntryType::Directory, host);
                }
                let fd = open_dir(dir, n).map_err(|e| Error::errno(OP, host, e))?;
                // Below a directory new in this tree (or one that was not a
                // directory), everything is new.
                let sub = match (base, &old) {
                    (Some(b), Some(_)) => open_dir(b, n).ok(),
                    _ => None,
                };
                self.add_dir(fd.as_raw_fd(), &st, name, host, sub.as_ref().map(|f| f.as_raw_fd()))
            }
            libc::S_IFREG => {
                // SAFETY: openat with a NUL-terminated name; the fd is owned by the File below.
                let fd = unsafe {
                    libc::openat(
                        dir,
                        n.as_ptr(),
                        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY,
                    )
                };
                if fd < 0 {
                    return Err(Error::errno(OP, host, nix::errno::Errno::last()));
                }
                // SAFETY: fd was just opened and is owned by nobody else.
                let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
                self.pax(&st, Src::Fd(fd), host)?;
                let size = st.stx_size;
                if st.stx_blocks.saturating_mul(512) < size {
                    // Fewer blocks than bytes: holes, found by the crate (SEEK_DATA/SEEK_HOLE).
                    self.b.sparse(true);
                    let r = self.b.append_file(OsStr::from_bytes(name), &mut f);
                    self.b.sparse(false);
                    r.map_err(|e| io_err(host, e))?;
                } else {
                    // The header from the statx above; the data in large reads.
                    let mut h = base_header(&st, tar::EntryType::Regular);
                    h.set_size(size);
                    let changed = || err!(Io, OP, "changed while being read").at(host);
                    if size <= SMALL {
                        self.buf.clear();
                        (&mut f)
                            .take(size)
                            .read_to_end(&mut self.buf)
                            .map_err(|e| io_err(host, e))?;
                        if self.buf.len() as u64 != size {
                            return Err(changed());
                        }
                        self.b
                            .append_data(&mut h, OsStr::from_bytes(name), &self.buf[..])
                            .map_err(|e| io_err(host, e))?;
                    } else {
                        let mut r = Counted {
                            r: std::io::BufReader::with_capacity(1 << 20, (&mut f).take(size)),
                            n: 0,
                        };
                        self.b
                            .append_data(&mut h, OsStr::from_bytes(name), &mut r)
                            .map_err(|e| io_err(host, e))?;
                        if r.n != size {
                            return Err(changed());
                        }
                    }
                }
                self.counted(size);
                Ok(())
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(Some(dir), n).map_err(|e| Error::errno(OP, host, e))?;
                let mut h = base_header(&st, tar::EntryType::Symlink);
                self.pax(&st, Src::Name(dir, n), host)?;
                self.b
                    .append_link(&mut h, OsStr::from_bytes(name), &target)
                    .map_err(|e| io_err(host, e))?;
                self.counted(0);
                Ok(())
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                let t = match fmt {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                self.header_only(dir, n, &st, name, t, host)
            }
            _ => {
                tracing::debug!("{}: socket not sent", host.display());
                self.stats.skipped_sockets += 1;
                Ok(())
            }
        }
    }

    /// An entry without data (dirs, devices, fifos), its PAX records first.
    fn header_only(
        &mut self,
        dir: RawFd,
        n: &CStr,
        st: &libc::statx,
        name: &[u8],
        t: tar::EntryType,
        host: &Path,
    ) -> Result<()> {
        let mut h = base_header(st, t);
        if matches!(t, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(st.stx_rdev_major).map_err(|e| io_err(host, e))?;
            h.set_device_minor(st.stx_rdev_minor).map_err(|e| io_err(host, e))?;
        }
        let src = if n.is_empty() { Src::Fd(dir) } else { Src::Name(dir, n) };
        self.pax(st, src, host)?;
        self.b
            .append_data(&mut h, OsStr::from_bytes(name), std::io::empty())
            .map_err(|e| io_err(host, e))?;
        self.counted(0);
        Ok(())
    }

    fn counted(&mut self, bytes: u64) {
        self.stats.entries += 1;
        self.stats.bytes += bytes;
        if let Some(t) = &mut self.tick {
            t(bytes);
        }
    }

    /// PAX records for the next entry: the mtime's nanoseconds and every xattr.
    fn pax(&mut self, st: &libc::statx, src: Src, host: &Path) -> Result<()> {
        let mut recs: Vec<(String, Vec<u8>)> = Vec::new();
        if st.stx_mtime.tv_nsec != 0 {
            let v = format!("{}.{:09}", st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec);
            recs.push(("mtime".into(), v.into_bytes()));
        }
        for (k, v) in xattrs(src).map_err(|e| Error::errno(OP, host, e).with_what("reading xattrs"))? {
            let key =
                String::from_utf8(k).map_err(|_| err!(InvalidArgument, OP, "xattr name is not UTF-8").at(host))?;
            // GNU tar restores ACLs from its own text records, not from the xattrs.
            let acl = match key.as_str() {
                "system.posix_acl_access" => Some("SCHILY.acl.access"),
                "system.posix_acl_default" => Some("SCHILY.acl.default"),
                _ => None,
            };
            if let Some(t) = acl.and_then(|a| super::acl::to_text(&v).map(|t| (a, t))) {
                recs.push((t.0.into(), t.1.into_bytes()));
            }
            recs.push((format!("SCHILY.xattr.{key}"), v));
        }
        if recs.is_empty() {
            return Ok(());
        }
        self.b
            .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(|e| io_err(host, e))
    }
}

impl Error {
    fn with_what(mut self, what: &str) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }
}

#[derive(Clone, Copy)]
enum Src<'n> {
    Fd(RawFd),
    Name(RawFd, &'n CStr),
}

/// Every xattr of an entry, sorted by name.
fn xattrs(src: Src) -> nix::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let p = match src {
        Src::Name(d, n) => Some(proc_path(d, n)),
        Src::Fd(_) => None,
    };
    let mut list = Vec::new();
    let n = match xcall(&mut list, |b, l| {
        // SAFETY: the buffer pointer and length come from xcall's own Vec; `p` is a NUL-terminated path.
        unsafe {
            match (&src, &p) {
                (Src::Fd(fd), _) => libc::flistxattr(*fd, b.cast(), l),
                (_, Some(p)) => libc::llistxattr(p.as_ptr(), b.cast(), l),
                _ => unreachable!(),
            }
        }
    }) {
        Ok(n) => n,
        Err(nix::errno::Errno::EOPNOTSUPP) => 0,
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut val = Vec::new();
    let mut keys: Vec<&[u8]> = list[..n].split(|&b| b == 0).filter(|k| !k.is_empty()).collect();
    keys.sort();
    for k in keys {
        let key = CString::new(k).expect("no NUL in an xattr name");
        let len = match xcall(&mut val, |b, l| {
            // SAFETY: as above; `key` is a NUL-terminated name alive for the call.
            unsafe {
                match (&src, &p) {
                    (Src::Fd(fd), _) => libc::fgetxattr(*fd, key.as_ptr(), b, l),
                    (_, Some(p)) => libc::lgetxattr(p.as_ptr(), key.as_ptr(), b, l),
                    _ => unreachable!(),
                }
            }
        }) {
            Ok(len) => len,
            Err(nix::errno::Errno::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        out.push((k.to_vec(), val[..len].to_vec()));
    }
    Ok(out)
}

/// Whether an entry is as it was in the base: rsync's quick check (type,
/// size, mtime to the nanosecond, mode, owner), plus its xattrs, a
/// symlink's target, a device's number. A file with several links is
/// always sent (its other names may have changed).
fn unchanged(st: &libc::statx, o: &libc::statx, dir: RawFd, base: RawFd, n: &CStr) -> nix::Result<bool> {
    let fmt = st.stx_mode as u32 & libc::S_IFMT;
    if (fmt == libc::S_IFREG && (st.stx_nlink > 1 || o.stx_nlink > 1))
        || st.stx_mode != o.stx_mode
        || st.stx_uid != o.stx_uid
        || st.stx_gid != o.stx_gid
        || st.stx_size != o.stx_size
        || st.stx_mtime.tv_sec != o.stx_mtime.tv_sec
        || st.stx_mtime.tv_nsec != o.stx_mtime.tv_nsec
        || (st.stx_rdev_major, st.stx_rdev_minor) != (o.stx_rdev_major, o.stx_rdev_minor)
    {
        return Ok(false);
    }
    if fmt == libc::S_IFLNK && nix::fcntl::readlinkat(Some(dir), n)? != nix::fcntl::readlinkat(Some(base), n)? {
        return Ok(false);
    }
    Ok(xattrs(Src::Name(dir, n))? == xattrs(Src::Name(base, n))?)
}

fn base_header(st: &libc::statx, t: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(t);
    h.set_mode(st.stx_mode as u32 & 0o7777);
    h.set_uid(st.stx_uid as u64);
    h.set_gid(st.stx_gid as u64);
    h.set_mtime(st.stx_mtime.tv_sec.max(0) as u64);
    h.set_size(0);
    h
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
