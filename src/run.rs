//! Front ends of the container runtime: lxc-start, lxc-stop, lxc-execute,
//! lxc-attach, lxc-info, lxc-start-ephemeral and `lxc-copy -e`.

use std::ffi::OsString;

/// Run the runtime front end `tool` (e.g. "lxc-start") with its arguments
/// (without argv[0]); returns the exit code.
pub fn dispatch(tool: &str, args: Vec<OsString>) -> anyhow::Result<i32> {
    let _ = args;
    anyhow::bail!("{tool}: not implemented yet")
}
