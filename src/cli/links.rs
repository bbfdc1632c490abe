//! `strata install-links [DIR]`: LXC's tool names as symlinks to this binary.

use anyhow::{anyhow, Context};
use std::path::{Path, PathBuf};

pub fn all_tools() -> Vec<&'static str> {
    crate::names::all().collect()
}

/// Create or refresh the links; refuses to replace anything that is not a symlink.
pub fn install(dir: &Path, quiet: bool) -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("find the current executable")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let md = std::fs::metadata(dir).with_context(|| format!("{}", dir.display()))?;
    if !md.is_dir() {
        return Err(anyhow!("{} is not a directory", dir.display()));
    }
    // Check them all first, so that a refusal leaves nothing half done.
    for t in all_tools() {
        let p = dir.join(t);
        if let Ok(m) = p.symlink_metadata() {
            if !m.file_type().is_symlink() {
                return Err(anyhow!("{} exists and is not a symlink; not replacing it", p.display()));
            }
        }
    }
    for t in all_tools() {
        let p = dir.join(t);
        if std::fs::read_link(&p).ok().as_deref() == Some(exe.as_path()) {
            continue;
        }
        // A new link under a temporary name, renamed over the old one: never a moment without it.
        let tmp: PathBuf = dir.join(format!(".{t}.strata-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&exe, &tmp).with_context(|| format!("create {}", tmp.display()))?;
        if let Err(e) = std::fs::rename(&tmp, &p) {
            let _ = std::fs::remove_file(&tmp);
            return Err(anyhow!("install {}: {e}", p.display()));
        }
        if !quiet {
            println!("{} -> {}", p.display(), exe.display());
        }
    }
    Ok(0)
}
