//! Helpers for the CLI tests: a scratch lxcpath, the binary under LXC's
//! names, a small rootfs, and a snapshot of a whole tree to prove that a
//! refused command changed nothing.
#![allow(dead_code)]

pub mod special;
pub mod stream;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../src/names.rs"]
pub mod names;

pub struct Env {
    pub tmp: tempfile::TempDir,
    /// Symlinks lxc-* -> the strata binary.
    pub bin: PathBuf,
    /// The parent of the lxcpath: nothing may appear here.
    pub area: PathBuf,
    pub lxcpath: PathBuf,
    /// Inputs (rootfs sources, templates, comment files) live here.
    pub src: PathBuf,
    pub run_dir: PathBuf,
    pub templates: PathBuf,
    pub conf: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("strata-cli-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let root = tmp.path().to_path_buf();
        let bin = root.join("bin");
        let area = root.join("area");
        let lxcpath = area.join("lxc");
        let src = root.join("src");
        let run_dir = root.join("run");
        let templates = root.join("templates");
        for d in [&bin, &area, &lxcpath, &src, &run_dir, &templates] {
            std::fs::create_dir_all(d).unwrap();
        }
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_strata"));
        strata_testkit::link_tools(&exe, &bin, names::all());
        // No lxc.conf unless a test writes one.
        let conf = root.join("lxc.conf");
        Env {
            tmp,
            bin,
            area,
            lxcpath,
            src,
            run_dir,
            templates,
            conf,
        }
    }

    pub fn cmd(&self, tool: &str) -> Command {
        let prog = if tool == "strata" {
            PathBuf::from(env!("CARGO_BIN_EXE_strata"))
        } else {
            self.bin.join(tool)
        };
        let mut c = Command::new(prog);
        c.env("LXC_GLOBAL_CONF", &self.conf)
            .env("STRATA_RUN_DIR", &self.run_dir)
            .env("STRATA_TEMPLATE_DIR", &self.templates)
            .env_remove("RUST_LOG");
        c
    }

    /// Run `tool` with `-P lxcpath` first (for the strata subcommands after the subcommand).
    pub fn run(&self, tool: &str, args: &[&str]) -> Output {
        let mut c = self.cmd(tool);
        if tool == "strata" {
            c.arg(args[0]).arg("-P").arg(&self.lxcpath).args(&args[1..]);
        } else if tool == "lxc-clone" {
            c.arg("-p").arg(&self.lxcpath).args(args);
        } else {
            c.arg("-P").arg(&self.lxcpath).args(args);
        }
        c.output().unwrap()
    }

    /// `strata SUBCOMMAND -P lxcpath ARGS...` with `input` on its stdin (a
    /// stream to receive), its stdout and stderr captured.
    pub fn strata_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        use std::io::Write;
        use std::process::Stdio;
        let mut c = self.cmd("strata");
        c.arg(args[0]).arg("-P").arg(&self.lxcpath).args(&args[1..]);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut ch = c.spawn().unwrap();
        let mut stdin = ch.stdin.take().unwrap();
        let data = input.map(|d| d.to_vec());
        let feeder = std::thread::spawn(move || {
            if let Some(d) = data {
                let _ = stdin.write_all(&d);
            }
        });
        let o = ch.wait_with_output().unwrap();
        feeder.join().unwrap();
        o
    }

    /// Run and insist on success; returns stdout.
    pub fn ok(&self, tool: &str, args: &[&str]) -> String {
        let o = self.run(tool, args);
        assert!(
            o.status.success(),
            "{tool} {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Run and insist on failure with exactly one line on stderr, prefixed by the tool name; returns it.
    pub fn fails(&self, tool: &str, args: &[&str]) -> String {
        let o = self.run(tool, args);
        check_failure(tool, args, &o)
    }

    pub fn c(&self, name: &str) -> PathBuf {
        self.lxcpath.join(name)
    }

    pub fn config(&self, name: &str) -> String {
        std::fs::read_to_string(self.c(name).join("config")).unwrap()
    }

    /// The value of `key` in a container's config (last one wins).
    pub fn config_get(&self, name: &str, key: &str) -> Option<String> {
        config_value(&self.config(name), key)
    }

    /// A small rootfs under src/NAME.
    pub fn rootfs(&self, name: &str) -> PathBuf {
        let r = self.src.join(name);
        make_rootfs(&r);
        r
    }

    /// A dir container made from a small rootfs.
    pub fn make_container(&self, name: &str) {
        let r = self.src.join(format!("rootfs-{name}"));
        if !r.exists() {
            make_rootfs(&r);
        }
        self.ok("lxc-create", &["-n", name, "--rootfs-from", r.to_str().unwrap()]);
    }
}

pub fn check_failure(tool: &str, args: &[&str], o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{tool} {args:?} succeeded; stderr: {stderr}");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{tool} {args:?}: exit status; stderr: {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{tool} {args:?}: stderr must be exactly one line, got: {stderr:?}"
    );
    assert!(stderr.ends_with('\n'), "{tool} {args:?}: {stderr:?}");
    let prefix = if tool == "strata" { "strata: " } else { tool };
    assert!(stderr.starts_with(prefix), "{tool} {args:?}: {stderr:?}");
    stderr.trim_end().to_string()
}

pub fn config_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .rev()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
}

/// A few dirs, /etc/hostname, a regular file, a symlink, and busybox if the host has it.
pub fn make_rootfs(r: &Path) {
    for d in ["bin", "etc", "tmp", "usr/bin", "var/log", "root"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(r.join("etc/hostname"), "base\n").unwrap();
    std::fs::write(r.join("etc/os-release"), "NAME=strata-test\n").unwrap();
    std::fs::write(r.join("root/data"), "original\n").unwrap();
    std::os::unix::fs::symlink("/etc/os-release", r.join("usr/os-link")).unwrap();
    if Path::new("/bin/busybox").is_file() {
        std::fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", r.join("bin/sh")).unwrap();
    }
}

#[allow(unused_imports)]
pub use strata_testkit::tree::{assert_same_tree, tree, Entry};
