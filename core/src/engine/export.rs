//! `strata export`: a container's stream (see [`crate::stream`]) in a file.
//!
//! Written to `.FILE.strata-tmp-PID-export…` beside the file, noted as in
//! flight before it exists ([`crate::inflight`]), and renamed into place
//! (never over an existing file) once complete and on disk: a killed export
//! leaves no half archive under the name asked for, and the next reconcile
//! removes its temp file.

use super::fsutil::rename_noreplace;
use super::send::SendRequest;
use super::Engine;
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::stream::StreamStats;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const OP: &str = "export";

/// What marks an export's temp file among temp files of atomic writes.
pub(super) const EXPORT_TMP: &str = "-export";

/// Whether `p` is the temp file of an export (named as [`Engine::export`] names it).
pub(super) fn is_export_temp(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once(".strata-tmp-"))
        .is_some_and(|(_, rest)| {
            rest.split_once('-')
                .is_some_and(|(_, r)| r.starts_with(&EXPORT_TMP[1..]))
        })
}

impl Engine {
    /// Write the stream of `req.r` to the new file `file`.
    pub fn export(&self, req: &SendRequest, file: &Path) -> Result<StreamStats> {
        let _span = tracing::info_span!("export", file = %file.display()).entered();
        let file = std::path::absolute(file).ctx(OP, file)?;
        if std::fs::symlink_metadata(&file).is_ok() {
            return Err(err!(AlreadyExists, OP, "{} exists; not overwritten", file.display()));
        }
        let (Some(dir), Some(fname)) = (file.parent(), file.file_name()) else {
            return Err(err!(InvalidArgument, OP, "not a file path").at(&file));
        };
        let tmp: PathBuf = dir.join(format!(
            ".{}.strata-tmp-{}{EXPORT_TMP}{}",
            fname.to_string_lossy(),
            std::process::id(),
            crate::paths::unique()
        ));
        let _noted = crate::inflight::note(&tmp)?;
        let res = (|| -> Result<StreamStats> {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)
                .ctx(OP, &tmp)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let st = self.send(req, &mut w)?;
            w.flush().ctx(OP, &tmp)?;
            let f = w.into_inner().map_err(|e| Error::io(OP, &tmp, e.into_error()))?;
            if !crate::durable::is_volatile() {
                f.sync_all().ctx(OP, &tmp)?;
            }
            drop(f);
            rename_noreplace(&tmp, &file)?;
            if !crate::durable::is_volatile() {
                std::fs::File::open(dir).and_then(|d| d.sync_all()).ctx(OP, dir)?;
            }
            Ok(st)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }
}
