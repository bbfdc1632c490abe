//! Mapping an image through the kernel's sysfs interface directly, as `rbd
//! map -o noudev` does after it has found the monitors and the user's key:
//! one write of `MONS name=USER,secret=KEY POOL IMAGE` to
//! `/sys/bus/rbd/add_single_major`. Each process of the rbd tool costs
//! seconds on a slow machine (most of a map's time); the kernel does the
//! same work without one.
//!
//! Only where the ceph config is plain: `/etc/ceph/ceph.conf` with
//! `mon_host` of IP addresses (v1 ones taken from `[v2:...,v1:...]`, the
//! kernel's default messenger being v1) and the user's key in a keyring
//! where the tools look for it. Anything else (no config, `CEPH_CONF` or
//! `CEPH_ARGS` set, host names, no key, auth other than cephx, a failed
//! write) and the caller runs `rbd map`, whose outcome and messages are
//! the tool's own. The key goes to the kernel in a write, never in an argv.
//! The kernel's waits for the cluster are bounded as the tool's are
//! ([`super::Timeouts::kernel`]): its defaults wait 60 s for the monitors
//! and forever for each OSD request, the map's own reads of the image's
//! header among them (a write to `add_single_major` that never returns).

use std::path::{Path, PathBuf};

/// The ceph config the tools read when nothing says otherwise.
pub const CEPH_CONF: &str = "/etc/ceph/ceph.conf";

/// `key = value` pairs of the sections of a ceph config or keyring, keys
/// with `_` for spaces and dashes (as Ceph reads them), in file order.
fn sections(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = vec![(String::new(), Vec::new())];
    for line in text.lines() {
        let l = line.split(['#', ';']).next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            out.push((name.trim().to_string(), Vec::new()));
        } else if let Some((k, v)) = l.split_once('=') {
            let k = k.trim().replace([' ', '-'], "_");
            let v = v.trim().trim_matches('"').to_string();
            if let Some(last) = out.last_mut() {
                last.1.push((k, v));
            }
        }
    }
    out
}

/// The value of `key` for client `user`: its own section, then `client`,
/// then `global` (the last of each wins, as in Ceph).
fn lookup(secs: &[(String, Vec<(String, String)>)], user: &str, key: &str) -> Option<String> {
    let me = format!("client.{user}");
    for want in [me.as_str(), "client", "global", ""] {
        let v = secs
            .iter()
            .filter(|(n, _)| n == want)
            .flat_map(|(_, kv)| kv.iter())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .next_back();
        if v.is_some() {
            return v;
        }
    }
    None
}

/// The kernel's monitor list from `mon_host`: `IP:PORT,...` of the v1
/// addresses (`[v2:A,v1:B]` gives B; a plain `A` or `A:PORT` stands, port
/// 6789 when none). `None` for anything else (a host name, v2 alone).
pub fn mon_addrs(mon_host: &str) -> Option<String> {
    let mut out = Vec::new();
    // Entries are separated by commas or spaces, outside brackets.
    let (mut depth, mut cur, mut items) = (0, String::new(), Vec::new());
    for c in mon_host.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                cur.push(c);
            }
            ',' | ' ' | ';' if depth == 0 => items.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    items.push(cur);
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        let addr = match item.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            Some(list) => list.split(',').find_map(|a| a.trim().strip_prefix("v1:"))?.to_string(),
            None => item.strip_prefix("v1:").unwrap_or(item).to_string(),
        };
        // No nonce (`/0`) for the kernel.
        let addr = addr.split('/').next().unwrap_or("");
        out.push(ip_port(addr)?);
    }
    (!out.is_empty()).then(|| out.join(","))
}

/// `IP:PORT` of an address with or without its port; `None` unless the
/// host part is an IP address.
fn ip_port(a: &str) -> Option<String> {
    if let Ok(sa) = a.parse::<std::net::SocketAddr>() {
        return Some(sa.to_string());
    }
    let ip: std::net::IpAddr = a.trim_matches(['[', ']']).parse().ok()?;
    Some(std::net::SocketAddr::new(ip, 6789).to_string())
}

/// The keyrings the tools look in for `user`, `$cluster` and `$name`
/// filled in: the config's `keyring` if it sets one, else Ceph's defaults.
fn keyrings(secs: &[(String, Vec<(String, String)>)], user: &str) -> Vec<PathBuf> {
    let name = format!("client.{user}");
    let list = lookup(secs, user, "keyring").unwrap_or_else(|| {
        "/etc/ceph/$cluster.$name.keyring,/etc/ceph/$cluster.keyring,/etc/ceph/keyring,/etc/ceph/keyring.bin".into()
    });
    list.split([',', ';', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(p.replace("$cluster", "ceph").replace("$name", &name)))
        .collect()
}

/// The key of `client.USER` in a keyring's text.
pub fn key_in(keyring: &str, user: &str) -> Option<String> {
    let secs = sections(keyring);
    let me = format!("client.{user}");
    secs.iter()
        .filter(|(n, _)| *n == me)
        .flat_map(|(_, kv)| kv.iter())
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.clone())
        .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)))
}

/// What the kernel needs before `POOL IMAGE`: `MONS name=USER,secret=KEY,...`
/// and the timeouts `t`, from the ceph config at `conf`; `None` when it is
/// not plain enough (see the module's text).
pub fn add_options(conf: &Path, user: Option<&str>, t: &super::Timeouts) -> Option<String> {
    if std::env::var_os("CEPH_CONF").is_some() || std::env::var_os("CEPH_ARGS").is_some() {
        return None;
    }
    let secs = sections(&std::fs::read_to_string(conf).ok()?);
    let user = user.unwrap_or("admin");
    if lookup(&secs, user, "auth_client_required").is_some_and(|v| v.trim() != "cephx") {
        return None;
    }
    // Map options the tool would add: its business.
    if lookup(&secs, user, "rbd_default_map_options").is_some() {
        return None;
    }
    let mons = mon_addrs(&lookup(&secs, user, "mon_host")?)?;
    let key = keyrings(&secs, user)
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().and_then(|t| key_in(&t, user)))?;
    Some(format!("{mons} name={user},secret={key},{}", t.kernel()))
}

/// Write `OPTIONS POOL IMAGE` to the bus's add file (`add_single_major`,
/// else `add`) under `bus` (`/sys/bus/rbd`).
pub fn add(bus: &Path, options: &str, pool: &str, image: &str) -> std::io::Result<()> {
    use std::io::Write;
    let single = bus.join("add_single_major");
    let path = if single.exists() { single } else { bus.join("add") };
    // One write(2): the kernel maps the image within it.
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(format!("{options} {pool} {image}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitors_as_the_kernel_takes_them() {
        assert_eq!(
            mon_addrs("[v2:127.0.0.1:3300,v1:127.0.0.1:6789]").as_deref(),
            Some("127.0.0.1:6789")
        );
        assert_eq!(
            mon_addrs("[v2:10.0.0.1:3300/0,v1:10.0.0.1:6789/0],[v2:10.0.0.2:3300/0,v1:10.0.0.2:6789/0]").as_deref(),
            Some("10.0.0.1:6789,10.0.0.2:6789")
        );
        assert_eq!(
            mon_addrs("10.0.0.1, 10.0.0.2:6790").as_deref(),
            Some("10.0.0.1:6789,10.0.0.2:6790")
        );
        assert_eq!(mon_addrs("[::1]:6789").as_deref(), Some("[::1]:6789"));
        // Host names and v2-only monitors: the tool's business.
        assert_eq!(mon_addrs("mon1.example.com"), None);
        assert_eq!(mon_addrs("[v2:127.0.0.1:3300]"), None);
        assert_eq!(mon_addrs(""), None);
    }

    #[test]
    fn options_from_a_plain_config_and_keyring() {
        let t = crate::Timeouts::default();
        let d = tempfile::tempdir().unwrap();
        let kr = d.path().join("strata.keyring");
        std::fs::write(
            &kr,
            "[client.admin]\n\tkey = QUFBQQ==\n[client.strata]\n\tkey = U1RSQVRB\n\tcaps mon = \"profile rbd\"\n",
        )
        .unwrap();
        let conf = d.path().join("ceph.conf");
        std::fs::write(
            &conf,
            format!(
                "[global]\nfsid = x\nmon host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]\nauth_client_required = cephx\n[client]\nkeyring = {}\n",
                kr.display()
            ),
        )
        .unwrap();
        assert_eq!(
            add_options(&conf, Some("strata"), &t).as_deref(),
            Some("127.0.0.1:6789 name=strata,secret=U1RSQVRB,mount_timeout=30,osd_request_timeout=60")
        );
        assert_eq!(
            add_options(&conf, None, &crate::Timeouts::all(7)).as_deref(),
            Some("127.0.0.1:6789 name=admin,secret=QUFBQQ==,mount_timeout=7,osd_request_timeout=7")
        );
        // No key for the user: the tool maps (and says what is missing).
        assert_eq!(add_options(&conf, Some("nobody"), &t), None);
        // Auth other than cephx, no monitors, no config: the tool too.
        std::fs::write(&conf, "[global]\nmon_host = 127.0.0.1\nauth_client_required = none\n").unwrap();
        assert_eq!(add_options(&conf, None, &t), None);
        std::fs::write(&conf, "[global]\nfsid = x\n").unwrap();
        assert_eq!(add_options(&conf, None, &t), None);
        assert_eq!(add_options(&d.path().join("none.conf"), None, &t), None);
    }

    #[test]
    fn the_add_write_is_what_rbd_map_writes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("add_single_major"), "").unwrap();
        add(d.path(), "127.0.0.1:6789 name=admin,secret=QUFBQQ==", "lxc", "c1").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("add_single_major")).unwrap(),
            "127.0.0.1:6789 name=admin,secret=QUFBQQ== lxc c1"
        );
    }
}
