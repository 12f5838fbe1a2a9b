//! The registry client's errors. Most are a [`RegistryError`]: the host, repository
//! and action, the HTTP status and the registry's own error text, never a credential.

use image_spec::Digest;
use std::io;
use std::path::PathBuf;

/// An error of the caller's [`crate::Content`], kept with its chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed registry operation. The message names host, repository and action and
/// carries the registry's own error text; never a credential.
#[derive(Debug, thiserror::Error)]
#[error("{action} {host}/{repository}: {detail}")]
pub struct RegistryError {
    pub host: String,
    pub repository: String,
    pub action: String,
    pub status: Option<u16>,
    pub detail: String,
    #[source]
    pub source: Option<BoxError>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialsError),
    #[error("saving credentials to {}", path.display())]
    SaveCredentials {
        path: PathBuf,
        #[source]
        source: crate::credentials::CredentialsError,
    },
    #[error("invalid registry host {registry:?}")]
    Host {
        registry: String,
        #[source]
        source: url::ParseError,
    },
    #[error("invalid registry path {path:?}")]
    Path {
        path: String,
        #[source]
        source: url::ParseError,
    },
    #[error("invalid Location {location:?} from {registry}")]
    Location {
        location: String,
        registry: String,
        #[source]
        source: url::ParseError,
    },
    #[error("bad {name} header")]
    Header {
        name: &'static str,
        #[source]
        source: reqwest::header::InvalidHeaderValue,
    },
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing CA certificates in {}", path.display())]
    Certificates {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("creating the HTTP client")]
    HttpClient {
        #[source]
        source: reqwest::Error,
    },
    #[error("starting the network runtime")]
    Runtime {
        #[source]
        source: io::Error,
    },
    #[error("token server sent a malformed token")]
    MalformedToken,
    #[error("token server kept failing")]
    TokenServer {
        #[source]
        source: Box<Error>,
    },
    #[error("{action} blob {digest}")]
    Content {
        action: &'static str,
        digest: Digest,
        #[source]
        source: BoxError,
    },
    #[error("manifest {digest}: {reason}")]
    Manifest { digest: Digest, reason: String },
    #[error("blob {digest} in the store has {found} bytes, the manifest says {expected}")]
    BlobSize { digest: Digest, found: u64, expected: u64 },
    #[error("the blob writer for {digest} stopped")]
    WriterStopped { digest: Digest },
}

/// Why a manifest's media type cannot be told ([`crate::pull::media_type_of`]).
#[derive(Debug, thiserror::Error)]
pub enum UnsupportedManifest {
    #[error("the manifest is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("Docker schema 1 manifests are not supported; push the image again with a current client")]
    SchemaV1,
    #[error("unsupported manifest type {}", content_type.as_deref().unwrap_or("(none)"))]
    UnknownType { content_type: Option<String> },
}

impl Error {
    /// The HTTP status the registry answered, when that is what failed.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Registry(e) => e.status,
            _ => None,
        }
    }
}

/// An error and its sources, `: `-separated (what `{:#}` of an `anyhow` error shows).
///
/// The same ten lines as `store::error::chain`, on purpose: neither crate may depend on the
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
