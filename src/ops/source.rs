//! Source ops: scratch, images from the store, local directories.

use super::{BuildWorker, Output};
use crate::image::Reference;
use anyhow::{Context as _, Result, bail};
use solver::ir::SourceOp;
use solver::{CacheMap, KeyHasher};
use std::sync::Arc;

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

/// Resolves a reference once per build against the local store.
pub fn resolve_image(worker: &BuildWorker<'_>, reference: &str) -> Result<crate::image::Image> {
    if let Some(image) = worker.images.lock().unwrap().get(reference) {
        return Ok(image.clone());
    }
    let parsed = Reference::parse(reference).map_err(anyhow::Error::msg)?;
    let image = worker
        .store
        .load_image(&parsed.to_string())
        .with_context(|| format!("resolving image {reference}: not in the local store (import or pull it first)"))?;
    worker.images.lock().unwrap().insert(reference.to_string(), image.clone());
    Ok(image)
}

