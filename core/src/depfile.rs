//! Dependency files, as LXC 5 writes them: `lxc_snapshots` in an origin
//! lists the containers that depend on it (an overlay clone, a snapshot
//! clone), `lxc_rdepends` in a clone lists what it depends on; both are
//! line pairs `lxcpath` / `name` (an old `lxc_snapshots` holds a bare count
//! instead). Read strictly (a malformed file is an error, never taken as
//! none); a dependent is appended in one write, a removal rewrites the file
//! atomically; the engine edits them only under the lock of the container a
//! file belongs to (`engine/deps.rs`).

use crate::durable::write_atomic;
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::lxcdir::LxcDir;
use crate::store::{check_component, read_regular, ContainerRef};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const SNAPSHOTS_FILE: &str = "lxc_snapshots";
const RDEPENDS_FILE: &str = "lxc_rdepends";

/// Largest dependency file read (a line pair per clone).
const MAX_DEP_FILE_BYTES: u64 = 16 << 20;

/// A dependency file as read: the old count (0 if none) and the pairs.
#[derive(Debug, Default)]
struct DepFile {
    count: u64,
    refs: Vec<ContainerRef>,
}

impl DepFile {
    fn read(path: &Path) -> Result<DepFile> {
        const OP: &str = "read dependency file";
        let bytes = match read_regular(path, MAX_DEP_FILE_BYTES, OP) {
            Ok(b) => b,
            Err(e) if e.kind() == crate::ErrorKind::NotFound => return Ok(DepFile::default()),
            Err(e) => return Err(e),
        };
        DepFile::parse(bytes, || path.to_path_buf())
    }

    /// The file `rel` below `dir`'s lxcpath; missing is empty.
    fn read_in(dir: &LxcDir, rel: &str) -> Result<DepFile> {
        match dir.read(rel, MAX_DEP_FILE_BYTES, "read dependency file")? {
            // The path made only for an error: a listing reads thousands.
            Some(b) => DepFile::parse(b, || dir.path().join(rel)),
            None => Ok(DepFile::default()),
        }
    }

    fn parse(bytes: Vec<u8>, path: impl Fn() -> PathBuf) -> Result<DepFile> {
        const OP: &str = "read dependency file";
        let text = String::from_utf8(bytes).map_err(|_| err!(InvalidConfig, OP, "not valid UTF-8").at(path()))?;
        // Lines end at '\n' only, as written: an lxcpath may end in '\r'
        // and a name may be all blanks.
        let mut lines: Vec<&str> = text.split('\n').collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut f = DepFile::default();
        let mut rest = &lines[..];
        // The old form is a bare count, before any pairs: an odd number of
        // lines (a relative lxcpath may be all digits too).
        if let Some(first) = rest.first() {
            let t = first.trim();
            if !rest.len().is_multiple_of(2) && !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                f.count = t
                    .parse()
                    .map_err(|_| err!(InvalidConfig, OP, "bad dependent count {t:?}").at(path()))?;
                rest = &rest[1..];
            }
        }
        // An append cut short by a kill ([`append_pair`]) may leave an
        // lxcpath without its name: a name never holds a '/', so a last
        // line that does is that, and names no container.
        if !rest.len().is_multiple_of(2) && rest.last().is_some_and(|l| l.contains('/')) {
            rest = &rest[..rest.len() - 1];
        }
        if !rest.len().is_multiple_of(2) {
            return Err(err!(
                InvalidConfig,
                OP,
                "expected lxcpath/name line pairs, found {} lines",
                rest.len()
            )
            .at(path()));
        }
        // Duplicates dropped through a set (Path hashes as it compares, by
        // components): a search of the list per entry made reading 1 000
        // dependents cost milliseconds.
        // A clone's file holds one pair: no set for it.
        let mut seen = std::collections::HashSet::with_capacity(if rest.len() > 2 { rest.len() / 2 } else { 0 });
        for pair in rest.chunks(2) {
            if pair[0].is_empty() || pair[1].is_empty() {
                return Err(err!(InvalidConfig, OP, "empty lxcpath or name line").at(path()));
            }
            let r = ContainerRef::new(pair[0], pair[1]);
            if rest.len() <= 2 || seen.insert(r.clone()) {
                f.refs.push(r);
            }
        }
        Ok(f)
    }

    /// The entries, with one unknown entry standing for an old count.
    fn entries(self, lxcpath: &Path) -> Vec<ContainerRef> {
        if self.count == 0 {
            return self.refs;
        }
        let mut v = Vec::with_capacity(self.refs.len() + 1);
        v.push(ContainerRef::unknown(lxcpath));
        v.extend(self.refs);
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
    Ok(DepFile::read(&origin.dir().join(SNAPSHOTS_FILE))?.entries(&origin.lxcpath))
}

/// [`dependents`] of the container `name` of `dir`'s lxcpath, read through it.
pub fn dependents_in(dir: &LxcDir, name: &str) -> Result<Vec<ContainerRef>> {
    check_component(name)?;
    Ok(DepFile::read_in(dir, &format!("{name}/{SNAPSHOTS_FILE}"))?.entries(dir.path()))
}

/// [`depends_on`] of the container `name` of `dir`'s lxcpath, read through it.
pub fn depends_on_in(dir: &LxcDir, name: &str) -> Result<Vec<ContainerRef>> {
    check_component(name)?;
    Ok(DepFile::read_in(dir, &format!("{name}/{RDEPENDS_FILE}"))?.entries(dir.path()))
}

/// The containers `clone` depends on (from its `lxc_rdepends`).
pub fn depends_on(clone: &ContainerRef) -> Result<Vec<ContainerRef>> {
    Ok(DepFile::read(&clone.dir().join(RDEPENDS_FILE))?.entries(&clone.lxcpath))
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
    append_pair(&origin.dir().join(SNAPSHOTS_FILE), clone)?;
    let rdeps = clone_dir.join(RDEPENDS_FILE);
    let mut f = DepFile::read(&rdeps)?;
    if !f.refs.contains(origin) {
        f.refs.push(origin.clone());
        f.write(&rdeps)?;
    }
    Ok(())
}

/// Append the pair naming `r` to the dependency file `path` (made if
/// missing): one write at its end, so that recording a dependent costs the
/// same however many the file lists (a rewrite read and wrote all of them).
/// Readers drop duplicates. A kill inside the write can leave only a
/// prefix of the pair (a write is cut only where it crosses a page): an
/// lxcpath without its name, which the reader drops, or a name cut short,
/// which names a container that is not there (or, at worst, a real one,
/// whose origin then refuses a destroy more, never one less). A file whose
/// last line is not a whole name gets a newline or is rewritten whole first.
fn append_pair(path: &Path, r: &ContainerRef) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    const OP: &str = "record dependency";
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .ctx(OP, path)?;
    let md = f.metadata().ctx(OP, path)?;
    if !md.is_file() {
        return Err(err!(InvalidConfig, OP, "not a regular file").at(path));
    }
    let len = md.len();
    let mut text = Vec::new();
    // A file with another name too is replaced, never written through.
    let linked = {
        use std::os::unix::fs::MetadataExt;
        md.nlink() > 1
    };
    if linked || len > 0 {
        // The last line, from at most 8 KiB before the end.
        let n = len.min(8192);
        let mut tail = vec![0u8; n as usize];
        f.read_exact_at(&mut tail, len - n).ctx(OP, path)?;
        let whole = tail.last() == Some(&b'\n');
        let body = if whole { &tail[..tail.len() - 1] } else { &tail[..] };
        let last = match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => Some(&body[i + 1..]),
            None if n == len => Some(body),
            None => None,
        };
        match last {
            // A name (or the old count alone): append after it. Not after
            // an empty line, which the reader drops only at the end.
            Some(l) if !linked && !l.is_empty() && !l.contains(&b'/') => {
                if !whole {
                    text.push(b'\n');
                }
            }
            // An lxcpath without its name, or a line too long to judge here.
            _ => {
                drop(f);
                let mut d = DepFile::read(path)?;
                d.refs.push(r.clone());
                return d.write(path);
            }
        }
    }
    text.extend_from_slice(format!("{}\n{}\n", r.lxcpath.display(), r.name).as_bytes());
    // One write: cut short only by a kill where it crosses a page.
    f.write_all(&text).ctx(OP, path)?;
    if crate::durable::settle(&f, path, path)? && len == 0 {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ctx(OP, dir)?;
    }
    Ok(())
}

/// Remove `clone` from `origin`'s `lxc_snapshots` (file removed when empty).
/// An old count-only file is decremented instead when `clone` is not listed.
pub fn remove_dependency(origin: &ContainerRef, clone: &ContainerRef) -> Result<()> {
    const OP: &str = "read dependency file";
    let _s = tracing::debug_span!("remove dependency", origin = %origin, clone = %clone).entered();
    let snaps = origin.dir().join(SNAPSHOTS_FILE);
    let bytes = match read_regular(&snaps, MAX_DEP_FILE_BYTES, OP) {
        Ok(b) => b,
        Err(e) if e.kind() == crate::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match without_pair(&bytes, clone) {
        Some(None) => return Ok(()),
        Some(Some(rest)) if rest.is_empty() => return DepFile::default().write(&snaps),
        Some(Some(rest)) => return write_atomic(&snaps, &rest),
        // Any other form (an old count, an append cut short): parsed whole.
        None => {}
    }
    let mut f = DepFile::parse(bytes, || snaps.clone())?;
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

/// The dependency file `text` without the pairs naming `r`, when it is in
/// the plain form its writers leave (whole `lxcpath\nname\n` pairs, no empty
/// line, no old count): `Some(None)` when no pair names `r`. `None` for any
/// other form, which [`DepFile::parse`] reads. A removal from a file of 1 000
/// dependents then copies bytes instead of parsing every pair into paths.
fn without_pair(text: &[u8], r: &ContainerRef) -> Option<Option<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    if text.last() != Some(&b'\n') || text.first() == Some(&b'\n') || std::str::from_utf8(text).is_err() {
        return None;
    }
    let body = &text[..text.len() - 1];
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    if !lines.len().is_multiple_of(2) || lines.iter().any(|l| l.is_empty()) {
        return None;
    }
    let name = r.name.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut at = 0;
    for pair in lines.chunks(2) {
        let len = pair[0].len() + pair[1].len() + 2;
        // Compared as the parsed form compares: names exactly, lxcpaths as paths.
        let hit = pair[1] == name && Path::new(std::ffi::OsStr::from_bytes(pair[0])) == r.lxcpath;
        match (&mut out, hit) {
            (None, true) => out = Some(text[..at].to_vec()),
            (Some(o), false) => o.extend_from_slice(&text[at..at + len]),
            _ => {}
        }
        at += len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::store::tests::{dir_cfg, mk};
    use crate::store::Store;
    use std::fs;

    #[test]
    fn removal_from_a_plain_file_keeps_the_rest_byte_for_byte() {
        let d = tempfile::tempdir().unwrap();
        let o = ContainerRef::new(d.path(), "base");
        fs::create_dir_all(o.dir()).unwrap();
        let f = o.dir().join(SNAPSHOTS_FILE);
        // The same lxcpath written two ways names the same container.
        fs::write(&f, "/lp\na\n/lp//\nb\n/lp\nc\n/other\nb\n").unwrap();
        remove_dependency(&o, &ContainerRef::new("/lp", "b")).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "/lp\na\n/lp\nc\n/other\nb\n");
        remove_dependency(&o, &ContainerRef::new("/lp", "zz")).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "/lp\na\n/lp\nc\n/other\nb\n");
        remove_dependency(&o, &ContainerRef::new("/lp", "a")).unwrap();
        remove_dependency(&o, &ContainerRef::new("/lp", "c")).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "/other\nb\n");
        remove_dependency(&o, &ContainerRef::new("/other", "b")).unwrap();
        assert!(!f.exists(), "the last removal removes the file");
        // Other forms go through the parser: an old count, a cut-short append, an empty line.
        fs::write(&f, "2\n/lp\na\n").unwrap();
        remove_dependency(&o, &ContainerRef::new("/lp", "a")).unwrap();
        assert_eq!(dependents(&o).unwrap(), vec![ContainerRef::unknown(&o.lxcpath)]);
        fs::write(&f, "/lp\na\n/lp\nb\n/lp").unwrap();
        remove_dependency(&o, &ContainerRef::new("/lp", "a")).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "/lp\nb\n");
        fs::write(&f, "/lp\na\n\n/lp\nb\n").unwrap();
        assert!(
            remove_dependency(&o, &ContainerRef::new("/lp", "a")).is_err(),
            "a malformed file is an error"
        );
        assert_eq!(
            fs::read_to_string(&f).unwrap(),
            "/lp\na\n\n/lp\nb\n",
            "and left as it was"
        );
    }

    #[test]
    fn dependency_files_in_lxc_format() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        mk(p, "base", &dir_cfg(p, "base"));
        let c1 = mk(p, "c1", "lxc.rootfs.path = /x\n");
        let c2 = mk(p, "c2", "lxc.rootfs.path = /y\n");
        let (base, r1, r2) = (
            ContainerRef::new(p, "base"),
            ContainerRef::new(p, "c1"),
            ContainerRef::new(p, "c2"),
        );
        assert!(dependents(&base).unwrap().is_empty());
        add_dependency(&base, &r1, &c1).unwrap();
        add_dependency(&base, &r1, &c1).unwrap(); // appended again, read once
        add_dependency(&base, &r2, &c2).unwrap();
        let lx = p.display();
        assert_eq!(
            fs::read_to_string(p.join("base/lxc_snapshots")).unwrap(),
            format!("{lx}\nc1\n{lx}\nc1\n{lx}\nc2\n")
        );
        assert_eq!(
            fs::read_to_string(c1.join("lxc_rdepends")).unwrap(),
            format!("{lx}\nbase\n")
        );
        assert_eq!(dependents(&base).unwrap(), [r1.clone(), r2.clone()]);
        assert_eq!(depends_on(&r2).unwrap(), std::slice::from_ref(&base));
        remove_dependency(&base, &r1).unwrap();
        remove_dependency(&base, &r1).unwrap(); // already gone: no-op
        assert_eq!(dependents(&base).unwrap(), std::slice::from_ref(&r2));
        remove_dependency(&base, &r2).unwrap();
        assert!(!p.join("base/lxc_snapshots").exists(), "empty file removed");
        assert!(dependents(&base).unwrap().is_empty());
        // A trailing slash in a recorded lxcpath still matches.
        fs::write(p.join("base/lxc_snapshots"), format!("{lx}/\nc1\n\n")).unwrap();
        assert_eq!(dependents(&base).unwrap(), std::slice::from_ref(&r1));
        remove_dependency(&base, &r1).unwrap();
        assert!(!p.join("base/lxc_snapshots").exists());
    }

    #[test]
    fn add_dependency_into_staging_dir() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        mk(p, "base", &dir_cfg(p, "base"));
        let staging = p.join(".strata-new");
        fs::create_dir(&staging).unwrap();
        let (base, new) = (ContainerRef::new(p, "base"), ContainerRef::new(p, "new"));
        add_dependency(&base, &new, &staging).unwrap();
        assert_eq!(
            fs::read_to_string(staging.join("lxc_rdepends")).unwrap(),
            format!("{}\nbase\n", p.display())
        );
        assert_eq!(dependents(&base).unwrap(), [new]);
        let bad = ContainerRef::new(p, "../evil");
        assert_eq!(
            add_dependency(&base, &bad, &staging).unwrap_err().kind(),
            ErrorKind::InvalidName
        );
    }

    #[test]
    fn old_count_form_means_unknown_dependents() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        mk(p, "base", &dir_cfg(p, "base"));
        let base = ContainerRef::new(p, "base");
        let f = p.join("base/lxc_snapshots");
        fs::write(&f, "2\n").unwrap();
        let deps = dependents(&base).unwrap();
        assert_eq!(deps.len(), 1);
        assert!(deps[0].is_unknown());
        // A new dependent is added after the count, which is kept.
        let c = mk(p, "c", "lxc.rootfs.path = /x\n");
        let rc = ContainerRef::new(p, "c");
        add_dependency(&base, &rc, &c).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), format!("2\n{}\nc\n", p.display()));
        assert_eq!(dependents(&base).unwrap(), [ContainerRef::unknown(p), rc.clone()]);
        remove_dependency(&base, &rc).unwrap();
        // Removing someone not listed counts the old form down.
        remove_dependency(&base, &ContainerRef::new(p, "other")).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "1\n");
        remove_dependency(&base, &ContainerRef::new(p, "other")).unwrap();
        assert!(!f.exists());
        fs::write(&f, "0\n").unwrap();
        assert!(dependents(&base).unwrap().is_empty());
    }

    #[test]
    fn malformed_dependency_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        mk(p, "base", &dir_cfg(p, "base"));
        let base = ContainerRef::new(p, "base");
        let f = p.join("base/lxc_snapshots");
        for bad in ["lxc\n", "/a\nb\nc\n", "/a\n\n/c\nd\n"] {
            fs::write(&f, bad).unwrap();
            let e = dependents(&base).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{bad:?}");
            assert!(e.to_string().contains("lxc_snapshots"), "{e}");
            // Editing refuses too, leaving the file as it was.
            assert!(remove_dependency(&base, &ContainerRef::new(p, "b")).is_err());
            assert_eq!(fs::read_to_string(&f).unwrap(), bad);
        }
        fs::write(&f, "").unwrap();
        assert!(dependents(&base).unwrap().is_empty());
    }

    /// What a kill inside an append leaves is read as the pairs before it,
    /// and the next append writes after whole lines only.
    #[test]
    fn an_append_cut_short_is_read_and_appended_after() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        mk(p, "base", &dir_cfg(p, "base"));
        let base = ContainerRef::new(p, "base");
        let f = p.join("base/lxc_snapshots");
        let lx = p.display();
        let (r1, r2) = (ContainerRef::new(p, "c1"), ContainerRef::new(p, "c2"));
        let c2 = mk(p, "c2", "lxc.rootfs.path = /y\n");
        // An lxcpath without its name, with or without its newline: dropped,
        // and the file rewritten whole by the next append.
        for torn in [
            format!("{lx}\nc1\n{lx}\n"),
            format!("{lx}\nc1\n{lx}"),
            format!("{lx}\nc1\n/va"),
        ] {
            fs::write(&f, &torn).unwrap();
            assert_eq!(dependents(&base).unwrap(), std::slice::from_ref(&r1), "{torn:?}");
            add_dependency(&base, &r2, &c2).unwrap();
            assert_eq!(
                fs::read_to_string(&f).unwrap(),
                format!("{lx}\nc1\n{lx}\nc2\n"),
                "{torn:?}"
            );
        }
        // A last name without its newline gets one before the new pair.
        fs::write(&f, format!("{lx}\nc1")).unwrap();
        add_dependency(&base, &r2, &c2).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), format!("{lx}\nc1\n{lx}\nc2\n"));
        assert_eq!(dependents(&base).unwrap(), [r1.clone(), r2.clone()]);
        // A file with a second name is replaced, not written through.
        let other = p.join("other");
        fs::write(&f, format!("{lx}\nc1\n")).unwrap();
        fs::hard_link(&f, &other).unwrap();
        add_dependency(&base, &r2, &c2).unwrap();
        assert_eq!(fs::read_to_string(&other).unwrap(), format!("{lx}\nc1\n"));
        assert_eq!(fs::read_to_string(&f).unwrap(), format!("{lx}\nc1\n{lx}\nc2\n"));
        // A symlink is refused.
        fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink(&other, &f).unwrap();
        assert!(add_dependency(&base, &r2, &c2).is_err());
        assert_eq!(fs::read_to_string(&other).unwrap(), format!("{lx}\nc1\n"));
    }

    /// Reads what LXC itself writes, and writes dependency files as LXC does.
    #[test]
    fn interoperates_with_lxc() {
        let have_lxc = std::process::Command::new("lxc-create")
            .arg("--version")
            .output()
            .is_ok();
        if !have_lxc || !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root and LXC");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let tpl = p.join("tpl.sh");
        fs::write(&tpl, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&tpl, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let lxc = |args: &[&str]| {
            let st = std::process::Command::new(args[0])
                .arg("-P")
                .arg(p.join("lx"))
                .args(&args[1..])
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "{args:?}");
        };
        let cm = p.join("cm");
        fs::write(&cm, "a comment\n").unwrap();
        lxc(&["lxc-create", "-n", "c1", "-t", tpl.to_str().unwrap()]);
        lxc(&["lxc-snapshot", "-n", "c1", "-c", cm.to_str().unwrap()]);
        lxc(&["lxc-snapshot", "-n", "c1"]);
        lxc(&["lxc-copy", "-n", "c1", "-N", "c2", "-s", "-B", "overlay"]);
        let lx = p.join("lx");
        let s = Store::new(&lx);
        assert_eq!(s.list().unwrap(), ["c1", "c2"]);
        let c1 = s.load("c1").unwrap();
        assert_eq!(c1.rootfs.to_string(), format!("dir:{}/c1/rootfs", lx.display()));
        let text = fs::read_to_string(lx.join("c1/config")).unwrap();
        assert_eq!(c1.config.to_string(), text);
        let c2 = s.load("c2").unwrap();
        assert_eq!(
            c2.rootfs.overlay_parts(),
            Some((
                format!("{}/c1/rootfs", lx.display()).as_str(),
                format!("{}/c2/overlay/delta", lx.display()).as_str()
            ))
        );
        let snaps = s.snapshots("c1").unwrap();
        assert_eq!(snaps.len(), 2);
        assert_eq!((snaps[0].name.as_str(), snaps[1].name.as_str()), ("snap0", "snap1"));
        assert_eq!(snaps[0].comment.as_deref(), Some("a comment\n"));
        assert_eq!(snaps[1].comment, None);
        assert_eq!(
            snaps[0].timestamp.len(),
            "2026:01:01 10:00:00".len(),
            "{:?}",
            snaps[0].timestamp
        );
        assert_eq!(s.next_snapshot_name("c1").unwrap(), "snap2");
        let (r1, r2) = (s.r("c1"), s.r("c2"));
        assert_eq!(dependents(&r1).unwrap(), std::slice::from_ref(&r2));
        assert_eq!(depends_on(&r2).unwrap(), std::slice::from_ref(&r1));
        // Rewritten by strata, the files are byte-identical to LXC's.
        let lxc_snaps = fs::read(lx.join("c1/lxc_snapshots")).unwrap();
        let lxc_rdeps = fs::read(lx.join("c2/lxc_rdepends")).unwrap();
        remove_dependency(&r1, &r2).unwrap();
        fs::remove_file(lx.join("c2/lxc_rdepends")).unwrap();
        add_dependency(&r1, &r2, &lx.join("c2")).unwrap();
        assert_eq!(fs::read(lx.join("c1/lxc_snapshots")).unwrap(), lxc_snaps);
        assert_eq!(fs::read(lx.join("c2/lxc_rdepends")).unwrap(), lxc_rdeps);
    }
}
