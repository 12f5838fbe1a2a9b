//! Layers kept as their snapshot alone: a step's layer is not written as an
//! uncompressed tar blob beside its snapshot. `packed/<diffID hex>.json` records that
//! the uncompressed blob of diffID D (the tar whose digest is D) is materialisable
//! from snapshot S: the builder's layer code writes the tar of S again when something
//! reads the blob (an export compressing it, `save`, a cache export), checking it
//! while it writes (by checks recorded with the record's checkpoints).
//!
//! For the store such a layer is a blob like any other ([`Store::has_blob`],
//! [`Store::blob_size`]) except that it cannot be opened as a file
//! ([`Store::packed_layer`] says how to make it). GC treats the record as the blob
//! and holds its snapshot with it; `fsck` re-hashes it through
//! [`crate::LayerUnpacker::packed_digest`] as it re-hashes blob files.

use crate::error::{Result, io_at};
use crate::{Durability, Store};
use image_spec::Digest;
use std::path::PathBuf;

/// "The uncompressed blob `diff_id` is the tar of snapshot `snapshot`."
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackedLayer {
    pub diff_id: Digest,
    /// The snapshot's chain ID (its directory under `snapshots/`).
    pub snapshot: Digest,
    /// Bytes of the tar.
    pub size: u64,
    /// How the tar was written (`SOURCE_DATE_EPOCH`'s clamp of every mtime); the
    /// store keeps it for the packer and never reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_clamp: Option<i64>,
    /// The packer's checkpoints for hashing a next layer incrementally, and the cheap
    /// checks its readers verify the tar by (opaque here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<serde_json::Value>,
}

impl Store {
    pub(crate) fn packed_dir(&self) -> PathBuf {
        self.root.join("packed")
    }

    pub(crate) fn packed_path(&self, diff_id: &Digest) -> PathBuf {
        self.packed_dir().join(format!("{}.json", diff_id.hex()))
    }

    /// The record of `digest` as a packed layer, when there is one and its snapshot is
    /// in the store (a record whose snapshot is gone is no blob).
    pub fn packed_layer(&self, digest: &Digest) -> Option<PackedLayer> {
        let packed = self.read_packed(digest)?;
        self.has_snapshot(&packed.snapshot).then_some(packed)
    }

    pub(crate) fn read_packed(&self, digest: &Digest) -> Option<PackedLayer> {
        let bytes = std::fs::read(self.packed_path(digest)).ok()?;
        let packed: PackedLayer = serde_json::from_slice(&bytes).ok()?;
        (packed.diff_id == *digest).then_some(packed)
    }

    /// Records a layer as packed in its snapshot (committed before: a record never
    /// names a snapshot that was not there). A record already there for the diffID
    /// with its snapshot wins: both snapshots give the same tar.
    pub fn record_packed_layer(&self, packed: &PackedLayer) -> Result<()> {
        if self.packed_layer(&packed.diff_id).is_some() {
            return Ok(());
        }
        let dir = self.packed_dir();
        std::fs::create_dir_all(&dir).map_err(io_at("creating", &dir))?;
        let bytes = serde_json::to_vec(packed).expect("records serialize");
        // Synced: a manifest or cache record written next names this blob.
        self.write_file(&self.packed_path(&packed.diff_id), "packed", &bytes, Durability::Synced)
    }

    /// Every record (for GC): its diffID, file and snapshot hex (`None`: unreadable).
    pub(crate) fn packed_records(&self) -> Result<Vec<(Digest, PathBuf, Option<String>)>> {
        let dir = self.packed_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at("listing", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_at("listing", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else { continue };
            let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) else { continue };
            let snapshot = self.read_packed(&digest).map(|p| p.snapshot.hex().to_string());
            out.push((digest, entry.path(), snapshot));
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_store;

    #[test]
    fn a_packed_layer_is_a_blob_while_its_snapshot_is_there() {
        let (_d, store) = test_store();
        let diff_id = Digest::of(b"tar");
        let snapshot = Digest::of(b"chain");
        let packed = PackedLayer {
            diff_id: diff_id.clone(),
            snapshot: snapshot.clone(),
            size: 3,
            mtime_clamp: None,
            resume: None,
        };
        store.record_packed_layer(&packed).unwrap();
        assert!(!store.has_blob(&diff_id), "no snapshot, no blob");
        let dir = store.temp_dir("t").unwrap().keep();
        store.commit_snapshot(dir, &snapshot).unwrap();
        assert!(store.has_blob(&diff_id));
        assert_eq!(store.blob_size(&diff_id).unwrap(), 3);
        assert_eq!(store.packed_layer(&diff_id), Some(packed));
        let err = store.open_blob(&diff_id).unwrap_err().to_string();
        assert!(err.contains(diff_id.as_str()) && err.contains(snapshot.as_str()), "{err}");
    }
}
