//! `lxc-device -n NAME add|del DEV [NAME]`: lend a host device or network
//! interface to a running container, or take it back, as LXC 5's does.
//!
//! * `DEV` a path (`/dev/...`): a char or block device node of the host.
//!   `add` makes the same node (type, numbers, mode) in the container at
//!   NAME (default: the same path), resolved from the container's root in
//!   its mount namespace one component at a time without following any
//!   symlink (missing directories are made 0755), and allows `TYPE MAJ:MIN
//!   rwm` in its devices cgroup. `del` denies it again and removes the node,
//!   only if it is that device.
//! * `DEV` a name: a network interface. `add` moves it from the host into
//!   the container's network namespace, renamed NAME; `del` moves it from
//!   the container back to the caller's namespace, renamed NAME.
//!
//! On cgroup2 the device rules of a container are an eBPF program of its
//! own: it is replaced by one with the rule added (read back from the
//! kernel, so successive adds add up), as LXC's monitor does. An
//! unprivileged container's /dev is mounted
//! in its user namespace, where the kernel opens no device node: a node is
//! refused there too; its interfaces are lent as to any container.

use crate::common::{self, Common};
use anyhow::{anyhow, bail, Context};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use strata_core::ContainerRef;
use strata_runtime::state_view;

#[derive(clap::Parser, Debug)]
#[command(
    about = "Add a host device or network interface to a running container, or take it back",
    version
)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    name: String,
    #[command(flatten)]
    common: Common,
    /// add or del
    #[arg(value_name = "add|del")]
    cmd: Option<String>,
    /// The host device (a /dev path) or network interface
    #[arg(value_name = "DEV")]
    dev: Option<String>,
    /// Its path or interface name in the container (default: the same)
    #[arg(value_name = "NAME")]
    dst: Option<String>,
}

/// A host device node.
#[derive(Clone, Copy)]
struct Node {
    kind: SFlag,
    mode: u32,
    rdev: u64,
}

impl Node {
    fn of(path: &str) -> anyhow::Result<Node> {
        let md = std::fs::metadata(path).with_context(|| path.to_string())?;
        let ft = md.file_type();
        let kind = if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else {
            bail!("{path} is not a device node");
        };
        Ok(Node {
            kind,
            mode: md.mode() & 0o7777,
            rdev: md.rdev(),
        })
    }

    /// The devices cgroup rule for it: `c 1:3 rwm`.
    fn rule(&self) -> String {
        let t = if self.kind == SFlag::S_IFCHR { 'c' } else { 'b' };
        format!("{t} {}:{} rwm", libc::major(self.rdev), libc::minor(self.rdev))
    }
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    if !nix::unistd::geteuid().is_root() {
        bail!("lxc-device must be run as root");
    }
    let lxcpath = common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    common::check_exists_or_running(&lxcpath, &a.name)?;
    let r = ContainerRef::new(&lxcpath, &a.name);
    let (_, rec) = state_view::state(&r);
    let Some(rec) = rec else {
        bail!("container {} is not running", a.name);
    };
    let (Some(cmd), Some(dev)) = (a.cmd.as_deref(), a.dev.as_deref()) else {
        bail!("no command given: lxc-device -n NAME add|del DEV [NAME]");
    };
    // LXC takes any abbreviation of its two commands.
    let add = match cmd {
        c if !c.is_empty() && "add".starts_with(c) => true,
        c if !c.is_empty() && "del".starts_with(c) => false,
        c => bail!("{c:?}: use add or del"),
    };
    let dst = a.dst.as_deref().unwrap_or(dev);
    let pid = rec.init_pid;
    let _span = tracing::info_span!("lxc-device", name = %a.name, add, dev, dst).entered();
    let verb = if add { "add" } else { "del" };
    let res = if dev.starts_with('/') {
        node(add, dev, dst, pid, &rec.cgroups)
    } else {
        interface(add, dev, dst, pid)
    };
    res.map_err(|e| {
        let prep = if add { "to" } else { "from" };
        anyhow!("failed to {verb} {dev} {prep} {}: {e:#}", a.name)
    })?;
    Ok(0)
}

/// Whether `pid` runs in a user namespace of its own.
fn in_userns(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
        .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false)
}

/// Allow (or deny) `rule` (`c 1:5 rwm`) for the container: in its v1
/// devices cgroup, and in the cgroup2 device program of each of its cgroup2
/// directories that has one (replaced by one with the rule added, as the
/// config's rules are added). A failure on cgroup2 undoes the v1 change.
fn apply_rule(cgroups: &[PathBuf], rule: &str, allow: bool) -> anyhow::Result<()> {
    let (file, undo) = if allow {
        ("devices.allow", "devices.deny")
    } else {
        ("devices.deny", "devices.allow")
    };
    let v1 = state_view::cgroup_file(cgroups, file).and_then(|f| f.parent().map(Path::to_path_buf));
    write_rule(v1.as_deref(), file, rule)?;
    let r = strata_runtime::cgroup::DeviceRule::parse(file, rule)?;
    for d in cgroups.iter().filter(|d| state_view::is_unified(d)) {
        if let Err(e) = strata_runtime::cgroup::extend_device_program(d, &r) {
            let _ = write_rule(v1.as_deref(), undo, rule);
            return Err(e.into());
        }
    }
    Ok(())
}

fn write_rule(dir: Option<&Path>, file: &str, rule: &str) -> anyhow::Result<()> {
    if let Some(d) = dir {
        use std::io::Write;
        let p = d.join(file);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .with_context(|| format!("{}", p.display()))?;
        f.write_all(rule.as_bytes())
            .with_context(|| format!("write {rule:?} to {}", p.display()))?;
        tracing::info!("{rule} -> {}", p.display());
    }
    Ok(())
}

/// The directory holding `dst` in the container (made, 0755, when `create`)
/// and the last component; no symlink followed, no `..`.
fn container_parent(pid: i32, dst: &str, create: bool) -> anyhow::Result<(OwnedFd, String)> {
    let p = Path::new(dst);
    if !p.is_absolute() {
        bail!("{dst}: the path in the container must be absolute");
    }
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(|| anyhow!("{dst}: not UTF-8"))?.to_string()),
            _ => bail!("{dst}: `.` and `..` are not allowed"),
        }
    }
    let Some(last) = parts.pop() else {
        bail!("{dst}: names no file");
    };
    let root = format!("/proc/{pid}/root");
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    // The root itself is a magic link to follow; nothing below it is.
    let fd = nix::fcntl::open(root.as_str(), flags - OFlag::O_NOFOLLOW, Mode::empty()).with_context(|| root.clone())?;
    // SAFETY: open just returned this descriptor, owned by nobody else.
    let mut cur: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    let mut walked = String::new();
    for comp in &parts {
        walked.push('/');
        walked.push_str(comp);
        match fstatat(
            Some(cur.as_raw_fd()),
            comp.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
                bail!("{walked} is a symlink in the container: not following it")
            }
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR => {
                bail!("{walked} is not a directory in the container")
            }
            Ok(_) => {}
            Err(nix::errno::Errno::ENOENT) if create => {
                mkdirat(Some(cur.as_raw_fd()), comp.as_str(), Mode::from_bits_truncate(0o755))
                    .with_context(|| format!("mkdir {walked} in the container"))?;
            }
            Err(e) => return Err(anyhow!("{walked} in the container: {e}")),
        }
        let fd = openat(Some(cur.as_raw_fd()), comp.as_str(), flags, Mode::empty())
            .with_context(|| format!("{walked} in the container"))?;
        // SAFETY: as above.
        cur = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    }
    Ok((cur, last))
}

fn node(add: bool, dev: &str, dst: &str, pid: i32, cgroups: &[PathBuf]) -> anyhow::Result<()> {
    let n = Node::of(dev)?;
    if in_userns(pid) {
        bail!(
            "the container is unprivileged: the kernel opens no device node in its /dev; \
             bind-mount the device with lxc.mount.entry instead"
        );
    }
    let rule = n.rule();
    let (dir, name) = container_parent(pid, dst, add)?;
    let at = |f: &str| format!("{dst} in the container{f}");
    if add {
        let mode = Mode::from_bits_truncate(n.mode);
        // The host node's mode exactly: no umask (a chmod after would
        // follow whatever the container put there meanwhile).
        let old = nix::sys::stat::umask(Mode::empty());
        let made = mknodat(Some(dir.as_raw_fd()), name.as_str(), n.kind, mode, n.rdev);
        nix::sys::stat::umask(old);
        made.map_err(|e| match e {
            nix::errno::Errno::EEXIST => anyhow!("{}", at(" exists already")),
            e => anyhow!("mknod {}: {e}", at("")),
        })?;
        if let Err(e) = apply_rule(cgroups, &rule, true) {
            let _ = unlinkat(Some(dir.as_raw_fd()), name.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
    } else {
        let st = fstatat(
            Some(dir.as_raw_fd()),
            name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| anyhow!("{}: {e}", at("")))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != n.kind || st.st_rdev != n.rdev {
            bail!("{} is not the device {dev}: not removing it", at(""));
        }
        apply_rule(cgroups, &rule, false)?;
        unlinkat(Some(dir.as_raw_fd()), name.as_str(), UnlinkatFlags::NoRemoveDir)
            .map_err(|e| anyhow!("remove {}: {e}", at("")))?;
    }
    Ok(())
}

/// `ip ARGS` in the caller's network namespace, or in the one `netns` names.
fn ip(args: &[&str], netns: Option<&OwnedFd>) -> anyhow::Result<()> {
    let mut c = Command::new("ip");
    c.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    if let Some(ns) = netns {
        let fd = ns.as_raw_fd();
        // SAFETY: only setns, async-signal-safe, between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let o = c.output().map_err(|e| anyhow!("ip: {e}"))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        bail!("ip {}: {}", args.join(" "), err.trim());
    }
    Ok(())
}

fn has_link(name: &str, netns: Option<&OwnedFd>) -> bool {
    ip(&["-o", "link", "show", "dev", name], netns).is_ok()
}

fn interface(add: bool, dev: &str, dst: &str, pid: i32) -> anyhow::Result<()> {
    let p = format!("/proc/{pid}/ns/net");
    let ns: OwnedFd = std::fs::File::open(&p).with_context(|| p.clone())?.into();
    let theirs = std::fs::metadata(&p)?.ino();
    let ours = std::fs::metadata("/proc/self/ns/net")?.ino();
    if theirs == ours {
        bail!("the container shares this network namespace");
    }
    // Checked first: the kernel moves an interface before it renames it,
    // so a name taken on the other side would leave it moved but unnamed.
    if add {
        if !has_link(dev, None) {
            bail!("{dev} is neither a network interface here nor a device path");
        }
        if has_link(dst, Some(&ns)) {
            bail!("the container has a network interface {dst} already");
        }
        let r = ip(
            &["link", "set", "dev", dev, "netns", &pid.to_string(), "name", dst],
            None,
        );
        if r.is_err() && !has_link(dev, None) && has_link(dev, Some(&ns)) {
            let me = std::process::id().to_string();
            let _ = ip(&["link", "set", "dev", dev, "netns", &me], Some(&ns));
        }
        r
    } else {
        if !has_link(dev, Some(&ns)) {
            bail!("the container has no network interface {dev}");
        }
        if has_link(dst, None) {
            bail!("a network interface {dst} exists here already");
        }
        let me = std::process::id().to_string();
        let r = ip(&["link", "set", "dev", dev, "netns", &me, "name", dst], Some(&ns));
        if r.is_err() && !has_link(dev, Some(&ns)) && has_link(dev, None) {
            let _ = ip(&["link", "set", "dev", dev, "netns", &pid.to_string()], None);
        }
        r
    }
}
