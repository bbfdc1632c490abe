//! POSIX ACL xattrs (`system.posix_acl_access`, `system.posix_acl_default`)
//! in the kernel's form: a version (2), then entries of tag (u16), permission
//! bits (u16) and id (u32), little-endian. The one reader and writer of that
//! form: id shifting (`copy::shift`) and the archive's text form
//! (`stream::acl`) both go through it.

use crate::err;
use crate::error::Result;

const VERSION: u32 = 2;
pub const USER_OBJ: u16 = 0x01;
pub const USER: u16 = 0x02;
pub const GROUP_OBJ: u16 = 0x04;
pub const GROUP: u16 = 0x08;
pub const MASK: u16 = 0x10;
pub const OTHER: u16 = 0x20;

/// One ACL entry; `id` is meaningful for [`USER`] and [`GROUP`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AclEntry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

/// The entries of an ACL xattr, in order; an error (for `op`) if its length
/// or version is not the kernel's.
pub fn parse(x: &[u8], op: &str) -> Result<Vec<AclEntry>> {
    if x.len() < 4 || !(x.len() - 4).is_multiple_of(8) {
        return Err(err!(
            InvalidArgument,
            op,
            "malformed POSIX ACL xattr ({} bytes)",
            x.len()
        ));
    }
    let version = u32::from_le_bytes([x[0], x[1], x[2], x[3]]);
    if version != VERSION {
        return Err(err!(InvalidArgument, op, "unknown POSIX ACL xattr version {version}"));
    }
    Ok(x[4..]
        .chunks_exact(8)
        .map(|e| AclEntry {
            tag: u16::from_le_bytes([e[0], e[1]]),
            perm: u16::from_le_bytes([e[2], e[3]]),
            id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
        })
        .collect())
}

/// The xattr bytes of `entries`, in the order given.
pub fn encode(entries: &[AclEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * entries.len());
    out.extend_from_slice(&VERSION.to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_encode_round_trip_and_refuse_bad_forms() {
        let ents = [
            AclEntry {
                tag: USER_OBJ,
                perm: 6,
                id: u32::MAX,
            },
            AclEntry {
                tag: USER,
                perm: 7,
                id: 1234,
            },
            AclEntry {
                tag: GROUP_OBJ,
                perm: 4,
                id: u32::MAX,
            },
            AclEntry {
                tag: MASK,
                perm: 7,
                id: u32::MAX,
            },
            AclEntry {
                tag: OTHER,
                perm: 4,
                id: u32::MAX,
            },
        ];
        let x = encode(&ents);
        assert_eq!(x.len(), 4 + 8 * ents.len());
        assert_eq!(parse(&x, "t").unwrap(), ents);
        let e = parse(&x[..9], "t").unwrap_err();
        assert_eq!(e.to_string(), "t: malformed POSIX ACL xattr (9 bytes)");
        let mut v1 = x.clone();
        v1[0] = 1;
        let e = parse(&v1, "t").unwrap_err();
        assert_eq!(e.to_string(), "t: unknown POSIX ACL xattr version 1");
    }
}
