//! Mounting a [`Rootfs`] at a path: overlayfs, or a bind/tmpfs where overlayfs
//! cannot or need not be used. Shared by the sandbox and [`crate::with_rootfs_mounted`].

use std::path::Path;

use nix::mount::MsFlags;

use crate::syscall::{Overlay, Syscall};
use crate::{Error, Rootfs, Upper};

/// Mounts `rootfs` at `target`, writable if it has an upper (or `scratch`, used when it
/// has none); `rootfs.readonly` is left to the caller, who may need to create
/// mountpoints first ([`remount`]). With `nodev`, device nodes on it (a layer may carry
/// any) cannot be opened. `userns`: we are in a user namespace (overlayfs must keep its
/// xattrs as `user.overlay.*`). `fuse`: the fuse-overlayfs program to mount with
/// instead of overlayfs.
pub(crate) fn mount(
    sys: &dyn Syscall,
    rootfs: &Rootfs,
    scratch: Option<&Upper>,
    target: &Path,
    nodev: bool,
    userns: bool,
    fuse: Option<&Path>,
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
                userxattr: userns,
                fuse: fuse.map(Path::to_path_buf),
            };
            crate::fuse_overlay::mount_overlay(sys, target, &overlay).map_err(|e| Error::sys(on("overlay"), e))
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

/// Sets the per-mount flags of the (bind) mount at `target`: read-only and/or nodev,
/// on top of the read-only, nosuid, nodev and noexec it already has. A bind remount
/// replaces every flag, and in a user namespace the kernel locks those four on a mount
/// that came from a more privileged one (the host's `/dev/null`, a bind of a host
/// path): dropping one is EPERM. Keeping them is runc's way, and as root it keeps a
/// bind from lifting a restriction of its source.
pub(crate) fn remount(sys: &dyn Syscall, target: &Path, readonly: bool, nodev: bool) -> Result<(), Error> {
    let how = match (readonly, nodev) {
        (true, true) => "read-only and nodev",
        (true, false) => "read-only",
        (false, _) => "nodev",
    };
    let what = || format!("remount {} {how}", target.display());
    let kept = sys.mount_flags(target).map_err(|e| Error::sys(what(), e))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | kept;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    if nodev {
        flags |= MsFlags::MS_NODEV;
    }
    sys.mount(None, target, None, flags, None).map_err(|e| Error::sys(what(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, Recording};

    fn remount_flags(sys: &Recording) -> Vec<MsFlags> {
        sys.take()
            .into_iter()
            .map(|c| match c {
                Call::Mount { flags, .. } => flags,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_remount_keeps_the_flags_the_kernel_may_lock() {
        // The host's nosuid,noexec mount, bound into a user namespace.
        let sys = Recording { mount_flags: Some(|_| MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC), ..Default::default() };
        remount_readonly(&sys, Path::new("/t")).unwrap();
        let bind_remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
        assert_eq!(remount_flags(&sys), [bind_remount | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC]);
        // A read-only source stays read-only, even when only nodev is asked for.
        let sys = Recording { mount_flags: Some(|_| MsFlags::MS_RDONLY), ..Default::default() };
        remount(&sys, Path::new("/t"), false, true).unwrap();
        assert_eq!(remount_flags(&sys), [bind_remount | MsFlags::MS_RDONLY | MsFlags::MS_NODEV]);
    }

    #[test]
    fn nothing_locked_means_exactly_the_flags_asked_for() {
        let sys = Recording::default();
        remount(&sys, Path::new("/t"), true, true).unwrap();
        let expected = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NODEV;
        assert_eq!(remount_flags(&sys), [expected]);
    }

    #[test]
    fn the_overlay_of_a_user_namespace_uses_user_xattrs() {
        let sys = Recording::default();
        let rootfs = Rootfs {
            lowerdirs: vec!["/a".into(), "/b".into()],
            upper: Some(Upper { upperdir: "/u".into(), workdir: "/w".into() }),
            readonly: false,
        };
        mount(&sys, &rootfs, None, Path::new("/t"), true, true, None).unwrap();
        mount(&sys, &rootfs, None, Path::new("/t"), true, false, None).unwrap();
        let userxattr: Vec<bool> = sys
            .take()
            .into_iter()
            .map(|c| match c {
                Call::Overlay { overlay, .. } => overlay.userxattr,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(userxattr, [true, false]);
    }
}
