//! Incremental diffIDs: a COPY that changed one file of a large tree hashes its new
//! layer's tar from the last checkpoint before the first entry that differs from the
//! previous result's, not from the start.
//!
//! Every layer a step hashes keeps checkpoints (with its packed record): every few MiB,
//! at an entry boundary, the SHA-256 state there ([`ResumableSha256`]) and a proof of
//! the tar before it — a running hash of every entry's header bytes and, for a regular
//! file, the (dev, inode) and size its data comes from. Two tars with the same proof at
//! the same offset have the same bytes before it: headers are equal byte for byte, and
//! a file's data is the same inode's, which holds the same bytes because snapshots are
//! immutable (a reused file is hard-linked from the previous snapshot; a new file gets
//! a new inode, and while the previous snapshot exists none of its inode numbers can
//! be given to one). So the new layer's walk follows the previous layer's checkpoints
//! while their proofs match, reading no data, and hashes from the last one that
//! matched.
//!
//! Each checkpoint also keeps the xxh3 of the tar from the checkpoint before it (and
//! the record that of the tar after the last one): the cheap checks readers verify
//! the tar by ([`super::segment_check`]). A resumed hash takes the checkpoints it
//! follows with their checks, proven the same bytes, and computes the rest.

use super::segment_check::{Segment, format_check};
use super::sha_pipe::PipedSha256;
use super::sha_resume::{ResumableSha256, ShaState};
use super::tar_writer::{EntryObserver, FileData, TarOptions, write_tar_observed};
use anyhow::{Context as _, Result, bail};
use image_spec::Digest;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Bytes of tar between checkpoints (at least).
const EVERY: u64 = 4 << 20;

/// A point a layer's hash can be resumed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Offset in the tar: an entry boundary.
    pub offset: u64,
    /// The SHA-256 state there: eight words, hex.
    pub state: String,
    /// The proof of the tar before it (see the module docs), hex.
    pub proof: String,
    /// xxh3-128 of the tar from the checkpoint before (or the start) to this one, hex
    /// (`None` in checkpoints made before the checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// What a packed layer's record keeps for the packer (`store::PackedLayer::resume`):
/// the checkpoints, and the check of the tar after the last of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub checkpoints: Vec<Checkpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
}

impl Recorded {
    /// A record's value, in this form or the one before the checks (the checkpoints
    /// alone).
    pub fn from_value(value: &serde_json::Value) -> Option<Recorded> {
        if value.is_array() {
            let checkpoints = serde_json::from_value(value.clone()).ok()?;
            return Some(Recorded { checkpoints, last_check: None });
        }
        serde_json::from_value(value.clone()).ok()
    }
}

/// A hashed tar: its digest and size, its checkpoints and the check of its last
/// segment, and the offset its hash was resumed from (0: from the start).
pub struct Hashed {
    pub digest: Digest,
    pub size: u64,
    pub recorded: Recorded,
    pub resumed_at: u64,
}

/// Hashes the tar of `dir`, resuming from `previous` (the checkpoints of a layer whose
/// snapshot is still in the store) where the tars agree.
pub fn hash_tar_resuming(dir: &Path, options: &TarOptions, previous: &[Checkpoint]) -> Result<Hashed> {
    hash_tar_every(dir, options, previous, EVERY)
}

pub(super) fn hash_tar_every(dir: &Path, options: &TarOptions, previous: &[Checkpoint], every: u64) -> Result<Hashed> {
    let mut resumer = Resumer {
        every,
        previous,
        next: 0,
        following: !previous.is_empty(),
        matched: None,
        pending: Vec::new(),
        proof: sha2::Sha256::new(),
        hasher: PipedSha256::new(ResumableSha256::default()),
        segment: Segment::new(),
        checkpoints: Vec::new(),
        marked: Vec::new(),
        error: None,
        buf: vec![0; 256 << 10],
    };
    write_tar_observed(dir, io::sink(), options, &mut resumer)
        .with_context(|| format!("archiving {}", dir.display()))?;
    if let Some(e) = resumer.error.take() {
        return Err(e);
    }
    resumer.diverge()?;
    // Two zero blocks end a tar.
    resumer.hasher.update(&[0; 1024]);
    resumer.segment.update(&[0; 1024]);
    let last_check = Some(format_check(&resumer.segment));
    let resumed_at = resumer.matched.as_ref().map_or(0, |c| c.offset);
    let size = resumer.hasher.total();
    let (digest, states) = resumer.hasher.finish();
    let mut checkpoints = resumer.checkpoints;
    // The checkpoints this walk made wait for their states from the hashing thread.
    for (i, state) in resumer.marked.into_iter().zip(states) {
        let c = &mut checkpoints[i];
        match state {
            Some(state) if state.len == c.offset => c.state = format_state(&state),
            _ => bail!("the layer's hash has no state at entry boundary {} (a tar entry not 512-aligned?)", c.offset),
        }
    }
    Ok(Hashed { digest, size, recorded: Recorded { checkpoints, last_check }, resumed_at })
}

/// An entry walked while following: its headers and its file's path and size.
type Pending = (Vec<u8>, Option<(PathBuf, u64)>);

struct Resumer<'a> {
    /// Bytes between checkpoints (at least).
    every: u64,
    previous: &'a [Checkpoint],
    /// The next of `previous` to compare with.
    next: usize,
    /// The tar so far is the previous layer's (as far as its checkpoints tell).
    following: bool,
    /// The last of `previous` that matched.
    matched: Option<Checkpoint>,
    /// The entries since `matched` while following: hashed only if the tars part.
    pending: Vec<Pending>,
    proof: sha2::Sha256,
    hasher: PipedSha256,
    /// The xxh3 of the tar since the last checkpoint.
    segment: Segment,
    checkpoints: Vec<Checkpoint>,
    /// Which of `checkpoints` this walk made: their states come when hashing ends.
    marked: Vec<usize>,
    error: Option<anyhow::Error>,
    buf: Vec<u8>,
}

impl Resumer<'_> {
    fn proof_now(&self) -> String {
        hex::encode(self.proof.clone().finalize())
    }

    /// Stops following: hashing starts at the last matched checkpoint, with the
    /// entries walked since.
    fn diverge(&mut self) -> Result<()> {
        if !self.following {
            return Ok(());
        }
        self.following = false;
        if let Some(c) = &self.matched {
            self.hasher = PipedSha256::new(ResumableSha256::resume(parse_state(c)?));
        }
        for (headers, data) in std::mem::take(&mut self.pending) {
            self.hash_entry(&headers, data.as_ref().map(|(p, s)| (p.as_path(), None, *s)))?;
        }
        Ok(())
    }

    /// Hashes an entry: its headers and a file's data, from the file the walk opened
    /// or (an entry walked while following) opened again by its path.
    fn hash_entry(&mut self, headers: &[u8], data: Option<(&Path, Option<&File>, u64)>) -> Result<()> {
        self.hasher.update(headers);
        self.segment.update(headers);
        if let Some((path, open, size)) = data {
            let opened;
            let file = match open {
                Some(file) => file,
                None => {
                    opened = File::open(path).with_context(|| format!("opening {}", path.display()))?;
                    &opened
                }
            };
            let mut file = file.take(size);
            // Large reads: the hash is the cost here, not the syscalls.
            let mut copied = 0;
            loop {
                let n = file.read(&mut self.buf).with_context(|| format!("reading {}", path.display()))?;
                if n == 0 {
                    break;
                }
                self.hasher.update(&self.buf[..n]);
                self.segment.update(&self.buf[..n]);
                copied += n as u64;
            }
            if copied != size {
                bail!("{} shrank while it was archived", path.display());
            }
            let padding = (size.next_multiple_of(512) - size) as usize;
            self.hasher.update(&[0; 512][..padding]);
            self.segment.update(&[0; 512][..padding]);
        }
        Ok(())
    }

    fn step(&mut self, offset: u64, headers: &[u8], data: Option<FileData<'_>>) -> Result<()> {
        // Past the previous layer's last checkpoint, or past one without a boundary
        // there: the tars part (or may have), hashing starts.
        if self.following && self.previous.get(self.next).is_none_or(|c| c.offset < offset) {
            self.diverge()?;
        }
        if self.following
            && let Some(c) = self.previous.get(self.next).filter(|c| c.offset == offset)
        {
            if c.proof == self.proof_now() {
                self.matched = Some(c.clone());
                self.checkpoints.push(c.clone());
                self.pending.clear();
                self.next += 1;
            } else {
                self.diverge()?;
            }
        }
        if !self.following && offset >= self.checkpoints.last().map_or(0, |c| c.offset) + self.every {
            debug_assert_eq!(self.hasher.total(), offset);
            self.hasher.mark();
            self.marked.push(self.checkpoints.len());
            let check = Some(format_check(&self.segment));
            self.segment.reset();
            self.checkpoints.push(Checkpoint { offset, state: String::new(), proof: self.proof_now(), check });
        }
        self.proof.update(headers);
        if let Some(FileData { inode: (dev, ino), size, .. }) = data {
            self.proof.update(dev.to_le_bytes());
            self.proof.update(ino.to_le_bytes());
            self.proof.update(size.to_le_bytes());
        }
        if self.following {
            self.pending.push((headers.to_vec(), data.map(|d| (d.path.to_path_buf(), d.size))));
            Ok(())
        } else {
            self.hash_entry(headers, data.map(|d| (d.path, Some(d.file), d.size)))
        }
    }
}

impl EntryObserver for Resumer<'_> {
    fn entry(&mut self, offset: u64, headers: &[u8], data: Option<FileData<'_>>) -> bool {
        if self.error.is_none()
            && let Err(e) = self.step(offset, headers, data)
        {
            self.error = Some(e);
        }
        // Nothing goes to the tar writer's output: this observer hashes.
        false
    }
}

fn format_state(state: &ShaState) -> String {
    state.h.iter().map(|w| format!("{w:08x}")).collect()
}

fn parse_state(c: &Checkpoint) -> Result<ShaState> {
    let words = (0..8)
        .map(|i| c.state.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok()))
        .collect::<Option<Vec<u32>>>()
        .filter(|_| c.state.len() == 64 && c.offset.is_multiple_of(64));
    let Some(words) = words else { bail!("checkpoint at {} is malformed", c.offset) };
    Ok(ShaState { h: words.try_into().expect("eight words"), len: c.offset })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const EVERY_TEST: u64 = 8192;

    /// 60 files of 1-3 KiB in three directories.
    fn tree(dir: &Path) {
        for i in 0..60 {
            let sub = dir.join(format!("d{}", i % 3));
            fs::create_dir_all(&sub).unwrap();
            fs::write(sub.join(format!("f{i:02}")), format!("{i} ").repeat(300 + i * 17)).unwrap();
        }
        let t = filetime::FileTime::from_unix_time(1_700_000_000, 0);
        for e in walkdir::WalkDir::new(dir).contents_first(true) {
            filetime::set_symlink_file_times(e.unwrap().path(), t, t).unwrap();
        }
    }

    /// A copy of `from` at `to` whose files are hard links, as a COPY reusing the
    /// previous result makes it.
    fn linked_copy(from: &Path, to: &Path) {
        for e in walkdir::WalkDir::new(from).min_depth(1).sort_by_file_name() {
            let e = e.unwrap();
            let target = to.join(e.path().strip_prefix(from).unwrap());
            if e.file_type().is_dir() {
                fs::create_dir_all(&target).unwrap();
            } else {
                fs::hard_link(e.path(), &target).unwrap();
            }
        }
        let t = filetime::FileTime::from_unix_time(1_700_000_000, 0);
        for e in walkdir::WalkDir::new(to).contents_first(true) {
            filetime::set_symlink_file_times(e.unwrap().path(), t, t).unwrap();
        }
    }

    fn hash(dir: &Path, previous: &[Checkpoint]) -> Hashed {
        hash_tar_every(dir, &TarOptions::default(), previous, EVERY_TEST).unwrap()
    }

    fn plain(dir: &Path) -> (Digest, u64) {
        super::super::packed::hash_tar(dir, &TarOptions::default()).unwrap()
    }

    #[test]
    fn a_fresh_hash_is_the_tar_digest_with_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        let hashed = hash(dir.path(), &[]);
        assert_eq!((hashed.digest.clone(), hashed.size), plain(dir.path()));
        assert_eq!(hashed.resumed_at, 0);
        assert!(hashed.recorded.checkpoints.len() >= 5, "{}", hashed.recorded.checkpoints.len());
        assert!(hashed.recorded.checkpoints.windows(2).all(|w| w[1].offset >= w[0].offset + EVERY_TEST));
    }

    #[test]
    fn a_one_file_change_resumes_before_that_file_and_gives_the_full_digest() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        tree(&old);
        let first = hash(&old, &[]);

        // Unchanged: everything up to the last checkpoint is taken as it was.
        linked_copy(&old, &new);
        let same = hash(&new, &first.recorded.checkpoints);
        assert_eq!(same.digest, first.digest);
        assert_eq!(same.resumed_at, first.recorded.checkpoints.last().unwrap().offset);

        // One file of the last directory replaced (a new inode): resumed past d0 and d1.
        fs::remove_file(new.join("d2/f32")).unwrap();
        fs::write(new.join("d2/f32"), "changed").unwrap();
        let t = filetime::FileTime::from_unix_time(1_700_000_000, 0);
        filetime::set_file_times(new.join("d2/f32"), t, t).unwrap();
        filetime::set_file_times(new.join("d2"), t, t).unwrap();
        let changed = hash(&new, &first.recorded.checkpoints);
        assert_eq!((changed.digest.clone(), changed.size), plain(&new));
        assert_ne!(changed.digest, first.digest);
        assert!(changed.resumed_at > first.size / 2, "resumed at {} of {}", changed.resumed_at, first.size);

        // The same bytes in a new inode are not trusted: resumed before that file.
        fs::remove_file(new.join("d0/f03")).unwrap();
        fs::copy(old.join("d0/f03"), new.join("d0/f03")).unwrap();
        filetime::set_file_times(new.join("d0/f03"), t, t).unwrap();
        filetime::set_file_times(new.join("d0"), t, t).unwrap();
        let copied = hash(&new, &first.recorded.checkpoints);
        assert_eq!((copied.digest.clone(), copied.size), plain(&new));
        assert!(copied.resumed_at < changed.resumed_at);

        // The new layer's checkpoints serve the next one.
        let next = hash(&new, &copied.recorded.checkpoints);
        assert_eq!(next.digest, copied.digest);
        assert_eq!(next.resumed_at, copied.recorded.checkpoints.last().unwrap().offset);
    }

    #[test]
    fn files_added_at_the_end_or_removed_hash_right() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        tree(&old);
        let first = hash(&old, &[]);
        linked_copy(&old, &new);
        fs::write(new.join("zz-last"), "more").unwrap();
        let added = hash(&new, &first.recorded.checkpoints);
        assert_eq!((added.digest.clone(), added.size), plain(&new));
        assert!(added.resumed_at > 0);
        fs::remove_dir_all(new.join("d0")).unwrap();
        let removed = hash(&new, &first.recorded.checkpoints);
        assert_eq!((removed.digest, removed.size), plain(&new));
        assert_eq!(removed.resumed_at, 0);
    }
}
