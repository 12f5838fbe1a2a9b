//! The pty of a terminal sandbox ([`crate::Stdio::Terminal`]), made inside it, as runc
//! makes a container's console: the init opens `/dev/pts/ptmx` of the sandbox's own
//! devpts once it has pivoted, makes the slave its stdin, stdout and stderr (the
//! process inherits them, and takes the slave as its controlling terminal), and
//! hands the master to the parent over a socket ([`CONSOLE_FD`]) for the relay. A
//! pty of the host's devpts would work as a stream but not as a terminal: its name
//! (`/proc/self/fd/0`) points outside the sandbox, so `tty` says "not a tty" and
//! programs that reopen their terminal fail.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::Error;

/// The init's end of the socket the master goes back on.
pub(crate) const CONSOLE_FD: i32 = 6;

/// A connected pair of unix sockets, close-on-exec.
pub(crate) fn socketpair() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the array we pass.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } < 0 {
        return Err(Error::sys("create the console socket", io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Room for one descriptor's control message.
fn cmsg_space() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize }
}

fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut control = vec![0u8; cmsg_space()];
    // SAFETY: a zeroed msghdr is valid; its pointers are set to live buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    // SAFETY: the control buffer has room for one header and one descriptor
    // (CMSG_SPACE), so CMSG_FIRSTHDR is non-null and CMSG_DATA points inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    // SAFETY: msg points at live buffers for the whole call.
    if unsafe { libc::sendmsg(sock, &msg, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The descriptor the init sent on `sock`; `None` when it closed the socket without
/// sending one (it failed before it got that far).
pub(crate) fn recv_fd(sock: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut control = vec![0u8; cmsg_space()];
    // SAFETY: a zeroed msghdr is valid; its pointers are set to live buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    // SAFETY: msg points at live buffers for the whole call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: recvmsg filled msg; CMSG_FIRSTHDR checks msg_controllen before reading.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if n == 0 || cmsg.is_null() {
        return Ok(None);
    }
    // SAFETY: a non-null header lies within the control buffer.
    let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
    if (level, kind) != (libc::SOL_SOCKET, libc::SCM_RIGHTS) {
        return Ok(None);
    }
    // SAFETY: an SCM_RIGHTS message carries the descriptor right after its header; it
    // is ours now.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>())) }))
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
