//! The container runtime: a consumer of the storage layer.
