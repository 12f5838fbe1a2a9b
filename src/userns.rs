//! Rootless builder: as an ordinary user, the commands that touch the store run in a
//! user namespace of builder's own (`executor::enter_user_namespace`, rootless
//! Podman's design), where builder is root: layers are unpacked with their owners,
//! overlays are mounted for COPY, upperdirs of any owner are diffed and removed. On
//! the host the store's files are the caller's, or the caller's subordinate ids for
//! files a layer gives other owners.
//!
//! The store is chosen before entering (`$XDG_DATA_HOME/builder`, else
//! `~/.local/share/builder`, unless `--root`/`BUILDER_ROOT` say otherwise) and kept
//! in `cli.root`: inside, builder is root and would pick `/var/lib/builder`.
//!
//! Not every command enters, and a build tries outside first ([`place`]).

mod place;

use crate::cli::{Cli, Command};
use anyhow::Result;
use place::{Facts, Place};
pub use place::{NeedsUserNamespace, attempting, falls_back, gc_only, owner_seen_inside, reexec, reexec_for_gc};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use store::Store;

/// Enters builder's user namespace when `cli` needs one (as an ordinary user, for a
/// command that touches the store and may need it, see [`place`]). Call it before
/// any thread starts.
pub fn enter(cli: &mut Cli) -> Result<()> {
    let reexecuted = place::take_mark();
    if !needs_store(&cli.command) {
        return Ok(());
    }
    let root = store_root(cli);
    let facts = Facts {
        root: rustix::process::geteuid().is_root(),
        reexecuted,
        temps_quiet: place::temps_quiet(&root),
        cached: !crate::cache::DiskCacheStore::is_empty_at(&root.join("cache")),
    };
    cli.root = Some(root);
    let why = match place::decide(&cli.command, &facts) {
        Place::Here(why) => {
            tracing::debug!("user namespace: not needed ({why})");
            return Ok(());
        }
        Place::Attempt => match executor::mapping_to_enter() {
            Ok(Some(mapping)) => {
                tracing::debug!("user namespace: not entered: the build runs without it unless it needs it");
                place::start_attempt(mapping);
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

/// The store `cli` uses.
pub fn store_root(cli: &Cli) -> PathBuf {
    cli.root.clone().unwrap_or_else(Store::default_root)
}

/// Every command but those that only look at the host or the credentials.
fn needs_store(command: &Command) -> bool {
    !matches!(command, Command::Doctor | Command::Login { .. } | Command::Logout { .. })
}

/// Why slirp4netns cannot give this rootless builder's sandboxes a network, if it
/// cannot: its tap device is opened as the caller. `None` as real root.
pub fn tun_unusable() -> Option<String> {
    executor::current_user_namespace()?;
    let tun = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun");
    tun.err().map(|e| format!("/dev/net/tun cannot be opened ({})", e.kind().to_string().to_lowercase()))
}

/// `builder doctor`'s first lines: root or rootless, the namespace builder runs in,
/// the store, and how snapshots are made.
pub fn doctor(root: &Path) -> String {
    let mut out = String::new();
    let uid = rustix::process::geteuid();
    let isolation = executor::probe().user_namespace;
    if uid.is_root() && executor::current_user_namespace().is_none() {
        let _ = writeln!(out, "mode: root (builder and its sandboxes use the host's ids)");
    } else if let Some(mapping) = executor::current_user_namespace() {
        let _ = writeln!(out, "mode: inside a user namespace already ({mapping}); builder is its root");
    } else {
        let _ = writeln!(
            out,
            "mode: rootless (user {}): builder re-executes itself in a user namespace of its own with the \
             mapping below, and its sandboxes run in it",
            isolation.user
        );
        if let Ok(mapping) = &isolation.mapping
            && mapping.is_single_id()
        {
            let _ = writeln!(
                out,
                "  warning: only root is mapped: layers with files of other owners cannot be unpacked, \
                 COPY --chown and RUN chown to other ids and USER other than root fail with an error; fix: \
                 `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {}` (as root)",
                isolation.user
            );
        }
    }
    let owner = std::fs::metadata(root).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    match owner {
        Ok(owner) => {
            let _ = writeln!(out, "store: {} (owned by uid {owner})", root.display());
        }
        Err(_) => {
            let _ = writeln!(out, "store: {} (not created yet)", root.display());
        }
    }
    let snapshots = match (&isolation.overlay, uid.is_root()) {
        (_, true) => "overlayfs".to_string(),
        (Ok(()), false) => "overlayfs in the user namespace (userxattr: opaque directories as \
                            user.overlay.opaque, whiteouts as 0/0 character devices)"
            .to_string(),
        (Err(why), false) => format!(
            "none: overlayfs does not work in a user namespace here ({why}); builds fail (no fuse-overlayfs \
             or copying fallback yet; Linux 5.11 or later is needed)"
        ),
    };
    let _ = writeln!(out, "snapshotter: {snapshots}");
    let _ = writeln!(
        out,
        "device nodes in layers: {}",
        if uid.is_root() {
            "created"
        } else {
            "skipped with a warning (a user namespace may not make them), as rootless BuildKit does"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from([&["builder"], args].concat()).unwrap()
    }

    #[test]
    fn store_commands_enter_and_host_commands_do_not() {
        for args in [&["build", "."][..], &["run", "busybox"], &["images"], &["prune"], &["fsck"], &["pull", "x"]] {
            assert!(needs_store(&cli(args).command), "{args:?}");
        }
        for args in [&["doctor"][..], &["login", "reg"], &["logout", "reg"]] {
            assert!(!needs_store(&cli(args).command), "{args:?}");
        }
    }

    #[test]
    fn the_store_is_chosen_before_entering() {
        assert_eq!(store_root(&cli(&["--root", "/s", "images"])), PathBuf::from("/s"));
    }
}
