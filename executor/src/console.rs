//! The pty of a terminal sandbox ([`crate::Stdio::Terminal`]), made inside it, as runc
//! makes a container's console: the init opens `/dev/pts/ptmx` of the sandbox's own
//! devpts once it has pivoted, makes the slave its stdin, stdout and stderr (the
//! process inherits them, and takes the slave as its controlling terminal), and
//! hands the master to the parent over a socket ([`CONSOLE_FD`]) for the relay. A
//! pty of the host's devpts would work as a stream but not as a terminal: its name
//! (`/proc/self/fd/0`) points outside the sandbox, so `tty` says "not a tty" and
//! programs that reopen their terminal fail.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType};

use crate::Error;

/// The init's end of the socket the master goes back on.
pub(crate) const CONSOLE_FD: i32 = 6;

/// A connected pair of unix sockets, close-on-exec.
pub(crate) fn socketpair() -> Result<(OwnedFd, OwnedFd), Error> {
    socket::socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| Error::sys("create the console socket", e.into()))
}

fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    let byte = [0u8; 1];
    let fds = [fd];
    socket::sendmsg::<()>(sock, &[IoSlice::new(&byte)], &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)?;
    Ok(())
}

/// The descriptor the init sent on `sock`; `None` when it closed the socket without
/// sending one (it failed before it got that far).
pub(crate) fn recv_fd(sock: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = socket::recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = msg.cmsgs()?.filter_map(|c| match c {
        ControlMessageOwned::ScmRights(fds) => Some(fds),
        _ => None,
    });
    // SAFETY: an SCM_RIGHTS message hands us new descriptors; the first is ours now.
    Ok(fds.next().and_then(|fds| fds.first().copied()).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// In the init, after `pivot_root`: a pty of the sandbox's devpts, its slave on fds
/// 0-2, its master sent to the parent on [`CONSOLE_FD`] (closed afterwards).
pub(crate) fn open_in_sandbox() -> Result<(), Error> {
    // SAFETY: CONSOLE_FD was placed by the parent for this process alone.
    let sock = unsafe { OwnedFd::from_raw_fd(CONSOLE_FD) };
    let ptmx = c"/dev/pts/ptmx";
    // SAFETY: a NUL-terminated path and plain flags.
    let master = unsafe { libc::open(ptmx.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        return Err(Error::sys("open /dev/pts/ptmx in the sandbox", io::Error::last_os_error()));
    }
    // SAFETY: the descriptor is fresh and ours.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int; TIOCGPTPEER returns a new descriptor or -1.
    let slave = unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock);
        libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY)
    };
    if slave < 0 {
        return Err(Error::sys("open the sandbox's pty", io::Error::last_os_error()));
    }
    // SAFETY: the descriptor is fresh and ours.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which the process inherits.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(Error::sys("place the sandbox's pty", io::Error::last_os_error()));
        }
    }
    send_fd(sock.as_raw_fd(), master.as_raw_fd()).map_err(|e| Error::sys("hand the pty to the parent", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_crosses_the_socket() {
        let (a, b) = socketpair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_fd(a.as_raw_fd(), file.as_raw_fd()).unwrap();
        let got = recv_fd(&b).unwrap().expect("a descriptor");
        let (m1, m2) = (file.metadata().unwrap(), std::fs::File::from(got).metadata().unwrap());
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&m1), std::os::unix::fs::MetadataExt::ino(&m2));
        drop(a);
        assert!(recv_fd(&b).unwrap().is_none(), "closed without a descriptor");
    }
}
