//! `--cache-to` and `--cache-from` for a build: which records to export (from the
//! solver's report), and where caches are written to and read from.

use super::format::{CacheConfig, ExportedRecord};
use super::import::{ImportedCache, ImportingCacheStore};
use super::spec::{CacheSpec, Location, Mode};
use super::{DiskCacheStore, local};
use crate::image::LayerInfo;
use crate::store::Store;
use anyhow::{Context as _, Result, bail};
use solver::{CacheStore, SolveReport};

/// Parses the specs of `--cache-to` (`export`) or `--cache-from`.
pub fn parse_specs(specs: &[String], export: bool) -> Result<Vec<CacheSpec>> {
    let specs = specs.iter().map(|s| CacheSpec::parse(s, export)).collect::<Result<Vec<_>>>()?;
    for spec in &specs {
        if !matches!(spec.location, Location::Local(_)) {
            bail!("{}: only type=local caches are supported so far", spec.describe());
        }
    }
    Ok(specs)
}

/// The build's cache store: the local cache, then each `--cache-from` in order. A
/// cache that cannot be read is a warning: the build goes on without it.
pub fn open<'a>(store: &'a Store, from: &[CacheSpec]) -> Result<ImportingCacheStore<'a>> {
    let local = DiskCacheStore::open(&store.root().join("cache"))?;
    let mut imports = Vec::new();
    for spec in from {
        let imported = match &spec.location {
            Location::Local(dir) => local::import(dir).map(|config| {
                ImportedCache::new(spec.describe(), config, Box::new(local::LocalBlobs { dir: dir.clone() }))
            }),
            Location::Registry(_) | Location::Inline => continue,
        };
        match imported {
            Ok(import) => {
                eprintln!("importing cache from {}: {} records", import.name, import.config.records.len());
                imports.push(import);
            }
            Err(e) => eprintln!("WARNING: importing cache from {}: {e:#}", spec.describe()),
        }
    }
    Ok(ImportingCacheStore::new(store, local, imports))
}

/// The records a `mode` export holds: with `Max` every cacheable vertex the build
/// solved; with `Min` those whose layers begin the final image (its own chain).
pub fn select(
    cache: &ImportingCacheStore<'_>,
    report: &SolveReport,
    image_layers: &[LayerInfo],
    mode: Mode,
) -> Result<Vec<ExportedRecord>> {
    let mut out = Vec::new();
    for solved in &report.vertices {
        let Some(record) = cache.local().get(&solved.key)? else { continue };
        let Some(exported) = ExportedRecord::from_record(&record) else { continue };
        let on_chain = exported.layers.len() <= image_layers.len()
            && exported.layers.iter().zip(image_layers).all(|(a, b)| a.digest == b.digest);
        if mode == Mode::Max || on_chain {
            out.push(exported);
        }
    }
    Ok(out)
}

/// Writes every `--cache-to`.
pub fn export_all(
    store: &Store,
    cache: &ImportingCacheStore<'_>,
    report: &SolveReport,
    image_layers: &[LayerInfo],
    to: &[CacheSpec],
) -> Result<()> {
    for spec in to {
        let result = export_one(store, cache, report, image_layers, spec);
        match result {
            Ok(()) => {}
            Err(e) if spec.ignore_error => eprintln!("WARNING: exporting cache to {}: {e:#}", spec.describe()),
            Err(e) => return Err(e.context(format!("exporting cache to {}", spec.describe()))),
        }
    }
    Ok(())
}

fn export_one(
    store: &Store,
    cache: &ImportingCacheStore<'_>,
    report: &SolveReport,
    image_layers: &[LayerInfo],
    spec: &CacheSpec,
) -> Result<()> {
    let records = select(cache, report, image_layers, spec.mode)?;
    let config = CacheConfig::new(records, Vec::new());
    match &spec.location {
        Location::Local(dir) => {
            let written = local::export(store, dir, &config).with_context(|| format!("writing {}", dir.display()))?;
            eprintln!(
                "exported cache to {}: {} records, {} new blobs ({} bytes)",
                spec.describe(),
                config.records.len(),
                written.blobs,
                written.bytes
            );
        }
        Location::Registry(_) | Location::Inline => bail!("not supported yet"),
    }
    Ok(())
}
