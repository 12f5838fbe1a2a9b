//! [`crate::Resources::rlimits`]: `setrlimit(2)` in the forked process before it
//! switches user (as root, so a hard limit may be raised too) and execs. Checked in
//! the parent first, so a bad limit is an error before any sandbox exists.

use std::io;

use crate::{Error, Rlimit};

/// The `RLIMIT_*` resources Linux knows, by number.
#[allow(clippy::unnecessary_cast)] // `c_int` on musl, `c_uint` on glibc: fires on glibc only, so no `expect`
const NAMES: [(u32, &str); 16] = [
    (libc::RLIMIT_CPU as u32, "RLIMIT_CPU"),
    (libc::RLIMIT_FSIZE as u32, "RLIMIT_FSIZE"),
    (libc::RLIMIT_DATA as u32, "RLIMIT_DATA"),
    (libc::RLIMIT_STACK as u32, "RLIMIT_STACK"),
    (libc::RLIMIT_CORE as u32, "RLIMIT_CORE"),
    (libc::RLIMIT_RSS as u32, "RLIMIT_RSS"),
    (libc::RLIMIT_NPROC as u32, "RLIMIT_NPROC"),
    (libc::RLIMIT_NOFILE as u32, "RLIMIT_NOFILE"),
    (libc::RLIMIT_MEMLOCK as u32, "RLIMIT_MEMLOCK"),
    (libc::RLIMIT_AS as u32, "RLIMIT_AS"),
    (libc::RLIMIT_LOCKS as u32, "RLIMIT_LOCKS"),
    (libc::RLIMIT_SIGPENDING as u32, "RLIMIT_SIGPENDING"),
    (libc::RLIMIT_MSGQUEUE as u32, "RLIMIT_MSGQUEUE"),
    (libc::RLIMIT_NICE as u32, "RLIMIT_NICE"),
    (libc::RLIMIT_RTPRIO as u32, "RLIMIT_RTPRIO"),
    (libc::RLIMIT_RTTIME as u32, "RLIMIT_RTTIME"),
];

/// The `RLIMIT_*` number of a limit as Docker's `--ulimit` names it (`nofile`,
/// `nproc`, `as`...), or its full name (`RLIMIT_NOFILE`).
pub fn resource_by_name(name: &str) -> Option<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("RLIMIT_") { upper } else { format!("RLIMIT_{upper}") };
    NAMES.iter().find(|(_, n)| *n == full).map(|(number, _)| *number)
}

fn name(resource: u32) -> Option<&'static str> {
    NAMES.iter().find(|(n, _)| *n == resource).map(|(_, name)| *name)
}

fn invalid(limit: &Rlimit, why: &str) -> Error {
    let what = match name(limit.resource) {
        Some(name) => format!("rlimit {name}"),
        None => format!("rlimit {}", limit.resource),
    };
    Error::sys(what, io::Error::new(io::ErrorKind::InvalidInput, why))
}

/// Every resource known, and no soft limit above its hard limit.
pub(crate) fn check(limits: &[Rlimit]) -> Result<(), Error> {
    for limit in limits {
        if name(limit.resource).is_none() {
            return Err(invalid(limit, "unknown resource (not an RLIMIT_* number of this kernel)"));
        }
        if limit.soft > limit.hard {
            return Err(invalid(limit, &format!("soft limit {} above hard limit {}", limit.soft, limit.hard)));
        }
    }
    Ok(())
}

/// Sets each limit on this process (`u64::MAX` is `RLIM_INFINITY`).
pub(crate) fn apply(limits: &[Rlimit]) -> Result<(), Error> {
    check(limits)?;
    for limit in limits {
        let value = libc::rlimit { rlim_cur: limit.soft as libc::rlim_t, rlim_max: limit.hard as libc::rlim_t };
        // SAFETY: setrlimit reads one valid `struct rlimit`; the resource number is checked.
        if unsafe { libc::setrlimit(limit.resource as _, &value) } < 0 {
            let e = io::Error::last_os_error();
            let what = format!("set {} to {}/{}", name(limit.resource).unwrap_or("rlimit"), limit.soft, limit.hard);
            let e = match e.raw_os_error() {
                Some(libc::EPERM) => {
                    io::Error::new(e.kind(), "operation not permitted (raising a hard limit needs CAP_SYS_RESOURCE)")
                }
                _ => e,
            };
            return Err(Error::sys(what, e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(clippy::unnecessary_cast)] // `c_int` on musl, `c_uint` on glibc: fires on glibc only, so no `expect`
    fn docker_ulimit_names() {
        assert_eq!(super::resource_by_name("nofile"), Some(libc::RLIMIT_NOFILE as u32));
        assert_eq!(super::resource_by_name("as"), Some(libc::RLIMIT_AS as u32));
        assert_eq!(super::resource_by_name("RLIMIT_NPROC"), Some(libc::RLIMIT_NPROC as u32));
        assert_eq!(super::resource_by_name("files"), None);
    }

    use super::*;

    #[test]
    #[allow(clippy::unnecessary_cast)] // `c_int` on musl: fires on glibc only, so no `expect`
    fn unknown_and_inverted_limits_are_named() {
        let bad = Rlimit { resource: 99, soft: 1, hard: 1 };
        assert_eq!(
            check(&[bad]).unwrap_err().to_string(),
            "rlimit 99: unknown resource (not an RLIMIT_* number of this kernel)"
        );
        let inverted = Rlimit { resource: libc::RLIMIT_NOFILE as u32, soft: 10, hard: 5 };
        assert_eq!(
            check(&[inverted]).unwrap_err().to_string(),
            "rlimit RLIMIT_NOFILE: soft limit 10 above hard limit 5"
        );
        let fine = Rlimit { resource: libc::RLIMIT_CORE as u32, soft: 0, hard: u64::MAX };
        assert!(check(&[fine]).is_ok());
    }
}
