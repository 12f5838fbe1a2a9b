//! Mounting a [`Rootfs`] at a path: overlayfs, or a bind/tmpfs where overlayfs
//! cannot or need not be used. Shared by the sandbox and [`crate::with_rootfs_mounted`].

use std::path::Path;

use nix::mount::MsFlags;

use crate::syscall::{Overlay, Syscall};
use crate::{Error, Rootfs, Upper};

/// Mounts `rootfs` at `target`, writable if it has an upper (or `scratch`, used when it
/// has none); `rootfs.readonly` is left to the caller, who may need to create
/// mountpoints first ([`remount`]). With `nodev`, device nodes on it (a layer may carry
/// any) cannot be opened.
pub(crate) fn mount(
    sys: &dyn Syscall,
    rootfs: &Rootfs,
    scratch: Option<&Upper>,
    target: &Path,
    nodev: bool,
) -> Result<(), Error> {
    let upper = rootfs.upper.as_ref().or(scratch);
    let on = |what: &str| format!("mount {what} on {}", target.display());
    match (rootfs.lowerdirs.as_slice(), upper) {
        // Scratch: nothing below, so the upperdir itself is the root.
        ([], Some(u)) => {
            bind(sys, &u.upperdir, target).map_err(|e| Error::sys(on("upperdir"), e))?;
            if nodev { remount(sys, target, false, true) } else { Ok(()) }
        }
        ([], None) => {
            let flags = if nodev { MsFlags::MS_RDONLY | MsFlags::MS_NODEV } else { MsFlags::MS_RDONLY };
            sys.mount(Some(Path::new("tmpfs")), target, Some("tmpfs"), flags, Some("mode=755"))
                .map_err(|e| Error::sys(on("empty tmpfs"), e))
        }
        // overlayfs needs two lowers when it has no upper.
        ([only], None) => {
            bind(sys, only, target).map_err(|e| Error::sys(on("lowerdir"), e))?;
            remount(sys, target, true, nodev)
        }
        (lowers, upper) => {
            let overlay = Overlay {
                lowerdirs: lowers.to_vec(),
                upper: upper.map(|u| (u.upperdir.clone(), u.workdir.clone())),
                readonly: upper.is_none(),
                nodev,
            };
            sys.mount_overlay(target, &overlay).map_err(|e| Error::sys(on("overlay"), e))
        }
    }
}

pub(crate) fn bind(sys: &dyn Syscall, source: &Path, target: &Path) -> std::io::Result<()> {
    sys.mount(Some(source), target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
}

/// Makes the mount at `target` read-only (a per-mount flag; the filesystem stays rw).
pub(crate) fn remount_readonly(sys: &dyn Syscall, target: &Path) -> Result<(), Error> {
    remount(sys, target, true, false)
}

/// Sets the per-mount flags of the (bind) mount at `target`: read-only and/or nodev.
/// A bind remount replaces them all, so the caller names every one it wants.
pub(crate) fn remount(sys: &dyn Syscall, target: &Path, readonly: bool, nodev: bool) -> Result<(), Error> {
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    if nodev {
        flags |= MsFlags::MS_NODEV;
    }
    let how = match (readonly, nodev) {
        (true, true) => "read-only and nodev",
        (true, false) => "read-only",
        (false, _) => "nodev",
    };
    sys.mount(None, target, None, flags, None).map_err(|e| Error::sys(format!("remount {} {how}", target.display()), e))
}
