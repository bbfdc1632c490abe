//! `strata receive` / `import`: a container from a stream (see [`crate::stream`]).
//!
//! Built as every new container is: in a staging dir `.strata-tmp.NAME.X`
//! whose record names every rootfs it makes (the container's and its
//! snapshots'), renamed into place only once the whole stream has arrived
//! and checked. A stream that ends early, or a receive killed anywhere,
//! leaves nothing: reconcile destroys what the record names.

use super::rewrite::replace_dir;
use super::rootfs::{apply_fssize, check_backend_allowed, check_fssize, no_space, remove_lost_found};
use super::staging::{exists_any, make_container_dir, mkdir, Record, RECORD};
use super::{absolute, Engine};
use crate::backend::{Backend, BackendOpts, Opened, Target};
use crate::config::Config;
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::idmap::IdMap;
use crate::lock::ContainerLock;
use crate::names;
use crate::spec::RootfsSpec;
use crate::store::{Container, ContainerRef};
use crate::stream::files;
use crate::stream::{
    Index, ProgressFn, StreamStats, Unpacker, FORMAT, INDEX, MAX_INDEX, VERSION, VERSION_DELTA, VERSION_NATIVE,
};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const OP: &str = "receive";

#[derive(Clone, Default)]
pub struct ReceiveRequest {
    pub lxcpath: PathBuf,
    /// The new container's name; `None`: the name it was sent under.
    pub name: Option<String>,
    /// `-B`; `None` means dir.
    pub backend: Option<String>,
    pub opts: BackendOpts,
    /// Make the container unprivileged with this map: owners, ACLs and
    /// file capabilities shifted into it, its `lxc.idmap` lines written.
    pub map: Option<IdMap>,
    /// Told of the entries and bytes read so far.
    pub progress: Option<ProgressFn>,
    /// An import's archive file: counts what is read of it (see [`crate::stream::InputPos`]).
    pub input_pos: Option<crate::stream::InputPos>,
}

impl std::fmt::Debug for ReceiveRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveRequest")
            .field("lxcpath", &self.lxcpath)
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("map", &self.map)
            .finish()
    }
}

/// One tree of the stream: a snapshot (by index) or the container's own rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Snap(usize),
    Main,
}

/// What a receive or an import builds: the container's rootfs and its
/// snapshots', in a staging dir renamed to `final_dir` at the end.
pub(super) struct Plan {
    pub final_dir: PathBuf,
    pub staging: PathBuf,
    pub main: RootfsSpec,
    pub snaps: Vec<RootfsSpec>,
    /// The target's id map (`--map`, or the archive's own).
    pub map: Option<IdMap>,
    /// The map the stream's owners lie in, where it is another one than
    /// `map` (an unprivileged container received with `--map`).
    pub from: Option<IdMap>,
}

/// Where one tree of a [`Plan`] is built: its planned spec, final dir,
/// build dir, and the name and lxcpath it will have.
pub(super) struct PartDirs<'p> {
    pub spec: &'p RootfsSpec,
    pub dir: PathBuf,
    pub build: PathBuf,
    pub name: String,
    pub lxcpath: PathBuf,
}

impl Plan {
    /// How owners are shifted on the way in: from the stream's map (none:
    /// the ids seen inside) into the target's.
    pub fn shift(&self) -> Result<Option<crate::idmap::IdShift>> {
        match (&self.from, &self.map) {
            (Some(f), Some(t)) => crate::shift::compose(f, t).map(Some),
            (_, m) => Ok(m.as_ref().map(IdMap::to_shift)),
        }
    }

    /// The dirs of the container's own tree (`None`), or of snapshot `i`
    /// named `snap` (its build dir made here); `name` and `lxcpath`: the
    /// container's.
    pub(super) fn part_dirs(&self, part: Option<(usize, &str)>, name: &str, lxcpath: &Path) -> Result<PartDirs<'_>> {
        let Some((i, snap)) = part else {
            return Ok(PartDirs {
                spec: &self.main,
                dir: self.final_dir.clone(),
                build: self.staging.clone(),
                name: name.to_string(),
                lxcpath: lxcpath.to_path_buf(),
            });
        };
        let snaps_build = self.staging.join("snaps");
        if !snaps_build.is_dir() {
            mkdir(&snaps_build, 0o755)?;
        }
        let build = snaps_build.join(snap);
        mkdir(&build, 0o770)?;
        let snaps_final = self.final_dir.join("snaps");
        Ok(PartDirs {
            spec: &self.snaps[i],
            dir: snaps_final.join(snap),
            build,
            name: snap.to_string(),
            lxcpath: snaps_final,
        })
    }
}

impl PartDirs<'_> {
    pub(super) fn target<'t>(&'t self, opts: &'t BackendOpts) -> Target<'t> {
        Target {
            name: &self.name,
            lxcpath: &self.lxcpath,
            dir: &self.dir,
            build_dir: &self.build,
            opts,
        }
    }
}

pub(super) fn bad(msg: String) -> Error {
    err!(InvalidArgument, OP, "{msg}")
}

/// Not a stream at all, or one cut short: say so in one line.
pub(super) fn stream_err(e: std::io::Error) -> Error {
    let m = e.to_string();
    if m.contains("Unknown frame descriptor") {
        return bad("not a strata container stream (no zstd frame)".into());
    }
    if e.kind() == std::io::ErrorKind::UnexpectedEof || m.contains("incomplete frame") {
        return bad("the stream ends early (cut short)".into());
    }
    bad(format!("reading the stream: {m}"))
}

impl Engine {
    /// Make a container from the stream on `input`; returns it and what was read.
    pub fn receive(&self, req: &ReceiveRequest, input: Box<dyn Read + Send>) -> Result<(Container, StreamStats)> {
        let lxcpath = absolute(&req.lxcpath)?;
        let dec = zstd::stream::read::Decoder::new(input).map_err(stream_err)?;
        // Decompressed in a thread of its own while this one writes the files.
        let dec = crate::stream::ahead::read_ahead(Box::new(dec), "strata-unzstd").map_err(stream_err)?;
        let (dec, pax) = crate::stream::pax::Watched::new(dec);
        let mut ar = tar::Archive::new(dec);
        let mut entries = ar.entries().map_err(stream_err)?;
        // The index first: nothing is made before it is read and checked.
        let index: Index = {
            let mut e = match entries.next() {
                Some(e) => e.map_err(stream_err)?,
                None => return Err(bad("empty stream".into())),
            };
            let rec = pax.take(e.raw_header_position()).map_err(bad)?;
            if crate::stream::entry_name(&mut e, rec.as_ref()).map_err(stream_err)? != INDEX.as_bytes() {
                return Err(bad(format!(
                    "not a strata container stream (first entry is not {INDEX})"
                )));
            }
            if e.size() > MAX_INDEX {
                return Err(bad("index too large".into()));
            }
            let mut buf = Vec::new();
            e.read_to_end(&mut buf).map_err(stream_err)?;
            serde_json::from_slice(&buf).map_err(|e| bad(format!("bad index: {e}")))?
        };
        if index.format != FORMAT || ![VERSION, VERSION_DELTA, VERSION_NATIVE].contains(&index.version) {
            return Err(bad(format!(
                "unsupported stream format {} version {} (this strata reads {FORMAT} versions {VERSION} to {VERSION_NATIVE})",
                index.format, index.version
            )));
        }
        if (index.version == VERSION_NATIVE) != index.native.is_some() {
            return Err(bad(
                "bad index: a native stream names its format, and only it does".into()
            ));
        }
        if index.version != VERSION_NATIVE && (index.version == VERSION_DELTA) != index.base.is_some() {
            return Err(bad(
                "bad index: an incremental stream needs its base, and only it has one".into(),
            ));
        }
        if let Some(n) = &index.native {
            if n.base.is_some() != index.base.is_some() {
                return Err(bad(
                    "bad index: a native incremental stream names its base's identity".into()
                ));
            }
            if req.map.is_some() {
                return Err(bad(
                    "--map does not apply to a native stream (it carries owners as they are); \
                     receive it without --map, then use strata convert"
                        .into(),
                ));
            }
        }
        let name = req.name.clone().unwrap_or_else(|| index.name.clone());
        names::validate(&name)?;
        let mut seen = std::collections::HashSet::new();
        for s in &index.snapshots {
            names::validate_snapshot(&s.name)?;
            if !seen.insert(s.name.as_str()) {
                return Err(bad(format!("snapshot {} listed twice", s.name)));
            }
        }
        for f in &index.files {
            if files::components(&f.path).is_none() {
                return Err(bad(format!("carried file {:?}: not a plain relative name", f.path)));
            }
        }
        // The configs are checked before anything is made.
        let cfg = Config::parse(&index.config)?;
        check_config(&cfg, "config")?;
        let mut map = IdMap::from_config(&cfg)?;
        // The sender's map, where an unprivileged container is received
        // into another one: its owners go from the one to the other.
        let mut from = None;
        if let Some(m) = &req.map {
            if !map.is_empty() && index.base.is_none() {
                // Checked before anything is made: the maps must share container ids.
                crate::shift::compose(&map, m).map_err(|e| {
                    bad(format!(
                        "the stream's map ({}) and --map: {}",
                        map.config_values().join(", "),
                        e.msg
                    ))
                })?;
                from = Some(map.clone());
            }
            map = m.clone();
        }
        let mut snap_cfgs = Vec::new();
        for s in &index.snapshots {
            let c = Config::parse(&s.config)?;
            check_config(&c, &format!("snaps/{}/config", s.name))?;
            snap_cfgs.push(c);
        }
        if index.base.is_some() {
            let mut rf = self.refresh_begin(req, &index, cfg, &snap_cfgs)?;
            let st = match &index.native {
                Some(n) => {
                    self.native_refresh_check(&rf, &index, n)?;
                    self.refresh_fill_native(&mut rf, &index, &mut entries, &pax, req.progress.as_ref())?
                }
                None => self.refresh_fill(&mut rf, &index, &mut entries, &pax, req.progress.as_ref())?,
            };
            // The rest of the zstd frame, whose end proves the stream whole.
            let mut dec = ar.into_inner();
            if let Err(e) = std::io::copy(&mut dec, &mut std::io::sink()) {
                self.refresh_abort(&mut rf);
                return Err(stream_err(e));
            }
            let c = self.refresh_end(rf, &index)?;
            return Ok((c, st));
        }
        if !crate::paths::is_root() {
            return Err(err!(
                PermissionDenied,
                OP,
                "receive needs root (owners, device nodes and capabilities are made as sent)"
            ));
        }
        let backend = match (&index.native, req.backend.as_deref()) {
            (Some(n), asked) => self.native_target(&index, n, asked)?,
            (None, Some(kind)) => self.backends.get(kind)?,
            (None, None) => self.backends.default_backend()?,
        };
        check_backend_allowed(backend)?;
        let r = ContainerRef::new(&lxcpath, &name);
        if !lxcpath.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&lxcpath)
                .ctx(OP, &lxcpath)?;
        }
        let _lock = ContainerLock::acquire(&lxcpath, &name)?;
        let final_dir = r.dir();
        if exists_any(&final_dir) {
            return Err(err!(AlreadyExists, OP, "container {name} already exists").at(&final_dir));
        }
        let snaps_lxc = final_dir.join("snaps");
        let main_t = Target {
            name: &name,
            lxcpath: &lxcpath,
            dir: &final_dir,
            build_dir: &final_dir,
            opts: &req.opts,
        };
        let main = backend.plan(&main_t, None)?;
        check_fssize(backend, &main_t)?;
        let mut snap_specs = Vec::new();
        for s in &index.snapshots {
            let d = snaps_lxc.join(&s.name);
            snap_specs.push(backend.plan(
                &Target {
                    name: &s.name,
                    lxcpath: &snaps_lxc,
                    dir: &d,
                    build_dir: &d,
                    opts: &req.opts,
                },
                None,
            )?);
        }
        let staging = make_container_dir(&lxcpath, &name, &map)?;
        let plan = Plan {
            final_dir: final_dir.clone(),
            staging: staging.clone(),
            main,
            snaps: snap_specs,
            map: req.map.clone(),
            from,
        };
        // What it made, each with its build dir (the staging dir, or
        // `snaps/SNAP` in it): an undo goes by that dir's mark.
        let mut made: Vec<(RootfsSpec, PathBuf)> = Vec::new();
        let mut carried: Vec<Option<Vec<u8>>> = vec![None; index.files.len()];
        let res = self.fill(
            backend,
            &plan,
            &index,
            &name,
            &lxcpath,
            &req.opts,
            &mut entries,
            &pax,
            &mut made,
            &mut carried,
            req.progress.as_ref(),
        );
        // What follows the archive: the rest of the zstd frame, whose end proves the stream whole.
        let res = res.and_then(|st| {
            let mut dec = ar.into_inner();
            std::io::copy(&mut dec, &mut std::io::sink()).map_err(stream_err)?;
            Ok(st)
        });
        let res = res.and_then(|st| {
            self.write_configs(&plan, &index, &name, cfg, snap_cfgs)?;
            write_files(&plan.staging, &index, carried)?;
            settle(&staging)?;
            std::fs::remove_file(staging.join(RECORD)).ctx(OP, &staging)?;
            super::fsutil::rename_noreplace(&staging, &final_dir)?;
            Ok(st)
        });
        match res {
            Ok(mut st) => Ok((
                Container {
                    r,
                    config: Config::load(&final_dir.join("config"))?,
                    rootfs: plan.main.clone(),
                },
                {
                    st.external = index.external.clone();
                    st
                },
            )),
            Err(e) => {
                self.undo_received(&made, &plan.main, &final_dir, &staging);
                Err(e)
            }
        }
    }

    /// Undoes what a failed receive or import made: each rootfs as any
    /// build's is (by its build dir's mark, so an LV or dataset of the
    /// planned name that a build in another lxcpath made is spared), then
    /// the staging dir, unless a rootfs could not be undone (it is left to
    /// a later command's reconcile).
    pub(super) fn undo_received(
        &self,
        made: &[(RootfsSpec, PathBuf)],
        main: &RootfsSpec,
        final_dir: &Path,
        staging: &Path,
    ) {
        let mut left = false;
        for (m, build) in made {
            if m == main {
                continue;
            }
            if let Err(e) = self.undo_rootfs(&m.rebase(final_dir, staging), build, true) {
                tracing::warn!("cleanup of {m}: {e}");
                left = true;
            }
        }
        if !left {
            self.abort_staging(staging, final_dir, Some(main), true);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fill<R: Read>(
        &self,
        backend: &dyn Backend,
        plan: &Plan,
        index: &Index,
        name: &str,
        lxcpath: &Path,
        opts: &BackendOpts,
        entries: &mut tar::Entries<'_, R>,
        pax: &crate::stream::pax::PaxLog,
        made: &mut Vec<(RootfsSpec, PathBuf)>,
        carried: &mut [Option<Vec<u8>>],
        progress: Option<&ProgressFn>,
    ) -> Result<StreamStats> {
        let rec = Record {
            dir: plan.final_dir.clone(),
            spec: Some(plan.main.to_string()),
            dep: None,
            more: plan.snaps.iter().map(|s| s.to_string()).collect(),
            more_builds: index
                .snapshots
                .iter()
                .map(|s| Path::new("snaps").join(&s.name))
                .collect(),
            marks: true,
        };
        let data = serde_json::to_vec(&rec).map_err(|e| err!(Io, OP, "{e}"))?;
        std::fs::write(plan.staging.join(RECORD), data).ctx(OP, &plan.staging)?;
        let mut stats = StreamStats::default();
        let mut cur: Option<(Part, Opened, Unpacker)> = None;
        let mut done: Vec<Part> = Vec::new();
        let part_dirs = |part: Part| {
            let snap = match part {
                Part::Main => None,
                Part::Snap(i) => Some((i, index.snapshots[i].name.as_str())),
            };
            plan.part_dirs(snap, name, lxcpath)
        };
        // The tree a native section before this one made (the next one's parent).
        let mut last_native: Option<RootfsSpec> = None;
        // Not a `for` loop: a native section reads its chunks from `entries` itself.
        while let Some(e) = entries.next() {
            let mut e = e.map_err(stream_err)?;
            let rec = pax.take(e.raw_header_position()).map_err(bad)?;
            let path = crate::stream::entry_name(&mut e, rec.as_ref()).map_err(stream_err)?;
            let found = if index.native.is_some() {
                native_part_of(index, &path)
            } else {
                part_of(index, &path)
            };
            if let (Some(_), Some((part, prefix))) = (&index.native, &found) {
                if done.contains(part) {
                    return Err(bad(format!("tree {prefix} comes twice")));
                }
                let d = part_dirs(*part)?;
                let (spec, t) = (d.spec, d.target(opts));
                made.push((spec.clone(), d.build.clone()));
                let p = progress.map(|f| (f, stats.entries, stats.bytes));
                let parent = last_native.take();
                let n = self.receive_native_part(
                    backend,
                    spec,
                    &t,
                    *part,
                    prefix,
                    parent.as_ref(),
                    entries,
                    pax,
                    e,
                    &path,
                    p,
                )?;
                apply_fssize(backend, &t, &t.building(spec))?;
                last_native = Some(t.building(spec));
                stats.entries += 1;
                stats.bytes += n;
                done.push(*part);
                continue;
            }
            let Some((part, prefix)) = found else {
                if is_meta(index, &path) {
                    continue;
                }
                if let Some(i) = path
                    .strip_prefix(b"files/")
                    .and_then(|rel| index.files.iter().position(|f| f.path.as_os_str().as_bytes() == rel))
                {
                    if carried[i].is_some() || e.header().entry_type() != tar::EntryType::Regular {
                        return Err(bad(format!("bad stream entry {:?}", String::from_utf8_lossy(&path))));
                    }
                    if e.size() > files::MAX_FILE {
                        return Err(bad(format!("{:?} is too large", String::from_utf8_lossy(&path))));
                    }
                    let mut d = Vec::new();
                    e.read_to_end(&mut d).map_err(stream_err)?;
                    carried[i] = Some(d);
                    continue;
                }
                return Err(bad(format!(
                    "unexpected stream entry {:?}",
                    String::from_utf8_lossy(&path)
                )));
            };
            if cur.as_ref().map(|c| c.0) != Some(part) {
                if let Some((p, o, u)) = cur.take() {
                    close_tree(o, u, &mut stats)?;
                    done.push(p);
                }
                if done.contains(&part) {
                    return Err(bad(format!("tree {prefix} comes twice")));
                }
                let d = part_dirs(part)?;
                let (spec, t) = (d.spec, d.target(opts));
                made.push((spec.clone(), d.build.clone()));
                backend.create(spec, &t)?;
                apply_fssize(backend, &t, &t.building(spec))?;
                let o = Opened::open(backend, &t.building(spec), false)?;
                remove_lost_found(o.path());
                let u = Unpacker::new(o.path(), &prefix, plan.shift()?)?;
                cur = Some((part, o, u));
            }
            let (_, _, u) = cur.as_mut().expect("set above");
            u.entry(&path, &mut e, rec.as_ref())
                .map_err(|err| no_space(backend, err))?;
            if let Some(p) = progress {
                p(stats.entries + u.entries, stats.bytes + u.bytes, index.total);
            }
        }
        if let Some((p, o, u)) = cur.take() {
            close_tree(o, u, &mut stats)?;
            done.push(p);
        }
        if !done.contains(&Part::Main) {
            return Err(bad("the stream ends before the container's rootfs (cut short?)".into()));
        }
        for (i, s) in index.snapshots.iter().enumerate() {
            if !done.contains(&Part::Snap(i)) {
                return Err(bad(format!("the stream has no tree for snapshot {}", s.name)));
            }
        }
        Ok(stats)
    }

    /// The configs, their paths rewritten from the sender's container dir
    /// to this one, each naming its new rootfs; snapshots' `ts` and `comment`.
    fn write_configs(&self, plan: &Plan, index: &Index, name: &str, mut cfg: Config, snaps: Vec<Config>) -> Result<()> {
        let (old, new) = (index.dir.display().to_string(), plan.final_dir.display().to_string());
        let fix = |c: &mut Config, spec: &RootfsSpec| {
            c.rewrite(|_, v| v.contains(&old).then(|| replace_dir(v, &old, &new)));
            if let Some(m) = &plan.map {
                m.write_to_config(c);
            }
            c.set("lxc.rootfs.path", &spec.to_string());
            if name != index.name && c.get("lxc.uts.name") == Some(index.name.as_str()) {
                c.set("lxc.uts.name", name);
            }
        };
        fix(&mut cfg, &plan.main);
        cfg.save(&plan.staging.join("config"))?;
        for ((s, mut c), spec) in index.snapshots.iter().zip(snaps).zip(&plan.snaps) {
            let d = plan.staging.join("snaps").join(&s.name);
            fix(&mut c, spec);
            c.save(&d.join("config"))?;
            std::fs::write(d.join("ts"), &s.ts).ctx(OP, &d)?;
            if let Some(cm) = &s.comment {
                std::fs::write(d.join("comment"), cm).ctx(OP, &d)?;
            }
        }
        Ok(())
    }
}

/// The tree unpacked so far is complete: its counts added to `stats`, its
/// directories' times set, its rootfs closed.
pub(super) fn close_tree(o: Opened, u: Unpacker, stats: &mut StreamStats) -> Result<()> {
    stats.entries += u.entries;
    stats.bytes += u.bytes;
    u.finish()?;
    o.close()
}

/// Carried files (hook scripts, fstabs) into the staged container dir,
/// beside its config; only the `snaps` dirs may be entered on the way.
fn write_files(staging: &Path, index: &Index, carried: Vec<Option<Vec<u8>>>) -> Result<()> {
    let may_enter = |at: &Path| {
        let c: Vec<_> = at.components().map(|c| c.as_os_str()).collect();
        c[0] == "snaps" && (c.len() == 1 || (c.len() == 2 && index.snapshots.iter().any(|s| c[1] == s.name.as_str())))
    };
    for (f, d) in index.files.iter().zip(carried) {
        let d = d.ok_or_else(|| bad(format!("the stream has no file {}", f.path.display())))?;
        files::write_beneath(staging, &f.path, &d, f.mode, &may_enter)?;
    }
    Ok(())
}

/// A key LXC 5 does not know is refused here, as `lxc-create -f` refuses it.
pub(super) fn check_config(c: &Config, what: &str) -> Result<()> {
    if let Some((line, key, why)) = c.unknown_keys().into_iter().next() {
        return Err(err!(
            InvalidConfig,
            OP,
            "{what} in the stream, line {line}: {key}: {why}"
        ));
    }
    Ok(())
}

/// Which tree an archive name belongs to, with that tree's prefix.
pub(super) fn part_of(index: &Index, path: &[u8]) -> Option<(Part, String)> {
    if crate::stream::strip_tree(b"rootfs", path).is_some() {
        return Some((Part::Main, "rootfs".into()));
    }
    let rest = path.strip_prefix(b"snaps/")?;
    for (i, s) in index.snapshots.iter().enumerate() {
        let prefix = format!("{}/rootfs", s.name);
        if crate::stream::strip_tree(prefix.as_bytes(), rest).is_some() {
            return Some((Part::Snap(i), format!("snaps/{prefix}")));
        }
    }
    None
}

/// Which tree a native section's entry belongs to, with that tree's prefix.
pub(super) fn native_part_of(index: &Index, path: &[u8]) -> Option<(Part, String)> {
    (0..index.snapshots.len())
        .map(Part::Snap)
        .chain([Part::Main])
        .map(|p| (p, super::refresh::prefix_of(index, p)))
        .find(|(_, pre)| crate::stream::native::is_section_entry(pre, path))
}

/// The plain-text copies of what the index holds.
pub(super) fn is_meta(index: &Index, path: &[u8]) -> bool {
    if path == b"config" {
        return true;
    }
    index.snapshots.iter().any(|s| {
        ["config", "ts", "comment"]
            .iter()
            .any(|f| path == format!("snaps/{}/{f}", s.name).as_bytes())
    })
}

/// The staged files on disk before the rename that publishes them.
pub(super) fn settle(staging: &Path) -> Result<()> {
    if crate::durable::is_volatile() {
        return Ok(());
    }
    let f = std::fs::File::open(staging).ctx(OP, staging)?;
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs on an fd we own.
    if unsafe { libc::syncfs(f.as_raw_fd()) } < 0 {
        return Err(Error::io(OP, staging, std::io::Error::last_os_error()));
    }
    Ok(())
}
