//! veth: one end in the container, the other on the host (on the bridge
//! `link`, if any), as LXC makes it.

use super::ns::{ip_host, NsFds};
use super::{Kind, Netdev};
use std::path::Path;
use strata_core::{err, Result};

/// Make the pair with its container end straight in `pid`'s namespace;
/// the host end is pushed to `made` as soon as it exists.
pub(super) fn create(d: &Netdev, host: &str, pid: i32, made: &mut Vec<String>) -> Result<()> {
    let Kind::Veth { routes4, routes6, .. } = &d.kind else {
        unreachable!("a veth")
    };
    // No mtu given: the bridge's, as LXC.
    let mtu = d.mtu.or_else(|| {
        d.link.as_ref().and_then(|l| {
            std::fs::read_to_string(format!("/sys/class/net/{l}/mtu"))
                .ok()
                .and_then(|m| m.trim().parse().ok())
        })
    });
    let mtu_s = mtu.map(|m| m.to_string());
    let pid_s = pid.to_string();
    let mut args = vec!["link", "add", "name", host];
    if let Some(m) = &mtu_s {
        args.extend(["mtu", m]);
    }
    args.extend(["type", "veth", "peer", "name", d.name()]);
    if let Some(h) = &d.hwaddr {
        args.extend(["address", h]);
    }
    if let Some(m) = &mtu_s {
        args.extend(["mtu", m]);
    }
    args.extend(["netns", &pid_s]);
    ip_host(&args)?;
    made.push(host.to_string());
    // The host end's MAC starts with fe, so that a bridge keeps its own
    // (lower) address whatever ends join it, as LXC does.
    if let Ok(mac) = std::fs::read_to_string(format!("/sys/class/net/{host}/address")) {
        let mac = format!("fe{}", &mac.trim()[2..]);
        ip_host(&["link", "set", "dev", host, "address", &mac])?;
    }
    if let Some(l) = &d.link {
        ip_host(&["link", "set", "dev", host, "master", l])?;
    }
    ip_host(&["link", "set", "dev", host, "up"])?;
    for r in routes4 {
        ip_host(&["-4", "route", "add", r, "dev", host])?;
    }
    for r in routes6 {
        ip_host(&["-6", "route", "add", r, "dev", host])?;
    }
    Ok(())
}

/// A user's veth, through LXC's setuid `lxc-user-nic` (its quotas in
/// /etc/lxc/lxc-usernet): returns the host end's name.
pub(super) fn create_unprivileged(d: &Netdev, lxcpath: &Path, name: &str, pid: i32) -> Result<String> {
    let helper = super::user_nic().ok_or_else(|| err!(Unsupported, "start", "lxc-user-nic is not installed"))?;
    let link = d.link.as_deref().unwrap_or_default();
    let out = std::process::Command::new(&helper)
        .arg("create")
        .arg(lxcpath)
        .arg(name)
        .arg(pid.to_string())
        .arg("veth")
        .arg(link)
        .arg(d.name())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| err!(Command, "start", "{}: {e}", helper.display()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg: Vec<&str> = msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        return Err(err!(
            Command,
            "start",
            "{} = veth: lxc-user-nic refused ({}): {}",
            d.key("type"),
            out.status,
            msg.join("; ")
        ));
    }
    // "CONTAINER_NAME:HOST_NAME:..."
    let text = String::from_utf8_lossy(&out.stdout);
    let host = text
        .trim()
        .split(':')
        .nth(1)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| err!(Command, "start", "lxc-user-nic: unexpected output {:?}", text.trim()))?;
    Ok(host.to_string())
}

/// What lxc-user-nic leaves to the container's side: MAC and MTU.
pub(super) fn configure_inside(d: &Netdev, ns: &NsFds) -> Result<()> {
    if let Some(h) = &d.hwaddr {
        ns.ip(&["link", "set", "dev", d.name(), "address", h])?;
    }
    if let Some(m) = d.mtu {
        ns.ip(&["link", "set", "dev", d.name(), "mtu", &m.to_string()])?;
    }
    Ok(())
}

/// Delete a host end if it is still there (its peer goes with it).
pub(super) fn delete(host: &str) {
    if super::host_has(host) && is_veth(host) {
        if let Err(e) = crate::sys::run("ip", &["link", "del", "dev", host]) {
            // Gone meanwhile with its namespace is fine.
            if super::host_has(host) {
                tracing::warn!("{e}");
            }
        }
    }
}

fn is_veth(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/uevent"))
        .is_ok_and(|_| ip_host(&["-d", "-o", "link", "show", "dev", name]).is_ok_and(|o| o.contains(" veth ")))
}
