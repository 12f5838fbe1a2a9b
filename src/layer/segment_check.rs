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
//! accidents a 128-bit hash misses one change in 2^128, at over ten times the
//! speed of SHA-256 (which took a fifth of an export's CPU). The layer's identity stays
//! its SHA-256, computed when the layer was made, and `fsck` re-hashes that in full.

use super::sha_pipe::PipedHashWriter;
use super::tar_sink::TarSink;
use anyhow::{Result, bail};
use std::io::{self, Read, Write};
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
    /// Boxed: the xxh3 state is half a kilobyte.
    Segments(Box<SegmentChecker<W>>),
    Digest(PipedHashWriter<W>, PackedLayer),
}

impl<W: Write> LayerCheck<W> {
    pub fn new(packed: &PackedLayer, inner: W) -> Self {
        match expected(packed) {
            Some(segments) => LayerCheck::Segments(Box::new(SegmentChecker {
                inner,
                checking: Checking {
                    packed: packed.clone(),
                    segments,
                    next: 0,
                    offset: 0,
                    hasher: Segment::new(),
                    failed: None,
                },
            })),
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

impl<W: TarSink> TarSink for LayerCheck<W> {
    fn write_from<'a>(&'a mut self, file: &mut dyn Read, scratch: &'a mut [u8]) -> io::Result<&'a [u8]> {
        match self {
            LayerCheck::Segments(checker) => checker.write_from(file, scratch),
            LayerCheck::Digest(hashing, _) => hashing.write_from(file, scratch),
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
    checking: Checking,
}

/// Where a [`SegmentChecker`] is in the tar.
struct Checking {
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

impl Checking {
    /// Counts and hashes bytes passed on, comparing each segment as its end passes.
    fn pass(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(message) = &self.failed {
            return Err(io::Error::other(message.clone()));
        }
        if let Err(message) = self.segments_of(bytes) {
            self.failed = Some(message.clone());
            return Err(io::Error::other(message));
        }
        Ok(())
    }

    fn segments_of(&mut self, mut bytes: &[u8]) -> std::result::Result<(), String> {
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

    fn finish(self) -> Result<()> {
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
        Ok(())
    }
}

impl<W: Write> SegmentChecker<W> {
    fn finish(self) -> Result<W> {
        self.checking.finish()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SegmentChecker<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(message) = &self.checking.failed {
            return Err(io::Error::other(message.clone()));
        }
        let n = self.inner.write(buf)?;
        self.checking.pass(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: TarSink> TarSink for SegmentChecker<W> {
    fn write_from<'a>(&'a mut self, file: &mut dyn Read, scratch: &'a mut [u8]) -> io::Result<&'a [u8]> {
        if let Some(message) = &self.checking.failed {
            return Err(io::Error::other(message.clone()));
        }
        let bytes = self.inner.write_from(file, scratch)?;
        self.checking.pass(bytes)?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::super::resume::{Checkpoint, Hashed, Recorded, hash_tar_every};
    use super::super::tar_writer::{TarOptions, write_tar};
    use super::*;
    use image_spec::Digest;
    use std::fs;
    use std::path::Path;

    /// Segments of at least this many bytes: the tree below has a dozen.
    const EVERY: u64 = 8192;

    /// 60 files of 1-4 KiB in three directories, all of one mtime.
    fn tree(dir: &Path) {
        for i in 0..60 {
            let sub = dir.join(format!("d{}", i % 3));
            fs::create_dir_all(&sub).unwrap();
            fs::write(sub.join(format!("f{i:02}")), format!("{i} ").repeat(300 + i * 23)).unwrap();
        }
        stamp(dir);
    }

    fn stamp(dir: &Path) {
        let t = filetime::FileTime::from_unix_time(1_700_000_000, 0);
        for e in walkdir::WalkDir::new(dir).contents_first(true) {
            filetime::set_symlink_file_times(e.unwrap().path(), t, t).unwrap();
        }
    }

    fn hash(dir: &Path, previous: &[Checkpoint]) -> Hashed {
        hash_tar_every(dir, &TarOptions::default(), previous, EVERY).unwrap()
    }

    fn record(hashed: &Hashed, recorded: &impl serde::Serialize) -> PackedLayer {
        PackedLayer {
            diff_id: hashed.digest.clone(),
            snapshot: Digest::of(b"the snapshot"),
            size: hashed.size,
            mtime_clamp: None,
            resume: Some(serde_json::to_value(recorded).unwrap()),
        }
    }

    /// The tar of `dir` through a [`LayerCheck`] of `packed`: the bytes it passed on
    /// (also when it failed), and its verdict.
    fn read(dir: &Path, packed: &PackedLayer) -> (Vec<u8>, Result<()>) {
        let mut passed = Vec::new();
        let checking = LayerCheck::new(packed, &mut passed);
        let verdict = write_tar(dir, checking, &TarOptions::default()).and_then(|c| c.finish().map(drop));
        (passed, verdict)
    }

    fn is_by_segments(packed: &PackedLayer) -> bool {
        matches!(LayerCheck::new(packed, io::sink()), LayerCheck::Segments(_))
    }

    /// The segment (start, end) byte `at` of the tar is in.
    fn segment_of(packed: &PackedLayer, at: u64) -> (u64, u64) {
        let s = expected(packed).unwrap().into_iter().find(|s| s.start <= at && at < s.end).unwrap();
        (s.start, s.end)
    }

    /// Where `needle` (unique) is in `haystack`.
    fn find(haystack: &[u8], needle: &[u8]) -> u64 {
        haystack.windows(needle.len()).position(|w| w == needle).unwrap() as u64
    }

    #[test]
    fn an_unchanged_tar_passes_its_segment_checks() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        let hashed = hash(dir.path(), &[]);
        let packed = record(&hashed, &hashed.recorded);
        assert!(is_by_segments(&packed));
        assert!(expected(&packed).unwrap().len() >= 6, "{:?}", expected(&packed));
        let (bytes, verdict) = read(dir.path(), &packed);
        verdict.unwrap();
        assert_eq!(bytes.len() as u64, hashed.size);
        assert_eq!(Digest::of(&bytes), hashed.digest);
    }

    #[test]
    fn a_byte_changed_in_a_middle_segment_fails_naming_its_range() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        let hashed = hash(dir.path(), &[]);
        let packed = record(&hashed, &hashed.recorded);
        let (tar, _) = read(dir.path(), &packed);
        // A file in the middle of the tar, one byte changed in place (same size, same
        // mtime: nothing but its content tells).
        let file = dir.path().join("d1/f31");
        let mut content = fs::read(&file).unwrap();
        let at = find(&tar, &content);
        let (start, end) = segment_of(&packed, at);
        assert!(start > 0 && end < hashed.size, "{start}..{end} of {}", hashed.size);
        content[100] ^= 1;
        fs::write(&file, &content).unwrap();
        stamp(dir.path());

        let (passed, verdict) = read(dir.path(), &packed);
        let message = format!("{:#}", verdict.unwrap_err());
        assert!(message.contains(&format!("bytes {start}..{end} differ")), "{message}");
        assert!(message.contains(packed.diff_id.as_str()) && message.contains(packed.snapshot.as_str()), "{message}");
        // Found at the end of that segment, not at the end of the tar.
        assert!((passed.len() as u64) < hashed.size, "{} bytes passed on", passed.len());
    }

    #[test]
    fn a_tar_grown_or_shrunk_fails_naming_where() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        let hashed = hash(dir.path(), &[]);
        let packed = record(&hashed, &hashed.recorded);
        let last = *expected(&packed).unwrap().last().unwrap();
        // A file added at the end: where the last segment had the closing zero blocks.
        fs::write(dir.path().join("zz"), "more").unwrap();
        let message = format!("{:#}", read(dir.path(), &packed).1.unwrap_err());
        assert!(message.contains(&format!("bytes {}..{} differ", last.start, hashed.size)), "{message}");
        // The last file removed: the tar ends early, in the last segment.
        fs::remove_file(dir.path().join("zz")).unwrap();
        let file = dir.path().join("d2/f59");
        let shrunk = hashed.size - 512 - fs::metadata(&file).unwrap().len().next_multiple_of(512);
        assert!(shrunk > last.start);
        fs::remove_file(&file).unwrap();
        stamp(dir.path());
        let message = format!("{:#}", read(dir.path(), &packed).1.unwrap_err());
        let expected = format!("it ends at byte {shrunk}, in bytes {}..{} of the layer's", last.start, hashed.size);
        assert!(message.contains(&expected), "{message}");
    }

    /// A record from before the checks (its checkpoints alone, as a bare list) is
    /// checked by its SHA-256, which still catches a change.
    #[test]
    fn a_record_without_checks_falls_back_to_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        let hashed = hash(dir.path(), &[]);
        let old: Vec<Checkpoint> =
            hashed.recorded.checkpoints.iter().map(|c| Checkpoint { check: None, ..c.clone() }).collect();
        let old_json = serde_json::to_value(&old).unwrap();
        assert!(!old_json.to_string().contains("check"), "{old_json}");
        let packed = record(&hashed, &old);
        assert!(!is_by_segments(&packed));
        // Its checkpoints still serve a next layer's hash.
        assert_eq!(Recorded::from_value(&old_json).unwrap().checkpoints, old);
        // A record with checks but no last one is no better.
        let partial = Recorded { checkpoints: hashed.recorded.checkpoints.clone(), last_check: None };
        assert!(!is_by_segments(&record(&hashed, &partial)));

        read(dir.path(), &packed).1.unwrap();
        let file = dir.path().join("d0/f03");
        let mut content = fs::read(&file).unwrap();
        content[0] ^= 1;
        fs::write(&file, &content).unwrap();
        stamp(dir.path());
        let message = format!("{:#}", read(dir.path(), &packed).1.unwrap_err());
        assert!(message.contains("hashes to") && message.contains(packed.diff_id.as_str()), "{message}");
    }

    /// A layer hashed from a previous layer's checkpoints takes their checks for the
    /// bytes it did not hash, and its readers check all of its tar with them.
    #[test]
    fn a_resumed_layers_checks_verify_its_tar() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        tree(&old);
        let first = hash(&old, &[]);
        // The same files (hard links), one near the end replaced.
        for e in walkdir::WalkDir::new(&old).min_depth(1).sort_by_file_name() {
            let e = e.unwrap();
            let target = new.join(e.path().strip_prefix(&old).unwrap());
            if e.file_type().is_dir() {
                fs::create_dir_all(&target).unwrap();
            } else {
                fs::hard_link(e.path(), &target).unwrap();
            }
        }
        fs::remove_file(new.join("d2/f56")).unwrap();
        fs::write(new.join("d2/f56"), "changed").unwrap();
        stamp(&new);
        let second = hash(&new, &first.recorded.checkpoints);
        assert!(second.resumed_at > 0);
        let kept = second.recorded.checkpoints.iter().take_while(|c| c.offset <= second.resumed_at).count();
        assert!(kept >= 2);
        assert_eq!(second.recorded.checkpoints[..kept], first.recorded.checkpoints[..kept]);

        let packed = record(&second, &second.recorded);
        assert!(is_by_segments(&packed));
        let (bytes, verdict) = read(&new, &packed);
        verdict.unwrap();
        assert_eq!(Digest::of(&bytes), second.digest);
        // A change in the part taken from the previous layer is caught by its check.
        let file = new.join("d0/f00");
        let mut content = fs::read(&file).unwrap();
        let (start, end) = segment_of(&packed, find(&bytes, &content));
        assert!(end <= second.resumed_at);
        content[7] ^= 1;
        fs::write(&file, &content).unwrap();
        stamp(&new);
        let message = format!("{:#}", read(&new, &packed).1.unwrap_err());
        assert!(message.contains(&format!("bytes {start}..{end} differ")), "{message}");
    }
}
