//! `/proc/self/mountinfo`, parsed in one place: each mount's root, mount
//! point, options, filesystem type, source and superblock options, with the
//! octal escapes (`\040` for a blank) it writes in paths undone.

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The path inside its filesystem that is mounted (`/` for a whole one).
    pub root: String,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,...`).
    pub options: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Superblock options (a cgroup v1 hierarchy's controllers are here).
    pub super_options: Vec<String>,
}

/// The mounts of the text of a mountinfo file, in its order; a line that
/// is not one is passed over.
pub fn parse(text: &str) -> Vec<Mount> {
    let opts = |o: &str| o.split(',').map(str::to_string).collect::<Vec<_>>();
    text.lines()
        .filter_map(|l| {
            // Six fields, optional ones, a lone "-", then three more (the
            // per-mount options may be missing from a hand-written table).
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            if f.len() < 5 || p.len() < 3 {
                return None;
            }
            Some(Mount {
                root: unescape(f[3]),
                mount_point: PathBuf::from(unescape(f[4])),
                options: f.get(5).copied().map(opts).unwrap_or_default(),
                fstype: p[0].to_string(),
                source: unescape(p[1]),
                super_options: opts(p[2]),
            })
        })
        .collect()
}

/// The mounts of our mount namespace (none if mountinfo cannot be read).
pub fn mounts() -> Vec<Mount> {
    crate::procfs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// Mount points from /proc/self/mountinfo (escapes decoded).
pub fn mount_points() -> Vec<PathBuf> {
    mounts().into_iter().map(|m| m.mount_point).collect()
}

/// Whether something is mounted at `p` (exactly there).
pub fn is_mount_point(p: &Path) -> bool {
    mount_points().iter().any(|m| m == p)
}

/// Undo mountinfo's octal escapes of one byte (`\000`..`\377`); anything
/// else stays as written.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && b[i + 2..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_and_without_optional_fields() {
        let t = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n\
                 40 1 0:33 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n\
                 not a line\n";
        let m = parse(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[0].mount_point, Path::new("/mnt two"));
        assert_eq!(m[0].options, ["rw", "noatime"]);
        assert_eq!((m[0].fstype.as_str(), m[0].source.as_str()), ("ext3", "/dev/root"));
        assert_eq!(m[0].super_options, ["rw", "errors=continue"]);
        assert_eq!(m[1].super_options, ["rw", "cpu", "cpuacct"]);
        assert_eq!(m[1].root, "/");
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\04"), "/end\\04");
        assert_eq!(unescape("/x\\777y"), "/x\\777y");
    }
}
