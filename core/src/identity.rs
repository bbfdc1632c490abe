//! Who this process is and who another one is: the caller's host uid (kept
//! in the forked child of [`crate::idmap::run_in_ns`], root in its
//! namespace), and a process told apart from a later one with its pid by
//! its start time. Below every other module: it uses none.

/// Set in the child of [`crate::idmap::run_in_ns`]: a forked copy of a threaded process,
/// where the global thread pool's workers do not exist.
static IN_NS_CHILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The caller's host uid, kept for the child of [`crate::idmap::run_in_ns`] (root in its namespace).
static HOST_EUID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Whether this process is the forked child of [`crate::idmap::run_in_ns`].
pub fn in_ns_child() -> bool {
    IN_NS_CHILD.load(std::sync::atomic::Ordering::Relaxed)
}

/// The effective uid on the host: the caller's, also in the child of [`crate::idmap::run_in_ns`].
pub fn host_euid() -> u32 {
    if in_ns_child() {
        HOST_EUID.load(std::sync::atomic::Ordering::Relaxed)
    } else {
        nix::unistd::geteuid().as_raw()
    }
}

/// Keep the caller's host uid for the child [`crate::idmap::run_in_ns`] forks next.
pub(crate) fn keep_host_euid() {
    HOST_EUID.store(host_euid(), std::sync::atomic::Ordering::Relaxed);
}

/// In the child of [`crate::idmap::run_in_ns`], before it enters its namespace.
pub(crate) fn enter_ns_child() {
    IN_NS_CHILD.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// State letter and start time of a process, from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let stat = crate::procfs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    Some((state, f.nth(18)?.parse().ok()?))
}
