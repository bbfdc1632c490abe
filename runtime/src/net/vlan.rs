//! 802.1Q vlan `vlan.id` on the host interface `link`, made straight in the
//! container's namespace.

use super::ns::ip_host;
use super::Netdev;
use strata_core::Result;

pub(super) fn create(d: &Netdev, id: u16, pid: i32) -> Result<()> {
    let link = d.link.as_deref().unwrap_or_default();
    let (pid_s, mtu, id) = (pid.to_string(), d.mtu.map(|m| m.to_string()), id.to_string());
    let mut args = vec!["link", "add", "link", link, "name", d.name()];
    if let Some(h) = &d.hwaddr {
        args.extend(["address", h]);
    }
    if let Some(m) = &mtu {
        args.extend(["mtu", m]);
    }
    args.extend(["netns", &pid_s, "type", "vlan", "id", &id]);
    ip_host(&args).map(drop)
}
