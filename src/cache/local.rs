//! A cache in a local directory: an OCI layout (`oci-layout`, `index.json`,
//! `blobs/sha256/`) holding one cache manifest (see [`super::format`]).
//!
//! Export writes only the blobs the directory lacks, each through a temp file and a
//! rename, and `index.json` last, so a reader sees the old cache or the new one.

use super::format::{CacheConfig, check_manifest};
use anyhow::{Context as _, Result, bail};
use image_spec::{Descriptor, Digest, Index, LayerInfo, Manifest};
use image_spec::{MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use store::{BlobSource, Store};

/// What an export wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// Blobs that were not there yet (layers, config, manifest).
    pub blobs: usize,
    pub bytes: u64,
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

/// Writes `data` to `path` through a temp file beside it and a rename.
fn write_atomic(path: &Path, data: &mut dyn std::io::Read) -> Result<u64> {
    let parent = path.parent().expect("paths in the layout have a parent");
    let mut temp = tempfile::Builder::new()
        .permissions(crate::archive::user_file_mode())
        .tempfile_in(parent)
        .with_context(|| format!("creating a file in {}", parent.display()))?;
    let size = std::io::copy(data, &mut temp).with_context(|| format!("writing {}", path.display()))?;
    store::replace_written(temp, path, store::Durability::Synced)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(size)
}

/// Exports `config` and the blobs it names (read from `store`) into `dir`.
pub fn export(store: &Store, dir: &Path, config: &CacheConfig) -> Result<Written> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let layout = dir.join("oci-layout");
    if !layout.is_file() {
        write_atomic(&layout, &mut &br#"{"imageLayoutVersion":"1.0.0"}"#[..])?;
    }
    let mut written = Written::default();
    let mut put = |digest: &Digest, data: &mut dyn std::io::Read| -> Result<()> {
        let path = blob_path(dir, digest);
        if !path.is_file() {
            written.bytes += write_atomic(&path, data)?;
            written.blobs += 1;
        }
        Ok(())
    };
    for layer in config.blobs() {
        if !blob_path(dir, &layer.digest).is_file() {
            put(&layer.digest, &mut crate::layer::open_layer(store, &layer)?)?;
        }
    }
    let config_bytes = config.to_bytes();
    let manifest = config.manifest(&config_bytes);
    put(&manifest.config.digest, &mut &config_bytes[..])?;
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = Digest::of(&manifest_bytes);
    put(&manifest_digest, &mut &manifest_bytes[..])?;
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_INDEX.to_string()),
        manifests: vec![Descriptor {
            media_type: MEDIA_TYPE_OCI_MANIFEST.to_string(),
            digest: manifest_digest,
            size: manifest_bytes.len() as u64,
            annotations: Some(BTreeMap::from([(
                "org.opencontainers.image.ref.name".to_string(),
                "latest".to_string(),
            )])),
            platform: None,
        }],
        annotations: None,
    };
    let index_bytes = serde_json::to_vec(&index)?;
    let index_path = dir.join("index.json");
    if fs::read(&index_path).ok().as_deref() != Some(&index_bytes[..]) {
        write_atomic(&index_path, &mut &index_bytes[..])?;
    }
    Ok(written)
}

/// Reads a small blob of the layout and checks its digest.
fn read_blob(dir: &Path, digest: &Digest) -> Result<Vec<u8>> {
    let path = blob_path(dir, digest);
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let found = Digest::of(&bytes);
    if found != *digest {
        bail!("{} is corrupt: its content hashes to {found}", path.display());
    }
    Ok(bytes)
}

/// Reads the cache config of the layout in `dir`.
pub fn import(dir: &Path) -> Result<CacheConfig> {
    let index_path = dir.join("index.json");
    let index: Index =
        serde_json::from_slice(&fs::read(&index_path).with_context(|| format!("reading {}", index_path.display()))?)
            .with_context(|| format!("parsing {}", index_path.display()))?;
    let descriptor = index
        .manifests
        .iter()
        .find(|d| d.media_type == MEDIA_TYPE_OCI_MANIFEST)
        .with_context(|| format!("{} lists no image manifest", index_path.display()))?;
    let manifest: Manifest =
        serde_json::from_slice(&read_blob(dir, &descriptor.digest)?).context("parsing the cache manifest")?;
    check_manifest(&manifest)?;
    CacheConfig::parse(&read_blob(dir, &manifest.config.digest)?)
}

/// Layer blobs of a local cache, copied into the store when a hit needs them.
pub struct LocalBlobs {
    pub dir: PathBuf,
}

impl BlobSource for LocalBlobs {
    fn name(&self) -> String {
        format!("type=local,src={}", self.dir.display())
    }

    fn fetch(&self, store: &Store, layer: &LayerInfo) -> Result<(), store::BoxError> {
        let path = blob_path(&self.dir, &layer.digest);
        let fetch = || -> Result<()> {
            let mut file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            store.write_blob(&mut file, Some(&layer.digest)).with_context(|| format!("copying {}", path.display()))?;
            Ok(())
        };
        Ok(fetch()?)
    }
}
