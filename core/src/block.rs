//! What the backends whose rootfs is a volume outside the lxcpath (an LV,
//! a dataset, an rbd image) share: how a new volume is named, the
//! filesystem options, probing, making and mounting a filesystem on a
//! device, the strict unmount a destroy right after needs, and a clone's
//! new filesystem UUID. Core names no backend here: each backend calls
//! these with its own names and tools.

use crate::backend::Target;
use crate::err;
use crate::error::{IoContext, Result};
use crate::runner::Runner;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::Path;

/// The filesystems a block backend makes (`--fstype`).
pub const FSTYPES: &[&str] = &["ext4", "xfs", "btrfs"];

/// The first of `base`, `base_1`, `base_2`, ... not in `taken`.
pub fn free_name(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}_{i}"))
        .find(|n| !taken.contains(n))
        .expect("unbounded")
}

/// The volume name a new rootfs for `t` wants: `explicit` (`--lvname`,
/// `--rbdname`), else the container name, else for `snapN` of container
/// `c1` (lxcpath `.../c1/snaps`) `c1_snapN`.
pub fn wanted_name(t: &Target, explicit: Option<&str>) -> String {
    if let Some(n) = explicit {
        return n.to_string();
    }
    if t.lxcpath.file_name().is_some_and(|n| n == "snaps") {
        if let Some(owner) = t.lxcpath.parent().and_then(|p| p.file_name()) {
            return format!("{}_{}", owner.to_string_lossy(), t.name);
        }
    }
    t.name.to_string()
}

/// The name a new volume gets among `taken`: an explicit one as it is
/// (refused when taken: the user named it), else [`free_name`]. `full`
/// names the volume for the message (`vg/NAME`, `pool/NAME`).
pub fn pick_name(op: &'static str, want: String, explicit: bool, taken: &[String], full: &str) -> Result<String> {
    if !explicit {
        return Ok(free_name(&want, taken));
    }
    if taken.contains(&want) {
        return Err(err!(AlreadyExists, op, "{full} already exists"));
    }
    Ok(want)
}

/// Whether `c` may appear in an LVM or rbd volume name (LVM's character
/// set, which a path component and an argv carry unambiguously).
pub fn volume_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-')
}

/// `--fstype` (or `fallback`, a default from lxc.conf), checked; ext4 when
/// neither is given.
pub fn fstype_opt(op: &'static str, t: &Target, fallback: Option<&String>) -> Result<String> {
    let fstype = t
        .opts
        .fstype
        .clone()
        .or_else(|| fallback.cloned())
        .unwrap_or_else(|| "ext4".into());
    if !FSTYPES.contains(&fstype.as_str()) {
        return Err(err!(
            InvalidArgument,
            op,
            "unsupported --fstype {fstype:?} ({})",
            FSTYPES.join(", ")
        ));
    }
    Ok(fstype)
}

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Run `argv`; its first stderr line is the error.
fn tool(run: &dyn Runner, op: &'static str, v: &[&str]) -> Result<String> {
    let o = run.run(&argv(v))?;
    if !o.ok {
        return Err(err!(Command, op, "{} failed: {}", v[0], o.first_err_line()));
    }
    Ok(o.stdout)
}

/// Make a filesystem of type `fstype` (one of [`FSTYPES`]) on `dev`.
pub fn mkfs(run: &dyn Runner, fstype: &str, dev: &str) -> Result<()> {
    let v: &[&str] = match fstype {
        "xfs" => &["mkfs.xfs", "-q", "-f", dev],
        "btrfs" => &["mkfs.btrfs", "-q", "-f", dev],
        _ => &["mkfs.ext4", "-q", "-F", dev],
    };
    tool(run, "make filesystem", v).map(drop)
}

/// The filesystem type on `dev`, as blkid probes it.
pub fn fstype_of(run: &dyn Runner, dev: &str) -> Result<String> {
    let o = run.run(&argv(&["blkid", "-p", "-o", "value", "-s", "TYPE", dev]))?;
    let t = o.stdout.trim().to_string();
    if !o.ok || t.is_empty() {
        return Err(err!(InvalidSpec, "probe filesystem", "no filesystem found").at(dev));
    }
    Ok(t)
}

/// Mount the filesystem on `dev` at `target`, its type probed (naming the
/// type loads its module: ext4 and xfs are modules in distro kernels).
pub fn mount_dev(run: &dyn Runner, dev: &str, target: &Path, readonly: bool, op: &'static str) -> Result<()> {
    let fstype = fstype_of(run, dev)?;
    let mut flags = MsFlags::empty();
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(Some(dev), target, Some(fstype.as_str()), flags, None::<&str>).ctx(op, target)
}

/// Unmount `target`, not lazily: the volume is destroyed or unmapped right
/// after, which needs the device closed. Busy (a process still in it): a
/// lazy unmount, and the caller finds the device still open.
pub fn umount_strict(target: &Path, op: &'static str) -> Result<()> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH).ctx(op, target),
        Err(e) => Err(e).ctx(op, target),
    }
}

/// Give a clone's filesystem on `dev` its own UUID where the filesystem
/// refuses two mounted with one (xfs, btrfs); ext4 does not care.
pub fn new_fs_uuid(run: &dyn Runner, dev: &str) -> Result<()> {
    const OP: &str = "new filesystem uuid";
    match fstype_of(run, dev)?.as_str() {
        // A snapshot of a mounted xfs has a dirty log: replay it by mounting once.
        "xfs" if tool(run, OP, &["xfs_admin", "-U", "generate", dev]).is_err() => {
            let tmp = crate::paths::TempDir::new("xfs-log")?;
            mount(Some(dev), tmp.path(), Some("xfs"), MsFlags::empty(), Some("nouuid"))
                .ctx("mount xfs clone to replay its log", tmp.path())?;
            umount2(tmp.path(), MntFlags::empty()).ctx("unmount xfs clone", tmp.path())?;
            tool(run, OP, &["xfs_admin", "-U", "generate", dev])?;
        }
        "btrfs" => {
            tool(run, OP, &["btrfstune", "-f", "-u", dev])?;
        }
        _ => {}
    }
    Ok(())
}

/// For the block backends' unit tests: a shared handle on a
/// [`crate::runner::fake::FakeRunner`] to give a backend while the test
/// keeps reading its calls, and a plan call with a made-up target.
pub mod testing {
    use crate::backend::{Backend, BackendOpts, Target};
    use crate::error::Result;
    use crate::runner::{fake::FakeRunner, Out, Runner};
    use crate::spec::RootfsSpec;
    use std::path::PathBuf;
    use std::sync::Arc;

    /// A runner that answers through a [`FakeRunner`] the test holds too.
    pub struct Shared(pub Arc<FakeRunner>);

    impl Runner for Shared {
        fn run(&self, argv: &[String]) -> Result<Out> {
            self.0.run(argv)
        }
        fn pipe(&self, a: &[String], b: &[String]) -> Result<Out> {
            self.0.pipe(a, b)
        }
        fn run_out(&self, argv: &[String], out: &mut dyn std::io::Write) -> Result<Out> {
            self.0.run_out(argv, out)
        }
        fn run_in(&self, argv: &[String], input: &mut dyn std::io::Read) -> Result<Out> {
            self.0.run_in(argv, input)
        }
    }

    /// A fresh fake runner and a boxed handle on it.
    pub fn fake() -> (Arc<FakeRunner>, Box<dyn Runner>) {
        let f = Arc::new(FakeRunner::default());
        (f.clone(), Box::new(Shared(f)))
    }

    /// `b.plan` for container `name` of `lxcpath`, built in place.
    pub fn plan(
        b: &dyn Backend,
        name: &str,
        lxcpath: &str,
        opts: &BackendOpts,
        origin: Option<&str>,
    ) -> Result<RootfsSpec> {
        let lp = PathBuf::from(lxcpath);
        let dir = lp.join(name);
        let t = Target {
            name,
            lxcpath: &lp,
            dir: &dir,
            build_dir: &dir,
            opts,
        };
        let o = origin.map(|o| RootfsSpec::parse(o).expect("test spec"));
        b.plan(&t, o.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendOpts;
    use std::path::PathBuf;

    #[test]
    fn names() {
        let taken = vec!["c1".to_string(), "c1_1".to_string()];
        assert_eq!(free_name("c1", &taken), "c1_2");
        assert_eq!(free_name("c2", &taken), "c2");
        let e = pick_name("plan", "c1".into(), true, &taken, "vg/c1").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("vg/c1 already exists"), "{e}");
        assert_eq!(pick_name("plan", "c1".into(), false, &taken, "vg/c1").unwrap(), "c1_2");
        let opts = BackendOpts::default();
        let lp = PathBuf::from("/l/c1/snaps");
        let dir = lp.join("snap0");
        let t = Target {
            name: "snap0",
            lxcpath: &lp,
            dir: &dir,
            build_dir: &dir,
            opts: &opts,
        };
        assert_eq!(wanted_name(&t, None), "c1_snap0");
        assert_eq!(wanted_name(&t, Some("x")), "x");
        assert!(volume_char('+') && !volume_char('/') && !volume_char(' '));
    }

    #[test]
    fn fstype_checked() {
        let mut opts = BackendOpts::default();
        let lp = PathBuf::from("/l");
        let dir = lp.join("c");
        let t = |o: &BackendOpts| {
            fstype_opt(
                "plan",
                &Target {
                    name: "c",
                    lxcpath: &lp,
                    dir: &dir,
                    build_dir: &dir,
                    opts: o,
                },
                None,
            )
        };
        assert_eq!(t(&opts).unwrap(), "ext4");
        opts.fstype = Some("vfat".into());
        let e = t(&opts).unwrap_err();
        assert!(e.to_string().contains("\"vfat\" (ext4, xfs, btrfs)"), "{e}");
    }

    #[test]
    fn mkfs_and_uuid_argv() {
        let (f, r) = testing::fake();
        f.on("blkid", true, "btrfs\n");
        mkfs(r.as_ref(), "xfs", "/dev/x").unwrap();
        new_fs_uuid(r.as_ref(), "/dev/x").unwrap();
        assert_eq!(
            f.calls(),
            [
                "mkfs.xfs -q -f /dev/x",
                "blkid -p -o value -s TYPE /dev/x",
                "btrfstune -f -u /dev/x"
            ]
        );
        f.on("blkid", false, "");
        assert!(fstype_of(r.as_ref(), "/dev/y").is_err());
    }
}
