//! Container and snapshot names.

use crate::err;
use crate::error::Result;

/// LXC limits a container name so that `$lxcpath/NAME/config` and its socket
/// paths fit; names longer than this are refused.
pub const MAX_NAME_LEN: usize = 253;

/// Check a container name. Refuses what LXC 5 wrongly accepts (`..`, names
/// with `/`) so that nothing can be made outside the lxcpath.
pub fn validate(name: &str) -> Result<()> {
    const OP: &str = "check name";
    if name.is_empty() {
        return Err(err!(InvalidName, OP, "empty container name"));
    }
    if name == "." || name == ".." {
        return Err(err!(InvalidName, OP, "invalid container name {name:?}"));
    }
    if name.contains('/') {
        return Err(err!(InvalidName, OP, "invalid container name {name:?}: contains '/'"));
    }
    if name.starts_with('-') {
        return Err(err!(
            InvalidName,
            OP,
            "invalid container name {name:?}: starts with '-'"
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(err!(
            InvalidName,
            OP,
            "invalid container name {name:?}: contains control characters"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(err!(
            InvalidName,
            OP,
            "container name is {} bytes long, at most {MAX_NAME_LEN} allowed",
            name.len()
        ));
    }
    if name.starts_with(".strata") {
        return Err(err!(
            InvalidName,
            OP,
            "invalid container name {name:?}: reserved prefix"
        ));
    }
    Ok(())
}

/// Check a snapshot name as given to `-r`/`-d`: `snapN`.
pub fn validate_snapshot(name: &str) -> Result<u32> {
    name.strip_prefix("snap")
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && n.len() < 10)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            err!(
                InvalidName,
                "check snapshot name",
                "invalid snapshot name {name:?}: expected snapN"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for n in ["", ".", "..", "a/b", "../x", "-x", "a\nb", "a\tb", long.as_str()] {
            assert!(validate(n).is_err(), "{n:?}");
        }
    }

    #[test]
    fn accepts_ordinary_names() {
        for n in ["c1", "web-01", "a.b", "x_y", "..a", "C"] {
            validate(n).unwrap();
        }
    }

    #[test]
    fn snapshot_names() {
        assert_eq!(validate_snapshot("snap0").unwrap(), 0);
        assert_eq!(validate_snapshot("snap12").unwrap(), 12);
        for n in ["snap", "snapx", "snap-1", "../snap0", "snap0/"] {
            assert!(validate_snapshot(n).is_err(), "{n:?}");
        }
    }
}
