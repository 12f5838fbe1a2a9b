//! Streaming compression of layer tars and detection of a blob's compression by its
//! magic bytes. Output bytes depend only on the input (reproducible digests).

use crate::image::{Compression, Digest};
use gzp::ZWriter as _;
use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use sha2::Digest as _;
use std::io::{self, BufRead, BufReader, Read, Write};

/// gzip level 6, as Go's `gzip.DefaultCompression` (what Docker and BuildKit write).
const GZIP_LEVEL: u32 = 6;
/// zstd's default level, as BuildKit's `compression=zstd`.
const ZSTD_LEVEL: i32 = 3;

/// The encoder always sees the input in chunks of this size, so that the output
/// depends on the bytes alone and not on how callers happened to split their writes.
const CHUNK: usize = 128 * 1024;

enum Encoder<W: Write + Send + 'static> {
    /// gzp: blocks compressed on every core; the same bytes whatever the number of
    /// threads or the write sizes (checked in the tests below).
    Gzip(ParCompress<'static, Gzip, W>),
    Zstd(zstd::Encoder<'static, W>),
    Plain(W),
}

/// A streaming compressor (gzip, zstd or none) in front of a writer.
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
            Compression::Zstd => {
                let mut encoder = zstd::Encoder::new(out, level.unwrap_or(ZSTD_LEVEL))?;
                // With one worker or more the frame is the same whatever their number.
                encoder.multithread(threads.max(1) as u32)?;
                Encoder::Zstd(encoder)
            }
            Compression::Uncompressed => Encoder::Plain(out),
        };
        Ok(Compressor { encoder: Some(encoder), pending: Vec::with_capacity(CHUNK) })
    }

    fn write_pending(&mut self) -> io::Result<()> {
        match self.encoder.as_mut().expect("compressor open") {
            Encoder::Gzip(e) => e.write_all(&self.pending)?,
            Encoder::Zstd(e) => e.write_all(&self.pending)?,
            Encoder::Plain(w) => w.write_all(&self.pending)?,
        }
        self.pending.clear();
        Ok(())
    }

    /// Ends the stream and hands back the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_pending()?;
        match self.encoder.take().expect("compressor open") {
            Encoder::Gzip(mut e) => e.finish().map_err(io::Error::other),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Plain(mut w) => {
                w.flush()?;
                Ok(w)
            }
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
        let n = buf.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == CHUNK {
            self.write_pending()?;
        }
        Ok(n)
    }

    /// Flushes nothing: a flush would end a deflate block and change the output.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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

/// Passes bytes through while hashing them (the diffID of a tar stream).
pub struct HashWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    size: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter { inner, hasher: sha2::Sha256::new(), size: 0 }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_sha256(self.hasher.finalize().into()), self.size)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes everything read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    size: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader { inner, hasher: sha2::Sha256::new(), size: 0 }
    }

    /// Reads what is left (tar padding after the end marker counts in a diffID) and
    /// returns the digest of the whole stream.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_sha256(self.hasher.finalize().into()), self.size))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
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
}
