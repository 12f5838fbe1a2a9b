//! Copying one entry's metadata (owner, mode, xattrs, times) and the file kinds a layer
//! may hold, without following symlinks: what the native snapshotter needs to copy
//! layers into a plain directory and to rebuild directories in an upperdir.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// overlayfs's own markers (`trusted.overlay.*`, `user.overlay.*`): never copied, a
/// layer's opacity is rebuilt from the tree, not carried along.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// The xattrs of `path` (not followed), names and values.
pub(crate) fn xattrs(path: &Path) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let c = cpath(path)?;
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: a NUL-terminated path and a buffer of the given length.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let mut value = vec![0u8; 256];
        loop {
            // SAFETY: NUL-terminated strings and a buffer of the given length.
            let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
            if n >= 0 {
                value.truncate(n as usize);
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) => value.resize(value.len() * 16, 0),
                // Removed meanwhile, or not ours to read (trusted.* without the capability).
                Some(libc::ENODATA | libc::EPERM) => {
                    value.clear();
                    break;
                }
                _ => return Err(e),
            }
        }
        out.push((name, value));
    }
    Ok(out)
}

pub(crate) fn set_xattr(path: &Path, name: &std::ffi::CStr, value: &[u8]) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: NUL-terminated strings and a value buffer of the given length.
    check(unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

pub(crate) fn remove_xattr(path: &Path, name: &std::ffi::CStr) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: NUL-terminated strings.
    check(unsafe { libc::lremovexattr(c.as_ptr(), name.as_ptr()) })
}

/// Gives `to` the owner, mode, xattrs (but overlayfs's) and times of `from` (`meta`).
/// Owner first: a chown clears set-id bits and file capabilities.
pub(crate) fn copy_metadata(from: &Path, meta: &fs::Metadata, to: &Path) -> io::Result<()> {
    let c = cpath(to)?;
    // SAFETY: a NUL-terminated path; lchown never follows a symlink.
    check(unsafe { libc::lchown(c.as_ptr(), meta.uid(), meta.gid()) })?;
    for (name, value) in xattrs(from)? {
        if !is_overlay_xattr(name.as_bytes()) {
            set_xattr(to, &name, &value)?;
        }
    }
    if !meta.file_type().is_symlink() {
        // SAFETY: a NUL-terminated path.
        check(unsafe { libc::chmod(c.as_ptr(), meta.mode() & 0o7777) })?;
    }
    set_times(to, meta)
}

/// The access and modification times of `meta` on `path` (not followed).
pub(crate) fn set_times(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let c = cpath(path)?;
    let times = [
        libc::timespec { tv_sec: meta.atime(), tv_nsec: meta.atime_nsec() },
        libc::timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() },
    ];
    // SAFETY: a NUL-terminated path and an array of two timespecs.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}

/// Makes `to` a copy of the non-directory `from` (`meta`): file data through
/// `copy_file_range` (a reflink where the filesystem shares extents), never a hard link
/// (a step may change the copy). Sockets are skipped; device nodes where they cannot be
/// made (a user namespace) too, as the unpacker skips them. Returns whether it copied.
pub(crate) fn copy_entry(from: &Path, meta: &fs::Metadata, to: &Path) -> io::Result<bool> {
    let ft = meta.file_type();
    if ft.is_file() {
        let mut src = fs::File::open(from)?;
        let mut dst = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(to)?;
        io::copy(&mut src, &mut dst)?;
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        let kind = if ft.is_char_device() {
            libc::S_IFCHR
        } else if ft.is_block_device() {
            libc::S_IFBLK
        } else {
            libc::S_IFIFO
        };
        let c = cpath(to)?;
        // SAFETY: a NUL-terminated path; mode and device number are plain integers.
        if let Err(e) = check(unsafe { libc::mknod(c.as_ptr(), kind | 0o600, meta.rdev()) }) {
            if e.raw_os_error() == Some(libc::EPERM) && kind != libc::S_IFIFO {
                return Ok(false);
            }
            return Err(e);
        }
    } else {
        return Ok(false);
    }
    copy_metadata(from, meta, to)?;
    Ok(true)
}

/// When `path` (not followed) was made, where the filesystem keeps it: with the
/// inode number, what tells an entry from a new one the filesystem gave a freed
/// inode's number (ext4 does at once: `rm -rf d && mkdir d`).
pub(crate) fn birth_time(path: &Path) -> Option<(i64, u32)> {
    let c = cpath(path).ok()?;
    // SAFETY: a zeroed statx is a valid buffer for the kernel to fill.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a buffer of the right type.
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), libc::AT_SYMLINK_NOFOLLOW, libc::STATX_BTIME, &mut st) };
    (rc == 0 && st.stx_mask & libc::STATX_BTIME != 0).then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec))
}

/// A 0/0 character device at `path`: overlayfs's whiteout. Refused, the error says
/// where they can be made.
pub(crate) fn make_whiteout(path: &Path) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: a NUL-terminated path; mode and device number are plain integers.
    check(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) }).map_err(|e| {
        if e.raw_os_error() != Some(libc::EPERM) {
            return e;
        }
        io::Error::new(
            e.kind(),
            format!(
                "cannot record a deletion as a whiteout (a 0/0 character device) at {}: operation not permitted \
                 (the store's filesystem refuses them, as overlayfs does, or a user namespace before Linux 5.8 \
                 does; put the store, --root or BUILDER_ROOT, on another filesystem)",
                path.display()
            ),
        )
    })
}

/// Marks the directory `path` opaque with `xattr`, or with `user.overlay.opaque`
/// where the filesystem refuses `trusted.overlay.*` (an upperdir that is itself on
/// overlayfs, as a store inside a container is). Both are read as opaque.
pub(crate) fn mark_opaque(path: &Path, xattr: &std::ffi::CStr) -> io::Result<()> {
    match set_xattr(path, xattr, b"y") {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) && xattr != c"user.overlay.opaque" => {
            set_xattr(path, c"user.overlay.opaque", b"y")
        }
        other => other,
    }
}

/// A 0/0 character device: a deletion, in a snapshot or an upperdir.
pub(crate) fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// A directory overlayfs would treat as opaque (either marker, whoever wrote it).
pub(crate) fn is_opaque(path: &Path) -> bool {
    let Ok(c) = cpath(path) else { return false };
    [c"trusted.overlay.opaque", c"user.overlay.opaque"].iter().any(|name| {
        let mut buf = [0u8; 4];
        // SAFETY: NUL-terminated strings; the buffer length is passed along.
        let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        n > 0 && buf[0] == b'y'
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_copy_keeps_mode_times_and_user_xattrs_but_not_overlay_ones() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::write(&a, "data").unwrap();
        fs::set_permissions(&a, fs::Permissions::from_mode(0o751)).unwrap();
        let xattrs_work = set_xattr(&a, c"user.keep", b"1").is_ok();
        if xattrs_work {
            set_xattr(&a, c"user.overlay.opaque", b"y").unwrap();
        }
        let meta = fs::symlink_metadata(&a).unwrap();
        assert!(copy_entry(&a, &meta, &b).unwrap());
        let copied = fs::symlink_metadata(&b).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"data");
        assert_eq!(copied.mode() & 0o7777, 0o751);
        assert_eq!((copied.mtime(), copied.mtime_nsec()), (meta.mtime(), meta.mtime_nsec()));
        if xattrs_work {
            let names: Vec<_> = xattrs(&b).unwrap().into_iter().map(|(n, _)| n).collect();
            assert_eq!(names, [c"user.keep".to_owned()]);
        }
        std::os::unix::fs::symlink("a", t.path().join("l")).unwrap();
        let meta = fs::symlink_metadata(t.path().join("l")).unwrap();
        assert!(copy_entry(&t.path().join("l"), &meta, &t.path().join("l2")).unwrap());
        assert_eq!(fs::read_link(t.path().join("l2")).unwrap(), Path::new("a"));
    }
}
