//! Rootless builder: an ordinary user's builder runs in a user namespace of its own,
//! as rootless Podman and rootlesskit do ([`enter`]).
//!
//! The store holds files of many owners (a layer's `chown 1001`, a `USER nobody`
//! step's output), which on the host are the caller's subordinate ids: the caller can
//! neither read nor remove them, and unpacking a layer, mounting an overlay for COPY
//! or diffing an upperdir all need root. So builder re-executes itself
//! (`/proc/self/exe`, same arguments) with [`ENTER_ENV`] set; the child unshares a user
//! and a mount namespace, says so on a socket, and waits; the parent writes its maps
//! (0 → the caller, 1... → the subordinate ids, through `newuidmap`/`newgidmap`, or
//! root alone without them) and lets it go on. Inside, builder is root of a namespace
//! that owns its mount namespace: the same code paths as real root work, files keep
//! the owners a Dockerfile asked for (translated by the kernel), and the store's files
//! are the caller's on the host. The parent only waits: it passes on the signals sent
//! to it alone (a terminal's ^C reaches both already) and ends with the child's code.
//!
//! Inside, sandboxes need no user namespace of their own ([`crate::UserNamespace::Auto`]
//! sees root), but the kernel still treats them as rootless: overlayfs with
//! `userxattr`, no cgroups unless delegated, `/sys` bound where it cannot be mounted.
//! [`current`] tells the rest of the crate (and builder) which namespace this is.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{Caller, IdMap, IdMapping, IdRange, Plan, plan_for, write_maps};
use crate::Error;

/// Set (to the socket's fd number) in the re-executed child.
pub const ENTER_ENV: &str = "_BUILDER_USERNS";

/// Where the child finds its end of the socket.
const SOCKET_FD: i32 = 3;

/// What [`enter`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Entered {
    /// Nothing: this process is root already (of the host, or of a namespace).
    AlreadyRoot,
    /// This process is now root of a user namespace of its own: go on.
    Inside,
    /// This process started builder in a user namespace and waited for it: exit with
    /// this code (128+N if it was killed by signal N).
    Exited(u8),
}

/// Makes an ordinary user's builder root of a user namespace that maps the caller's
/// ids (see the module's docs). Call it before any thread is started: a
/// multithreaded process may not enter a user namespace. `env` is added to the child's
/// environment.
pub fn enter(env: &[(OsString, OsString)]) -> Result<Entered, Error> {
    if let Some(fd) = std::env::var_os(ENTER_ENV) {
        // SAFETY: no other thread exists yet (the caller's contract), so nothing reads
        // the environment meanwhile.
        unsafe { std::env::remove_var(ENTER_ENV) };
        if fd.to_str() != Some(&SOCKET_FD.to_string()) {
            return Err(Error::sys(format!("{ENTER_ENV}={}", fd.to_string_lossy()), io::Error::other("unexpected")));
        }
        return child().map(|()| Entered::Inside);
    }
    if nix::unistd::geteuid().is_root() {
        return Ok(Entered::AlreadyRoot);
    }
    let plan = plan_for(&Caller::current())?;
    parent(&plan, env).map(Entered::Exited)
}

/// The re-executed child: unshare, report, wait for the maps.
fn child() -> Result<(), Error> {
    // SAFETY: fd 3 was placed for this process by its parent, and nothing else owns it.
    let mut socket = UnixStream::from(unsafe { OwnedFd::from_raw_fd(SOCKET_FD) });
    // SAFETY: FD_CLOEXEC on a descriptor we own: sandboxes and helpers never get it.
    unsafe { libc::fcntl(SOCKET_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: unshare has no memory-safety preconditions; the process is single-threaded.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } < 0 {
        return Err(super::clone_error(io::Error::last_os_error()).rename("enter a user namespace for builder"));
    }
    let waited = socket.write_all(&[1]).and_then(|()| {
        let mut go = [0u8];
        socket.read_exact(&mut go)
    });
    // The parent says nothing more when it failed: it prints why and ends us.
    waited.map_err(|e| Error::sys("wait for the user namespace's id maps", e))
}

/// The parent: start the child, write its maps, wait for it.
fn parent(plan: &Plan, env: &[(OsString, OsString)]) -> Result<u8, Error> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| Error::sys("create a socket pair", e))?;
    // Blocked before the child exists, so none is lost; the child's mask is reset by
    // `Command`. SIGINT and SIGQUIT from a terminal reach the child on their own.
    let mut forwarded = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        forwarded.add(s);
    }
    let mut waited_for = forwarded;
    waited_for.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited_for), None).map_err(|e| Error::sys("block signals", e.into()))?;
    let theirs_fd = theirs.as_raw_fd();
    let mut command = Command::new("/proc/self/exe");
    command.args(std::env::args_os().skip(1)).envs(env.iter().cloned()).env(ENTER_ENV, SOCKET_FD.to_string());
    if let Some(arg0) = std::env::args_os().next() {
        command.arg0(arg0);
    }
    // SAFETY: only async-signal-safe calls (dup2, prctl) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(theirs_fd, SOCKET_FD) < 0 || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|e| Error::sys("start builder in a user namespace", e))?;
    drop(theirs);
    let pid = Pid::from_raw(child.id() as i32);
    let mut ours = ours;
    let mut ready = [0u8];
    // End of file: the child failed to unshare, and said why itself.
    if ours.read_exact(&mut ready).is_ok() {
        if let Err(e) = write_maps(pid.as_raw(), plan) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(e);
        }
        // A child gone meanwhile is reaped below.
        let _ = ours.write_all(&[1]);
    }
    drop(ours);
    Ok(wait(pid, &waited_for))
}

/// Waits for `pid`, passing on the signals sent to this process alone.
fn wait(pid: Pid, set: &SigSet) -> u8 {
    loop {
        match waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code as u8,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128u8.wrapping_add(signal as u8),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        }
        // SAFETY: a zeroed siginfo_t is a valid out-parameter; `set` is a valid sigset.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let signal = unsafe { libc::sigwaitinfo(set.as_ref(), &mut info) };
        // A signal the kernel sent (si_code > 0: a terminal's ^C goes to the whole
        // process group) reached the child too; one a process sent went to us alone.
        if signal > 0 && signal != libc::SIGCHLD && info.si_code <= 0 {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid.as_raw(), signal) };
        }
    }
}

/// The maps of the user namespace this process is in, as [`IdMapping`] (inside id →
/// id in the parent namespace); `None` in the host's (initial) user namespace.
pub fn current() -> Option<&'static IdMapping> {
    static CURRENT: OnceLock<Option<IdMapping>> = OnceLock::new();
    CURRENT
        .get_or_init(|| {
            let read = |file: &str| std::fs::read_to_string(format!("/proc/self/{file}")).ok().map(|t| parse_map(&t));
            let mapping = IdMapping { uid: read("uid_map")?, gid: read("gid_map")? };
            (!is_initial(&mapping.uid)).then_some(mapping)
        })
        .as_ref()
}

/// Who the namespace's root is outside: the user that started builder.
pub(crate) fn outside_user(mapping: &IdMapping) -> String {
    match mapping.uid.to_host(0) {
        Some(uid) => nix::unistd::User::from_uid(uid.into()).ok().flatten().map_or(uid.to_string(), |u| u.name),
        None => "root".into(),
    }
}

/// Whether `setgroups(2)` is allowed in this process's user namespace.
pub(crate) fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "allow")
}

/// The initial user namespace maps every id to itself.
fn is_initial(map: &IdMap) -> bool {
    map.ranges == [IdRange { container: 0, host: 0, size: u32::MAX }]
}

/// `/proc/PID/uid_map` text: `INSIDE OUTSIDE COUNT` a line.
fn parse_map(text: &str) -> IdMap {
    let ranges = text
        .lines()
        .filter_map(|line| {
            let mut n = line.split_whitespace().map(|f| f.parse::<u32>());
            match (n.next(), n.next(), n.next()) {
                (Some(Ok(container)), Some(Ok(host)), Some(Ok(size))) => Some(IdRange { container, host, size }),
                _ => None,
            }
        })
        .collect();
    IdMap { ranges }
}

impl Error {
    /// The same error, as a failure of `what`.
    fn rename(self, what: &str) -> Error {
        match self {
            Error::Sys { source, .. } => Error::sys(what, source),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_maps_are_read() {
        let map = parse_map("         0       1000          1\n         1     100000      65536\n");
        assert_eq!(map.to_host(0), Some(1000));
        assert_eq!(map.to_host(1001), Some(101000));
        assert!(!is_initial(&map));
        assert!(is_initial(&parse_map("0 0 4294967295\n")));
    }

    #[test]
    fn the_test_process_knows_its_namespace() {
        // Tests run in the host's namespace, or in one a harness made: either way the
        // answer matches the file.
        let text = std::fs::read_to_string("/proc/self/uid_map").unwrap();
        assert_eq!(current().is_some(), !is_initial(&parse_map(&text)));
    }
}
