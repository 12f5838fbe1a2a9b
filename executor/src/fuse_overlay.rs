//! fuse-overlayfs, the snapshotter between overlayfs and the native one: overlayfs's
//! semantics in a FUSE daemon (Linux 4.18 and later allow FUSE mounts in a user
//! namespace), mounted where the kernel's overlayfs would have been. It reads the
//! lowers as overlayfs writes them (0/0 character devices; `trusted.overlay.opaque`
//! or `user.overlay.opaque`), but marks its own changes its own way: an opaque
//! directory gets a `.wh..wh..opq` file besides the xattr (`user.fuseoverlayfs.opaque`
//! where `trusted.*` is refused), a deletion may be a `.wh.NAME` file where a 0/0
//! device cannot be made, and it keeps `user.fuseoverlayfs.*` xattrs. [`normalize`]
//! rewrites an upperdir it wrote into overlayfs's form, so layers are the same.
//!
//! The daemon runs in the foreground as a child of whoever mounts (the sandbox init,
//! in the sandbox's namespaces, so it dies with them; or a rootfs view's thread, which
//! unmounts and waits for it: [`wait_all`]). The sandbox's device cgroup does not
//! allow `/dev/fuse`: the init opens it before it joins the cgroup ([`preopen`]),
//! mounts with that descriptor itself and hands it to the daemon as `/dev/fd/N`
//! (libfuse's way for a mount made by its caller).

use std::cell::RefCell;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;

use nix::mount::MsFlags;
use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::overlay_meta as meta;
use crate::syscall::{Overlay, Syscall};

const OPAQUE_FILE: &str = ".wh..wh..opq";
const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// The fuse-overlayfs program, if installed.
pub fn program() -> Option<PathBuf> {
    crate::find_program("fuse-overlayfs")
}

thread_local! {
    /// The daemons this thread started, for [`wait_all`].
    static DAEMONS: RefCell<Vec<Child>> = const { RefCell::new(Vec::new()) };
    /// `/dev/fuse` descriptors opened ahead ([`preopen`]).
    static PREOPENED: RefCell<Vec<OwnedFd>> = const { RefCell::new(Vec::new()) };
}

/// Opens `/dev/fuse` `n` times for the mounts to come on this thread (the sandbox
/// init, before it joins a cgroup whose device filter denies it).
pub(crate) fn preopen(n: usize) -> io::Result<()> {
    for _ in 0..n {
        let fd = open_dev_fuse()?;
        PREOPENED.with(|p| p.borrow_mut().push(fd));
    }
    Ok(())
}

/// `/dev/fuse`, or why it cannot be opened, with the fix where it is its mode.
pub(crate) fn open_dev_fuse() -> io::Result<OwnedFd> {
    match fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(f) => Ok(f.into()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(io::Error::new(
            e.kind(),
            "cannot open /dev/fuse: permission denied (fix: chmod 0666 /dev/fuse, as most distributions set it)",
        )),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot open /dev/fuse: {}", crate::describe_io(&e)))),
    }
}

/// Closes the descriptors [`preopen`] left unused: the process must not inherit one.
pub(crate) fn close_preopened() {
    PREOPENED.with(|p| p.borrow_mut().clear());
}

/// Mounts a FUSE filesystem at `target` on `fd` (what libfuse would do as root).
fn mount_on(fd: &OwnedFd, target: &Path, overlay: &Overlay) -> io::Result<()> {
    let mut flags = MsFlags::MS_NOATIME;
    if overlay.nodev {
        flags |= MsFlags::MS_NODEV;
    }
    if overlay.readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    let data = format!("fd={},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other", fd.as_raw_fd());
    nix::mount::mount(Some("fuse-overlayfs"), target, Some("fuse.fuse-overlayfs"), flags, Some(data.as_str()))
        .map_err(io::Error::from)
}

/// Mounts `overlay` at `target` with `program` and returns once the mount is there.
pub(crate) fn mount(program: &Path, target: &Path, overlay: &Overlay) -> io::Result<()> {
    let mut options = Vec::new();
    let path = |p: &Path| -> io::Result<String> {
        let s = p.to_str().filter(|s| !s.contains([',', ':'])).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("fuse-overlayfs cannot take the path {}", p.display()))
        })?;
        Ok(s.to_string())
    };
    let lowers = overlay.lowerdirs.iter().map(|l| path(l)).collect::<io::Result<Vec<_>>>()?;
    options.push(format!("lowerdir={}", lowers.join(":")));
    if let Some((upper, work)) = &overlay.upper {
        options.push(format!("upperdir={},workdir={}", path(upper)?, path(work)?));
    }
    // Other users of the sandbox (a `USER`) may use it too; device nodes on it may
    // not be opened, as on every sandbox mount.
    options.push("allow_other".into());
    if overlay.nodev {
        options.push("nodev".into());
    }
    if overlay.readonly {
        options.push("ro".into());
    }
    let log = target.with_extension("fuse-overlayfs.log");
    let mut command = Command::new(program);
    command.arg("-f").arg("-o").arg(options.join(",")).stdin(Stdio::null()).stdout(Stdio::null());
    command.stderr(fs::File::create(&log)?);
    let preopened = PREOPENED.with(|p| p.borrow_mut().pop());
    match &preopened {
        Some(fd) => {
            mount_on(fd, target, overlay)?;
            let raw = fd.as_raw_fd();
            command.arg(format!("/dev/fd/{raw}"));
            // SAFETY: between fork and exec, plain syscalls: fcntl on a descriptor
            // this process owns (the daemon inherits it; it is close-on-exec for
            // anything else), and unshare. The daemon gets a mount namespace of its
            // own: the init's `pivot_root` would otherwise make the daemon's root its
            // own mount, and every path it opens (`/proc/self/fd/N`) a request to
            // itself.
            unsafe {
                command.pre_exec(move || {
                    if libc::fcntl(raw, libc::F_SETFD, 0) < 0 || libc::unshare(libc::CLONE_NEWNS) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        None => {
            command.arg(target);
        }
    }
    let spawned = command.spawn().map_err(|e| io::Error::new(e.kind(), format!("start {}: {e}", program.display())));
    // Ours closed: should the daemon end, the mount's connection ends with it.
    drop(preopened);
    let mut child = spawned?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if is_fuse(target) {
            DAEMONS.with(|d| d.borrow_mut().push(child));
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let said = fs::read_to_string(&log).unwrap_or_default();
            return Err(io::Error::other(format!("fuse-overlayfs {status}: {}", said.trim())));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(io::ErrorKind::TimedOut, "fuse-overlayfs did not mount within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn is_fuse(target: &Path) -> bool {
    nix::sys::statfs::statfs(target).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::FUSE_SUPER_MAGIC)
}

/// Waits for the daemons this thread started, once their mounts are gone (each ends
/// when its filesystem is unmounted); one that lingers is killed.
pub(crate) fn wait_all() {
    let daemons = DAEMONS.with(|d| std::mem::take(&mut *d.borrow_mut()));
    for mut child in daemons {
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Rewrites an upperdir fuse-overlayfs wrote over `lowers` (topmost first) into
/// overlayfs's form: opaque markers (the `.wh..wh..opq` file,
/// `user.fuseoverlayfs.opaque`) become `opaque_xattr`, `.wh.NAME` files 0/0 character
/// devices, and its own xattrs go. fuse-overlayfs marks every directory it makes
/// opaque; overlayfs only one made where the lowers show something, as here.
pub(crate) fn normalize(upper: &Path, lowers: &[PathBuf], opaque_xattr: &CStr) -> io::Result<()> {
    normalize_dir(upper, Path::new(""), lowers, opaque_xattr)
}

/// Whether the lowers show an entry at `rel`: the topmost layer that has one decides.
fn visible_in(lowers: &[PathBuf], rel: &Path) -> bool {
    lowers.iter().find_map(|l| fs::symlink_metadata(l.join(rel)).ok()).is_some_and(|m| !meta::is_whiteout(&m))
}

fn normalize_dir(upper: &Path, rel: &Path, lowers: &[PathBuf], opaque_xattr: &CStr) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(upper)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut opaque = false;
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let m = fs::symlink_metadata(&path)?;
        if !m.is_dir() && !m.file_type().is_symlink() {
            // (A directory's go once its entries are done: they say whether it is opaque.)
            drop_own_xattrs(&path, &mut false)?;
        }
        if name == OPAQUE_FILE && m.is_file() {
            fs::remove_file(&path)?;
            opaque = true;
        } else if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX) {
            // A deletion of a name no layer may hold, or one written as a file.
            fs::remove_file(&path)?;
            let target = upper.join(std::ffi::OsStr::from_bytes(hidden));
            if m.is_file() && m.len() == 0 && !hidden.is_empty() && fs::symlink_metadata(&target).is_err() {
                meta::make_whiteout(&target)?;
            }
        } else if m.is_dir() {
            normalize_dir(&path, &rel.join(&name), lowers, opaque_xattr)?;
        }
    }
    if rel.as_os_str().is_empty() {
        return Ok(());
    }
    drop_own_xattrs(upper, &mut opaque)?;
    opaque |= meta::is_opaque(upper);
    for name in [c"trusted.overlay.opaque", c"user.overlay.opaque"] {
        match meta::remove_xattr(upper, name) {
            Err(e) if !matches!(e.raw_os_error(), Some(libc::ENODATA | libc::EPERM | libc::ENOTSUP)) => return Err(e),
            _ => {}
        }
    }
    if opaque && visible_in(lowers, rel) {
        meta::mark_opaque(upper, opaque_xattr)?;
    }
    Ok(())
}

/// Removes `user.fuseoverlayfs.*` xattrs of `path` (`origin` on what it copied up,
/// `opaque`; it never lets a step see or set that prefix); sets `opaque` if one said so.
fn drop_own_xattrs(path: &Path, opaque: &mut bool) -> io::Result<()> {
    for (name, value) in meta::xattrs(path)? {
        if name.to_bytes().starts_with(b"user.fuseoverlayfs.") {
            if name.to_bytes() == b"user.fuseoverlayfs.opaque" && value.first() == Some(&b'y') {
                *opaque = true;
            }
            meta::remove_xattr(path, &name)?;
        }
    }
    Ok(())
}

/// Mounts `overlay` on `target`: through fuse-overlayfs where the snapshotter chose it
/// (`Overlay::fuse`), else the kernel's overlayfs through `sys`. (Here, not in
/// `Syscall::mount_overlay`: the syscall layer knows no snapshotters.)
pub(crate) fn mount_overlay(sys: &dyn Syscall, target: &Path, overlay: &Overlay) -> io::Result<()> {
    match &overlay.fuse {
        Some(program) => mount(program, target, overlay),
        None => sys.mount_overlay(target, overlay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_overlayfs_markers_become_overlayfs_ones() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        fs::create_dir_all(lower.join("opq")).unwrap();
        let u = &t.path().join("upper");
        fs::create_dir_all(u.join("opq/sub")).unwrap();
        fs::create_dir_all(u.join("fresh")).unwrap();
        fs::write(u.join("opq/.wh..wh..opq"), "").unwrap();
        fs::write(u.join("fresh/.wh..wh..opq"), "").unwrap();
        fs::write(u.join("opq/new"), "n").unwrap();
        fs::write(u.join(".wh.gone"), "").unwrap();
        meta::make_whiteout(&u.join("opq/.wh..opq")).unwrap();
        normalize(u, &[lower], c"trusted.overlay.opaque").unwrap();
        assert!(meta::is_opaque(&u.join("opq")));
        assert!(!meta::is_opaque(&u.join("opq/sub")));
        assert!(!meta::is_opaque(&u.join("fresh")), "nothing below it: overlayfs would not mark it");
        assert!(meta::is_whiteout(&fs::symlink_metadata(u.join("gone")).unwrap()));
        let mut names: Vec<_> = fs::read_dir(u.join("opq")).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["new", "sub"]);
        assert!(fs::symlink_metadata(u.join(".wh.gone")).is_err());
    }
}
