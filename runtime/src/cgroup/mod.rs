//! Container cgroups (being written).
