//! `strata resize` on rbd: the image's size with its filesystem.
//!
//! Grown with `rbd resize` (one change of the image's header), then the
//! filesystem grown through a mount of the mapped device (a second mount
//! where the container runs on it, recorded first as a scratch mount so a
//! killed command's mount is released by the next one's reconcile):
//! resize2fs, xfs_growfs and `btrfs filesystem resize` grow a mounted
//! filesystem in the kernel, journaled. The kernel learns the new size of
//! a mapped image from the cluster's notice, a moment later: the grow waits
//! for the device to show it. A grow killed between the two leaves an
//! image larger than its filesystem, whole; asking again finishes it.
//!
//! Shrunk only where the filesystem can (ext4), offline. resize2fs moving
//! blocks is not kill -9 safe, so a container's image is never shrunk in
//! place: `strata resize` copies its files into a new, smaller image and
//! swaps it in as a restore does (see [`Resize::shrinks_by_copy`]); an
//! image still being built (a restore keeping the container's size) is
//! shrunk in place: checked, resize2fs to the new size, then `rbd resize
//! --allow-shrink`. xfs cannot shrink and btrfs is not shrunk here:
//! refused, nothing changed.

use super::{parse_spec, s, RbdBackend};
use strata_core::{err, Backend, Opened, Resize, Result, RootfsSpec};

const OP: &str = "resize rbd image";

/// `rbd resize --size` in MiB (its unit), rounded up as a create's is.
fn mib(bytes: u64) -> String {
    bytes.div_ceil(1 << 20).to_string()
}

/// The size in bytes the kernel gives block device `dev` (`/dev/rbdN`).
fn device_bytes(dev: &str) -> Option<u64> {
    let name = dev.strip_prefix("/dev/")?;
    let sectors = std::fs::read_to_string(format!("/sys/block/{name}/size")).ok()?;
    sectors.trim().parse::<u64>().ok().map(|n| n * 512)
}

impl RbdBackend {
    /// Run a tool other than rbd (resize2fs, e2fsck ...); its first error
    /// line when it fails.
    fn fs_tool(&self, argv: Vec<String>) -> Result<String> {
        let o = self.run.run(&argv)?;
        if !o.ok {
            return Err(err!(Command, OP, "{} failed: {}", argv[0], o.first_err_line()));
        }
        Ok(o.stdout)
    }

    /// The image's size in bytes, from the pool's listing.
    fn image_size(&self, pool: &str, image: &str) -> Result<u64> {
        let st = self.pool_state_listed(OP, pool)?;
        st.image(image)
            .map(|i| i.size)
            .ok_or_else(|| err!(NotFound, OP, "rbd image {pool}/{image} does not exist"))
    }

    /// Run `f` with the device of `pool/image` mapped: mapped now (and
    /// unmapped after, unless another user holds it) if it was not.
    fn with_device<T>(&self, pool: &str, image: &str, f: impl FnOnce(&str) -> Result<T>) -> Result<T> {
        if let Some(d) = self.mapped(pool, image)?.into_iter().next() {
            return f(&d);
        }
        let dev = self.map(pool, image)?;
        let res = f(&dev);
        let un = self.unmap_settled(pool, image, 15);
        let v = res?;
        un?;
        Ok(v)
    }

    /// The filesystem type on `pool/image`.
    fn fstype(&self, pool: &str, image: &str) -> Result<String> {
        self.with_device(pool, image, |dev| strata_core::block::fstype_of(self.run.as_ref(), dev))
    }

    /// The ext4 on `dev`'s smallest size, as resize2fs estimates it.
    fn ext4_min_bytes(&self, dev: &str) -> Result<u64> {
        let out = self.fs_tool(s(&["resize2fs", "-P", dev]))?;
        let blocks = out
            .lines()
            .find_map(|l| l.strip_prefix("Estimated minimum size of the filesystem:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| err!(Command, OP, "resize2fs -P gave no minimum size").at(dev))?;
        let head = self.fs_tool(s(&["dumpe2fs", "-h", dev]))?;
        let bs = head
            .lines()
            .find_map(|l| l.strip_prefix("Block size:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| err!(Command, OP, "dumpe2fs -h gave no block size").at(dev))?;
        Ok(blocks * bs)
    }

    /// Grow the filesystem on `spec` to fill its image, mounted (a second
    /// mount where the container runs on it).
    fn grow_fs(&self, spec: &RootfsSpec, pool: &str, image: &str, fstype: &str, bytes: u64) -> Result<()> {
        let m = Opened::open(self as &dyn Backend, spec, false)?;
        let res = (|| {
            let dev = self
                .mapped(pool, image)?
                .into_iter()
                .next()
                .ok_or_else(|| err!(Command, OP, "{pool}/{image} is mounted but not mapped"))?;
            // The kernel takes the new size from the cluster's notice.
            let mut n = 0;
            while device_bytes(&dev).is_some_and(|b| b < bytes) && n < 100 {
                std::thread::sleep(std::time::Duration::from_millis(100));
                n += 1;
            }
            let mnt = m.path().display().to_string();
            let argv = match fstype {
                "ext4" => s(&["resize2fs", &dev]),
                "xfs" => s(&["xfs_growfs", "-d", &mnt]),
                _ => s(&["btrfs", "filesystem", "resize", "max", &mnt]),
            };
            self.fs_tool(argv).map(drop)
        })();
        let closed = m.close();
        res.and(closed)
    }
}

impl Resize for RbdBackend {
    fn what(&self) -> &'static str {
        "the rbd image's size"
    }

    fn resize(&self, spec: &RootfsSpec, bytes: u64, running: bool) -> Result<()> {
        let (pool, image) = parse_spec(spec)?;
        let _span = tracing::info_span!("rbd resize", pool = %pool, image = %image, bytes).entered();
        if bytes < 1 << 20 {
            return Err(err!(InvalidArgument, OP, "an rbd image must be at least 1M"));
        }
        let size = self.image_size(&pool, &image)?;
        let full = format!("{pool}/{image}");
        // rbd sizes are whole MiB here, as a create makes them.
        let want = bytes.div_ceil(1 << 20) << 20;
        let fstype = self.fstype(&pool, &image)?;
        if !matches!(fstype.as_str(), "ext4" | "xfs" | "btrfs") {
            return Err(err!(Unsupported, OP, "no ext4, xfs or btrfs filesystem on {full}"));
        }
        if want >= size {
            if want > size {
                self.tool(OP, &["resize", "--no-progress", "--size", &mib(bytes), &full])?;
            }
            // Also at the same size: a grow killed after `rbd resize` is finished.
            return self.grow_fs(spec, &pool, &image, &fstype, want);
        }
        if running {
            return Err(err!(
                Busy,
                OP,
                "the container runs on {full}; stop it to shrink its image (growing works while it runs)"
            ));
        }
        if fstype != "ext4" {
            return Err(err!(
                Unsupported,
                OP,
                "{fstype} cannot shrink (only ext4 is shrunk, offline); {full} stays {} MiB",
                size >> 20
            ));
        }
        self.with_device(&pool, &image, |dev| {
            // Checked (-n changes nothing) and clean: resize2fs -f then skips its
            // own demand for a fresh check, and its floor is checked here first.
            self.fs_tool(s(&["e2fsck", "-f", "-n", dev]))?;
            let min = self.ext4_min_bytes(dev)?;
            if want < min {
                return Err(err!(
                    InvalidArgument,
                    OP,
                    "its files need at least {} MiB; {full} stays {} MiB",
                    min.div_ceil(1 << 20),
                    size >> 20
                ));
            }
            self.fs_tool(s(&["resize2fs", "-f", dev, &format!("{}K", want >> 10)]))
                .map(drop)
        })?;
        self.tool(
            OP,
            &[
                "resize",
                "--no-progress",
                "--allow-shrink",
                "--size",
                &mib(bytes),
                &full,
            ],
        )?;
        Ok(())
    }

    fn size(&self, spec: &RootfsSpec) -> Result<Option<u64>> {
        let (pool, image) = parse_spec(spec)?;
        let st = self.pool_state_listed(OP, &pool)?;
        Ok(st.image(&image).map(|i| i.size))
    }

    fn shrinks_by_copy(&self, spec: &RootfsSpec, bytes: u64) -> Result<Option<String>> {
        let (pool, image) = parse_spec(spec)?;
        let Ok(size) = self.image_size(&pool, &image) else {
            return Ok(None);
        };
        if bytes.div_ceil(1 << 20) << 20 >= size {
            return Ok(None);
        }
        let fstype = self.fstype(&pool, &image)?;
        Ok(Some(fstype).filter(|f| f == "ext4"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::runner::fake::FakeRunner;
    use super::super::{spec_for, RbdBackend};
    use std::sync::Arc;
    use strata_core::block::testing;
    use strata_core::{Backend, ErrorKind};

    const RBD: &str = "rbd --client_mount_timeout 30 --rados_mon_op_timeout 30 --rados_osd_op_timeout 60";
    /// c1: 64 MiB.
    const LS: &str = r#"[{"image":"c1","id":"1","size":67108864,"format":2}]"#;

    fn setup(fstype: &str) -> (RbdBackend, Arc<FakeRunner>) {
        let (f, run) = testing::fake();
        f.on(&format!("{RBD} ls -l --format json --pool lxc"), true, LS);
        f.on(&format!("{RBD} device list"), true, "[]");
        f.on(&format!("{RBD} map"), true, "/dev/rbd7\n");
        f.on("blkid", true, fstype);
        f.on("resize2fs -P", true, "Estimated minimum size of the filesystem: 8192\n");
        f.on("dumpe2fs -h", true, "Block size:               4096\n");
        (
            RbdBackend::with_runner(run)
                .with_user(None)
                .with_timeouts(crate::Timeouts::default()),
            f,
        )
    }

    fn resized(f: &FakeRunner) -> Vec<String> {
        f.calls().into_iter().filter(|c| c.contains(" resize ")).collect()
    }

    #[test]
    fn size_is_the_images() {
        let (b, _f) = setup("ext4");
        let r = b.resizer().expect("rbd declares a resizer");
        assert_eq!(r.size(&spec_for("lxc", "c1")).unwrap(), Some(64 << 20));
        assert_eq!(r.size(&spec_for("lxc", "gone")).unwrap(), None);
    }

    #[test]
    fn shrink_refused_for_xfs_and_when_running_nothing_resized() {
        let (b, f) = setup("xfs");
        let r = b.resizer().unwrap();
        let spec = spec_for("lxc", "c1");
        let e = r.resize(&spec, 32 << 20, false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert!(e.to_string().contains("xfs cannot shrink"), "{e}");
        assert!(!e.to_string().contains('\n'));
        // Not copied either: only ext4 shrinks.
        assert_eq!(r.shrinks_by_copy(&spec, 32 << 20).unwrap(), None);
        let (b, f2) = setup("ext4");
        let e = b.resizer().unwrap().resize(&spec, 32 << 20, true).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Busy);
        assert!(resized(&f).is_empty() && resized(&f2).is_empty(), "{:?}", f.calls());
        let e = b.resizer().unwrap().resize(&spec, 1000, false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
    }

    #[test]
    fn ext4_shrinks_by_copy_and_in_place_only_above_its_floor() {
        let (b, f) = setup("ext4");
        let r = b.resizer().unwrap();
        let spec = spec_for("lxc", "c1");
        assert_eq!(r.shrinks_by_copy(&spec, 32 << 20).unwrap(), Some("ext4".into()));
        assert_eq!(r.shrinks_by_copy(&spec, 64 << 20).unwrap(), None);
        assert_eq!(r.shrinks_by_copy(&spec, 128 << 20).unwrap(), None);
        // Its files need 32 MiB (8192 blocks of 4 KiB): 16 MiB is refused, nothing resized.
        let e = r.resize(&spec, 16 << 20, false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("at least 32 MiB"), "{e}");
        assert!(resized(&f).is_empty(), "{:?}", f.calls());
        // In place (a rootfs being built): the filesystem first, then the image.
        r.resize(&spec, 48 << 20, false).unwrap();
        let calls = f.calls();
        let fs = calls
            .iter()
            .position(|c| c == "resize2fs -f /dev/rbd7 49152K")
            .expect("resize2fs");
        let img = calls
            .iter()
            .position(|c| c == &format!("{RBD} resize --no-progress --allow-shrink --size 48 lxc/c1"))
            .expect("rbd resize");
        assert!(calls.iter().any(|c| c == "e2fsck -f -n /dev/rbd7"));
        assert!(fs < img, "{calls:?}");
    }
}
