//! Imported caches (`--cache-from`): [`ImportingCacheStore`] answers lookups from the
//! local [`DiskCacheStore`] first, then from each imported cache in the order given.
//!
//! Imports are lazy: only the cache config is read up front. The layer blobs of an
//! imported record are copied into the store when the record is hit, before the
//! solver decodes the result (which needs them in the store); the record is then
//! written to the local cache too, so the next build hits locally.

use super::DiskCacheStore;
use super::format::CacheConfig;
use crate::image::LayerInfo;
use crate::store::Store;
use anyhow::Result;
use solver::cache::CacheStoreError;
use solver::{CacheKey, CacheRecord, CacheStore};
use std::collections::HashMap;
use std::sync::Mutex;

/// Where the blobs of an imported cache come from.
pub trait BlobSource: Send + Sync {
    /// Puts the layer's blob into the store, verified.
    fn fetch(&self, store: &Store, layer: &LayerInfo) -> Result<()>;
}

/// One `--cache-from` source, read.
pub struct ImportedCache {
    /// How the source is named to the user (`type=local,src=/c`).
    pub name: String,
    pub config: CacheConfig,
    pub blobs: Box<dyn BlobSource>,
    records: HashMap<CacheKey, usize>,
    steps: HashMap<String, usize>,
}

impl ImportedCache {
    pub fn new(name: String, config: CacheConfig, blobs: Box<dyn BlobSource>) -> ImportedCache {
        let mut records = HashMap::new();
        let mut steps = HashMap::new();
        for (i, record) in config.records.iter().enumerate() {
            records.insert(record.key, i);
            if let Some(step) = &record.step_id {
                steps.insert(step.clone(), i);
            }
        }
        ImportedCache { name, config, blobs, records, steps }
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

    /// The import a hit on `key` came from, if it came from one.
    #[allow(dead_code, reason = "for --explain, not wired yet")]
    pub fn hit_source(&self, key: &CacheKey) -> Option<String> {
        self.hits.lock().unwrap().get(key).cloned()
    }

    fn has_layers(&self, record: &CacheRecord) -> bool {
        serde_json::from_slice::<Vec<LayerInfo>>(&record.result)
            .is_ok_and(|layers| layers.iter().all(|l| self.store.has_blob(&l.digest)))
    }

    /// Copies the blobs an imported record needs into the store.
    fn fetch(&self, import: &ImportedCache, record: &CacheRecord) -> Result<()> {
        let layers: Vec<LayerInfo> = serde_json::from_slice(&record.result)?;
        for layer in layers.iter().filter(|l| !self.store.has_blob(&l.digest)) {
            import.blobs.fetch(self.store, layer)?;
        }
        Ok(())
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
            match self.fetch(import, &record) {
                Ok(()) => {
                    self.local.put(&record)?;
                    self.hits.lock().unwrap().insert(*key, import.name.clone());
                    return Ok(Some(record));
                }
                Err(e) => tracing::warn!("cache {}: {e:#}", import.name),
            }
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
}
