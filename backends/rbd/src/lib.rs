//! The rbd backend: Ceph RADOS block device images, `rbd:/dev/rbd/POOL/NAME`
//! as LXC writes it.
//!
//! A new rootfs is an image of `--fssize` (1G) in `--rbdpool`
//! (`lxc.bdev.rbd.rbdpool`, else `lxc`), named `--rbdname` or after the
//! container, with a filesystem (`--fstype`, ext4). LXC creates, maps,
//! formats and leaves the image mapped, and refuses to mount one that is not
//! mapped; here an image is mapped when it is mounted (a new one once, by
//! its create, for the mount that fills it) and unmapped when the
//! last user is done (the kernel refuses a plain unmap while the device is
//! open, in any mount namespace), so after a reboot or a lost mapping the
//! next mount maps it again. The device is found in the kernel's list (sysfs, what
//! `rbd device list` reads), not
//! through udev's `/dev/rbd/POOL/NAME` link, which the spec keeps only
//! because LXC writes it; an unmap is the write to sysfs `rbd unmap`
//! makes, and so is a map where the ceph config is plain ([`kmap`]): each
//! process of the rbd tool costs seconds on a slow machine.
//!
//! Every image is built under a name of its build's own,
//! `NAME.strata-MARK` (MARK: [`strata_core::build_mark`] of the build
//! dir), given the metadata `strata.build=MARK` and renamed to `NAME`
//! (a new image right after its `rbd create`, a clone once its filesystem
//! has its own UUID): two builds in two lxcpaths that planned one name
//! never touch each other's image (the loser's rename fails, it plans
//! again), and what a killed build left is found by its name or its mark
//! ([`Backend::undo_build`]). A new image's name is planned without
//! listing the pool (its rename is the check), and a command lists a pool
//! once for its first look and the steps after it, taking each change it
//! makes into that listing: every `rbd` process costs seconds on a slow
//! machine, and these are what an operation costs beside LXC's (the count
//! per operation is pinned in `counts.rs`).
//!
//! What LXC's backend lacks: a snapshot clone is `rbd snap create
//! SRC@strata-NEW.strata-MARK`, `snap protect` and `rbd clone` (layering);
//! the snapshot's name says which build it was made for, so what a killed
//! clone left is found from that build. A snapshot of an image that is in
//! use (mounted: a running container) is taken with its filesystem frozen
//! (FIFREEZE through a second mount of the same device, recorded as a
//! scratch mount so that reconcile thaws and releases it if the command is
//! killed): the clone's filesystem is clean, not one to recover. A destroy of an image whose
//! snapshots have clones is refused by the engine (naming them) unless it
//! goes on (restore's old rootfs, `lxc-destroy --promote`): the clones are
//! then flattened first, so none loses data. An origin snapshot this
//! backend made is removed with its last clone.
//!
//! Every command is an argv (never a shell) with `--format json` where it
//! reports, and bounds on how long the cluster is waited for ([`Timeouts`]:
//! connecting, each monitor and each OSD request, in the tool and in the
//! kernel's map): a cluster that stops answering makes a command fail in
//! one line naming the image, never hang; the first request it did not
//! answer makes every later `rbd` of the same process fail at once (a
//! command then waits for one timeout, not one per step), and what the
//! command left is finished or undone by the next one's reconcile. The
//! cephx user is `--rbduser` (at create) or `lxc.bdev.rbd.rbduser` from
//! lxc.conf, else Ceph's default; its key comes from the ceph config.

pub mod freeze;
pub mod kmap;
mod resize;
pub mod runner;
pub mod stream;

use runner::{Out, Runner, SystemRunner};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use strata_core::block::{self, pick_name};
use strata_core::{err, Backend, Caps, Result, RootfsSpec, Snapshotter, Target, Usage, UsageReport};

/// `BackendOpts::defaults` key of `--rbdname` (the front end puts it there).
pub const OPT_RBDNAME: &str = "strata.rbd.rbdname";
/// The pool key of lxc.conf (LXC's); `--rbdpool` overrides it.
pub const KEY_POOL: &str = "lxc.bdev.rbd.rbdpool";
/// The cephx user key of lxc.conf (strata's; LXC 5 has none); `--rbduser`
/// overrides it.
pub const KEY_USER: &str = "lxc.bdev.rbd.rbduser";
/// The key of lxc.conf (strata's) giving every one of [`Timeouts`] in
/// seconds, for a cluster slower or faster to fail than the defaults.
pub const KEY_TIMEOUT: &str = "lxc.bdev.rbd.timeout";

const DEFAULT_SIZE: u64 = 1 << 30;
/// Prefix of the snapshots this backend makes: `strata-NEWIMAGE` (older
/// versions) or `strata-NEWIMAGE.strata-MARK`.
const SNAP_PREFIX: &str = "strata-";
/// The image metadata key holding the mark of the build that made it.
pub const META_BUILD: &str = "strata.build";
/// The kernel's list of rbd devices, one directory per device id.
pub const SYSFS_DEVICES: &str = "/sys/bus/rbd/devices";
/// Times an unmap is tried again, 200 ms apart, while the device is busy
/// with a holder about to let go (a prober, a namespace being torn down).
const SETTLE_TRIES: u32 = 15;
/// How long an unmap waits, beyond its tries, for a udev worker that holds
/// the device (see [`Kernel::locked`]): its rules run seconds under load
/// in an emulated guest, and udev kills a worker after 180 s.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long the undo of a killed build waits for a stale watch on its own
/// image to go (see [`RbdBackend::await_stale_watch`]): the OSD drops a
/// watch its client stopped pinging after osd_client_watch_timeout (30 s).
const WATCH_EXPIRY: std::time::Duration = std::time::Duration::from_secs(45);

/// How long a command waits for the cluster, in seconds. Ceph's own
/// defaults wait forever for a monitor or an OSD request once connected
/// (`rados_mon_op_timeout`, `rados_osd_op_timeout` 0; the kernel's
/// `osd_request_timeout` 0) and 300 s to connect: a cluster that stops
/// answering would hang the command. Each bound is per request, not per
/// command: a long export-diff or flatten is many requests, each answered
/// in milliseconds by a live cluster (seconds under emulation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To reach the monitors and authenticate (`client_mount_timeout`; the
    /// kernel's `mount_timeout`).
    pub connect: u32,
    /// Each monitor request once connected, the first OSD map among them
    /// (`rados_mon_op_timeout`).
    pub mon: u32,
    /// Each OSD request (`rados_osd_op_timeout`; the kernel's
    /// `osd_request_timeout`, which bounds the I/O of a mapped device too:
    /// its filesystem then gets errors instead of a hang).
    pub osd: u32,
    /// Whether a map passes the kernel `osd_request_timeout`: yes for a
    /// command's own steps; no for a running container's rootfs
    /// ([`Timeouts::for_run`]), whose I/O waits out an outage as LXC's
    /// and Incus's mappings do (an error there breaks its filesystem).
    pub io: bool,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: 30,
            mon: 30,
            osd: 60,
            io: true,
        }
    }
}

impl Timeouts {
    /// Every bound `secs` (lxc.conf's [`KEY_TIMEOUT`]).
    pub fn all(secs: u32) -> Self {
        Timeouts {
            connect: secs,
            mon: secs,
            osd: secs,
            io: true,
        }
    }

    /// The bounds of the map of a running container's rootfs: no kernel
    /// `osd_request_timeout` on its I/O; the map itself is given up on
    /// after [`Timeouts::map_within`] instead.
    pub fn for_run(self) -> Self {
        Timeouts { io: false, ..self }
    }

    /// How long a map may take before it is given up on: to connect, then
    /// the kernel's first reads of the image's header.
    pub fn map_within(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.connect) + u64::from(self.osd))
    }

    /// The value of [`KEY_TIMEOUT`]: whole seconds, 1 to a day.
    pub fn parse(v: &str) -> Result<Self> {
        match v.trim().parse::<u32>() {
            Ok(n) if (1..=86400).contains(&n) => Ok(Self::all(n)),
            _ => Err(err!(
                InvalidConfig,
                "read lxc.conf",
                "{KEY_TIMEOUT} = {v:?}: expected whole seconds from 1 to 86400"
            )),
        }
    }

    /// The options of every `rbd` command that set them.
    fn args(&self) -> Vec<String> {
        [
            ("--client_mount_timeout", self.connect),
            ("--rados_mon_op_timeout", self.mon),
            ("--rados_osd_op_timeout", self.osd),
        ]
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.to_string()])
        .collect()
    }

    /// The kernel's options for a map: `mount_timeout` (its default 60)
    /// and `osd_request_timeout` (its default 0, forever).
    pub fn kernel(&self) -> String {
        if !self.io {
            return format!("mount_timeout={}", self.connect);
        }
        format!("mount_timeout={},osd_request_timeout={}", self.connect, self.osd)
    }
}

/// The kernel's rbd interface as this backend reads and writes it itself:
/// its list of mappings and the removal of one, what `rbd device list` and
/// `rbd unmap -o noudev` do, without a process of the tool (seconds each
/// on a slow machine). Mapping stays `rbd map`'s: it needs the cluster's
/// monitors and the user's key, which the tool finds in the ceph config.
pub trait Kernel: Send + Sync {
    fn mappings(&self) -> Result<Vec<Mapping>>;
    /// Remove mapping `id` (the N of `/dev/rbdN`): EBUSY while the device
    /// is open, ENOENT when it is gone.
    fn remove(&self, id: &str) -> std::io::Result<()>;
    /// What a map of an image as cephx user `user` writes before `POOL
    /// IMAGE`, with the kernel's timeouts `t` ([`kmap::add_options`]);
    /// `None`: map with `rbd map`.
    fn add_options(&self, user: Option<&str>, t: &Timeouts) -> Option<String>;
    /// Map `pool/image` with `options`.
    fn add(&self, options: &str, pool: &str, image: &str) -> std::io::Result<()>;
    /// [`Kernel::add`] given up on after `within` (ETIMEDOUT): a map
    /// without the kernel's `osd_request_timeout` waits for a silent
    /// cluster for ever. The write left waiting is killable: it ends with
    /// the process, which the error ends.
    fn add_within(&self, options: &str, pool: &str, image: &str, within: std::time::Duration) -> std::io::Result<()> {
        let _ = within;
        self.add(options, pool, image)
    }
    /// Whether device `dev` (`/dev/rbdN`) has a BSD lock on it: udev's
    /// worker holds the device open and locked for as long as it runs the
    /// rules of one of its events (the one of a new mapping, say), and so
    /// do tools that follow udev's block device locking. A mount takes no
    /// such lock.
    fn locked(&self, dev: &str) -> bool;
}

/// [`Kernel`] through sysfs: `DIR` (`/sys/bus/rbd/devices`) lists the
/// mappings, `DIR/../remove_single_major` (else `remove`, rbd.ko without
/// single_major) takes the id to remove, as `rbd unmap` writes it.
pub struct Sysfs(pub std::path::PathBuf);

impl Kernel for Sysfs {
    fn mappings(&self) -> Result<Vec<Mapping>> {
        read_mappings(&self.0)
    }

    fn remove(&self, id: &str) -> std::io::Result<()> {
        use std::io::Write;
        let bus = self.0.parent().unwrap_or(Path::new("/"));
        let single = bus.join("remove_single_major");
        let path = if single.exists() { single } else { bus.join("remove") };
        // One write(2): the kernel removes the device within it.
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(id.as_bytes())
    }

    fn add_options(&self, user: Option<&str>, t: &Timeouts) -> Option<String> {
        kmap::add_options(Path::new(kmap::CEPH_CONF), user, t)
    }

    fn add(&self, options: &str, pool: &str, image: &str) -> std::io::Result<()> {
        kmap::add(self.0.parent().unwrap_or(Path::new("/")), options, pool, image)
    }

    fn add_within(&self, options: &str, pool: &str, image: &str, within: std::time::Duration) -> std::io::Result<()> {
        let bus = self.0.parent().unwrap_or(Path::new("/")).to_path_buf();
        let (o, p, i) = (options.to_string(), pool.to_string(), image.to_string());
        let (tx, rx) = std::sync::mpsc::channel();
        // A thread of its own: the write cannot be interrupted from here.
        // Its wait in the kernel (ceph_osdc_wait_request) is killable: left
        // behind, it ends when the process exits.
        std::thread::spawn(move || {
            let _ = tx.send(kmap::add(&bus, &o, &p, &i));
        });
        match rx.recv_timeout(within) {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::from_raw_os_error(libc::ETIMEDOUT)),
        }
    }

    fn locked(&self, dev: &str) -> bool {
        use std::os::unix::fs::MetadataExt;
        // The lock is on the device node's inode: read from /proc/locks,
        // not by opening the device (an open would make it busy too).
        let Ok(m) = std::fs::metadata(dev) else { return false };
        std::fs::read_to_string("/proc/locks").is_ok_and(|l| flock_on(&l, m.dev(), m.ino()))
    }
}

/// Whether `/proc/locks` text `locks` holds a granted BSD lock (`FLOCK`)
/// on inode `ino` of the filesystem `dev` (lines `N: FLOCK ADVISORY READ
/// PID MAJ:MIN:INO START END`, major and minor in hex; a waiter's line has
/// `->` after its number).
pub fn flock_on(locks: &str, dev: u64, ino: u64) -> bool {
    let (maj, min) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&"FLOCK") {
            return false;
        }
        let Some(mut at) = f.get(5).map(|a| a.split(':')) else {
            return false;
        };
        let num = |s: Option<&str>, radix| s.and_then(|s| u64::from_str_radix(s, radix).ok());
        (num(at.next(), 16), num(at.next(), 16), num(at.next(), 10)) == (Some(maj), Some(min), Some(ino))
    })
}

pub struct RbdBackend {
    run: Box<dyn Runner>,
    /// The bounds on waiting for the cluster: lxc.conf's, read when first needed.
    timeouts: std::sync::Mutex<Option<Timeouts>>,
    /// Set by the first `rbd` of this process that the cluster did not
    /// answer (see [`RbdBackend::answered`]): what it was, how long it waited,
    /// and whether it never connected.
    silent: std::sync::Mutex<Option<Silence>>,
    /// Where the kernel lists and removes its rbd mappings; `None`: ask
    /// `rbd device list` and `rbd unmap` (the unit tests' plain doubles).
    kernel: Option<Box<dyn Kernel>>,
    /// The cephx user of every command: `--rbduser` (set by `plan`), else
    /// lxc.conf's, read when first needed. `Some(None)`: Ceph's default.
    user: std::sync::Mutex<Option<Option<String>>>,
    /// The last listing of each pool, made by this process since its last
    /// command that changes a pool (see [`RbdBackend::raw`]): the engine's
    /// first look (a plan, a check of dependents) is taken again by the
    /// step that follows it under the same locks (the clone, the destroy)
    /// instead of a second `rbd ls`, each one seconds on a slow machine.
    listed: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, PoolState)>>,
    /// Set when a build found its planned name taken at its rename: the
    /// next plan lists the pool instead of taking the wanted name on trust.
    relist: std::sync::atomic::AtomicBool,
    /// `POOL/BUILDNAME` of this process's creates whose `rbd create` never
    /// reached the pool (see [`never_reached`]): their undo has nothing to do.
    unreached: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// The first command of a process the cluster did not answer.
#[derive(Debug, Clone)]
struct Silence {
    /// `rbd VERB SUBJECT`.
    what: String,
    secs: u64,
    /// It never reached the monitors (nothing it asked for was done).
    connect: bool,
}

/// A change to a kept listing; `None` when the listing does not hold what
/// it changes (the listing is then forgotten).
type ListingEdit = Box<dyn FnOnce(&mut PoolState) -> Option<()>>;

/// How long a listing is taken again without asking the cluster: longer
/// than any one command's steps between a plan and its build under
/// emulation, short enough that a long-lived process lists afresh.
const LISTED_FOR: std::time::Duration = std::time::Duration::from_secs(300);

pub fn backend() -> Arc<dyn Backend> {
    Arc::new(RbdBackend::new())
}

impl Default for RbdBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// Check a pool or image name before any tool sees it: `[A-Za-z0-9_.+-]`,
/// not starting with `-` (an option) or `.`, at most 255 bytes. Ceph allows
/// more; these are what a path component `/dev/rbd/POOL/NAME` and an argv
/// can carry unambiguously.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    const OP: &str = "check rbd name";
    let bad = |why: &str| Err(err!(InvalidName, OP, "invalid {what} name {name:?}: {why}"));
    if name.is_empty() {
        return bad("empty");
    }
    if name.starts_with('-') || name.starts_with('.') {
        return bad("starts with '-' or '.'");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    if let Some(c) = name.chars().find(|c| !block::volume_char(*c)) {
        return bad(&format!("character {c:?} not allowed (only a-z A-Z 0-9 + _ . -)"));
    }
    Ok(())
}

/// `(POOL, NAME)` of an `rbd:/dev/rbd/POOL/NAME` spec, both checked.
pub fn parse_spec(spec: &RootfsSpec) -> Result<(String, String)> {
    let rest = spec
        .source()
        .strip_prefix("/dev/rbd/")
        .filter(|_| spec.kind() == "rbd")
        .ok_or_else(|| err!(InvalidSpec, "rbd", "not an rbd spec: {spec}"))?;
    let (pool, image) = rest
        .split_once('/')
        .filter(|(_, i)| !i.contains('/'))
        .ok_or_else(|| err!(InvalidSpec, "rbd", "{spec}: expected rbd:/dev/rbd/POOL/NAME"))?;
    validate_name("pool", pool)?;
    validate_name("image", image)?;
    Ok((pool.to_string(), image.to_string()))
}

/// The spec of image `image` of `pool`, exactly as LXC writes it.
pub fn spec_for(pool: &str, image: &str) -> RootfsSpec {
    RootfsSpec::new("rbd", format!("/dev/rbd/{pool}/{image}"))
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A snapshot of an image as `rbd ls -l` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub name: String,
    pub protected: bool,
}

/// One image of a pool, with its snapshots and its parent (a clone's
/// origin: pool, image, snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Image {
    pub name: String,
    pub size: u64,
    pub snaps: Vec<Snap>,
    pub parent: Option<(String, String, String)>,
}

/// A pool's images, from one `rbd ls -l --format json`.
#[derive(Debug, Clone, Default)]
pub struct PoolState {
    pub pool: String,
    pub images: Vec<Image>,
}

impl PoolState {
    pub fn image(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.name == name)
    }

    /// Images cloned from snapshot `snap` of `image` (of this pool).
    pub fn children(&self, image: &str, snap: &str) -> Vec<String> {
        self.images
            .iter()
            .filter(|i| {
                i.parent
                    .as_ref()
                    .is_some_and(|(p, im, sn)| *p == self.pool && im == image && sn == snap)
            })
            .map(|i| i.name.clone())
            .collect()
    }

    /// Images cloned from any snapshot of `image`.
    pub fn dependents(&self, image: &str) -> Vec<String> {
        let Some(me) = self.image(image) else {
            return Vec::new();
        };
        me.snaps.iter().flat_map(|sn| self.children(image, &sn.name)).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.images.iter().map(|i| i.name.clone()).collect()
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Parse `rbd ls -l --format json` of `pool`: one entry per image and one
/// per snapshot (with a `snapshot` key); clones carry a `parent`.
pub fn parse_ls(pool: &str, json: &str) -> Result<PoolState> {
    let v: Value =
        serde_json::from_str(json.trim()).map_err(|e| err!(Command, "parse rbd ls", "bad JSON from rbd ls: {e}"))?;
    let mut st = PoolState {
        pool: pool.to_string(),
        images: Vec::new(),
    };
    for e in v.as_array().into_iter().flatten() {
        let name = text(e, "image");
        if name.is_empty() {
            continue;
        }
        let idx = match st.images.iter().position(|i| i.name == name) {
            Some(i) => i,
            None => {
                st.images.push(Image {
                    name: name.clone(),
                    ..Image::default()
                });
                st.images.len() - 1
            }
        };
        let img = &mut st.images[idx];
        if let Some(snap) = e.get("snapshot").and_then(Value::as_str) {
            let protected = match e.get("protected") {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s == "true",
                _ => false,
            };
            img.snaps.push(Snap {
                name: snap.to_string(),
                protected,
            });
        } else {
            img.size = e.get("size").and_then(Value::as_u64).unwrap_or(0);
            if let Some(p) = e.get("parent") {
                img.parent = Some((text(p, "pool"), text(p, "image"), text(p, "snapshot")));
            }
        }
    }
    Ok(st)
}

/// A mapping from `rbd device list --format json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub pool: String,
    pub image: String,
    pub snap: String,
    pub device: String,
}

/// The kernel's rbd mappings from its sysfs directory (`/sys/bus/rbd/devices`:
/// one entry per device id, with `pool`, `name` and `current_snap`), as
/// `rbd device list` reads them: no process, no cluster. A device removed
/// while it is read is left out; no directory (rbd.ko not loaded) is none.
pub fn read_mappings(dir: &Path) -> Result<Vec<Mapping>> {
    const OP: &str = "list rbd mappings";
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(strata_core::Error::io(OP, dir, e)),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let read = |f: &str| std::fs::read_to_string(e.path().join(f)).map(|v| v.trim().to_string());
        let (Ok(pool), Ok(image), Ok(snap)) = (read("pool"), read("name"), read("current_snap")) else {
            continue;
        };
        out.push(Mapping {
            pool,
            image,
            snap,
            device: format!("/dev/rbd{id}"),
        });
    }
    out.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(out)
}

pub fn parse_mappings(json: &str) -> Result<Vec<Mapping>> {
    let v: Value = serde_json::from_str(json.trim())
        .map_err(|e| err!(Command, "parse rbd device list", "bad JSON from rbd device list: {e}"))?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .map(|m| Mapping {
            pool: text(m, "pool"),
            image: text(m, "name"),
            snap: text(m, "snap"),
            device: text(m, "device"),
        })
        .collect())
}

/// The image a new rootfs for `t` wants: `--rbdname`, else as every block
/// backend names it ([`block::wanted_name`]).
fn wanted_name(t: &Target) -> String {
    block::wanted_name(t, t.opts.defaults.get(OPT_RBDNAME).map(String::as_str))
}

/// The name image `image` is built under by the build of `build_dir`.
pub fn build_name(image: &str, build_dir: &Path) -> String {
    format!("{image}.strata-{}", strata_core::build_mark(build_dir))
}

/// The pool of a new rootfs: for a copy of an image, its pool (as LXC
/// places copies beside their source); `--rbdpool` or lxc.conf's (both in
/// the defaults, the flag winning; a copy has no such flag); `lxc`.
fn pool_opt(t: &Target) -> String {
    t.opts
        .copy_of
        .as_ref()
        .filter(|s| s.kind() == "rbd")
        .and_then(|s| parse_spec(s).ok())
        .map(|(p, _)| p)
        .or_else(|| t.opts.defaults.get(KEY_POOL).cloned())
        .unwrap_or_else(|| "lxc".into())
}

fn fstype_opt(t: &Target) -> Result<String> {
    block::fstype_opt("plan rbd rootfs", t, None)
}

fn size_opt(t: &Target) -> Result<u64> {
    let size = t.opts.fssize.unwrap_or(DEFAULT_SIZE);
    if size < 1 << 20 {
        return Err(err!(InvalidArgument, "plan rbd rootfs", "--fssize must be at least 1M"));
    }
    Ok(size)
}

/// The snapshot of a source image made for clone `image`.
fn snap_for(image: &str) -> String {
    format!("{SNAP_PREFIX}{image}")
}

/// One line for a failed `rbd` command: what the user can act on (a
/// missing key, an unreachable cluster) before the tool's own first line,
/// which for those is a log line about something else.
fn explain(o: &Out) -> String {
    let find = |pat: &str| o.stderr.lines().find(|l| l.contains(pat)).map(str::trim);
    if let Some(l) = find("unable to find a keyring on ") {
        let path = l.split("unable to find a keyring on ").nth(1).unwrap_or("");
        let path = path.split(": (").next().unwrap_or(path);
        return format!("no key for this ceph user (no keyring at {path})");
    }
    if find("couldn't connect to the cluster").is_some() || find("RADOS timed out").is_some() {
        let why = find("monclient").or_else(|| find("error")).unwrap_or("no answer");
        return format!("cannot connect to the ceph cluster ({why})");
    }
    o.first_err_line()
}

/// The pool a failed command could not open (`rbd: error opening pool
/// 'NAME': (2) No such file or directory`), when that is why it failed.
fn missing_pool(o: &Out) -> Option<String> {
    let l = o
        .stderr
        .lines()
        .find(|l| l.contains("error opening pool") && l.contains("(2)"))?;
    let rest = l.split("error opening pool").nth(1)?.trim_start();
    let name = rest.split(':').next()?.trim().trim_matches(|c| c == '\'' || c == '"');
    Some(name.to_string())
}

/// The error of failed command `rbd ARGS`: a missing pool as such, else
/// what [`explain`] finds.
fn failure(op: &str, args: &[&str], o: &Out) -> strata_core::Error {
    if let Some(pool) = missing_pool(o) {
        return err!(NotFound, op, "ceph pool {pool:?} does not exist");
    }
    err!(Command, op, "rbd {} failed: {}", args[0], explain(o))
}

/// Whether a failed command never reached the pool: its cluster did not
/// answer, refused the user, or has no such pool. Such a command made nothing.
fn never_reached(o: &Out) -> bool {
    missing_pool(o).is_some() || o.stderr.contains("couldn't connect to the cluster")
}

/// Whether a failed command got no answer from the cluster: a monitor or
/// OSD request timed out (ETIMEDOUT, 110), or it could not connect in
/// time (`monclient(hunting): authenticate timed out after N`, then
/// `couldn't connect to the cluster!`: most verbs print no errno for it).
/// A refused key also fails to connect, at once and with its own errno;
/// no key at all is said as such ([`explain`]).
fn no_answer(o: &Out) -> bool {
    let e = &o.stderr;
    !e.contains("unable to find a keyring")
        && (e.contains("(110)")
            || e.contains("RADOS timed out")
            || (e.contains("couldn't connect to the cluster") && e.contains("timed out")))
}

/// The op of an error for a cluster that did not answer.
const OP_ASK: &str = "ask ceph";

/// `rbd VERB SUBJECT` of `rbd ARGS`, for an error.
fn described(args: &[&str]) -> String {
    let verb = args.first().copied().unwrap_or("");
    format!("rbd {verb} {}", subject(args)).trim_end().to_string()
}

/// What `rbd ARGS` acts on, for an error: `POOL/IMAGE[@SNAP]`, `--pool
/// POOL IMAGE` as `POOL/IMAGE`, `--pool POOL` alone as `POOL`, a device.
fn subject(args: &[&str]) -> String {
    if let Some(a) = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-') && (a.contains('/') || a.contains('@')))
    {
        return a.to_string();
    }
    let Some(i) = args.iter().position(|a| *a == "--pool") else {
        return String::new();
    };
    let pool = args.get(i + 1).copied().unwrap_or("");
    match args.get(i + 2).filter(|a| !a.starts_with('-')) {
        Some(image) => format!("{pool}/{image}"),
        None => pool.to_string(),
    }
}

/// Whether `rbd rm` refused an image that is open somewhere (librbd:
/// "image has watchers - not removing", the tool: "image still has watchers").
fn has_watchers(o: &Out) -> bool {
    o.stderr.contains("has watchers")
}

/// The number of watchers `rbd status --format json` lists.
pub fn parse_watchers(json: &str) -> Result<usize> {
    let v: Value =
        serde_json::from_str(json.trim()).map_err(|e| err!(Command, "rbd status", "bad JSON from rbd status: {e}"))?;
    Ok(v.get("watchers").and_then(Value::as_array).map_or(0, Vec::len))
}

/// Whether `rbd unmap` failed because the device is still open.
fn busy(o: &Out) -> bool {
    o.stderr.contains("(16)") || o.stderr.contains("busy")
}

impl RbdBackend {
    pub fn new() -> Self {
        Self::new_with_sysfs(Box::new(SystemRunner), Path::new(SYSFS_DEVICES))
    }

    pub fn new_with_sysfs(run: Box<dyn Runner>, sysfs: &Path) -> Self {
        Self::with_kernel(run, Box::new(Sysfs(sysfs.to_path_buf())))
    }

    /// A backend that runs `rbd` through `run` and lists and removes
    /// mappings through `kernel`.
    pub fn with_kernel(run: Box<dyn Runner>, kernel: Box<dyn Kernel>) -> Self {
        RbdBackend {
            kernel: Some(kernel),
            ..Self::with_runner(run)
        }
    }

    /// A backend that lists mappings with `rbd device list` through `run`.
    pub fn with_runner(run: Box<dyn Runner>) -> Self {
        RbdBackend {
            run,
            kernel: None,
            user: std::sync::Mutex::new(None),
            timeouts: std::sync::Mutex::new(None),
            silent: std::sync::Mutex::new(None),
            listed: std::sync::Mutex::new(std::collections::HashMap::new()),
            relist: std::sync::atomic::AtomicBool::new(false),
            unreached: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// A backend whose commands run as cephx user `user`.
    pub fn with_user(self, user: Option<String>) -> Self {
        *self.user.lock().unwrap_or_else(|e| e.into_inner()) = Some(user);
        self
    }

    /// A backend whose commands wait for the cluster as `t` says.
    pub fn with_timeouts(self, t: Timeouts) -> Self {
        *self.timeouts.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        self
    }

    fn timeouts(&self) -> Result<Timeouts> {
        let mut t = self.timeouts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = *t {
            return Ok(t);
        }
        let conf = strata_core::paths::global_conf();
        let read = match strata_core::lxc_conf::value_at(&conf, KEY_TIMEOUT).ok().flatten() {
            Some(v) => Timeouts::parse(&v)?,
            None => Timeouts::default(),
        };
        Ok(*t.insert(read))
    }

    fn user(&self) -> Option<String> {
        let mut u = self.user.lock().unwrap_or_else(|e| e.into_inner());
        u.get_or_insert_with(|| {
            let conf = strata_core::paths::global_conf();
            strata_core::lxc_conf::value_at(&conf, KEY_USER).ok().flatten()
        })
        .clone()
    }

    /// `rbd [--id USER] TIMEOUTS ARGS...`
    fn argv(&self, args: &[&str]) -> Result<Vec<String>> {
        let mut v = s(&["rbd"]);
        if let Some(u) = self.user() {
            validate_name("rbd user", &u)?;
            v.extend(s(&["--id", &u]));
        }
        v.extend(self.timeouts()?.args());
        v.extend(s(args));
        Ok(v)
    }

    /// Run `rbd ARGS` once it is known to answer: a command the cluster
    /// did not answer is an [`strata_core::ErrorKind::Unavailable`] error
    /// naming it, and so is every later one of this process, at once.
    fn answered(&self, args: &[&str]) -> Result<Out> {
        self.not_silent(args)?;
        let argv = self.argv(args)?;
        let t = std::time::Instant::now();
        let o = self.run.run(&argv)?;
        self.heard(args, &o, t)?;
        Ok(o)
    }

    /// Refuse `rbd ARGS` at once when an earlier command of this process
    /// got no answer: one wait for a silent cluster per command, not one
    /// per step (a failed build's undo, a reconcile before the command).
    pub(crate) fn not_silent(&self, args: &[&str]) -> Result<()> {
        match self.silence() {
            Some(first) => Err(err!(
                Unavailable,
                OP_ASK,
                "{}: not asked, the ceph cluster did not answer {} within {} s",
                described(args),
                first.what,
                first.secs
            )),
            None => Ok(()),
        }
    }

    /// The error of `rbd ARGS`, started at `since`, when it failed for want
    /// of an answer (remembered: later commands are refused at once).
    pub(crate) fn heard(&self, args: &[&str], o: &Out, since: std::time::Instant) -> Result<()> {
        if o.ok || !no_answer(o) {
            return Ok(());
        }
        let what = described(args);
        let secs = since.elapsed().as_secs();
        let connect = o.stderr.contains("couldn't connect to the cluster");
        tracing::debug!("{what}: no answer after {secs} s: {}", o.stderr.trim());
        *self.silent.lock().unwrap_or_else(|e| e.into_inner()) = Some(Silence {
            what: what.clone(),
            secs,
            connect,
        });
        let why = if connect {
            "could not reach"
        } else {
            "got no answer from"
        };
        Err(err!(
            Unavailable,
            OP_ASK,
            "{what}: {why} the ceph cluster within {secs} s"
        ))
    }

    /// The first command of this process that the cluster did not answer.
    fn silence(&self) -> Option<Silence> {
        self.silent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Run `rbd ARGS`; a command that may change a pool (anything but a
    /// listing, a look, a map or an unmap) forgets the pools' listings
    /// first, failed or not.
    fn raw(&self, args: &[&str]) -> Result<Out> {
        let reads = matches!(
            args,
            ["ls" | "info" | "du" | "status" | "map" | "unmap" | "device", ..] | ["image-meta", "get", ..]
        );
        if reads {
            return self.answered(args);
        }
        let o = self.answered(args);
        // What a change that succeeded did is known: the listings take it
        // in; after anything else (a failure, a change not modelled) they go.
        if !o.as_ref().is_ok_and(|o| o.ok && self.note_change(args)) {
            self.forget_listings();
        }
        o
    }

    /// Apply the change `rbd ARGS` made (it succeeded) to the kept
    /// listing of its pool, as a new `rbd ls -l` would show it; `false`
    /// for a command not modelled here (the caller forgets every listing).
    fn note_change(&self, args: &[&str]) -> bool {
        let mut kept = self.listed.lock().unwrap_or_else(|e| e.into_inner());
        // `POOL/IMAGE[@SNAP]`.
        let split = |full: &str| {
            let (pool, rest) = full.split_once('/')?;
            let (image, snap) = match rest.split_once('@') {
                Some((i, s)) => (i, Some(s.to_string())),
                None => (rest, None),
            };
            Some((pool.to_string(), image.to_string(), snap))
        };
        let (pool, edit): (String, ListingEdit) = match *args {
            ["image-meta", "set", ..] => return true,
            ["create", "--pool", pool, name, "--size", mb] => {
                let size = mb.parse::<u64>().ok().map(|m| m << 20);
                let name = name.to_string();
                (
                    pool.to_string(),
                    Box::new(move |st: &mut PoolState| {
                        st.images.push(Image {
                            name,
                            size: size?,
                            ..Image::default()
                        });
                        Some(())
                    }),
                )
            }
            ["rename", from, to] => {
                let (Some((pool, a, None)), Some((p2, b, None))) = (split(from), split(to)) else {
                    return false;
                };
                if pool != p2 {
                    return false;
                }
                let p = pool.clone();
                (
                    pool,
                    Box::new(move |st: &mut PoolState| {
                        st.images.iter_mut().find(|i| i.name == a)?.name = b.clone();
                        for i in &mut st.images {
                            if let Some((pp, pi, _)) = &mut i.parent {
                                if *pp == p && *pi == a {
                                    *pi = b.clone();
                                }
                            }
                        }
                        Some(())
                    }),
                )
            }
            ["snap", verb @ ("create" | "protect" | "unprotect" | "rm"), .., at] => {
                let Some((pool, image, Some(snap))) = split(at) else {
                    return false;
                };
                let verb = verb.to_string();
                (
                    pool,
                    Box::new(move |st: &mut PoolState| {
                        let img = st.images.iter_mut().find(|i| i.name == image)?;
                        match verb.as_str() {
                            "create" => img.snaps.push(Snap {
                                name: snap,
                                protected: false,
                            }),
                            "rm" => img.snaps.retain(|s| s.name != snap),
                            v => img.snaps.iter_mut().find(|s| s.name == snap)?.protected = v == "protect",
                        }
                        Some(())
                    }),
                )
            }
            ["snap", "purge", "--no-progress", full]
            | ["rm", "--no-progress", full]
            | ["flatten", "--no-progress", full] => {
                let Some((pool, image, None)) = split(full) else {
                    return false;
                };
                let verb = args[0].to_string();
                (
                    pool,
                    Box::new(move |st: &mut PoolState| {
                        match verb.as_str() {
                            "rm" => st.images.retain(|i| i.name != image),
                            "snap" => st.images.iter_mut().find(|i| i.name == image)?.snaps.clear(),
                            _ => st.images.iter_mut().find(|i| i.name == image)?.parent = None,
                        }
                        Some(())
                    }),
                )
            }
            ["clone", at, full] => {
                let (Some((pool, src, Some(snap))), Some((p2, name, None))) = (split(at), split(full)) else {
                    return false;
                };
                if pool != p2 {
                    return false;
                }
                let p = pool.clone();
                (
                    pool,
                    Box::new(move |st: &mut PoolState| {
                        let size = st.image(&src)?.size;
                        st.images.push(Image {
                            name,
                            size,
                            snaps: Vec::new(),
                            parent: Some((p, src, snap)),
                        });
                        Some(())
                    }),
                )
            }
            _ => return false,
        };
        match kept.get_mut(&pool) {
            // No listing of that pool kept: nothing to bring up to date.
            None => true,
            Some((_, st)) => edit(st).is_some(),
        }
    }

    fn forget_listings(&self) {
        self.listed.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn tool(&self, op: &str, args: &[&str]) -> Result<Out> {
        let o = self.raw(args)?;
        if !o.ok {
            return Err(failure(op, args, &o));
        }
        Ok(o)
    }

    /// The pool's images and snapshots, in one command; a missing pool or
    /// an unreachable cluster is a one-line error.
    pub fn pool_state(&self, op: &str, pool: &str) -> Result<PoolState> {
        validate_name("pool", pool)?;
        let o = self.raw(&["ls", "-l", "--format", "json", "--pool", pool])?;
        if !o.ok {
            if missing_pool(&o).is_some() {
                return Err(err!(NotFound, op, "ceph pool {pool:?} does not exist"));
            }
            return Err(err!(Command, op, "rbd ls {pool} failed: {}", explain(&o)));
        }
        // rbd ls -l says nothing at all for an empty pool.
        let st = if o.stdout.trim().is_empty() {
            PoolState {
                pool: pool.to_string(),
                images: Vec::new(),
            }
        } else {
            parse_ls(pool, &o.stdout)?
        };
        self.listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pool.to_string(), (std::time::Instant::now(), st.clone()));
        Ok(st)
    }

    /// The pool as this process last listed it, if no command of its own
    /// changed a pool since (see [`RbdBackend::listed`]), else listed now.
    /// For the step after a first look under the same locks: what others
    /// could change meanwhile, they change under locks this command holds.
    pub fn pool_state_listed(&self, op: &str, pool: &str) -> Result<PoolState> {
        let kept = self
            .listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(pool)
            .filter(|(at, _)| at.elapsed() < LISTED_FOR)
            .map(|(_, st)| st.clone());
        match kept {
            Some(st) => Ok(st),
            None => self.pool_state(op, pool),
        }
    }

    /// The kernel's mappings of this host.
    pub fn mappings(&self) -> Result<Vec<Mapping>> {
        // Read from sysfs, as the tool does: a process of the rbd tool is
        // the costly part of every step (seconds on a slow machine).
        if let Some(k) = &self.kernel {
            return k.mappings();
        }
        let o = self.tool("list rbd mappings", &["device", "list", "--format", "json"])?;
        if o.stdout.trim().is_empty() {
            return Ok(Vec::new());
        }
        parse_mappings(&o.stdout)
    }

    fn mapped(&self, pool: &str, image: &str) -> Result<Vec<String>> {
        Ok(self
            .mappings()?
            .into_iter()
            .filter(|m| m.pool == pool && m.image == image && (m.snap.is_empty() || m.snap == "-"))
            .map(|m| m.device)
            .collect())
    }

    /// Map `pool/image` (or find its mapping) and return the device.
    fn map(&self, pool: &str, image: &str) -> Result<String> {
        self.map_for(pool, image, false)
    }

    /// [`RbdBackend::map`]; with `run`, for a running container's rootfs
    /// ([`Timeouts::for_run`]).
    fn map_for(&self, pool: &str, image: &str, run: bool) -> Result<String> {
        if let Some(d) = self.mapped(pool, image)?.into_iter().next() {
            return Ok(d);
        }
        let _span = tracing::info_span!("rbd map", pool, image, run).entered();
        let t = if run {
            self.timeouts()?.for_run()
        } else {
            self.timeouts()?
        };
        if let Some(dev) = self.kernel_map(pool, image, &t)? {
            return Ok(dev);
        }
        // No wait for udev's rules: the device node is the kernel's
        // (devtmpfs), and udev's /dev/rbd/POOL/NAME link is not used here.
        // The kernel's own bounds on waiting for the cluster, as a map through sysfs passes them.
        let opts = format!("noudev,{}", t.kernel());
        let o = self.tool("map rbd image", &["map", "--options", &opts, "--pool", pool, image])?;
        let dev = o.stdout.trim().to_string();
        if !dev.starts_with("/dev/rbd") {
            return Err(err!(
                Command,
                "map rbd image",
                "rbd map printed no device for {pool}/{image}"
            ));
        }
        Ok(dev)
    }

    /// Map and mount `spec` at `target`; `run`: for a running container
    /// ([`RbdBackend::map_for`]).
    fn mount_as(&self, spec: &RootfsSpec, target: &Path, readonly: bool, run: bool) -> Result<()> {
        let (pool, image) = parse_spec(spec)?;
        let _span = tracing::info_span!("rbd mount", pool = %pool, image = %image).entered();
        let dev = self.map_for(&pool, &image, run)?;
        let mounted = block::mount_dev(self.run.as_ref(), &dev, target, readonly, "mount rbd rootfs");
        if mounted.is_err() {
            let _ = self.unmap(&pool, &image, false);
        }
        mounted
    }

    /// Map `pool/image` through the kernel's sysfs directly where the ceph
    /// config allows ([`kmap`]): the device, or `None` when the caller is to
    /// run `rbd map` (no such config, or the kernel refused: the tool then
    /// says why in its own words).
    fn kernel_map(&self, pool: &str, image: &str, t: &Timeouts) -> Result<Option<String>> {
        let Some(k) = &self.kernel else { return Ok(None) };
        let Some(opts) = k.add_options(self.user().as_deref(), t) else {
            return Ok(None);
        };
        let before = k.mappings()?;
        self.not_silent(&["map", &format!("{pool}/{image}")])?;
        let t0 = std::time::Instant::now();
        let added = if t.io {
            k.add(&opts, pool, image)
        } else {
            k.add_within(&opts, pool, image, t.map_within())
        };
        match added {
            Ok(()) => {}
            // The kernel's mount_timeout or osd_request_timeout: the tool
            // would wait as long again for the same silence.
            Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => {
                let o = Out {
                    ok: false,
                    stdout: String::new(),
                    stderr: format!("kernel map: {e} (110)"),
                };
                self.heard(&["map", &format!("{pool}/{image}")], &o, t0)?;
            }
            Err(e) => {
                tracing::debug!("kernel map of {pool}/{image}: {e}; rbd map instead");
                return Ok(None);
            }
        }
        // The new device: the head mapping of the image that was not there.
        let dev = k
            .mappings()?
            .into_iter()
            .find(|m| {
                m.pool == pool
                    && m.image == image
                    && (m.snap.is_empty() || m.snap == "-")
                    && !before.iter().any(|b| b.device == m.device)
            })
            .map(|m| m.device);
        match dev {
            Some(d) => {
                // What the guest's flows check: the map took no rbd process.
                tracing::debug!("mapped {pool}/{image} through sysfs as {d}");
                Ok(Some(d))
            }
            None => Err(err!(
                Command,
                "map rbd image",
                "the kernel mapped {pool}/{image} but lists no new device for it"
            )),
        }
    }

    /// Unmap every mapping of `pool/image` that no one holds open; with
    /// `strict`, one still open is an error (a destroy needs it gone).
    fn unmap(&self, pool: &str, image: &str, strict: bool) -> Result<()> {
        for dev in self.mapped(pool, image)? {
            let _span = tracing::info_span!("rbd unmap", dev = %dev).entered();
            let (busy, why) = match self.remove_mapping(&dev)? {
                None => continue,
                Some(r) => r,
            };
            if busy && !strict {
                tracing::debug!("{dev} still in use: left mapped");
                continue;
            }
            if busy {
                return Err(err!(Busy, "unmap rbd image", "{pool}/{image} is in use ({dev})"));
            }
            // Unmapped meanwhile by another command (a build in another
            // lxcpath releasing the same image): the device is gone (rbd
            // says "not a block device", the kernel ENOENT). Nothing left to do.
            if !self.mapped(pool, image)?.contains(&dev) {
                tracing::debug!("{dev} was unmapped meanwhile");
                continue;
            }
            return Err(err!(Command, "unmap rbd image", "unmap {dev} failed: {why}"));
        }
        Ok(())
    }

    /// Remove mapping `dev`: `None` when done, else whether it failed
    /// because the device is open, and why. Through the kernel's sysfs
    /// where this backend has it, as `rbd unmap -o noudev` writes it.
    fn remove_mapping(&self, dev: &str) -> Result<Option<(bool, String)>> {
        let Some(k) = &self.kernel else {
            let o = self.raw(&["unmap", "--options", "noudev", dev])?;
            return Ok((!o.ok).then(|| (busy(&o), o.first_err_line())));
        };
        let id = dev
            .strip_prefix("/dev/rbd")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| err!(Command, "unmap rbd image", "not an rbd device: {dev}"))?;
        Ok(match k.remove(id) {
            Ok(()) => {
                tracing::debug!("unmapped {dev} through sysfs");
                None
            }
            Err(e) => Some((e.raw_os_error() == Some(libc::EBUSY), e.to_string())),
        })
    }

    /// Unprotect and remove snapshot `snap` of `pool/image` if nothing is
    /// cloned from it any more.
    fn drop_snap(&self, st: &PoolState, image: &str, snap: &str) -> Result<()> {
        if !st.children(image, snap).is_empty() {
            return Ok(());
        }
        let full = format!("{}/{image}@{snap}", st.pool);
        let _span = tracing::info_span!("rbd drop snapshot", snap = %full).entered();
        let protected = st
            .image(image)
            .and_then(|i| i.snaps.iter().find(|s| s.name == snap))
            .is_none_or(|s| s.protected);
        if protected {
            let o = self.raw(&["snap", "unprotect", &full])?;
            if !o.ok && !o.stderr.contains("not protected") {
                return Err(err!(Command, "unprotect snapshot", "{full}: {}", o.first_err_line()));
            }
        }
        self.tool("remove snapshot", &["snap", "rm", &full])?;
        Ok(())
    }

    /// Snapshots made for `image` (`strata-IMAGE` on any image of the pool)
    /// that nothing is cloned from: a clone killed between its `snap
    /// create` and its end left them.
    fn drop_made_for(&self, st: &PoolState, image: &str) {
        let want = snap_for(image);
        for i in &st.images {
            if i.snaps.iter().any(|s| s.name == want) {
                if let Err(e) = self.drop_snap(st, &i.name, &want) {
                    tracing::warn!("{e}");
                }
            }
        }
    }

    /// Unmap `pool/image`, strict, giving a holder that is about to let go
    /// `tries` times 200 ms: a prober (udev's blkid) after a build, or the
    /// mount namespace of a container that just stopped, which the kernel
    /// tears down after its last process is reaped. A udev worker still
    /// running the rules of the device's event (it holds the device locked,
    /// see [`Kernel::locked`]) is waited for up to [`PROBE_WAIT`] besides:
    /// under load that takes longer than the tries (a killed build's
    /// undo then failed busy and left the image, mapped, for a later
    /// command).
    fn unmap_settled(&self, pool: &str, image: &str, tries: u32) -> Result<()> {
        let (mut n, t0, mut told) = (0, std::time::Instant::now(), false);
        loop {
            match self.unmap(pool, image, true) {
                Err(e) if e.kind() == strata_core::ErrorKind::Busy => {
                    if t0.elapsed() < PROBE_WAIT && self.probed(pool, image)? {
                        if !std::mem::replace(&mut told, true) {
                            tracing::debug!("{pool}/{image}: udev is at work on its device, waited for");
                        }
                    } else if n < tries {
                        n += 1;
                    } else {
                        return Err(e);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// Whether a device of `pool/image` is locked by a udev worker (see
    /// [`Kernel::locked`]); without the kernel's view, never.
    fn probed(&self, pool: &str, image: &str) -> Result<bool> {
        let Some(k) = &self.kernel else { return Ok(false) };
        Ok(self.mapped(pool, image)?.iter().any(|d| k.locked(d)))
    }

    /// Unmap `spec`'s image once its mount is gone, giving a holder about
    /// to let go a moment; one held longer is another mount's (a running
    /// container) and stays mapped.
    fn detach(&self, spec: &RootfsSpec) -> Result<()> {
        let (pool, image) = parse_spec(spec)?;
        match self.unmap_settled(&pool, &image, SETTLE_TRIES) {
            Err(e) if e.kind() == strata_core::ErrorKind::Busy => {
                tracing::debug!("{e}: left mapped");
                Ok(())
            }
            other => other,
        }
    }

    /// Give the image built as `tmp` its build's mark and the planned name
    /// `image`. A name taken meanwhile (a build in another lxcpath planned
    /// it too) is AlreadyExists: the engine undoes this build and plans
    /// again.
    fn finish_build(&self, pool: &str, tmp: &str, image: &str, mark: &str) -> Result<()> {
        let from = format!("{pool}/{tmp}");
        self.tool("mark rbd image", &["image-meta", "set", &from, META_BUILD, mark])?;
        let o = self.raw(&["rename", &from, &format!("{pool}/{image}")])?;
        if !o.ok {
            if o.stderr.contains("(17)") {
                // Planned without a listing, or taken meanwhile by a build in
                // another lxcpath: the engine plans again, from a listing.
                self.relist.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(err!(
                    AlreadyExists,
                    "create rbd rootfs",
                    "rbd image {pool}/{image} already exists"
                ));
            }
            return Err(err!(
                Command,
                "rename rbd image",
                "rbd rename {from} failed: {}",
                explain(&o)
            ));
        }
        Ok(())
    }

    /// The build mark image `pool/image` carries; `Ok(None)` when it has
    /// none (LXC's, or made by hand).
    fn mark_of(&self, pool: &str, image: &str) -> Result<Option<String>> {
        let o = self.raw(&["image-meta", "get", &format!("{pool}/{image}"), META_BUILD])?;
        if o.ok {
            return Ok(Some(o.stdout.trim().to_string()));
        }
        if o.stderr.contains("(2)") {
            return Ok(None);
        }
        Err(err!(Command, "read rbd image mark", "{pool}/{image}: {}", explain(&o)))
    }

    /// `rbd snap create` of `at` (a snapshot of `pool/image`, the rootfs
    /// `src`): with the filesystem frozen when the image is mounted (a
    /// running container), so that the snapshot is consistent.
    fn snap_create(&self, src: &RootfsSpec, pool: &str, image: &str, at: &str) -> Result<()> {
        const OP: &str = "rbd snapshot clone";
        let create = || self.tool(OP, &["snap", "create", "--no-progress", at]).map(drop);
        match self.mapped(pool, image)?.into_iter().find(|d| freeze::in_use(d)) {
            Some(dev) => {
                let fstype = block::fstype_of(self.run.as_ref(), &dev)?;
                let _span = tracing::info_span!("rbd snapshot frozen", dev = %dev).entered();
                freeze::frozen(src, &dev, &fstype, create)
            }
            None => create(),
        }
    }

    /// [`Backend::destroy`]; `own`: the image is a killed build's own (its
    /// undo), which no one else maps, so watchers that hold it after its
    /// mappings here are gone are a killed map's, waited for
    /// ([`RbdBackend::await_stale_watch`]).
    fn destroy_image(&self, spec: &RootfsSpec, own: bool) -> Result<()> {
        const OP: &str = "destroy rbd rootfs";
        let (pool, image) = parse_spec(spec)?;
        let _span = tracing::info_span!("rbd destroy", pool = %pool, image = %image).entered();
        // The engine's check of its dependents listed it a moment ago.
        let st = match self.pool_state_listed(OP, &pool) {
            // No such pool (a create refused for it, undone): nothing in it to go.
            Err(e) if e.kind() == strata_core::ErrorKind::NotFound => return Ok(()),
            other => other?,
        };
        let Some(me) = st.image(&image).cloned() else {
            // Half made: a killed clone may have left its origin snapshot.
            self.drop_made_for(&st, &image);
            return Ok(());
        };
        // The engine went on despite dependents: they get their data first.
        let deps = st.dependents(&image);
        if !deps.is_empty() {
            self.flatten_dependents(spec)?;
        }
        // A device just mapped (by a build a kill -9 stopped, undone now)
        // is held a moment by the kernel's and udev's first look at it.
        self.unmap_settled(&pool, &image, SETTLE_TRIES)?;
        let full = format!("{pool}/{image}");
        for sn in me.snaps.iter().filter(|s| s.protected) {
            let at = format!("{full}@{}", sn.name);
            let o = self.raw(&["snap", "unprotect", &at])?;
            if !o.ok && !o.stderr.contains("not protected") {
                return Err(err!(
                    Command,
                    OP,
                    "rbd snap unprotect {at} failed: {}",
                    o.first_err_line()
                ));
            }
        }
        if !me.snaps.is_empty() {
            self.tool(OP, &["snap", "purge", "--no-progress", &full])?;
        }
        let rm = ["rm", "--no-progress", full.as_str()];
        let o = self.raw(&rm)?;
        if !o.ok {
            if !(own && has_watchers(&o)) {
                return Err(failure(OP, &rm, &o));
            }
            self.await_stale_watch(&full)?;
            self.tool(OP, &rm)?;
        }
        // Its origin snapshot, if this backend made it and this was its last clone.
        if let Some((ppool, pimage, psnap)) = &me.parent {
            if psnap.starts_with(SNAP_PREFIX) {
                let pst = if *ppool == pool {
                    let mut after = st.clone();
                    after.images.retain(|i| i.name != image);
                    after
                } else {
                    self.pool_state(OP, ppool)?
                };
                if let Err(e) = self.drop_snap(&pst, pimage, psnap) {
                    tracing::warn!("{e}");
                }
            }
        }
        Ok(())
    }

    /// Wait until image `full` (`POOL/IMAGE`) has no watchers, up to
    /// [`WATCH_EXPIRY`]. A map killed inside the kernel (the command killed
    /// -9 during its write to sysfs) can leave its watch registered with
    /// the OSD while the kernel forgets it: no mapping, but `rbd rm`
    /// refuses the image until the OSD drops the watch, 30 s later.
    fn await_stale_watch(&self, full: &str) -> Result<()> {
        const OP: &str = "destroy rbd rootfs";
        let _span = tracing::info_span!("rbd wait for a stale watch", image = %full).entered();
        let t0 = std::time::Instant::now();
        loop {
            let o = self.tool(OP, &["status", "--format", "json", full])?;
            let n = parse_watchers(&o.stdout)?;
            if n == 0 {
                return Ok(());
            }
            if t0.elapsed() >= WATCH_EXPIRY {
                return Err(err!(Busy, OP, "rbd image {full} is still open ({n} watchers)"));
            }
            tracing::debug!("{full}: {n} watchers, unmapped here: waiting for the OSD to drop them");
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    }

    /// Flatten every clone of `spec`'s snapshots, so that it can go without
    /// them losing data (`lxc-destroy --promote`). Returns them.
    pub fn flatten_dependents(&self, spec: &RootfsSpec) -> Result<Vec<String>> {
        let (pool, image) = parse_spec(spec)?;
        // Listed by the engine's check of dependents (or the destroy), under the same lock.
        let st = self.pool_state_listed("flatten clones", &pool)?;
        let deps = st.dependents(&image);
        for d in &deps {
            let full = format!("{pool}/{d}");
            let _span = tracing::info_span!("rbd flatten", clone = %full).entered();
            self.tool("flatten clone", &["flatten", "--no-progress", &full])?;
        }
        Ok(deps.into_iter().map(|d| format!("{pool}/{d}")).collect())
    }
}

impl Backend for RbdBackend {
    fn kind(&self) -> &'static str {
        "rbd"
    }

    fn caps(&self) -> Caps {
        Caps {
            needs_root: true,
            sized: true,
            block_backed: true,
            // rbd snap create is one instant of the image; the filesystem of
            // one in use is frozen around it (see snap_create).
            atomic_snapshot: true,
            create_flags: &[("rbdname", OPT_RBDNAME), ("rbdpool", KEY_POOL), ("rbduser", KEY_USER)],
            ..Caps::default()
        }
    }

    fn plan(&self, t: &Target, origin: Option<&RootfsSpec>) -> Result<RootfsSpec> {
        const OP: &str = "plan rbd rootfs";
        let _span = tracing::debug_span!("rbd plan", name = t.name).entered();
        // --rbduser (or lxc.conf's, both in the defaults) for every command from here on.
        if let Some(u) = t.opts.defaults.get(KEY_USER) {
            *self.user.lock().unwrap_or_else(|e| e.into_inner()) = Some(Some(u.clone()));
        }
        let explicit = t.opts.defaults.contains_key(OPT_RBDNAME);
        let want = wanted_name(t);
        if !explicit && validate_name("image", &want).is_err() {
            return Err(err!(
                InvalidName,
                OP,
                "container name {:?} is not a valid rbd image name; pass --rbdname",
                t.name
            ));
        }
        validate_name("image", &want)?;
        // Room for the build name's suffix (`.strata-` and 16 hex digits).
        validate_name("image", &build_name(&want, t.build_dir))?;
        if let Some(u) = self.user() {
            validate_name("rbd user", &u)?;
        }
        let pool = match origin {
            Some(o) if o.kind() != "rbd" => {
                return Err(err!(
                    Unsupported,
                    OP,
                    "cannot make an rbd clone of a {} rootfs",
                    o.kind()
                ));
            }
            Some(o) => parse_spec(o)?.0,
            None => {
                fstype_opt(t)?;
                size_opt(t)?;
                let pool = pool_opt(t);
                validate_name("pool", &pool)?;
                pool
            }
        };
        // A new image's wanted name is taken on trust (a listing is seconds
        // on a slow machine): the build's rename refuses a taken one, and
        // the engine plans again, from a listing. An explicit name (refused
        // when taken) and a clone (its source checked, and a restore's
        // wanted name is its own container's, taken) list first.
        if origin.is_none() && !explicit && !self.relist.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(spec_for(&pool, &want));
        }
        let st = self.pool_state(OP, &pool)?;
        if let Some(o) = origin {
            let (_, src) = parse_spec(o)?;
            if st.image(&src).is_none() {
                return Err(err!(NotFound, OP, "rbd image {pool}/{src} does not exist"));
            }
        }
        let full = format!("rbd image {pool}/{want}");
        let name = pick_name(OP, want, explicit, &st.names(), &full)?;
        Ok(spec_for(&pool, &name))
    }

    fn create(&self, spec: &RootfsSpec, t: &Target) -> Result<()> {
        const OP: &str = "create rbd rootfs";
        let (pool, image) = parse_spec(spec)?;
        let _span = tracing::info_span!("rbd create", pool = %pool, image = %image).entered();
        let fstype = fstype_opt(t)?;
        // In MiB, as LXC passes it, rounded up.
        let mb = size_opt(t)?.div_ceil(1 << 20).to_string();
        let tmp = build_name(&image, t.build_dir);
        validate_name("image", &tmp)?;
        let args = ["create", "--pool", &pool, &tmp, "--size", &mb];
        let o = self.raw(&args).inspect_err(|e| {
            // Not run (an earlier command got no answer) or never
            // connected: nothing made, the undo has nothing to ask for.
            if e.kind() == strata_core::ErrorKind::Unavailable
                && self.silence().is_some_and(|s| s.connect || !s.what.contains(&tmp))
            {
                self.unreached
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(format!("{pool}/{tmp}"));
            }
        })?;
        if !o.ok {
            if never_reached(&o) {
                // Nothing made: the undo that follows has nothing to look
                // for (and no cluster to ask), so the build's dir can go.
                self.unreached
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(format!("{pool}/{tmp}"));
            }
            return Err(failure(OP, &args, &o));
        }
        if let Err(e) = self.finish_build(&pool, &tmp, &image, &t.mark()) {
            let _ = self.destroy(&spec_for(&pool, &tmp));
            return Err(e);
        }
        // Named and marked: from here an undo finds it as this build's. It
        // is mapped once, under its name, and left mapped for the mount
        // that fills it (the engine's, always next), which finds the
        // mapping and whose unmount releases it.
        let made = (|| {
            let dev = self.map(&pool, &image)?;
            block::mkfs(self.run.as_ref(), &fstype, &dev)
        })();
        if let Err(e) = made {
            let _ = self.destroy(spec);
            return Err(e);
        }
        Ok(())
    }

    fn destroy(&self, spec: &RootfsSpec) -> Result<()> {
        self.destroy_image(spec, false)
    }

    fn exists(&self, spec: &RootfsSpec) -> bool {
        let Ok((pool, image)) = parse_spec(spec) else {
            return false;
        };
        self.raw(&["info", "--format", "json", &format!("{pool}/{image}")])
            .is_ok_and(|o| o.ok)
    }

    // An image of the planned name is this build's when it carries its
    // mark: every image this backend makes gets it before its final name.
    fn made_by(&self, spec: &RootfsSpec, build_dir: &Path) -> bool {
        let Ok((pool, image)) = parse_spec(spec) else {
            return true;
        };
        match self.mark_of(&pool, &image) {
            Ok(Some(m)) => m == strata_core::build_mark(build_dir),
            // Unmarked (LXC's, or made by hand), or gone meanwhile.
            Ok(None) => !self.exists(spec),
            // Unreadable: nothing is destroyed blind.
            Err(e) => {
                tracing::warn!("{e}");
                false
            }
        }
    }

    // First what the build left under its own name (an image not renamed
    // yet, a snapshot made for it), then the planned image if it is its.
    fn undo_build(&self, spec: &RootfsSpec, build_dir: &Path) -> Result<()> {
        let (pool, image) = parse_spec(spec)?;
        let tmp = build_name(&image, build_dir);
        let key = format!("{pool}/{tmp}");
        if self.unreached.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
            tracing::debug!("{key}: its rbd create never reached the pool, nothing to undo");
            return Ok(());
        }
        self.destroy_image(&spec_for(&pool, &tmp), true)?;
        if !self.made_by(spec, build_dir) {
            tracing::info!("{spec} was made by another build: left alone");
            return Ok(());
        }
        self.destroy_image(spec, true)
    }

    fn mount(&self, spec: &RootfsSpec, target: &Path, readonly: bool) -> Result<()> {
        self.mount_as(spec, target, readonly, false)
    }

    fn mount_for_run(&self, spec: &RootfsSpec, target: &Path) -> Result<()> {
        self.mount_as(spec, target, false, true)
    }

    fn umount(&self, spec: &RootfsSpec, target: &Path) -> Result<()> {
        // Not lazy: the unmap right after needs the device closed.
        block::umount_strict(target, "unmount rbd rootfs")?;
        self.detach(spec)
    }

    fn release(&self, spec: &RootfsSpec, target: &Path) -> Result<()> {
        if strata_core::scratch::is_mount_point(target) {
            // A snapshot killed while it froze the filesystem through this mount.
            freeze::thaw(target);
            return self.umount(spec, target);
        }
        // Killed between the map and the mount: the mapping alone is left,
        // perhaps still held by the kernel's and udev's first look at the
        // new device (a plain unmap then fails busy and would leave it).
        self.detach(spec)
    }

    fn dependents(&self, spec: &RootfsSpec) -> Result<Vec<RootfsSpec>> {
        let (pool, image) = parse_spec(spec)?;
        let st = self.pool_state("list rbd clones", &pool)?;
        Ok(st.dependents(&image).iter().map(|d| spec_for(&pool, d)).collect())
    }

    fn destroy_keeps_dependents(&self) -> bool {
        true
    }

    fn release_dependents(&self, spec: &RootfsSpec) -> Result<Vec<String>> {
        self.flatten_dependents(spec)
    }

    fn snapshotter(&self) -> Option<&dyn Snapshotter> {
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

impl Snapshotter for RbdBackend {
    fn can_snapshot(&self, src: &RootfsSpec) -> bool {
        src.kind() == "rbd"
    }

    fn snapshot(&self, src: &RootfsSpec, spec: &RootfsSpec, t: &Target, _readonly: bool) -> Result<()> {
        const OP: &str = "rbd snapshot clone";
        let (spool, simage) = parse_spec(src)?;
        let (pool, image) = parse_spec(spec)?;
        let _span = tracing::info_span!("rbd clone", src = %src, dst = %spec).entered();
        if spool != pool {
            return Err(err!(
                Unsupported,
                OP,
                "a clone of {spool}/{simage} must be in pool {spool}"
            ));
        }
        let tmp = build_name(&image, t.build_dir);
        validate_name("image", &tmp)?;
        let snap = snap_for(&tmp);
        let at = format!("{pool}/{simage}@{snap}");
        // Listed by the plan, under the source's lock.
        let st = self.pool_state_listed(OP, &pool)?;
        let src_img = st
            .image(&simage)
            .ok_or_else(|| err!(NotFound, OP, "rbd image {pool}/{simage} does not exist"))?;
        // One a killed build of this very name left: its data is old.
        if src_img.snaps.iter().any(|s| s.name == snap) {
            self.drop_snap(&st, &simage, &snap)?;
        }
        self.snap_create(src, &pool, &simage, &at)?;
        let cloned = (|| {
            self.tool(OP, &["snap", "protect", &at])?;
            self.tool(OP, &["clone", &at, &format!("{pool}/{tmp}")])?;
            let dev = self.map(&pool, &tmp)?;
            let uuid = block::new_fs_uuid(self.run.as_ref(), &dev);
            self.unmap_settled(&pool, &tmp, 50)?;
            uuid?;
            self.finish_build(&pool, &tmp, &image, &t.mark())
        })();
        if let Err(e) = cloned {
            let _ = self.destroy(&spec_for(&pool, &tmp));
            if let Ok(st) = self.pool_state(OP, &pool) {
                self.drop_made_for(&st, &tmp);
            }
            return Err(e);
        }
        Ok(())
    }

    // No clone_depends_on_source: as for zfs, the engine asks
    // [`Backend::dependents`] (the pool's clones) instead of recording the
    // dependency, so that `--promote` (a flatten) lets the destroy go on.
}

impl UsageReport for RbdBackend {
    fn usage(&self, spec: &RootfsSpec) -> Result<Usage> {
        let (pool, image) = parse_spec(spec)?;
        let o = self.tool("rbd usage", &["du", "--format", "json", &format!("{pool}/{image}")])?;
        let v: Value = serde_json::from_str(o.stdout.trim())
            .map_err(|e| err!(Command, "rbd usage", "bad JSON from rbd du: {e}"))?;
        let img = v
            .get("images")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|i| i.get("snapshot").is_none()));
        Ok(Usage {
            referenced: img.and_then(|i| i.get("used_size")).and_then(Value::as_u64),
            source: strata_core::UsageSource::Accounting("rbd du"),
            ..Usage::default()
        })
    }
}

#[cfg(test)]
mod counts;
#[cfg(test)]
mod tests;
