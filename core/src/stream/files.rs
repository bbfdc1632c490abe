//! Files a container's config points to (hook scripts, an fstab, a seccomp
//! profile): those inside the container's dir travel in the stream as
//! `files/REL`; those outside it are named, not carried.

use crate::config::Config;
use crate::copy::open_dir;
use crate::err;
use crate::error::{Error, Result};
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Most one carried file may hold (as a config).
pub const MAX_FILE: u64 = crate::config::MAX_CONFIG_BYTES;

/// The host paths a config names as files to read: `lxc.mount.fstab`,
/// `lxc.seccomp.profile` and every host-side `lxc.hook.*` (its first word;
/// `lxc.hook.start` runs inside the container, from its rootfs).
pub fn referenced(cfg: &Config) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for (k, v) in cfg.entries() {
        let path = match k.as_ref() {
            "lxc.mount.fstab" | "lxc.seccomp.profile" => v.trim(),
            "lxc.hook.start" | "lxc.hook.version" => continue,
            k if k.starts_with("lxc.hook.") => v.split_whitespace().next().unwrap_or(""),
            _ => continue,
        };
        if path.starts_with('/') {
            out.push((k.into_owned(), PathBuf::from(path)));
        }
    }
    out
}

/// `rel` as plain components: no `..`, no root, not empty.
pub fn components(rel: &Path) -> Option<Vec<CString>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(CString::new(n.as_bytes()).ok()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

fn io(path: &Path, e: nix::errno::Errno) -> Error {
    Error::errno("send", path, e)
}

/// Read `dir/rel` without following any symlink on the way; `None` if it
/// is not a regular file there. Returns its content and mode.
pub fn read_beneath(dir: &Path, rel: &Path) -> Result<Option<(Vec<u8>, u32)>> {
    let full = dir.join(rel);
    let Some(comps) = components(rel) else { return Ok(None) };
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| err!(InvalidArgument, "send", "NUL in path"))?;
    let mut fd = open_dir(libc::AT_FDCWD, &c).map_err(|e| io(dir, e))?;
    for n in &comps[..comps.len() - 1] {
        fd = match open_dir(fd.as_raw_fd(), n) {
            Ok(f) => f,
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP) => return Ok(None),
            Err(e) => return Err(io(&full, e)),
        };
    }
    let last = &comps[comps.len() - 1];
    // SAFETY: openat with a NUL-terminated name below an fd we own; O_NOFOLLOW refuses a symlink.
    let f = unsafe {
        libc::openat(
            fd.as_raw_fd(),
            last.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY,
        )
    };
    if f < 0 {
        return match nix::errno::Errno::last() {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ELOOP => Ok(None),
            e => Err(io(&full, e)),
        };
    }
    // SAFETY: f was just opened and is owned by nobody else.
    let f = unsafe { std::fs::File::from_raw_fd(f) };
    let md = f.metadata().map_err(|e| Error::io("send", &full, e))?;
    if !md.is_file() {
        return Ok(None);
    }
    if md.len() > MAX_FILE {
        return Err(err!(InvalidArgument, "send", "larger than {MAX_FILE} bytes").at(&full));
    }
    let mut data = Vec::new();
    f.take(MAX_FILE)
        .read_to_end(&mut data)
        .map_err(|e| Error::io("send", &full, e))?;
    use std::os::unix::fs::PermissionsExt;
    Ok(Some((data, md.permissions().mode() & 0o777)))
}

/// Write a new file `root/rel`, owned by root, never through a symlink.
/// Directories on the way are made if missing; an existing one is entered
/// only if `may_enter` says so (a backend's rootfs dir is not). The file
/// itself must not exist yet.
pub fn write_beneath(root: &Path, rel: &Path, data: &[u8], mode: u32, may_enter: &dyn Fn(&Path) -> bool) -> Result<()> {
    const OP: &str = "receive";
    let full = root.join(rel);
    let refuse = |why: &str| err!(InvalidArgument, OP, "carried file {}: {why}", rel.display());
    let comps = components(rel).ok_or_else(|| refuse("not a plain relative name"))?;
    let c = CString::new(root.as_os_str().as_bytes()).map_err(|_| refuse("NUL in path"))?;
    let mut fd: OwnedFd = open_dir(libc::AT_FDCWD, &c).map_err(|e| Error::errno(OP, root, e))?;
    let mut at = PathBuf::new();
    for n in &comps[..comps.len() - 1] {
        at.push(std::ffi::OsStr::from_bytes(n.as_bytes()));
        // SAFETY: mkdirat with a NUL-terminated name below an fd we own.
        let made = unsafe { libc::mkdirat(fd.as_raw_fd(), n.as_ptr(), 0o755) } == 0;
        if !made {
            let e = nix::errno::Errno::last();
            if e != nix::errno::Errno::EEXIST {
                return Err(Error::errno(OP, root.join(&at), e));
            }
            if !may_enter(&at) {
                return Err(refuse("lies in a directory it may not be written to"));
            }
        }
        fd = open_dir(fd.as_raw_fd(), n).map_err(|_| refuse("lies beneath a symlink or a non-directory"))?;
    }
    let last = &comps[comps.len() - 1];
    // SAFETY: openat with a NUL-terminated name; O_EXCL|O_NOFOLLOW make a fresh file or fail.
    let f = unsafe {
        libc::openat(
            fd.as_raw_fd(),
            last.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    if f < 0 {
        let e = nix::errno::Errno::last();
        if e == nix::errno::Errno::EEXIST {
            return Err(refuse("its name is taken"));
        }
        return Err(Error::errno(OP, &full, e));
    }
    // SAFETY: f was just opened and is owned by nobody else.
    let mut f = unsafe { std::fs::File::from_raw_fd(f) };
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    f.write_all(data).map_err(|e| Error::io(OP, &full, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
        .map_err(|e| Error::io(OP, &full, e))?;
    Ok(())
}
