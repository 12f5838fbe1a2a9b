//! The cache as a holder of store content: what GC (`builder du`, `prune`, `fsck`)
//! asks it. Its records hold the layer stacks of their results, its `RUN
//! --mount=type=cache` directories (`cache-mounts/<id>/`) hold themselves. The store
//! never reads the cache's files: it asks [`CacheHolder`] through
//! [`store::Holder`](store::Holder).

use super::recorded::RecordedLayers;
use super::usage::{self, UsageTracking};
use super::{DiskCacheStore, decode};
use crate::layer::Unpacker;
use anyhow::{Context as _, Result};
use solver::{CacheKey, CacheStore};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use store::{BoxError, DiskUsage, FsckReport, Hold, HoldKind, Holder, PruneOptions, PruneReport, Store, tree_size};

/// The cache of a store, as the holder GC asks.
pub struct CacheHolder {
    records: DiskCacheStore,
}

impl CacheHolder {
    pub fn open(store: &Store) -> Result<CacheHolder> {
        Ok(CacheHolder { records: DiskCacheStore::open(&store.root().join("cache"))? })
    }
}

fn mounts_dir(store: &Store) -> PathBuf {
    store.root().join("cache-mounts")
}

fn mtime(meta: &std::fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

impl CacheHolder {
    /// A record file: the layers its result holds, `None` when it is damaged.
    fn record(&self, store: &Store, key: &CacheKey) -> Result<Option<Hold>> {
        let path = self.records.record_path(key);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        // A record that cannot be read is an error (GC must not free what it may hold);
        // one that reads but does not decode is damaged: a miss for builds, released here.
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // Released by another process since the metadata call.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let layers = decode(&bytes, key).ok().and_then(|record| {
            if record.result.is_empty() {
                return Some(Vec::new());
            }
            RecordedLayers::decode(&record.result).map(|r| r.layers)
        });
        let key_hex = key.to_hex();
        let last_used = usage::last_used(store, &key_hex).map_or(mtime(&meta), |t| t.max(mtime(&meta)));
        Ok(Some(Hold {
            kind: HoldKind::CacheRecord,
            id: key_hex,
            size: tree_size(&path),
            last_used,
            damaged: layers.is_none(),
            layers: layers.unwrap_or_default(),
        }))
    }

    fn mounts(&self, store: &Store) -> Result<Vec<Hold>> {
        let dir = mounts_dir(store);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut mounts = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            mounts.push(Hold {
                kind: HoldKind::CacheMount,
                id: entry.file_name().to_string_lossy().into_owned(),
                size: tree_size(&entry.path()),
                last_used: mtime(&entry.metadata()?),
                layers: Vec::new(),
                damaged: false,
            });
        }
        mounts.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(mounts)
    }
}

impl Holder for CacheHolder {
    fn holds(&self, store: &Store) -> Result<Vec<Hold>, BoxError> {
        let mut holds = Vec::new();
        for key in self.records.keys()? {
            holds.extend(self.record(store, &key)?);
        }
        holds.extend(self.mounts(store)?);
        holds.extend(super::git_repos::holds(store)?);
        Ok(holds)
    }

    fn release(&self, store: &Store, hold: &Hold) -> Result<(), BoxError> {
        match hold.kind {
            HoldKind::CacheRecord => {
                let key = CacheKey::from_hex(&hold.id).with_context(|| format!("cache record {}", hold.id))?;
                self.records.remove(&key)?;
                let _ = std::fs::remove_file(usage::usage_dir(store).join(&hold.id));
            }
            HoldKind::CacheMount if super::git_repos::release(store, hold)? => {}
            HoldKind::CacheMount => {
                let dir = mounts_dir(store);
                store.remove_dir_atomically(&dir.join(&hold.id))?;
                // The mount's `.use`/`.lock` files beside it.
                remove_siblings(&dir, &format!("{}.", hold.id));
            }
        }
        Ok(())
    }

    /// Usage marks of records that are gone.
    fn tidy(&self, store: &Store) {
        let Ok(entries) = std::fs::read_dir(usage::usage_dir(store)) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if CacheKey::from_hex(&name).is_none_or(|key| !self.records.record_path(&key).exists()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Removes the files of `dir` whose name starts with `prefix` (best effort).
fn remove_siblings(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What the store does together with the cache: noting when records are used, and
/// GC with the cache as the holder of records and mounts.
pub trait StoreExt {
    /// `cache` with the use of its records tracked in this store.
    fn track_usage<'a>(&'a self, cache: &'a dyn CacheStore) -> UsageTracking<'a>;
    /// `builder du`.
    fn disk_usage(&self) -> Result<DiskUsage>;
    /// `builder prune`: takes the store lock exclusively (waiting for running builds).
    fn prune(&self, options: &PruneOptions) -> Result<PruneReport>;
    /// `builder fsck`, with `snapshots` comparing every snapshot with its layer.
    fn fsck(&self, snapshots: bool) -> Result<FsckReport>;
}

impl StoreExt for Store {
    fn track_usage<'a>(&'a self, cache: &'a dyn CacheStore) -> UsageTracking<'a> {
        usage::track_usage(self, cache)
    }

    fn disk_usage(&self) -> Result<DiskUsage> {
        Ok(self.gc(&CacheHolder::open(self)?).disk_usage()?)
    }

    fn prune(&self, options: &PruneOptions) -> Result<PruneReport> {
        Ok(self.gc(&CacheHolder::open(self)?).prune(options)?)
    }

    fn fsck(&self, snapshots: bool) -> Result<FsckReport> {
        Ok(self.gc(&CacheHolder::open(self)?).fsck_layers(&Unpacker, snapshots)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_spec::{Compression, ImageConfig, LayerInfo};
    use solver::CacheRecord;
    use solver::ir::{Op, SourceOp};
    use std::time::Duration;
    use store::testing::test_store;

    fn layer(store: &Store, content: &str) -> LayerInfo {
        let dir = store.temp_dir("t").unwrap();
        std::fs::write(dir.path().join("f"), content).unwrap();
        crate::layer::diff_to_layer(store, dir.path(), Compression::Gzip).unwrap().unwrap()
    }

    fn key(n: u8) -> CacheKey {
        CacheKey::from_hex(&hex::encode([n; 32])).unwrap()
    }

    /// A record of the build cache whose result is `layers`.
    fn record(store: &Store, n: u8, layers: &[LayerInfo]) {
        let cache = DiskCacheStore::open(&store.root().join("cache")).unwrap();
        let result = RecordedLayers { layers: layers.to_vec(), made: None }.encode();
        let record = CacheRecord {
            key: key(n),
            step_id: None,
            name: format!("step {n}"),
            op: Op::Source(SourceOp::Scratch),
            facts: Vec::new(),
            deps: Vec::new(),
            result,
        };
        cache.put(&record).unwrap();
    }

    fn record_path(store: &Store, n: u8) -> PathBuf {
        store.root().join("cache/records").join(format!("{}.json", key(n).to_hex()))
    }

    #[test]
    fn prune_keeps_what_refs_and_records_hold() {
        let (_d, store) = test_store();
        let by_ref = layer(&store, "ref");
        let by_cache = layer(&store, "cache");
        let loose = layer(&store, "loose");
        let config = ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..Default::default() };
        let image = store.write_image(&config, std::slice::from_ref(&by_ref)).unwrap();
        store.set_ref("app", &image.manifest_digest).unwrap();
        record(&store, 1, std::slice::from_ref(&by_cache));
        let zstd = crate::layer::ensure_compression(&store, &by_ref, Compression::Zstd, None).unwrap();

        let du = store.disk_usage().unwrap();
        assert_eq!(du.blobs.refs.count, 4, "manifest, config, layer and its zstd variant");
        assert_eq!(du.blobs.cache_only.count, 1);
        assert_eq!(du.blobs.unreferenced.count, 1);
        assert_eq!(du.cache_records.count, 1);

        let report = store.prune(&PruneOptions::default()).unwrap();
        assert_eq!((report.blobs, report.records), (1, 0));
        assert!(!store.has_blob(&loose.digest));
        assert!(store.has_blob(&by_cache.digest) && store.has_blob(&zstd.digest));

        let report = store.prune(&PruneOptions { all: true, ..Default::default() }).unwrap();
        assert_eq!((report.blobs, report.records), (1, 1));
        assert!(!record_path(&store, 1).exists());
        assert!(!store.has_blob(&by_cache.digest));
        assert!(store.has_blob(&by_ref.digest));
        assert!(store.fsck(true).unwrap().problems.is_empty());
    }

    #[test]
    fn keep_storage_drops_least_recently_used_records_first() {
        let (_d, store) = test_store();
        let old = layer(&store, &"old".repeat(100_000));
        let new = layer(&store, &"new!".repeat(100_000));
        record(&store, 1, std::slice::from_ref(&old));
        record(&store, 2, std::slice::from_ref(&new));
        let past = SystemTime::now() - Duration::from_secs(3600);
        let f = std::fs::File::options().write(true).open(record_path(&store, 1)).unwrap();
        f.set_modified(past).unwrap();
        let total = store.disk_usage().unwrap().build_total();
        let report = store.prune(&PruneOptions { keep_storage: Some(total - 1), ..Default::default() }).unwrap();
        assert_eq!(report.records, 1);
        assert!(!store.has_blob(&old.digest) && store.has_blob(&new.digest));
        assert!(store.disk_usage().unwrap().build_total() < total);
        // Until: nothing is old enough.
        let report = store
            .prune(&PruneOptions { keep_storage: Some(0), until: Some(Duration::from_secs(600)), ..Default::default() })
            .unwrap();
        assert_eq!(report.records, 0);
    }

    #[test]
    fn damaged_records_and_their_usage_marks_go_and_cache_mounts_with_all() {
        let (_d, store) = test_store();
        let l = layer(&store, "x");
        record(&store, 1, std::slice::from_ref(&l));
        record(&store, 2, std::slice::from_ref(&l));
        let cache = DiskCacheStore::open(&store.root().join("cache")).unwrap();
        assert!(store.track_usage(&cache).get(&key(2)).unwrap().is_some());
        std::fs::write(record_path(&store, 2), b"builder-cache-v1 nonsense\n{}").unwrap();
        let mount = store.root().join("cache-mounts/m1");
        std::fs::create_dir_all(&mount).unwrap();
        std::fs::write(mount.join("f"), "cached").unwrap();
        std::fs::write(store.root().join("cache-mounts/m1.use"), "").unwrap();

        let du = store.disk_usage().unwrap();
        assert_eq!((du.cache_records.count, du.cache_mounts.count), (2, 1));
        let notes = store.fsck(false).unwrap().notes;
        assert!(notes.iter().any(|n| n.contains(&key(2).to_hex()) && n.contains("damaged")), "{notes:?}");

        let report = store.prune(&PruneOptions::default()).unwrap();
        assert_eq!((report.records, report.cache_mounts), (1, 0));
        assert!(record_path(&store, 1).exists() && !record_path(&store, 2).exists());
        assert!(!usage::usage_dir(&store).join(key(2).to_hex()).exists());
        assert!(mount.exists());

        let report = store.prune(&PruneOptions { all: true, ..Default::default() }).unwrap();
        assert_eq!((report.records, report.cache_mounts), (1, 1));
        assert!(!mount.exists() && !store.root().join("cache-mounts/m1.use").exists());
        assert!(!store.has_blob(&l.digest));
    }
}
