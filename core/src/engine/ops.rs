//! The operations behind [`Engine`]'s public methods.

use super::fsutil::{self, remove_tree, rename_noreplace, write_atomic};
use super::{failpoint, CloneRequest, CreateRequest, DestroyRequest, Engine, RootfsSource};
use crate::backend::{Backend, BackendOpts, Opened, Target};
use crate::config::Config;
use crate::copy::{copy_tree, CopyOptions};
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::idmap::{as_container_root, needs_container_root, IdMap};
use crate::lock::{self, ContainerLock, LockSet};
use crate::names;
use crate::spec::RootfsSpec;
use crate::store::{self, Container, ContainerRef, Store};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(super) const TMP: &str = ".strata-tmp.";
pub(super) const DEL: &str = ".strata-del.";
pub(super) const OLD: &str = ".strata-old.";
pub(super) const REN: &str = ".strata-ren.";
/// What a staging or old dir holds, for reconcile.
pub(super) const RECORD: &str = ".strata-op";
/// A restore past its point of no return.
pub(super) const JOURNAL: &str = ".strata-restore";
const RENAME_CONFIG: &str = "config.strata-rename";
/// Second line of a rename journal whose rename is a copy, then a destroy
/// of the source.
pub(super) const RENAME_BY_COPY: &str = "copy";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Record {
    /// The final container dir the spec's paths are written against.
    pub dir: PathBuf,
    pub spec: Option<String>,
    /// `(origin, clone)` dependency recorded for this build.
    pub dep: Option<(ContainerRef, ContainerRef)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Journal {
    pub dir: PathBuf,
    pub old: PathBuf,
    pub old_spec: String,
    pub old_entries: Vec<String>,
    pub new_entries: Vec<String>,
    /// Origins the old rootfs depended on and the new one does not.
    pub drop_origins: Vec<ContainerRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Copy,
    Snapshot,
    /// Snapshot if the source's own backend can, else copy (lxc-snapshot, restore).
    Auto,
}

pub(super) struct Params<'a> {
    pub src: &'a Container,
    pub dst: &'a ContainerRef,
    pub mode: Mode,
    pub backend: Option<&'a str>,
    pub opts: &'a BackendOpts,
    pub keep_name: bool,
    pub keep_mac: bool,
    pub run_hooks: bool,
    pub progress: bool,
    pub readonly: bool,
    /// Extra files written into the staging dir (`ts`, `comment`).
    pub files: Vec<(&'static str, String)>,
    /// A map other than the source's for a copy (see [`super::CloneRequest::idmap`]).
    pub idmap: Option<&'a IdMap>,
}

/// A container built in its staging dir, not yet renamed into place.
pub(super) struct Staged {
    pub path: PathBuf,
    pub spec: RootfsSpec,
    pub config: Config,
    pub dep: Option<(ContainerRef, ContainerRef)>,
    /// The fsyncs of the files written while staging, done before the final rename.
    pub sync: Option<store::SyncBatch>,
}

/// What a step run under [`locked`] found: done, or more containers whose
/// locks it needs before it may change anything.
pub(super) enum Step<T> {
    Done(T),
    Need(Vec<ContainerRef>),
}

/// The value of a [`Step`], or return its `Need` from the enclosing step.
macro_rules! step {
    ($e:expr) => {
        match $e? {
            Step::Done(t) => t,
            Step::Need(v) => return Ok(Step::Need(v)),
        }
    };
}

/// Those of `refs` whose locks this thread does not hold (and could take).
pub(super) fn unlocked(refs: impl IntoIterator<Item = ContainerRef>) -> Vec<ContainerRef> {
    let mut v: Vec<ContainerRef> = refs
        .into_iter()
        .filter(|r| lock::lockable(r) && !lock::held(r))
        .collect();
    v.dedup();
    v
}

/// `Need` of those of `refs` not locked yet, if any.
pub(super) fn need<T>(refs: impl IntoIterator<Item = ContainerRef>) -> Option<Step<T>> {
    let v = unlocked(refs);
    (!v.is_empty()).then_some(Step::Need(v))
}

/// Run `f` holding the locks of `base` and of every container `f` asks for
/// (its `Need`): all are taken afresh, in one global order ([`LockSet`]),
/// so that no two operations deadlock, and `f` runs again from the start
/// (what it checked may have changed while no lock was held). `f` asks
/// before it changes anything.
pub(super) fn locked<T>(base: &[ContainerRef], mut f: impl FnMut() -> Result<Step<T>>) -> Result<T> {
    let mut want: Vec<ContainerRef> = base.to_vec();
    for _ in 0..16 {
        let _locks = LockSet::acquire(&want)?;
        match f()? {
            Step::Done(t) => return Ok(t),
            Step::Need(more) => {
                let n = want.len();
                for m in more {
                    if !want.contains(&m) {
                        want.push(m);
                    }
                }
                if want.len() == n {
                    break;
                }
                tracing::debug!("relocking with {} containers", want.len());
            }
        }
    }
    Err(err!(
        Busy,
        "lock containers",
        "the containers this operation depends on kept changing; try again"
    ))
}

/// The containers `r` and its snapshots depend on (their `lxc_rdepends`).
pub(super) fn origins_of(r: &ContainerRef) -> Vec<ContainerRef> {
    let mut v = store::depends_on(r).unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir(r.dir().join("snaps")) {
        let snaps = r.dir().join("snaps");
        for e in rd.flatten() {
            let s = ContainerRef::new(&snaps, e.file_name().to_string_lossy());
            v.extend(store::depends_on(&s).unwrap_or_default());
        }
    }
    v.retain(|o| !o.is_unknown());
    v.sort();
    v.dedup();
    v
}

/// Dependency files are rewritten only under the lock of the container
/// that holds them: a read-modify-write without it loses others' updates.
fn guarded(origin: &ContainerRef, op: &str) -> Result<()> {
    if !lock::lockable(origin) || lock::held(origin) {
        return Ok(());
    }
    Err(err!(Busy, op, "internal error: {origin} is not locked"))
}

/// [`store::add_dependency`], with the origin's lock held.
pub(super) fn add_dep(origin: &ContainerRef, clone: &ContainerRef, clone_dir: &Path) -> Result<()> {
    guarded(origin, "record dependency")?;
    store::add_dependency(origin, clone, clone_dir)
}

/// [`store::remove_dependency`], with the origin's lock held.
pub(super) fn remove_dep(origin: &ContainerRef, clone: &ContainerRef) -> Result<()> {
    guarded(origin, "update dependencies")?;
    store::remove_dependency(origin, clone)
}

pub(super) fn mkdir(p: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(p)
        .ctx("create directory", p)?;
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).ctx("create directory", p)
}

/// A fresh `$lxcpath/PREFIX NAME.XXXX` directory.
pub(super) fn make_aside(lxcpath: &Path, prefix: &str, name: &str, mode: u32) -> Result<PathBuf> {
    for _ in 0..100 {
        let p = aside_name(lxcpath, prefix, name)?;
        match std::fs::DirBuilder::new().mode(mode).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create staging directory", &p, e)),
        }
    }
    Err(err!(
        Io,
        "create staging directory",
        "no free name in {}",
        lxcpath.display()
    ))
}

/// A staging dir for a new container, laid out as LXC's do_create_container_dir
/// makes one: mode 0770 whatever the umask and, with id maps, owned by the
/// container's root (LXC's chown_mapped_root), who must get through it to the
/// rootfs when LXC starts the container. Root gives it the mapped root's uid
/// and gid here; a user's keeps the user's group, through which the user
/// still reaches it, and gets its owner from [`own_dir_as_container_root`].
fn make_container_dir(lxcpath: &Path, name: &str, map: &IdMap) -> Result<PathBuf> {
    let p = make_aside(lxcpath, TMP, name, 0o770)?;
    let res = std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o770))
        .ctx("create staging directory", &p)
        .and_then(|()| {
            if crate::paths::is_root() && !crate::idmap::in_ns_child() && !map.is_empty() {
                crate::shift::own_container_dir(&p, map)?;
            }
            Ok(())
        });
    if let Err(e) = res {
        let _ = std::fs::remove_dir(&p);
        return Err(e);
    }
    Ok(p)
}

/// For a user's container with id maps, run by the container's root (see
/// [`as_container_root`]): the container dir becomes its own, group kept.
fn own_dir_as_container_root(dir: &Path) -> Result<()> {
    std::os::unix::fs::lchown(dir, Some(0), None).ctx("chown container dir", dir)
}

/// A fresh `$lxcpath/PREFIX NAME.XXXX` path, noted as in flight before
/// the caller makes it (see [`crate::inflight`]).
pub(super) fn aside_name(lxcpath: &Path, prefix: &str, name: &str) -> Result<PathBuf> {
    let p = lxcpath.join(format!("{prefix}{name}.{}", crate::paths::unique()));
    crate::inflight::note(&p)?;
    Ok(p)
}

fn exists_any(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Containers that depend on `r` and still exist.
pub(super) fn live_dependents(r: &ContainerRef) -> Result<Vec<ContainerRef>> {
    Ok(store::dependents(r)?
        .into_iter()
        .filter(|d| d.is_unknown() || d.config_path().is_file())
        .collect())
}

fn describe(origin: &ContainerRef, deps: &[ContainerRef]) -> String {
    deps.iter()
        .map(|d| {
            if d.is_unknown() {
                d.to_string()
            } else if d.lxcpath == origin.lxcpath {
                d.name.clone()
            } else if d.lxcpath.file_name().is_some_and(|n| n == "snaps") {
                let owner = d.lxcpath.parent().and_then(|p| p.file_name()).unwrap_or_default();
                format!("{} (snapshot of {})", d.name, owner.to_string_lossy())
            } else {
                d.dir().display().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn refuse_dependents(op: &str, r: &ContainerRef, deps: &[ContainerRef]) -> Result<()> {
    if deps.is_empty() {
        return Ok(());
    }
    Err(err!(
        HasDependents,
        op,
        "container {} has dependents: {}",
        r.name,
        describe(r, deps)
    ))
}

/// The container whose rootfs dir is the (single) lower of an overlay spec.
fn lower_owner(spec: &RootfsSpec) -> Option<ContainerRef> {
    let (lower, _) = spec.overlay_parts()?;
    if lower.contains(':') {
        return None;
    }
    let lower = Path::new(lower);
    let cdir = lower.parent()?;
    if !cdir.join("config").is_file() {
        return None;
    }
    Some(ContainerRef::new(cdir.parent()?, cdir.file_name()?.to_str()?))
}

/// Top-level entries of `dir` that the spec's paths live in.
pub(super) fn entries_of(spec: &RootfsSpec, dir: &Path) -> Vec<String> {
    let mut paths: Vec<String> = match spec.overlay_parts() {
        Some((lower, upper)) => lower.split(':').chain([upper]).map(String::from).collect(),
        None if spec.source().starts_with('/') => vec![spec.source().to_string()],
        None => vec![],
    };
    let mut out: Vec<String> = Vec::new();
    for p in paths.drain(..) {
        if let Ok(rest) = Path::new(&p).strip_prefix(dir) {
            if let Some(first) = rest.components().next() {
                let s = first.as_os_str().to_string_lossy().into_owned();
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// Replace `old` with `new` wherever it appears as a whole path prefix.
pub(super) fn replace_dir(v: &str, old: &str, new: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find(old) {
        let after = &rest[i + old.len()..];
        let before_ok = i == 0 || matches!(rest.as_bytes()[i - 1], b' ' | b'\t' | b'=' | b':' | b',' | b'"');
        let after_ok = after.is_empty() || matches!(after.as_bytes()[0], b'/' | b' ' | b'\t' | b':' | b',' | b'"');
        out.push_str(&rest[..i]);
        out.push_str(if before_ok && after_ok { new } else { old });
        rest = after;
    }
    out.push_str(rest);
    out
}

pub(super) fn random_mac() -> String {
    let mut b = [0u8; 3];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// LXC's template MACs (`00:16:3e:xx:xx:xx`): each `x`/`X` a random hex
/// digit, the first octet kept unicast; LXC expands them when it writes a
/// new config, so that the container keeps one address.
pub(super) fn expand_hwaddrs(cfg: &mut Config) {
    cfg.rewrite(|k, v| {
        if !is_hwaddr(k) || !v.contains(['x', 'X']) {
            return None;
        }
        let mut rnd = vec![0u8; v.len()];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            use std::io::Read;
            let _ = f.read_exact(&mut rnd);
        }
        const HEX: &[u8] = b"0123456789abcdef";
        let mut out: Vec<u8> = v
            .bytes()
            .zip(&rnd)
            .map(|(c, r)| {
                if c == b'x' || c == b'X' {
                    HEX[(*r & 15) as usize]
                } else {
                    c
                }
            })
            .collect();
        // The second hex digit of the first octet holds the multicast bit.
        if v.as_bytes().get(1).is_some_and(|c| *c == b'x' || *c == b'X') {
            let d = (out[1] as char).to_digit(16).unwrap_or(0) & !1;
            out[1] = HEX[d as usize];
        }
        Some(String::from_utf8(out).unwrap_or_else(|_| v.to_string()))
    });
}

fn is_hwaddr(key: &str) -> bool {
    key.starts_with("lxc.net.") && key.ends_with(".hwaddr")
}

/// LXC's `ts`: local time `%Y:%m:%d %H:%M:%S`.
pub(super) fn timestamp() -> String {
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            c"%Y:%m:%d %H:%M:%S".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

pub(super) fn spec_of(cfg: &Config, dir: &Path) -> Result<RootfsSpec> {
    let v = cfg
        .get("lxc.rootfs.path")
        .ok_or_else(|| err!(InvalidConfig, "read config", "no lxc.rootfs.path").at(dir.join("config")))?;
    RootfsSpec::parse(v)
}

/// Whether a running container may be the source of a clone or snapshot:
/// only atomic copy-on-write snapshots see a consistent rootfs.
pub(super) fn may_snapshot_running(kind: &str, snapshot: bool) -> bool {
    snapshot && matches!(kind, "btrfs" | "zfs" | "lvm")
}

fn remove_lost_found(dir: &Path) {
    // A fresh filesystem holds only an empty lost+found; copy_tree wants an empty target.
    let lf = dir.join("lost+found");
    if let Ok(mut rd) = std::fs::read_dir(dir) {
        let only = rd
            .next()
            .is_some_and(|e| e.is_ok_and(|e| e.file_name() == "lost+found"))
            && rd.next().is_none();
        if only {
            let _ = std::fs::remove_dir(&lf);
        }
    }
}

fn template_path(t: &str) -> Result<PathBuf> {
    let p = if t.contains('/') {
        PathBuf::from(t)
    } else {
        PathBuf::from(format!("/usr/share/lxc/templates/lxc-{t}"))
    };
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(p),
        Ok(_) => Err(err!(
            InvalidArgument,
            "find template",
            "{} is not an executable file",
            p.display()
        )),
        Err(_) => Err(err!(
            NotFound,
            "find template",
            "template {t:?} not found ({})",
            p.display()
        )),
    }
}

/// Run template `tp` as LXC calls it: `--path=DIR --name=NAME --rootfs=ROOTFS`,
/// then the user's arguments.
fn run_template(tp: &Path, staging: &Path, name: &str, rootfs: &Path, args: &[String]) -> Result<()> {
    let _s = tracing::info_span!("template", path = %tp.display()).entered();
    let mut path_arg = std::ffi::OsString::from("--path=");
    path_arg.push(staging);
    let mut rootfs_arg = std::ffi::OsString::from("--rootfs=");
    rootfs_arg.push(rootfs);
    let st = Command::new(tp)
        .arg(path_arg)
        .arg(format!("--name={name}"))
        .arg(rootfs_arg)
        .args(args)
        .status()
        .ctx("run template", tp)?;
    if !st.success() {
        return Err(err!(Command, "run template", "{} failed: {st}", tp.display()));
    }
    Ok(())
}

/// For a copy made by the container's root (see [`as_container_root`]): the
/// caller's own files (seen as [`crate::idmap::caller_inside_id`]) become
/// the container root's, as a user's tree is its root's; container ids
/// stay as they are.
fn caller_as_root(map: &IdMap) -> crate::copy::IdShift {
    let me = crate::idmap::caller_inside_id(map);
    let t = |v: &[crate::idmap::Range]| {
        let mut out = vec![(me, 0, 1)];
        out.extend(v.iter().map(|r| (r.inside, r.inside, r.count)));
        out
    };
    crate::copy::IdShift {
        uids: t(&map.uids),
        gids: t(&map.gids),
    }
}

/// Move a container dir's entry (a rootfs) to another dir. The kernel wants
/// write access to a moved directory (its `..`): a user's unprivileged rootfs
/// belongs to the container's root, so the user moves it with its own ids mapped.
fn move_entry(from: &Path, to: &Path) -> Result<()> {
    match rename_noreplace(from, to) {
        Err(e)
            if e.kind() == crate::ErrorKind::PermissionDenied
                && !crate::paths::is_root()
                && !crate::idmap::in_ns_child() =>
        {
            // An error from inside names what failed; one from setting up says less than the first.
            crate::idmap::as_own_ids(|| rename_noreplace(from, to)).map_err(|r| if r.path.is_some() { r } else { e })
        }
        r => r,
    }
}

/// Refuse a tree that cannot fit in the new rootfs `b` plans for `t`; the
/// tree is only measured where the backend knows a limit.
fn check_fits(b: &dyn Backend, t: &Target, measure: impl FnOnce() -> Result<crate::copy::TreeUsage>) -> Result<()> {
    let Some(cap) = b.capacity(t) else {
        return Ok(());
    };
    let need = measure()?;
    let mib = |v: u64| v.div_ceil(1 << 20);
    if need.bytes > cap.bytes {
        return Err(err!(
            InvalidArgument,
            "plan rootfs",
            "the files need at least {} MiB but {} holds at most {} MiB; give a larger --fssize",
            mib(need.bytes),
            cap.what,
            mib(cap.bytes)
        ));
    }
    if let Some(max) = cap.inodes.filter(|m| need.inodes > *m) {
        return Err(err!(
            InvalidArgument,
            "plan rootfs",
            "the tree has {} entries but {} holds at most {max}; give a larger --fssize",
            need.inodes,
            cap.what
        ));
    }
    Ok(())
}

/// A copy into a sized rootfs that ran out of space: say so plainly.
fn no_space(b: &dyn Backend, e: Error) -> Error {
    let enospc = e.source.as_ref().and_then(|s| s.raw_os_error()) == Some(libc::ENOSPC);
    if !enospc || !b.caps().sized {
        return e;
    }
    err!(
        InvalidArgument,
        "copy",
        "the files do not fit in the new {} rootfs (no space left on it); give a larger --fssize",
        b.kind()
    )
}

/// Loop, LVM and zfs need root: a user asking for them gets a clear error.
fn check_backend_allowed(b: &dyn Backend) -> Result<()> {
    if b.caps().needs_root && !crate::paths::is_root() {
        return Err(err!(
            PermissionDenied,
            "check backend",
            "the {} backend needs root; a user may use dir, overlay or btrfs",
            b.kind()
        ));
    }
    Ok(())
}

impl Engine {
    fn backend_of(&self, spec: &RootfsSpec) -> Result<&dyn Backend> {
        self.backends.for_spec(spec)
    }

    /// Destroy what a failed build made and remove its staging dir. When
    /// the rootfs cannot be destroyed (an LV still open, say) the staging
    /// dir stays, with the record naming it, for a later reconcile: without
    /// it nothing would name the volume again. Returns whether it went.
    pub(super) fn abort_staging(&self, staging: &Path, final_dir: &Path, spec: Option<&RootfsSpec>) -> bool {
        if let Some(spec) = spec {
            let gone = self
                .backend_of(spec)
                .and_then(|b| b.destroy(&spec.rebase(final_dir, staging)));
            if let Err(e) = gone {
                tracing::warn!("cleanup of {spec}: {e}; {} left for a later command", staging.display());
                return false;
            }
        }
        if let Err(e) = remove_tree(staging) {
            tracing::warn!("cleanup of {}: {e}", staging.display());
        }
        true
    }

    // ---------------------------------------------------------------- create

    pub(super) fn do_create(&self, req: &CreateRequest) -> Result<Container> {
        const OP: &str = "create";
        names::validate(&req.name)?;
        let r = ContainerRef::new(&req.lxcpath, &req.name);
        let backend = self.backends.get(req.backend.as_deref().unwrap_or("dir"))?;
        match &req.source {
            RootfsSource::Empty => {}
            RootfsSource::Dir(p) if !p.is_dir() => {
                return Err(err!(NotFound, OP, "source directory does not exist").at(p));
            }
            RootfsSource::Tarball(p) if !p.is_file() => {
                return Err(err!(NotFound, OP, "tarball does not exist").at(p));
            }
            _ => {}
        }
        let seed = match &req.config_file {
            Some(f) => Config::load(f)?,
            None => {
                let d = crate::paths::default_conf();
                if d.is_file() {
                    Config::load(&d)?
                } else {
                    Config::default()
                }
            }
        };
        let template = req.template.as_deref().map(template_path).transpose()?;
        // A user's unprivileged container is filled by its root: checked before anything is made.
        let map = IdMap::from_config(&seed)?;
        map.check_caller()?;
        check_backend_allowed(backend)?;
        if !req.lxcpath.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&req.lxcpath)
                .ctx(OP, &req.lxcpath)?;
        }
        let _lock = ContainerLock::acquire(&r.lxcpath, &r.name)?;
        if exists_any(&r.dir()) {
            return Err(err!(AlreadyExists, OP, "container {} already exists", r.name).at(r.dir()));
        }
        let dir = r.dir();
        // Plan before making anything: bad options fail with the disk untouched.
        let probe = Target {
            name: &r.name,
            lxcpath: &r.lxcpath,
            dir: &dir,
            build_dir: &dir,
            opts: &req.opts,
        };
        let spec = backend.plan(&probe, None)?;
        if let RootfsSource::Dir(p) = &req.source {
            check_fits(backend, &probe, || crate::copy::tree_usage(p))?;
        }
        let staging = make_container_dir(&r.lxcpath, &r.name, &map)?;
        let res = (|| -> Result<Config> {
            write_record(&staging, &dir, Some(&spec), None, false)?;
            let t = Target {
                build_dir: &staging,
                ..probe
            };
            let mut cfg = seed.clone();
            expand_hwaddrs(&mut cfg);
            cfg.set("lxc.rootfs.path", &spec.to_string());
            cfg.set("lxc.uts.name", &r.name);
            let cfg_path = staging.join("config");
            // Written by the caller before the rootfs is filled: the config stays the caller's.
            cfg.save(&cfg_path)?;
            let shifted = needs_container_root(&map);
            as_container_root(&map, || {
                if shifted {
                    own_dir_as_container_root(&staging)?;
                }
                backend.create(&spec, &t)?;
                let building = t.building(&spec);
                let opened = Opened::open(backend, &building, false)?;
                if shifted {
                    // Made by the caller or by the backend: the container's root owns its top dir.
                    std::os::unix::fs::lchown(opened.path(), Some(0), Some(0)).ctx(OP, opened.path())?;
                }
                match &req.source {
                    RootfsSource::Empty => {}
                    RootfsSource::Dir(p) => {
                        remove_lost_found(opened.path());
                        let opts = CopyOptions {
                            shift: shifted.then(|| caller_as_root(&map)),
                            ..CopyOptions::default()
                        };
                        copy_tree(p, opened.path(), &opts).map_err(|e| no_space(backend, e))?;
                    }
                    RootfsSource::Tarball(p) => untar(p, opened.path())?,
                }
                if let Some(tp) = &template {
                    run_template(tp, &staging, &r.name, opened.path(), &req.template_args)?;
                }
                opened.close()
            })?;
            if shifted {
                crate::shift::record_shifted(&staging, &map)?;
            }
            if template.is_some() {
                cfg = Config::load(&cfg_path)?;
                let (s, d) = (staging.display().to_string(), dir.display().to_string());
                cfg.rewrite(|_, v| v.contains(&s).then(|| replace_dir(v, &s, &d)));
                expand_hwaddrs(&mut cfg);
                cfg.set("lxc.rootfs.path", &spec.to_string());
                if cfg.get("lxc.uts.name").is_none() {
                    cfg.set("lxc.uts.name", &r.name);
                }
                cfg.save(&cfg_path)?;
            }
            std::fs::remove_file(staging.join(RECORD)).ctx(OP, &staging)?;
            failpoint("create-before-rename");
            rename_noreplace(&staging, &dir)?;
            Ok(cfg)
        })();
        match res {
            Ok(config) => Ok(Container {
                r,
                config,
                rootfs: spec,
            }),
            Err(e) => {
                self.abort_staging(&staging, &dir, Some(&spec));
                Err(e)
            }
        }
    }

    // ----------------------------------------------------------------- clone

    /// Pick the backend and whether to snapshot, for `p`.
    fn choose(&self, p: &Params) -> Result<(&dyn Backend, bool)> {
        const OP: &str = "clone";
        let src = &p.src.rootfs;
        let src_b = self.backend_of(src)?;
        let can = |b: &dyn Backend| b.snapshotter().is_some_and(|s| s.can_snapshot(src));
        // The backend's own reason where it has one (a loop image on a host without reflinks).
        let why = |b: &dyn Backend| b.snapshotter().and_then(|s| s.refusal(src));
        match p.mode {
            Mode::Copy => Ok((
                p.backend.map(|k| self.backends.get(k)).transpose()?.unwrap_or(src_b),
                false,
            )),
            Mode::Auto => Ok((src_b, can(src_b))),
            Mode::Snapshot => {
                if let Some(k) = p.backend {
                    let b = self.backends.get(k)?;
                    if !can(b) {
                        return Err(why(b).unwrap_or_else(|| {
                            err!(
                                Unsupported,
                                OP,
                                "backend {} cannot make a snapshot of a {} rootfs",
                                b.kind(),
                                src.kind()
                            )
                        }));
                    }
                    Ok((b, true))
                } else if can(src_b) {
                    Ok((src_b, true))
                } else if src.kind() == "dir" {
                    let b = self.backends.get("overlay")?;
                    Ok((b, true))
                } else {
                    Err(why(src_b).unwrap_or_else(|| {
                        err!(
                            Unsupported,
                            OP,
                            "the {} backend cannot make snapshots; use a copy or -B",
                            src.kind()
                        )
                    }))
                }
            }
        }
    }

    /// Build a clone of `p.src` in a staging dir for `p.dst`. The caller holds
    /// the locks and has checked names and existence; the lock of the
    /// container the clone will depend on is asked for (`Need`) before
    /// anything is made.
    pub(super) fn stage_clone(&self, p: &Params) -> Result<Step<Staged>> {
        const OP: &str = "clone";
        let (dst_b, snapshot) = self.choose(p)?;
        let src_b = self.backend_of(&p.src.rootfs)?;
        let dir = p.dst.dir();
        let probe = Target {
            name: &p.dst.name,
            lxcpath: &p.dst.lxcpath,
            dir: &dir,
            build_dir: &dir,
            opts: p.opts,
        };
        let copy_opts;
        let probe = if snapshot {
            probe
        } else {
            copy_opts = BackendOpts {
                copy_of: Some(p.src.rootfs.clone()),
                ..p.opts.clone()
            };
            Target {
                opts: &copy_opts,
                ..probe
            }
        };
        let spec = dst_b.plan(&probe, snapshot.then_some(&p.src.rootfs))?;
        let mut cfg = Config::load(&p.src.r.config_path())?;
        // The clone has the source's map (a user's clone is made by the
        // container's root), unless root copies it into another one: then the
        // owners are shifted in the copy pass itself.
        let from = IdMap::from_config(&cfg)?;
        from.check_caller()?;
        let (map, shifting) = match p.idmap {
            Some(to) if !snapshot => {
                // The maps must share container ids: refused before anything is made.
                crate::shift::compose(&from, to)?;
                (to.clone(), true)
            }
            _ => (from.clone(), false),
        };
        check_backend_allowed(dst_b)?;
        let hooks = p.run_hooks && !cfg.get_all("lxc.hook.clone").is_empty();
        let hostname = format!("{}\n", p.dst.name);
        let origin = if spec.kind() == "overlay" {
            lower_owner(&spec)
        } else if snapshot && dst_b.snapshotter().is_some_and(|s| s.clone_depends_on_source()) {
            Some(p.src.r.clone())
        } else {
            None
        };
        let dep = origin.filter(|o| o != p.dst).map(|o| (o, p.dst.clone()));
        if let Some(n) = need(dep.iter().map(|(o, _)| o.clone())) {
            return Ok(n);
        }
        // A copy into a new filesystem of a given size (not an image copy of the same one).
        let resized = p.opts.fssize.is_some() || p.opts.fstype.is_some() || src_b.kind() != dst_b.kind();
        if !snapshot && resized {
            check_fits(dst_b, &probe, || {
                let s = Opened::open(src_b, &p.src.rootfs, true)?;
                let u = crate::copy::tree_usage(s.path())?;
                s.close()?;
                Ok(u)
            })?;
        }
        let staging = make_container_dir(&p.dst.lxcpath, &p.dst.name, &map)?;
        let shifted = needs_container_root(&map);
        let sync = store::SyncBatch::begin();
        let mut dep_added = false;
        let res = (|| -> Result<()> {
            write_record(&staging, &dir, Some(&spec), dep.as_ref(), false)?;
            let t = Target {
                build_dir: &staging,
                ..probe
            };
            let building = t.building(&spec);
            // Config: paths into the old container dir now point into the new one.
            let (old_s, new_s) = (p.src.r.dir().display().to_string(), dir.display().to_string());
            let keep_mac = p.keep_mac;
            cfg.rewrite(|k, v| {
                let mut out = replace_dir(v, &old_s, &new_s);
                if !keep_mac && is_hwaddr(k) && !v.contains(['x', 'X']) {
                    out = random_mac();
                }
                (out != v).then_some(out)
            });
            cfg.set("lxc.rootfs.path", &spec.to_string());
            if !p.keep_name {
                cfg.set("lxc.uts.name", &p.dst.name);
            }
            if shifting {
                map.write_to_config(&mut cfg);
            }
            cfg.save(&staging.join("config"))?;
            copy_referenced_files(&cfg, &p.src.r.dir(), &dir, &staging)?;
            for (name, data) in &p.files {
                write_atomic(&staging.join(name), data.as_bytes())?;
            }
            // Written before the rootfs: a snapshot that commits the filesystem (btrfs) makes
            // them durable too, with no fsync of their own.
            let commits = snapshot && dst_b.snapshotter().is_some_and(|s| s.commits_filesystem());
            let settled = if commits {
                sync.settle_before_commit(&staging)?
            } else {
                Vec::new()
            };
            // The rootfs, and where it can take the edit unmounted, the new hostname: in one go.
            let hostname_done = as_container_root(&map, || {
                if shifted {
                    own_dir_as_container_root(&staging)?;
                }
                if snapshot {
                    let s = dst_b.snapshotter().expect("chosen for its snapshotter");
                    s.snapshot(&p.src.rootfs, &spec, &t, p.readonly)?;
                } else {
                    // A whole-image or snapshot copy cannot change owners: shifting copies file by file.
                    let fast = match dst_b.fast_copier() {
                        Some(fc) if src_b.kind() == dst_b.kind() && !shifting => {
                            fc.fast_copy(&p.src.rootfs, &spec, &t)?
                        }
                        _ => false,
                    };
                    if !fast {
                        dst_b.create(&spec, &t)?;
                        let s = Opened::open(src_b, &p.src.rootfs, true)?;
                        let d = Opened::open(dst_b, &building, false)?;
                        remove_lost_found(d.path());
                        // From the owners as they are on disk: a mapped container
                        // started through an idmapped mount has them unshifted.
                        let shift = if shifting {
                            let disk = match crate::shift::ownership(&p.src.r.dir(), s.path(), &from)? {
                                crate::shift::Ownership::Shifted => from.clone(),
                                crate::shift::Ownership::Unshifted => IdMap::default(),
                            };
                            Some(crate::shift::compose(&disk, &map)?)
                        } else {
                            None
                        };
                        let opts = CopyOptions {
                            progress: p.progress,
                            shift,
                            ..CopyOptions::default()
                        };
                        copy_tree(s.path(), d.path(), &opts).map_err(|e| no_space(dst_b, e))?;
                        d.close()?;
                        s.close()?;
                    }
                }
                if p.keep_name || hooks {
                    return Ok(None);
                }
                dst_b.write_if_regular_unmounted(&building, "etc/hostname", hostname.as_bytes())
            })?;
            sync.committed(&settled);
            failpoint("clone-after-rootfs");
            // An overlay can take the edit in its upper dir: no mount needed.
            let need_mount = (!p.keep_name && hostname_done.is_none()) || hooks;
            if need_mount {
                as_container_root(&map, || {
                    let opened = Opened::open(dst_b, &building, false)?;
                    if !p.keep_name {
                        fsutil::write_in_rootfs_if_regular(opened.path(), "etc/hostname", hostname.as_bytes())?;
                    }
                    if p.run_hooks {
                        run_clone_hooks(&cfg, p, &dir, &staging, opened.path(), &building)?;
                    }
                    opened.close()
                })?;
            }
            if shifting && !map.is_empty() {
                crate::shift::record_shifted(&staging, &map)?;
            }
            if let Some((origin, clone)) = &dep {
                if !store::dependents(origin)?.contains(clone) {
                    add_dep(origin, clone, &staging)?;
                    dep_added = true;
                } else if !staging.join("lxc_rdepends").exists() {
                    let text = format!("{}\n{}\n", origin.lxcpath.display(), origin.name);
                    write_atomic(&staging.join("lxc_rdepends"), text.as_bytes())?;
                }
            }
            Ok(())
        })();
        match res {
            Ok(()) => Ok(Step::Done(Staged {
                path: staging,
                spec,
                config: cfg,
                dep: if dep_added { dep } else { None },
                sync: Some(sync),
            })),
            Err(e) => {
                if dep_added {
                    if let Some((o, c)) = &dep {
                        let _ = remove_dep(o, c);
                    }
                }
                self.abort_staging(&staging, &dir, Some(&spec));
                Err(e.ctx_op(OP))
            }
        }
    }

    /// Rename a staged clone into place.
    pub(super) fn finish_staged(&self, st: Staged, dst: &ContainerRef) -> Result<Container> {
        let dir = dst.dir();
        let res = (|| {
            if let Some(sync) = &st.sync {
                sync.commit()?;
            }
            std::fs::remove_file(st.path.join(RECORD)).ctx("clone", &st.path)?;
            failpoint("clone-before-rename");
            rename_noreplace(&st.path, &dir)?;
            Ok(())
        })();
        if let Err(e) = res {
            if let Some((o, c)) = &st.dep {
                let _ = remove_dep(o, c);
            }
            self.abort_staging(&st.path, &dir, Some(&st.spec));
            return Err(e);
        }
        Ok(Container {
            r: dst.clone(),
            config: st.config,
            rootfs: st.spec,
        })
    }

    pub(super) fn do_clone(&self, req: &CloneRequest) -> Result<Container> {
        const OP: &str = "clone";
        names::validate(&req.src.name)?;
        names::validate(&req.dst.name)?;
        if let Some(b) = &req.backend {
            self.backends.get(b)?;
        }
        if req.src == req.dst {
            return Err(err!(
                AlreadyExists,
                OP,
                "source and target are the same container {}",
                req.src.name
            ));
        }
        locked(&[req.src.clone(), req.dst.clone()], || self.clone_locked(req))
    }

    fn clone_locked(&self, req: &CloneRequest) -> Result<Step<Container>> {
        const OP: &str = "clone";
        let src_store = Store::new(&req.src.lxcpath);
        if !src_store.exists(&req.src.name) {
            return Err(err!(NotFound, OP, "container {} does not exist", req.src.name));
        }
        if exists_any(&req.dst.dir()) {
            return Err(err!(AlreadyExists, OP, "container {} already exists", req.dst.name).at(req.dst.dir()));
        }
        let src = src_store.load(&req.src.name)?;
        let running = crate::state::is_running(&req.src);
        if req.rename {
            if running {
                return Err(err!(Busy, OP, "container {} is running", req.src.name));
            }
            return self.rename(req, &src);
        }
        let from = IdMap::from_config(&src.config)?;
        from.check_caller()?;
        // Another map than the source's: owners are shifted while copying.
        let idmap = req
            .idmap
            .as_ref()
            .filter(|to| to.config_values() != from.config_values());
        let params = Params {
            src: &src,
            dst: &req.dst,
            mode: if req.snapshot { Mode::Snapshot } else { Mode::Copy },
            backend: req.backend.as_deref(),
            opts: &req.opts,
            keep_name: req.keep_name,
            keep_mac: req.keep_mac,
            run_hooks: req.run_hooks,
            progress: req.progress,
            readonly: false,
            files: vec![],
            idmap,
        };
        // Checked before anything is made: a bad -B/-s combination changes nothing.
        let (b, snap) = self.choose(&params)?;
        check_backend_allowed(b)?;
        if let Some(to) = idmap {
            to.validate()?;
            if !crate::paths::is_root() {
                return Err(err!(
                    PermissionDenied,
                    OP,
                    "a copy into another id map needs root (a user moves its containers between its own maps with strata convert)"
                ));
            }
            if snap {
                return Err(err!(
                    Unsupported,
                    OP,
                    "a snapshot clone shares its source's files and keeps its id map; copy without -s to shift owners"
                ));
            }
        }
        if running && !may_snapshot_running(b.kind(), snap) {
            return Err(err!(
                Busy,
                OP,
                "container {} is running; stop it first (only btrfs, zfs and lvm snapshots of a running container are allowed)",
                req.src.name
            ));
        }
        if !req.dst.lxcpath.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&req.dst.lxcpath)
                .ctx(OP, &req.dst.lxcpath)?;
        }
        let st = step!(self.stage_clone(&params));
        self.finish_staged(st, &req.dst).map(Step::Done)
    }

    /// `-R`: a directory rename plus config rewrite when the rootfs lives in
    /// the container dir (dir, overlay) of the same lxcpath; otherwise clone
    /// then destroy, as LXC does. MAC addresses are kept, as in LXC.
    fn rename(&self, req: &CloneRequest, src: &Container) -> Result<Step<Container>> {
        const OP: &str = "rename";
        // The origins' lxc_snapshots learn the new name (or lose the old one).
        if let Some(n) = need(origins_of(&req.src)) {
            return Ok(n);
        }
        let store = Store::new(&req.src.lxcpath);
        if !store.snapshots(&req.src.name)?.is_empty() {
            return Err(err!(
                Unsupported,
                OP,
                "renaming a container with snapshots is not supported"
            ));
        }
        refuse_dependents(OP, &req.src, &live_dependents(&req.src)?)?;
        let kind = src.rootfs.kind();
        let in_place = req.src.lxcpath == req.dst.lxcpath
            && matches!(kind, "dir" | "overlay")
            && !req.snapshot
            && req
                .backend
                .as_deref()
                .is_none_or(|b| self.backends.get(b).is_ok_and(|b| b.kind() == kind));
        if !in_place {
            // The source goes once the copy is made.
            self.backend_of(&src.rootfs)?.check_destroy(&src.rootfs)?;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&req.dst.lxcpath)
                .ctx(OP, &req.dst.lxcpath)?;
            let params = Params {
                src,
                dst: &req.dst,
                mode: if req.snapshot { Mode::Snapshot } else { Mode::Copy },
                backend: req.backend.as_deref(),
                opts: &req.opts,
                keep_name: req.keep_name,
                keep_mac: true,
                run_hooks: req.run_hooks,
                progress: req.progress,
                readonly: false,
                files: vec![],
                idmap: None,
            };
            // A journal: once the copy is in place, the next command
            // finishes a killed rename by destroying the source.
            let journal = (req.src.lxcpath == req.dst.lxcpath)
                .then(|| aside_name(&req.src.lxcpath, REN, &req.dst.name))
                .transpose()?;
            if let Some(j) = &journal {
                write_atomic(j, format!("{}\n{RENAME_BY_COPY}\n", req.src.name).as_bytes())?;
            }
            let drop_journal = || {
                if let Some(j) = &journal {
                    let _ = std::fs::remove_file(j);
                }
            };
            let res = self.stage_clone(&params).and_then(|st| match st {
                Step::Done(st) => self.finish_staged(st, &req.dst).map(Step::Done),
                Step::Need(v) => Ok(Step::Need(v)),
            });
            let c = match res {
                Ok(Step::Done(c)) => c,
                other => {
                    drop_journal();
                    return other;
                }
            };
            failpoint("rename-after-clone");
            let res = self.destroy_unchecked(&req.src.lxcpath, &req.src.name);
            drop_journal();
            res?;
            return Ok(Step::Done(c));
        }
        let (old_dir, new_dir) = (req.src.dir(), req.dst.dir());
        let (old_s, new_s) = (old_dir.display().to_string(), new_dir.display().to_string());
        let mut cfg = src.config.clone();
        cfg.rewrite(|_, v| v.contains(&old_s).then(|| replace_dir(v, &old_s, &new_s)));
        if !req.keep_name {
            cfg.set("lxc.uts.name", &req.dst.name);
        }
        let spec = spec_of(&cfg, &new_dir)?;
        cfg.save(&old_dir.join(RENAME_CONFIG))?;
        let journal = aside_name(&req.src.lxcpath, REN, &req.dst.name)?;
        let res = write_atomic(&journal, format!("{}\n", req.src.name).as_bytes())
            .and_then(|_| rename_noreplace(&old_dir, &new_dir));
        if let Err(e) = res {
            let _ = std::fs::remove_file(old_dir.join(RENAME_CONFIG));
            let _ = std::fs::remove_file(&journal);
            return Err(e);
        }
        failpoint("rename-after-move");
        finish_rename(&req.src.lxcpath, &req.src.name, &req.dst.name)?;
        let _ = std::fs::remove_file(&journal);
        if !req.keep_name {
            let b = self.backend_of(&spec)?;
            let o = Opened::open(b, &spec, false)?;
            fsutil::write_in_rootfs_if_regular(o.path(), "etc/hostname", format!("{}\n", req.dst.name).as_bytes())?;
            o.close()?;
        }
        Ok(Step::Done(Container {
            r: req.dst.clone(),
            config: cfg,
            rootfs: spec,
        }))
    }

    // -------------------------------------------------------------- snapshot

    pub(super) fn do_snapshot(&self, r: &ContainerRef, comment: Option<&str>) -> Result<String> {
        names::validate(&r.name)?;
        locked(std::slice::from_ref(r), || self.snapshot_locked(r, comment))
    }

    fn snapshot_locked(&self, r: &ContainerRef, comment: Option<&str>) -> Result<Step<String>> {
        const OP: &str = "snapshot";
        let store = Store::new(&r.lxcpath);
        if !store.exists(&r.name) {
            return Err(err!(NotFound, OP, "container {} does not exist", r.name));
        }
        let src = store.load(&r.name)?;
        let snaps = store.snaps_path(&r.name);
        let params = Params {
            src: &src,
            dst: &ContainerRef::new(&snaps, "snap0"),
            mode: Mode::Auto,
            backend: None,
            opts: &BackendOpts::default(),
            keep_name: true,
            keep_mac: true,
            run_hooks: false,
            progress: false,
            readonly: true,
            files: vec![],
            idmap: None,
        };
        if crate::state::is_running(r) {
            let (b, snap) = self.choose(&params)?;
            if !may_snapshot_running(b.kind(), snap) {
                return Err(err!(Busy, OP, "container {} is running; stop it first", r.name));
            }
        }
        let made_snaps = !snaps.is_dir();
        if made_snaps {
            mkdir(&snaps, 0o755)?;
        }
        let name = store.next_snapshot_name(&r.name)?;
        let dst = ContainerRef::new(&snaps, &name);
        let mut files = vec![("ts", timestamp())];
        if let Some(c) = comment {
            files.push(("comment", c.to_string()));
        }
        let params = Params {
            dst: &dst,
            files,
            ..params
        };
        let res = self.stage_clone(&params).and_then(|st| match st {
            Step::Done(st) => self.finish_staged(st, &dst).map(|_| Step::Done(name)),
            Step::Need(v) => Ok(Step::Need(v)),
        });
        if made_snaps && !matches!(res, Ok(Step::Done(_))) {
            let _ = std::fs::remove_dir(&snaps);
        }
        res
    }

    fn load_snapshot(&self, r: &ContainerRef, snap: &str) -> Result<Container> {
        names::validate_snapshot(snap)?;
        let ss = Store::new(Store::new(&r.lxcpath).snaps_path(&r.name));
        if !ss.exists(snap) {
            return Err(err!(NotFound, "restore", "container {} has no snapshot {snap}", r.name));
        }
        ss.load(snap)
    }

    pub(super) fn do_restore(&self, r: &ContainerRef, snap: &str, new_name: Option<&str>) -> Result<Container> {
        names::validate(&r.name)?;
        names::validate_snapshot(snap)?;
        if let Some(n) = new_name {
            names::validate(n)?;
        }
        let new_name = new_name.filter(|n| *n != r.name);
        let mut base = vec![r.clone()];
        base.extend(new_name.map(|n| ContainerRef::new(&r.lxcpath, n)));
        locked(&base, || self.restore_locked(r, snap, new_name))
    }

    fn restore_locked(&self, r: &ContainerRef, snap: &str, new_name: Option<&str>) -> Result<Step<Container>> {
        const OP: &str = "restore";
        let store = Store::new(&r.lxcpath);
        if let Some(n) = new_name {
            let dst = ContainerRef::new(&r.lxcpath, n);
            if !store.exists(&r.name) {
                return Err(err!(NotFound, OP, "container {} does not exist", r.name));
            }
            let s = self.load_snapshot(r, snap)?;
            if exists_any(&dst.dir()) {
                return Err(err!(AlreadyExists, OP, "container {n} already exists").at(dst.dir()));
            }
            // A new container beside the original: its own name and MAC addresses.
            let params = Params {
                src: &s,
                dst: &dst,
                mode: Mode::Auto,
                backend: None,
                opts: &BackendOpts::default(),
                keep_name: false,
                keep_mac: false,
                run_hooks: false,
                progress: false,
                readonly: false,
                files: vec![],
                idmap: None,
            };
            let st = step!(self.stage_clone(&params));
            return self.finish_staged(st, &dst).map(Step::Done);
        }
        if !store.exists(&r.name) {
            return Err(err!(NotFound, OP, "container {} does not exist", r.name));
        }
        // The origins the current rootfs depends on may lose it.
        if let Some(n) = need(store::depends_on(r)?) {
            return Ok(n);
        }
        let s = self.load_snapshot(r, snap)?;
        if crate::state::is_running(r) {
            return Err(err!(Busy, OP, "container {} is running; stop it first", r.name));
        }
        let snaps = store.snaps_path(&r.name);
        let deps: Vec<_> = live_dependents(r)?.into_iter().filter(|d| d.lxcpath != snaps).collect();
        refuse_dependents(OP, r, &deps)?;
        let cur = store.load(&r.name)?;
        // The current rootfs goes once the snapshot's is in place.
        self.backend_of(&cur.rootfs)?.check_destroy(&cur.rootfs)?;
        // As LXC: the snapshot's config (its name and MACs) under this container's name.
        let params = Params {
            src: &s,
            dst: r,
            mode: Mode::Auto,
            backend: None,
            opts: &BackendOpts::default(),
            keep_name: true,
            keep_mac: true,
            run_hooks: false,
            progress: false,
            readonly: false,
            files: vec![],
            idmap: None,
        };
        let mut st = step!(self.stage_clone(&params));
        let dir = r.dir();
        let new_all = entries_of(&st.spec, &dir);
        let new_entries: Vec<String> = new_all
            .iter()
            .filter(|e| exists_any(&st.path.join(e)))
            .cloned()
            .collect();
        let old_entries: Vec<String> = entries_of(&cur.rootfs, &dir)
            .into_iter()
            .filter(|e| new_entries.contains(e) || !new_all.contains(e))
            .collect();
        let mut old_made: Option<PathBuf> = None;
        let prep = (|| -> Result<Journal> {
            let new_origins: Vec<ContainerRef> = if st.path.join("lxc_rdepends").exists() {
                let staged = st.path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                store::depends_on(&ContainerRef::new(&r.lxcpath, staged))?
            } else {
                vec![]
            };
            let drop_origins = store::depends_on(r)?
                .into_iter()
                .filter(|o| !new_origins.contains(o))
                .collect();
            let old = make_aside(&r.lxcpath, OLD, &r.name, 0o700)?;
            old_made = Some(old.clone());
            let j = Journal {
                dir: dir.clone(),
                old,
                old_spec: cur.rootfs.to_string(),
                old_entries,
                new_entries,
                drop_origins,
            };
            let data = serde_json::to_vec(&j).map_err(|e| err!(Io, OP, "journal: {e}"))?;
            // From here on the restore is rolled forward, never back.
            write_atomic(&st.path.join(JOURNAL), &data)?;
            if let Some(sync) = st.sync.take() {
                sync.commit()?;
            }
            Ok(j)
        })();
        let j = match prep {
            Ok(j) => j,
            Err(e) => {
                if let Some(old) = old_made {
                    let _ = std::fs::remove_dir(old);
                }
                self.abort_staging(&st.path, &dir, Some(&st.spec));
                return Err(e);
            }
        };
        failpoint("restore-after-journal");
        self.roll_forward_restore(&st.path, &j)?;
        Ok(Step::Done(Container {
            r: r.clone(),
            config: st.config,
            rootfs: st.spec,
        }))
    }

    /// Finish a restore from its journal; every step can be repeated.
    pub(super) fn roll_forward_restore(&self, staging: &Path, j: &Journal) -> Result<()> {
        const OP: &str = "restore";
        // Once the journal goes, the old rootfs is only reachable through its record in the
        // old dir. Written before the swap, which the journal covers (reconcile leaves an old
        // dir alone while a journal names it): its sync is cheaper before renames of
        // subvolumes (after them btrfs commits the whole transaction for it).
        write_record(&j.old, &j.dir, Some(&RootfsSpec::parse(&j.old_spec)?), None, true)?;
        // A new entry's name still taken in the container dir (say an empty
        // `rootfs` mount point LXC leaves beside an overlay) goes aside too.
        let mut out: Vec<&String> = j.old_entries.iter().collect();
        out.extend(j.new_entries.iter().filter(|e| !j.old_entries.contains(e)));
        for e in out {
            let (from, to) = (j.dir.join(e), j.old.join(e));
            // An entry also in new_entries whose staging copy is gone is already the new one.
            let still_old = !j.new_entries.contains(e) || exists_any(&staging.join(e));
            if exists_any(&from) && !exists_any(&to) && still_old {
                move_entry(&from, &to).map_err(|e| e.ctx_op(OP))?;
            }
        }
        failpoint("restore-after-swap-out");
        for e in &j.new_entries {
            let from = staging.join(e);
            if exists_any(&from) {
                move_entry(&from, &j.dir.join(e))?;
            }
        }
        let rdep = staging.join("lxc_rdepends");
        if exists_any(&rdep) {
            std::fs::rename(&rdep, j.dir.join("lxc_rdepends")).ctx(OP, &rdep)?;
        } else if exists_any(&staging.join("config")) {
            let _ = std::fs::remove_file(j.dir.join("lxc_rdepends"));
        }
        let cfg = staging.join("config");
        if exists_any(&cfg) {
            std::fs::rename(&cfg, j.dir.join("config")).ctx(OP, &cfg)?;
        }
        // The old rootfs is destroyed next: on other storage, the swap must be on disk first.
        match RootfsSpec::parse(&j.old_spec) {
            Ok(old) if !entries_of(&old, &j.dir).is_empty() => fsutil::sync_dir(&j.dir),
            _ => fsutil::sync_dir_always(&j.dir),
        }
        failpoint("restore-after-swap-in");
        let clone = ContainerRef::new(
            j.dir.parent().unwrap_or(Path::new("/")),
            j.dir.file_name().unwrap_or_default().to_string_lossy(),
        );
        for o in &j.drop_origins {
            if let Err(e) = remove_dep(o, &clone) {
                tracing::warn!("update dependencies of {}: {e}", o.name);
            }
        }
        remove_tree(staging)?;
        self.destroy_old(&j.old)
    }

    /// Destroy the rootfs a restore moved aside, then its dir.
    pub(super) fn destroy_old(&self, old: &Path) -> Result<()> {
        if let Some(rec) = read_record(old) {
            if let Some(spec) = rec.spec.as_deref().map(RootfsSpec::parse).transpose()? {
                let b = self.backend_of(&spec)?;
                b.destroy(&spec.rebase(&rec.dir, old))?;
            }
        }
        remove_tree(old)
    }

    // --------------------------------------------------------------- destroy

    pub(super) fn do_destroy_snapshot(&self, r: &ContainerRef, snap: &str) -> Result<()> {
        names::validate(&r.name)?;
        if snap != "ALL" {
            names::validate_snapshot(snap)?;
        }
        locked(std::slice::from_ref(r), || self.destroy_snapshot_locked(r, snap))
    }

    fn destroy_snapshot_locked(&self, r: &ContainerRef, snap: &str) -> Result<Step<()>> {
        const OP: &str = "destroy snapshot";
        let store = Store::new(&r.lxcpath);
        if !store.exists(&r.name) {
            return Err(err!(NotFound, OP, "container {} does not exist", r.name));
        }
        // The origins of the snapshots lose them from their lxc_snapshots.
        if let Some(n) = need(origins_of(r)) {
            return Ok(n);
        }
        let snaps = store.snaps_path(&r.name);
        let list: Vec<String> = if snap == "ALL" {
            store.snapshots(&r.name)?.into_iter().map(|s| s.name).collect()
        } else {
            if !Store::new(&snaps).exists(snap) {
                return Err(err!(NotFound, OP, "container {} has no snapshot {snap}", r.name));
            }
            vec![snap.to_string()]
        };
        let sstore = Store::new(&snaps);
        // The container's own rootfs and snapshots, for backends whose destroy
        // hands dependents what they need (a zfs restore clones the snapshot).
        let mut family: Vec<RootfsSpec> = store.snapshots(&r.name)?.into_iter().map(|s| s.rootfs).collect();
        family.push(store.load(&r.name)?.rootfs);
        for s in &list {
            let sr = ContainerRef::new(&snaps, s);
            refuse_dependents(OP, &sr, &live_dependents(&sr)?)?;
            let spec = sstore.load(s)?.rootfs;
            let own = if self.backend_of(&spec)?.destroy_keeps_dependents() {
                family.clone()
            } else {
                vec![spec.clone()]
            };
            self.refuse_backend_dependents(OP, s, &spec, &own)?;
            self.backend_of(&spec)?.check_destroy(&spec)?;
        }
        for s in &list {
            self.destroy_unchecked(&snaps, s)?;
        }
        Ok(Step::Done(()))
    }

    pub(super) fn do_destroy(&self, req: &DestroyRequest) -> Result<()> {
        let r = &req.r;
        names::validate(&r.name)?;
        locked(std::slice::from_ref(r), || self.destroy_locked(req))
    }

    /// Under the container's lock: no clone can be added to it between the
    /// check of its dependents and its destroy (a clone takes its origin's lock).
    fn destroy_locked(&self, req: &DestroyRequest) -> Result<Step<()>> {
        const OP: &str = "destroy";
        let r = &req.r;
        let store = Store::new(&r.lxcpath);
        if !store.exists(&r.name) {
            return Err(err!(NotFound, OP, "container {} does not exist", r.name));
        }
        // The origins of it and of its snapshots lose them from their lxc_snapshots.
        if let Some(n) = need(origins_of(r)) {
            return Ok(n);
        }
        let snaps = store.snapshots(&r.name)?;
        if !snaps.is_empty() && !req.with_snapshots {
            let names: Vec<_> = snaps.iter().map(|s| s.name.as_str()).collect();
            return Err(err!(
                HasDependents,
                OP,
                "container {} has snapshots: {} (destroy them too with -s)",
                r.name,
                names.join(", ")
            ));
        }
        let snaps_path = store.snaps_path(&r.name);
        let deps: Vec<_> = live_dependents(r)?
            .into_iter()
            .filter(|d| !d.lxcpath.starts_with(&snaps_path))
            .collect();
        refuse_dependents(OP, r, &deps)?;
        for s in &snaps {
            let sr = ContainerRef::new(&snaps_path, &s.name);
            let deps: Vec<_> = live_dependents(&sr)?
                .into_iter()
                .filter(|d| !d.lxcpath.starts_with(&snaps_path) && d != r)
                .collect();
            refuse_dependents(OP, &sr, &deps)?;
        }
        // What the backend itself knows (clones of zfs snapshots, ...); our own snapshots go first.
        let mut own: Vec<RootfsSpec> = snaps.iter().map(|s| s.rootfs.clone()).collect();
        let cur = store.load(&r.name)?;
        own.push(cur.rootfs.clone());
        for (who, spec) in std::iter::once((r.name.clone(), cur.rootfs.clone())).chain(
            snaps
                .iter()
                .map(|s| (format!("{} (snapshot of {})", s.name, r.name), s.rootfs.clone())),
        ) {
            self.refuse_backend_dependents(OP, &who, &spec, &own)?;
        }
        // Refused before the container is moved aside: it stays as it is.
        for spec in &own {
            self.backend_of(spec)?.check_destroy(spec)?;
        }
        if let Some(rec) = crate::state::running(r) {
            if !req.force {
                return Err(err!(
                    Busy,
                    OP,
                    "container {} is running; stop it first or use -f",
                    r.name
                ));
            }
            kill_and_wait(r, &rec)?;
        }
        self.destroy_unchecked(&r.lxcpath, &r.name).map(Step::Done)
    }

    /// Refuse when the backend knows rootfs (outside `own`) that destroying `spec` would lose.
    fn refuse_backend_dependents(&self, op: &str, who: &str, spec: &RootfsSpec, own: &[RootfsSpec]) -> Result<()> {
        let deps: Vec<String> = self
            .backend_of(spec)?
            .dependents(spec)?
            .into_iter()
            .filter(|d| !own.contains(d))
            .map(|d| d.to_string())
            .collect();
        if deps.is_empty() {
            return Ok(());
        }
        Err(err!(
            HasDependents,
            op,
            "container {who} has dependents: {}",
            deps.join(", ")
        ))
    }

    /// Destroy a container whose checks are done and lock is held: renamed
    /// aside first so that it vanishes at once and a crash can be finished.
    pub(super) fn destroy_unchecked(&self, lxcpath: &Path, name: &str) -> Result<()> {
        let dir = lxcpath.join(name);
        // Refuse before the rename: a mount below would stop the removal half-way.
        let mut busy = fsutil::mounts_under(&dir);
        if let Ok(spec) = Config::load(&dir.join("config")).and_then(|c| spec_of(&c, &dir)) {
            if spec.kind() == "dir" && !spec.path().starts_with(&dir) {
                busy.extend(fsutil::mounts_under(&spec.path()));
            }
        }
        if let Some(m) = busy.first() {
            return Err(err!(Busy, "destroy", "{} is mounted; unmount it first", m.display()).at(&dir));
        }
        let del = aside_name(lxcpath, DEL, name)?;
        let elsewhere = rootfs_elsewhere(&dir);
        rename_noreplace(&dir, &del)?;
        if elsewhere {
            fsutil::sync_dir_always(lxcpath);
        } else {
            fsutil::sync_dir(lxcpath);
        }
        failpoint("destroy-after-rename");
        self.finish_destroy(&del, &dir)
    }

    /// Destroy the container that was at `orig_dir` and now is at `del`.
    pub(super) fn finish_destroy(&self, del: &Path, orig_dir: &Path) -> Result<()> {
        let snaps = del.join("snaps");
        if let Ok(rd) = std::fs::read_dir(&snaps) {
            let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
            names.sort();
            for n in names {
                let p = snaps.join(&n);
                if p.join("config").is_file() {
                    self.finish_destroy(&p, &orig_dir.join("snaps").join(&n))?;
                } else if n.to_string_lossy().starts_with(".strata-") {
                    self.reconcile_entry(&snaps, &n.to_string_lossy(), None)?;
                }
            }
        }
        let name = orig_dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let lxcpath = orig_dir.parent().unwrap_or(Path::new("/"));
        if let Ok(cfg) = Config::load(&del.join("config")) {
            if let Ok(spec) = spec_of(&cfg, del) {
                let b = self.backend_of(&spec)?;
                b.destroy(&spec.rebase(orig_dir, del))?;
            }
        }
        let del_ref = ContainerRef::new(
            del.parent().unwrap_or(Path::new("/")),
            del.file_name().unwrap_or_default().to_string_lossy(),
        );
        if let Ok(origins) = store::depends_on(&del_ref) {
            let me = ContainerRef::new(lxcpath, &name);
            for o in origins {
                if let Err(e) = remove_dep(&o, &me) {
                    tracing::warn!("update dependencies of {}: {e}", o.name);
                }
            }
        }
        remove_tree(del)
    }
}

/// Whether the container at `dir` or one of its snapshots has its rootfs
/// outside its own directory (an LV, a dataset, a dir elsewhere), or may:
/// then a rename before its destroy must reach the disk first, since no
/// filesystem orders it before changes to other storage.
fn rootfs_elsewhere(dir: &Path) -> bool {
    let outside = |d: &Path| {
        Config::load(&d.join("config"))
            .and_then(|c| spec_of(&c, d))
            .map_or(true, |spec| entries_of(&spec, d).is_empty())
    };
    if outside(dir) {
        return true;
    }
    let Ok(rd) = std::fs::read_dir(dir.join("snaps")) else {
        return false;
    };
    rd.flatten()
        .map(|e| e.path())
        .any(|p| p.join("config").is_file() && outside(&p))
}

fn kill_and_wait(r: &ContainerRef, rec: &crate::state::RunRecord) -> Result<()> {
    crate::state::signal_init(rec, libc::SIGKILL);
    for _ in 0..500 {
        if !crate::state::is_running(r) {
            // LXC's monitor tears down after init: its rootfs is ours once it is gone.
            if rec.by_lxc && !crate::lxc_cmd::wait_gone(&r.lxcpath, &r.name, std::time::Duration::from_secs(30)) {
                break;
            }
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(err!(Busy, "destroy", "container {} did not stop after SIGKILL", r.name))
}

pub(super) fn write_record(
    dir: &Path,
    final_dir: &Path,
    spec: Option<&RootfsSpec>,
    dep: Option<&(ContainerRef, ContainerRef)>,
    durable: bool,
) -> Result<()> {
    let rec = Record {
        dir: final_dir.to_path_buf(),
        spec: spec.map(|s| s.to_string()),
        dep: dep.cloned(),
    };
    let data = serde_json::to_vec(&rec).map_err(|e| err!(Io, "write record", "{e}"))?;
    if durable {
        return write_atomic(&dir.join(RECORD), &data);
    }
    // In a fresh staging dir: a torn record reads as none, and reconcile
    // then goes by the config or just removes the dir.
    std::fs::write(dir.join(RECORD), &data).ctx("write record", dir)
}

pub(super) fn read_record(dir: &Path) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(dir.join(RECORD)).ok()?).ok()
}

/// Second half of a rename: the renamed dir gets its rewritten config and
/// the origins it depends on learn the new name. Repeatable.
pub(super) fn finish_rename(lxcpath: &Path, old: &str, new: &str) -> Result<()> {
    let dir = lxcpath.join(new);
    let staged = dir.join(RENAME_CONFIG);
    if exists_any(&staged) {
        std::fs::rename(&staged, dir.join("config")).ctx("rename", &staged)?;
        fsutil::sync_dir(&dir);
    }
    let (old_r, new_r) = (ContainerRef::new(lxcpath, old), ContainerRef::new(lxcpath, new));
    for o in store::depends_on(&new_r).unwrap_or_default() {
        remove_dep(&o, &old_r)?;
        if !store::dependents(&o)?.contains(&new_r) {
            add_dep(&o, &new_r, &dir)?;
        }
    }
    Ok(())
}

fn untar(tarball: &Path, dst: &Path) -> Result<()> {
    let _s = tracing::info_span!("untar", tarball = %tarball.display()).entered();
    let out = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-xpf"])
        .arg(tarball)
        .arg("-C")
        .arg(dst)
        .output()
        .ctx("run tar", tarball)?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let line = msg.lines().next().unwrap_or("").trim();
        return Err(err!(Command, "unpack tarball", "tar failed: {line}").at(tarball));
    }
    Ok(())
}

/// Hook scripts and fstab files kept in the old container dir come along
/// (as LXC copies them), so that the rewritten paths name real files.
fn copy_referenced_files(cfg: &Config, old_dir: &Path, new_dir: &Path, staging: &Path) -> Result<()> {
    for (k, v) in cfg.entries() {
        if !(k.starts_with("lxc.hook.") || k == "lxc.mount.fstab") {
            continue;
        }
        let Some(first) = v.split_whitespace().next() else {
            continue;
        };
        let Ok(rel) = Path::new(first).strip_prefix(new_dir) else {
            continue;
        };
        if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            continue;
        }
        let src = old_dir.join(rel);
        let dst = staging.join(rel);
        if exists_any(&dst) {
            continue;
        }
        match std::fs::symlink_metadata(&src) {
            Ok(m) if m.is_file() => {
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent).ctx("copy hook", parent)?;
                }
                std::fs::copy(&src, &dst).ctx("copy hook", &src)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn run_clone_hooks(
    cfg: &Config,
    p: &Params,
    dir: &Path,
    staging: &Path,
    mount: &Path,
    building: &RootfsSpec,
) -> Result<()> {
    let (d, s) = (dir.display().to_string(), staging.display().to_string());
    for hook in cfg.get_all("lxc.hook.clone") {
        let cmd = replace_dir(hook, &d, &s);
        let _span = tracing::info_span!("clone hook", hook = %cmd).entered();
        let st = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{cmd} {} lxc clone", p.dst.name))
            .env("LXC_SRC_NAME", &p.src.r.name)
            .env("LXC_NAME", &p.dst.name)
            .env("LXC_CONFIG_FILE", staging.join("config"))
            .env("LXC_ROOTFS_MOUNT", mount)
            .env("LXC_ROOTFS_PATH", building.to_string())
            .status()
            .ctx("run clone hook", Path::new(hook))?;
        if !st.success() {
            return Err(err!(Command, "run clone hook", "{hook:?} failed: {st}"));
        }
    }
    Ok(())
}

trait CtxOp {
    fn ctx_op(self, op: &str) -> Self;
}

impl CtxOp for Error {
    fn ctx_op(mut self, op: &str) -> Self {
        if self.op.is_empty() {
            self.op = op.to_string();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_macs_expand_once_and_stay_unicast() {
        let mut c = Config::parse(
            "lxc.net.0.hwaddr = 00:16:3e:xx:xx:xx\nlxc.net.1.hwaddr = xx:XX:xx:xx:xx:xx\nlxc.net.2.hwaddr = 00:16:3e:01:02:03\n",
        )
        .unwrap();
        for _ in 0..50 {
            let mut e = c.clone();
            expand_hwaddrs(&mut e);
            let a = e.get("lxc.net.0.hwaddr").unwrap().to_string();
            assert!(a.starts_with("00:16:3e:") && !a.contains('x') && a.len() == 17, "{a}");
            let b = e.get("lxc.net.1.hwaddr").unwrap();
            let first = u8::from_str_radix(&b[..2], 16).unwrap();
            assert_eq!(first & 1, 0, "multicast MAC {b}");
            assert_eq!(e.get("lxc.net.2.hwaddr"), Some("00:16:3e:01:02:03"));
        }
        expand_hwaddrs(&mut c);
        let once = c.get("lxc.net.0.hwaddr").unwrap().to_string();
        expand_hwaddrs(&mut c);
        assert_eq!(c.get("lxc.net.0.hwaddr").unwrap(), once);
    }

    #[test]
    fn replace_dir_only_whole_path_prefixes() {
        let (o, n) = ("/l/c1", "/l/c2");
        assert_eq!(replace_dir("/l/c1/hook.sh", o, n), "/l/c2/hook.sh");
        assert_eq!(replace_dir("/l/c1", o, n), "/l/c2");
        assert_eq!(
            replace_dir("/l/c1/data srv none bind 0 0", o, n),
            "/l/c2/data srv none bind 0 0"
        );
        assert_eq!(
            replace_dir("overlay o lowerdir=/x,upperdir=/l/c1/up,workdir=/l/c1/w", o, n),
            "overlay o lowerdir=/x,upperdir=/l/c2/up,workdir=/l/c2/w"
        );
        assert_eq!(replace_dir("/l/c10/x", o, n), "/l/c10/x");
        assert_eq!(replace_dir("/xl/c1/x", o, n), "/xl/c1/x");
        assert_eq!(replace_dir("/srv/l/c1/x", o, n), "/srv/l/c1/x");
    }

    #[test]
    fn entries_under_the_container_dir() {
        let d = Path::new("/l/c");
        let s = RootfsSpec::parse("overlay:/l/o/rootfs:/l/c/overlay/delta").unwrap();
        assert_eq!(entries_of(&s, d), ["overlay"]);
        let s = RootfsSpec::parse("overlay:/l/c/rootfs:/l/c/overlay/delta").unwrap();
        assert_eq!(entries_of(&s, d), ["rootfs", "overlay"]);
        assert_eq!(entries_of(&RootfsSpec::parse("/l/c/rootfs").unwrap(), d), ["rootfs"]);
        assert!(entries_of(&RootfsSpec::parse("zfs:p/c").unwrap(), d).is_empty());
        assert!(entries_of(&RootfsSpec::parse("dir:/srv/x").unwrap(), d).is_empty());
    }

    #[test]
    fn macs_and_timestamps_have_lxc_shapes() {
        let m = random_mac();
        assert!(m.starts_with("00:16:3e:") && m.len() == 17, "{m}");
        let t = timestamp();
        let b = t.as_bytes();
        assert_eq!(t.len(), 19, "{t}");
        assert_eq!((b[4], b[7], b[10], b[13], b[16]), (b':', b':', b' ', b':', b':'));
    }
}
