//! `lxc.hook.*`: commands run at the points of a container's life LXC runs
//! them, with LXC's arguments and environment.
//!
//! Each hook is run as LXC runs it, through `/bin/sh -c`: with
//! `lxc.hook.version = 0` (the default) as `HOOK NAME lxc TYPE [ARGS]`, with
//! version 1 as `HOOK` alone, the same facts in the environment
//! (`LXC_NAME`, `LXC_CONFIG_FILE`, `LXC_ROOTFS_MOUNT`, `LXC_ROOTFS_PATH`,
//! `LXC_HOOK_TYPE`, `LXC_HOOK_SECTION`, `LXC_HOOK_VERSION`, ...). A hook that
//! fails stops what it guards (a start, a destroy), as in LXC.

use std::path::Path;
use std::process::Command;
use strata_core::config::Config;
use strata_core::{err, Result};

/// The hook types a start and a stop run, in LXC's order.
pub const TYPES: &[&str] = &[
    "pre-start",
    "pre-mount",
    "mount",
    "autodev",
    "start-host",
    "start",
    "stop",
    "post-stop",
    "destroy",
];

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// `lxc.hook.version`: 0 (arguments) or 1 (environment only).
    pub version: u8,
    /// (type, command) in config order; an empty value clears its type.
    pub hooks: Vec<(String, String)>,
}

/// What every hook of one container is told.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    pub name: String,
    pub config_file: String,
    pub rootfs_mount: String,
    pub rootfs_path: String,
}

impl Hooks {
    pub fn from_config(cfg: &Config) -> Result<Hooks> {
        const OP: &str = "read hooks";
        let mut h = Hooks::default();
        for (k, v) in cfg.entries() {
            if k == "lxc.hook.version" {
                h.version = match v.trim() {
                    "" | "0" => 0,
                    "1" => 1,
                    _ => return Err(err!(InvalidConfig, OP, "lxc.hook.version = {v}: expected 0 or 1")),
                };
                continue;
            }
            let Some(ty) = k.strip_prefix("lxc.hook.") else {
                continue;
            };
            if ty == "clone" {
                continue; // run by the engine at clone time
            }
            if !TYPES.contains(&ty) {
                return Err(err!(InvalidConfig, OP, "{k}: not a hook type LXC knows"));
            }
            if v.trim().is_empty() {
                h.hooks.retain(|(t, _)| t != ty);
            } else {
                h.hooks.push((ty.to_string(), v.trim().to_string()));
            }
        }
        Ok(h)
    }

    pub fn has(&self, ty: &str) -> bool {
        self.hooks.iter().any(|(t, _)| t == ty)
    }

    /// The command line and environment of each `ty` hook.
    pub fn commands(&self, ty: &str, env: &HookEnv, args: &[String], extra_env: &[(String, String)]) -> Vec<Command> {
        self.hooks
            .iter()
            .filter(|(t, _)| t == ty)
            .map(|(_, hook)| {
                let line = if self.version == 0 {
                    let mut l = format!("{hook} {} lxc {ty}", env.name);
                    for a in args {
                        l.push(' ');
                        l.push_str(a);
                    }
                    l
                } else {
                    hook.clone()
                };
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(line);
                c.env("LXC_NAME", &env.name)
                    .env("LXC_CONFIG_FILE", &env.config_file)
                    .env("LXC_ROOTFS_MOUNT", &env.rootfs_mount)
                    .env("LXC_ROOTFS_PATH", &env.rootfs_path)
                    .env("LXC_HOOK_TYPE", ty)
                    .env("LXC_HOOK_SECTION", "lxc")
                    .env("LXC_HOOK_VERSION", self.version.to_string())
                    .env("LXC_CGNS_AWARE", "1");
                for (k, v) in extra_env {
                    c.env(k, v);
                }
                c
            })
            .collect()
    }

    /// Run the `ty` hooks in turn, from the command on the host; the first
    /// that fails is the error. Each is a recorded tool of the command
    /// ([`strata_core::toollock`]): a kill -9 of the command, even between
    /// a hook's fork and its exec (when the child still holds the
    /// command's locks), leaves the next command waiting for the hook.
    pub fn run(&self, ty: &str, env: &HookEnv, args: &[String], extra_env: &[(String, String)]) -> Result<()> {
        self.run_as(ty, env, args, extra_env, true)
    }

    /// [`Hooks::run`] from the container's own process, in its namespaces:
    /// not recorded (the run dir and the pids there are not the host's);
    /// the command that started the container is the recorded one.
    pub fn run_in_container(
        &self,
        ty: &str,
        env: &HookEnv,
        args: &[String],
        extra_env: &[(String, String)],
    ) -> Result<()> {
        self.run_as(ty, env, args, extra_env, false)
    }

    fn run_as(
        &self,
        ty: &str,
        env: &HookEnv,
        args: &[String],
        extra_env: &[(String, String)],
        record: bool,
    ) -> Result<()> {
        for mut c in self.commands(ty, env, args, extra_env) {
            let _s = tracing::info_span!("hook", ty, name = %env.name).entered();
            let st = if record {
                strata_core::toollock::status(&mut c)
            } else {
                c.status()
            };
            let st = st.map_err(|e| err!(Command, "run hook", "lxc.hook.{ty}: /bin/sh: {e}"))?;
            if !st.success() {
                let line = c
                    .get_args()
                    .nth(1)
                    .map(|a| a.to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Err(err!(Command, "run hook", "lxc.hook.{ty} ({line}) failed: {st}"));
            }
        }
        Ok(())
    }
}

/// [`HookEnv`] of a container.
pub fn env_of(name: &str, config: &Path, rootfs_mount: &Path, rootfs_path: &str) -> HookEnv {
    HookEnv {
        name: name.to_string(),
        config_file: config.display().to_string(),
        rootfs_mount: rootfs_mount.display().to_string(),
        rootfs_path: rootfs_path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_in_order_cleared_and_run_with_lxcs_arguments() {
        let cfg = Config::parse(
            "lxc.hook.pre-start = /a\nlxc.hook.pre-start = /b\nlxc.hook.mount = /m\nlxc.hook.mount =\nlxc.hook.clone = /c\n",
        )
        .unwrap();
        let h = Hooks::from_config(&cfg).unwrap();
        assert_eq!(
            h.hooks,
            vec![("pre-start".into(), "/a".into()), ("pre-start".into(), "/b".into())]
        );
        assert!(!h.has("mount"));
        assert!(Hooks::from_config(&Config::parse("lxc.hook.version = 2\n").unwrap()).is_err());
        assert!(Hooks::from_config(&Config::parse("lxc.hook.prestart = /x\n").unwrap()).is_err());

        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let cfg = Config::parse(&format!(
            "lxc.hook.stop = echo \"$LXC_HOOK_TYPE $LXC_NAME $LXC_ROOTFS_MOUNT\" >> {0}; echo args\nlxc.hook.post-stop = false\n",
            out.display()
        ))
        .unwrap();
        let h = Hooks::from_config(&cfg).unwrap();
        let env = env_of("c1", Path::new("/x/config"), Path::new("/mnt/r"), "dir:/x/rootfs");
        h.run("stop", &env, &["net:/proc/1/fd/3".into()], &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "stop c1 /mnt/r\n");
        let e = h.run("post-stop", &env, &[], &[]).unwrap_err();
        assert!(e.to_string().contains("lxc.hook.post-stop"), "{e}");
        // Version 0 appends NAME lxc TYPE ARGS to the command line.
        let c = &h.commands("stop", &env, &["a1".into()], &[])[0];
        let line = c.get_args().nth(1).unwrap().to_string_lossy().into_owned();
        assert!(line.ends_with("echo args c1 lxc stop a1"), "{line}");
    }
}
