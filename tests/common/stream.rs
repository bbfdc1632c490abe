//! Helpers of the stream tests (send/receive, export/import, refresh).

use super::Env;
use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};

/// `strata ARGS` (stdin from `input`) succeeds; returns its stdout.
pub fn ok(env: &Env, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let o = env.strata_with_input(args, input);
    assert!(
        o.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Exit 1 with one line; returns it.
pub fn fails(env: &Env, args: &[&str], input: Option<&[u8]>) -> String {
    let o = env.strata_with_input(args, input);
    super::check_failure("strata", args, &o)
}

/// The special tree, with busybox as `bin/sh` where the host has it.
pub fn busybox_tree(src: &Path) {
    super::special::special_tree(src);
    if Path::new("/bin/busybox").is_file() {
        std::fs::copy("/bin/busybox", src.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", src.join("bin/sh")).unwrap();
    }
}

/// `lxc-snapshot -L -C` of a container, its dir written as `DIR`.
pub fn snapshot_listing(env: &Env, name: &str) -> String {
    env.ok("lxc-snapshot", &["-n", name, "-L", "-C"])
        .replace(&format!("{}/", env.c(name).display()), "DIR/")
}

/// Names of a stream's (or archive's) entries, as GNU tar lists them.
pub fn archive_listing(stream: &[u8]) -> String {
    let mut t = std::process::Command::new("tar")
        .args(["--zstd", "-tf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tin = t.stdin.take().unwrap();
    let data = stream.to_vec();
    let th = std::thread::spawn(move || tin.write_all(&data));
    let out = String::from_utf8(t.wait_with_output().unwrap().stdout).unwrap();
    th.join().unwrap().unwrap();
    out
}

/// `strata receive -P LXCPATH ARGS`, fed through the returned stdin.
pub fn spawn_receive(env: &Env, args: &[&str]) -> (Child, ChildStdin) {
    let mut c = env.cmd("strata");
    c.args(["receive", "-P"]).arg(&env.lxcpath).args(args);
    let mut ch = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = ch.stdin.take().unwrap();
    (ch, stdin)
}
