//! Building an LXC config out of another tool's settings, and the value
//! syntaxes those settings share (sizes, CPU counts, times).

use super::Note;
use crate::config::Config;
use crate::err;
use crate::error::Result;

/// The config being built and the notes on what it leaves out.
#[derive(Debug, Default, Clone)]
pub(super) struct Out {
    lines: Vec<String>,
    pub notes: Vec<Note>,
    nets: usize,
    pub limits: Limits,
}

/// Resource limits, written at the end as this host's cgroup keys: a
/// controller on the cgroup2 tree gets `lxc.cgroup2.*`, one on a v1
/// hierarchy (a hybrid host) `lxc.cgroup.*`, as an LXC user there writes them.
#[derive(Debug, Default, Clone)]
pub(super) struct Limits {
    pub memory_max: Option<u64>,
    pub memory_high: Option<u64>,
    /// Swap alone (cgroup2's `memory.swap.max`).
    pub swap_max: Option<u64>,
    pub cpus: Option<String>,
    /// `cpu.max`: quota and period in microseconds.
    pub cpu_max: Option<(u64, u64)>,
    /// cgroup2's `cpu.weight`, v1's `cpu.shares` (Proxmox's cpuunits is both).
    pub cpu_units: Option<u64>,
    pub pids_max: Option<u64>,
    pub devices_allow: Vec<String>,
}

/// Whether `ctrl` is on this host's cgroup2 tree (all of them on a pure
/// cgroup2 host; those listed in `unified/` on a hybrid one).
fn on_cgroup2(ctrl: &str) -> bool {
    let pure = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if pure || ctrl == "devices" {
        return pure;
    }
    std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .is_ok_and(|s| s.split_whitespace().any(|c| c == ctrl))
}

impl Out {
    pub fn set(&mut self, key: &str, value: impl std::fmt::Display) {
        self.lines.push(format!("{key} = {value}"));
    }

    pub fn note(&mut self, key: &str, value: &str, why: &str) {
        self.notes.push(Note {
            key: key.to_string(),
            value: value.to_string(),
            why: why.to_string(),
        });
    }

    /// /proc, /sys and the cgroup tree, as LXC's common.conf mounts them:
    /// Incus and Proxmox give every container these.
    pub fn system_mounts(&mut self) {
        self.set("lxc.mount.auto", "proc:mixed sys:mixed cgroup:mixed");
    }

    /// The index of a new `lxc.net.N`.
    pub fn next_net(&mut self) -> usize {
        self.nets += 1;
        self.nets - 1
    }

    /// Raw `lxc.*` lines (Incus' `raw.lxc`), each checked to be `lxc.KEY = VALUE`.
    pub fn raw(&mut self, from: &str, text: &str) -> Result<()> {
        for l in text.lines() {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            match t.split_once('=') {
                Some((k, _)) if k.trim().starts_with("lxc.") && !k.trim().contains(char::is_whitespace) => {
                    self.lines.push(t.to_string())
                }
                _ => {
                    return Err(err!(
                        InvalidConfig,
                        "import",
                        "{from}: {t:?}: not an `lxc.KEY = VALUE` line"
                    ))
                }
            }
        }
        Ok(())
    }

    /// The config: a header saying where it came from and what it leaves
    /// out (as comments), then the keys.
    pub fn config(&mut self, from: &str) -> Result<Config> {
        self.write_limits();
        let mut text = format!("# Imported from {from} by strata import.\n");
        for n in &self.notes {
            text.push_str(&format!("# not carried: {}\n", n.to_string().replace('\n', " ")));
        }
        for l in &self.lines {
            text.push_str(l);
            text.push('\n');
        }
        Config::parse(&text)
    }
}

impl Out {
    fn write_limits(&mut self) {
        let l = std::mem::take(&mut self.limits);
        let v2 = on_cgroup2("memory");
        if v2 {
            if let Some(m) = l.memory_max {
                self.set("lxc.cgroup2.memory.max", m);
            }
            if let Some(m) = l.memory_high {
                self.set("lxc.cgroup2.memory.high", m);
            }
            if let Some(s) = l.swap_max {
                self.set("lxc.cgroup2.memory.swap.max", s);
            }
        } else {
            if let Some(m) = l.memory_max {
                self.set("lxc.cgroup.memory.limit_in_bytes", m);
            }
            if let Some(m) = l.memory_high {
                self.set("lxc.cgroup.memory.soft_limit_in_bytes", m);
            }
            match (l.swap_max, l.memory_max) {
                // v1 limits memory and swap together.
                (Some(s), Some(m)) => self.set("lxc.cgroup.memory.memsw.limit_in_bytes", m.saturating_add(s)),
                (Some(s), None) => self.note(
                    "swap",
                    &s.to_string(),
                    "cgroup v1 (this host's memory controller) limits swap only together with a memory limit",
                ),
                _ => {}
            }
        }
        let pick = |c: &str| if on_cgroup2(c) { "lxc.cgroup2" } else { "lxc.cgroup" };
        if let Some(c) = l.cpus {
            self.set(&format!("{}.cpuset.cpus", pick("cpuset")), c);
        }
        let cpu = pick("cpu");
        if let Some((q, p)) = l.cpu_max {
            if cpu == "lxc.cgroup2" {
                self.set("lxc.cgroup2.cpu.max", format!("{q} {p}"));
            } else {
                self.set("lxc.cgroup.cpu.cfs_quota_us", q);
                self.set("lxc.cgroup.cpu.cfs_period_us", p);
            }
        }
        if let Some(u) = l.cpu_units {
            let k = if cpu == "lxc.cgroup2" {
                "cpu.weight"
            } else {
                "cpu.shares"
            };
            self.set(&format!("{cpu}.{k}"), u);
        }
        if let Some(n) = l.pids_max {
            self.set(&format!("{}.pids.max", pick("pids")), n);
        }
        for d in l.devices_allow {
            self.set(&format!("{}.devices.allow", pick("devices")), d);
        }
    }
}

/// A byte size as Incus writes one (`256MiB`, `1GB`, `512kB`, `1073741824`):
/// decimal units are powers of 1000, binary ones of 1024.
pub(super) fn bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim_end();
    let unit = s[digits.len()..].trim();
    let n: u64 = digits.parse().ok()?;
    let mul: u64 = match unit {
        "" | "B" => 1,
        "kB" | "KB" | "k" | "K" => 1000,
        "MB" | "M" => 1000_u64.pow(2),
        "GB" | "G" => 1000_u64.pow(3),
        "TB" | "T" => 1000_u64.pow(4),
        "PB" => 1000_u64.pow(5),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "PiB" => 1 << 50,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// The CPUs `0-(n-1)`: the fixed set LXC can pin a container to where the
/// other tool let `n` CPUs float over the host.
pub(super) fn first_cpus(n: u64) -> String {
    if n == 1 {
        "0".into()
    } else {
        format!("0-{}", n - 1)
    }
}

/// A cpuset list (`0-3,6`) as the other tool passes it on.
pub(super) fn is_cpu_list(s: &str) -> bool {
    !s.is_empty()
        && s.split(',').all(|p| {
            let mut it = p.splitn(2, '-');
            it.all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// An RFC 3339 time (`2024-05-01T10:20:30.123Z`, `...+02:00`) as Unix seconds.
pub(super) fn rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (clock, off) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = time.rfind(['+', '-'])?;
        let (c, o) = time.split_at(i);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o[1..].split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    };
    let clock = clock.split('.').next()?;
    let mut c = clock.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (c.next()??, c.next()??, c.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, da) * 86400 + h * 3600 + mi * 60 + se - off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes("256MiB"), Some(256 << 20));
        assert_eq!(bytes("1GB"), Some(1_000_000_000));
        assert_eq!(bytes("4096"), Some(4096));
        assert_eq!(bytes("50%"), None);
        assert_eq!(bytes("lots"), None);
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339("2026-12-02T03:40:59.138797226Z"), Some(1796182859));
        assert_eq!(rfc3339("2026-12-02T05:40:59+02:00"), Some(1796182859));
        assert_eq!(rfc3339("0001-01-01T00:00:00Z").map(|t| t < 0), Some(true));
        assert_eq!(rfc3339("yesterday"), None);
    }

    #[test]
    fn cpus() {
        assert_eq!(first_cpus(1), "0");
        assert_eq!(first_cpus(4), "0-3");
        assert!(is_cpu_list("0-3,6"));
        assert!(!is_cpu_list("2"[..0].as_ref()));
        assert!(!is_cpu_list("0-"));
    }
}
