//! Where a command of an ordinary user runs. Entering builder's user namespace costs
//! a fork and two setuid helpers at every command (milliseconds: 1.7× a no-op
//! rebuild), and most of what builder does to the store needs no root of the
//! namespace: its metadata (refs, manifests, configs, cache records, leases, locks,
//! the context's stat cache) is the caller's on the host, written and read alike
//! from either side. Only snapshot contents (files of subordinate owners), mounts
//! and sandboxes need it. So:
//!
//! - commands that read and write only metadata (`images`, `inspect`, `history`,
//!   `tag`, `rmi`) never enter;
//! - `builder build` first runs outside ([`Place::Attempt`]): its worker refuses,
//!   before any side effect, every op that needs the namespace (`ops/outside.rs`), a
//!   pull is refused too (its step would be shown by a run that then found the image
//!   pulled), and its display is recorded, not shown (`progress::Recording`). If the
//!   attempt succeeds its display is replayed; if it fails in any way (a refused op,
//!   any other error, a logged warning), builder re-executes itself to enter
//!   ([`reexec`], the same pid and arguments), and that run shows and reports
//!   everything once. The fast path can only save time.
//! - everything else enters at start, as before.
//!
//! Outside, the caller reads its files as uid 1000 where builder inside reads uid 0:
//! the context's owners (part of a COPY's cache key) are read through the mapping the
//! namespace would have ([`owner_seen_inside`]), so both sides make the same keys. And
//! what opening the store does must not differ either: it removes stale temps, which
//! may hold files of subordinate owners, so a store whose `tmp/` is not empty is
//! worked on inside. The automatic GC after a build walks new snapshots and removes
//! old ones: when it is due (at most once a minute) after a build that succeeded
//! outside, builder re-executes itself to run only that, inside ([`reexec_for_gc`]).

use crate::cli::{BuildArgs, Command};
use executor::IdMapping;
use std::path::Path;
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

/// Where a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Where builder was started, with why.
    Here(&'static str),
    /// In builder's user namespace, entered at start, with why.
    Inside(String),
    /// A build outside, which re-executes builder to enter if it needs the namespace.
    Attempt,
}

/// What the choice depends on besides the command.
#[derive(Debug, Clone)]
pub struct Facts {
    /// builder runs as root (of the host, or of a namespace already): nothing to enter.
    pub root: bool,
    /// This image was started by [`reexec`]: the attempt outside needed the namespace.
    pub reexecuted: bool,
    /// The store's `tmp/` is empty or missing: opening it removes nothing.
    pub temps_quiet: bool,
    /// The store's build cache holds records: a build may be all hits.
    pub cached: bool,
}

/// Where `command` runs, given `facts` (every command here touches the store).
pub fn decide(command: &Command, facts: &Facts) -> Place {
    if facts.root {
        return Place::Here("builder runs as root");
    }
    if facts.reexecuted {
        return Place::Inside("the build needed it outside".into());
    }
    let metadata_only = matches!(
        command,
        Command::Images | Command::Inspect { .. } | Command::History { .. } | Command::Tag { .. } | Command::Rmi { .. }
    );
    let Command::Build(args) = command else {
        return match metadata_only {
            true if facts.temps_quiet => Place::Here("the command reads and writes the caller's metadata only"),
            true => Place::Inside("the store's tmp/ has entries to remove".into()),
            false => Place::Inside("the command works on snapshots, mounts or sandboxes".into()),
        };
    };
    if let Some(why) = build_needs(args) {
        return Place::Inside(why);
    }
    if !facts.temps_quiet {
        return Place::Inside("the store's tmp/ has entries to remove".into());
    }
    if !facts.cached {
        return Place::Inside("the build cache is empty: every step runs".into());
    }
    Place::Attempt
}

/// What of a build's command line needs the namespace whatever is cached, if any:
/// outputs other than the store's image (they read snapshots or compress layers),
/// pushes, pulls, cache imports and exports, ssh agents.
fn build_needs(args: &BuildArgs) -> Option<String> {
    let flags = [
        (args.push, "--push"),
        (args.pull, "--pull"),
        (!args.cache_to.is_empty(), "--cache-to"),
        (!args.cache_from.is_empty(), "--cache-from"),
        (!args.ssh.is_empty(), "--ssh"),
    ];
    if let Some((_, flag)) = flags.iter().find(|(given, _)| *given) {
        return Some(format!("{flag} needs it"));
    }
    for spec in &args.outputs {
        // A bad spec is the run inside's to report.
        match crate::export::parse_output(spec) {
            Ok(output) if output.keeps_layers() => {}
            _ => return Some(format!("-o {spec} needs it")),
        }
    }
    None
}

/// Whether the store at `root` has nothing in `tmp/` (or no `tmp/` yet).
pub fn temps_quiet(root: &Path) -> bool {
    match std::fs::read_dir(root.join("tmp")) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
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
    use crate::cli::Cli;
    use clap::Parser as _;
    use executor::{IdMap, IdRange};

    fn command(args: &[&str]) -> Command {
        Cli::try_parse_from([&["builder"], args].concat()).unwrap().command
    }

    const QUIET: Facts = Facts { root: false, reexecuted: false, temps_quiet: true, cached: true };

    fn place(args: &[&str], facts: &Facts) -> Place {
        decide(&command(args), facts)
    }

    #[test]
    fn a_build_that_may_be_all_cached_is_tried_outside() {
        for args in [
            &["build", "."][..],
            &["build", "-t", "a", "--iidfile", "i", "--metadata-file", "m", "."],
            &["build", "--load", "-o", "type=image,name=x", "."],
            &["build", "--secret", "id=s,src=f", "--progress=rawjson", "--platform", "linux/amd64,linux/arm64", "."],
        ] {
            assert_eq!(place(args, &QUIET), Place::Attempt, "{args:?}");
        }
    }

    #[test]
    fn what_always_needs_the_namespace_enters_at_once() {
        for (args, why) in [
            (&["build", "--push", "-t", "r/a", "."][..], "--push needs it"),
            (&["build", "--pull", "."], "--pull needs it"),
            (&["build", "--cache-to", "type=inline", "."], "--cache-to needs it"),
            (&["build", "--cache-from", "type=local,src=c", "."], "--cache-from needs it"),
            (&["build", "--ssh", "default", "."], "--ssh needs it"),
            (&["build", "-o", "type=local,dest=out", "."], "-o type=local,dest=out needs it"),
            (&["build", "-o", "type=image,compression=zstd", "."], "-o type=image,compression=zstd needs it"),
            (&["build", "-o", "type=image,push=true,name=r/a", "."], "-o type=image,push=true,name=r/a needs it"),
            (&["build", "-o", "bogus=1", "."], "-o bogus=1 needs it"),
        ] {
            assert_eq!(place(args, &QUIET), Place::Inside(why.into()), "{args:?}");
        }
        for args in [&["run", "busybox"][..], &["prune"], &["du"], &["fsck"], &["pull", "x"], &["import", "t", "x"]] {
            assert!(matches!(place(args, &QUIET), Place::Inside(_)), "{args:?}");
        }
    }

    #[test]
    fn metadata_commands_stay_where_they_are() {
        for args in [&["images"][..], &["inspect", "a"], &["history", "a"], &["tag", "a", "b"], &["rmi", "a"]] {
            assert!(matches!(place(args, &QUIET), Place::Here(_)), "{args:?}");
            // Opening the store would remove stale temps, maybe of subordinate owners.
            let busy = Facts { temps_quiet: false, ..QUIET };
            assert_eq!(place(args, &busy), Place::Inside("the store's tmp/ has entries to remove".into()));
        }
    }

    #[test]
    fn a_store_to_clean_or_without_cache_is_worked_on_inside() {
        let busy = Facts { temps_quiet: false, ..QUIET };
        assert_eq!(place(&["build", "."], &busy), Place::Inside("the store's tmp/ has entries to remove".into()));
        let fresh = Facts { cached: false, ..QUIET };
        assert_eq!(place(&["build", "."], &fresh), Place::Inside("the build cache is empty: every step runs".into()));
        // Metadata is metadata, cache or not.
        assert!(matches!(place(&["images"], &fresh), Place::Here(_)));
    }

    #[test]
    fn root_never_enters_and_a_reexecuted_build_always_does() {
        let root = Facts { root: true, reexecuted: true, temps_quiet: false, cached: false };
        assert_eq!(place(&["build", "."], &root), Place::Here("builder runs as root"));
        let again = Facts { reexecuted: true, ..QUIET };
        for args in [&["build", "."][..], &["images"]] {
            assert!(matches!(place(args, &again), Place::Inside(_)), "{args:?}");
        }
    }

    #[test]
    fn temps_are_quiet_when_tmp_is_empty_or_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(temps_quiet(dir.path()));
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        assert!(temps_quiet(dir.path()));
        std::fs::write(dir.path().join("tmp/123-x"), "").unwrap();
        assert!(!temps_quiet(dir.path()));
    }

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
