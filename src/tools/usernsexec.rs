//! `lxc-usernsexec [-m MAP]... [-s] [--] [COMMAND [ARG]...]`: run a command
//! as root (uid and gid 0) in a new user and mount namespace.
//!
//! As in LXC 5: each `-m` is `u|g|b:NS_ID:HOST_ID:COUNT`; without any, the
//! first range of the caller in /etc/subuid and in /etc/subgid is mapped
//! from 0; `-s` also maps the caller's own uid and gid just above the ids
//! mapped from 0. Maps are written with newuidmap/newgidmap (directly by
//! root). The command defaults to /bin/sh; the exit status is the command's.

use super::nschild::{self, Command};
use anyhow::{anyhow, bail};
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use strata_core::idmap::{self, IdMap, Range, SubIds};

#[derive(clap::Parser, Debug)]
#[command(about = "Run a task as root in a new user namespace", version)]
pub struct Args {
    /// An id map [u|g|b]:NS_ID:HOST_ID:RANGE (u: uids, g: gids, b: both); repeatable.
    /// Default: the caller's first ranges in /etc/subuid and /etc/subgid, from 0
    #[arg(short = 'm', value_name = "MAP")]
    maps: Vec<String>,
    /// Map self: also map the caller's own uid and gid (above the ids mapped from 0)
    #[arg(short = 's')]
    map_self: bool,
    /// The command to run (default /bin/sh)
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

const TOOL: &str = "lxc-usernsexec";

/// One `-m` value as ranges (two for `b`).
fn parse_map(s: &str, map: &mut IdMap) -> anyhow::Result<()> {
    let bad = |why: &str| anyhow!("invalid map {s:?}: {why} (expected u|g|b:NS_ID:HOST_ID:RANGE)");
    let f: Vec<&str> = s.split(':').collect();
    if f.len() != 4 {
        return Err(bad("not four fields"));
    }
    let num = |v: &str, what: &str| {
        v.parse::<u32>()
            .map_err(|_| bad(&format!("{what} {v:?} is not a number")))
    };
    let (inside, outside, count) = (num(f[1], "NS_ID")?, num(f[2], "HOST_ID")?, num(f[3], "RANGE")?);
    if count == 0 {
        return Err(bad("RANGE is zero"));
    }
    if inside as u64 + count as u64 > u32::MAX as u64 || outside as u64 + count as u64 > u32::MAX as u64 {
        return Err(bad("the range goes past the largest id"));
    }
    let r = Range {
        line: format!("-m {s}"),
        ..Range::new(inside, outside, count)
    };
    match f[0] {
        "u" => map.uids.push(r),
        "g" => map.gids.push(r),
        "b" => {
            map.uids.push(r.clone());
            map.gids.push(r);
        }
        k => return Err(bad(&format!("{k:?} is not u, g or b"))),
    }
    Ok(())
}

/// Without `-m`: the caller's first subordinate uid and gid ranges, from 0.
fn default_map() -> anyhow::Result<IdMap> {
    let s = SubIds::for_caller()?;
    let first = |v: &[(u32, u32)], file: &std::path::Path| {
        v.first().copied().ok_or_else(|| {
            anyhow!(
                "no subordinate ids for user {} in {}: add a range (usermod --add-subuids/--add-subgids) or give maps with -m",
                s.name,
                file.display()
            )
        })
    };
    let (u, uc) = first(&s.uids, &s.subuid_file)?;
    let (g, gc) = first(&s.gids, &s.subgid_file)?;
    Ok(IdMap {
        uids: vec![Range::new(0, u, uc)],
        gids: vec![Range::new(0, g, gc)],
    })
}

/// `-s`: the caller's uid and gid at the first id after the ranges that
/// cover 0 upwards (in the order given), as LXC places them.
fn add_self(map: &mut IdMap) {
    let next = |ranges: &[Range]| {
        let mut id = 0u64;
        for r in ranges {
            if id >= r.inside as u64 && id < r.inside as u64 + r.count as u64 {
                id += r.count as u64;
            }
        }
        id.min(u32::MAX as u64 - 1) as u32
    };
    let (nu, ng) = (next(&map.uids), next(&map.gids));
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    map.uids.push(Range {
        line: format!("-s (uid {uid} as {nu})"),
        ..Range::new(nu, uid, 1)
    });
    map.gids.push(Range {
        line: format!("-s (gid {gid} as {ng})"),
        ..Range::new(ng, gid, 1)
    });
}

/// The map to write, checked before anything runs.
fn build_map(a: &Args) -> anyhow::Result<IdMap> {
    let mut map = IdMap::default();
    for m in &a.maps {
        parse_map(m, &mut map)?;
    }
    if map.is_empty() {
        map = default_map()?;
    }
    if a.map_self {
        add_self(&mut map);
    }
    map.validate()?;
    if map.root_uid().is_none() || map.root_gid().is_none() {
        let what = if map.root_uid().is_none() { "uid" } else { "gid" };
        bail!(
            "{what} 0 is not mapped: the command runs as root in the namespace (add e.g. -m {}:0:HOST_ID:1)",
            &what[..1]
        );
    }
    // A non-root caller: the ranges must be its own (and newuidmap there), said before the fork.
    map.check_caller()?;
    Ok(map)
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::common::init_logging(None, None)?;
    let _s = tracing::info_span!("usernsexec").entered();
    let map = build_map(&a)?;
    let cmd = Command::new(&a.command, "/bin/sh")?;
    let (ready_r, ready_w) = nschild::pipe()?;
    let (go_r, go_w) = nschild::pipe()?;
    // SAFETY: the child only unshares, waits for its maps, switches ids,
    // changes mount propagation and execs (or exits with _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        drop(ready_r);
        drop(go_w);
        child(&cmd, ready_w, go_r);
    }
    drop(ready_w);
    drop(go_r);
    let mut b = [0u8; 1];
    if nix::unistd::read(ready_r.as_raw_fd(), &mut b) != Ok(1) {
        // The child said why (one line) and exited.
        drop(go_w);
        return nschild::wait(pid).map(|c| c.max(1));
    }
    if let Err(e) = idmap::write_maps(pid, &map) {
        drop(go_w);
        nschild::abandon(pid);
        return Err(e.into());
    }
    if let Err(e) = nschild::send_go(go_w) {
        nschild::abandon(pid);
        return Err(e);
    }
    nschild::wait(pid)
}

/// The forked child: new user and mount namespaces, root there, the mount
/// tree a slave of the host's (nothing mounted here reaches the host), exec.
fn child(cmd: &Command, ready: std::os::fd::OwnedFd, go: std::os::fd::OwnedFd) -> ! {
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } != 0 {
        let e = std::io::Error::last_os_error();
        nschild::die(TOOL, &format!("unshare the user and mount namespaces: {e}"));
    }
    let _ = nix::unistd::write(&ready, &[1u8]);
    drop(ready);
    nschild::wait_for_go(go);
    // Groups of the host cannot be kept; EPERM where setgroups is denied, as LXC allows.
    if let Err(e) = nix::unistd::setgroups(&[]) {
        if e != nix::errno::Errno::EPERM {
            nschild::die(TOOL, &format!("drop supplementary groups: {e}"));
        }
    }
    if let Err(e) = nix::unistd::setresgid(0.into(), 0.into(), 0.into()) {
        nschild::die(TOOL, &format!("become gid 0: {e}"));
    }
    if let Err(e) = nix::unistd::setresuid(0.into(), 0.into(), 0.into()) {
        nschild::die(TOOL, &format!("become uid 0: {e}"));
    }
    if let Err(e) = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    ) {
        nschild::die(TOOL, &format!("make the mount tree a slave of the host's: {e}"));
    }
    cmd.exec(TOOL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(maps: &[&str]) -> anyhow::Result<IdMap> {
        let mut m = IdMap::default();
        for s in maps {
            parse_map(s, &mut m)?;
        }
        Ok(m)
    }

    #[test]
    fn maps_as_lxc_writes_them() {
        let m = parse(&["b:0:100000:65536", "u:70000:1000:1"]).unwrap();
        assert_eq!(m.map_uid(0), Some(100000));
        assert_eq!(m.map_gid(65535), Some(165535));
        assert_eq!(m.map_uid(70000), Some(1000));
        assert_eq!(m.map_gid(70000), None);
        for bad in [
            "x:0:1:1",
            "u:0:1",
            "u:0:1:1:1",
            "u:a:1:1",
            "u:0:1:0",
            "u:0:-1:1",
            "u:4294967295:0:2",
        ] {
            let e = parse(&[bad]).unwrap_err().to_string();
            assert!(e.contains(bad) && !e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn self_goes_after_the_ranges_from_zero() {
        let mut m = parse(&["u:0:100000:10", "g:0:100000:5", "u:10:200000:3"]).unwrap();
        add_self(&mut m);
        let own = nix::unistd::getuid().as_raw();
        assert_eq!(m.map_uid(13), Some(own));
        assert_eq!(m.map_gid(5), Some(nix::unistd::getgid().as_raw()));
    }
}
