//! The local store: content-addressed blobs, unpacked snapshots, image refs, volumes.
//!
//! Layout under the root (see DESIGN.md): `blobs/sha256/<hex>`, `snapshots/<chainID>/`,
//! `refs.json` (or `refs/`), `cache/`, `volumes/<name>/`, `containers/<id>/`, `tmp/`.
//! Every write goes to a temp path on the same filesystem and is renamed into place,
//! so nothing half-written is ever visible under its final name.

use crate::image::{Digest, Image, ImageConfig, LayerInfo};
use anyhow::Result;
use std::io::Read;
use std::path::{Path, PathBuf};

pub struct Store {
    root: PathBuf,
}

/// A directory under the store's `tmp/` that is removed when dropped unless kept.
pub struct TempDir {
    path: Option<PathBuf>,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("temp dir already taken")
    }

    /// Hands the directory over; it is no longer removed on drop.
    pub fn keep(mut self) -> PathBuf {
        self.path.take().expect("temp dir already taken")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

impl Store {
    /// `/var/lib/builder` as root, else `$XDG_DATA_HOME/builder`.
    pub fn default_root() -> PathBuf {
        todo_store()
    }

    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        let _ = root;
        todo_store()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh directory under `tmp/`, on the store's filesystem.
    pub fn temp_dir(&self, prefix: &str) -> Result<TempDir> {
        let _ = prefix;
        todo_store()
    }

    // --- blobs ---

    /// Streams `reader` into a blob, hashing as it writes; verifies `expected` when
    /// given. Returns the digest and size.
    pub fn write_blob(&self, reader: &mut dyn Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let _ = (reader, expected);
        todo_store()
    }

    pub fn write_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let _ = bytes;
        todo_store()
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        let _ = digest;
        todo_store()
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let _ = digest;
        todo_store()
    }

    // --- snapshots ---

    pub fn snapshot_path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("snapshots").join(chain_id.hex())
    }

    /// Moves a finished directory (overlay format: whiteouts as 0/0 char devices,
    /// opaque dirs by xattr) into place as the snapshot of `chain_id`. If the
    /// snapshot already exists the directory is discarded.
    pub fn commit_snapshot(&self, dir: PathBuf, chain_id: &Digest) -> Result<PathBuf> {
        let _ = (dir, chain_id);
        todo_store()
    }

    // --- images and refs ---

    /// Writes config and manifest blobs for an image made of `layers` and returns it.
    pub fn write_image(&self, config: &ImageConfig, layers: &[LayerInfo]) -> Result<Image> {
        let _ = (config, layers);
        todo_store()
    }

    /// Loads an image by name (`busybox`, `app:1`), by manifest digest, or by a unique
    /// prefix of its id (config digest) as `docker` accepts.
    pub fn load_image(&self, name_or_id: &str) -> Result<Image> {
        let _ = name_or_id;
        todo_store()
    }

    /// Points `name` (normalised, e.g. `docker.io/library/app:latest`) at a manifest.
    pub fn set_ref(&self, name: &str, manifest: &Digest) -> Result<()> {
        let _ = (name, manifest);
        todo_store()
    }

    /// All refs, sorted by name.
    pub fn refs(&self) -> Result<Vec<(String, Digest)>> {
        todo_store()
    }
}

fn todo_store() -> ! {
    panic!("store not built yet")
}
