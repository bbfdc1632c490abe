//! Everything a start does before init exists: checks, the run record,
//! the rootfs mount (or an idmapped view of it), a tmpfs upper.

use crate::conf::{self, RunConfig};
use crate::monitor::cleanup_locked;
use crate::{cgroup, mount_point, my_record, sys, userns, StartOpts};
use std::path::{Path, PathBuf};
use strata_core::engine::Engine;
use strata_core::idmap::IdMap;
use strata_core::state::{self, RunRecord};
use strata_core::{err, paths, Container, ContainerRef, Error, ErrorKind, Result, Store};

/// Everything made before init runs, undone by [`Prepared::undo`] on failure.
pub(crate) struct Prepared {
    pub(crate) c: Container,
    pub(crate) cfg: RunConfig,
    pub(crate) mp: PathBuf,
    pub(crate) mounted: bool,
    pub(crate) tmpfs: Option<PathBuf>,
    /// `lxc.idmap`: empty for a privileged container.
    pub(crate) map: IdMap,
    /// The idmapped view of the rootfs init uses instead of `mp`.
    pub(crate) view: Option<PathBuf>,
    /// A non-root monitor cannot mount on the host: init mounts the rootfs
    /// inside its user and mount namespaces.
    pub(crate) mount_inside: bool,
    /// A privileged container whose rootfs mount holds nothing else (no
    /// loop device): init mounts it in its own mount namespace, at the
    /// shared [`rootfs_mount_dir`]. The kernel drops it with the namespace,
    /// once init and every process of the container are gone (before the
    /// monitor sees init exit): the host has nothing to unmount at stop,
    /// and nothing to clean up after a kill -9.
    pub(crate) mount_private: bool,
    /// `lxc.seccomp.profile`, compiled before init exists.
    pub(crate) seccomp: Option<crate::seccomp::Filter>,
    /// The host's cgroup hierarchies and the container's cgroups in them
    /// (made, and recorded in the run record before they were).
    pub(crate) cg_layout: cgroup::Layout,
    pub(crate) cg: cgroup::Plan,
    /// Whether [`cgroup::create`] made them (undo removes only its own).
    pub(crate) cg_made: bool,
    /// Only the [`cgroup::Part::First`] cgroups are made before init is
    /// cloned: the monitor makes the rest while init sets up its rootfs,
    /// and init enters them itself after "go" (see [`Prepared::self_attach`]).
    pub(crate) cg_split: bool,
    /// `lxc.console.logfile`.
    pub(crate) eff_console_log: Option<PathBuf>,
    /// The config file read (the container's, or `lxc-start -f`'s).
    pub(crate) cfg_file: PathBuf,
    /// That file as read, includes expanded and `-s` set on it.
    pub(crate) eff: strata_core::config::Config,
    /// The rootfs of `-f FILE` (or `-s`) when it is not the container's own.
    pub(crate) other_rootfs: Option<String>,
    /// See [`crate::container::ChildArgs::hook_root`].
    pub(crate) hook_root: Option<PathBuf>,
}

impl Prepared {
    /// Whether init enters its cgroups itself (cloned into the unified
    /// one, moving itself into the v1 ones). Not in a user namespace (no
    /// cgroup files of the host are its), nor with namespaces joined (the
    /// host's paths may not be those it sees): the monitor moves it then.
    pub(crate) fn self_attach(&self) -> bool {
        self.map.is_empty() && self.cfg.ns.share.is_empty()
    }

    /// What the container's hooks are told.
    pub(crate) fn hook_env(&self, r: &ContainerRef) -> crate::hooks::HookEnv {
        crate::hooks::env_of(
            &r.name,
            &self.cfg_file,
            self.view.as_deref().unwrap_or(&self.mp),
            &self.c.rootfs.to_string(),
        )
    }

    pub(crate) fn undo(&mut self, engine: &Engine) {
        if let Some(v) = self.view.take() {
            if let Err(e) = userns::remove_idmapped(&v) {
                tracing::warn!("remove idmapped rootfs: {e}");
            }
        }
        if self.mounted {
            if let Ok(b) = engine.backends.for_spec(&self.c.rootfs) {
                if let Err(e) = b.umount(&self.c.rootfs, &self.mp) {
                    tracing::warn!("unmount rootfs: {e}");
                }
            }
            self.mounted = false;
        }
        // The shared dir stays: other containers' namespaces mount on it.
        if !self.mount_private {
            let _ = std::fs::remove_dir(&self.mp);
            if let Some(d) = self.mp.parent() {
                paths::prune_dir(d);
            }
        }
        if self.cg_made {
            if let Err(e) = cgroup::remove(&self.cg.paths()) {
                tracing::warn!("remove cgroups: {e}");
            }
            self.cg_made = false;
        }
        if let Some(t) = self.tmpfs.take() {
            let _ = nix::mount::umount2(&t, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Checks, run record, rootfs mount. The caller holds the lock.
pub(crate) fn prepare(engine: &Engine, r: &ContainerRef, opts: &StartOpts, ephemeral_run: bool) -> Result<Prepared> {
    const OP: &str = "start";
    let store = Store::new(&r.lxcpath);
    // LXC's volatile container: not defined in the lxcpath, started from
    // `-f FILE` alone. Nothing of it is written in the lxcpath.
    let volatile = !store.exists(&r.name);
    if volatile && opts.rcfile.is_none() {
        return Err(err!(
            NotFound,
            OP,
            "container {} does not exist in {} (a container not defined there runs from -f FILE)",
            r.name,
            r.lxcpath.display()
        ));
    }
    if let Some(rec) = state::read(r) {
        let mine = rec.monitor_pid == Some(std::process::id() as i32) && rec.monitor_alive();
        if rec.init_alive() {
            return Err(err!(Busy, OP, "container {} is already running", r.name));
        }
        if !mine && rec.monitor_alive() {
            return Err(err!(Busy, OP, "container {} is being started or stopped", r.name));
        }
        if !mine {
            cleanup_locked(engine, r)?;
        }
    }
    // The config as LXC reads it, includes expanded (`-f` names another
    // file, `-s` adds to it): what common.conf asks for is honoured, and
    // what strata cannot honour is refused here.
    let cfg_file = opts.rcfile.clone().unwrap_or_else(|| r.config_path());
    let (eff, mut c) = if !volatile && opts.rcfile.is_none() {
        // The container's own file: its lines and the expansion from one read.
        let (c, eff) = store.load_checked(&r.name)?;
        (with_defines(eff, &opts.defines)?, c)
    } else {
        let eff = read_config(&cfg_file, &opts.defines)?;
        let c = if volatile {
            volatile_container(r, &cfg_file, &eff, ephemeral_run)?
        } else {
            store.load(&r.name)?
        };
        (eff, c)
    };
    let mut other_rootfs = None;
    if !volatile && (opts.rcfile.is_some() || !opts.defines.is_empty()) {
        // As LXC's lxc-start: the file (and `-s`) stand for the container's
        // config, its lxc.rootfs.path included.
        let rootfs = rootfs_of(r, &cfg_file, &eff)?;
        if rootfs != c.rootfs {
            if ephemeral_run || eff.get("lxc.ephemeral").is_some_and(|v| v.trim() == "1") {
                return Err(err!(
                    Unsupported,
                    OP,
                    "lxc.ephemeral = 1 with lxc.rootfs.path = {rootfs} from {}: the rootfs destroyed at stop would not be {}'s own ({})",
                    cfg_file.display(),
                    r.name,
                    c.rootfs
                ));
            }
            other_rootfs = Some(rootfs.to_string());
            c.rootfs = rootfs;
        }
        c.config = eff.clone();
    }
    let map = IdMap::from_config(&c.config)?;
    map.check_caller()?;
    if !map.is_empty() && (map.root_uid().is_none() || map.root_gid().is_none()) {
        return Err(err!(
            InvalidConfig,
            OP,
            "lxc.idmap does not map container root (uid and gid 0): init would have no identity"
        ));
    }
    let rootfs_path = c
        .rootfs
        .overlay_parts()
        .map(|_| String::new())
        .unwrap_or_else(|| c.rootfs.source().to_string());
    conf::check_implemented(&eff)?;
    let seccomp = crate::seccomp::Filter::from_config(&eff)?;
    let mut cfg = RunConfig::from_config(
        &r.name,
        &eff,
        Some(&rootfs_path).filter(|p| !p.is_empty()).map(|s| s.as_str()),
    )?;
    cfg.mounts.extend(opts.extra_mounts.iter().cloned());
    for m in &cfg.mounts {
        if m.is_bind() && !m.optional && std::fs::symlink_metadata(&m.source).is_err() {
            return Err(err!(NotFound, OP, "bind source {} does not exist", m.source));
        }
    }
    crate::net::check_host(&cfg.net, paths::is_root())?;
    let backend = engine.backends.for_spec(&c.rootfs)?;
    let ephemeral = ephemeral_run || cfg.ephemeral;
    if ephemeral {
        crate::reap::mark_ran(r)?;
    }
    // The container's cgroups, checked against this host before anything is made.
    let cg_layout = cgroup::Layout::detect()?;
    let cg_spec = cgroup::Spec::from_config(&eff)?;
    // Names are picked (lxc.payload.NAME, -1, ...) and made under one host
    // lock, so that two starts of same-named containers of different
    // lxcpaths never pick the same one.
    let cg_lock = cgroup_names_lock();
    let cg = cgroup::plan(&cg_layout, &cg_spec, &r.name)?;
    // Recorded before they exist: whoever finds the record removes them.
    state::write(
        r,
        &RunRecord {
            cgroups: cg.paths(),
            rootfs: other_rootfs.clone(),
            ..my_record(ephemeral)
        },
    )?;
    let mount_private = paths::is_root() && map.is_empty() && backend.mount_is_self_contained();
    let mp = if mount_private {
        rootfs_mount_dir()
    } else {
        mount_point(r)
    };
    let mut p = Prepared {
        c,
        cfg,
        mp,
        mounted: false,
        tmpfs: None,
        mount_inside: !paths::is_root() && !map.is_empty(),
        mount_private,
        map,
        view: None,
        seccomp,
        cg_layout,
        cg,
        cg_made: false,
        cg_split: false,
        eff_console_log: eff
            .get("lxc.console.logfile")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        cfg_file,
        eff,
        other_rootfs,
        hook_root: None,
    };
    // Hooks run in the container's namespaces run as its root: in a user
    // namespace, the mapped root, who must reach the rootfs by path.
    let in_ns_hook = ["pre-mount", "mount", "autodev"]
        .into_iter()
        .find(|h| p.cfg.hooks.has(h) && !p.map.is_empty());
    if in_ns_hook.is_some() && !p.mount_inside {
        p.hook_root = Some(rootfs_mount_dir());
    }
    // Where init enters its cgroups itself and the unified tree's cgroup
    // claims the name, the other v1 ones wait (see cgroup::Part).
    p.cg_split = p.self_attach() && p.cg.unified().is_some() && paths::is_root();
    let part = if p.cg_split {
        cgroup::Part::First
    } else {
        cgroup::Part::All
    };
    let res = (|| {
        let mut tries = 0;
        loop {
            match cgroup::create_part(&p.cg, part) {
                Ok(()) => break,
                // A container of the same name in another lxcpath took the
                // name between plan and create: the next one, recorded first.
                Err(e) if e.kind() == ErrorKind::AlreadyExists && tries < 8 => {
                    tries += 1;
                    p.cg = cgroup::plan(&p.cg_layout, &cg_spec, &r.name)?;
                    state::write(
                        r,
                        &RunRecord {
                            cgroups: p.cg.paths(),
                            rootfs: p.other_rootfs.clone(),
                            ..my_record(ephemeral)
                        },
                    )?;
                }
                Err(e) => return Err(e),
            }
        }
        p.cg_made = true;
        drop(cg_lock);
        // The container's root manages its own cgroups below these, as under LXC.
        if let Some(gid) = p.map.root_gid().filter(|_| paths::is_root()) {
            cgroup::chown(&p.cg, gid)?;
        }
        paths::ensure_dir(&p.mp)?;
        if let Some(ty) = in_ns_hook {
            // The mapped root walks to it by path, as to LXC's rootfs mount dir.
            let at = match &p.hook_root {
                Some(h) => {
                    paths::ensure_dir(h)?;
                    h.clone()
                }
                None => p.mp.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            reachable_by_others(&at, ty)?;
        }
        if opts.tmpfs_upper {
            p.tmpfs = Some(mount_tmpfs_upper(&p.c)?);
        }
        // In the host's namespaces, before the rootfs is mounted, as LXC runs it.
        if p.cfg.hooks.has("pre-start") {
            p.cfg.hooks.run("pre-start", &p.hook_env(r), &[], &[])?;
        }
        if p.mount_inside {
            // No idmapped mounts without host privileges: the files must be the mapped ids' already.
            if !owned_by_map(r, &p.c, &p.map)? {
                return Err(err!(
                    PermissionDenied,
                    OP,
                    "the rootfs is owned by container ids, not by the mapped host ids, and idmapped mounts need root: run strata convert --to-unprivileged"
                )
                .at(rootfs_top(&p.c)));
            }
            // Init, as the mapped root, looks its mount point up in this dir of ours.
            if let Some(d) = p.mp.parent() {
                search_for_others(d)?;
            }
            return own_overlay_dirs(&p.c, &p.map);
        }
        if p.mount_private {
            return Ok(());
        }
        backend
            .mount_for_run(&p.c.rootfs, &p.mp)
            .map_err(|e| err!(Io, OP, "rootfs {} does not mount: {e}", p.c.rootfs))?;
        p.mounted = true;
        let overlay_shifted = p.c.rootfs.overlay_parts().is_some() && owned_by_map(r, &p.c, &p.map)?;
        if !p.map.is_empty() && !overlay_shifted {
            if let userns::RootfsView::Idmapped(v) = userns::idmap_rootfs(&r.dir(), &p.mp, &p.map)? {
                p.view = Some(v);
            }
        }
        Ok(())
    })();
    if let Err(e) = res {
        p.undo(engine);
        let _ = state::remove(r);
        return Err(e);
    }
    Ok(p)
}

/// A volatile container (LXC's: started from a config file, not defined
/// in the lxcpath): its rootfs is the file's `lxc.rootfs.path`.
fn volatile_container(
    r: &ContainerRef,
    cfg_file: &Path,
    eff: &strata_core::config::Config,
    ephemeral_run: bool,
) -> Result<Container> {
    const OP: &str = "start";
    if ephemeral_run || eff.get("lxc.ephemeral").is_some_and(|v| v.trim() == "1") {
        return Err(err!(
            Unsupported,
            OP,
            "lxc.ephemeral = 1: {} is not defined in {}, there is no container to destroy at stop",
            r.name,
            r.lxcpath.display()
        ));
    }
    Ok(Container {
        r: r.clone(),
        config: eff.clone(),
        rootfs: rootfs_of(r, cfg_file, eff)?,
    })
}

/// The rootfs `eff` (read from `cfg_file`) names: `lxc.rootfs.path`, typed
/// by `lxc.rootfs.backend` when it is a bare path. Without one LXC would
/// run on the host's `/`; strata refuses that.
fn rootfs_of(r: &ContainerRef, cfg_file: &Path, eff: &strata_core::config::Config) -> Result<strata_core::RootfsSpec> {
    let value = eff.get("lxc.rootfs.path").map(str::trim).unwrap_or("");
    if value.is_empty() {
        return Err(err!(
            Unsupported,
            "start",
            "{}: no lxc.rootfs.path: strata runs {} on a rootfs, not on the host's /",
            cfg_file.display(),
            r.name
        ));
    }
    let value = match eff.get("lxc.rootfs.backend").map(str::trim) {
        Some(b) if !b.is_empty() && value.starts_with('/') => format!("{b}:{value}"),
        _ => value.to_string(),
    };
    strata_core::RootfsSpec::parse(&value).map_err(|e| e.at(cfg_file))
}

/// The checked config of `cfg_file` with `defines` set on it, as LXC's
/// `-s` sets items after the file is read.
fn read_config(cfg_file: &Path, defines: &[(String, String)]) -> Result<strata_core::config::Config> {
    with_defines(strata_core::config::check_keys(cfg_file)?, defines)
}

/// [`read_config`] on a config already read and checked.
fn with_defines(
    mut eff: strata_core::config::Config,
    defines: &[(String, String)],
) -> Result<strata_core::config::Config> {
    const OP: &str = "read config";
    for (k, v) in defines {
        let k = k.trim();
        if !strata_core::config_keys::key_known(k) {
            return Err(err!(InvalidConfig, OP, "-s {k}: unknown configuration key"));
        }
        eff.append(k, v.trim());
    }
    Ok(eff)
}

/// Where init mounts a rootfs in its own mount namespace (see
/// [`Prepared::mount_private`]): one empty dir for all containers, made
/// once and never removed (removing it would unmount what other
/// containers' namespaces have on it while they are being set up), as
/// LXC's `lxc.rootfs.mount` dir.
pub(crate) fn rootfs_mount_dir() -> PathBuf {
    paths::run_dir().join("rootfs")
}

/// An exclusive lock held while a container's cgroup names are chosen and
/// made (root only: others make none but in their own delegated tree).
fn cgroup_names_lock() -> Option<std::fs::File> {
    if !paths::is_root() {
        return None;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/strata-cgroup-names.lock")
        .ok()?;
    // SAFETY: flock on our open fd; released when the file is dropped or the process dies.
    while unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
        if sys::errno() != nix::errno::Errno::EINTR {
            return None;
        }
    }
    Some(f)
}

/// The directory whose owner tells how the rootfs is owned: an overlay's
/// top lower (its upper dir is made by the clone, owned by whoever made it).
fn rootfs_top(c: &Container) -> PathBuf {
    match c.rootfs.overlay_parts() {
        Some((lower, _)) => PathBuf::from(lower.split(':').next().unwrap_or(lower)),
        None => c.rootfs.path(),
    }
}

/// The host dirs a rootfs spec's paths start with: an overlay's lowers and
/// its upper's parent (which holds the work dir too), else the rootfs dir.
pub(crate) fn pinned_dirs(c: &Container) -> Vec<PathBuf> {
    match c.rootfs.overlay_parts() {
        Some((lower, upper)) => {
            let mut v: Vec<PathBuf> = lower.split(':').map(PathBuf::from).collect();
            // The backend finds the work dir by the names above the upper: keep two of them.
            v.extend(Path::new(upper).parent().and_then(Path::parent).map(Path::to_path_buf));
            v
        }
        None => vec![c.rootfs.path()],
    }
}

/// Give an overlay clone's upper and work dirs, made by the caller, to the
/// container's root (as LXC's clone does), so that the mapped root can
/// mount and write them. Dirs owned by anyone else are left alone.
fn own_overlay_dirs(c: &Container, map: &IdMap) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some((_, upper)) = c.rootfs.overlay_parts() else {
        return Ok(());
    };
    let upper = PathBuf::from(upper);
    let parent = upper.parent().unwrap_or(Path::new("/")).to_path_buf();
    let me = nix::unistd::geteuid().as_raw();
    let mut dirs = vec![upper];
    for w in ["work", "olwork"] {
        dirs.push(parent.join(w));
        dirs.push(parent.join(w).join("work"));
    }
    dirs.retain(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == me));
    // The mapped root walks from the upper's grandparent down to the upper
    // and work dirs: those two levels need search permission for it (LXC
    // hands the container dir to the mapped root for the same reason).
    for d in [parent.parent(), Some(parent.as_path())].into_iter().flatten() {
        search_for_others(d)?;
    }
    if dirs.is_empty() {
        return Ok(());
    }
    strata_core::idmap::run_in_userns_with_caller(map, || {
        for d in &dirs {
            std::os::unix::fs::lchown(d, Some(0), Some(0))
                .map_err(|e| Error::io("give overlay dir to container root", d, e))?;
        }
        Ok(())
    })
}

/// Add search (not read) permission for others to `d` if the caller owns it.
fn search_for_others(d: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::symlink_metadata(d).map_err(|e| Error::io("stat", d, e))?;
    if m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o001 == 0 {
        let mode = (m.mode() & 0o7777) | 0o001;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io("chmod", d, e))?;
    }
    Ok(())
}

/// Every dir down to `dir` searchable by others (the container's mapped
/// root, which runs an `lxc.hook.TY` hook): strata's own run dirs are made
/// so (search only, no listing); any other dir that is not is refused,
/// naming it, before anything runs.
fn reachable_by_others(dir: &Path, ty: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let run = paths::run_dir();
    let mut at = PathBuf::from("/");
    for c in dir.components().skip(1) {
        at.push(c);
        if at.starts_with(&run) {
            search_for_others(&at)?;
        }
        let m = std::fs::metadata(&at).map_err(|e| Error::io("stat", &at, e))?;
        if m.mode() & 0o001 == 0 {
            return Err(err!(
                PermissionDenied,
                "start",
                "lxc.hook.{ty} runs as the container's mapped root, which cannot search {} (mode {:o}): it would not find the rootfs",
                at.display(),
                m.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// Whether the rootfs's files are owned by `map`'s host ids already.
fn owned_by_map(r: &ContainerRef, c: &Container, map: &IdMap) -> Result<bool> {
    use strata_core::shift::{ownership, Ownership};
    Ok(map.is_empty() || ownership(&r.dir(), &rootfs_top(c), map)? == Ownership::Shifted)
}

/// `-t`: a tmpfs on the dir holding an overlay's upper (and work) dir.
fn mount_tmpfs_upper(c: &Container) -> Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    const OP: &str = "mount tmpfs upper";
    let Some((_, upper)) = c.rootfs.overlay_parts() else {
        return Err(err!(
            Unsupported,
            OP,
            "-t needs an overlay clone, and {} is {}",
            c.r.name,
            c.rootfs.kind()
        ));
    };
    let upper = PathBuf::from(upper);
    let dir = upper
        .parent()
        .ok_or_else(|| err!(InvalidSpec, OP, "bad upper dir {}", upper.display()))?
        .to_path_buf();
    let meta = std::fs::metadata(&upper).map_err(|e| Error::io(OP, &upper, e))?;
    if std::fs::read_dir(&upper)
        .map_err(|e| Error::io(OP, &upper, e))?
        .next()
        .is_some()
    {
        return Err(err!(
            Unsupported,
            OP,
            "-t needs an empty upper dir (the base is an overlay clone with changes)"
        ));
    }
    sys::mount(
        Some("tmpfs"),
        &dir.display().to_string(),
        Some("tmpfs"),
        0,
        Some("mode=0755"),
    )?;
    let r = std::fs::create_dir(&upper)
        .and_then(|_| std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(meta.mode() & 0o7777)))
        .and_then(|_| std::os::unix::fs::chown(&upper, Some(meta.uid()), Some(meta.gid())));
    if let Err(e) = r {
        let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
        return Err(Error::io(OP, &upper, e));
    }
    Ok(dir)
}
