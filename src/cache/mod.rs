//! The on-disk cache: [`DiskCacheStore`] keeps [`solver::CacheRecord`]s under
//! `<store root>/cache/`.
//!
//! Layout, one small file per entry so that no write can damage another entry:
//!
//! ```text
//! records/<key hex>.json     builder-cache-v1 <blake3 of the body>\n<CacheRecord JSON>
//! steps/<blake3(step id)>    <key hex>\n   (the step's latest record, for explanations)
//! tmp/                       files being written
//! ```
//!
//! Every file is written to `tmp/`, flushed and renamed into place, so a reader (in
//! this process or another) sees the old file or the new one, never a half-written
//! one. Records are fsynced before the rename and survive `kill -9` and power loss;
//! step pointers are hints and skip the fsync. A record whose checksum, JSON or key
//! does not match is a miss, never an error: the step simply runs again and
//! overwrites it.

mod claim;
pub mod export;
pub mod format;
pub mod git_repos;
pub mod holder;
pub mod import;
pub mod local;
pub mod mounts;
pub mod recorded;
pub mod registry;
pub mod session;
pub mod spec;
pub mod usage;

pub use holder::StoreExt;
pub use recorded::RecordedLayers;
pub use session::Session;

use anyhow::{Context as _, Result};
use solver::cache::CacheStoreError;
use solver::{CacheKey, CacheRecord, CacheStore};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const MAGIC: &str = "builder-cache-v1";

/// Temp files older than this are left over from a killed process.
const STALE_TMP: Duration = Duration::from_secs(24 * 60 * 60);

pub struct DiskCacheStore {
    dir: PathBuf,
}

impl DiskCacheStore {
    /// Opens (creating if needed) the cache in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        for sub in ["records", "steps", "tmp"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        let store = DiskCacheStore { dir: dir.to_path_buf() };
        store.remove_stale_tmp();
        Ok(store)
    }

    /// Whether the cache in `dir` holds no record (or does not exist yet): then no
    /// step of a build can be a hit (`crate::rootless` builds inside at once).
    pub fn is_empty_at(dir: &Path) -> bool {
        fs::read_dir(dir.join("records")).map_or(true, |mut entries| entries.next().is_none())
    }

    /// The keys of every record, for GC ([`holder`]).
    pub fn keys(&self) -> Result<Vec<CacheKey>> {
        let dir = self.dir.join("records");
        let mut keys = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let name = entry.with_context(|| format!("reading {}", dir.display()))?.file_name();
            if let Some(key) = name.to_str().and_then(|n| n.strip_suffix(".json")).and_then(CacheKey::from_hex) {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Forgets a record (prune); explanations of its step then say "first build".
    pub fn remove(&self, key: &CacheKey) -> Result<()> {
        let path = self.record_path(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", path.display())),
            _ => Ok(()),
        }
    }

    fn record_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join("records").join(format!("{}.json", key.to_hex()))
    }

    fn step_path(&self, step_id: &str) -> PathBuf {
        self.dir.join("steps").join(blake3::hash(step_id.as_bytes()).to_hex().as_str())
    }

    /// Writes `data` to `path` through a temp file in the cache's `tmp/` (the process
    /// id first in its name, for [`Self::remove_stale_tmp`]) and a rename.
    fn write_atomic(&self, path: &Path, data: &[u8], durability: store::Durability) -> std::io::Result<()> {
        let temp = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .suffix(&format!("-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("entry")))
            .tempfile_in(self.dir.join("tmp"))?;
        store::replace(temp, path, data, durability)
    }

    fn remove_stale_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.dir.join("tmp")) else { return };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_TMP);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn store_error(
    action: &'static str,
    path: &Path,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> CacheStoreError {
    CacheStoreError::new(action, path.display(), e)
}

/// The bytes of a record file.
fn encode(record: &CacheRecord) -> Vec<u8> {
    let body = serde_json::to_vec(record).expect("cache records serialize");
    let mut out = format!("{MAGIC} {}\n", blake3::hash(&body).to_hex()).into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Why a record file is unusable (the caller names the file).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DamagedRecord {
    #[error("no header")]
    NoHeader,
    #[error("header is not utf-8")]
    HeaderNotUtf8,
    #[error("malformed header")]
    MalformedHeader,
    #[error("unknown format {magic:?}")]
    UnknownFormat { magic: String },
    #[error("checksum mismatch")]
    ChecksumMismatch,
    #[error("{0}")]
    Json(serde_json::Error),
    #[error("holds key {found}")]
    WrongKey { found: CacheKey },
}

/// The record in a record file, or why it is unusable.
fn decode(bytes: &[u8], key: &CacheKey) -> Result<CacheRecord, DamagedRecord> {
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or(DamagedRecord::NoHeader)?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| DamagedRecord::HeaderNotUtf8)?;
    let (magic, checksum) = header.split_once(' ').ok_or(DamagedRecord::MalformedHeader)?;
    if magic != MAGIC {
        return Err(DamagedRecord::UnknownFormat { magic: magic.to_string() });
    }
    let body = &bytes[newline + 1..];
    if blake3::hash(body).to_hex().as_str() != checksum {
        return Err(DamagedRecord::ChecksumMismatch);
    }
    let record: CacheRecord = serde_json::from_slice(body).map_err(DamagedRecord::Json)?;
    if record.key != *key {
        return Err(DamagedRecord::WrongKey { found: record.key });
    }
    Ok(record)
}

impl CacheStore for DiskCacheStore {
    fn get(&self, key: &CacheKey) -> Result<Option<CacheRecord>, CacheStoreError> {
        let path = self.record_path(key);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(store_error("reading", &path, e)),
        };
        match decode(&bytes, key) {
            Ok(record) => Ok(Some(record)),
            Err(why) => {
                tracing::warn!("ignoring damaged cache record {}: {why}", path.display());
                Ok(None)
            }
        }
    }

    fn put(&self, record: &CacheRecord) -> Result<(), CacheStoreError> {
        let path = self.record_path(&record.key);
        self.write_atomic(&path, &encode(record), store::Durability::Synced)
            .map_err(|e| store_error("writing", &path, e))?;
        if let Some(step) = &record.step_id {
            self.set_last_for_step(step, &record.key)?;
        }
        Ok(())
    }

    fn last_for_step(&self, step_id: &str) -> Result<Option<CacheRecord>, CacheStoreError> {
        let path = self.step_path(step_id);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidData) => return Ok(None),
            Err(e) => return Err(store_error("reading", &path, e)),
        };
        match CacheKey::from_hex(text.trim()) {
            Some(key) => self.get(&key),
            None => Ok(None),
        }
    }

    fn try_claim(&self, key: &CacheKey) -> Result<solver::ClaimAttempt, CacheStoreError> {
        claim::try_claim(&self.dir, key)
    }

    fn set_last_for_step(&self, step_id: &str, key: &CacheKey) -> Result<(), CacheStoreError> {
        let path = self.step_path(step_id);
        let line = format!("{}\n", key.to_hex());
        if fs::read_to_string(&path).is_ok_and(|old| old == line) {
            return Ok(());
        }
        self.write_atomic(&path, line.as_bytes(), store::Durability::Renamed)
            .map_err(|e| store_error("writing", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use solver::cache::DepRecord;
    use solver::ir::{Op, SourceOp};

    fn record(n: u32, step: &str) -> CacheRecord {
        CacheRecord {
            key: CacheKey::of("test", &n),
            step_id: Some(step.to_string()),
            name: format!("step {n}"),
            op: Op::Source(SourceOp::Scratch),
            facts: vec![("image".into(), "sha256:00".into())],
            deps: vec![DepRecord {
                key: Some(CacheKey::of("dep", &n)),
                content: None,
                name: Some("base".into()),
                facts: vec![("image".into(), "sha256:00".into())],
            }],
            result: vec![1, 2, 3, n as u8],
        }
    }

    #[test]
    fn round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskCacheStore::open(dir.path()).unwrap();
        let r = record(1, "Dockerfile:0:1");
        assert_eq!(store.get(&r.key).unwrap(), None);
        store.put(&r).unwrap();
        assert_eq!(store.get(&r.key).unwrap(), Some(r.clone()));
        let reopened = DiskCacheStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get(&r.key).unwrap(), Some(r));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn keys_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskCacheStore::open(dir.path()).unwrap();
        let (a, b) = (record(1, "s"), record(2, "t"));
        store.put(&a).unwrap();
        store.put(&b).unwrap();
        let mut expected = vec![a.key, b.key];
        expected.sort();
        assert_eq!(store.keys().unwrap(), expected);
        store.remove(&a.key).unwrap();
        store.remove(&a.key).unwrap();
        assert_eq!(store.keys().unwrap(), [b.key]);
        assert_eq!(store.get(&a.key).unwrap(), None);
        assert_eq!(store.last_for_step("s").unwrap(), None);
    }

    #[test]
    fn last_for_step_follows_puts_and_hits() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskCacheStore::open(dir.path()).unwrap();
        assert_eq!(store.last_for_step("s").unwrap(), None);
        let (a, b) = (record(1, "s"), record(2, "s"));
        store.put(&a).unwrap();
        store.put(&b).unwrap();
        assert_eq!(store.last_for_step("s").unwrap(), Some(b.clone()));
        store.set_last_for_step("s", &a.key).unwrap();
        assert_eq!(store.last_for_step("s").unwrap(), Some(a));
        assert_eq!(store.last_for_step("other").unwrap(), None);
    }

    #[test]
    fn an_unreadable_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskCacheStore::open(dir.path()).unwrap();
        let r = record(1, "s");
        // Not damage (that is a miss): the file cannot be read at all.
        fs::create_dir_all(store.record_path(&r.key)).unwrap();
        let err = store.get(&r.key).unwrap_err();
        assert_eq!(err.action, "reading");
        assert_eq!(err.subject, store.record_path(&r.key).display().to_string());
        let text = format!("{:#}", anyhow::Error::from(err));
        assert!(
            text.starts_with("cache store: reading ") && text.ends_with(": Is a directory (os error 21)"),
            "{text}"
        );
        // One message with the cause (the solver logs it with `{}`), not repeated by a chain.
        assert_eq!(text.matches("Is a directory").count(), 1, "{text}");
    }

    #[test]
    fn damaged_records_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskCacheStore::open(dir.path()).unwrap();
        let r = record(1, "s");
        store.put(&r).unwrap();
        let path = store.record_path(&r.key);
        let good = fs::read(&path).unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let other_key = encode(&record(2, "s"));
        for bad in [&good[..good.len() / 2], &good[..10], b"", b"\xff\xfe garbage\n{}", &flipped, &other_key] {
            fs::write(&path, bad).unwrap();
            assert_eq!(store.get(&r.key).unwrap(), None, "{:?}", String::from_utf8_lossy(bad));
            assert_eq!(store.last_for_step("s").unwrap(), None);
        }
        fs::write(store.step_path("s"), b"not a key\xff").unwrap();
        assert_eq!(store.last_for_step("s").unwrap(), None);
        // Writing again repairs the entry.
        store.put(&r).unwrap();
        assert_eq!(store.get(&r.key).unwrap(), Some(r));
    }

    #[test]
    fn concurrent_writers_never_expose_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskCacheStore::open(dir.path()).unwrap();
        let r = record(7, "s");
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20 {
                        store.put(&r).unwrap();
                        assert_eq!(store.get(&r.key).unwrap(), Some(r.clone()));
                    }
                });
            }
        });
    }

    /// Run by `survives_kill_9` in a child process: writes records until killed.
    #[test]
    #[ignore = "helper of survives_kill_9"]
    fn write_until_killed() {
        let Some(dir) = std::env::var_os("BUILDER_CACHE_KILL_TEST") else { return };
        let store = DiskCacheStore::open(Path::new(&dir)).unwrap();
        for n in 0.. {
            let mut r = record(n, "s");
            r.result = vec![n as u8; 64 * 1024];
            store.put(&r).unwrap();
        }
    }

    #[test]
    fn survives_kill_9() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "cache::tests::write_until_killed", "--ignored", "--quiet"])
            .env("BUILDER_CACHE_KILL_TEST", dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let records = dir.path().join("records");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while fs::read_dir(&records).map_or(0, |d| d.count()) < 20 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = DiskCacheStore::open(dir.path()).unwrap();
        let mut found = 0;
        for entry in fs::read_dir(&records).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let key = CacheKey::from_hex(name.trim_end_matches(".json")).unwrap();
            let record = store.get(&key).unwrap().expect("every record in place is whole");
            assert_eq!(record.result.len(), 64 * 1024);
            found += 1;
        }
        assert!(found >= 20);
        let last = store.last_for_step("s").unwrap().expect("the step points at a whole record");
        assert_eq!(last.step_id.as_deref(), Some("s"));
    }
}
