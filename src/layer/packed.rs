//! A step's layer kept as its snapshot alone (`store::PackedLayer`): the tar of the
//! upperdir is hashed (its diffID) but not written, and made again from the snapshot
//! when something reads the blob — an export compressing it, `save`, a cache export,
//! a push of uncompressed layers.
//!
//! The tar writer is deterministic (sorted entries, numeric ids, no atime/ctime, the
//! clamp recorded with the layer), and snapshots are never written to (files reused by
//! hard link are replaced, never written through; a RUN copies a lower file up), so the
//! tar made again is the one that was hashed. It is checked anyway, while it is made
//! (by the xxh3 of its segments where the record has them, [`super::segment_check`]):
//! a snapshot changed behind the builder's back fails the reader, naming the layer and
//! the snapshot, before its last bytes are handed out.

use super::segment_check::LayerCheck;
use super::sha_pipe::PipedHashWriter;
use super::tar_writer::{self, TarOptions, TarSink};
use anyhow::{Context as _, Result};
use image_spec::{Digest, LayerInfo};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc;
use store::{PackedLayer, Store};

/// The digest and size of the tar of `dir`, written nowhere.
pub fn hash_tar(dir: &Path, options: &TarOptions) -> Result<(Digest, u64)> {
    let hashing = PipedHashWriter::new(io::sink());
    let hashing =
        tar_writer::write_tar(dir, hashing, options).with_context(|| format!("archiving {}", dir.display()))?;
    let (_, digest, size) = hashing.finish();
    Ok((digest, size))
}

fn tar_options(packed: &PackedLayer) -> TarOptions {
    TarOptions { overlay: true, mtime_clamp: packed.mtime_clamp }
}

/// What the snapshot of a packed layer hashes to now (`fsck`).
pub fn packed_digest(store: &Store, packed: &PackedLayer) -> Result<Digest> {
    Ok(hash_tar(&store.snapshot_path(&packed.snapshot), &tar_options(packed))?.0)
}

/// Writes the tar of a packed layer to `out`, failing (naming the layer and the
/// snapshot) when it is not the tar that was hashed when the layer was made.
pub fn write_packed<W: TarSink>(store: &Store, packed: &PackedLayer, out: W) -> Result<W> {
    let dir = store.snapshot_path(&packed.snapshot);
    let checking = LayerCheck::new(packed, out);
    let checking = tar_writer::write_tar_to(&dir, checking, &tar_options(packed))
        .with_context(|| format!("layer {}: archiving snapshot {}", packed.diff_id, dir.display()))?;
    checking.finish()
}

/// The bytes of a layer's blob: the file, or the tar of a packed layer's snapshot
/// made on a thread as it is read (its check passed before the last bytes are
/// given out, so a reader that stops at the layer's size still sees a mismatch).
pub fn open_layer(store: &Store, layer: &LayerInfo) -> Result<Box<dyn Read + Send>> {
    open_blob_or_layer(store, &layer.digest)
}

/// [`open_layer`] by digest: any blob, a packed layer made from its snapshot.
pub fn open_blob_or_layer(store: &Store, digest: &Digest) -> Result<Box<dyn Read + Send>> {
    if !store.has_blob_file(digest)
        && let Some(packed) = store.packed_layer(digest)
    {
        return Ok(Box::new(PackedReader::start(store, packed)?));
    }
    Ok(Box::new(store.open_blob(digest).with_context(|| format!("blob {digest}"))?))
}

/// Chunks handed from the tar thread to the reader.
const CHUNK: usize = 1 << 20;
/// Chunks in flight: the memory a reader costs is about this many MiB.
const IN_FLIGHT: usize = 4;

type Chunk = std::result::Result<Vec<u8>, String>;

/// Reads the tar a thread writes from a packed layer's snapshot.
struct PackedReader {
    chunks: mpsc::Receiver<Chunk>,
    current: Vec<u8>,
    at: usize,
}

impl PackedReader {
    fn start(store: &Store, packed: PackedLayer) -> Result<PackedReader> {
        let (tx, rx) = mpsc::sync_channel(IN_FLIGHT);
        // The thread needs the store's paths only: the snapshot is held by whoever
        // holds the layer, as for a blob file being read.
        let dir = store.snapshot_path(&packed.snapshot);
        std::thread::Builder::new()
            .name("layer-tar".into())
            .spawn(move || {
                let out = ChunkWriter { tx: tx.clone(), pending: Vec::with_capacity(CHUNK) };
                let checking = LayerCheck::new(&packed, out);
                let written = tar_writer::write_tar_to(&dir, checking, &tar_options(&packed))
                    .with_context(|| format!("layer {}: archiving snapshot {}", packed.diff_id, dir.display()));
                let last = written.and_then(|checking| checking.finish().map(|out| out.pending));
                // Nobody reading any more is no error of ours.
                let _ = tx.send(last.map_err(|e| format!("{e:#}")));
            })
            .context("starting a thread")?;
        Ok(PackedReader { chunks: rx, current: Vec::new(), at: 0 })
    }
}

impl Read for PackedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.recv() {
                Ok(Ok(chunk)) => (self.current, self.at) = (chunk, 0),
                Ok(Err(message)) => return Err(io::Error::other(message)),
                // The thread is done and sent everything.
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Sends full chunks, always keeping the last bytes back: they go only once the
/// tar is checked (a tar ends with two zero blocks, so something is always kept).
struct ChunkWriter {
    tx: mpsc::SyncSender<Chunk>,
    pending: Vec<u8>,
}

impl TarSink for ChunkWriter {}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.len() >= CHUNK {
            let full = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
            self.tx.send(Ok(full)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))?;
        }
        let n = buf.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LayerOptions, commit_step_layer, diff_to_layer_with, diff_to_step_layer};
    use super::*;
    use image_spec::Compression;
    use std::fs;

    /// A tree of a few files, one of several MiB (more than the chunks in flight).
    fn tree(dir: &Path) {
        fs::create_dir_all(dir.join("data/sub")).unwrap();
        let big: Vec<u8> = (0..6_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        fs::write(dir.join("data/big"), big).unwrap();
        fs::write(dir.join("data/sub/small"), "small\n").unwrap();
        fs::hard_link(dir.join("data/sub/small"), dir.join("data/linked")).unwrap();
        std::os::unix::fs::symlink("big", dir.join("data/alias")).unwrap();
    }

    /// A step's layer committed as `chain` in `store`: packed, no blob file.
    fn packed_step(store: &Store, clamp: Option<i64>) -> (LayerInfo, PackedLayer) {
        let upper = store.temp_dir("t").unwrap().keep();
        tree(&upper);
        let options = LayerOptions { mtime_clamp: clamp, compression: Compression::Uncompressed, level: None };
        let step = diff_to_step_layer(store, &upper, &options).unwrap().unwrap();
        let chain = step.layer.diff_id.clone();
        commit_step_layer(store, upper, &chain, &step).unwrap();
        let packed = store.packed_layer(&step.layer.digest).expect("a packed record");
        assert!(!store.has_blob_file(&step.layer.digest) && store.has_blob(&step.layer.digest));
        (step.layer, packed)
    }

    #[test]
    fn a_packed_layer_reads_as_the_blob_a_written_layer_has() {
        let (_d, store) = store::testing::test_store();
        for clamp in [None, Some(1_000)] {
            let (layer, _) = packed_step(&store, clamp);
            // The same tree written as a blob the way layers used to be.
            let other = tempfile::tempdir().unwrap();
            tree(other.path());
            let options = LayerOptions { mtime_clamp: clamp, compression: Compression::Uncompressed, level: None };
            let dir = store.snapshot_path(&layer.diff_id);
            let mtime = |p: &Path| filetime::FileTime::from_last_modification_time(&fs::symlink_metadata(p).unwrap());
            for rel in ["data", "data/big", "data/sub", "data/sub/small", "data/alias"] {
                let t = mtime(&dir.join(rel));
                filetime::set_symlink_file_times(other.path().join(rel), t, t).unwrap();
            }
            let (_o2, other_store) = store::testing::test_store();
            let written = diff_to_layer_with(&other_store, other.path(), &options).unwrap().unwrap();
            assert_eq!(written.diff_id, layer.diff_id, "clamp {clamp:?}");
            let mut bytes = Vec::new();
            open_layer(&store, &layer).unwrap().read_to_end(&mut bytes).unwrap();
            assert_eq!(bytes, other_store.read_blob(&written.digest).unwrap());
            assert_eq!(bytes.len() as u64, layer.size);
            assert_eq!(store.blob_size(&layer.digest).unwrap(), layer.size);
        }
    }

    #[test]
    fn a_changed_snapshot_fails_the_reader_before_its_last_bytes() {
        let (_d, store) = store::testing::test_store();
        let (layer, packed) = packed_step(&store, None);
        assert_eq!(packed_digest(&store, &packed).unwrap(), layer.diff_id);
        let file = store.snapshot_path(&packed.snapshot).join("data/sub/small");
        fs::write(&file, "SMALL\n").unwrap();
        // A reader that stops at the layer's size still sees the error.
        let mut taken = Vec::new();
        let err = open_layer(&store, &layer).unwrap().take(layer.size).read_to_end(&mut taken).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(layer.diff_id.as_str()) && message.contains(packed.snapshot.as_str()), "{message}");
        // Checked by the xxh3 of its last segment (the file is near the end).
        assert!(message.contains(&format!("..{} differ from the layer's", layer.size)), "{message}");
        assert!((taken.len() as u64) < layer.size);
        // Compressing it fails the same way and stores nothing.
        let err = crate::layer::compress_layer(&store, &layer, Compression::Gzip, None, None).unwrap_err();
        assert!(format!("{err:#}").contains(layer.diff_id.as_str()), "{err:#}");
        assert!(store.layer_variant(&layer.diff_id, Compression::Gzip, None).is_none());
        assert_ne!(packed_digest(&store, &packed).unwrap(), layer.diff_id);
    }

    #[test]
    fn a_step_whose_snapshot_exists_without_a_blob_writes_the_blob() {
        let (_d, store) = store::testing::test_store();
        let upper = store.temp_dir("t").unwrap().keep();
        tree(&upper);
        let options = LayerOptions { compression: Compression::Uncompressed, ..Default::default() };
        let step = diff_to_step_layer(&store, &upper, &options).unwrap().unwrap();
        assert!(step.packed.is_some());
        let chain = step.layer.diff_id.clone();
        // Some other directory is already that snapshot (unpacked from a pruned blob).
        let other = store.temp_dir("o").unwrap().keep();
        store.commit_snapshot(other, &chain).unwrap();
        commit_step_layer(&store, upper, &chain, &step).unwrap();
        assert!(store.has_blob_file(&step.layer.digest) && store.packed_layer(&step.layer.digest).is_none());
    }
}
