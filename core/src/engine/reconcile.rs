//! Finishing or undoing what a crashed operation left in an lxcpath.

use super::deps::{origins_of, remove_dep};
use super::fsutil::remove_tree;
use super::rename::finish_rename;
use super::rootfs::spec_of;
use super::staging::{read_record, Journal, DEL, JOURNAL, OLD, REN, RENAME_BY_COPY, RENAME_CONFIG, TMP};
use super::Engine;
use crate::config::Config;
use crate::depfile;
use crate::error::Result;
use crate::lock::{ContainerLock, LockSet};
use crate::store::ContainerRef;
use std::path::{Path, PathBuf};

/// How long the next command lets a killed command's tools go on before it
/// kills them (see [`crate::toollock::settle_orphans`]).
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn kind_rank(n: &str) -> Option<u8> {
    // Restores roll forward (tmp) before their old dirs are looked at.
    [TMP, REN, OLD, DEL]
        .iter()
        .position(|p| n.starts_with(p))
        .map(|i| i as u8)
}

/// The container name inside `.strata-xxx.NAME.UNIQUE`.
fn owner_name(n: &str) -> Option<&str> {
    let rest = [TMP, REN, OLD, DEL].iter().find_map(|p| n.strip_prefix(p))?;
    rest.rsplit_once('.').map(|(name, _)| name).filter(|s| !s.is_empty())
}

/// The marker of the full scan (see [`crate::inflight::scanned_this_boot`]).
const SCAN: &str = "staging";

/// (dir holding a staging leftover, its name, owning container)
type Found = (PathBuf, String, String);

fn is_temp(n: &str) -> bool {
    n.starts_with('.') && n.contains(".strata-tmp-")
}

/// Sort a path a killed command noted into `found` or `temp`, as the full
/// scan would have, when it is in `lxcpath` and still there.
fn classify(lxcpath: &Path, p: &Path, found: &mut Vec<Found>, temp: &mut Vec<(String, PathBuf)>) {
    let (Ok(rel), Some(parent), Some(n)) = (p.strip_prefix(lxcpath), p.parent(), p.file_name()) else {
        return;
    };
    if std::fs::symlink_metadata(p).is_err() {
        return;
    }
    let n = n.to_string_lossy().into_owned();
    let mut comps = rel.components();
    let first = comps.next().map(|c| c.as_os_str().to_string_lossy().into_owned());
    let top = comps.next().is_none();
    let Some(first) = first else { return };
    if is_temp(&n) {
        temp.push((if top { String::new() } else { first }, p.to_path_buf()));
    } else if kind_rank(&n).is_some() {
        // In the lxcpath, or in a container's `snaps` (as the full scan finds them).
        let owner = if top {
            owner_name(&n).map(str::to_string)
        } else {
            (parent == lxcpath.join(&first).join("snaps")).then_some(first)
        };
        if let Some(owner) = owner {
            found.push((parent.to_path_buf(), n, owner));
        }
    }
}

impl Engine {
    /// Scratch mounts (and the loop devices behind them) of killed commands,
    /// whatever their lxcpath: released before the staging dirs whose images
    /// they may hold go.
    fn release_scratch_mounts(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for st in crate::scratch::stale() {
            let _span = tracing::info_span!("release scratch mount", path = %st.mountpoint.display()).entered();
            let res = crate::spec::RootfsSpec::parse(&st.spec)
                .and_then(|spec| self.backends.for_spec(&spec)?.release(&spec, &st.mountpoint));
            if let Err(e) = res {
                e.note_left(format_args!("release {}", st.mountpoint.display()));
            }
            if st.mounted() {
                let _ = nix::mount::umount2(&st.mountpoint, nix::mount::MntFlags::MNT_DETACH);
            }
            let mp = st.mountpoint.clone();
            if st.finish() {
                out.push(mp);
            }
        }
        out
    }

    /// Temp files of atomic writes whose writer is dead (a killed rewrite of
    /// `lxc_snapshots`, say), found by [`Engine::reconcile_staging`]: each
    /// `(owning container, file)`, the lxcpath's own with no owner. Those of
    /// a container go while its lock is free.
    fn remove_stale_temp_files(&self, lxcpath: &Path, mut temp: Vec<(String, PathBuf)>) -> Vec<PathBuf> {
        temp.retain(|(_, p)| crate::scratch::stale_temp_file(p));
        temp.sort();
        let mut out = Vec::new();
        let mut i = 0;
        while i < temp.len() {
            let owner = temp[i].0.clone();
            let n = temp[i..].iter().take_while(|(o, _)| *o == owner).count();
            let lock = if owner.is_empty() {
                Ok(None)
            } else {
                ContainerLock::try_acquire(lxcpath, &owner)
            };
            if owner.is_empty() || matches!(lock, Ok(Some(_))) {
                for (_, p) in &temp[i..i + n] {
                    if crate::scratch::stale_temp_file(p) && std::fs::remove_file(p).is_ok() {
                        out.push(p.clone());
                    }
                }
            }
            i += n;
        }
        out
    }

    pub(super) fn do_reconcile(&self, lxcpath: &Path) -> Result<Vec<PathBuf>> {
        // First: a container a killed command froze for a snapshot runs again at once.
        if let Some(f) = &self.freezer {
            for r in crate::freeze::thaw_stale(f.as_ref()) {
                tracing::info!(
                    "thawed {} in {}, left frozen by a killed command",
                    r.name,
                    r.lxcpath.display()
                );
            }
        }
        // A killed command's tools (lvcreate, mkfs, zfs receive, a template)
        // may still be making what its leftovers name: nothing is undone
        // before they have exited or been killed.
        if !crate::toollock::settle_orphans(ORPHAN_GRACE) {
            tracing::warn!("tools of a killed command still run: its leftovers wait for a later command");
            return Ok(Vec::new());
        }
        // Not in the lxcpath: logged, not returned.
        for p in self.release_scratch_mounts() {
            tracing::info!("released the scratch mount {} of a killed command", p.display());
        }
        let mut temp = Vec::new();
        let mut found = Vec::new();
        // Once per boot (and per lxcpath new to this record): every container.
        let full = !crate::inflight::scanned_this_boot(lxcpath, SCAN);
        if full {
            self.scan_staging(lxcpath, &mut found, &mut temp);
        }
        // Otherwise exactly what killed commands noted as in flight.
        let dead = crate::inflight::dead();
        // Paths noted under another spelling of this lxcpath (a symlink to
        // it), found through the real path of their dir.
        let (mut found_real, mut temp_real) = (Vec::new(), Vec::new());
        let mut real: Option<Option<PathBuf>> = None;
        let mut exports = Vec::new();
        for d in &dead {
            for p in &d.paths {
                // Its command's lock, left by the kill (unless taken again meanwhile).
                if crate::lock::is_lock_file(p) {
                    if let Err(e) = crate::lock::release_stale(p) {
                        tracing::warn!("{e}");
                    }
                    continue;
                }
                if p.starts_with(lxcpath) {
                    classify(lxcpath, p, &mut found, &mut temp);
                    continue;
                }
                // A killed export's temp file, wherever it was writing.
                if super::export::is_export_temp(p) {
                    if crate::scratch::stale_temp_file(p) && std::fs::remove_file(p).is_ok() {
                        exports.push(p.clone());
                    }
                    continue;
                }
                let Some(real_lp) = real.get_or_insert_with(|| std::fs::canonicalize(lxcpath).ok()) else {
                    continue;
                };
                let in_real = p
                    .parent()
                    .and_then(|d| std::fs::canonicalize(d).ok())
                    .zip(p.file_name())
                    .map(|(d, n)| d.join(n));
                if let Some(q) = in_real.filter(|q| q.starts_with(&*real_lp) && *real_lp != lxcpath) {
                    classify(real_lp, &q, &mut found_real, &mut temp_real);
                }
            }
        }
        let mut removed = self.handle_found(lxcpath, found)?;
        removed.extend(exports);
        temp.sort();
        temp.dedup();
        removed.extend(self.remove_stale_temp_files(lxcpath, temp));
        if let Some(Some(real_lp)) = &real {
            removed.extend(self.handle_found(real_lp, found_real)?);
            removed.extend(self.remove_stale_temp_files(real_lp, temp_real));
        }
        for d in &dead {
            crate::inflight::forget_if_done(d);
        }
        if full {
            crate::inflight::mark_scanned(lxcpath, SCAN);
        }
        Ok(removed)
    }

    /// The full scan: staging leftovers pushed to `found`; temp files of
    /// atomic writes (`.NAME.strata-tmp-PID-X`) in the lxcpath, container
    /// dirs, `snaps` and snapshot dirs, pushed to `temp` with their
    /// container. One listing of each dir serves both.
    fn scan_staging(&self, lxcpath: &Path, found: &mut Vec<Found>, temp: &mut Vec<(String, PathBuf)>) {
        let Ok(rd) = std::fs::read_dir(lxcpath) else {
            return;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if kind_rank(&n).is_some() {
                if let Some(owner) = owner_name(&n) {
                    found.push((lxcpath.to_path_buf(), n.clone(), owner.to_string()));
                }
            } else if is_temp(&n) {
                temp.push((String::new(), e.path()));
            } else if !n.starts_with('.') {
                let Ok(crd) = std::fs::read_dir(e.path()) else {
                    continue;
                };
                let mut has_snaps = false;
                for ce in crd.flatten() {
                    let cn = ce.file_name();
                    let cn = cn.to_string_lossy();
                    if cn == "snaps" {
                        has_snaps = true;
                    } else if is_temp(&cn) {
                        temp.push((n.clone(), ce.path()));
                    }
                }
                if !has_snaps {
                    continue;
                }
                let snaps = e.path().join("snaps");
                if let Ok(srd) = std::fs::read_dir(&snaps) {
                    for s in srd.flatten() {
                        let sn = s.file_name().to_string_lossy().into_owned();
                        if kind_rank(&sn).is_some() {
                            found.push((snaps.clone(), sn, n.clone()));
                        } else if is_temp(&sn) {
                            temp.push((n.clone(), s.path()));
                        } else if let Ok(xrd) = std::fs::read_dir(s.path()) {
                            let t = xrd
                                .flatten()
                                .filter(|x| is_temp(&x.file_name().to_string_lossy()))
                                .map(|x| (n.clone(), x.path()));
                            temp.extend(t);
                        }
                    }
                }
            }
        }
    }

    /// Handle staging leftovers, each while its owner's lock is free.
    fn handle_found(&self, lxcpath: &Path, mut found: Vec<Found>) -> Result<Vec<PathBuf>> {
        if found.is_empty() {
            return Ok(Vec::new());
        }
        found.sort_by(|a, b| (kind_rank(&a.1), a).cmp(&(kind_rank(&b.1), b)));
        found.dedup();
        let mut removed = Vec::new();
        for (parent, n, owner) in found {
            let Some(_lock) = ContainerLock::try_acquire(lxcpath, &owner)? else {
                tracing::debug!("{n}: {owner} is busy, left alone");
                continue;
            };
            match self.reconcile_entry(&parent, &n, None) {
                Ok(Some(p)) => removed.push(p),
                Ok(None) => {}
                Err(e) => e.note_left(format_args!("reconcile {}", parent.join(&n).display())),
            }
        }
        Ok(removed)
    }

    /// Handle one leftover `parent/n`; the owner's lock is held by the caller.
    /// The containers whose dependency files it edits are locked here
    /// without waiting: when one is busy the leftover waits for a later run.
    pub(super) fn reconcile_entry(&self, parent: &Path, n: &str, _held: Option<()>) -> Result<Option<PathBuf>> {
        let path = parent.join(n);
        if !path.exists() && std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let Some(name) = owner_name(n) else { return Ok(None) };
        let final_dir = parent.join(name);
        let _span = tracing::info_span!("reconcile entry", path = %path.display()).entered();
        if n.starts_with(TMP) {
            if let Some(j) = std::fs::read(path.join(JOURNAL))
                .ok()
                .and_then(|d| serde_json::from_slice::<Journal>(&d).ok())
            {
                let Some(_locks) = LockSet::try_acquire(&j.drop_origins)? else {
                    return Ok(None);
                };
                self.roll_forward_restore(&path, &j)?;
                return Ok(Some(path));
            }
            // No record (a build killed once it had removed its record, just
            // before its rename): what it made carries its mark, or none if
            // its strata did not mark; either way it is its own.
            let (dir, spec, dep, more, more_builds, marks) = match read_record(&path) {
                Some(r) => (r.dir, r.spec, r.dep, r.more, r.more_builds, r.marks),
                None => {
                    let spec = Config::load(&path.join("config"))
                        .ok()
                        .and_then(|c| spec_of(&c, &path).ok())
                        .map(|s| s.to_string());
                    (final_dir.clone(), spec, None, Vec::new(), Vec::new(), false)
                }
            };
            let spec = spec.and_then(|s| crate::spec::RootfsSpec::parse(&s).ok());
            // Dependencies this build recorded in its origins, unless the
            // container they name exists (a restore of it).
            let me = ContainerRef::new(parent, name);
            let mut deps: Vec<_> = dep.into_iter().collect();
            for o in depfile::depends_on(&ContainerRef::new(parent, n)).unwrap_or_default() {
                deps.push((o, me.clone()));
            }
            let Some(_locks) = LockSet::try_acquire(deps.iter().map(|(o, _)| o))? else {
                return Ok(None);
            };
            for (o, c) in deps {
                if !c.config_path().is_file() {
                    let _ = remove_dep(&o, &c);
                }
            }
            // The other rootfs it was making (a received container's
            // snapshots), undone as its main one is, each by its own build
            // dir's mark; a record that does not name those dirs (an older
            // strata's) had them destroyed as before.
            for (i, m) in more.iter().enumerate() {
                let Ok(m) = crate::spec::RootfsSpec::parse(m) else {
                    continue;
                };
                let m = m.rebase(&dir, &path);
                let inside = |b: &&PathBuf| b.components().all(|c| matches!(c, std::path::Component::Normal(_)));
                let gone = match more_builds.get(i).filter(inside) {
                    Some(b) => self.undo_rootfs(&m, &path.join(b), marks),
                    None => self.backend_of(&m).and_then(|b| b.destroy(&m)),
                };
                if let Err(e) = gone {
                    e.note_left(format_args!(
                        "cleanup of {m} ({} left for a later command)",
                        path.display()
                    ));
                    return Ok(None);
                }
            }
            if !self.abort_staging(&path, &dir, spec.as_ref(), marks) {
                return Ok(None);
            }
            if std::fs::symlink_metadata(&path).is_ok() {
                remove_tree(&path)?;
            }
            return Ok(Some(path));
        }
        if n.starts_with(OLD) {
            // Still referenced by a restore journal that could not be finished: leave it.
            if let Ok(rd) = std::fs::read_dir(parent) {
                for e in rd.flatten() {
                    let j = e.path().join(JOURNAL);
                    if let Some(j) = std::fs::read(&j)
                        .ok()
                        .and_then(|d| serde_json::from_slice::<Journal>(&d).ok())
                    {
                        if j.old == path {
                            return Ok(None);
                        }
                    }
                }
            }
            if read_record(&path).is_some() || std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none()) {
                self.destroy_old(&path)?;
                return Ok(Some(path));
            }
            tracing::warn!("{}: unknown contents, left alone", path.display());
            return Ok(None);
        }
        if n.starts_with(DEL) {
            let Some(_locks) = LockSet::try_acquire(&origins_of(&ContainerRef::new(parent, n)))? else {
                return Ok(None);
            };
            self.finish_destroy(&path, &final_dir)?;
            return Ok(Some(path));
        }
        if n.starts_with(REN) {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut lines = text.lines();
            let old = lines.next().unwrap_or_default().trim();
            if lines.next() == Some(RENAME_BY_COPY) {
                // A rename by copy: finished (the source destroyed) once the copy is in place.
                if crate::names::validate(old).is_ok()
                    && final_dir.join("config").is_file()
                    && parent.join(old).join("config").is_file()
                {
                    let Some(_lock) = ContainerLock::try_acquire(parent, old)? else {
                        return Ok(None);
                    };
                    let Some(_locks) = LockSet::try_acquire(&origins_of(&ContainerRef::new(parent, old)))? else {
                        return Ok(None);
                    };
                    self.destroy_unchecked(parent, old)?;
                }
                std::fs::remove_file(&path).map_err(|e| crate::error::Error::io("reconcile", &path, e))?;
                return Ok(Some(path));
            }
            let staged_new = final_dir.join(RENAME_CONFIG);
            let staged_old = parent.join(old).join(RENAME_CONFIG);
            if !old.is_empty() && crate::names::validate(old).is_ok() {
                if staged_new.exists() || (!parent.join(old).exists() && final_dir.is_dir()) {
                    let _lock = ContainerLock::try_acquire(parent, old)?;
                    let Some(_locks) = LockSet::try_acquire(&origins_of(&ContainerRef::new(parent, name)))? else {
                        return Ok(None);
                    };
                    finish_rename(parent, old, name)?;
                } else if staged_old.exists() {
                    let _ = std::fs::remove_file(&staged_old);
                }
            }
            std::fs::remove_file(&path).map_err(|e| crate::error::Error::io("reconcile", &path, e))?;
            return Ok(Some(path));
        }
        Ok(None)
    }
}
