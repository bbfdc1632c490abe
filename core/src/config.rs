//! LXC's config format: `key = value` lines, comments, blank lines and
//! `lxc.include`. Edits keep unknown keys, order and comments; legacy key
//! names (`lxc.utsname`, `lxc.rootfs`, `lxc.id_map`, ...) are read as their
//! current names and rewritten in place when edited.
//!
//! Parsing then printing gives back the input byte for byte, including a
//! missing final newline. Values are read as LXC reads them: surrounding
//! blanks trimmed, one pair of matching quotes removed.
//!
//! Legacy unindexed network keys (`lxc.network.type`, `lxc.network.link`, ...)
//! are positional in LXC 2.0: each `lxc.network.type` starts the next network.
//! They are read as `lxc.net.N.*` with N counted that way; editing any of
//! them rewrites all of them under their indexed names so the meaning stays.

use crate::err;
use crate::error::{IoContext, Result};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Nesting limit for `lxc.include` (catches include loops).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Mode of a newly written config, as LXC writes it.
const NEW_CONFIG_MODE: u32 = 0o640;

/// One line of a config file, kept verbatim unless edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A `key = value` line. `raw` is the original text, `None` once edited.
    Entry {
        key: String,
        value: String,
        raw: Option<String>,
    },
    /// A comment, a blank line, or anything kept as written.
    Other(String),
}

/// A parsed config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub lines: Vec<Line>,
    /// The text read did not end with a newline (kept so printing is exact).
    no_final_newline: bool,
}

/// Exact legacy names and their LXC 2.1+ replacements.
const RENAMED: &[(&str, &str)] = &[
    ("lxc.utsname", "lxc.uts.name"),
    ("lxc.rootfs", "lxc.rootfs.path"),
    ("lxc.id_map", "lxc.idmap"),
    ("lxc.pts", "lxc.pty.max"),
    ("lxc.tty", "lxc.tty.max"),
    ("lxc.devttydir", "lxc.tty.dir"),
    ("lxc.aa_profile", "lxc.apparmor.profile"),
    ("lxc.aa_allow_incomplete", "lxc.apparmor.allow_incomplete"),
    ("lxc.se_context", "lxc.selinux.context"),
    ("lxc.seccomp", "lxc.seccomp.profile"),
    ("lxc.console", "lxc.console.path"),
    ("lxc.haltsignal", "lxc.signal.halt"),
    ("lxc.rebootsignal", "lxc.signal.reboot"),
    ("lxc.stopsignal", "lxc.signal.stop"),
    ("lxc.syslog", "lxc.log.syslog"),
    ("lxc.logfile", "lxc.log.file"),
    ("lxc.loglevel", "lxc.log.level"),
    ("lxc.init_cmd", "lxc.init.cmd"),
    ("lxc.init_uid", "lxc.init.uid"),
    ("lxc.init_gid", "lxc.init.gid"),
    ("lxc.limit", "lxc.prlimit"),
    ("lxc.mount", "lxc.mount.fstab"),
    ("lxc.network", "lxc.net"),
];

/// Network subkeys whose names changed besides the prefix.
fn net_subkey(sub: &str) -> Cow<'_, str> {
    match sub {
        "ipv4" => Cow::Borrowed("ipv4.address"),
        "ipv6" => Cow::Borrowed("ipv6.address"),
        s => Cow::Borrowed(s),
    }
}

/// `lxc.network.N.X` -> `Some((Some(N), X))`, `lxc.network.X` -> `Some((None, X))`.
fn legacy_net(key: &str) -> Option<(Option<&str>, &str)> {
    let rest = key.strip_prefix("lxc.network.")?;
    if rest.is_empty() {
        return None;
    }
    match rest.split_once('.') {
        Some((idx, sub)) if !idx.is_empty() && idx.bytes().all(|b| b.is_ascii_digit()) => Some((Some(idx), sub)),
        None if rest.bytes().all(|b| b.is_ascii_digit()) => Some((Some(rest), "")),
        _ => Some((None, rest)),
    }
}

fn net_key(idx: &str, sub: &str) -> String {
    if sub.is_empty() {
        format!("lxc.net.{idx}")
    } else {
        format!("lxc.net.{idx}.{}", net_subkey(sub))
    }
}

/// The current name of a possibly legacy key (`lxc.utsname` -> `lxc.uts.name`,
/// `lxc.network.0.hwaddr` -> `lxc.net.0.hwaddr`, ...). An unindexed legacy
/// network key maps to network 0 here; [`Config`] counts networks by position.
pub fn canonical_key(key: &str) -> Cow<'_, str> {
    if let Some((_, new)) = RENAMED.iter().find(|(old, _)| *old == key) {
        return Cow::Borrowed(new);
    }
    if let Some(sub) = key.strip_prefix("lxc.limit.") {
        return Cow::Owned(format!("lxc.prlimit.{sub}"));
    }
    if let Some((idx, sub)) = legacy_net(key) {
        return Cow::Owned(net_key(idx.unwrap_or("0"), sub));
    }
    Cow::Borrowed(key)
}

/// A legacy network key whose index comes from its position.
fn is_positional(key: &str) -> bool {
    matches!(legacy_net(key), Some((None, _)))
}

/// Split a line into key and value as LXC does, or `None` if it is not an entry.
fn split_entry(line: &str) -> Option<(&str, String)> {
    let (k, v) = line.split_once('=')?;
    let key = k.trim();
    let mut value = v.trim();
    // LXC strips one pair of matching quotes around a value.
    let b = value.as_bytes();
    if b.len() > 1 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        value = &value[1..value.len() - 1];
    }
    Some((key, value.to_string()))
}

fn valid_key(key: &str) -> bool {
    key.len() > 4 && key.starts_with("lxc.") && !key.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Config {
    /// Parse config text. A line that is neither blank, a comment nor
    /// `key = value` with a `lxc.` key is an `InvalidConfig` error naming the line.
    pub fn parse(text: &str) -> Result<Config> {
        if text.is_empty() {
            return Ok(Config::default());
        }
        let (body, no_final_newline) = match text.strip_suffix('\n') {
            Some(b) => (b, false),
            None => (text, true),
        };
        let mut lines = Vec::new();
        for (n, line) in body.split('\n').enumerate() {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                lines.push(Line::Other(line.to_string()));
                continue;
            }
            match split_entry(line) {
                Some((key, value)) if valid_key(key) => lines.push(Line::Entry {
                    key: key.to_string(),
                    value,
                    raw: Some(line.to_string()),
                }),
                _ => {
                    let shown: String = line.chars().take(200).collect();
                    return Err(err!(
                        InvalidConfig,
                        "parse config",
                        "line {}: {shown:?}: expected `lxc.KEY = VALUE`, a comment or a blank line",
                        n + 1
                    ));
                }
            }
        }
        Ok(Config {
            lines,
            no_final_newline,
        })
    }

    /// Read and parse a file (without following `lxc.include`).
    pub fn load(path: &Path) -> Result<Config> {
        let bytes = std::fs::read(path).ctx("read config", path)?;
        let text =
            String::from_utf8(bytes).map_err(|_| err!(InvalidConfig, "read config", "not valid UTF-8").at(path))?;
        Config::parse(&text).map_err(|e| e.at(path))
    }

    /// Canonical key of every line (`None` for non-entries), legacy
    /// unindexed network keys numbered by position as LXC 2.0 did.
    fn canonical_keys(&self) -> Vec<Option<String>> {
        let mut net: i64 = -1;
        self.lines
            .iter()
            .map(|l| match l {
                Line::Entry { key, .. } => Some(match legacy_net(key) {
                    Some((None, sub)) => {
                        if sub == "type" {
                            net += 1;
                        }
                        net_key(&net.max(0).to_string(), sub)
                    }
                    _ => canonical_key(key).into_owned(),
                }),
                Line::Other(_) => None,
            })
            .collect()
    }

    /// Indices of the entries of `key` (current or legacy name).
    fn find(&self, key: &str) -> (Vec<usize>, Vec<Option<String>>) {
        let ck = canonical_key(key);
        let keys = self.canonical_keys();
        let idx = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.as_deref() == Some(&*ck))
            .map(|(i, _)| i)
            .collect();
        (idx, keys)
    }

    fn touches_positional(&self, idx: &[usize]) -> bool {
        idx.iter()
            .any(|&i| matches!(&self.lines[i], Line::Entry { key, .. } if is_positional(key)))
    }

    /// Write every positional legacy network entry under its indexed name,
    /// so that editing one of them cannot renumber the others.
    fn normalize_positional(&mut self, keys: &[Option<String>]) {
        for (line, ck) in self.lines.iter_mut().zip(keys) {
            if let (Line::Entry { key, raw, .. }, Some(ck)) = (line, ck) {
                if is_positional(key) {
                    *key = ck.clone();
                    *raw = None;
                }
            }
        }
    }

    /// The last value of `key` (current or legacy name), in this file only.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_all(key).pop()
    }

    /// Every value of `key`, in order.
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        let (idx, _) = self.find(key);
        idx.into_iter()
            .filter_map(|i| match &self.lines[i] {
                Line::Entry { value, .. } => Some(value.as_str()),
                Line::Other(_) => None,
            })
            .collect()
    }

    /// `(canonical key, value)` for every entry, in order.
    pub fn entries(&self) -> impl Iterator<Item = (Cow<'_, str>, &str)> {
        self.canonical_keys()
            .into_iter()
            .zip(self.lines.iter())
            .filter_map(|(k, l)| match (k, l) {
                (Some(k), Line::Entry { value, .. }) => Some((Cow::Owned(k), value.as_str())),
                _ => None,
            })
    }

    /// Set `key`: replace the last entry of that key (written under its
    /// current name), remove earlier duplicates, or append if absent.
    pub fn set(&mut self, key: &str, value: &str) {
        let ck = canonical_key(key).into_owned();
        let (idx, keys) = self.find(key);
        let Some(&last) = idx.last() else {
            self.push(ck, value);
            return;
        };
        if idx.len() == 1 {
            if let Line::Entry { key: k, value: v, .. } = &self.lines[last] {
                if *k == ck && v == value {
                    return; // unchanged: keep the line byte for byte
                }
            }
        }
        if self.touches_positional(&idx) {
            self.normalize_positional(&keys);
        }
        self.lines[last] = Line::Entry {
            key: ck,
            value: value.to_string(),
            raw: None,
        };
        for &i in idx[..idx.len() - 1].iter().rev() {
            self.lines.remove(i);
        }
    }

    fn push(&mut self, key: String, value: &str) {
        self.lines.push(Line::Entry {
            key,
            value: value.to_string(),
            raw: None,
        });
        // The old last line now needs its newline, and so does ours.
        self.no_final_newline = false;
    }

    /// Append an entry even if the key exists (multi-valued keys).
    pub fn append(&mut self, key: &str, value: &str) {
        let ck = if is_positional(key) {
            // Number it as LXC would at the end of this file.
            self.push(key.to_string(), value);
            let ck = self.canonical_keys().pop().flatten().unwrap_or_default();
            self.lines.pop();
            ck
        } else {
            canonical_key(key).into_owned()
        };
        self.push(ck, value);
    }

    /// Remove every entry of `key`.
    pub fn remove(&mut self, key: &str) {
        let (idx, keys) = self.find(key);
        if self.touches_positional(&idx) {
            self.normalize_positional(&keys);
        }
        for &i in idx.iter().rev() {
            self.lines.remove(i);
        }
    }

    /// Rewrite values in place: `f(canonical_key, value)` returns a new value or `None` to keep.
    pub fn rewrite(&mut self, mut f: impl FnMut(&str, &str) -> Option<String>) {
        let keys = self.canonical_keys();
        let mut edits = Vec::new();
        for (i, (line, ck)) in self.lines.iter().zip(&keys).enumerate() {
            if let (Line::Entry { value, .. }, Some(ck)) = (line, ck) {
                if let Some(new) = f(ck, value) {
                    if new != *value {
                        edits.push((i, new));
                    }
                }
            }
        }
        let idx: Vec<usize> = edits.iter().map(|(i, _)| *i).collect();
        if self.touches_positional(&idx) {
            self.normalize_positional(&keys);
        }
        for (i, new) in edits {
            if let Some(ck) = &keys[i] {
                self.lines[i] = Line::Entry {
                    key: ck.clone(),
                    value: new,
                    raw: None,
                };
            }
        }
    }

    /// Write atomically (temp file in the same dir, fsync, rename). Keeps the
    /// mode and owner of an existing file; a new one gets 0640 as LXC's.
    /// Refuses to write through a symlink.
    pub fn save(&self, path: &Path) -> Result<()> {
        let _s = tracing::debug_span!("save config", path = %path.display()).entered();
        crate::store::write_atomic_mode(path, self.to_string().as_bytes(), NEW_CONFIG_MODE)
    }

    /// This file with `lxc.include` files and directories expanded, for
    /// reading the effective values (never written back). Included entries
    /// follow their `lxc.include` line; a directory includes its `*.conf`
    /// files in name order; a relative include is taken from the including
    /// file's directory.
    pub fn load_effective(path: &Path) -> Result<Config> {
        let mut lines = Vec::new();
        expand(path, 0, &mut lines)?;
        Ok(Config {
            lines,
            no_final_newline: false,
        })
    }
}

fn expand(path: &Path, depth: usize, out: &mut Vec<Line>) -> Result<()> {
    const OP: &str = "expand lxc.include";
    if depth > MAX_INCLUDE_DEPTH {
        return Err(err!(
            InvalidConfig,
            OP,
            "includes nested deeper than {MAX_INCLUDE_DEPTH} levels (an include loop?)"
        )
        .at(path));
    }
    let cfg = Config::load(path)?;
    let base = path.parent().unwrap_or(Path::new("/"));
    for line in cfg.lines {
        let include = match &line {
            Line::Entry { key, value, .. } if canonical_key(key) == "lxc.include" => Some(value.clone()),
            _ => None,
        };
        out.push(line);
        let Some(value) = include else { continue };
        if value.is_empty() {
            return Err(err!(InvalidConfig, OP, "empty lxc.include").at(path));
        }
        let target = base.join(&value);
        if target.is_dir() {
            for f in conf_files(&target)? {
                expand(&f, depth + 1, out)?;
            }
        } else {
            expand(&target, depth + 1, out)?;
        }
    }
    Ok(())
}

/// Regular `*.conf` files of `dir`, sorted by name.
fn conf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).ctx("read include directory", dir)? {
        let e = e.ctx("read include directory", dir)?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".conf") || name.len() <= 5 {
            continue;
        }
        let p = e.path();
        if p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

impl std::fmt::Display for Config {
    /// The file text: unchanged lines byte for byte as read.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.lines.len();
        for (i, l) in self.lines.iter().enumerate() {
            match l {
                Line::Entry { raw: Some(raw), .. } => write!(f, "{raw}")?,
                Line::Entry { key, value, raw: None } => write!(f, "{key} = {value}")?,
                Line::Other(s) => write!(f, "{s}")?,
            }
            if i + 1 < n || !self.no_final_newline {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}
