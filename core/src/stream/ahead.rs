//! Reading a stream ahead, in a thread of its own: a receiver's
//! decompression then overlaps its writing of files, as `zstd -d | tar -x`
//! overlaps in two processes.
//!
//! The thread fills buffers of [`CHUNK`] bytes and hands them over a
//! channel holding at most [`DEPTH`] of them (so memory stays bounded
//! whatever the stream); the reader returns each buffer for reuse. A read
//! error is handed over in its turn and returned from then on. The thread
//! ends at the end of the stream, at an error, or at its next buffer once
//! the reader is dropped; it owns its source, so a caller that gives up
//! early never waits for it.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Bytes of one buffer.
pub const CHUNK: usize = 1 << 20;
/// Buffers in flight (filled, waiting for the reader).
const DEPTH: usize = 4;

/// The reading end: a [`Read`] of what the thread read.
pub struct Ahead {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    back: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    /// The end was reached, or the error met (returned again at each read).
    end: Option<Option<(std::io::ErrorKind, String)>>,
}

/// Read `src` ahead in a new thread; `name` names the thread.
pub fn read_ahead(mut src: Box<dyn Read + Send>, name: &str) -> std::io::Result<Ahead> {
    let (tx, rx) = sync_channel::<std::io::Result<Vec<u8>>>(DEPTH);
    let (back, free) = sync_channel::<Vec<u8>>(DEPTH + 2);
    std::thread::Builder::new().name(name.into()).spawn(move || loop {
        let mut buf = free.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        buf.resize(CHUNK, 0);
        let mut n = 0;
        let res = loop {
            if n == CHUNK {
                break Ok(());
            }
            match src.read(&mut buf[n..]) {
                Ok(0) => break Ok(()),
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        buf.truncate(n);
        let last = n < CHUNK || res.is_err();
        // The reader gets the bytes before the error, then the error.
        if n > 0 && tx.send(Ok(buf)).is_err() {
            return;
        }
        if let Err(e) = res {
            let _ = tx.send(Err(e));
            return;
        }
        if last {
            // An empty buffer marks the end.
            let _ = tx.send(Ok(Vec::new()));
            return;
        }
    })?;
    Ok(Ahead {
        rx,
        back,
        cur: Vec::new(),
        pos: 0,
        end: None,
    })
}

impl Read for Ahead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            if let Some(end) = &self.end {
                return match end {
                    None => Ok(0),
                    Some((k, m)) => Err(std::io::Error::new(*k, m.clone())),
                };
            }
            match self.rx.recv() {
                Ok(Ok(b)) if b.is_empty() => self.end = Some(None),
                Ok(Ok(b)) => {
                    let old = std::mem::replace(&mut self.cur, b);
                    self.pos = 0;
                    let _ = self.back.try_send(old);
                }
                Ok(Err(e)) => {
                    self.end = Some(Some((e.kind(), e.to_string())));
                    return Err(e);
                }
                // The thread is gone without a word: it panicked.
                Err(_) => {
                    self.end = Some(Some((std::io::ErrorKind::Other, "the stream's reader failed".into())));
                }
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the sizes of the reads, the same bytes in the same order.
    #[test]
    fn same_bytes() {
        let data: Vec<u8> = (0..(3 * CHUNK + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let mut a = read_ahead(Box::new(std::io::Cursor::new(data.clone())), "t").unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4097];
        loop {
            let n = a.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        assert_eq!(a.read(&mut buf).unwrap(), 0);
    }

    /// An error after some bytes: the bytes, then the error, again at each read.
    #[test]
    fn error_after_bytes() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "cut"));
                }
                let n = b.len().min(self.0);
                b[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut a = read_ahead(Box::new(Failing(5000)), "t").unwrap();
        let mut got = Vec::new();
        let e = a.read_to_end(&mut got).unwrap_err();
        assert_eq!(got.len(), 5000);
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        let e = a.read(&mut [0u8; 10]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    /// A reader dropped early lets the thread end (it never blocks on a full channel).
    #[test]
    fn dropped_early() {
        let (tx, rx) = std::sync::mpsc::channel();
        struct Endless(std::sync::mpsc::Sender<()>);
        impl Read for Endless {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                Ok(b.len())
            }
        }
        impl Drop for Endless {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let mut a = read_ahead(Box::new(Endless(tx)), "t").unwrap();
        a.read_exact(&mut [0u8; 100]).unwrap();
        drop(a);
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("the thread ended");
    }
}
