//! Imported caches (`--cache-from`): [`ImportingCacheStore`] answers lookups from the
//! local [`DiskCacheStore`] first, then from each imported cache in the order given.
//!
//! Imports are lazy: only the cache config is read up front. A hit on an imported
//! record registers its layer blobs with the store as remote blobs
//! ([`Store::add_remote_blob`]); they are fetched only when something reads them (a
//! snapshot for a later step, the final image, an export). The record is written to
//! the local cache too, so the next build hits locally once the blobs are there.

use super::DiskCacheStore;
use super::RecordedLayers;
use super::format::CacheConfig;
use image_spec::LayerInfo;
use solver::cache::CacheStoreError;
use solver::{CacheKey, CacheRecord, CacheStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use store::{BlobSource, Store};

/// One `--cache-from` source, read.
pub struct ImportedCache {
    /// How the source is named to the user (`type=local,src=/c`).
    pub name: String,
    pub config: CacheConfig,
    pub blobs: Arc<dyn BlobSource>,
    /// `registry/repository` for a registry cache: where its blobs already are.
    pub origin: Option<String>,
    records: HashMap<CacheKey, usize>,
    steps: HashMap<String, usize>,
}

impl ImportedCache {
    pub fn new(name: String, config: CacheConfig, blobs: Arc<dyn BlobSource>) -> ImportedCache {
        let mut records = HashMap::new();
        let mut steps = HashMap::new();
        for (i, record) in config.records.iter().enumerate() {
            records.insert(record.key, i);
            if let Some(step) = &record.step_id {
                steps.insert(step.clone(), i);
            }
        }
        ImportedCache { name, config, blobs, origin: None, records, steps }
    }

    fn record(&self, key: &CacheKey) -> Option<CacheRecord> {
        self.records.get(key).map(|&i| self.config.records[i].to_record())
    }
}

pub struct ImportingCacheStore<'a> {
    local: DiskCacheStore,
    store: &'a Store,
    imports: Vec<ImportedCache>,
    /// Which import each imported hit came from.
    hits: Mutex<HashMap<CacheKey, String>>,
}

impl<'a> ImportingCacheStore<'a> {
    pub fn new(store: &'a Store, local: DiskCacheStore, imports: Vec<ImportedCache>) -> Self {
        ImportingCacheStore { local, store, imports, hits: Mutex::default() }
    }

    pub fn local(&self) -> &DiskCacheStore {
        &self.local
    }

    pub fn imports(&self) -> &[ImportedCache] {
        &self.imports
    }

    fn layers(record: &CacheRecord) -> Option<Vec<LayerInfo>> {
        RecordedLayers::decode(&record.result).map(|r| r.layers)
    }

    fn has_layers(&self, record: &CacheRecord) -> bool {
        Self::layers(record).is_some_and(|layers| layers.iter().all(|l| self.store.can_get_blob(&l.digest)))
    }
}

impl CacheStore for ImportingCacheStore<'_> {
    fn get(&self, key: &CacheKey) -> Result<Option<CacheRecord>, CacheStoreError> {
        let local = self.local.get(key)?;
        if let Some(record) = &local
            && self.has_layers(record)
        {
            return Ok(local);
        }
        for import in &self.imports {
            let Some(record) = import.record(key) else { continue };
            let Some(layers) = Self::layers(&record) else { continue };
            for layer in &layers {
                self.store.add_remote_blob(layer, import.blobs.clone());
            }
            self.local.put(&record)?;
            self.hits.lock().unwrap().insert(*key, import.name.clone());
            return Ok(Some(record));
        }
        Ok(local)
    }

    fn put(&self, record: &CacheRecord) -> Result<(), CacheStoreError> {
        self.local.put(record)
    }

    /// The local history first; on a fresh store, the imported step's record, so a
    /// miss is explained against what the cache's builder had.
    fn last_for_step(&self, step_id: &str) -> Result<Option<CacheRecord>, CacheStoreError> {
        if let Some(record) = self.local.last_for_step(step_id)? {
            return Ok(Some(record));
        }
        let imported = self.imports.iter().find_map(|i| i.steps.get(step_id).map(|&n| i.config.records[n].to_record()));
        Ok(imported)
    }

    fn set_last_for_step(&self, step_id: &str, key: &CacheKey) -> Result<(), CacheStoreError> {
        self.local.set_last_for_step(step_id, key)
    }

    fn try_claim(&self, key: &CacheKey) -> Result<solver::ClaimAttempt, CacheStoreError> {
        self.local.try_claim(key)
    }

    /// The import a hit on `key` came from, if it came from one.
    fn hit_source(&self, key: &CacheKey) -> Option<String> {
        self.hits.lock().unwrap().get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::format::ExportedRecord;
    use anyhow::Result;
    use image_spec::Digest;
    use solver::ir::{Op, SourceOp};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Blobs from memory, counting fetches.
    struct Blobs {
        data: HashMap<Digest, Vec<u8>>,
        fetched: std::sync::Arc<AtomicUsize>,
    }

    impl BlobSource for Blobs {
        fn name(&self) -> String {
            "memory".into()
        }
        fn fetch(&self, store: &Store, layer: &LayerInfo) -> Result<(), store::BoxError> {
            self.fetched.fetch_add(1, Ordering::SeqCst);
            let bytes = self.data.get(&layer.digest).ok_or_else(|| format!("no blob {}", layer.digest))?;
            store.write_blob(&mut &bytes[..], Some(&layer.digest))?;
            Ok(())
        }
    }

    fn record(n: u32, blob: &[u8]) -> ExportedRecord {
        ExportedRecord {
            key: CacheKey::of("test", &n),
            step_id: Some(format!("s{n}")),
            name: format!("step {n}"),
            op: Op::Source(SourceOp::Scratch),
            facts: vec![],
            deps: vec![],
            layers: vec![LayerInfo {
                digest: Digest::of(blob),
                diff_id: Digest::of(blob),
                size: blob.len() as u64,
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            }],
            made: None,
        }
    }

    #[test]
    fn imported_hits_fetch_their_blobs_lazily_and_stay_local() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let (one, two) = (record(1, b"one"), record(2, b"two"));
        let fetched = std::sync::Arc::new(AtomicUsize::new(0));
        let blobs = Blobs {
            data: HashMap::from([(Digest::of(b"one"), b"one".to_vec()), (Digest::of(b"two"), b"two".to_vec())]),
            fetched: fetched.clone(),
        };
        let config = CacheConfig::new(vec![one.clone(), two.clone()], vec![]);
        let import = ImportedCache::new("type=local,src=x".into(), config, Arc::new(blobs));
        let cache = ImportingCacheStore::new(&store, DiskCacheStore::open(cache_dir.path()).unwrap(), vec![import]);
        assert_eq!(fetched.load(Ordering::SeqCst), 0, "nothing is fetched up front");
        assert_eq!(cache.last_for_step("s2").unwrap(), Some(two.to_record()));

        assert_eq!(cache.get(&one.key).unwrap(), Some(one.to_record()));
        assert_eq!(fetched.load(Ordering::SeqCst), 0, "a hit alone fetches nothing");
        assert_eq!(cache.hit_source(&one.key).as_deref(), Some("type=local,src=x"));
        assert_eq!(cache.local().get(&one.key).unwrap(), Some(one.to_record()), "kept locally");
        assert!(store.can_get_blob(&Digest::of(b"one")) && !store.can_get_blob(&Digest::of(b"two")));

        // Reading the layer fetches it, once.
        assert_eq!(store.read_blob(&Digest::of(b"one")).unwrap(), b"one");
        assert_eq!(cache.get(&one.key).unwrap(), Some(one.to_record()));
        assert_eq!(store.read_blob(&Digest::of(b"one")).unwrap(), b"one");
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
        assert!(!store.has_blob(&Digest::of(b"two")));
        assert_eq!(cache.get(&CacheKey::of("test", &9u32)).unwrap(), None);
    }
}
