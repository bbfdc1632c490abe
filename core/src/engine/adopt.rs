//! A container from another tool's archive (an Incus export, a Proxmox
//! vzdump): the trees come as tar entries under names that tool chose, the
//! configs were already turned into LXC's by the caller ([`crate::foreign`]).
//!
//! Built as a received container is (see `receive.rs`): a staging dir
//! `.strata-tmp.NAME.X` whose record names every rootfs it makes before any
//! is made, renamed into place once the whole archive has been read and its
//! compression's own check passed; a failure or a kill -9 anywhere leaves
//! nothing after reconcile.

use super::receive::{close_tree, Plan};
use super::rootfs::{check_backend_allowed, no_space, remove_lost_found};
use super::staging::{exists_any, make_container_dir, Record, RECORD};
use super::{absolute, Engine, ReceiveRequest};
use crate::backend::{Backend, Opened, Target};
use crate::config::Config;
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::idmap::IdMap;
use crate::lock::ContainerLock;
use crate::names;
use crate::spec::RootfsSpec;
use crate::store::{Container, ContainerRef};
use crate::stream::pax::PaxLog;
use crate::stream::{StreamStats, Unpacker};
use std::io::Read;
use std::path::{Path, PathBuf};

const OP: &str = "import";

/// A snapshot the archive holds.
#[derive(Debug, Clone)]
pub struct AdoptSnap {
    pub name: String,
    /// LXC's `ts` (`%Y:%m:%d %H:%M:%S`).
    pub ts: String,
    pub comment: Option<String>,
    pub config: Config,
}

/// What the archive describes, in LXC's terms.
#[derive(Debug, Clone)]
pub struct Adoption {
    pub name: String,
    /// The container's LXC config; `lxc.rootfs.path` and the id map are written here.
    pub config: Config,
    pub snapshots: Vec<AdoptSnap>,
    /// The id map the container runs in: the archive holds the ids seen
    /// inside the container, shifted into this map on the way in.
    pub map: Option<IdMap>,
    /// The trees come as a backend's own streams (see [`Place::Native`]).
    pub native: Option<AdoptNative>,
}

/// Trees carried as a backend's own streams (an Incus optimized export):
/// received as they are, then rearranged.
#[derive(Debug, Clone)]
pub struct AdoptNative {
    /// The format ([`crate::backend::NativeStream::format`]): only a backend
    /// declaring it takes them.
    pub format: String,
    /// The rootfs is this subdirectory of each tree received.
    pub subdir: String,
    /// The map the owners lie in as received (empty: the ids seen inside
    /// the container); shifted from it into [`Adoption::map`].
    pub on_disk: IdMap,
}

/// Where an archive entry belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// In the container's rootfs (`None`) or a snapshot's (by index), below `prefix`.
    Tree(Option<usize>, String),
    /// A whole tree as a backend's own stream: the container's (`None`) or
    /// a snapshot's (by index); each incremental from the one before it.
    Native(Option<usize>),
    /// Metadata the caller already read (or has no use for).
    Skip,
}

fn bad(msg: String) -> Error {
    err!(InvalidArgument, OP, "{msg}")
}

/// A broken or cut archive, in one line.
pub fn archive_err(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return bad("the archive ends early (cut short)".into());
    }
    bad(format!("reading the archive: {e}"))
}

impl Engine {
    /// Make the container `a` describes from the tar archive `ar` (read
    /// through the watcher of `pax`); `place` says where each entry name
    /// belongs (`None`: an entry the archive should not hold, refused).
    /// What follows the tar is read to its end too: the compression's own
    /// check there proves the archive whole.
    pub fn adopt<R: Read>(
        &self,
        req: &ReceiveRequest,
        a: &Adoption,
        mut ar: tar::Archive<R>,
        pax: &PaxLog,
        place: &dyn Fn(&[u8]) -> Option<Place>,
    ) -> Result<(Container, StreamStats)> {
        let lxcpath = absolute(&req.lxcpath)?;
        let name = req.name.clone().unwrap_or_else(|| a.name.clone());
        names::validate(&name)?;
        let mut seen = std::collections::HashSet::new();
        for s in &a.snapshots {
            names::validate_snapshot(&s.name)?;
            if !seen.insert(s.name.as_str()) {
                return Err(bad(format!("snapshot {} listed twice", s.name)));
            }
        }
        check_config(&a.config, "the container's config")?;
        for s in &a.snapshots {
            check_config(&s.config, &format!("snapshot {}'s config", s.name))?;
        }
        let map = a.map.clone().unwrap_or_default();
        if !map.is_empty() {
            map.validate()?;
        }
        if !crate::paths::is_root() {
            return Err(err!(
                PermissionDenied,
                OP,
                "import needs root (owners, device nodes and capabilities are made as archived)"
            ));
        }
        let backend = match &a.native {
            Some(n) => self.native_adopt_target(n, req.backend.as_deref())?,
            None => self.backends.get(req.backend.as_deref().unwrap_or("dir"))?,
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
        let target = |n: &str, lxc: &Path, d: &Path| -> Result<RootfsSpec> {
            backend.plan(
                &Target {
                    name: n,
                    lxcpath: lxc,
                    dir: d,
                    build_dir: d,
                    opts: &req.opts,
                },
                None,
            )
        };
        let main = target(&name, &lxcpath, &final_dir)?;
        let mut snap_specs = Vec::new();
        for s in &a.snapshots {
            snap_specs.push(target(&s.name, &snaps_lxc, &snaps_lxc.join(&s.name))?);
        }
        let staging = make_container_dir(&lxcpath, &name, &map)?;
        let plan = Plan {
            final_dir: final_dir.clone(),
            staging: staging.clone(),
            main,
            snaps: snap_specs,
            map: (!map.is_empty()).then_some(map),
            from: None,
        };
        // What it made, each with its build dir (see the receive's).
        let mut made: Vec<(RootfsSpec, PathBuf)> = Vec::new();
        let res = ar
            .entries()
            .map_err(archive_err)
            .and_then(|mut entries| {
                self.fill_foreign(
                    backend,
                    &plan,
                    a,
                    &name,
                    &lxcpath,
                    req,
                    &mut entries,
                    pax,
                    place,
                    &mut made,
                )
            })
            .and_then(|st| {
                std::io::copy(&mut ar.into_inner(), &mut std::io::sink()).map_err(archive_err)?;
                Ok(st)
            });
        let res = res.and_then(|st| {
            write_configs(&plan, a, &name)?;
            super::receive::settle(&staging)?;
            std::fs::remove_file(staging.join(RECORD)).ctx(OP, &staging)?;
            super::fsutil::rename_noreplace(&staging, &final_dir)?;
            Ok(st)
        });
        match res {
            Ok(st) => Ok((
                Container {
                    r,
                    config: Config::load(&final_dir.join("config"))?,
                    rootfs: plan.main.clone(),
                },
                st,
            )),
            Err(e) => {
                self.undo_received(&made, &plan.main, &final_dir, &staging);
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fill_foreign<R: Read>(
        &self,
        backend: &dyn Backend,
        plan: &Plan,
        a: &Adoption,
        name: &str,
        lxcpath: &Path,
        req: &ReceiveRequest,
        entries: &mut tar::Entries<'_, R>,
        pax: &PaxLog,
        place: &dyn Fn(&[u8]) -> Option<Place>,
        made: &mut Vec<(RootfsSpec, PathBuf)>,
    ) -> Result<StreamStats> {
        // Every rootfs this build may make is named before the first is made.
        let rec = Record {
            dir: plan.final_dir.clone(),
            spec: Some(plan.main.to_string()),
            dep: None,
            more: plan.snaps.iter().map(|s| s.to_string()).collect(),
            more_builds: a.snapshots.iter().map(|s| Path::new("snaps").join(&s.name)).collect(),
            marks: true,
        };
        let data = serde_json::to_vec(&rec).map_err(|e| err!(Io, OP, "{e}"))?;
        std::fs::write(plan.staging.join(RECORD), data).ctx(OP, &plan.staging)?;
        let mut stats = StreamStats::default();
        let mut cur: Option<(Option<usize>, Opened, Unpacker)> = None;
        // The trees received natively so far, in order (as reachable while building).
        let mut natives: Vec<(Option<usize>, RootfsSpec)> = Vec::new();
        let mut done: Vec<Option<usize>> = Vec::new();
        for e in entries {
            let mut e = e.map_err(archive_err)?;
            let rec = pax.take(e.raw_header_position()).map_err(bad)?;
            let path = crate::stream::entry_name(&mut e, rec.as_ref()).map_err(archive_err)?;
            let (part, prefix) = match place(&path) {
                Some(Place::Skip) => continue,
                Some(Place::Tree(part, prefix)) if a.native.is_none() => (part, prefix),
                Some(Place::Native(part)) if a.native.is_some() => {
                    if let Some((p, o, u)) = cur.take() {
                        close_tree(o, u, &mut stats)?;
                        done.push(p);
                    }
                    if done.contains(&part) {
                        return Err(bad(format!("{} comes twice", String::from_utf8_lossy(&path))));
                    }
                    let d = plan.part_dirs(part.map(|i| (i, a.snapshots[i].name.as_str())), name, lxcpath)?;
                    let (spec, t) = (d.spec, d.target(&req.opts));
                    made.push((spec.clone(), d.build.clone()));
                    let ns = backend.native_stream().expect("checked by native_adopt_target");
                    let parent = natives.last().map(|(_, s)| s);
                    let size = e.size();
                    ns.receive(&t.building(spec), &t, parent, &mut e, part.is_none())
                        .map_err(|err| no_space(backend, err))?;
                    natives.push((part, t.building(spec)));
                    stats.entries += 1;
                    stats.bytes += size;
                    done.push(part);
                    continue;
                }
                // A tree where the archive holds streams, or a stream where it holds trees.
                None | Some(Place::Tree(..) | Place::Native(_)) => {
                    return Err(bad(format!(
                        "unexpected archive entry {:?}",
                        String::from_utf8_lossy(&path)
                    )))
                }
            };
            if cur.as_ref().map(|c| c.0) != Some(part) {
                if let Some((p, o, u)) = cur.take() {
                    close_tree(o, u, &mut stats)?;
                    done.push(p);
                }
                if done.contains(&part) {
                    return Err(bad(format!("tree {prefix} comes twice")));
                }
                let d = plan.part_dirs(part.map(|i| (i, a.snapshots[i].name.as_str())), name, lxcpath)?;
                let (spec, t) = (d.spec, d.target(&req.opts));
                made.push((spec.clone(), d.build.clone()));
                backend.create(spec, &t)?;
                let o = Opened::open(backend, &t.building(spec), false)?;
                remove_lost_found(o.path());
                let u = Unpacker::new(o.path(), &prefix, plan.map.as_ref().map(IdMap::to_shift))?;
                cur = Some((part, o, u));
            }
            let (_, _, u) = cur.as_mut().expect("set above");
            u.entry(&path, &mut e, rec.as_ref())
                .map_err(|err| no_space(backend, err))?;
            if let Some(p) = &req.progress {
                p(stats.entries + u.entries, stats.bytes + u.bytes, None);
            }
        }
        if let Some((p, o, u)) = cur.take() {
            close_tree(o, u, &mut stats)?;
            done.push(p);
        }
        if !done.contains(&None) {
            return Err(bad("the archive holds no rootfs for the container (cut short?)".into()));
        }
        if let Some(n) = &a.native {
            // Every stream applied (each the next one's parent): now each
            // tree is made a rootfs, its owners shifted into the target map.
            let ns = backend.native_stream().expect("checked by native_adopt_target");
            let to = plan.map.clone().unwrap_or_default();
            for (part, spec) in &natives {
                ns.while_writable(spec, part.is_some(), &mut |root| {
                    super::hoist::hoist(root, &n.subdir)?;
                    if n.on_disk != to {
                        crate::shift::shift_tree(root, &n.on_disk, &to)?;
                    }
                    Ok(())
                })?;
            }
        }
        for (i, s) in a.snapshots.iter().enumerate() {
            if !done.contains(&Some(i)) {
                return Err(bad(format!("the archive has no tree for snapshot {}", s.name)));
            }
        }
        Ok(stats)
    }
}

impl Engine {
    /// The backend that takes trees in the native format `n` (`-B` may
    /// only name one declaring it).
    fn native_adopt_target(&self, n: &AdoptNative, asked: Option<&str>) -> Result<&dyn Backend> {
        let refuse = |to: &str| {
            bad(format!(
                "the archive holds native {} streams (an Incus --optimized-storage export), \
                 which {to}; export it again without --optimized-storage",
                n.format
            ))
        };
        match asked {
            Some(kind) => {
                let b = self.backends.get(kind)?;
                match b.native_stream() {
                    Some(ns) if ns.format() == n.format => Ok(b),
                    // Onto the backend that takes them, then a copy (file by file).
                    _ => Err(match self.backends.by_native_format(&n.format) {
                        Some(native) => bad(format!(
                            "the archive holds native {} streams (an Incus --optimized-storage export), \
                             which the {} backend does not take: import it without -B (onto {}) and \
                             lxc-copy -B {} it, or export it again without --optimized-storage",
                            n.format,
                            b.kind(),
                            native.kind(),
                            b.kind()
                        )),
                        None => refuse(&format!("the {} backend does not take", b.kind())),
                    }),
                }
            }
            None => self
                .backends
                .by_native_format(&n.format)
                .ok_or_else(|| refuse("no backend of this strata takes")),
        }
    }
}

/// The configs, each naming its new rootfs and the map; snapshots' `ts` and `comment`.
fn write_configs(plan: &Plan, a: &Adoption, name: &str) -> Result<()> {
    let fix = |c: &Config, spec: &RootfsSpec| {
        let mut c = c.clone();
        if let Some(m) = &plan.map {
            m.write_to_config(&mut c);
        }
        c.set("lxc.rootfs.path", &spec.to_string());
        if name != a.name && c.get("lxc.uts.name") == Some(a.name.as_str()) {
            c.set("lxc.uts.name", name);
        }
        c
    };
    fix(&a.config, &plan.main).save(&plan.staging.join("config"))?;
    for (s, spec) in a.snapshots.iter().zip(&plan.snaps) {
        let d = plan.staging.join("snaps").join(&s.name);
        fix(&s.config, spec).save(&d.join("config"))?;
        std::fs::write(d.join("ts"), &s.ts).ctx(OP, &d)?;
        if let Some(cm) = &s.comment {
            std::fs::write(d.join("comment"), cm).ctx(OP, &d)?;
        }
    }
    Ok(())
}

/// A key LXC 5 does not know is refused, as `lxc-create -f` refuses it.
fn check_config(c: &Config, what: &str) -> Result<()> {
    if let Some((line, key, why)) = c.unknown_keys().into_iter().next() {
        return Err(err!(InvalidConfig, OP, "{what}, line {line}: {key}: {why}"));
    }
    Ok(())
}
