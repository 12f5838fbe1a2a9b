//! A build's attempt outside builder's user namespace (`crate::rootless` decides when):
//! its state, what ends it ([`NeedsUserNamespace`]), how owners are read meanwhile
//! ([`owner_seen_inside`]), and the re-exec that enters when it needs to ([`reexec`],
//! [`reexec_for_gc`]).

use executor::IdMapping;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The marks [`reexec`] and [`reexec_for_gc`] give the new image.
const AGAIN_BUILD: &str = "build";
const AGAIN_GC: &str = "gc";

/// Something a build outside builder's user namespace was about to do and may not
/// there; the build then runs again inside.
#[derive(Debug, thiserror::Error)]
pub enum NeedsUserNamespace {
    /// An op or a step that needs root of the namespace (or must not run twice).
    #[error("{what} needs builder's user namespace")]
    Op { what: String },
    /// A warning was logged: inside, the build may not log it (a stale temp there is
    /// removed, not left with a warning).
    #[error("{count} warning(s) logged outside builder's user namespace")]
    Warned { count: usize },
}

impl NeedsUserNamespace {
    pub fn op(what: impl Into<String>) -> NeedsUserNamespace {
        NeedsUserNamespace::Op { what: what.into() }
    }
}

/// The attempt outside: the mapping the namespace would have, and the ids the kernel
/// shows for unmapped ones.
struct Outside {
    mapping: IdMapping,
    overflow: (u32, u32),
}

static OUTSIDE: OnceLock<Outside> = OnceLock::new();

/// Makes this process the attempt outside, reading owners through `mapping`.
pub fn start_attempt(mapping: IdMapping) {
    let overflow = |file: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{file}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65534)
    };
    let _ = OUTSIDE.set(Outside { mapping, overflow: (overflow("overflowuid"), overflow("overflowgid")) });
}

/// Whether this process is a build's attempt outside builder's user namespace.
pub fn attempting() -> bool {
    OUTSIDE.get().is_some()
}

/// The owner (`uid`, `gid`) of a host file as builder sees it in its user namespace:
/// as it is, unless this is the attempt outside, where it goes through the mapping
/// the namespace would have (the caller is 0, an unmapped id the overflow id).
pub fn owner_seen_inside(uid: u32, gid: u32) -> (u32, u32) {
    match OUTSIDE.get() {
        None => (uid, gid),
        Some(outside) => see(outside, uid, gid),
    }
}

fn see(outside: &Outside, uid: u32, gid: u32) -> (u32, u32) {
    (
        outside.mapping.uid.to_container(uid).unwrap_or(outside.overflow.0),
        outside.mapping.gid.to_container(gid).unwrap_or(outside.overflow.1),
    )
}

/// After the attempt failed with `error`: whether builder starts over inside. Not
/// after SIGINT or SIGTERM: the user stopped the build.
pub fn falls_back(error: &anyhow::Error) -> bool {
    let stopped = error.chain().any(|c| c.downcast_ref::<crate::ExitError>().is_some_and(|e| e.code >= 128));
    attempting() && !stopped && !crate::signals::interrupted()
}

/// Replaces builder by itself, entering the namespace at start (same pid, same
/// arguments). Returns only if that failed, with the error to report.
pub fn reexec(why: &anyhow::Error) -> anyhow::Error {
    tracing::debug!("user namespace: needed after all ({why:#}): builder re-executes itself to enter it");
    flush();
    anyhow::Error::new(executor::reexec_to_enter(AGAIN_BUILD)).context(format!("{why:#}"))
}

/// After a build that succeeded outside, when the automatic GC is due: replaces
/// builder by itself, which enters and runs only that ([`gc_only`]). Returns only if
/// that failed, with why.
pub fn reexec_for_gc() -> anyhow::Error {
    tracing::debug!("user namespace: needed for the automatic GC: builder re-executes itself to enter it");
    flush();
    executor::reexec_to_enter(AGAIN_GC).into()
}

/// What the replaced image printed must be out before the new one prints.
fn flush() {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

static GC_ONLY: AtomicBool = AtomicBool::new(false);

/// Reads the mark [`reexec`] or [`reexec_for_gc`] left (call it first, with one
/// thread): whether this image was re-executed.
pub fn take_mark() -> bool {
    let mark = executor::take_reexec_mark();
    GC_ONLY.store(mark.as_deref() == Some(AGAIN_GC), Ordering::Relaxed);
    mark.is_some()
}

/// Whether this image is the build's automatic GC alone (the build succeeded before
/// the re-exec, outside builder's user namespace, and showed its result).
pub fn gc_only() -> bool {
    GC_ONLY.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use executor::{IdMap, IdRange};

    #[test]
    fn owners_are_read_as_the_namespace_shows_them() {
        let map = |host: u32| IdMap {
            ranges: vec![IdRange { container: 0, host, size: 1 }, IdRange { container: 1, host: 100000, size: 65536 }],
        };
        let outside = Outside { mapping: IdMapping { uid: map(1000), gid: map(1001) }, overflow: (65534, 65533) };
        assert_eq!(see(&outside, 1000, 1001), (0, 0), "the caller is root");
        assert_eq!(see(&outside, 101000, 101000), (1001, 1001), "a subordinate id");
        assert_eq!(see(&outside, 0, 0), (65534, 65533), "host root is not mapped");
        assert_eq!(see(&outside, 1001, 1000), (65534, 65533), "nor are other users");
        // Not the attempt (tests never are): owners stay as they are.
        assert_eq!(owner_seen_inside(1000, 1001), (1000, 1001));
    }
}
