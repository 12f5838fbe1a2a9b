//! [`crate::with_rootfs_mounted`]: rootfs mounts that exist only in a helper thread's
//! private mount namespace (`unshare(CLONE_NEWNS)` is allowed per thread), so the
//! builder can apply file operations through overlayfs and nothing can stay mounted
//! on the host: the namespace dies with the thread.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::syscall::{Real, Syscall};
use crate::{Error, Rootfs, rootfs};

pub(crate) fn with_rootfs_mounted<R: Send>(
    rootfs: &[Rootfs],
    f: impl FnOnce(&[PathBuf]) -> R + Send,
) -> Result<R, Error> {
    // The native snapshotter: views of copies, whose changes go into the upperdirs
    // once unmounted.
    let (rootfs, copies, fuse) = crate::snapshotter::prepare_rootfs(rootfs)?;
    let result = mounted(&rootfs, fuse.as_deref(), f)?;
    copies.finish()?;
    if fuse.is_some() {
        for r in &rootfs {
            crate::snapshotter::normalize_fuse_upper(r)?;
        }
    }
    Ok(result)
}

/// `fuse`: mount with this fuse-overlayfs program rather than overlayfs.
fn mounted<R: Send>(
    rootfs: &[Rootfs],
    fuse: Option<&Path>,
    f: impl FnOnce(&[PathBuf]) -> R + Send,
) -> Result<R, Error> {
    // Beside the first upperdir when there is one, as the sandbox's bundle: should the
    // caller be killed, it stays among the caller's own temp dirs.
    let parent = rootfs.iter().find_map(|r| r.upper.as_ref()).and_then(|u| u.upperdir.parent());
    let builder = tempfile::Builder::new().prefix(".builder-mnt-").to_owned();
    let dir = match parent {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .map_err(|e| Error::sys("create mountpoint dir", e))?;
    let paths: Vec<PathBuf> = (0..rootfs.len()).map(|i| dir.path().join(i.to_string())).collect();
    for p in &paths {
        std::fs::create_dir(p).map_err(|e| Error::sys(format!("create {}", p.display()), e))?;
    }
    let outcome = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("rootfs-mount".into())
            .spawn_scoped(s, || in_private_namespace(&Real, rootfs, fuse, &paths, f))
            .map_err(|e| Error::sys("spawn mount thread", e))?
            .join()
            .unwrap_or_else(|panic| resume_unwind(panic))
    });
    drop(dir);
    match outcome? {
        Ok(r) => Ok(r),
        Err(panic) => resume_unwind(panic),
    }
}

type Caught<R> = Result<R, Box<dyn std::any::Any + Send>>;

/// On the helper thread: new mount namespace, mounts, `f`, unmounts.
fn in_private_namespace<R>(
    sys: &dyn Syscall,
    rootfs: &[Rootfs],
    fuse: Option<&Path>,
    paths: &[PathBuf],
    f: impl FnOnce(&[PathBuf]) -> R,
) -> Result<Caught<R>, Error> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| {
        let e = std::io::Error::from(e);
        if e.raw_os_error() == Some(libc::EPERM) && !nix::unistd::geteuid().is_root() {
            // A multithreaded process may not enter a user namespace of its own, and
            // without one an ordinary user gets no mount namespace.
            let text = format!("{} (rootfs views need root for now; see `builder doctor`)", crate::describe_io(&e));
            return Error::sys("unshare mount namespace", std::io::Error::new(e.kind(), text));
        }
        Error::sys("unshare mount namespace", e)
    })?;
    sys.mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)
        .map_err(|e| Error::sys("make / private", e))?;
    let mut mounted: Vec<&Path> = Vec::new();
    let result = mount_all(sys, rootfs, fuse, paths, &mut mounted)
        .map_err(|e| {
            // In builder's own user namespace (rootless), a refusal has the causes a
            // rootless sandbox's has.
            if crate::userns::enter::current().is_some() { crate::init::explain_in_user_namespace(e) } else { e }
        })
        .map(|()| catch_unwind(AssertUnwindSafe(|| f(paths))));
    for p in mounted.iter().rev() {
        if let Err(e) = sys.umount(p, MntFlags::MNT_DETACH) {
            // Harmless: the namespace, and with it the mount, ends with this thread.
            tracing::warn!(path = %p.display(), error = %e, "cannot unmount rootfs view");
        }
    }
    // fuse-overlayfs daemons end with their mounts: all their writes are done then.
    crate::fuse_overlay::wait_all();
    result
}

fn mount_all<'a>(
    sys: &dyn Syscall,
    rootfs: &[Rootfs],
    fuse: Option<&Path>,
    paths: &'a [PathBuf],
    mounted: &mut Vec<&'a Path>,
) -> Result<(), Error> {
    for (r, p) in rootfs.iter().zip(paths) {
        // In builder's own user namespace (rootless), overlayfs takes `userxattr`.
        rootfs::mount(sys, r, None, p, false, crate::userns::enter::current().is_some(), fuse)?;
        mounted.push(p);
        if r.readonly && r.upper.is_some() {
            rootfs::remount_readonly(sys, p)?;
        }
    }
    Ok(())
}
