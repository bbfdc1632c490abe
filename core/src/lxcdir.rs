//! An lxcpath read through one open descriptor of it. A listing of many
//! containers (`lxc-ls --fancy`, `--json`) reads each one's files relative
//! to that descriptor, so the kernel walks the lxcpath's own path once
//! instead of once per file: path walks were most of the kernel time of a
//! listing over 1 000 containers. Each file is read as
//! [`crate::store::read_regular`] reads it: a fifo, socket, device or
//! directory is an error, never opened or waited on.

use crate::err;
use crate::error::{Error, Result};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub struct LxcDir {
    fd: OwnedFd,
    path: PathBuf,
}

fn cstr(rel: &str) -> Result<CString> {
    CString::new(rel).map_err(|_| err!(InvalidArgument, "read container file", "a NUL byte in {rel:?}"))
}

/// `f` given `rel` NUL-terminated, in a buffer on the stack when it fits:
/// a listing reads thousands of files, and each name allocated cost more
/// than its lookup saves.
fn with_cstr<T>(rel: &str, f: impl FnOnce(&CStr) -> Result<T>) -> Result<T> {
    let mut buf = [0u8; 256];
    let b = rel.as_bytes();
    if b.len() < buf.len() {
        buf[..b.len()].copy_from_slice(b);
        if let Ok(c) = CStr::from_bytes_with_nul(&buf[..=b.len()]) {
            return f(c);
        }
    }
    f(&cstr(rel)?)
}

impl LxcDir {
    /// The lxcpath opened, or `None` when it does not exist.
    pub fn open(lxcpath: &Path) -> Result<Option<LxcDir>> {
        let c = CString::new(lxcpath.as_os_str().as_bytes())
            .map_err(|_| err!(InvalidArgument, "open lxcpath", "a NUL byte in the path"))?;
        // SAFETY: `c` is a NUL-terminated string alive for the call.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(Error::io("open lxcpath", lxcpath, e));
        }
        Ok(Some(LxcDir {
            // SAFETY: `fd` was just opened and is owned by nothing else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: lxcpath.to_path_buf(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names in the lxcpath (UTF-8, dot names such as staging dirs
    /// skipped), unsorted: one directory read, nothing looked at per entry.
    pub fn names(&self) -> Result<Vec<String>> {
        const OP: &str = "list containers";
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.path).map_err(|e| Error::io(OP, &self.path, e))? {
            let e = e.map_err(|e| Error::io(OP, &self.path, e))?;
            match e.file_name().to_str() {
                Some(n) if !n.starts_with('.') => out.push(n.to_string()),
                Some(_) => {}
                None => tracing::warn!(path = %e.path().display(), "skipping non-UTF-8 entry in lxcpath"),
            }
        }
        Ok(out)
    }

    fn stat(&self, c: &CStr) -> std::io::Result<libc::stat> {
        // SAFETY: an all-zero stat is a valid value for the kernel to fill.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is NUL-terminated and alive, `st` is ours, `self.fd` is an open dir.
        if unsafe { libc::fstatat(self.fd.as_raw_fd(), c.as_ptr(), &mut st, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st)
    }

    /// Whether `rel` (below the lxcpath) is a regular file, symlinks followed.
    pub fn is_file(&self, rel: &str) -> bool {
        with_cstr(rel, |c| Ok(self.stat(c).ok()))
            .ok()
            .flatten()
            .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
    }

    /// Whether `rel` (below the lxcpath) is a directory, symlinks followed.
    pub fn is_dir(&self, rel: &str) -> bool {
        with_cstr(rel, |c| Ok(self.stat(c).ok()))
            .ok()
            .flatten()
            .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
    }

    /// The bytes of the regular file `rel` below the lxcpath (symlinks
    /// followed, as [`crate::store::read_regular`]), at most `max` of them;
    /// `None` when it does not exist.
    ///
    /// Opened first without following a symlink, non-blocking, and looked at
    /// through the descriptor: one call fewer than a stat before the open.
    /// What such an open can reach is only what sits at that very path: a
    /// fifo is opened without waiting and closed unread; a device node there
    /// takes root to make (mknod, or a hard link on the lxcpath's own
    /// filesystem), and is closed unread too. A symlink (to a device
    /// anywhere, say) is never opened through: it is looked at first, as
    /// before, and only a regular file at its end is opened.
    pub fn read(&self, rel: &str, max: u64, op: &str) -> Result<Option<Vec<u8>>> {
        with_cstr(rel, |c| self.read_c(c, rel, max, op))
    }

    fn read_c(&self, c: &CStr, rel: &str, max: u64, op: &str) -> Result<Option<Vec<u8>>> {
        // The full path only for an error: made for every read, it was one
        // allocation more per file.
        let path = || self.path.join(rel);
        let not_regular = || err!(InvalidConfig, op, "not a regular file").at(path());
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
        // SAFETY: `c` is NUL-terminated and alive, `self.fd` is an open dir.
        let mut fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags | libc::O_NOFOLLOW) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOENT) => return Ok(None),
                // A symlink: where it leads is looked at before it is opened.
                Some(libc::ELOOP) => {}
                _ => return Err(Error::io(op, path(), e)),
            }
            match self.stat(c) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {}
                Ok(_) => return Err(not_regular()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io(op, path(), e)),
            }
            // SAFETY: as above.
            fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) };
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Ok(None);
                }
                return Err(Error::io(op, path(), e));
            }
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let md = f.metadata().map_err(|e| Error::io(op, path(), e))?;
        if !md.is_file() {
            return Err(not_regular());
        }
        if md.len() > max {
            return Err(err!(InvalidConfig, op, "larger than {} MiB", max >> 20).at(path()));
        }
        // One read of one byte more than the size asks for: a shorter read
        // of a regular file is its end, so no second read for it.
        let mut b = vec![0u8; md.len() as usize + 1];
        let mut n = 0;
        loop {
            match nix::unistd::read(f.as_raw_fd(), &mut b[n..]) {
                Ok(0) => break,
                Ok(k) => {
                    n += k;
                    if n < b.len() {
                        // Short of what was asked: the file's end.
                        break;
                    }
                    if n as u64 > max {
                        return Err(err!(InvalidConfig, op, "larger than {} MiB", max >> 20).at(path()));
                    }
                    // It grew since the fstat: read on.
                    b.resize(b.len() + 4096, 0);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::errno(op, path(), e)),
            }
        }
        b.truncate(n);
        if n as u64 > max {
            return Err(err!(InvalidConfig, op, "larger than {} MiB", max >> 20).at(path()));
        }
        Ok(Some(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_relative_to_the_lxcpath() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("c1/snaps")).unwrap();
        std::fs::write(d.path().join("c1/config"), "lxc.uts.name = c1\n").unwrap();
        std::fs::create_dir(d.path().join(".strata-tmp.c2.1")).unwrap();
        let big = "x".repeat(10_000);
        std::fs::write(d.path().join("c1/big"), &big).unwrap();
        std::fs::write(d.path().join("c1/empty"), "").unwrap();
        nix::unistd::mkfifo(
            &d.path().join("c1/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let l = LxcDir::open(d.path()).unwrap().unwrap();
        assert_eq!(l.names().unwrap(), ["c1"]);
        assert_eq!(
            l.read("c1/config", 1 << 20, "t").unwrap().unwrap(),
            b"lxc.uts.name = c1\n"
        );
        assert_eq!(l.read("c1/big", 1 << 20, "t").unwrap().unwrap(), big.as_bytes());
        assert_eq!(l.read("c1/empty", 1 << 20, "t").unwrap().unwrap(), b"");
        assert!(l.read("c1/missing", 1 << 20, "t").unwrap().is_none());
        assert!(l.read("c1/big", 100, "t").is_err(), "over the limit");
        assert!(l.read("c1/fifo", 100, "t").is_err(), "a fifo is never read");
        assert!(l.read("c1/snaps", 100, "t").is_err(), "a directory is not a file");
        // Symlinks are followed to a regular file, never opened to anything else.
        std::os::unix::fs::symlink("big", d.path().join("c1/link")).unwrap();
        std::os::unix::fs::symlink("fifo", d.path().join("c1/tofifo")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.path().join("c1/todev")).unwrap();
        std::os::unix::fs::symlink("gone", d.path().join("c1/dangling")).unwrap();
        assert_eq!(l.read("c1/link", 1 << 20, "t").unwrap().unwrap(), big.as_bytes());
        assert!(
            l.read("c1/tofifo", 100, "t").is_err(),
            "a fifo is never read through a link"
        );
        assert!(
            l.read("c1/todev", 100, "t").is_err(),
            "a device is never read through a link"
        );
        assert!(l.read("c1/dangling", 100, "t").unwrap().is_none());
        assert!(l.is_dir("c1/snaps") && !l.is_dir("c1/config") && !l.is_dir("c2"));
        assert!(l.is_file("c1/config") && !l.is_file("c1/snaps") && !l.is_file("c1/fifo"));
        assert!(LxcDir::open(&d.path().join("nope")).unwrap().is_none());
        // A name past the stack buffer is read as well; a NUL in one is refused.
        let long = format!("c1/{}", "l".repeat(250));
        std::fs::write(d.path().join(&long), "long\n").unwrap();
        assert_eq!(l.read(&long, 100, "t").unwrap().unwrap(), b"long\n");
        assert!(l.is_file(&long));
        assert!(l.read("c1/con\0fig", 100, "t").is_err());
        assert!(!l.is_file("c1/con\0fig"));
    }
}
