//! The system-wide settings of `lxc.conf` (`lxc.lxcpath`,
//! `lxc.default_config`, `lxc.bdev.*`, `lxc.cgroup.use`/`pattern`), read
//! as LXC 5 reads them, so that `lxc-config` and every tool see the values
//! LXC's tools see:
//!
//! * the first line naming the key wins (later ones are ignored);
//! * leading blanks, blank lines and `#` comment lines are skipped;
//! * unlike LXC, a line that is not `KEY`, blanks, `=` is an error naming
//!   it: LXC skips it, so a typo (`lxc.lxcpath /srv/lxc`) silently sends
//!   every container to the default lxcpath;
//! * the value is what follows `=` and any blanks, up to the end of the
//!   line, kept as written (trailing blanks and quotes included);
//! * an empty value is a value (it does not bring the default back).

use crate::error::{IoContext, Result};
use crate::paths;
use std::path::Path;

/// The items `lxc-config -l` lists, in LXC's order.
pub const ITEMS: &[&str] = &[
    "lxc.default_config",
    "lxc.lxcpath",
    "lxc.bdev.lvm.vg",
    "lxc.bdev.lvm.thin_pool",
    "lxc.bdev.zfs.root",
    "lxc.cgroup.use",
    "lxc.cgroup.pattern",
];

/// The value of `key` in config text, LXC's way (see the module docs).
pub fn value_in(text: &str, key: &str) -> Option<String> {
    let blank = |c: char| c == ' ' || c == '\t';
    for line in text.lines() {
        let l = line.trim_start_matches(blank);
        if l.starts_with('#') {
            continue;
        }
        let Some(rest) = l.strip_prefix(key) else { continue };
        let Some(v) = rest.trim_start_matches(blank).strip_prefix('=') else {
            continue;
        };
        return Some(v.trim_start_matches(blank).to_string());
    }
    None
}

/// The first line of `text` that is neither blank, a comment nor
/// `KEY = VALUE` (1-based number and text), if any.
pub fn malformed_line(text: &str) -> Option<(usize, &str)> {
    let blank = |c: char| c == ' ' || c == '\t';
    text.lines().enumerate().find_map(|(i, line)| {
        let l = line.trim_start_matches(blank);
        if l.is_empty() || l.starts_with('#') {
            return None;
        }
        let key_len = l
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'))
            .unwrap_or(l.len());
        let ok = key_len > 0 && l[key_len..].trim_start_matches(blank).starts_with('=');
        (!ok).then_some((i + 1, line))
    })
}

/// The value of `key` in the `lxc.conf` at `path`; `None` when the file or
/// the key is not there. A file that cannot be read, or with a line that is
/// not `KEY = VALUE`, is an error.
pub fn value_at(path: &Path, key: &str) -> Result<Option<String>> {
    Ok(text_at(path)?.and_then(|t| value_in(&t, key)))
}

/// The text of the `lxc.conf` at `path`, checked as [`value_at`] checks it
/// (`None` when there is no such file): read once for several keys.
pub fn text_at(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(b) => {
            let text = String::from_utf8_lossy(&b).into_owned();
            if let Some((n, line)) = malformed_line(&text) {
                return Err(crate::err!(
                    InvalidArgument,
                    "read lxc.conf",
                    "line {n} is not KEY = VALUE: {}",
                    line.trim()
                )
                .at(path));
            }
            Ok(Some(text))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx("read", path),
    }
}

/// LXC's default for an item of [`ITEMS`] when lxc.conf does not set it
/// (`None`: not set; LXC prints `KEY is not set.`).
pub fn default(key: &str) -> Option<String> {
    match key {
        "lxc.default_config" => Some(paths::default_conf().display().to_string()),
        "lxc.lxcpath" => Some(paths::builtin_lxcpath().display().to_string()),
        "lxc.bdev.lvm.vg" | "lxc.bdev.lvm.thin_pool" | "lxc.bdev.zfs.root" => Some("lxc".into()),
        _ => None,
    }
}

/// The effective value of `key` for the caller: lxc.conf's, else LXC's default.
pub fn get(key: &str) -> Result<Option<String>> {
    Ok(value_at(&paths::global_conf(), key)?.or_else(|| default(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_as_lxc_reads_it() {
        let t = "garbage line\nlxc.lxcpathx = /nope\nlxc.lxcpath\n# lxc.bdev.lvm.vg = c\n\
                 \tlxc.bdev.lvm.vg\t=\tvg2  # c\nlxc.lxcpath= /p2 \nlxc.lxcpath = /p3\n\
                 lxc.bdev.zfs.root = \nlxc.cgroup.use = 'a b'\n";
        assert_eq!(value_in(t, "lxc.lxcpath").as_deref(), Some("/p2 "));
        assert_eq!(value_in(t, "lxc.bdev.lvm.vg").as_deref(), Some("vg2  # c"));
        assert_eq!(value_in(t, "lxc.bdev.zfs.root").as_deref(), Some(""));
        assert_eq!(value_in(t, "lxc.cgroup.use").as_deref(), Some("'a b'"));
        assert_eq!(value_in(t, "lxc.bdev.lvm.thin_pool"), None);
        assert_eq!(value_in(t, "lxc.cgroup.pattern"), None);
        assert_eq!(malformed_line(t), Some((1, "garbage line")));
        assert_eq!(malformed_line("# c\n\n  lxc.a.b_c = 1\nlxc.x=\n"), None);
        assert_eq!(
            malformed_line("lxc.lxcpath /srv/lxc\n"),
            Some((1, "lxc.lxcpath /srv/lxc"))
        );
    }
}
