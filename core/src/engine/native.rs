//! Native streams (`send --native`, `export --optimized`): each tree
//! carried as its backend's own stream (see [`crate::stream::native`] and
//! [`crate::backend::NativeStream`]), the rest of the container stream as
//! for tar trees.
//!
//! The sender uses them only when asked: it cannot know the receiver's
//! backend, and a tar stream goes anywhere. Snapshots go oldest first,
//! each incremental from the one before it (the first from the base, or
//! whole), then the rootfs, incremental from the last of them. A backend
//! that sends read-only snapshots only (btrfs) sends the rootfs from a
//! read-only snapshot of it staged as `lxc-snapshot` stages one (so a
//! killed send leaves what reconcile removes) and dropped after.
//!
//! A receiver takes a native stream only onto a backend declaring its
//! format, and refuses it onto another one in one line naming both. Each
//! tree is received where the tar path would build it (the staging dir of
//! a new container, or for a refresh the staged clone's place), so the
//! records that make a killed receive undoable are the same.

use super::clone::Params;
use super::deps::Step;
use super::receive::{bad, is_meta, settle, stream_err, Part};
use super::refresh::{fix_config, refresh_dst, Refresh};
use super::Engine;
use crate::backend::{Backend, NativeStream, Target};
use crate::config::Config;
use crate::err;
use crate::error::Result;
use crate::spec::RootfsSpec;
use crate::store::{Container, SnapshotInfo, Store};
use crate::stream::native::{ChunkReader, ChunkWriter, Native};
use crate::stream::{Index, Packer, ProgressFn, StreamStats};
use std::io::{Read, Write};

/// The native stream of `spec`'s backend, or why there is none.
fn native_of<'b>(b: &'b dyn Backend, what: &str) -> Result<&'b dyn NativeStream> {
    b.native_stream().ok_or_else(|| {
        err!(
            Unsupported,
            "send",
            "{what} is on {}, which has no native stream: send it without --native (a tar stream, which any backend receives)",
            b.kind()
        )
    })
}

impl Engine {
    /// Check that every tree can go native, before a byte is written;
    /// returns what the index says of it.
    pub(super) fn native_plan(
        &self,
        c: &Container,
        base: Option<&SnapshotInfo>,
        snaps: &[SnapshotInfo],
    ) -> Result<Native> {
        let b = self.backend_of(&c.rootfs)?;
        let ns = native_of(b, &format!("container {}", c.r.name))?;
        for s in base.into_iter().chain(snaps) {
            if s.rootfs.kind() != b.kind() {
                return Err(err!(
                    Unsupported,
                    "send",
                    "snapshot {} of {} is on {}, the container on {}: a native stream carries one backend's; send it without --native",
                    s.name,
                    c.r.name,
                    s.rootfs.kind(),
                    b.kind()
                ));
            }
        }
        for s in snaps {
            ns.check_send(&s.rootfs, true)?;
        }
        ns.check_send(&c.rootfs, !ns.sends_readonly_only())?;
        Ok(Native {
            format: ns.format().to_string(),
            base: base.map(|s| ns.identity(&s.rootfs)).transpose()?,
        })
    }

    /// The trees of `c` as native sections: the snapshots, then the rootfs.
    pub(super) fn send_native_trees<W: Write>(
        &self,
        p: &mut Packer<W>,
        c: &Container,
        base: Option<&SnapshotInfo>,
        snaps: &[SnapshotInfo],
    ) -> Result<()> {
        let b = self.backend_of(&c.rootfs)?;
        let ns = native_of(b, &format!("container {}", c.r.name))?;
        let mut parent: Option<RootfsSpec> = base.map(|s| s.rootfs.clone());
        for s in snaps {
            let mut w = ChunkWriter::new(p, &format!("snaps/{}/rootfs", s.name));
            ns.send_tree(&s.rootfs, parent.as_ref(), false, &mut w)?;
            w.finish()?;
            parent = Some(s.rootfs.clone());
        }
        if !ns.sends_readonly_only() {
            let mut w = ChunkWriter::new(p, "rootfs");
            ns.send_tree(&c.rootfs, parent.as_ref(), true, &mut w)?;
            w.finish()?;
            return Ok(());
        }
        // A read-only snapshot of the rootfs, staged beside it as a
        // snapshot is (recorded: reconcile removes it after a kill).
        let st = match self.stage_clone(&Params::snapshot(c, &c.r, vec![]))? {
            Step::Done(st) => st,
            Step::Need(_) => {
                return Err(err!(
                    Unsupported,
                    "send",
                    "a snapshot of {} would depend on another container: send it without --native",
                    c.r.name
                ))
            }
        };
        let building = st.spec.rebase(&c.r.dir(), &st.path);
        let res = (|| {
            let mut w = ChunkWriter::new(p, "rootfs");
            ns.send_tree(&building, parent.as_ref(), true, &mut w)?;
            w.finish()
        })();
        self.abort_staging(&st.path, &c.r.dir(), Some(&st.spec), true);
        res.map(|_| ())
    }

    /// The backend a native stream goes to: the one declaring its format
    /// (`-B` may only name that one).
    pub(super) fn native_target(&self, index: &Index, native: &Native, asked: Option<&str>) -> Result<&dyn Backend> {
        let refuse = |to: &str| bad(refuse_msg(native, index, to));
        match asked {
            Some(kind) => {
                let b = self.backends.get(kind)?;
                match b.native_stream() {
                    Some(ns) if ns.format() == native.format => Ok(b),
                    _ => Err(refuse(b.kind())),
                }
            }
            None => self
                .backends
                .by_native_format(&native.format)
                .ok_or_else(|| refuse("any backend of this strata")),
        }
    }

    /// A refresh from a native stream: the target is on the stream's
    /// backend and has a native copy of the base snapshot.
    pub(super) fn native_refresh_check(&self, rf: &Refresh, index: &Index, native: &Native) -> Result<()> {
        let b = self.backend_of(&rf.cur.rootfs)?;
        let to = format!("{} (where container {} is)", b.kind(), rf.r.name);
        self.native_target(index, native, Some(b.kind()))
            .map_err(|_| err!(InvalidArgument, "receive", "{}", refuse_msg(native, index, &to)))?;
        let ns = b.native_stream().expect("checked by native_target");
        let base = index.base.as_ref().expect("an incremental stream");
        let snap = Store::new(Store::new(&rf.r.lxcpath).snaps_path(&rf.r.name)).load(&base.name)?;
        let id = native.base.as_deref().unwrap_or_default();
        if snap.rootfs.kind() != b.kind() || !ns.is_copy_of(&snap.rootfs, id)? {
            return Err(bad(format!(
                "snapshot {} of {} is not a native copy of the sender's (it was not received with --native, \
                 or was changed since): a native incremental stream cannot apply to it; send it without --native",
                base.name, rf.r.name
            )));
        }
        if rf.map.is_some() {
            return Err(bad(format!(
                "container {} has an id map the sender's config lacks: a native stream cannot shift owners; \
                 send it without --native",
                rf.r.name
            )));
        }
        Ok(())
    }

    /// One tree of a new container from its native section, whose first
    /// entry `e` (named `name`) was read; the rootfs `spec` is planned and
    /// recorded, `t` is where it is built; `parent` is the tree received
    /// before it (as reachable now).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn receive_native_part<'a, R: Read>(
        &self,
        backend: &dyn Backend,
        spec: &RootfsSpec,
        t: &Target,
        part: Part,
        prefix: &str,
        parent: Option<&RootfsSpec>,
        entries: &mut tar::Entries<'a, R>,
        pax: &crate::stream::pax::PaxLog,
        e: tar::Entry<'a, R>,
        name: &[u8],
        progress: Option<(&ProgressFn, u64, u64)>,
    ) -> Result<u64> {
        let ns = backend
            .native_stream()
            .ok_or_else(|| bad(format!("{} has no native stream", backend.kind())))?;
        let mut rd = ChunkReader::new(entries, pax, prefix, e, name).map_err(stream_err)?;
        if let Some((f, entries, bytes)) = progress {
            rd.on_progress(f.clone(), entries, bytes);
        }
        if let Err(err) = ns.receive(&t.building(spec), t, parent, &mut rd, part == Part::Main) {
            return Err(match rd.take_error() {
                Some(e) => stream_err(e),
                None => super::rootfs::no_space(backend, err),
            });
        }
        if !rd.complete() {
            // The tool stopped before the section's end: what it made is not the whole tree.
            return Err(bad(format!("tree {prefix}: the native stream goes on past its end")));
        }
        Ok(rd.bytes)
    }

    /// [`Engine::refresh_fill`] for a native stream: each tree received in
    /// the place of a staged clone of the tree before it.
    pub(super) fn refresh_fill_native<'a, R: Read>(
        &self,
        rf: &mut Refresh,
        index: &Index,
        entries: &mut tar::Entries<'a, R>,
        pax: &crate::stream::pax::PaxLog,
        progress: Option<&ProgressFn>,
    ) -> Result<StreamStats> {
        self.refresh_or_abort(rf, |rf| {
            let store = Store::new(&rf.r.lxcpath);
            let snaps_lxc = store.snaps_path(&rf.r.name);
            let ss = Store::new(&snaps_lxc);
            let base = index.base.as_ref().expect("checked in refresh_begin");
            let mut prev: Container = ss.load(&base.name)?;
            let mut stats = StreamStats::default();
            let mut done: Vec<Part> = Vec::new();
            while let Some(e) = entries.next() {
                let mut e = e.map_err(stream_err)?;
                let rec = pax.take(e.raw_header_position()).map_err(bad)?;
                let path = crate::stream::entry_name(&mut e, rec.as_ref()).map_err(stream_err)?;
                if is_meta(index, &path) {
                    continue;
                }
                let Some((part, prefix)) = super::receive::native_part_of(index, &path) else {
                    return Err(bad(format!(
                        "unexpected stream entry {:?}",
                        String::from_utf8_lossy(&path)
                    )));
                };
                if done.contains(&part) {
                    return Err(bad(format!("tree {prefix} comes twice")));
                }
                let p = progress.map(|f| (f, stats.entries, stats.bytes));
                if let Part::Snap(i) = part {
                    if rf.have[i] {
                        // Already here (the same stream received again): read past it.
                        let mut rd = ChunkReader::new(entries, pax, &prefix, e, &path).map_err(stream_err)?;
                        std::io::copy(&mut rd, &mut std::io::sink()).map_err(stream_err)?;
                        done.push(part);
                        prev = ss.load(&index.snapshots[i].name)?;
                        continue;
                    }
                }
                let (dst, files) = refresh_dst(rf, index, &snaps_lxc, part)?;
                // A staged clone of the tree before (its dir, record and
                // config), whose rootfs is then replaced by the received one.
                let params = Params {
                    files,
                    ..Params::restore_in_place(&prev, &dst)
                };
                let st = self.refresh_stage(&params, &prefix)?;
                let dir = dst.dir();
                let b = self.backend_of(&st.spec)?;
                let opts = crate::backend::BackendOpts::default();
                let t = Target {
                    name: &dst.name,
                    lxcpath: &dst.lxcpath,
                    dir: &dir,
                    build_dir: &st.path,
                    opts: &opts,
                };
                let res = b.destroy(&t.building(&st.spec)).and_then(|_| {
                    self.receive_native_part(
                        b,
                        &st.spec,
                        &t,
                        part,
                        &prefix,
                        Some(&prev.rootfs),
                        entries,
                        pax,
                        e,
                        &path,
                        p,
                    )
                });
                let n = match res {
                    Ok(n) => n,
                    Err(err) => {
                        self.abort_staging(&st.path, &dir, Some(&st.spec), true);
                        return Err(err);
                    }
                };
                stats.entries += 1;
                stats.bytes += n;
                done.push(part);
                match part {
                    Part::Snap(i) => {
                        let s = &index.snapshots[i];
                        let mut c = Config::parse(&s.config)?;
                        fix_config(&mut c, index, &dst, &st, None);
                        let saved = c.save(&st.path.join("config")).and_then(|_| settle(&st.path));
                        if let Err(err) = saved {
                            self.abort_staging(&st.path, &dir, Some(&st.spec), true);
                            return Err(err);
                        }
                        prev = self.finish_staged(st, &dst)?;
                    }
                    Part::Main => rf.main = Some(st),
                }
            }
            for (i, s) in index.snapshots.iter().enumerate() {
                if !done.contains(&Part::Snap(i)) {
                    return Err(bad(format!("the stream has no tree for snapshot {}", s.name)));
                }
            }
            if rf.main.is_none() {
                return Err(bad("the stream ends before the container's rootfs (cut short?)".into()));
            }
            stats.kept_snapshots = rf.kept.clone();
            Ok(stats)
        })
    }
}

fn refuse_msg(native: &Native, index: &Index, to: &str) -> String {
    format!(
        "the stream is a native {} stream of a {} container (send --native, export --optimized): \
         it cannot be received on {to}; send or export it without --native",
        native.format, index.backend
    )
}
