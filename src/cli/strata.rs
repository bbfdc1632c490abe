//! `strata SUBCOMMAND`: the same front ends under one name.

use crate::common::Common;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

const TOOL: &str = "strata";

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "LXC's storage layer: backing stores, clone, snapshot, restore, ephemeral containers",
    after_help = "Invoked as lxc-create, lxc-destroy, lxc-copy, lxc-clone, lxc-snapshot, lxc-ls, lxc-start, \
lxc-stop, lxc-execute, lxc-attach, lxc-info or lxc-start-ephemeral (see install-links), it behaves as that LXC tool."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container (as lxc-create)
    Create(super::create::Args),
    /// Destroy a container (as lxc-destroy)
    Destroy(super::destroy::Args),
    /// Copy a container, or make a snapshot clone with -s (as lxc-copy)
    #[command(visible_alias = "copy")]
    Clone(super::copy::Args),
    /// Create, list (-L), restore (-r) or destroy (-d) snapshots (as lxc-snapshot);
    /// `strata snapshot prune [-n NAME]` removes expired ones, `strata snapshot auto [-n NAME]` takes scheduled ones
    Snapshot(super::snapshot::Args),
    /// Restore a snapshot, in place or as a new container
    Restore(RestoreArgs),
    /// List containers (as lxc-ls)
    Ls(super::ls::Args),
    /// Storage of one container: backend, rootfs, snapshots, dependents, usage
    Info(super::info::Args),
    /// Disk use of containers (and with --snapshots their snapshots): referenced, exclusive, shared
    Du(crate::du::Args),
    /// Containers, their snapshots and the clones made from them, as a tree (name, backend, size, age)
    Tree(super::tree::Args),
    /// Grow (or shrink where the filesystem can) a container's rootfs: image, volume or quota
    Resize(super::resize::Args),
    /// Make a container unprivileged (shift owners to an id map) or privileged again
    Convert(crate::convert::Args),
    /// Write a container (and with --snapshots its snapshots) as a stream to stdout
    Send(super::send::Args),
    /// Make a container from a stream on stdin (`strata send -n c1 | ssh host strata receive`)
    Receive(super::receive::Args),
    /// Write a container as a .tar.zst archive FILE
    Export(super::export::Args),
    /// Make a container from an archive: strata export's, an Incus export or a Proxmox vzdump
    Import(super::import::Args),
    /// Remove what an interrupted operation left behind in an lxcpath
    Reconcile(ReconcileArgs),
    /// Create the lxc-* symlinks to this binary in DIR
    InstallLinks(LinksArgs),
    /// Start a container (as lxc-start)
    Start(Passthrough),
    /// Stop a container (as lxc-stop)
    Stop(Passthrough),
    /// Run a command in a new container (as lxc-execute)
    Execute(Passthrough),
    /// Run a command in a running container (as lxc-attach)
    Attach(Passthrough),
}

#[derive(clap::Args, Debug)]
struct RestoreArgs {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    name: String,
    /// The snapshot, e.g. snap0
    snap: String,
    /// Restore into a new container NEWNAME instead of in place
    #[arg(short = 'N', long = "newname")]
    newname: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
struct ReconcileArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
struct LinksArgs {
    /// Where to put the links
    #[arg(default_value = "/usr/local/bin")]
    dir: PathBuf,
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
}

#[derive(clap::Args, Debug)]
struct Passthrough {
    /// Arguments as the LXC tool takes them
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

pub fn main(args: Vec<OsString>) -> i32 {
    // `strata snapshot prune|auto`: strata's own, beside lxc-snapshot's flags.
    if args.get(1).is_some_and(|a| a == "snapshot") {
        match args.get(2).and_then(|a| a.to_str()) {
            Some("prune") => return super::snapshot_prune::main(args[2..].to_vec()),
            Some("auto") => return super::snapshot_auto::main(args[2..].to_vec()),
            _ => {}
        }
    }
    let raw: Vec<OsString> = args.iter().skip(2).cloned().collect();
    let cli = match crate::common::parse::<Cli>(TOOL, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.cmd {
        Cmd::Create(a) => super::create::run_args(TOOL, a),
        Cmd::Destroy(a) => super::destroy::run_args(TOOL, a),
        Cmd::Clone(a) => super::copy::run_args(TOOL, a, raw),
        Cmd::Snapshot(a) => super::snapshot::run_args(TOOL, a),
        Cmd::Restore(a) => super::snapshot::run_args(
            TOOL,
            super::snapshot::Args {
                name: a.name,
                list: false,
                showcomments: false,
                restore: Some(a.snap),
                newname: a.newname,
                destroy: None,
                comment: None,
                expire: None,
                common: a.common,
            },
        ),
        Cmd::Ls(a) => super::ls::run_args(TOOL, a),
        Cmd::Info(a) => {
            let name = a.name.clone();
            crate::common::finish(TOOL, Some(&name), super::info::run(&a))
        }
        Cmd::Tree(a) => crate::common::finish(TOOL, a.name.clone().as_deref(), super::tree::run(&a)),
        Cmd::Du(a) => crate::common::finish(TOOL, a.name.clone().as_deref(), crate::du::run(&a)),
        Cmd::Resize(a) => crate::common::finish(TOOL, Some(&a.name.clone()), super::resize::run(&a)),
        Cmd::Convert(a) => crate::convert::run_args(TOOL, a),
        Cmd::Send(a) => crate::common::finish(TOOL, Some(&a.name.clone()), super::send::run(&a)),
        Cmd::Receive(a) => crate::common::finish(TOOL, a.name.clone().as_deref(), super::receive::run(&a)),
        Cmd::Export(a) => crate::common::finish(TOOL, Some(&a.stream.name.clone()), super::export::run(&a)),
        Cmd::Import(a) => crate::common::finish(TOOL, a.name.clone().as_deref(), super::import::run(&a)),
        Cmd::Reconcile(a) => crate::common::finish(TOOL, None, reconcile(&a)),
        Cmd::InstallLinks(a) => crate::common::finish(TOOL, None, super::links::install(&a.dir, a.quiet)),
        Cmd::Start(p) => super::runtime("lxc-start", p.args),
        Cmd::Stop(p) => super::runtime("lxc-stop", p.args),
        Cmd::Execute(p) => super::runtime("lxc-execute", p.args),
        Cmd::Attach(p) => super::runtime("lxc-attach", p.args),
    }
}

fn reconcile(a: &ReconcileArgs) -> anyhow::Result<i32> {
    crate::common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let lxcpath = crate::common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    if !lxcpath.is_dir() {
        return Ok(0);
    }
    let engine = crate::common::engine();
    for p in engine.reconcile(&lxcpath)? {
        if !a.common.quiet {
            println!("removed {}", p.display());
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn parsers_are_consistent() {
        Cli::command().debug_assert();
        super::super::create::Args::command().debug_assert();
        super::super::destroy::Args::command().debug_assert();
        super::super::copy::Args::command().debug_assert();
        super::super::clone::Args::command().debug_assert();
        super::super::snapshot::Args::command().debug_assert();
        super::super::ls::Args::command().debug_assert();
        Cli::command().find_subcommand("du").unwrap().clone().debug_assert();
        Cli::command().find_subcommand("tree").unwrap().clone().debug_assert();
    }

    #[test]
    fn lxc_flags_parse() {
        let a = super::super::copy::Args::try_parse_from([
            "lxc-copy", "-n", "c1", "-N", "c2", "-s", "-B", "overlay", "-p", "/x", "-P", "/y", "-K", "-M", "-L", "1G",
        ])
        .unwrap();
        assert_eq!(a.newname.as_deref(), Some("c2"));
        assert!(a.snapshot && a.keepname && a.keepmac);
        assert_eq!(a.common.lxcpath.as_deref(), Some(std::path::Path::new("/y")));
        let a = super::super::create::Args::try_parse_from([
            "lxc-create",
            "-n",
            "c1",
            "-t",
            "busybox",
            "-B",
            "lvm",
            "--vgname",
            "vg",
            "--thinpool",
            "tp",
            "--lvname",
            "lv",
            "--fstype",
            "xfs",
            "--fssize",
            "2G",
            "--zfsroot",
            "tank/lxc",
            "--dir",
            "/d",
            "--",
            "--release",
            "x",
        ])
        .unwrap();
        assert_eq!(a.template_args, ["--release", "x"]);
        assert_eq!(a.fssize.as_deref(), Some("2G"));
        let a = super::super::snapshot::Args::try_parse_from(["lxc-snapshot", "-n", "c1", "-r", "snap0", "-N", "c2"])
            .unwrap();
        assert_eq!(a.restore.as_deref(), Some("snap0"));
        assert!(
            super::super::snapshot::Args::try_parse_from(["lxc-snapshot", "-n", "c", "-L", "-r", "snap0"]).is_err()
        );
        let a = super::super::clone::Args::try_parse_from([
            "lxc-clone",
            "-o",
            "a",
            "-n",
            "b",
            "-s",
            "-v",
            "vg",
            "-t",
            "xfs",
        ])
        .unwrap();
        assert_eq!((a.orig.as_deref(), a.new.as_deref()), (Some("a"), Some("b")));
    }
}
