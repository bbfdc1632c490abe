//! A terminal in raw mode for as long as it is held: the console's and
//! attach's side of a pty, and `lxc.console.path`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use strata_core::{Error, Result};

/// A terminal whose settings are put back when it is dropped.
pub(crate) struct RawTerminal {
    pub(crate) file: File,
    saved: Option<nix::sys::termios::Termios>,
}

impl RawTerminal {
    /// Open `path`, which must be a terminal, and put it in raw mode.
    pub(crate) fn open(path: &Path) -> Result<RawTerminal> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io("open lxc.console.path", path, e))?;
        if !nix::unistd::isatty(file.as_raw_fd()).unwrap_or(false) {
            return Err(strata_core::err!(
                InvalidConfig,
                "start",
                "lxc.console.path = {}: not a terminal",
                path.display()
            ));
        }
        Ok(RawTerminal::raw(file))
    }

    /// Raw mode on `file` (a terminal), restored on drop.
    pub(crate) fn raw(file: File) -> RawTerminal {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let saved = tcgetattr(&file).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(&file, SetArg::TCSAFLUSH, &raw);
        }
        RawTerminal { file, saved }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(&self.file, nix::sys::termios::SetArg::TCSAFLUSH, t);
        }
    }
}
