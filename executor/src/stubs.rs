//! Removing mountpoint stubs from an upperdir after the sandbox is gone, as BuildKit's
//! MountStubsCleaner does: a `/proc` or `/etc/hosts` the image did not have must not
//! show up in the step's layer, nor the parent directories copied up to hold them.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::paths::Created;

/// Undoes `created` in `upperdir`, newest first. Only untouched stubs go: an empty
/// directory, an empty file; a copied-up directory only if it is empty, not opaque and
/// has its old mode and owner. Never follows a symlink the sandbox may have planted.
pub(crate) fn remove(upperdir: &Path, created: &[Created]) {
    for c in created.iter().rev() {
        if let Created::Stub(rel) = c
            && let Some(path) = upper_path(upperdir, rel)
        {
            remove_if_untouched(&path);
        }
    }
    for c in created.iter().rev() {
        if let Created::CopiedUp { path: rel, mode, uid, gid } = c
            && let Some(path) = upper_path(upperdir, rel)
            && let Ok(m) = fs::symlink_metadata(&path)
            && m.is_dir()
            && (m.mode(), m.uid(), m.gid()) == (*mode, *uid, *gid)
            && !is_opaque(&path)
        {
            // Fails, as it should, when the directory is not empty.
            let _ = fs::remove_dir(&path);
        }
    }
}

fn remove_if_untouched(path: &Path) {
    let Ok(m) = fs::symlink_metadata(path) else { return };
    let result = if m.is_dir() {
        // fuse-overlayfs marks every directory it makes (an empty `.wh..wh..opq`, a
        // 0/0 device `.wh..opq`): a stub with only such markers is untouched still.
        remove_fuse_markers(path);
        fs::remove_dir(path)
    } else if m.is_file() && m.len() == 0 {
        fs::remove_file(path)
    } else {
        return;
    };
    if let Err(e) = result
        && e.kind() != io::ErrorKind::DirectoryNotEmpty
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove mountpoint stub");
    }
}

/// Empties `dir` if it holds nothing but fuse-overlayfs's markers: names under the
/// whiteout prefix (which no layer may hold otherwise), each an empty file or a 0/0
/// character device.
fn remove_fuse_markers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut markers = Vec::new();
    for entry in entries {
        let Ok(entry) = entry else { return };
        let Ok(m) = fs::symlink_metadata(entry.path()) else { return };
        let marker = entry.file_name().as_bytes().starts_with(b".wh.")
            && ((m.is_file() && m.len() == 0)
                || (std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()) && m.rdev() == 0));
        if !marker {
            return;
        }
        markers.push(entry.path());
    }
    for marker in markers {
        let _ = fs::remove_file(marker);
    }
}

/// `upperdir/rel` if every directory on the way is a real directory (not a symlink).
fn upper_path(upperdir: &Path, rel: &Path) -> Option<PathBuf> {
    let mut path = upperdir.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        let Component::Normal(name) = part else { return None };
        path.push(name);
        if i + 1 < parts.len() && !fs::symlink_metadata(&path).ok()?.is_dir() {
            return None;
        }
    }
    Some(path)
}

/// Opaque as overlayfs marks it: `trusted.overlay.opaque`, or `user.overlay.opaque`
/// for an overlay mounted in a user namespace (`userxattr`).
fn is_opaque(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return true };
    [c"trusted.overlay.opaque", c"user.overlay.opaque"].iter().any(|name| {
        let mut buf = [0u8; 4];
        // SAFETY: both strings are NUL-terminated; the buffer length is passed along.
        let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        n > 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn removes_untouched_stubs_and_keeps_used_ones() {
        let t = tempfile::tempdir().unwrap();
        let u = t.path();
        fs::create_dir_all(u.join("proc")).unwrap();
        fs::create_dir_all(u.join("run/secrets")).unwrap();
        fs::write(u.join("run/secrets/kept"), "x").unwrap();
        fs::create_dir_all(u.join("etc")).unwrap();
        fs::write(u.join("etc/hosts"), "").unwrap();
        fs::write(u.join("data"), "written by the process").unwrap();
        let created = [
            Created::CopiedUp { path: "etc".into(), mode: fs::metadata(u.join("etc")).unwrap().mode(), uid: 0, gid: 0 },
            Created::Stub("proc".into()),
            Created::Stub("etc/hosts".into()),
            Created::Stub("run".into()),
            Created::Stub("run/secrets".into()),
            Created::Stub("data".into()),
            Created::Stub("gone".into()),
        ];
        let created: Vec<_> = created
            .into_iter()
            .map(|c| match c {
                Created::CopiedUp { path, mode, .. } => {
                    let m = fs::metadata(u.join(&path)).unwrap();
                    Created::CopiedUp { path, mode, uid: m.uid(), gid: m.gid() }
                }
                other => other,
            })
            .collect();
        remove(u, &created);
        assert!(!u.join("proc").exists());
        assert!(!u.join("etc").exists(), "emptied copied-up parent goes too");
        assert!(u.join("run/secrets/kept").exists());
        assert!(u.join("data").exists());
    }

    #[test]
    fn never_follows_symlinks_out_of_the_upperdir() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir_all(outside.join("victim")).unwrap();
        let u = t.path().join("upper");
        fs::create_dir_all(&u).unwrap();
        symlink(&outside, u.join("etc")).unwrap();
        remove(&u, &[Created::Stub("etc/victim".into())]);
        assert!(outside.join("victim").exists());
    }
}
