//! The bare repositories git sources fetch into (`cache/git/<hash of the remote>`,
//! see `ops/git/`) as GC sees them: each holds itself, like a cache mount, counted
//! by `builder du` and released by `builder prune --all` / `--keep-storage` (least
//! recently used first: a build that resolves a ref of the remote marks it used).
//! Prune holds the store lock exclusively, so no build is fetching into one.

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use store::{Hold, HoldKind, Store, tree_size};

/// How a repository's hold is named: apart from cache mount ids.
const PREFIX: &str = "git:";

pub fn dir(store: &Store) -> PathBuf {
    store.root().join("cache").join("git")
}

pub fn holds(store: &Store) -> Result<Vec<Hold>> {
    let dir = dir(store);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut holds = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let meta = entry.metadata()?;
        holds.push(Hold {
            kind: HoldKind::CacheMount,
            id: format!("{PREFIX}{}", entry.file_name().to_string_lossy()),
            size: tree_size(&entry.path()),
            last_used: meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH),
            layers: Vec::new(),
            damaged: false,
        });
    }
    holds.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(holds)
}

/// Removes the repository of `hold` if it is one; `false` for any other hold.
pub fn release(store: &Store, hold: &Hold) -> Result<bool> {
    let Some(name) = hold.id.strip_prefix(PREFIX) else { return Ok(false) };
    let path = dir(store).join(name);
    store.remove_dir_atomically(&path)?;
    let _ = std::fs::remove_file(path.with_extension("lock"));
    Ok(true)
}

/// Marks a repository used now (its mtime), for `--keep-storage` and `--until`.
pub fn touch(repo: &Path) {
    let _ = filetime::set_file_mtime(repo, filetime::FileTime::now());
}
