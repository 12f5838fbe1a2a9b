//! How a packed layer's readers know that the tar they make again from its snapshot is
//! the one hashed when the layer was made, without running SHA-256 over all of it.
//!
//! When a step's tar is hashed ([`super::resume`]) it also gets an xxh3-128 of each
//! segment between two consecutive checkpoints (kept with the later checkpoint) and of
//! the last segment, from the last checkpoint to the end (kept with the record). A
//! reader ([`LayerCheck`]) counts the bytes it passes on and compares a segment's xxh3
//! as it passes the segment's end; the last is compared before the last bytes are
//! handed out. A record made before these checks (or resumed from one) has none: its
//! readers run SHA-256 over the tar as before.
//!
//! Why xxh3 is enough: the check guards against a snapshot changed behind the
//! builder's back (an accident, a stray tool writing into the store), not against an
//! attacker — whoever can write a snapshot can rewrite its record too. Against
//! accidents a 128-bit hash misses one change in 2^128, at about twenty times the
//! speed of SHA-256 (which took a fifth of an export's CPU). The layer's identity stays
//! its SHA-256, computed when the layer was made, and `fsck` re-hashes that in full.

use super::sha_pipe::PipedHashWriter;
use anyhow::{Result, bail};
use std::io::{self, Write};
use store::PackedLayer;
use xxhash_rust::xxh3::Xxh3Default;

/// The hash of a segment: xxh3-128.
pub type Segment = Xxh3Default;

/// A segment's check as a record keeps it: 32 hex digits.
pub fn format_check(hasher: &Segment) -> String {
    format!("{:032x}", hasher.digest128())
}

fn parse_check(hex: &str) -> Option<u128> {
    u128::from_str_radix(hex, 16).ok().filter(|_| hex.len() == 32)
}

/// Bytes `start..end` of a tar and their xxh3-128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expected {
    start: u64,
    end: u64,
    check: u128,
}

/// The segments a record checks its tar by: `None` when it lacks a check for any of
/// them (a record made before the checks) or they do not add up to its size.
fn expected(packed: &PackedLayer) -> Option<Vec<Expected>> {
    let recorded = super::resume::Recorded::from_value(packed.resume.as_ref()?)?;
    let mut segments = Vec::with_capacity(recorded.checkpoints.len() + 1);
    let mut start = 0;
    for c in &recorded.checkpoints {
        let check = parse_check(c.check.as_deref()?)?;
        if c.offset <= start {
            return None;
        }
        segments.push(Expected { start, end: c.offset, check });
        start = c.offset;
    }
    let check = parse_check(recorded.last_check.as_deref()?)?;
    if packed.size <= start {
        return None;
    }
    segments.push(Expected { start, end: packed.size, check });
    Some(segments)
}

/// What a reader says when the tar is not the layer's.
fn changed(packed: &PackedLayer, what: &str) -> String {
    format!(
        "layer {}: snapshot {} no longer gives the layer's tar ({what}): the snapshot was changed behind the \
         builder's back",
        packed.diff_id, packed.snapshot
    )
}

/// Passes a packed layer's tar on to `W` and checks it as it goes: by segments where
/// the record has their checks, else by its SHA-256.
pub enum LayerCheck<W: Write> {
    Segments(SegmentChecker<W>),
    Digest(PipedHashWriter<W>, PackedLayer),
}

impl<W: Write> LayerCheck<W> {
    pub fn new(packed: &PackedLayer, inner: W) -> Self {
        match expected(packed) {
            Some(segments) => LayerCheck::Segments(SegmentChecker {
                inner,
                packed: packed.clone(),
                segments,
                next: 0,
                offset: 0,
                hasher: Segment::new(),
                failed: None,
            }),
            None => LayerCheck::Digest(PipedHashWriter::new(inner), packed.clone()),
        }
    }

    /// `W`, once every byte was checked; an error (naming the layer, the snapshot and
    /// what differs) when the tar is not the layer's.
    pub fn finish(self) -> Result<W> {
        match self {
            LayerCheck::Segments(checker) => checker.finish(),
            LayerCheck::Digest(hashing, packed) => {
                let (out, found, size) = hashing.finish();
                if found != packed.diff_id || size != packed.size {
                    let what = format!("it hashes to {found}, {size} bytes; the layer has {} bytes", packed.size);
                    bail!(changed(&packed, &what));
                }
                Ok(out)
            }
        }
    }
}

impl<W: Write> Write for LayerCheck<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LayerCheck::Segments(checker) => checker.write(buf),
            LayerCheck::Digest(hashing, _) => hashing.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LayerCheck::Segments(checker) => checker.inner.flush(),
            LayerCheck::Digest(hashing, _) => hashing.flush(),
        }
    }
}

/// [`LayerCheck`] by segments.
pub struct SegmentChecker<W> {
    inner: W,
    packed: PackedLayer,
    segments: Vec<Expected>,
    /// The segment being passed.
    next: usize,
    /// Bytes passed on so far.
    offset: u64,
    hasher: Segment,
    /// The first mismatch: every later write fails with it too.
    failed: Option<String>,
}

impl<W: Write> SegmentChecker<W> {
    fn pass(&mut self, mut bytes: &[u8]) -> std::result::Result<(), String> {
        while !bytes.is_empty() {
            let Some(segment) = self.segments.get(self.next).copied() else {
                let what = format!("it is longer than the layer's {} bytes", self.packed.size);
                return Err(changed(&self.packed, &what));
            };
            let n = bytes.len().min((segment.end - self.offset) as usize);
            self.hasher.update(&bytes[..n]);
            self.offset += n as u64;
            bytes = &bytes[n..];
            if self.offset == segment.end {
                if self.hasher.digest128() != segment.check {
                    let what = format!("bytes {}..{} differ from the layer's", segment.start, segment.end);
                    return Err(changed(&self.packed, &what));
                }
                self.hasher.reset();
                self.next += 1;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<W> {
        if let Some(message) = self.failed {
            bail!(message);
        }
        if let Some(segment) = self.segments.get(self.next) {
            let what = format!(
                "it ends at byte {}, in bytes {}..{} of the layer's {} bytes",
                self.offset, segment.start, segment.end, self.packed.size
            );
            bail!(changed(&self.packed, &what));
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for SegmentChecker<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(message) = &self.failed {
            return Err(io::Error::other(message.clone()));
        }
        let n = self.inner.write(buf)?;
        if let Err(message) = self.pass(&buf[..n]) {
            self.failed = Some(message.clone());
            return Err(io::Error::other(message));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
