//! The overlay backend: `overlay:LOWER:$lxcpath/NAME/overlay/delta`, work dir
//! `$lxcpath/NAME/overlay/work` (LXC's layout). Older `overlayfs:` specs whose
//! upper is not `.../overlay/delta` use `$(dirname upper)/olwork`, as LXC did.
//! A snapshot of a dir rootfs uses it as the lower; a snapshot of an overlay
//! rootfs shares its lower and copies its delta. `--fssize` is a project
//! quota on the `overlay` dir (see `resize.rs`).

mod resize;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::fchown;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_core::copy::{copy_tree, CopyOptions};
use strata_core::engine::fsutil;
use strata_core::{
    err, Backend, Caps, IoContext, Result, RootfsSpec, Snapshotter, Target, Usage, UsageReport, UsageSource,
};

#[derive(Debug, Default)]
pub struct OverlayBackend {
    /// Walks of lower dirs already made by this process: many overlay
    /// clones share one lower, which `strata du` then walks once.
    lowers: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

pub fn backend() -> Arc<dyn Backend> {
    Arc::new(OverlayBackend::default())
}

/// Whether `p` lies on an overlay filesystem.
fn on_overlayfs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|st| st.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
}

/// The work dir that goes with an upper dir.
pub fn work_dir(upper: &Path) -> PathBuf {
    let parent = upper.parent().unwrap_or(Path::new("/"));
    if upper.file_name().is_some_and(|n| n == "delta") && parent.file_name().is_some_and(|n| n == "overlay") {
        parent.join("work")
    } else {
        parent.join("olwork")
    }
}

fn parts(spec: &RootfsSpec) -> Result<(String, PathBuf)> {
    let (lower, upper) = spec
        .overlay_parts()
        .ok_or_else(|| err!(InvalidSpec, "overlay", "not an overlay spec: {spec}"))?;
    Ok((lower.to_string(), PathBuf::from(upper)))
}

/// Whether we run in a user namespace other than the initial one.
fn in_user_ns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false)
}

fn make_upper(upper: &Path) -> Result<()> {
    mkdir(upper)?;
    mkdir(&work_dir(upper))
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .ctx("create overlay dir", p)
}

impl Backend for OverlayBackend {
    fn kind(&self) -> &'static str {
        "overlay"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["overlayfs"]
    }

    fn caps(&self) -> Caps {
        Caps {
            renamed_with_dir: true,
            union_mount: true,
            ..Caps::default()
        }
    }

    fn plan(&self, t: &Target, origin: Option<&RootfsSpec>) -> Result<RootfsSpec> {
        const OP: &str = "plan overlay rootfs";
        let lower = match origin {
            None => t.dir.join("rootfs").display().to_string(),
            Some(o) if o.kind() == "dir" => o.path().display().to_string(),
            Some(o) if o.kind() == "overlay" => parts(o)?.0,
            Some(o) => {
                return Err(err!(
                    Unsupported,
                    OP,
                    "cannot make an overlay clone of a {} rootfs",
                    o.kind()
                ))
            }
        };
        let upper = t.dir.join("overlay/delta");
        // overlayfs options are comma- and colon-separated: such paths cannot be passed.
        for p in [lower.as_str(), &upper.display().to_string()] {
            if p.contains(',') || p.contains('\\') {
                return Err(err!(
                    InvalidArgument,
                    OP,
                    "path {p:?} cannot be used in overlay mount options"
                ));
            }
        }
        if upper.display().to_string().contains(':') {
            return Err(err!(
                InvalidArgument,
                OP,
                "container path {} contains ':'",
                t.dir.display()
            ));
        }
        Ok(RootfsSpec::overlay(&lower, &upper))
    }

    fn create(&self, spec: &RootfsSpec, t: &Target) -> Result<()> {
        let b = t.building(spec);
        let (lower, upper) = parts(&b)?;
        let _span = tracing::debug_span!("overlay create", upper = %upper.display()).entered();
        // A fresh overlay container (lxc-create -B overlay) gets an empty lower in its own dir.
        for l in lower.split(':') {
            if Path::new(l).starts_with(t.build_dir) {
                mkdir(Path::new(l))?;
            }
        }
        make_upper(&upper)
    }

    fn destroy(&self, spec: &RootfsSpec) -> Result<()> {
        let (_, upper) = parts(spec)?;
        let _span = tracing::debug_span!("overlay destroy", upper = %upper.display()).entered();
        let work = work_dir(&upper);
        if work.file_name().is_some_and(|n| n == "work") {
            // LXC layout: the whole `overlay` dir is ours. No limit is left
            // behind for a project id a later tree may get.
            let ovl = upper.parent().unwrap_or(&upper);
            strata_core::projquota::release(ovl);
            fsutil::remove_tree(ovl)
        } else {
            fsutil::remove_tree(&upper)?;
            fsutil::remove_tree(&work)
        }
    }

    fn exists(&self, spec: &RootfsSpec) -> bool {
        parts(spec).map(|(_, u)| u.is_dir()).unwrap_or(false)
    }

    fn mount(&self, spec: &RootfsSpec, target: &Path, readonly: bool) -> Result<()> {
        let (lower, upper) = parts(spec)?;
        let work = work_dir(&upper);
        mkdir(&work)?;
        let mut flags = MsFlags::empty();
        if readonly {
            flags |= MsFlags::MS_RDONLY;
        }
        let base = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        // index/xino off: a lower shared by many clones must not be tied to
        // one upper, and inode numbers must not depend on spare bits. Older
        // kernels do not know them: retry without.
        // In a user namespace trusted.* xattrs are out of reach: overlayfs keeps its own in user.*.
        let base = if in_user_ns() {
            format!("{base},userxattr")
        } else {
            base
        };
        let with = format!("{base},index=off,xino=off");
        let mut tries = vec![with.clone(), base];
        // A throwaway container's upper never needs syncing: `volatile`
        // spares the sync of the whole upper filesystem at unmount.
        if strata_core::durable::is_volatile() {
            tries.insert(0, format!("{with},volatile"));
        }
        let mut last = nix::errno::Errno::EINVAL;
        for opts in &tries {
            match mount(Some("overlay"), target, Some("overlay"), flags, Some(opts.as_str())) {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EINVAL) => last = nix::errno::Errno::EINVAL,
                Err(e) => return Err(e).ctx("mount overlay", target),
            }
        }
        // The kernel's EINVAL says nothing of why; the usual cause a user
        // can act on is an upper dir on an overlay (a container tree or a
        // VM's writable layer), which overlayfs never takes as its upper.
        if on_overlayfs(&upper) {
            return Err(err!(
                Unsupported,
                "mount overlay",
                "{}: the upper dir is on an overlay filesystem, which overlayfs cannot take as an upper layer; \
                 keep the container path on another filesystem",
                upper.display()
            ));
        }
        Err(last).ctx("mount overlay", target)
    }

    // Nothing but the overlay mount: its dirs stay where they are.
    fn mount_is_self_contained(&self) -> bool {
        true
    }

    fn umount(&self, _spec: &RootfsSpec, target: &Path) -> Result<()> {
        // A plain unmount is done when it returns (the mount point can go at
        // once); detach only if something still holds it.
        match umount2(target, MntFlags::empty()) {
            Err(nix::errno::Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH).ctx("unmount overlay", target),
            r => r.ctx("unmount overlay", target),
        }
    }

    fn snapshotter(&self) -> Option<&dyn Snapshotter> {
        Some(self)
    }

    fn write_if_regular_unmounted(&self, spec: &RootfsSpec, rel: &str, data: &[u8]) -> Result<Option<bool>> {
        let (lower, upper) = parts(spec)?;
        write_upper(&lower, &upper, rel, data)
    }

    fn usage_reporter(&self) -> Option<&dyn UsageReport> {
        Some(self)
    }

    fn resizer(&self) -> Option<&dyn strata_core::Resize> {
        Some(self)
    }
}

impl UsageReport for OverlayBackend {
    // Exclusive: the upper dir, all this rootfs adds: the count of the
    // project quota on its overlay dir (upper and work dirs) where it has
    // one the filesystem accounts, else a walk of the upper. Referenced:
    // the upper and the lower it is seen through (files copied up count
    // twice: an upper bound), the lower's own project count where it has
    // one (a dir container's bound rootfs). A lower that is not a host dir
    // (a block device's spec) leaves referenced unknown.
    fn usage(&self, spec: &RootfsSpec) -> Result<Usage> {
        let (lower, upper) = parts(spec)?;
        let counted = match resize::quota_root(spec) {
            Ok(root) => strata_core::projquota::quota(&root)?.map(|q| q.used),
            Err(_) => None,
        };
        let exclusive = match counted {
            Some(b) => b,
            None => strata_core::usage::walk(&upper)?,
        };
        let lower_path = RootfsSpec::parse(&lower)
            .ok()
            .filter(|l| l.kind() == "dir")
            .map(|l| l.path());
        let lower_bytes = match lower_path {
            Some(p) => {
                let known = self.lowers.lock().ok().and_then(|m| m.get(&lower).copied());
                match known {
                    Some(b) => Some(b),
                    None => {
                        let b = match strata_core::projquota::quota(&p)? {
                            Some(q) => q.used,
                            None => strata_core::usage::walk(&p)?,
                        };
                        if let Ok(mut m) = self.lowers.lock() {
                            m.insert(lower.clone(), b);
                        }
                        Some(b)
                    }
                }
            }
            None => None,
        };
        Ok(Usage {
            exclusive: Some(exclusive),
            referenced: lower_bytes.map(|l| l + exclusive),
            snapshots: None,
            source: match counted {
                Some(_) => UsageSource::Accounting("project quota"),
                None => UsageSource::Walk,
            },
        })
    }
}

fn lstat_at(dirfd: RawFd, name: &str) -> nix::Result<Option<FileStat>> {
    match fstatat(Some(dirfd), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn fmt_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn has_xattrs(dirfd: RawFd, name: &str) -> bool {
    let path = CString::new(format!("/proc/self/fd/{dirfd}/{name}")).expect("no NUL");
    // Size query only; an error counts as "has some" so that we fall back to a mount.
    // SAFETY: `path` is a NUL-terminated CString alive for the call; with a null buffer of size 0 llistxattr only
    // returns the size and writes nothing.
    unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) != 0 }
}

/// Edit the merged view's `DIR/FILE` in the upper dir, as overlayfs would
/// on a copy-up, while unmounted. Handles the plain cases (the upper already
/// has the file, or has nothing of `DIR` and the lower decides); anything
/// else (whiteouts, opaque dirs, several lowers, xattrs to carry) is `None`.
/// Every component is opened with `O_NOFOLLOW`: a symlink in either layer
/// means nothing is written, as on the mounted rootfs.
fn write_upper(lower: &str, upper: &Path, rel: &str, data: &[u8]) -> Result<Option<bool>> {
    const OP: &str = "write in overlay upper";
    let Some((d, f)) = rel.split_once('/') else {
        return Ok(None);
    };
    if d.is_empty() || f.is_empty() || f.contains('/') || lower.contains(':') {
        return Ok(None);
    }
    let ufd = fsutil::open_dir_at(libc::AT_FDCWD, upper.as_os_str().as_bytes()).ctx(OP, upper)?;
    let ufd = ufd.as_raw_fd();
    match lstat_at(ufd, d).ctx(OP, upper.join(d))? {
        None => {}
        Some(st) if fmt_of(&st) == SFlag::S_IFDIR => {
            let efd = fsutil::open_dir_at(ufd, d.as_bytes()).ctx(OP, upper.join(d))?;
            return match lstat_at(efd.as_raw_fd(), f).ctx(OP, upper.join(rel))? {
                Some(st) if fmt_of(&st) == SFlag::S_IFREG => {
                    fsutil::write_in_rootfs_if_regular(upper, rel, data).map(Some)
                }
                // Absent here: the lower (or an opaque flag) decides; a whiteout or other: leave it to a mount.
                _ => Ok(None),
            };
        }
        Some(_) => return Ok(None),
    }
    // Nothing of DIR in the upper: the merged view is the lower's.
    let lower = Path::new(lower);
    let lfd = fsutil::open_dir_at(libc::AT_FDCWD, lower.as_os_str().as_bytes()).ctx(OP, lower)?;
    let dst = match lstat_at(lfd.as_raw_fd(), d).ctx(OP, lower.join(d))? {
        Some(st) if fmt_of(&st) == SFlag::S_IFDIR => st,
        _ => return Ok(Some(false)),
    };
    let ldfd = fsutil::open_dir_at(lfd.as_raw_fd(), d.as_bytes()).ctx(OP, lower.join(d))?;
    let fst = match lstat_at(ldfd.as_raw_fd(), f).ctx(OP, lower.join(rel))? {
        Some(st) if fmt_of(&st) == SFlag::S_IFREG => st,
        _ => return Ok(Some(false)),
    };
    if has_xattrs(lfd.as_raw_fd(), d) || has_xattrs(ldfd.as_raw_fd(), f) {
        return Ok(None);
    }
    // Copy-up by hand: the dir and the file keep the lower's owner and mode.
    let up_dir = upper.join(d);
    let perm = |st: &FileStat| Mode::from_bits_truncate(st.st_mode & 0o7777);
    mkdirat(Some(ufd), d, Mode::from_bits_truncate(0o700)).ctx(OP, &up_dir)?;
    let res = (|| -> Result<()> {
        let udfd = fsutil::open_dir_at(ufd, d.as_bytes()).ctx(OP, &up_dir)?;
        fchown(udfd.as_raw_fd(), Some(dst.st_uid.into()), Some(dst.st_gid.into())).ctx(OP, &up_dir)?;
        fchmod(udfd.as_raw_fd(), perm(&dst)).ctx(OP, &up_dir)?;
        let target = upper.join(rel);
        let fd = openat(
            Some(udfd.as_raw_fd()),
            f,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .ctx(OP, &target)?;
        // SAFETY: `fd` was just returned by a successful openat (O_CREAT|O_EXCL) and is owned by nothing else, so
        // the File takes sole ownership and closes it once.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        fchown(file.as_raw_fd(), Some(fst.st_uid.into()), Some(fst.st_gid.into())).ctx(OP, &target)?;
        fchmod(file.as_raw_fd(), perm(&fst)).ctx(OP, &target)?;
        (&file).write_all(data).ctx(OP, &target)?;
        drop(file);
        // Last: creating the file changed the dir's times.
        let ts = |s: i64, ns: i64| TimeSpec::new(s, ns);
        futimens(
            udfd.as_raw_fd(),
            &ts(dst.st_atime, dst.st_atime_nsec),
            &ts(dst.st_mtime, dst.st_mtime_nsec),
        )
        .ctx(OP, &up_dir)?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = fsutil::remove_tree(&up_dir);
        return Err(e);
    }
    Ok(Some(true))
}

impl Snapshotter for OverlayBackend {
    fn can_snapshot(&self, src: &RootfsSpec) -> bool {
        matches!(src.kind(), "dir" | "overlay")
    }

    /// An overlay's snapshot copies its upper dir, which a frozen container
    /// does not change; a dir's would share the live dir as its lower.
    fn consistent_when_frozen(&self, src: &RootfsSpec) -> bool {
        src.kind() == "overlay"
    }

    fn snapshot(&self, src: &RootfsSpec, spec: &RootfsSpec, t: &Target, _readonly: bool) -> Result<()> {
        let _span = tracing::info_span!("overlay snapshot", src = %src, dst = %spec).entered();
        if !self.can_snapshot(src) {
            return Err(err!(
                Unsupported,
                "overlay snapshot",
                "cannot snapshot a {} rootfs",
                src.kind()
            ));
        }
        // Only the upper and work dirs are new: the lower is shared, even
        // when it lives in the target's own dir (restoring a snapshot of a
        // container made with -B overlay).
        let (_, upper) = parts(&t.building(spec))?;
        make_upper(&upper)?;
        if src.kind() == "overlay" {
            let (_, src_upper) = parts(src)?;
            if let Err(e) = copy_tree(&src_upper, &upper, &CopyOptions::default()) {
                let _ = self.destroy(&t.building(spec));
                return Err(e);
            }
        }
        Ok(())
    }
}
