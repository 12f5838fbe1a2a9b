//! Content-addressed blobs: hashed while written to `tmp/`, verified, fsynced, renamed
//! into `blobs/sha256/<hex>`.

use crate::error::{Error, Result, io_at};
use crate::lock::lock_file;
use crate::{HashWriter, LockMode, Store, WritebackFile, sync_dir};
use image_spec::Digest;
use sha2::Digest as _;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;

/// A blob being written. Bytes go to a temp file in the store while they are hashed;
/// [`BlobWriter::commit`] verifies and renames it into place. Dropped uncommitted, the
/// temp file is removed.
pub struct BlobWriter {
    file: Option<BufWriter<WritebackFile>>,
    temp: PathBuf,
    blobs: PathBuf,
    /// The store's gate lock (`Store::lock`), taken shared for the rename.
    gate: PathBuf,
    hasher: sha2::Sha256,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.as_mut().expect("blob writer open").write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("blob writer open").flush()
    }
}

impl BlobWriter {
    /// Finishes the blob: checks it against `expected` (a mismatch is an error naming
    /// both digests, and nothing is stored), fsyncs and renames it into place.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let digest = Digest::from_sha256(std::mem::take(&mut self.hasher).finalize().into());
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(Error::DigestMismatch { expected: expected.clone(), found: digest, size: self.size });
        }
        let file = self.file.as_mut().expect("blob writer open");
        file.flush().map_err(io_at("writing", &self.temp))?;
        // Synced before the rename, even for a layer variant that could be made again:
        // readers (exports, push) trust a blob under its name without re-hashing it,
        // and the manifest written next names it, so a file torn by a crash must never
        // appear there. The writeback started on the way leaves little for this sync.
        file.get_mut().sync_all().map_err(io_at("syncing", &self.temp))?;
        let target = self.blobs.join(digest.hex());
        // Renamed under the store's gate, shared: a prune holds it exclusively from
        // deciding what is unused to removing it, and a blob renamed over one it
        // decided on (a pull writing a manifest the store had) would be removed as
        // that one. Renamed before it decides, the blob is new to it (spared by this
        // process's lease window); after, it stays.
        let _gate = lock_file(&self.gate, LockMode::Shared, &|| {})?;
        std::fs::rename(&self.temp, &target).map_err(io_at("storing blob", &target))?;
        // Renamed: nothing for drop to remove.
        self.file = None;
        sync_dir(&self.blobs);
        Ok((digest, self.size))
    }

    /// Like [`BlobWriter::commit`], also checking the size.
    pub fn commit_sized(self, expected: &Digest, size: u64) -> Result<(Digest, u64)> {
        if self.size != size {
            return Err(Error::SizeMismatch { digest: expected.clone(), expected: size, found: self.size });
        }
        self.commit(Some(expected))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

impl Store {
    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// A writer for a new blob (see [`BlobWriter`]).
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let (file, temp) = tempfile::Builder::new()
            .prefix(&self.temp_prefix("blob")?)
            .tempfile_in(self.tmp())
            .map_err(io_at("creating a temp file in", self.tmp()))?
            .keep()
            .map_err(|e| Error::Io { action: "keeping", path: e.file.path().to_path_buf(), source: e.error })?;
        Ok(BlobWriter {
            file: Some(BufWriter::with_capacity(256 * 1024, WritebackFile::new(file))),
            temp,
            blobs: self.blobs_dir(),
            gate: self.root.join("lock"),
            hasher: sha2::Sha256::new(),
            size: 0,
        })
    }

    /// Streams `reader` into a blob, hashing as it writes; verifies `expected` when
    /// given. Returns the digest and size.
    pub fn write_blob(&self, reader: &mut dyn Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let mut writer = self.blob_writer()?;
        io::copy(reader, &mut writer).map_err(io_at("writing", &writer.temp))?;
        writer.commit(expected)
    }

    pub fn write_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if self.claim_blob(&digest)? {
            return Ok(digest);
        }
        let mut writer = self.blob_writer()?;
        writer.write_all(bytes).map_err(io_at("writing", &writer.temp))?;
        writer.commit(Some(&digest))?;
        Ok(digest)
    }

    /// Whether the store holds the blob: as a file, or as a packed layer whose
    /// snapshot is there (see `packed.rs`).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.has_blob_file(digest) || self.packed_layer(digest).is_some()
    }

    /// Whether the store holds the blob, claimed for this process: a blob a writer
    /// finds instead of writing (a pull's layer, a build's config) is named by what it
    /// writes next, so under the store's gate (no prune deciding meanwhile) its time
    /// is set to now, which the lease window of this process spares from any later
    /// prune. Not there (say a prune removed it before): the caller writes it.
    pub fn claim_blob(&self, digest: &Digest) -> Result<bool> {
        let _gate = self.lock(LockMode::Shared)?;
        let path = if self.has_blob_file(digest) {
            self.blob_path(digest)
        } else if self.packed_layer(digest).is_some() {
            self.packed_path(digest)
        } else {
            return Ok(false);
        };
        match filetime::set_file_mtime(&path, filetime::FileTime::now()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_at("claiming", &path)(e)),
        }
    }

    /// Whether the blob is a file under `blobs/` (not a packed layer).
    pub fn has_blob_file(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Opens a blob for streaming (fetching it first if it is a registered remote
    /// blob). Its content was verified when it was written.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        self.ensure_blob(digest)?;
        File::open(self.blob_path(digest)).map_err(|source| match self.packed_layer(digest) {
            Some(packed) => Error::Packed { digest: digest.clone(), snapshot: packed.snapshot },
            None => Error::MissingBlob { digest: digest.clone(), source },
        })
    }

    /// The size of a stored (or fetchable) blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        self.ensure_blob(digest)?;
        if !self.has_blob_file(digest)
            && let Some(packed) = self.packed_layer(digest)
        {
            return Ok(packed.size);
        }
        let meta = std::fs::metadata(self.blob_path(digest))
            .map_err(|source| Error::MissingBlob { digest: digest.clone(), source })?;
        Ok(meta.len())
    }

    /// Reads a metadata blob (a manifest, index or config: foreign JSON) whole,
    /// refusing one larger than `max` before reading it.
    pub fn read_metadata_blob(&self, what: &'static str, digest: &Digest, max: u64) -> Result<Vec<u8>> {
        let size = self.blob_size(digest)?;
        if size > max {
            return Err(Error::TooLarge { what, digest: digest.clone(), size, max });
        }
        self.read_blob(digest)
    }

    /// Reads a (small) blob whole and verifies its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.ensure_blob(digest)?;
        let bytes = std::fs::read(self.blob_path(digest))
            .map_err(|source| Error::MissingBlob { digest: digest.clone(), source })?;
        let found = Digest::of(&bytes);
        if found != *digest {
            return Err(Error::CorruptBlob { digest: digest.clone(), found });
        }
        Ok(bytes)
    }
}

impl Store {
    /// Re-hashes every blob (`fsck`): returns the digests whose content no longer
    /// matches their name.
    pub fn verify_blobs(&self) -> Result<Vec<Digest>> {
        let mut bad = Vec::new();
        let dir = self.blobs_dir();
        for entry in std::fs::read_dir(&dir).map_err(io_at("listing", &dir))? {
            let entry = entry.map_err(io_at("listing", &dir))?;
            let name = entry.file_name();
            let Ok(digest) = Digest::parse(&format!("sha256:{}", name.to_string_lossy())) else {
                continue;
            };
            let mut hasher = HashWriter::new(io::sink());
            let mut file = File::open(entry.path()).map_err(io_at("opening", entry.path()))?;
            io::copy(&mut file, &mut hasher).map_err(io_at("reading", entry.path()))?;
            if hasher.finish().1 != digest {
                bad.push(digest);
            }
        }
        bad.sort();
        Ok(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_store;

    fn tmp_is_empty(store: &Store) -> bool {
        std::fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .all(|e| e.unwrap().file_name().to_string_lossy().ends_with(".owner"))
    }

    #[test]
    fn blob_round_trip() {
        let (_d, store) = test_store();
        let (digest, size) = store.write_blob(&mut &b"hello"[..], None).unwrap();
        assert_eq!(digest, Digest::of(b"hello"));
        assert_eq!(size, 5);
        assert!(store.has_blob(&digest));
        assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
        assert_eq!(store.write_blob_bytes(b"hello").unwrap(), digest);
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn digest_mismatch_is_an_error_and_leaves_no_blob() {
        let (_d, store) = test_store();
        let expected = Digest::of(b"something else");
        let err = store.write_blob(&mut &b"hello"[..], Some(&expected)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(expected.as_str()) && msg.contains(Digest::of(b"hello").as_str()), "{msg}");
        assert!(!store.has_blob(&expected));
        assert!(!store.has_blob(&Digest::of(b"hello")));
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn size_mismatch_is_an_error() {
        let (_d, store) = test_store();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"abc").unwrap();
        assert!(w.commit_sized(&Digest::of(b"abc"), 4).is_err());
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn corrupt_blob_is_detected_on_read() {
        let (_d, store) = test_store();
        let digest = store.write_blob_bytes(b"good").unwrap();
        assert!(store.verify_blobs().unwrap().is_empty());
        std::fs::write(store.blob_path(&digest), b"bad!").unwrap();
        assert!(store.read_blob(&digest).is_err());
        assert_eq!(store.verify_blobs().unwrap(), [digest]);
    }
}
