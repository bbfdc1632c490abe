//! One error type for the whole storage layer: a matchable kind plus context.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong, independent of where. Front ends map kinds to exit codes
/// and tests match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A container, snapshot, name or path argument is not acceptable.
    InvalidName,
    /// A rootfs spec that does not parse or names an unknown backend.
    InvalidSpec,
    /// A config line or value that does not parse.
    InvalidConfig,
    /// A bad option value (size, fstype, map, ...).
    InvalidArgument,
    /// The container, snapshot, pool or path does not exist.
    NotFound,
    /// The target already exists.
    AlreadyExists,
    /// Other containers depend on this one.
    HasDependents,
    /// The container is running or locked by another operation.
    Busy,
    /// The backend cannot do this (e.g. snapshot on a backend without it).
    Unsupported,
    /// Needs privileges the caller does not have.
    PermissionDenied,
    /// An external tool failed (mkfs, lvcreate, zfs, ...).
    Command,
    /// Any other I/O failure.
    Io,
    /// A storage service (a Ceph cluster) did not answer in time: nothing
    /// about the volume is known until it does.
    Unavailable,
}

/// An error with its kind, the operation that failed and, where known, the path.
/// `thiserror` derives `std::error::Error` (with the I/O error as its source);
/// `Display` is written by hand below because its parts are optional.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    pub kind: ErrorKind,
    pub op: String,
    pub path: Option<PathBuf>,
    pub msg: String,
    #[source]
    pub source: Option<std::io::Error>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error {
            kind,
            op: op.into(),
            path: None,
            msg: msg.into(),
            source: None,
        }
    }

    pub fn at(mut self, path: impl AsRef<Path>) -> Self {
        self.path = Some(path.as_ref().to_path_buf());
        self
    }

    /// An I/O error during `op` on `path`.
    pub fn io(op: impl Into<String>, path: impl AsRef<Path>, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ => ErrorKind::Io,
        };
        Error {
            kind,
            op: op.into(),
            path: Some(path.as_ref().to_path_buf()),
            msg: err.to_string(),
            source: Some(err),
        }
    }

    /// An errno from a raw syscall during `op` on `path`.
    pub fn errno(op: impl Into<String>, path: impl AsRef<Path>, errno: nix::errno::Errno) -> Self {
        Self::io(op, path, std::io::Error::from_raw_os_error(errno as i32))
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Log a cleanup that failed and is left for a later command: a
    /// warning, but only a note when the storage did not answer (the
    /// command's own error, one line, says so already).
    pub fn note_left(&self, what: fmt::Arguments<'_>) {
        if self.kind == ErrorKind::Unavailable {
            tracing::info!("{what}: {self}");
        } else {
            tracing::warn!("{what}: {self}");
        }
    }
}

impl fmt::Display for Error {
    // One line: "op: path: message" -- what the CLI prints after "strata: ".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.op.is_empty() {
            write!(f, "{}: ", self.op)?;
        }
        if let Some(p) = &self.path {
            write!(f, "{}: ", p.display())?;
        }
        write!(f, "{}", self.msg)
    }
}

/// Shorthand constructors: `err!(NotFound, "destroy", "no container {name}")`.
#[macro_export]
macro_rules! err {
    ($kind:ident, $op:expr, $($fmt:tt)+) => {
        $crate::error::Error::new($crate::error::ErrorKind::$kind, $op, format!($($fmt)+))
    };
}

/// Extension to attach op/path context to `std::io::Result`.
pub trait IoContext<T> {
    fn ctx(self, op: &str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, op: &str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::errno(op, path, e))
    }
}
