//! Native sections of a container stream (`send --native`, `export
//! --optimized`): a tree carried as its backend's own stream (btrfs send)
//! instead of tar entries.
//!
//! The index names the format ([`Native`]); a receiver takes the stream
//! only onto a backend declaring that format (see
//! [`crate::backend::NativeStream`]). A tar entry's size comes before its
//! data and a native stream's size is not known ahead, so each section is
//! cut into entries `PREFIX.native.NNNNNNNN` of at most [`CHUNK`] bytes,
//! numbered from 0, then `PREFIX.native-end` holding the section's byte
//! count in decimal: a section without it, with a gap in the numbers or
//! another count was cut or tampered with, and is refused before the
//! backend's tool is told the stream has ended.

use super::pack::Packer;
use super::ProgressFn;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// Most bytes of one chunk entry (held in memory while it is written).
pub const CHUNK: usize = 8 << 20;
const CHUNK_INFIX: &str = ".native.";
const END_SUFFIX: &str = ".native-end";

/// What the index says of a native stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Native {
    /// The backend's format name ([`crate::backend::NativeStream::format`]).
    pub format: String,
    /// Incremental: what the receiver's copy of the base snapshot is known
    /// by ([`crate::backend::NativeStream::identity`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

pub fn chunk_name(prefix: &str, n: u64) -> String {
    format!("{prefix}{CHUNK_INFIX}{n:08}")
}

pub fn end_name(prefix: &str) -> String {
    format!("{prefix}{END_SUFFIX}")
}

/// Whether `name` is an entry of the native section of tree `prefix`.
pub fn is_section_entry(prefix: &str, name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(prefix.as_bytes()) else {
        return false;
    };
    rest == END_SUFFIX.as_bytes()
        || rest
            .strip_prefix(CHUNK_INFIX.as_bytes())
            .is_some_and(|n| n.len() == 8 && n.iter().all(u8::is_ascii_digit))
}

/// Writes one section as chunk entries through a [`Packer`].
pub struct ChunkWriter<'p, W: Write> {
    p: &'p mut Packer<W>,
    prefix: String,
    buf: Vec<u8>,
    n: u64,
    total: u64,
}

impl<'p, W: Write> ChunkWriter<'p, W> {
    pub fn new(p: &'p mut Packer<W>, prefix: &str) -> Self {
        ChunkWriter {
            p,
            prefix: prefix.to_string(),
            buf: Vec::with_capacity(CHUNK),
            n: 0,
            total: 0,
        }
    }

    fn emit(&mut self) -> crate::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.p.add_bytes(&chunk_name(&self.prefix, self.n), &self.buf)?;
        if let Some(t) = &mut self.p.tick {
            t(self.buf.len() as u64);
        }
        self.p.stats.entries += 1;
        self.p.stats.bytes += self.buf.len() as u64;
        self.n += 1;
        self.total += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// The last chunk and the end entry; returns the section's bytes.
    pub fn finish(mut self) -> crate::Result<u64> {
        self.emit()?;
        self.p
            .add_bytes(&end_name(&self.prefix), self.total.to_string().as_bytes())?;
        Ok(self.total)
    }
}

impl<W: Write> Write for ChunkWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.emit().map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(n)
    }

    // Chunks go out when full or at finish: a flush does not cut one short.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads one section back from the archive's entries, as one byte stream
/// that ends (EOF) only at a valid end entry.
pub struct ChunkReader<'e, 'a, R: Read> {
    entries: &'e mut tar::Entries<'a, R>,
    pax: &'e super::pax::PaxLog,
    prefix: String,
    cur: Option<tar::Entry<'a, R>>,
    next: u64,
    /// Bytes read so far.
    pub bytes: u64,
    done: bool,
    /// The first error a read met (the stream's own, whatever the tool reading it says).
    error: Option<std::io::Error>,
    /// Told of the bytes so far (entries and bytes before the section added by the caller).
    progress: Option<Box<dyn FnMut(u64) + 'e>>,
}

fn bad(m: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m)
}

impl<'e, 'a, R: Read> ChunkReader<'e, 'a, R> {
    /// The section of tree `prefix`, whose first entry `first` (named
    /// `name`) the caller has read.
    pub fn new(
        entries: &'e mut tar::Entries<'a, R>,
        pax: &'e super::pax::PaxLog,
        prefix: &str,
        first: tar::Entry<'a, R>,
        name: &[u8],
    ) -> std::io::Result<Self> {
        let mut r = ChunkReader {
            entries,
            pax,
            prefix: prefix.to_string(),
            cur: None,
            next: 0,
            bytes: 0,
            done: false,
            error: None,
            progress: None,
        };
        r.accept(first, name)?;
        Ok(r)
    }

    /// Progress as bytes of this section arrive.
    pub fn on_progress(&mut self, f: ProgressFn, entries: u64, bytes: u64) {
        self.progress = Some(Box::new(move |b| f(entries, bytes + b, None)));
    }

    fn accept(&mut self, mut e: tar::Entry<'a, R>, name: &[u8]) -> std::io::Result<()> {
        if name == chunk_name(&self.prefix, self.next).as_bytes() {
            self.next += 1;
            self.cur = Some(e);
            return Ok(());
        }
        if name == end_name(&self.prefix).as_bytes() {
            let mut s = String::new();
            (&mut e).take(32).read_to_string(&mut s)?;
            if s.trim().parse::<u64>().ok() != Some(self.bytes) {
                return Err(bad(format!(
                    "tree {}: its native stream should hold {} bytes, it held {}",
                    self.prefix,
                    s.trim(),
                    self.bytes
                )));
            }
            self.done = true;
            return Ok(());
        }
        Err(bad(format!(
            "tree {}: entry {:?} where chunk {} of its native stream or its end should be",
            self.prefix,
            String::from_utf8_lossy(name),
            self.next
        )))
    }

    /// The error a read of the stream met, if one did: what to report
    /// rather than the tool's view of the stream it was cut off from.
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.error.take()
    }

    /// Whether the whole section was read (its end entry checked).
    pub fn complete(&self) -> bool {
        self.done
    }
}

impl<R: Read> Read for ChunkReader<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.read_inner(buf);
        if let (Err(e), None) = (&r, &self.error) {
            self.error = Some(std::io::Error::new(e.kind(), e.to_string()));
        }
        r
    }
}

impl<R: Read> ChunkReader<'_, '_, R> {
    fn read_inner(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(e) = &mut self.cur {
                let n = e.read(buf)?;
                if n > 0 {
                    self.bytes += n as u64;
                    if let Some(p) = &mut self.progress {
                        p(self.bytes);
                    }
                    return Ok(n);
                }
                self.cur = None;
            }
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            let Some(e) = self.entries.next() else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the stream ends inside tree {}'s native stream (cut short?)",
                        self.prefix
                    ),
                ));
            };
            let mut e = e?;
            let rec = self.pax.take(e.raw_header_position()).map_err(bad)?;
            let name = super::entry_name(&mut e, rec.as_ref())?;
            self.accept(e, &name)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip_and_cuts_are_refused() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 1000)).map(|i| (i % 251) as u8).collect();
        let mk = |cut: Option<&str>| {
            let mut p = Packer::new(Vec::new());
            p.add_bytes("before", b"x").unwrap();
            let mut w = ChunkWriter::new(&mut p, "snaps/snap0/rootfs");
            w.write_all(&data).unwrap();
            assert_eq!(w.finish().unwrap(), data.len() as u64);
            p.add_bytes("after", b"y").unwrap();
            let raw = p.finish().unwrap();
            // Rewrite into a new archive without the named entry.
            let mut ar = tar::Archive::new(&raw[..]);
            let mut b = tar::Builder::new(Vec::new());
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                if Some(name.as_str()) == cut {
                    continue;
                }
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                let mut h = e.header().clone();
                b.append_data(&mut h, &name, &d[..]).unwrap();
            }
            b.into_inner().unwrap()
        };
        let read = |raw: &[u8]| -> std::io::Result<(Vec<u8>, String)> {
            let (w, pax) = crate::stream::pax::Watched::new(raw);
            let mut ar = tar::Archive::new(w);
            let mut entries = ar.entries()?;
            entries.next().unwrap()?;
            let mut e = entries.next().unwrap()?;
            let rec = pax.take(e.raw_header_position()).unwrap();
            let name = crate::stream::entry_name(&mut e, rec.as_ref())?;
            assert!(is_section_entry("snaps/snap0/rootfs", &name));
            let mut r = ChunkReader::new(&mut entries, &pax, "snaps/snap0/rootfs", e, &name)?;
            let mut got = Vec::new();
            r.read_to_end(&mut got)?;
            assert!(r.complete());
            drop(r);
            let mut e = entries.next().unwrap()?;
            let n = e.path()?.to_string_lossy().into_owned();
            let mut s = String::new();
            e.read_to_string(&mut s)?;
            Ok((got, n + &s))
        };
        let (got, after) = read(&mk(None)).unwrap();
        assert!(got == data, "the section's bytes differ");
        assert_eq!(after, "aftery");
        for cut in ["snaps/snap0/rootfs.native.00000001", "snaps/snap0/rootfs.native-end"] {
            let e = read(&mk(Some(cut))).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{cut}: {e}");
        }
        assert!(!is_section_entry("rootfs", b"rootfs/etc"));
        assert!(!is_section_entry("rootfs", b"rootfs.native.1"));
        assert!(is_section_entry("rootfs", b"rootfs.native-end"));
    }
}
