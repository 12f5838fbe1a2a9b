//! Layers: turning a snapshot directory into a compressed tar blob, and a blob back
//! into a snapshot directory. Unpacking foreign data is a security boundary.

use crate::image::{Compression, LayerInfo};
use crate::store::Store;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Tars an overlay upperdir (0/0 char devices → `.wh.NAME`, opaque dirs →
/// `.wh..wh..opq`) deterministically, compresses it, stores the blob. Returns `None`
/// when the directory holds no change at all.
pub fn diff_to_layer(store: &Store, upperdir: &Path, compression: Compression) -> Result<Option<LayerInfo>> {
    let _ = (store, upperdir, compression);
    anyhow::bail!("layer diff not built yet")
}

/// Makes sure every layer of a stack has its snapshot (unpacking blobs as needed) and
/// returns the snapshot directories, bottom layer first.
pub fn ensure_snapshots(store: &Store, layers: &[LayerInfo]) -> Result<Vec<PathBuf>> {
    let _ = (store, layers);
    anyhow::bail!("layer unpack not built yet")
}
