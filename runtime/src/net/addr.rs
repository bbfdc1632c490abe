//! Addresses, the interface's state and gateways, set inside the
//! container's namespace before init goes.

use super::ns::{ip_host, NsFds};
use super::{Gateway, Netdev};
use strata_core::{err, Result};

pub(super) fn configure(d: &Netdev, ns: &NsFds) -> Result<()> {
    let name = d.name();
    if name.is_empty() {
        return Ok(());
    }
    for (a, bcast) in &d.ipv4 {
        ns.ip(&[
            "-4",
            "addr",
            "add",
            a,
            "broadcast",
            bcast.as_deref().unwrap_or("+"),
            "dev",
            name,
        ])?;
    }
    for a in &d.ipv6 {
        ns.ip(&["-6", "addr", "add", a, "dev", name])?;
    }
    if d.up {
        ns.ip(&["link", "set", "dev", name, "up"])?;
    }
    if let Some(g) = &d.ipv4_gw {
        gateway(d, ns, "-4", g)?;
    }
    if let Some(g) = &d.ipv6_gw {
        gateway(d, ns, "-6", g)?;
    }
    Ok(())
}

/// The default route; a gateway outside the addresses' subnets gets a
/// device route to it first, as LXC adds one.
fn gateway(d: &Netdev, ns: &NsFds, fam: &str, g: &Gateway) -> Result<()> {
    let name = d.name();
    let via = match g {
        Gateway::Dev => return ns.ip(&[fam, "route", "add", "default", "dev", name]).map(drop),
        Gateway::Addr(a) => a.clone(),
        Gateway::Auto => link_address(d, fam)?,
    };
    if ns
        .ip(&[fam, "route", "add", "default", "via", &via, "dev", name])
        .is_ok()
    {
        return Ok(());
    }
    ns.ip(&[fam, "route", "add", &via, "dev", name])?;
    ns.ip(&[fam, "route", "add", "default", "via", &via, "dev", name])
        .map(drop)
}

/// `auto`: the first address of the link on the host.
fn link_address(d: &Netdev, fam: &str) -> Result<String> {
    let link = d.link.as_deref().unwrap_or_default();
    let out = ip_host(&["-o", fam, "addr", "show", "dev", link, "scope", "global"])?;
    out.split_whitespace()
        .skip_while(|w| *w != "inet" && *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .ok_or_else(|| {
            let k = if fam == "-4" { "ipv4.gateway" } else { "ipv6.gateway" };
            err!(InvalidConfig, "start", "{} = auto: {link} has no address", d.key(k))
        })
}
