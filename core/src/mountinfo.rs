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

/// Mount points from /proc/self/mountinfo (escapes decoded). The kernel
/// formats every mount's line (options, root path) at each read, which was
/// a tenth of a destroy's CPU with three reads: the points are kept with
/// the file open, and read again only when a `poll` on it says the mount
/// table changed since (the kernel flags any mount, unmount or move in the
/// namespace there, whoever made it), or this is another process (a fork)
/// or another mount namespace than the one read.
pub fn mount_points() -> Vec<PathBuf> {
    cached_points().unwrap_or_else(|| mounts().into_iter().map(|m| m.mount_point).collect())
}

/// The mount points of the last read of an open mountinfo, still current.
struct Points {
    pid: u32,
    /// Device and inode of the mount namespace read (`/proc/self/ns/mnt`).
    ns: (u64, u64),
    file: std::fs::File,
    points: Vec<PathBuf>,
}

static POINTS: std::sync::Mutex<Option<Points>> = std::sync::Mutex::new(None);

fn mount_ns() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/mnt").ok().map(|m| (m.dev(), m.ino()))
}

/// Whether the mount table of `f` changed since it was opened or last polled.
fn changed(f: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLPRI,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n != 0 && (n < 0 || p.revents & (libc::POLLERR | libc::POLLPRI | libc::POLLNVAL) != 0)
}

fn cached_points() -> Option<Vec<PathBuf>> {
    // A forked child of a threaded process takes no lock a thread that is
    // not there may have held at the fork: it reads the file.
    if crate::identity::in_ns_child() {
        return None;
    }
    let mut g = POINTS.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    let ns = mount_ns()?;
    if let Some(c) = g.as_mut() {
        if c.pid == pid && c.ns == ns {
            // Polled before reading: a change after the poll shows at the next one.
            if !changed(&c.file) {
                return Some(c.points.clone());
            }
            if let Ok(t) = read_from_start(&mut c.file) {
                c.points = parse(&t).into_iter().map(|m| m.mount_point).collect();
                return Some(c.points.clone());
            }
        }
    }
    // Opened before it is read: a change between the two shows at the next poll.
    let mut file = std::fs::File::open("/proc/self/mountinfo").ok()?;
    let t = read_from_start(&mut file).ok()?;
    let points: Vec<PathBuf> = parse(&t).into_iter().map(|m| m.mount_point).collect();
    *g = Some(Points {
        pid,
        ns,
        file,
        points: points.clone(),
    });
    Some(points)
}

fn read_from_start(f: &mut std::fs::File) -> std::io::Result<String> {
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(0))?;
    crate::procfs::read_file_to_string(f)
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
    fn kept_points_follow_mounts_and_unmounts() {
        let fresh = || parse(&crate::procfs::read_to_string("/proc/self/mountinfo").unwrap());
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("m");
        std::fs::create_dir(&target).unwrap();
        // Read twice (the second from what is kept): the root is there both times.
        assert!(mount_points().iter().any(|m| m == Path::new("/")));
        assert!(!is_mount_point(&target));
        if !crate::paths::is_root() {
            return;
        }
        let none = None::<&str>;
        nix::mount::mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            none,
        )
        .unwrap();
        // Seen at once, though the points were kept from before it.
        let seen = is_mount_point(&target);
        let listed = fresh().iter().any(|m| m.mount_point == target);
        nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();
        assert!(listed && seen, "a new mount is seen at once");
        assert!(!is_mount_point(&target), "an unmount is seen at once");
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\04"), "/end\\04");
        assert_eq!(unescape("/x\\777y"), "/x\\777y");
    }
}
