//! `strata resize` on LVM: the logical volume's size with its filesystem.
//! Grown with `lvextend` (one LVM metadata transaction), then the
//! filesystem grown online through a second mount of the volume at a
//! scratch dir (recorded first, so a killed command's mount is released by
//! the next one's reconcile): resize2fs, xfs_growfs and `btrfs filesystem
//! resize` grow a mounted filesystem in the kernel, journaled, whether the
//! container runs on it or not. A grow killed between the two leaves a
//! volume larger than its filesystem, whole; asking again finishes it.
//! Shrunk only where the filesystem can (ext4), offline. resize2fs moving
//! blocks is not kill -9 safe, so a container's volume is never shrunk in
//! place: `strata resize` copies its files into a new, smaller volume and
//! swaps it in as a restore does (see [`Resize::shrinks_by_copy`]); a
//! volume still being built (a restore keeping the container's size) is
//! shrunk in place: checked, then resize2fs to the new size, then
//! `lvreduce`; a kill anywhere there only leaves a staged volume the
//! staging's undo removes. xfs cannot shrink, and btrfs is not shrunk
//! here: refused, nothing changed.

use super::{parse_spec, s, LvmBackend};
use strata_core::{err, Backend, Opened, Resize, Result, RootfsSpec};

const OP: &str = "resize logical volume";

impl LvmBackend {
    /// The ext4 on `dev`'s smallest size, as resize2fs estimates it.
    fn ext4_min_bytes(&self, dev: &str) -> Result<u64> {
        let o = self.tool(OP, s(&["resize2fs", "-P", dev]))?;
        let blocks = o
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Estimated minimum size of the filesystem:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| err!(Command, OP, "resize2fs -P gave no minimum size").at(dev))?;
        Ok(blocks * self.ext4_block_size(dev)?)
    }

    fn ext4_block_size(&self, dev: &str) -> Result<u64> {
        let o = self.tool(OP, s(&["dumpe2fs", "-h", dev]))?;
        o.stdout
            .lines()
            .find_map(|l| l.strip_prefix("Block size:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| err!(Command, OP, "dumpe2fs -h gave no block size").at(dev))
    }

    /// Grow the filesystem on `spec` to fill its volume, mounted (a second
    /// mount where the container runs on it).
    fn grow_fs(&self, spec: &RootfsSpec, fstype: &str) -> Result<()> {
        let m = Opened::open(self as &dyn Backend, spec, false)?;
        let mnt = m.path().display().to_string();
        let argv = match fstype {
            "ext4" => s(&["resize2fs", spec.source()]),
            "xfs" => s(&["xfs_growfs", "-d", &mnt]),
            _ => s(&["btrfs", "filesystem", "resize", "max", &mnt]),
        };
        let res = self.tool(OP, argv);
        m.close()?;
        res.map(drop)
    }
}

impl Resize for LvmBackend {
    fn what(&self) -> &'static str {
        "the logical volume's size"
    }

    fn resize(&self, spec: &RootfsSpec, bytes: u64, running: bool) -> Result<()> {
        let (vg, lv) = parse_spec(spec)?;
        let _span = tracing::info_span!("lvm resize", vg = %vg, lv = %lv, bytes).entered();
        let lvs = self.lvs(&vg)?;
        let l = lvs
            .iter()
            .find(|l| l.name == lv)
            .ok_or_else(|| err!(NotFound, OP, "logical volume {vg}/{lv} does not exist"))?;
        if l.is_classic_snapshot() {
            return Err(err!(
                Unsupported,
                OP,
                "{vg}/{lv} is a classic (non-thin) snapshot: its size is its copy-on-write space"
            ));
        }
        if !l.is_active() {
            self.activate(&vg, &lv)?;
        }
        let dev = spec.source().to_string();
        let fstype = strata_core::block::fstype_of(self.run.as_ref(), &dev)?;
        if !matches!(fstype.as_str(), "ext4" | "xfs" | "btrfs") {
            return Err(err!(Unsupported, OP, "no ext4, xfs or btrfs filesystem found").at(&dev));
        }
        let full = format!("{vg}/{lv}");
        if bytes >= l.size {
            if bytes > l.size {
                if l.is_thin() {
                    if let Some(p) = lvs.iter().find(|p| p.name == l.pool && p.is_thin_pool()) {
                        if bytes > p.size {
                            return Err(err!(
                                InvalidArgument,
                                OP,
                                "{bytes} bytes is larger than thin pool {vg}/{} ({} bytes)",
                                p.name,
                                p.size
                            ));
                        }
                    }
                } else {
                    let free = self.vg(OP, &vg)?.free;
                    if bytes - l.size > free {
                        return Err(err!(
                            InvalidArgument,
                            OP,
                            "volume group {vg} has {free} bytes free, {} more are needed",
                            bytes - l.size
                        ));
                    }
                }
                self.tool(OP, s(&["lvextend", "-y", "-L", &format!("{bytes}b"), &full]))?;
            }
            // Also at the same size: a grow killed after lvextend is finished.
            return self.grow_fs(spec, &fstype);
        }
        if running {
            return Err(err!(
                Busy,
                OP,
                "the container runs on {full}; stop it to shrink its volume (growing works while it runs)"
            ));
        }
        if fstype != "ext4" {
            return Err(err!(
                Unsupported,
                OP,
                "{fstype} cannot shrink (only ext4 is shrunk, offline); {full} stays {} MiB",
                l.size >> 20
            ));
        }
        // Checked (-n changes nothing) and clean: resize2fs may then skip its own demand for a
        // fresh check (-f), which would also skip its floor: that is checked here first.
        self.tool(OP, s(&["e2fsck", "-f", "-n", &dev]))?;
        let min = self.ext4_min_bytes(&dev)?;
        if bytes < min {
            return Err(err!(
                InvalidArgument,
                OP,
                "its files need at least {} MiB; {full} stays {} MiB",
                min.div_ceil(1 << 20),
                l.size >> 20
            ));
        }
        self.tool(OP, s(&["resize2fs", "-f", &dev, &format!("{}K", bytes >> 10)]))?;
        self.tool(OP, s(&["lvreduce", "-y", "-f", "-L", &format!("{bytes}b"), &full]))?;
        Ok(())
    }

    fn size(&self, spec: &RootfsSpec) -> Result<Option<u64>> {
        let (vg, lv) = parse_spec(spec)?;
        if let Some(b) = active_size(spec.source(), &vg, &lv) {
            return Ok(Some(b));
        }
        Ok(self.find(&vg, &lv).map(|l| l.size))
    }

    fn shrinks_by_copy(&self, spec: &RootfsSpec, bytes: u64) -> Result<Option<String>> {
        let (vg, lv) = parse_spec(spec)?;
        let Some(l) = self.find(&vg, &lv) else {
            return Ok(None);
        };
        if bytes >= l.size || l.is_classic_snapshot() {
            return Ok(None);
        }
        if !l.is_active() {
            self.activate(&vg, &lv)?;
        }
        let fstype = strata_core::block::fstype_of(self.run.as_ref(), spec.source())?;
        Ok(Some(fstype).filter(|f| f == "ext4"))
    }
}

/// An active LV's size, from its device-mapper device in sysfs (a restore
/// asks it twice: no `lvs` process, seconds under emulation), when the
/// device node leads to the mapping of that very LV; else `None`. Found by
/// the node's device number, whether the node is a link to `dm-N` (udev) or
/// a node LVM made itself (no udev).
fn active_size(dev: &str, vg: &str, lv: &str) -> Option<u64> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dev)
        .ok()
        .filter(|m| m.file_type().is_block_device())?;
    let rdev = m.rdev();
    let sys = std::path::PathBuf::from(format!(
        "/sys/dev/block/{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    ));
    let name = std::fs::read_to_string(sys.join("dm/name")).ok()?;
    if name.trim_end() != format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--")) {
        return None;
    }
    let sectors: u64 = std::fs::read_to_string(sys.join("size")).ok()?.trim().parse().ok()?;
    Some(sectors * 512)
}
