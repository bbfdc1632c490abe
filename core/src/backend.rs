//! Backend traits: a small required trait plus optional capabilities.
//!
//! The engine asks a backend what it can do (`caps`, and the capability
//! accessors such as `snapshotter`) before acting. Core never names a
//! concrete backend: the binary registers them in a [`Backends`] list.

use crate::err;
use crate::error::Result;
use crate::spec::RootfsSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a backend can do, asked by the engine before acting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// Only root may use it (loop, lvm, zfs).
    pub needs_root: bool,
    /// Takes a size (`--fssize`).
    pub sized: bool,
    /// The rootfs is a block device or image that must be mounted to be
    /// read (the conformance suite writes a half-made one as an image).
    pub block_backed: bool,
    /// Its snapshots are taken at one instant (a filesystem or volume
    /// snapshot), so they are consistent even of a running container, the
    /// only snapshots the engine makes of one.
    pub atomic_snapshot: bool,
    /// The rootfs is host paths that a rename of the container dir carries
    /// along (those under it; those outside stay where they are): `-R` in
    /// the same lxcpath renames the dir and rewrites the config instead of
    /// copying and destroying, as LXC does for dir and overlay.
    pub renamed_with_dir: bool,
    /// The backend whose snapshots stand in for this one's when it makes
    /// none (LXC snapshots a dir container as an overlay).
    pub snapshot_fallback: Option<&'static str>,
    /// The rootfs is a host directory tree of this container alone, whose
    /// owners `strata convert` may shift in place (not an image to mount,
    /// nor a tree other containers share, as an overlay's lower dir).
    pub shift_in_place: bool,
    /// A union mount: a writable layer over a lower tree that it leaves
    /// as it is (the union type `lxc-start-ephemeral -U` names).
    pub union_mount: bool,
    /// Where `lxc-create -B best` tries it, lowest first (LXC: btrfs, zfs,
    /// lvm); `None`: never tried (best falls back to the default backend).
    pub best_order: Option<u8>,
    /// `lxc-create` flags only this backend reads (LXC's `--rbdname` for
    /// rbd), each with the [`BackendOpts::defaults`] key the front end puts
    /// its value under; given with another backend, the flag is refused.
    pub create_flags: &'static [(&'static str, &'static str)],
}

/// Options a user may pass for a new rootfs (`lxc-create`/`lxc-copy` flags and
/// the `lxc.bdev.*` defaults from lxc.conf).
#[derive(Debug, Clone, Default)]
pub struct BackendOpts {
    /// `--fssize` in bytes.
    pub fssize: Option<u64>,
    /// `--fstype` (ext4, xfs, btrfs).
    pub fstype: Option<String>,
    /// `--dir`: put a dir rootfs here instead of `$lxcpath/NAME/rootfs`.
    pub dir: Option<PathBuf>,
    pub vgname: Option<String>,
    pub thinpool: Option<String>,
    pub lvname: Option<String>,
    pub zfsroot: Option<String>,
    /// `lxc.bdev.*` and other global defaults from lxc.conf, by key.
    pub defaults: BTreeMap<String, String>,
    /// Set by the engine for a copy (not a snapshot): the rootfs it is made
    /// from. A backend may place the new one beside it, as LXC places a
    /// copy of an LV in its VG and of a dataset beside it.
    pub copy_of: Option<RootfsSpec>,
}

/// Where a new rootfs goes.
///
/// `dir` is the container directory as it will be once finished; `build_dir`
/// is where the engine assembles it now (a staging directory that is renamed
/// to `dir` at the end, or `dir` itself). Specs name paths under `dir`; files
/// are made under `build_dir` (see [`RootfsSpec::rebase`]).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub name: &'a str,
    pub lxcpath: &'a Path,
    pub dir: &'a Path,
    pub build_dir: &'a Path,
    pub opts: &'a BackendOpts,
}

impl Target<'_> {
    /// The spec as reachable now, while the container is being built.
    pub fn building(&self, spec: &RootfsSpec) -> RootfsSpec {
        spec.rebase(self.dir, self.build_dir)
    }

    /// [`build_mark`] of this build.
    pub fn mark(&self) -> String {
        build_mark(self.build_dir)
    }
}

/// A mark for what the build in `build_dir` makes outside it (an LVM tag, a
/// zfs property value): 16 hex digits of a hash of the build dir's path
/// from its last `.strata-` component on (`.strata-tmp.NAME.UNIQUE`, fresh
/// for each build, or `.strata-tmp.NAME.UNIQUE/snaps/SNAP` for a received
/// container's snapshot; see [`Backend::made_by`]); of its name when no
/// component is one. Not the whole path: the next command may reach the
/// dir through another spelling of its lxcpath.
pub fn build_mark(build_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let comps: Vec<&std::ffi::OsStr> = build_dir.iter().collect();
    let from = comps
        .iter()
        .rposition(|c| c.as_bytes().starts_with(b".strata-"))
        .unwrap_or(comps.len().saturating_sub(1));
    // FNV-1a: stable across versions and builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, c) in comps.iter().skip(from).enumerate() {
        let sep: &[u8] = if i == 0 { b"" } else { b"/" };
        for b in sep.iter().chain(c.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Disk usage of one rootfs, where the backend can know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes only this rootfs holds.
    pub exclusive: Option<u64>,
    /// Bytes this rootfs refers to, shared or not.
    pub referenced: Option<u64>,
    /// Bytes held by the backend's own snapshots of this rootfs and no
    /// longer by the rootfs itself (zfs `usedbysnapshots`), where known.
    pub snapshots: Option<u64>,
    /// Where the figures come from, as the backend declares it.
    pub source: UsageSource,
}

impl Usage {
    /// Bytes shared with other rootfs: referenced but not exclusive.
    pub fn shared(&self) -> Option<u64> {
        Some(self.referenced?.saturating_sub(self.exclusive?))
    }
}

/// How a backend knows a rootfs's usage. `Accounting` and `Allocated` are
/// the storage's own counts, read in constant time per rootfs; `Walk`
/// visits every file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UsageSource {
    /// Not known.
    #[default]
    None,
    /// The storage's own accounting (btrfs qgroups, zfs properties, LVM
    /// thin data percent, a project quota, `rbd du`): the name of it.
    Accounting(&'static str),
    /// The blocks allocated to one file (a loop image).
    Allocated,
    /// A walk of the tree (see [`crate::usage::walk`]).
    Walk,
}

impl UsageSource {
    /// A short name for listings: `qgroup`, `blocks`, `walk`, ...
    pub fn name(&self) -> &'static str {
        match self {
            UsageSource::None => "-",
            UsageSource::Accounting(s) => s,
            UsageSource::Allocated => "blocks",
            UsageSource::Walk => "walk",
        }
    }

    /// Whether the figure came without visiting the files.
    pub fn is_cheap(&self) -> bool {
        matches!(self, UsageSource::Accounting(_) | UsageSource::Allocated)
    }
}

/// At most what a new rootfs can hold, for sized backends (see
/// [`Backend::capacity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// Bytes of file data.
    pub bytes: u64,
    /// Files, directories and other entries, where that number is fixed.
    pub inodes: Option<u64>,
    /// What holds it, for messages: "a 16 MiB ext4 image".
    pub what: String,
}

/// The required part of every backend.
pub trait Backend: Send + Sync {
    /// The kind as in specs and `-B`: `dir`, `overlay`, `btrfs`, ...
    fn kind(&self) -> &'static str;

    /// Other names `-B` takes for it (LXC's older spellings).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    fn caps(&self) -> Caps;

    /// The spec a new rootfs for `t` will get, without creating anything.
    /// `origin` is the rootfs it will be cloned from, if any (an overlay
    /// clone shares its origin's lower). Must name something that does not
    /// exist yet outside `t.dir` (paths inside `t.dir` are kept apart by
    /// `t.build_dir`). Checks the options (size, fstype, pool exists, names)
    /// so that bad input fails before anything is made.
    fn plan(&self, t: &Target, origin: Option<&RootfsSpec>) -> Result<RootfsSpec>;

    /// An upper bound of what a new rootfs planned for `t` can hold, where
    /// its size is fixed (an image, a volume): a tree that cannot fit is
    /// then refused before anything is made. `None`: no such limit known.
    fn capacity(&self, _t: &Target) -> Option<Capacity> {
        None
    }

    /// Make a new, empty rootfs for the planned `spec`.
    fn create(&self, spec: &RootfsSpec, t: &Target) -> Result<()>;

    /// Remove the rootfs and everything the backend made for it. Must succeed
    /// on a half-made rootfs (crash cleanup) and on one already gone.
    fn destroy(&self, spec: &RootfsSpec) -> Result<()>;

    /// Whether the rootfs exists.
    fn exists(&self, spec: &RootfsSpec) -> bool;

    /// Whether `spec`, planned by the build in `build_dir`, is that build's
    /// own, or does not exist: undoing a killed or failed build destroys
    /// only what it made. A rootfs named outside the build dir (an LV, a
    /// dataset) may instead have been made by another build that planned
    /// the same name at the same time, in another lxcpath: such a backend
    /// marks what it makes with [`build_mark`] of its build dir and answers
    /// by that mark. The default, for a rootfs inside the build dir: true.
    fn made_by(&self, _spec: &RootfsSpec, _build_dir: &Path) -> bool {
        true
    }

    /// Whether `spec` exists and carries no build mark at all (see
    /// [`Backend::made_by`]): made by a strata from before the marks, or by
    /// hand. A build whose record says it did not mark (killed before an
    /// upgrade) made such a volume itself, and its undo destroys it. The
    /// default, for a backend that does not mark: false.
    fn unmarked(&self, _spec: &RootfsSpec) -> bool {
        false
    }

    /// Undo what the failed or killed build in `build_dir` made for the
    /// planned `spec`: by default destroy it if [`Backend::made_by`] says
    /// it is that build's own. A backend that builds under a temporary name
    /// derived from [`build_mark`] removes what it left under that name too.
    fn undo_build(&self, spec: &RootfsSpec, build_dir: &Path) -> Result<()> {
        // A volume of the planned name that another build made (it planned
        // the same name in another lxcpath) is not ours to undo.
        if !self.made_by(spec, build_dir) {
            tracing::info!("{spec} was made by another build: left alone");
            return Ok(());
        }
        self.destroy(spec)
    }

    /// A host path where the files can be read and written without mounting
    /// (dir, btrfs); `None` when it must be mounted first.
    fn local_path(&self, _spec: &RootfsSpec) -> Option<PathBuf> {
        None
    }

    /// Replace the contents of the file `rel` (such as `etc/hostname`) as
    /// [`crate::engine::fsutil::write_in_rootfs_if_regular`] would on the
    /// mounted rootfs, but without mounting it; returns whether it wrote.
    /// `None`: not possible here, mount and write instead.
    fn write_if_regular_unmounted(&self, _spec: &RootfsSpec, _rel: &str, _data: &[u8]) -> Result<Option<bool>> {
        Ok(None)
    }

    /// Mount the rootfs at `target` (an existing directory).
    fn mount(&self, spec: &RootfsSpec, target: &Path, readonly: bool) -> Result<()>;

    /// Mount the rootfs at `target` for a container that runs: a mount
    /// that lives as long as the container, not a step of one command. A
    /// backend that bounds a step's device I/O, so that no command hangs
    /// on a silent store, leaves a running container's I/O to wait as
    /// LXC's does (errors would break its filesystem). Undone by
    /// [`Backend::umount`].
    fn mount_for_run(&self, spec: &RootfsSpec, target: &Path) -> Result<()> {
        self.mount(spec, target, false)
    }

    /// Undo [`Backend::mount`], releasing loop devices and the like.
    fn umount(&self, spec: &RootfsSpec, target: &Path) -> Result<()>;

    /// Whether a [`Backend::mount`] holds nothing but the mount itself (no
    /// device to detach, no unmount that must not be lazy): such a mount
    /// can be made in a container's own mount namespace and left to the
    /// kernel, which drops it with the namespace.
    fn mount_is_self_contained(&self) -> bool {
        false
    }

    /// Release what a killed process held for a mount of `spec` at
    /// `target` (a scratch mount point, see [`crate::scratch`]): the mount
    /// if it is still there, and whatever the backend attached for it
    /// (loop devices). The spec's files may be gone by now.
    fn release(&self, spec: &RootfsSpec, target: &Path) -> Result<()> {
        if crate::scratch::is_mount_point(target) {
            self.umount(spec, target)?;
        }
        Ok(())
    }

    /// Copy-on-write clones, if the backend can make them.
    fn snapshotter(&self) -> Option<&dyn Snapshotter> {
        None
    }

    /// A native copy faster than a file-by-file one (image copy, send/receive).
    fn fast_copier(&self) -> Option<&dyn FastCopy> {
        None
    }

    /// Other rootfs that a destroy of `spec` would lose or that block it
    /// (clones of zfs snapshots, classic LVM snapshots). The engine should
    /// refuse to destroy a container that has any, naming them, unless told
    /// to go on (zfs: `--promote`; `destroy` then promotes, losing nothing).
    fn dependents(&self, _spec: &RootfsSpec) -> Result<Vec<RootfsSpec>> {
        Ok(Vec::new())
    }

    /// Refuse, before anything is changed, a destroy of `spec` that
    /// [`Backend::destroy`] could not do for this caller (a user on a btrfs
    /// that does not let users delete subvolumes).
    fn check_destroy(&self, _spec: &RootfsSpec) -> Result<()> {
        Ok(())
    }

    /// Whether [`Backend::destroy`] hands its dependents what they need
    /// before it goes (zfs promotes the clone), so they lose nothing. The
    /// engine then lets a container drop a snapshot that its own rootfs was
    /// restored from.
    fn destroy_keeps_dependents(&self) -> bool {
        false
    }

    /// Make the rootfs that hold on to `spec` (see [`Backend::dependents`])
    /// stand on their own, losing nothing, so that `spec` can be destroyed
    /// (zfs promotes the clones of its snapshots, rbd flattens them):
    /// `lxc-destroy --promote`.
    /// Returns what was changed, for the user. Nothing to do by default.
    fn release_dependents(&self, _spec: &RootfsSpec) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Its own send/receive format (btrfs send, zfs send), if it has one:
    /// `strata send --native` and `export --optimized` carry the rootfs in it.
    fn native_stream(&self) -> Option<&dyn NativeStream> {
        None
    }

    /// Disk usage, if the backend can tell.
    fn usage_reporter(&self) -> Option<&dyn UsageReport> {
        None
    }

    /// A size that can be set and changed once the rootfs exists (a
    /// quota, a device or image size), if the backend has one.
    fn resizer(&self) -> Option<&dyn Resize> {
        None
    }
}

/// How a rootfs's size is bounded and changed: `--fssize` on a backend
/// whose rootfs has no size of its own (a quota), and `strata resize`.
pub trait Resize {
    /// What bounds the size, for messages: "a btrfs qgroup limit".
    fn what(&self) -> &'static str;

    /// Refuse, before anything is made, a bound of `bytes` on a new rootfs
    /// planned for `t` (quotas off on that filesystem, ...).
    fn check_limit(&self, _t: &Target, _bytes: u64) -> Result<()> {
        Ok(())
    }

    /// Set the size of `spec` to `bytes`, growing or shrinking it, or
    /// refuse with the reason (a filesystem that cannot shrink, files that
    /// would not fit) and change nothing. `running`: the container runs
    /// with it mounted (a device then grows online where the filesystem
    /// can, and shrinking is refused).
    fn resize(&self, spec: &RootfsSpec, bytes: u64, running: bool) -> Result<()>;

    /// The size or limit it has now, if any.
    fn size(&self, spec: &RootfsSpec) -> Result<Option<u64>>;

    /// Whether shrinking `spec` to `bytes` in place could not survive a
    /// kill -9 (resize2fs moving an ext4's blocks on a device: cut in the
    /// middle, the filesystem is lost). `strata resize` then shrinks by a
    /// copy into a new rootfs of that size (of the filesystem type this
    /// returns), swapped in as a restore is, and [`Resize::resize`] shrinks
    /// in place only a rootfs still being built. `None`: in place is safe.
    fn shrinks_by_copy(&self, _spec: &RootfsSpec, _bytes: u64) -> Result<Option<String>> {
        Ok(None)
    }
}

/// Copy-on-write clones.
pub trait Snapshotter {
    /// Whether this backend can make a CoW clone of `src` (overlay takes dir
    /// and overlay rootfs; btrfs takes btrfs).
    fn can_snapshot(&self, src: &RootfsSpec) -> bool;

    /// Make `spec` (from [`Backend::plan`] with `origin = Some(src)`) as a
    /// copy-on-write clone of `src`. `readonly` for `lxc-snapshot` snapshots
    /// where the backend supports it.
    fn snapshot(&self, src: &RootfsSpec, spec: &RootfsSpec, t: &Target, readonly: bool) -> Result<()>;

    /// Whether making a snapshot commits the transaction of the filesystem
    /// it is made on (btrfs): the engine then settles the files it wrote
    /// next to it before (see [`crate::durable::SyncBatch::settle_before_commit`])
    /// and they need no fsync of their own.
    fn commits_filesystem(&self) -> bool {
        false
    }

    /// Why it cannot snapshot `src` where [`Snapshotter::can_snapshot`] says
    /// no, if the backend can tell (shown instead of a generic refusal).
    fn refusal(&self, _src: &RootfsSpec) -> Option<crate::error::Error> {
        None
    }

    /// Whether such a clone needs its source to stay (a zfs clone of its
    /// origin's snapshot): the engine then records the dependency
    /// (`lxc_snapshots`/`lxc_rdepends`) so the source refuses destroy.
    /// Overlay clones are recorded against the owner of their lower anyway.
    fn clone_depends_on_source(&self) -> bool {
        false
    }

    /// Whether a snapshot of `src` made while its container is frozen holds
    /// a consistent copy that the container's later writes do not reach
    /// (an overlay's upper dir copied, not a live dir shared as the lower):
    /// the engine then snapshots a running container, frozen meanwhile.
    /// Atomic snapshots ([`Caps::atomic_snapshot`]) need not say so.
    fn consistent_when_frozen(&self, _src: &RootfsSpec) -> bool {
        false
    }
}

/// A native full copy within one backend.
pub trait FastCopy {
    /// Copy `src` into the planned `spec`. `Ok(false)` means "not possible
    /// here" (sizes differ, other pool, ...): the engine then creates `spec`
    /// and copies files. On `Err` nothing may be left behind.
    fn fast_copy(&self, src: &RootfsSpec, spec: &RootfsSpec, t: &Target) -> Result<bool>;
}

/// A backend's own stream of a rootfs (btrfs send, zfs send): the storage's
/// own record of a tree, and of its changes since a snapshot both ends
/// have. The engine frames each stream in the container stream (see
/// [`crate::stream::native`]); the backend drives its tools.
pub trait NativeStream {
    /// The format's name in a stream's index: a receiver takes such a
    /// stream only on a backend declaring the same name.
    fn format(&self) -> &'static str;

    /// Whether a native send reads only read-only snapshots (btrfs send):
    /// the engine then sends a writable rootfs from a read-only snapshot of
    /// it that it stages (and removes) itself.
    fn sends_readonly_only(&self) -> bool {
        false
    }

    /// Refuse, naming why, a native send of `spec` that would not carry
    /// all of it (btrfs: subvolumes nested in it, which btrfs send leaves
    /// out). `as_is`: sent as it is, not from a read-only snapshot the
    /// engine stages (see [`NativeStream::sends_readonly_only`]): a
    /// snapshot that is writable (made by LXC) is refused then.
    fn check_send(&self, spec: &RootfsSpec, as_is: bool) -> Result<()>;

    /// What a receiver's copy of `spec` is known by (btrfs: its received
    /// UUID, else its UUID), for an incremental stream's base.
    fn identity(&self, spec: &RootfsSpec) -> Result<String>;

    /// Whether `spec` here is a native copy of the rootfs known as `id`
    /// (or that rootfs itself): an incremental native stream from it
    /// applies here.
    fn is_copy_of(&self, spec: &RootfsSpec, id: &str) -> Result<bool>;

    /// Write the stream of `spec` to `out`: whole, or (with `parent`, a
    /// read-only snapshot the receiver has a native copy of) only what
    /// differs from `parent`.
    fn send(&self, spec: &RootfsSpec, parent: Option<&RootfsSpec>, out: &mut dyn std::io::Write) -> Result<()>;

    /// [`NativeStream::send`] of a container's own rootfs (`main`) or of
    /// one of its snapshots. A backend whose snapshots are clones of points
    /// of the container's own volume (rbd) sends a snapshot as that point,
    /// so that the diff to the next tree is one of that volume. By default
    /// the same as `send`.
    fn send_tree(
        &self,
        spec: &RootfsSpec,
        parent: Option<&RootfsSpec>,
        main: bool,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        let _ = main;
        self.send(spec, parent, out)
    }

    /// Make the planned `spec` (as reachable while building: `t.building`)
    /// from the stream on `input`, read to its end. `parent`: this side's
    /// copy of the tree an incremental stream was sent against (the tree
    /// received before it). `writable`: the container's own rootfs;
    /// otherwise a snapshot, read-only where the backend makes them so. A
    /// failure leaves nothing; a kill -9 leaves only what
    /// [`Backend::destroy`] of `spec` removes.
    fn receive(
        &self,
        spec: &RootfsSpec,
        t: &Target,
        parent: Option<&RootfsSpec>,
        input: &mut dyn std::io::Read,
        writable: bool,
    ) -> Result<()>;

    /// Run `f` on the tree of a received `spec` (as reachable now, a tree
    /// being built) that the engine must still rearrange (another tool's
    /// layout, owners to shift), the tree writable while `f` runs;
    /// `readonly`: it was received as a read-only snapshot, and is made so
    /// again after.
    fn while_writable(&self, spec: &RootfsSpec, readonly: bool, f: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
        let _ = readonly;
        f(&spec.path())
    }
}

/// Disk usage per rootfs, from the backend's own accounting where it keeps
/// one (the [`Usage::source`] it returns says which).
pub trait UsageReport {
    fn usage(&self, spec: &RootfsSpec) -> Result<Usage>;

    /// Usage of several rootfs at once, in order: a backend whose tool
    /// reports a whole pool or filesystem in one call overrides it.
    fn usage_many(&self, specs: &[&RootfsSpec]) -> Vec<Result<Usage>> {
        specs.iter().map(|s| self.usage(s)).collect()
    }
}

/// The backends the binary wires in, found by kind or by spec.
#[derive(Clone, Default)]
pub struct Backends {
    list: Vec<Arc<dyn Backend>>,
}

impl Backends {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, b: Arc<dyn Backend>) -> &mut Self {
        self.list.push(b);
        self
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.list.iter().map(|b| b.kind()).collect()
    }

    /// The backends `-B best` tries, in its order.
    pub fn best_candidates(&self) -> Vec<&dyn Backend> {
        let mut v: Vec<(u8, &dyn Backend)> = self
            .list
            .iter()
            .filter_map(|b| b.caps().best_order.map(|o| (o, b.as_ref())))
            .collect();
        v.sort_by_key(|(o, _)| *o);
        v.into_iter().map(|(_, b)| b).collect()
    }

    /// The backend for `-B KIND`, by its kind or one of its aliases.
    /// The kinds of the backends that declare the `lxc-create` flag `flag`
    /// ([`Caps::create_flags`]).
    pub fn taking_flag(&self, flag: &str) -> Vec<&'static str> {
        self.list
            .iter()
            .filter(|b| b.caps().create_flags.iter().any(|(f, _)| *f == flag))
            .map(|b| b.kind())
            .collect()
    }

    pub fn get(&self, kind: &str) -> Result<&dyn Backend> {
        self.list
            .iter()
            .find(|b| b.kind() == kind || b.aliases().contains(&kind))
            .map(|b| b.as_ref())
            .ok_or_else(|| {
                err!(
                    InvalidSpec,
                    "find backend",
                    "unknown backend type {kind:?} (known: {})",
                    self.kinds().join(", ")
                )
            })
    }

    /// The backend of `lxc-create` without `-B`: the first registered (the
    /// binary registers LXC's default, dir, first).
    pub fn default_backend(&self) -> Result<&dyn Backend> {
        self.list
            .first()
            .map(|b| b.as_ref())
            .ok_or_else(|| err!(InvalidSpec, "find backend", "no backend registered"))
    }

    /// The backend whose native stream format is `format`.
    pub fn by_native_format(&self, format: &str) -> Option<&dyn Backend> {
        self.list
            .iter()
            .find(|b| b.native_stream().is_some_and(|n| n.format() == format))
            .map(|b| b.as_ref())
    }

    /// The backend that handles `spec`.
    pub fn for_spec(&self, spec: &RootfsSpec) -> Result<&dyn Backend> {
        self.get(spec.kind())
    }
}

/// A rootfs made reachable at a host path for the duration of a copy:
/// the backend's own path, or a temporary mount released on drop.
pub struct Opened<'a> {
    backend: &'a dyn Backend,
    spec: RootfsSpec,
    path: PathBuf,
    mounted: bool,
    _tmp: Option<crate::scratch::ScratchMount>,
}

impl<'a> Opened<'a> {
    pub fn open(backend: &'a dyn Backend, spec: &RootfsSpec, readonly: bool) -> Result<Self> {
        if let Some(path) = backend.local_path(spec) {
            return Ok(Opened {
                backend,
                spec: spec.clone(),
                path,
                mounted: false,
                _tmp: None,
            });
        }
        // Recorded before the mount: reconcile releases it if this process is killed.
        let tmp = crate::scratch::ScratchMount::new(&spec.to_string())?;
        backend.mount(spec, tmp.path(), readonly)?;
        Ok(Opened {
            backend,
            spec: spec.clone(),
            path: tmp.path().to_path_buf(),
            mounted: true,
            _tmp: Some(tmp),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmount now and report errors (drop does it silently).
    pub fn close(mut self) -> Result<()> {
        if self.mounted {
            self.mounted = false;
            self.backend.umount(&self.spec, &self.path)?;
        }
        Ok(())
    }
}

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = self.backend.umount(&self.spec, &self.path) {
                tracing::warn!("unmount {}: {e}", self.path.display());
            }
        }
    }
}
