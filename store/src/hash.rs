//! Hashing while streaming: the sha256 of what passes through a writer or a reader
//! (a blob's digest, a tar's diffID), computed on the way rather than read again.

use image_spec::Digest;
use sha2::Digest as _;
use std::io::{self, Read, Write};

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
