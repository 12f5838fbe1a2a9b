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
//!   (`userns::reexec`, the same pid and arguments), and that run shows and reports
//!   everything once. The fast path can only save time.
//! - everything else enters at start, as before.
//!
//! Outside, the caller reads its files as uid 1000 where builder inside reads uid 0:
//! the context's owners (part of a COPY's cache key) are read through the mapping the
//! namespace would have (`userns::owner_seen_inside`), so both sides make the same keys. And
//! what opening the store does must not differ either: it removes stale temps, which
//! may hold files of subordinate owners, so a store whose `tmp/` is not empty is
//! worked on inside. The automatic GC after a build walks new snapshots and removes
//! old ones: when it is due (at most once a minute) after a build that succeeded
//! outside, builder re-executes itself to run only that, inside (`userns::reexec_for_gc`); the attempt's state is `userns/outside.rs`.

use crate::cli::{BuildArgs, Cli, Command};
use anyhow::Result;
use std::path::Path;

/// Enters builder's user namespace when `cli` needs one (as an ordinary user, for a
/// command that touches the store and may need it), or makes this process a build's
/// attempt outside. Call it before any thread starts.
pub fn enter(cli: &mut Cli) -> Result<()> {
    let reexecuted = crate::userns::take_mark();
    if !crate::userns::needs_store(&cli.command) {
        return Ok(());
    }
    let root = crate::userns::store_root(cli);
    let facts = Facts {
        root: rustix::process::geteuid().is_root(),
        reexecuted,
        temps_quiet: temps_quiet(&root),
        cached: !crate::cache::DiskCacheStore::is_empty_at(&root.join("cache")),
    };
    cli.root = Some(root);
    let why = match decide(&cli.command, &facts) {
        Place::Here(why) => {
            tracing::debug!("user namespace: not needed ({why})");
            return Ok(());
        }
        Place::Attempt => match executor::mapping_to_enter() {
            Ok(Some(mapping)) => {
                tracing::debug!("user namespace: not entered: the build runs without it unless it needs it");
                crate::userns::start_attempt(mapping);
                return Ok(());
            }
            // Entering says what is wrong with the ids, or enters none as root.
            Ok(None) | Err(_) => "its mapping could not be read outside".to_string(),
        },
        Place::Inside(why) => why,
    };
    tracing::debug!("user namespace: entering ({why})");
    executor::enter_user_namespace()?;
    Ok(())
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
    /// This image was started by `userns::reexec`: the attempt outside needed the namespace.
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
        return Place::Inside("builder re-executed itself to enter".into());
    }
    let metadata_only = match command {
        Command::Images
        | Command::Inspect { .. }
        | Command::History { .. }
        | Command::Tag { .. }
        | Command::Rmi { .. } => true,
        Command::Build(args) => builds_nothing(args),
        _ => false,
    };
    let args = match command {
        _ if metadata_only && facts.temps_quiet => {
            return Place::Here("the command reads and writes the caller's metadata only");
        }
        _ if metadata_only => return Place::Inside("the store's tmp/ has entries to remove".into()),
        Command::Build(args) => args,
        _ => return Place::Inside("the command works on snapshots, mounts or sandboxes".into()),
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

/// `build --print` and `build --call`/`--check` other than `build`: the Dockerfile is
/// compiled against the store's images, nothing is built.
fn builds_nothing(args: &BuildArgs) -> bool {
    let call = args.more.call.as_deref().map(|c| c.split(',').next().unwrap_or(c));
    args.print.is_some() || args.more.check || call.is_some_and(|c| c != "build")
}

/// What of a build's command line needs the namespace whatever is cached, if any:
/// outputs other than the store's image (they read snapshots or compress layers),
/// pushes, pulls, cache imports and exports, ssh agents; and input that can be read
/// once only (a Dockerfile or secret from a pipe, `<(...)`, stdin), which the attempt
/// would take from the run inside.
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
    let secret_files = args.secrets.iter().flat_map(|spec| {
        spec.split(',').filter_map(|field| field.strip_prefix("src=").or_else(|| field.strip_prefix("source=")))
    });
    for path in args.file.iter().map(|f| f.as_path()).chain(secret_files.map(Path::new)) {
        if read_once(path) {
            return Some(format!("{} can be read once only", path.display()));
        }
    }
    None
}

/// Whether `path` exists and is not a regular file (a pipe, a terminal, a device).
fn read_once(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file())
}

/// Whether the store at `root` has nothing in `tmp/` (or no `tmp/` yet).
pub fn temps_quiet(root: &Path) -> bool {
    match std::fs::read_dir(root.join("tmp")) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser as _;

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
            &["build", "--call", "build", "."],
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
            (&["build", "-f", "/dev/null", "."], "/dev/null can be read once only"),
            (&["build", "--secret", "id=s,src=/dev/null", "."], "/dev/null can be read once only"),
            (&["build", "--secret", "type=file,id=s,source=/dev/zero", "."], "/dev/zero can be read once only"),
        ] {
            assert_eq!(place(args, &QUIET), Place::Inside(why.into()), "{args:?}");
        }
        for args in [&["run", "busybox"][..], &["prune"], &["du"], &["fsck"], &["pull", "x"], &["import", "t", "x"]] {
            assert!(matches!(place(args, &QUIET), Place::Inside(_)), "{args:?}");
        }
    }

    #[test]
    fn metadata_commands_stay_where_they_are() {
        for args in [
            &["images"][..],
            &["inspect", "a"],
            &["history", "a"],
            &["tag", "a", "b"],
            &["rmi", "a"],
            &["build", "--print", "graph", "."],
            &["build", "--check", "."],
            &["build", "--call", "outline,format=json", "."],
        ] {
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
}
