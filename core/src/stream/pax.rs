//! PAX records read by their length, as POSIX frames them.
//!
//! The `tar` crate splits a PAX header on newlines before it honours each
//! record's length, so a value holding a newline (GNU tar's ACL text, a
//! file capability or an ACL whose bytes include 0x0a) fails to parse, and
//! the tail of such a value may pass for a record of its own. The archive
//! bytes are therefore watched as the crate reads them ([`Watched`]): every
//! header is followed as the crate follows it, the PAX records of each
//! entry are kept, parsed by length, under the position of the entry's
//! header, and the receiver takes them from there ([`PaxLog::take`]). A
//! position where the crate finds an entry the watcher did not is an error:
//! the two never read one archive two ways.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Read;
use std::rc::Rc;

/// `(key, value)` records of one entry, in archive order.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

const BLOCK: u64 = 512;

fn pad(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK - n
}

#[derive(Debug)]
enum Mode {
    /// Collecting a header block.
    Header,
    /// Data of an entry or an ignored extension header, with its padding.
    Skip(u64),
    /// The body of a PAX header, then its padding.
    Body { left: u64, pad: u64 },
    /// Extension blocks of an old GNU sparse header, then `data` bytes.
    Ext { data: u64 },
    /// The archive stopped making sense; the error is in `err`.
    Dead,
}

struct Log {
    pos: u64,
    mode: Mode,
    hdr: Vec<u8>,
    hdr_pos: u64,
    body: Vec<u8>,
    pending: Option<Records>,
    found: VecDeque<(u64, Option<Records>)>,
    err: Option<String>,
}

/// The records seen so far, shared with the reader that watches the bytes.
#[derive(Clone)]
pub struct PaxLog(Rc<RefCell<Log>>);

/// A reader that hands the archive bytes on and follows its headers.
pub struct Watched<R> {
    inner: R,
    log: PaxLog,
}

/// Most a PAX header may hold.
const MAX_PAX: u64 = 64 << 20;

/// Parse a PAX header body record by record, each by its leading length.
pub fn parse(mut b: &[u8]) -> Result<Records, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let sp = b
            .iter()
            .take(21)
            .position(|&c| c == b' ')
            .ok_or("a PAX record without a length")?;
        let len: usize = std::str::from_utf8(&b[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("a PAX record length is not a number")?;
        if len < sp + 3 || len > b.len() || b[len - 1] != b'\n' {
            return Err("a PAX record's length does not fit it".into());
        }
        let kv = &b[sp + 1..len - 1];
        let eq = kv.iter().position(|&c| c == b'=').ok_or("a PAX record without =")?;
        out.push((kv[..eq].to_vec(), kv[eq + 1..].to_vec()));
        b = &b[len..];
    }
    Ok(out)
}

/// A tar number field: octal text, or GNU's base-256.
fn number(f: &[u8]) -> Option<u64> {
    if f.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(f[0] & 0x7f);
        for &b in &f[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s = std::str::from_utf8(f).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

impl<R: Read> Watched<R> {
    pub fn new(inner: R) -> (Self, PaxLog) {
        let log = PaxLog(Rc::new(RefCell::new(Log {
            pos: 0,
            mode: Mode::Header,
            hdr: Vec::with_capacity(BLOCK as usize),
            hdr_pos: 0,
            body: Vec::new(),
            pending: None,
            found: VecDeque::new(),
            err: None,
        })));
        (
            Watched {
                inner,
                log: log.clone(),
            },
            log,
        )
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.log.0.borrow_mut().feed(&buf[..n]);
        Ok(n)
    }
}

impl Log {
    fn die(&mut self, e: impl Into<String>) {
        self.err.get_or_insert(e.into());
        self.mode = Mode::Dead;
    }

    fn feed(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            match &mut self.mode {
                Mode::Dead => return,
                Mode::Skip(left) => {
                    let k = (*left).min(b.len() as u64);
                    *left -= k;
                    if *left == 0 {
                        self.mode = Mode::Header;
                    }
                    self.pos += k;
                    b = &b[k as usize..];
                }
                Mode::Body { left, pad: p } => {
                    let k = (*left).min(b.len() as u64);
                    self.body.extend_from_slice(&b[..k as usize]);
                    *left -= k;
                    self.pos += k;
                    b = &b[k as usize..];
                    if *left == 0 {
                        let p = *p;
                        match parse(&self.body) {
                            Ok(r) => {
                                self.pending = Some(r);
                                self.body.clear();
                                self.mode = if p == 0 { Mode::Header } else { Mode::Skip(p) };
                            }
                            Err(e) => self.die(e),
                        }
                    }
                }
                Mode::Header | Mode::Ext { .. } => {
                    if self.hdr.is_empty() {
                        self.hdr_pos = self.pos;
                    }
                    let k = (BLOCK as usize - self.hdr.len()).min(b.len());
                    self.hdr.extend_from_slice(&b[..k]);
                    self.pos += k as u64;
                    b = &b[k..];
                    if self.hdr.len() == BLOCK as usize {
                        let h = std::mem::take(&mut self.hdr);
                        self.block(&h);
                        self.hdr = h;
                        self.hdr.clear();
                    }
                }
            }
        }
    }

    /// A whole block where a header (or a GNU sparse extension) was due.
    fn block(&mut self, h: &[u8]) {
        if let Mode::Ext { data } = self.mode {
            self.mode = if h[504] != 0 {
                Mode::Ext { data }
            } else {
                Mode::Skip(data + pad(data))
            };
            return;
        }
        if h.iter().all(|&c| c == 0) {
            return;
        }
        let Some(size) = number(&h[124..136]) else {
            return self.die("a header's size is not a number");
        };
        match h[156] {
            b'x' => {
                if size > MAX_PAX {
                    return self.die("a PAX header too large");
                }
                self.mode = if size == 0 {
                    Mode::Header
                } else {
                    Mode::Body {
                        left: size,
                        pad: pad(size),
                    }
                };
            }
            b'g' | b'L' | b'K' => self.mode = Mode::Skip(size + pad(size)),
            t => {
                let pax = self.pending.take();
                let size = match pax.as_ref().and_then(|r| r.iter().rev().find(|(k, _)| k == b"size")) {
                    Some((_, v)) => match std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok()) {
                        Some(s) => s,
                        None => return self.die("a PAX size is not a number"),
                    },
                    None => size,
                };
                self.found.push_back((self.hdr_pos, pax));
                self.mode = if t == b'S' && h[482] != 0 {
                    Mode::Ext { data: size }
                } else if size == 0 {
                    Mode::Header
                } else {
                    Mode::Skip(size + pad(size))
                };
            }
        }
    }
}

impl PaxLog {
    /// The PAX records of the entry whose header the crate found at `pos`.
    pub fn take(&self, pos: u64) -> Result<Option<Records>, String> {
        let mut l = self.0.borrow_mut();
        if let Some(e) = &l.err {
            return Err(e.clone());
        }
        while let Some((p, r)) = l.found.pop_front() {
            if p == pos {
                return Ok(r);
            }
            if p > pos {
                break;
            }
        }
        Err(format!("the archive's headers do not line up at byte {pos}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_length_with_newlines_in_values() {
        let r = parse(b"16 linkpath=a\nb\n12 uid=1000\n").unwrap();
        assert_eq!(
            r,
            vec![
                (b"linkpath".to_vec(), b"a\nb".to_vec()),
                (b"uid".to_vec(), b"1000".to_vec())
            ]
        );
        // A smuggled record inside a value stays inside it.
        let v = b"user.a=x\n22 linkpath=/etc/evil\n";
        let rec = format!("{} {}\n", v.len() + 4, String::from_utf8_lossy(v));
        let r = parse(rec.as_bytes()).unwrap();
        assert_eq!(r.len(), 1);
        assert!(parse(b"99 key=short\n").is_err());
        assert!(parse(b"x key=v\n").is_err());
    }

    #[test]
    fn watcher_follows_the_crate() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_pax_extensions([("SCHILY.xattr.user.x", &b"a\nb"[..])])
            .unwrap();
        b.append_data(&mut h, "f", &b"abc"[..]).unwrap();
        let long = "d/".repeat(80) + "g";
        b.append_data(&mut h, &long, &b"xyz"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let (w, log) = Watched::new(&data[..]);
        let mut ar = tar::Archive::new(w);
        let mut got = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            got.push(log.take(e.raw_header_position()).unwrap());
        }
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].as_ref().unwrap(),
            &vec![(b"SCHILY.xattr.user.x".to_vec(), b"a\nb".to_vec())]
        );
        assert!(got[1].is_none());
    }
}
