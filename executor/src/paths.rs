//! Paths inside a rootfs: resolving them without escaping it, and creating mountpoint
//! stubs while recording what was created so it can be removed from the upperdir later.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Something the sandbox setup did to the rootfs that must not reach the step's layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Created {
    /// A mountpoint stub (file or directory) that did not exist; relative to the root.
    Stub(PathBuf),
    /// An existing directory that creating a stub inside copies up to the upperdir,
    /// with its metadata before that.
    CopiedUp { path: PathBuf, mode: u32, uid: u32, gid: u32 },
}

const MAX_SYMLINKS: usize = 255;

/// Resolves `path` inside `root` the way the sandboxed process would see it, following
/// symlinks but never leaving `root` (`..` and absolute targets stop at `root`).
/// Returns the resolved path relative to `root`; missing components are kept as is.
pub(crate) fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: VecDeque<OsString> = normal_parts(path).collect();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for (i, p) in normal_parts(&target).enumerate() {
                    pending.insert(i, p);
                }
            }
            _ => resolved.push(part),
        }
    }
    Ok(resolved.iter().collect())
}

/// The `..` and name parts of a path; `/` and `.` dropped.
fn normal_parts(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some("..".into()),
        _ => None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StubKind {
    Dir,
    File,
}

/// Makes sure `path` exists inside `root` (a merged rootfs view) and returns its host
/// path. Every component it creates is reported as [`Created::Stub`] before it is
/// created; existing directories that gain a new child and are not yet in `upperdir`
/// are reported as [`Created::CopiedUp`].
pub(crate) fn ensure_in_root(
    root: &Path,
    path: &Path,
    kind: StubKind,
    upperdir: Option<&Path>,
    report: &mut dyn FnMut(Created) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let rel = resolve_in_root(root, path)?;
    let full = root.join(&rel);
    if fs::symlink_metadata(&full).is_ok() {
        return Ok(full);
    }
    let parts: Vec<_> = rel.components().collect();
    let mut current = PathBuf::new();
    let mut creating = false;
    for (i, part) in parts.iter().enumerate() {
        current.push(part);
        let host = root.join(&current);
        if !creating {
            match fs::symlink_metadata(&host) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    creating = true;
                    report_copied_up(root, current.parent().unwrap_or(Path::new("")), upperdir, report)?;
                }
                Err(e) => return Err(e),
            }
        }
        report(Created::Stub(current.clone()))?;
        if i + 1 == parts.len() && kind == StubKind::File {
            fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&host)?;
        } else {
            fs::DirBuilder::new().mode(0o755).create(&host)?;
        }
    }
    Ok(full)
}

/// Reports `dir` and its ancestors that are not in `upperdir` yet: creating a child
/// in `dir` copies all of them up.
fn report_copied_up(
    root: &Path,
    dir: &Path,
    upperdir: Option<&Path>,
    report: &mut dyn FnMut(Created) -> io::Result<()>,
) -> io::Result<()> {
    let Some(upperdir) = upperdir else { return Ok(()) };
    let mut current = PathBuf::new();
    for part in dir.components() {
        current.push(part);
        if fs::symlink_metadata(upperdir.join(&current)).is_ok() {
            continue;
        }
        let m = fs::symlink_metadata(root.join(&current))?;
        report(Created::CopiedUp { path: current.clone(), mode: m.mode(), uid: m.uid(), gid: m.gid() })?;
    }
    Ok(())
}

/// Creates `path` (absolute, inside the current root) and its missing parents, owned by
/// `uid:gid` (the working directory of the process).
pub(crate) fn create_dir_owned(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut p = path;
    while fs::symlink_metadata(p).is_err() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    fs::create_dir_all(path)?;
    for dir in missing.iter().rev() {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("run/real")).unwrap();
        symlink("/run/real", root.join("abs")).unwrap();
        symlink("../../../../../etc", root.join("up")).unwrap();
        symlink("run/real/x", root.join("rel")).unwrap();
        assert_eq!(resolve_in_root(root, Path::new("/abs/hosts")).unwrap(), Path::new("run/real/hosts"));
        assert_eq!(resolve_in_root(root, Path::new("/up/passwd")).unwrap(), Path::new("etc/passwd"));
        assert_eq!(resolve_in_root(root, Path::new("rel")).unwrap(), Path::new("run/real/x"));
        assert_eq!(resolve_in_root(root, Path::new("/../../a/./b")).unwrap(), Path::new("a/b"));
    }

    #[test]
    fn symlink_loops_are_errors() {
        let t = tempfile::tempdir().unwrap();
        symlink("/b", t.path().join("a")).unwrap();
        symlink("/a", t.path().join("b")).unwrap();
        assert_eq!(resolve_in_root(t.path(), Path::new("/a")).unwrap_err().raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn ensure_reports_stubs_and_copied_up_parents() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let upper = t.path().join("upper");
        fs::create_dir_all(root.join("etc/ssl")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        let mut seen = Vec::new();
        let p = ensure_in_root(&root, Path::new("/etc/ssl/private/key"), StubKind::File, Some(&upper), &mut |c| {
            seen.push(c);
            Ok(())
        })
        .unwrap();
        assert!(p.is_file());
        let m = fs::metadata(root.join("etc/ssl")).unwrap();
        assert_eq!(
            seen,
            [
                Created::CopiedUp { path: "etc/ssl".into(), mode: m.mode(), uid: m.uid(), gid: m.gid() },
                Created::Stub("etc/ssl/private".into()),
                Created::Stub("etc/ssl/private/key".into()),
            ]
        );
        seen.clear();
        ensure_in_root(&root, Path::new("/etc/ssl/private/key"), StubKind::File, Some(&upper), &mut |c| {
            seen.push(c);
            Ok(())
        })
        .unwrap();
        assert!(seen.is_empty(), "an existing path creates nothing");
    }
}
