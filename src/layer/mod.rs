//! Layers: turning a snapshot directory into a compressed tar blob, and a blob back
//! into a snapshot directory. Unpacking foreign data is a security boundary.
//!
//! [`diff_to_layer`] streams an overlay upperdir through a deterministic tar writer
//! ([`tar_writer`]), a sha256 (the diffID) and a compressor ([`compress`]: the
//! caller, the compression workers and the blob writer each on a thread) into a store
//! blob, in bounded memory. A build's layers are uncompressed (compressed blobs are
//! made when an output needs them, see `export::lazy`) and kept as their snapshot
//! alone ([`diff_to_step_layer`], [`packed`]): the tar is hashed, not written, and made
//! again from the snapshot when something reads it. [`ensure_snapshots`] has the store do the reverse for
//! every missing layer of a stack, with [`Unpacker`] unpacking each blob and checking
//! the diffID of what it unpacked ([`unpack`]).

pub mod compress;
mod convert;
pub mod packed;
mod resume;
mod segment_check;
mod sha_pipe;
mod sha_resume;
mod tar_sink;
pub(crate) mod tar_walk;
pub mod tar_writer;
pub mod unpack;
mod userns;
mod verify;
mod zstd_par;

pub use convert::{compress_layer, ensure_compression, stored_compression};
pub use packed::{open_blob_or_layer, open_layer};
pub(crate) use userns::unmapped_owner;
pub use verify::verify_snapshot;

use anyhow::{Context as _, Result, bail};
use compress::{Compressor, decompress};
use image_spec::{Compression, LayerInfo};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use store::{HashReader, HashWriter};
use store::{LayerUnpacker, PackedLayer, Store};
use tar_writer::TarOptions;
use unpack::UnpackOptions;

/// How [`diff_to_layer_with`] writes a layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerOptions {
    pub compression: Compression,
    /// `compression-level=`: gzip 0-9, zstd 1-22; `None` for the default.
    pub level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`: clamp every timestamp to at most this (seconds since the
    /// epoch), so that two builds of the same files give the same digest.
    pub mtime_clamp: Option<i64>,
}

/// [`diff_to_layer_with`] in `compression`, without a clamp.
#[cfg(test)]
pub fn diff_to_layer(store: &Store, upperdir: &Path, compression: Compression) -> Result<Option<LayerInfo>> {
    diff_to_layer_with(store, upperdir, &LayerOptions { compression, ..Default::default() })
}

/// Tars an overlay upperdir (0/0 char devices → `.wh.NAME`, opaque dirs →
/// `.wh..wh..opq`) deterministically, compresses it, stores the blob. Returns `None`
/// when the directory holds no change at all.
pub fn diff_to_layer_with(store: &Store, upperdir: &Path, options: &LayerOptions) -> Result<Option<LayerInfo>> {
    let mut entries = std::fs::read_dir(upperdir).with_context(|| format!("reading {}", upperdir.display()))?;
    if entries.next().is_none() {
        return Ok(None);
    }
    let tar_options = TarOptions { overlay: true, mtime_clamp: options.mtime_clamp };
    dir_to_layer(store, upperdir, options, &tar_options).map(Some)
}

/// A step's new layer, before its snapshot is committed ([`commit_step_layer`]).
#[derive(Debug, Clone)]
pub struct StepLayer {
    pub layer: LayerInfo,
    /// How its tar was made, when it is kept packed in its snapshot (only hashed);
    /// `None` when it was written as a blob (a compressed layer).
    packed: Option<TarOptions>,
    /// Where a next layer's hash may resume ([`resume`]), and the checks its readers
    /// verify the tar by ([`segment_check`]).
    recorded: resume::Recorded,
}

/// A step's upperdir as a new layer (`None`: no change at all). An uncompressed
/// layer (a build's, unless an output wants compressed layers made by the steps) is
/// only hashed: the snapshot is its blob ([`packed`]). Otherwise as
/// [`diff_to_layer_with`].
pub fn diff_to_step_layer(store: &Store, upperdir: &Path, options: &LayerOptions) -> Result<Option<StepLayer>> {
    diff_to_step_layer_after(store, upperdir, options, None)
}

/// [`diff_to_step_layer`] for a step whose `previous` result (a packed layer whose
/// snapshot the new one shares files with: the same COPY before) may let the new
/// layer's hash resume where the two tars part ([`resume`]).
pub fn diff_to_step_layer_after(
    store: &Store,
    upperdir: &Path,
    options: &LayerOptions,
    previous: Option<&PackedLayer>,
) -> Result<Option<StepLayer>> {
    if options.compression != Compression::Uncompressed {
        let layer = diff_to_layer_with(store, upperdir, options)?;
        let recorded = resume::Recorded { checkpoints: Vec::new(), last_check: None };
        return Ok(layer.map(|layer| StepLayer { layer, packed: None, recorded }));
    }
    let mut entries = std::fs::read_dir(upperdir).with_context(|| format!("reading {}", upperdir.display()))?;
    if entries.next().is_none() {
        return Ok(None);
    }
    let tar_options = TarOptions { overlay: true, mtime_clamp: options.mtime_clamp };
    let started = std::time::Instant::now();
    // Checkpoints of a layer made with other tar options describe another tar.
    let checkpoints: Vec<resume::Checkpoint> = previous
        .filter(|p| p.mtime_clamp == options.mtime_clamp)
        .and_then(|p| p.resume.as_ref())
        .and_then(resume::Recorded::from_value)
        .map(|r| r.checkpoints)
        .unwrap_or_default();
    let hashed = resume::hash_tar_resuming(upperdir, &tar_options, &checkpoints)?;
    let (diff_id, size) = (hashed.digest, hashed.size);
    tracing::debug!(
        "layer {diff_id}: {size} bytes of tar hashed in {:?}, resumed at {}",
        started.elapsed(),
        hashed.resumed_at
    );
    let media_type = Compression::Uncompressed.media_type().to_string();
    let layer = LayerInfo { digest: diff_id.clone(), diff_id, size, media_type };
    Ok(Some(StepLayer { layer, packed: Some(tar_options), recorded: hashed.recorded }))
}

/// Commits `upperdir` as snapshot `chain_id` of a step's new layer and, for a packed
/// layer, records the snapshot as the way to its blob (after the snapshot: a record
/// never names a missing one).
pub fn commit_step_layer(
    store: &Store,
    upperdir: PathBuf,
    chain_id: &image_spec::Digest,
    step: &StepLayer,
) -> Result<()> {
    let layer = &step.layer;
    let Some(tar_options) = step.packed.filter(|_| !store.has_blob(&layer.digest)) else {
        store.commit_snapshot(upperdir, chain_id)?;
        return Ok(());
    };
    if store.has_snapshot(chain_id) {
        // Made before (by a build whose layer blob has gone since, or unpacked from a
        // blob): that directory is not known to give this very tar, so the blob is
        // written from this one, which gave it.
        let blob = store.blob_writer()?;
        let blob = tar_writer::write_tar(&upperdir, blob, &tar_options)
            .with_context(|| format!("archiving {}", upperdir.display()))?;
        blob.commit_sized(&layer.diff_id, layer.size).with_context(|| format!("layer {}", layer.diff_id))?;
        store.commit_snapshot(upperdir, chain_id)?;
        return Ok(());
    }
    store.commit_snapshot(upperdir, chain_id)?;
    let packed = PackedLayer {
        diff_id: layer.diff_id.clone(),
        snapshot: chain_id.clone(),
        size: layer.size,
        mtime_clamp: tar_options.mtime_clamp,
        resume: Some(serde_json::to_value(&step.recorded).expect("checkpoints serialize")),
    };
    store.record_packed_layer(&packed).with_context(|| format!("recording layer {}", layer.diff_id))?;
    Ok(())
}

/// Tars any directory into a layer blob (`overlay` in `tar_options` says whether to
/// convert overlay whiteouts), compressed as `options` say, and records the blob as
/// the layer's variant in that compression so exports reuse it.
pub fn dir_to_layer(store: &Store, dir: &Path, options: &LayerOptions, tar_options: &TarOptions) -> Result<LayerInfo> {
    let blob = store.blob_writer()?;
    if options.compression == Compression::Uncompressed {
        // The blob is the tar: the digest the blob writer computes as it writes (on
        // the writing thread) is the diffID, so the tar is hashed once.
        let plain = Compressor::with_level(Compression::Uncompressed, None, blob).context("starting the blob")?;
        let plain =
            tar_writer::write_tar(dir, plain, tar_options).with_context(|| format!("archiving {}", dir.display()))?;
        let (digest, size) = plain.finish().context("finishing the blob")?.commit(None)?;
        let media_type = Compression::Uncompressed.media_type().to_string();
        let layer = LayerInfo { digest: digest.clone(), diff_id: digest, size, media_type };
        store.record_layer_variant(&layer, Compression::Uncompressed, None)?;
        return Ok(layer);
    }
    let compressor =
        Compressor::with_level(options.compression, options.level, blob).context("starting compression")?;
    let hashing = HashWriter::new(compressor);
    let hashing =
        tar_writer::write_tar(dir, hashing, tar_options).with_context(|| format!("archiving {}", dir.display()))?;
    let (compressor, diff_id, _) = hashing.finish();
    let blob = compressor.finish().context("finishing compression")?;
    let (digest, size) = blob.commit(None)?;
    let layer = LayerInfo { digest, diff_id, size, media_type: options.compression.media_type().to_string() };
    store.record_layer_variant(&layer, options.compression, options.level)?;
    Ok(layer)
}

/// The layer formats the store unpacks snapshots with.
pub struct Unpacker;

impl LayerUnpacker for Unpacker {
    fn unpack(&self, store: &Store, layer: &LayerInfo, dir: &Path) -> Result<(), store::BoxError> {
        Ok(unpack_layer(store, layer, dir)?)
    }

    fn compare(&self, store: &Store, layer: &LayerInfo, dir: &Path) -> Result<Vec<String>, store::BoxError> {
        Ok(verify_snapshot(store, layer, dir)?)
    }

    fn packed_digest(&self, store: &Store, packed: &PackedLayer) -> Result<image_spec::Digest, store::BoxError> {
        Ok(packed::packed_digest(store, packed)?)
    }
}

/// Makes sure every layer of a stack has its snapshot and returns the snapshot
/// directories, bottom layer first (see [`Store::ensure_snapshots`]).
pub fn ensure_snapshots(store: &Store, layers: &[LayerInfo]) -> Result<Vec<PathBuf>> {
    Ok(store.ensure_snapshots(layers, &Unpacker)?)
}

/// Unpacks the blob of `layer` into `dir` in overlay format and checks its diffID.
pub fn unpack_layer(store: &Store, layer: &LayerInfo, dir: &Path) -> Result<()> {
    let blob = open_layer(store, layer).with_context(|| format!("layer {}", layer.digest))?;
    let reader = decompress(BufReader::new(blob)).with_context(|| format!("layer {}", layer.digest))?;
    let mut hashing = HashReader::new(reader);
    unpack::unpack(&mut hashing, dir, UnpackOptions { overlay: true, follow_symlinks: false })
        .with_context(|| format!("unpacking layer {}", layer.digest))?;
    let (found, _) = hashing.finish().with_context(|| format!("reading layer {}", layer.digest))?;
    if found != layer.diff_id {
        bail!("layer {}: its content has diff id {found}, expected {}", layer.digest, layer.diff_id);
    }
    Ok(())
}

/// Unpacks a tar (plain, gzip or zstd) into `dir` as files, without whiteout
/// conversion: `ADD archive.tar /dest`. Symlinks already in `dir` (merged `/usr`)
/// are followed, but only ever inside `dir`. (Tests use it; ADD has its own in ops.)
#[cfg(test)]
pub fn unpack_tar_to_dir(reader: impl std::io::Read, dir: &Path) -> Result<()> {
    let reader = decompress(reader).context("reading archive")?;
    unpack::unpack(reader, dir, UnpackOptions { overlay: false, follow_symlinks: true })
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
