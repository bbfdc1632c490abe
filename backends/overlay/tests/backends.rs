//! dir and overlay backends on their own: real mounts (root only).

use std::path::Path;
use strata_core::{Backend, BackendOpts, ErrorKind, RootfsSpec, Snapshotter, Target};

struct Umount<'a>(&'a dyn Backend, RootfsSpec, &'a Path);
impl Drop for Umount<'_> {
    fn drop(&mut self) {
        let _ = self.0.umount(&self.1, self.2);
    }
}

#[test]
fn dir_bind_mount_read_only_and_destroy_refuses_mounts() {
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let b = strata_dir::DirBackend;
    let opts = BackendOpts::default();
    let dir = t.path().join("c1");
    let tgt = Target {
        name: "c1",
        lxcpath: t.path(),
        dir: &dir,
        build_dir: &dir,
        opts: &opts,
    };
    let spec = b.plan(&tgt, None).unwrap();
    assert_eq!(spec.to_string(), format!("dir:{}/rootfs", dir.display()));
    b.create(&spec, &tgt).unwrap();
    std::fs::write(dir.join("rootfs/f"), "x").unwrap();
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    {
        b.mount(&spec, &mnt, true).unwrap();
        let _g = Umount(&b, spec.clone(), &mnt);
        assert_eq!(std::fs::read_to_string(mnt.join("f")).unwrap(), "x");
        assert!(
            std::fs::write(mnt.join("g"), "y").is_err(),
            "read-only mount accepted a write"
        );
        // Something mounted below the rootfs: destroy refuses and removes nothing.
        let inner = dir.join("rootfs/sub");
        std::fs::create_dir(&inner).unwrap();
        b.mount(&spec, &inner, false).unwrap();
        let _g2 = Umount(&b, spec.clone(), &inner);
        let e = b.destroy(&spec).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert!(dir.join("rootfs/f").exists());
    }
    b.destroy(&spec).unwrap();
    assert!(!dir.join("rootfs").exists());
    b.destroy(&spec).unwrap();
}

#[test]
fn overlay_old_style_spec_uses_olwork_and_snapshot_keeps_lower() {
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let lower = t.path().join("lower");
    std::fs::create_dir(&lower).unwrap();
    std::fs::write(lower.join("a"), "lower").unwrap();
    let b = strata_overlay::OverlayBackend::default();
    let spec = RootfsSpec::parse(&format!(
        "overlayfs:{}:{}/c2/delta0",
        lower.display(),
        t.path().display()
    ))
    .unwrap();
    assert_eq!(
        strata_overlay::work_dir(Path::new("/x/c2/delta0")),
        Path::new("/x/c2/olwork")
    );
    assert_eq!(
        strata_overlay::work_dir(Path::new("/x/c2/overlay/delta")),
        Path::new("/x/c2/overlay/work")
    );
    std::fs::create_dir_all(t.path().join("c2/delta0")).unwrap();
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    {
        b.mount(&spec, &mnt, false).unwrap();
        let _g = Umount(&b, spec.clone(), &mnt);
        std::fs::write(mnt.join("a"), "upper").unwrap();
    }
    assert!(t.path().join("c2/olwork").is_dir());
    assert_eq!(std::fs::read_to_string(lower.join("a")).unwrap(), "lower");
    assert_eq!(std::fs::read_to_string(t.path().join("c2/delta0/a")).unwrap(), "upper");

    // A snapshot of it shares the lower and carries the delta.
    let opts = BackendOpts::default();
    let dir = t.path().join("c3");
    std::fs::create_dir(&dir).unwrap();
    let tgt = Target {
        name: "c3",
        lxcpath: t.path(),
        dir: &dir,
        build_dir: &dir,
        opts: &opts,
    };
    let s3 = b.plan(&tgt, Some(&spec)).unwrap();
    assert_eq!(
        s3.to_string(),
        format!("overlay:{}:{}/overlay/delta", lower.display(), dir.display())
    );
    assert!(b.can_snapshot(&spec));
    b.snapshot(&spec, &s3, &tgt, false).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("overlay/delta/a")).unwrap(), "upper");
    b.destroy(&s3).unwrap();
    assert!(!dir.join("overlay").exists());
    b.destroy(&spec).unwrap();
    assert!(!t.path().join("c2/delta0").exists() && !t.path().join("c2/olwork").exists());
    assert!(lower.join("a").exists());
}

/// An upper dir on an overlay (a VM's writable layer, a container's tree)
/// is one overlayfs refuses with a bare EINVAL: the error says why.
#[test]
fn overlay_upper_on_an_overlay_is_refused_saying_why() {
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let d = |n: &str| {
        let p = t.path().join(n);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (lo, up, wk, outer) = (d("lo"), d("up"), d("wk"), d("outer"));
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lo.display(),
        up.display(),
        wk.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &outer,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .unwrap();
    struct Outer<'a>(&'a Path);
    impl Drop for Outer<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _outer = Outer(&outer);
    let lower = d("lower");
    std::fs::create_dir_all(outer.join("c/overlay/delta")).unwrap();
    let spec = RootfsSpec::parse(&format!(
        "overlay:{}:{}/c/overlay/delta",
        lower.display(),
        outer.display()
    ))
    .unwrap();
    let mnt = d("mnt");
    let b = strata_overlay::OverlayBackend::default();
    let e = b.mount(&spec, &mnt, false).unwrap_err();
    let _g = Umount(&b, spec.clone(), &mnt);
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("upper dir is on an overlay filesystem"), "{e}");
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
}

/// `-B overlayfs` (LXC's older name) finds the overlay backend through the
/// alias it declares; only it declares a union mount.
#[test]
fn overlay_answers_to_its_alias_and_is_the_union_mount() {
    let mut bs = strata_core::Backends::new();
    bs.register(strata_dir::backend());
    bs.register(strata_overlay::backend());
    for name in ["overlay", "overlayfs"] {
        let b = bs.get(name).unwrap();
        assert_eq!(b.kind(), "overlay");
        assert!(b.caps().union_mount);
    }
    assert!(!bs.get("dir").unwrap().caps().union_mount);
    let e = bs.get("aufs").err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidSpec);
    assert!(e.to_string().contains("unknown backend type \"aufs\""), "{e}");
}
