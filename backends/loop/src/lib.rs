//! The loop backend: the rootfs is a filesystem image in a file,
//! `loop:$lxcpath/NAME/rootdev`, mounted through a loop device. Copies of an
//! unchanged image are sparse image copies (a reflink where the host can);
//! snapshots are reflinks, where the host filesystem has them.

pub mod dev;
mod fiemap;
mod resize;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use strata_core::engine::fsutil;
use strata_core::{
    err, Backend, Capacity, Caps, Error, FastCopy, IoContext, Result, RootfsSpec, Snapshotter, Target, Usage,
    UsageReport, UsageSource,
};

/// LXC's default `--fssize`.
pub const DEFAULT_SIZE: u64 = 1 << 30;
pub const FSTYPES: &[&str] = &["ext4", "xfs", "btrfs"];

#[derive(Debug, Default)]
pub struct LoopBackend {
    /// An image copied by [`FastCopy::fast_copy`] with a buffered device
    /// attached before its data went in, for the edit or mount that follows
    /// (attaching once the copy's pages are dirty would write them all out
    /// first: the kernel flushes the backing file on LOOP_CONFIGURE). Any
    /// other call detaches it, as does the end of the process (autoclear).
    prepared: Mutex<HashMap<PathBuf, dev::Attached>>,
}

pub fn backend() -> Arc<dyn Backend> {
    Arc::new(LoopBackend::default())
}

impl LoopBackend {
    /// The device prepared for `image`, if any; others are detached.
    fn take_prepared(&self, image: &Path) -> Option<dev::Attached> {
        let mut p = self.prepared.lock().ok()?;
        let mine = p.remove(image);
        p.clear();
        mine
    }

    fn release_prepared(&self) {
        if let Ok(mut p) = self.prepared.lock() {
            p.clear();
        }
    }
}

/// The smallest image mkfs accepts for `fstype`.
fn min_size(fstype: &str) -> u64 {
    match fstype {
        "xfs" => 300 << 20,
        "btrfs" => 114_294_784,
        _ => 2 << 20,
    }
}

/// A size as LXC writes it: bytes, or with a K/M/G/T suffix (optionally `B`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_suffix(['B', 'b']).unwrap_or(s);
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        't' | 'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// The filesystem in an image, from its superblock magic, with the sector
/// size the loop device should present.
pub fn detect_fs(image: &Path) -> Option<(&'static str, u32)> {
    let f = File::open(image).ok()?;
    let at = |off: u64, n: usize| -> Option<Vec<u8>> {
        let mut b = vec![0u8; n];
        f.read_exact_at(&mut b, off).ok().map(|_| b)
    };
    if at(0, 4)? == b"XFSB" {
        let ss = at(102, 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as u32)
            .unwrap_or(512);
        return Some(("xfs", ss.clamp(512, 4096)));
    }
    if at(1080, 2).is_some_and(|b| b == [0x53, 0xEF]) {
        let log = at(1024 + 24, 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .unwrap_or(0);
        return Some(("ext4", (1024u32 << log.min(6)).clamp(512, 4096)));
    }
    if at(65600, 8).is_some_and(|b| b == b"_BHRfS_M") {
        let ss = at(65536 + 0x90, 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .unwrap_or(4096);
        return Some(("btrfs", ss.clamp(512, 4096)));
    }
    None
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run(op: &str, argv: &[&std::ffi::OsStr]) -> Result<()> {
    let name = argv[0].to_string_lossy().into_owned();
    let tool = find_tool(&name).ok_or_else(|| err!(NotFound, op, "{name} not found; install it"))?;
    let mut c = Command::new(&tool);
    c.args(&argv[1..]).stdin(std::process::Stdio::null());
    // A tool (mkfs, tune2fs...): recorded, so that after a kill -9 of this
    // command the next one waits for it (and for one not yet exec'd, which
    // holds this command's locks) before it undoes anything.
    let out = strata_core::toollock::output(&mut c).ctx(op, &tool)?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim();
        return Err(err!(Command, op, "{name} failed ({}): {msg}", out.status));
    }
    Ok(())
}

fn fstype_of(t: &Target) -> Result<String> {
    let fstype = t
        .opts
        .fstype
        .clone()
        .or_else(|| t.opts.defaults.get("lxc.bdev.fstype").cloned())
        .unwrap_or_else(|| "ext4".into());
    if !FSTYPES.contains(&fstype.as_str()) {
        return Err(err!(
            InvalidArgument,
            "plan loop rootfs",
            "unknown --fstype {fstype:?} (known: {})",
            FSTYPES.join(", ")
        ));
    }
    Ok(fstype)
}

fn size_of(t: &Target) -> Result<u64> {
    if let Some(s) = t.opts.fssize {
        return Ok(s);
    }
    match t.opts.defaults.get("lxc.bdev.fssize") {
        Some(v) => parse_size(v).ok_or_else(|| {
            err!(
                InvalidConfig,
                "plan loop rootfs",
                "lxc.bdev.fssize = {v:?} is not a size"
            )
        }),
        None => Ok(DEFAULT_SIZE),
    }
}

fn fs_name(p: &Path) -> String {
    use nix::sys::statfs::*;
    let Ok(t) = statfs(p).map(|s| s.filesystem_type()) else {
        return "unknown".into();
    };
    let known = [
        (EXT4_SUPER_MAGIC, "ext4"),
        (XFS_SUPER_MAGIC, "xfs"),
        (BTRFS_SUPER_MAGIC, "btrfs"),
        (TMPFS_MAGIC, "tmpfs"),
        (OVERLAYFS_SUPER_MAGIC, "overlay"),
    ];
    match known.iter().find(|(m, _)| *m == t) {
        Some((_, n)) => n.to_string(),
        None => format!("a filesystem of type {:#x}", t.0),
    }
}

const FICLONE: libc::c_ulong = 0x40049409;
const FICLONERANGE: libc::c_ulong = 0x4020940d;

#[repr(C)]
struct FileCloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

/// Whether `image` can be reflinked into directory `dir`: clones its first
/// block into an unnamed temporary file there (nothing is left behind).
fn reflink_probe(image: &Path, dir: &Path) -> std::result::Result<(), Errno> {
    let src = File::open(image).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let tmp = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .mode(0o600)
        .open(dir);
    let (tmp, named) = match tmp {
        Ok(f) => (f, None),
        Err(_) => {
            let p = dir.join(format!(".strata-reflink-probe-{}", std::process::id()));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
            (f, Some(p))
        }
    };
    let r = FileCloneRange {
        src_fd: src.as_raw_fd() as i64,
        src_offset: 0,
        src_length: 4096,
        dest_offset: 0,
    };
    // SAFETY: both fds are open Files borrowed for the call; `r` is a live, initialised repr(C) FileCloneRange, the
    // struct FICLONERANGE reads, and the kernel keeps no pointer to it.
    let res = Errno::result(unsafe { libc::ioctl(tmp.as_raw_fd(), FICLONERANGE as _, &r) }).map(drop);
    if let Some(p) = named {
        let _ = std::fs::remove_file(p);
    }
    res
}

fn reflink_refusal(dir: &Path, e: Errno) -> Error {
    // Where reflinks are simply missing the filesystem says it all; else the errno too.
    let why = match e {
        Errno::EOPNOTSUPP | Errno::EXDEV | Errno::EINVAL | Errno::ENOTTY => String::new(),
        e => format!(" ({e})"),
    };
    err!(
        Unsupported,
        "loop snapshot",
        "snapshot of a loop container needs a host filesystem with reflinks (btrfs, xfs) to share the image; this one is {}, which cannot reflink it{why}; use a copy instead",
        fs_name(dir)
    )
    .at(dir)
}

/// The journal mke2fs gives an ext4 filesystem of `blocks` 4 KiB blocks.
fn ext4_journal_blocks(blocks: u64) -> u64 {
    match blocks {
        b if b < 2048 => 0,
        b if b < 32768 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16384,
        b if b < 8192 * 1024 => 32768,
        b if b < 16384 * 1024 => 65536,
        b if b < 32768 * 1024 => 131072,
        _ => 262144,
    }
}

/// Copy `src` to the new file `dst` keeping holes: a reflink where the host
/// can, else `copy_file_range` over the data extents only.
pub fn copy_image(src: &Path, dst: &Path) -> Result<()> {
    copy_image_with(src, dst, || Ok(())).map(drop)
}

/// [`copy_image`], calling `before_data` once `dst` has its full (sparse)
/// length and no data yet, unless it was reflinked. Returns whether it was.
fn copy_image_with(src: &Path, dst: &Path, before_data: impl FnOnce() -> Result<()>) -> Result<bool> {
    const OP: &str = "copy loop image";
    let s = File::open(src).ctx(OP, src)?;
    let len = s.metadata().ctx(OP, src)?.len();
    let d = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .ctx(OP, dst)?;
    // SAFETY: both fds are open Files held for the call; FICLONE takes the source fd by value.
    if unsafe { libc::ioctl(d.as_raw_fd(), FICLONE as _, s.as_raw_fd()) } == 0 {
        return Ok(true);
    }
    d.set_len(len).ctx(OP, dst)?;
    before_data()?;
    let mut off: i64 = 0;
    while (off as u64) < len {
        // SAFETY: `s` is an open File; lseek only moves its offset and reads no memory of ours.
        let data = unsafe { libc::lseek(s.as_raw_fd(), off, libc::SEEK_DATA) };
        if data < 0 {
            match Errno::last() {
                Errno::ENXIO => break,
                e => return Err(Error::errno(OP, src, e)),
            }
        }
        // SAFETY: `s` is an open File; lseek only moves its offset and reads no memory of ours.
        let hole = unsafe { libc::lseek(s.as_raw_fd(), data, libc::SEEK_HOLE) };
        let end = if hole < 0 { len as i64 } else { hole };
        let (mut so, mut dof) = (data, data);
        while so < end {
            // SAFETY: both fds are open Files held for the call; `so` and `dof` are live i64s the kernel reads and
            // advances, and no buffer of ours is involved.
            let n = unsafe {
                strata_core::rawsys::copy_file_range(
                    s.as_raw_fd(),
                    &mut so,
                    d.as_raw_fd(),
                    &mut dof,
                    (end - so) as usize,
                    0,
                )
            };
            if n < 0 {
                let e = Errno::last();
                if matches!(e, Errno::EXDEV | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EINVAL) {
                    copy_range_rw(&s, &d, so as u64, end as u64).ctx(OP, dst)?;
                    break;
                }
                return Err(Error::errno(OP, dst, e));
            }
            if n == 0 {
                break;
            }
        }
        off = end;
    }
    Ok(false)
}

fn copy_range_rw(s: &File, d: &File, mut from: u64, to: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while from < to {
        let n = ((to - from) as usize).min(buf.len());
        s.read_exact_at(&mut buf[..n], from)?;
        d.write_all_at(&buf[..n], from)?;
        from += n as u64;
    }
    Ok(())
}

/// Give a copied image its own filesystem UUID so that both can be mounted
/// at once (xfs and older btrfs refuse duplicates).
fn new_uuid(image: &Path) -> Result<()> {
    const OP: &str = "new filesystem UUID";
    match detect_fs(image) {
        Some(("xfs", _)) => run(
            OP,
            &[
                "xfs_admin".as_ref(),
                "-U".as_ref(),
                "generate".as_ref(),
                image.as_os_str(),
            ],
        ),
        Some(("btrfs", _)) => run(OP, &["btrfstune".as_ref(), "-m".as_ref(), image.as_os_str()]),
        // ext4 mounts duplicates; tune2fs -U would rewrite every group checksum.
        _ => Ok(()),
    }
}

/// The loop device and image behind the mount at `target`, if it is a loop mount.
fn mount_source(target: &Path) -> Option<PathBuf> {
    let canon = std::fs::canonicalize(target).ok()?;
    strata_core::mountinfo::mounts()
        .into_iter()
        .rev()
        .find(|m| m.mount_point == canon && m.source.starts_with("/dev/loop"))
        .map(|m| PathBuf::from(m.source))
}

impl Backend for LoopBackend {
    fn kind(&self) -> &'static str {
        "loop"
    }

    fn caps(&self) -> Caps {
        Caps {
            needs_root: true,
            block_backed: true,
            sized: true,
            ..Caps::default()
        }
    }

    fn plan(&self, t: &Target, origin: Option<&RootfsSpec>) -> Result<RootfsSpec> {
        const OP: &str = "plan loop rootfs";
        self.release_prepared();
        if !strata_core::paths::is_root() {
            return Err(err!(PermissionDenied, OP, "only root can use loop devices (-B loop)"));
        }
        let path = t.dir.join("rootdev");
        if path.to_str().is_none() {
            return Err(err!(InvalidArgument, OP, "path is not UTF-8").at(&path));
        }
        let fstype = fstype_of(t)?;
        let size = size_of(t)?;
        if size < min_size(&fstype) {
            return Err(err!(
                InvalidArgument,
                OP,
                "--fssize {size} bytes is too small for {fstype} (at least {} MiB)",
                min_size(&fstype).div_ceil(1 << 20)
            ));
        }
        if find_tool(&format!("mkfs.{fstype}")).is_none() {
            return Err(err!(
                NotFound,
                OP,
                "mkfs.{fstype} not found; install it to make {fstype} images"
            ));
        }
        if !Path::new("/dev/loop-control").exists() {
            return Err(err!(
                NotFound,
                OP,
                "/dev/loop-control is missing: no loop device support"
            ));
        }
        if let Some(o) = origin {
            if o.kind() != "loop" {
                return Err(err!(
                    Unsupported,
                    OP,
                    "cannot make a loop snapshot of a {} rootfs",
                    o.kind()
                ));
            }
            let anc = strata_core::paths::nearest_existing_dir(t.dir).to_path_buf();
            reflink_probe(&o.path(), &anc).map_err(|e| reflink_refusal(&anc, e))?;
        }
        Ok(RootfsSpec::new("loop", path.display().to_string()))
    }

    // The image less what its filesystem surely keeps for itself (ext4's
    // journal); never below the truth, so only what cannot fit is refused.
    fn capacity(&self, t: &Target) -> Option<Capacity> {
        let (fstype, size) = (fstype_of(t).ok()?, size_of(t).ok()?);
        let journal = if fstype == "ext4" {
            ext4_journal_blocks(size / 4096) * 4096
        } else {
            0
        };
        // ext4 has an inode per 4 KiB at the very most (mke2fs's smallest ratio).
        let inodes = (fstype == "ext4").then_some(size / 4096);
        Some(Capacity {
            bytes: size.saturating_sub(journal),
            inodes,
            what: format!("a {} MiB {fstype} image (--fssize)", size >> 20),
        })
    }

    fn create(&self, spec: &RootfsSpec, t: &Target) -> Result<()> {
        const OP: &str = "create loop rootfs";
        self.release_prepared();
        let path = t.building(spec).path();
        let fstype = fstype_of(t)?;
        let size = size_of(t)?;
        let _span = tracing::debug_span!("loop create", path = %path.display(), fstype, size).entered();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .ctx(OP, &path)?;
        let res = f.set_len(size).ctx(OP, &path).and_then(|_| {
            drop(f);
            let mkfs = format!("mkfs.{fstype}");
            // Sectors of 4096 bytes: the loop device presents 4096-byte blocks.
            let args: &[&str] = match fstype.as_str() {
                "ext4" => &["-q", "-F", "-b", "4096"],
                "xfs" => &["-q", "-f", "-s", "size=4096"],
                _ => &["-q", "-f"],
            };
            let mut argv: Vec<&std::ffi::OsStr> = vec![mkfs.as_ref()];
            argv.extend(args.iter().map(std::ffi::OsStr::new));
            argv.push(path.as_os_str());
            run(OP, &argv)
        });
        if res.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        res
    }

    fn destroy(&self, spec: &RootfsSpec) -> Result<()> {
        let path = spec.path();
        let _span = tracing::debug_span!("loop destroy", path = %path.display()).entered();
        drop(self.take_prepared(&path));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("destroy loop rootfs", &path, e)),
            _ => Ok(()),
        }
    }

    fn exists(&self, spec: &RootfsSpec) -> bool {
        spec.path().is_file()
    }

    fn mount(&self, spec: &RootfsSpec, target: &Path, readonly: bool) -> Result<()> {
        const OP: &str = "mount loop rootfs";
        let image = spec.path();
        let _span = tracing::debug_span!("loop mount", image = %image.display()).entered();
        let Some((fstype, block)) = detect_fs(&image) else {
            if !image.is_file() {
                return Err(err!(NotFound, OP, "image does not exist").at(&image));
            }
            return Err(err!(InvalidArgument, OP, "no ext4, xfs or btrfs filesystem in the image").at(&image));
        };
        let dev = match self.take_prepared(&image) {
            Some(d) => d,
            None => {
                dev::wait_unbound(&image, std::time::Duration::from_secs(10))?;
                dev::attach(&image, readonly, block)?
            }
        };
        let mut flags = MsFlags::empty();
        if readonly {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(Some(&dev.path), target, Some(fstype), flags, None::<&str>).ctx(OP, target)?;
        // Mounted: autoclear detaches it when the mount goes.
        dev.keep();
        Ok(())
    }

    fn umount(&self, spec: &RootfsSpec, target: &Path) -> Result<()> {
        self.release_prepared();
        let dev = mount_source(target);
        match umount2(target, MntFlags::empty()) {
            Err(Errno::EBUSY) => {
                umount2(target, MntFlags::MNT_DETACH).ctx("unmount loop rootfs", target)?;
                // Still in use: autoclear detaches it when the last user goes.
                return Ok(());
            }
            r => r.ctx("unmount loop rootfs", target)?,
        }
        if let Some(d) = dev {
            dev::detach_if_bound(&d, &spec.path());
        }
        Ok(())
    }

    // A killed process's mount goes, and with it (autoclear) the device;
    // a device still bound to the image and used by nobody is detached.
    fn release(&self, spec: &RootfsSpec, target: &Path) -> Result<()> {
        if strata_core::scratch::is_mount_point(target) {
            self.umount(spec, target)?;
        }
        dev::detach_unused(&spec.path());
        Ok(())
    }

    // Only for an image just copied with its device ready (see `prepared`).
    // Mounted without barriers: a flush would wait for the whole copy to
    // reach the disk. Like the files of any copied rootfs, the image's data
    // is left to the kernel's writeback; the container's metadata is what
    // the engine syncs before the rename.
    fn write_if_regular_unmounted(&self, spec: &RootfsSpec, rel: &str, data: &[u8]) -> Result<Option<bool>> {
        const OP: &str = "edit loop rootfs";
        let image = spec.path();
        let Some(dev) = self.take_prepared(&image) else {
            return Ok(None);
        };
        let _span = tracing::debug_span!("loop edit", image = %image.display(), rel).entered();
        // Recorded before the mount: reconcile releases it if this process is killed.
        let mnt = strata_core::scratch::ScratchMount::new(&spec.to_string())?;
        mount(
            Some(&dev.path),
            mnt.path(),
            Some("ext4"),
            MsFlags::empty(),
            Some("nobarrier"),
        )
        .ctx(OP, &image)?;
        let wrote = fsutil::write_in_rootfs_if_regular(mnt.path(), rel, data);
        match umount2(mnt.path(), MntFlags::empty()) {
            Ok(()) => drop(dev),
            Err(e) => {
                let _ = umount2(mnt.path(), MntFlags::MNT_DETACH);
                // Still in use: autoclear detaches it when the last user goes.
                dev.keep();
                return Err(Error::errno(OP, &image, e));
            }
        }
        match wrote {
            // Not found through the device made before the data went in: a
            // block it cached then may still hide the copy (seen under heavy
            // load). The engine's own path looks again through a new device.
            Ok(false) => Ok(None),
            w => w.map(Some),
        }
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

    fn usage_reporter(&self) -> Option<&dyn UsageReport> {
        Some(self)
    }
}

impl UsageReport for LoopBackend {
    // The blocks the image holds on the host; of them, the extents it
    // shares with reflinked copies (FIEMAP) are not exclusive.
    fn usage(&self, spec: &RootfsSpec) -> Result<Usage> {
        use std::os::unix::fs::MetadataExt;
        let img = spec.path();
        // O_NONBLOCK: a fifo put in the image's place must not hang us.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&img)
            .ctx("loop usage", &img)?;
        let md = f.metadata().ctx("loop usage", &img)?;
        if !md.is_file() {
            return Err(err!(InvalidSpec, "loop usage", "not a regular file").at(&img));
        }
        let allocated = md.blocks() * 512;
        let exclusive = fiemap::shared_bytes(&f).ok().map(|s| allocated.saturating_sub(s));
        Ok(Usage {
            exclusive,
            referenced: Some(allocated),
            snapshots: None,
            source: UsageSource::Allocated,
        })
    }
}

impl Snapshotter for LoopBackend {
    // Only where the image can be reflinked; otherwise the engine copies
    // (lxc-snapshot) or refuses (`-s`).
    fn can_snapshot(&self, src: &RootfsSpec) -> bool {
        let img = src.path();
        src.kind() == "loop" && img.parent().is_some_and(|d| reflink_probe(&img, d).is_ok())
    }

    fn refusal(&self, src: &RootfsSpec) -> Option<Error> {
        let img = src.path();
        let dir = img.parent()?;
        match reflink_probe(&img, dir) {
            Err(e) if src.kind() == "loop" => Some(reflink_refusal(dir, e)),
            _ => None,
        }
    }

    fn snapshot(&self, src: &RootfsSpec, spec: &RootfsSpec, t: &Target, _readonly: bool) -> Result<()> {
        self.release_prepared();
        let dst = t.building(spec).path();
        let _span = tracing::info_span!("loop reflink snapshot", src = %src, dst = %dst.display()).entered();
        let s = File::open(src.path()).ctx("loop snapshot", src.path())?;
        let d = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dst)
            .ctx("loop snapshot", &dst)?;
        // SAFETY: both fds are open Files held for the call; FICLONE takes the source fd by value.
        let res = if unsafe { libc::ioctl(d.as_raw_fd(), FICLONE as _, s.as_raw_fd()) } == 0 {
            drop(d);
            new_uuid(&dst)
        } else {
            Err(reflink_refusal(dst.parent().unwrap_or(&dst), Errno::last()))
        };
        if res.is_err() {
            let _ = std::fs::remove_file(&dst);
        }
        res
    }
}

impl FastCopy for LoopBackend {
    fn fast_copy(&self, src: &RootfsSpec, spec: &RootfsSpec, t: &Target) -> Result<bool> {
        self.release_prepared();
        if src.kind() != "loop" {
            return Ok(false);
        }
        let img = src.path();
        let Some((fstype, block)) = detect_fs(&img) else {
            return Ok(false);
        };
        let len = std::fs::metadata(&img).ctx("copy loop image", &img)?.len();
        if t.opts.fssize.is_some_and(|s| s != len) || t.opts.fstype.as_deref().is_some_and(|f| f != fstype) {
            return Ok(false);
        }
        let dst = t.building(spec).path();
        let _span = tracing::info_span!("loop image copy", src = %img.display(), dst = %dst.display()).entered();
        // ext4 needs no new UUID, so nothing else touches the file: a device
        // can be attached while it is still empty (see `prepared`).
        let mut pre = None;
        let res = copy_image_with(&img, &dst, || {
            if fstype == "ext4" {
                pre = Some(dev::attach_buffered(&dst, false, block)?);
            }
            Ok(())
        })
        .and_then(|_| new_uuid(&dst))
        .and_then(|_| pre.as_ref().map_or(Ok(()), |d| d.drop_cached_blocks()));
        if res
            .as_ref()
            .is_err_and(|e| e.kind() != strata_core::ErrorKind::AlreadyExists)
        {
            drop(pre);
            let _ = std::fs::remove_file(&dst);
            return res.map(|_| true);
        }
        if let (Some(d), Ok(mut p)) = (pre, self.prepared.lock()) {
            p.insert(dst, d);
        }
        res.map(|_| true)
    }
}
