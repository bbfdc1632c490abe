//! Plan, make and enter the container's cgroups (cgfsng's payload_create,
//! setup_limits_legacy, setup_limits, devices_activate and payload_enter).

use super::{io_err, read_file, remove, write_file, DeviceList, DeviceRule, Hierarchy, Layout, Setting, Spec, Version};
use nix::unistd::AccessFlags;
use std::path::{Path, PathBuf};
use strata_core::{err, Error, ErrorKind, Result};

/// LXC's name for a container's cgroup, before the `-N` suffix.
const PAYLOAD_PREFIX: &str = "lxc.payload.";
/// And for the monitor's.
const MONITOR_PREFIX: &str = "lxc.monitor.";

/// The container's cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDir {
    pub version: Version,
    /// The v1 controllers (`cpu`, `name=systemd`), empty for the unified tree.
    pub controllers: Vec<String>,
    /// The hierarchy's mount name under /sys/fs/cgroup (`memory`, `unified`, `` for pure v2).
    pub mount_name: String,
    /// The cgroup it is made under.
    pub base: PathBuf,
    /// Where the limits go (LXC's limit cgroup).
    pub limit: PathBuf,
    /// Where init goes: `limit`, or `limit/INNER` with `lxc.cgroup.dir.container.inner`.
    pub leaf: PathBuf,
    /// The directories [`create`] makes, parents first.
    pub make: Vec<PathBuf>,
}

/// What [`create`] will do. [`Plan::paths`] is what to record first.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The container's cgroup below each base (`lxc.payload.c1`, `lxc.payload.c1-1`).
    pub name: String,
    pub dirs: Vec<PlannedDir>,
    /// v1 settings other than device rules, each with its hierarchy's index in `dirs`.
    v1: Vec<(usize, Setting)>,
    /// v1 device rules, in config order, for the devices hierarchy.
    v1_devices: Vec<(usize, Setting)>,
    /// v2 settings other than device rules.
    v2: Vec<Setting>,
    /// The cgroup2 device program's list.
    bpf: Option<DeviceList>,
    /// Whether the limit cgroup has an inner cgroup below it.
    inner: bool,
}

impl Plan {
    /// Every directory [`create`] will make, parents first: record them
    /// before calling it; [`remove`] takes the same list.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().flat_map(|d| d.make.iter().cloned()).collect()
    }

    /// The unified tree's entry, if any.
    pub fn unified(&self) -> Option<&PlannedDir> {
        self.dirs.iter().find(|d| d.version == Version::V2)
    }

    /// Whether a cgroup2 device program will be attached.
    pub fn has_device_program(&self) -> bool {
        self.bpf.is_some()
    }

    /// Whether `d` belongs to `part`.
    fn in_part(d: &PlannedDir, part: Part) -> bool {
        let first = d.version == Version::V2 || d.controllers.iter().any(|c| c == "devices");
        match part {
            Part::All => true,
            Part::First => first,
            Part::Rest => !first,
        }
    }
}

/// Which of a plan's cgroups [`create_part`] makes (and
/// [`attach_self_v1`] enters). A start makes the `First` ones before init
/// is cloned: the unified tree's, which init is cloned into and whose
/// name claims the plan's name for the whole plan (see [`plan`]), and the
/// devices hierarchy's, which init enters before it makes a device node.
/// The `Rest` (the other v1 hierarchies) are made by the monitor while
/// init sets up its rootfs; init enters them before it runs anything of
/// the container's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    All,
    First,
    Rest,
}

fn writable(p: &Path) -> bool {
    nix::unistd::access(p, AccessFlags::W_OK).is_ok()
}

/// LXC's delegation test: a v1 base must be writable; a v2 base also needs
/// its delegated files (cgroup.procs, cgroup.subtree_control, cgroup.threads) writable.
fn delegated(v: Version, base: &Path) -> bool {
    if !writable(base) {
        return false;
    }
    v == Version::V1
        || ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"]
            .iter()
            .all(|f| !base.join(f).exists() || writable(&base.join(f)))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Decide the container's cgroups and check every key against this host.
/// A caller that cannot make cgroups anywhere (an unprivileged user
/// without a delegated cgroup) gets an empty plan, and an error for any
/// resource limit it asks for.
pub fn plan(layout: &Layout, spec: &Spec, name: &str) -> Result<Plan> {
    plan_as(layout, spec, name, is_root())
}

/// Which of LXC's two cgroups to plan.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The container's (`lxc.payload.NAME`).
    Payload,
    /// The monitor's (`lxc.monitor.NAME`).
    Monitor,
}

/// The directories of the payload or monitor cgroup in every hierarchy the
/// caller can make cgroups in, and the hierarchies it cannot.
fn plan_dirs<'a>(
    layout: &'a Layout,
    spec: &Spec,
    name: &str,
    root: bool,
    role: Role,
) -> Result<(Plan, Vec<&'a Hierarchy>)> {
    let mut usable = Vec::new();
    let mut refused = Vec::new();
    for h in &layout.hierarchies {
        match h.base(root, spec.relative) {
            Some(b) if delegated(h.version, &b) => usable.push((h, b)),
            _ => refused.push(h),
        }
    }
    let (prefix, leaf) = match role {
        Role::Payload => (PAYLOAD_PREFIX, "payload"),
        Role::Monitor => (MONITOR_PREFIX, "monitor"),
    };
    let fixed = match role {
        Role::Payload => spec.container_dir.as_ref().map(|c| ("lxc.cgroup.dir.container", c)),
        Role::Monitor => spec.monitor_dir.as_ref().map(|c| ("lxc.cgroup.dir.monitor", c)),
    };
    let (limit_rel, inner_rel) = match (fixed, &spec.dir, &spec.pattern) {
        (Some((_, c)), _, _) if role == Role::Payload => (c.clone(), spec.container_inner.clone()),
        (Some((_, c)), _, _) => (c.clone(), None),
        (None, Some(d), _) => (format!("{d}/{prefix}{name}"), None),
        (None, None, Some(p)) if !p.is_empty() => (format!("{}/{leaf}", p.replace("%n", name)), None),
        _ => (format!("{prefix}{name}"), None),
    };
    let taken = |rel: &str| {
        usable
            .iter()
            .any(|(_, b)| std::fs::symlink_metadata(b.join(rel)).is_ok())
    };
    let limit_rel = match fixed {
        Some((key, _)) => {
            if taken(&limit_rel) {
                return Err(err!(
                    AlreadyExists,
                    "",
                    "{key} = {limit_rel}: that cgroup already exists"
                ));
            }
            limit_rel
        }
        None => (0..1000)
            .map(|i| {
                if i == 0 {
                    limit_rel.clone()
                } else {
                    format!("{limit_rel}-{i}")
                }
            })
            .find(|r| !taken(r))
            .ok_or_else(|| err!(AlreadyExists, "", "{limit_rel}: every suffix up to -999 is taken"))?,
    };
    let leaf_rel = match &inner_rel {
        Some(i) => format!("{limit_rel}/{i}"),
        None => limit_rel.clone(),
    };
    let mut p = Plan {
        name: leaf_rel.clone(),
        inner: inner_rel.is_some(),
        ..Default::default()
    };
    for (h, base) in &usable {
        let mut make = Vec::new();
        let mut cur = base.clone();
        let limit = base.join(&limit_rel);
        // The limit cgroup was just found absent in every usable hierarchy,
        // and so is all below it: only its parents are looked up.
        let mut absent = false;
        for c in leaf_rel.split('/').filter(|c| !c.is_empty()) {
            cur.push(c);
            absent = absent || cur == limit;
            if absent || std::fs::symlink_metadata(&cur).is_err() {
                make.push(cur.clone());
            }
        }
        p.dirs.push(PlannedDir {
            version: h.version,
            controllers: h.controllers.clone(),
            mount_name: h.mount_name(),
            base: base.clone(),
            limit,
            leaf: base.join(&leaf_rel),
            make,
        });
    }
    Ok((p, refused))
}

/// LXC's monitor cgroup (`lxc.monitor.NAME`, or `lxc.cgroup.dir.monitor`,
/// or `DIR/lxc.monitor.NAME`) in every hierarchy, without limits: make it
/// with [`create`] and put the monitor in with [`attach`]. Before removing
/// it, move the monitor out with [`leave`].
pub fn plan_monitor(layout: &Layout, spec: &Spec, name: &str) -> Result<Plan> {
    Ok(plan_dirs(layout, spec, name, is_root(), Role::Monitor)?.0)
}

/// Move `pid` (the monitor) into LXC's pivot cgroup, `lxc.pivot` below
/// `lxc.cgroup.dir.monitor.pivot`, `lxc.cgroup.dir` or the base, made when
/// missing and left in place (shared, as LXC leaves it), so that its own
/// cgroup can be removed.
pub fn leave(layout: &Layout, spec: &Spec, pid: i32) -> Result<()> {
    let rel = match (&spec.monitor_pivot, &spec.dir) {
        (Some(p), _) | (None, Some(p)) => format!("{p}/lxc.pivot"),
        _ => "lxc.pivot".to_string(),
    };
    let root = is_root();
    for h in &layout.hierarchies {
        let Some(base) = h.base(root, spec.relative).filter(|b| delegated(h.version, b)) else {
            continue;
        };
        let dir = base.join(&rel);
        let mut cur = base.clone();
        for c in rel.split('/') {
            cur.push(c);
            match std::fs::create_dir(&cur) {
                Ok(()) if h.version == Version::V1 && h.has("cpuset") => init_cpuset(&cur)?,
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("make pivot cgroup", &cur, e)),
            }
        }
        write_file(&dir, "cgroup.procs", &pid.to_string())
            .map_err(|e| io_err(&format!("move {pid} into cgroup"), &dir, e))?;
    }
    Ok(())
}

pub(super) fn plan_as(layout: &Layout, spec: &Spec, name: &str, root: bool) -> Result<Plan> {
    // The messages start with the key.
    const OP: &str = "";
    let (mut p, refused) = plan_dirs(layout, spec, name, root, Role::Payload)?;
    let user = || super::user_name();
    let no_delegation = |key: &str| {
        err!(
            PermissionDenied,
            OP,
            "{key}: no cgroup can be delegated to {} on this host",
            user()
        )
    };
    let index = |v: Version, ctl: Option<&str>| {
        p.dirs
            .iter()
            .position(|d| d.version == v && ctl.is_none_or(|c| d.controllers.iter().any(|x| x == c)))
    };
    // v1 files.
    let has_v2_devices = spec.v2.iter().any(Setting::is_device_rule);
    let has_v1_devices = spec.v1.iter().any(Setting::is_device_rule);
    let v1_devices_idx = index(Version::V1, Some("devices"));
    let mut bpf_from_v1 = false;
    for s in &spec.v1 {
        if s.is_device_rule() {
            DeviceRule::parse(&s.key, &s.value)?;
            if !root {
                continue; // the user namespace refuses mknod; see devices.rs
            }
            match v1_devices_idx {
                Some(i) => p.v1_devices.push((i, s.clone())),
                None if layout.v1("devices").is_some() => return Err(no_delegation(&s.key)),
                None if has_v2_devices => {
                    tracing::info!(
                        "{}: no cgroup v1 devices controller here; lxc.cgroup2.devices.* apply",
                        s.key
                    )
                }
                None if layout.unified().is_some() => bpf_from_v1 = true,
                None => {
                    return Err(err!(
                        Unsupported,
                        OP,
                        "{}: this host has neither a cgroup v1 devices controller nor a cgroup2 tree",
                        s.key
                    ))
                }
            }
            continue;
        }
        let ctl = s.controller();
        match index(Version::V1, Some(ctl)) {
            Some(i) => p.v1.push((i, s.clone())),
            None if layout.v1(ctl).is_some() => return Err(no_delegation(&s.key)),
            None => {
                let hint = match layout.unified() {
                    Some(u)
                        if u.base(root, spec.relative)
                            .is_some_and(|b| u.controllers_at(&b).iter().any(|c| c == ctl)) =>
                    {
                        format!("; {ctl} is a cgroup2 controller here: use lxc.cgroup2.{ctl}.*")
                    }
                    _ => String::new(),
                };
                return Err(err!(
                    Unsupported,
                    OP,
                    "{}: this host has no cgroup v1 {ctl} controller{hint}",
                    s.key
                ));
            }
        }
    }
    // v2 files.
    let uidx = index(Version::V2, None);
    let mut bpf_rules: Vec<&Setting> = Vec::new();
    for s in &spec.v2 {
        if s.is_device_rule() {
            DeviceRule::parse(&s.key, &s.value)?;
            if !root {
                continue;
            }
            match uidx {
                Some(_) => bpf_rules.push(s),
                None if layout.unified().is_some() => return Err(no_delegation(&s.key)),
                None if has_v1_devices && v1_devices_idx.is_some() => {
                    tracing::info!("{}: no cgroup2 tree here; lxc.cgroup.devices.* apply", s.key)
                }
                None => {
                    return Err(err!(
                        Unsupported,
                        OP,
                        "{}: this host has no cgroup2 tree for a device program",
                        s.key
                    ))
                }
            }
            continue;
        }
        let ctl = s.controller();
        let Some(i) = uidx else {
            if layout.unified().is_some() {
                return Err(no_delegation(&s.key));
            }
            return Err(err!(Unsupported, OP, "{}: this host has no cgroup2 tree", s.key));
        };
        if ctl != "cgroup" {
            let have = layout
                .unified()
                .map(|u| u.controllers_at(&p.dirs[i].base))
                .unwrap_or_default();
            if !have.iter().any(|c| c == ctl) {
                let list = if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(" ")
                };
                let hint = if layout.v1(ctl).is_some() {
                    format!("; {ctl} is a cgroup v1 controller here: use lxc.cgroup.{ctl}.*")
                } else {
                    String::new()
                };
                return Err(err!(
                    Unsupported,
                    OP,
                    "{}: the cgroup2 tree has no {ctl} controller on this host (it has: {list}){hint}",
                    s.key
                ));
            }
        }
        p.v2.push(s.clone());
    }
    if !bpf_rules.is_empty() {
        let list = DeviceList::from_settings(bpf_rules)?;
        // On a hybrid host the v1 devices controller already enforces the
        // same list (common.conf gives both): LXC loads no program then, and
        // neither does strata; a different cgroup2 list is still applied.
        let v1_same =
            !p.v1_devices.is_empty() && DeviceList::from_settings(p.v1_devices.iter().map(|(_, s)| s))? == list;
        if !v1_same {
            p.bpf = Some(list);
        }
    } else if bpf_from_v1 && uidx.is_some() {
        p.bpf = Some(DeviceList::from_settings(spec.v1.iter())?);
    }
    if p.dirs.is_empty() && !refused.is_empty() {
        tracing::info!(
            "no cgroup can be delegated to {}: the container runs in the caller's cgroups",
            user()
        );
    }
    if !p.dirs.is_empty() && p.dirs.iter().all(|d| d.make.is_empty()) {
        return Err(err!(
            AlreadyExists,
            OP,
            "{}: the container's cgroup exists already",
            p.name
        ));
    }
    Ok(p)
}

/// The CPUs of a cpuset list minus `drop` (LXC leaves isolated and offline CPUs out).
fn cpus_minus(list: &str, drop: &[String]) -> String {
    fn expand(s: &str) -> Vec<u32> {
        let mut v = Vec::new();
        for part in s.trim().split(',').filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                        v.extend(a..=b);
                    }
                }
                None => v.extend(part.parse::<u32>()),
            }
        }
        v
    }
    let gone: Vec<u32> = drop.iter().flat_map(|d| expand(d)).collect();
    let keep: Vec<String> = expand(list)
        .into_iter()
        .filter(|c| !gone.contains(c))
        .map(|c| c.to_string())
        .collect();
    if keep.is_empty() {
        list.trim().to_string()
    } else {
        keep.join(",")
    }
}

/// A new v1 cpuset cgroup starts with no CPUs and no memory nodes: copy
/// the parent's (LXC's cpuset1_initialize), and turn on clone_children so
/// that cgroups made inside inherit them.
fn init_cpuset(dir: &Path) -> Result<()> {
    const OP: &str = "initialise cpuset";
    let parent = dir.parent().unwrap_or(dir);
    let empty = |f: &str| read_file(dir, f).is_none_or(|s| s.trim().is_empty());
    if empty("cpuset.cpus") {
        let cpus = read_file(parent, "cpuset.cpus").unwrap_or_default();
        let drop: Vec<String> = ["/sys/devices/system/cpu/isolated", "/sys/devices/system/cpu/offline"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter(|s| s.starts_with(|c: char| c.is_ascii_digit()))
            .collect();
        write_file(dir, "cpuset.cpus", &cpus_minus(&cpus, &drop))
            .map_err(|e| io_err(OP, &dir.join("cpuset.cpus"), e))?;
    }
    if empty("cpuset.mems") {
        let mems = read_file(parent, "cpuset.mems").unwrap_or_default();
        write_file(dir, "cpuset.mems", mems.trim()).map_err(|e| io_err(OP, &dir.join("cpuset.mems"), e))?;
    }
    write_file(dir, "cgroup.clone_children", "1").map_err(|e| io_err(OP, &dir.join("cgroup.clone_children"), e))
}

/// Write one setting; a missing file is an error naming the key.
fn set(dir: &Path, s: &Setting) -> Result<()> {
    let f = dir.join(&s.file);
    if !f.exists() {
        return Err(err!(
            NotFound,
            "",
            "{}: the {} controller has no file {} (in {})",
            s.key,
            s.controller(),
            s.file,
            dir.display()
        ));
    }
    write_file(dir, &s.file, &s.value).map_err(|e| {
        Error::new(
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                ErrorKind::PermissionDenied
            } else {
                ErrorKind::InvalidConfig
            },
            "",
            format!("{} = {}: the kernel refused it: {e}", s.key, s.value),
        )
    })
}

/// v1 device rules, in config order, as LXC writes them. The kernel
/// refusing an allow rule (a parent cgroup denies that device) leaves the
/// device denied: warned, not fatal, as in LXC. A refused deny rule is
/// fatal, except in a user namespace below the host's (strata nested in a
/// container), where the kernel refuses every rule and the outer
/// container's device cgroup already holds (LXC warns there too).
fn set_devices(dir: &Path, rules: &[(usize, Setting)]) -> Result<()> {
    use std::io::Write;
    // Each rule is one write; the two files are opened once.
    let mut files: [Option<std::fs::File>; 2] = [None, None];
    for (_, s) in rules {
        let r = DeviceRule::parse(&s.key, &s.value)?;
        let file = if r.allow { "devices.allow" } else { "devices.deny" };
        let line = r.v1_line();
        let slot = &mut files[r.allow as usize];
        let written = match slot {
            Some(f) => f.write_all(line.as_bytes()),
            None => std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join(file))
                .and_then(|mut f| f.write_all(line.as_bytes()).map(|_| *slot = Some(f))),
        };
        if let Err(e) = written {
            let refused = matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES));
            if refused && (r.allow || !super::in_initial_userns()) {
                tracing::warn!("{} = {}: refused by the kernel ({e})", s.key, s.value);
                continue;
            }
            return Err(err!(Io, "", "{} = {}: the kernel refused it: {e}", s.key, s.value));
        }
    }
    Ok(())
}

/// Make the planned cgroups and write the limits. On failure, what this
/// call made is removed again.
pub fn create(plan: &Plan) -> Result<()> {
    create_part(plan, Part::All)
}

/// [`create`] for the cgroups of `part` only.
pub fn create_part(plan: &Plan, part: Part) -> Result<()> {
    let _s = tracing::info_span!("cgroup_create", name = %plan.name, ?part).entered();
    let mut made = Vec::new();
    let res = create_inner(plan, part, &mut made);
    if res.is_err() && !made.is_empty() {
        if let Err(e) = remove(&made) {
            tracing::warn!("undo cgroups: {e}");
        }
    }
    res
}

fn create_inner(plan: &Plan, part: Part, made: &mut Vec<PathBuf>) -> Result<()> {
    const OP: &str = "create cgroup";
    let ours = |i: usize| Plan::in_part(&plan.dirs[i], part);
    for (i, d) in plan.dirs.iter().enumerate() {
        if !ours(i) {
            continue;
        }
        let cpuset = d.version == Version::V1 && d.controllers.iter().any(|c| c == "cpuset");
        for dir in &d.make {
            match std::fs::create_dir(dir) {
                Ok(()) => made.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && *dir != d.limit && *dir != d.leaf => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(err!(
                        AlreadyExists,
                        OP,
                        "{}: made by someone else since it was planned",
                        dir.display()
                    ))
                }
                Err(e) => return Err(io_err(OP, dir, e)),
            }
            if cpuset {
                init_cpuset(dir)?;
            }
            // With an inner cgroup, device rules go on the limit cgroup
            // before it has a child (a child forbids `a` rules), as LXC does.
            if plan.inner && *dir == d.limit && plan.v1_devices.iter().any(|(x, _)| *x == i) {
                set_devices(&d.limit, &plan.v1_devices)?;
            }
        }
        tracing::debug!(dir = %d.leaf.display(), "cgroup made");
    }
    // v1 files in config order, memory.memsw.limit_in_bytes after the others.
    let (memsw, rest): (Vec<_>, Vec<_>) = plan
        .v1
        .iter()
        .partition(|(_, s)| s.file == "memory.memsw.limit_in_bytes");
    for (i, s) in rest.into_iter().chain(memsw).filter(|(i, _)| ours(*i)) {
        let d = &plan.dirs[*i];
        if s.controller() == "cpuset" && d.leaf != d.limit {
            set(&d.leaf, s)?;
        }
        set(&d.limit, s)?;
    }
    if !plan.inner {
        if let Some((i, _)) = plan.v1_devices.first().filter(|(i, _)| ours(*i)) {
            set_devices(&plan.dirs[*i].limit, &plan.v1_devices)?;
        }
    }
    if let Some(u) = plan.unified().filter(|u| Plan::in_part(u, part)) {
        match delegate(u) {
            Ok(()) => {}
            // Only the v2 files need the controllers: without any, a refusal
            // (the caller's own cgroup holds processes) costs the container
            // nothing but nested controllers.
            Err(e) if plan.v2.is_empty() => tracing::warn!("{e}"),
            Err(e) => return Err(e),
        }
        for s in &plan.v2 {
            set(&u.limit, s)?;
        }
        if let Some(l) = &plan.bpf {
            super::attach_device_program(l, &u.limit)?;
        }
    }
    Ok(())
}

/// Enable every controller the base offers along the way down to the
/// container's cgroup (LXC's payload_delegate_controllers): from the base
/// to the leaf's parent, so that the container's cgroup has the v2 files.
fn delegate(u: &PlannedDir) -> Result<()> {
    let ctls = super::read_file(&u.base, "cgroup.controllers").unwrap_or_default();
    let want: Vec<String> = ctls.split_whitespace().map(|c| format!("+{c}")).collect();
    if want.is_empty() {
        return Ok(());
    }
    let want = want.join(" ");
    let mut cur = u.base.clone();
    let rel = u.leaf.strip_prefix(&u.base).unwrap_or(Path::new(""));
    let comps: Vec<_> = rel.components().collect();
    for c in comps {
        write_file(&cur, "cgroup.subtree_control", &want).map_err(|e| {
            err!(
                Io,
                "delegate cgroup2 controllers",
                "{}: enable {want}: {e}{}",
                cur.display(),
                if e.raw_os_error() == Some(libc::EBUSY) {
                    " (the cgroup holds processes: cgroup2 allows controllers only below cgroups without them)"
                } else {
                    ""
                }
            )
        })?;
        cur.push(c);
    }
    Ok(())
}

/// Give the container's root group the container's cgroups, as LXC's
/// cgfsng_chown does for a container with `lxc.idmap`: each cgroup dir
/// becomes group `gid` (the host gid of the container's root) with mode
/// 0775, and the files that move processes and delegate (v1 `tasks` and
/// `cgroup.procs`; v2 those listed in /sys/kernel/cgroup/delegate) 0664,
/// so that the container's init can make and fill cgroups of its own.
pub fn chown(plan: &Plan, gid: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    const OP: &str = "hand cgroup to the container";
    let gid = Some(nix::unistd::Gid::from_raw(gid));
    let give = |p: &Path, mode: u32| -> Result<()> {
        match nix::unistd::chown(p, None, gid) {
            Ok(()) => {}
            Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Error::errno(OP, p, e)),
        }
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|e| io_err(OP, p, e))
    };
    let delegate = std::fs::read_to_string("/sys/kernel/cgroup/delegate")
        .unwrap_or_else(|_| "cgroup.procs\ncgroup.threads\ncgroup.subtree_control\nmemory.oom.group\n".into());
    for d in &plan.dirs {
        give(&d.leaf, 0o775)?;
        let files: Vec<&str> = match d.version {
            Version::V1 => vec!["tasks", "cgroup.procs"],
            Version::V2 => delegate.split_whitespace().collect(),
        };
        for f in files {
            give(&d.leaf.join(f), 0o664)?;
        }
    }
    Ok(())
}

/// Move `pid` into a running container's cgroups from the recorded list
/// alone (`lxc-attach`): the container cgroups are the list's leaves. When
/// the container has made its cgroup2 cgroup an inner node (its init
/// enabled controllers below it), the pid goes into a `.lxc` cgroup made
/// under it, as LXC's cgroup_attach_leaf does.
pub fn enter(paths: &[PathBuf], pid: i32) -> Result<()> {
    let op = format!("move {pid} into cgroup");
    let pid_s = pid.to_string();
    for d in paths
        .iter()
        .filter(|p| !paths.iter().any(|q| q != *p && q.starts_with(p)))
    {
        match write_file(d, "cgroup.procs", &pid_s) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let leaf = d.join(".lxc");
                match std::fs::create_dir(&leaf) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err(&op, &leaf, e)),
                }
                write_file(&leaf, "cgroup.procs", &pid_s).map_err(|e| io_err(&op, &leaf, e))?;
            }
            Err(e) => return Err(io_err(&op, d, e)),
        }
    }
    Ok(())
}

/// Move `pid` into the container's cgroup in every hierarchy.
pub fn attach(plan: &Plan, pid: i32) -> Result<()> {
    attach_in(plan, pid, None)
}

/// Move `pid` into the container's cgroup in the unified hierarchy only.
pub fn attach_unified(plan: &Plan, pid: i32) -> Result<()> {
    attach_in(plan, pid, Some(Version::V2))
}

fn attach_in(plan: &Plan, pid: i32, version: Option<Version>) -> Result<()> {
    for d in plan.dirs.iter().filter(|d| version.is_none_or(|v| d.version == v)) {
        write_file(&d.leaf, "cgroup.procs", &pid.to_string())
            .map_err(|e| io_err(&format!("move {pid} into cgroup"), &d.leaf, e))?;
    }
    Ok(())
}

/// Move the calling process, which must have a single thread (init
/// before it execs), into the container's cgroup in every v1 hierarchy:
/// "0" written to each `tasks` file moves the writing thread. A thread
/// moving itself needs no global lock, where a write to `cgroup.procs`
/// takes a per-cpu rwsem whose first writer after a quiet spell waits for
/// an RCU grace period (milliseconds, tens of them on a busy host, twice
/// per run for LXC). The unified hierarchy's cgroup is entered at clone
/// ([`Plan::unified`], CLONE_INTO_CGROUP), without that lock either.
/// Only the cgroups of `part` (see [`Part`]).
pub fn attach_self_v1(plan: &Plan, part: Part) -> Result<()> {
    for d in plan
        .dirs
        .iter()
        .filter(|d| d.version == Version::V1 && Plan::in_part(d, part))
    {
        write_file(&d.leaf, "tasks", "0").map_err(|e| io_err("move init into cgroup", &d.leaf, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::layout::Hierarchy;
    use super::*;
    use strata_core::config::Config;

    fn fake(root: &Path, v: Version, name: &str, ctl: &[&str]) -> Hierarchy {
        let mount = root.join(name);
        std::fs::create_dir_all(mount.join("own/sub")).unwrap();
        Hierarchy {
            version: v,
            controllers: ctl.iter().map(|s| s.to_string()).collect(),
            mount,
            mount_root: "/".into(),
            own: "/own/sub".into(),
            init: Some("/".into()),
        }
    }

    fn hybrid(root: &Path) -> Layout {
        Layout {
            hierarchies: vec![
                fake(root, Version::V1, "memory", &["memory"]),
                fake(root, Version::V1, "devices", &["devices"]),
                fake(root, Version::V1, "systemd", &["name=systemd"]),
                fake(root, Version::V2, "unified", &[]),
            ],
        }
    }

    fn spec(t: &str) -> Spec {
        Spec::from_config(&Config::parse(t).unwrap()).unwrap()
    }

    #[test]
    fn cgroup_plan_names_and_suffix() {
        let t = tempfile::tempdir().unwrap();
        let l = hybrid(t.path());
        let p = plan_as(&l, &spec(""), "c1", true).unwrap();
        assert_eq!(p.name, "lxc.payload.c1");
        assert_eq!(p.dirs.len(), 4);
        assert_eq!(p.dirs[0].leaf, t.path().join("memory/lxc.payload.c1"));
        assert_eq!(p.paths().len(), 4);
        // Taken in one hierarchy: -1.
        std::fs::create_dir(t.path().join("systemd/lxc.payload.c1")).unwrap();
        let p = plan_as(&l, &spec(""), "c1", true).unwrap();
        assert_eq!(p.name, "lxc.payload.c1-1");
        // relative: under the caller's cgroup.
        let p = plan_as(&l, &spec("lxc.cgroup.relative = 1\n"), "c1", true).unwrap();
        assert_eq!(p.dirs[3].leaf, t.path().join("unified/own/sub/lxc.payload.c1"));
        // Non-root: always the caller's own.
        let p = plan_as(&l, &spec(""), "c1", false).unwrap();
        assert_eq!(p.dirs[0].base, t.path().join("memory/own/sub"));
        // lxc.cgroup.dir: parents are made too, listed first.
        let p = plan_as(&l, &spec("lxc.cgroup.dir = a/b\n"), "c1", true).unwrap();
        assert_eq!(p.name, "a/b/lxc.payload.c1");
        assert_eq!(
            p.dirs[0].make,
            vec![
                t.path().join("memory/a"),
                t.path().join("memory/a/b"),
                t.path().join("memory/a/b/lxc.payload.c1")
            ]
        );
        // Pattern from lxc.conf.
        let mut s = spec("");
        s.pattern = Some("lxc/%n".into());
        assert_eq!(plan_as(&l, &s, "c1", true).unwrap().name, "lxc/c1/payload");
        // Explicit container dir with inner: no suffix; taken is an error.
        let s =
            spec("lxc.cgroup.dir.container = ct\nlxc.cgroup.dir.monitor = mon\nlxc.cgroup.dir.container.inner = ns\n");
        let p = plan_as(&l, &s, "c1", true).unwrap();
        assert_eq!(p.dirs[1].limit, t.path().join("devices/ct"));
        assert_eq!(p.dirs[1].leaf, t.path().join("devices/ct/ns"));
        // The monitor's cgroup.
        assert_eq!(plan_dirs(&l, &s, "c1", true, Role::Monitor).unwrap().0.name, "mon");
        let m = plan_dirs(&l, &spec(""), "c1", true, Role::Monitor).unwrap().0;
        assert_eq!(m.name, "lxc.monitor.c1");
        assert_eq!(m.paths().len(), 4);
        std::fs::create_dir(t.path().join("memory/ct")).unwrap();
        let e = plan_as(&l, &s, "c1", true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    }

    #[test]
    fn cgroup_plan_checks_keys_against_host() {
        let t = tempfile::tempdir().unwrap();
        let l = hybrid(t.path());
        std::fs::write(t.path().join("unified/cgroup.controllers"), "").unwrap();
        // A v2 key whose controller is v1 here.
        let e = plan_as(&l, &spec("lxc.cgroup2.memory.max = 64M\n"), "c", true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lxc.cgroup2.memory.max:") && e.contains("has: none") && e.contains("use lxc.cgroup.memory.*"),
            "{e}"
        );
        // A v1 controller the host lacks.
        let e = plan_as(&l, &spec("lxc.cgroup.pids.max = 5\n"), "c", true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lxc.cgroup.pids.max: this host has no cgroup v1 pids controller"),
            "{e}"
        );
        // Hybrid with both device sets: v1 rules and a device program.
        let p = plan_as(
            &l,
            &spec("lxc.cgroup.devices.deny = a\nlxc.cgroup2.devices.deny = a\nlxc.cgroup2.devices.allow = c 1:3 rwm\n"),
            "c",
            true,
        )
        .unwrap();
        assert_eq!(p.v1_devices.len(), 1);
        assert!(p.has_device_program());
        // Bad device rule: the key is named.
        let e = plan_as(&l, &spec("lxc.cgroup.devices.allow = c 1:x r\n"), "c", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lxc.cgroup.devices.allow = c 1:x r"), "{e}");
        // cgroup2 core files need no controller.
        assert!(plan_as(&l, &spec("lxc.cgroup2.cgroup.max.depth = 3\n"), "c", true).is_ok());
    }

    #[test]
    fn cgroup_plan_pure_v2() {
        let t = tempfile::tempdir().unwrap();
        let l = Layout {
            hierarchies: vec![fake(t.path(), Version::V2, "cg2", &[])],
        };
        std::fs::write(t.path().join("cg2/cgroup.controllers"), "cpu memory pids").unwrap();
        let s = spec(
            "lxc.cgroup.devices.deny = a\nlxc.cgroup.devices.allow = c 1:3 rwm\nlxc.cgroup2.memory.max = 64M\nlxc.cgroup2.pids.max = 20\n",
        );
        let p = plan_as(&l, &s, "c", true).unwrap();
        assert_eq!(p.v2.len(), 2);
        // v1 device rules become the program when no cgroup2 rule is given.
        let dl = p.bpf.as_ref().unwrap();
        assert!(dl.allows('c', 1, 3, 'r') && !dl.allows('c', 1, 11, 'r'));
        let e = plan_as(&l, &spec("lxc.cgroup2.io.max = 8:0 rbps=1\n"), "c", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no io controller") && e.contains("cpu memory pids"), "{e}");
        let e = plan_as(&l, &spec("lxc.cgroup.memory.limit_in_bytes = 1\n"), "c", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory is a cgroup2 controller here"), "{e}");
    }

    #[test]
    fn cgroup_plan_undelegated_user() {
        if is_root() {
            // Root can write anywhere: fake the refusal with a read-only mount? Not worth it; the
            // non-root branch is exercised when the suite runs as a user.
            let t = tempfile::tempdir().unwrap();
            let l = Layout {
                hierarchies: vec![fake(t.path(), Version::V1, "memory", &["memory"])],
            };
            let p = plan_as(&l, &spec("lxc.cgroup.devices.deny = a\n"), "c", false).unwrap();
            assert!(p.v1_devices.is_empty(), "no device rules for an unprivileged caller");
            return;
        }
        let l = Layout {
            hierarchies: vec![Hierarchy {
                version: Version::V1,
                controllers: vec!["memory".into()],
                mount: "/proc/sys".into(),
                mount_root: "/".into(),
                own: "/".into(),
                init: None,
            }],
        };
        let p = plan_as(&l, &spec("lxc.cgroup.devices.deny = a\n"), "c", false).unwrap();
        assert!(p.dirs.is_empty());
        let e = plan_as(&l, &spec("lxc.cgroup.memory.limit_in_bytes = 1\n"), "c", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lxc.cgroup.memory.limit_in_bytes: no cgroup can be delegated to"),
            "{e}"
        );
    }

    #[test]
    fn cgroup_cpus_minus() {
        assert_eq!(cpus_minus("0-3\n", &["1\n".into()]), "0,2,3");
        assert_eq!(cpus_minus("0-1", &[]), "0,1");
        assert_eq!(cpus_minus("0", &["0".into()]), "0");
    }
}
