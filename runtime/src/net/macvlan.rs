//! macvlan on the host interface `link`, made straight in the container's
//! namespace (nothing of it ever stands on the host).

use super::ns::ip_host;
use super::{MacvlanMode, Netdev};
use strata_core::Result;

pub(super) fn create(d: &Netdev, mode: MacvlanMode, pid: i32) -> Result<()> {
    let link = d.link.as_deref().unwrap_or_default();
    let (pid_s, mtu) = (pid.to_string(), d.mtu.map(|m| m.to_string()));
    let mut args = vec!["link", "add", "link", link, "name", d.name()];
    if let Some(h) = &d.hwaddr {
        args.extend(["address", h]);
    }
    if let Some(m) = &mtu {
        args.extend(["mtu", m]);
    }
    args.extend(["netns", &pid_s, "type", "macvlan", "mode", mode.as_str()]);
    ip_host(&args).map(drop)
}
