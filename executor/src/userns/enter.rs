//! Rootless builder: an ordinary user's builder runs in a user namespace of its own,
//! as rootless Podman does ([`enter`]).
//!
//! The store holds files of many owners (a layer's `chown 1001`, a `USER nobody`
//! step's output), which on the host are the caller's subordinate ids: the caller can
//! neither read nor remove them, and unpacking a layer, mounting an overlay for COPY
//! or diffing an upperdir all need root. So builder, first thing, while it has one
//! thread, forks a helper and unshares a user and a mount namespace; the helper,
//! still outside, writes the new namespace's maps (0 → the caller, 1... → the
//! subordinate ids, through `newuidmap`/`newgidmap`, or root alone without them) and
//! exits. Builder is then root of a namespace that owns its mount namespace (the
//! kernel gives `unshare`'s caller every capability there): the same code paths as
//! real root work, files keep the owners a Dockerfile asked for (translated by the
//! kernel), and the store's files are the caller's on the host. No process stays
//! between the caller and builder: signals, the terminal and the exit code are as
//! ever. (A re-exec, as rootlesskit does it, cost a second start of the binary and a
//! parent that waits and forwards signals.) What remains is the helpers' start: two
//! setuid programs, a few milliseconds each, run at once.
//!
//! Entering costs those milliseconds at every command, so a command that may not need
//! the namespace (a no-op rebuild reads only the caller's own metadata) runs outside
//! first, and one that finds it does need it replaces itself ([`reexec_to_enter`]: an
//! exec, same pid, same arguments, marked to enter at start, [`take_reexec_mark`]).
//! Still no process stays between the caller and builder. Outside, what builder
//! reads of file owners must be what it would read inside: [`mapping_to_enter`].
//!
//! Inside, sandboxes need no user namespace of their own ([`crate::UserNamespace::Auto`]
//! sees root), but the kernel still treats them as rootless: overlayfs with
//! `userxattr`, no cgroups unless delegated, `/sys` bound where it cannot be mounted.
//! [`current`] tells the rest of the crate (and builder) which namespace this is.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::sync::OnceLock;

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

use super::{Caller, IdMap, IdMapping, IdRange, plan_for, write_maps};
use crate::Error;

/// What [`enter`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Entered {
    /// Nothing: this process is root already (of the host, or of a namespace).
    AlreadyRoot,
    /// This process is now root of a user namespace of its own.
    Inside,
}

/// Makes an ordinary user's builder root of a user namespace that maps the caller's
/// ids (see the module's docs). Call it before any thread is started: a
/// multithreaded process may neither fork safely nor enter a user namespace.
pub fn enter() -> Result<Entered, Error> {
    if nix::unistd::geteuid().is_root() {
        return Ok(Entered::AlreadyRoot);
    }
    let plan = plan_for(&Caller::current())?;
    let pid = nix::unistd::getpid();
    let (mut ours, mut theirs) = UnixStream::pair().map_err(|e| Error::sys("create a socket pair", e))?;
    // SAFETY: the caller promises a single thread, so the child may do anything.
    match unsafe { fork() }.map_err(|e| Error::sys("fork the id-map helper", e.into()))? {
        ForkResult::Child => {
            drop(ours);
            // Once we unshared: write the maps, say how it went, and go.
            let mut ready = [0u8];
            let code = match theirs.read_exact(&mut ready) {
                Err(_) => 0, // the unshare failed; builder says why
                Ok(()) => match write_maps(pid.as_raw(), &plan) {
                    Ok(()) => 0,
                    Err(e) => {
                        let _ = theirs.write_all(e.to_string().as_bytes());
                        1
                    }
                },
            };
            // SAFETY: _exit skips the parent's atexit handlers and destructors, which
            // are not ours to run.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            // SAFETY: unshare has no memory-safety preconditions; one thread (see above).
            let unshared = if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } < 0 {
                Err(super::clone_error(io::Error::last_os_error()).rename("enter a user namespace for builder"))
            } else {
                ours.write_all(&[1]).map_err(|e| Error::sys("start the id-map helper", e))
            };
            if unshared.is_err() {
                drop(ours);
                let _ = waitpid(child, None);
                return unshared.map(|()| Entered::Inside);
            }
            let mut said = String::new();
            let _ = ours.read_to_string(&mut said);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(Entered::Inside),
                // Its error has the cause (the helper's complaint, the sysctl...).
                _ if !said.is_empty() => Err(Error::sys("map ids", io::Error::other(said))),
                other => Err(Error::sys("map ids", io::Error::other(format!("the helper ended with {other:?}")))),
            }
        }
    }
}

/// In the environment of an image [`reexec_to_enter`] started: enter at start.
const REEXEC_MARK: &str = "_BUILDER_ENTER_USER_NAMESPACE";

/// Replaces this process's image with builder itself, with the same arguments and the
/// mark `why` that [`take_reexec_mark`] finds: for a command that ran outside builder's
/// user namespace and found it needs it. The pid, the terminal, open descriptors
/// without close-on-exec and the signal mask stay; nothing stays between the caller
/// and the new image. Returns only if the exec failed, with why.
pub fn reexec_to_enter(why: &str) -> Error {
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "builder".into());
    // The running binary itself, even if its file was replaced or removed meanwhile.
    let e = std::process::Command::new("/proc/self/exe").arg0(arg0).args(args).env(REEXEC_MARK, why).exec();
    Error::sys("re-execute builder to enter its user namespace (/proc/self/exe)", e)
}

/// The mark of [`reexec_to_enter`], if it started this image. The mark leaves the
/// environment, so that no child inherits it. Call it before any thread is started.
pub fn take_reexec_mark() -> Option<String> {
    let mark = std::env::var_os(REEXEC_MARK)?;
    // SAFETY: the caller promises a single thread: nothing reads the environment while
    // it changes.
    unsafe { std::env::remove_var(REEXEC_MARK) };
    Some(mark.to_string_lossy().into_owned())
}

/// The maps [`enter`] would give builder's user namespace here (0 → the caller, 1... →
/// its subordinate ids, or root alone); `None` as root, who enters none. A command
/// that stays outside reads file owners through them, as it would see them inside.
pub fn mapping_to_enter() -> Result<Option<IdMapping>, Error> {
    if nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    // As `plan_for`, without its warning: nothing is mapped yet, nothing is lost.
    let caller = Caller::current();
    let ranges = |r: &Result<Vec<super::SubordinateRange>, String>| {
        r.clone().map_err(|why| Error::sys("find subordinate ids", io::Error::other(why)))
    };
    let (subuids, subgids) = (ranges(&caller.subuids)?, ranges(&caller.subgids)?);
    Ok(Some(IdMapping::new(caller.uid, caller.gid, &subuids, &subgids)))
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
