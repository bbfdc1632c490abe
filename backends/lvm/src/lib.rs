//! The lvm backend.
