//! Device rules (`devices.allow`/`devices.deny` values) and the cgroup2
//! device list LXC builds from them (cgroup2_devices.c).
//!
//! Unprivileged containers get no device rules from strata (and none is an
//! error): their user namespace already refuses mknod, and the devices they
//! can open are the ones bound in from the host.

use std::os::unix::fs::FileTypeExt;
use strata_core::{err, Result};

/// One rule: `TYPE MAJOR:MINOR ACCESS`, `*` for any number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// `a` (any), `b` or `c`.
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Some of `r`, `w`, `m`; empty only in the bare `a` rule.
    pub access: String,
}

fn parse_num(s: &str) -> Option<Option<u32>> {
    if s == "*" {
        return Some(None);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().map(Some)
}

fn parse_access(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 3 || !s.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return None;
    }
    Some(s.to_string())
}

impl DeviceRule {
    /// Parse the value of `key` (`...devices.allow` or `...devices.deny`):
    /// `a`, `c 1:3 rwm`, `b *:* m`, or (allow only) `/dev/PATH rwm`, which
    /// is the device at PATH on the host.
    pub fn parse(key: &str, value: &str) -> Result<DeviceRule> {
        let allow = key.ends_with("devices.allow");
        let bad = || {
            err!(
                InvalidConfig,
                "",
                "{key} = {value}: not a device rule (TYPE MAJOR:MINOR ACCESS, e.g. c 1:3 rwm)"
            )
        };
        let v = value.trim();
        if v == "a" {
            return Ok(DeviceRule {
                allow,
                kind: 'a',
                major: None,
                minor: None,
                access: String::new(),
            });
        }
        if v.starts_with('/') {
            if !allow {
                return Err(bad());
            }
            let mut it = v.split_whitespace();
            let (path, acc) = (it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?);
            let access = parse_access(acc).ok_or_else(bad)?;
            let md = std::fs::metadata(path).map_err(|e| err!(NotFound, "", "{key} = {value}: {path}: {e}"))?;
            let ft = md.file_type();
            let kind = if ft.is_char_device() {
                'c'
            } else if ft.is_block_device() {
                'b'
            } else {
                return Err(err!(InvalidConfig, "", "{key} = {value}: {path} is not a device"));
            };
            use std::os::unix::fs::MetadataExt;
            let rdev = md.rdev();
            return Ok(DeviceRule {
                allow,
                kind,
                major: Some(libc::major(rdev)),
                minor: Some(libc::minor(rdev)),
                access,
            });
        }
        let mut it = v.split_whitespace();
        let kind = match it.next() {
            Some("a") => 'a',
            Some("b") => 'b',
            Some("c") => 'c',
            _ => return Err(bad()),
        };
        let (maj, min) = it.next().and_then(|n| n.split_once(':')).ok_or_else(bad)?;
        let major = parse_num(maj).ok_or_else(bad)?;
        let minor = parse_num(min).ok_or_else(bad)?;
        let access = parse_access(it.next().ok_or_else(bad)?).ok_or_else(bad)?;
        if it.next().is_some() {
            return Err(bad());
        }
        Ok(DeviceRule {
            allow,
            kind,
            major,
            minor,
            access,
        })
    }

    /// The bare `a` rule, which sets the list's default.
    pub fn is_global(&self) -> bool {
        self.kind == 'a' && self.major.is_none() && self.minor.is_none() && self.access.is_empty()
    }

    /// The rule as the v1 devices files take it (`c 1:3 rwm`, `a`).
    pub fn v1_line(&self) -> String {
        if self.is_global() {
            return "a".into();
        }
        let n = |x: Option<u32>| x.map_or("*".to_string(), |v| v.to_string());
        format!("{} {}:{} {}", self.kind, n(self.major), n(self.minor), self.access)
    }
}

/// The cgroup2 device list: a default and the rules that differ from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceList {
    /// Allow what no rule matches (a "denylist"); LXC's default is to deny.
    pub default_allow: bool,
    pub rules: Vec<DeviceRule>,
}

impl DeviceList {
    /// Add a rule as LXC's bpf_list_add_device: the bare `a` rule resets the
    /// list and sets the default; a rule equal to an existing one but for
    /// allow/deny flips it; rules that agree with the default are kept but
    /// left out of the program.
    pub fn add(&mut self, r: DeviceRule) {
        if r.is_global() {
            self.default_allow = r.allow;
            self.rules.clear();
            return;
        }
        if let Some(cur) = self.rules.iter_mut().find(|c| {
            c.kind == r.kind
                && c.major == r.major
                && c.minor == r.minor
                && c.access == r.access
                && c.allow != self.default_allow
        }) {
            cur.allow = r.allow;
            return;
        }
        if self.rules.contains(&r) {
            return;
        }
        self.rules.push(r);
    }

    /// The rules the program checks, in order: those that differ from the default.
    pub fn effective(&self) -> impl Iterator<Item = &DeviceRule> {
        self.rules.iter().filter(move |r| r.allow != self.default_allow)
    }

    /// Build the list from `devices.allow`/`devices.deny` settings.
    pub fn from_settings<'a>(settings: impl IntoIterator<Item = &'a super::Setting>) -> Result<DeviceList> {
        // Each rule is a few instructions of a program the kernel caps at
        // 4096, and a merge with the rules before it: bounded here.
        const MAX_RULES: usize = 1024;
        let mut l = DeviceList::default();
        for (n, s) in settings.into_iter().filter(|s| s.is_device_rule()).enumerate() {
            if n >= MAX_RULES {
                return Err(strata_core::err!(
                    InvalidConfig,
                    "read device rules",
                    "{}: more than {MAX_RULES} device rules",
                    s.key
                ));
            }
            l.add(DeviceRule::parse(&s.key, &s.value)?);
        }
        Ok(l)
    }

    /// Whether the list would let the access through (a model of the
    /// program, used by the tests).
    pub fn allows(&self, kind: char, major: u32, minor: u32, access: char) -> bool {
        for r in self.effective() {
            let hit = (r.kind == 'a' || r.kind == kind)
                && r.major.is_none_or(|m| m == major)
                && r.minor.is_none_or(|m| m == minor)
                && r.access.contains(access);
            if hit {
                return r.allow;
            }
        }
        self.default_allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(k: &str, v: &str) -> DeviceRule {
        DeviceRule::parse(k, v).unwrap()
    }

    #[test]
    fn cgroup_device_rule_parse() {
        let r = rule("lxc.cgroup2.devices.allow", "c 1:3 rwm");
        assert_eq!(
            (r.allow, r.kind, r.major, r.minor, r.access.as_str()),
            (true, 'c', Some(1), Some(3), "rwm")
        );
        let r = rule("lxc.cgroup.devices.deny", "b *:* m");
        assert_eq!((r.allow, r.kind, r.major, r.minor), (false, 'b', None, None));
        assert_eq!(r.v1_line(), "b *:* m");
        assert!(rule("lxc.cgroup.devices.deny", "a").is_global());
        assert!(!rule("lxc.cgroup.devices.deny", "a *:* rwm").is_global());
        let r = rule("lxc.cgroup.devices.allow", "/dev/null rw");
        assert_eq!(r.v1_line(), "c 1:3 rw");
        for bad in [
            "x 1:3 rwm",
            "c 1:3",
            "c 1-3 rwm",
            "c 1:3 rwx",
            "c a:3 r",
            "c 1:3 r extra",
            "",
        ] {
            assert!(DeviceRule::parse("lxc.cgroup.devices.allow", bad).is_err(), "{bad}");
        }
        let e = DeviceRule::parse("lxc.cgroup2.devices.allow", "q")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lxc.cgroup2.devices.allow = q"), "{e}");
    }

    #[test]
    fn cgroup_device_list_semantics() {
        let mut l = DeviceList::default();
        for (k, v) in [
            ("deny", "a"),
            ("allow", "c *:* m"),
            ("allow", "c 1:3 rwm"),
            ("deny", "c 1:5 rwm"), // ignored: the list denies by default
        ] {
            l.add(rule(&format!("devices.{k}"), v));
        }
        assert!(!l.default_allow);
        assert_eq!(l.effective().count(), 2);
        assert!(l.allows('c', 1, 3, 'r'));
        assert!(l.allows('c', 1, 11, 'm'));
        assert!(!l.allows('c', 1, 11, 'r'));
        assert!(!l.allows('b', 8, 0, 'm'));
        // Flip an existing rule.
        l.add(rule("devices.deny", "c 1:3 rwm"));
        assert!(!l.allows('c', 1, 3, 'r'));
        // The global rule resets.
        l.add(rule("devices.allow", "a"));
        assert!(l.default_allow && l.rules.is_empty());
        l.add(rule("devices.deny", "c 1:11 rwm"));
        assert!(!l.allows('c', 1, 11, 'r') && l.allows('c', 1, 3, 'w'));
    }
}
