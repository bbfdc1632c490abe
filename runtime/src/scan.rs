//! Which containers of an lxcpath are marked `lxc.ephemeral = 1`, for the
//! reaper: the registered runs of every command, and every container in
//! its first pass per lxcpath after a boot. Reading every config costs
//! about 14 µs per container (3 ms with 200 of them): the answer is kept in
//! the run directory per config file (inode, size, mtime) and a config is
//! read again only when it changed. The run directory is emptied at boot,
//! so the first command after a reboot reads them all: it is then that the
//! leftovers of runs cut short by the reboot are found.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use strata_core::store::ContainerRef;

const CACHE: &str = "ephemeral";

#[derive(Serialize, Deserialize, PartialEq, Eq, Clone, Copy)]
struct Seen {
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ephemeral: bool,
}

fn key(m: &std::fs::Metadata, ephemeral: bool) -> Seen {
    Seen {
        ino: m.ino(),
        size: m.size(),
        mtime: m.mtime(),
        mtime_ns: m.mtime_nsec(),
        ephemeral,
    }
}

/// The names among `names` that are containers whose config says `lxc.ephemeral = 1`.
pub fn ephemeral(lxcpath: &Path, names: &[String]) -> Vec<String> {
    let path = cache_path(lxcpath);
    let old: BTreeMap<String, Seen> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut new = BTreeMap::new();
    for name in names {
        let cfg = ContainerRef::new(lxcpath, name).config_path();
        let Ok(m) = std::fs::symlink_metadata(&cfg) else {
            continue;
        };
        if !m.is_file() {
            continue;
        }
        let seen = match old.get(name) {
            Some(s) if *s == key(&m, s.ephemeral) => *s,
            _ => {
                let Ok(c) = strata_core::config::Config::load(&cfg) else {
                    continue; // unreadable now: looked at again next time
                };
                key(&m, c.get("lxc.ephemeral").is_some_and(|v| v.trim() == "1"))
            }
        };
        new.insert(name.clone(), seen);
    }
    if new.is_empty() {
        // Nothing to keep: the run dir keeps nothing (a missing file reads as empty).
        if !old.is_empty() {
            let _ = std::fs::remove_file(&path);
        }
    } else if new != old {
        save(&path, &new);
    }
    new.into_iter().filter(|(_, s)| s.ephemeral).map(|(n, _)| n).collect()
}

/// Beside the scan markers, forgotten with them (see
/// [`strata_core::inflight::scan_dir`]), not among the run records.
fn cache_path(lxcpath: &Path) -> std::path::PathBuf {
    strata_core::inflight::scan_dir(lxcpath).join(format!("{CACHE}.seen"))
}

fn save(path: &Path, m: &BTreeMap<String, Seen>) {
    // Only an optimisation: failing to keep it costs the next command a full read.
    let (Some(dir), Ok(data)) = (path.parent(), serde_json::to_vec(m)) else {
        return;
    };
    if strata_core::paths::ensure_dir(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(".{}.{}", CACHE, std::process::id()));
    if std::fs::write(&tmp, data).is_err() || std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_config_again_only_when_it_changed() {
        let d = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        std::env::set_var("STRATA_RUN_DIR", run.path());
        let lp = d.path();
        for (n, e) in [("a", "0"), ("b", "1")] {
            std::fs::create_dir(lp.join(n)).unwrap();
            std::fs::write(lp.join(n).join("config"), format!("lxc.ephemeral = {e}\n")).unwrap();
        }
        let names = vec!["a".to_string(), "b".to_string(), "gone".to_string()];
        assert_eq!(ephemeral(lp, &names), vec!["b".to_string()]);
        assert!(cache_path(lp).is_file());
        // Unchanged configs are not read again: the kept answer is used.
        let cache = cache_path(lp);
        let text = std::fs::read_to_string(&cache).unwrap();
        std::fs::write(&cache, text.replace("\"ephemeral\":true", "\"ephemeral\":false")).unwrap();
        assert!(ephemeral(lp, &names).is_empty());
        // A changed config is read again.
        let b = lp.join("b/config");
        std::fs::remove_file(&b).unwrap();
        std::fs::write(&b, "lxc.uts.name = b\nlxc.ephemeral = 1\n").unwrap();
        assert_eq!(ephemeral(lp, &names), vec!["b".to_string()]);
        std::fs::write(&b, "lxc.uts.name = b\n").unwrap();
        assert!(ephemeral(lp, &names).is_empty());
        std::fs::write(lp.join("a/config"), "lxc.ephemeral = 1\nlxc.uts.name = a\n").unwrap();
        assert_eq!(ephemeral(lp, &names), vec!["a".to_string()]);
    }
}
