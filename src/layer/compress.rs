//! Streaming compression of layer tars and detection of a blob's compression by its
//! magic bytes. Output bytes depend only on the input (reproducible digests).

use super::zstd_par::ParZstd;
use gzp::ZWriter as _;
use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use image_spec::Compression;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// gzip level 6, as Go's `gzip.DefaultCompression` (what Docker and BuildKit write).
const GZIP_LEVEL: u32 = 6;
/// zstd's default level, as BuildKit's `compression=zstd`.
const ZSTD_LEVEL: i32 = 3;

/// gzp sees the input in chunks of this size, so that its blocks (and so the output)
/// depend on the bytes alone and not on how callers happened to split their writes.
/// (zstd needs no such help: [`ParZstd`] cuts its frames at fixed input offsets.)
const CHUNK: usize = 128 * 1024;

/// Compressed bytes travel to the writer thread in batches of this size (small enough
/// to still be in the cache when the writer hashes them), at most
/// [`BATCHES_IN_FLIGHT`] queued: memory stays bounded whatever the layer's size.
const BATCH: usize = 256 * 1024;
const BATCHES_IN_FLIGHT: usize = 8;

enum Encoder<W: Write + Send + 'static> {
    /// gzp: blocks compressed on every core and written by gzp's own thread; the same
    /// bytes whatever the number of threads or the write sizes (checked in the tests
    /// below).
    Gzip(ParCompress<'static, Gzip, W>),
    /// A frame per 4 MiB of input, compressed on every core, written by its own thread.
    Zstd(ParZstd<W>),
    Plain(Offload<W>),
}

/// A streaming compressor (gzip, zstd or none) in front of a writer.
///
/// Three stages run at once: the caller's thread feeds the encoder, its workers
/// compress, and a thread of its own hands the result to the writer, which for a store
/// blob hashes and writes it. On one thread the caller would spend as long on that
/// last step as the workers spend compressing.
pub struct Compressor<W: Write + Send + 'static> {
    encoder: Option<Encoder<W>>,
    pending: Vec<u8>,
}

fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl<W: Write + Send + 'static> Compressor<W> {
    pub fn new(compression: Compression, out: W) -> io::Result<Self> {
        Self::with_threads(compression, None, out, threads())
    }

    /// A compressor at `level` (gzip 0-9, zstd 1-22; `None`: the default level).
    pub fn with_level(compression: Compression, level: Option<i32>, out: W) -> io::Result<Self> {
        Self::with_threads(compression, level, out, threads())
    }

    fn with_threads(compression: Compression, level: Option<i32>, out: W, threads: usize) -> io::Result<Self> {
        check_level(compression, level)?;
        let encoder = match compression {
            Compression::Gzip => {
                let builder =
                    ParCompressBuilder::<Gzip>::new().num_threads(threads.max(1)).map_err(io::Error::other)?;
                let level = level.map_or(GZIP_LEVEL, |l| l as u32);
                Encoder::Gzip(builder.compression_level(flate2::Compression::new(level)).from_writer(out))
            }
            Compression::Zstd => Encoder::Zstd(ParZstd::new(out, level.unwrap_or(ZSTD_LEVEL), threads)?),
            Compression::Uncompressed => Encoder::Plain(Offload::new(out)?),
        };
        let pending = match encoder {
            Encoder::Gzip(_) => Vec::with_capacity(CHUNK),
            _ => Vec::new(),
        };
        Ok(Compressor { encoder: Some(encoder), pending })
    }

    fn write_pending(&mut self) -> io::Result<()> {
        if let Some(Encoder::Gzip(e)) = self.encoder.as_mut()
            && let Err(error) = e.write_all(&self.pending)
        {
            // gzp has shut its threads down and taken its channels: finishing it again
            // (as our drop would) panics, its own drop does nothing.
            self.encoder = None;
            return Err(error);
        }
        self.pending.clear();
        Ok(())
    }

    /// Compresses everything `reader` gives (read straight into the compressor's own
    /// buffers where it has them); returns how many bytes it read.
    pub fn read_from(&mut self, reader: &mut dyn Read) -> io::Result<u64> {
        match self.encoder.as_mut() {
            Some(Encoder::Zstd(e)) => e.read_from(reader),
            _ => copy_in_batches(reader, self),
        }
    }

    /// Compresses the whole of `file`, from its start (on every core at once, each
    /// reading its part, where the compression can).
    pub fn compress_file(&mut self, mut file: std::fs::File) -> io::Result<u64> {
        match self.encoder.as_mut() {
            Some(Encoder::Zstd(e)) => e.compress_file(file),
            _ => {
                io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
                copy_in_batches(&mut file, self)
            }
        }
    }

    /// Ends the stream and hands back the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_pending()?;
        match self.encoder.take().ok_or_else(|| io::Error::other("compressor failed before"))? {
            Encoder::Gzip(mut e) => e.finish().map_err(io::Error::other),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Plain(w) => w.finish(),
        }
    }
}

impl<W: Write + Send + 'static> Drop for Compressor<W> {
    fn drop(&mut self) {
        // Abandoned (an error elsewhere): stop gzp's threads here, as its own drop
        // would panic if the writer had failed.
        if let Some(Encoder::Gzip(mut e)) = self.encoder.take() {
            let _ = e.finish();
        }
    }
}

impl<W: Write + Send + 'static> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.encoder.as_mut().ok_or_else(|| io::Error::other("compressor failed before"))? {
            Encoder::Gzip(_) => {
                let n = buf.len().min(CHUNK - self.pending.len());
                self.pending.extend_from_slice(&buf[..n]);
                if self.pending.len() == CHUNK {
                    self.write_pending()?;
                }
                Ok(n)
            }
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }

    /// Flushes nothing: a flush would end a deflate block or a zstd block and change
    /// the output.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> super::tar_sink::TarSink for Compressor<W> {
    /// zstd reads the file straight into its job buffers; the others copy it through
    /// `scratch`.
    fn write_from<'a>(&'a mut self, file: &mut dyn Read, scratch: &'a mut [u8]) -> io::Result<&'a [u8]> {
        if !matches!(self.encoder, Some(Encoder::Zstd(_))) {
            return super::tar_sink::copy_through(self, file, scratch);
        }
        match self.encoder.as_mut() {
            Some(Encoder::Zstd(e)) => e.fill_from(file, scratch.len()),
            _ => Err(io::Error::other("compressor failed before")),
        }
    }
}

/// `io::copy` through a 256 KiB buffer: between two trait objects it would take 8 KiB
/// at a time, a read call and an encoder call for each; much more than 256 KiB and
/// the encoder reads the buffer back from memory rather than from the cache.
pub fn copy_in_batches(reader: &mut dyn Read, writer: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = read_up_to(reader, &mut buf)?;
        writer.write_all(&buf[..n])?;
        total += n as u64;
        if n < buf.len() {
            return Ok(total);
        }
    }
}

/// Reads into `buf` until it is full or the stream ends; returns how much was read.
pub fn read_up_to(reader: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A writer that hands what it is given to `W` on a thread of its own, in batches of
/// [`BATCH`] through a bounded channel (spent batches come back to be refilled).
/// [`Offload::finish`] waits for the thread and returns `W`, or the first error `W`
/// gave; a write after `W` failed reports that error.
struct Offload<W: Write + Send + 'static> {
    batch: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    spent: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> Offload<W> {
    fn new(mut out: W) -> io::Result<Self> {
        let (full, to_write) = mpsc::sync_channel::<Vec<u8>>(BATCHES_IN_FLIGHT);
        let (give_back, spent) = mpsc::sync_channel(BATCHES_IN_FLIGHT + 1);
        let thread = std::thread::Builder::new().name("layer-writer".into()).spawn(move || {
            for mut batch in to_write {
                out.write_all(&batch)?;
                batch.clear();
                // The other end may be gone (finished) or the queue full: dropped.
                let _ = give_back.try_send(batch);
            }
            out.flush()?;
            Ok(out)
        })?;
        Ok(Offload { batch: Vec::with_capacity(BATCH), full: Some(full), spent, thread: Some(thread) })
    }

    fn send(&mut self) -> io::Result<()> {
        let full = self.full.as_ref().ok_or_else(|| io::Error::other("layer writer thread failed before"))?;
        let next = self.spent.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let sent = full.send(std::mem::replace(&mut self.batch, next));
        if sent.is_err() {
            // The thread stopped early: its result says why.
            self.full = None;
            return Err(match self.join() {
                Err(e) => e,
                Ok(_) => io::Error::other("layer writer thread stopped"),
            });
        }
        Ok(())
    }

    fn join(&mut self) -> io::Result<W> {
        let thread = self.thread.take().ok_or_else(|| io::Error::other("layer writer thread already joined"))?;
        thread.join().unwrap_or_else(|_| Err(io::Error::other("layer writer thread panicked")))
    }

    fn finish(mut self) -> io::Result<W> {
        if !self.batch.is_empty() {
            self.send()?;
        }
        self.full = None;
        self.join()
    }
}

impl<W: Write + Send + 'static> Write for Offload<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BATCH - self.batch.len());
        self.batch.extend_from_slice(&buf[..n]);
        if self.batch.len() == BATCH {
            self.send()?;
        }
        Ok(n)
    }

    /// Queues what is batched; it reaches `W` in order, before [`Offload::finish`] returns.
    fn flush(&mut self) -> io::Result<()> {
        if !self.batch.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for Offload<W> {
    fn drop(&mut self) {
        // Abandoned: let the thread end (and drop `W`, a temp blob removing itself)
        // before the error that abandoned it goes on.
        self.full = None;
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

/// Whether `level` is valid for `compression`.
pub fn check_level(compression: Compression, level: Option<i32>) -> io::Result<()> {
    let valid = match (compression, level) {
        (_, None) => true,
        (Compression::Gzip, Some(l)) => (0..=9).contains(&l),
        (Compression::Zstd, Some(l)) => zstd::compression_level_range().contains(&l),
        (Compression::Uncompressed, Some(_)) => false,
    };
    if valid {
        Ok(())
    } else {
        let range = match compression {
            Compression::Gzip => "0-9".to_string(),
            Compression::Zstd => {
                let r = zstd::compression_level_range();
                format!("{}-{}", r.start(), r.end())
            }
            Compression::Uncompressed => "none: uncompressed has no level".to_string(),
        };
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid compression level {} for {compression:?} (valid: {range})", level.unwrap_or_default()),
        ))
    }
}

/// What a stream starts with.
pub fn detect(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::Uncompressed
    }
}

/// A reader of the uncompressed bytes of `reader`, whatever its compression.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let magic = reader.fill_buf()?;
    Ok(match detect(magic) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(reader)?),
        Compression::Uncompressed => Box::new(reader),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_compression() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for c in [Compression::Gzip, Compression::Zstd, Compression::Uncompressed] {
            let mut enc = Compressor::new(c, Vec::new()).unwrap();
            enc.write_all(&data).unwrap();
            let out = enc.finish().unwrap();
            assert_eq!(detect(&out), c, "{c:?}");
            let mut back = Vec::new();
            decompress(&out[..]).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{c:?}");
            // Same input, same bytes.
            let mut again = Compressor::new(c, Vec::new()).unwrap();
            for chunk in data.chunks(777) {
                again.write_all(chunk).unwrap();
            }
            assert_eq!(again.finish().unwrap(), out, "{c:?}");
            // Nor on the number of threads.
            let mut one = Compressor::with_threads(c, None, Vec::new(), 1).unwrap();
            one.write_all(&data).unwrap();
            assert_eq!(one.finish().unwrap(), out, "{c:?} on one thread");
        }
    }

    /// Several zstd frames (4 MiB of input each) and several writer batches:
    /// the bytes depend neither on the write sizes nor on the number of workers.
    #[test]
    fn zstd_output_depends_on_the_input_alone() {
        // Half of it incompressible (xorshift), so that the output spans several batches.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let text: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let mut bytes = state.to_le_bytes();
                bytes[4..].copy_from_slice(&(i % 1000).to_le_bytes());
                bytes
            })
            .collect();
        let compress = |threads: usize, write_size: usize| {
            let mut c = Compressor::with_threads(Compression::Zstd, None, Vec::new(), threads).unwrap();
            for chunk in text.chunks(write_size) {
                c.write_all(chunk).unwrap();
            }
            c.finish().unwrap()
        };
        let out = compress(2, text.len());
        assert!(out.len() > 2 * BATCH, "{} bytes", out.len());
        assert_eq!(compress(2, 777), out);
        assert_eq!(compress(1, 3 << 20), out);
        assert_eq!(compress(4, BATCH + 1), out);
        let mut back = Vec::new();
        decompress(&out[..]).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == text);
    }

    /// A writer that fails once it has taken `limit` bytes.
    struct FailAfter {
        limit: usize,
        taken: usize,
    }

    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken + buf.len() > self.limit {
                return Err(io::Error::other("disk full"));
            }
            self.taken += buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_writer_fails_the_compressor() {
        let data: Vec<u8> = (0..3_000_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for c in [Compression::Gzip, Compression::Zstd, Compression::Uncompressed] {
            let mut enc = Compressor::new(c, FailAfter { limit: 1000, taken: 0 }).unwrap();
            let written = enc.write_all(&data);
            let err = match written {
                Err(e) => e,
                Ok(()) => enc.finish().err().unwrap_or_else(|| panic!("{c:?}: no error")),
            };
            assert!(err.to_string().contains("disk full"), "{c:?}: {err}");
        }
        // Abandoned halfway: dropping it stops its threads.
        let mut enc = Compressor::new(Compression::Zstd, Vec::new()).unwrap();
        enc.write_all(&data).unwrap();
        drop(enc);
    }
}
