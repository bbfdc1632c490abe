//! The zfs backend.
