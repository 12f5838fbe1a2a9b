//! Which blob holds a layer in which compression: `variants/<diffID hex>.<kind>.json`,
//! one small file per (diffID, compression, level), each holding the [`LayerInfo`].
//!
//! A layer compressed once (by a build or by an export that asked for another
//! compression) is found here by later exports instead of being compressed again.
//! Entries are written through a temp file and a rename; an entry whose blob is gone
//! (pruned) is simply a miss.

use crate::Durability;
use crate::Store;
use crate::error::{Result, io_at};
use image_spec::{Compression, Digest, LayerInfo};
use std::path::PathBuf;

/// `gzip`, `zstd-19`, `uncompressed`.
fn kind(compression: Compression, level: Option<i32>) -> String {
    let name = match compression {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::Uncompressed => "uncompressed",
    };
    match level {
        Some(l) => format!("{name}-{l}"),
        None => name.to_string(),
    }
}

impl Store {
    pub(crate) fn variants_dir(&self) -> PathBuf {
        self.root.join("variants")
    }

    fn variant_path(&self, diff_id: &Digest, compression: Compression, level: Option<i32>) -> PathBuf {
        self.variants_dir().join(format!("{}.{}.json", diff_id.hex(), kind(compression, level)))
    }

    /// The stored blob of `diff_id` in this compression (and level), if one was made.
    pub fn layer_variant(&self, diff_id: &Digest, compression: Compression, level: Option<i32>) -> Option<LayerInfo> {
        let bytes = std::fs::read(self.variant_path(diff_id, compression, level)).ok()?;
        let layer: LayerInfo = serde_json::from_slice(&bytes).ok()?;
        (layer.diff_id == *diff_id && self.has_blob(&layer.digest)).then_some(layer)
    }

    /// Records `layer` as the blob of its diffID in `compression` at `level`.
    pub fn record_layer_variant(&self, layer: &LayerInfo, compression: Compression, level: Option<i32>) -> Result<()> {
        let path = self.variant_path(&layer.diff_id, compression, level);
        if self.layer_variant(&layer.diff_id, compression, level).is_some_and(|l| l == *layer) {
            return Ok(());
        }
        std::fs::create_dir_all(self.variants_dir()).map_err(io_at("creating", self.variants_dir()))?;
        // A hint, not a source of truth: a lost entry only costs a recompression.
        let bytes = serde_json::to_vec(layer).expect("layers serialize");
        self.write_file(&path, "variant", &bytes, Durability::Renamed)
    }

    /// Every recorded variant, with its index file (for prune and du).
    pub(crate) fn layer_variants(&self) -> Result<Vec<(PathBuf, Option<LayerInfo>)>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(self.variants_dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_at("listing", self.variants_dir())(e)),
        };
        for entry in entries {
            let path = entry.map_err(io_at("listing", self.variants_dir()))?.path();
            let layer = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
            out.push((path, layer));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_store;

    #[test]
    fn variants_are_found_per_compression_and_level() {
        let (_d, store) = test_store();
        let digest = store.write_blob_bytes(b"zstd bytes").unwrap();
        let diff_id = Digest::of(b"tar");
        let layer = LayerInfo { digest, diff_id: diff_id.clone(), size: 10, media_type: "zstd".into() };
        assert!(store.layer_variant(&diff_id, Compression::Zstd, None).is_none());
        store.record_layer_variant(&layer, Compression::Zstd, None).unwrap();
        assert_eq!(store.layer_variant(&diff_id, Compression::Zstd, None), Some(layer.clone()));
        assert!(store.layer_variant(&diff_id, Compression::Zstd, Some(19)).is_none());
        assert!(store.layer_variant(&diff_id, Compression::Gzip, None).is_none());
        // A pruned blob makes the entry a miss.
        std::fs::remove_file(store.blob_path(&layer.digest)).unwrap();
        assert!(store.layer_variant(&diff_id, Compression::Zstd, None).is_none());
    }
}
