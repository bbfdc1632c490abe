//! Id shifting for unprivileged clones: owners, POSIX ACL xattrs and file
//! capability xattrs. Public so an in-place converter can reuse them.

use crate::acl;
use crate::err;
use crate::error::Result;
use crate::idmap::IdShift;

const VFS_CAP_REVISION_MASK: u32 = 0xFF00_0000;
const VFS_CAP_REVISION_1: u32 = 0x0100_0000;
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_FLAGS_MASK: u32 = 0x00FF_FFFF;

fn map(ranges: &[(u32, u32, u32)], id: u32) -> Option<u32> {
    // An empty list leaves that kind of id unchanged.
    if ranges.is_empty() {
        return Some(id);
    }
    ranges
        .iter()
        .find(|&&(inside, _, count)| id >= inside && (id - inside) < count)
        .map(|&(inside, outside, _)| outside + (id - inside))
}

impl IdShift {
    /// The host uid for `uid`, or `None` if no range covers it.
    pub fn map_uid(&self, uid: u32) -> Option<u32> {
        map(&self.uids, uid)
    }

    /// The host gid for `gid`, or `None` if no range covers it.
    pub fn map_gid(&self, gid: u32) -> Option<u32> {
        map(&self.gids, gid)
    }
}

/// Shift the ids of the user and group entries of a POSIX ACL xattr
/// (`system.posix_acl_access` / `system.posix_acl_default`).
pub fn shift_acl(xattr: &[u8], shift: &IdShift) -> Result<Vec<u8>> {
    let mut entries = acl::parse(xattr, "copy")?;
    for e in &mut entries {
        let id = e.id;
        e.id = match e.tag {
            acl::USER => shift
                .map_uid(id)
                .ok_or_else(|| err!(InvalidArgument, "copy", "ACL uid {id} is not mapped"))?,
            acl::GROUP => shift
                .map_gid(id)
                .ok_or_else(|| err!(InvalidArgument, "copy", "ACL gid {id} is not mapped"))?,
            _ => continue,
        };
    }
    Ok(acl::encode(&entries))
}

/// Shift a `security.capability` xattr: v3 gets its rootid mapped; v1/v2
/// (no rootid) become v3 with rootid = mapped 0 when root maps to a non-zero
/// id, as the kernel does for capabilities set inside a user namespace.
pub fn shift_fcaps(xattr: &[u8], shift: &IdShift) -> Result<Vec<u8>> {
    if xattr.len() < 4 {
        return Err(err!(InvalidArgument, "copy", "malformed security.capability xattr"));
    }
    let magic = u32::from_le_bytes(xattr[0..4].try_into().unwrap());
    let flags = magic & VFS_CAP_FLAGS_MASK;
    let (data, rootid): (Vec<u8>, u32) = match (magic & VFS_CAP_REVISION_MASK, xattr.len()) {
        (VFS_CAP_REVISION_1, 12) => {
            let mut d = xattr[4..12].to_vec();
            d.extend_from_slice(&[0; 8]);
            (d, 0)
        }
        (VFS_CAP_REVISION_2, 20) => (xattr[4..20].to_vec(), 0),
        (VFS_CAP_REVISION_3, 24) => (
            xattr[4..20].to_vec(),
            u32::from_le_bytes(xattr[20..24].try_into().unwrap()),
        ),
        (rev, len) => {
            return Err(err!(
                InvalidArgument,
                "copy",
                "unknown security.capability revision {:#x} ({len} bytes)",
                rev >> 24
            ))
        }
    };
    let mapped = shift
        .map_uid(rootid)
        .ok_or_else(|| err!(InvalidArgument, "copy", "file capability rootid {rootid} is not mapped"))?;
    if mapped == 0 && magic & VFS_CAP_REVISION_MASK != VFS_CAP_REVISION_3 {
        return Ok(xattr.to_vec());
    }
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&(VFS_CAP_REVISION_3 | flags).to_le_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(&mapped.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shift() -> IdShift {
        IdShift {
            uids: vec![(0, 100000, 65536)],
            gids: vec![(0, 200000, 65536)],
        }
    }

    // Bytes written out by hand, not through `acl::encode`: the kernel's form (version 2).
    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = 2u32.to_le_bytes().to_vec();
        for &(t, p, id) in entries {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&p.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn map_ranges() {
        let s = IdShift {
            uids: vec![(0, 100000, 1000), (1000, 5000, 10)],
            gids: vec![],
        };
        assert_eq!(s.map_uid(0), Some(100000));
        assert_eq!(s.map_uid(999), Some(100999));
        assert_eq!(s.map_uid(1005), Some(5005));
        assert_eq!(s.map_uid(1010), None);
        assert_eq!(s.map_gid(1010), Some(1010));
    }

    #[test]
    fn acl_user_and_group_entries_shift_others_stay() {
        let src = acl(&[
            (0x01, 7, u32::MAX),
            (acl::USER, 6, 1000),
            (0x04, 5, u32::MAX),
            (acl::GROUP, 4, 50),
            (0x10, 7, u32::MAX),
            (0x20, 0, u32::MAX),
        ]);
        let out = shift_acl(&src, &shift()).unwrap();
        let want = acl(&[
            (0x01, 7, u32::MAX),
            (acl::USER, 6, 101000),
            (0x04, 5, u32::MAX),
            (acl::GROUP, 4, 200050),
            (0x10, 7, u32::MAX),
            (0x20, 0, u32::MAX),
        ]);
        assert_eq!(out, want);
    }

    #[test]
    fn acl_unmapped_or_malformed_is_an_error() {
        assert!(shift_acl(&acl(&[(acl::USER, 6, 70000)]), &shift()).is_err());
        assert!(shift_acl(&[2, 0, 0, 0, 1], &shift()).is_err());
        assert!(shift_acl(&acl(&[]).iter().map(|b| b ^ 1).collect::<Vec<_>>(), &shift()).is_err());
    }

    #[test]
    fn fcaps_v2_becomes_v3_with_mapped_root() {
        let mut v2 = (VFS_CAP_REVISION_2 | 1).to_le_bytes().to_vec();
        v2.extend_from_slice(&[0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // cap_net_bind_service+ep
        let out = shift_fcaps(&v2, &shift()).unwrap();
        assert_eq!(out.len(), 24);
        assert_eq!(
            u32::from_le_bytes(out[0..4].try_into().unwrap()),
            VFS_CAP_REVISION_3 | 1
        );
        assert_eq!(&out[4..20], &v2[4..20]);
        assert_eq!(u32::from_le_bytes(out[20..24].try_into().unwrap()), 100000);
        // Identity for root: v2 stays v2.
        let ident = IdShift {
            uids: vec![(0, 0, 65536)],
            gids: vec![],
        };
        assert_eq!(shift_fcaps(&v2, &ident).unwrap(), v2);
    }

    #[test]
    fn fcaps_v3_rootid_shifts() {
        let mut v3 = VFS_CAP_REVISION_3.to_le_bytes().to_vec();
        v3.extend_from_slice(&[1; 16]);
        v3.extend_from_slice(&5u32.to_le_bytes());
        let out = shift_fcaps(&v3, &shift()).unwrap();
        assert_eq!(&out[..20], &v3[..20]);
        assert_eq!(u32::from_le_bytes(out[20..24].try_into().unwrap()), 100005);
        assert!(shift_fcaps(&v3[..10], &shift()).is_err());
    }
}
