//! Snapshots: layers unpacked on disk under `snapshots/<chainID>/`, usable as overlay
//! lowerdirs. The store owns them: where they live, how one is committed (atomically,
//! once), and how the missing ones of a stack are made. Unpacking a blob needs the
//! layer formats (tar, compression, whiteouts), which the store leaves to a
//! [`LayerUnpacker`].

use crate::Store;
use crate::error::{self, BoxError, Error, Result, io_at};
use image_spec::{Digest, LayerInfo, chain_ids};
use rayon::prelude::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What the store asks of whoever knows the layer formats (the builder's `layer`
/// module): the store knows blobs and directories, not tars.
pub trait LayerUnpacker: Sync {
    /// Unpacks the blob of `layer` into the empty directory `dir` in overlay format
    /// (whiteouts as 0/0 char devices, opaque directories by xattr) and checks that
    /// what it unpacked has the layer's diffID.
    fn unpack(&self, store: &Store, layer: &LayerInfo, dir: &Path) -> Result<(), BoxError>;

    /// Compares the snapshot `dir` with the blob of `layer` (`fsck --snapshots`):
    /// what differs, empty when the snapshot is whole.
    fn compare(&self, store: &Store, layer: &LayerInfo, dir: &Path) -> Result<Vec<String>, BoxError>;

    /// The digest of the tar a packed layer's snapshot gives now (`fsck` re-hashes
    /// packed layers as it re-hashes blob files).
    fn packed_digest(&self, store: &Store, packed: &crate::PackedLayer) -> Result<Digest, BoxError>;
}

impl Store {
    pub fn snapshot_path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("snapshots").join(chain_id.hex())
    }

    pub fn has_snapshot(&self, chain_id: &Digest) -> bool {
        self.snapshot_path(chain_id).is_dir()
    }

    /// Moves a finished directory (overlay format: whiteouts as 0/0 char devices,
    /// opaque dirs by xattr) into place as the snapshot of `chain_id`. If the
    /// snapshot already exists the directory is discarded.
    pub fn commit_snapshot(&self, dir: PathBuf, chain_id: &Digest) -> Result<PathBuf> {
        let target = self.snapshot_path(chain_id);
        if target.exists() {
            crate::remove_tree(&dir).map_err(io_at("discarding", &dir))?;
            return Ok(target);
        }
        match std::fs::rename(&dir, &target) {
            Ok(()) => {
                crate::sync_dir(&self.root.join("snapshots"));
                Ok(target)
            }
            // Another process committed the same snapshot first.
            Err(e) if target.exists() && matches!(e.raw_os_error(), Some(39 | 17)) => {
                crate::remove_tree(&dir).map_err(io_at("discarding", &dir))?;
                Ok(target)
            }
            Err(source) => Err(Error::Move { from: dir, to: target, source }),
        }
    }

    /// Makes sure every layer of a stack has its snapshot (linking or unpacking as
    /// needed) and returns the snapshot directories, bottom layer first.
    pub fn ensure_snapshots(&self, layers: &[LayerInfo], unpacker: &dyn LayerUnpacker) -> Result<Vec<PathBuf>> {
        let store = self;
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let chain = chain_ids(&diff_ids);
        // Each snapshot holds only its own layer, so missing ones unpack independently.
        let missing: Vec<(&LayerInfo, &Digest)> =
            layers.iter().zip(&chain).filter(|(_, chain_id)| !store.has_snapshot(chain_id)).collect();
        missing.par_iter().try_for_each(|(layer, chain_id)| {
            // A layer that also sits alone at the bottom of a stack (a `COPY --link` layer,
            // made on scratch) has that snapshot already: linked rather than unpacked.
            // So does a layer a step made and keeps packed in its snapshot.
            let alone = match store.packed_layer(&layer.digest) {
                Some(packed) if !store.has_blob_file(&layer.digest) => store.snapshot_path(&packed.snapshot),
                _ => store.snapshot_path(&layer.diff_id),
            };
            if store.snapshot_path(chain_id) != alone && alone.is_dir() {
                match link_snapshot(store, &alone, chain_id) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        tracing::debug!("linking snapshot {} failed, unpacking: {}", layer.diff_id, error::chain(&e))
                    }
                }
            }
            unpack_snapshot(store, unpacker, layer, chain_id)
        })?;
        Ok(chain.iter().map(|c| store.snapshot_path(c)).collect())
    }
}

/// Commits a copy of the snapshot `alone` as the snapshot of `chain_id`: the same
/// layer elsewhere in a stack has the same content, since a snapshot holds only its
/// own layer (whiteouts included). Files are hard-linked (snapshots are never written
/// to), directories made anew with their metadata.
fn link_snapshot(store: &Store, alone: &Path, chain_id: &Digest) -> Result<()> {
    let temp = store.temp_dir("link")?;
    let dir = temp.path().join("fs");
    std::fs::create_dir(&dir).map_err(io_at("creating", &dir))?;
    link_tree(alone, &dir)?;
    copy_dir_metadata(alone, &dir)?;
    store.commit_snapshot(dir, chain_id)?;
    Ok(())
}

fn link_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).map_err(io_at("reading", from))? {
        let entry = entry.map_err(io_at("reading", from))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(io_at("reading", &source))?.is_dir() {
            std::fs::create_dir(&target).map_err(io_at("creating", &target))?;
            link_tree(&source, &target)?;
            copy_dir_metadata(&source, &target)?;
        } else {
            // Symlinks and whiteouts (0/0 char devices) too: link(2) never follows.
            std::fs::hard_link(&source, &target).map_err(io_at("linking", &source))?;
        }
    }
    Ok(())
}

/// Owner, mode, xattrs (overlay's opaque marker among them) and times of a directory;
/// the times last, once its entries are made.
fn copy_dir_metadata(from: &Path, to: &Path) -> Result<()> {
    copy_metadata(from, to).map_err(io_at("copying metadata to", to))
}

fn copy_metadata(from: &Path, to: &Path) -> std::io::Result<()> {
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

fn unpack_snapshot(store: &Store, unpacker: &dyn LayerUnpacker, layer: &LayerInfo, chain_id: &Digest) -> Result<()> {
    let temp = store.temp_dir("unpack")?;
    let dir = temp.path().join("fs");
    std::fs::create_dir(&dir).map_err(io_at("creating", &dir))?;
    // The root of a lowerdir is the container's `/`.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(io_at("creating", &dir))?;
    unpacker.unpack(store, layer, &dir).map_err(|source| Error::Unpack { chain_id: chain_id.clone(), source })?;
    store.commit_snapshot(dir, chain_id)?;
    Ok(())
}
