//! Snapshot sizes remembered: a committed snapshot never changes, so `du`, prune and
//! the automatic GC after every build walk only the snapshots they have not measured
//! yet. The memo (`snapshot-sizes.json`: name → the directory's ctime and its size)
//! is a hint: lost, damaged or stale (another ctime), an entry is measured again.

use crate::{Durability, Store};
use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) struct SizeMemo {
    path: PathBuf,
    known: BTreeMap<String, (u128, u64)>,
    used: BTreeMap<String, (u128, u64)>,
}

impl SizeMemo {
    pub(crate) fn load(store: &Store) -> SizeMemo {
        let path = store.root().join("snapshot-sizes.json");
        let known = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        SizeMemo { path, known, used: BTreeMap::new() }
    }

    /// The size of the snapshot `name` at `dir`, whose directory changed at `ctime`.
    pub(crate) fn size(&mut self, name: &str, dir: &Path, ctime: SystemTime) -> u64 {
        let stamp = ctime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let size = match self.known.get(name) {
            Some(&(known, size)) if known == stamp => size,
            _ => tree_size(dir),
        };
        self.used.insert(name.to_string(), (stamp, size));
        size
    }

    /// Keeps the entries of the snapshots measured this time (the others are gone).
    pub(crate) fn save(self, store: &Store) {
        if self.used == self.known {
            return;
        }
        let bytes = serde_json::to_vec(&self.used).expect("sizes serialize");
        if let Err(e) = store.write_file(&self.path, "sizes", &bytes, Durability::Renamed) {
            tracing::debug!("remembering snapshot sizes: {e}");
        }
    }
}

/// Disk usage of a file or a tree, hardlinks once, not crossing into other
/// filesystems.
pub fn tree_size(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    for entry in walkdir::WalkDir::new(path).same_file_system(true).into_iter().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += disk_size(&meta);
    }
    total
}

pub(crate) fn disk_size(meta: &std::fs::Metadata) -> u64 {
    meta.blocks() * 512
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_store;

    #[test]
    fn a_snapshot_is_walked_once_and_a_changed_one_again() {
        let (_d, store) = test_store();
        let dir = store.root().join("snapshots/abc");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), vec![7u8; 10_000]).unwrap();
        let ctime = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            UNIX_EPOCH + std::time::Duration::new(m.ctime() as u64, m.ctime_nsec() as u32)
        };
        let mut memo = SizeMemo::load(&store);
        let walked = memo.size("abc", &dir, ctime(&dir));
        assert!(walked >= 10_000, "{walked}");
        memo.save(&store);
        // Remembered: a second look does not walk (a file added behind the memo's back,
        // with the directory's ctime as it was, is not seen).
        let before = ctime(&dir);
        std::fs::write(dir.join("g"), vec![7u8; 100_000]).unwrap();
        let mut memo = SizeMemo::load(&store);
        assert_eq!(memo.size("abc", &dir, before), walked);
        // A directory that changed is walked again.
        assert!(memo.size("abc", &dir, ctime(&dir)) >= 110_000);
        // Only what was measured stays remembered.
        memo.save(&store);
        let kept: BTreeMap<String, (u128, u64)> =
            serde_json::from_slice(&std::fs::read(store.root().join("snapshot-sizes.json")).unwrap()).unwrap();
        assert_eq!(kept.keys().collect::<Vec<_>>(), vec!["abc"]);
    }
}
