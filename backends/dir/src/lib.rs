//! The dir backend.
