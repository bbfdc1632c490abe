//! The container store: LXC 5's on-disk layout under an lxcpath.
//!
//! `$lxcpath/NAME/config`, `$lxcpath/NAME/rootfs`, snapshots as containers of
//! the lxcpath `$lxcpath/NAME/snaps` (`snapN/` with `config`, `ts`,
//! `comment`). The dependency files beside a container's config are
//! [`crate::depfile`].

use crate::config::Config;
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::lxcdir::LxcDir;
use crate::spec::RootfsSpec;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A reference to a container: where and what.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
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

    /// [`Store::load`] through `dir`, this store's lxcpath opened once (a
    /// listing of many containers): `None` when `name` has no config.
    pub fn load_in(&self, dir: &LxcDir, name: &str) -> Result<Option<Container>> {
        const OP: &str = "read config";
        check_component(name)?;
        let r = self.r(name);
        let Some(bytes) = dir.read(&format!("{name}/config"), crate::config::MAX_CONFIG_BYTES, OP)? else {
            return Ok(None);
        };
        let cfg_path = r.config_path();
        let text = String::from_utf8(bytes).map_err(|_| err!(InvalidConfig, OP, "not valid UTF-8").at(&cfg_path))?;
        let config = Config::parse(&text).map_err(|e| e.at(&cfg_path))?;
        let rootfs = rootfs_of(&config, None, &cfg_path)?;
        Ok(Some(Container { r, config, rootfs }))
    }

    /// [`Store::load`] with the key check of [`crate::config::check_keys`]
    /// from one read of the files: the container and its effective config.
    pub fn load_checked(&self, name: &str) -> Result<(Container, Config)> {
        let _s = tracing::debug_span!("load container", name).entered();
        check_component(name)?;
        let r = self.r(name);
        let cfg_path = r.config_path();
        let (eff, config) = match crate::config::check_keys_split(&cfg_path) {
            Err(e) if e.kind() == crate::ErrorKind::NotFound && !cfg_path.exists() => {
                return Err(err!(
                    NotFound,
                    "load container",
                    "container {name} does not exist in {}",
                    self.lxcpath.display()
                ))
            }
            r => r?,
        };
        let rootfs = rootfs_of(&config, Some(&eff), &cfg_path)?;
        Ok((Container { r, config, rootfs }, eff))
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

    /// When snapshot `snap` of `name` expires (Unix seconds, from the
    /// `expire` file strata writes beside its `ts`); `None` if it never does.
    pub fn snapshot_expiry(&self, name: &str, snap: &str) -> Result<Option<i64>> {
        const OP: &str = "read snapshot expiry";
        check_component(name)?;
        check_component(snap)?;
        let p = self.snaps_path(name).join(snap).join("expire");
        let b = match read_regular(&p, 64, OP) {
            Ok(b) => b,
            Err(e) if e.kind() == crate::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let t = std::str::from_utf8(&b).ok().and_then(|s| s.trim().parse::<i64>().ok());
        t.map(Some).ok_or_else(|| {
            err!(
                InvalidConfig,
                OP,
                "not a time in seconds: {:?}",
                String::from_utf8_lossy(&b)
            )
            .at(&p)
        })
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
    let rootfs = rootfs_of(&config, None, &cfg_path)?;
    Ok((config, rootfs))
}

/// The rootfs spec of a container config (`own`, the file's own lines):
/// its `lxc.rootfs.path`, else the one an include gives (from `effective`
/// when the caller has it, else read here).
fn rootfs_of(own: &Config, effective: Option<&Config>, cfg_path: &Path) -> Result<RootfsSpec> {
    let value = match own.get("lxc.rootfs.path") {
        Some(v) => v.to_string(),
        // The key may come from an lxc.include.
        None => {
            let read;
            let eff = match effective {
                Some(e) => e,
                None => {
                    read = Config::load_effective(cfg_path)?;
                    &read
                }
            };
            eff.get("lxc.rootfs.path")
                .map(str::to_string)
                .ok_or_else(|| err!(InvalidConfig, "load container", "no lxc.rootfs.path in config").at(cfg_path))?
        }
    };
    // LXC 2.0 kept the backend apart (`lxc.rootfs.backend = lvm`); its
    // updater folds it into the spec as a prefix, and so do we.
    let value = match own.get("lxc.rootfs.backend") {
        Some(b) if !b.is_empty() && value.starts_with('/') => format!("{b}:{value}"),
        _ => value,
    };
    RootfsSpec::parse(&value).map_err(|e| e.at(cfg_path))
}

/// The bytes of a regular file of at most `max` bytes. A fifo, socket,
/// device or directory is an error, never a read that blocks or does not end.
pub fn read_regular(path: &Path, max: u64, op: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    // Looked at before opening, so that a device is never opened, and after.
    let md = std::fs::metadata(path).ctx(op, path)?;
    if !md.is_file() {
        return Err(err!(InvalidConfig, op, "not a regular file").at(path));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .ctx(op, path)?;
    let md = f.metadata().ctx(op, path)?;
    if !md.is_file() {
        return Err(err!(InvalidConfig, op, "not a regular file").at(path));
    }
    // Room for the whole file and the end-of-file read: without it the
    // read starts at 32 bytes and doubles (a dozen reads for 50 KiB).
    let mut b = Vec::with_capacity(md.len().min(max) as usize + 1);
    f.take(max + 1).read_to_end(&mut b).ctx(op, path)?;
    if b.len() as u64 > max {
        return Err(err!(InvalidConfig, op, "larger than {} MiB", max >> 20).at(path));
    }
    Ok(b)
}

/// A name usable as one path component under the lxcpath. Looser than
/// [`crate::names::validate`] so that staging entries can be loaded too.
pub(crate) fn check_component(name: &str) -> Result<()> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::fs;

    /// A container dir with a rootfs dir and this config (the dependency
    /// files' tests use it too).
    pub(crate) fn mk(lxcpath: &Path, name: &str, config: &str) -> PathBuf {
        let d = lxcpath.join(name);
        fs::create_dir_all(d.join("rootfs")).unwrap();
        fs::write(d.join("config"), config).unwrap();
        d
    }

    pub(crate) fn dir_cfg(lxcpath: &Path, name: &str) -> String {
        format!(
            "lxc.uts.name = {name}\nlxc.rootfs.path = dir:{}/{name}/rootfs\n",
            lxcpath.display()
        )
    }

    #[test]
    fn list_skips_staging_and_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for n in ["zeta", "alpha", "mid"] {
            mk(p, n, &dir_cfg(p, n));
        }
        mk(p, ".strata-clone-x", "lxc.rootfs.path = /x\n");
        fs::create_dir(p.join("noconfig")).unwrap();
        fs::write(p.join("stray-file"), "x").unwrap();
        fs::create_dir_all(p.join("confdir/config")).unwrap(); // config is a dir
        let s = Store::new(p);
        assert_eq!(s.list().unwrap(), ["alpha", "mid", "zeta"]);
        assert!(s.exists("mid"));
        assert!(!s.exists("noconfig"));
        assert_eq!(Store::new(p.join("absent")).list().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn load_reads_rootfs_spec_current_and_legacy() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        mk(p, "c1", &dir_cfg(p, "c1"));
        mk(p, "old", "lxc.utsname = old\nlxc.rootfs = /srv/old/rootfs\n");
        mk(p, "ov", "lxc.rootfs.path = overlay:/l/rootfs:/u/overlay/delta\n");
        mk(p, "oldlvm", "lxc.rootfs = /dev/vg/oldlvm\nlxc.rootfs.backend = lvm\n");
        let inc = p.join("inc.conf");
        fs::write(&inc, "lxc.rootfs.path = btrfs:/b/rootfs\n").unwrap();
        mk(p, "viainclude", &format!("lxc.include = {}\n", inc.display()));
        let s = Store::new(p);
        let c = s.load("c1").unwrap();
        assert_eq!(c.r, ContainerRef::new(p, "c1"));
        assert_eq!(c.rootfs.to_string(), format!("dir:{}/c1/rootfs", p.display()));
        assert_eq!(c.config.get("lxc.uts.name"), Some("c1"));
        let o = s.load("old").unwrap();
        assert_eq!(o.rootfs.to_string(), "/srv/old/rootfs");
        assert_eq!(o.rootfs.kind(), "dir");
        assert_eq!(s.load("oldlvm").unwrap().rootfs.to_string(), "lvm:/dev/vg/oldlvm");
        assert_eq!(
            s.load("ov").unwrap().rootfs.overlay_parts(),
            Some(("/l/rootfs", "/u/overlay/delta"))
        );
        assert_eq!(s.load("viainclude").unwrap().rootfs.kind(), "btrfs");
    }

    #[test]
    fn load_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let s = Store::new(p);
        let e = s.load("ghost").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            format!("load container: container ghost does not exist in {}", p.display())
        );
        fs::create_dir(p.join("emptydir")).unwrap();
        assert_eq!(s.load("emptydir").unwrap_err().kind(), ErrorKind::NotFound);
        mk(p, "norootfs", "lxc.uts.name = norootfs\n");
        let e = s.load("norootfs").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.to_string().contains("lxc.rootfs.path"), "{e}");
        mk(p, "badspec", "lxc.rootfs.path = frob:/x\n");
        let e = s.load("badspec").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidSpec);
        assert!(e.to_string().contains("badspec/config"), "{e}");
        mk(p, "badline", "lxc.rootfs.path = /x\nwhat\n");
        assert_eq!(s.load("badline").unwrap_err().kind(), ErrorKind::InvalidConfig);
        for bad in ["", ".", "..", "../x", "a/b"] {
            assert_eq!(s.load(bad).unwrap_err().kind(), ErrorKind::InvalidName, "{bad:?}");
        }
    }

    fn mk_snap(p: &Path, name: &str, snap: &str, ts: Option<&str>, comment: Option<&str>) {
        let sp = p.join(name).join("snaps");
        let d = mk(
            &sp,
            snap,
            &format!("lxc.rootfs.path = dir:{}/{snap}/rootfs\n", sp.display()),
        );
        if let Some(ts) = ts {
            fs::write(d.join("ts"), ts).unwrap();
        }
        if let Some(c) = comment {
            fs::write(d.join("comment"), c).unwrap();
        }
    }

    #[test]
    fn snapshots_sorted_by_number_with_ts_and_comment() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        mk(p, "c", &dir_cfg(p, "c"));
        let s = Store::new(p);
        assert!(s.snapshots("c").unwrap().is_empty());
        assert_eq!(s.next_snapshot_name("c").unwrap(), "snap0");
        mk_snap(p, "c", "snap10", Some("2026:01:10 10:00:00"), None);
        mk_snap(
            p,
            "c",
            "snap2",
            Some("2026:01:02 10:00:00\n"),
            Some("second\nline two\n"),
        );
        mk_snap(p, "c", "snap0", Some("2026:01:01 10:00:00"), None);
        mk_snap(p, "c", "snap1", None, None);
        fs::create_dir_all(p.join("c/snaps/.strata-snap3")).unwrap();
        let v = s.snapshots("c").unwrap();
        let names: Vec<&str> = v.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["snap0", "snap1", "snap2", "snap10"]);
        assert_eq!(v[0].timestamp, "2026:01:01 10:00:00");
        assert_eq!(v[1].timestamp, "");
        assert_eq!(v[2].timestamp, "2026:01:02 10:00:00", "trailing newline tolerated");
        assert_eq!(v[2].comment.as_deref(), Some("second\nline two\n"));
        assert_eq!(v[0].comment, None);
        assert_eq!(
            v[3].rootfs.to_string(),
            format!("dir:{}/c/snaps/snap10/rootfs", p.display())
        );
        assert_eq!(s.snapshots("ghost").unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn next_snapshot_name_reuses_gaps() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        mk(p, "c", &dir_cfg(p, "c"));
        let s = Store::new(p);
        mk_snap(p, "c", "snap0", Some("t"), None);
        mk_snap(p, "c", "snap2", Some("t"), None);
        assert_eq!(s.next_snapshot_name("c").unwrap(), "snap1");
        // Any leftover entry takes the number, as in LXC.
        fs::write(p.join("c/snaps/snap1"), "").unwrap();
        assert_eq!(s.next_snapshot_name("c").unwrap(), "snap3");
    }
}
