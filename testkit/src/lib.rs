//! Fixtures for strata's root-only tests: a real filesystem on a sparse file
//! behind a loop device, torn down on drop even when the test fails, and the
//! command and root checks that go with it. Dev-only: never a normal dependency.

pub mod conformance;
pub mod lxc;
pub mod tree;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs `argv` and returns its stdout; panics with its stderr when it fails.
pub fn sh(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns from the calling test, saying so, unless it runs as root.
#[macro_export]
macro_rules! need_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// Loop devices whose backing file lies under `dir`.
pub fn attached_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim_end()).starts_with(dir) {
                out.push(format!("/dev/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// Mount points (deepest first) whose source is one of `devs`, in this
/// mount namespace.
pub fn mounts_of(devs: &[String]) -> Vec<PathBuf> {
    if devs.is_empty() {
        return Vec::new();
    }
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            let source = tail.split(' ').nth(1)?;
            let mp = head.split(' ').nth(4)?;
            devs.iter()
                .any(|d| d == source)
                .then(|| PathBuf::from(mp.replace("\\040", " ")))
        })
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// Panics unless every loop device backed by a file under `dir` is gone
/// within a second (autoclear detaches after the last close, not at once).
pub fn no_leak(dir: &Path) {
    for _ in 0..100 {
        if attached_under(dir).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("loop devices left attached: {:?}", attached_under(dir));
}

/// A fresh filesystem on a sparse file in its own temporary dir, on a loop
/// device attached for it, mounted at `mnt`. On drop everything below `mnt`
/// is unmounted, the loop devices whose files were on it or in the temporary
/// dir are detached, and the temporary dir goes.
pub struct LoopFs {
    dir: tempfile::TempDir,
    mnt: PathBuf,
    dev: String,
    // Whether `mnt` holds this filesystem: a guard unmounts only its own.
    mounted: Cell<bool>,
}

impl LoopFs {
    /// `kind` is ext4, xfs (with reflinks) or btrfs; `size` in bytes; mounted
    /// at `mount_at` (made if missing) or at `mnt` in the temporary dir, with
    /// `mount_opts` ("" for none).
    pub fn new(kind: &str, size: u64, mount_at: Option<&Path>, mount_opts: &str) -> LoopFs {
        LoopFs::with_mkfs(kind, &[], size, mount_at, mount_opts)
    }

    /// As `new`, with `mkfs_args` added to mkfs's own (e.g. `-O ^has_journal`).
    pub fn with_mkfs(kind: &str, mkfs_args: &[&str], size: u64, mount_at: Option<&Path>, mount_opts: &str) -> LoopFs {
        let mut mkfs = match kind {
            "ext4" => vec!["mkfs.ext4", "-q", "-F"],
            "xfs" => vec!["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
            "btrfs" => vec!["mkfs.btrfs", "-q", "-f"],
            k => panic!("LoopFs: unknown filesystem {k}"),
        };
        mkfs.extend(mkfs_args);
        let dir = tempfile::Builder::new()
            .prefix("strata-fs-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let img = dir.path().join("img");
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        let mnt = mount_at.map_or_else(|| dir.path().join("mnt"), Path::to_path_buf);
        std::fs::create_dir_all(&mnt).unwrap();
        let dev = sh(&["losetup", "--find", "--show", img.to_str().unwrap()])
            .trim()
            .to_string();
        // From here on a failure still detaches the device.
        let fs = LoopFs {
            dir,
            mnt,
            dev,
            mounted: Cell::new(false),
        };
        mkfs.push(&fs.dev);
        sh(&mkfs);
        fs.mount(mount_opts);
        fs
    }

    pub fn mnt(&self) -> &Path {
        &self.mnt
    }

    pub fn dev(&self) -> &str {
        &self.dev
    }

    /// The temporary dir: the image and, unless mounted elsewhere, the mount
    /// point live here; a test may keep scratch files here too.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The backing file.
    pub fn img(&self) -> PathBuf {
        self.dir.path().join("img")
    }

    fn mount(&self, opts: &str) {
        let mut argv = vec!["mount"];
        if !opts.is_empty() {
            argv.extend(["-o", opts]);
        }
        argv.extend([self.dev.as_str(), self.mnt.to_str().unwrap()]);
        sh(&argv);
        self.mounted.set(true);
    }

    /// Unmounts and mounts again with `opts`: a new mount, not a remount,
    /// for options that stay with the superblock (user_subvol_rm_allowed).
    pub fn mount_again(&self, opts: &str) {
        sh(&["umount", self.mnt.to_str().unwrap()]);
        self.mounted.set(false);
        self.mount(opts);
    }

    /// The options of the mount at `mnt`, as the kernel shows them.
    pub fn options(&self) -> Vec<String> {
        let text = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let l = text
            .lines()
            .find(|l| l.split(' ').nth(1) == self.mnt.to_str())
            .unwrap_or_else(|| panic!("{} is not mounted", self.mnt.display()));
        l.split(' ').nth(3).unwrap().split(',').map(String::from).collect()
    }

    /// Loop devices whose backing file lies on this filesystem.
    pub fn attached(&self) -> Vec<String> {
        attached_under(&self.mnt)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Read before the unmount: a lazily unmounted file's path no longer
        // starts with the mount point.
        let mut devs = attached_under(&self.mnt);
        devs.extend(attached_under(self.dir.path()).into_iter().filter(|d| *d != self.dev));
        // Mounts of those devices wherever they are (a test that failed while
        // an image on this filesystem was mounted on a temporary dir of its
        // own): left, they would keep the device, the image and this
        // filesystem alive after the lazy unmount below.
        // Again until none is left (bounded): a mount stacked on the same
        // point (another test's propagation) stays after the first umount,
        // and a read of mountinfo while other test threads mount and unmount
        // can miss a line, so "none" counts only when three reads agree.
        let mut empty = 0;
        for _ in 0..16 {
            let left = mounts_of(&devs);
            if left.is_empty() {
                empty += 1;
                if empty == 3 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
            empty = 0;
            for m in left {
                let _ = Command::new("umount").arg("-l").arg(&m).status();
            }
        }
        if self.mounted.get() {
            let _ = Command::new("umount").arg("-R").arg("-l").arg(&self.mnt).status();
        }
        // Only a device still backed by a file of ours: one that cleared
        // itself when its last mount went may be another test's by now.
        let ours = |d: &str| {
            let f = Path::new("/sys/block")
                .join(d.trim_start_matches("/dev/"))
                .join("loop/backing_file");
            std::fs::read_to_string(f).is_ok_and(|b| {
                let b = Path::new(b.trim_end());
                b.starts_with(&self.mnt) || b.starts_with(self.dir.path())
            })
        };
        for d in devs.iter().filter(|d| ours(d)) {
            let _ = Command::new("losetup").arg("-d").arg(d).status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// Symlinks in `dir` under each of `names`, all to the binary `exe`: the
/// binary under LXC's tool names, as `strata install-links` makes them.
pub fn link_tools<'a>(exe: &Path, dir: &Path, names: impl IntoIterator<Item = &'a str>) {
    for n in names {
        std::os::unix::fs::symlink(exe, dir.join(n)).unwrap_or_else(|e| panic!("link {n}: {e}"));
    }
}

/// Poll `f` every 50 ms until it holds; fail the test naming `what` after 20 s.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    wait_for(what, || if f() { Ok(()) } else { Err(String::new()) })
}

/// Poll `f` every 50 ms until it gives a value; fail the test naming `what`
/// and the last state `f` saw (its `Err`) after 20 s.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => assert!(std::time::Instant::now() < deadline, "timed out: {what} {last}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The exit code of `c` once it exits, or `None` if it still runs after `t`.
pub fn exit_within(c: &mut std::process::Child, t: Duration) -> Option<i32> {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code();
        }
        if start.elapsed() > t {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
