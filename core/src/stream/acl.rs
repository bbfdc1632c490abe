//! POSIX ACLs between the kernel's xattr form and the text form GNU tar
//! keeps in `SCHILY.acl.access` / `SCHILY.acl.default` (numeric ids), so
//! archives carry ACLs that GNU tar restores, and ACLs of GNU tar's
//! archives are restored here.

use crate::acl::{self, AclEntry, GROUP, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ};

/// `user::rw-,user:1234:rwx,group::r--,mask::rwx,other::r--`, or `None` if malformed.
pub fn to_text(x: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    for AclEntry { tag, perm, id } in acl::parse(x, "read ACL").ok()? {
        let p = format!(
            "{}{}{}",
            if perm & 4 != 0 { 'r' } else { '-' },
            if perm & 2 != 0 { 'w' } else { '-' },
            if perm & 1 != 0 { 'x' } else { '-' }
        );
        out.push(match tag {
            USER_OBJ => format!("user::{p}"),
            USER => format!("user:{id}:{p}"),
            GROUP_OBJ => format!("group::{p}"),
            GROUP => format!("group:{id}:{p}"),
            MASK => format!("mask::{p}"),
            OTHER => format!("other::{p}"),
            _ => return None,
        });
    }
    Some(out.join(","))
}

/// The xattr form of a text ACL with numeric ids (GNU tar's), or `None`
/// if it does not parse (names instead of ids, say).
pub fn from_text(t: &str) -> Option<Vec<u8>> {
    let mut ents: Vec<AclEntry> = Vec::new();
    for item in t.split([',', '\n']) {
        // GNU tar may append `\t#effective:...` comments.
        let item = item.split('#').next()?.trim();
        if item.is_empty() {
            continue;
        }
        let mut f = item.split(':');
        let (tag, q, p) = (f.next()?, f.next()?, f.next()?);
        let id = if q.is_empty() { u32::MAX } else { q.parse::<u32>().ok()? };
        let tag = match (tag, q.is_empty()) {
            ("user" | "u", true) => USER_OBJ,
            ("user" | "u", false) => USER,
            ("group" | "g", true) => GROUP_OBJ,
            ("group" | "g", false) => GROUP,
            ("mask" | "m", _) => MASK,
            ("other" | "o", _) => OTHER,
            _ => return None,
        };
        let mut perm = 0u16;
        for c in p.chars() {
            perm |= match c {
                'r' => 4,
                'w' => 2,
                'x' => 1,
                '-' => 0,
                _ => return None,
            };
        }
        ents.push(AclEntry { tag, perm, id });
    }
    // The kernel wants entries ordered by tag, then id.
    ents.sort();
    Some(acl::encode(&ents))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_gnu_tar_text() {
        let t = "user::rw-,user:1234:rwx,group::r--,group:55:r--,mask::rwx,other::r--";
        let x = from_text(t).unwrap();
        assert_eq!(to_text(&x).unwrap(), t);
        // GNU tar's layout: one per line, comments.
        let g = "user::rw-\nuser:1234:rwx\t#effective:r--\ngroup::r--\nmask::r--\nother::r--\n";
        assert!(from_text(g).is_some());
        assert!(from_text("user:bob:rwx").is_none());
        assert!(to_text(&[1, 2, 3]).is_none());
    }
}
