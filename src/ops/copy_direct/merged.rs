//! The merged view overlayfs gives of a parent's snapshots, looked up path by path
//! without mounting it: a name shows the topmost lower's entry that has it, unless a
//! whiteout (a 0/0 character device) in a higher lower hides it; a directory merges
//! with the directories of the same path in the lowers below it, down to the first
//! opaque one (`trusted.overlay.opaque` or `user.overlay.opaque`) or the first lower
//! that has a non-directory there (overlayfs stops at it, as it stops at a whiteout).

use crate::layer::tar_walk::{self, XattrsOf};
use crate::layer::tar_writer::is_whiteout;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io;

use std::path::{Path, PathBuf};

/// A directory of the merged view: the host paths it is made of, topmost first (the
/// first one's metadata is the merged directory's).
#[derive(Debug, Clone)]
pub struct MergedDir {
    layers: Vec<PathBuf>,
}

/// What the merged view shows at a name.
#[derive(Debug)]
pub enum Found {
    Absent,
    Dir(MergedDir),
    /// A file, symlink or device: the topmost lower's entry.
    NonDir(Metadata),
}

impl MergedDir {
    /// The root of the overlay of `lowers`, given bottom first (as the store lists a
    /// parent's snapshots).
    pub fn root(lowers: &[PathBuf]) -> Self {
        MergedDir { layers: lowers.iter().rev().cloned().collect() }
    }

    /// The host path of the merged directory's own metadata: the topmost lower's.
    pub fn top(&self) -> &Path {
        &self.layers[0]
    }

    /// Every name any of the directory's layers has (whiteouts included): a superset
    /// of what the merged directory shows, read without a stat each.
    pub fn names(&self) -> io::Result<HashSet<OsString>> {
        let mut names = HashSet::new();
        for layer in &self.layers {
            for entry in fs::read_dir(layer)? {
                names.insert(entry?.file_name());
            }
        }
        Ok(names)
    }

    /// What the merged view shows at `name` in this directory.
    pub fn child(&self, name: &OsStr) -> io::Result<Found> {
        let mut layers = self.layers.iter().map(|dir| dir.join(name));
        let (top, meta) = loop {
            let Some(path) = layers.next() else { return Ok(Found::Absent) };
            if let Some(meta) = lstat(&path)? {
                break (path, meta);
            }
        };
        if is_whiteout(&meta) {
            return Ok(Found::Absent);
        }
        if !meta.is_dir() {
            return Ok(Found::NonDir(meta));
        }
        let mut merged = vec![top];
        if !is_opaque(&merged[0]) {
            for path in layers {
                match lstat(&path)? {
                    None => continue,
                    Some(meta) if meta.is_dir() => {
                        let opaque = is_opaque(&path);
                        merged.push(path);
                        if opaque {
                            break;
                        }
                    }
                    // A whiteout or a non-directory below a directory ends the merge.
                    Some(_) => break,
                }
            }
        }
        Ok(Found::Dir(MergedDir { layers: merged }))
    }
}

impl MergedDir {
    /// The host path of the regular file the merged view shows at `name`, `None`
    /// when it shows nothing there; an error for anything else (a symlink, which only
    /// the overlay resolves, a directory, a device).
    pub fn regular_file(&self, name: &OsStr) -> io::Result<Option<PathBuf>> {
        for layer in &self.layers {
            let path = layer.join(name);
            match lstat(&path)? {
                None => continue,
                Some(meta) if is_whiteout(&meta) => return Ok(None),
                Some(meta) if meta.is_file() => return Ok(Some(path)),
                Some(_) => return Err(io::Error::other(format!("{} is not a regular file", path.display()))),
            }
        }
        Ok(None)
    }
}

/// What the merged view has along a path.
pub struct Walk {
    /// The directories, each as (its path, its merged directory), shallowest first.
    pub dirs: Vec<(PathBuf, MergedDir)>,
    /// What it shows at the first component that is not a directory (`None` when
    /// every component is one).
    pub end: Option<Found>,
}

/// What the merged view has along `rel` (relative to `root`).
pub fn walk(root: &MergedDir, rel: &Path) -> io::Result<Walk> {
    let mut dirs: Vec<(PathBuf, MergedDir)> = Vec::new();
    let mut current = root.clone();
    let mut path = PathBuf::new();
    for name in rel.iter() {
        path.push(name);
        match current.child(name)? {
            Found::Dir(dir) => {
                dirs.push((path.clone(), dir.clone()));
                current = dir;
            }
            other => return Ok(Walk { dirs, end: Some(other) }),
        }
    }
    Ok(Walk { dirs, end: None })
}

/// `lstat`, `None` when nothing is there.
fn lstat(path: &Path) -> io::Result<Option<Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Either opaque marker, as overlayfs reads them (a rootless build's lowers carry the
/// `user.` one); one that cannot be read counts as none.
fn is_opaque(dir: &Path) -> bool {
    tar_walk::is_opaque(XattrsOf::Path(dir)).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(root: &MergedDir, rel: &str) -> String {
        let Walk { dirs, end } = walk(root, Path::new(rel)).unwrap();
        match end {
            None => format!("dir of {}", dirs.last().unwrap().1.layers.len()),
            Some(Found::Absent) => format!("absent after {}", dirs.len()),
            Some(Found::NonDir(_)) => format!("file after {}", dirs.len()),
            Some(Found::Dir(_)) => unreachable!("a directory continues the walk"),
        }
    }

    #[test]
    fn whiteouts_opaque_dirs_and_files_end_what_lower_layers_show() {
        let t = tempfile::tempdir().unwrap();
        let (bottom, middle, top) = (t.path().join("0"), t.path().join("1"), t.path().join("2"));
        for (layer, dirs) in [(&bottom, &["a/b", "gone/x", "opq/old"][..]), (&middle, &["a/b"]), (&top, &["a"])] {
            for dir in dirs {
                fs::create_dir_all(layer.join(dir)).unwrap();
            }
        }
        fs::write(top.join("a/file"), "").unwrap();
        fs::write(bottom.join("file-below"), "").unwrap();
        fs::create_dir(middle.join("file-below")).unwrap();
        let root = MergedDir::root(&[bottom.clone(), middle.clone(), top.clone()]);
        assert_eq!(found(&root, "a/b"), "dir of 2");
        assert_eq!(found(&root, "a/file"), "file after 1");
        assert_eq!(found(&root, "a/file/below"), "file after 1");
        assert_eq!(found(&root, "a/missing/x"), "absent after 1");
        // A directory above a file: the file below is not merged in.
        assert_eq!(found(&root, "file-below"), "dir of 1");
        // Whiteouts need mknod (root); opaque markers trusted.* xattrs (root).
        let whiteout = std::process::Command::new("mknod").arg(middle.join("gone")).args(["c", "0", "0"]).status();
        if whiteout.is_ok_and(|s| s.success()) {
            assert_eq!(found(&root, "gone/x"), "absent after 0");
        }
        fs::create_dir(middle.join("opq")).unwrap();
        if xattr::set(middle.join("opq"), "trusted.overlay.opaque", b"y").is_ok() {
            assert_eq!(found(&root, "opq"), "dir of 1");
            assert_eq!(found(&root, "opq/old"), "absent after 1");
        }
    }

    #[test]
    fn a_regular_file_is_the_topmost_unless_hidden_and_anything_else_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let (bottom, top) = (t.path().join("0"), t.path().join("1"));
        fs::create_dir_all(bottom.join("etc")).unwrap();
        fs::create_dir_all(top.join("etc")).unwrap();
        for name in ["passwd", "group", "shadow"] {
            fs::write(bottom.join("etc").join(name), "below").unwrap();
        }
        fs::write(top.join("etc/passwd"), "above").unwrap();
        std::os::unix::fs::symlink("passwd", top.join("etc/group")).unwrap();
        let root = MergedDir::root(&[bottom.clone(), top.clone()]);
        let Found::Dir(etc) = root.child(OsStr::new("etc")).unwrap() else { panic!("etc is a directory") };
        assert_eq!(etc.regular_file(OsStr::new("passwd")).unwrap(), Some(top.join("etc/passwd")));
        assert_eq!(etc.regular_file(OsStr::new("shadow")).unwrap(), Some(bottom.join("etc/shadow")));
        assert_eq!(etc.regular_file(OsStr::new("missing")).unwrap(), None);
        assert!(etc.regular_file(OsStr::new("group")).is_err(), "a symlink is the overlay's to resolve");
        let whiteout = std::process::Command::new("mknod").arg(top.join("etc/shadow")).args(["c", "0", "0"]).status();
        if whiteout.is_ok_and(|s| s.success()) {
            assert_eq!(etc.regular_file(OsStr::new("shadow")).unwrap(), None);
        }
    }
}
