//! Files and symlinks: created without looking first, taken from the previous result
//! when it has them, and, for a copy into a plain directory, written by the thread
//! pool while directories and hard-link groups stay on the caller's thread.

use super::Writer;
use crate::ops::context::tree::Entry;
use crate::ops::copy::reuse::{Plan, Record};
use anyhow::{Context as _, Result, bail};
use rayon::prelude::*;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

/// What writing one non-directory did, for the memo of the next copy.
pub(super) struct Leaf {
    record: Option<Record>,
    linked: bool,
}

impl Writer<'_> {
    /// Writes a non-directory that is not a later name of a hard-link group. It needs
    /// nothing of the writer but its settings and the previous result, and changes
    /// nothing of it, so several threads may write leaves at once.
    pub(super) fn write_leaf(&self, entry: &Entry, dst: &Path) -> Result<Leaf> {
        let kind = entry.meta.file_type();
        if kind.is_file() {
            let (ids, mode) = (self.ids_for(&entry.meta), self.mode_for(&entry.meta));
            let (plan, mut record) = match &self.reuse {
                Some(reuse) => reuse.plan(&entry.host, &entry.meta, dst, (ids.uid, ids.gid), mode)?,
                None => (Plan::Copy, None),
            };
            if let Plan::Link(old) = plan {
                match create_replacing(dst, &entry.host, || fs::hard_link(&old, dst))? {
                    Ok(()) => return Ok(Leaf { record, linked: true }),
                    // The previous snapshot is a hint: if it cannot be linked from, copy.
                    Err(e) => tracing::debug!("linking {} to {}: {e}", old.display(), dst.display()),
                }
            }
            copy_file(&entry.host, dst)?;
            let plain = self.set_metadata(&entry.host, &entry.meta, dst)?;
            if let Some(record) = &mut record {
                record.copied(&entry.meta, plain);
            }
            return Ok(Leaf { record, linked: false });
        }
        if kind.is_symlink() {
            let target =
                fs::read_link(&entry.host).with_context(|| format!("reading link {}", entry.host.display()))?;
            create_replacing(dst, &entry.host, || symlink(&target, dst))?
                .with_context(|| format!("creating symlink {}", dst.display()))?;
            self.set_metadata(&entry.host, &entry.meta, dst)?;
        } else {
            // Device nodes, fifos and sockets need mknod, which only the executor may
            // call; they are rare in build contexts and stages alike. What was at
            // `dst` is still replaced (by nothing).
            if fs::symlink_metadata(dst).is_ok() {
                make_room(dst, &entry.host)?;
            }
            tracing::warn!("skipping special file {}", entry.host.display());
        }
        Ok(Leaf { record: None, linked: false })
    }

    /// Notes what leaves wrote.
    pub(super) fn note(&mut self, leaves: impl IntoIterator<Item = Leaf>) {
        let (records, linked) = records_of(leaves);
        if let Some(reuse) = &mut self.reuse {
            reuse.add(records, linked);
        }
    }

    /// Writes `entries` (a selected path and what is below it, in pre-order as
    /// `SourceFs::collect` gives them) at `target`. With [`Writer::parallel`] the
    /// directories and hard-link groups are written first, in order, by this thread,
    /// then the other files and symlinks by the thread pool: the result is the same,
    /// as each of those is written on its own and directory times are set last.
    pub fn write_tree(&mut self, entries: &[Entry], target: &Path) -> Result<()> {
        let dst_of = |entry: &Entry| {
            if entry.rel.as_os_str().is_empty() { target.to_path_buf() } else { target.join(&entry.rel) }
        };
        if !self.parallel {
            for entry in entries {
                self.write(entry, &dst_of(entry), entry.rel.as_os_str().is_empty())?;
            }
            return Ok(());
        }
        let mut leaves: Vec<&Entry> = Vec::new();
        for entry in entries {
            let is_top = entry.rel.as_os_str().is_empty();
            let grouped = entry.meta.is_file() && entry.meta.nlink() > 1;
            if is_top || entry.meta.is_dir() || grouped {
                self.write(entry, &dst_of(entry), is_top)?;
            } else {
                leaves.push(entry);
            }
        }
        // In batches, each handing its records over as one list.
        let batches: Vec<(Vec<Record>, u64)> = leaves
            .par_chunks(256)
            .map(|batch| {
                let leaves: Vec<Leaf> =
                    batch.iter().map(|entry| self.write_leaf(entry, &dst_of(entry))).collect::<Result<_>>()?;
                Ok(records_of(leaves))
            })
            .collect::<Result<_>>()?;
        if let Some(reuse) = &mut self.reuse {
            for (records, linked) in batches {
                reuse.add(records, linked);
            }
        }
        Ok(())
    }
}

/// The records of `leaves` for the memo, and how many of them were linked.
fn records_of(leaves: impl IntoIterator<Item = Leaf>) -> (Vec<Record>, u64) {
    let mut linked = 0;
    let records = leaves
        .into_iter()
        .filter_map(|leaf| {
            linked += u64::from(leaf.linked);
            leaf.record
        })
        .collect();
    (records, linked)
}

/// Whether every thread of the pool sees `dir` as this thread does: a directory
/// under an overlay mounted in this thread's own mount namespace is not what the
/// pool's threads see there.
pub(crate) fn pool_sees(dir: &Path) -> bool {
    let id = |dir: &Path| fs::symlink_metadata(dir).ok().map(|m| (m.dev(), m.ino()));
    let here = id(dir);
    here.is_some() && rayon::broadcast(|_| id(dir)).into_iter().all(|there| there == here)
}

fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    let mut input = fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    // `create_new` (O_EXCL) never follows a symlink that appeared at `dst`.
    let mut output = create_replacing(dst, src, || fs::OpenOptions::new().write(true).create_new(true).open(dst))?
        .with_context(|| format!("creating {}", dst.display()))?;
    io::copy(&mut input, &mut output).with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    Ok(())
}

/// Runs `create`, which makes a new non-directory at `dst`; if that fails because
/// something is there, replaces it (never a directory) and runs `create` again.
/// The outer error is the replacing's, the inner one `create`'s own.
pub(super) fn create_replacing<T>(
    dst: &Path,
    src: &Path,
    mut create: impl FnMut() -> io::Result<T>,
) -> Result<io::Result<T>> {
    match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            make_room(dst, src)?;
            Ok(create())
        }
        done => Ok(done),
    }
}

/// Removes the non-directory at `dst`, for `src` to take its place.
fn make_room(dst: &Path, src: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(dst).with_context(|| format!("stat {}", dst.display()))?;
    if meta.is_dir() {
        bail!("cannot overwrite directory {} with non-directory {}", dst.display(), src.display());
    }
    fs::remove_file(dst).with_context(|| format!("replacing {}", dst.display()))
}

/// Extended attributes, best effort: a filesystem without xattr support, or a
/// namespace (`security.*`) we may not write, must not fail the copy. Returns
/// whether `src` has none (false when they cannot be listed).
pub(super) fn copy_xattrs(src: &Path, dst: &Path) -> bool {
    let Ok(names) = xattr::list(src) else { return false };
    let mut plain = true;
    for name in names {
        plain = false;
        if let Ok(Some(value)) = xattr::get(src, &name)
            && let Err(e) = xattr::set(dst, &name, &value)
        {
            tracing::debug!("xattr {:?} on {}: {e}", name, dst.display());
        }
    }
    plain
}
