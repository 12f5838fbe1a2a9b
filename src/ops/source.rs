//! Source ops: scratch, images (local store, then registry), local directories, URLs.

use super::{BuildWorker, Output};
use anyhow::{Context as _, Result, anyhow, bail};
use image_spec::Platform;
use image_spec::{Digest, Image, Reference};
use registry::RegistryOptions;
use solver::ir::SourceOp;
use solver::{CacheMap, KeyHasher, ProgressSink};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Mutex;
use store::Store;

pub fn cache_map(worker: &BuildWorker<'_>, source: &SourceOp) -> Result<CacheMap> {
    let mut facts = Vec::new();
    let mut h = KeyHasher::new("source");
    match source {
        SourceOp::Scratch => h.str("scratch"),
        SourceOp::Image { reference, platform } => {
            // An image counts by what it resolved to, not by its name.
            let image = resolve_image(worker, reference, platform.as_deref())?;
            h.str("image");
            h.str(image.manifest_digest.as_str());
            facts.push(("image".to_string(), format!("{reference}@{}", image.manifest_digest)));
        }
        SourceOp::Local { name, .. } => {
            // Contents count where they are used (COPY selects files), not here.
            h.str("local");
            h.str(name);
        }
        SourceOp::Http { url, checksum, filename } => {
            // A URL counts by what it served: the digest of the bytes and their name.
            let download = download(worker, url, checksum.as_deref(), filename.as_deref())?;
            h.str("http");
            h.str(download.digest.as_str());
            h.str(&download.filename);
            facts.push(("url".to_string(), format!("{url}@{}", download.digest)));
        }
        SourceOp::Git(git) => {
            // A repository counts by the commit its ref resolved to (not by the URL,
            // which may carry credentials): a moved branch is a new key.
            let commit = super::git::resolve(worker, git)?;
            h.str("git");
            h.str(&commit);
            h.str(&git.subdir);
            h.bool(git.keep_git_dir);
            h.bool(git.submodules);
            facts.push(("git".to_string(), format!("{}@{commit}", frontend::redact_remote(&git.remote))));
        }
    }
    Ok(CacheMap { digest: h.finish(), facts, deps: Vec::new() })
}

pub fn exec(worker: &BuildWorker<'_>, source: &SourceOp) -> Result<Output> {
    match source {
        SourceOp::Scratch => Ok(Output::base(Vec::new())),
        SourceOp::Image { reference, platform } => {
            let image = resolve_image(worker, reference, platform.as_deref())?;
            Ok(Output::base(image.layers))
        }
        SourceOp::Local { name, exclude } => Ok(Output::Context(worker.context(name, exclude)?)),
        SourceOp::Http { url, checksum, filename } => {
            Ok(download(worker, url, checksum.as_deref(), filename.as_deref())?.output)
        }
        SourceOp::Git(git) => {
            let commit = super::git::resolve(worker, git)?;
            super::git::checkout(worker, git, &commit)
        }
    }
}

/// A file fetched for `ADD URL`: one layer holding `/<filename>`.
#[derive(Clone)]
struct Download {
    digest: Digest,
    filename: String,
    output: Output,
}

/// Fetches `url` once per build into a one-file layer, verifying `checksum`
/// (`sha256:...`) when given. The file gets mode 0600 and the server's
/// Last-Modified time, as Docker's ADD does.
fn download(worker: &BuildWorker<'_>, url: &str, checksum: Option<&str>, filename: Option<&str>) -> Result<Download> {
    let resolver = worker.images;
    if let Some(d) = resolver.downloads.lock().unwrap().get(url) {
        return Ok(d.clone());
    }
    let filename = filename.filter(|f| !f.is_empty() && !f.contains('/')).unwrap_or("download").to_string();
    let store = worker.store;
    let dir = store.temp_dir("http")?;
    let path = dir.path().join(&filename);
    let stall = resolver.registry.stall_timeout;
    let (digest, modified) =
        super::http::fetch(url, &path, stall, crate::signals::interrupted).with_context(|| format!("ADD {url}"))?;
    if let Some(want) = checksum
        && want != digest.as_str()
    {
        bail!("ADD {url}: checksum mismatch: expected {want}, got {digest}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let mtime = filetime::FileTime::from_unix_time(modified.unwrap_or(0), 0);
    filetime::set_file_mtime(&path, mtime)?;
    filetime::set_file_mtime(dir.path(), filetime::FileTime::from_unix_time(0, 0))?;
    let tar = crate::layer::tar_writer::TarOptions { overlay: false, mtime_clamp: None };
    let layer = crate::layer::dir_to_layer(store, dir.path(), &crate::layer::LayerOptions::default(), &tar)?;
    store.commit_snapshot(dir.keep(), &layer.diff_id)?;
    let download = Download { digest, filename, output: Output::base(vec![layer]) };
    resolver.downloads.lock().unwrap().insert(url.to_string(), download.clone());
    Ok(download)
}

/// Resolves a reference once per build through the build's [`ImageResolver`], for
/// the platform the source names (the resolver's own when none).
fn resolve_image(worker: &BuildWorker<'_>, reference: &str, platform: Option<&str>) -> Result<Image> {
    match platform {
        Some(p) => {
            let platform = Platform::parse(p).map_err(|e| anyhow!("FROM --platform={p} {reference}: {e}"))?;
            worker.images.resolve_for(reference, &platform)
        }
        None => worker.images.resolve(reference),
    }
}

/// Turns image references into images: the local store first, the registry when the
/// image is missing or `--pull` asks, and each reference only once per build (the
/// frontend's config lookups and the source ops see the same image). A pull is shown
/// by the build's progress display ([`crate::progress::pull`]).
pub struct ImageResolver<'a> {
    store: &'a Store,
    pull: bool,
    platform: Platform,
    registry: RegistryOptions,
    progress: &'a dyn ProgressSink,
    /// By reference and platform.
    resolved: Mutex<HashMap<(String, String), Image>>,
    /// `ADD URL` downloads, fetched once per build.
    downloads: Mutex<HashMap<String, Download>>,
    /// A pull is an error ([`ImageResolver::refuse_pulls`]).
    no_pulls: bool,
}

impl<'a> ImageResolver<'a> {
    pub fn new(
        store: &'a Store,
        pull: bool,
        platform: Platform,
        registry: RegistryOptions,
        progress: &'a dyn ProgressSink,
    ) -> Self {
        let (resolved, downloads) = Default::default();
        ImageResolver { store, pull, platform, registry, progress, resolved, downloads, no_pulls: false }
    }

    /// From now on an image that would be pulled is a [`crate::userns::NeedsUserNamespace`]
    /// error instead: the build runs outside builder's user namespace and starts over
    /// inside when it needs more than the store has.
    pub fn refuse_pulls(&mut self) {
        self.no_pulls = true;
    }

    /// The image only if the local store has it (no network); a damaged one is an error.
    pub fn local(&self, reference: &str, platform: &Platform) -> Result<Option<Image>> {
        let parsed = Reference::parse(reference).map_err(|e| anyhow!("FROM {reference}: {e}"))?;
        Ok(self.store.find_image_for(&parsed.to_string(), platform)?)
    }

    /// The image for the build's default platform.
    pub fn resolve(&self, reference: &str) -> Result<Image> {
        self.resolve_for(reference, &self.platform.clone())
    }

    /// The image of `reference` for `platform`: the store's (an index's entry, or an
    /// image whose config is for that platform), else pulled for that platform. An
    /// image the store has only for other platforms is pulled too, and when that
    /// fails the error says which platforms the store has.
    pub fn resolve_for(&self, reference: &str, platform: &Platform) -> Result<Image> {
        let key = (reference.to_string(), platform.to_string());
        if let Some(image) = self.resolved.lock().unwrap().get(&key) {
            return Ok(image.clone());
        }
        let parsed = Reference::parse(reference).map_err(|e| anyhow!("FROM {reference}: {e}"))?;
        let name = parsed.to_string();
        // A damaged local image is an error to fix, not a reason to pull another.
        let (local, elsewhere) = match self.pull {
            true => (None, None),
            false => match self.store.find_image_for(&name, platform) {
                Ok(image) => (image, None),
                Err(e @ store::Error::NoPlatform { .. }) => (None, Some(e)),
                Err(e) => return Err(e.into()),
            },
        };
        let image = match local {
            Some(image) => image,
            None if self.no_pulls => {
                return Err(crate::userns::NeedsUserNamespace::op(format!("pulling {name}")).into());
            }
            // Whoever asked names the reference in the error (`failed to resolve base
            // image REF`, `FROM REF`); the registry's error names the request.
            None => {
                let pulled = crate::progress::pull(self.progress, &name, |progress| {
                    crate::transfer::pull(self.store, &parsed, platform, &self.registry, progress)
                });
                let pulled = match (pulled, elsewhere) {
                    (Ok(image), _) => image,
                    (Err(e), Some(local)) => return Err(anyhow!("{local}; pulling it failed: {e:#}")),
                    (Err(e), None) => return Err(e),
                };
                // A registry that serves one manifest for the tag says nothing of its
                // platform: its config does.
                self.store.image_for_platform(&pulled.manifest_digest, platform).map_err(|e| match e {
                    store::Error::NoPlatform { wanted, available, .. } => {
                        anyhow!(store::Error::NoPlatform { image: name.clone(), wanted, available })
                    }
                    other => anyhow!(other),
                })?
            }
        };
        self.resolved.lock().unwrap().insert(key, image.clone());
        Ok(image)
    }
}
