//! The zfs backend: `zfs:POOL/PATH`, as LXC writes it.
//!
//! Each rootfs is a dataset under `--zfsroot` (`lxc.bdev.zfs.root`, else
//! `lxc`), created with `mountpoint=legacy` and mounted by us at the
//! container's rootfs path: a mountpoint property naming a path would go
//! stale when the engine renames a staging dir into place.
//!
//! Dataset names never collide: `ROOT/NAME` when free, else `ROOT/NAME_1`,
//! ...; snapshot `snapN` of container `c1` is `ROOT/c1_snapN`. Two builds
//! in two lxcpaths may plan one name at once: each dataset is made with its
//! build's mark (`strata:build`), the loser's `zfs create`/`clone`/`receive`
//! fails, its build is undone without touching the winner's dataset
//! ([`Backend::made_by`]) and planned again. A snapshot
//! clone is `zfs snapshot ORIG@strata-X` + `zfs clone`; a copy inside zfs is
//! `zfs send | zfs receive` (two processes, one pipe, no shell). `strata
//! send --native` carries zfs streams (see `stream.rs`).
//!
//! Every `zfs` command is a process start and most wait for a transaction
//! group, so each operation runs as few as it can: planning a rootfs is one
//! `zfs list` (origin, zfsroot and the names taken, together), and none for
//! a snapshot clone in its origin's zfsroot, whose clone tries the wanted
//! name and is planned again with the listing if it was taken, which makes
//! `lxc-copy -s` and `lxc-snapshot` two commands each, as LXC's; the hostname of a
//! clone is written through mount(2), not a command.
//!
//! A dataset whose snapshots have clones cannot simply be destroyed. The
//! engine asks [`Backend::dependents`] first and refuses (naming them);
//! once it decides to go on (restore's old rootfs, or destroy with
//! `--promote`), [`Backend::destroy`] promotes the clone of the newest such
//! snapshot (`zfs promote`), which takes the older snapshots with it, so
//! that no clone loses its data. Origin snapshots this backend made
//! (`@strata-*`) are removed once their last clone is gone.
//!
//! `--fssize` is the dataset's `refquota` (see `resize.rs`), changed by
//! `strata resize`.

mod resize;
pub mod runner;
pub mod stream;

use nix::mount::{mount, MsFlags};
use runner::{Out, Runner, SystemRunner};
use std::path::Path;
use std::sync::Arc;
use strata_core::block::{self, free_name};
use strata_core::{
    err, Backend, Caps, FastCopy, IoContext, Result, RootfsSpec, Snapshotter, Target, Usage, UsageReport, UsageSource,
};

/// Prefix of the snapshots this backend makes.
const SNAP_PREFIX: &str = "strata-";
/// The user property naming the dataset a snapshot was made for (a clone's
/// origin, a copy's source): what a killed clone or copy left is found by it.
const FOR_PROP: &str = "strata:for";
/// A dataset's maker: the [`strata_core::build_mark`] of the build that made
/// it (and of the snapshots it makes for it), set as it is made (see
/// [`Backend::made_by`]).
const BUILD_PROP: &str = "strata:build";

fn build_opt(t: &Target) -> String {
    format!("{BUILD_PROP}={}", t.mark())
}

pub struct ZfsBackend {
    run: Box<dyn Runner>,
    /// Names a dataset command of this process found taken: a snapshot
    /// clone's plan, which tries the wanted name without a listing, lists
    /// the names taken when planned again (see [`Backend::plan`]).
    taken: std::sync::Mutex<Vec<String>>,
}

pub fn backend() -> Arc<dyn Backend> {
    Arc::new(ZfsBackend::new())
}

impl Default for ZfsBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// Check a dataset name (`pool/a/b`): components of `[A-Za-z0-9_.:-]`, no
/// `@` or `#` (snapshots, bookmarks), nothing read as an option.
pub fn validate_dataset(name: &str) -> Result<()> {
    const OP: &str = "check zfs dataset name";
    let bad = |why: &str| Err(err!(InvalidName, OP, "invalid dataset name {name:?}: {why}"));
    if name.is_empty() {
        return bad("empty");
    }
    if name.starts_with('-') {
        return bad("starts with '-'");
    }
    if name.contains('@') || name.contains('#') {
        return bad("'@' and '#' name snapshots and bookmarks");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    for comp in name.split('/') {
        if comp.is_empty() {
            return bad("empty component");
        }
        if comp == "." || comp == ".." {
            return bad("'.' or '..' component");
        }
        if let Some(c) = comp
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
        {
            return bad(&format!("character {c:?} not allowed (only A-Z a-z 0-9 _ . : -)"));
        }
    }
    if !name.as_bytes()[0].is_ascii_alphabetic() {
        return bad("a pool name starts with a letter");
    }
    Ok(())
}

/// The dataset of a `zfs:` spec, checked.
pub fn parse_spec(spec: &RootfsSpec) -> Result<String> {
    if spec.kind() != "zfs" {
        return Err(err!(InvalidSpec, "zfs", "not a zfs spec: {spec}"));
    }
    validate_dataset(spec.source())?;
    Ok(spec.source().to_string())
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Rows of `-H` output: tab-separated fields.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// A snapshot of a dataset as `zfs list -t snapshot` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub name: String,
    pub createtxg: u64,
    pub clones: Vec<String>,
}

/// Parse `zfs list -H -p -o name,createtxg,clones -t snapshot` output.
pub fn parse_snaps(out: &str) -> Vec<Snap> {
    rows(out)
        .into_iter()
        .filter(|r| r.len() >= 3)
        .map(|r| Snap {
            name: r[0].clone(),
            createtxg: r[1].parse().unwrap_or(0),
            clones: r[2]
                .split(',')
                .filter(|c| !c.is_empty() && *c != "-")
                .map(str::to_string)
                .collect(),
        })
        .collect()
}

fn unique_snap() -> String {
    format!("{SNAP_PREFIX}{}", strata_core::paths::unique())
}

impl ZfsBackend {
    pub fn new() -> Self {
        Self::with_runner(Box::new(SystemRunner))
    }

    pub fn with_runner(run: Box<dyn Runner>) -> Self {
        ZfsBackend {
            run,
            taken: Default::default(),
        }
    }

    fn tool(&self, op: &str, argv: Vec<String>) -> Result<Out> {
        let o = self.run.run(&argv)?;
        if !o.ok {
            return Err(err!(
                Command,
                op,
                "{} {} failed: {}",
                argv[0],
                argv.get(1).map(String::as_str).unwrap_or(""),
                o.first_err_line()
            ));
        }
        Ok(o)
    }

    /// A dataset command failed: the name taken meanwhile (another build in
    /// another lxcpath planned it too) is told apart, so that the engine
    /// plans again.
    fn create_failed(&self, e: strata_core::Error, ds: &str) -> strata_core::Error {
        if self.ds_exists(ds) {
            if let Ok(mut t) = self.taken.lock() {
                t.push(ds.to_string());
            }
            return err!(
                AlreadyExists,
                "create zfs rootfs",
                "dataset {ds} was made meanwhile by another build: {e}"
            );
        }
        e
    }

    fn ds_exists(&self, ds: &str) -> bool {
        self.run
            .run(&s(&["zfs", "list", "-H", "-p", "-o", "name", ds]))
            .is_ok_and(|o| o.ok && o.stdout.trim() == ds)
    }

    /// The filesystems `parents` and their direct children, in one `zfs
    /// list`. A parent that does not exist is left out (zfs lists the others
    /// and exits non-zero); any other failure is an error.
    fn list_with_children(&self, parents: &[&str]) -> Result<Vec<String>> {
        let mut argv = s(&["zfs", "list", "-H", "-p", "-o", "name", "-d", "1", "-t", "filesystem"]);
        argv.extend(parents.iter().map(|p| p.to_string()));
        let o = self.run.run(&argv)?;
        let names: Vec<String> = o.stdout.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
        if !o.ok && !o.stderr.lines().any(|l| l.contains("dataset does not exist")) {
            return Err(err!(
                Command,
                "list datasets",
                "zfs list failed: {}",
                o.first_err_line()
            ));
        }
        Ok(names)
    }

    fn snaps(&self, ds: &str) -> Result<Vec<Snap>> {
        let o = self.tool(
            "list snapshots",
            s(&[
                "zfs",
                "list",
                "-H",
                "-p",
                "-o",
                "name,createtxg,clones",
                "-t",
                "snapshot",
                "-d",
                "1",
                ds,
            ]),
        )?;
        Ok(parse_snaps(&o.stdout))
    }

    fn prop(&self, ds: &str, prop: &str) -> Result<String> {
        let o = self.tool(
            "get zfs property",
            s(&["zfs", "get", "-H", "-p", "-o", "value", prop, ds]),
        )?;
        Ok(o.stdout.trim().to_string())
    }

    /// Datasets cloned from snapshots of this rootfs (they would block a
    /// destroy): the engine refuses to destroy a container that has any,
    /// unless told to promote.
    fn dependents_of(&self, spec: &RootfsSpec) -> Result<Vec<RootfsSpec>> {
        let ds = parse_spec(spec)?;
        let Some((_, snaps)) = self.state(&ds)? else {
            return Ok(vec![]);
        };
        Ok(snaps
            .into_iter()
            .flat_map(|s| s.clones)
            .map(|c| RootfsSpec::new("zfs", c))
            .collect())
    }

    /// The origin of `ds` and its snapshots, in one `zfs list`; `None` when
    /// it does not exist.
    fn state(&self, ds: &str) -> Result<Option<(String, Vec<Snap>)>> {
        let o = self.run.run(&s(&[
            "zfs",
            "list",
            "-H",
            "-p",
            "-o",
            "name,origin,createtxg,clones",
            "-t",
            "filesystem,volume,snapshot",
            "-d",
            "1",
            ds,
        ]))?;
        if !o.ok {
            if o.stderr.contains("dataset does not exist") {
                return Ok(None);
            }
            return Err(err!(
                Command,
                "list datasets",
                "zfs list failed: {}",
                o.first_err_line()
            ));
        }
        let rows = rows(&o.stdout);
        let Some(origin) = rows
            .iter()
            .find(|r| r[0] == ds)
            .map(|r| r.get(1).cloned().unwrap_or_default())
        else {
            return Ok(None);
        };
        let at = format!("{ds}@");
        let snaps = rows
            .iter()
            .filter(|r| r.len() >= 4 && r[0].starts_with(&at))
            .map(|r| Snap {
                name: r[0].clone(),
                createtxg: r[2].parse().unwrap_or(0),
                clones: r[3]
                    .split(',')
                    .filter(|c| !c.is_empty() && *c != "-")
                    .map(str::to_string)
                    .collect(),
            })
            .collect();
        Ok(Some((origin, snaps)))
    }

    /// Promote the clone of the newest snapshot of `spec` that has clones,
    /// until none of its snapshots has any. Returns the promoted datasets.
    pub fn promote_dependents(&self, spec: &RootfsSpec) -> Result<Vec<String>> {
        let ds = parse_spec(spec)?;
        let mut promoted = Vec::new();
        for _ in 0..64 {
            let snaps = self.snaps(&ds)?;
            let Some(newest) = snaps
                .iter()
                .filter(|s| !s.clones.is_empty())
                .max_by_key(|s| s.createtxg)
            else {
                return Ok(promoted);
            };
            let clone = newest.clones.last().expect("non-empty").clone();
            validate_dataset(&clone)?;
            let _span = tracing::info_span!("zfs promote", clone = %clone, origin = %newest.name).entered();
            self.tool("promote clone", s(&["zfs", "promote", &clone]))?;
            promoted.push(clone);
        }
        Err(err!(Command, "promote clone", "{ds}: clones left after 64 promotions"))
    }

    /// Snapshots this backend made for `ds` that nothing is cloned from:
    /// a clone or copy of `ds` killed between its `zfs snapshot` and the
    /// end left them (the engine recorded `ds`, not its origin). Undoing a
    /// build (`mark` its [`strata_core::build_mark`]) drops its own and
    /// those with no mark (a strata's from before the marks); a plain
    /// destroy only the latter: a live build in another lxcpath that
    /// planned the same name may be between its snapshot and its clone.
    /// One `zfs list` of the pool's snapshots.
    fn drop_made_for(&self, ds: &str, mark: Option<&str>) {
        let listing = self.tool(
            "list snapshots",
            s(&[
                "zfs",
                "list",
                "-H",
                "-p",
                "-o",
                &format!("name,{FOR_PROP},{BUILD_PROP},clones"),
                "-t",
                "snapshot",
                "-r",
                pool_of(ds),
            ]),
        );
        let Ok(o) = listing else { return };
        for r in rows(&o.stdout) {
            // Also one on the very dataset it was made for: a promotion moved
            // it there (a destroy that let a clone of its origin go on), and
            // the command was killed before it dropped it. No live command
            // makes such a snapshot: a new one is on its source.
            if r.len() < 4 || !(r[3].is_empty() || r[3] == "-") {
                continue;
            }
            let by = (!r[2].is_empty() && r[2] != "-").then_some(r[2].as_str());
            let for_ds = r[1] == ds && (by.is_none() || by == mark);
            let ours = r[0]
                .split_once('@')
                .is_some_and(|(on, n)| n.starts_with(SNAP_PREFIX) && (for_ds || (r[1] == on && on != "-")));
            if ours {
                let _span = tracing::info_span!("zfs destroy leftover snapshot", snap = %r[0]).entered();
                if let Err(e) = self.tool("destroy leftover snapshot", s(&["zfs", "destroy", &r[0]])) {
                    tracing::warn!("{e}");
                }
            }
        }
    }

    /// [`Backend::destroy`], or the undo of the build whose mark is `mark`
    /// (which decides the snapshots made for `ds` it drops, see
    /// [`Self::drop_made_for`]).
    fn destroy_as(&self, spec: &RootfsSpec, mark: Option<&str>) -> Result<()> {
        let ds = parse_spec(spec)?;
        let _span = tracing::info_span!("zfs destroy", ds = %ds).entered();
        let Some((origin, snaps)) = self.state(&ds)? else {
            self.drop_made_for(&ds, mark);
            return Ok(());
        };
        // A snapshot of ours with no clone: a copy into it was killed before
        // it dropped the snapshot it sent (on the source, made for this one).
        let killed_copy = snaps
            .iter()
            .any(|s| s.clones.is_empty() && s.name.split_once('@').is_some_and(|(_, n)| n.starts_with(SNAP_PREFIX)));
        let mut origins = vec![origin];
        if snaps.iter().any(|s| !s.clones.is_empty()) {
            self.promote_dependents(spec)?;
            // After promotions this dataset may itself be a clone now.
            origins.push(self.prop(&ds, "origin").unwrap_or_default());
            origins.dedup();
        }
        // Our origin snapshot is marked for deferred destruction first, so
        // the kernel drops it in the same transaction as its last clone: a
        // kill between the two destroys left it behind, marked with the
        // build that made it, which a later plain destroy must leave (it
        // may be a live build's).
        let deferred = match origins.as_slice() {
            [o] if o.split_once('@').is_some_and(|(_, n)| n.starts_with(SNAP_PREFIX)) => self
                .tool("defer destroy of origin snapshot", s(&["zfs", "destroy", "-d", o]))
                .is_ok()
                .then(|| o.clone()),
            _ => None,
        };
        self.tool("destroy zfs rootfs", s(&["zfs", "destroy", "-r", &ds]))?;
        for o in origins
            .iter()
            .filter(|o| o.contains('@') && Some(*o) != deferred.as_ref())
        {
            self.drop_origin(o);
        }
        if killed_copy {
            self.drop_made_for(&ds, mark);
        }
        Ok(())
    }

    /// Destroy a snapshot made by this backend if nothing is cloned from it.
    fn drop_origin(&self, origin: &str) {
        let Some((_, snap)) = origin.split_once('@') else {
            return;
        };
        if !snap.starts_with(SNAP_PREFIX) {
            return;
        }
        // zfs refuses by itself while other clones need it: no check first.
        let _ = self.tool("destroy origin snapshot", s(&["zfs", "destroy", origin]));
    }

    fn zfsroot(t: &Target) -> String {
        t.opts
            .zfsroot
            .clone()
            .or_else(|| t.opts.defaults.get("lxc.bdev.zfs.root").cloned())
            .unwrap_or_else(|| "lxc".into())
    }
}

fn pool_of(ds: &str) -> &str {
    ds.split('/').next().unwrap_or(ds)
}

/// The last components of the direct children of `parent` among `names`.
fn children_in(names: &[String], parent: &str) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| n.strip_prefix(parent)?.strip_prefix('/'))
        .filter(|c| !c.contains('/'))
        .map(str::to_string)
        .collect()
}

impl Backend for ZfsBackend {
    fn kind(&self) -> &'static str {
        "zfs"
    }

    fn caps(&self) -> Caps {
        Caps {
            needs_root: true,
            block_backed: true,
            atomic_snapshot: true,
            best_order: Some(1),
            ..Caps::default()
        }
    }

    fn plan(&self, t: &Target, origin: Option<&RootfsSpec>) -> Result<RootfsSpec> {
        const OP: &str = "plan zfs rootfs";
        let want = block::wanted_name(t, None);
        if let Some(c) = want
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
        {
            return Err(err!(
                InvalidName,
                OP,
                "container name {:?} cannot be a zfs dataset name (character {c:?})",
                t.name
            ));
        }
        // One `zfs list` answers every question: the origin exists, the zfsroot
        // exists, and which names are taken beside the new dataset.
        let (parent, taken) = match origin {
            Some(o) if o.kind() != "zfs" => {
                return Err(err!(
                    Unsupported,
                    OP,
                    "cannot make a zfs snapshot of a {} rootfs",
                    o.kind()
                ));
            }
            Some(o) => {
                let ods = parse_spec(o)?;
                let beside = ods.rsplit_once('/').map_or(ods.as_str(), |(p, _)| p).to_string();
                // A clone must live in its origin's pool: the zfsroot if it is
                // there, else beside the origin.
                let root = Self::zfsroot(t);
                let root = (validate_dataset(&root).is_ok() && pool_of(&root) == pool_of(&ods)).then_some(root);
                // The common case runs no command, as LXC's clone runs only
                // `zfs snapshot` and `zfs clone`: the origin sits in the
                // zfsroot (or no zfsroot is in its pool), so the parent
                // exists if the origin does (a missing origin fails its
                // `zfs snapshot`), and the wanted name is tried as it is. A
                // clone onto a taken name fails without touching it, notes
                // the name, and the engine undoes the build and plans again
                // (by the listing below); a kill in between leaves a record
                // naming a dataset that is not this build's, which the undo
                // spares (`made_by`).
                if root.as_deref().is_none_or(|r| r == beside) {
                    let name = format!("{beside}/{want}");
                    let known_taken = self.taken.lock().map_or(true, |t| t.contains(&name));
                    if validate_dataset(&name).is_ok() && !known_taken {
                        return Ok(RootfsSpec::new("zfs", name));
                    }
                }
                let mut parents = vec![beside.as_str()];
                parents.extend(root.as_deref().filter(|r| *r != beside));
                let listed = self.list_with_children(&parents)?;
                if !listed.contains(&ods) {
                    return Err(err!(NotFound, OP, "dataset {ods} does not exist"));
                }
                let parent = match root {
                    Some(r) if listed.contains(&r) => r,
                    _ => beside,
                };
                let taken = children_in(&listed, &parent);
                (parent, taken)
            }
            None => {
                // A copy of a dataset goes beside it (as LXC places it) unless a
                // zfsroot is given.
                let beside = t
                    .opts
                    .copy_of
                    .as_ref()
                    .filter(|s| s.kind() == "zfs" && t.opts.zfsroot.is_none())
                    .filter(|_| !t.opts.defaults.contains_key("lxc.bdev.zfs.root"))
                    .and_then(|s| parse_spec(s).ok())
                    .and_then(|ds| ds.rsplit_once('/').map(|(p, _)| p.to_string()));
                let root = beside.unwrap_or_else(|| Self::zfsroot(t));
                validate_dataset(&root)?;
                let listed = self.list_with_children(&[&root])?;
                if !listed.contains(&root) {
                    return Err(err!(
                        NotFound,
                        OP,
                        "zfs root {root:?} does not exist (create it with `zfs create {root}` or pass --zfsroot)"
                    ));
                }
                let taken = children_in(&listed, &root);
                (root, taken)
            }
        };
        let name = format!("{parent}/{}", free_name(&want, &taken));
        validate_dataset(&name)?;
        Ok(RootfsSpec::new("zfs", name))
    }

    fn create(&self, spec: &RootfsSpec, t: &Target) -> Result<()> {
        let ds = parse_spec(spec)?;
        let _span = tracing::info_span!("zfs create", ds = %ds).entered();
        self.tool(
            "create zfs rootfs",
            s(&["zfs", "create", "-o", "mountpoint=legacy", "-o", &build_opt(t), &ds]),
        )
        .map_err(|e| self.create_failed(e, &ds))?;
        Ok(())
    }

    // Every dataset this backend makes carries its build's mark from the
    // command that makes it on (create, clone, receive).
    fn made_by(&self, spec: &RootfsSpec, build_dir: &Path) -> bool {
        let Ok(ds) = parse_spec(spec) else { return true };
        if !self.ds_exists(&ds) {
            return true;
        }
        let o = self.run.run(&s(&[
            "zfs", "get", "-H", "-p", "-o", "value", "-s", "local", BUILD_PROP, &ds,
        ]));
        match o {
            Ok(o) if o.ok => o.stdout.trim() == strata_core::build_mark(build_dir),
            // Gone meanwhile, or unreadable: nothing of ours is destroyed blind.
            _ => !self.ds_exists(&ds),
        }
    }

    fn destroy(&self, spec: &RootfsSpec) -> Result<()> {
        self.destroy_as(spec, None)
    }

    // Its own snapshot made for the planned dataset goes too, whoever made
    // the dataset; a same-named live build's in another lxcpath stays.
    fn undo_build(&self, spec: &RootfsSpec, build_dir: &Path) -> Result<()> {
        let mark = strata_core::build_mark(build_dir);
        // What a native receive left under its temporary name (see `stream.rs`).
        self.drop_recv_temp(&parse_spec(spec)?, &mark)?;
        if self.made_by(spec, build_dir) {
            return self.destroy_as(spec, Some(&mark));
        }
        tracing::info!("{spec} was made by another build: left alone");
        self.drop_made_for(&parse_spec(spec)?, Some(&mark));
        Ok(())
    }

    // Marked from the command that makes it on since the marks.
    fn unmarked(&self, spec: &RootfsSpec) -> bool {
        let Ok(ds) = parse_spec(spec) else { return false };
        if !self.ds_exists(&ds) {
            return false;
        }
        let o = self.run.run(&s(&[
            "zfs", "get", "-H", "-p", "-o", "value", "-s", "local", BUILD_PROP, &ds,
        ]));
        // Not set locally: zfs prints nothing.
        matches!(o, Ok(o) if o.ok && matches!(o.stdout.trim(), "" | "-"))
    }

    fn exists(&self, spec: &RootfsSpec) -> bool {
        parse_spec(spec).is_ok_and(|ds| self.ds_exists(&ds))
    }

    fn mount(&self, spec: &RootfsSpec, target: &Path, readonly: bool) -> Result<()> {
        let ds = parse_spec(spec)?;
        let mut flags = MsFlags::empty();
        if readonly {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(Some(ds.as_str()), target, Some("zfs"), flags, None::<&str>).ctx("mount zfs rootfs", target)
    }

    fn umount(&self, _spec: &RootfsSpec, target: &Path) -> Result<()> {
        // Not lazy: zfs destroy right after needs the dataset unmounted.
        block::umount_strict(target, "unmount zfs rootfs")
    }

    fn dependents(&self, spec: &RootfsSpec) -> Result<Vec<RootfsSpec>> {
        self.dependents_of(spec)
    }

    fn destroy_keeps_dependents(&self) -> bool {
        true
    }

    fn release_dependents(&self, spec: &RootfsSpec) -> Result<Vec<String>> {
        self.promote_dependents(spec)
    }

    fn snapshotter(&self) -> Option<&dyn Snapshotter> {
        Some(self)
    }

    fn fast_copier(&self) -> Option<&dyn FastCopy> {
        Some(self)
    }

    fn usage_reporter(&self) -> Option<&dyn UsageReport> {
        Some(self)
    }

    fn resizer(&self) -> Option<&dyn strata_core::Resize> {
        Some(self)
    }

    fn native_stream(&self) -> Option<&dyn strata_core::NativeStream> {
        Some(self)
    }
}

impl Snapshotter for ZfsBackend {
    fn can_snapshot(&self, src: &RootfsSpec) -> bool {
        src.kind() == "zfs"
    }

    fn snapshot(&self, src: &RootfsSpec, spec: &RootfsSpec, t: &Target, readonly: bool) -> Result<()> {
        const OP: &str = "zfs snapshot";
        let ods = parse_spec(src)?;
        let ds = parse_spec(spec)?;
        let _span = tracing::info_span!("zfs snapshot", src = %ods, dst = %ds).entered();
        if pool_of(&ods) != pool_of(&ds) {
            return Err(err!(
                Unsupported,
                OP,
                "a clone of {ods} must be in pool {}",
                pool_of(&ods)
            ));
        }
        let snap = format!("{ods}@{}", unique_snap());
        let made_for = format!("{FOR_PROP}={ds}");
        self.tool(OP, s(&["zfs", "snapshot", "-o", &made_for, "-o", &build_opt(t), &snap]))
            .map_err(|e| {
                // Not checked by the plan (see `plan`): said as it said it.
                if e.to_string().contains("dataset does not exist") {
                    err!(NotFound, OP, "dataset {ods} does not exist")
                } else {
                    e
                }
            })?;
        let mut argv = s(&["zfs", "clone", "-o", "mountpoint=legacy", "-o", &build_opt(t)]);
        // An lxc-snapshot snapshot is never written (a restore clones it):
        // read-only, it stays the point it was cloned from, which a native
        // send then sends it as (see `stream.rs`).
        if readonly {
            argv.extend(s(&["-o", "readonly=on"]));
        }
        argv.extend([snap.clone(), ds.clone()]);
        if let Err(e) = self.tool("zfs clone", argv) {
            let _ = self.tool(OP, s(&["zfs", "destroy", &snap]));
            return Err(self.create_failed(e, &ds));
        }
        Ok(())
    }
}

impl FastCopy for ZfsBackend {
    fn fast_copy(&self, src: &RootfsSpec, spec: &RootfsSpec, t: &Target) -> Result<bool> {
        let (ods, ds) = (parse_spec(src)?, parse_spec(spec)?);
        let _span = tracing::info_span!("zfs send/receive", src = %ods, dst = %ds).entered();
        let snap = format!("{ods}@{}", unique_snap());
        let made_for = format!("{FOR_PROP}={ds}");
        self.tool(
            "zfs send",
            s(&["zfs", "snapshot", "-o", &made_for, "-o", &build_opt(t), &snap]),
        )?;
        let res = self.run.pipe(
            &s(&["zfs", "send", &snap]),
            &s(&[
                "zfs",
                "receive",
                "-u",
                "-o",
                "mountpoint=legacy",
                "-o",
                &build_opt(t),
                &ds,
            ]),
        );
        let _ = self.tool("zfs send", s(&["zfs", "destroy", &snap]));
        match res {
            Ok(o) if o.ok => {
                // The received copy keeps the sent snapshot: it is not needed.
                let recvd = format!("{ds}@{}", snap.split_once('@').map(|x| x.1).unwrap_or(""));
                let _ = self.tool("zfs receive", s(&["zfs", "destroy", &recvd]));
                Ok(true)
            }
            other => {
                // Only what this receive made: the name may have been taken
                // meanwhile by another build.
                if self.ds_exists(&ds) && self.made_by(spec, t.build_dir) {
                    let _ = self.tool("zfs receive", s(&["zfs", "destroy", "-r", &ds]));
                } else if self.ds_exists(&ds) {
                    return Err(err!(
                        AlreadyExists,
                        "zfs send/receive",
                        "dataset {ds} was made meanwhile by another build"
                    ));
                }
                match other {
                    Ok(o) => Err(err!(
                        Command,
                        "zfs send/receive",
                        "{ods} -> {ds}: {}",
                        o.first_err_line()
                    )),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

impl UsageReport for ZfsBackend {
    fn usage(&self, spec: &RootfsSpec) -> Result<Usage> {
        let ds = parse_spec(spec)?;
        let o = self.tool(
            "zfs usage",
            s(&[
                "zfs",
                "get",
                "-H",
                "-p",
                "-o",
                "value",
                "used,referenced,usedbysnapshots",
                &ds,
            ]),
        )?;
        let v: Vec<u64> = o.stdout.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if v.len() != 3 {
            return Err(err!(
                Command,
                "zfs usage",
                "unexpected output from zfs get: {:?}",
                o.stdout
            ));
        }
        // `used`: what destroying the dataset would free (its own blocks and
        // its snapshots'); `referenced`: what it sees, shared or not.
        Ok(Usage {
            exclusive: Some(v[0]),
            referenced: Some(v[1]),
            snapshots: Some(v[2]),
            source: UsageSource::Accounting("zfs"),
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod stream_tests;
