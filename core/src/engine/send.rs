//! `strata send` / `export`: a container as a stream (see [`crate::stream`]).

use super::{absref, Engine};
use crate::backend::Opened;
use crate::config::Config;
use crate::err;
use crate::error::{Error, Result};
use crate::lock::ContainerLock;
use crate::names;
use crate::store::{read_regular, ContainerRef, Store};
use crate::stream::files;
use crate::stream::{
    Base, External, FileIndex, Index, Packer, ProgressFn, SnapIndex, StreamStats, Totals, FORMAT, INDEX, VERSION,
    VERSION_DELTA, VERSION_NATIVE,
};
use std::io::Write;

const OP: &str = "send";

#[derive(Clone, Default)]
pub struct SendRequest {
    pub r: ContainerRef,
    /// Every snapshot too, oldest first (with `from`: those after it).
    pub snapshots: bool,
    /// zstd level (0: zstd's default).
    pub level: i32,
    /// Incremental: only what changed since this snapshot, which the
    /// receiver has (see [`crate::stream`]).
    pub from: Option<String>,
    /// Trees as their backend's own streams (see [`super::native`]).
    pub native: bool,
    /// Told of the entries and bytes written so far.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for SendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRequest")
            .field("r", &self.r)
            .field("snapshots", &self.snapshots)
            .field("level", &self.level)
            .field("from", &self.from)
            .field("native", &self.native)
            .finish()
    }
}

fn text(path: &std::path::Path) -> Result<String> {
    let b = read_regular(path, crate::config::MAX_CONFIG_BYTES, OP)?;
    String::from_utf8(b).map_err(|_| err!(InvalidConfig, OP, "not UTF-8 text").at(path))
}

impl Engine {
    /// Write the stream of `req.r` to `out`. The container is locked (no
    /// copy, restore or destroy meanwhile) and must not be running: its
    /// files would change while they are read.
    pub fn send(&self, req: &SendRequest, out: &mut dyn Write) -> Result<StreamStats> {
        let _span = tracing::info_span!("send", name = %req.r.name, snapshots = req.snapshots).entered();
        names::validate(&req.r.name)?;
        let r = absref(&req.r)?;
        let _lock = ContainerLock::acquire(&r.lxcpath, &r.name)?;
        let store = Store::new(&r.lxcpath);
        if !store.exists(&r.name) {
            return Err(err!(NotFound, OP, "container {} does not exist", r.name));
        }
        let c = store.load(&r.name)?;
        if crate::state::is_running(&r) {
            return Err(err!(
                Busy,
                OP,
                "container {} is running; stop it first (its files would change while they are read)",
                r.name
            ));
        }
        let all = if req.snapshots || req.from.is_some() {
            store.snapshots(&r.name)?
        } else {
            Vec::new()
        };
        let ss = Store::new(store.snaps_path(&r.name));
        // Incremental: the base snapshot, and the snapshots after it.
        let (base, snaps) = match &req.from {
            Some(f) => {
                names::validate_snapshot(f)?;
                let Some(i) = all.iter().position(|s| &s.name == f) else {
                    return Err(err!(NotFound, OP, "container {} has no snapshot {f}", r.name));
                };
                let later = if req.snapshots {
                    all[i + 1..].to_vec()
                } else {
                    Vec::new()
                };
                (Some(all[i].clone()), later)
            }
            None => (None, all.clone()),
        };
        // Checked before a byte is written.
        let native = if req.native {
            Some(self.native_plan(&c, base.as_ref(), &snaps)?)
        } else {
            None
        };
        let mut index = Index {
            format: FORMAT.into(),
            version: match (&native, &base) {
                (Some(_), _) => VERSION_NATIVE,
                (None, Some(_)) => VERSION_DELTA,
                (None, None) => VERSION,
            },
            name: r.name.clone(),
            dir: r.dir(),
            backend: c.rootfs.kind().to_string(),
            config: text(&r.config_path())?,
            snapshots: Vec::new(),
            files: Vec::new(),
            external: Vec::new(),
            base: base.as_ref().map(|b| Base {
                name: b.name.clone(),
                ts: b.timestamp.clone(),
            }),
            sender_snapshots: if base.is_some() {
                all.iter().map(|s| s.name.clone()).collect()
            } else {
                Vec::new()
            },
            native,
            total: None,
        };
        for s in &snaps {
            index.snapshots.push(SnapIndex {
                name: s.name.clone(),
                ts: s.timestamp.clone(),
                comment: s.comment.clone(),
                config: text(&ss.r(&s.name).config_path())?,
            });
        }
        let carried = config_files(&mut index)?;
        if req.progress.is_some() && base.is_none() && !req.native {
            // Measured first, for the rate's ETA (an incremental stream's size is not known ahead).
            let mut t = Totals::default();
            for spec in snaps.iter().map(|s| &s.rootfs).chain([&c.rootfs]) {
                let o = Opened::open(self.backends.for_spec(spec)?, spec, true)?;
                let (e, b) = crate::copy::measure_tree(o.path());
                o.close()?;
                t.entries += e + 1;
                t.bytes += b;
            }
            index.total = Some(t);
        }
        let json = serde_json::to_vec_pretty(&index).map_err(|e| err!(Io, OP, "index: {e}"))?;
        let mut enc = zstd::stream::write::Encoder::new(out, req.level).map_err(|e| err!(Io, OP, "zstd: {e}"))?;
        // Compression in worker threads while this one reads the trees.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4)) as u32;
        enc.multithread(workers).map_err(|e| err!(Io, OP, "zstd: {e}"))?;
        let mut p = Packer::new(enc);
        if let Some(f) = req.progress.clone() {
            let (mut entries, mut bytes, total) = (0u64, 0u64, index.total);
            p.tick = Some(Box::new(move |b| {
                entries += 1;
                bytes += b;
                f(entries, bytes, total);
            }));
        }
        p.add_bytes(INDEX, &json)?;
        p.add_bytes("config", index.config.as_bytes())?;
        for s in &index.snapshots {
            p.add_bytes(&format!("snaps/{}/config", s.name), s.config.as_bytes())?;
            p.add_bytes(&format!("snaps/{}/ts", s.name), s.ts.as_bytes())?;
            if let Some(cm) = &s.comment {
                p.add_bytes(&format!("snaps/{}/comment", s.name), cm.as_bytes())?;
            }
        }
        for (f, data) in index.files.iter().zip(&carried) {
            p.add_file(&format!("files/{}", f.path.display()), data, f.mode)?;
        }
        if req.native {
            self.send_native_trees(&mut p, &c, base.as_ref(), &snaps)?;
        }
        // Each tree, after the one before it in an incremental stream.
        let mut prev: Option<Opened> = match &base {
            Some(b) if !req.native => Some(Opened::open(self.backends.for_spec(&b.rootfs)?, &b.rootfs, true)?),
            _ => None,
        };
        let trees = snaps
            .iter()
            .filter(|_| !req.native)
            .map(|s| (format!("snaps/{}/rootfs", s.name), &s.rootfs))
            .chain((!req.native).then(|| ("rootfs".to_string(), &c.rootfs)));
        for (prefix, spec) in trees {
            let o = Opened::open(self.backends.for_spec(spec)?, spec, true)?;
            match &prev {
                Some(b) => p.add_tree_delta(&prefix, o.path(), b.path())?,
                None => p.add_tree(&prefix, o.path())?,
            }
            if let Some(b) = prev.take() {
                b.close()?;
            }
            if base.is_some() {
                prev = Some(o);
            } else {
                o.close()?;
            }
        }
        if let Some(b) = prev.take() {
            b.close()?;
        }
        let mut stats = std::mem::take(&mut p.stats);
        stats.external = index.external.clone();
        let enc = p.finish()?;
        let out = enc.finish().map_err(|e| err!(Io, OP, "write stream: {e}"))?;
        out.flush()
            .map_err(|e| Error::new(crate::ErrorKind::Io, OP, format!("write stream: {e}")))?;
        Ok(stats)
    }
}

/// Whether `rel` (in the container dir) lies in a rootfs dir, which
/// travels as a tree.
fn in_tree(rel: &std::path::Path) -> bool {
    let c: Vec<_> = rel.components().map(|c| c.as_os_str()).collect();
    c.first().is_some_and(|f| *f == "rootfs") || (c.len() > 2 && c[0] == "snaps" && c[2] == "rootfs")
}

/// The files the configs name: those in the container dir read (and listed
/// in the index), the others listed as not carried. Returns the contents,
/// in the order of `index.files`.
fn config_files(index: &mut Index) -> Result<Vec<Vec<u8>>> {
    let mut cfgs = vec![Config::parse(&index.config)?];
    for s in &index.snapshots {
        cfgs.push(Config::parse(&s.config)?);
    }
    let mut data = Vec::new();
    for cfg in &cfgs {
        for (key, path) in files::referenced(cfg) {
            let why = match path.strip_prefix(&index.dir) {
                Ok(rel) if in_tree(rel) => continue,
                Ok(rel) => {
                    if index.files.iter().any(|f| f.path == rel) {
                        continue;
                    }
                    match files::read_beneath(&index.dir, rel)? {
                        Some((d, mode)) => {
                            index.files.push(FileIndex {
                                path: rel.to_path_buf(),
                                mode,
                            });
                            data.push(d);
                            continue;
                        }
                        None => "not a regular file",
                    }
                }
                Err(_) => "outside the container dir",
            };
            let e = External {
                key,
                path,
                why: why.into(),
            };
            if !index.external.contains(&e) {
                index.external.push(e);
            }
        }
    }
    // strata's own files beside LXC's: the snapshot schedule, the snapshots' expiry.
    let own = std::iter::once(std::path::PathBuf::from(crate::config_keys::STRATA_FILE_NAME)).chain(
        index.snapshots.iter().map(|s| {
            std::path::Path::new("snaps")
                .join(&s.name)
                .join(super::snapshot::EXPIRE_FILE)
        }),
    );
    for rel in own {
        if let Some((d, mode)) = files::read_beneath(&index.dir, &rel)? {
            index.files.push(FileIndex { path: rel, mode });
            data.push(d);
        }
    }
    Ok(data)
}
