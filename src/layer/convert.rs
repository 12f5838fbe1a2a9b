//! Recompressing a stored layer (gzip ⇄ zstd ⇄ uncompressed) for an export that wants
//! another compression. The tar bytes are left as they are, so the diffID does not
//! change (and is checked on the way, unless the source is the uncompressed tar whose
//! digest is the diffID); the new blob is recorded in the store's variant index so
//! that the next export reuses it.

use super::compress::{Compressor, decompress, detect, read_up_to};
use anyhow::{Context as _, Result, bail};
use image_spec::{Compression, LayerInfo, compression_of};
use std::fs::File;
use std::io::{self, BufReader, Seek as _, SeekFrom, Write};
use store::{BlobWriter, HashReader, Store};

/// `layer` as a blob in `compression` (at `level`, when given): the layer itself when
/// it already is one (and no level is asked), a variant made before, or a new one.
pub fn ensure_compression(
    store: &Store,
    layer: &LayerInfo,
    compression: Compression,
    level: Option<i32>,
) -> Result<LayerInfo> {
    match stored_compression(store, layer, compression, level) {
        Some(stored) => Ok(stored),
        None => compress_layer(store, layer, compression, level, None),
    }
}

/// `layer` in `compression` (at `level`) if the store has it so already: the layer
/// itself, or a variant made before.
pub fn stored_compression(
    store: &Store,
    layer: &LayerInfo,
    compression: Compression,
    level: Option<i32>,
) -> Option<LayerInfo> {
    if level.is_none() && compression_of(&layer.media_type) == Some(compression) {
        return Some(layer.clone());
    }
    store.layer_variant(&layer.diff_id, compression, level)
}

/// Compresses `layer` into a new variant blob in the store. With `copy`, the
/// compressed bytes are also written there (from its current offset) as they are made,
/// on the same thread as the blob: an archive being exported gets the layer without
/// the blob being read back and copied after.
pub fn compress_layer(
    store: &Store,
    layer: &LayerInfo,
    compression: Compression,
    level: Option<i32>,
    copy: Option<File>,
) -> Result<LayerInfo> {
    if !store.has_blob_file(&layer.digest)
        && let Some(packed) = store.packed_layer(&layer.digest)
    {
        // A layer kept as its snapshot: its tar is made again straight into the
        // compressor, checked against the diffID before the blob is committed.
        let out = Tee { blob: store.blob_writer()?, copy };
        let compressor = Compressor::with_level(compression, level, out)?;
        let compressor = super::packed::write_packed(store, &packed, compressor)?;
        return finish(store, layer, compressor, compression, level);
    }
    let mut blob = store.open_blob(&layer.digest).with_context(|| format!("layer {}", layer.digest))?;
    let mut magic = [0u8; 4];
    let magic_len = read_up_to(&mut blob, &mut magic).with_context(|| format!("reading layer {}", layer.digest))?;
    blob.seek(SeekFrom::Start(0))?;
    let out = Tee { blob: store.blob_writer()?, copy };
    let mut compressor = Compressor::with_level(compression, level, out)?;
    let copying = format!("recompressing layer {}", layer.digest);
    if detect(&magic[..magic_len]) == Compression::Uncompressed && layer.digest == layer.diff_id {
        // An uncompressed blob is its own diffID: the store checked that digest when
        // it wrote the blob, so hashing it again here would only cost time.
        compressor.compress_file(blob).context(copying)?;
    } else {
        let reader =
            decompress(BufReader::with_capacity(1 << 20, blob)).with_context(|| format!("layer {}", layer.digest))?;
        let mut hashing = HashReader::new(reader);
        compressor.read_from(&mut hashing).context(copying.clone())?;
        let (diff_id, _) = hashing.finish().context(copying)?;
        if diff_id != layer.diff_id {
            bail!("layer {}: its content has diff id {diff_id}, expected {}", layer.digest, layer.diff_id);
        }
    }
    finish(store, layer, compressor, compression, level)
}

fn finish(
    store: &Store,
    layer: &LayerInfo,
    compressor: Compressor<Tee>,
    compression: Compression,
    level: Option<i32>,
) -> Result<LayerInfo> {
    let (digest, size) = compressor.finish().context("finishing compression")?.blob.commit(None)?;
    let converted =
        LayerInfo { digest, diff_id: layer.diff_id.clone(), size, media_type: compression.media_type().to_string() };
    store.record_layer_variant(&converted, compression, level)?;
    Ok(converted)
}

/// Writes to a store blob and, when there is one, to a copy.
struct Tee {
    blob: BlobWriter,
    copy: Option<File>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.blob.write_all(buf)?;
        if let Some(copy) = &mut self.copy {
            copy.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.blob.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recompressed_layers_keep_their_diff_id_and_are_reused() {
        let (dir, store) = store::testing::test_store();
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

    #[test]
    fn uncompressed_layers_recompress_to_the_same_tar() {
        let (dir, store) = store::testing::test_store();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        // More than one read buffer of content.
        std::fs::write(tree.join("f"), "0123456789abcdef".repeat(200_000)).unwrap();
        let plain = super::super::diff_to_layer(&store, &tree, Compression::Uncompressed).unwrap().unwrap();
        assert_eq!(plain.digest, plain.diff_id);
        let tar = store.read_blob(&plain.digest).unwrap();
        for compression in [Compression::Zstd, Compression::Gzip] {
            let converted = ensure_compression(&store, &plain, compression, Some(1)).unwrap();
            assert_eq!(converted.diff_id, plain.diff_id);
            let mut back = Vec::new();
            decompress(store.open_blob(&converted.digest).unwrap()).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == tar, "{compression:?}");
        }
    }

    #[test]
    fn a_wrong_diff_id_is_caught() {
        let (dir, store) = store::testing::test_store();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("f"), "hello").unwrap();
        let wrong = image_spec::Digest::of(b"not this tar");
        let gzip = super::super::diff_to_layer(&store, &tree, Compression::Gzip).unwrap().unwrap();
        let plain = super::super::diff_to_layer(&store, &tree, Compression::Uncompressed).unwrap().unwrap();
        // A compressed blob, or an uncompressed one said to be another diffID: hashed.
        for layer in [gzip, plain] {
            let lying = LayerInfo { diff_id: wrong.clone(), ..layer };
            let err = ensure_compression(&store, &lying, Compression::Zstd, None).unwrap_err();
            assert!(format!("{err:#}").contains(&format!("expected {wrong}")), "{err:#}");
            assert!(store.layer_variant(&wrong, Compression::Zstd, None).is_none());
        }
    }
}
