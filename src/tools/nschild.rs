//! What lxc-usernsexec and lxc-unshare share: the command as C strings
//! made before the fork, the child's exec (its failure as one line), the
//! one-byte handshake of parent and child, and the parent's wait.

use anyhow::anyhow;
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// The command to run, ready for execvp (made before the fork).
pub struct Command {
    argv: Vec<CString>,
}

impl Command {
    /// `args`, or `default` when it is empty.
    pub fn new(args: &[OsString], default: &str) -> anyhow::Result<Command> {
        let args: Vec<OsString> = if args.is_empty() {
            vec![default.into()]
        } else {
            args.to_vec()
        };
        let argv = args
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| anyhow!("{}: contains a NUL byte", a.to_string_lossy())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Command { argv })
    }

    /// In the child: execvp the command, or print why not (one line) and exit 1.
    pub fn exec(&self, tool: &str) -> ! {
        let mut ptrs: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        // SAFETY: argv is a NULL-terminated array of valid C strings that outlive the call.
        unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
        let e = std::io::Error::last_os_error();
        die(tool, &format!("{}: {e}", self.argv[0].to_string_lossy()))
    }
}

/// In a child: print `TOOL: message` and leave without running the parent's exit handlers.
pub fn die(tool: &str, msg: &str) -> ! {
    eprintln!("{tool}: {}", crate::common::one_line(msg));
    // SAFETY: _exit ends this forked process at once; nothing of the parent's state is unwound.
    unsafe { libc::_exit(1) }
}

/// The child's half of the handshake: block until the parent says go (one
/// byte 1); a closed pipe means the parent failed and said why, so exit quietly.
pub fn wait_for_go(go: OwnedFd) {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reading one byte into a valid buffer from an fd we own.
        let n = unsafe { libc::read(go.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n != 1 || b[0] != 1 {
            // SAFETY: as in die(): end the forked child at once.
            unsafe { libc::_exit(1) }
        }
        return;
    }
}

/// The parent's half: let the child go on.
pub fn send_go(go: OwnedFd) -> anyhow::Result<()> {
    nix::unistd::write(&go, &[1u8]).map_err(|e| anyhow!("release the child: {e}"))?;
    Ok(())
}

/// Kill a child the parent gave up on and reap it.
pub fn abandon(pid: libc::pid_t) {
    // SAFETY: pid is our own child, not yet reaped.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// Wait for the child and return its exit code (128 + signal when killed).
/// Ctrl-C and Ctrl-\ reach the child through the terminal; the parent
/// ignores them meanwhile so that it stays to report how the child ended.
pub fn wait(pid: libc::pid_t) -> anyhow::Result<i32> {
    // SAFETY: setting the disposition of two signals to SIG_IGN in this process only.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let mut st = 0;
    loop {
        // SAFETY: waiting for our own child into a valid status word.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(anyhow!("wait for {pid}: {e}"));
        }
    }
    Ok(if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else if libc::WIFSIGNALED(st) {
        128 + libc::WTERMSIG(st)
    } else {
        1
    })
}

/// A pipe whose ends are closed on exec.
pub fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| anyhow!("pipe: {e}"))
}
