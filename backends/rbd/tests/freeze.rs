//! The freeze around a snapshot of an image in use, on a real ext4 on a
//! loop device (an rbd device is a block device like it; the guest tier
//! runs it on rbd): the filesystem is consistent on the device while
//! frozen, writers wait, and everything is thawed and unmounted after,
//! also after a command killed mid-freeze (reconcile's thaw).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;
use strata_core::RootfsSpec;
use strata_rbd::freeze;
use strata_testkit::{mounts_of, need_root, LoopFs};

fn features(dev: &str) -> String {
    let o = std::process::Command::new("dumpe2fs")
        .args(["-h", dev])
        .output()
        .unwrap();
    assert!(o.status.success(), "dumpe2fs: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap_or("")
        .to_string()
}

/// Starts a file write in `dir` on another thread; the receiver hears when it is done.
fn writer(dir: &Path, name: &str) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let p = dir.join(name);
    std::thread::spawn(move || {
        std::fs::write(p, b"after").unwrap();
        let _ = tx.send(());
    });
    rx
}

#[test]
fn frozen_for_the_snapshot_then_thawed() {
    need_root!();
    let run = tempfile::tempdir().unwrap();
    // The only test of this binary: no other thread reads the environment.
    std::env::set_var("STRATA_RUN_DIR", run.path());
    let fs = LoopFs::new("ext4", 64 << 20, None, "");
    let dev = fs.dev().to_string();
    assert!(freeze::in_use(&dev), "a mounted device counts as in use");
    std::fs::write(fs.mnt().join("before"), b"data in the page cache").unwrap();
    // Mounted read-write: the journal needs recovery on the device as it is.
    assert!(features(&dev).contains("needs_recovery"), "{}", features(&dev));
    let spec = RootfsSpec::parse("rbd:/dev/rbd/lxc/t").unwrap();
    let mnt = fs.mnt().to_path_buf();
    let (on_disk, blocked, w) = freeze::frozen(&spec, &dev, "ext4", || {
        let w = writer(&mnt, "during");
        let blocked = w.recv_timeout(Duration::from_millis(700)).is_err();
        Ok((features(&dev), blocked, w))
    })
    .unwrap();
    assert!(
        !on_disk.contains("needs_recovery"),
        "frozen, yet not clean on the device: {on_disk}"
    );
    assert!(blocked, "a write went through while the filesystem was frozen");
    w.recv_timeout(Duration::from_secs(20))
        .expect("still frozen after the snapshot");
    assert_eq!(
        mounts_of(std::slice::from_ref(&dev)),
        std::slice::from_ref(&mnt),
        "the freeze's own mount is left"
    );
    assert_eq!(
        std::fs::read_dir(run.path().join("tmp")).unwrap().count(),
        0,
        "scratch record left"
    );

    // A command killed while frozen: reconcile thaws through the mount it recorded.
    let o = std::process::Command::new("fsfreeze")
        .arg("-f")
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(o.status.success(), "fsfreeze: {}", String::from_utf8_lossy(&o.stderr));
    let w = writer(&mnt, "killed");
    assert!(
        w.recv_timeout(Duration::from_millis(500)).is_err(),
        "fsfreeze did not freeze"
    );
    freeze::thaw(&mnt);
    w.recv_timeout(Duration::from_secs(20)).expect("thaw left it frozen");
    // Thawing one that is not frozen is harmless.
    freeze::thaw(&mnt);
    assert!(!freeze::in_use("/dev/null"));
}
