//! Where pulled content goes and pushed content comes from: the caller's blob store.
//! The client knows the distribution protocol, not how a store lays out its files.

use crate::error::BoxError;
use image_spec::Digest;
use std::io::Read;
use std::path::PathBuf;

/// Where the bytes of a blob to upload are.
pub enum UploadFrom {
    /// A file: each request reads its range from it.
    File(PathBuf),
    /// Bytes the store makes again on each read ([`Content::open_blob`]), such as a
    /// layer kept as its snapshot: it never becomes a file for a push.
    Made,
}

/// A content-addressed blob store, as the registry client uses it.
pub trait Content: Sync {
    fn has_blob(&self, digest: &Digest) -> bool;

    /// Writes a blob read from `reader`, verified against `expected` (a mismatch is an
    /// error and stores nothing); returns its size.
    fn write_blob(&self, reader: &mut dyn Read, expected: &Digest) -> Result<u64, BoxError>;

    /// A (small) blob, whole: a manifest or a config.
    fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, BoxError>;

    /// Where a blob to upload comes from, and its size; a blob the store only knows
    /// where to fetch is fetched first.
    fn blob_upload(&self, digest: &Digest) -> Result<(UploadFrom, u64), BoxError>;

    /// The bytes of a blob the store makes as they are read ([`UploadFrom::Made`]),
    /// from the start. An upload that resumes or retries opens it again and skips
    /// what the registry has; a reader must fail (not end early, not hand out its
    /// last bytes) when the bytes are not the blob's.
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BoxError>;

    /// The repositories (`host/repository`) the blob is known to be in, most recent
    /// first: a push to another repository of the same registry can mount it from
    /// there. A hint; empty when nothing is known.
    fn blob_sources(&self, digest: &Digest) -> Vec<String>;

    /// Notes that `digests` are in `name` (`host/repository`). Best effort.
    fn add_blob_sources(&self, digests: &[Digest], name: &str);
}
