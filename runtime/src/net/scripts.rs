//! `script.up` / `script.down`, run on the host as LXC runs them: through
//! `/bin/sh -c "exec SCRIPT NAME net up|down TYPE LINK [HOST_END]"` (with
//! `lxc.hook.version = 1`, `exec SCRIPT TYPE LINK [HOST_END]`), with the
//! hooks' environment and LXC_HOOK_TYPE, LXC_HOOK_SECTION=net, LXC_NET_TYPE,
//! LXC_NET_PARENT (veth, macvlan, phys) and LXC_NET_PEER (veth).

use super::{Kind, Netdev, ScriptCtx};
use std::process::Command;
use strata_core::{err, Result};

pub(super) fn command(ctx: &ScriptCtx, script: &str, ty: &str, d: &Netdev, peer: Option<&str>) -> Command {
    let kind = d.kind.as_str();
    let link = d.link.as_deref().unwrap_or("");
    let mut argv = vec![kind];
    if d.kind != Kind::Empty {
        argv.push(link);
    }
    if let (Kind::Veth { .. }, Some(p)) = (&d.kind, peer) {
        argv.push(p);
    }
    let mut line = if ctx.version == 0 {
        format!("exec {script} {} net {ty}", ctx.env.name)
    } else {
        format!("exec {script}")
    };
    for a in &argv {
        line.push(' ');
        line.push_str(a);
    }
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(line);
    c.env("LXC_NAME", &ctx.env.name)
        .env("LXC_CONFIG_FILE", &ctx.env.config_file)
        .env("LXC_ROOTFS_MOUNT", &ctx.env.rootfs_mount)
        .env("LXC_ROOTFS_PATH", &ctx.env.rootfs_path)
        .env("LXC_HOOK_VERSION", ctx.version.to_string())
        .env("LXC_CGNS_AWARE", "1")
        .env("LXC_HOOK_TYPE", ty)
        .env("LXC_HOOK_SECTION", "net")
        .env("LXC_NET_TYPE", kind);
    if matches!(d.kind, Kind::Veth { .. } | Kind::Macvlan { .. } | Kind::Phys) {
        c.env("LXC_NET_PARENT", link);
    }
    if let Kind::Veth { .. } = d.kind {
        c.env("LXC_NET_PEER", peer.unwrap_or(""));
    }
    c.stdin(std::process::Stdio::null());
    c
}

pub(super) fn run(ctx: &ScriptCtx, script: &str, ty: &str, d: &Netdev, peer: Option<&str>) -> Result<()> {
    let key = d.key(&format!("script.{ty}"));
    let out = command(ctx, script, ty, d, peer)
        .output()
        .map_err(|e| err!(Command, "run network script", "{key}: /bin/sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        tracing::debug!("{key}: {}", stdout.trim());
    }
    if !out.status.success() {
        return Err(err!(
            Command,
            "run network script",
            "{key} ({script}) failed: {}",
            out.status
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{config, Net};
    use strata_core::config::Config;

    #[test]
    fn lxc_arguments_and_environment() {
        let Net::Ns(d) = config::parse(
            &Config::parse("lxc.net.0.type = veth\nlxc.net.0.link = br0\nlxc.net.0.script.up = /s\n").unwrap(),
        )
        .unwrap() else {
            panic!()
        };
        let mut ctx = ScriptCtx {
            env: crate::hooks::env_of(
                "c1",
                std::path::Path::new("/c/config"),
                std::path::Path::new("/m"),
                "dir:/r",
            ),
            version: 0,
        };
        let c = command(&ctx, "/s", "up", &d[0], Some("vethA"));
        let line = c.get_args().nth(1).unwrap().to_string_lossy().into_owned();
        assert_eq!(line, "exec /s c1 net up veth br0 vethA");
        let env: Vec<_> = c
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
            .collect();
        assert!(env
            .iter()
            .any(|(k, v)| k == "LXC_NET_PEER" && v.as_deref() == Some("vethA".as_ref())));
        ctx.version = 1;
        let c = command(&ctx, "/s", "down", &d[0], Some("vethA"));
        let line = c.get_args().nth(1).unwrap().to_string_lossy().into_owned();
        assert_eq!(line, "exec /s veth br0 vethA");
    }
}
