//! Default locations, as LXC has them for root and for other users.

use crate::error::{IoContext, Result};
use std::path::{Path, PathBuf};

/// Whether the caller is root on the host (root in a user namespace of
/// [`crate::idmap::run_in_ns`] is not: it keeps the caller's paths).
pub fn is_root() -> bool {
    crate::identity::host_euid() == 0
}

/// `$HOME` of the calling user.
pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .or_else(|| user_by_uid(nix::unistd::geteuid().as_raw()).map(|(_, dir)| dir))
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Name and home directory of `uid`. The binary is linked statically (it
/// starts faster), so the C library only knows the passwd files: users from
/// other sources (LDAP, sssd) are asked of `getent`, which has them all.
pub fn user_by_uid(uid: u32) -> Option<(String, PathBuf)> {
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        return Some((u.name, u.dir));
    }
    let out = std::process::Command::new("getent")
        .args(["passwd", &uid.to_string()])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let line = String::from_utf8(out.stdout).ok()?;
    let f: Vec<&str> = line.trim_end().split(':').collect();
    (out.status.success() && f.len() >= 7).then(|| (f[0].to_string(), PathBuf::from(f[5])))
}

/// Global config directory: `/etc/lxc` for root, `~/.config/lxc` otherwise.
pub fn config_dir() -> PathBuf {
    if is_root() {
        PathBuf::from("/etc/lxc")
    } else {
        home().join(".config/lxc")
    }
}

/// `lxc.conf` path for the caller (`LXC_GLOBAL_CONF` overrides, for tests).
pub fn global_conf() -> PathBuf {
    std::env::var_os("LXC_GLOBAL_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| config_dir().join("lxc.conf"))
}

/// `default.conf` that seeds new containers' configs.
pub fn default_conf() -> PathBuf {
    config_dir().join("default.conf")
}

/// Built-in lxcpath before lxc.conf is consulted.
pub fn builtin_lxcpath() -> PathBuf {
    if is_root() {
        PathBuf::from("/var/lib/lxc")
    } else {
        home().join(".local/share/lxc")
    }
}

/// Cache dir: `/var/cache/lxc` for root, `~/.cache/lxc` otherwise.
pub fn cache_dir() -> PathBuf {
    if is_root() {
        PathBuf::from("/var/cache/lxc")
    } else {
        home().join(".cache/lxc")
    }
}

/// Runtime state (locks, run records, scratch mounts): never inside an
/// lxcpath, so that a failed command leaves the lxcpath untouched.
pub fn run_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STRATA_RUN_DIR") {
        return PathBuf::from(d);
    }
    if is_root() {
        PathBuf::from("/run/strata")
    } else if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        PathBuf::from(x).join("strata")
    } else {
        std::env::temp_dir().join(format!("strata-{}", crate::identity::host_euid()))
    }
}

/// A flat, unique file name for an lxcpath (used to key locks and state).
pub fn lxcpath_key(lxcpath: &Path) -> String {
    let s = lxcpath.display().to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '/' => out.push('_'),
            '_' => out.push_str("__"),
            c => out.push(c),
        }
    }
    out
}

/// A user works only in an lxcpath of its own: another user's (root's
/// included) is refused with a clear error before anything in it is read
/// or made. A missing lxcpath is fine (the user's command makes it).
pub fn check_own_lxcpath(lxcpath: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    const OP: &str = "check lxcpath";
    if is_root() {
        return Ok(());
    }
    let me = crate::identity::host_euid();
    let name = |uid: u32| user_by_uid(uid).map(|(n, _)| n).unwrap_or_else(|| format!("uid {uid}"));
    match std::fs::metadata(lxcpath) {
        Ok(m) if m.uid() == me => Ok(()),
        Ok(m) => Err(crate::err!(
            PermissionDenied,
            OP,
            "{} belongs to {}, not to {}: a user can only use its own containers",
            lxcpath.display(),
            name(m.uid()),
            name(me)
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // To be made: where it would go must be the user's to write in.
            let Some(anc) = lxcpath.ancestors().skip(1).find(|a| a.symlink_metadata().is_ok()) else {
                return Ok(());
            };
            let flags = nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK;
            match (nix::unistd::access(anc, flags), std::fs::metadata(anc)) {
                (Err(_), Ok(m)) if m.uid() != me => Err(crate::err!(
                    PermissionDenied,
                    OP,
                    "{} cannot be made: {} belongs to {}, not to {}: a user can only use its own containers",
                    lxcpath.display(),
                    anc.display(),
                    name(m.uid()),
                    name(me)
                )),
                _ => Ok(()),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(crate::err!(
            PermissionDenied,
            OP,
            "{} is out of reach for {} (permission denied): a user can only use its own containers",
            lxcpath.display(),
            name(me)
        )),
        Err(e) => Err(crate::error::Error::io(OP, lxcpath, e)),
    }
}

/// Make `dir` and its parents, private to the caller. Nearly always it
/// exists already (the run dir's lock and state dirs, asked for by every
/// command): one stat says so, where a recursive mkdir makes two calls.
/// A parent pruned ([`prune_dir`]) between two of its mkdirs is made again.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    let mut tries = 0;
    loop {
        match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < RETRIES => tries += 1,
            r => return r.ctx("create directory", dir),
        }
    }
}

/// How often a creator tries again after a prune removed its dir: each
/// retry follows a prune that succeeded, so only a dir removed and made
/// again this often in a row ends in an error.
const RETRIES: u32 = 1000;

/// Make something in a dir of the run dir that may be pruned ([`prune_dir`]):
/// `dir` is made first, and made again when a prune removed it before
/// `make` (an open with `O_CREAT`, a bind, a write) created its entry,
/// which then fails with `ENOENT`. Once the entry exists the dir is not
/// empty, and no prune removes it.
pub fn in_dir<T>(dir: &Path, op: &str, mut make: impl FnMut() -> std::io::Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        ensure_dir(dir)?;
        match make() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < RETRIES => tries += 1,
            r => return r.ctx(op, dir),
        }
    }
}

/// Remove a per-lxcpath dir of the run dir if it is empty (`rmdir` refuses
/// otherwise, atomically with any creation in it), so that the run dir
/// keeps nothing for an lxcpath once nothing is held or recorded in it.
/// Whoever creates in such a dir does it through [`in_dir`].
pub fn prune_dir(dir: &Path) {
    let _ = std::fs::remove_dir(dir);
}

/// A scratch directory under [`run_dir`], removed (if empty) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        let base = run_dir().join("tmp");
        ensure_dir(&base)?;
        for i in 0..1000u32 {
            let path = base.join(format!("{tag}-{}-{}-{i}", std::process::id(), unique()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(crate::error::Error::io("create scratch directory", &path, e)),
            }
        }
        Err(crate::err!(
            Io,
            "create scratch directory",
            "no free name under {}",
            base.display()
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// A short string unique within this process run.
/// The nearest directory at or above `p` that exists: where a planned path
/// (a rootfs, an image, an overlay dir) not made yet will live, so that its
/// filesystem can be asked about before anything is made.
pub fn nearest_existing_dir(p: &Path) -> &Path {
    let mut cur = p;
    while !std::fs::symlink_metadata(cur).is_ok_and(|m| m.is_dir()) {
        match cur.parent() {
            Some(parent) => cur = parent,
            None => return Path::new("/"),
        }
    }
    cur
}

pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", t, N.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn ensure_dir_makes_missing_dirs_private_and_leaves_existing_ones() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        ensure_dir(&d).unwrap();
        assert!(d.is_dir());
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&t.path().join("a")), 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750)).unwrap();
        ensure_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o750, "an existing dir is left as it is");
        // Through a symlink to a dir, as before.
        let l = t.path().join("link");
        std::os::unix::fs::symlink(&d, &l).unwrap();
        ensure_dir(&l).unwrap();
        // Something else in the way is an error, and stays as it was.
        let f = t.path().join("file");
        std::fs::write(&f, "x").unwrap();
        assert!(ensure_dir(&f).is_err());
        assert!(ensure_dir(&f.join("below")).is_err());
        assert_eq!(std::fs::read(&f).unwrap(), b"x");
    }

    /// A dir pruned between its making and the creation in it is made
    /// again; a creation that keeps failing ends in its error.
    #[test]
    fn in_dir_makes_again_a_dir_pruned_under_its_creator() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("lock/key");
        let mut calls = 0;
        let f = in_dir(&d, "open", || {
            calls += 1;
            if calls < 3 {
                // Another process's prune, just after our mkdir.
                prune_dir(&d);
            }
            std::fs::File::create(d.join("c"))
        })
        .unwrap();
        assert_eq!(calls, 3);
        assert!(d.join("c").is_file());
        drop(f);
        // Not empty: left alone.
        prune_dir(&d);
        assert!(d.is_dir());
        std::fs::remove_file(d.join("c")).unwrap();
        prune_dir(&d);
        assert!(!d.exists() && t.path().join("lock").is_dir());
        let mut calls = 0;
        let e = in_dir(&d, "open", || {
            calls += 1;
            std::fs::File::open(d.join("missing"))
        });
        assert!(e.is_err());
        assert_eq!(calls, RETRIES as usize + 1);
    }
}
