//! Source ops: scratch, images from the store, local directories.

use super::{BuildWorker, Output};
use crate::image::{Image, Reference};
use crate::registry::RegistryOptions;
use crate::store::Store;
use anyhow::{Context as _, Result, anyhow, bail};
use frontend::Platform;
use solver::ir::SourceOp;
use solver::{CacheMap, KeyHasher};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

pub fn cache_map(worker: &BuildWorker<'_>, source: &SourceOp) -> Result<CacheMap> {
    let mut facts = Vec::new();
    let mut h = KeyHasher::new("source");
    match source {
        SourceOp::Scratch => h.str("scratch"),
        SourceOp::Image { reference, .. } => {
            // An image counts by what it resolved to, not by its name.
            let image = resolve_image(worker, reference)?;
            h.str("image");
            h.str(image.manifest_digest.as_str());
            facts.push(("image".to_string(), format!("{reference}@{}", image.manifest_digest)));
        }
        SourceOp::Local { name, .. } => {
            // Contents count where they are used (COPY selects files), not here.
            h.str("local");
            h.str(name);
        }
        SourceOp::Http { url, .. } => bail!("ADD from {url}: remote sources are not supported yet"),
    }
    Ok(CacheMap { digest: h.finish(), facts, deps: Vec::new() })
}

pub fn exec(worker: &BuildWorker<'_>, source: &SourceOp) -> Result<Output> {
    match source {
        SourceOp::Scratch => Ok(Output::Layers(Arc::new(Vec::new()))),
        SourceOp::Image { reference, .. } => {
            let image = resolve_image(worker, reference)?;
            Ok(Output::Layers(Arc::new(image.layers)))
        }
        SourceOp::Local { name, exclude } => Ok(Output::Context(worker.context(name, exclude)?)),
        SourceOp::Http { url, .. } => bail!("ADD from {url}: remote sources are not supported yet"),
    }
}

/// Resolves a reference once per build through the build's [`ImageResolver`].
fn resolve_image(worker: &BuildWorker<'_>, reference: &str) -> Result<Image> {
    worker.images.resolve(reference)
}

/// Turns image references into images: the local store first, the registry when the
/// image is missing or `--pull` asks, and each reference only once per build (the
/// frontend's config lookups and the source ops see the same image).
pub struct ImageResolver<'a> {
    store: &'a Store,
    pull: bool,
    platform: Platform,
    registry: RegistryOptions,
    resolved: Mutex<HashMap<String, Image>>,
}

impl<'a> ImageResolver<'a> {
    pub fn new(store: &'a Store, pull: bool, platform: Platform, registry: RegistryOptions) -> Self {
        ImageResolver { store, pull, platform, registry, resolved: Mutex::default() }
    }

    /// The image only if the local store has it (no network).
    pub fn local(&self, reference: &str) -> Option<Image> {
        let parsed = Reference::parse(reference).ok()?;
        self.store.load_image(&parsed.to_string()).ok()
    }

    pub fn resolve(&self, reference: &str) -> Result<Image> {
        if let Some(image) = self.resolved.lock().unwrap().get(reference) {
            return Ok(image.clone());
        }
        let parsed = Reference::parse(reference).map_err(|e| anyhow!("FROM {reference}: {e}"))?;
        let local = if self.pull { None } else { self.store.load_image(&parsed.to_string()).ok() };
        let image = match local {
            Some(image) => image,
            None => {
                let progress = |line: &str| eprintln!("{line}");
                crate::registry::pull(self.store, &parsed, &self.platform, &self.registry, &progress)
                    .with_context(|| format!("resolving image {reference}"))?
            }
        };
        self.resolved.lock().unwrap().insert(reference.to_string(), image.clone());
        Ok(image)
    }
}
