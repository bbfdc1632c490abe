//! Another tool's tree that keeps the rootfs one level down (an Incus
//! volume: `rootfs/` beside `backup.yaml`, `metadata.yaml`, `templates/`)
//! made a rootfs in place: the subdir's entries moved up to the tree's
//! root, everything else removed, the subdir's own owner, xattrs, mode and
//! times given to the root. Renames only, so the data is not copied. No
//! symlink is followed: every step goes through directory fds.
//!
//! It runs on a tree being built (in a staging dir whose record names it):
//! a kill -9 part-way leaves what the undo of that build removes whole.

use crate::copy::{open_dir, read_dir, statx, times, xcall};
use crate::err;
use crate::error::{Error, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const OP: &str = "import";

fn errno() -> nix::errno::Errno {
    nix::errno::Errno::last()
}

/// Make the tree at `root` hold what its subdirectory `sub` holds.
pub fn hoist(root: &Path, sub: &str) -> Result<()> {
    let _span = tracing::info_span!("hoist", root = %root.display(), sub).entered();
    let fail = |e: nix::errno::Errno| Error::errno(OP, root, e);
    let c = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| err!(InvalidArgument, OP, "path contains a NUL byte").at(root))?;
    let rfd = open_dir(libc::AT_FDCWD, &c).map_err(fail)?;
    let subc = CString::new(sub).map_err(|_| err!(InvalidArgument, OP, "bad name {sub:?}"))?;
    match statx(rfd.as_raw_fd(), &subc, libc::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.stx_mode as u32 & libc::S_IFMT == libc::S_IFDIR => {}
        _ => {
            return Err(err!(
                InvalidArgument,
                OP,
                "the tree received has no directory {sub}/ (not a container's volume)"
            )
            .at(root))
        }
    }
    let sfd = open_dir(rfd.as_raw_fd(), &subc).map_err(fail)?;
    // Before its entries move out, which changes its times.
    let st = statx(sfd.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map_err(fail)?;
    let mut inner = Vec::new();
    read_dir(sfd.as_raw_fd(), &mut inner).map_err(fail)?;
    // The subdir under a name neither level holds, so nothing it holds can meet it.
    let mut outer = Vec::new();
    read_dir(rfd.as_raw_fd(), &mut outer).map_err(fail)?;
    let tmp = (0u32..)
        .map(|i| CString::new(format!(".strata-hoist-{i}")).expect("no NUL"))
        .find(|t| !inner.contains(t) && !outer.contains(t))
        .expect("a free name");
    rename(rfd.as_raw_fd(), &subc, rfd.as_raw_fd(), &tmp).map_err(fail)?;
    for n in outer.iter().filter(|n| n.as_bytes() != sub.as_bytes()) {
        crate::stream::remove_at(rfd.as_raw_fd(), n).map_err(fail)?;
    }
    for n in &inner {
        rename(sfd.as_raw_fd(), n, rfd.as_raw_fd(), n).map_err(fail)?;
    }
    // The root takes the subdir's metadata: owner, then xattrs (a chown
    // drops a file capability), then mode (after the ACL, which sets group
    // bits), then times (after the rmdir, which changes the mtime).
    let (r, s) = (rfd.as_raw_fd(), sfd.as_raw_fd());
    // SAFETY: fchown on a dir fd we own.
    if unsafe { libc::fchown(r, st.stx_uid, st.stx_gid) } < 0 {
        return Err(fail(errno()));
    }
    copy_xattrs(s, r).map_err(fail)?;
    // SAFETY: fchmod on a dir fd we own.
    if unsafe { libc::fchmod(r, st.stx_mode as u32 & 0o7777) } < 0 {
        return Err(fail(errno()));
    }
    drop(sfd);
    nix::unistd::unlinkat(Some(r), tmp.as_c_str(), nix::unistd::UnlinkatFlags::RemoveDir).map_err(fail)?;
    let ts = times(&st);
    // SAFETY: futimens on a dir fd we own, with two timespecs.
    if unsafe { libc::futimens(r, ts.as_ptr()) } < 0 {
        return Err(fail(errno()));
    }
    Ok(())
}

fn rename(from_dir: RawFd, from: &CString, to_dir: RawFd, to: &CString) -> nix::Result<()> {
    nix::fcntl::renameat2(
        Some(from_dir),
        from.as_c_str(),
        Some(to_dir),
        to.as_c_str(),
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
}

/// `to`'s xattrs made `from`'s: its own removed, `from`'s set.
fn copy_xattrs(from: RawFd, to: RawFd) -> nix::Result<()> {
    let list = |fd: RawFd| -> nix::Result<Vec<CString>> {
        let mut buf = Vec::new();
        // SAFETY: the buffer pointer and length come from xcall's own Vec.
        let n = match xcall(&mut buf, |b, l| unsafe { libc::flistxattr(fd, b.cast(), l) }) {
            Ok(n) => n,
            Err(nix::errno::Errno::EOPNOTSUPP) => 0,
            Err(e) => return Err(e),
        };
        Ok(buf[..n]
            .split(|&b| b == 0)
            .filter(|k| !k.is_empty())
            .map(|k| CString::new(k).expect("no NUL in an xattr name"))
            .collect())
    };
    for k in list(to)? {
        // SAFETY: fremovexattr on our own fd with a NUL-terminated name.
        if unsafe { libc::fremovexattr(to, k.as_ptr()) } < 0 && errno() != nix::errno::Errno::ENODATA {
            return Err(errno());
        }
    }
    let mut val = Vec::new();
    for k in list(from)? {
        // SAFETY: as above; `k` is a NUL-terminated name alive for the call.
        let n = match xcall(&mut val, |b, l| unsafe { libc::fgetxattr(from, k.as_ptr(), b, l) }) {
            Ok(n) => n,
            Err(nix::errno::Errno::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        // SAFETY: the value pointer and length come from one live Vec; `k` is NUL-terminated.
        if unsafe { libc::fsetxattr(to, k.as_ptr(), val.as_ptr().cast(), n, 0) } < 0 {
            return Err(errno());
        }
    }
    Ok(())
}
