//! Other tools' container archives, for `strata import`: an Incus instance
//! export ([`incus`]) and a Proxmox vzdump of a container ([`proxmox`]).
//!
//! The kind is told by content, never by file name: the compression by its
//! magic bytes (gzip, zstd, or a plain tar), the tool by the archive's first
//! entry (`strata-index.json`, `backup/index.yaml`, `./etc/vzdump/pct.conf`).
//! Each format reads its settings in a first pass (they come first in both
//! archives), turns them into LXC config keys where LXC has an equivalent
//! and names every other one in a [`Note`]; the second pass builds the
//! container through [`crate::engine::Engine::adopt`].

pub mod incus;
mod lxc;
pub mod proxmox;

use crate::engine::{archive_err, Engine, ReceiveRequest};
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::store::Container;
use crate::stream::StreamStats;
use std::io::Read;
use std::path::Path;

const OP: &str = "import";

/// Which tool wrote an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `strata export` (read by [`Engine::receive`]).
    Strata,
    Incus,
    Proxmox,
}

/// A setting of the archive that the new container does not carry, or
/// carries only in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub key: String,
    pub value: String,
    pub why: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.key, self.why)
        } else {
            write!(f, "{} = {}: {}", self.key, self.value, self.why)
        }
    }
}

fn bad(msg: String) -> Error {
    err!(InvalidArgument, OP, "{msg}")
}

/// The archive, decompressed, from its first byte.
pub fn open(path: &Path) -> Result<Box<dyn Read + Send>> {
    open_counted(path, None)
}

/// [`open`], counting the archive's bytes read into `pos`.
fn open_counted(path: &Path, pos: Option<&crate::stream::InputPos>) -> Result<Box<dyn Read + Send>> {
    let f = std::fs::File::open(path).ctx(OP, path)?;
    let mut f: Box<dyn Read + Send> = match pos {
        Some(p) => Box::new(p.counted(f)),
        None => Box::new(f),
    };
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).ctx(OP, path)? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    let f = std::io::BufReader::with_capacity(1 << 20, std::io::Cursor::new(head.to_vec()).chain(f));
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::read::MultiGzDecoder::new(f)));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(Box::new(
            zstd::stream::read::Decoder::with_buffer(f).map_err(archive_err)?,
        ));
    }
    if head.len() == 512 && &head[257..262] == b"ustar" {
        return Ok(Box::new(f));
    }
    let other = [
        (&b"\xfd7zXZ\x00"[..], "xz"),
        (b"BZh", "bzip2"),
        (b"\x04\x22\x4d\x18", "lz4"),
        (b"\x5d\x00\x00", "lzma"),
    ];
    if let Some((_, what)) = other.iter().find(|(m, _)| head.starts_with(m)) {
        return Err(bad(format!(
            "{}: compressed with {what}; strata reads gzip, zstd or plain tar archives (decompress it first)",
            path.display()
        )));
    }
    Err(bad(format!(
        "{}: not a container archive (neither gzip, zstd nor tar)",
        path.display()
    )))
}

/// The first entry's name, read the way the import reads it.
fn first_name(path: &Path) -> Result<Vec<u8>> {
    let (r, pax) = crate::stream::pax::Watched::new(open(path)?);
    let mut ar = tar::Archive::new(r);
    let mut entries = ar.entries().map_err(archive_err)?;
    let mut e = match entries.next() {
        Some(e) => e.map_err(archive_err)?,
        None => return Err(bad(format!("{}: an empty archive", path.display()))),
    };
    let rec = pax.take(e.raw_header_position()).map_err(bad)?;
    crate::stream::entry_name(&mut e, rec.as_ref()).map_err(archive_err)
}

/// Which tool wrote the archive at `path`.
pub fn detect(path: &Path) -> Result<Kind> {
    let name = first_name(path)?;
    let n = name.strip_prefix(b"./").unwrap_or(&name);
    match n {
        b"strata-index.json" => Ok(Kind::Strata),
        b"backup/index.yaml" => Ok(Kind::Incus),
        b"etc/vzdump/pct.conf" => Ok(Kind::Proxmox),
        _ => Err(bad(format!(
            "{}: not a strata, Incus or Proxmox container archive (its first entry is {:?})",
            path.display(),
            String::from_utf8_lossy(&name)
        ))),
    }
}

/// Where an entry of the archive belongs, by its name.
type Placer = dyn Fn(&[u8]) -> Option<crate::engine::Place>;

/// What a first pass does with each entry's name and small data; `true`: it has all it needs.
type Wanted<'a> = dyn FnMut(&[u8], Option<&[u8]>) -> Result<bool> + 'a;

/// Make a container from an Incus or Proxmox archive; returns it, what was
/// read, and the settings it does not carry.
pub fn import(
    engine: &Engine,
    kind: Kind,
    req: &ReceiveRequest,
    path: &Path,
) -> Result<(Container, StreamStats, Vec<Note>)> {
    let (adoption, notes, place): (_, _, Box<Placer>) = match kind {
        Kind::Incus => {
            let r = incus::read(path, req.map.clone())?;
            let layout = r.layout.clone();
            (r.adoption, r.notes, Box::new(move |n: &[u8]| layout.place(n)))
        }
        Kind::Proxmox => {
            let r = proxmox::read(path, req.map.clone())?;
            (r.adoption, r.notes, Box::new(proxmox::place))
        }
        Kind::Strata => return Err(bad("a strata archive: read by receive, not here".into())),
    };
    if adoption.name.is_empty() && req.name.is_none() {
        return Err(bad(format!(
            "{}: the archive names no container (no hostname): give it one with -n NAME",
            path.display()
        )));
    }
    // Decompressed in a thread of its own while this one writes the files.
    let input = crate::stream::ahead::read_ahead(open_counted(path, req.input_pos.as_ref())?, "strata-unzip")
        .map_err(archive_err)?;
    let (r, pax) = crate::stream::pax::Watched::new(input);
    let (c, st) = engine.adopt(req, &adoption, tar::Archive::new(r), &pax, &place)?;
    Ok((c, st, notes))
}

/// Read the archive's entries from the start until `want` says it has all
/// it needs (returns `true`); the entries' names and their data (up to
/// `max` bytes) go to `want`.
fn scan(path: &Path, max: u64, want: &mut Wanted) -> Result<()> {
    let (r, pax) = crate::stream::pax::Watched::new(open(path)?);
    let mut ar = tar::Archive::new(r);
    for e in ar.entries().map_err(archive_err)? {
        let mut e = e.map_err(archive_err)?;
        let rec = pax.take(e.raw_header_position()).map_err(bad)?;
        let name = crate::stream::entry_name(&mut e, rec.as_ref()).map_err(archive_err)?;
        let data = if e.header().entry_type() == tar::EntryType::Regular && e.size() <= max {
            let mut d = Vec::new();
            e.read_to_end(&mut d).map_err(archive_err)?;
            Some(d)
        } else {
            None
        };
        if want(&name, data.as_deref())? {
            return Ok(());
        }
    }
    Ok(())
}

/// Most a settings file may take.
const MAX_META: u64 = 16 << 20;
