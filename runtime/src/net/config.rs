//! `lxc.net.N.*`: the networks of a container, read and checked as LXC 5
//! reads them, before anything is made.

use super::{Gateway, Kind, MacvlanMode, Net, Netdev};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use strata_core::config::Config;
use strata_core::{err, Result};

const OP: &str = "read network config";

/// The `lxc.net.N.` sub-keys strata honours (every value of each).
pub const HONOURED: &[&str] = &[
    "type",
    "flags",
    "link",
    "name",
    "hwaddr",
    "mtu",
    "macvlan.mode",
    "vlan.id",
    "veth.pair",
    "veth.ipv4.route",
    "veth.ipv6.route",
    "ipv4.address",
    "ipv4.gateway",
    "ipv6.address",
    "ipv6.gateway",
    "script.up",
    "script.down",
];

/// Whether the key `lxc.net.REST` is one the runtime honours.
pub fn key_ok(rest: &str) -> bool {
    let (idx, sub) = rest.split_once('.').unwrap_or((rest, ""));
    if idx.is_empty() || !idx.bytes().all(|b| b.is_ascii_digit()) || idx.parse::<u32>().is_err() {
        return false;
    }
    sub.is_empty() || HONOURED.contains(&sub)
}

/// The raw values of one network, by sub-key (lists keep every value).
#[derive(Default)]
struct Raw(BTreeMap<String, Vec<String>>);

impl Raw {
    fn one(&self, k: &str) -> Option<&str> {
        self.0
            .get(k)
            .and_then(|v| v.last())
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .get(k)
            .map(|v| v.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }
}

/// The sub-keys whose lines add to a list; an empty value clears it (as LXC).
const LISTS: &[&str] = &["ipv4.address", "ipv6.address", "veth.ipv4.route", "veth.ipv6.route"];

/// Read every `lxc.net.N.*` of the (expanded) config, in index order.
pub fn parse(cfg: &Config) -> Result<Net> {
    let mut raw: BTreeMap<u32, Raw> = BTreeMap::new();
    for (k, v) in cfg.entries() {
        if k == "lxc.net" {
            if v.trim().is_empty() {
                raw.clear();
            }
            continue;
        }
        let Some(rest) = k.strip_prefix("lxc.net.") else {
            continue;
        };
        let (idx, sub) = rest.split_once('.').unwrap_or((rest, ""));
        let Ok(i) = idx.parse::<u32>() else {
            return Err(err!(InvalidConfig, OP, "{k}: not a network index"));
        };
        if sub.is_empty() {
            if v.trim().is_empty() {
                raw.remove(&i);
            }
            continue;
        }
        let e = raw.entry(i).or_default().0.entry(sub.to_string()).or_default();
        if LISTS.contains(&sub) {
            if v.trim().is_empty() {
                e.clear();
            } else {
                e.push(v.to_string());
            }
        } else {
            *e = vec![v.to_string()];
        }
    }
    let mut devs = Vec::new();
    let mut host = false;
    for (i, r) in &raw {
        let key = |s: &str| format!("lxc.net.{i}.{s}");
        let Some(ty) = r.one("type") else {
            // LXC refuses a network whose keys come without a type.
            return Err(err!(
                InvalidConfig,
                OP,
                "{}: missing (network {i} has other keys)",
                key("type")
            ));
        };
        let kind = match ty {
            "none" => {
                host = true;
                continue;
            }
            "empty" => Kind::Empty,
            "veth" => Kind::Veth {
                pair: r.one("veth.pair").map(|p| ifname(&key("veth.pair"), p)).transpose()?,
                routes4: r
                    .all("veth.ipv4.route")
                    .into_iter()
                    .map(|a| cidr4(&key("veth.ipv4.route"), a).map(|_| a.to_string()))
                    .collect::<Result<_>>()?,
                routes6: r
                    .all("veth.ipv6.route")
                    .into_iter()
                    .map(|a| cidr6(&key("veth.ipv6.route"), a).map(|_| a.to_string()))
                    .collect::<Result<_>>()?,
            },
            "macvlan" => Kind::Macvlan {
                mode: match r.one("macvlan.mode").unwrap_or("private") {
                    "private" => MacvlanMode::Private,
                    "vepa" => MacvlanMode::Vepa,
                    "bridge" => MacvlanMode::Bridge,
                    "passthru" => MacvlanMode::Passthru,
                    m => {
                        return Err(err!(
                            InvalidConfig,
                            OP,
                            "{} = {m}: expected private, vepa, bridge or passthru",
                            key("macvlan.mode")
                        ))
                    }
                },
            },
            "vlan" => {
                let v = r
                    .one("vlan.id")
                    .ok_or_else(|| err!(InvalidConfig, OP, "{} = vlan needs {}", key("type"), key("vlan.id")))?;
                match v.parse::<u16>() {
                    Ok(id) if id < 4095 => Kind::Vlan { id },
                    _ => return Err(err!(InvalidConfig, OP, "{} = {v}: expected 0 to 4094", key("vlan.id"))),
                }
            }
            "phys" => Kind::Phys,
            t @ ("ipvlan" | "vxlan") => {
                return Err(err!(
                    Unsupported,
                    OP,
                    "{} = {t}: not supported by strata (none, empty, veth, macvlan, vlan, phys)",
                    key("type")
                ))
            }
            t => {
                return Err(err!(
                    InvalidConfig,
                    OP,
                    "{} = {t}: unknown network type (none, empty, veth, macvlan, vlan, phys)",
                    key("type")
                ))
            }
        };
        let link = r.one("link").map(|l| ifname(&key("link"), l)).transpose()?;
        if link.is_none() && matches!(kind, Kind::Macvlan { .. } | Kind::Vlan { .. } | Kind::Phys) {
            return Err(err!(
                InvalidConfig,
                OP,
                "{} = {ty} needs {} (the host interface)",
                key("type"),
                key("link")
            ));
        }
        let up = match r.one("flags") {
            None => false,
            Some("up") => true,
            Some(f) => return Err(err!(InvalidConfig, OP, "{} = {f}: expected up", key("flags"))),
        };
        let mtu = r
            .one("mtu")
            .map(|m| match m.parse::<u32>() {
                Ok(n) if (68..=65535).contains(&n) => Ok(n),
                _ => Err(err!(InvalidConfig, OP, "{} = {m}: expected 68 to 65535", key("mtu"))),
            })
            .transpose()?;
        let hwaddr = r.one("hwaddr").map(|h| hwaddr(&key("hwaddr"), h)).transpose()?;
        let mut ipv4 = Vec::new();
        for a in r.all("ipv4.address") {
            let mut f = a.split_whitespace();
            let addr = f.next().unwrap_or_default();
            cidr4(&key("ipv4.address"), addr)?;
            let bcast = f
                .next()
                .map(|b| {
                    b.parse::<Ipv4Addr>().map(|_| b.to_string()).map_err(|_| {
                        err!(
                            InvalidConfig,
                            OP,
                            "{} = {a}: bad broadcast address",
                            key("ipv4.address")
                        )
                    })
                })
                .transpose()?;
            if f.next().is_some() {
                return Err(err!(
                    InvalidConfig,
                    OP,
                    "{} = {a}: expected ADDRESS/PREFIX [BROADCAST]",
                    key("ipv4.address")
                ));
            }
            ipv4.push((with_prefix(addr, 32), bcast));
        }
        let mut ipv6 = Vec::new();
        for a in r.all("ipv6.address") {
            cidr6(&key("ipv6.address"), a)?;
            ipv6.push(with_prefix(a, 64));
        }
        let gw = |fam: &str| -> Result<Option<Gateway>> {
            let k = key(&format!("{fam}.gateway"));
            let Some(g) = r.one(&format!("{fam}.gateway")) else {
                return Ok(None);
            };
            let g = match g {
                "auto" => {
                    if !matches!(kind, Kind::Veth { .. } | Kind::Macvlan { .. }) || link.is_none() {
                        return Err(err!(
                            InvalidConfig,
                            OP,
                            "{k} = auto: only for veth and macvlan with {}",
                            key("link")
                        ));
                    }
                    Gateway::Auto
                }
                "dev" => Gateway::Dev,
                a => {
                    let ok = if fam == "ipv4" {
                        a.parse::<Ipv4Addr>().is_ok()
                    } else {
                        a.parse::<Ipv6Addr>().is_ok()
                    };
                    if !ok {
                        return Err(err!(InvalidConfig, OP, "{k} = {a}: not an {fam} address, auto or dev"));
                    }
                    Gateway::Addr(a.to_string())
                }
            };
            if !up {
                // LXC: a gateway needs the interface up.
                return Err(err!(InvalidConfig, OP, "{k}: a gateway needs {} = up", key("flags")));
            }
            Ok(Some(g))
        };
        let (ipv4_gw, ipv6_gw) = (gw("ipv4")?, gw("ipv6")?);
        let name = r.one("name").map(|n| ifname(&key("name"), n)).transpose()?;
        devs.push(Netdev {
            index: *i,
            kind,
            link,
            name,
            up,
            hwaddr,
            mtu,
            ipv4,
            ipv4_gw,
            ipv6,
            ipv6_gw,
            script_up: r.one("script.up").map(str::to_string),
            script_down: r.one("script.down").map(str::to_string),
        });
    }
    if host {
        if !devs.is_empty() || raw.len() > 1 {
            return Err(err!(
                InvalidConfig,
                OP,
                "lxc.net.N.type = none shares the host's network: it must be the only network"
            ));
        }
        return Ok(Net::Host);
    }
    name_devices(&mut devs)?;
    Ok(Net::Ns(devs))
}

/// The name each device gets in the container: its `name`, a phys device's
/// own name, else the first free `ethN` (as the kernel's `eth%d` gives).
fn name_devices(devs: &mut [Netdev]) -> Result<()> {
    let mut taken: Vec<String> = devs.iter().filter_map(|d| d.name.clone()).collect();
    for d in devs.iter_mut() {
        if d.name.is_some() || d.kind == Kind::Empty {
            continue;
        }
        let n = match (&d.kind, &d.link) {
            (Kind::Phys, Some(l)) if !taken.contains(l) => l.clone(),
            _ => (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !taken.contains(n))
                .unwrap_or_default(),
        };
        taken.push(n.clone());
        d.name = Some(n);
    }
    let mut seen = Vec::new();
    for d in devs.iter() {
        if let Some(n) = &d.name {
            if n == "lo" || seen.contains(&n) {
                return Err(err!(
                    InvalidConfig,
                    OP,
                    "lxc.net.{}.name = {n}: another interface of the container has that name",
                    d.index
                ));
            }
            seen.push(n);
        }
    }
    Ok(())
}

/// An interface name as the kernel takes it.
fn ifname(key: &str, n: &str) -> Result<String> {
    let ok = !n.is_empty()
        && n.len() < 16
        && n != "."
        && n != ".."
        && n.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !ok {
        return Err(err!(
            InvalidConfig,
            OP,
            "{key} = {n}: not an interface name (1 to 15 characters, no '/' or ':')"
        ));
    }
    Ok(n.to_string())
}

fn split_prefix<'a>(key: &str, a: &'a str, max: u8) -> Result<(&'a str, Option<u8>)> {
    match a.split_once('/') {
        None => Ok((a, None)),
        Some((ip, p)) => match p.parse::<u8>() {
            Ok(n) if n <= max => Ok((ip, Some(n))),
            _ => Err(err!(InvalidConfig, OP, "{key} = {a}: bad prefix length")),
        },
    }
}

fn cidr4(key: &str, a: &str) -> Result<()> {
    let (ip, _) = split_prefix(key, a, 32)?;
    ip.parse::<Ipv4Addr>()
        .map(drop)
        .map_err(|_| err!(InvalidConfig, OP, "{key} = {a}: not an IPv4 address (a.b.c.d/N)"))
}

fn cidr6(key: &str, a: &str) -> Result<()> {
    let (ip, _) = split_prefix(key, a, 128)?;
    ip.parse::<Ipv6Addr>()
        .map(drop)
        .map_err(|_| err!(InvalidConfig, OP, "{key} = {a}: not an IPv6 address (x::y/N)"))
}

/// LXC's default prefix when none is given.
fn with_prefix(a: &str, default: u8) -> String {
    if a.contains('/') {
        a.to_string()
    } else {
        format!("{a}/{default}")
    }
}

/// `aa:bb:cc:dd:ee:ff`, with any `x` still in it replaced by a random hex
/// digit as LXC does (the first byte kept unicast).
fn hwaddr(key: &str, h: &str) -> Result<String> {
    let bad = || err!(InvalidConfig, OP, "{key} = {h}: not a MAC address (xx:xx:xx:xx:xx:xx)");
    let parts: Vec<&str> = h.split(':').collect();
    if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
        return Err(bad());
    }
    const HEX: &[u8] = b"0123456789abcdef";
    let rnd = crate::sys::random_suffix(h.len());
    let mut out = String::new();
    for (i, c) in h.chars().enumerate() {
        if c == 'x' || c == 'X' {
            let r = rnd.as_bytes()[i] as usize;
            // The second digit of the first byte: even, so not multicast.
            out.push(HEX[if i == 1 { r & 0x0e } else { r & 0x0f }] as char);
        } else if c == ':' || c.is_ascii_hexdigit() {
            out.push(c.to_ascii_lowercase());
        } else {
            return Err(bad());
        }
    }
    let first = u8::from_str_radix(&out[..2], 16).map_err(|_| bad())?;
    if first & 1 != 0 {
        return Err(err!(InvalidConfig, OP, "{key} = {h}: a multicast address"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> Result<Net> {
        parse(&Config::parse(t).unwrap())
    }

    #[test]
    fn several_networks_in_index_order() {
        let n = p("lxc.net.10.type = veth\nlxc.net.10.link = br0\n\
                   lxc.net.2.type = macvlan\nlxc.net.2.link = eth9\nlxc.net.2.macvlan.mode = bridge\n\
                   lxc.net.2.ipv4.address = 10.0.0.2/24 10.0.0.255\nlxc.net.2.ipv4.address = 10.0.1.2\n\
                   lxc.net.2.flags = up\nlxc.net.2.ipv4.gateway = 10.0.0.1\n\
                   lxc.net.3.type = vlan\nlxc.net.3.link = eth9\nlxc.net.3.vlan.id = 7\nlxc.net.3.name = v7\n\
                   lxc.net.4.type = phys\nlxc.net.4.link = dummy3\n")
        .unwrap();
        let Net::Ns(d) = n else { panic!() };
        assert_eq!(d.iter().map(|d| d.index).collect::<Vec<_>>(), [2, 3, 4, 10]);
        assert_eq!(
            d[0].kind,
            Kind::Macvlan {
                mode: MacvlanMode::Bridge
            }
        );
        assert_eq!(
            d[0].ipv4,
            vec![
                ("10.0.0.2/24".into(), Some("10.0.0.255".into())),
                ("10.0.1.2/32".into(), None)
            ]
        );
        assert_eq!(d[0].ipv4_gw, Some(Gateway::Addr("10.0.0.1".into())));
        let names: Vec<_> = d.iter().map(|d| d.name.clone().unwrap()).collect();
        assert_eq!(names, ["eth0", "v7", "dummy3", "eth1"]);
    }

    #[test]
    fn clears_and_lists() {
        let n = p(
            "lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 1.2.3.4/8\nlxc.net.0.ipv4.address =\n\
                   lxc.net.1.type = veth\nlxc.net.1 =\n",
        )
        .unwrap();
        let Net::Ns(d) = n else { panic!() };
        assert_eq!(d.len(), 1);
        assert!(d[0].ipv4.is_empty());
        assert_eq!(p("lxc.net.0.type = veth\nlxc.net =\n").unwrap(), Net::Ns(vec![]));
        assert_eq!(p("lxc.net.0.type = none\n").unwrap(), Net::Host);
        assert_eq!(p("").unwrap(), Net::Ns(vec![]));
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        for bad in [
            "lxc.net.0.type = bogus",
            "lxc.net.0.type = ipvlan",
            "lxc.net.0.type = none\nlxc.net.1.type = veth",
            "lxc.net.0.type = macvlan",
            "lxc.net.0.type = vlan\nlxc.net.0.link = x",
            "lxc.net.0.type = vlan\nlxc.net.0.link = x\nlxc.net.0.vlan.id = 5000",
            "lxc.net.0.type = macvlan\nlxc.net.0.link = x\nlxc.net.0.macvlan.mode = nope",
            "lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.0.0.300/24",
            "lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.0.0.3/33",
            "lxc.net.0.type = veth\nlxc.net.0.ipv6.address = 10.0.0.3/64",
            "lxc.net.0.type = veth\nlxc.net.0.ipv4.gateway = 10.0.0.1",
            "lxc.net.0.type = veth\nlxc.net.0.flags = up\nlxc.net.0.ipv4.gateway = nope",
            "lxc.net.0.type = veth\nlxc.net.0.flags = up\nlxc.net.0.ipv4.gateway = auto",
            "lxc.net.0.type = veth\nlxc.net.0.mtu = 12",
            "lxc.net.0.type = veth\nlxc.net.0.hwaddr = 01:00:00:00:00:01",
            "lxc.net.0.type = veth\nlxc.net.0.hwaddr = zz:00:00:00:00:01",
            "lxc.net.0.type = veth\nlxc.net.0.name = a/b",
            "lxc.net.0.type = veth\nlxc.net.0.name = abcdefghijklmnop",
            "lxc.net.0.type = veth\nlxc.net.1.type = veth\nlxc.net.1.name = eth0\nlxc.net.0.name = eth0",
            "lxc.net.0.link = br0",
            "lxc.net.0.type = veth\nlxc.net.0.flags = down",
        ] {
            let e = p(&format!("{bad}\n")).unwrap_err().to_string();
            assert_eq!(e.lines().count(), 1, "{bad}: {e}");
            assert!(e.contains("lxc.net."), "{bad}: {e}");
        }
    }

    #[test]
    fn hwaddr_templates_filled() {
        let n = p("lxc.net.0.type = veth\nlxc.net.0.hwaddr = 0x:16:3e:xx:Xx:00\n").unwrap();
        let Net::Ns(d) = n else { panic!() };
        let h = d[0].hwaddr.clone().unwrap();
        assert!(!h.contains('x') && !h.contains('X') && h.ends_with(":00"), "{h}");
        assert_eq!(u8::from_str_radix(&h[..2], 16).unwrap() & 1, 0, "{h}");
        assert!(h.starts_with('0') && h[3..].starts_with("16:3e:"), "{h}");
    }

    #[test]
    fn keys() {
        assert!(key_ok("0.type") && key_ok("12.ipv4.address") && key_ok("3") && key_ok("0.veth.ipv6.route"));
        assert!(!key_ok("0.l2proxy") && !key_ok("x.type") && !key_ok("0.veth.mode") && !key_ok("0.ipvlan.mode"));
    }
}
