//! One conformance suite for every backend, after containerd's snapshotter
//! test suite: a test file builds a [`Fixture`] (an lxcpath on the right
//! filesystem, the `-B` name, what the backend can do) and calls
//! [`run_all`], which runs every case and panics naming each failure.
//!
//! The cases:
//! - [`contracts`]: the [`strata_core::Backend`] contracts, called directly
//!   (create, exists, mount and umount, destroy of a half-made and of an
//!   already-gone rootfs, snapshot where the capability is declared).
//! - [`flows`]: the engine through the lxc-* front ends (create, copy and
//!   snapshot clones, `lxc-snapshot`, restore in place and to a new name,
//!   destroy with and without dependents, rename).
//! - [`crash`]: every `STRATA_FAILPOINT` site ([`FAILPOINTS`]) on every
//!   operation whose path may pass it; the command dies there, `lxc-ls`
//!   runs, and the lxcpath must hold the state before or after the
//!   operation, with nothing leaked and exact dependency files; then the
//!   operation is retried.
//!
//! Nothing here is specific to the host: the guest tier (LVM thin, zfs)
//! can build a fixture with its `--vgname`/`--zfsroot` arguments in
//! [`Fixture::create_args`] and run the same cases.

pub mod contracts;
pub mod crash;
pub mod flows;
pub mod pool;
pub mod state;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use strata_core::{BackendOpts, Backends};

/// The failpoint sites of the engine (`strata_core::engine::failpoint`).
/// [`failpoints_in_source`] reads them from the code so a new site cannot
/// go unlisted.
pub const FAILPOINTS: &[&str] = &[
    "create-before-rename",
    "clone-after-rootfs",
    "clone-before-rename",
    "rename-after-clone",
    "rename-after-move",
    "restore-after-journal",
    "restore-after-swap-out",
    "restore-after-swap-in",
    "destroy-after-rename",
];

/// Failpoint sites outside the suite's operations, each hit by a test of
/// its own: `frozen` stops a snapshot of a *running* container while it is
/// frozen (tests/cli_running_snapshot.rs kills it there and checks that the
/// next command thaws it), which the suite's stopped containers never reach.
pub const OTHER_FAILPOINTS: &[&str] = &["frozen"];

/// Every `failpoint("NAME")` call in the Rust sources under `dir`.
pub fn failpoints_in_source(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices("failpoint(\"") {
                    let rest = &text[i + "failpoint(\"".len()..];
                    out.push(rest[..rest.find('"').unwrap()].to_string());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The lxc-* names the cases call.
const TOOLS: &[&str] = &[
    "lxc-create",
    "lxc-copy",
    "lxc-clone",
    "lxc-snapshot",
    "lxc-destroy",
    "lxc-ls",
];

/// Where and how to run the suite for one backend.
pub struct Fixture {
    /// For messages: `dir`, `btrfs`, `loop on ext4`, ...
    pub label: String,
    /// The `-B` value for new containers.
    pub backend: String,
    /// Added to every `lxc-create` (`--fssize 64M`, `--vgname vg`, ...).
    pub create_args: Vec<String>,
    /// Options for the direct backend contract cases (the same as
    /// `create_args`, as the engine would pass them).
    pub opts: BackendOpts,
    /// A dir on the filesystem the backend needs; each case makes its own
    /// lxcpath below it.
    pub root: PathBuf,
    /// Links named lxc-* to the strata binary.
    pub bin: PathBuf,
    /// `STRATA_RUN_DIR` for every command (locks, scratch mounts).
    pub run_dir: PathBuf,
    /// Temporary mount points of the suite itself.
    pub scratch: PathBuf,
    /// The tree new containers are made from (`--rootfs-from`).
    pub tree: PathBuf,
    /// `lxc-copy -s` of a container of this backend works.
    pub snapshot: bool,
    /// `lxc-copy -R` works.
    pub rename: bool,
    /// Every backend the binary wires in (a dir container's snapshot
    /// clone is an overlay one).
    pub backends: Backends,
    /// The VG or zfs pool of a guest backend and its volumes when the
    /// fixture was made ([`Fixture::with_pool`]): leaks include its volumes.
    pub pool: Option<(pool::Pool, std::collections::BTreeSet<String>)>,
}

impl Fixture {
    /// A fixture for `backend` whose lxcpaths go under `root` (which must
    /// exist), running the strata binary `strata` under LXC's names.
    pub fn new(label: &str, backend: &str, root: &Path, strata: &Path, backends: Backends) -> Fixture {
        let meta = root.join(".conformance");
        let bin = meta.join("bin");
        let run_dir = meta.join("run");
        let scratch = meta.join("mnt");
        let tree = meta.join("tree");
        for d in [&bin, &run_dir, &scratch] {
            std::fs::create_dir_all(d).unwrap();
        }
        for t in TOOLS {
            let l = bin.join(t);
            if !l.exists() {
                std::os::unix::fs::symlink(strata, l).unwrap();
            }
        }
        if !tree.exists() {
            make_tree(&tree);
        }
        let snapshot = backends
            .get(backend)
            .map(|b| b.snapshotter().is_some() && !b.caps().block_backed)
            .unwrap_or(false)
            || backend == "dir";
        Fixture {
            label: label.to_string(),
            backend: backend.to_string(),
            create_args: Vec::new(),
            opts: BackendOpts::default(),
            root: root.to_path_buf(),
            bin,
            run_dir,
            scratch,
            tree,
            snapshot,
            rename: true,
            backends,
            pool: None,
        }
    }

    /// Volumes of `pool` that no config names, and mounts of them, count
    /// as leaks from now on.
    pub fn with_pool(mut self, pool: pool::Pool) -> Fixture {
        let now = pool.volumes();
        self.pool = Some((pool, now));
        self
    }

    /// A command for one lxc-* tool with the fixture's environment.
    pub fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        c.env("STRATA_RUN_DIR", &self.run_dir)
            .env("LXC_GLOBAL_CONF", self.root.join(".conformance/no-lxc.conf"))
            .env_remove("STRATA_FAILPOINT")
            .env_remove("RUST_LOG");
        c
    }

    /// Runs `tool -P lxcpath args` (`-p` for lxc-clone).
    pub fn run(&self, lxcpath: &Path, tool: &str, args: &[&str], failpoint: Option<&str>) -> Output {
        let mut c = self.cmd(tool);
        c.arg(if tool == "lxc-clone" { "-p" } else { "-P" })
            .arg(lxcpath)
            .args(args);
        if let Some(fp) = failpoint {
            c.env("STRATA_FAILPOINT", fp);
        }
        c.output().unwrap_or_else(|e| panic!("{tool}: {e}"))
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, lxcpath: &Path, tool: &str, args: &[&str]) -> Result<String, String> {
        let o = self.run(lxcpath, tool, args, None);
        if !o.status.success() {
            return Err(format!(
                "{tool} {args:?} failed ({:?}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim_end()
            ));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Runs and insists on a refusal: exit 1 and one line on stderr.
    pub fn refused(&self, lxcpath: &Path, tool: &str, args: &[&str]) -> Result<String, String> {
        let o = self.run(lxcpath, tool, args, None);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        if o.status.code() != Some(1) || err.lines().count() != 1 {
            return Err(format!(
                "{tool} {args:?}: want a one-line refusal, got {:?}: {err:?}",
                o.status
            ));
        }
        Ok(err)
    }

    /// `lxc-create -n NAME` of the fixture's backend from its tree.
    pub fn create(&self, lxcpath: &Path, name: &str) -> Result<(), String> {
        let args = self.create_argv(name);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ok(lxcpath, "lxc-create", &a).map(drop)
    }

    fn create_argv(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = ["-n", name, "-B", &self.backend, "--rootfs-from"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(self.tree.to_str().unwrap().to_string());
        v.extend(self.create_args.iter().cloned());
        v
    }

    /// A fresh lxcpath for one case.
    pub fn lxcpath(&self, case: &str) -> PathBuf {
        let d = tempfile::Builder::new()
            .prefix(&format!("{case}-"))
            .tempdir_in(&self.root)
            .unwrap()
            .keep();
        d.join("lxc")
    }
}

/// A small rootfs: dirs, files with data and modes, a setuid file, a
/// symlink, a hard link, an empty file and `/etc/hostname`.
pub fn make_tree(r: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for d in ["bin", "etc", "tmp", "usr/bin", "var/log", "root"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(r.join("etc/hostname"), "base\n").unwrap();
    std::fs::write(r.join("etc/os-release"), "NAME=strata-conformance\n").unwrap();
    std::fs::write(r.join("root/data"), "original\n").unwrap();
    std::fs::write(r.join("var/log/empty"), "").unwrap();
    let big: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(r.join("usr/bin/blob"), big).unwrap();
    std::fs::write(r.join("bin/tool"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(r.join("bin/tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::hard_link(r.join("bin/tool"), r.join("usr/bin/tool")).unwrap();
    std::os::unix::fs::symlink("/etc/os-release", r.join("usr/os-link")).unwrap();
}

/// What one case came to.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: String,
    /// `Ok(note)` or `Err(what failed)`.
    pub result: Result<String, String>,
}

/// Everything [`run_all`] ran.
#[derive(Debug, Default)]
pub struct Report {
    pub results: Vec<CaseResult>,
    /// When the last case ended: each line says how long its case took.
    last: Option<std::time::Instant>,
}

impl Report {
    pub fn push(&mut self, case: impl Into<String>, result: Result<String, String>) {
        let case = case.into();
        let now = std::time::Instant::now();
        let took = self.last.map_or(0.0, |t| (now - t).as_secs_f64());
        self.last = Some(now);
        match &result {
            Ok(n) => eprintln!(
                "ok   {case}{} [{took:.1}s]",
                if n.is_empty() { String::new() } else { format!(": {n}") }
            ),
            Err(e) => eprintln!("FAIL {case}: {e} [{took:.1}s]"),
        }
        self.results.push(CaseResult { case, result });
    }

    pub fn failures(&self) -> Vec<&CaseResult> {
        self.results.iter().filter(|r| r.result.is_err()).collect()
    }
}

/// Runs every case for `fx` and panics naming each failure.
pub fn run_all(fx: &Fixture) -> Report {
    let mut rep = Report {
        last: Some(std::time::Instant::now()),
        ..Report::default()
    };
    contracts::run(fx, &mut rep);
    flows::run(fx, &mut rep);
    crash::run(fx, &mut rep);
    let failed = rep.failures();
    assert!(
        failed.is_empty(),
        "{}: {} of {} cases failed:\n{}",
        fx.label,
        failed.len(),
        rep.results.len(),
        failed
            .iter()
            .map(|r| format!("{}: {}", r.case, r.result.as_ref().unwrap_err()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    rep
}

/// `Err(format!(...))` unless `cond`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}
