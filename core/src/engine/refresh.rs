//! `strata receive` of an incremental stream (`send --from SNAP`): an
//! existing container brought up to the sender's state.
//!
//! The receiver must have the base snapshot (same name, same `ts`). Each
//! tree of the stream holds what changed since the tree before it, so each
//! is applied to a clone of that tree (a snapshot on btrfs and zfs, a copy
//! elsewhere) built in a staging dir:
//! - a snapshot the stream carries and this side lacks is staged, filled,
//!   and renamed into place once its tree is complete (the `.deleted` entry
//!   after it); one this side already has with the same `ts` is skipped, so
//!   sending the same stream twice is harmless; one with another `ts` is
//!   refused before anything is made;
//! - the rootfs is staged the same way and swapped in under the restore
//!   journal only after the end of the stream has arrived and been checked:
//!   a receive cut or killed before that leaves the rootfs and config as
//!   they were (reconcile removes what it staged). Snapshots complete
//!   before the cut stay, as a `zfs receive` of an `-I` stream keeps them;
//!   the same stream received again finishes the refresh.
//!
//! Snapshots only this side has are kept, never dropped, and named on
//! stderr (Incus's `copy --refresh` deletes them; a backup target that
//! silently loses its history is worse than one that keeps a little more).
//! This side's changes to the rootfs since the base are replaced: the
//! container ends up as the sender's, as with Incus's refresh.

use super::clone::Params;
use super::deps::{live_dependents, refuse_dependents, Step};
use super::receive::{bad, check_config, is_meta, part_of, settle, stream_err, Part};
use super::rewrite::replace_dir;
use super::staging::Staged;
use super::{absolute, Engine};
use crate::backend::Opened;
use crate::config::Config;
use crate::err;
use crate::error::Result;
use crate::idmap::IdMap;
use crate::lock::ContainerLock;
use crate::names;
use crate::store::{Container, ContainerRef, Store};
use crate::stream::{Index, StreamStats, Unpacker, DELETED};
use std::io::Read;

const OP: &str = "receive";

/// A refresh under way: checked, locked, trees being applied.
pub(super) struct Refresh {
    pub(super) r: ContainerRef,
    _lock: ContainerLock,
    pub(super) cur: Container,
    cfg: Config,
    /// The target's own id map (kept: the delta is shifted into it).
    pub(super) map: Option<IdMap>,
    /// Per snapshot of the stream: whether this side has it already.
    pub(super) have: Vec<bool>,
    /// Snapshots only this side has (kept).
    pub(super) kept: Vec<String>,
    /// The rootfs staged so far.
    pub(super) main: Option<Staged>,
}

/// What the trees of the stream are applied to, while one is open.
struct Open<'b> {
    part: Part,
    st: Staged,
    dst: ContainerRef,
    o: Opened<'b>,
    u: Unpacker,
}

impl Engine {
    /// Check the target against the stream's index, before anything is made.
    pub(super) fn refresh_begin(
        &self,
        req: &super::ReceiveRequest,
        index: &Index,
        cfg: Config,
        snap_cfgs: &[Config],
    ) -> Result<Refresh> {
        let base = index
            .base
            .as_ref()
            .ok_or_else(|| bad("not an incremental stream".into()))?;
        names::validate_snapshot(&base.name)?;
        if !crate::paths::is_root() {
            return Err(err!(
                PermissionDenied,
                OP,
                "receive needs root (owners, device nodes and capabilities are made as sent)"
            ));
        }
        if req.map.is_some() {
            return Err(bad(
                "--map does not apply to an incremental stream: the container keeps the map it has".into(),
            ));
        }
        if !index.files.is_empty() {
            let f: Vec<String> = index.files.iter().map(|f| f.path.display().to_string()).collect();
            return Err(bad(format!(
                "the stream carries files beside the config ({}): an incremental receive does not \
                 update them; send the container in full",
                f.join(", ")
            )));
        }
        let lxcpath = absolute(&req.lxcpath)?;
        let name = req.name.clone().unwrap_or_else(|| index.name.clone());
        names::validate(&name)?;
        let r = ContainerRef::new(&lxcpath, &name);
        let lock = ContainerLock::acquire(&lxcpath, &name)?;
        let store = Store::new(&lxcpath);
        if !store.exists(&name) {
            return Err(err!(
                NotFound,
                OP,
                "container {name} does not exist here: an incremental stream (send --from {}) refreshes \
                 a container that has snapshot {}; send it in full first",
                base.name,
                base.name
            ));
        }
        if crate::state::is_running(&r) {
            return Err(err!(Busy, OP, "container {name} is running; stop it first"));
        }
        let cur = store.load(&name)?;
        if let Some(b) = &req.backend {
            if b != cur.rootfs.kind() {
                return Err(bad(format!(
                    "container {name} is on {}, not {b}: an incremental receive keeps its backend",
                    cur.rootfs.kind()
                )));
            }
        }
        // An overlay container refreshed before depends on its own snapshot (the
        // lower of the clone it got): that one is fine, it stays with it.
        if crate::depfile::depends_on(&r)?
            .iter()
            .any(|o| o.lxcpath != store.snaps_path(&name))
        {
            return Err(err!(
                Unsupported,
                OP,
                "container {name}'s rootfs depends on another container's: refresh it by a full receive \
                 under a new name"
            ));
        }
        let snaps = store.snapshots(&name)?;
        let find = |n: &str| snaps.iter().find(|s| s.name == n);
        match find(&base.name) {
            None => {
                return Err(err!(
                    NotFound,
                    OP,
                    "container {name} has no snapshot {}, which the stream is incremental from",
                    base.name
                ))
            }
            Some(s) if s.timestamp != base.ts => {
                return Err(bad(format!(
                    "snapshot {} of {name} was taken at {}, the sender's at {}: not the same snapshot",
                    base.name, s.timestamp, base.ts
                )))
            }
            Some(_) => {}
        }
        // A snapshot of this side that is an overlay on the container's own
        // rootfs dir would lose its lower when the refresh replaces it.
        let ss = Store::new(store.snaps_path(&name));
        let on_rootfs: Vec<&str> = snaps
            .iter()
            .filter(|s| {
                ss.load(&s.name)
                    .is_ok_and(|c| super::clone::lower_owner(&c.rootfs).as_ref() == Some(&r))
            })
            .map(|s| s.name.as_str())
            .collect();
        if !on_rootfs.is_empty() {
            return Err(err!(
                Unsupported,
                OP,
                "snapshot {} of {name} is an overlay on its rootfs, which an incremental receive replaces: \
                 refresh it by a full receive under a new name",
                on_rootfs.join(", ")
            ));
        }
        let mut have = Vec::new();
        for s in &index.snapshots {
            match find(&s.name) {
                Some(h) if h.timestamp == s.ts => have.push(true),
                Some(h) => {
                    return Err(bad(format!(
                        "snapshot {} of {name} was taken at {}, the sender's at {}: the two have diverged; \
                         refusing to replace it",
                        s.name, h.timestamp, s.ts
                    )))
                }
                None => have.push(false),
            }
        }
        for (s, c) in index.snapshots.iter().zip(snap_cfgs) {
            check_config(c, &format!("snaps/{}/config", s.name))?;
        }
        let kept = snaps
            .iter()
            .filter(|s| {
                s.name != base.name
                    && !index.snapshots.iter().any(|x| x.name == s.name)
                    && !index.sender_snapshots.contains(&s.name)
            })
            .map(|s| s.name.clone())
            .collect();
        let deps: Vec<_> = live_dependents(&r)?
            .into_iter()
            .filter(|d| d.lxcpath != store.snaps_path(&name))
            .collect();
        refuse_dependents(OP, &r, &deps)?;
        self.backend_of(&cur.rootfs)?.check_destroy(&cur.rootfs)?;
        // The target's map, if it has one and the sender's config does not (received with --map).
        let theirs = IdMap::from_config(&cfg)?;
        let ours = IdMap::from_config(&cur.config)?;
        let map = (theirs.is_empty() && !ours.is_empty()).then_some(ours);
        Ok(Refresh {
            r,
            _lock: lock,
            cur,
            cfg,
            map,
            have,
            kept,
            main: None,
        })
    }

    /// Apply the stream's trees; snapshots land as they complete, the
    /// rootfs stays staged for [`Engine::refresh_end`].
    pub(super) fn refresh_fill<R: Read>(
        &self,
        rf: &mut Refresh,
        index: &Index,
        entries: &mut tar::Entries<'_, R>,
        pax: &crate::stream::pax::PaxLog,
        progress: Option<&crate::stream::ProgressFn>,
    ) -> Result<StreamStats> {
        let store = Store::new(&rf.r.lxcpath);
        let snaps_lxc = store.snaps_path(&rf.r.name);
        let ss = Store::new(&snaps_lxc);
        let base = index.base.as_ref().expect("checked in refresh_begin");
        // The tree the next one applies to.
        let mut prev: Container = ss.load(&base.name)?;
        let mut stats = StreamStats::default();
        let mut cur: Option<Open> = None;
        let mut done: Vec<Part> = Vec::new();
        let res = (|| -> Result<()> {
            for e in entries {
                let mut e = e.map_err(stream_err)?;
                let rec = pax.take(e.raw_header_position()).map_err(bad)?;
                let path = crate::stream::entry_name(&mut e, rec.as_ref()).map_err(stream_err)?;
                if let Some(o) = &mut cur {
                    let marker = format!("{}{DELETED}", prefix_of(index, o.part));
                    if path == marker.as_bytes() {
                        let mut list = Vec::new();
                        (&mut e).take(64 << 20).read_to_end(&mut list).map_err(stream_err)?;
                        o.u.remove_listed(&list)?;
                        let o = cur.take().expect("set");
                        stats.entries += o.u.entries;
                        stats.bytes += o.u.bytes;
                        o.u.finish()?;
                        o.o.close()?;
                        done.push(o.part);
                        match o.part {
                            Part::Snap(i) => {
                                let s = &index.snapshots[i];
                                let mut c = Config::parse(&s.config)?;
                                fix_config(&mut c, index, &o.dst, &o.st, rf.map.as_ref());
                                c.save(&o.st.path.join("config"))?;
                                settle(&o.st.path)?;
                                prev = self.finish_staged(o.st, &o.dst)?;
                            }
                            Part::Main => rf.main = Some(o.st),
                        }
                        continue;
                    }
                }
                let Some((part, prefix)) = part_of(index, &path) else {
                    if is_meta(index, &path) {
                        continue;
                    }
                    // The marker of a tree this side skips.
                    if let Some(Part::Snap(i)) = marker_of(index, &path) {
                        if rf.have[i] && !done.contains(&Part::Snap(i)) {
                            done.push(Part::Snap(i));
                            prev = ss.load(&index.snapshots[i].name)?;
                            continue;
                        }
                    }
                    return Err(bad(format!(
                        "unexpected stream entry {:?}",
                        String::from_utf8_lossy(&path)
                    )));
                };
                if done.contains(&part) {
                    return Err(bad(format!("tree {prefix} comes twice")));
                }
                if let Part::Snap(i) = part {
                    if rf.have[i] {
                        continue;
                    }
                }
                if cur.as_ref().map(|o| o.part) != Some(part) {
                    if let Some(o) = &cur {
                        return Err(bad(format!(
                            "tree {} ends without its {DELETED} entry",
                            prefix_of(index, o.part)
                        )));
                    }
                    let (dst, params_files) = refresh_dst(rf, index, &snaps_lxc, part)?;
                    // The rootfs replaces this side's: a copy takes its unchanged files by hardlink
                    // (it is destroyed once the new one is in place; a snapshot must not share them).
                    let params = Params {
                        files: params_files,
                        link_from: (part == Part::Main).then_some(&rf.cur.rootfs),
                        ..Params::restore_in_place(&prev, &dst)
                    };
                    let st = self.refresh_stage(&params, &prefix)?;
                    let b = self.backend_of(&st.spec)?;
                    let building = building(&st, &dst);
                    let o = match Opened::open(b, &building, false) {
                        Ok(o) => o,
                        Err(e) => {
                            self.abort_staging(&st.path, &dst.dir(), Some(&st.spec), true);
                            return Err(e);
                        }
                    };
                    let mut u = match Unpacker::new(o.path(), &prefix, rf.map.as_ref().map(IdMap::to_shift)) {
                        Ok(u) => u,
                        Err(e) => {
                            drop(o);
                            self.abort_staging(&st.path, &dst.dir(), Some(&st.spec), true);
                            return Err(e);
                        }
                    };
                    u.delta = true;
                    cur = Some(Open { part, st, dst, o, u });
                }
                let o = cur.as_mut().expect("set above");
                o.u.entry(&path, &mut e, rec.as_ref())?;
                if let Some(p) = progress {
                    p(stats.entries + o.u.entries, stats.bytes + o.u.bytes, None);
                }
            }
            if let Some(o) = &cur {
                return Err(bad(format!(
                    "the stream ends inside tree {} (cut short?)",
                    prefix_of(index, o.part)
                )));
            }
            for (i, s) in index.snapshots.iter().enumerate() {
                if !done.contains(&Part::Snap(i)) {
                    return Err(bad(format!("the stream has no tree for snapshot {}", s.name)));
                }
            }
            if rf.main.is_none() {
                return Err(bad("the stream ends before the container's rootfs (cut short?)".into()));
            }
            Ok(())
        })();
        if let Err(e) = res {
            if let Some(o) = cur.take() {
                let (path, spec, dir) = (o.st.path.clone(), o.st.spec.clone(), o.dst.dir());
                drop(o.u);
                drop(o.o);
                self.abort_staging(&path, &dir, Some(&spec), true);
            }
            self.refresh_abort(rf);
            return Err(e);
        }
        stats.kept_snapshots = rf.kept.clone();
        Ok(stats)
    }

    /// The whole stream arrived: the new rootfs and config in place.
    pub(super) fn refresh_end(&self, mut rf: Refresh, index: &Index) -> Result<Container> {
        let st = rf.main.take().expect("checked in refresh_fill");
        let res = (|| {
            let mut c = rf.cfg.clone();
            fix_config(&mut c, index, &rf.r, &st, rf.map.as_ref());
            c.save(&st.path.join("config"))?;
            settle(&st.path)
        })();
        if let Err(e) = res {
            self.abort_staging(&st.path, &rf.r.dir(), Some(&st.spec), true);
            return Err(e);
        }
        self.swap_in(&rf.r, &rf.cur, st)
    }

    /// `f` on the refresh; where it fails, the staged rootfs is undone.
    pub(super) fn refresh_or_abort<T>(&self, rf: &mut Refresh, f: impl FnOnce(&mut Refresh) -> Result<T>) -> Result<T> {
        let res = f(rf);
        if res.is_err() {
            self.refresh_abort(rf);
        }
        res
    }

    /// Undo the staged rootfs (the stream was bad or cut).
    /// A refresh's staged clone of a tree; one that would depend on another
    /// container is refused.
    pub(super) fn refresh_stage(&self, params: &Params, prefix: &str) -> Result<Staged> {
        match self.stage_clone(params)? {
            Step::Done(st) => Ok(st),
            Step::Need(_) => Err(err!(
                Unsupported,
                OP,
                "{prefix}: its clone would depend on another container; not supported by a refresh"
            )),
        }
    }

    pub(super) fn refresh_abort(&self, rf: &mut Refresh) {
        if let Some(st) = rf.main.take() {
            self.abort_staging(&st.path, &rf.r.dir(), Some(&st.spec), true);
        }
    }
}

/// Where tree `part` of a refresh lands: the container, or its snapshot
/// in `snaps_lxc` (made here) with the `ts` and `comment` files its staged
/// clone gets.
pub(super) fn refresh_dst(
    rf: &Refresh,
    index: &Index,
    snaps_lxc: &std::path::Path,
    part: Part,
) -> Result<(ContainerRef, Vec<(&'static str, String)>)> {
    let Part::Snap(i) = part else {
        return Ok((rf.r.clone(), vec![]));
    };
    let s = &index.snapshots[i];
    let mut f = vec![("ts", s.ts.clone())];
    if let Some(c) = &s.comment {
        f.push(("comment", c.clone()));
    }
    if !snaps_lxc.is_dir() {
        super::staging::mkdir(snaps_lxc, 0o755)?;
    }
    Ok((ContainerRef::new(snaps_lxc, &s.name), f))
}

/// The sender's config for `dst`: its paths rewritten to this side's dir,
/// its rootfs the staged one, this side's map kept.
pub(super) fn fix_config(c: &mut Config, index: &Index, dst: &ContainerRef, st: &Staged, map: Option<&IdMap>) {
    let (old, new) = (index.dir.display().to_string(), dst_container_dir(dst));
    c.rewrite(|_, v| v.contains(&old).then(|| replace_dir(v, &old, &new)));
    if let Some(m) = map {
        m.write_to_config(c);
    }
    c.set("lxc.rootfs.path", &st.spec.to_string());
    let name = container_name(dst);
    if name != index.name && c.get("lxc.uts.name") == Some(index.name.as_str()) {
        c.set("lxc.uts.name", &name);
    }
}

/// The staged rootfs as its build sees it: its paths in the staging dir,
/// except an overlay lower in the container's own snapshots (the clone of
/// an overlay snapshot keeps the snapshot's lower), which stays where it is
/// (a plain rebase would take it into the staging dir, which holds no snaps).
fn building(st: &Staged, dst: &ContainerRef) -> crate::spec::RootfsSpec {
    let dir = dst.dir();
    st.spec
        .rebase(&dir, &st.path)
        .rebase(&st.path.join("snaps"), &dir.join("snaps"))
}

/// The container dir (a snapshot's paths are rewritten against its container's dir too).
fn dst_container_dir(dst: &ContainerRef) -> String {
    container_ref(dst).dir().display().to_string()
}

fn container_name(dst: &ContainerRef) -> String {
    container_ref(dst).name
}

/// `dst` itself, or for a snapshot (`NAME/snaps/SNAP`) its container.
fn container_ref(dst: &ContainerRef) -> ContainerRef {
    if dst.lxcpath.file_name().is_some_and(|n| n == "snaps") {
        if let Some(d) = dst.lxcpath.parent() {
            if let (Some(p), Some(n)) = (d.parent(), d.file_name()) {
                return ContainerRef::new(p, n.to_string_lossy());
            }
        }
    }
    dst.clone()
}

pub(super) fn prefix_of(index: &Index, part: Part) -> String {
    match part {
        Part::Main => "rootfs".into(),
        Part::Snap(i) => format!("snaps/{}/rootfs", index.snapshots[i].name),
    }
}

/// The tree whose `.deleted` marker `path` is.
fn marker_of(index: &Index, path: &[u8]) -> Option<Part> {
    let p = path.strip_suffix(DELETED.as_bytes())?;
    if p == b"rootfs" {
        return Some(Part::Main);
    }
    index
        .snapshots
        .iter()
        .position(|s| format!("snaps/{}/rootfs", s.name).as_bytes() == p)
        .map(Part::Snap)
}
