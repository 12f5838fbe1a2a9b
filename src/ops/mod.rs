//! Ops: what each IR op means here. [`BuildWorker`] implements [`solver::Worker`]:
//! sources resolve images and contexts, exec ops run in the executor's sandbox, file
//! ops apply COPY/mkdir/... through overlayfs; every filesystem result is a stack of
//! layers in the store.

pub mod context;
pub mod copy;
mod copy_direct;
mod exec;
mod file;
mod git;
mod http;
mod outside;
pub mod source;

use crate::cache::RecordedLayers;
use crate::layer::LayerOptions;
use anyhow::Result;
use context::Context;
use image_spec::LayerInfo;
use solver::ir::{FileAction, NetworkMode, Op, SourceOp};
use solver::{CacheKey, CacheMap, ContentDigest, DepKind, DepSpec, ExecContext, Graph, Vertex, VertexId, WorkerError};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use store::Store;

/// The PATH a container gets when its image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The result of a vertex.
#[derive(Clone, Debug)]
pub enum Output {
    /// A local directory (the build context).
    Context(Arc<Context>),
    /// A filesystem: a stack of layers, bottom first, and when a step made its top
    /// layer (RFC 3339; `None` for a base image's or an empty stack).
    Layers(Arc<Vec<LayerInfo>>, Option<Arc<str>>),
}

impl Output {
    /// A filesystem no step made (a base image, scratch).
    pub fn base(layers: Vec<LayerInfo>) -> Output {
        Output::Layers(Arc::new(layers), None)
    }

    pub fn layers(&self) -> Result<&[LayerInfo]> {
        match self {
            Output::Layers(l, _) => Ok(l),
            Output::Context(_) => anyhow::bail!("expected a filesystem, got the build context"),
        }
    }

    /// When a step made the top layer, as a cache record remembers it: a cached
    /// step's layer keeps the time it was first made, so an unchanged build gives the
    /// same image (as BuildKit's `buildkit/createdat`).
    pub fn made(&self) -> Option<&str> {
        match self {
            Output::Layers(_, made) => made.as_deref(),
            Output::Context(_) => None,
        }
    }
}

/// How a build's ops behave: what the command line and the imported cache decided.
#[derive(Default)]
pub struct WorkerOptions {
    /// Local directories by name (`context`, named build contexts).
    pub local_dirs: HashMap<String, PathBuf>,
    /// Network mode for `RUN` steps that do not say (`builder build --network`).
    pub default_network: NetworkMode,
    /// What `--allow` granted (`RUN --network=host`, `RUN --security=insecure`).
    pub entitlements: crate::sandbox::Entitlements,
    /// Secrets by id (`--secret`); values never reach keys, layers or logs.
    pub secrets: HashMap<String, Vec<u8>>,
    /// SSH agents by id (`--ssh`), forwarded into `RUN --mount=type=ssh` and used by
    /// git over ssh (`default`).
    pub ssh: HashMap<String, crate::ssh::Agent>,
    /// How exec and file ops write their layers: compression, and the
    /// `SOURCE_DATE_EPOCH` mtime clamp (which also counts in their cache keys).
    pub layer_options: LayerOptions,
    /// Imported cache mount contents by cache key (`--cache-from`): a cache's first
    /// instance, when this store has none yet, starts from its blob.
    pub mount_seeds: HashMap<String, LayerInfo>,
    /// The build runs outside builder's user namespace: ops that need it are refused
    /// (`outside.rs`).
    pub outside_user_namespace: bool,
}

/// Everything ops need from the build.
pub struct BuildWorker<'a> {
    store: &'a Store,
    options: WorkerOptions,
    /// Limits of every `RUN` step: a pids limit where the host enforces one (its
    /// `--ulimit` and `--shm-size` are in its op, see `step_flags`).
    step_resources: executor::Resources,
    /// Contexts opened so far, by name, shared by all COPYs of the build.
    contexts: Mutex<HashMap<String, Arc<Context>>>,
    /// Base images, resolved once per build.
    images: &'a source::ImageResolver<'a>,
    /// Cache key → id of every cache mount a step of this build used, for
    /// `--cache-to ...,mounts=true`.
    used_cache_mounts: Mutex<BTreeMap<String, String>>,
    /// Git refs resolved in this build.
    git: git::GitState,
}

impl<'a> BuildWorker<'a> {
    pub fn new(store: &'a Store, images: &'a source::ImageResolver<'a>, options: WorkerOptions) -> Self {
        let step_resources = crate::sandbox::step_resources();
        BuildWorker {
            store,
            options,
            step_resources,
            contexts: Mutex::default(),
            images,
            used_cache_mounts: Mutex::default(),
            git: git::GitState::default(),
        }
    }

    /// What the build granted.
    pub fn entitlements(&self) -> crate::sandbox::Entitlements {
        self.options.entitlements
    }

    /// Cache key → id of every cache mount a step used so far.
    pub fn used_cache_mounts(&self) -> BTreeMap<String, String> {
        self.used_cache_mounts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn context(&self, name: &str, exclude: &[String]) -> Result<Arc<Context>> {
        let mut contexts = self.contexts.lock().unwrap();
        if let Some(c) = contexts.get(name) {
            return Ok(c.clone());
        }
        let dir =
            self.options.local_dirs.get(name).ok_or_else(|| anyhow::anyhow!("no local context named {name:?}"))?;
        // One stat cache per store: re-hashing an unchanged context costs a stat per file.
        let stat_cache = self.store.root().join("cache").join("context-stat");
        let context = Arc::new(Context::with_stat_cache(dir, exclude, stat_cache)?);
        contexts.insert(name.to_string(), context.clone());
        Ok(context)
    }
}

fn boxed(e: anyhow::Error) -> WorkerError {
    // The chain stays typed: whoever prints it prints each cause once, and
    // `crate::hint` finds the causes it knows.
    e.into()
}

/// Whether vertex `input` is a local directory source (its content, not its key, counts).
fn is_local_source(graph: &Graph, id: VertexId) -> bool {
    matches!(graph.vertex(id).op, Op::Source(SourceOp::Local { .. }))
}

impl solver::Worker for BuildWorker<'_> {
    type Output = Output;

    fn cache_map(&self, graph: &Graph, id: VertexId) -> Result<CacheMap, WorkerError> {
        let vertex = graph.vertex(id);
        if self.options.outside_user_namespace {
            outside::check_key(vertex)?;
        }
        if let Op::Source(source) = &vertex.op {
            return source::cache_map(self, source).map_err(boxed);
        }
        let deps = vertex
            .inputs
            .iter()
            .map(|&input| {
                let kind = if is_local_source(graph, input) { DepKind::Content } else { DepKind::Key };
                DepSpec { kind, selector: None }
            })
            .collect();
        let mut digest = CacheKey::of("op", &vertex.op);
        let mut facts = Vec::new();
        // A step for another platform than the machine's differs from the same step
        // run natively (see solver::Vertex::platform); native steps keep their keys.
        if let Some(platform) = &vertex.platform {
            let mut h = solver::KeyHasher::new("op+platform");
            h.key(&digest);
            h.str(platform);
            digest = h.finish();
            facts.push(("platform".to_string(), platform.clone()));
        }
        // A clamped layer differs from an unclamped one: the clamp is part of the key.
        if let Some(epoch) = self.options.layer_options.mtime_clamp {
            let mut h = solver::KeyHasher::new("op+source-date-epoch");
            h.key(&digest);
            h.str(&epoch.to_string());
            digest = h.finish();
            facts.push(("source-date-epoch".to_string(), epoch.to_string()));
        }
        Ok(CacheMap { digest, facts, deps })
    }

    fn content_digest(
        &self,
        graph: &Graph,
        id: VertexId,
        input: usize,
        value: &Output,
    ) -> Result<ContentDigest, WorkerError> {
        let Output::Context(context) = value else {
            return Err("content digest of a non-local input".into());
        };
        let vertex = graph.vertex(id);
        match &vertex.op {
            Op::File(file) => {
                let mut entries = Vec::new();
                let mut h = solver::KeyHasher::new("file-op-content");
                for action in &file.actions {
                    if let FileAction::Copy(copy) = action
                        && copy.input == input
                    {
                        let digest = context.digest_selection(copy).map_err(boxed)?;
                        h.key(&digest.digest);
                        entries.extend(digest.entries);
                    }
                }
                entries.sort();
                entries.dedup();
                Ok(ContentDigest { digest: h.finish(), entries })
            }
            // A bind mount of the context into RUN: all of it counts.
            _ => {
                let mut all = solver::ir::CopyAction::new(input, vec![".".into()], "/");
                all.allow_empty_wildcard = true;
                context.digest_selection(&all).map_err(boxed)
            }
        }
    }

    fn exec(
        &self,
        ctx: &ExecContext<'_>,
        graph: &Graph,
        id: VertexId,
        inputs: &[Output],
    ) -> Result<Output, WorkerError> {
        let vertex = graph.vertex(id);
        if self.options.outside_user_namespace {
            outside::check_exec(vertex)?;
        }
        let result = match &vertex.op {
            Op::Source(source) => source::exec(self, source),
            Op::Exec(op) => match foreign_platform(vertex) {
                Ok(()) => exec::exec(self, ctx, op, &vertex.proxy_env, inputs),
                Err(e) => Err(e),
            },
            Op::File(op) => file::exec(self, op, inputs),
            Op::Merge => merge(inputs),
        };
        result.map_err(boxed)
    }

    fn cacheable(&self, vertex: &Vertex) -> bool {
        // Sources are resolved every build (cheaply); their identity goes into the keys
        // of the vertices that use them. A git checkout is not cheap: it is cached by
        // the commit its ref resolved to, so an unchanged ref neither fetches nor
        // checks out again.
        match &vertex.op {
            Op::Source(SourceOp::Git(git)) => git::cacheable(git),
            Op::Source(_) => false,
            _ => true,
        }
    }

    fn encode_result(&self, output: &Output) -> Vec<u8> {
        match output {
            Output::Layers(layers, made) => {
                RecordedLayers { layers: layers.to_vec(), made: made.as_deref().map(str::to_string) }.encode()
            }
            Output::Context(_) => Vec::new(),
        }
    }

    fn decode_result(&self, bytes: &[u8]) -> Option<Output> {
        let recorded = RecordedLayers::decode(bytes)?;
        // A record whose blobs were pruned is a miss, not an error; the blobs of an
        // imported cache are fetched when something reads them.
        if recorded.layers.iter().all(|l| self.store.can_get_blob(&l.digest)) {
            Some(Output::Layers(Arc::new(recorded.layers), recorded.made.map(Arc::from)))
        } else {
            None
        }
    }
}

/// The layers of each input in turn, dated as the last input that brings any: a
/// `COPY --link` layer keeps the time it was made, whatever it is merged onto.
fn merge(inputs: &[Output]) -> Result<Output> {
    let mut layers = Vec::new();
    let mut made = None;
    for input in inputs {
        let Output::Layers(more, when) = input else { anyhow::bail!("merging the build context") };
        if !more.is_empty() {
            layers.extend(more.iter().cloned());
            made = when.clone();
        }
    }
    // Snapshots of the merged layers at their new places are unpacked when used.
    Ok(Output::Layers(Arc::new(layers), made))
}

/// Stacks a new layer (if any) on top of `parent` and commits its snapshot; the
/// result was made now, or, without a new layer, when the parent was.
fn stack_layer(
    store: &Store,
    parent: &Output,
    upperdir: PathBuf,
    layer: Option<crate::layer::StepLayer>,
) -> Result<Output> {
    let Some(step) = layer else {
        return Ok(parent.clone());
    };
    let parent = parent.layers()?;
    let mut layers = parent.to_vec();
    layers.push(step.layer.clone());
    let diff_ids: Vec<_> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chain = image_spec::chain_ids(&diff_ids);
    crate::layer::commit_step_layer(store, upperdir, chain.last().expect("one layer at least"), &step)?;
    Ok(Output::Layers(Arc::new(layers), Some(crate::archive::created_time(None).into())))
}

/// A step for another platform runs only through a registered emulator
/// ([`crate::emulator`]); this fails it, naming the platform and the fix, otherwise.
fn foreign_platform(vertex: &Vertex) -> Result<()> {
    if let Some(platform) = &vertex.platform {
        let platform = image_spec::Platform::parse(platform).map_err(|e| anyhow::anyhow!(e))?;
        crate::emulator::check(&platform)?;
    }
    Ok(())
}
