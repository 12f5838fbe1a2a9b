//! Layers: turning a snapshot directory into a compressed tar blob, and a blob back
//! into a snapshot directory. Unpacking foreign data is a security boundary.
//!
//! [`diff_to_layer`] streams an overlay upperdir through a deterministic tar writer
//! ([`tar_writer`]), a sha256 (the diffID) and a compressor ([`compress`]: the
//! caller, the compression workers and the blob writer each on a thread) into a store
//! blob, in bounded memory; [`writeback`] keeps the fsync before the blob's rename
//! short. [`ensure_snapshots`] does the reverse for every missing layer of a stack,
//! checking the diffID of what it unpacked ([`unpack`]).

pub mod compress;
mod convert;
pub mod tar_writer;
pub mod unpack;
mod verify;
pub mod writeback;
mod zstd_par;

pub use convert::{compress_layer, ensure_compression, stored_compression};
pub use verify::verify_snapshot;

use crate::store::Store;
use anyhow::{Context as _, Result, bail};
use compress::{Compressor, HashReader, HashWriter, decompress};
use image_spec::chain_ids;
use image_spec::{Compression, Digest, LayerInfo};
use rayon::prelude::*;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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

/// Tars any directory into a layer blob (`overlay` in `tar_options` says whether to
/// convert overlay whiteouts), compressed as `options` say, and records the blob as
/// the layer's variant in that compression so exports reuse it.
pub fn dir_to_layer(store: &Store, dir: &Path, options: &LayerOptions, tar_options: &TarOptions) -> Result<LayerInfo> {
    let blob = store.blob_writer()?;
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

/// Makes sure every layer of a stack has its snapshot (unpacking blobs as needed) and
/// returns the snapshot directories, bottom layer first.
pub fn ensure_snapshots(store: &Store, layers: &[LayerInfo]) -> Result<Vec<PathBuf>> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chain = chain_ids(&diff_ids);
    // Each snapshot holds only its own layer, so missing ones unpack independently.
    let missing: Vec<(&LayerInfo, &Digest)> =
        layers.iter().zip(&chain).filter(|(_, chain_id)| !store.has_snapshot(chain_id)).collect();
    missing.par_iter().try_for_each(|(layer, chain_id)| {
        // A layer that also sits alone at the bottom of a stack (a `COPY --link` layer,
        // made on scratch) has that snapshot already: linked rather than unpacked.
        let alone = store.snapshot_path(&layer.diff_id);
        if **chain_id != layer.diff_id && alone.is_dir() {
            match link_snapshot(store, &alone, chain_id) {
                Ok(()) => return Ok(()),
                Err(e) => tracing::debug!("linking snapshot {} failed, unpacking: {e:#}", layer.diff_id),
            }
        }
        unpack_snapshot(store, layer, chain_id)
    })?;
    Ok(chain.iter().map(|c| store.snapshot_path(c)).collect())
}

/// Commits a copy of the snapshot `alone` as the snapshot of `chain_id`: the same
/// layer elsewhere in a stack has the same content, since a snapshot holds only its
/// own layer (whiteouts included). Files are hard-linked (snapshots are never written
/// to), directories made anew with their metadata.
fn link_snapshot(store: &Store, alone: &Path, chain_id: &Digest) -> Result<()> {
    let temp = store.temp_dir("link")?;
    let dir = temp.path().join("fs");
    std::fs::create_dir(&dir)?;
    link_tree(alone, &dir)?;
    copy_dir_metadata(alone, &dir)?;
    store.commit_snapshot(dir, chain_id)?;
    Ok(())
}

fn link_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            std::fs::create_dir(&target).with_context(|| format!("creating {}", target.display()))?;
            link_tree(&source, &target)?;
            copy_dir_metadata(&source, &target)?;
        } else {
            // Symlinks and whiteouts (0/0 char devices) too: link(2) never follows.
            std::fs::hard_link(&source, &target).with_context(|| format!("linking {}", source.display()))?;
        }
    }
    Ok(())
}

/// Owner, mode, xattrs (overlay's opaque marker among them) and times of a directory;
/// the times last, once its entries are made.
fn copy_dir_metadata(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(from)?;
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    for name in xattr::list(from)? {
        if let Some(value) = xattr::get(from, &name)? {
            xattr::set(to, &name, &value)?;
        }
    }
    let atime = filetime::FileTime::from_last_access_time(&meta);
    let mtime = filetime::FileTime::from_last_modification_time(&meta);
    filetime::set_file_times(to, atime, mtime)?;
    Ok(())
}

fn unpack_snapshot(store: &Store, layer: &LayerInfo, chain_id: &Digest) -> Result<()> {
    let temp = store.temp_dir("unpack")?;
    let dir = temp.path().join("fs");
    std::fs::create_dir(&dir)?;
    // The root of a lowerdir is the container's `/`.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    unpack_layer(store, layer, &dir)?;
    store.commit_snapshot(dir, chain_id)?;
    Ok(())
}

/// Unpacks the blob of `layer` into `dir` in overlay format and checks its diffID.
pub fn unpack_layer(store: &Store, layer: &LayerInfo, dir: &Path) -> Result<()> {
    let blob = store.open_blob(&layer.digest).with_context(|| format!("layer {}", layer.digest))?;
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
mod tests;
