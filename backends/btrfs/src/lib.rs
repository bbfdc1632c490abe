//! The btrfs backend: the rootfs is a subvolume, `btrfs:$lxcpath/NAME/rootfs`.
//! Snapshots (clones and `lxc-snapshot`) are subvolume snapshots; subvolumes
//! nested inside a rootfs are snapshotted and destroyed with it. Its native
//! stream (`strata send --native`) is btrfs send/receive (see `native`).

mod ioctl;
mod native;
mod resize;

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_core::engine::fsutil;
use strata_core::{
    err, Backend, Caps, Error, FastCopy, IoContext, Result, RootfsSpec, Snapshotter, Target, Usage, UsageReport,
    UsageSource,
};

pub use ioctl::BTRFS_SUPER_MAGIC;

#[derive(Debug, Default)]
pub struct BtrfsBackend;

pub fn backend() -> Arc<dyn Backend> {
    Arc::new(BtrfsBackend)
}

fn open_dir(p: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)
        .ctx("open", p)
}

fn split(p: &Path) -> Result<(&Path, &[u8])> {
    match (p.parent(), p.file_name()) {
        (Some(d), Some(n)) => Ok((d, n.as_bytes())),
        _ => Err(err!(InvalidSpec, "btrfs", "no parent directory").at(p)),
    }
}

/// The filesystem type magic of `p`.
fn fs_magic(p: &Path) -> Result<i64> {
    let st = nix::sys::statfs::statfs(p).ctx("statfs", p)?;
    Ok(st.filesystem_type().0 as i64)
}

fn fs_name(magic: i64) -> String {
    match magic {
        0xEF53 => "ext4".into(),
        0x58465342 => "xfs".into(),
        0x01021994 => "tmpfs".into(),
        0x794c7630 => "overlay".into(),
        m => format!("filesystem type {m:#x}"),
    }
}

/// Whether `p` is the root of a btrfs subvolume.
pub fn is_subvolume(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.ino() == ioctl::FIRST_FREE_OBJECTID)
        && fs_magic(p).is_ok_and(|m| m == BTRFS_SUPER_MAGIC)
}

fn fsid(p: &Path) -> Result<[u8; 16]> {
    let f = open_dir(p)?;
    ioctl::fsid(f.as_fd()).ctx("btrfs filesystem info", p)
}

/// Subvolumes nested below the subvolume `top`, as paths relative to it,
/// parents before children: from the root tree's references (root), else
/// by walking the tree.
pub fn nested_subvolumes(top: &Path) -> Result<Vec<PathBuf>> {
    let f = open_dir(top)?;
    let searched = ioctl::subvol_id(f.as_fd()).and_then(|id| {
        let mut out = Vec::new();
        search_children(&f, id, Path::new(""), &mut out).map(|_| out)
    });
    match searched {
        Ok(v) => Ok(v),
        Err(Errno::EPERM) | Err(Errno::EACCES) => nested_subvolumes_walk(top),
        Err(e) => Err(Error::errno("list subvolumes", top, e)),
    }
}

fn search_children(f: &File, id: u64, prefix: &Path, out: &mut Vec<PathBuf>) -> nix::Result<()> {
    for (child, dirid, name) in ioctl::child_subvols(f.as_fd(), id)? {
        let dir = ioctl::dir_path(f.as_fd(), id, dirid)?;
        let rel = prefix
            .join(std::ffi::OsStr::from_bytes(&dir))
            .join(std::ffi::OsStr::from_bytes(&name));
        out.push(rel.clone());
        search_children(f, child, &rel, out)?;
    }
    Ok(())
}

/// [`nested_subvolumes`] by walking the tree (for users without
/// CAP_SYS_ADMIN). Other mounts are not entered.
pub fn nested_subvolumes_walk(top: &Path) -> Result<Vec<PathBuf>> {
    let mounts: HashSet<PathBuf> = fsutil::mount_points().into_iter().collect();
    let mut out = Vec::new();
    let dev = std::fs::symlink_metadata(top).ctx("list subvolumes", top)?.dev();
    walk(top, Path::new(""), dev, &mounts, &mut out)?;
    Ok(out)
}

fn walk(top: &Path, rel: &Path, dev: u64, mounts: &HashSet<PathBuf>, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = top.join(rel);
    for ent in std::fs::read_dir(&dir).ctx("list subvolumes", &dir)? {
        let ent = ent.ctx("list subvolumes", &dir)?;
        let ft = ent.file_type().ctx("list subvolumes", ent.path())?;
        if !ft.is_dir() {
            continue;
        }
        let path = ent.path();
        let m = std::fs::symlink_metadata(&path).ctx("list subvolumes", &path)?;
        let child_rel = rel.join(ent.file_name());
        if m.dev() == dev {
            walk(top, &child_rel, dev, mounts, out)?;
        } else if m.ino() == ioctl::FIRST_FREE_OBJECTID
            && !mounts.contains(&path)
            && fs_magic(&path).is_ok_and(|f| f == BTRFS_SUPER_MAGIC)
        {
            out.push(child_rel.clone());
            walk(top, &child_rel, m.dev(), mounts, out)?;
        }
    }
    Ok(())
}

/// Snapshot subvolume `src` as `dst` (which must not exist), nested
/// subvolumes included. `readonly` is applied last, deepest first, since
/// the nested snapshots are made inside the writable parent. On error
/// whatever was made is removed.
pub fn snapshot_tree(src: &Path, dst: &Path, readonly: bool) -> Result<()> {
    const OP: &str = "btrfs snapshot";
    let nested = nested_subvolumes(src)?;
    let one = |s: &Path, d: &Path, ro: bool| -> Result<()> {
        let (parent, name) = split(d)?;
        let sf = open_dir(s)?;
        let pf = open_dir(parent)?;
        ioctl::snapshot(sf.as_fd(), pf.as_fd(), name, ro).ctx(OP, d)
    };
    // Without nested subvolumes a read-only snapshot is made so at once:
    // setting the flag afterwards costs another transaction commit.
    if nested.is_empty() {
        return one(src, dst, readonly);
    }
    one(src, dst, false)?;
    let res = (|| -> Result<()> {
        for rel in &nested {
            let d = dst.join(rel);
            // The snapshot holds an empty directory where the nested subvolume was.
            std::fs::remove_dir(&d).ctx(OP, &d)?;
            one(&src.join(rel), &d, false)?;
        }
        let mut ro: Vec<PathBuf> = Vec::new();
        for rel in &nested {
            let sf = open_dir(&src.join(rel))?;
            if readonly || ioctl::get_flags(sf.as_fd()).is_ok_and(|f| f & ioctl::SUBVOL_RDONLY != 0) {
                ro.push(dst.join(rel));
            }
        }
        if readonly {
            ro.push(dst.to_path_buf());
        }
        for p in ro.iter().rev() {
            let f = open_dir(p)?;
            ioctl::set_readonly(f.as_fd(), true).ctx("make snapshot read-only", p)?;
        }
        Ok(())
    })();
    if let Err(e) = res {
        let _ = destroy_tree(dst);
        return Err(e);
    }
    Ok(())
}

/// Mount options (per-mount and superblock) of the mount holding `p`.
fn mount_options(p: &Path) -> Vec<String> {
    let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut best: Option<(usize, Vec<String>)> = None;
    for m in strata_core::mountinfo::mounts() {
        if !canon.starts_with(&m.mount_point) {
            continue;
        }
        let len = m.mount_point.as_os_str().len();
        if best.as_ref().is_some_and(|(l, _)| *l > len) {
            continue;
        }
        let mut opts = m.options;
        opts.extend(m.super_options);
        best = Some((len, opts));
    }
    best.map(|b| b.1).unwrap_or_default()
}

/// Refuse a delete of subvolume `top` that the caller may not do, before
/// anything is changed: a user needs a filesystem mounted with
/// user_subvol_rm_allowed.
pub fn check_destroy(top: &Path) -> Result<()> {
    if strata_core::paths::is_root() || !is_subvolume(top) {
        return Ok(());
    }
    if !mount_options(top).iter().any(|o| o == "user_subvol_rm_allowed") {
        return Err(err!(
            PermissionDenied,
            "btrfs destroy",
            "only root can delete a btrfs subvolume unless the filesystem is mounted with user_subvol_rm_allowed"
        )
        .at(top));
    }
    Ok(())
}

/// Delete subvolume `top` and the subvolumes nested in it. A plain
/// directory (half-made rootfs) is removed as a tree; missing is fine.
///
/// The kernel lets a user delete a subvolume whose root it may write: a
/// user's unprivileged rootfs belongs to the container's root, so what the
/// user cannot delete itself is deleted in a user namespace mapping its own
/// and subordinate ids (as [`fsutil::remove_tree`] does for directories).
pub fn destroy_tree(top: &Path) -> Result<()> {
    if std::fs::symlink_metadata(top).is_err() {
        return Ok(());
    }
    if !is_subvolume(top) {
        return fsutil::remove_tree(top);
    }
    check_destroy(top)?;
    match destroy_subvolumes(top) {
        Err(e)
            if e.kind() == strata_core::ErrorKind::PermissionDenied
                && !strata_core::paths::is_root()
                && !strata_core::identity::in_ns_child() =>
        {
            // An error from inside names what failed; one from setting up says less than the first.
            strata_core::idmap::as_own_ids(|| destroy_subvolumes(top)).map_err(|r| if r.path.is_some() { r } else { e })
        }
        r => r,
    }
}

fn destroy_subvolumes(top: &Path) -> Result<()> {
    const OP: &str = "btrfs destroy";
    let nested = nested_subvolumes(top)?;
    // A read-only parent cannot lose its children: make everything writable
    // first. A read-only subvolume itself can go as it is for root, and each
    // flag change is a transaction commit, so a lone one is left alone. A
    // user must be able to write the subvolume's root: read-only ones first
    // become writable.
    let user = !strata_core::paths::is_root();
    if !nested.is_empty() || user {
        for p in std::iter::once(top.to_path_buf()).chain(nested.iter().map(|r| top.join(r))) {
            let Ok(f) = open_dir(&p) else { continue };
            if !user {
                let _ = ioctl::set_readonly(f.as_fd(), false);
            } else if ioctl::get_flags(f.as_fd()).is_ok_and(|fl| fl & ioctl::SUBVOL_RDONLY != 0) {
                match ioctl::set_readonly(f.as_fd(), false) {
                    Ok(()) => {}
                    Err(Errno::EPERM) | Err(Errno::EACCES) => {
                        return Err(err!(PermissionDenied, OP, "not allowed to make this subvolume writable").at(&p))
                    }
                    Err(e) => return Err(Error::errno(OP, &p, e)),
                }
            }
        }
    }
    for p in nested
        .iter()
        .rev()
        .map(|r| top.join(r))
        .chain(std::iter::once(top.to_path_buf()))
    {
        let (parent, name) = split(&p)?;
        let pf = open_dir(parent)?;
        match ioctl::destroy(pf.as_fd(), name) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(nix::errno::Errno::EPERM) | Err(nix::errno::Errno::EACCES) => {
                return Err(err!(PermissionDenied, OP, "not allowed to delete this subvolume").at(&p))
            }
            Err(e) => return Err(Error::errno(OP, &p, e)),
        }
    }
    Ok(())
}

impl BtrfsBackend {
    fn check_target(&self, path: &Path) -> Result<PathBuf> {
        const OP: &str = "plan btrfs rootfs";
        let anc = strata_core::paths::nearest_existing_dir(path.parent().unwrap_or(path)).to_path_buf();
        let magic = fs_magic(&anc)?;
        if magic != BTRFS_SUPER_MAGIC {
            return Err(err!(
                InvalidArgument,
                OP,
                "{} is not on a btrfs filesystem but on {}; put the container path on btrfs or use another backend",
                anc.display(),
                fs_name(magic)
            ));
        }
        Ok(anc)
    }
}

impl Backend for BtrfsBackend {
    fn kind(&self) -> &'static str {
        "btrfs"
    }

    fn caps(&self) -> Caps {
        Caps {
            atomic_snapshot: true,
            best_order: Some(0),
            shift_in_place: true,
            ..Caps::default()
        }
    }

    fn plan(&self, t: &Target, origin: Option<&RootfsSpec>) -> Result<RootfsSpec> {
        const OP: &str = "plan btrfs rootfs";
        let path = t.dir.join("rootfs");
        if path.to_str().is_none() {
            return Err(err!(InvalidArgument, OP, "path is not UTF-8").at(&path));
        }
        let anc = self.check_target(&path)?;
        if let Some(o) = origin {
            if o.kind() != "btrfs" || !is_subvolume(&o.path()) {
                return Err(err!(
                    Unsupported,
                    OP,
                    "{o} is not a btrfs subvolume; it cannot be snapshotted"
                ));
            }
            if fsid(&o.path())? != fsid(&anc)? {
                return Err(err!(
                    Unsupported,
                    OP,
                    "{o} is on another btrfs filesystem; a snapshot must stay on the same one (use a copy)"
                )
                .at(&path));
            }
        }
        Ok(RootfsSpec::new("btrfs", path.display().to_string()))
    }

    fn create(&self, spec: &RootfsSpec, t: &Target) -> Result<()> {
        let path = t.building(spec).path();
        let _span = tracing::debug_span!("btrfs create", path = %path.display()).entered();
        let (parent, name) = split(&path)?;
        std::fs::create_dir_all(parent).ctx("create btrfs rootfs", parent)?;
        let pf = open_dir(parent)?;
        ioctl::create_subvol(pf.as_fd(), name).ctx("create btrfs subvolume", &path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).ctx("create btrfs rootfs", &path)
    }

    fn destroy(&self, spec: &RootfsSpec) -> Result<()> {
        let path = spec.path();
        let _span = tracing::debug_span!("btrfs destroy", path = %path.display()).entered();
        // A native receive's leftovers beside it (killed before they were moved into place).
        native::clear_receive_dir(&path)?;
        destroy_tree(&path)
    }

    fn check_destroy(&self, spec: &RootfsSpec) -> Result<()> {
        check_destroy(&spec.path())
    }

    fn exists(&self, spec: &RootfsSpec) -> bool {
        spec.path().is_dir()
    }

    fn local_path(&self, spec: &RootfsSpec) -> Option<PathBuf> {
        Some(spec.path())
    }

    fn mount(&self, spec: &RootfsSpec, target: &Path, readonly: bool) -> Result<()> {
        fsutil::bind_mount(&spec.path(), target, readonly)
    }

    // A bind mount of the subvolume: nothing else to release.
    fn mount_is_self_contained(&self) -> bool {
        true
    }

    fn umount(&self, _spec: &RootfsSpec, target: &Path) -> Result<()> {
        umount2(target, MntFlags::MNT_DETACH).ctx("unmount rootfs", target)
    }

    fn snapshotter(&self) -> Option<&dyn Snapshotter> {
        Some(self)
    }

    fn fast_copier(&self) -> Option<&dyn FastCopy> {
        Some(self)
    }

    fn resizer(&self) -> Option<&dyn strata_core::Resize> {
        Some(self)
    }

    fn native_stream(&self) -> Option<&dyn strata_core::NativeStream> {
        Some(self)
    }

    fn usage_reporter(&self) -> Option<&dyn UsageReport> {
        Some(self)
    }
}

impl Snapshotter for BtrfsBackend {
    fn can_snapshot(&self, src: &RootfsSpec) -> bool {
        src.kind() == "btrfs"
    }

    fn snapshot(&self, src: &RootfsSpec, spec: &RootfsSpec, t: &Target, readonly: bool) -> Result<()> {
        let _span = tracing::info_span!("btrfs snapshot", src = %src, dst = %spec, readonly).entered();
        if !self.can_snapshot(src) {
            return Err(err!(
                Unsupported,
                "btrfs snapshot",
                "cannot snapshot a {} rootfs",
                src.kind()
            ));
        }
        snapshot_tree(&src.path(), &t.building(spec).path(), readonly)
    }

    // Creating a snapshot commits the transaction (the kernel always does).
    fn commits_filesystem(&self) -> bool {
        true
    }
}

impl FastCopy for BtrfsBackend {
    // A copy within one btrfs is a writable snapshot, as LXC does it.
    fn fast_copy(&self, src: &RootfsSpec, spec: &RootfsSpec, t: &Target) -> Result<bool> {
        let dst = t.building(spec).path();
        let (Some(parent), true) = (dst.parent(), src.kind() == "btrfs" && is_subvolume(&src.path())) else {
            return Ok(false);
        };
        let anc = strata_core::paths::nearest_existing_dir(parent).to_path_buf();
        if fs_magic(&anc)? != BTRFS_SUPER_MAGIC || fsid(&anc)? != fsid(&src.path())? {
            return Ok(false);
        }
        let _span = tracing::info_span!("btrfs copy as snapshot", src = %src, dst = %spec).entered();
        std::fs::create_dir_all(parent).ctx("btrfs copy", parent)?;
        snapshot_tree(&src.path(), &dst, false)?;
        Ok(true)
    }
}

impl UsageReport for BtrfsBackend {
    // qgroups where quotas are on and consistent: referenced and exclusive
    // as the filesystem counts them. Otherwise a walk (referenced only: what
    // a subvolume shares with its snapshots is then unknown).
    fn usage(&self, spec: &RootfsSpec) -> Result<Usage> {
        self.usage_in(spec, &mut std::collections::HashMap::new())
    }

    // Whether a filesystem's qgroups count, and the commit that brings
    // them up to date, once per filesystem, not once per subvolume.
    fn usage_many(&self, specs: &[&RootfsSpec]) -> Vec<Result<Usage>> {
        let mut fss = std::collections::HashMap::new();
        specs.iter().map(|s| self.usage_in(s, &mut fss)).collect()
    }
}

impl BtrfsBackend {
    /// [`UsageReport::usage`] of `spec`, with `fss`: per filesystem (by its
    /// UUID) already asked, whether its qgroups count (then synced once).
    fn usage_in(&self, spec: &RootfsSpec, fss: &mut std::collections::HashMap<[u8; 16], bool>) -> Result<Usage> {
        let path = spec.path();
        let f = open_dir(&path)?;
        let walked = || -> Result<Usage> {
            Ok(Usage {
                referenced: Some(strata_core::usage::walk(&path)?),
                source: UsageSource::Walk,
                ..Usage::default()
            })
        };
        let id = match ioctl::subvol_id(f.as_fd()) {
            Ok(id) => id,
            Err(nix::errno::Errno::EPERM) => return walked(),
            Err(e) => return Err(Error::errno("btrfs usage", &path, e)),
        };
        // Quotas off: no status item. Asked before the sync below, which
        // only matters when there are numbers to bring up to date.
        let counting = |f: &File| {
            let on = matches!(ioctl::qgroups_counting(f.as_fd()), Ok(true));
            if on {
                // qgroup numbers are updated at transaction commit.
                let _ = nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(f));
            }
            on
        };
        let on = match ioctl::fsid(f.as_fd()) {
            Ok(fsid) => *fss.entry(fsid).or_insert_with(|| counting(&f)),
            Err(_) => counting(&f),
        };
        if !on {
            return walked();
        }
        match ioctl::qgroup_info(f.as_fd(), id) {
            Ok(Some((referenced, exclusive))) => Ok(Usage {
                exclusive: Some(exclusive),
                referenced: Some(referenced),
                snapshots: None,
                source: UsageSource::Accounting("qgroup"),
            }),
            Ok(None) | Err(nix::errno::Errno::EPERM) => walked(),
            Err(e) => Err(Error::errno("btrfs qgroup usage", &path, e)),
        }
    }
}
