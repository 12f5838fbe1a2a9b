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
//! Not every command enters, and a build tries outside first (`crate::rootless`;
//! the attempt's state: [`outside`]).

mod outside;

use crate::cli::{Cli, Command};
pub use outside::{
    NeedsUserNamespace, attempting, falls_back, gc_only, owner_seen_inside, reexec, reexec_for_gc, start_attempt,
    take_mark,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use store::Store;

/// The store `cli` uses.
pub fn store_root(cli: &Cli) -> PathBuf {
    cli.root.clone().unwrap_or_else(Store::default_root)
}

/// Every command but those that only look at the host or the credentials.
pub fn needs_store(command: &Command) -> bool {
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
            "mode: rootless (user {}): builder enters a user namespace of its own with the mapping below \
             when a command needs one, and its sandboxes run in it (metadata commands and builds that are all \
             cache hits run without)",
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
    let native = "native (each step copies the layers below it and diffs them afterwards: slower than overlayfs, \
                  same layers)";
    let fuse = "fuse-overlayfs (a FUSE daemon serves each step's filesystem: slower than overlayfs, same layers)";
    let snapshots = match executor::snapshotter_setting() {
        Err(e) => format!("{e}"),
        Ok(Some(chosen)) => {
            let what = match chosen {
                executor::Snapshotter::Native => native,
                executor::Snapshotter::FuseOverlayfs => fuse,
                executor::Snapshotter::Overlayfs => "overlayfs",
            };
            format!("{what}, chosen by {}={chosen}", executor::SNAPSHOTTER_ENV)
        }
        Ok(None) if uid.is_root() => match executor::choose_snapshotter(root) {
            Ok(executor::SnapshotterChoice { snapshotter: executor::Snapshotter::Overlayfs, .. }) => {
                "overlayfs".to_string()
            }
            Ok(choice) => {
                let what = if choice.snapshotter == executor::Snapshotter::Native { native } else { fuse };
                format!("{what}: {}", choice.why.unwrap_or_default())
            }
            Err(e) => format!("{e}"),
        },
        Ok(None) => match &isolation.overlay {
            Ok(()) => "overlayfs in the user namespace (userxattr: opaque directories as user.overlay.opaque, \
                       whiteouts as 0/0 character devices)"
                .to_string(),
            // builder tries fuse-overlayfs in its own user namespace, where it is root.
            Err(why) => format!(
                "{}: {}; fix: Linux 5.11 or later, and a store on a filesystem with user xattrs",
                if executor::fuse_overlayfs_program().is_some() {
                    "fuse-overlayfs where it mounts in builder's user namespace, else native"
                } else {
                    native
                },
                executor::overlay_refused(why)
            ),
        },
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
