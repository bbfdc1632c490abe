//! `lxc-create`: a new container from nothing, a host dir, a tarball or a
//! template, built in a staging dir and renamed into place.

use super::fsutil::rename_noreplace;
use super::rewrite::{expand_hwaddrs, replace_dir};
use super::rootfs::{apply_fssize, check_backend_allowed, check_fits, check_fssize, no_space, remove_lost_found};
use super::staging::{
    exists_any, make_container_dir, name_taken_meanwhile, own_dir_as_container_root, write_record, RECORD,
};
use super::{failpoint, CreateRequest, Engine, RootfsSource};
use crate::backend::{Opened, Target};
use crate::config::Config;
use crate::copy::{copy_tree, CopyOptions};
use crate::error::{IoContext, Result};
use crate::idmap::{as_container_root, needs_container_root, IdMap};
use crate::lock::ContainerLock;
use crate::store::{Container, ContainerRef};
use crate::{err, names};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    let mut c = Command::new(tp);
    c.arg(path_arg).arg(format!("--name={name}")).arg(rootfs_arg).args(args);
    // A tool: a kill -9 of this command leaves the next one waiting for it
    // (and for what it started) before it removes the staging dir.
    let st = crate::toollock::status(&mut c).ctx("run template", tp)?;
    if !st.success() {
        return Err(err!(Command, "run template", "{} failed: {st}", tp.display()));
    }
    Ok(())
}

fn untar(tarball: &Path, dst: &Path) -> Result<()> {
    let _s = tracing::info_span!("untar", tarball = %tarball.display()).entered();
    let mut c = Command::new("tar");
    c.args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-xpf"])
        .arg(tarball)
        .arg("-C")
        .arg(dst);
    // A tool: a kill -9 of this command leaves the next one waiting for it.
    let out = crate::toollock::output(&mut c).ctx("run tar", tarball)?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let line = msg.lines().next().unwrap_or("").trim();
        return Err(err!(Command, "unpack tarball", "tar failed: {line}").at(tarball));
    }
    Ok(())
}

/// For a copy made by the container's root (see [`as_container_root`]): the
/// caller's own files (seen as [`crate::idmap::caller_inside_id`]) become
/// the container root's, as a user's tree is its root's; container ids
/// stay as they are.
fn caller_as_root(map: &IdMap) -> crate::idmap::IdShift {
    let me = crate::idmap::caller_inside_id(map);
    let t = |v: &[crate::idmap::Range]| {
        let mut out = vec![(me, 0, 1)];
        out.extend(v.iter().map(|r| (r.inside, r.inside, r.count)));
        out
    };
    crate::idmap::IdShift {
        uids: t(&map.uids),
        gids: t(&map.gids),
    }
}

impl Engine {
    pub(super) fn do_create(&self, req: &CreateRequest) -> Result<Container> {
        const OP: &str = "create";
        names::validate(&req.name)?;
        let r = ContainerRef::new(&req.lxcpath, &req.name);
        let backend = match req.backend.as_deref() {
            Some(k) => self.backends.get(k)?,
            None => self.backends.default_backend()?,
        };
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
        let mut tries = 0;
        loop {
            tries += 1;
            let spec = backend.plan(&probe, None)?;
            check_fssize(backend, &probe)?;
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
                    apply_fssize(backend, &t, &building)?;
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
                Ok(config) => {
                    return Ok(Container {
                        r,
                        config,
                        rootfs: spec,
                    })
                }
                Err(e) => {
                    self.abort_staging(&staging, &dir, Some(&spec), true);
                    if !name_taken_meanwhile(&e, tries) {
                        return Err(e);
                    }
                }
            }
        }
    }
}
