//! The btrfs backend.
