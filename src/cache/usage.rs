//! When each cache record was last used, for `builder prune --keep-storage` (least
//! recently used first): `cache-usage/<key hex>`, an empty file whose mtime is the last
//! hit or write. [`UsageTracking`] wraps the build's cache store to keep them, and
//! leases each record it looks up (`store::Store::lease_hold`).

use solver::cache::CacheStoreError;
use solver::{CacheKey, CacheRecord, CacheStore};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use store::Store;

/// A cache store that notes every hit and write of a record.
pub struct UsageTracking<'a> {
    inner: &'a dyn CacheStore,
    store: &'a Store,
    dir: PathBuf,
}

/// Where the marks of `store` are.
pub fn usage_dir(store: &Store) -> PathBuf {
    store.root().join("cache-usage")
}

/// `cache` with the use of its records tracked in `store`.
pub fn track_usage<'a>(store: &'a Store, cache: &'a dyn CacheStore) -> UsageTracking<'a> {
    UsageTracking { inner: cache, store, dir: usage_dir(store) }
}

/// When the record `key_hex` was last used, if that was tracked.
pub fn last_used(store: &Store, key_hex: &str) -> Option<SystemTime> {
    std::fs::metadata(usage_dir(store).join(key_hex)).and_then(|m| m.modified()).ok()
}

/// Best effort: a lost mark only makes the record look older to prune.
fn touch(dir: &Path, key: &CacheKey) {
    let path = dir.join(key.to_hex());
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path);
    let file = match file {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = std::fs::create_dir_all(dir);
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)
        }
        other => other,
    };
    if let Ok(file) = file {
        let _ = file.set_modified(SystemTime::now());
    }
}

impl CacheStore for UsageTracking<'_> {
    fn get(&self, key: &CacheKey) -> Result<Option<CacheRecord>, CacheStoreError> {
        // Leased before it is looked up, a record found stays (with what it holds)
        // through any prune that runs beside this build.
        self.store.lease_hold(&key.to_hex()).map_err(|e| {
            let cause = format!("{:#}", anyhow::Error::from(e));
            CacheStoreError::new("leasing", format_args!("cache record {key}"), cause)
        })?;
        let record = self.inner.get(key)?;
        if record.is_some() {
            touch(&self.dir, key);
        }
        Ok(record)
    }

    fn put(&self, record: &CacheRecord) -> Result<(), CacheStoreError> {
        self.inner.put(record)?;
        touch(&self.dir, &record.key);
        Ok(())
    }

    fn last_for_step(&self, step_id: &str) -> Result<Option<CacheRecord>, CacheStoreError> {
        self.inner.last_for_step(step_id)
    }

    fn set_last_for_step(&self, step_id: &str, key: &CacheKey) -> Result<(), CacheStoreError> {
        self.inner.set_last_for_step(step_id, key)
    }

    fn hit_source(&self, key: &CacheKey) -> Option<String> {
        self.inner.hit_source(key)
    }

    fn try_claim(&self, key: &CacheKey) -> Result<solver::ClaimAttempt, CacheStoreError> {
        self.inner.try_claim(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use solver::MemoryCacheStore;
    use store::testing::test_store;

    /// A store whose every hit counts as imported.
    #[derive(Default)]
    struct Imported(MemoryCacheStore);

    impl CacheStore for Imported {
        fn get(&self, key: &CacheKey) -> Result<Option<CacheRecord>, CacheStoreError> {
            self.0.get(key)
        }
        fn put(&self, record: &CacheRecord) -> Result<(), CacheStoreError> {
            self.0.put(record)
        }
        fn last_for_step(&self, step_id: &str) -> Result<Option<CacheRecord>, CacheStoreError> {
            self.0.last_for_step(step_id)
        }
        fn hit_source(&self, _: &CacheKey) -> Option<String> {
            Some("type=local,src=/c".to_string())
        }
    }

    #[test]
    fn hit_source_is_the_inner_store_s() {
        let (_d, store) = test_store();
        let key = CacheKey::of("k", &"v".to_string());
        let inner = Imported::default();
        assert_eq!(track_usage(&store, &inner).hit_source(&key).as_deref(), Some("type=local,src=/c"));
        let local = MemoryCacheStore::default();
        assert_eq!(track_usage(&store, &local).hit_source(&key), None);
    }
}
