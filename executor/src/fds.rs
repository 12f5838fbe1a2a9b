//! Descriptors the parent hands to children it starts (the sandbox init, the NAT
//! helper): close-on-exec pipes, and duplicates placed above every target number so
//! that a child's `dup2`s never overwrite a source.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::Error;

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Error::sys("create pipe", io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `fcntl(F_DUPFD_CLOEXEC)` above every target fd, so the child's dup2s never clobber
/// a source.
pub(crate) fn dup_high(fd: &OwnedFd) -> Result<OwnedFd, Error> {
    // SAFETY: duplicating a descriptor we own; the result is checked.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if new < 0 {
        return Err(Error::sys("duplicate descriptor", io::Error::last_os_error()));
    }
    // SAFETY: the descriptor is fresh and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}
