//! Rootfs specs exactly as LXC writes `lxc.rootfs.path`: `[TYPE:]SOURCE`.
//!
//! A spec keeps the prefix as written (none, `dir`, `overlayfs`, ...) so that
//! printing it gives back the same string. The backend kind is derived.

use crate::err;
use crate::error::Result;
use std::fmt;
use std::path::{Path, PathBuf};

/// Prefixes LXC knows. `overlayfs` is the older name of `overlay`.
pub const KNOWN_PREFIXES: &[&str] = &[
    "dir",
    "overlay",
    "overlayfs",
    "btrfs",
    "lvm",
    "zfs",
    "loop",
    "rbd",
    "nbd",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RootfsSpec {
    prefix: Option<String>,
    source: String,
}

impl RootfsSpec {
    /// Parse an `lxc.rootfs.path` value.
    pub fn parse(s: &str) -> Result<Self> {
        const OP: &str = "parse rootfs spec";
        if s.is_empty() {
            return Err(err!(InvalidSpec, OP, "empty rootfs spec"));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(err!(InvalidSpec, OP, "rootfs spec {s:?} contains control characters"));
        }
        if s.starts_with('/') {
            return Ok(RootfsSpec {
                prefix: None,
                source: s.to_string(),
            });
        }
        let Some((prefix, source)) = s.split_once(':') else {
            return Err(err!(
                InvalidSpec,
                OP,
                "rootfs spec {s:?} is neither an absolute path nor TYPE:SOURCE"
            ));
        };
        if !KNOWN_PREFIXES.contains(&prefix) {
            return Err(err!(InvalidSpec, OP, "unknown backend {prefix:?} in rootfs spec {s:?}"));
        }
        let spec = RootfsSpec {
            prefix: Some(prefix.to_string()),
            source: source.to_string(),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Build a spec with an explicit kind (`dir`, `overlay`, ...).
    pub fn new(kind: &str, source: impl Into<String>) -> Self {
        RootfsSpec {
            prefix: Some(kind.to_string()),
            source: source.into(),
        }
    }

    /// An overlay spec from its lower and upper.
    pub fn overlay(lower: &str, upper: &Path) -> Self {
        Self::new("overlay", format!("{lower}:{}", upper.display()))
    }

    fn validate(&self) -> Result<()> {
        const OP: &str = "parse rootfs spec";
        let s = self.to_string();
        let src = &self.source;
        match self.kind() {
            "dir" | "btrfs" | "loop" => {
                if !src.starts_with('/') {
                    return Err(err!(InvalidSpec, OP, "{s:?}: path must be absolute"));
                }
            }
            "overlay" => {
                if self.overlay_parts().is_none() {
                    return Err(err!(InvalidSpec, OP, "{s:?}: expected overlay:/lower:/upper"));
                }
            }
            "lvm" => {
                if !src.starts_with("/dev/") {
                    return Err(err!(InvalidSpec, OP, "{s:?}: expected lvm:/dev/VG/LV"));
                }
            }
            "zfs" => {
                if src.is_empty()
                    || src.starts_with('/')
                    || src.ends_with('/')
                    || src.contains('@')
                    || src.contains("//")
                {
                    return Err(err!(InvalidSpec, OP, "{s:?}: expected zfs:POOL/DATASET"));
                }
            }
            _ => {
                if src.is_empty() {
                    return Err(err!(InvalidSpec, OP, "{s:?}: empty source"));
                }
            }
        }
        Ok(())
    }

    /// The backend kind: `dir` for a bare path, `overlay` for `overlayfs`.
    pub fn kind(&self) -> &str {
        match self.prefix.as_deref() {
            None => "dir",
            Some("overlayfs") => "overlay",
            Some(p) => p,
        }
    }

    /// The prefix as written, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// Everything after `TYPE:`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The source as a path (dir, btrfs, loop, lvm device).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.source)
    }

    /// `(lower, upper)` of an overlay spec. The upper is after the last `:/`;
    /// everything before it is the lower (which may itself hold `:`-separated
    /// lowers, as LXC allows).
    pub fn overlay_parts(&self) -> Option<(&str, &str)> {
        if self.kind() != "overlay" {
            return None;
        }
        let idx = self.source.rfind(":/")?;
        let (lower, upper) = (&self.source[..idx], &self.source[idx + 1..]);
        if lower.is_empty() || !lower.starts_with('/') || upper.len() < 2 {
            return None;
        }
        Some((lower, upper))
    }

    /// Replace a leading `from` with `to` in every path this spec holds
    /// (the source, or an overlay's lower and upper). Used to reach a rootfs
    /// that is being built under a staging directory.
    pub fn rebase(&self, from: &Path, to: &Path) -> RootfsSpec {
        let re = |p: &str| -> String {
            match Path::new(p).strip_prefix(from) {
                Ok(rest) if rest.as_os_str().is_empty() => to.display().to_string(),
                Ok(rest) => to.join(rest).display().to_string(),
                Err(_) => p.to_string(),
            }
        };
        let source = match self.overlay_parts() {
            Some((lower, upper)) => {
                let lowers: Vec<String> = lower.split(':').map(re).collect();
                format!("{}:{}", lowers.join(":"), re(upper))
            }
            None if self.source.starts_with('/') => re(&self.source),
            None => self.source.clone(),
        };
        RootfsSpec {
            prefix: self.prefix.clone(),
            source,
        }
    }
}

impl fmt::Display for RootfsSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.prefix {
            Some(p) => write!(f, "{p}:{}", self.source),
            None => write!(f, "{}", self.source),
        }
    }
}

impl std::str::FromStr for RootfsSpec {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn round_trips_every_form() {
        for s in [
            "/var/lib/lxc/c1/rootfs",
            "dir:/var/lib/lxc/c1/rootfs",
            "overlay:/var/lib/lxc/c1/rootfs:/var/lib/lxc/c2/overlay/delta",
            "overlayfs:/var/lib/lxc/c1/rootfs:/var/lib/lxc/c2/delta0",
            "btrfs:/var/lib/lxc/c1/rootfs",
            "lvm:/dev/lxc/c1",
            "zfs:lxc/c1",
            "loop:/var/lib/lxc/c1/rootdev",
        ] {
            let spec = RootfsSpec::parse(s).unwrap();
            assert_eq!(spec.to_string(), s);
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(RootfsSpec::parse("/a").unwrap().kind(), "dir");
        assert_eq!(RootfsSpec::parse("overlayfs:/a:/b").unwrap().kind(), "overlay");
        assert_eq!(RootfsSpec::parse("zfs:p/d").unwrap().kind(), "zfs");
    }

    #[test]
    fn overlay_upper_after_last_colon_slash() {
        let s = RootfsSpec::parse("overlay:/l1:/l2:/up").unwrap();
        assert_eq!(s.overlay_parts(), Some(("/l1:/l2", "/up")));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "foo:/x",
            "relative/path",
            "dir:relative",
            "overlay:/only",
            "lvm:vg/lv",
            "zfs:",
            "zfs:/abs",
            "zfs:p/d@s",
            "/a\n",
        ] {
            let e = RootfsSpec::parse(s).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidSpec, "{s:?}");
        }
    }

    #[test]
    fn rebase_moves_paths_under_staging() {
        let s = RootfsSpec::parse("overlay:/lxc/a/rootfs:/lxc/b/overlay/delta").unwrap();
        let r = s.rebase(Path::new("/lxc/b"), Path::new("/lxc/.tmp-b"));
        assert_eq!(r.to_string(), "overlay:/lxc/a/rootfs:/lxc/.tmp-b/overlay/delta");
        let z = RootfsSpec::parse("zfs:lxc/b").unwrap();
        assert_eq!(z.rebase(Path::new("/lxc/b"), Path::new("/x")), z);
    }
}
