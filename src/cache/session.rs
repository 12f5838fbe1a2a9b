//! A build's cache: the local store's records, the `--cache-from` imports behind them,
//! and what the build owes `--cache-to` at its end. [`Session::open`] imports,
//! [`Session::mount_seeds`] hands the imported cache mounts to the worker,
//! [`Session::solver_cache`] is what the solver looks keys up in (marking each hit as
//! used), [`Session::inline`] is the inline cache for the image config, and
//! [`Session::export`] writes every `--cache-to`.

use std::collections::{BTreeMap, HashMap};

use ::registry::RegistryOptions;
use anyhow::Result;
use image_spec::{LayerInfo, Platform};
use solver::{ProgressSink, SolveReport};
use store::Store;

use super::StoreExt as _;
use super::export::{self, ExportContext};
use super::import::ImportingCacheStore;
use super::spec::CacheSpec;
use super::usage::UsageTracking;

pub struct Session<'a> {
    store: &'a Store,
    cache: ImportingCacheStore<'a>,
    to: Vec<CacheSpec>,
    opts: RegistryOptions,
}

impl<'a> Session<'a> {
    /// The local cache, then each of `from` in order (one progress step each; a cache
    /// that cannot be read is a warning). `to` is kept for [`Session::inline`] and
    /// [`Session::export`].
    pub fn open(
        store: &'a Store,
        from: &[CacheSpec],
        to: Vec<CacheSpec>,
        platform: &Platform,
        opts: RegistryOptions,
        progress: &dyn ProgressSink,
    ) -> Result<Self> {
        let cache = export::open(store, from, platform, &opts, progress)?;
        Ok(Session { store, cache, to, opts })
    }

    /// The imported cache mounts by cache key (their blobs fetched when first used).
    pub fn mount_seeds(&self) -> HashMap<String, LayerInfo> {
        export::mount_seeds(self.store, &self.cache)
    }

    /// The cache the solver reads and writes; every hit marks its record as used.
    pub fn solver_cache(&self) -> UsageTracking<'_> {
        self.store.track_usage(&self.cache)
    }

    /// The inline cache for the image config, if a `--cache-to type=inline` asks.
    pub fn inline(&self, report: &SolveReport, image_layers: &[LayerInfo]) -> Result<Option<serde_json::Value>> {
        export::inline_cache(&self.cache, report, image_layers, &self.to)
    }

    /// Writes every `--cache-to`: the records `report` solved (`mode=min`: those of
    /// the images' own layers, one image per platform), and the cache mounts the build
    /// used (`mount_keys`: cache key → id) where `mounts=true`.
    pub fn export(
        &self,
        report: &SolveReport,
        images: &[&[LayerInfo]],
        mount_keys: &BTreeMap<String, String>,
        progress: &dyn ProgressSink,
    ) -> Result<()> {
        let ctx = ExportContext { mount_keys, opts: &self.opts, progress };
        export::export_all(self.store, &self.cache, report, images, &self.to, &ctx)
    }
}
