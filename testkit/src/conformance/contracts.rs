//! The [`Backend`] contracts, called directly: create, exists, mount and
//! umount, destroy of a half-made and of an already-gone rootfs, and a
//! copy-on-write snapshot where the backend declares it.

use super::state::{tree, tree_diff};
use super::{Fixture, Report};
use crate::ensure;
use std::path::Path;
use strata_core::backend::Target;
use strata_core::{Backend, RootfsSpec};

pub fn run(fx: &Fixture, rep: &mut Report) {
    let b = match fx.backends.get(&fx.backend) {
        Ok(b) => b,
        Err(e) => {
            rep.push(format!("{}: contracts", fx.label), Err(e.to_string()));
            return;
        }
    };
    let lx = fx.lxcpath("contracts");
    std::fs::create_dir_all(&lx).unwrap();
    let cases: [(&str, Case); 4] = [
        ("create, exists, mount, umount, destroy twice", lifecycle),
        ("destroy of a half-made rootfs", half_made),
        ("destroy of a rootfs never made", never_made),
        ("snapshot where declared", snapshot),
    ];
    for (name, f) in cases {
        rep.push(format!("{}: contract: {name}", fx.label), f(fx, b, &lx));
    }
}

type Case = fn(&Fixture, &dyn Backend, &Path) -> Result<String, String>;

fn target<'a>(fx: &'a Fixture, lx: &'a Path, name: &'a str, dir: &'a Path) -> Target<'a> {
    std::fs::create_dir_all(dir).unwrap();
    Target {
        name,
        lxcpath: lx,
        dir,
        build_dir: dir,
        opts: &fx.opts,
    }
}

fn e<T>(what: &str, r: strata_core::Result<T>) -> Result<T, String> {
    r.map_err(|err| format!("{what}: {err}"))
}

/// Mounts `spec` on a fresh dir, runs `f` on it, unmounts.
fn mounted<R>(
    fx: &Fixture,
    b: &dyn Backend,
    spec: &RootfsSpec,
    ro: bool,
    f: impl FnOnce(&Path) -> R,
) -> Result<R, String> {
    let d = tempfile::Builder::new()
        .prefix("contract-")
        .tempdir_in(&fx.scratch)
        .unwrap();
    e("mount", b.mount(spec, d.path(), ro))?;
    ensure!(
        strata_core::scratch::is_mount_point(d.path()),
        "mount left no mount at {}",
        d.path().display()
    );
    let r = f(d.path());
    e("umount", b.umount(spec, d.path()))?;
    ensure!(
        !strata_core::scratch::is_mount_point(d.path()),
        "umount left {} mounted",
        d.path().display()
    );
    Ok(r)
}

fn fill(b: &dyn Backend, fx: &Fixture, spec: &RootfsSpec, data: &str) -> Result<(), String> {
    let w = |p: &Path| {
        std::fs::create_dir_all(p.join("etc")).unwrap();
        std::fs::write(p.join("etc/contract"), data).unwrap();
    };
    match b.local_path(spec) {
        Some(p) => {
            w(&p);
            Ok(())
        }
        None => mounted(fx, b, spec, false, w),
    }
}

fn read_back(b: &dyn Backend, fx: &Fixture, spec: &RootfsSpec) -> Result<String, String> {
    let r = |p: &Path| std::fs::read_to_string(p.join("etc/contract")).unwrap_or_default();
    match b.local_path(spec) {
        Some(p) => Ok(r(&p)),
        None => mounted(fx, b, spec, true, r),
    }
}

fn lifecycle(fx: &Fixture, b: &dyn Backend, lx: &Path) -> Result<String, String> {
    let dir = lx.join("t1");
    let t = target(fx, lx, "t1", &dir);
    let spec = e("plan", b.plan(&t, None))?;
    ensure!(!b.exists(&spec), "{spec} exists before create");
    e("create", b.create(&spec, &t))?;
    ensure!(b.exists(&spec), "{spec} missing after create");
    fill(b, fx, &spec, "one\n")?;
    // Mounted, read-only and writable alike, the data is there.
    let ro = mounted(fx, b, &spec, true, |p| {
        let data = std::fs::read_to_string(p.join("etc/contract")).unwrap_or_default();
        let write = std::fs::write(p.join("etc/other"), "x").is_err();
        (data, write)
    })?;
    ensure!(ro == ("one\n".to_string(), true), "read-only mount: {ro:?}");
    mounted(fx, b, &spec, false, |p| {
        std::fs::write(p.join("etc/contract"), "two\n").unwrap()
    })?;
    ensure!(read_back(b, fx, &spec)? == "two\n", "a write through a mount was lost");
    e("destroy", b.destroy(&spec))?;
    ensure!(!b.exists(&spec), "{spec} exists after destroy");
    e("destroy of a destroyed rootfs", b.destroy(&spec))?;
    ensure!(
        crate::attached_under(lx).is_empty(),
        "loop devices left: {:?}",
        crate::attached_under(lx)
    );
    Ok(String::new())
}

/// A rootfs whose create stopped half-way, as a crash leaves it: a
/// directory rootfs (or btrfs subvolume, overlay upper) as a plain dir
/// holding a few files, an image as a short file.
fn half_made(fx: &Fixture, b: &dyn Backend, lx: &Path) -> Result<String, String> {
    let dir = lx.join("t2");
    let t = target(fx, lx, "t2", &dir);
    let spec = e("plan", b.plan(&t, None))?;
    let note;
    if let Some((_, upper)) = spec.overlay_parts() {
        std::fs::create_dir_all(Path::new(upper).join("etc")).unwrap();
        std::fs::write(Path::new(upper).join("etc/x"), "x").unwrap();
        note = "upper only";
    } else if b.caps().block_backed && spec.path().starts_with(lx) {
        std::fs::write(spec.path(), vec![0u8; 4096]).unwrap();
        note = "image without a filesystem";
    } else if spec.path().starts_with(lx) {
        std::fs::create_dir_all(spec.path().join("etc")).unwrap();
        std::fs::write(spec.path().join("etc/x"), "x").unwrap();
        note = "a plain dir with files";
    } else {
        return Ok("skipped: the rootfs is not a file in the lxcpath".into());
    }
    e("destroy of a half-made rootfs", b.destroy(&spec))?;
    ensure!(!b.exists(&spec), "{spec} exists after destroy");
    ensure!(
        !spec.path().exists() || spec.overlay_parts().is_some(),
        "{} left",
        spec.path().display()
    );
    if let Some((_, upper)) = spec.overlay_parts() {
        ensure!(!Path::new(upper).exists(), "{upper} left");
    }
    Ok(note.into())
}

fn never_made(fx: &Fixture, b: &dyn Backend, lx: &Path) -> Result<String, String> {
    let dir = lx.join("t3");
    let t = target(fx, lx, "t3", &dir);
    let spec = e("plan", b.plan(&t, None))?;
    ensure!(!b.exists(&spec), "{spec} exists");
    e("destroy of a rootfs never made", b.destroy(&spec))?;
    Ok(String::new())
}

fn snapshot(fx: &Fixture, b: &dyn Backend, lx: &Path) -> Result<String, String> {
    let Some(s) = b.snapshotter() else {
        ensure!(
            !b.caps().atomic_snapshot,
            "caps say atomic snapshots but there is no snapshotter"
        );
        return Ok("not declared".into());
    };
    let dir = lx.join("t4");
    let t = target(fx, lx, "t4", &dir);
    let src = e("plan", b.plan(&t, None))?;
    e("create", b.create(&src, &t))?;
    fill(b, fx, &src, "src\n")?;
    if !s.can_snapshot(&src) {
        let why = s.refusal(&src).map(|e| e.to_string()).unwrap_or_default();
        e("destroy", b.destroy(&src))?;
        return Ok(format!("cannot snapshot its own rootfs here: {why}"));
    }
    let dir2 = lx.join("t5");
    let t2 = target(fx, lx, "t5", &dir2);
    let snap = e("plan of the snapshot", b.plan(&t2, Some(&src)))?;
    e("snapshot", s.snapshot(&src, &snap, &t2, false))?;
    ensure!(b.exists(&snap), "{snap} missing after snapshot");
    ensure!(
        read_back(b, fx, &snap)? == "src\n",
        "the snapshot lacks the source's data"
    );
    let before = b.local_path(&src).map(|p| tree(&p));
    fill(b, fx, &snap, "changed\n")?;
    ensure!(
        read_back(b, fx, &src)? == "src\n",
        "a write to the snapshot reached the source"
    );
    if let (Some(t0), Some(p)) = (before, b.local_path(&src)) {
        let t1 = tree(&p);
        ensure!(t0 == t1, "the source changed: {:?}", tree_diff(&t0, &t1));
    }
    e("destroy of the snapshot", b.destroy(&snap))?;
    ensure!(!b.exists(&snap), "{snap} exists after destroy");
    ensure!(b.exists(&src), "destroying the snapshot took the source");
    ensure!(read_back(b, fx, &src)? == "src\n", "the source changed");
    e("destroy", b.destroy(&src))?;
    Ok(String::new())
}
