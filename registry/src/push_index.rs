//! Pushing a multi-platform image: every manifest of the index (with its blobs) by
//! digest, then the index under the reference's tag — a registry refuses an index
//! whose manifests it does not have, and a reader of the tag must never see one.

use crate::content::Content;
use crate::error::{Error, Result};
use crate::pull::media_type_of;
use crate::push::put_manifest;
use crate::{RegistryOptions, Transfer, runtime};
use image_spec::{Digest, Index, Reference};

/// Pushes the index `index_digest` in `content`, and each image it lists, to
/// `reference`; returns the index digest.
pub fn push_index(
    content: &dyn Content,
    index_digest: &Digest,
    reference: &Reference,
    opts: &RegistryOptions,
    progress: &dyn Fn(Transfer<'_>),
) -> Result<Digest> {
    let bytes = content.read_blob(index_digest).map_err(|source| Error::Content {
        action: "reading index",
        digest: index_digest.clone(),
        source,
    })?;
    let unsupported = |reason: String| Error::Manifest { digest: index_digest.clone(), reason };
    let media_type = media_type_of(None, &bytes).map_err(|e| unsupported(e.to_string()))?;
    let index: Index = serde_json::from_slice(&bytes).map_err(|e| unsupported(e.to_string()))?;
    for entry in &index.manifests {
        let by_digest = Reference { tag: None, digest: Some(entry.digest.clone()), ..reference.clone() };
        crate::push(content, &entry.digest, &by_digest, opts, progress)?;
    }
    let target = match (&reference.tag, &reference.digest) {
        (Some(tag), _) => tag.clone(),
        (None, Some(digest)) => digest.to_string(),
        (None, None) => "latest".to_string(),
    };
    let client = crate::client::Client::new(&reference.registry, opts)?;
    progress(Transfer::Manifest(index_digest));
    runtime()?.block_on(put_manifest(&client, &reference.repository, &target, bytes, &media_type))
}
