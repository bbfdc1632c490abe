//! `lxc-copy -R`: a directory rename with a journal when the rootfs lives
//! in the container dir, otherwise a clone then a destroy.

use super::clone::Params;
use super::deps::{add_dep, live_dependents, need, origins_of, refuse_dependents, remove_dep, Step};
use super::fsutil::{self, rename_noreplace};
use super::rewrite::replace_dir;
use super::rootfs::spec_of;
use super::staging::{aside_name, exists_any, REN, RENAME_BY_COPY, RENAME_CONFIG};
use super::{failpoint, CloneRequest, Engine};
use crate::backend::Opened;
use crate::depfile;
use crate::durable::write_atomic;
use crate::err;
use crate::error::{IoContext, Result};
use crate::store::{Container, ContainerRef, Store};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

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
    for o in depfile::depends_on(&new_r).unwrap_or_default() {
        remove_dep(&o, &old_r)?;
        if !depfile::dependents(&o)?.contains(&new_r) {
            add_dep(&o, &new_r, &dir)?;
        }
    }
    Ok(())
}

impl Engine {
    /// `-R`: a directory rename plus config rewrite when the rootfs lives in
    /// the container dir (dir, overlay) of the same lxcpath; otherwise clone
    /// then destroy, as LXC does. MAC addresses are kept, as in LXC.
    pub(super) fn rename(&self, req: &CloneRequest, src: &Container) -> Result<Step<Container>> {
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
            && self.backend_of(&src.rootfs).is_ok_and(|b| b.caps().renamed_with_dir)
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
            // MACs kept, as LXC's rename keeps them.
            let params = Params {
                keep_mac: true,
                ..Params::copy(src, req, None)
            };
            // A journal: once the copy is in place, the next command
            // finishes a killed rename by destroying the source.
            let journal = (req.src.lxcpath == req.dst.lxcpath)
                .then(|| aside_name(&req.src.lxcpath, REN, &req.dst.name))
                .transpose()?;
            if let Some((j, _noted)) = &journal {
                write_atomic(j, format!("{}\n{RENAME_BY_COPY}\n", req.src.name).as_bytes())?;
            }
            let journal = journal.map(|(j, _)| j);
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
        let (journal, noted) = aside_name(&req.src.lxcpath, REN, &req.dst.name)?;
        let res = write_atomic(&journal, format!("{}\n", req.src.name).as_bytes());
        drop(noted);
        let res = res.and_then(|_| rename_noreplace(&old_dir, &new_dir));
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
}
