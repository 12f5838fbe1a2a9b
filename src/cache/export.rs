//! `--cache-to` and `--cache-from` for a build: which records to export (from the
//! solver's report), and where caches are written to and read from. Each import and
//! export is a step of the build's progress display (`importing cache manifest from
//! …`, `exporting cache to …`).

use super::format::{CacheConfig, ExportedMount, ExportedRecord};
use super::import::{ImportedCache, ImportingCacheStore};
use super::spec::{CacheSpec, Location, Mode};
use super::{DiskCacheStore, local, registry};
use crate::progress::Task;
use ::registry::{RegistryOptions, Transfer};
use anyhow::{Context as _, Result, bail};
use image_spec::{Digest, LayerInfo};
use solver::{CacheStore, ProgressSink, SolveReport};
use std::collections::{BTreeMap, HashMap, HashSet};
use store::Store;

/// Parses the specs of `--cache-to` (`export`) or `--cache-from`.
pub fn parse_specs(specs: &[String], export: bool) -> Result<Vec<CacheSpec>> {
    let specs = specs.iter().map(|s| CacheSpec::parse(s, export)).collect::<Result<Vec<_>>>()?;
    for spec in &specs {
        match &spec.location {
            Location::Inline if !export => bail!(
                "{}: an inline cache is read from its image: --cache-from type=registry,ref=IMAGE",
                spec.describe()
            ),
            Location::Inline if spec.mode == Mode::Max => {
                bail!("{}: an inline cache holds only the final image's steps (mode=min)", spec.describe())
            }
            Location::Registry(text) => {
                registry::parse_reference(text)?;
            }
            _ => {}
        }
    }
    Ok(specs)
}

/// The build's cache store: the local cache, then each `--cache-from` in order. A
/// cache that cannot be read is a warning: the build goes on without it.
pub(super) fn open<'a>(
    store: &'a Store,
    from: &[CacheSpec],
    platform: &image_spec::Platform,
    opts: &RegistryOptions,
    progress: &dyn ProgressSink,
) -> Result<ImportingCacheStore<'a>> {
    let local = DiskCacheStore::open(&store.root().join("cache"))?;
    let mut imports = Vec::new();
    for spec in from {
        if spec.location == Location::Inline {
            continue;
        }
        let name = spec.describe();
        let task = Task::start(progress, format!("importing cache manifest from {name}"));
        let imported = match &spec.location {
            Location::Local(dir) => local::import(dir).map(|config| {
                Some(ImportedCache::new(
                    name.clone(),
                    config,
                    std::sync::Arc::new(local::LocalBlobs { dir: dir.clone() }),
                ))
            }),
            Location::Registry(text) => registry::parse_reference(text)
                .and_then(|reference| registry::import(store, &name, &reference, platform, opts)),
            Location::Inline => continue,
        };
        match imported {
            Ok(Some(import)) => {
                let mounts = import.config.mounts.len();
                let mounts = if mounts > 0 { format!(", {mounts} cache mounts") } else { String::new() };
                task.log(&format!("{} records{mounts}", import.config.records.len()));
                imports.push(import);
            }
            Ok(None) => task.log("nothing there yet"),
            Err(e) => task.warn(format!("importing cache from {name}: {e:#}")),
        }
        let _ = task.finish(Ok(()));
    }
    Ok(ImportingCacheStore::new(store, local, imports))
}

/// The cache mounts the imports carry (the first import naming a mount wins), by
/// cache key, their blobs registered with the store to be fetched when a step that
/// uses the mount runs.
pub(super) fn mount_seeds(store: &Store, cache: &ImportingCacheStore<'_>) -> HashMap<String, LayerInfo> {
    let mut seeds = HashMap::new();
    for import in cache.imports() {
        for mount in &import.config.mounts {
            if !seeds.contains_key(&mount.id) {
                store.add_remote_blob(&mount.blob, import.blobs.clone());
                seeds.insert(mount.id.clone(), mount.blob.clone());
            }
        }
    }
    seeds
}

/// The records a `mode` export holds: with `Max` every cacheable vertex the build
/// solved; with `Min` those whose layers begin a final image (its own chain; a
/// multi-platform build has one image per platform).
pub fn select(
    cache: &ImportingCacheStore<'_>,
    report: &SolveReport,
    images: &[&[LayerInfo]],
    mode: Mode,
) -> Result<Vec<ExportedRecord>> {
    let mut out = Vec::new();
    for solved in &report.vertices {
        let Some(record) = cache.local().get(&solved.key)? else { continue };
        let Some(exported) = ExportedRecord::from_record(&record) else { continue };
        let on_chain = images.iter().any(|image_layers| {
            exported.layers.len() <= image_layers.len()
                && exported.layers.iter().zip(image_layers.iter()).all(|(a, b)| a.digest == b.digest)
        });
        if mode == Mode::Max || on_chain {
            out.push(exported);
        }
    }
    Ok(out)
}

/// The inline cache for the image config when a `--cache-to type=inline` asks for
/// one: the records of the final image's own steps.
pub(super) fn inline_cache(
    cache: &ImportingCacheStore<'_>,
    report: &SolveReport,
    image_layers: &[LayerInfo],
    to: &[CacheSpec],
) -> Result<Option<serde_json::Value>> {
    if !to.iter().any(|s| s.location == Location::Inline) {
        return Ok(None);
    }
    let config = CacheConfig::new(select(cache, report, &[image_layers], Mode::Min)?, Vec::new());
    Ok(Some(serde_json::to_value(&config)?))
}

/// What exports need besides the solve: the cache mounts the build uses (cache key
/// → id), how to reach registries, and the progress display.
pub(super) struct ExportContext<'a> {
    pub mount_keys: &'a BTreeMap<String, String>,
    pub opts: &'a RegistryOptions,
    pub progress: &'a dyn ProgressSink,
}

/// Writes every `--cache-to` (an inline cache is already in the image).
pub(super) fn export_all(
    store: &Store,
    cache: &ImportingCacheStore<'_>,
    report: &SolveReport,
    images: &[&[LayerInfo]],
    to: &[CacheSpec],
    ctx: &ExportContext<'_>,
) -> Result<()> {
    for spec in to {
        if spec.location == Location::Inline {
            continue;
        }
        let task = Task::start(ctx.progress, format!("exporting cache to {}", spec.describe()));
        match export_one(store, cache, report, images, spec, ctx, &task) {
            Ok(()) => task.finish(Ok(()))?,
            Err(e) if spec.ignore_error => {
                task.warn(format!("exporting cache to {}: {e:#}", spec.describe()));
                task.finish(Ok(()))?
            }
            Err(e) => task.finish(Err(e.context(format!("exporting cache to {}", spec.describe()))))?,
        }
    }
    Ok(())
}

fn export_one(
    store: &Store,
    cache: &ImportingCacheStore<'_>,
    report: &SolveReport,
    images: &[&[LayerInfo]],
    spec: &CacheSpec,
    ctx: &ExportContext<'_>,
    task: &Task<'_>,
) -> Result<()> {
    let records = select(cache, report, images, spec.mode)?;
    let mounts = if spec.mounts { mounts(store, cache, ctx.mount_keys, spec.compression)? } else { Vec::new() };
    let config = CacheConfig::new(records, mounts);
    let mounts =
        if config.mounts.is_empty() { String::new() } else { format!(", {} cache mounts", config.mounts.len()) };
    match &spec.location {
        Location::Local(dir) => {
            let written = local::export(store, dir, &config).with_context(|| format!("writing {}", dir.display()))?;
            task.log(&format!(
                "{} records{mounts}, {} new blobs ({} bytes)",
                config.records.len(),
                written.blobs,
                written.bytes
            ));
        }
        Location::Registry(text) => {
            let reference = registry::parse_reference(text)?;
            let origin = registry::origin(&reference);
            // Blobs an import of the same repository listed are there already.
            let known: HashSet<Digest> = cache
                .imports()
                .iter()
                .filter(|i| i.origin.as_deref() == Some(origin.as_str()))
                .flat_map(|i| i.config.blobs().into_iter().map(|b| b.digest))
                .collect();
            let progress = |transfer: Transfer<'_>| match transfer {
                Transfer::Manifest(digest) => task.part(&format!("writing cache manifest {digest}"), false),
                other => task.transfer(other),
            };
            let (digest, stats) = registry::export(store, &reference, &config, &known, ctx.opts, &progress)?;
            task.part(&format!("writing cache manifest {digest}"), true);
            task.log(&format!(
                "{} records{mounts}, {} blobs uploaded, {} mounted, {} already there",
                config.records.len(),
                stats.uploaded,
                stats.mounted,
                stats.existed + stats.known,
            ));
        }
        Location::Inline => unreachable!("handled above"),
    }
    Ok(())
}

/// The build's cache mounts as blobs. A mount this store does not have (no step that
/// uses it ran here) but an import carried is exported as imported, unchanged.
fn mounts(
    store: &Store,
    cache: &ImportingCacheStore<'_>,
    keys: &BTreeMap<String, String>,
    compression: image_spec::Compression,
) -> Result<Vec<ExportedMount>> {
    let mut out = super::mounts::export_mounts(store, keys, compression)?;
    let mut seen: HashSet<String> = out.iter().map(|m| m.id.clone()).collect();
    for import in cache.imports() {
        for mount in &import.config.mounts {
            if keys.contains_key(&mount.id) && seen.insert(mount.id.clone()) {
                out.push(mount.clone());
            }
        }
    }
    Ok(out)
}
