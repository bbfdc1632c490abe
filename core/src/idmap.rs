//! Id maps of unprivileged containers: `lxc.idmap = u|g|b CONTAINER_ID HOST_ID COUNT`
//! lines (and the legacy `lxc.id_map`), validated against each other and
//! against the caller's subordinate ranges in `/etc/subuid` and `/etc/subgid`,
//! and written to a process with `newuidmap`/`newgidmap` or directly as root.

use crate::config::Config;
use crate::err;
use crate::error::{Error, IoContext, Result};
use std::path::{Path, PathBuf};

/// One range of a map: `count` ids from `inside` (container) to `outside` (host).
/// Map of ids applied while copying (`host_id = f(id)`), for unprivileged
/// clones; `None` copies ids as they are. An id outside all ranges is an
/// `InvalidArgument` error naming the path; an empty list leaves that kind
/// of id unchanged.
#[derive(Debug, Clone, Default)]
pub struct IdShift {
    /// `(first id inside, first id outside, count)` ranges for uids.
    pub uids: Vec<(u32, u32, u32)>,
    /// Same for gids.
    pub gids: Vec<(u32, u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
    /// The config line it came from, for error messages.
    #[serde(default)]
    pub line: String,
}

impl Range {
    pub fn new(inside: u32, outside: u32, count: u32) -> Self {
        Range {
            inside,
            outside,
            count,
            line: String::new(),
        }
    }

    fn inside_end(&self) -> u64 {
        self.inside as u64 + self.count as u64
    }

    fn outside_end(&self) -> u64 {
        self.outside as u64 + self.count as u64
    }
}

/// The uid and gid ranges of a container. Empty means privileged (no user namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    pub uids: Vec<Range>,
    pub gids: Vec<Range>,
}

const OP: &str = "parse id map";

/// Most ranges of one uid_map or gid_map (the kernel's UID_GID_MAP_MAX_EXTENTS).
const MAX_RANGES: usize = 340;

fn map_in(ranges: &[Range], id: u32) -> Option<u32> {
    ranges
        .iter()
        .find(|r| id >= r.inside && ((id - r.inside) as u64) < r.count as u64)
        .map(|r| r.outside + (id - r.inside))
}

fn unmap_in(ranges: &[Range], id: u32) -> Option<u32> {
    ranges
        .iter()
        .find(|r| id >= r.outside && ((id - r.outside) as u64) < r.count as u64)
        .map(|r| r.inside + (id - r.outside))
}

impl IdMap {
    /// The maps of a config (`lxc.idmap` and `lxc.id_map`), validated.
    pub fn from_config(config: &Config) -> Result<IdMap> {
        let mut map = IdMap::default();
        for (key, value) in config.entries() {
            if key == "lxc.idmap" {
                map.push_line(value, &format!("lxc.idmap = {value}"))?;
            }
        }
        map.validate()?;
        Ok(map)
    }

    /// Parse values as written after `lxc.idmap =` (e.g. `u 0 100000 65536`), validated.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<IdMap> {
        let mut map = IdMap::default();
        for v in values {
            map.push_line(v, &format!("lxc.idmap = {}", v.trim()))?;
        }
        map.validate()?;
        Ok(map)
    }

    fn push_line(&mut self, value: &str, line: &str) -> Result<()> {
        let f: Vec<&str> = value.split_whitespace().collect();
        let bad = |why: &str| err!(InvalidConfig, OP, "{line}: {why}");
        if f.len() != 4 {
            return Err(bad("expected u|g|b CONTAINER_ID HOST_ID COUNT"));
        }
        let num = |s: &str, what: &str| -> Result<u32> {
            s.parse::<u32>()
                .map_err(|_| bad(&format!("{what} {s:?} is not a number")))
        };
        let inside = num(f[1], "container id")?;
        let outside = num(f[2], "host id")?;
        let count = num(f[3], "count")?;
        if count == 0 {
            return Err(bad("count is zero"));
        }
        let r = Range {
            inside,
            outside,
            count,
            line: line.to_string(),
        };
        if r.inside_end() > u32::MAX as u64 || r.outside_end() > u32::MAX as u64 {
            return Err(bad("range goes past the largest id"));
        }
        match f[0] {
            "u" => self.uids.push(r),
            "g" => self.gids.push(r),
            "b" => {
                self.uids.push(r.clone());
                self.gids.push(r);
            }
            k => return Err(bad(&format!("kind {k:?} is not u, g or b"))),
        }
        Ok(())
    }

    /// Refuse overlapping ranges (container side or host side), zero
    /// counts and more ranges than the kernel takes.
    pub fn validate(&self) -> Result<()> {
        for (kind, ranges) in [("uid", &self.uids), ("gid", &self.gids)] {
            // Checked first: the overlap check below is quadratic.
            if ranges.len() > MAX_RANGES {
                return Err(err!(
                    InvalidConfig,
                    OP,
                    "{} {kind} ranges: the kernel takes at most {MAX_RANGES}",
                    ranges.len()
                ));
            }
            for (i, a) in ranges.iter().enumerate() {
                if a.count == 0 {
                    return Err(err!(InvalidConfig, OP, "{}: count is zero", a.display()));
                }
                for b in &ranges[..i] {
                    let side = if overlaps(a.inside as u64, a.inside_end(), b.inside as u64, b.inside_end()) {
                        "container"
                    } else if overlaps(a.outside as u64, a.outside_end(), b.outside as u64, b.outside_end()) {
                        "host"
                    } else {
                        continue;
                    };
                    return Err(err!(
                        InvalidConfig,
                        OP,
                        "{}: {side} {kind}s overlap with {}",
                        a.display(),
                        b.display()
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    /// Host uid of container uid `id`.
    pub fn map_uid(&self, id: u32) -> Option<u32> {
        map_in(&self.uids, id)
    }

    pub fn map_gid(&self, id: u32) -> Option<u32> {
        map_in(&self.gids, id)
    }

    /// Container uid of host uid `id`.
    pub fn unmap_uid(&self, id: u32) -> Option<u32> {
        unmap_in(&self.uids, id)
    }

    pub fn unmap_gid(&self, id: u32) -> Option<u32> {
        unmap_in(&self.gids, id)
    }

    /// Host uid of the container's root, if mapped.
    pub fn root_uid(&self) -> Option<u32> {
        self.map_uid(0)
    }

    pub fn root_gid(&self) -> Option<u32> {
        self.map_gid(0)
    }

    /// The map for the copy engine (container id -> host id).
    pub fn to_shift(&self) -> IdShift {
        let t = |v: &[Range]| v.iter().map(|r| (r.inside, r.outside, r.count)).collect();
        IdShift {
            uids: t(&self.uids),
            gids: t(&self.gids),
        }
    }

    /// The reverse map (host id -> container id), e.g. to make a rootfs privileged again.
    pub fn to_unshift(&self) -> IdShift {
        let t = |v: &[Range]| v.iter().map(|r| (r.outside, r.inside, r.count)).collect();
        IdShift {
            uids: t(&self.uids),
            gids: t(&self.gids),
        }
    }

    /// The values of the `lxc.idmap` lines (`u 0 100000 65536`, ...), uids first.
    pub fn config_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in [("u", &self.uids), ("g", &self.gids)] {
            for r in v.iter() {
                out.push(format!("{k} {} {} {}", r.inside, r.outside, r.count));
            }
        }
        out
    }

    /// Replace the `lxc.idmap` lines of `config` with this map (none when empty).
    pub fn write_to_config(&self, config: &mut Config) {
        config.remove("lxc.idmap");
        for v in self.config_values() {
            config.append("lxc.idmap", &v);
        }
    }

    /// Check every range against the subordinate ids of `user` (a non-root
    /// user may also map its own uid or gid, one id, as newuidmap allows).
    pub fn check_allowed(&self, user: &SubIds) -> Result<()> {
        const OP: &str = "check id map";
        if user.uid == 0 {
            return Ok(());
        }
        if user.uids.is_empty() && user.gids.is_empty() {
            return Err(err!(
                PermissionDenied,
                OP,
                "user {} has no subordinate ids in {} or {}: add ranges (e.g. with usermod --add-subuids/--add-subgids)",
                user.name,
                user.subuid_file.display(),
                user.subgid_file.display()
            ));
        }
        for (kind, ranges, allowed, own, file) in [
            ("uid", &self.uids, &user.uids, user.uid, &user.subuid_file),
            ("gid", &self.gids, &user.gids, user.gid, &user.subgid_file),
        ] {
            for r in ranges.iter() {
                if r.count == 1 && r.outside == own {
                    continue;
                }
                if !covered(allowed, r.outside as u64, r.outside_end()) {
                    return Err(err!(
                        PermissionDenied,
                        OP,
                        "{}: host {kind}s {}-{} are not allowed for user {} (not in {}{})",
                        r.display(),
                        r.outside,
                        r.outside_end() - 1,
                        user.name,
                        file.display(),
                        if allowed.is_empty() {
                            ", which has no ranges for this user".to_string()
                        } else {
                            format!(
                                ", which allows {}",
                                allowed
                                    .iter()
                                    .map(|(s, c)| format!("{s}-{}", *s as u64 + *c as u64 - 1))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                    ));
                }
            }
        }
        Ok(())
    }

    /// Check the map for the calling user (root may map anything), and that
    /// newuidmap/newgidmap are there to write it: before anything is made.
    pub fn check_caller(&self) -> Result<()> {
        if crate::paths::is_root() || self.is_empty() {
            return Ok(());
        }
        self.check_allowed(&SubIds::for_caller()?)?;
        for (prog, ranges) in [("newuidmap", &self.uids), ("newgidmap", &self.gids)] {
            if !ranges.is_empty() && find_in_path(prog).is_none() {
                return Err(err!(
                    NotFound,
                    "write id maps",
                    "{prog} not found: install the uidmap package"
                ));
            }
        }
        Ok(())
    }
}

impl Range {
    fn display(&self) -> String {
        if self.line.is_empty() {
            format!("{} {} {}", self.inside, self.outside, self.count)
        } else {
            self.line.clone()
        }
    }
}

fn overlaps(a0: u64, a1: u64, b0: u64, b1: u64) -> bool {
    a0 < b1 && b0 < a1
}

/// Whether `[lo, hi)` is covered by the union of `ranges` (start, count).
fn covered(ranges: &[(u32, u32)], mut lo: u64, hi: u64) -> bool {
    // Ranges may be split across several lines; walk them until `lo` reaches `hi`.
    loop {
        if lo >= hi {
            return true;
        }
        match ranges
            .iter()
            .find(|(s, c)| (*s as u64) <= lo && lo < *s as u64 + *c as u64)
        {
            Some((s, c)) => lo = *s as u64 + *c as u64,
            None => return false,
        }
    }
}

/// A user's subordinate id ranges.
#[derive(Debug, Clone)]
pub struct SubIds {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// `(first, count)` from /etc/subuid.
    pub uids: Vec<(u32, u32)>,
    /// `(first, count)` from /etc/subgid.
    pub gids: Vec<(u32, u32)>,
    pub subuid_file: PathBuf,
    pub subgid_file: PathBuf,
}

impl SubIds {
    /// Ranges of the calling (effective) user from /etc/subuid and /etc/subgid
    /// (`STRATA_SUBUID`/`STRATA_SUBGID` override the files, for tests).
    pub fn for_caller() -> Result<SubIds> {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let name = crate::paths::user_by_uid(uid)
            .map(|(n, _)| n)
            .unwrap_or_else(|| uid.to_string());
        let f = |var: &str, def: &str| std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| def.into());
        SubIds::load(
            &name,
            uid,
            gid,
            &f("STRATA_SUBUID", "/etc/subuid"),
            &f("STRATA_SUBGID", "/etc/subgid"),
        )
    }

    /// The same ranges, the widest first: a user may hold a one-id range
    /// (its own id, say) listed before its main one, and callers that want
    /// "the user's range" want the wide one whatever the order in the file.
    pub fn widest_first(mut self) -> SubIds {
        self.uids.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
        self.gids.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
        self
    }

    /// Ranges of user `name` (uid `uid`) from the given files; a missing file has no ranges.
    pub fn load(name: &str, uid: u32, gid: u32, subuid: &Path, subgid: &Path) -> Result<SubIds> {
        let read = |p: &Path| -> Result<Vec<(u32, u32)>> {
            match std::fs::read_to_string(p) {
                Ok(t) => Ok(parse_subid(&t, name, uid)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(Error::io("read subordinate ids", p, e)),
            }
        };
        Ok(SubIds {
            name: name.to_string(),
            uid,
            gid,
            uids: read(subuid)?,
            gids: read(subgid)?,
            subuid_file: subuid.to_path_buf(),
            subgid_file: subgid.to_path_buf(),
        })
    }
}

/// Ranges of `name` (or numeric `uid`) in subuid/subgid text: `owner:first:count` lines.
pub fn parse_subid(text: &str, name: &str, uid: u32) -> Vec<(u32, u32)> {
    let uid_s = uid.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut it = l.trim().splitn(3, ':');
            let (owner, first, count) = (it.next()?, it.next()?, it.next()?);
            if owner != name && owner != uid_s {
                return None;
            }
            let first = first.trim().parse::<u32>().ok()?;
            let count = count.trim().parse::<u32>().ok()?;
            (count > 0).then_some((first, count))
        })
        .collect()
}

/// For a non-root caller: a map of its subordinate ranges and its own uid
/// and gid onto themselves, so that ids inside a namespace are host ids.
pub fn caller_identity_map() -> Result<IdMap> {
    let s = SubIds::for_caller()?;
    let mut m = IdMap::default();
    for (ranges, own, out) in [(&s.uids, s.uid, &mut m.uids), (&s.gids, s.gid, &mut m.gids)] {
        for &(first, count) in ranges.iter() {
            out.push(Range::new(first, first, count));
        }
        if !covered(ranges, own as u64, own as u64 + 1) {
            out.push(Range::new(own, own, 1));
        }
    }
    m.validate()?;
    Ok(m)
}

/// Find `prog` in `$PATH`.
pub fn find_in_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
}

/// Write `map` as the uid and gid maps of process `pid` (which must be in a
/// new, still unmapped user namespace): directly as root, else with
/// newuidmap/newgidmap, which check the caller's subordinate ranges.
pub fn write_maps(pid: i32, map: &IdMap) -> Result<()> {
    let _s = tracing::debug_span!("write id maps", pid).entered();
    if crate::paths::is_root() {
        write_maps_direct(pid, map)
    } else {
        write_maps_helpers(pid, map)
    }
}

fn proc_text(ranges: &[Range]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect()
}

/// Root writes the files itself. setgroups stays "allow": a privileged writer
/// does not need "deny", and the container's root must keep setgroups(2).
pub fn write_maps_direct(pid: i32, map: &IdMap) -> Result<()> {
    for (file, ranges) in [("uid_map", &map.uids), ("gid_map", &map.gids)] {
        if ranges.is_empty() {
            continue;
        }
        let p = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&p, proc_text(ranges)).ctx("write id map", &p)?;
    }
    Ok(())
}

/// The argv for newuidmap/newgidmap: `PID inside outside count ...`.
pub fn helper_args(pid: i32, ranges: &[Range]) -> Vec<String> {
    let mut a = vec![pid.to_string()];
    for r in ranges {
        a.extend([r.inside.to_string(), r.outside.to_string(), r.count.to_string()]);
    }
    a
}

fn write_maps_helpers(pid: i32, map: &IdMap) -> Result<()> {
    const OP: &str = "write id maps";
    map.check_caller()?;
    for (prog, ranges) in [("newuidmap", &map.uids), ("newgidmap", &map.gids)] {
        if ranges.is_empty() {
            continue;
        }
        let Some(bin) = find_in_path(prog) else {
            return Err(err!(NotFound, OP, "{prog} not found: install the uidmap package"));
        };
        let out = std::process::Command::new(&bin)
            .args(helper_args(pid, ranges))
            .stdin(std::process::Stdio::null())
            .output()
            .ctx(OP, &bin)?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            return Err(err!(
                Command,
                OP,
                "{prog} failed ({}): {}",
                out.status,
                msg.trim().replace('\n', "; ")
            ));
        }
    }
    Ok(())
}

/// Whether files of a container with `map` need the container's root to be
/// made or changed: a non-root caller and a non-empty map.
pub fn needs_container_root(map: &IdMap) -> bool {
    !map.is_empty() && !crate::paths::is_root() && !crate::identity::in_ns_child()
}

/// Run `f` as the root of a container with `map` when
/// [`needs_container_root`] (files it makes are owned by the mapped host
/// ids, as LXC's unprivileged create does), else directly. The caller's own
/// ids are mapped too, so that its files stay reachable. `f` runs in its
/// own mount namespace.
pub fn as_container_root<T>(map: &IdMap, f: impl FnOnce() -> Result<T>) -> Result<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    if !needs_container_root(map) {
        return f();
    }
    // Scratch mounts go here: made by the caller, not by the container's root.
    crate::paths::ensure_dir(&crate::paths::run_dir().join("tmp"))?;
    let bytes = run_in_ns(&with_caller(map)?, true, || {
        // Its own mount namespace: a rootfs it mounts (an overlay) is gone with it.
        // SAFETY: unshare takes flags only and touches no memory; it changes only this (single-threaded, forked)
        // process.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(Error::io(
                "run as container root",
                "unshare(CLONE_NEWNS)",
                std::io::Error::last_os_error(),
            ));
        }
        let v = f()?;
        serde_json::to_vec(&v).map_err(|e| err!(Io, "run as container root", "{e}"))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| err!(Io, "run as container root", "{e}"))
}

/// Run `f` for a non-root caller in a user namespace that maps its own and
/// subordinate ids to themselves: it may then override permissions on files
/// owned by those ids (its containers' files) and on no others.
pub fn as_own_ids<T>(f: impl FnOnce() -> Result<T>) -> Result<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let bytes = run_in_ns(&caller_identity_map()?, false, || {
        let v = f()?;
        serde_json::to_vec(&v).map_err(|e| err!(Io, "run with own ids", "{e}"))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| err!(Io, "run with own ids", "{e}"))
}

/// Run `f` in a child process that is root in a new user namespace with
/// `map` (maps written by the parent, with newuidmap/newgidmap for a non-root
/// caller). Files the child creates or chowns to container id N are owned
/// by the host id N maps to: how a non-root user fills an unprivileged
/// rootfs. The child's error comes back as this call's error.
pub fn run_in_userns(map: &IdMap, f: impl FnOnce() -> Result<()>) -> Result<()> {
    run_in_userns_map(map, f)
}

/// The container id the caller's own uid and gid get in
/// [`run_in_userns_with_caller`]: the first id above every range of `map`.
pub fn caller_inside_id(map: &IdMap) -> u32 {
    map.uids
        .iter()
        .chain(map.gids.iter())
        .map(|r| r.inside_end())
        .max()
        .unwrap_or(0)
        .min(u32::MAX as u64 - 2) as u32
}

/// Like [`run_in_userns`], with the caller's own uid and gid also mapped
/// (to [`caller_inside_id`]), so that root in the namespace can read the
/// caller's files (a source tree or tarball) whatever their modes. Refused
/// when the map already uses the caller's ids.
pub fn run_in_userns_with_caller(map: &IdMap, f: impl FnOnce() -> Result<()>) -> Result<()> {
    run_in_userns_map(&with_caller(map)?, f)
}

/// `map` plus the caller's own uid and gid at [`caller_inside_id`], unless
/// the map already uses them.
fn with_caller(map: &IdMap) -> Result<IdMap> {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    if map.unmap_uid(uid).is_some() || map.unmap_gid(gid).is_some() {
        return Ok(map.clone());
    }
    let inside = caller_inside_id(map);
    let mut m = map.clone();
    m.uids.push(Range::new(inside, uid, 1));
    m.gids.push(Range::new(inside, gid, 1));
    m.validate()?;
    Ok(m)
}

fn run_in_userns_map(map: &IdMap, f: impl FnOnce() -> Result<()>) -> Result<()> {
    run_in_ns(map, true, || f().map(|()| Vec::new())).map(|_| ())
}

/// Run `f` in a child in a new user namespace with `map` (checked for the
/// caller); with `as_root` the child first becomes uid/gid 0 there (which
/// `map` must map), else it keeps its ids and the full capabilities a new
/// namespace gives. `f`'s bytes or error come back to the caller.
pub fn run_in_ns(map: &IdMap, as_root: bool, f: impl FnOnce() -> Result<Vec<u8>>) -> Result<Vec<u8>> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    const OP: &str = "run in user namespace";
    let _s = tracing::debug_span!("run in userns").entered();
    if as_root && (map.root_uid().is_none() || map.root_gid().is_none()) {
        return Err(err!(
            InvalidArgument,
            OP,
            "the id map does not map container root (uid and gid 0)"
        ));
    }
    map.check_caller()?;
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(OP, "pipe")?;
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(OP, "pipe")?;
    let (res_r, res_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(OP, "pipe")?;
    crate::identity::keep_host_euid();
    // SAFETY: the child runs `f` and leaves with _exit, never returning into the caller's stack.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io(OP, "fork", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: in the forked child: closing its copies of the parent's pipe ends, which the OwnedFds here never
        // close again (the child leaves through _exit, running no destructors).
        unsafe {
            libc::close(ready_r.as_raw_fd());
            libc::close(go_w.as_raw_fd());
            libc::close(res_r.as_raw_fd());
        }
        crate::identity::enter_ns_child();
        let mut out = std::fs::File::from(res_w);
        let res = (|| -> Result<Vec<u8>> {
            // SAFETY: unshare takes flags only and touches no memory.
            let ok = unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0;
            let mut w = std::fs::File::from(ready_w);
            let _ = w.write_all(&[ok as u8]);
            drop(w);
            if !ok {
                return Err(Error::io(OP, "unshare", std::io::Error::last_os_error()));
            }
            let mut b = [0u8; 1];
            if std::fs::File::from(go_r).read(&mut b).unwrap_or(0) != 1 || b[0] != 1 {
                return Err(err!(Io, OP, "the id maps were not written"));
            }
            if as_root {
                nix::unistd::setresgid(0.into(), 0.into(), 0.into()).ctx("setresgid", "0")?;
                nix::unistd::setresuid(0.into(), 0.into(), 0.into()).ctx("setresuid", "0")?;
            }
            // A panic must end here, never unwind into the caller's code in this forked copy.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err(err!(Io, OP, "panicked in the user namespace")))
        })();
        let code = match res {
            Ok(bytes) => {
                let _ = out.write_all(b"O").and_then(|()| out.write_all(&bytes));
                0
            }
            Err(e) => {
                let path = e.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                let _ = out.write_all(format!("E{:?}\x00{}\x00{path}\x00{}", e.kind, e.op, e.msg).as_bytes());
                1
            }
        };
        // SAFETY: _exit ends the forked child without unwinding into the caller's stack, which belongs to the
        // parent.
        unsafe { libc::_exit(code) };
    }
    drop(ready_w);
    drop(go_r);
    drop(res_w);
    let wait = || -> i32 {
        let mut st = 0;
        loop {
            // SAFETY: `st` is a live c_int for waitpid to write the status into, and `pid` is our own unreaped
            // child.
            let r = unsafe { libc::waitpid(pid, &mut st, 0) };
            if r == pid || (r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)) {
                return st;
            }
        }
    };
    let mut b = [0u8; 1];
    let unshared = std::fs::File::from(ready_r).read(&mut b).unwrap_or(0) == 1 && b[0] == 1;
    let mut go = std::fs::File::from(go_w);
    let written = if unshared { write_maps(pid, map) } else { Ok(()) };
    let _ = go.write_all(&[written.is_ok() as u8]);
    drop(go);
    let mut msg = Vec::new();
    let _ = std::fs::File::from(res_r).read_to_end(&mut msg);
    let st = wait();
    written?;
    if msg.first() == Some(&b'E') {
        let t = String::from_utf8_lossy(&msg[1..]);
        let mut it = t.splitn(4, '\x00');
        let (kind, op, path, m) = (
            it.next().unwrap_or(""),
            it.next().unwrap_or(OP),
            it.next().unwrap_or(""),
            it.next().unwrap_or(""),
        );
        use crate::error::ErrorKind as K;
        let kind = [
            K::InvalidName,
            K::InvalidSpec,
            K::InvalidConfig,
            K::InvalidArgument,
            K::NotFound,
            K::AlreadyExists,
            K::HasDependents,
            K::Busy,
            K::Unsupported,
            K::PermissionDenied,
            K::Command,
        ]
        .into_iter()
        .find(|k| format!("{k:?}") == kind)
        .unwrap_or(K::Io);
        let e = Error::new(kind, op, m);
        return Err(if path.is_empty() { e } else { e.at(path) });
    }
    if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 || msg.first() != Some(&b'O') {
        return Err(err!(Io, OP, "the child failed (wait status {st:#x})"));
    }
    msg.remove(0);
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn cfg(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn parses_current_and_legacy_keys() {
        let m = IdMap::from_config(&cfg(
            "lxc.uts.name = x\nlxc.idmap = u 0 100000 65536\nlxc.id_map = g 0 100000 65536\n",
        ))
        .unwrap();
        assert_eq!(
            m.uids,
            vec![Range {
                inside: 0,
                outside: 100000,
                count: 65536,
                line: "lxc.idmap = u 0 100000 65536".into()
            }]
        );
        assert_eq!(m.gids.len(), 1);
        assert_eq!(m.map_uid(0), Some(100000));
        assert_eq!(m.map_gid(65535), Some(165535));
        assert_eq!(m.map_uid(65536), None);
        assert_eq!(m.unmap_uid(100005), Some(5));
        assert_eq!(m.unmap_uid(99999), None);
        assert!(IdMap::from_config(&cfg("lxc.uts.name = x\n")).unwrap().is_empty());
    }

    #[test]
    fn both_kind_and_hole_map() {
        let m = IdMap::parse([
            "u 0 100000 1005",
            "u 1005 1005 1",
            "u 1006 101006 64530",
            "b 70000 300000 10",
        ])
        .unwrap();
        assert_eq!(m.map_uid(1004), Some(101004));
        assert_eq!(m.map_uid(1005), Some(1005));
        assert_eq!(m.map_uid(1006), Some(101006));
        assert_eq!(m.map_gid(70001), Some(300001));
        assert_eq!(m.map_gid(0), None);
        let s = m.to_shift();
        assert_eq!(s.map_uid(1005), Some(1005));
        assert_eq!(m.to_unshift().map_uid(101006), Some(1006));
        assert_eq!(
            m.config_values(),
            vec![
                "u 0 100000 1005",
                "u 1005 1005 1",
                "u 1006 101006 64530",
                "u 70000 300000 10",
                "g 70000 300000 10"
            ]
        );
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        for (v, want) in [
            ("u 0 100000", "expected"),
            ("x 0 100000 10", "kind"),
            ("u 0 100000 0", "count is zero"),
            ("u -1 100000 10", "not a number"),
            ("u 0 4294967290 10", "past the largest id"),
        ] {
            let e = IdMap::parse([v]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{v}");
            let msg = e.to_string();
            assert!(msg.contains(v) && msg.contains(want), "{v}: {msg}");
        }
    }

    #[test]
    fn overlaps_are_refused() {
        let e = IdMap::parse(["u 0 100000 65536", "u 1000 200000 10"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(
            e.to_string()
                .contains("lxc.idmap = u 1000 200000 10: container uids overlap"),
            "{e}"
        );
        let e = IdMap::parse(["g 0 100000 100", "g 100 100050 10"]).unwrap_err();
        assert!(e.to_string().contains("host gids overlap"), "{e}");
        // Adjacent ranges and a uid range over a gid range are fine.
        IdMap::parse(["u 0 100000 100", "u 100 100100 10", "g 0 100000 110"]).unwrap();
        // From a config, the offending config line is named.
        let e = IdMap::from_config(&cfg("lxc.idmap = u 0 100000 10\nlxc.id_map = u 5 200000 10\n")).unwrap_err();
        assert!(e.to_string().contains("lxc.idmap = u 5 200000 10"), "{e}");
    }

    fn user(uids: Vec<(u32, u32)>, gids: Vec<(u32, u32)>) -> SubIds {
        SubIds {
            name: "alice".into(),
            uid: 1005,
            gid: 1005,
            uids,
            gids,
            subuid_file: "/etc/subuid".into(),
            subgid_file: "/etc/subgid".into(),
        }
    }

    #[test]
    fn subid_files_by_name_or_uid_several_ranges() {
        let text = "# comment\nbob:100000:65536\nalice:200000:1000\n1005:201000:64536\nalice:bad:1\nalice:5:0\n";
        assert_eq!(parse_subid(text, "alice", 1005), vec![(200000, 1000), (201000, 64536)]);
        assert_eq!(parse_subid(text, "carol", 7), vec![]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("subuid"), text).unwrap();
        let s = SubIds::load(
            "alice",
            1005,
            1005,
            &dir.path().join("subuid"),
            &dir.path().join("nope"),
        )
        .unwrap();
        assert_eq!(s.uids.len(), 2);
        assert!(s.gids.is_empty());
    }

    #[test]
    fn ranges_checked_against_subordinate_ids() {
        let u = user(vec![(200000, 1000), (201000, 64536)], vec![(200000, 65536)]);
        // Spans two adjacent subuid lines.
        IdMap::parse(["u 0 200000 65536", "g 0 200000 65536"])
            .unwrap()
            .check_allowed(&u)
            .unwrap();
        // The own uid may map to itself (one id), as newuidmap allows.
        IdMap::parse([
            "u 0 200000 1005",
            "u 1005 1005 1",
            "u 1006 201006 64530",
            "g 0 200000 65536",
        ])
        .unwrap()
        .check_allowed(&u)
        .unwrap();
        // A range outside: the line is named.
        let e = IdMap::parse(["u 0 200000 65536", "g 0 100000 65536"])
            .unwrap()
            .check_allowed(&u)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("g 0 100000 65536"), "{e}");
        // Past the end by one.
        let e = IdMap::parse(["u 0 200000 65537"])
            .unwrap()
            .check_allowed(&u)
            .unwrap_err();
        assert!(e.to_string().contains("200000-265536"), "{e}");
        // Another host uid than one's own, even a single one, is refused.
        let e = IdMap::parse(["u 1005 1006 1"]).unwrap().check_allowed(&u).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        // No ranges at all.
        let e = IdMap::parse(["u 0 200000 10"])
            .unwrap()
            .check_allowed(&user(vec![], vec![]))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("no subordinate ids"), "{e}");
        // Root may map anything.
        let mut root = user(vec![], vec![]);
        root.uid = 0;
        IdMap::parse(["u 0 5 10"]).unwrap().check_allowed(&root).unwrap();
    }

    #[test]
    fn config_round_trip_and_helper_argv() {
        let m = IdMap::parse(["u 0 100000 65536", "g 0 100000 65536"]).unwrap();
        let mut c = cfg("lxc.uts.name = x\nlxc.id_map = u 0 1 1\n");
        m.write_to_config(&mut c);
        let text = c.to_string();
        assert_eq!(
            text,
            "lxc.uts.name = x\nlxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n"
        );
        assert_eq!(
            IdMap::from_config(&cfg(&text)).unwrap().config_values(),
            m.config_values()
        );
        IdMap::default().write_to_config(&mut c);
        assert_eq!(c.to_string(), "lxc.uts.name = x\n");
        assert_eq!(helper_args(42, &m.uids), vec!["42", "0", "100000", "65536"]);
    }
}
