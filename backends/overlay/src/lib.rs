//! The overlay backend.
