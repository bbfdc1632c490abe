//! The loop backend.
