//! What a key is made of ([`CacheMap`]), what the cache remembers about it
//! ([`CacheRecord`]), and where it is kept ([`CacheStore`]).

use crate::ir::Op;
use crate::key::CacheKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// How a vertex's key depends on one of its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DepKind {
    /// The input's own cache key.
    Key,
    /// A digest of the content the vertex selects from the resolved input (e.g. the
    /// context files a COPY reads); the input's key does not count.
    Content,
    /// The input's key and the content digest both count.
    KeyAndContent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepSpec {
    pub kind: DepKind,
    /// Which part of the input the vertex reads (a path), if not all of it.
    pub selector: Option<String>,
}

/// What a worker says a vertex's key is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMap {
    /// Digest of the op itself (normally `CacheKey::of("op", &vertex.op)`, but a
    /// source may substitute what it resolved to, e.g. an image's manifest digest).
    pub digest: CacheKey,
    /// Human-readable facts behind `digest` when the op alone does not show them
    /// (e.g. `("image", "sha256:...")`), used to explain a miss.
    pub facts: Vec<(String, String)>,
    /// One per input of the vertex, in order.
    pub deps: Vec<DepSpec>,
}

/// A digest of selected content, with the per-path digests that made it so a miss
/// can name the file that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentDigest {
    pub digest: CacheKey,
    /// `(path, digest)` pairs, sorted by path.
    pub entries: Vec<(String, String)>,
}

/// What a dependency contributed to a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepRecord {
    pub key: Option<CacheKey>,
    pub content: Option<ContentDigest>,
    /// The input vertex's name when the record was made, so a miss can say which
    /// input changed. Absent in records written before it existed.
    #[serde(default)]
    pub name: Option<String>,
    /// The input's own facts (e.g. the image a `FROM` resolved to), so a miss caused
    /// by an input that keeps no record of its own (a source) can still say what
    /// changed in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<(String, String)>,
}

/// One cache entry: the key, the inputs that made it, and the worker's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    pub key: CacheKey,
    pub step_id: Option<String>,
    pub name: String,
    pub op: Op,
    pub facts: Vec<(String, String)>,
    pub deps: Vec<DepRecord>,
    /// The worker's encoding of the result (see [`crate::Worker::encode_result`]).
    pub result: Vec<u8>,
}

/// A cache store's failure: what it was doing (`action`) on what (`subject`: a file,
/// a record), and the store's own error (boxed: the solver knows no store's error
/// types). One message, `cache store: reading <path>: <cause>`, and no `source`: the
/// solver logs some of these with `{}` alone, so the cause must be in the message
/// (a caller whose error has a chain passes it whole, `{:#}`), and a chain printed
/// whole would then repeat it.
#[derive(Debug, thiserror::Error)]
#[error("cache store: {action} {subject}: {cause}")]
pub struct CacheStoreError {
    pub action: &'static str,
    pub subject: String,
    pub cause: Box<dyn std::error::Error + Send + Sync>,
}

impl CacheStoreError {
    pub fn new(
        action: &'static str,
        subject: impl std::fmt::Display,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        CacheStoreError { action, subject: subject.to_string(), cause: cause.into() }
    }
}

/// The right to compute one key among the processes sharing a cache store, held until
/// dropped (see [`CacheStore::try_claim`]).
pub struct Claim(#[expect(dead_code, reason = "held for its Drop")] Box<dyn Send>);

impl Claim {
    /// A claim that lasts as long as `guard` (e.g. a locked file).
    pub fn new(guard: Box<dyn Send>) -> Claim {
        Claim(guard)
    }
}

/// What [`CacheStore::try_claim`] says.
pub enum ClaimAttempt {
    /// This process computes the key until the claim is dropped.
    Claimed(Claim),
    /// Another process computes it now: wait, then look it up again.
    Busy,
    /// The store does not coordinate processes.
    Unsupported,
}

/// Persistent map from keys to records. Implementations must be safe for
/// concurrent use and must never expose a half-written record.
pub trait CacheStore: Send + Sync {
    fn get(&self, key: &CacheKey) -> Result<Option<CacheRecord>, CacheStoreError>;
    fn put(&self, record: &CacheRecord) -> Result<(), CacheStoreError>;
    /// The most recent record written for a step, to explain why it missed.
    fn last_for_step(&self, step_id: &str) -> Result<Option<CacheRecord>, CacheStoreError>;

    /// Notes that the step's latest result is the existing record `key` (a cache hit),
    /// so the next miss of the step is explained against it. A hint: the default
    /// forgets it, and implementations need not make it durable.
    fn set_last_for_step(&self, step_id: &str, key: &CacheKey) -> Result<(), CacheStoreError> {
        let _ = (step_id, key);
        Ok(())
    }

    /// For a hit that [`CacheStore::get`] just answered, where it came from, when
    /// not the local cache: how the imported cache is named to the user (e.g.
    /// `type=local,src=/c`). `None` for local hits and for stores that import nothing.
    fn hit_source(&self, key: &CacheKey) -> Option<String> {
        let _ = key;
        None
    }

    /// Claims `key` for this process, without waiting: so that an identical step of
    /// concurrent builds sharing the store runs once (the solver waits while another
    /// process holds the claim, then finds its record). The default coordinates nothing.
    fn try_claim(&self, key: &CacheKey) -> Result<ClaimAttempt, CacheStoreError> {
        let _ = key;
        Ok(ClaimAttempt::Unsupported)
    }
}

/// An in-memory cache store, for tests and `--no-cache` style throwaway builds.
#[derive(Default)]
pub struct MemoryCacheStore {
    records: Mutex<HashMap<CacheKey, CacheRecord>>,
    steps: Mutex<HashMap<String, CacheKey>>,
}

impl CacheStore for MemoryCacheStore {
    fn get(&self, key: &CacheKey) -> Result<Option<CacheRecord>, CacheStoreError> {
        Ok(self.records.lock().unwrap().get(key).cloned())
    }

    fn put(&self, record: &CacheRecord) -> Result<(), CacheStoreError> {
        if let Some(step) = &record.step_id {
            self.steps.lock().unwrap().insert(step.clone(), record.key);
        }
        self.records.lock().unwrap().insert(record.key, record.clone());
        Ok(())
    }

    fn last_for_step(&self, step_id: &str) -> Result<Option<CacheRecord>, CacheStoreError> {
        let key = self.steps.lock().unwrap().get(step_id).copied();
        Ok(key.and_then(|k| self.records.lock().unwrap().get(&k).cloned()))
    }

    fn set_last_for_step(&self, step_id: &str, key: &CacheKey) -> Result<(), CacheStoreError> {
        self.steps.lock().unwrap().insert(step_id.to_string(), *key);
        Ok(())
    }
}
