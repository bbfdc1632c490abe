//! `statx` and `copy_file_range` as plain system calls, not through glibc's
//! wrappers of the same names.
//!
//! Rust's std refers to those two wrappers (and a few more: `gettid`,
//! `pidfd_getpid`, ...) through *weak* references, falling back to the raw
//! system call when a reference is null. Where strata's own code called
//! the wrappers too, a fat-LTO build merged both references into one weak
//! reference, and a static link never pulls a library member in for a weak
//! reference: `statx` stayed at address 0 and the first copy called it
//! (a segfault in `lxc-create --rootfs-from`). Without LTO our strong
//! reference happened to pull the wrapper in. Calling the kernel directly
//! takes no symbol at all, so no build setting can leave it null.
//! `tests::no_weak_glibc_wrappers_called` keeps the others out of the code.

use std::ffi::CStr;
use std::os::fd::RawFd;

/// statx(2) into `st`: 0, or -1 with errno set, as the libc call.
///
/// # Safety
/// `st` must point to memory the kernel may fill with a `libc::statx`.
pub unsafe fn statx(
    dirfd: RawFd,
    name: &CStr,
    flags: libc::c_int,
    mask: libc::c_uint,
    st: *mut libc::statx,
) -> libc::c_int {
    // SAFETY: the arguments are the system call's, in its order and widths; `name` is NUL-terminated and
    // `st` is the caller's to fill (see the function's contract).
    unsafe { libc::syscall(libc::SYS_statx, dirfd, name.as_ptr(), flags, mask, st) as libc::c_int }
}

/// copy_file_range(2): bytes copied, or -1 with errno set, as the libc call.
///
/// # Safety
/// `off_in` and `off_out` must be valid for the kernel to read and advance.
pub unsafe fn copy_file_range(
    fd_in: RawFd,
    off_in: *mut libc::loff_t,
    fd_out: RawFd,
    off_out: *mut libc::loff_t,
    len: usize,
    flags: libc::c_uint,
) -> isize {
    // SAFETY: the arguments are the system call's, in its order and widths; the offsets are the caller's
    // (see the function's contract).
    unsafe { libc::syscall(libc::SYS_copy_file_range, fd_in, off_in, fd_out, off_out, len, flags) as isize }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// glibc functions std refers to weakly (its `weak!`/`syscall!`
    /// declarations on Linux): called from our code, an LTO build can
    /// leave them null (see the module's comment).
    const WEAK_IN_STD: &[&str] = &[
        "statx",
        "copy_file_range",
        "gettid",
        "pidfd_getpid",
        "pidfd_spawnp",
        "posix_spawn_file_actions_addchdir",
        "posix_spawn_file_actions_addchdir_np",
    ];

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() && name != "target" && !name.starts_with('.') && name != "fuzz" {
                rust_files(&p, out);
            } else if name.ends_with(".rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn no_weak_glibc_wrappers_called() {
        let top = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        rust_files(top, &mut files);
        assert!(files.len() > 100, "the workspace's sources under {}", top.display());
        let mut bad = Vec::new();
        for f in &files {
            if f.ends_with("core/src/rawsys.rs") {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            for (i, line) in text.lines().enumerate() {
                for name in WEAK_IN_STD {
                    if line.contains(&format!("libc::{name}(")) {
                        bad.push(format!("{}:{}: libc::{name}", f.display(), i + 1));
                    }
                }
            }
        }
        assert!(
            bad.is_empty(),
            "use strata_core::rawsys (or a raw system call) instead: {bad:?}"
        );
    }
}
