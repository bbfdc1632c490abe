//! POSIX ACLs between the kernel's xattr form and the text form GNU tar
//! keeps in `SCHILY.acl.access` / `SCHILY.acl.default` (numeric ids), so
//! archives carry ACLs that GNU tar restores, and ACLs of GNU tar's
//! archives are restored here.

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// `user::rw-,user:1234:rwx,group::r--,mask::rwx,other::r--`, or `None` if malformed.
pub fn to_text(x: &[u8]) -> Option<String> {
    if x.len() < 4 || !(x.len() - 4).is_multiple_of(8) || u32::from_le_bytes(x[0..4].try_into().ok()?) != VERSION {
        return None;
    }
    let mut out = Vec::new();
    for e in x[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes(e[4..8].try_into().ok()?);
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
    let mut ents: Vec<(u16, u16, u32)> = Vec::new();
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
        ents.push((tag, perm, id));
    }
    // The kernel wants entries ordered by tag, then id.
    ents.sort();
    let mut out = VERSION.to_le_bytes().to_vec();
    for (tag, perm, id) in ents {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Some(out)
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
