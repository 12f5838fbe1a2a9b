//! SHA-256 whose state can be saved and resumed at a 64-byte boundary: eight words
//! and a length. Tar entries are 512-byte aligned, so every entry boundary of a layer
//! is such a point; the layer's diffID can then be hashed again from the last point
//! before the first entry that changed ([`super::resume`]).
//!
//! The compression function is `sha2`'s (`compress256`, with its CPU extensions); the
//! padding is FIPS 180-4's: a 1 bit, zeros up to 56 bytes mod 64, the bit length.

use image_spec::Digest;
use std::io::{self, Write};

/// The initial hash value (FIPS 180-4, 5.3.3).
const H0: [u32; 8] =
    [0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19];

/// The state after `len` bytes, `len` a multiple of 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShaState {
    pub h: [u32; 8],
    pub len: u64,
}

/// SHA-256 that can say its state at a block boundary and start from one.
#[derive(Clone)]
pub struct ResumableSha256 {
    h: [u32; 8],
    /// Bytes compressed into `h`.
    len: u64,
    buf: [u8; 64],
    buf_len: usize,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        Self::resume(ShaState { h: H0, len: 0 })
    }
}

impl ResumableSha256 {
    pub fn resume(state: ShaState) -> Self {
        debug_assert!(state.len.is_multiple_of(64));
        ResumableSha256 { h: state.h, len: state.len, buf: [0; 64], buf_len: 0 }
    }

    /// Bytes hashed so far.
    pub fn total(&self) -> u64 {
        self.len + self.buf_len as u64
    }

    /// The state, when what was hashed so far ends on a block boundary.
    pub fn state(&self) -> Option<ShaState> {
        (self.buf_len == 0).then_some(ShaState { h: self.h, len: self.len })
    }

    pub fn update(&mut self, mut data: &[u8]) {
        if self.buf_len > 0 {
            let n = data.len().min(64 - self.buf_len);
            self.buf[self.buf_len..self.buf_len + n].copy_from_slice(&data[..n]);
            self.buf_len += n;
            data = &data[n..];
            if self.buf_len < 64 {
                return;
            }
            sha2::block_api::compress256(&mut self.h, &[self.buf]);
            self.len += 64;
            self.buf_len = 0;
        }
        let (blocks, rest) = data.as_chunks::<64>();
        if !blocks.is_empty() {
            sha2::block_api::compress256(&mut self.h, blocks);
            self.len += 64 * blocks.len() as u64;
        }
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    pub fn finalize(mut self) -> Digest {
        let bits = self.total() * 8;
        let mut tail = [0u8; 128];
        tail[..self.buf_len].copy_from_slice(&self.buf[..self.buf_len]);
        tail[self.buf_len] = 0x80;
        let end = if self.buf_len < 56 { 64 } else { 128 };
        tail[end - 8..end].copy_from_slice(&bits.to_be_bytes());
        let (blocks, _) = tail[..end].as_chunks::<64>();
        sha2::block_api::compress256(&mut self.h, blocks);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.h) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        Digest::from_sha256(out)
    }
}

impl Write for ResumableSha256 {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random byte stream (xorshift).
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn matches_sha2_on_random_inputs_and_splits() {
        for (seed, len) in
            [(1, 0), (2, 1), (3, 55), (4, 56), (5, 63), (6, 64), (7, 65), (8, 119), (9, 120), (10, 100_003)]
        {
            let data = bytes(seed, len);
            let expected = Digest::of(&data);
            let mut whole = ResumableSha256::default();
            whole.update(&data);
            assert_eq!(whole.finalize(), expected, "len {len}");
            // Fed in uneven pieces.
            let mut pieces = ResumableSha256::default();
            let mut at = 0;
            let mut step = 1;
            while at < data.len() {
                let end = (at + step).min(data.len());
                pieces.update(&data[at..end]);
                at = end;
                step = step * 3 % 97 + 1;
            }
            assert_eq!(pieces.finalize(), expected, "len {len} in pieces");
        }
    }

    #[test]
    fn resumes_from_a_saved_state() {
        let data = bytes(42, 10 * 512 + 77);
        let mut first = ResumableSha256::default();
        first.update(&data[..3 * 512]);
        assert!(first.state().is_some());
        first.update(&data[3 * 512..3 * 512 + 1]);
        assert!(first.state().is_none(), "no state in the middle of a block");
        let mut again = ResumableSha256::default();
        again.update(&data[..3 * 512]);
        let state = again.state().unwrap();
        assert_eq!(state.len, 3 * 512);
        let mut resumed = ResumableSha256::resume(state);
        resumed.update(&data[3 * 512..]);
        assert_eq!(resumed.total(), data.len() as u64);
        assert_eq!(resumed.finalize(), Digest::of(&data));
    }
}
