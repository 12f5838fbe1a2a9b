//! Recompressing a stored layer (gzip ⇄ zstd ⇄ uncompressed) for an export that wants
//! another compression. The tar bytes are left as they are, so the diffID does not
//! change (and is checked on the way); the new blob is recorded in the store's
//! variant index so that the next export reuses it.

use super::compress::{Compressor, HashWriter, decompress};
use crate::image::{Compression, LayerInfo};
use crate::store::Store;
use anyhow::{Context as _, Result, bail};
use std::io::{self, BufReader};

/// The compression a layer media type says (OCI or Docker), if it is a tar layer.
pub fn compression_of(media_type: &str) -> Option<Compression> {
    if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
        Some(Compression::Zstd)
    } else if media_type.ends_with("+gzip") || media_type.ends_with(".gzip") {
        Some(Compression::Gzip)
    } else if media_type.ends_with(".tar") {
        Some(Compression::Uncompressed)
    } else {
        None
    }
}

/// `layer` as a blob in `compression` (at `level`, when given): the layer itself when
/// it already is one (and no level is asked), a variant made before, or a new one.
pub fn ensure_compression(
    store: &Store,
    layer: &LayerInfo,
    compression: Compression,
    level: Option<i32>,
) -> Result<LayerInfo> {
    if level.is_none() && compression_of(&layer.media_type) == Some(compression) {
        return Ok(layer.clone());
    }
    if let Some(variant) = store.layer_variant(&layer.diff_id, compression, level) {
        return Ok(variant);
    }
    let blob = store.open_blob(&layer.digest).with_context(|| format!("layer {}", layer.digest))?;
    let mut reader =
        decompress(BufReader::with_capacity(1 << 20, blob)).with_context(|| format!("layer {}", layer.digest))?;
    let writer = store.blob_writer()?;
    let mut hashing = HashWriter::new(Compressor::with_level(compression, level, writer)?);
    io::copy(&mut reader, &mut hashing).with_context(|| format!("recompressing layer {}", layer.digest))?;
    let (compressor, diff_id, _) = hashing.finish();
    if diff_id != layer.diff_id {
        bail!("layer {}: its content has diff id {diff_id}, expected {}", layer.digest, layer.diff_id);
    }
    let (digest, size) = compressor.finish().context("finishing compression")?.commit(None)?;
    let converted = LayerInfo { digest, diff_id, size, media_type: compression.media_type().to_string() };
    store.record_layer_variant(&converted, compression, level)?;
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::{MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_OCI_LAYER};

    #[test]
    fn media_types_say_their_compression() {
        assert_eq!(compression_of(Compression::Zstd.media_type()), Some(Compression::Zstd));
        assert_eq!(compression_of(MEDIA_TYPE_DOCKER_LAYER_GZIP), Some(Compression::Gzip));
        assert_eq!(compression_of(MEDIA_TYPE_OCI_LAYER), Some(Compression::Uncompressed));
        assert_eq!(compression_of("application/vnd.docker.image.rootfs.diff.tar"), Some(Compression::Uncompressed));
        assert_eq!(compression_of("application/json"), None);
    }

    #[test]
    fn recompressed_layers_keep_their_diff_id_and_are_reused() {
        let (dir, store) = crate::store::test_store();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("f"), "hello ".repeat(1000)).unwrap();
        let gzip = super::super::diff_to_layer(&store, &tree, Compression::Gzip).unwrap().unwrap();
        let zstd = ensure_compression(&store, &gzip, Compression::Zstd, None).unwrap();
        assert_eq!(zstd.diff_id, gzip.diff_id);
        assert_ne!(zstd.digest, gzip.digest);
        assert_eq!(zstd.media_type, Compression::Zstd.media_type());
        // The second time the blob is not written again.
        let before = std::fs::metadata(store.blob_path(&zstd.digest)).unwrap().modified().unwrap();
        assert_eq!(ensure_compression(&store, &gzip, Compression::Zstd, None).unwrap(), zstd);
        assert_eq!(std::fs::metadata(store.blob_path(&zstd.digest)).unwrap().modified().unwrap(), before);
        // Same compression: the layer itself; back to gzip: the original blob.
        assert_eq!(ensure_compression(&store, &gzip, Compression::Gzip, None).unwrap(), gzip);
        assert_eq!(ensure_compression(&store, &zstd, Compression::Gzip, None).unwrap(), gzip);
        let fast = ensure_compression(&store, &gzip, Compression::Gzip, Some(1)).unwrap();
        assert_eq!(fast.diff_id, gzip.diff_id);
        assert!(ensure_compression(&store, &gzip, Compression::Gzip, Some(42)).is_err());
    }
}
