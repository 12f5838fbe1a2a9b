//! Lazy compression: a build leaves its layers as uncompressed tars (their digest is
//! the diffID), and compressed blobs are made only when an output needs them. Every
//! layer is compressed at most once per (diffID, compression, level) — the blob is
//! remembered in the store's variant index — and several layers are compressed at
//! once, each compressor itself using every core.
//!
//! `builder push NAME` of an image the store holds with uncompressed layers pushes it
//! as `builder build --push` would have: those layers gzip-compressed, the manifest
//! rewritten in the same media type family with the same annotations, so the pushed
//! digest is the one a build that pushed directly gives.

use crate::layer::{ensure_compression, stored_compression};
use anyhow::{Context as _, Result};
use image_spec::{Compression, Digest, Image, LayerInfo, Manifest, MediaTypeFamily};
use image_spec::{MEDIA_TYPE_DOCKER_LAYER, MEDIA_TYPE_OCI_LAYER};
use std::sync::Mutex;
use store::{ImageFormat, IndexAnnotations, Store};

/// A layer that is a plain uncompressed tar (not a foreign one, whose blob is
/// elsewhere).
pub fn is_plain_tar(layer: &LayerInfo) -> bool {
    layer.media_type == MEDIA_TYPE_OCI_LAYER || layer.media_type == MEDIA_TYPE_DOCKER_LAYER
}

/// Makes the variants `wanted` asks for (a layer and the compression and level it
/// must have) that the store does not hold yet, several layers at once. Used before an
/// image is written when more than one layer needs compressing; a single layer is
/// left to the exporter, which may stream it into its output as it compresses it.
pub fn precompress(store: &Store, wanted: &[(LayerInfo, Compression, Option<i32>)]) -> Result<()> {
    let missing: Vec<_> =
        wanted.iter().filter(|(layer, c, level)| stored_compression(store, layer, *c, *level).is_none()).collect();
    if missing.len() < 2 {
        return Ok(());
    }
    // Each compressor runs on every core already; a few layers at once keep the
    // cores busy across the serial parts (reading, tar headers, small layers).
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4).min(missing.len());
    let queue = Mutex::new(missing.into_iter());
    let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).next();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while let Some((layer, compression, level)) = next() {
                        ensure_compression(store, layer, *compression, *level)
                            .with_context(|| format!("compressing layer {}", layer.diff_id))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// `image` as a registry gets it: when the store holds some of its layers as
/// uncompressed tars (a build's image), the same image with those layers
/// gzip-compressed, written beside it; else `image` itself.
pub fn for_push(store: &Store, image: &Image) -> Result<Image> {
    if !image.layers.iter().any(is_plain_tar) {
        return Ok(image.clone());
    }
    let bytes =
        store.read_blob(&image.manifest_digest).with_context(|| format!("manifest {}", image.manifest_digest))?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing manifest {}", image.manifest_digest))?;
    let media_types = manifest.media_type.as_deref().and_then(MediaTypeFamily::of).unwrap_or(MediaTypeFamily::Oci);
    let wanted: Vec<_> =
        image.layers.iter().filter(|l| is_plain_tar(l)).map(|l| (l.clone(), Compression::Gzip, None)).collect();
    precompress(store, &wanted)?;
    let layers = image
        .layers
        .iter()
        .map(|l| if is_plain_tar(l) { ensure_compression(store, l, Compression::Gzip, None) } else { Ok(l.clone()) })
        .collect::<Result<Vec<_>>>()?;
    let config = store.read_blob(&image.config_digest).with_context(|| format!("config {}", image.config_digest))?;
    let format = ImageFormat { media_types, annotations: manifest.annotations.unwrap_or_default() };
    Ok(store.write_image_in(&config, &layers, &format)?)
}

/// The index `digest` (a multi-platform image in the store) as a registry gets it:
/// each platform's image as [`for_push`] gives it, in a new index of the same family
/// when any of them changed; else `digest` itself.
pub fn index_for_push(store: &Store, digest: &Digest) -> Result<Digest> {
    let index = store.read_index(digest)?.with_context(|| format!("{digest} is not an index"))?;
    let family = index.media_type.as_deref().and_then(MediaTypeFamily::of).unwrap_or(MediaTypeFamily::Oci);
    let mut images = Vec::new();
    // A pulled index keeps the entries of platforms that were not pulled: the
    // registry gets an index of the images the store holds.
    let held = store.platforms_of(digest)?;
    let mut changed = held.len() != index.manifests.len();
    for (platform, manifest) in held {
        let image = store.image_from_manifest(&manifest)?;
        let pushed = for_push(store, &image)?;
        changed |= pushed.manifest_digest != image.manifest_digest;
        images.push((platform, pushed));
    }
    if !changed {
        return Ok(digest.clone());
    }
    // The build gives every entry the same descriptor annotations.
    let annotations = IndexAnnotations {
        index: index.annotations.clone().unwrap_or_default(),
        descriptors: index.manifests.first().and_then(|m| m.annotations.clone()).unwrap_or_default(),
    };
    Ok(store.write_index(&images, family, &annotations)?)
}
