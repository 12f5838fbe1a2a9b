//! The store's errors: each names the path, digest or image it is about.

use image_spec::{Digest, ReferenceError};
use std::io;
use std::path::{Path, PathBuf};

/// An error of a caller-supplied part (a [`crate::Holder`], a [`crate::LayerUnpacker`],
/// a [`crate::BlobSource`]), kept with its chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("moving {} to {}", from.display(), to.display())]
    Move {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("digest mismatch: expected {expected}, got {found} ({size} bytes)")]
    DigestMismatch { expected: Digest, found: Digest, size: u64 },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {found}")]
    SizeMismatch { digest: Digest, expected: u64, found: u64 },
    #[error("blob {digest} is not in the store")]
    MissingBlob {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} is corrupt: its content hashes to {found}")]
    CorruptBlob { digest: Digest, found: Digest },
    #[error("image {digest} was removed by a prune before this process could hold it")]
    Removed { digest: Digest },
    #[error("lease {}: unreadable line {line:?}", path.display())]
    Lease { path: PathBuf, line: String },
    #[error("{what} {digest} is {size} bytes, more than the {max} allowed")]
    TooLarge { what: &'static str, digest: Digest, size: u64, max: u64 },
    #[error("fetching blob {digest} from {from}")]
    Fetch {
        digest: Digest,
        from: String,
        #[source]
        source: BoxError,
    },
    #[error("no such image: {name}")]
    NoSuchImage {
        name: String,
        #[source]
        source: Option<Box<Error>>,
    },
    #[error("image {image} has no image for platform {wanted} (it has: {})", available.join(", "))]
    NoPlatform { image: String, wanted: String, available: Vec<String> },
    #[error("image id prefix {prefix} is ambiguous: {count} images match")]
    AmbiguousId { prefix: String, count: usize },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("parsing {what}")]
    Parse {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported manifest schema version {version}")]
    SchemaVersion { version: u32 },
    #[error("not an image manifest: media type {media_type}")]
    NotManifest { media_type: String },
    #[error("manifest {digest}")]
    Manifest {
        digest: Digest,
        #[source]
        source: Box<Error>,
    },
    #[error("config {digest}")]
    Config {
        digest: Digest,
        #[source]
        source: Box<Error>,
    },
    #[error("image config lists {diff_ids} diff ids that do not match its {layers} layers")]
    ConfigLayers { diff_ids: usize, layers: usize },
    #[error("image config diff ids do not match the {layers} layers given")]
    DiffIds { layers: usize },
    #[error("image {manifest}: manifest has {layers} layers but its config {diff_ids} diff ids")]
    ManifestLayers { manifest: Digest, layers: usize, diff_ids: usize },
    #[error("layer {layer} of manifest {manifest} is missing")]
    MissingLayer { layer: Digest, manifest: Digest },
    #[error("manifest annotations need OCI media types")]
    DockerAnnotations,
    #[error(transparent)]
    LayerMediaType(#[from] image_spec::UnrepresentableLayer),
    #[error("making snapshot {chain_id}")]
    Unpack {
        chain_id: Digest,
        #[source]
        source: BoxError,
    },
    #[error("checking snapshot {chain_id}")]
    Compare {
        chain_id: String,
        #[source]
        source: BoxError,
    },
    #[error("blob {digest} is kept as snapshot {snapshot}, not as a file: it is read as a layer")]
    Packed { digest: Digest, snapshot: Digest },
    #[error("asking what holds store content")]
    Holds {
        #[source]
        source: BoxError,
    },
    #[error("releasing {id}")]
    Release {
        id: String,
        #[source]
        source: BoxError,
    },
}

/// An error and its sources, `: `-separated (what `{:#}` of an `anyhow` error shows).
///
/// The same ten lines as `registry::error::chain`, on purpose: neither crate may depend on the
/// other, image-spec (the only crate below both) is the image format and not a home
/// for error printing, and a crate of its own for ten lines would be a new arrow for
/// nothing. When std's `Error::sources` is stable, both become that iterator.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// `map_err` for an I/O error on `path`: `.map_err(io_at("reading", &path))`.
pub(crate) fn io_at(action: &'static str, path: impl AsRef<Path>) -> impl FnOnce(io::Error) -> Error {
    let path = path.as_ref().to_path_buf();
    move |source| Error::Io { action, path, source }
}
