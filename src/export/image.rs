//! `type=image` (the default) and `type=registry`: the image goes into the store under
//! its names, and to their registries with `push=true`. Its step of the progress
//! display shows the parts BuildKit shows: `exporting layers`, `writing image
//! DIGEST`, `naming to NAME`, `pushing layers` (with each blob's bytes) and
//! `pushing manifest for NAME@DIGEST`.

use super::{BuildResult, OutputSpec};
use crate::layer::ensure_compression;
use crate::progress::Task;
use anyhow::{Context as _, Result, bail};
use image_spec::{Compression, Image, LayerInfo, MediaTypeFamily, Reference, compression_of};
use registry::{RegistryOptions, Transfer};
use store::{ImageFormat, Store};

/// Writes the image as `spec` wants it (compression, media types, annotations) into
/// the store's blobs, without naming it.
pub fn prepare(store: &Store, spec: &OutputSpec, result: &BuildResult) -> Result<Image> {
    // Nothing streams a layer here: every layer is compressed up front, several at once.
    super::lazy::precompress(store, &compression_work(spec, result))?;
    prepare_with(store, spec, result, &mut |layer, compression| match compression {
        None => Ok(layer.clone()),
        Some((compression, level)) => ensure_compression(store, layer, compression, level),
    })
}

/// A layer of an image being prepared and the compression (and level) it must be
/// given, `None` to keep it as it is; the layer in the image comes back.
pub type AddLayer<'a> = dyn FnMut(&LayerInfo, Option<(Compression, Option<i32>)>) -> Result<LayerInfo> + 'a;

/// [`prepare`], each layer in turn handed to `add` (an archive writing them as they
/// come, compressing those that need it as it writes them).
pub fn prepare_with(store: &Store, spec: &OutputSpec, result: &BuildResult, add: &mut AddLayer<'_>) -> Result<Image> {
    // The largest layer is left to `add`: an archive compresses it straight into its
    // output as it writes it, where compressed before it would be copied in after, one
    // more pass over its compressed bytes (a tenth of a 512 MB layer's zstd export).
    let mut work = compression_work(spec, result);
    if let Some(largest) = work.iter().enumerate().max_by_key(|(_, (layer, ..))| layer.size).map(|(i, _)| i) {
        work.remove(largest);
    }
    super::lazy::precompress(store, &work)?;
    let mut layers: Vec<LayerInfo> = Vec::with_capacity(result.layers.len());
    let wanted = result.layers.iter().enumerate().map(|(i, layer)| wanted_compression(spec, result, i, layer));
    for (layer, compression) in result.layers.iter().zip(wanted) {
        let layer = add(layer, compression).with_context(|| format!("compressing layer {}", layer.diff_id))?;
        layers.push(layer);
    }
    let mut config = result.config.clone();
    config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
    if config.rootfs.kind.is_empty() {
        config.rootfs.kind = "layers".into();
    }
    let config_bytes = serde_json::to_vec(&config).context("serializing image config")?;
    let media_types = if spec.oci_media_types { MediaTypeFamily::Oci } else { MediaTypeFamily::Docker };
    let format = ImageFormat { media_types, annotations: spec.annotations.clone() };
    Ok(store.write_image_in(&config_bytes, &layers, &format)?)
}

/// The layers of the result that must be compressed for `spec`, with the compression
/// and level each must be given.
fn compression_work(spec: &OutputSpec, result: &BuildResult) -> Vec<(LayerInfo, Compression, Option<i32>)> {
    let wanted = result.layers.iter().enumerate().map(|(i, layer)| wanted_compression(spec, result, i, layer));
    result.layers.iter().zip(wanted).filter_map(|(l, w)| w.map(|(c, level)| (l.clone(), c, level))).collect()
}

/// The compression (and level) layer `i` of the result must be given in `spec`'s
/// image, `None` to keep it as it is.
fn wanted_compression(
    spec: &OutputSpec,
    result: &BuildResult,
    i: usize,
    layer: &LayerInfo,
) -> Option<(Compression, Option<i32>)> {
    let current = compression_of(&layer.media_type);
    // Docker media types have no zstd: such a base layer must be recompressed.
    let representable = spec.oci_media_types || current != Some(Compression::Zstd);
    let keep = i < result.base_layers && !spec.force_compression && representable;
    // A store-only image holds the build's layers as uncompressed tars whether they
    // were made now or came from a cache (a record of an older store may be gzip):
    // the same inputs give the same image id.
    let wanted = if spec.keeps_layers() { (Compression::Uncompressed, None) } else { (spec.compression, spec.level) };
    (!keep).then_some(wanted)
}

/// An image name (`name=` of `-o`, or `-t`) that is not a reference: a usage error
/// (`builder::main`). `build::Request` checks `name=` before the build; `-t` is
/// checked by the command line's parser.
#[derive(Debug, thiserror::Error)]
#[error("invalid image name {name:?}: {reason}")]
pub struct InvalidName {
    pub name: String,
    pub reason: String,
}

/// The names an output uses: its own `name=`, else the build's `-t`.
pub fn names(spec: &OutputSpec, result: &BuildResult) -> Result<Vec<Reference>> {
    let names = if spec.names.is_empty() { &result.tags } else { &spec.names };
    names
        .iter()
        .map(|n| Reference::parse(n).map_err(|e| InvalidName { name: n.clone(), reason: e.to_string() }.into()))
        .collect()
}

pub fn export(store: &Store, spec: &OutputSpec, result: &BuildResult, task: &Task<'_>) -> Result<Image> {
    let names = names(spec, result)?;
    if spec.push && names.is_empty() {
        // `build::Request` refuses this before anything runs; here for other callers.
        bail!("pushing needs a name: add -t REGISTRY/REPOSITORY[:TAG] or name=");
    }
    task.part("exporting layers", false);
    let image = prepare(store, spec, result)?;
    task.part("exporting layers", true);
    task.part(&format!("writing image {}", image.manifest_digest), true);
    for name in &names {
        store.set_ref(&name.to_string(), &image.manifest_digest)?;
        task.part(&format!("naming to {}", name.familiar()), true);
    }
    if spec.push {
        for name in &names {
            push(store, &image, name, task).with_context(|| format!("pushing {}", name.familiar()))?;
        }
    }
    Ok(image)
}

/// Pushes `image` as `name`: `pushing layers` until the blobs are in, then
/// `pushing manifest for NAME@DIGEST`.
fn push(store: &Store, image: &Image, name: &Reference, task: &Task<'_>) -> Result<()> {
    let manifest = format!("pushing manifest for {}@{}", name.familiar(), image.manifest_digest);
    task.part("pushing layers", false);
    let progress = |transfer: Transfer<'_>| match transfer {
        Transfer::Manifest(_) => {
            task.part("pushing layers", true);
            task.part(&manifest, false);
        }
        other => task.transfer(other),
    };
    crate::transfer::push(store, image, name, &RegistryOptions::default(), &progress)?;
    task.part(&manifest, true);
    Ok(())
}
