//! LXC seccomp policies (being written).
