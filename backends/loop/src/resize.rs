//! `strata resize` of a loop rootfs: the image resized with its filesystem
//! (ext4: grown or shrunk offline by resize2fs; xfs and btrfs: grown,
//! mounted, by xfs_growfs and `btrfs filesystem resize`; xfs cannot
//! shrink). The work is done on a copy beside the image (a reflink where
//! the host has them), noted as in flight before it exists and renamed
//! over the image at the end: a kill -9 leaves the old image whole and a
//! temp file the next command's reconcile removes.

use super::{copy_image, detect_fs, min_size, run, LoopBackend};
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use strata_core::{err, Backend, Error, IoContext, Opened, Resize, Result, RootfsSpec};

const OP: &str = "resize loop image";

/// resize2fs's estimate of the smallest size the ext4 image can shrink to.
fn ext4_min_bytes(image: &std::path::Path) -> Result<u64> {
    let tool = super::find_tool("resize2fs").ok_or_else(|| err!(NotFound, OP, "resize2fs not found; install it"))?;
    let mut c = std::process::Command::new(&tool);
    c.arg("-P").arg(image).stdin(std::process::Stdio::null());
    let out = strata_core::toollock::output(&mut c).ctx(OP, &tool)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let blocks = text
        .lines()
        .find_map(|l| l.strip_prefix("Estimated minimum size of the filesystem:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| err!(Command, OP, "resize2fs -P gave no minimum size").at(image))?;
    let bs = super::detect_fs(image).map(|(_, bs)| u64::from(bs)).unwrap_or(4096);
    Ok(blocks * bs)
}

impl Resize for LoopBackend {
    fn what(&self) -> &'static str {
        "the loop image's size"
    }

    fn resize(&self, spec: &RootfsSpec, bytes: u64, running: bool) -> Result<()> {
        let image = spec.path();
        let cur = std::fs::metadata(&image).ctx(OP, &image)?.len();
        if bytes == cur {
            return Ok(());
        }
        if running {
            return Err(err!(
                Busy,
                OP,
                "the container runs on {}; stop it to resize its image",
                image.display()
            ));
        }
        let Some((fstype, _)) = detect_fs(&image) else {
            return Err(err!(Unsupported, OP, "no ext4, xfs or btrfs filesystem found").at(&image));
        };
        let grow = bytes > cur;
        if !grow && fstype != "ext4" {
            return Err(err!(
                Unsupported,
                OP,
                "{fstype} cannot shrink (only ext4 images are shrunk, offline); it stays {} MiB",
                cur >> 20
            ));
        }
        if bytes < min_size(fstype) {
            return Err(err!(
                InvalidArgument,
                OP,
                "{} MiB is too small for {fstype} (at least {} MiB)",
                bytes >> 20,
                min_size(fstype).div_ceil(1 << 20)
            ));
        }
        if !bytes.is_multiple_of(4096) {
            return Err(err!(InvalidArgument, OP, "{bytes} bytes is not a multiple of 4 KiB"));
        }
        let dir = image
            .parent()
            .ok_or_else(|| err!(InvalidSpec, OP, "no parent").at(&image))?;
        let name = image.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(
            ".{name}.strata-tmp-{}-{}",
            std::process::id(),
            strata_core::paths::unique()
        ));
        let _noted = strata_core::inflight::note(&tmp)?;
        let res = (|| -> Result<()> {
            copy_image(&image, &tmp)?;
            let f = std::fs::OpenOptions::new().write(true).open(&tmp).ctx(OP, &tmp)?;
            let k = format!("{}K", bytes >> 10);
            let t = tmp.as_os_str();
            match (fstype, grow) {
                ("ext4", _) => {
                    // Checked (-n changes nothing) and clean: resize2fs may skip its own
                    // demand for a fresh check (-f), which -n does not record.
                    run(OP, &[OsStr::new("e2fsck"), OsStr::new("-f"), OsStr::new("-n"), t])?;
                    if grow {
                        f.set_len(bytes).ctx(OP, &tmp)?;
                    } else {
                        // -f below would also skip resize2fs's floor: checked here first.
                        let min = ext4_min_bytes(&tmp)?;
                        if bytes < min {
                            return Err(err!(
                                InvalidArgument,
                                OP,
                                "its files need at least {} MiB; it stays {} MiB",
                                min.div_ceil(1 << 20),
                                cur >> 20
                            ));
                        }
                    }
                    run(OP, &[OsStr::new("resize2fs"), OsStr::new("-f"), t, OsStr::new(&k)])?;
                    if !grow {
                        f.set_len(bytes).ctx(OP, &tmp)?;
                    }
                }
                _ => {
                    f.set_len(bytes).ctx(OP, &tmp)?;
                    let tspec = RootfsSpec::new("loop", tmp.display().to_string());
                    let m = Opened::open(self as &dyn Backend, &tspec, false)?;
                    let p = m.path().as_os_str();
                    if fstype == "xfs" {
                        run(OP, &[OsStr::new("xfs_growfs"), OsStr::new("-d"), p])?;
                    } else {
                        let argv = ["btrfs", "filesystem", "resize", "max"].map(OsStr::new);
                        run(OP, &[argv[0], argv[1], argv[2], argv[3], p])?;
                    }
                    m.close()?;
                }
            }
            f.sync_all().ctx(OP, &tmp)?;
            strata_core::engine::failpoint("resize-before-rename");
            std::fs::rename(&tmp, &image).ctx(OP, &image)?;
            let d = std::fs::File::open(dir).ctx(OP, dir)?;
            nix::unistd::fsync(d.as_raw_fd()).map_err(|e| Error::errno(OP, dir, e))?;
            Ok(())
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    fn size(&self, spec: &RootfsSpec) -> Result<Option<u64>> {
        let image = spec.path();
        Ok(Some(std::fs::metadata(&image).ctx(OP, &image)?.len()))
    }
}
