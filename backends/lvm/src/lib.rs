//! The lvm backend: `lvm:/dev/VG/LV`, as LXC writes it.
//!
//! A new rootfs is a thin volume when the thin pool exists (`--thinpool`,
//! `lxc.bdev.lvm.thin_pool`, else `lxc`), else a plain volume; it gets a
//! filesystem (`--fstype`, ext4) of `--fssize` (1G) and is mounted at the
//! container's rootfs path. Snapshot clones of thin volumes are thin
//! snapshots (activated despite the activation-skip flag LVM gives them), of
//! plain volumes classic snapshots with their own size; a snapshot of a
//! classic snapshot is refused.
//!
//! Names never collide: a container's LV is `NAME` when free, else
//! `NAME_1`, `NAME_2`...; the LV of snapshot `snapN` of container `c1` is
//! `c1_snapN` (same rule). Two builds in two lxcpaths may plan one name at
//! once: each LV is made with its build's tag (`strata_build_MARK`), the
//! loser's lvcreate fails, its build is undone without touching the
//! winner's LV ([`Backend::made_by`]) and planned again. The lvm tools run with argv only, JSON reports and
//! sizes in bytes; every VG/LV name is checked before any command runs.
//! `strata resize` grows a volume with its filesystem (online), and
//! shrinks an ext4 one offline (`resize.rs`).

mod resize;
pub mod runner;

use runner::{Out, Runner, SystemRunner};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use strata_core::block::{self, pick_name, wanted_name};
use strata_core::{err, Backend, Caps, Result, RootfsSpec, Snapshotter, Target, Usage, UsageReport, UsageSource};

const DEFAULT_SIZE: u64 = 1 << 30;

pub struct LvmBackend {
    run: Box<dyn Runner>,
}

pub fn backend() -> Arc<dyn Backend> {
    Arc::new(LvmBackend::new())
}

impl Default for LvmBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// One logical volume as `lvs` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lv {
    pub name: String,
    pub vg: String,
    pub attr: String,
    pub size: u64,
    pub pool: String,
    pub origin: String,
    pub data_percent: Option<f64>,
    /// `lv_tags`, comma-separated.
    pub tags: Vec<String>,
}

impl Lv {
    pub fn is_thin_pool(&self) -> bool {
        self.attr.starts_with('t')
    }
    pub fn is_thin(&self) -> bool {
        self.attr.starts_with('V')
    }
    /// A classic (non-thin) snapshot.
    pub fn is_classic_snapshot(&self) -> bool {
        self.attr.starts_with('s') || self.attr.starts_with('S')
    }
    pub fn is_active(&self) -> bool {
        self.attr.as_bytes().get(4) == Some(&b'a')
    }
}

/// One volume group as `vgs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vg {
    pub name: String,
    pub size: u64,
    pub free: u64,
}

/// Check a VG or LV name by LVM's rules, before any tool sees it.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    const OP: &str = "check lvm name";
    let bad = |why: &str| Err(err!(InvalidName, OP, "invalid {what} name {name:?}: {why}"));
    if name.is_empty() {
        return bad("empty");
    }
    if name.starts_with('-') {
        return bad("starts with '-'");
    }
    if name == "." || name == ".." {
        return bad("reserved");
    }
    if name.len() > 127 {
        return bad("longer than 127 bytes");
    }
    if let Some(c) = name.chars().find(|c| !block::volume_char(*c)) {
        return bad(&format!("character {c:?} not allowed (only a-z A-Z 0-9 + _ . -)"));
    }
    if what == "logical volume" {
        if name.starts_with("snapshot") || name.starts_with("pvmove") {
            return bad("reserved prefix");
        }
        for part in [
            "_cdata", "_cmeta", "_corig", "_mlog", "_mimage", "_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta",
            "_vorigin", "_vdata",
        ] {
            if name.contains(part) {
                return bad(&format!("contains reserved {part:?}"));
            }
        }
    }
    Ok(())
}

/// `(VG, LV)` of an `lvm:/dev/VG/LV` spec, both checked.
pub fn parse_spec(spec: &RootfsSpec) -> Result<(String, String)> {
    let src = spec.source();
    let rest = src
        .strip_prefix("/dev/")
        .filter(|_| spec.kind() == "lvm")
        .ok_or_else(|| err!(InvalidSpec, "lvm", "not an lvm spec: {spec}"))?;
    let (vg, lv) = rest
        .split_once('/')
        .filter(|(_, lv)| !lv.contains('/'))
        .ok_or_else(|| err!(InvalidSpec, "lvm", "{spec}: expected lvm:/dev/VG/LV"))?;
    validate_name("volume group", vg)?;
    validate_name("logical volume", lv)?;
    Ok((vg.to_string(), lv.to_string()))
}

fn spec_for(vg: &str, lv: &str) -> RootfsSpec {
    RootfsSpec::new("lvm", format!("/dev/{vg}/{lv}"))
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(|f| f as u64)
        .unwrap_or(0)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").trim().to_string()
}

/// Parse `lvs --reportformat json` output.
pub fn parse_lvs(json: &str) -> Result<Vec<Lv>> {
    let v: Value = serde_json::from_str(json).map_err(|e| err!(Command, "parse lvs", "bad JSON from lvs: {e}"))?;
    let mut out = Vec::new();
    for r in v.get("report").and_then(Value::as_array).into_iter().flatten() {
        for lv in r.get("lv").and_then(Value::as_array).into_iter().flatten() {
            out.push(Lv {
                name: text(lv, "lv_name"),
                vg: text(lv, "vg_name"),
                attr: text(lv, "lv_attr"),
                size: num(lv, "lv_size"),
                pool: text(lv, "pool_lv"),
                origin: text(lv, "origin"),
                data_percent: lv
                    .get("data_percent")
                    .and_then(Value::as_str)
                    .and_then(|s| s.trim().parse().ok()),
                tags: text(lv, "lv_tags")
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// Parse `vgs --reportformat json` output.
pub fn parse_vgs(json: &str) -> Result<Vec<Vg>> {
    let v: Value = serde_json::from_str(json).map_err(|e| err!(Command, "parse vgs", "bad JSON from vgs: {e}"))?;
    let mut out = Vec::new();
    for r in v.get("report").and_then(Value::as_array).into_iter().flatten() {
        for vg in r.get("vg").and_then(Value::as_array).into_iter().flatten() {
            out.push(Vg {
                name: text(vg, "vg_name"),
                size: num(vg, "vg_size"),
                free: num(vg, "vg_free"),
            });
        }
    }
    Ok(out)
}

/// The LVM tag of what the build of `t` makes (see [`Backend::made_by`]).
fn build_tag(build_dir: &Path) -> String {
    format!("{TAG_PREFIX}{}", strata_core::build_mark(build_dir))
}

const TAG_PREFIX: &str = "strata_build_";

/// `lvcreate` failed: the name taken meanwhile (another build in another
/// lxcpath planned it too) is told apart, so that the engine plans again.
fn create_failed(b: &LvmBackend, e: strata_core::Error, vg: &str, lv: &str) -> strata_core::Error {
    if b.find(vg, lv).is_some() {
        return err!(
            AlreadyExists,
            "create lvm rootfs",
            "logical volume {vg}/{lv} was made meanwhile by another build: {e}"
        );
    }
    e
}

impl LvmBackend {
    pub fn new() -> Self {
        Self::with_runner(Box::new(SystemRunner))
    }

    pub fn with_runner(run: Box<dyn Runner>) -> Self {
        LvmBackend { run }
    }

    fn tool(&self, op: &str, argv: Vec<String>) -> Result<Out> {
        let o = self.run.run(&argv)?;
        if !o.ok {
            return Err(err!(Command, op, "{} failed: {}", argv[0], o.first_err_line()));
        }
        Ok(o)
    }

    /// All VGs.
    pub fn vgs(&self) -> Result<Vec<Vg>> {
        let o = self.tool(
            "list volume groups",
            s(&[
                "vgs",
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "vg_name,vg_size,vg_free",
            ]),
        )?;
        parse_vgs(&o.stdout)
    }

    /// All LVs of `vg` (which must exist).
    pub fn lvs(&self, vg: &str) -> Result<Vec<Lv>> {
        validate_name("volume group", vg)?;
        let o = self.tool(
            "list logical volumes",
            s(&[
                "lvs",
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "lv_name,vg_name,lv_attr,lv_size,pool_lv,origin,data_percent,lv_tags",
                vg,
            ]),
        )?;
        parse_lvs(&o.stdout)
    }

    /// The size of the LV a copy is made of (`lvs` of `vg` given: the
    /// source's VG is most often the same), when `t` is a copy of one.
    fn copied_size(&self, t: &Target, vg: &str, lvs: &[Lv]) -> Option<u64> {
        let (svg, slv) = parse_spec(t.opts.copy_of.as_ref().filter(|s| s.kind() == "lvm")?).ok()?;
        match svg == vg {
            true => lvs.iter().find(|l| l.name == slv).map(|l| l.size),
            false => self.find(&svg, &slv).map(|l| l.size),
        }
    }

    fn vg(&self, op: &str, vg: &str) -> Result<Vg> {
        validate_name("volume group", vg)?;
        self.vgs()?
            .into_iter()
            .find(|v| v.name == vg)
            .ok_or_else(|| err!(NotFound, op, "volume group {vg:?} does not exist"))
    }

    fn find(&self, vg: &str, lv: &str) -> Option<Lv> {
        // lvs fails on a missing VG: that is a missing LV too (exists must
        // not fail on it).
        self.lvs(vg).ok()?.into_iter().find(|l| l.name == lv)
    }

    /// [`LvmBackend::find`] for what removes: `None` only when the LV or
    /// its VG is known to be gone. An `lvs` that fails while the VG is
    /// there is an error: taken for "gone", a destroy would report success
    /// and leave the LV behind, named by nothing.
    fn lookup(&self, vg: &str, lv: &str) -> Result<Option<Lv>> {
        match self.lvs(vg) {
            Ok(lvs) => Ok(lvs.into_iter().find(|l| l.name == lv)),
            Err(e) => match self.vgs() {
                Ok(vgs) if !vgs.iter().any(|v| v.name == vg) => Ok(None),
                _ => Err(e),
            },
        }
    }

    fn activate(&self, vg: &str, lv: &str) -> Result<()> {
        // -K: thin snapshots carry the activation-skip flag.
        self.tool(
            "activate logical volume",
            s(&["lvchange", "-ay", "-K", &format!("{vg}/{lv}")]),
        )?;
        Ok(())
    }

    fn remove(&self, vg: &str, lv: &str) -> Result<()> {
        self.tool(
            "remove logical volume",
            s(&["lvremove", "-f", "-y", &format!("{vg}/{lv}")]),
        )?;
        Ok(())
    }

    /// Classic snapshots that would vanish with this LV (thin snapshots are
    /// independent of their origin).
    fn dependents_of(&self, spec: &RootfsSpec) -> Result<Vec<RootfsSpec>> {
        let (vg, lv) = parse_spec(spec)?;
        let Some(me) = self.find(&vg, &lv) else {
            return Ok(vec![]);
        };
        if me.is_thin() {
            return Ok(vec![]);
        }
        Ok(self
            .lvs(&vg)?
            .into_iter()
            .filter(|l| l.origin == lv && l.is_classic_snapshot())
            .map(|l| spec_for(&vg, &l.name))
            .collect())
    }

    fn fstype_opt(t: &Target) -> Result<String> {
        block::fstype_opt("plan lvm rootfs", t, t.opts.defaults.get("lxc.bdev.lvm.fstype"))
    }
}

/// The VG of a new rootfs: `--vgname`; for a copy of an LV, its VG (as
/// LXC places it); `lxc.bdev.lvm.vg`; `lxc`.
fn vg_opt(t: &Target) -> String {
    let copied = t
        .opts
        .copy_of
        .as_ref()
        .filter(|s| s.kind() == "lvm")
        .and_then(|s| parse_spec(s).ok())
        .map(|(vg, _)| vg);
    t.opts
        .vgname
        .clone()
        .or(copied)
        .or_else(|| t.opts.defaults.get("lxc.bdev.lvm.vg").cloned())
        .unwrap_or_else(|| "lxc".into())
}

/// The thin pool asked for: `--thinpool`; `lxc.bdev.lvm.thin_pool`; for a
/// copy of a thin LV of `vg` (listed in `lvs`), its pool. None: the default.
fn pool_opt(t: &Target, vg: &str, lvs: &[Lv]) -> Option<String> {
    let copied = || {
        let (svg, slv) = parse_spec(t.opts.copy_of.as_ref().filter(|s| s.kind() == "lvm")?).ok()?;
        let l = lvs.iter().find(|l| svg == vg && l.name == slv && l.is_thin())?;
        Some(l.pool.clone()).filter(|p| !p.is_empty())
    };
    t.opts
        .thinpool
        .clone()
        .or_else(|| t.opts.defaults.get("lxc.bdev.lvm.thin_pool").cloned())
        .or_else(copied)
}

/// The size of a new LV: `--fssize`; for a copy of an LV, that LV's size
/// (LXC's clone sizes a copy of a block device so); LXC's default.
fn size_opt(t: &Target, copied: Option<u64>) -> Result<u64> {
    let size = t.opts.fssize.or(copied).unwrap_or(DEFAULT_SIZE);
    if size == 0 {
        return Err(err!(InvalidArgument, "plan lvm rootfs", "--fssize must not be 0"));
    }
    Ok(size)
}

impl Backend for LvmBackend {
    fn kind(&self) -> &'static str {
        "lvm"
    }

    fn caps(&self) -> Caps {
        Caps {
            needs_root: true,
            block_backed: true,
            sized: true,
            atomic_snapshot: true,
            best_order: Some(2),
            ..Caps::default()
        }
    }

    fn plan(&self, t: &Target, origin: Option<&RootfsSpec>) -> Result<RootfsSpec> {
        const OP: &str = "plan lvm rootfs";
        let _span = tracing::debug_span!("lvm plan", name = t.name).entered();
        let want = wanted_name(t, t.opts.lvname.as_deref());
        if want.chars().any(|c| !block::volume_char(c)) && t.opts.lvname.is_none() {
            return Err(err!(
                InvalidName,
                OP,
                "container name {:?} is not a valid LV name; pass --lvname",
                t.name
            ));
        }
        validate_name("logical volume", &want)?;
        if let Some(o) = origin {
            if o.kind() != "lvm" {
                return Err(err!(
                    Unsupported,
                    OP,
                    "cannot make an lvm snapshot of a {} rootfs",
                    o.kind()
                ));
            }
            let (vg, olv) = parse_spec(o)?;
            let vgi = self.vg(OP, &vg)?;
            let lvs = self.lvs(&vg)?;
            let src = lvs
                .iter()
                .find(|l| l.name == olv)
                .ok_or_else(|| err!(NotFound, OP, "logical volume {vg}/{olv} does not exist"))?;
            if src.is_classic_snapshot() {
                return Err(err!(
                    Unsupported,
                    OP,
                    "{vg}/{olv} is a classic (non-thin) snapshot: LVM cannot snapshot it; use a copy or a thin pool"
                ));
            }
            if !src.is_thin() && vgi.free < src.size {
                return Err(err!(
                    InvalidArgument,
                    OP,
                    "volume group {vg} has {} bytes free, a snapshot of {olv} needs {}",
                    vgi.free,
                    src.size
                ));
            }
            let taken: Vec<String> = lvs.into_iter().map(|l| l.name).collect();
            let full = format!("logical volume {vg}/{want}");
            let name = pick_name(OP, want, t.opts.lvname.is_some(), &taken, &full)?;
            return Ok(spec_for(&vg, &name));
        }
        Self::fstype_opt(t)?;
        size_opt(t, None)?;
        let vg = vg_opt(t);
        validate_name("volume group", &vg)?;
        let vgi = self.vg(OP, &vg)?;
        let lvs = self.lvs(&vg)?;
        let size = size_opt(t, self.copied_size(t, &vg, &lvs))?;
        let explicit_pool = pool_opt(t, &vg, &lvs);
        let pool = explicit_pool.clone().unwrap_or_else(|| "lxc".into());
        validate_name("logical volume", &pool)?;
        match lvs.iter().find(|l| l.name == pool && l.is_thin_pool()) {
            Some(p) => {
                // Thin volumes may overcommit the pool together, but one volume
                // larger than the whole pool can never be filled.
                if size > p.size {
                    return Err(err!(
                        InvalidArgument,
                        OP,
                        "--fssize {size} is larger than thin pool {vg}/{pool} ({} bytes)",
                        p.size
                    ));
                }
            }
            None if explicit_pool.is_some() => {
                return Err(err!(NotFound, OP, "thin pool {vg}/{pool} does not exist"));
            }
            None => {
                if size > vgi.free {
                    return Err(err!(
                        InvalidArgument,
                        OP,
                        "--fssize {size} is more than volume group {vg} has free ({} bytes)",
                        vgi.free
                    ));
                }
            }
        }
        let taken: Vec<String> = lvs.into_iter().map(|l| l.name).collect();
        let full = format!("logical volume {vg}/{want}");
        let name = pick_name(OP, want, t.opts.lvname.is_some(), &taken, &full)?;
        Ok(spec_for(&vg, &name))
    }

    fn create(&self, spec: &RootfsSpec, t: &Target) -> Result<()> {
        const OP: &str = "create lvm rootfs";
        let (vg, lv) = parse_spec(spec)?;
        let _span = tracing::info_span!("lvm create", vg = %vg, lv = %lv).entered();
        let fstype = Self::fstype_opt(t)?;
        let lvs = self.lvs(&vg)?;
        let size = size_opt(t, self.copied_size(t, &vg, &lvs))?;
        let pool = pool_opt(t, &vg, &lvs).unwrap_or_else(|| "lxc".into());
        let thin = lvs.iter().any(|l| l.name == pool && l.is_thin_pool());
        let sz = format!("{size}b");
        let tag = build_tag(t.build_dir);
        let argv = if thin {
            s(&[
                "lvcreate",
                "-y",
                "-Wy",
                "-n",
                &lv,
                "-V",
                &sz,
                "--thinpool",
                &format!("{vg}/{pool}"),
                "--addtag",
                &tag,
            ])
        } else {
            s(&["lvcreate", "-y", "-Wy", "-n", &lv, "-L", &sz, "--addtag", &tag, &vg])
        };
        self.tool(OP, argv).map_err(|e| create_failed(self, e, &vg, &lv))?;
        let dev = format!("/dev/{vg}/{lv}");
        if let Err(e) = block::mkfs(self.run.as_ref(), &fstype, &dev) {
            let _ = self.remove(&vg, &lv);
            return Err(e);
        }
        Ok(())
    }

    fn destroy(&self, spec: &RootfsSpec) -> Result<()> {
        let (vg, lv) = parse_spec(spec)?;
        let _span = tracing::info_span!("lvm destroy", vg = %vg, lv = %lv).entered();
        if self.lookup(&vg, &lv)?.is_none() {
            return Ok(());
        }
        let deps = self.dependents_of(spec)?;
        if !deps.is_empty() {
            let names: Vec<String> = deps.iter().map(|d| d.to_string()).collect();
            return Err(err!(
                HasDependents,
                "destroy lvm rootfs",
                "{vg}/{lv} has classic snapshots that would be lost: {}",
                names.join(", ")
            ));
        }
        self.remove(&vg, &lv)
    }

    fn exists(&self, spec: &RootfsSpec) -> bool {
        parse_spec(spec).is_ok_and(|(vg, lv)| self.find(&vg, &lv).is_some())
    }

    // Every LV this backend makes carries its build's tag from lvcreate on.
    fn made_by(&self, spec: &RootfsSpec, build_dir: &Path) -> bool {
        let Ok((vg, lv)) = parse_spec(spec) else { return true };
        match self.find(&vg, &lv) {
            Some(l) => l.tags.contains(&build_tag(build_dir)),
            None => true,
        }
    }

    // As the default, but a failed lookup is an error, not "gone": the
    // build's staging dir then stays, naming the LV for a later command.
    fn undo_build(&self, spec: &RootfsSpec, build_dir: &Path) -> Result<()> {
        let (vg, lv) = parse_spec(spec)?;
        match self.lookup(&vg, &lv)? {
            None => Ok(()),
            Some(l) if !l.tags.contains(&build_tag(build_dir)) => {
                tracing::info!("{spec} was made by another build: left alone");
                Ok(())
            }
            Some(_) => self.destroy(spec),
        }
    }

    // Tagged from lvcreate on since the marks; an older strata's LVs carry none.
    fn unmarked(&self, spec: &RootfsSpec) -> bool {
        let Ok((vg, lv)) = parse_spec(spec) else { return false };
        self.find(&vg, &lv)
            .is_some_and(|l| !l.tags.iter().any(|t| t.starts_with(TAG_PREFIX)))
    }

    fn mount(&self, spec: &RootfsSpec, target: &Path, readonly: bool) -> Result<()> {
        let (vg, lv) = parse_spec(spec)?;
        let dev = spec.source().to_string();
        // The device node exists only while the LV is active.
        if !Path::new(&dev).exists() {
            let l = self
                .find(&vg, &lv)
                .ok_or_else(|| err!(NotFound, "mount lvm rootfs", "logical volume {vg}/{lv} does not exist"))?;
            if !l.is_active() {
                self.activate(&vg, &lv)?;
            }
        }
        block::mount_dev(self.run.as_ref(), &dev, target, readonly, "mount lvm rootfs")
    }

    fn umount(&self, _spec: &RootfsSpec, target: &Path) -> Result<()> {
        // Not lazy: lvremove right after needs the device closed.
        block::umount_strict(target, "unmount lvm rootfs")
    }

    fn dependents(&self, spec: &RootfsSpec) -> Result<Vec<RootfsSpec>> {
        self.dependents_of(spec)
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
}

impl Snapshotter for LvmBackend {
    fn can_snapshot(&self, src: &RootfsSpec) -> bool {
        let Ok((vg, lv)) = parse_spec(src) else {
            return false;
        };
        self.find(&vg, &lv).is_some_and(|l| !l.is_classic_snapshot())
    }

    fn snapshot(&self, src: &RootfsSpec, spec: &RootfsSpec, t: &Target, _readonly: bool) -> Result<()> {
        const OP: &str = "lvm snapshot";
        let (vg, olv) = parse_spec(src)?;
        let (nvg, lv) = parse_spec(spec)?;
        let _span = tracing::info_span!("lvm snapshot", src = %src, dst = %spec).entered();
        if vg != nvg {
            return Err(err!(
                Unsupported,
                OP,
                "a snapshot must be in its origin's volume group {vg}"
            ));
        }
        let o = self
            .find(&vg, &olv)
            .ok_or_else(|| err!(NotFound, OP, "logical volume {vg}/{olv} does not exist"))?;
        if o.is_classic_snapshot() {
            return Err(err!(
                Unsupported,
                OP,
                "{vg}/{olv} is a classic snapshot: it cannot be snapshotted"
            ));
        }
        let origin = format!("{vg}/{olv}");
        let tag = build_tag(t.build_dir);
        let argv = if o.is_thin() {
            s(&["lvcreate", "-y", "-s", "-n", &lv, "--addtag", &tag, &origin])
        } else {
            s(&[
                "lvcreate",
                "-y",
                "-s",
                "-n",
                &lv,
                "-L",
                &format!("{}b", o.size),
                "--addtag",
                &tag,
                &origin,
            ])
        };
        self.tool(OP, argv).map_err(|e| create_failed(self, e, &vg, &lv))?;
        let res = (|| {
            if o.is_thin() {
                self.activate(&vg, &lv)?;
            }
            block::new_fs_uuid(self.run.as_ref(), spec.source())
        })();
        if let Err(e) = res {
            let _ = self.remove(&vg, &lv);
            return Err(e);
        }
        Ok(())
    }
}

impl UsageReport for LvmBackend {
    fn usage(&self, spec: &RootfsSpec) -> Result<Usage> {
        let (vg, lv) = parse_spec(spec)?;
        let l = self
            .find(&vg, &lv)
            .ok_or_else(|| err!(NotFound, "lvm usage", "logical volume {vg}/{lv} does not exist"))?;
        // Thin volumes: the pool blocks mapped (data_percent of the size,
        // shared with thin snapshots as far as they have not diverged, which
        // LVM does not count); plain volumes: all of it, their own.
        match l.data_percent {
            Some(p) if l.is_thin() => Ok(Usage {
                exclusive: None,
                referenced: Some((l.size as f64 * p / 100.0) as u64),
                snapshots: None,
                source: UsageSource::Accounting("thin data_percent"),
            }),
            _ => Ok(Usage {
                exclusive: Some(l.size),
                referenced: Some(l.size),
                snapshots: None,
                source: UsageSource::Accounting("lv size"),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
