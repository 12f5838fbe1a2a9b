//! The destination's directories the parent already has, made in the upperdir as
//! overlayfs's copy-up makes them before anything is written into them: the merged
//! (topmost) directory's owner, xattrs but overlayfs's own, mode and times. Writing
//! into one then dates it "now", as through an overlay; a copy-up never changes its
//! parent's times (overlayfs restores them), so times are set deepest first, after
//! every directory of the chain exists.
//!
//! overlayfs copies a directory up only when something is written below it: a copy
//! that writes nothing (everything `.dockerignore`d) leaves an empty chain, which
//! [`CopiedUp::prune`] removes again.

use super::merged::MergedDir;
use crate::layer::tar_writer::is_overlay_xattr;
use anyhow::{Context as _, Result};
use filetime::FileTime;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::{Path, PathBuf};

/// The directories copied up into an upperdir, shallowest first.
pub struct CopiedUp {
    dirs: Vec<PathBuf>,
}

impl CopiedUp {
    /// Copies up `chain` ((path relative to the root, merged directory), shallowest
    /// first, each the parent of the next: the destination's directories) and then
    /// `merged` (the parent's directories the copy's directories merge into, pre-order)
    /// into `upperdir`, which holds nothing yet. On an error, what was made is removed
    /// again: the upperdir is as it was.
    pub fn make(upperdir: &Path, chain: &[(PathBuf, MergedDir)], merged: &[(PathBuf, MergedDir)]) -> Result<CopiedUp> {
        let all: Vec<_> = chain.iter().chain(merged).map(|(rel, dir)| (upperdir.join(rel), dir)).collect();
        let result = copy_metadata(&all);
        if result.is_err() {
            // Best effort: the caller reports the first error, and falls back.
            for (upper, _) in &all {
                let _ = fs::remove_dir_all(upper);
            }
        }
        result.map(|()| CopiedUp { dirs: chain.iter().map(|(rel, _)| upperdir.join(rel)).collect() })
    }

    /// Removes the chain if the copy wrote nothing into it (only the deepest can be
    /// empty: each other one holds the next).
    pub fn prune(self) -> Result<()> {
        let Some(deepest) = self.dirs.last() else { return Ok(()) };
        let empty = fs::read_dir(deepest).with_context(|| format!("reading {}", deepest.display()))?.next().is_none();
        if empty {
            let first = &self.dirs[0];
            fs::remove_dir_all(first).with_context(|| format!("removing {}", first.display()))?;
        }
        Ok(())
    }
}

/// Makes each directory (parents before children) with its merged directory's
/// owner, xattrs but overlayfs's own, mode, and then times, deepest first.
fn copy_metadata(dirs: &[(PathBuf, &MergedDir)]) -> Result<()> {
    let mut times = Vec::new();
    for (upper, merged) in dirs {
        let from = merged.top();
        let meta = fs::symlink_metadata(from).with_context(|| format!("stat {}", from.display()))?;
        fs::create_dir(upper).with_context(|| format!("creating {}", upper.display()))?;
        lchown(upper, Some(meta.uid()), Some(meta.gid()))
            .with_context(|| format!("chown {}:{} {}", meta.uid(), meta.gid(), upper.display()))?;
        for name in xattr::list(from).with_context(|| format!("listing xattrs of {}", from.display()))? {
            if is_overlay_xattr(name.as_bytes()) {
                continue;
            }
            let value = xattr::get(from, &name).with_context(|| format!("reading xattrs of {}", from.display()))?;
            if let Some(value) = value {
                xattr::set(upper, &name, &value)
                    .with_context(|| format!("setting xattr {} on {}", name.to_string_lossy(), upper.display()))?;
            }
        }
        fs::set_permissions(upper, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .with_context(|| format!("chmod {}", upper.display()))?;
        times.push((upper, FileTime::from_last_access_time(&meta), FileTime::from_last_modification_time(&meta)));
    }
    for (upper, atime, mtime) in times.into_iter().rev() {
        filetime::set_symlink_file_times(upper, atime, mtime)
            .with_context(|| format!("setting times of {}", upper.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_up_chain_has_the_merged_metadata_and_an_unused_one_goes() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        fs::create_dir_all(lower.join("a/b")).unwrap();
        fs::set_permissions(lower.join("a"), fs::Permissions::from_mode(0o2751)).unwrap();
        let xattrs = xattr::set(lower.join("a"), "user.kept", b"1").is_ok();
        if xattrs {
            xattr::set(lower.join("a"), "user.overlay.opaque", b"y").unwrap();
        }
        let old = FileTime::from_unix_time(1_000_000, 5);
        for dir in ["a/b", "a"] {
            filetime::set_file_times(lower.join(dir), old, old).unwrap();
        }
        let root = MergedDir::root(&[lower]);
        let walk = super::super::merged::walk(&root, Path::new("a/b")).unwrap();
        let dirs = walk.dirs;
        assert!(walk.end.is_none());
        let upper = t.path().join("upper");
        fs::create_dir(&upper).unwrap();
        let made = CopiedUp::make(&upper, &dirs, &[]).unwrap();
        for dir in ["a", "a/b"] {
            let meta = fs::symlink_metadata(upper.join(dir)).unwrap();
            assert_eq!(FileTime::from_last_modification_time(&meta), old, "{dir}");
        }
        assert_eq!(fs::symlink_metadata(upper.join("a")).unwrap().mode() & 0o7777, 0o2751);
        if xattrs {
            assert_eq!(xattr::get(upper.join("a"), "user.kept").unwrap().as_deref(), Some(&b"1"[..]));
            assert_eq!(xattr::get(upper.join("a"), "user.overlay.opaque").unwrap(), None);
        }
        made.prune().unwrap();
        assert_eq!(fs::read_dir(&upper).unwrap().count(), 0);

        let made = CopiedUp::make(&upper, &dirs, &[]).unwrap();
        fs::write(upper.join("a/b/file"), "").unwrap();
        made.prune().unwrap();
        assert!(upper.join("a/b/file").is_file());
    }
}
