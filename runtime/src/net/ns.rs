//! `ip` run in the container's network namespace: a child of the monitor
//! joins it (and, for a user's container, its user namespace as its root)
//! between fork and exec.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use strata_core::{err, Error, Result};

/// The container's namespaces, held open by the monitor.
pub(super) struct NsFds {
    net: OwnedFd,
    user: Option<OwnedFd>,
}

impl NsFds {
    pub(super) fn open(pid: i32, userns: bool) -> Result<NsFds> {
        let open = |ns: &str| -> Result<OwnedFd> {
            let p = format!("/proc/{pid}/ns/{ns}");
            std::fs::File::open(&p)
                .map(OwnedFd::from)
                .map_err(|e| Error::io("open network namespace", &p, e))
        };
        Ok(NsFds {
            net: open("net")?,
            user: if userns { Some(open("user")?) } else { None },
        })
    }

    /// `ip ARGS` in the namespace; its output.
    pub(super) fn ip(&self, args: &[&str]) -> Result<String> {
        let mut c = ip_command();
        c.args(args).stdin(Stdio::null());
        let net = self.net.as_raw_fd();
        let user = self.user.as_ref().map(|u| u.as_raw_fd());
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if let Some(u) = user {
                    if libc::setns(u, libc::CLONE_NEWUSER) != 0
                        || libc::setresgid(0, 0, 0) != 0
                        || libc::setresuid(0, 0, 0) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::setns(net, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        output(c, args)
    }
}

/// `ip ARGS` in the monitor's namespace; its output.
pub(super) fn ip_host(args: &[&str]) -> Result<String> {
    let mut c = ip_command();
    c.args(args).stdin(Stdio::null());
    output(c, args)
}

/// iproute2's `ip`: from PATH, else where distributions put it (a user's
/// PATH often lacks the sbin dirs).
fn ip_command() -> Command {
    let prog = strata_core::idmap::find_in_path("ip")
        .or_else(|| {
            ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
                .iter()
                .map(std::path::PathBuf::from)
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| "ip".into());
    Command::new(prog)
}

fn output(mut c: Command, args: &[&str]) -> Result<String> {
    let out = c
        .output()
        .map_err(|e| err!(Command, "run", "ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg: Vec<&str> = msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        return Err(err!(Command, "run", "ip {}: {}", args.join(" "), msg.join("; ")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
