//! In-place ownership shift of a rootfs tree from one id map to another
//! (privileged <-> unprivileged, or between two maps), and `convert`: the
//! container-level operation with its lock, intent record and marker.
//!
//! Every entry is reached through directory fds with `*at` calls and
//! `AT_SYMLINK_NOFOLLOW`, so no symlink inside the rootfs is ever followed.
//! A first pass checks every id (owners, ACL entries, capability rootids)
//! and changes nothing; only then the second pass changes owners.

use crate::config::Config;
use crate::copy::{shift_acl, shift_fcaps};
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::idmap::{IdMap, IdShift, Range};
use crate::store::ContainerRef;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, XattrFlags};
use std::collections::HashSet;
use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// In the container dir: the map the rootfs owners were shifted to (the
/// `lxc.idmap` values, one per line). Absent for a privileged rootfs or one
/// meant to be used through an idmapped mount.
pub const MARKER: &str = "strata_shifted";
/// In the container dir while a conversion runs: what it is doing, so that a
/// rerun after a crash completes it.
pub const INTENT: &str = "strata_convert.intent";

const ACL_ACCESS: &str = "system.posix_acl_access";
const ACL_DEFAULT: &str = "system.posix_acl_default";
const FCAPS: &str = "security.capability";

/// The ids of a rootfs under `map`, host id -> container id (identity for privileged).
fn domain(map: &IdMap) -> (Vec<Range>, Vec<Range>) {
    if map.is_empty() {
        let all = vec![Range::new(0, 0, u32::MAX)];
        (all.clone(), all)
    } else {
        (map.uids.clone(), map.gids.clone())
    }
}

/// Ranges `(old host id, new host id, count)` taking a rootfs owned under
/// `from` to owners under `to`: through the container ids both maps share.
fn compose_kind(from: &[Range], to: &[Range]) -> Vec<(u32, u32, u32)> {
    let mut out = Vec::new();
    for a in from {
        for b in to {
            let lo = a.inside.max(b.inside) as u64;
            let hi = (a.inside as u64 + a.count as u64).min(b.inside as u64 + b.count as u64);
            if lo < hi {
                let old = a.outside as u64 + (lo - a.inside as u64);
                let new = b.outside as u64 + (lo - b.inside as u64);
                out.push((old as u32, new as u32, (hi - lo) as u32));
            }
        }
    }
    out.sort();
    out
}

/// The shift from a rootfs owned under `from` to one owned under `to` (an
/// empty map is privileged: container ids are host ids).
pub fn compose(from: &IdMap, to: &IdMap) -> Result<IdShift> {
    let (fu, fg) = domain(from);
    let (tu, tg) = domain(to);
    let s = IdShift {
        uids: compose_kind(&fu, &tu),
        gids: compose_kind(&fg, &tg),
    };
    // An empty list means "unchanged" to the copy engine's helpers: never hand one out.
    if s.uids.is_empty() || s.gids.is_empty() {
        return Err(err!(
            InvalidArgument,
            "shift ids",
            "the old and new id maps share no container {}",
            if s.uids.is_empty() { "uids" } else { "gids" }
        ));
    }
    Ok(s)
}

/// The old and new host ids of a shift must not overlap (except ids that map
/// to themselves): otherwise an interrupted shift could not tell done entries
/// from pending ones.
fn check_disjoint(s: &IdShift) -> Result<()> {
    for (kind, v) in [("uid", &s.uids), ("gid", &s.gids)] {
        for a in v.iter() {
            for b in v.iter() {
                let (a0, a1) = (a.0 as u64, a.0 as u64 + a.2 as u64);
                let (b0, b1) = (b.1 as u64, b.1 as u64 + b.2 as u64);
                let same_identity = a == b && a.0 == a.1;
                if a0 < b1 && b0 < a1 && !same_identity {
                    return Err(err!(
                        InvalidArgument,
                        "shift ids",
                        "old host {kind}s {}-{} and new host {kind}s {}-{} overlap: convert to privileged first",
                        a0,
                        a1 - 1,
                        b0,
                        b1 - 1
                    ));
                }
            }
        }
    }
    Ok(())
}

/// For a resumed shift: ids already under the new map stay as they are.
fn resume_shift(s: &IdShift) -> IdShift {
    let add = |v: &[(u32, u32, u32)]| {
        let mut out = v.to_vec();
        out.extend(v.iter().filter(|r| r.0 != r.1).map(|r| (r.1, r.1, r.2)));
        out
    };
    IdShift {
        uids: add(&s.uids),
        gids: add(&s.gids),
    }
}

/// What was done to a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShiftStats {
    pub entries: u64,
    pub acls: u64,
    pub fcaps: u64,
}

/// Entries whose state a crash between chown and the xattr/mode fix-up would
/// lose (chown drops file capabilities and setuid/setgid bits).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fragile {
    /// `(path relative to the rootfs, security.capability before the shift)`.
    pub fcaps: Vec<(Vec<u8>, Vec<u8>)>,
    /// `(path relative to the rootfs, mode)` of setuid/setgid non-directories.
    pub modes: Vec<(Vec<u8>, u32)>,
}

struct Entry<'a> {
    dirfd: BorrowedFd<'a>,
    name: &'a CStr,
    rel: &'a Path,
    st: &'a rustix::fs::Stat,
}

fn proc_fd(fd: &OwnedFd) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn get_xattr(p: &str, name: &str, rel: &Path) -> Result<Option<Vec<u8>>> {
    // Most values are small: a stack buffer first, the exact size only when it is not enough.
    let mut small = [0u8; 512];
    let err = |e: rustix::io::Errno| -> Result<Option<Vec<u8>>> {
        match e {
            rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP => Ok(None),
            e => Err(Error::io("read xattr", rel, e.into())),
        }
    };
    match rustix::fs::getxattr(p, name, &mut small[..]) {
        Ok(n) => return Ok(Some(small[..n].to_vec())),
        Err(rustix::io::Errno::RANGE) => {}
        Err(e) => return err(e),
    }
    let mut buf = vec![0u8; 65536];
    match rustix::fs::getxattr(p, name, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(e) => err(e),
    }
}

/// Walk `root` depth first, calling `f` on every entry (root first), never
/// following symlinks. Directories are opened with O_NOFOLLOW from their parent's fd.
fn walk(root: &Path, f: &mut dyn FnMut(&Entry) -> Result<()>) -> Result<()> {
    let parent = root.parent().unwrap_or(Path::new("/"));
    let pfd = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open rootfs", parent, e.into()))?;
    let name = root.file_name().unwrap_or(OsStr::new("."));
    let cname = std::ffi::CString::new(name.as_bytes()).map_err(|_| err!(InvalidArgument, "shift ids", "bad path"))?;
    let st = rustix::fs::statat(&pfd, cname.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("stat rootfs", root, e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(err!(
            InvalidArgument,
            "shift ids",
            "{} is not a directory",
            root.display()
        ));
    }
    visit(pfd.as_fd(), &cname, Path::new(""), &st, root, f)
}

fn visit(
    dirfd: BorrowedFd,
    name: &CStr,
    rel: &Path,
    st: &rustix::fs::Stat,
    root: &Path,
    f: &mut dyn FnMut(&Entry) -> Result<()>,
) -> Result<()> {
    f(&Entry { dirfd, name, rel, st })?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(());
    }
    let at = root.join(rel);
    let dfd = rustix::fs::openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open directory", &at, e.into()))?;
    let mut names = Vec::new();
    let dir = rustix::fs::Dir::read_from(&dfd).map_err(|e| Error::io("read directory", &at, e.into()))?;
    for ent in dir {
        let ent = ent.map_err(|e| Error::io("read directory", &at, e.into()))?;
        let n = ent.file_name();
        if n.to_bytes() == b"." || n.to_bytes() == b".." {
            continue;
        }
        names.push(n.to_owned());
    }
    for n in names {
        let crel = rel.join(OsStr::from_bytes(n.to_bytes()));
        let cst = rustix::fs::statat(&dfd, n.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("stat", root.join(&crel), e.into()))?;
        visit(dfd.as_fd(), &n, &crel, &cst, root, f)?;
    }
    Ok(())
}

/// The xattrs of an entry that carry ids.
struct IdXattrs {
    access: Option<Vec<u8>>,
    default: Option<Vec<u8>>,
    fcaps: Option<Vec<u8>>,
}

fn read_id_xattrs(e: &Entry, ft: FileType, path: &Path) -> Result<(Option<OwnedFd>, IdXattrs)> {
    let none = IdXattrs {
        access: None,
        default: None,
        fcaps: None,
    };
    if ft == FileType::Symlink {
        return Ok((None, none));
    }
    let fd = rustix::fs::openat(
        e.dirfd,
        e.name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|er| Error::io("open", path, er.into()))?;
    let p = proc_fd(&fd);
    let x = IdXattrs {
        access: get_xattr(&p, ACL_ACCESS, path)?,
        default: if ft == FileType::Directory {
            get_xattr(&p, ACL_DEFAULT, path)?
        } else {
            None
        },
        fcaps: if ft == FileType::RegularFile {
            get_xattr(&p, FCAPS, path)?
        } else {
            None
        },
    };
    Ok((Some(fd), x))
}

/// A v3 capability whose root is host root again is written as v2, as the
/// kernel itself stores capabilities set by host root.
fn fcaps_for_host_root(v: Vec<u8>) -> Vec<u8> {
    if v.len() == 24 && v[3] == 3 && v[20..24] == [0, 0, 0, 0] {
        let mut out = v[..20].to_vec();
        out[3] = 2;
        return out;
    }
    v
}

fn map_owner(s: &IdShift, st: &rustix::fs::Stat, path: &Path) -> Result<(u32, u32)> {
    let uid = s
        .map_uid(st.st_uid)
        .ok_or_else(|| err!(InvalidArgument, "shift ids", "uid {} is outside the id map", st.st_uid).at(path))?;
    let gid = s
        .map_gid(st.st_gid)
        .ok_or_else(|| err!(InvalidArgument, "shift ids", "gid {} is outside the id map", st.st_gid).at(path))?;
    Ok((uid, gid))
}

fn shifted_xattrs(s: &IdShift, x: &IdXattrs, path: &Path) -> Result<IdXattrs> {
    let at = |e: Error| err!(InvalidArgument, "shift ids", "{}", e.msg).at(path);
    Ok(IdXattrs {
        access: x.access.as_deref().map(|v| shift_acl(v, s)).transpose().map_err(at)?,
        default: x.default.as_deref().map(|v| shift_acl(v, s)).transpose().map_err(at)?,
        fcaps: x
            .fcaps
            .as_deref()
            .map(|v| shift_fcaps(v, s).map(fcaps_for_host_root))
            .transpose()
            .map_err(at)?,
    })
}

fn is_fragile_mode(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) != FileType::Directory && st.st_mode & 0o6000 != 0
}

/// First pass: check every id of the tree maps, change nothing; collect the fragile entries.
fn check_tree(root: &Path, s: &IdShift) -> Result<Fragile> {
    let mut fragile = Fragile::default();
    walk(root, &mut |e| {
        let path = root.join(e.rel);
        let ft = FileType::from_raw_mode(e.st.st_mode);
        map_owner(s, e.st, &path)?;
        let (_fd, x) = read_id_xattrs(e, ft, &path)?;
        shifted_xattrs(s, &x, &path)?;
        if let Some(c) = x.fcaps {
            fragile.fcaps.push((e.rel.as_os_str().as_bytes().to_vec(), c));
        }
        if is_fragile_mode(e.st) {
            fragile
                .modes
                .push((e.rel.as_os_str().as_bytes().to_vec(), e.st.st_mode & 0o7777));
        }
        Ok(())
    })?;
    Ok(fragile)
}

/// Second pass: shift owners, ACLs and capabilities; `fragile` (from an
/// earlier first pass) restores what an interrupted run may have lost.
fn apply_tree(root: &Path, s: &IdShift, fragile: &Fragile) -> Result<ShiftStats> {
    let mut stats = ShiftStats::default();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let caps: std::collections::HashMap<&[u8], &[u8]> = fragile
        .fcaps
        .iter()
        .map(|(p, v)| (p.as_slice(), v.as_slice()))
        .collect();
    let modes: std::collections::HashMap<&[u8], u32> = fragile.modes.iter().map(|(p, m)| (p.as_slice(), *m)).collect();
    walk(root, &mut |e| {
        let path = root.join(e.rel);
        let ft = FileType::from_raw_mode(e.st.st_mode);
        // A hard-linked inode is shifted once, at its first name.
        if ft != FileType::Directory && e.st.st_nlink > 1 && !seen.insert((e.st.st_dev, e.st.st_ino)) {
            return Ok(());
        }
        let rel = e.rel.as_os_str().as_bytes();
        let (uid, gid) = map_owner(s, e.st, &path)?;
        let (fd, mut x) = read_id_xattrs(e, ft, &path)?;
        if x.fcaps.is_none() {
            // chown dropped them in an interrupted run: take the recorded value.
            x.fcaps = caps.get(rel).map(|v| v.to_vec());
        }
        let new = shifted_xattrs(s, &x, &path)?;
        if (uid, gid) != (e.st.st_uid, e.st.st_gid) {
            rustix::fs::chownat(
                e.dirfd,
                e.name,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|er| Error::io("change owner", &path, er.into()))?;
        }
        if let Some(fd) = fd {
            let p = proc_fd(&fd);
            for (name, old, v) in [
                (ACL_ACCESS, &x.access, &new.access),
                (ACL_DEFAULT, &x.default, &new.default),
                (FCAPS, &x.fcaps, &new.fcaps),
            ] {
                let Some(v) = v else { continue };
                // chown removes capabilities, so those are always written back.
                if name != FCAPS && old.as_ref() == Some(v) {
                    continue;
                }
                rustix::fs::setxattr(p.as_str(), name, v, XattrFlags::empty())
                    .map_err(|er| Error::io(format!("write {name}"), &path, er.into()))?;
                if name == FCAPS {
                    stats.fcaps += 1;
                } else {
                    stats.acls += 1;
                }
            }
            // chown clears setuid/setgid: put the mode back.
            let mode = modes
                .get(rel)
                .copied()
                .or_else(|| is_fragile_mode(e.st).then_some(e.st.st_mode & 0o7777));
            if let Some(m) = mode {
                rustix::fs::chmod(p.as_str(), Mode::from_raw_mode(m))
                    .map_err(|er| Error::io("restore mode", &path, er.into()))?;
            }
        }
        stats.entries += 1;
        Ok(())
    })?;
    Ok(stats)
}

/// Shift the owners of every entry under `root` from map `from` to map `to`
/// (empty = privileged). Refuses, before changing anything, any id that
/// `from` does not cover.
pub fn shift_tree(root: &Path, from: &IdMap, to: &IdMap) -> Result<ShiftStats> {
    let _s = tracing::info_span!("shift tree", root = %root.display()).entered();
    let s = compose(from, to)?;
    check_disjoint(&s)?;
    let fragile = check_tree(root, &s)?;
    apply_tree(root, &s, &fragile)
}

/// What a crash-safe conversion records before it changes anything.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Intent {
    from: IdMap,
    to: IdMap,
    rootfs: PathBuf,
    fragile: Fragile,
}

/// The map a container's rootfs was shifted to, from its marker.
pub fn shifted_map(dir: &Path) -> Result<Option<IdMap>> {
    let p = dir.join(MARKER);
    match std::fs::read_to_string(&p) {
        Ok(t) => IdMap::parse(t.lines().filter(|l| !l.trim().is_empty())).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read shift marker", &p, e)),
    }
}

/// Record that the rootfs of the container in `dir` is owned under `map`
/// (removes the marker for an empty map).
pub fn record_shifted(dir: &Path, map: &IdMap) -> Result<()> {
    let p = dir.join(MARKER);
    if map.is_empty() {
        return match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove shift marker", &p, e)),
            _ => Ok(()),
        };
    }
    let mut text = map.config_values().join("\n");
    text.push('\n');
    crate::durable::write_atomic(&p, text.as_bytes())
}

/// How a rootfs's owners relate to a container's map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Owned by host ids as the map says: use the rootfs as is.
    Shifted,
    /// Owned by container ids (privileged layout): needs an idmapped mount
    /// of the map, or a shift.
    Unshifted,
}

/// Whether the rootfs at `rootfs` (mounted or a dir) of the container in
/// `dir` is already owned by `map`'s host ids. The marker decides when
/// there is one; otherwise the owner of the rootfs's top directory (a clone
/// shifted while copying has no marker).
pub fn ownership(dir: &Path, rootfs: &Path, map: &IdMap) -> Result<Ownership> {
    const OP: &str = "rootfs ownership";
    if map.is_empty() {
        return Ok(Ownership::Shifted);
    }
    if let Some(m) = shifted_map(dir)? {
        if m.config_values() == map.config_values() {
            return Ok(Ownership::Shifted);
        }
        return Err(err!(
            InvalidConfig,
            OP,
            "the rootfs is shifted to {} but the config maps {}: run strata convert",
            describe(&m),
            describe(map)
        )
        .at(dir.join(MARKER)));
    }
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(rootfs).ctx(OP, rootfs)?;
    if Some(md.uid()) == map.root_uid() {
        Ok(Ownership::Shifted)
    } else if map.map_uid(md.uid()).is_some() {
        Ok(Ownership::Unshifted)
    } else {
        Err(err!(
            InvalidConfig,
            OP,
            "the rootfs top directory is owned by uid {}, which is neither the mapped root {} nor a container id",
            md.uid(),
            map.root_uid()
                .map(|u| u.to_string())
                .unwrap_or_else(|| "(unmapped)".into())
        )
        .at(rootfs))
    }
}

/// The owner LXC gives a container dir (its chown_mapped_root): with id
/// maps the container's root, who must get through it to the rootfs when
/// LXC starts the container; root for a privileged one. Root sets the group
/// too; a user's dir keeps its group (the user's), through which the user
/// still reaches it. For root, or a user in a namespace where host ids are
/// its own ([`crate::idmap::as_own_ids`]).
pub fn own_container_dir(dir: &Path, map: &IdMap) -> Result<()> {
    let (uid, gid) = if map.is_empty() {
        (Some(0), Some(0))
    } else {
        (map.root_uid(), map.root_gid())
    };
    let gid = gid.filter(|_| crate::paths::is_root());
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    std::os::unix::fs::lchown(dir, uid, gid).ctx("chown container dir", dir)
}

/// What `convert` did.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ConvertReport {
    pub stats: ShiftStats,
    /// An interrupted conversion was completed.
    pub resumed: bool,
}

/// Convert container `r` in place to map `to` (empty = privileged): shift
/// its rootfs owners and write its `lxc.idmap` lines. Only for a rootfs
/// whose backend (in `backends`) declares [`crate::Caps::shift_in_place`].
/// A rerun after a crash completes the recorded conversion.
pub fn convert(backends: &crate::Backends, r: &ContainerRef, to: &IdMap) -> Result<ConvertReport> {
    const OP: &str = "convert";
    let _s = tracing::info_span!("convert", name = %r.name).entered();
    to.validate()?;
    let _lock = crate::lock::ContainerLock::acquire(&r.lxcpath, &r.name)?;
    let c = crate::store::Store::new(&r.lxcpath).load(&r.name)?;
    if crate::state::is_running(r) {
        return Err(err!(Busy, OP, "container {} is running", r.name));
    }
    if crate::paths::is_root() {
        return convert_locked(backends, r, &c, to);
    }
    // A user may move a rootfs between maps inside its own ranges: in a user
    // namespace mapping those ranges to themselves, with the ids unchanged.
    let from = IdMap::from_config(&c.config)?;
    if from.is_empty() || to.is_empty() {
        return Err(err!(
            PermissionDenied,
            OP,
            "converting to or from a privileged container needs root"
        ));
    }
    from.check_caller()?;
    to.check_caller()?;
    let ns = crate::idmap::caller_identity_map()?;
    let bytes = crate::idmap::run_in_ns(&ns, false, || {
        let rep = convert_locked(backends, r, &c, to)?;
        serde_json::to_vec(&rep).map_err(|e| err!(Io, OP, "{e}"))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| err!(Io, OP, "{e}"))
}

/// `convert` once the container is locked and loaded.
fn convert_locked(
    backends: &crate::Backends,
    r: &ContainerRef,
    c: &crate::store::Container,
    to: &IdMap,
) -> Result<ConvertReport> {
    const OP: &str = "convert";
    let dir = r.dir();
    let intent_path = dir.join(INTENT);
    let prior: Option<Intent> = match std::fs::read(&intent_path) {
        Ok(b) => Some(
            serde_json::from_slice(&b)
                .map_err(|e| err!(InvalidConfig, OP, "unreadable conversion record: {e}").at(&intent_path))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(OP, &intent_path, e)),
    };
    let mut report = ConvertReport::default();
    let intent = match prior {
        Some(i) => {
            if i.to != *to {
                return Err(err!(
                    Busy,
                    OP,
                    "an interrupted conversion to {} is recorded in {}: rerun that conversion first",
                    describe(&i.to),
                    intent_path.display()
                ));
            }
            report.resumed = true;
            let s = compose(&i.from, &i.to)?;
            // Entries done before the crash carry new ids: accept both.
            check_tree(&i.rootfs, &resume_shift(&s))?;
            i
        }
        None => {
            let from = IdMap::from_config(&c.config)?;
            if from == *to || (from.config_values() == to.config_values() && !from.is_empty()) {
                return Err(err!(
                    InvalidArgument,
                    OP,
                    "container {} is already {}",
                    r.name,
                    describe(to)
                ));
            }
            if let Some(m) = shifted_map(&dir)? {
                if m.config_values() != from.config_values() {
                    return Err(err!(
                        InvalidConfig,
                        OP,
                        "the rootfs is recorded as shifted to {} but the config maps {}",
                        describe(&m),
                        describe(&from)
                    )
                    .at(dir.join(MARKER)));
                }
            }
            if !backends.get(c.rootfs.kind())?.caps().shift_in_place {
                return Err(err!(
                    Unsupported,
                    OP,
                    "a {} rootfs cannot be converted in place; clone the container with a map instead",
                    c.rootfs.kind()
                ));
            }
            if !crate::depfile::dependents(r)?.is_empty() {
                return Err(err!(
                    HasDependents,
                    OP,
                    "container {} has clones that share its rootfs",
                    r.name
                ));
            }
            let s = compose(&from, to)?;
            check_disjoint(&s)?;
            let rootfs = c.rootfs.path();
            let fragile = check_tree(&rootfs, &s)?;
            let i = Intent {
                from,
                to: to.clone(),
                rootfs,
                fragile,
            };
            let json = serde_json::to_vec(&i).map_err(|e| err!(Io, OP, "{e}"))?;
            crate::durable::write_atomic(&intent_path, &json)?;
            i
        }
    };
    let s = compose(&intent.from, &intent.to)?;
    let s = if report.resumed { resume_shift(&s) } else { s };
    report.stats = apply_tree(&intent.rootfs, &s, &intent.fragile)?;
    let cfg_path = r.config_path();
    let mut cfg = Config::load(&cfg_path)?;
    intent.to.write_to_config(&mut cfg);
    cfg.save(&cfg_path)?;
    record_shifted(&dir, &intent.to)?;
    own_container_dir(&dir, &intent.to)?;
    std::fs::remove_file(&intent_path).ctx(OP, &intent_path)?;
    Ok(report)
}

fn describe(m: &IdMap) -> String {
    if m.is_empty() {
        "privileged".into()
    } else {
        format!("mapped ({})", m.config_values().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_privileged_and_maps() {
        let m = IdMap::parse(["u 0 100000 65536", "g 0 200000 65536"]).unwrap();
        let s = compose(&IdMap::default(), &m).unwrap();
        assert_eq!(s.map_uid(0), Some(100000));
        assert_eq!(s.map_gid(5), Some(200005));
        assert_eq!(s.map_uid(65536), None);
        let back = compose(&m, &IdMap::default()).unwrap();
        assert_eq!(back.map_uid(100005), Some(5));
        assert_eq!(back.map_uid(5), None);
        let other = IdMap::parse(["u 0 300000 1000", "g 0 300000 1000"]).unwrap();
        let s = compose(&m, &other).unwrap();
        assert_eq!(s.map_uid(100999), Some(300999));
        assert_eq!(s.map_uid(101000), None);
        check_disjoint(&s).unwrap();
        // No shared container ids.
        let far = IdMap::parse(["u 70000 300000 10", "g 0 1 1"]).unwrap();
        assert!(compose(&m, &far).is_err());
    }

    #[test]
    fn hole_map_is_disjoint_but_overlapping_shift_is_refused() {
        let hole = IdMap::parse([
            "u 0 100000 1005",
            "u 1005 1005 1",
            "u 1006 101006 64530",
            "g 0 100000 65536",
        ])
        .unwrap();
        check_disjoint(&compose(&IdMap::default(), &hole).unwrap()).unwrap();
        check_disjoint(&compose(&hole, &IdMap::default()).unwrap()).unwrap();
        let a = IdMap::parse(["b 0 100000 65536"]).unwrap();
        let b = IdMap::parse(["b 0 110000 65536"]).unwrap();
        let e = check_disjoint(&compose(&a, &b).unwrap()).unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
    }

    #[test]
    fn resume_keeps_new_ids() {
        let m = IdMap::parse(["b 0 100000 10"]).unwrap();
        let s = resume_shift(&compose(&IdMap::default(), &m).unwrap());
        assert_eq!(s.map_uid(3), Some(100003));
        assert_eq!(s.map_uid(100003), Some(100003));
        assert_eq!(s.map_uid(11), None);
    }

    #[test]
    fn ownership_from_marker_or_top_dir_owner() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let me = std::fs::metadata(d.path()).unwrap().uid();
        // Owned by a container id (the tests' uid is below 65536): unshifted.
        let m = IdMap::parse(["b 0 700000 65536"]).unwrap();
        assert_eq!(ownership(d.path(), d.path(), &m).unwrap(), Ownership::Unshifted);
        // The top dir owned by the mapped root: shifted.
        let m2 = IdMap::parse([format!("b 0 {me} 1").as_str()]).unwrap();
        assert_eq!(ownership(d.path(), d.path(), &m2).unwrap(), Ownership::Shifted);
        // The marker wins, and a marker for another map is an error.
        record_shifted(d.path(), &m).unwrap();
        assert_eq!(ownership(d.path(), d.path(), &m).unwrap(), Ownership::Shifted);
        assert!(ownership(d.path(), d.path(), &m2).is_err());
        record_shifted(d.path(), &IdMap::default()).unwrap();
        assert!(shifted_map(d.path()).unwrap().is_none());
        assert_eq!(
            ownership(d.path(), d.path(), &IdMap::default()).unwrap(),
            Ownership::Shifted
        );
    }

    #[test]
    fn v3_root_zero_becomes_v2() {
        let mut v3 = vec![0, 0, 0, 3];
        v3.extend_from_slice(&[7; 16]);
        v3.extend_from_slice(&0u32.to_le_bytes());
        let v2 = fcaps_for_host_root(v3.clone());
        assert_eq!(v2.len(), 20);
        assert_eq!(v2[3], 2);
        v3[20] = 1;
        assert_eq!(fcaps_for_host_root(v3.clone()), v3);
    }
}
