//! Helpers for the CLI tests: a scratch lxcpath, the binary under LXC's
//! names, a small rootfs, and a snapshot of a whole tree to prove that a
//! refused command changed nothing.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../src/cli/names.rs"]
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
        for t in names::all() {
            std::os::unix::fs::symlink(&exe, bin.join(t)).unwrap();
        }
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

/// One entry of a tree snapshot: everything a byte-for-byte comparison needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub ino: u64,
    pub hash: u64,
    pub link: Option<PathBuf>,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Every path under `root` (included) with type, mode, owner, size, times, content hash, link target.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let md = std::fs::symlink_metadata(p).unwrap();
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block"
    } else {
        "char"
    };
    let mut hash = 0;
    if ft.is_file() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write(&std::fs::read(p).unwrap());
        hash = h.finish();
    }
    let e = Entry {
        kind,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        size: if ft.is_dir() { 0 } else { md.size() },
        mtime: (md.mtime(), md.mtime_nsec()),
        ctime: (md.ctime(), md.ctime_nsec()),
        ino: md.ino(),
        hash,
        link: if ft.is_symlink() {
            Some(std::fs::read_link(p).unwrap())
        } else {
            None
        },
        xattrs: xattrs(p),
    };
    out.insert(p.strip_prefix(root).unwrap().to_path_buf(), e);
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for n in names {
            walk(root, &n, out);
        }
    }
}

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: `buf` is a live 64 KiB buffer and llistxattr writes at most `buf.len()` bytes; `c` is a NUL-
    // terminated CString alive for the call.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if n <= 0 {
        return vec![];
    }
    let mut out = vec![];
    for name in buf[..n as usize].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cn = CString::new(name).unwrap();
        let mut val = vec![0u8; 65536];
        // SAFETY: `val` is a live 64 KiB buffer and lgetxattr writes at most `val.len()` bytes; `c` and `cn` are
        // NUL-terminated CStrings alive for the call.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cn.as_ptr(),
                val.as_mut_ptr() as *mut libc::c_void,
                val.len(),
            )
        };
        val.truncate(m.max(0) as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), val));
    }
    out.sort();
    out
}

/// Assert two tree snapshots are equal, naming the first differences.
pub fn assert_same_tree(what: &str, before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>) {
    if before == after {
        return;
    }
    let mut diffs = vec![];
    for (p, e) in before {
        match after.get(p) {
            None => diffs.push(format!("removed: {}", p.display())),
            Some(a) if a != e => diffs.push(format!("changed: {}: {e:?} -> {a:?}", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("created: {}", p.display()));
    }
    panic!("{what}: the tree changed:\n{}", diffs.join("\n"));
}
