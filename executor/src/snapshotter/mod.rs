//! How a rootfs with layers is put together: overlayfs where the kernel allows it,
//! else fuse-overlayfs where it is installed and works (`fuse.rs`: its upperdirs are
//! rewritten into overlayfs's form afterwards), else the native snapshotter (buildah's vfs driver, BuildKit's `native`): the
//! layers copied into a plain directory the step uses as its root, and its changes
//! written afterwards into the upperdir the caller gave, in overlayfs's form
//! (`merge.rs`, `diff.rs`), so callers never know which one ran and the layers, and
//! the image digests, come out the same.
//!
//! `BUILDER_SNAPSHOTTER=overlayfs|fuse-overlayfs|native` chooses; unset, overlayfs is
//! tried once per process where the upperdirs live (`probe`), then fuse-overlayfs, and
//! the native snapshotter is the last fallback where overlayfs is refused (a kernel before 5.11 in a user namespace, an
//! upperdir filesystem overlayfs does not take, such as overlayfs itself). A process
//! that uses a fallback says so once, with why.

mod diff;
mod merge;
mod native;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

pub(crate) use native::{Prepared, prepare_rootfs, prepare_spec};

use crate::Error;
use crate::syscall::{Overlay, Real, Syscall};

/// The environment variable that chooses a snapshotter.
pub const SNAPSHOTTER_ENV: &str = "BUILDER_SNAPSHOTTER";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    /// Overlayfs mounts: a step's changes land in its upperdir as it runs.
    Overlayfs,
    /// fuse-overlayfs mounts, the same way.
    FuseOverlayfs,
    /// Copies of the layers, diffed after the step.
    Native,
}

impl fmt::Display for Snapshotter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Snapshotter::Overlayfs => "overlayfs",
            Snapshotter::FuseOverlayfs => "fuse-overlayfs",
            Snapshotter::Native => "native",
        })
    }
}

/// The snapshotter this process uses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotterChoice {
    pub snapshotter: Snapshotter,
    /// `BUILDER_SNAPSHOTTER=...`, or why overlayfs was refused; `None` for overlayfs
    /// chosen automatically.
    pub why: Option<String>,
}

impl fmt::Display for SnapshotterChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.snapshotter, &self.why) {
            (s, None) => write!(f, "{s}"),
            (s, Some(why)) => write!(f, "{s} ({why})"),
        }
    }
}

/// The snapshotter `BUILDER_SNAPSHOTTER` asks for, if set.
pub fn snapshotter_setting() -> Result<Option<Snapshotter>, Error> {
    let Some(value) = std::env::var_os(SNAPSHOTTER_ENV) else { return Ok(None) };
    parse_setting(&value.to_string_lossy())
}

fn parse_setting(value: &str) -> Result<Option<Snapshotter>, Error> {
    match value {
        "" | "auto" => Ok(None),
        "overlayfs" | "overlay" => Ok(Some(Snapshotter::Overlayfs)),
        "native" => Ok(Some(Snapshotter::Native)),
        "fuse-overlayfs" => match (crate::fuse_overlay::program(), crate::fuse_overlay::open_dev_fuse()) {
            (Some(_), Ok(_)) => Ok(Some(Snapshotter::FuseOverlayfs)),
            (None, _) => Err(Error::sys(
                format!("{SNAPSHOTTER_ENV}={value}"),
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "fuse-overlayfs is not installed (apt-get install fuse-overlayfs)",
                ),
            )),
            (Some(_), Err(e)) => Err(Error::sys(format!("{SNAPSHOTTER_ENV}={value}"), e)),
        },
        other => Err(Error::sys(
            format!("{SNAPSHOTTER_ENV}={other}"),
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "unknown snapshotter: overlayfs, fuse-overlayfs, native or auto",
            ),
        )),
    }
}

/// The snapshotter for upperdirs made in `dir`: the setting, or overlayfs if a trial
/// mount there works, else native. Not cached: `builder doctor` asks once.
pub fn choose_snapshotter(dir: &Path) -> Result<SnapshotterChoice, Error> {
    if let Some(snapshotter) = snapshotter_setting()? {
        return Ok(SnapshotterChoice { snapshotter, why: Some(format!("{SNAPSHOTTER_ENV}={snapshotter}")) });
    }
    // Not root, and not in builder's own user namespace: sandboxes mount their overlays
    // in user namespaces of their own, which the trial sandbox tries.
    let outside = !nix::unistd::geteuid().is_root() && crate::userns::enter::current().is_none();
    let tried = if outside { crate::userns::probe::user_namespaces().overlay } else { probe(dir) };
    let why = match tried {
        Ok(()) => return Ok(SnapshotterChoice { snapshotter: Snapshotter::Overlayfs, why: None }),
        Err(why) => refused(&why),
    };
    let fuse = match crate::fuse_overlay::program() {
        None => Err("not installed".to_string()),
        // Its trial needs a mount namespace of a thread's own, as the overlay's did.
        Some(_) if outside => Err("not tried outside builder's user namespace".to_string()),
        Some(program) => probe_fuse(dir, &program),
    };
    Ok(match fuse {
        Ok(()) => SnapshotterChoice { snapshotter: Snapshotter::FuseOverlayfs, why: Some(why) },
        Err(e) => {
            SnapshotterChoice { snapshotter: Snapshotter::Native, why: Some(format!("{why}; fuse-overlayfs: {e}")) }
        }
    })
}

/// Why the native snapshotter is used when overlayfs failed with `why`.
pub fn refused(why: &str) -> String {
    format!("overlayfs refused here: {why}")
}

/// This process's snapshotter, chosen on first use for upperdirs in `dir` (the first
/// rootfs's), and the warning that says so when it is not overlayfs.
pub(crate) fn current(dir: &Path) -> Result<Snapshotter, Error> {
    static CHOICE: OnceLock<SnapshotterChoice> = OnceLock::new();
    if let Some(choice) = CHOICE.get() {
        return Ok(choice.snapshotter);
    }
    let choice = choose_snapshotter(dir)?;
    let mut first = false;
    let choice = CHOICE.get_or_init(|| {
        first = true;
        choice
    });
    let why = choice.why.as_deref().unwrap_or_default();
    match choice.snapshotter {
        Snapshotter::Overlayfs => {}
        _ if !first => {}
        Snapshotter::FuseOverlayfs => tracing::warn!(
            "snapshotter: fuse-overlayfs, {why}: each step's filesystem is served by a FUSE daemon, slower than \
             overlayfs (see `builder doctor`)"
        ),
        Snapshotter::Native => tracing::warn!(
            "snapshotter: native, {why}: each step copies the layers below it and diffs them afterwards, slower than \
             overlayfs (see `builder doctor`)"
        ),
    }
    Ok(choice.snapshotter)
}

/// Mounts a throwaway overlay in a temporary directory under `dir`, on a helper
/// thread with a mount namespace of its own (nothing stays mounted), with `userxattr`
/// in a user namespace as the real ones are.
fn probe(dir: &Path) -> Result<(), String> {
    trial_mount(dir, None)
}

/// [`probe`] with fuse-overlayfs.
fn probe_fuse(dir: &Path, program: &Path) -> Result<(), String> {
    trial_mount(dir, Some(program))
}

fn trial_mount(dir: &Path, fuse: Option<&Path>) -> Result<(), String> {
    let existing = dir.ancestors().find(|d| d.is_dir()).unwrap_or(Path::new("/"));
    let t = tempfile::Builder::new()
        .prefix(".builder-probe-")
        .tempdir_in(existing)
        .map_err(|e| format!("create a trial directory in {}: {}", existing.display(), crate::describe_io(&e)))?;
    let names = ["lower1", "lower2", "upper", "work", "mnt"];
    for name in names {
        std::fs::create_dir(t.path().join(name)).map_err(|e| crate::describe_io(&e))?;
    }
    let userxattr = crate::userns::enter::current().is_some() || !nix::unistd::geteuid().is_root();
    let overlay = Overlay {
        lowerdirs: vec![t.path().join("lower1"), t.path().join("lower2")],
        upper: Some((t.path().join("upper"), t.path().join("work"))),
        readonly: false,
        nodev: true,
        userxattr,
        fuse: fuse.map(Path::to_path_buf),
    };
    let target = t.path().join("mnt");
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("unshare mount namespace: {}", crate::describe_io(&e.into())))?;
            Real.mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)
                .map_err(|e| format!("make / private: {}", crate::describe_io(&e)))?;
            Real.mount_overlay(&target, &overlay)
                .map_err(|e| format!("mount overlay on {}: {}", existing.display(), crate::describe_io(&e)))?;
            let _ = Real.umount(&target, MntFlags::MNT_DETACH);
            crate::fuse_overlay::wait_all();
            // overlayfs leaves `work/work` mode 000: removable again once searchable.
            let _ = std::fs::set_permissions(
                t.path().join("work/work"),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            );
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err("the trial mount panicked".into()))
    })
}

/// Rewrites the upperdir of `rootfs`, if it has one, as fuse-overlayfs left it into
/// overlayfs's form.
pub(crate) fn normalize_fuse_upper(rootfs: &crate::Rootfs) -> Result<(), Error> {
    match &rootfs.upper {
        Some(upper) if !rootfs.lowerdirs.is_empty() => {
            crate::fuse_overlay::normalize(&upper.upperdir, &rootfs.lowerdirs, opaque_xattr())
                .map_err(|e| Error::sys(format!("read fuse-overlayfs's changes in {}", upper.upperdir.display()), e))
        }
        _ => Ok(()),
    }
}

/// The opaque marker overlayfs would write here: `user.overlay.opaque` in a user
/// namespace (`userxattr`), `trusted.overlay.opaque` as real root.
pub(crate) fn opaque_xattr() -> &'static std::ffi::CStr {
    if crate::userns::enter::current().is_some() || !nix::unistd::geteuid().is_root() {
        c"user.overlay.opaque"
    } else {
        c"trusted.overlay.opaque"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_names_a_snapshotter_or_fails_by_name() {
        assert_eq!(parse_setting("native").unwrap(), Some(Snapshotter::Native));
        assert_eq!(parse_setting("overlayfs").unwrap(), Some(Snapshotter::Overlayfs));
        assert_eq!(parse_setting("").unwrap(), None);
        let e = parse_setting("vfs").unwrap_err().to_string();
        assert!(e.starts_with("BUILDER_SNAPSHOTTER=vfs: unknown snapshotter"), "{e}");
    }

    #[test]
    fn a_refusal_is_said_with_its_reason() {
        let choice =
            SnapshotterChoice { snapshotter: Snapshotter::Native, why: Some(refused("mount overlay on /s: invalid")) };
        assert_eq!(choice.to_string(), "native (overlayfs refused here: mount overlay on /s: invalid)");
    }
}
