//! Config values rewritten for a new container: paths into the old
//! container dir, and MAC addresses.

use crate::config::Config;

/// Replace `old` with `new` wherever it appears as a whole path prefix.
pub(super) fn replace_dir(v: &str, old: &str, new: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find(old) {
        let after = &rest[i + old.len()..];
        let before_ok = i == 0 || matches!(rest.as_bytes()[i - 1], b' ' | b'\t' | b'=' | b':' | b',' | b'"');
        let after_ok = after.is_empty() || matches!(after.as_bytes()[0], b'/' | b' ' | b'\t' | b':' | b',' | b'"');
        out.push_str(&rest[..i]);
        out.push_str(if before_ok && after_ok { new } else { old });
        rest = after;
    }
    out.push_str(rest);
    out
}

pub(super) fn random_mac() -> String {
    let mut b = [0u8; 3];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// LXC's template MACs (`00:16:3e:xx:xx:xx`): each `x`/`X` a random hex
/// digit, the first octet kept unicast; LXC expands them when it writes a
/// new config, so that the container keeps one address.
pub(super) fn expand_hwaddrs(cfg: &mut Config) {
    cfg.rewrite(|k, v| {
        if !is_hwaddr(k) || !v.contains(['x', 'X']) {
            return None;
        }
        let mut rnd = vec![0u8; v.len()];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            use std::io::Read;
            let _ = f.read_exact(&mut rnd);
        }
        const HEX: &[u8] = b"0123456789abcdef";
        let mut out: Vec<u8> = v
            .bytes()
            .zip(&rnd)
            .map(|(c, r)| {
                if c == b'x' || c == b'X' {
                    HEX[(*r & 15) as usize]
                } else {
                    c
                }
            })
            .collect();
        // The second hex digit of the first octet holds the multicast bit.
        if v.as_bytes().get(1).is_some_and(|c| *c == b'x' || *c == b'X') {
            let d = (out[1] as char).to_digit(16).unwrap_or(0) & !1;
            out[1] = HEX[d as usize];
        }
        Some(String::from_utf8(out).unwrap_or_else(|_| v.to_string()))
    });
}

pub(super) fn is_hwaddr(key: &str) -> bool {
    key.starts_with("lxc.net.") && key.ends_with(".hwaddr")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_macs_expand_once_and_stay_unicast() {
        let mut c = Config::parse(
            "lxc.net.0.hwaddr = 00:16:3e:xx:xx:xx\nlxc.net.1.hwaddr = xx:XX:xx:xx:xx:xx\nlxc.net.2.hwaddr = 00:16:3e:01:02:03\n",
        )
        .unwrap();
        for _ in 0..50 {
            let mut e = c.clone();
            expand_hwaddrs(&mut e);
            let a = e.get("lxc.net.0.hwaddr").unwrap().to_string();
            assert!(a.starts_with("00:16:3e:") && !a.contains('x') && a.len() == 17, "{a}");
            let b = e.get("lxc.net.1.hwaddr").unwrap();
            let first = u8::from_str_radix(&b[..2], 16).unwrap();
            assert_eq!(first & 1, 0, "multicast MAC {b}");
            assert_eq!(e.get("lxc.net.2.hwaddr"), Some("00:16:3e:01:02:03"));
        }
        expand_hwaddrs(&mut c);
        let once = c.get("lxc.net.0.hwaddr").unwrap().to_string();
        expand_hwaddrs(&mut c);
        assert_eq!(c.get("lxc.net.0.hwaddr").unwrap(), once);
    }
    #[test]
    fn replace_dir_only_whole_path_prefixes() {
        let (o, n) = ("/l/c1", "/l/c2");
        assert_eq!(replace_dir("/l/c1/hook.sh", o, n), "/l/c2/hook.sh");
        assert_eq!(replace_dir("/l/c1", o, n), "/l/c2");
        assert_eq!(
            replace_dir("/l/c1/data srv none bind 0 0", o, n),
            "/l/c2/data srv none bind 0 0"
        );
        assert_eq!(
            replace_dir("overlay o lowerdir=/x,upperdir=/l/c1/up,workdir=/l/c1/w", o, n),
            "overlay o lowerdir=/x,upperdir=/l/c2/up,workdir=/l/c2/w"
        );
        assert_eq!(replace_dir("/l/c10/x", o, n), "/l/c10/x");
        assert_eq!(replace_dir("/xl/c1/x", o, n), "/xl/c1/x");
        assert_eq!(replace_dir("/srv/l/c1/x", o, n), "/srv/l/c1/x");
    }
}
