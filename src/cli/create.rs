//! `lxc-create` / `strata create`.

use crate::common::Common;
use anyhow::anyhow;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use strata_core::engine::{CreateRequest, Engine, RootfsSource};
use strata_core::{BackendOpts, Target};

/// LXC's template directory.
pub const TEMPLATE_DIR: &str = "/usr/share/lxc/templates";

#[derive(clap::Parser, Debug, Clone)]
#[command(about = "Create a container", version)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Template: a name found as lxc-NAME in LXC's template directory, a path, or `none`
    #[arg(short = 't', long = "template")]
    pub template: Option<String>,
    /// Initial configuration file
    #[arg(short = 'f', long = "config")]
    pub config: Option<PathBuf>,
    /// Backing store: dir, overlay, btrfs, lvm, zfs, loop or best
    #[arg(short = 'B', long = "bdev")]
    pub bdev: Option<String>,
    /// Place the rootfs directory here
    #[arg(long = "dir")]
    pub dir: Option<PathBuf>,
    #[arg(long = "lvname")]
    pub lvname: Option<String>,
    #[arg(long = "vgname")]
    pub vgname: Option<String>,
    #[arg(long = "thinpool")]
    pub thinpool: Option<String>,
    /// Filesystem type for lvm or loop (ext4, xfs, btrfs)
    #[arg(long = "fstype")]
    pub fstype: Option<String>,
    /// Filesystem size: a number with unit B, K, M, G or T (default unit M)
    #[arg(long = "fssize")]
    pub fssize: Option<String>,
    #[arg(long = "zfsroot")]
    pub zfsroot: Option<String>,
    /// Ceph RBD image name (-B rbd; default: the container name)
    #[arg(long = "rbdname")]
    pub rbdname: Option<String>,
    /// Ceph RBD pool (-B rbd; default: lxc.bdev.rbd.rbdpool, else lxc)
    #[arg(long = "rbdpool")]
    pub rbdpool: Option<String>,
    /// Ceph user the rbd commands run as (-B rbd; default: lxc.bdev.rbd.rbduser, else Ceph's)
    #[arg(long = "rbduser")]
    pub rbduser: Option<String>,
    /// Fill the rootfs from an existing directory or a tarball (strata)
    #[arg(long = "rootfs-from", value_name = "DIR|TARBALL")]
    pub rootfs_from: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
    /// Arguments for the template (after `--`)
    #[arg(last = true)]
    pub template_args: Vec<String>,
}

pub fn main(tool: &str, args: Vec<OsString>) -> i32 {
    let template_help = template_before_help(&args);
    match crate::common::parse::<Args>(tool, args) {
        Ok(a) => run_args(tool, a),
        // As LXC: `-t NAME -h` shows lxc-create's help, then the template's own (`NAME -h`).
        Err(0) => match template_help {
            Some(t) => crate::common::finish(tool, None, show_template_help(&t)),
            None => 0,
        },
        Err(code) => code,
    }
}

/// The template named before `-h`/`--help` (LXC knows it only if it came first).
fn template_before_help(args: &[OsString]) -> Option<String> {
    let mut template = None;
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => return None,
            "-h" | "--help" => return template,
            "-t" | "--template" => template = it.next(),
            _ => {
                if let Some(v) = a.strip_prefix("--template=") {
                    template = Some(v.to_string());
                } else if let Some(v) = a.strip_prefix("-t").filter(|v| !v.is_empty() && !a.starts_with("--")) {
                    template = Some(v.to_string());
                }
            }
        }
    }
    None
}

/// Run the template with `-h`, on our stdout and stderr.
fn show_template_help(t: &str) -> anyhow::Result<i32> {
    let Some(path) = resolve_template(t)? else {
        return Ok(0);
    };
    println!();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let status = std::process::Command::new(&path)
        .arg("-h")
        .status()
        .map_err(|e| anyhow!("run template {}: {e}", path.display()))?;
    // LXC shows what the template printed whatever it returned.
    let _ = status;
    Ok(0)
}

pub fn run_args(tool: &str, a: Args) -> i32 {
    let name = a.name.clone();
    crate::common::finish(tool, Some(&name), run(&a))
}

/// Where `-t` points: a path as given, `none`, or `$TEMPLATE_DIR/lxc-NAME`.
pub fn resolve_template(t: &str) -> anyhow::Result<Option<PathBuf>> {
    if t == "none" {
        return Ok(None);
    }
    if t.is_empty() {
        return Err(anyhow!("empty template name"));
    }
    let path = if t.contains('/') {
        std::path::absolute(t)?
    } else {
        let dir = std::env::var_os("STRATA_TEMPLATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(TEMPLATE_DIR));
        dir.join(format!("lxc-{t}"))
    };
    let md =
        std::fs::metadata(&path).map_err(|_| anyhow!("template {t:?} not found (looked for {})", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    if !md.is_file() || md.permissions().mode() & 0o111 == 0 {
        return Err(anyhow!("template {} is not an executable file", path.display()));
    }
    Ok(Some(path))
}

fn run(a: &Args) -> anyhow::Result<i32> {
    // Flags only some backend reads (LXC's rbd flags), each refused unless
    // the chosen backend declares it.
    let engine = crate::common::engine();
    let chosen = a.bdev.as_deref().and_then(|b| engine.backends.get(b).ok());
    let mut backend_flags = Vec::new();
    for (flag, value) in [
        ("rbdname", &a.rbdname),
        ("rbdpool", &a.rbdpool),
        ("rbduser", &a.rbduser),
    ] {
        let Some(v) = value else { continue };
        match chosen.and_then(|b| b.caps().create_flags.iter().find(|(f, _)| *f == flag)) {
            Some((_, key)) => backend_flags.push((*key, v.clone())),
            None => {
                let takers = engine.backends.taking_flag(flag);
                let takers: Vec<String> = takers.iter().map(|k| format!("-B {k}")).collect();
                return Err(anyhow!("--{flag} needs {}", takers.join(" or ")));
            }
        }
    }
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    crate::common::check_free(&lxcpath, &a.name)?;
    let mut opts = crate::common::backend_opts(BackendOpts {
        fssize: a.fssize.as_deref().map(crate::common::parse_size).transpose()?,
        fstype: a.fstype.clone(),
        dir: a.dir.as_deref().map(std::path::absolute).transpose()?,
        vgname: a.vgname.clone(),
        thinpool: a.thinpool.clone(),
        lvname: a.lvname.clone(),
        zfsroot: a.zfsroot.clone(),
        defaults: Default::default(),
        copy_of: None,
    })?;
    // A backend's own flags override lxc.conf's defaults, where it reads them.
    for (k, v) in backend_flags {
        opts.defaults.insert(k.to_string(), v);
    }
    let template = match a.template.as_deref() {
        Some(t) => resolve_template(t)?,
        None if a.rootfs_from.is_some() => None,
        None => {
            return Err(anyhow!(
                "a template must be given with -t (use `-t none` for an empty rootfs, or --rootfs-from)"
            ))
        }
    };
    if template.is_none() && !a.template_args.is_empty() {
        return Err(anyhow!("template arguments given without a template"));
    }
    let source = match a.rootfs_from.as_deref() {
        None => RootfsSource::Empty,
        Some(p) => {
            let p = std::path::absolute(p)?;
            let md = std::fs::metadata(&p).map_err(|e| anyhow!("--rootfs-from {}: {e}", p.display()))?;
            if md.is_dir() {
                RootfsSource::Dir(p)
            } else if md.is_file() {
                RootfsSource::Tarball(p)
            } else {
                return Err(anyhow!(
                    "--rootfs-from {}: neither a directory nor a tarball",
                    p.display()
                ));
            }
        }
    };
    // The config that seeds the container (-f, else default.conf): keys
    // LXC 5 refuses are refused here, before anything is made.
    match &a.config {
        Some(f) if !f.exists() => return Err(anyhow!("config file {} not found", f.display())),
        Some(f) => {
            strata_core::config::check_keys(f)?;
        }
        None => {
            let d = strata_core::paths::default_conf();
            if d.exists() {
                strata_core::config::check_keys(&d)?;
            }
        }
    }
    let backend = match a.bdev.as_deref() {
        None => None,
        Some("best") => Some(best_backend(&engine, &lxcpath, &a.name, &opts)?),
        Some(b) => {
            crate::common::check_backend(&engine, b)?;
            Some(b.to_string())
        }
    };
    crate::common::reconcile(&engine, &lxcpath);
    let req = CreateRequest {
        lxcpath: lxcpath.clone(),
        name: a.name.clone(),
        backend,
        opts,
        source,
        config_file: a.config.as_deref().map(std::path::absolute).transpose()?,
        template: template.map(|p| p.display().to_string()),
        template_args: a.template_args.clone(),
    };
    engine.create(&req)?;
    Ok(0)
}

/// `-B best`: as LXC, the first backend in its order (btrfs, zfs, lvm, as
/// they declare it) that can hold the rootfs here, else the default (dir).
fn best_backend(engine: &Engine, lxcpath: &Path, name: &str, opts: &BackendOpts) -> anyhow::Result<String> {
    let dir = lxcpath.join(name);
    for b in engine.backends.best_candidates() {
        let t = Target {
            name,
            lxcpath,
            dir: &dir,
            build_dir: &dir,
            opts,
        };
        if b.plan(&t, None).is_ok() {
            return Ok(b.kind().to_string());
        }
    }
    Ok(engine.backends.default_backend()?.kind().to_string())
}
