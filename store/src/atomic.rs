//! The one way builder replaces a small file: write a temp file on the same
//! filesystem, then rename it over the target, so a reader (or a `kill -9`) sees the
//! old content or the new, never half of it. How far the write must reach before it
//! counts as done is the caller's explicit [`Durability`].

use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;

use tempfile::NamedTempFile;

use crate::{Store, error::io_at};

/// How far a replaced file must have reached when [`replace`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Renamed into place: a crash may lose the new content (the old stays), never tear
    /// it. For hints and caches that can be recomputed (layer variants, blob sources,
    /// memos, stat caches).
    Renamed,
    /// The content and the rename are on disk (the file and its directory fsynced). For
    /// what the store must not forget (refs, cache records).
    Synced,
}

/// Writes `bytes` into `temp` (a file made on the target's filesystem) and renames it
/// over `target`, with the given durability.
pub fn replace(mut temp: NamedTempFile, target: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    temp.write_all(bytes)?;
    replace_written(temp, target, durability)
}

/// [`replace`] for a temp file already written (streamed into by the caller).
pub fn replace_written(temp: NamedTempFile, target: &Path, durability: Durability) -> io::Result<()> {
    if durability == Durability::Synced {
        temp.as_file().sync_all()?;
    }
    temp.persist(target).map_err(|e| e.error)?;
    if durability == Durability::Synced
        && let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty())
    {
        // The rename itself must reach the disk too.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Store {
    /// Replaces `target` (anywhere on the store's filesystem) with `bytes` through a
    /// temp file in the store's `tmp/`, named for this process so that a killed
    /// writer's leftover is recognised and removed.
    pub fn write_file(&self, target: &Path, label: &str, bytes: &[u8], durability: Durability) -> crate::Result<()> {
        let temp = tempfile::Builder::new()
            .prefix(&self.temp_prefix(label)?)
            .tempfile_in(self.tmp())
            .map_err(io_at("creating a temp file in", self.tmp()))?;
        replace(temp, target, bytes, durability).map_err(io_at("replacing", target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_with_either_durability() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        std::fs::write(&target, "old").unwrap();
        for (durability, content) in [(Durability::Renamed, "new"), (Durability::Synced, "newer")] {
            let temp = NamedTempFile::new_in(dir.path()).unwrap();
            replace(temp, &target, content.as_bytes(), durability).unwrap();
            assert_eq!(std::fs::read_to_string(&target).unwrap(), content);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn a_failed_rename_leaves_the_old_content_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("d");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), "keep").unwrap();
        let temp = NamedTempFile::new_in(dir.path()).unwrap();
        assert!(replace(temp, &target, b"new", Durability::Synced).is_err());
        assert_eq!(std::fs::read_to_string(target.join("x")).unwrap(), "keep");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the temp file was removed");
    }
}
