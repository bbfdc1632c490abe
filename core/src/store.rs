//! The container store: LXC 5's on-disk layout under an lxcpath.
//!
//! `$lxcpath/NAME/config`, `$lxcpath/NAME/rootfs`, snapshots as containers of
//! the lxcpath `$lxcpath/NAME/snaps` (`snapN/` with `config`, `ts`,
//! `comment`), and the dependency files `lxc_snapshots` (in the origin) and
//! `lxc_rdepends` (in the clone): line pairs `lxcpath` / `name`.

use crate::config::Config;
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::spec::RootfsSpec;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A reference to a container: where and what.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerRef {
    pub lxcpath: PathBuf,
    pub name: String,
}

impl ContainerRef {
    pub fn new(lxcpath: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        ContainerRef {
            lxcpath: lxcpath.into(),
            name: name.into(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.lxcpath.join(&self.name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("config")
    }

    /// Dependents recorded only as a count (the old `lxc_snapshots` form):
    /// known to exist, not known by name. Its `name` is empty.
    pub fn unknown(lxcpath: impl Into<PathBuf>) -> Self {
        ContainerRef::new(lxcpath, "")
    }

    /// True for an entry made by [`ContainerRef::unknown`].
    pub fn is_unknown(&self) -> bool {
        self.name.is_empty()
    }
}

impl std::fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_unknown() {
            write!(f, "unknown container(s) in {}", self.lxcpath.display())
        } else {
            write!(f, "{} (in {})", self.name, self.lxcpath.display())
        }
    }
}

/// A loaded container.
#[derive(Debug, Clone)]
pub struct Container {
    pub r: ContainerRef,
    pub config: Config,
    pub rootfs: RootfsSpec,
}

/// One snapshot of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// `snapN`
    pub name: String,
    /// `ts` as written (`%Y:%m:%d %H:%M:%S`).
    pub timestamp: String,
    pub comment: Option<String>,
    pub rootfs: RootfsSpec,
}

pub struct Store {
    lxcpath: PathBuf,
}

impl Store {
    pub fn new(lxcpath: impl Into<PathBuf>) -> Self {
        Store {
            lxcpath: lxcpath.into(),
        }
    }

    pub fn lxcpath(&self) -> &Path {
        &self.lxcpath
    }

    pub fn r(&self, name: &str) -> ContainerRef {
        ContainerRef::new(&self.lxcpath, name)
    }

    /// A container exists when `$lxcpath/NAME/config` does.
    pub fn exists(&self, name: &str) -> bool {
        self.r(name).config_path().is_file()
    }

    /// Names of the containers, sorted; staging and leftover entries skipped.
    /// A missing lxcpath holds no containers.
    pub fn list(&self) -> Result<Vec<String>> {
        const OP: &str = "list containers";
        let rd = match std::fs::read_dir(&self.lxcpath) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(OP, &self.lxcpath, e)),
        };
        let mut names = Vec::new();
        for e in rd {
            let e = e.ctx(OP, &self.lxcpath)?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                tracing::warn!(path = %e.path().display(), "skipping non-UTF-8 entry in lxcpath");
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if e.path().join("config").is_file() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Load config and rootfs spec. `NotFound` for an unknown container.
    pub fn load(&self, name: &str) -> Result<Container> {
        let _s = tracing::debug_span!("load container", name).entered();
        check_component(name)?;
        let r = self.r(name);
        let (config, rootfs) = load_dir(&r.dir(), || {
            err!(
                NotFound,
                "load container",
                "container {name} does not exist in {}",
                self.lxcpath.display()
            )
        })?;
        Ok(Container { r, config, rootfs })
    }

    /// The lxcpath holding `name`'s snapshots: `$lxcpath/NAME/snaps`.
    pub fn snaps_path(&self, name: &str) -> PathBuf {
        self.lxcpath.join(name).join("snaps")
    }

    /// Snapshots of `name`, sorted by number (any other container found in
    /// `snaps/` after them, by name, as LXC lists those too).
    pub fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>> {
        let _s = tracing::debug_span!("list snapshots", name).entered();
        check_component(name)?;
        if !self.exists(name) {
            return Err(err!(
                NotFound,
                "list snapshots",
                "container {name} does not exist in {}",
                self.lxcpath.display()
            ));
        }
        let snaps = Store::new(self.snaps_path(name));
        let mut names = snaps.list()?;
        names.sort_by_key(|n| match crate::names::validate_snapshot(n) {
            Ok(i) => (0, i, n.clone()),
            Err(_) => (1, 0, n.clone()),
        });
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let dir = snaps.lxcpath.join(&n);
            let (_, rootfs) = load_dir(&dir, || err!(NotFound, "list snapshots", "snapshot {n} vanished"))?;
            let ts_path = dir.join("ts");
            let timestamp = match std::fs::read_to_string(&ts_path) {
                Ok(s) => s.strip_suffix('\n').unwrap_or(&s).to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(Error::io("read snapshot timestamp", &ts_path, e)),
            };
            let c_path = dir.join("comment");
            let comment = match std::fs::read(&c_path) {
                Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io("read snapshot comment", &c_path, e)),
            };
            out.push(SnapshotInfo {
                name: n,
                timestamp,
                comment,
                rootfs,
            });
        }
        Ok(out)
    }

    /// First free `snapN` (gaps reused, as LXC does). Any entry of that name,
    /// even one without a config, makes the number taken.
    pub fn next_snapshot_name(&self, name: &str) -> Result<String> {
        check_component(name)?;
        let snaps = self.snaps_path(name);
        for i in 0u32.. {
            let p = snaps.join(format!("snap{i}"));
            match std::fs::symlink_metadata(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(format!("snap{i}")),
                Err(e) => return Err(Error::io("find next snapshot name", &p, e)),
                Ok(_) => continue,
            }
        }
        unreachable!("u32 snapshot numbers exhausted")
    }
}

/// Config and rootfs of the container in `dir`; `missing()` when it has no config.
fn load_dir(dir: &Path, missing: impl FnOnce() -> Error) -> Result<(Config, RootfsSpec)> {
    let cfg_path = dir.join("config");
    let config = match Config::load(&cfg_path) {
        Err(e) if e.kind() == crate::ErrorKind::NotFound => return Err(missing()),
        r => r?,
    };
    let value = match config.get("lxc.rootfs.path") {
        Some(v) => v.to_string(),
        // The key may come from an lxc.include.
        None => Config::load_effective(&cfg_path)?
            .get("lxc.rootfs.path")
            .map(str::to_string)
            .ok_or_else(|| err!(InvalidConfig, "load container", "no lxc.rootfs.path in config").at(&cfg_path))?,
    };
    let rootfs = RootfsSpec::parse(&value).map_err(|e| e.at(&cfg_path))?;
    Ok((config, rootfs))
}

const SNAPSHOTS_FILE: &str = "lxc_snapshots";
const RDEPENDS_FILE: &str = "lxc_rdepends";

/// A dependency file as read: the old count (0 if none) and the pairs.
#[derive(Debug, Default)]
struct DepFile {
    count: u64,
    refs: Vec<ContainerRef>,
}

impl DepFile {
    fn read(path: &Path) -> Result<DepFile> {
        const OP: &str = "read dependency file";
        let text = match std::fs::read(path) {
            Ok(b) => String::from_utf8(b).map_err(|_| err!(InvalidConfig, OP, "not valid UTF-8").at(path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DepFile::default()),
            Err(e) => return Err(Error::io(OP, path, e)),
        };
        let mut lines: Vec<&str> = text.lines().collect();
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        let mut f = DepFile::default();
        let mut rest = &lines[..];
        // The old form is a bare count; an lxcpath line is never all digits.
        if let Some(first) = rest.first() {
            let t = first.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                f.count = t
                    .parse()
                    .map_err(|_| err!(InvalidConfig, OP, "bad dependent count {t:?}").at(path))?;
                rest = &rest[1..];
            }
        }
        if !rest.len().is_multiple_of(2) {
            return Err(err!(
                InvalidConfig,
                OP,
                "expected lxcpath/name line pairs, found {} lines",
                rest.len()
            )
            .at(path));
        }
        for pair in rest.chunks(2) {
            if pair[0].is_empty() || pair[1].is_empty() {
                return Err(err!(InvalidConfig, OP, "empty lxcpath or name line").at(path));
            }
            let r = ContainerRef::new(pair[0], pair[1]);
            if !f.refs.contains(&r) {
                f.refs.push(r);
            }
        }
        Ok(f)
    }

    /// The entries, with one unknown entry standing for an old count.
    fn entries(&self, owner: &ContainerRef) -> Vec<ContainerRef> {
        let mut v = Vec::new();
        if self.count > 0 {
            v.push(ContainerRef::unknown(&owner.lxcpath));
        }
        v.extend(self.refs.iter().cloned());
        v
    }

    /// Rewrite atomically, or remove the file when nothing is left.
    fn write(&self, path: &Path) -> Result<()> {
        if self.count == 0 && self.refs.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove dependency file", path, e)),
                _ => Ok(()),
            };
        }
        let mut text = String::new();
        if self.count > 0 {
            text.push_str(&format!("{}\n", self.count));
        }
        for r in &self.refs {
            text.push_str(&format!("{}\n{}\n", r.lxcpath.display(), r.name));
        }
        write_atomic(path, text.as_bytes())
    }
}

/// A name usable as one path component under the lxcpath. Looser than
/// [`crate::names::validate`] so that staging entries can be loaded too.
fn check_component(name: &str) -> Result<()> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.contains('\n')
    {
        return Err(err!(InvalidName, "check name", "invalid container name {name:?}"));
    }
    Ok(())
}

fn check_ref(r: &ContainerRef, op: &str) -> Result<()> {
    check_component(&r.name)?;
    let p = r.lxcpath.to_str().unwrap_or("");
    if p.is_empty() || p.contains('\n') {
        return Err(err!(InvalidArgument, op, "lxcpath {:?} cannot be recorded", r.lxcpath));
    }
    Ok(())
}

/// Containers that depend on `origin` (from its `lxc_snapshots`). An old
/// count-only file gives one [`ContainerRef::unknown`] entry.
pub fn dependents(origin: &ContainerRef) -> Result<Vec<ContainerRef>> {
    Ok(DepFile::read(&origin.dir().join(SNAPSHOTS_FILE))?.entries(origin))
}

/// The containers `clone` depends on (from its `lxc_rdepends`).
pub fn depends_on(clone: &ContainerRef) -> Result<Vec<ContainerRef>> {
    Ok(DepFile::read(&clone.dir().join(RDEPENDS_FILE))?.entries(clone))
}

/// Record that `clone` depends on `origin`: appended to the origin's
/// `lxc_snapshots`, written (atomically) as the clone's `lxc_rdepends` in
/// `clone_dir` (which may be a staging dir). The origin is written first, so
/// a crash in between errs on the safe side (the origin refuses destroy).
/// Recording twice changes nothing. The caller holds the origin's lock.
pub fn add_dependency(origin: &ContainerRef, clone: &ContainerRef, clone_dir: &Path) -> Result<()> {
    const OP: &str = "record dependency";
    let _s = tracing::debug_span!("add dependency", origin = %origin, clone = %clone).entered();
    check_ref(origin, OP)?;
    check_ref(clone, OP)?;
    let snaps = origin.dir().join(SNAPSHOTS_FILE);
    let mut f = DepFile::read(&snaps)?;
    if !f.refs.contains(clone) {
        f.refs.push(clone.clone());
        f.write(&snaps)?;
    }
    let rdeps = clone_dir.join(RDEPENDS_FILE);
    let mut f = DepFile::read(&rdeps)?;
    if !f.refs.contains(origin) {
        f.refs.push(origin.clone());
        f.write(&rdeps)?;
    }
    Ok(())
}

/// Remove `clone` from `origin`'s `lxc_snapshots` (file removed when empty).
/// An old count-only file is decremented instead when `clone` is not listed.
pub fn remove_dependency(origin: &ContainerRef, clone: &ContainerRef) -> Result<()> {
    let _s = tracing::debug_span!("remove dependency", origin = %origin, clone = %clone).entered();
    let snaps = origin.dir().join(SNAPSHOTS_FILE);
    let mut f = DepFile::read(&snaps)?;
    let before = f.refs.len();
    f.refs.retain(|r| r != clone);
    if f.refs.len() == before {
        if f.count == 0 {
            return Ok(());
        }
        f.count -= 1;
    }
    f.write(&snaps)
}

/// Write `data` to `path` atomically: a temp file in the same directory,
/// fsync, rename, fsync of the directory. An existing file keeps its mode and
/// owner; a new one gets 0644. Refuses when `path` is a symlink.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_mode(path, data, 0o644)
}

/// [`write_atomic`] with the mode a new file gets (an existing file keeps its own).
pub fn write_atomic_mode(path: &Path, data: &[u8], new_mode: u32) -> Result<()> {
    const OP: &str = "write file";
    let (Some(dir), Some(fname)) = (path.parent(), path.file_name()) else {
        return Err(err!(InvalidArgument, OP, "not a file path").at(path));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let existing = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(err!(InvalidArgument, OP, "refusing to write through a symlink").at(path));
        }
        Ok(m) if !m.is_file() => return Err(err!(InvalidArgument, OP, "not a regular file").at(path)),
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(OP, path, e)),
    };
    let tmp = dir.join(format!(
        ".{}.strata-tmp-{}-{}",
        fname.to_string_lossy(),
        std::process::id(),
        crate::paths::unique()
    ));
    let res = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .ctx(OP, &tmp)?;
        f.write_all(data).ctx(OP, &tmp)?;
        let mode = existing.as_ref().map_or(new_mode, |m| m.mode() & 0o7777);
        if let Some(m) = &existing {
            // Keep the owner (e.g. a user's config edited by root); only root can.
            if nix::unistd::geteuid().is_root() {
                std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())).ctx(OP, &tmp)?;
            }
        }
        f.set_permissions(std::fs::Permissions::from_mode(mode)).ctx(OP, &tmp)?;
        f.sync_all().ctx(OP, &tmp)?;
        drop(f);
        std::fs::rename(&tmp, path).ctx(OP, path)?;
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return res;
    }
    std::fs::File::open(dir).and_then(|d| d.sync_all()).ctx(OP, dir)?;
    Ok(())
}
