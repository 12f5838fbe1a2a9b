//! Caches in a registry: `type=registry,ref=REF` pushes the cache manifest of
//! [`super::format`] (a plain OCI manifest) and its blobs to a repository, and
//! `--cache-from` reads it back, or reads the inline cache (`type=inline`) that an
//! image pushed with `--cache-to type=inline` carries in its config.
//!
//! Export sends only what the repository lacks: blobs known to be there (they came
//! from an import of the same repository) cost no request, the others a HEAD, and
//! only missing ones are uploaded (or mounted from another repository of the same
//! registry), a few at once. An unchanged build's export uploads nothing and puts an
//! identical manifest. Import is lazy: the manifest and the config are fetched; a
//! layer is fetched when something reads it (see [`store::BlobSource`]).

use super::format::{CONFIG_MEDIA_TYPE, CacheConfig};
use super::import::ImportedCache;
use crate::transfer::StoreContent;
use anyhow::{Context as _, Result, anyhow, bail};
use image_spec::{Digest, Index, LayerInfo, Manifest, Reference};
use image_spec::{
    MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_MANIFEST, is_index_type, is_manifest_type,
};
use registry::{PushStats, RegistryOptions, Repository, Transfer};
use std::collections::HashSet;
use std::sync::Arc;
use store::{BlobSource, Store};

/// The key of the image config under which `type=inline` puts its cache.
pub const INLINE_KEY: &str = "builder.cache.v1";

/// Cache configs (and image configs carrying one) larger than this are refused.
const MAX_CONFIG: u64 = 64 << 20;

/// Where an import's blobs are: `registry/repository`, to know what an export to the
/// same repository need not send.
pub fn origin(reference: &Reference) -> String {
    format!("{}/{}", reference.registry, reference.repository)
}

pub fn parse_reference(text: &str) -> Result<Reference> {
    Reference::parse(text).map_err(|e| anyhow!("invalid cache reference {text:?}: {e}"))
}

/// Layer blobs of a registry cache, fetched when the store needs them.
struct RegistryBlobs {
    repo: Repository,
    name: String,
}

impl BlobSource for RegistryBlobs {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn fetch(&self, store: &Store, layer: &LayerInfo) -> Result<(), store::BoxError> {
        // Fetched while a step runs: nothing of it is shown but in debug logs.
        let progress = |transfer: Transfer<'_>| {
            if let Transfer::Line(line) = transfer {
                tracing::debug!("{line}")
            }
        };
        Ok(self.repo.fetch_blob(&StoreContent(store), &layer.descriptor(), &progress)?)
    }
}

/// Reads the cache at `reference`: a cache manifest, or an image with an inline
/// cache. `None` when the repository has nothing under that reference yet.
pub fn import(
    store: &Store,
    name: &str,
    reference: &Reference,
    platform: &image_spec::Platform,
    opts: &RegistryOptions,
) -> Result<Option<ImportedCache>> {
    let repo = Repository::open(reference, opts)?;
    let Some(mut fetched) = repo.manifest()? else { return Ok(None) };
    if is_index_type(&fetched.media_type) {
        let index: Index = serde_json::from_slice(&fetched.bytes).context("parsing the index")?;
        // An index is a multi-platform image with an inline cache: take ours.
        let chosen = registry::select_platform(&index, platform)
            .ok_or_else(|| anyhow!("the index at {reference} has no image for {platform}"))?;
        fetched = repo.manifest_by_digest(&chosen.digest.clone())?;
    }
    if !is_manifest_type(&fetched.media_type) {
        bail!("{reference} is a {}, not a manifest", fetched.media_type);
    }
    let manifest: Manifest = serde_json::from_slice(&fetched.bytes).context("parsing the manifest")?;
    let config_type = manifest.config.media_type.as_str();
    let config = if config_type == CONFIG_MEDIA_TYPE {
        CacheConfig::parse(&repo.blob_bytes(&manifest.config, MAX_CONFIG)?)?
    } else if config_type == MEDIA_TYPE_OCI_CONFIG || config_type == MEDIA_TYPE_DOCKER_CONFIG {
        let image: serde_json::Value = serde_json::from_slice(&repo.blob_bytes(&manifest.config, MAX_CONFIG)?)
            .context("parsing the image config")?;
        let inline = image.get(INLINE_KEY).ok_or_else(|| {
            anyhow!("the image {reference} carries no inline cache (build it with --cache-to type=inline)")
        })?;
        let config = CacheConfig::parse(inline.to_string().as_bytes())?;
        // Its records may only name the image's own layers.
        let layers: HashSet<&Digest> = manifest.layers.iter().map(|l| &l.digest).collect();
        if let Some(blob) = config.blobs().iter().find(|b| !layers.contains(&b.digest)) {
            bail!("the inline cache of {reference} names blob {}, which is not one of its layers", blob.digest);
        }
        config
    } else {
        bail!("{reference} is neither a build cache nor an image (its config has media type {config_type:?})");
    };
    let digests: Vec<Digest> = config.blobs().into_iter().map(|b| b.digest).collect();
    repo.remember(&StoreContent(store), &digests);
    let mut import = ImportedCache::new(name.to_string(), config, Arc::new(RegistryBlobs { repo, name: name.into() }));
    import.origin = Some(origin(reference));
    Ok(Some(import))
}

/// Pushes `config` and its blobs as the cache manifest under `reference`, telling
/// `progress` how it goes. Blobs in `known` are taken to be in the repository
/// already; should the registry refuse the manifest for a missing blob, the push is
/// retried checking every blob.
pub fn export(
    store: &Store,
    reference: &Reference,
    config: &CacheConfig,
    known: &HashSet<Digest>,
    opts: &RegistryOptions,
    progress: &dyn Fn(Transfer<'_>),
) -> Result<(Digest, PushStats)> {
    let repo = Repository::open(reference, opts)?;
    let config_bytes = config.to_bytes();
    store.write_blob_bytes(&config_bytes).context("storing the cache config")?;
    let manifest = config.manifest(&config_bytes);
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let mut blobs = manifest.layers.clone();
    blobs.push(manifest.config.clone());
    let mut stats = repo.push_blobs(&StoreContent(store), &blobs, known, progress)?;
    progress(Transfer::Manifest(&Digest::of(&manifest_bytes)));
    let digest = match repo.put_manifest(manifest_bytes.clone(), MEDIA_TYPE_OCI_MANIFEST) {
        Ok(digest) => digest,
        Err(e) if !known.is_empty() => {
            let line = format!("{:#}; pushing again, checking every blob", anyhow::Error::new(e));
            progress(Transfer::Line(&line));
            let again = repo.push_blobs(&StoreContent(store), &blobs, &HashSet::new(), progress)?;
            stats = PushStats { known: 0, ..again };
            repo.put_manifest(manifest_bytes, MEDIA_TYPE_OCI_MANIFEST)?
        }
        Err(e) => return Err(e.into()),
    };
    Ok((digest, stats))
}
