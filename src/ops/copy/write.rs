//! Writing copied entries into the destination: directories created inside the root
//! without following symlinks out of it, files, symlinks and hardlinks recreated,
//! then owner, mode, xattrs and times applied the way BuildKit's copier does.

use super::chmod::ModeSpec;
use super::owner::Ids;
use super::reuse::Reuse;
use crate::ops::context::tree::{Entry, resolve_in_root};
use anyhow::{Context as _, Result, bail};
use filetime::FileTime;
use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::{Path, PathBuf};

mod leaf;

pub(crate) use leaf::pool_sees;

/// Creates the missing directories of `rel` inside `root` (resolving existing
/// symlinks within the root, chroot-like) with `mode`, owned by `owner` when given;
/// returns the directory's host path.
pub(crate) fn mkdir_all(root: &Path, rel: &Path, mode: u32, owner: Option<Ids>) -> Result<PathBuf> {
    let resolved = resolve_in_root(root, rel, true)?;
    let mut current = root.to_path_buf();
    for component in resolved.iter() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                bail!("cannot create directory /{}: /{} is not a directory", rel.display(), display_rel(root, &current))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current).with_context(|| format!("creating /{}", display_rel(root, &current)))?;
                fs::set_permissions(&current, fs::Permissions::from_mode(mode))
                    .with_context(|| format!("chmod /{}", display_rel(root, &current)))?;
                if let Some(ids) = owner {
                    chown(&current, ids, true)?;
                }
            }
            Err(e) => return Err(e).with_context(|| format!("stat /{}", display_rel(root, &current))),
        }
    }
    Ok(current)
}

/// A host path inside `root` shown as the path the build sees.
pub(crate) fn display_rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// Sets the owner of `path` without following a symlink. Without root an implicit
/// owner (root's, or the source's) cannot always be set; only an explicit `--chown`
/// then fails.
pub(crate) fn chown(path: &Path, ids: Ids, explicit: bool) -> Result<()> {
    match lchown(path, Some(ids.uid), Some(ids.gid)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && !explicit => Ok(()),
        Err(e) => Err(crate::layer::unmapped_owner(e, ids.uid, ids.gid))
            .with_context(|| format!("chown {}:{} {}", ids.uid, ids.gid, path.display())),
    }
}

/// How copied entries get their metadata.
pub(crate) struct Writer<'a> {
    /// `--chown`, which also owns created parent directories.
    pub owner: Option<Ids>,
    /// Without `--chown`: reset to root (context files) or keep the source's owner.
    pub reset_owner: bool,
    pub mode: Option<&'a ModeSpec>,
    /// (dev, inode) of multiply-linked source files → their first copy.
    links: HashMap<(u64, u64), PathBuf>,
    /// Files to take from the previous result of the same COPY (see [`Reuse`]).
    pub reuse: Option<Reuse>,
    /// Whether the thread pool may write files (see [`Writer::write_tree`]).
    pub parallel: bool,
    /// Directory times, applied last so writing their children does not change them.
    dir_times: Vec<(PathBuf, FileTime, FileTime)>,
}

impl<'a> Writer<'a> {
    pub fn new(owner: Option<Ids>, reset_owner: bool, mode: Option<&'a ModeSpec>) -> Self {
        Writer { owner, reset_owner, mode, links: HashMap::new(), reuse: None, parallel: false, dir_times: Vec::new() }
    }

    /// Recreates `entry` at `dst`. An existing directory is reused (its metadata is
    /// replaced unless it is the copy's own target, `keep_existing_dir`); an existing
    /// non-directory is replaced by a file or symlink, but a directory is never
    /// written over a non-directory.
    ///
    /// Entries are created first and `dst` looked at only when that fails because
    /// something is there: a direct copy writes into an empty directory, where
    /// nothing ever is, unless several sources of one COPY name the same path.
    pub fn write(&mut self, entry: &Entry, dst: &Path, keep_existing_dir: bool) -> Result<()> {
        let kind = entry.meta.file_type();
        if kind.is_dir() {
            match fs::create_dir(dst) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let meta = fs::symlink_metadata(dst).with_context(|| format!("stat {}", dst.display()))?;
                    if !meta.is_dir() {
                        bail!("cannot copy to non-directory: {}", dst.display());
                    }
                    if keep_existing_dir {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", dst.display())),
            }
            self.set_metadata(&entry.host, &entry.meta, dst)?;
            let atime = FileTime::from_last_access_time(&entry.meta);
            let mtime = FileTime::from_last_modification_time(&entry.meta);
            self.dir_times.push((dst.to_path_buf(), atime, mtime));
            return Ok(());
        }
        if kind.is_file() && entry.meta.nlink() > 1 {
            let id = (entry.meta.dev(), entry.meta.ino());
            if let Some(first) = self.links.get(&id) {
                return leaf::create_replacing(dst, &entry.host, || fs::hard_link(first, dst))?
                    .with_context(|| format!("linking {}", dst.display()));
            }
            self.links.insert(id, dst.to_path_buf());
        }
        let leaf = self.write_leaf(entry, dst)?;
        self.note([leaf]);
        Ok(())
    }

    /// Owner, extended attributes, mode and (but for a directory's) times of `src`
    /// (`meta`) onto `dst`; returns whether `src` had no extended attributes.
    fn set_metadata(&self, src: &Path, meta: &Metadata, dst: &Path) -> Result<bool> {
        let ids = self.ids_for(meta);
        chown(dst, ids, self.owner.is_some())?;
        let plain = leaf::copy_xattrs(src, dst);
        // A symlink has no mode of its own.
        if !meta.file_type().is_symlink() {
            let mode = self.mode_for(meta);
            fs::set_permissions(dst, fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {:o} {}", mode, dst.display()))?;
        }
        if !meta.is_dir() {
            let atime = FileTime::from_last_access_time(meta);
            let mtime = FileTime::from_last_modification_time(meta);
            filetime::set_symlink_file_times(dst, atime, mtime)
                .with_context(|| format!("setting times of {}", dst.display()))?;
        }
        Ok(plain)
    }

    /// The owner a copy of an entry with `meta` gets.
    fn ids_for(&self, meta: &Metadata) -> Ids {
        match self.owner {
            Some(ids) => ids,
            None if self.reset_owner => Ids { uid: 0, gid: 0 },
            None => Ids { uid: meta.uid(), gid: meta.gid() },
        }
    }

    /// The permission bits a copy of an entry with `meta` gets.
    fn mode_for(&self, meta: &Metadata) -> u32 {
        match self.mode {
            Some(spec) => spec.apply(meta.mode(), meta.is_dir()),
            None => meta.mode() & 0o7777,
        }
    }

    /// Applies directory times, deepest first.
    pub fn finish(self) -> Result<()> {
        for (dir, atime, mtime) in self.dir_times.into_iter().rev() {
            filetime::set_symlink_file_times(&dir, atime, mtime)
                .with_context(|| format!("setting times of {}", dir.display()))?;
        }
        Ok(())
    }
}
