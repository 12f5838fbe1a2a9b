//! Where pulled content goes and pushed content comes from: the caller's blob store.
//! The client knows the distribution protocol, not how a store lays out its files.

use crate::error::BoxError;
use image_spec::Digest;
use std::io::Read;
use std::path::PathBuf;

/// A content-addressed blob store, as the registry client uses it.
pub trait Content: Sync {
    fn has_blob(&self, digest: &Digest) -> bool;

    /// Writes a blob read from `reader`, verified against `expected` (a mismatch is an
    /// error and stores nothing); returns its size.
    fn write_blob(&self, reader: &mut dyn Read, expected: &Digest) -> Result<u64, BoxError>;

    /// A (small) blob, whole: a manifest or a config.
    fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, BoxError>;

    /// The file holding a blob to upload, and its size; a blob the store only knows
    /// where to fetch is fetched first.
    fn blob_file(&self, digest: &Digest) -> Result<(PathBuf, u64), BoxError>;

    /// The repositories (`host/repository`) the blob is known to be in, most recent
    /// first: a push to another repository of the same registry can mount it from
    /// there. A hint; empty when nothing is known.
    fn blob_sources(&self, digest: &Digest) -> Vec<String>;

    /// Notes that `digests` are in `name` (`host/repository`). Best effort.
    fn add_blob_sources(&self, digests: &[Digest], name: &str);
}
