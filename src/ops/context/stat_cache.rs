//! File digests remembered by stat identity, so re-hashing an unchanged context costs
//! one `stat` per file instead of a read.
//!
//! A file is known by (device, inode, size, mtime ns, ctime ns): any write changes
//! mtime and ctime, and a `touch -m` that restores mtime still changes ctime. The
//! cache is a flat binary file (`BLDSTAT1`, a count, then fixed-size records) written
//! to a temp file and renamed over the old one, so a crash never leaves half of it.

use anyhow::{Context as _, Result, bail};
use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

const MAGIC: &[u8; 8] = b"BLDSTAT1";
const RECORD_LEN: usize = 5 * 8 + 32;
/// Past this many records only the ones used by this process are written back.
const MAX_RECORDS: usize = 1 << 21;

/// Also what a copy's memo remembers of each source it read.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct StatKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl StatKey {
    pub fn of(meta: &Metadata) -> Self {
        StatKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
            ctime_ns: meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec()),
        }
    }

    /// The five numbers, little-endian, as the cache file stores them.
    pub fn to_bytes(self) -> [u8; 40] {
        let mut out = [0; 40];
        let words = [self.dev.to_le_bytes(), self.ino.to_le_bytes(), self.size.to_le_bytes()];
        let times = [self.mtime_ns.to_le_bytes(), self.ctime_ns.to_le_bytes()];
        for (slot, word) in out.chunks_exact_mut(8).zip(words.iter().chain(&times)) {
            slot.copy_from_slice(word);
        }
        out
    }

    pub fn from_bytes(bytes: [u8; 40]) -> Self {
        let word = |i: usize| -> [u8; 8] { bytes[i * 8..i * 8 + 8].try_into().unwrap_or_default() };
        StatKey {
            dev: u64::from_le_bytes(word(0)),
            ino: u64::from_le_bytes(word(1)),
            size: u64::from_le_bytes(word(2)),
            mtime_ns: i64::from_le_bytes(word(3)),
            ctime_ns: i64::from_le_bytes(word(4)),
        }
    }
}

struct Slot {
    digest: [u8; 32],
    used: bool,
}

pub(crate) struct StatCache {
    file: Option<PathBuf>,
    entries: Mutex<HashMap<StatKey, Slot>>,
    dirty: AtomicBool,
}

impl StatCache {
    /// A cache that lives only as long as this process.
    #[cfg(test)]
    pub fn in_memory() -> Self {
        StatCache { file: None, entries: Mutex::new(HashMap::new()), dirty: AtomicBool::new(false) }
    }

    /// A cache loaded from (and later saved to) `file`; a missing or unreadable file
    /// starts an empty cache, since the cache only saves work.
    pub fn load(file: PathBuf) -> Self {
        let entries = match fs::read(&file) {
            Ok(bytes) => decode(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring stat cache {}: {e:#}", file.display());
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        StatCache { file: Some(file), entries: Mutex::new(entries), dirty: AtomicBool::new(false) }
    }

    pub fn get(&self, key: &StatKey) -> Option<[u8; 32]> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let slot = entries.get_mut(key)?;
        slot.used = true;
        Some(slot.digest)
    }

    pub fn insert(&self, key: StatKey, digest: [u8; 32]) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(key, Slot { digest, used: true });
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the cache back if it changed: temp file in the same directory, then
    /// rename.
    pub fn save(&self) -> Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let bytes = {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            encode(&entries)
        };
        write_atomically(file, &bytes)
    }
}

impl Drop for StatCache {
    fn drop(&mut self) {
        if let Err(e) = self.save() {
            tracing::warn!("saving stat cache: {e:#}");
        }
    }
}

fn encode(entries: &HashMap<StatKey, Slot>) -> Vec<u8> {
    let only_used = entries.len() > MAX_RECORDS;
    let kept: Vec<_> = entries.iter().filter(|(_, slot)| slot.used || !only_used).collect();
    let mut out = Vec::with_capacity(16 + kept.len() * RECORD_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(kept.len() as u64).to_le_bytes());
    for (key, slot) in kept {
        out.extend_from_slice(&key.to_bytes());
        out.extend_from_slice(&slot.digest);
    }
    out
}

fn decode(bytes: &[u8]) -> Result<HashMap<StatKey, Slot>> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        bail!("not a stat cache file");
    }
    let count = u64::from_le_bytes(bytes[8..16].try_into()?) as usize;
    let body = &bytes[16..];
    if body.len() != count.saturating_mul(RECORD_LEN) {
        bail!("truncated stat cache: {count} records, {} bytes", body.len());
    }
    let mut entries = HashMap::with_capacity(count);
    for record in body.chunks_exact(RECORD_LEN) {
        let key = StatKey::from_bytes(record[..40].try_into()?);
        let digest: [u8; 32] = record[40..72].try_into()?;
        entries.insert(key, Slot { digest, used: false });
    }
    Ok(entries)
}

fn write_atomically(file: &Path, bytes: &[u8]) -> Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temp =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating temp file in {}", dir.display()))?;
    // Synced as before: a stale entry that survived a crash while its file changed would
    // give a wrong digest; a lost one only costs a re-hash.
    store::replace(temp, file, bytes, store::Durability::Synced)
        .with_context(|| format!("writing stat cache {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/stat-cache");
        let probe = dir.path().join("probe");
        fs::write(&probe, b"x").unwrap();
        let key = StatKey::of(&fs::metadata(&probe).unwrap());
        {
            let cache = StatCache::load(file.clone());
            assert!(cache.get(&key).is_none());
            cache.insert(key, [7; 32]);
        }
        let cache = StatCache::load(file.clone());
        assert_eq!(cache.get(&key), Some([7; 32]));
    }

    #[test]
    fn corrupt_file_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stat-cache");
        fs::write(&file, b"BLDSTAT1\x05\0\0\0\0\0\0\0short").unwrap();
        let cache = StatCache::load(file);
        assert!(cache.entries.lock().unwrap().is_empty());
    }
}
