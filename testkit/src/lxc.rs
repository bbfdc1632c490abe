//! Debian's LXC, run beside strata on the same lxcpath: its tools are called
//! by their full path (strata's lxc-* links shadow the names), always under
//! `timeout`, so that a test comparing the two never hangs on LXC.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where Debian installs LXC's tools.
pub const LXC_BIN: &str = "/usr/bin";

/// Whether LXC is installed; without it a test says so and skips, unless
/// `STRATA_REQUIRE_LXC` is set, which makes its absence a failure.
pub fn have_lxc() -> bool {
    if Path::new(LXC_BIN).join("lxc-start").exists() {
        return true;
    }
    assert!(
        std::env::var_os("STRATA_REQUIRE_LXC").is_none(),
        "LXC is not installed and STRATA_REQUIRE_LXC is set"
    );
    eprintln!("LXC is not installed (/usr/bin/lxc-start): skipped");
    false
}

/// LXC's `tool ARGS` on `lxcpath`, stdin closed, killed after 30 s.
pub fn lxc_cmd(lxcpath: &Path, tool: &str, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.arg("30")
        .arg(Path::new(LXC_BIN).join(tool))
        .arg("-P")
        .arg(lxcpath)
        .args(args)
        .stdin(Stdio::null());
    c
}

/// Run [`lxc_cmd`] to its end.
pub fn lxc(lxcpath: &Path, tool: &str, args: &[&str]) -> Output {
    lxc_cmd(lxcpath, tool, args).output().unwrap()
}

/// Run [`lxc_cmd`], expect success, return its stdout.
pub fn lxc_ok(lxcpath: &Path, tool: &str, args: &[&str]) -> String {
    succeeded(tool, args, &lxc(lxcpath, tool, args))
}

/// The stdout of LXC's `tool ARGS`, which must have succeeded (else the
/// test fails with its status and output).
pub fn succeeded(tool: &str, args: &[&str], o: &Output) -> String {
    assert!(
        o.status.success(),
        "LXC's {tool} {args:?}: {:?}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Kills (LXC's `lxc-stop -k`, which works on both runtimes' containers)
/// the container `name` of `lxcpath` when dropped, whatever the test did.
pub struct LxcStopper(pub PathBuf, pub String);

impl LxcStopper {
    pub fn new(lxcpath: &Path, name: &str) -> LxcStopper {
        LxcStopper(lxcpath.to_path_buf(), name.to_string())
    }
}

impl Drop for LxcStopper {
    fn drop(&mut self) {
        let _ = lxc(&self.0, "lxc-stop", &["-n", &self.1, "-k"]);
    }
}
