//! LXC's config format: `key = value` lines, comments, blank lines and
//! `lxc.include`. Edits keep unknown keys, order and comments; legacy key
//! names (`lxc.utsname`, `lxc.rootfs`, `lxc.id_map`, ...) are read as their
//! current names and rewritten in place when edited.
//!
//! Parsing then printing gives back the input byte for byte, including a
//! missing final newline. Values are read as LXC reads them: surrounding
//! blanks trimmed, one pair of matching quotes removed.
//!
//! Reading never blocks or loops: a config or included file must be a
//! regular file (opened non-blocking, checked after opening), of at most
//! [`MAX_CONFIG_BYTES`], without NUL bytes or lines over [`MAX_LINE_BYTES`];
//! an include cycle is found by device and inode. [`check_keys`] is the
//! strict read: every key must be one LXC 5.0 knows ([`crate::config_keys`]).
//!
//! Legacy unindexed network keys (`lxc.network.type`, `lxc.network.link`, ...)
//! are positional in LXC 2.0: each `lxc.network.type` starts the next network.
//! They are read as `lxc.net.N.*` with N counted that way; editing any of
//! them rewrites all of them under their indexed names so the meaning stays.

pub use crate::config_keys::{canonical_key, key_known, unknown_key_reason};
use crate::config_keys::{legacy_net, net_key};
use crate::err;
use crate::error::{IoContext, Result};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Nesting limit for `lxc.include` (cycles are caught before it, by file identity).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Largest config file read. LXC maps the whole file; this bounds what one
/// file may make us allocate.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Longest line. LXC's parser has no limit (it walks a mapping of the whole
/// file; LXC 5.0.2 reads a 4 MiB line); this is a generous bound.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Bytes read over all the files of one `lxc.include` expansion.
const MAX_EXPANDED_BYTES: u64 = 64 << 20;

/// Files opened by one `lxc.include` expansion (the same file included
/// twice at every level would otherwise double the work at each level).
const MAX_INCLUDED_FILES: usize = 4096;

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
        check_text(text.as_bytes())?;
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
    /// The file is opened without blocking and must be a regular file (a
    /// symlink to one is followed, as LXC does); a fifo, socket, device or
    /// directory is an `InvalidConfig` error, as are a NUL byte, a line
    /// over [`MAX_LINE_BYTES`] and a file over [`MAX_CONFIG_BYTES`].
    pub fn load(path: &Path) -> Result<Config> {
        Ok(read_config(path)?.0)
    }

    /// Every entry whose key LXC 5.0 refuses ([`key_known`]), as written
    /// (legacy names are not mapped here): `(line number, key, reason)`.
    /// For a config read from one file; [`check_keys`] names included files.
    pub fn unknown_keys(&self) -> Vec<(usize, &str, String)> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l {
                Line::Entry { key, .. } => unknown_key_reason(key).map(|why| (i + 1, key.as_str(), why)),
                Line::Other(_) => None,
            })
            .collect()
    }

    /// Canonical key of every line (`None` for non-entries), legacy
    /// unindexed network keys numbered by position as LXC 2.0 did.
    /// Each line's key under its current name (`None` for a line that is
    /// not an entry), in order, computed as the lines are walked: a
    /// legacy network key without an index is numbered by the `type`
    /// lines before it. Only legacy and renamed keys are allocated.
    fn canonical_iter(&self) -> impl Iterator<Item = Option<Cow<'_, str>>> + '_ {
        let mut net: i64 = -1;
        self.lines.iter().map(move |l| match l {
            Line::Entry { key, .. } => Some(match legacy_net(key) {
                Some((None, sub)) => {
                    if sub == "type" {
                        net += 1;
                    }
                    Cow::Owned(net_key(&net.max(0).to_string(), sub))
                }
                _ => canonical_key(key),
            }),
            Line::Other(_) => None,
        })
    }

    fn canonical_keys(&self) -> Vec<Option<String>> {
        self.canonical_iter().map(|k| k.map(Cow::into_owned)).collect()
    }

    /// Indices of the entries of `key` (current or legacy name), without
    /// the list of every line's key that [`Config::find`] also returns: a
    /// start looks up dozens of keys in a config of dozens of lines.
    fn indices(&self, key: &str) -> Vec<usize> {
        let ck = canonical_key(key);
        self.canonical_iter()
            .enumerate()
            .filter(|(_, k)| k.as_deref() == Some(&*ck))
            .map(|(i, _)| i)
            .collect()
    }

    /// Indices of the entries of `key` (current or legacy name), and every line's key.
    fn find(&self, key: &str) -> (Vec<usize>, Vec<Option<String>>) {
        let keys = self.canonical_keys();
        (self.indices(key), keys)
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
        // The last match kept while walking: no lists built for it (a
        // listing asks each of a thousand configs for several keys).
        let ck = canonical_key(key);
        self.entries().filter(|(k, _)| *k == ck).map(|(_, v)| v).last()
    }

    /// Every value of `key`, in order.
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.indices(key)
            .into_iter()
            .filter_map(|i| match &self.lines[i] {
                Line::Entry { value, .. } => Some(value.as_str()),
                Line::Other(_) => None,
            })
            .collect()
    }

    /// `(canonical key, value)` for every entry, in order.
    pub fn entries(&self) -> impl Iterator<Item = (Cow<'_, str>, &str)> {
        self.canonical_iter()
            .zip(self.lines.iter())
            .filter_map(|(k, l)| match (k, l) {
                (Some(k), Line::Entry { value, .. }) => Some((k, value.as_str())),
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
        crate::durable::write_atomic_mode(path, self.to_string().as_bytes(), NEW_CONFIG_MODE)
    }

    /// This file with `lxc.include` files and directories expanded, for
    /// reading the effective values (never written back). Included entries
    /// follow their `lxc.include` line; a directory includes its `*.conf`
    /// files in name order; a relative include is taken from the including
    /// file's directory. As in LXC, an empty include and a missing
    /// directory include (`dir/`) are skipped; a missing file is `NotFound`.
    ///
    /// Each file is read as [`Config::load`] reads it. A file that includes
    /// itself, directly or through others (the same device and inode on the
    /// include stack), is an `InvalidConfig` error naming the cycle.
    pub fn load_effective(path: &Path) -> Result<Config> {
        Ok(Expansion::run(path)?.config)
    }
}

/// [`Config::load_effective`], then every key checked against the keys
/// LXC 5.0 knows ([`key_known`]): a key LXC refuses (a typo, an LXC 2.x
/// name, an `lxc.conf` key) is an `InvalidConfig` error naming the key, the
/// file it is in and the line, and the file that included that file.
/// This is the check of `lxc-create -f`, `lxc-copy` and the start path.
pub fn check_keys(cfg_path: &Path) -> Result<Config> {
    Ok(check_expansion(cfg_path)?.config)
}

/// [`check_keys`], and from the same read the file's own lines as
/// [`Config::load`] gives them (includes not expanded): a start needs both
/// and reads the files once.
pub fn check_keys_split(cfg_path: &Path) -> Result<(Config, Config)> {
    let x = check_expansion(cfg_path)?;
    let own = Config {
        lines: x
            .config
            .lines
            .iter()
            .zip(&x.origins)
            .filter(|(_, o)| o.file == 0)
            .map(|(l, _)| l.clone())
            .collect(),
        no_final_newline: x.top_no_final_newline,
    };
    Ok((x.config, own))
}

fn check_expansion(cfg_path: &Path) -> Result<Expansion> {
    let _s = tracing::debug_span!("check config keys", path = %cfg_path.display()).entered();
    let x = Expansion::run(cfg_path)?;
    for (line, origin) in x.config.lines.iter().zip(&x.origins) {
        let Line::Entry { key, .. } = line else { continue };
        if let Some(why) = unknown_key_reason(key) {
            let file = &x.files[origin.file];
            let from = match origin.from {
                Some(f) => format!(" (included from {})", x.files[f].display()),
                None => String::new(),
            };
            return Err(err!(InvalidConfig, "check config", "line {}: {why}{from}", origin.line).at(file));
        }
    }
    Ok(x)
}

/// NUL bytes, over-long lines and bad UTF-8, named by line.
fn check_text(b: &[u8]) -> Result<()> {
    const OP: &str = "parse config";
    for (n, line) in b.split(|&c| c == b'\n').enumerate() {
        if line.len() > MAX_LINE_BYTES {
            return Err(err!(
                InvalidConfig,
                OP,
                "line {}: longer than {} bytes ({} bytes)",
                n + 1,
                MAX_LINE_BYTES,
                line.len()
            ));
        }
        if line.contains(&0) {
            return Err(err!(InvalidConfig, OP, "line {}: NUL byte", n + 1));
        }
        if std::str::from_utf8(line).is_err() {
            return Err(err!(InvalidConfig, OP, "line {}: not valid UTF-8", n + 1));
        }
    }
    Ok(())
}

/// What a config path is, for an error: `None` for a regular file.
fn not_regular(ft: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_fifo() {
        Some("a fifo")
    } else if ft.is_socket() {
        Some("a socket")
    } else if ft.is_block_device() {
        Some("a block device")
    } else if ft.is_char_device() {
        Some("a character device")
    } else {
        Some("a special file")
    }
}

/// Identity of a file read: device and inode.
type FileId = (u64, u64);

/// Read and parse one config file safely: never blocks (a fifo, socket,
/// device or directory is refused before and after opening), never reads
/// more than [`MAX_CONFIG_BYTES`].
fn read_config(path: &Path) -> Result<(Config, FileId, u64)> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    const OP: &str = "read config";
    // Looked at first so that a device is never opened.
    let md = std::fs::metadata(path).ctx(OP, path)?;
    if let Some(what) = not_regular(md.file_type()) {
        return Err(err!(InvalidConfig, OP, "is {what}, not a config file").at(path));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .ctx(OP, path)?;
    // And again on what was opened: the path may have changed in between.
    let md = f.metadata().ctx(OP, path)?;
    if let Some(what) = not_regular(md.file_type()) {
        return Err(err!(InvalidConfig, OP, "is {what}, not a config file").at(path));
    }
    let too_big = || {
        err!(
            InvalidConfig,
            OP,
            "larger than {} MiB: not a config file",
            MAX_CONFIG_BYTES >> 20
        )
        .at(path)
    };
    if md.len() > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes).ctx(OP, path)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    check_text(&bytes).map_err(|e| e.at(path))?;
    let n = bytes.len() as u64;
    let text = String::from_utf8(bytes).map_err(|_| err!(InvalidConfig, OP, "not valid UTF-8").at(path))?;
    let cfg = Config::parse(&text).map_err(|e| e.at(path))?;
    Ok((cfg, (md.dev(), md.ino()), n))
}

/// Where an expanded line came from: its file, its line number there, and
/// the file that included that file.
#[derive(Debug, Clone, Copy)]
struct Origin {
    file: usize,
    line: usize,
    from: Option<usize>,
}

/// One `lxc.include` expansion: the lines, where each came from, and the
/// bounds that keep it finite.
struct Expansion {
    config: Config,
    origins: Vec<Origin>,
    files: Vec<PathBuf>,
    /// The files being expanded, outermost first: (identity, index in `files`).
    stack: Vec<(FileId, usize)>,
    bytes: u64,
    /// The top file did not end with a newline.
    top_no_final_newline: bool,
}

impl Expansion {
    fn run(path: &Path) -> Result<Expansion> {
        let mut x = Expansion {
            config: Config::default(),
            origins: Vec::new(),
            files: Vec::new(),
            stack: Vec::new(),
            bytes: 0,
            top_no_final_newline: false,
        };
        x.expand(path)?;
        Ok(x)
    }

    fn expand(&mut self, path: &Path) -> Result<()> {
        const OP: &str = "expand lxc.include";
        let from = self.stack.last().map(|&(_, i)| i);
        let included_from = || match from {
            Some(i) => format!(" (included from {})", self.files[i].display()),
            None => String::new(),
        };
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            return Err(err!(
                InvalidConfig,
                OP,
                "includes nested deeper than {MAX_INCLUDE_DEPTH} levels{}",
                included_from()
            )
            .at(path));
        }
        if self.files.len() >= MAX_INCLUDED_FILES {
            return Err(err!(
                InvalidConfig,
                OP,
                "more than {MAX_INCLUDED_FILES} files included{}",
                included_from()
            )
            .at(path));
        }
        let (cfg, id, n) = read_config(path).map_err(|mut e| {
            e.msg.push_str(&included_from());
            e
        })?;
        if let Some(pos) = self.stack.iter().position(|(s, _)| *s == id) {
            let mut chain: Vec<String> = self.stack[pos..]
                .iter()
                .map(|&(_, i)| self.files[i].display().to_string())
                .collect();
            chain.push(path.display().to_string());
            return Err(err!(InvalidConfig, OP, "lxc.include cycle: {}", chain.join(" -> ")).at(path));
        }
        self.bytes += n;
        if self.bytes > MAX_EXPANDED_BYTES {
            return Err(err!(
                InvalidConfig,
                OP,
                "includes add up to more than {} MiB{}",
                MAX_EXPANDED_BYTES >> 20,
                included_from()
            )
            .at(path));
        }
        let me = self.files.len();
        if me == 0 {
            self.top_no_final_newline = cfg.no_final_newline;
        }
        self.files.push(path.to_path_buf());
        self.stack.push((id, me));
        let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        for (i, line) in cfg.lines.into_iter().enumerate() {
            let include = match &line {
                Line::Entry { key, value, .. } if key == "lxc.include" => Some(value.clone()),
                _ => None,
            };
            self.config.lines.push(line);
            self.origins.push(Origin {
                file: me,
                line: i + 1,
                from,
            });
            let Some(value) = include else { continue };
            if value.is_empty() {
                continue; // LXC reads an empty include as "clear", not an error
            }
            let target = base.join(&value);
            // A directory include (trailing '/') that does not exist is skipped
            // as LXC does: its own userns.conf includes a usually absent
            // userns.conf.d/.
            if value.ends_with('/') && !target.exists() {
                continue;
            }
            if target.is_dir() {
                for f in conf_files(&target)? {
                    self.expand(&f)?;
                }
            } else {
                self.expand(&target)?;
            }
        }
        self.stack.pop();
        Ok(())
    }
}

/// The `*.conf` entries of `dir` that are not directories, sorted by name
/// (a fifo or device among them is refused when it is read).
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
        if !p.is_dir() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `value` written bare would read back as something else.
fn needs_quotes(value: &str) -> bool {
    let b = value.as_bytes();
    value.trim() != value || (b.len() > 1 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0])
}

impl std::fmt::Display for Config {
    /// The file text: unchanged lines byte for byte as read.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.lines.len();
        for (i, l) in self.lines.iter().enumerate() {
            match l {
                Line::Entry { raw: Some(raw), .. } => write!(f, "{raw}")?,
                // Quoted when reading would change it (surrounding blanks, or
                // a pair of quotes of its own that reading would strip).
                Line::Entry { key, value, raw: None } if needs_quotes(value) => write!(f, "{key} = \"{value}\"")?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::os::unix::fs::PermissionsExt;

    /// A config as found in the wild: LXC 2.0 legacy keys, two positional
    /// networks, an indexed one, mount entries, quotes, odd spacing, comments.
    const REALISTIC: &str = "\
# Template used to create this container: /usr/share/lxc/templates/lxc-download
# Parameters passed to the template: -d debian -r bookworm -a amd64

# Distribution configuration
lxc.include = /usr/share/lxc/config/common.conf
lxc.arch = linux64

  # Container specific configuration
lxc.rootfs = /var/lib/lxc/web/rootfs
lxc.rootfs.backend = dir
lxc.utsname = web
lxc.id_map = u 0 100000 65536
lxc.id_map = g 0 100000 65536
lxc.aa_profile=unconfined
lxc.tty = 4
lxc.pts =1024
lxc.mount.entry = /srv/data srv/data none bind,create=dir 0 0
lxc.mount.entry = proc proc proc nodev,noexec,nosuid 0 0
lxc.mount = /var/lib/lxc/web/fstab
lxc.limit.nofile = 1024 4096
lxc.cgroup.memory.limit_in_bytes = 512M

# Network configuration
lxc.network.type = veth
lxc.network.link = lxcbr0
lxc.network.flags = up
lxc.network.hwaddr = 00:16:3e:aa:bb:cc
lxc.network.ipv4 = 10.0.3.5/24
lxc.network.ipv4.gateway = auto

lxc.network.type = veth
lxc.network.link = br1
lxc.network.hwaddr = 00:16:3e:dd:ee:ff
lxc.network.7.type = empty
lxc.hook.pre-start = \"/var/lib/lxc/web/hook.sh\"
\tlxc.environment = FOO=bar=baz
lxc.console.logfile = /var/log/web.console
lxc.log.level =
";

    #[test]
    fn get_is_the_last_of_get_all() {
        let c = Config::parse(REALISTIC).unwrap();
        for key in [
            "lxc.rootfs.path",
            "lxc.idmap",
            "lxc.uts.name",
            "lxc.net.0.link",
            "lxc.net.1.link",
            "lxc.net.1.type",
            "lxc.network.link",
            "lxc.prlimit.nofile",
            "lxc.log.level",
            "lxc.start.auto",
        ] {
            assert_eq!(c.get(key), c.get_all(key).last().copied(), "{key}");
        }
        assert_eq!(c.get("lxc.net.1.link"), Some("br1"));
        assert_eq!(c.get("lxc.idmap"), Some("g 0 100000 65536"));
    }

    #[test]
    fn realistic_config_round_trips_byte_for_byte() {
        let c = Config::parse(REALISTIC).unwrap();
        assert_eq!(c.to_string(), REALISTIC);
        let no_nl = REALISTIC.trim_end_matches('\n');
        assert_eq!(Config::parse(no_nl).unwrap().to_string(), no_nl);
        let crlf = REALISTIC.replace('\n', "\r\n");
        let c2 = Config::parse(&crlf).unwrap();
        assert_eq!(c2.to_string(), crlf);
        assert_eq!(c2.get("lxc.uts.name"), Some("web"));
        for t in ["", "\n", "\n\n", "# only a comment", "lxc.a = b", "lxc.a = b\n\n"] {
            assert_eq!(Config::parse(t).unwrap().to_string(), t, "{t:?}");
        }
    }

    #[test]
    fn legacy_keys_read_under_current_names() {
        let c = Config::parse(REALISTIC).unwrap();
        assert_eq!(c.get("lxc.uts.name"), Some("web"));
        assert_eq!(c.get("lxc.utsname"), Some("web"));
        assert_eq!(c.get("lxc.rootfs.path"), Some("/var/lib/lxc/web/rootfs"));
        assert_eq!(c.get("lxc.rootfs.backend"), Some("dir"));
        assert_eq!(c.get_all("lxc.idmap"), ["u 0 100000 65536", "g 0 100000 65536"]);
        assert_eq!(c.get("lxc.apparmor.profile"), Some("unconfined"));
        assert_eq!(c.get("lxc.tty.max"), Some("4"));
        assert_eq!(c.get("lxc.pty.max"), Some("1024"));
        assert_eq!(c.get("lxc.mount.fstab"), Some("/var/lib/lxc/web/fstab"));
        assert_eq!(c.get_all("lxc.mount.entry").len(), 2);
        assert_eq!(c.get("lxc.prlimit.nofile"), Some("1024 4096"));
        assert_eq!(
            c.get("lxc.hook.pre-start"),
            Some("/var/lib/lxc/web/hook.sh"),
            "quotes stripped"
        );
        assert_eq!(c.get("lxc.environment"), Some("FOO=bar=baz"), "split at the first '='");
        assert_eq!(c.get("lxc.console.logfile"), Some("/var/log/web.console"));
        assert_eq!(c.get("lxc.log.level"), Some(""));
        assert_eq!(c.get("lxc.nope"), None);
        // Positional networks: each lxc.network.type starts the next one.
        assert_eq!(c.get("lxc.net.0.link"), Some("lxcbr0"));
        assert_eq!(c.get("lxc.net.0.ipv4.address"), Some("10.0.3.5/24"));
        assert_eq!(c.get("lxc.net.0.ipv4.gateway"), Some("auto"));
        assert_eq!(c.get("lxc.net.1.link"), Some("br1"));
        assert_eq!(c.get("lxc.net.1.hwaddr"), Some("00:16:3e:dd:ee:ff"));
        assert_eq!(c.get("lxc.net.7.type"), Some("empty"));
        let keys: Vec<String> = c.entries().map(|(k, _)| k.into_owned()).collect();
        assert!(keys.contains(&"lxc.net.1.type".to_string()));
        assert!(!keys.iter().any(|k| k.starts_with("lxc.network")), "{keys:?}");
    }

    #[test]
    fn canonical_key_table() {
        for (old, new) in [
            ("lxc.utsname", "lxc.uts.name"),
            ("lxc.rootfs", "lxc.rootfs.path"),
            ("lxc.rootfs.backend", "lxc.rootfs.backend"),
            ("lxc.id_map", "lxc.idmap"),
            ("lxc.network.0.type", "lxc.net.0.type"),
            ("lxc.network.12.veth.pair", "lxc.net.12.veth.pair"),
            ("lxc.network.type", "lxc.net.0.type"),
            ("lxc.network.hwaddr", "lxc.net.0.hwaddr"),
            ("lxc.network.ipv4", "lxc.net.0.ipv4.address"),
            ("lxc.network.ipv6", "lxc.net.0.ipv6.address"),
            ("lxc.network.1.ipv4", "lxc.net.1.ipv4.address"),
            ("lxc.network.ipv4.gateway", "lxc.net.0.ipv4.gateway"),
            ("lxc.network.ipv6.gateway", "lxc.net.0.ipv6.gateway"),
            ("lxc.network", "lxc.net"),
            ("lxc.pts", "lxc.pty.max"),
            ("lxc.tty", "lxc.tty.max"),
            ("lxc.devttydir", "lxc.tty.dir"),
            ("lxc.aa_profile", "lxc.apparmor.profile"),
            ("lxc.aa_allow_incomplete", "lxc.apparmor.allow_incomplete"),
            ("lxc.se_context", "lxc.selinux.context"),
            ("lxc.seccomp", "lxc.seccomp.profile"),
            ("lxc.console", "lxc.console.path"),
            ("lxc.console.logfile", "lxc.console.logfile"),
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
            ("lxc.limit.nofile", "lxc.prlimit.nofile"),
            ("lxc.mount", "lxc.mount.fstab"),
            ("lxc.mount.entry", "lxc.mount.entry"),
            ("lxc.ephemeral", "lxc.ephemeral"),
            ("lxc.uts.name", "lxc.uts.name"),
            ("lxc.tty.max", "lxc.tty.max"),
            ("lxc.net.0.ipv4.address", "lxc.net.0.ipv4.address"),
        ] {
            assert_eq!(canonical_key(old), new, "{old}");
        }
    }

    #[test]
    fn set_replaces_last_removes_duplicates_and_renames() {
        let mut c = Config::parse("# head\nlxc.utsname = a\nlxc.arch = x\nlxc.uts.name = b\n# tail\n").unwrap();
        c.set("lxc.uts.name", "new");
        assert_eq!(c.to_string(), "# head\nlxc.arch = x\nlxc.uts.name = new\n# tail\n");
        c.set("lxc.ephemeral", "1");
        assert_eq!(c.get("lxc.ephemeral"), Some("1"));
        assert!(c.to_string().ends_with("# tail\nlxc.ephemeral = 1\n"));
        // A legacy line is rewritten under its current name, in place.
        let mut c = Config::parse("lxc.rootfs = /a\nlxc.arch = x\n").unwrap();
        c.set("lxc.rootfs.path", "dir:/b");
        assert_eq!(c.to_string(), "lxc.rootfs.path = dir:/b\nlxc.arch = x\n");
    }

    #[test]
    fn set_same_value_keeps_bytes() {
        let text = "lxc.uts.name=web   \n";
        let mut c = Config::parse(text).unwrap();
        c.set("lxc.uts.name", "web");
        assert_eq!(c.to_string(), text);
    }

    #[test]
    fn append_after_missing_final_newline() {
        let mut c = Config::parse("lxc.arch = x").unwrap();
        c.append("lxc.mount.entry", "a b none bind 0 0");
        c.append("lxc.mount.entry", "c d none bind 0 0");
        assert_eq!(
            c.to_string(),
            "lxc.arch = x\nlxc.mount.entry = a b none bind 0 0\nlxc.mount.entry = c d none bind 0 0\n"
        );
        let mut c = Config::parse("lxc.network.type = veth\nlxc.network.type = veth\n").unwrap();
        c.append("lxc.network.type", "empty");
        assert_eq!(c.get("lxc.net.2.type"), Some("empty"));
        assert!(c.to_string().ends_with("lxc.net.2.type = empty\n"));
    }

    #[test]
    fn remove_matches_legacy_names() {
        let mut c = Config::parse("lxc.id_map = u 0 1 2\n# keep\nlxc.idmap = g 0 1 2\nlxc.arch = x\n").unwrap();
        c.remove("lxc.idmap");
        assert_eq!(c.to_string(), "# keep\nlxc.arch = x\n");
        c.remove("lxc.absent");
        assert_eq!(c.to_string(), "# keep\nlxc.arch = x\n");
    }

    #[test]
    fn editing_a_positional_network_keeps_the_numbering() {
        let mut c = Config::parse(REALISTIC).unwrap();
        let mut seen = Vec::new();
        c.rewrite(|k, _| {
            if k.ends_with(".hwaddr") {
                seen.push(k.to_string());
                return (k == "lxc.net.0.hwaddr").then(|| "00:16:3e:11:22:33".to_string());
            }
            None
        });
        assert_eq!(seen, ["lxc.net.0.hwaddr", "lxc.net.1.hwaddr"]);
        let text = c.to_string();
        assert!(text.contains("\nlxc.net.0.hwaddr = 00:16:3e:11:22:33\n"), "{text}");
        assert!(text.contains("\nlxc.net.1.link = br1\n"), "{text}");
        assert!(!text.contains("lxc.network.type"), "{text}");
        // Lines that are not network lines stay as written.
        assert!(text.contains("\nlxc.aa_profile=unconfined\n"));
        let again = Config::parse(&text).unwrap();
        assert_eq!(again.get("lxc.net.1.hwaddr"), Some("00:16:3e:dd:ee:ff"));
        assert_eq!(again.get("lxc.net.0.hwaddr"), Some("00:16:3e:11:22:33"));
        assert_eq!(again.get("lxc.net.0.link"), Some("lxcbr0"));
        // Removing the first network's type must not renumber the second.
        let mut c = Config::parse(REALISTIC).unwrap();
        c.remove("lxc.net.0.type");
        assert_eq!(c.get("lxc.net.1.link"), Some("br1"));
        let again = Config::parse(&c.to_string()).unwrap();
        assert_eq!(again.get("lxc.net.1.link"), Some("br1"));
        assert_eq!(again.get("lxc.net.0.type"), None);
    }

    #[test]
    fn rewrite_leaves_unchanged_values_alone() {
        let mut c = Config::parse(REALISTIC).unwrap();
        c.rewrite(|_, v| Some(v.to_string()));
        assert_eq!(c.to_string(), REALISTIC);
        c.rewrite(|k, v| (k == "lxc.mount.entry").then(|| v.replace("/srv/data", "/srv/other")));
        let t = c.to_string();
        assert!(t.contains("\nlxc.mount.entry = /srv/other srv/data none bind,create=dir 0 0\n"));
        assert!(t.contains("\nlxc.rootfs = /var/lib/lxc/web/rootfs\n"));
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, line) in [
            ("lxc.arch = x\nno equals sign here\n", 2),
            ("# c\n\nfoo = bar\n", 3),
            ("lxc.a = 1\n lxc.b c = 2\n", 2),
            ("= value\n", 1),
            ("lxc. = x\n", 1),
            ("lxc.a = 1\nlxc.b = 2\nLXC.C = 3", 3),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{text:?}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("line {line}:")), "{msg}");
            assert!(!msg.contains('\n'), "one line: {msg:?}");
        }
        let e = Config::parse("lxc.a = 1\nbogus\n").unwrap_err();
        assert!(e.to_string().contains("\"bogus\""), "{e}");
    }

    #[test]
    fn load_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config");
        std::fs::write(&p, "lxc.a = 1\nbroken\n").unwrap();
        let e = Config::load(&p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        std::fs::write(&p, b"lxc.a = \xff\n").unwrap();
        assert_eq!(Config::load(&p).unwrap_err().kind(), ErrorKind::InvalidConfig);
        let e = Config::load(&d.path().join("absent")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn dir_names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn save_is_atomic_and_keeps_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config");
        let mut c = Config::parse(REALISTIC).unwrap();
        c.save(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), REALISTIC);
        assert_eq!(mode(&p), 0o640, "new configs are 0640 as LXC writes them");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        c.set("lxc.uts.name", "other");
        c.save(&p).unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(Config::load(&p).unwrap().get("lxc.uts.name"), Some("other"));
        assert_eq!(dir_names(d.path()), ["config"], "no temp file left behind");
    }

    #[test]
    fn save_refuses_symlink() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("outside");
        std::fs::write(&target, "precious\n").unwrap();
        let link = d.path().join("config");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = Config::parse("lxc.a = 1\n").unwrap().save(&link).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(dir_names(d.path()), ["config", "outside"]);
    }

    #[test]
    fn includes_files_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("conf.d")).unwrap();
        std::fs::write(root.join("conf.d/20-b.conf"), "lxc.b = 2\nlxc.x = from-b\n").unwrap();
        std::fs::write(root.join("conf.d/10-a.conf"), "lxc.a = 1\nlxc.x = from-a\n").unwrap();
        std::fs::write(root.join("conf.d/README"), "not a config\n").unwrap();
        std::fs::write(root.join("conf.d/.hidden.conf"), "broken\n").unwrap();
        std::fs::write(root.join("common.conf"), "lxc.arch = linux64\nlxc.include = conf.d\n").unwrap();
        let main = root.join("config");
        let text = format!(
            "lxc.include = {}\nlxc.utsname = c\nlxc.x = main\n",
            root.join("common.conf").display()
        );
        std::fs::write(&main, &text).unwrap();
        let eff = Config::load_effective(&main).unwrap();
        assert_eq!(eff.get("lxc.arch"), Some("linux64"));
        assert_eq!(eff.get("lxc.a"), Some("1"));
        assert_eq!(eff.get("lxc.b"), Some("2"));
        assert_eq!(eff.get_all("lxc.x"), ["from-a", "from-b", "main"]);
        assert_eq!(eff.get("lxc.uts.name"), Some("c"));
        // The file itself is untouched by reading it effectively.
        assert_eq!(Config::load(&main).unwrap().get("lxc.a"), None);
        assert_eq!(std::fs::read_to_string(&main).unwrap(), text);
    }

    #[test]
    fn include_errors() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.conf");
        let b = d.path().join("b.conf");
        std::fs::write(&a, "lxc.include = b.conf\n").unwrap();
        std::fs::write(&b, "lxc.include = a.conf\n").unwrap();
        let e = Config::load_effective(&a).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.to_string().contains("cycle"), "{e}");
        std::fs::write(&b, "lxc.include = missing.conf\n").unwrap();
        assert_eq!(Config::load_effective(&a).unwrap_err().kind(), ErrorKind::NotFound);
        std::fs::write(&b, "lxc.ok = 1\nbad line\n").unwrap();
        let e = Config::load_effective(&a).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.to_string().contains("b.conf"), "names the included file: {e}");
        // Tolerated as LXC does: an empty include, an absent directory include.
        std::fs::write(&b, "lxc.include =\nlxc.include = absent.d/\nlxc.ok = 1\n").unwrap();
        assert_eq!(Config::load_effective(&a).unwrap().get("lxc.ok"), Some("1"));
        std::fs::write(&b, "lxc.include = absent.d\n").unwrap();
        assert_eq!(Config::load_effective(&a).unwrap_err().kind(), ErrorKind::NotFound);
    }

    /// Runs `f` on another thread; panics if it has not returned within 10 s.
    fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("config read blocked")
    }

    fn one_line(e: &crate::Error) -> String {
        let m = e.to_string();
        assert!(!m.contains('\n'), "one line: {m:?}");
        m
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo.conf");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let sock = d.path().join("sock.conf");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let main = d.path().join("config");
        for (target, what) in [
            (fifo.clone(), "a fifo"),
            (sock.clone(), "a socket"),
            (PathBuf::from("/dev/null"), "a character device"),
            (d.path().to_path_buf(), "a directory"),
        ] {
            // Read directly, and through an include.
            let t = target.clone();
            let e = within_10s(move || Config::load(&t).unwrap_err());
            assert_eq!(e.kind(), ErrorKind::InvalidConfig);
            let m = one_line(&e);
            assert!(m.contains(what) && m.contains(&target.display().to_string()), "{m}");
            if target.is_dir() {
                continue; // a directory include is a directory of *.conf files
            }
            std::fs::write(&main, format!("lxc.uts.name = a\nlxc.include = {}\n", target.display())).unwrap();
            let m2 = main.clone();
            let e = within_10s(move || Config::load_effective(&m2).unwrap_err());
            let m = one_line(&e);
            assert!(m.contains(what) && m.contains(&target.display().to_string()), "{m}");
            assert!(m.contains(&format!("included from {}", main.display())), "{m}");
            let m2 = main.clone();
            within_10s(move || check_keys(&m2).unwrap_err());
        }
        // A symlink to a config is followed; a symlink to a fifo is refused.
        std::fs::write(d.path().join("real.conf"), "lxc.arch = x86_64\n").unwrap();
        std::os::unix::fs::symlink("real.conf", d.path().join("link.conf")).unwrap();
        std::os::unix::fs::symlink("fifo.conf", d.path().join("fifolink.conf")).unwrap();
        std::fs::write(&main, "lxc.include = link.conf\n").unwrap();
        assert_eq!(Config::load_effective(&main).unwrap().get("lxc.arch"), Some("x86_64"));
        std::fs::write(&main, "lxc.include = fifolink.conf\n").unwrap();
        let m2 = main.clone();
        let e = within_10s(move || Config::load_effective(&m2).unwrap_err());
        assert!(one_line(&e).contains("a fifo"), "{e}");
        // A fifo named *.conf in an included directory.
        std::fs::create_dir(d.path().join("conf.d")).unwrap();
        nix::unistd::mkfifo(
            &d.path().join("conf.d/10-x.conf"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::fs::write(&main, "lxc.include = conf.d\n").unwrap();
        let m2 = main.clone();
        let e = within_10s(move || Config::load_effective(&m2).unwrap_err());
        assert!(one_line(&e).contains("10-x.conf"), "{e}");
    }

    #[test]
    fn include_cycles_are_named() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.conf");
        let b = d.path().join("b.conf");
        // Itself, by relative and absolute name, and through a symlink.
        for body in [
            "lxc.include = a.conf\n".to_string(),
            format!("lxc.include = {}\n", a.display()),
            "lxc.include = alias.conf\n".to_string(),
        ] {
            let _ = std::fs::remove_file(d.path().join("alias.conf"));
            std::os::unix::fs::symlink("a.conf", d.path().join("alias.conf")).unwrap();
            std::fs::write(&a, &body).unwrap();
            let e = Config::load_effective(&a).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig);
            let m = one_line(&e);
            assert!(m.contains("cycle") && m.contains("a.conf"), "{m}");
        }
        std::fs::write(&a, "lxc.arch = x86_64\nlxc.include = b.conf\n").unwrap();
        std::fs::write(&b, "lxc.include = a.conf\n").unwrap();
        let m = one_line(&check_keys(&a).unwrap_err());
        let (ad, bd) = (a.display().to_string(), b.display().to_string());
        assert!(m.contains(&format!("{ad} -> {bd} -> {ad}")), "{m}");
        // The same file twice (not nested) is fine, as in LXC.
        let c = d.path().join("c.conf");
        std::fs::write(&c, "lxc.cap.drop = sys_time\n").unwrap();
        std::fs::write(&b, "lxc.include = c.conf\n").unwrap();
        std::fs::write(&a, "lxc.include = c.conf\nlxc.include = b.conf\nlxc.include = c.conf\n").unwrap();
        assert_eq!(Config::load_effective(&a).unwrap().get_all("lxc.cap.drop").len(), 3);
        // Doubling at every level is bounded.
        for i in 0..16 {
            let next = format!("l{}.conf", i + 1);
            std::fs::write(
                d.path().join(format!("l{i}.conf")),
                format!("lxc.include = {next}\nlxc.include = {next}\n"),
            )
            .unwrap();
        }
        std::fs::write(d.path().join("l16.conf"), "lxc.arch = x86_64\n").unwrap();
        let e = Config::load_effective(&d.path().join("l0.conf")).unwrap_err();
        assert!(one_line(&e).contains("files included"), "{e}");
    }

    #[test]
    fn nul_long_lines_and_huge_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config");
        let main = d.path().join("main");
        std::fs::write(&main, "lxc.include = config\n").unwrap();
        let long = format!("lxc.environment = A={}\n", "a".repeat(MAX_LINE_BYTES));
        for (bytes, what) in [
            (b"lxc.arch = x86_64\nlxc.uts.name = a\0b\n".to_vec(), "line 2: NUL byte"),
            (b"\0".to_vec(), "line 1: NUL byte"),
            (format!("# c\n{long}").into_bytes(), "line 2: longer than"),
            (
                b"lxc.arch = x\nlxc.uts.name = \xff\n".to_vec(),
                "line 2: not valid UTF-8",
            ),
        ] {
            std::fs::write(&p, &bytes).unwrap();
            for e in [
                Config::load(&p).unwrap_err(),
                Config::load_effective(&main).unwrap_err(),
                check_keys(&main).unwrap_err(),
            ] {
                assert_eq!(e.kind(), ErrorKind::InvalidConfig);
                let m = one_line(&e);
                assert!(m.contains(what) && m.contains(&p.display().to_string()), "{what}: {m}");
            }
        }
        // A line just under the bound is fine.
        std::fs::write(&p, format!("lxc.environment = A={}\n", "a".repeat(MAX_LINE_BYTES - 40))).unwrap();
        Config::load(&p).unwrap();
        // A huge (sparse) file is refused before it is read.
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(MAX_CONFIG_BYTES + 1).unwrap();
        let e = Config::load(&p).unwrap_err();
        assert!(one_line(&e).contains("larger than 16 MiB"), "{e}");
        let e = check_keys(&main).unwrap_err();
        assert!(one_line(&e).contains("larger than 16 MiB"), "{e}");
        assert!(Config::parse("lxc.a = \0\n").is_err());
    }

    #[test]
    fn check_keys_names_key_file_and_includer() {
        let d = tempfile::tempdir().unwrap();
        let main = d.path().join("config");
        let inc = d.path().join("inc.conf");
        std::fs::write(&inc, "# x\nlxc.cap.dorp = sys_time\n").unwrap();
        std::fs::write(&main, "lxc.uts.name = a\nlxc.include = inc.conf\n").unwrap();
        let e = check_keys(&main).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        let m = one_line(&e);
        assert!(m.contains("\"lxc.cap.dorp\""), "{m}");
        assert!(m.contains(&format!("{}: line 2:", inc.display())), "{m}");
        assert!(m.contains(&format!("included from {}", main.display())), "{m}");
        // Legacy names are refused as LXC 5 refuses them, with the new name.
        std::fs::write(&main, "lxc.utsname = a\n").unwrap();
        let m = one_line(&check_keys(&main).unwrap_err());
        assert!(
            m.contains("lxc.utsname") && m.contains("lxc.uts.name") && !m.contains("included"),
            "{m}"
        );
        // Known keys pass, and the expansion is returned.
        std::fs::write(&inc, "lxc.cap.drop = sys_time\n").unwrap();
        std::fs::write(
            &main,
            "lxc.uts.name = a\nlxc.include = inc.conf\nlxc.net.0.type = empty\n",
        )
        .unwrap();
        let c = check_keys(&main).unwrap();
        assert_eq!(c.get("lxc.cap.drop"), Some("sys_time"));
        // The split read gives the same expansion and the file's own lines
        // as a plain load of it, byte for byte (no final newline kept too).
        std::fs::write(
            &main,
            "lxc.uts.name = a\nlxc.include = inc.conf\n# end\nlxc.net.0.type = empty",
        )
        .unwrap();
        let (eff, own) = check_keys_split(&main).unwrap();
        assert_eq!(eff, check_keys(&main).unwrap());
        assert_eq!(own, Config::load(&main).unwrap());
        assert_eq!(own.to_string(), std::fs::read_to_string(&main).unwrap());
        assert_eq!(own.get("lxc.cap.drop"), None);
        assert_eq!(eff.get("lxc.cap.drop"), Some("sys_time"));
        let c = Config::parse("# c\nlxc.arch = x86_64\nlxc.utsname = a\nlxc.cap.dorp = x\n").unwrap();
        let bad: Vec<(usize, &str)> = c.unknown_keys().into_iter().map(|(n, k, _)| (n, k)).collect();
        assert_eq!(bad, [(3, "lxc.utsname"), (4, "lxc.cap.dorp")]);
        // Loading without the check still reads unknown and legacy keys.
        std::fs::write(&main, "lxc.utsname = a\nlxc.bogus = 1\n").unwrap();
        assert_eq!(Config::load_effective(&main).unwrap().get("lxc.uts.name"), Some("a"));
    }

    #[test]
    fn lxc_shipped_configs_pass_the_key_check() {
        let dir = Path::new("/usr/share/lxc/config");
        let Ok(rd) = std::fs::read_dir(dir) else {
            eprintln!("skipped: no {}", dir.display());
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "conf") && p.is_file() {
                check_keys(&p).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    #[test]
    fn lxc_shipped_configs_parse_and_round_trip() {
        let dir = Path::new("/usr/share/lxc/config");
        let Ok(rd) = std::fs::read_dir(dir) else {
            eprintln!("skipped: no {}", dir.display());
            return;
        };
        let mut n = 0;
        for e in rd {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "conf") && p.is_file() {
                let text = std::fs::read_to_string(&p).unwrap();
                let c = Config::load(&p).unwrap();
                assert_eq!(c.to_string(), text, "{}", p.display());
                Config::load_effective(&p).unwrap();
                n += 1;
            }
        }
        assert!(n > 0);
    }

    /// Generated configs (a fixed pseudo-random sequence): printing what was
    /// parsed gives the input back, and `set` then re-parse reads the value.
    #[test]
    fn generated_configs_round_trip() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let keys = [
            "lxc.utsname",
            "lxc.uts.name",
            "lxc.rootfs",
            "lxc.mount.entry",
            "lxc.network.type",
            "lxc.network.link",
            "lxc.network.1.hwaddr",
            "lxc.net.0.ipv4.address",
            "lxc.cgroup2.memory.max",
            "lxc.hook.clone",
        ];
        let values = [
            "",
            "x",
            "a b  c",
            "\"quoted\"",
            "'q'",
            "k=v",
            "/p/with # hash",
            "  pad  ",
        ];
        let spaces = ["", " ", "  ", "\t", " \t"];
        for _ in 0..400 {
            let mut text = String::new();
            for _ in 0..next(12) {
                match next(4) {
                    0 => text.push_str(&format!("{}# comment {}", spaces[next(5)], next(100))),
                    1 => text.push_str(spaces[next(5)]),
                    _ => text.push_str(&format!(
                        "{}{}{}={}{}{}",
                        spaces[next(5)],
                        keys[next(keys.len())],
                        spaces[next(5)],
                        spaces[next(5)],
                        values[next(values.len())],
                        spaces[next(5)]
                    )),
                }
                text.push('\n');
            }
            if next(3) == 0 {
                text.pop();
            }
            let mut c = Config::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(c.to_string(), text);
            let k = keys[next(keys.len())];
            c.set(k, "new value");
            let again = Config::parse(&c.to_string()).unwrap();
            assert_eq!(again.get(k), Some("new value"), "{text:?}");
            assert_eq!(again.get_all(k).len(), 1, "{text:?}");
            // Every other key reads as before.
            for other in keys {
                if canonical_key(other) != canonical_key(k) && !is_positional(other) {
                    assert_eq!(
                        again.get(other),
                        Config::parse(&text).unwrap().get(other),
                        "{other} in {text:?}"
                    );
                }
            }
        }
    }

    /// Every key in LXC's own config files (installed with LXC) is known.
    #[test]
    fn lxc_shipped_config_keys_are_known() {
        let dir = std::path::Path::new("/usr/share/lxc/config");
        let Ok(rd) = std::fs::read_dir(dir) else {
            eprintln!("skipped: no {}", dir.display());
            return;
        };
        let mut n = 0;
        let mut files: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        if let Ok(rd) = std::fs::read_dir(dir.join("common.conf.d")) {
            files.extend(rd.map(|e| e.unwrap().path()));
        }
        for p in files {
            if !(p.extension().is_some_and(|x| x == "conf") && p.is_file()) {
                continue;
            }
            let c = Config::load(&p).unwrap();
            for l in &c.lines {
                if let Line::Entry { key, .. } = l {
                    assert!(crate::config_keys::key_known(key), "{key} in {}", p.display());
                    n += 1;
                }
            }
        }
        assert!(n > 10, "only {n} keys seen");
    }
}
