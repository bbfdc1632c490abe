//! Helpers for the runtime tests: a scratch lxcpath and run dir, the binary
//! under LXC's names, busybox rootfs, and cleanup of anything left running
//! or mounted even when a test fails.
#![allow(dead_code, clippy::new_without_default)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use strata_testkit::LoopFs;

#[path = "../src/names.rs"]
pub mod names;

pub struct Rt {
    /// The filesystem under the lxcpath, if the test made one: a field before
    /// `tmp`, so that it goes before the dir it is mounted in.
    pub fs: Option<LoopFs>,
    pub tmp: tempfile::TempDir,
    pub bin: PathBuf,
    pub lxcpath: PathBuf,
    pub run_dir: PathBuf,
    /// Host dir for bind sources and escape targets.
    pub outside: PathBuf,
    /// Mounts and loop devices that belong to the test setup, not to a run.
    pub base_mounts: Vec<String>,
    pub base_loops: Vec<String>,
}

impl Rt {
    pub fn new() -> Rt {
        let tmp = tempfile::Builder::new()
            .prefix("strata-rt-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let root = tmp.path().to_path_buf();
        let (bin, lxcpath, run_dir, outside) = (
            root.join("bin"),
            root.join("lxc"),
            root.join("run"),
            root.join("outside"),
        );
        for d in [&bin, &lxcpath, &run_dir, &outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        strata_testkit::link_tools(Path::new(env!("CARGO_BIN_EXE_strata")), &bin, names::all());
        Rt {
            fs: None,
            tmp,
            bin,
            lxcpath,
            run_dir,
            outside,
            base_mounts: vec![],
            base_loops: vec![],
        }
    }

    /// The lxcpath on a fresh `fstype` filesystem (btrfs, xfs) in a loop file.
    pub fn on_fs(fstype: &str) -> Rt {
        let mut rt = Rt::new();
        rt.fs = Some(LoopFs::new(fstype, 512 << 20, Some(&rt.lxcpath), ""));
        rt.base_mounts = rt.mounts();
        rt.base_loops = rt.loops();
        rt
    }

    /// Loop devices backed by files in the scratch area.
    pub fn loops(&self) -> Vec<String> {
        let root = self.tmp.path().display().to_string();
        let mut v = Vec::new();
        for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
            if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
                if b.starts_with(&root) {
                    v.push(format!("{} {}", e.file_name().to_string_lossy(), b.trim()));
                }
            }
        }
        v.sort();
        v
    }

    /// A container with a busybox rootfs and `extra` config lines; /proc
    /// and /sys are mounted as LXC's `lxc.mount.auto` asks (nothing is
    /// mounted without it, as in LXC).
    pub fn container(&self, name: &str, extra: &str) -> PathBuf {
        let dir = self.lxcpath.join(name);
        let rootfs = dir.join("rootfs");
        make_rootfs(&rootfs);
        std::fs::write(
            dir.join("config"),
            format!(
                "lxc.rootfs.path = dir:{}\nlxc.uts.name = {name}\nlxc.mount.auto = proc:mixed sys:ro\n{extra}",
                rootfs.display()
            ),
        )
        .unwrap();
        rootfs
    }

    pub fn cmd(&self, tool: &str, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        c.arg("-P").arg(&self.lxcpath).args(args);
        c.env("STRATA_RUN_DIR", &self.run_dir)
            .env("LXC_GLOBAL_CONF", self.tmp.path().join("lxc.conf"))
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        c
    }

    pub fn run(&self, tool: &str, args: &[&str]) -> Output {
        self.cmd(tool, args).output().unwrap()
    }

    /// Run, expect success, return stdout.
    pub fn ok(&self, tool: &str, args: &[&str]) -> String {
        let o = self.run(tool, args);
        assert!(
            o.status.success(),
            "{tool} {args:?}: {:?}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run, expect failure with a one-line error, return it.
    pub fn fails(&self, tool: &str, args: &[&str]) -> String {
        let o = self.run(tool, args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "{tool} {args:?} succeeded");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{tool} {args:?}: not one line: {err:?}"
        );
        assert!(err.starts_with(&format!("{tool}: ")), "{err:?}");
        err
    }

    pub fn record(&self, name: &str) -> Option<serde_json::Value> {
        let key = self.lxcpath.display().to_string().replace('_', "__").replace('/', "_");
        let p = self.run_dir.join("state").join(key).join(format!("{name}.json"));
        serde_json::from_slice(&std::fs::read(p).ok()?).ok()
    }

    pub fn state(&self, name: &str) -> String {
        self.ok("lxc-info", &["-n", name, "-s", "-H"]).trim().to_string()
    }

    /// Mounts under the scratch area, from the host's view.
    pub fn mounts(&self) -> Vec<String> {
        mounts_below(self.tmp.path())
    }

    /// Names of entries in the lxcpath (containers and leftovers alike).
    pub fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.lxcpath)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Records left in the run dir.
    pub fn records(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.run_dir.join("state")) {
            for d in rd.flatten() {
                for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                    v.push(f.file_name().to_string_lossy().into_owned());
                }
            }
        }
        v
    }

    /// Nothing running, mounted or recorded; `containers` are all that is in the lxcpath.
    pub fn assert_clean(&self, containers: &[&str]) {
        assert_eq!(self.mounts(), self.base_mounts, "mounts left");
        assert_eq!(self.loops(), self.base_loops, "loop devices left");
        assert_eq!(self.records(), Vec::<String>::new(), "run records left");
        assert_eq!(self.entries(), containers, "lxcpath entries");
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        // Kill whatever a failed test left running, then unmount.
        if let Ok(rd) = std::fs::read_dir(self.run_dir.join("state")) {
            for d in rd.flatten() {
                for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
                    if let Ok(v) =
                        serde_json::from_slice::<serde_json::Value>(&std::fs::read(f.path()).unwrap_or_default())
                    {
                        for k in ["monitor_pid", "init_pid"] {
                            if let Some(p) = v[k].as_i64().filter(|p| *p > 1) {
                                // SAFETY: kill takes integers only and touches no memory; the pids come from run
                                // records of this test's own lxcpath (a stale one only gives ESRCH).
                                unsafe { libc::kill(p as i32, libc::SIGKILL) };
                            }
                        }
                    }
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut m = self.mounts();
            if m.is_empty() || Instant::now() > deadline {
                break;
            }
            m.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in m {
                let c = std::ffi::CString::new(p).unwrap();
                // SAFETY: `c` is a NUL-terminated CString alive for the call; umount2 reads nothing else of ours.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// A tiny rootfs: busybox-static and the applets the tests use.
pub fn make_rootfs(r: &Path) {
    for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "mnt", "root"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
    for a in [
        "sh", "true", "false", "hostname", "cat", "ps", "ip", "mount", "sleep", "id", "echo", "ls", "wc", "grep",
        "env", "touch", "kill",
    ] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(a)).unwrap();
    }
    // An init that stops on SIGPWR, as a real one does.
    let init = r.join("sbin/init");
    std::fs::write(&init, "#!/bin/sh\ntrap 'exit 0' PWR\nwhile :; do sleep 0.05; done\n").unwrap();
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(r.join("etc/base-marker"), "base\n").unwrap();
}

/// Lines of `ls -R`-like listing, for "the base was not modified".
pub fn listing(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    strata_testkit::tree::walk(root, |rel, m| {
        if !rel.as_os_str().is_empty() {
            v.push(format!("{} {} {:?}", rel.display(), m.len(), m.file_type()));
        }
    });
    v
}

pub fn pid_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Mount points at or below `root`, from the host's view.
pub fn mounts_below(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&root))
        .collect()
}
