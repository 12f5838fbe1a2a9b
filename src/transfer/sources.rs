//! Where blobs are known to live: `blob-sources.json` under the store root maps a
//! digest to the `host/repository`s it was pulled from or pushed to, so that a push
//! to another repository of the same registry can mount it instead of uploading.
//! It is a hint: a lost update costs an upload, never correctness.

use anyhow::Result;
use image_spec::Digest;
use std::collections::BTreeMap;
use store::Store;

type Sources = BTreeMap<Digest, Vec<String>>;

/// Repositories remembered per blob; the oldest are forgotten beyond this.
const MAX_PER_BLOB: usize = 8;

fn read(store: &Store) -> Sources {
    let path = store.root().join("blob-sources.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!("ignoring {}: {e}", path.display());
            Sources::new()
        }),
        Err(_) => Sources::new(),
    }
}

/// The repositories (`host/repository`) `digest` is known to be in, most recent
/// first.
pub fn of(store: &Store, digest: &Digest) -> Vec<String> {
    read(store).remove(digest).unwrap_or_default().into_iter().rev().collect()
}

/// Remembers that `digests` are in `name` (`host/repository`).
pub fn record(store: &Store, digests: &[Digest], name: &str) -> Result<()> {
    let name = name.to_string();
    let mut sources = read(store);
    let mut changed = false;
    for digest in digests {
        let list = sources.entry(digest.clone()).or_default();
        if list.last() == Some(&name) {
            continue;
        }
        list.retain(|n| *n != name);
        list.push(name.clone());
        if list.len() > MAX_PER_BLOB {
            list.remove(0);
        }
        changed = true;
    }
    if !changed {
        return Ok(());
    }
    let path = store.root().join("blob-sources.json");
    let mut bytes = serde_json::to_vec(&sources)?;
    bytes.push(b'\n');
    // A hint for cross-repository mounts: losing it costs an upload, never a wrong push.
    Ok(store.write_file(&path, "blob-sources", &bytes, store::Durability::Renamed)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_finds_other_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        record(&store, std::slice::from_ref(&d), "r:5000/a/b").unwrap();
        record(&store, std::slice::from_ref(&d), "other/c").unwrap();
        assert_eq!(of(&store, &d), ["other/c", "r:5000/a/b"]);
        record(&store, std::slice::from_ref(&d), "r:5000/a/b").unwrap();
        assert_eq!(of(&store, &d), ["r:5000/a/b", "other/c"]);
        assert!(of(&store, &Digest::of(b"y")).is_empty());
    }
}
