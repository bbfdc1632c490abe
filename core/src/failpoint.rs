//! The crash tests' hook, apart from the engine so that any layer (the
//! engine, the freezer) can stop at a named point.

/// Test hook for crash tests: when `STRATA_FAILPOINT` equals `name`, the
/// process exits at once (no unwinding, no destructors), as if killed.
pub fn failpoint(name: &str) {
    if std::env::var_os("STRATA_FAILPOINT").is_some_and(|v| v == name) {
        tracing::warn!("failpoint {name}: exiting");
        // SAFETY: _exit takes an integer and ends the process at once; skipping
        // unwinding and destructors is the point: it stands in for a kill -9.
        unsafe { libc::_exit(99) };
    }
}
