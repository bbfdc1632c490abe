//! The cgroup keys of a container config, read as LXC 5's confile.c reads them.

use strata_core::config::Config;
use strata_core::{err, Result};

/// One `lxc.cgroup.FILE = VALUE` or `lxc.cgroup2.FILE = VALUE` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The config key, for messages (`lxc.cgroup.memory.limit_in_bytes`).
    pub key: String,
    /// The cgroup file (`memory.limit_in_bytes`).
    pub file: String,
    /// Written to the file as given: the kernel parses it (v1 memory files
    /// and v2 `memory.max`/`memory.high` take `K`/`M`/`G` suffixes through
    /// the kernel's memparse; `pids.max` and the cpu files do not).
    pub value: String,
}

impl Setting {
    /// The controller the file belongs to (`memory` for `memory.max`).
    pub fn controller(&self) -> &str {
        self.file.split('.').next().unwrap_or("")
    }

    pub fn is_device_rule(&self) -> bool {
        self.file == "devices.allow" || self.file == "devices.deny"
    }
}

/// What a container config says about its cgroups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// `lxc.cgroup.*` in config order (LXC clears by key on an empty value).
    pub v1: Vec<Setting>,
    /// `lxc.cgroup2.*` in config order.
    pub v2: Vec<Setting>,
    /// `lxc.cgroup.dir`: the container's cgroup is `DIR/lxc.payload.NAME`.
    pub dir: Option<String>,
    /// `lxc.cgroup.dir.container`: the container's (limit) cgroup, no suffix.
    pub container_dir: Option<String>,
    /// `lxc.cgroup.dir.container.inner`: where init goes, below the limit cgroup.
    pub container_inner: Option<String>,
    /// `lxc.cgroup.dir.monitor`: LXC's monitor cgroup. Read and checked;
    /// strata's monitor stays in the caller's cgroups.
    pub monitor_dir: Option<String>,
    /// `lxc.cgroup.dir.monitor.pivot`: see `monitor_dir`.
    pub monitor_pivot: Option<String>,
    /// `lxc.cgroup.relative`: never escape to init's cgroup.
    pub relative: bool,
    /// `lxc.cgroup.pattern` from the global `lxc.conf` (LXC 5 reads it only
    /// there; `%n` is the name): the container's cgroup is
    /// `PATTERN/payload` (`-1`, `-2`.. when taken). The caller fills it in.
    pub pattern: Option<String>,
}

/// A relative cgroup path from the config: no `..`, not absolute.
fn check_dir(key: &str, v: &str) -> Result<Option<String>> {
    if v.is_empty() {
        return Ok(None);
    }
    if v.starts_with('/') || v.split('/').any(|c| c == "..") {
        return Err(err!(
            InvalidConfig,
            "",
            "{key} = {v}: a cgroup path relative to the container's base cgroup, without '..'"
        ));
    }
    Ok(Some(v.trim_end_matches('/').to_string()))
}

/// `memory.limit_in_bytes` is `controller.file`; nothing that walks paths.
fn check_file(key: &str, file: &str) -> Result<()> {
    let ok = file
        .split_once('.')
        .is_some_and(|(c, rest)| !c.is_empty() && !rest.is_empty())
        && !file.contains('/')
        && !file.starts_with('.');
    if !ok {
        return Err(err!(
            InvalidConfig,
            "",
            "{key}: not a cgroup file (expected CONTROLLER.FILE, as in lxc.cgroup.memory.limit_in_bytes)"
        ));
    }
    Ok(())
}

impl Spec {
    /// Read the cgroup keys of an expanded config.
    pub fn from_config(cfg: &Config) -> Result<Spec> {
        let mut s = Spec::default();
        for (key, value) in cfg.entries() {
            let key: &str = &key;
            let value = value.trim();
            match key {
                "lxc.cgroup.dir" => s.dir = check_dir(key, value)?,
                "lxc.cgroup.dir.container" => s.container_dir = check_dir(key, value)?,
                "lxc.cgroup.dir.container.inner" => s.container_inner = check_dir(key, value)?,
                "lxc.cgroup.dir.monitor" => s.monitor_dir = check_dir(key, value)?,
                "lxc.cgroup.dir.monitor.pivot" => s.monitor_pivot = check_dir(key, value)?,
                "lxc.cgroup.relative" => {
                    s.relative = match value {
                        "1" => true,
                        "0" | "" => false,
                        _ => return Err(err!(InvalidConfig, "", "{key} = {value}: 0 or 1")),
                    }
                }
                "lxc.cgroup.pattern" | "lxc.cgroup.use" => {
                    return Err(err!(
                        InvalidConfig,
                        "",
                        "{key}: a system-wide key, read from lxc.conf, not from a container's config"
                    ))
                }
                "lxc.cgroup" | "lxc.cgroup2" => {
                    if !value.is_empty() {
                        return Err(err!(
                            InvalidConfig,
                            "",
                            "{key} = {value}: only an empty value (clear all) is valid"
                        ));
                    }
                    if key == "lxc.cgroup" {
                        s.v1.clear();
                    } else {
                        s.v2.clear();
                    }
                }
                _ => {
                    let (list, file) = if let Some(f) = key.strip_prefix("lxc.cgroup2.") {
                        (&mut s.v2, f)
                    } else if let Some(f) = key.strip_prefix("lxc.cgroup.") {
                        (&mut s.v1, f)
                    } else {
                        continue;
                    };
                    // An empty value clears the settings of that file (userns.conf does this).
                    if value.is_empty() {
                        list.retain(|x| x.file != file);
                        continue;
                    }
                    check_file(key, file)?;
                    list.push(Setting {
                        key: key.to_string(),
                        file: file.to_string(),
                        value: value.to_string(),
                    });
                }
            }
        }
        s.check_dirs()?;
        Ok(s)
    }

    /// LXC's check_cgroup_dir_config.
    fn check_dirs(&self) -> Result<()> {
        let new = self.container_dir.is_some() || self.monitor_dir.is_some() || self.container_inner.is_some();
        if !new {
            return Ok(());
        }
        if self.dir.is_some() {
            return Err(err!(
                InvalidConfig,
                "",
                "lxc.cgroup.dir conflicts with lxc.cgroup.dir.container/monitor"
            ));
        }
        if self.container_dir.is_none() || self.monitor_dir.is_none() {
            return Err(err!(
                InvalidConfig,
                "",
                "lxc.cgroup.dir.container and lxc.cgroup.dir.monitor must both be set"
            ));
        }
        Ok(())
    }

    /// Whether any setting other than a device rule is given.
    pub fn has_limits(&self) -> bool {
        self.v1.iter().chain(&self.v2).any(|s| !s.is_device_rule())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<Spec> {
        Spec::from_config(&Config::parse(text).unwrap())
    }

    #[test]
    fn cgroup_spec_keys() {
        let s = spec(
            "lxc.cgroup.memory.limit_in_bytes = 512M\n\
             lxc.cgroup.devices.deny = a\n\
             lxc.cgroup.devices.allow = c 1:3 rwm\n\
             lxc.cgroup2.memory.max = 1G\n\
             lxc.cgroup.relative = 1\n\
             lxc.cgroup.dir = a/b/\n",
        )
        .unwrap();
        assert_eq!(s.v1.len(), 3);
        assert_eq!(s.v1[0].file, "memory.limit_in_bytes");
        assert_eq!(s.v1[0].value, "512M");
        assert_eq!(s.v1[0].controller(), "memory");
        assert!(s.v1[1].is_device_rule());
        assert_eq!(s.v2[0].key, "lxc.cgroup2.memory.max");
        assert!(s.relative);
        assert_eq!(s.dir.as_deref(), Some("a/b"));
        assert!(s.has_limits());
    }

    #[test]
    fn cgroup_spec_empty_value_clears() {
        let s = spec(
            "lxc.cgroup.devices.deny = a\n\
             lxc.cgroup.devices.allow = c 1:3 rwm\n\
             lxc.cgroup2.devices.deny = a\n\
             lxc.cgroup.pids.max = 10\n\
             lxc.cgroup.devices.deny =\n\
             lxc.cgroup.devices.allow =\n\
             lxc.cgroup2 =\n",
        )
        .unwrap();
        assert_eq!(s.v1.len(), 1);
        assert_eq!(s.v1[0].file, "pids.max");
        assert!(s.v2.is_empty());
    }

    #[test]
    fn cgroup_spec_errors() {
        let e = spec("lxc.cgroup.pattern = lxc/%n\n").unwrap_err().to_string();
        assert!(e.contains("lxc.cgroup.pattern") && e.contains("lxc.conf"), "{e}");
        let e = spec("lxc.cgroup.memory = 1\n").unwrap_err().to_string();
        assert!(e.contains("lxc.cgroup.memory:"), "{e}");
        assert!(spec("lxc.cgroup.memory./x = 1\n").is_err());
        assert!(spec("lxc.cgroup.dir = ../x\n").is_err());
        assert!(spec("lxc.cgroup.dir = /x\n").is_err());
        let e = spec("lxc.cgroup.dir = a\nlxc.cgroup.dir.container = b\nlxc.cgroup.dir.monitor = c\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("conflicts"), "{e}");
        let e = spec("lxc.cgroup.dir.container = b\n").unwrap_err().to_string();
        assert!(e.contains("both"), "{e}");
        let s = spec("lxc.cgroup.dir.container = b\nlxc.cgroup.dir.monitor = m\nlxc.cgroup.dir.container.inner = ns\n")
            .unwrap();
        assert_eq!(s.container_inner.as_deref(), Some("ns"));
        assert!(spec("lxc.cgroup.relative = yes\n").is_err());
    }
}
