//! [`crate::Stdio::Terminal`]: a pseudo-terminal for the sandboxed process, relayed
//! to the caller's stdin and stdout, with the caller's terminal in raw mode meanwhile
//! so that keys like ^C reach the process's line discipline, not ours.
//! [`crate::Stdio::TerminalOutput`] relays only the output and touches no terminal
//! mode: the caller's ^C stays its own, and is forwarded as a signal.
//!
//! The pty is the sandbox's own (`console.rs`): its master reaches the parent over a
//! socket, its slave is the process's stdin/stdout/stderr and controlling terminal.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::termios::{self, SetArg, Termios};

use crate::Error;

/// Our stdin as a descriptor of its own (closing it leaves fd 0 alone).
pub(crate) fn dup_stdin() -> Result<OwnedFd, Error> {
    // SAFETY: duplicating fd 0; the result is checked.
    let fd = unsafe { libc::fcntl(libc::STDIN_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(Error::sys("duplicate stdin", io::Error::last_os_error()));
    }
    // SAFETY: the descriptor is fresh and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The size of the caller's terminal: its stdin's, else its stdout's (`-t` alone may
/// have only the output on a terminal).
fn caller_size() -> Option<nix::pty::Winsize> {
    window_size(libc::STDIN_FILENO).or_else(|| window_size(libc::STDOUT_FILENO))
}

fn window_size(fd: i32) -> Option<nix::pty::Winsize> {
    let mut size = nix::pty::Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_row > 0).then_some(size)
}

/// Gives the pty the size of our terminal (after a SIGWINCH); the kernel then sends
/// SIGWINCH to the pty's foreground process group.
pub(crate) fn copy_size(master: &OwnedFd) {
    if let Some(size) = caller_size() {
        // SAFETY: TIOCSWINSZ reads one winsize from the struct we pass.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
}

/// Our stdin's terminal in raw mode until dropped; `None` if stdin is no terminal.
pub(crate) struct RawMode(Termios);

impl RawMode {
    pub fn enable() -> Option<RawMode> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin(), SetArg::TCSADRAIN, &self.0);
    }
}
