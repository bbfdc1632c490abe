//! State tools under LXC's names: lxc-wait, lxc-freeze, lxc-unfreeze,
//! lxc-cgroup, lxc-monitor; and what lxc-info and lxc-ls share with them
//! (config items as LXC prints them, a running container's network); and
//! the namespace tools lxc-usernsexec and lxc-unshare.

pub mod autostart;
pub mod cgroup;
pub mod checkconfig;
pub mod config;
pub mod config_item;
pub mod console;
pub mod device;
pub mod freeze;
pub mod monitor;
pub mod netinfo;
pub mod nschild;
pub mod top;
pub mod unshare;
pub mod update_config;
pub mod usernsexec;
pub mod wait;
pub mod watch;

use std::ffi::OsString;

/// Run `tool` with `argv` (argv[0] included).
pub fn dispatch(tool: &str, argv: Vec<OsString>) -> anyhow::Result<i32> {
    macro_rules! parse {
        ($t:ty) => {
            match crate::common::parse::<$t>(tool, argv) {
                Ok(a) => a,
                Err(code) => return Ok(code),
            }
        };
    }
    match tool {
        "lxc-config" => config::run(argv),
        "lxc-top" => top::run(parse!(top::Args)),
        "lxc-device" => device::run(parse!(device::Args)),
        "lxc-checkconfig" => checkconfig::run(parse!(checkconfig::Args)),
        "lxc-update-config" => update_config::run(parse!(update_config::Args)),
        "lxc-wait" => wait::run(parse!(wait::Args)),
        "lxc-freeze" => freeze::run(parse!(freeze::Args), true),
        "lxc-unfreeze" => freeze::run(parse!(freeze::Args), false),
        "lxc-cgroup" => cgroup::run(parse!(cgroup::Args)),
        "lxc-monitor" => monitor::run(parse!(monitor::Args)),
        "lxc-autostart" => autostart::run(parse!(autostart::Args)),
        "lxc-usernsexec" => usernsexec::run(parse!(usernsexec::Args)),
        "lxc-unshare" => unshare::run(parse!(unshare::Args)),
        "lxc-console" => console::run(parse!(console::Args)),
        t => anyhow::bail!("{t}: not a state tool"),
    }
}
