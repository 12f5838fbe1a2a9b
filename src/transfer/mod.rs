//! Images between the store and registries: the `registry` client pulls into and
//! pushes from the store through [`StoreContent`], and `pull`/`push` add what the
//! store knows (an image already there by digest, the ref a pull points at the
//! manifest). `sources.rs` remembers which repositories a blob lives in, so that a
//! push to another repository of the same registry can mount it.

#[cfg(test)]
mod hostile_tests;
mod sources;
#[cfg(test)]
mod tests;

use anyhow::{Context as _, Result};
use image_spec::{Digest, Image, Platform, Reference};
use registry::{BoxError, Content, RegistryOptions, Transfer, UploadFrom};
use std::io::Read;
use store::Store;

/// The store as the registry client reads and writes it.
pub struct StoreContent<'a>(pub &'a Store);

impl Content for StoreContent<'_> {
    fn has_blob(&self, digest: &Digest) -> bool {
        // Found instead of downloaded: claimed, so that a prune running beside the
        // pull spares it until the pull's ref names it (an error: download it).
        self.0.claim_blob(digest).unwrap_or(false)
    }

    fn write_blob(&self, reader: &mut dyn Read, expected: &Digest) -> Result<u64, BoxError> {
        Ok(self.0.write_blob(reader, Some(expected))?.1)
    }

    fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, BoxError> {
        Ok(self.0.read_blob(digest)?)
    }

    fn blob_upload(&self, digest: &Digest) -> Result<(UploadFrom, u64), BoxError> {
        if !self.0.has_blob_file(digest)
            && let Some(packed) = self.0.packed_layer(digest)
        {
            // A layer kept as its snapshot (a cache export, a push of uncompressed
            // layers): its tar is made again as it is sent, never a second copy on disk.
            return Ok((UploadFrom::Made, packed.size));
        }
        let size = self.0.blob_size(digest)?;
        Ok((UploadFrom::File(self.0.blob_path(digest)), size))
    }

    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BoxError> {
        Ok(crate::layer::open_blob_or_layer(self.0, digest)?)
    }

    fn blob_sources(&self, digest: &Digest) -> Vec<String> {
        sources::of(self.0, digest)
    }

    fn add_blob_sources(&self, digests: &[Digest], name: &str) {
        if let Err(e) = sources::record(self.0, digests, name) {
            tracing::warn!("remembering blob sources: {e:#}");
        }
    }
}

/// Pulls `reference` for `platform` into the store, points the reference's name at
/// what the registry serves for it and returns the platform's image. A multi-platform
/// reference keeps its index under the name (as containerd does): only the wanted
/// platform's manifest, config and layers are fetched, and a pull for another
/// platform adds that platform's content beside them, under the same index.
pub fn pull(
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    opts: &RegistryOptions,
    progress: &dyn Fn(Transfer<'_>),
) -> Result<Image> {
    let name = reference.to_string();
    // A digest names content: when the store has that image (or an index holding
    // the platform's image), the network has nothing to add (an incomplete image
    // falls through to it).
    if let Some(digest) = &reference.digest
        && store.has_blob(digest)
        && let Some(image) = held_image(store, digest, platform)
    {
        progress(Transfer::Line(&format!("{reference}: already in the store")));
        store.set_ref(&name, digest).with_context(|| format!("tagging {name}"))?;
        return Ok(image);
    }
    let pulled = registry::pull(&StoreContent(store), reference, platform, opts, progress)?;
    // The name points at the image only once it reads whole (its config parses, its
    // diff ids are digests, one per layer): a bad image must not break every
    // command that lists the store's images.
    let image =
        store.image_from_manifest(&pulled.manifest).with_context(|| format!("reading the pulled image {name}"))?;
    let named = pulled.index.as_ref().unwrap_or(&pulled.manifest);
    store.set_ref(&name, named).with_context(|| format!("tagging {name}"))?;
    Ok(image)
}

/// The image `digest` has in the store for `platform`: the manifest itself, or the
/// entry of an index for it when the store holds that entry.
fn held_image(store: &Store, digest: &Digest, platform: &Platform) -> Option<Image> {
    match store.read_index(digest).ok()? {
        Some(_) => store.image_for_platform(digest, platform).ok(),
        None => store.image_from_manifest(digest).ok(),
    }
}

/// Pushes `image` from the store to `reference` and returns the manifest digest.
pub fn push(
    store: &Store,
    image: &Image,
    reference: &Reference,
    opts: &RegistryOptions,
    progress: &dyn Fn(Transfer<'_>),
) -> Result<Digest> {
    Ok(registry::push(&StoreContent(store), &image.manifest_digest, reference, opts, progress)?)
}
