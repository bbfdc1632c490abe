//! `lxc-update-config -c FILE`: rewrite the LXC 2.x keys of a container
//! config under their LXC 3+ names, as LXC's script does: `FILE.backup`
//! first, then FILE in place, every other byte of the file kept.
//!
//! * renamed keys (`lxc.utsname` -> `lxc.uts.name`, `lxc.network.N.X` ->
//!   `lxc.net.N.X`, ...), in commented-out lines too, as LXC's script;
//! * `lxc.rootfs = P` -> `lxc.rootfs.path = BACKEND:P`, the backend from
//!   `lxc.rootfs.backend` (default `dir`), which is then dropped, as are
//!   `lxc.pivotdir` and `lxc.kmsg` (LXC 3 has no such setting);
//! * unnumbered network keys take the number of the `lxc.network.type` line
//!   before them (0, 1, ... counting commented ones too, as LXC's script).
//!
//! Where LXC's script writes a key LXC 5 then refuses, strata writes the
//! right one: `lxc.network.N.ipv4` becomes `lxc.net.N.ipv4.address` (LXC:
//! `lxc.net.N.ipv4`), `lxc.limit.X` becomes `lxc.prlimit.X` (LXC leaves
//! it), and a path that already names its backend (`overlayfs:...`) gets no
//! second prefix. What cannot be converted (a network key before any
//! `lxc.network.type`, a key that is neither legacy nor current, a line that
//! is not `KEY = VALUE`) is refused with its line, and nothing is written.

use anyhow::{anyhow, bail, Context};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use strata_core::config::{canonical_key, Config};

#[derive(clap::Parser, Debug)]
#[command(
    about = "Update a legacy (LXC 2.x) container configuration file to LXC 3+ keys",
    version
)]
pub struct Args {
    /// Path to the configuration file to update
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Keys LXC 3 dropped without a replacement: the line goes.
const DROPPED: &[&str] = &["lxc.rootfs.backend", "lxc.pivotdir", "lxc.kmsg"];

/// Backend prefixes a legacy `lxc.rootfs` value may already carry.
use strata_core::spec::KNOWN_PREFIXES;

/// A line split as LXC's config reader sees it: what comes before the key
/// (blanks, and `#` for a commented-out entry), the key, and the rest from
/// the blanks before `=` on.
struct Entry<'a> {
    lead: &'a str,
    key: &'a str,
    /// From the end of the key: blanks, `=`, blanks.
    eq: &'a str,
    value: &'a str,
    commented: bool,
}

fn split(line: &str) -> Option<Entry<'_>> {
    let blank = |c: char| c == ' ' || c == '\t';
    let body = line.trim_start_matches(|c| blank(c) || c == '#');
    let lead = &line[..line.len() - body.len()];
    let commented = lead.contains('#');
    let key_end = body.find(|c: char| blank(c) || c == '=')?;
    let key = &body[..key_end];
    if !key.starts_with("lxc.") {
        return None;
    }
    let after = &body[key_end..];
    let eq_pos = after.find('=')?;
    if !after[..eq_pos].chars().all(blank) {
        return None;
    }
    let val_start = eq_pos + 1 + (after[eq_pos + 1..].len() - after[eq_pos + 1..].trim_start_matches(blank).len());
    Some(Entry {
        lead,
        key,
        eq: &after[..val_start],
        value: &after[val_start..],
        commented,
    })
}

/// The new name of a legacy network key with `idx` for an unnumbered one:
/// `None` when the key is not a legacy network key.
fn net_key(key: &str, idx: Option<u32>) -> Option<Result<String, ()>> {
    if key == "lxc.network" {
        return Some(Ok("lxc.net".into()));
    }
    let rest = key.strip_prefix("lxc.network.")?;
    let (num, sub) = match rest.split_once('.') {
        Some((n, s)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => (Some(n.to_string()), s),
        _ if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) => (Some(rest.to_string()), ""),
        _ => (None, rest),
    };
    let num = match num {
        Some(n) => n,
        None => match idx {
            Some(i) => i.to_string(),
            None => return Some(Err(())),
        },
    };
    let sub = match sub {
        "ipv4" => "ipv4.address",
        "ipv6" => "ipv6.address",
        s => s,
    };
    Some(Ok(if sub.is_empty() {
        format!("lxc.net.{num}")
    } else {
        format!("lxc.net.{num}.{sub}")
    }))
}

/// The converted text, or the first line that cannot be converted.
pub fn convert(text: &str) -> anyhow::Result<String> {
    // The backend of a legacy rootfs: the last `lxc.rootfs.backend` set.
    let mut backend = "dir".to_string();
    for l in text.lines() {
        if let Some(e) = split(l).filter(|e| !e.commented && e.key == "lxc.rootfs.backend") {
            let v = e.value.trim();
            if !v.is_empty() {
                backend = v.to_string();
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut net: Option<u32> = None;
    for (n, raw) in text.split_inclusive('\n').enumerate() {
        let (line, nl) = match raw.strip_suffix('\n') {
            Some(l) => (l, "\n"),
            None => (raw, ""),
        };
        let Some(e) = split(line) else {
            out.push_str(raw);
            continue;
        };
        if DROPPED.contains(&e.key) {
            continue;
        }
        if e.key == "lxc.network.type" {
            net = Some(net.map_or(0, |i| i + 1));
        }
        let new_key = match net_key(e.key, net) {
            Some(Ok(k)) => k,
            Some(Err(())) if e.commented => {
                out.push_str(raw);
                continue;
            }
            Some(Err(())) => bail!(
                "line {}: {}: a network key before any lxc.network.type line has no network to go to",
                n + 1,
                e.key
            ),
            None => canonical_key(e.key).into_owned(),
        };
        let mut value = e.value.to_string();
        if e.key == "lxc.rootfs" {
            let has_prefix = value
                .split_once(':')
                .is_some_and(|(p, _)| KNOWN_PREFIXES.contains(&p) || p == "overlayfs" || p == "aufs");
            if !value.trim().is_empty() && !has_prefix {
                value = format!("{backend}:{value}");
            }
        }
        out.push_str(&format!("{}{new_key}{}{value}{nl}", e.lead, e.eq));
    }
    // What LXC 5 would refuse in the result is named, and nothing is written.
    let cfg = Config::parse(&out).map_err(|e| anyhow!("{e}"))?;
    if let Some((line, key, why)) = cfg.unknown_keys().into_iter().next() {
        // A line number of the result (dropped lines shift it), so the key is named.
        bail!("{key} (line {line} of the result): cannot convert: {why}");
    }
    Ok(out)
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::common::init_logging(None, None)?;
    let Some(path) = a.config else {
        // As LXC's script: no file, the usage, exit 0.
        println!("lxc-update-config -h|--help [-c|--config]");
        println!("config: the container configuration to update");
        return Ok(0);
    };
    let _span = tracing::info_span!("lxc-update-config", file = %path.display()).entered();
    // Edit the file a symlink names, not the link.
    let real = std::fs::canonicalize(&path).with_context(|| format!("{}", path.display()))?;
    let md = std::fs::metadata(&real).with_context(|| format!("{}", real.display()))?;
    if !md.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    let bytes = std::fs::read(&real).with_context(|| format!("read {}", real.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("{}: not a text file", path.display()))?;
    let new = convert(&text).with_context(|| format!("{}", path.display()))?;
    let backup = PathBuf::from(format!("{}.backup", path.display()));
    write_like(&backup, text.as_bytes(), &md)?;
    if new != text {
        write_like(&real, new.as_bytes(), &md)?;
        tracing::info!("updated {}", real.display());
    }
    Ok(0)
}

/// Write `data` to `path` through a temporary file renamed over it, with
/// the mode and owner of `like` (a crash leaves the old file or the new one).
fn write_like(path: &Path, data: &[u8], like: &std::fs::Metadata) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{}: no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.strata-{}", name.to_string_lossy(), std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.set_permissions(std::fs::Permissions::from_mode(like.mode() & 0o7777))?;
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::fchown(&f, Some(like.uid()), Some(like.gid()))?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!("write {}: {e}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_keys_renamed_in_place() {
        let t = "# Template used\n#lxc.aa_profile = unconfined\nlxc.rootfs = /var/lib/lxc/c/rootfs\n\
                 lxc.rootfs.backend = btrfs\nlxc.utsname=c\nlxc.network.type = veth\nlxc.network.flags = up\n\
                 lxc.network.ipv4 = 10.0.0.2/24\nlxc.network.ipv4.gateway = auto\nlxc.network.type = empty\n\
                 lxc.network.1.hwaddr = 00:16:3e:00:00:01\nlxc.network.0.ipv6 = fe80::1/64\n\
                 lxc.pivotdir = lxc_putold\nlxc.limit.nofile = 1024\nlxc.tty = 4\nlxc.mount.entry = a b c d 0 0\n";
        let want =
            "# Template used\n#lxc.apparmor.profile = unconfined\nlxc.rootfs.path = btrfs:/var/lib/lxc/c/rootfs\n\
                    lxc.uts.name=c\nlxc.net.0.type = veth\nlxc.net.0.flags = up\n\
                    lxc.net.0.ipv4.address = 10.0.0.2/24\nlxc.net.0.ipv4.gateway = auto\nlxc.net.1.type = empty\n\
                    lxc.net.1.hwaddr = 00:16:3e:00:00:01\nlxc.net.0.ipv6.address = fe80::1/64\n\
                    lxc.prlimit.nofile = 1024\nlxc.tty.max = 4\nlxc.mount.entry = a b c d 0 0\n";
        assert_eq!(convert(t).unwrap(), want);
        // Already current: unchanged.
        assert_eq!(convert(want).unwrap(), want);
        assert!(convert("lxc.network.flags = up\n")
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        assert!(convert("lxc.foo = 1\n").unwrap_err().to_string().contains("lxc.foo"));
        assert!(convert("garbage\n").is_err());
        assert_eq!(
            convert("lxc.rootfs = overlayfs:/a:/b\n").unwrap(),
            "lxc.rootfs.path = overlayfs:/a:/b\n"
        );
    }
}
