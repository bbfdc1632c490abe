//! Running tests as the non-root test user (scripts/setup-test-user): a
//! test re-runs itself in its binary as that user, through the CLI under
//! LXC's names, with scratch areas removed even when a run fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const USER: &str = "stratatest";
pub const CHILD: &str = "STRATA_AS_TEST_USER";

pub use strata_testkit::is_root;

pub fn test_user() -> Option<nix::unistd::User> {
    nix::unistd::User::from_name(USER).ok().flatten()
}

/// The root side of a test that switches to the test user: the user, or
/// `None` with the reason printed when the test cannot run here.
pub fn root_side_ready() -> Option<nix::unistd::User> {
    if !is_root() {
        eprintln!("skipped: run as root (the test switches to user {USER})");
        return None;
    }
    let u = test_user();
    if u.is_none() {
        eprintln!("skipped: no user {USER} (run scripts/setup-test-user)");
    }
    u
}

/// Run test `name` of this binary as the test user.
pub fn as_user(name: &str, env: &[(&str, &str)]) -> Output {
    let u = test_user().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.gid))
        .arg("--init-groups")
        .arg("env")
        .arg("-i")
        .arg(format!("HOME={}", u.dir.display()))
        .arg(format!("USER={USER}"))
        .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .arg(format!("{CHILD}=1"));
    for (k, v) in env {
        c.arg(format!("{k}={v}"));
    }
    c.arg(exe).args([name, "--exact", "--nocapture", "--test-threads=1"]);
    c.current_dir("/");
    c.output().unwrap()
}

/// Body runs as the test user; the root side only launches it.
#[allow(unused_macros)]
macro_rules! user_test {
    ($name:ident, $env:expr, $body:block) => {
        #[test]
        fn $name() {
            if std::env::var_os(CHILD).is_some() {
                assert!(!is_root(), "must run as the test user");
                $body
                return;
            }
            if root_side_ready().is_none() {
                return;
            }
            let out = as_user(stringify!($name), $env);
            let so = String::from_utf8_lossy(&out.stdout);
            let se = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "as {USER}:\n{so}\n{se}");
            // The filter must have matched: the child ran exactly one test.
            assert!(so.contains("1 passed"), "as {USER}:\n{so}\n{se}");
        }
    };
}

pub fn own_ids() -> (u32, u32) {
    (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw())
}

/// The user's scratch dir in its home: on drop, whatever a failed run left
/// running is killed and the dir removed (as root).
pub struct UserArea(pub PathBuf);

impl Drop for UserArea {
    fn drop(&mut self) {
        for f in walk_files(&self.0.join("run/state")) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&f).unwrap_or_default()) {
                for k in ["init_pid", "monitor_pid"] {
                    if let Some(pid) = v[k].as_i64().filter(|p| *p > 0) {
                        // SAFETY: kill takes integers only and touches no memory; the pids come from run records of
                        // this test's own run dir.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    }
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn walk_files(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Run as the test user: expect success, return stdout.
pub fn ok(bin: &Path, tool: &str, args: &[&str]) -> String {
    let o = tool_output(bin, tool, args);
    assert!(
        o.status.success(),
        "{tool} {args:?}: {:?}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn tool_output(bin: &Path, tool: &str, args: &[&str]) -> Output {
    Command::new(bin.join(tool))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Stdout of a run that may fail (a container not there yet).
pub fn try_ok(bin: &Path, tool: &str, args: &[&str]) -> Option<String> {
    let o = tool_output(bin, tool, args);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[allow(unused_imports)]
pub use strata_testkit::wait_until;

/// A scratch dir removed even when a failed test leaves files of the
/// container's root in it (removed with the user's ids mapped, as strata does).
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = strata_core::engine::fsutil::remove_tree(self.0.path());
    }
}

pub fn scratch() -> Scratch {
    Scratch(tempfile::tempdir().unwrap())
}

/// Symlinks under LXC's names to the binary, in `dir/bin`.
pub fn tool_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let names = super::helpers::names::all().chain(["strata"]);
    strata_testkit::link_tools(Path::new(env!("CARGO_BIN_EXE_strata")), &bin, names);
    bin
}

/// A failed run: exit status 1 and one line `TOOL: ...` on stderr, returned.
pub fn one_line_failure(o: &Output, tool: &str, args: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{tool} {args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{tool} {args:?}: {err:?}");
    assert!(err.starts_with(&format!("{tool}: ")), "{err:?}");
    err
}
