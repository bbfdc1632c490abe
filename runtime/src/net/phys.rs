//! phys: a host interface lent to the container and given back at stop
//! under its own name and MTU, as LXC does.

use super::ns::{ip_host, NsFds};
use super::{Lent, Netdev};
use strata_core::Result;

/// Move `link` into `pid`'s namespace under the container's name for it.
pub(super) fn lend(d: &Netdev, pid: i32, ns: &NsFds) -> Result<Lent> {
    let link = d.link.clone().unwrap_or_default();
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{link}/mtu"))
        .ok()
        .and_then(|m| m.trim().parse().ok());
    ip_host(&["link", "set", "dev", &link, "netns", &pid.to_string(), "name", d.name()])?;
    let lent = Lent {
        host: link,
        inside: d.name().to_string(),
        mtu,
    };
    let inside = || -> Result<()> {
        if let Some(h) = &d.hwaddr {
            ns.ip(&["link", "set", "dev", d.name(), "address", h])?;
        }
        if let Some(m) = d.mtu {
            ns.ip(&["link", "set", "dev", d.name(), "mtu", &m.to_string()])?;
        }
        Ok(())
    };
    if let Err(e) = inside() {
        let _ = give_back(&lent, ns);
        return Err(e);
    }
    Ok(lent)
}

/// Back to the monitor's namespace, down, with its own name and MTU.
pub(super) fn give_back(l: &Lent, ns: &NsFds) -> Result<()> {
    let _ = ns.ip(&["link", "set", "dev", &l.inside, "down"]);
    if let Some(m) = l.mtu {
        let _ = ns.ip(&["link", "set", "dev", &l.inside, "mtu", &m.to_string()]);
    }
    let me = std::process::id().to_string();
    ns.ip(&["link", "set", "dev", &l.inside, "netns", &me, "name", &l.host])
        .map(drop)
}

/// The ifindex of a host interface.
pub(super) fn ifindex(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// When a namespace goes, the kernel hands a physical interface back to
/// the host under the name it had inside (virtual ones are deleted), a
/// moment later: find it by its ifindex and rename it to `name`. Only a
/// device backed by hardware, and only if `name` is free.
pub(super) fn rename_returned(name: &str, index: u32) {
    if super::host_has(name) {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        let found = std::fs::read_dir("/sys/class/net").ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| ifindex(n) == Some(index))
        });
        if let Some(cur) = found {
            if std::path::Path::new("/sys/class/net")
                .join(&cur)
                .join("device")
                .exists()
            {
                if let Err(e) = ip_host(&["link", "set", "dev", &cur, "name", name]) {
                    tracing::warn!("give {cur} back its name {name}: {e}");
                }
            }
            return;
        }
        if std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
