//! The solver's contract ([`Worker`], [`SolveOptions`], [`SolveError`]) and the work
//! done for one vertex: its cache key, the cache lookup, and running it on a miss.
//! Which vertex runs when is decided in [`schedule`].

mod schedule;

use crate::cache::{
    CacheMap, CacheRecord, CacheStore, Claim, ClaimAttempt, ContentDigest, DepKind, DepRecord, DepSpec,
};
use crate::explain;
use crate::graph::{Graph, Vertex, VertexId};
use crate::key::{CacheKey, KeyHasher};
use crate::progress::{Event, ProgressSink, Stream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Errors a worker returns; shown to the user as they are.
pub type WorkerError = Box<dyn std::error::Error + Send + Sync>;

/// Set once the build is cancelled; ops poll it and stop their work.
#[derive(Clone, Default, Debug)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst)
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for code that must not depend on the solver (the executor).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

/// What an op gets besides its inputs while it runs.
pub struct ExecContext<'a> {
    pub vertex: VertexId,
    pub cancel: &'a CancelToken,
    progress: &'a dyn ProgressSink,
}

impl ExecContext<'_> {
    pub fn log(&self, stream: Stream, data: &[u8]) {
        self.progress.event(Event::Log { vertex: self.vertex.into(), stream, data: data.to_vec() })
    }
}

/// Gives ops their meaning. Implemented by the builder binary (`src/ops`).
pub trait Worker: Send + Sync {
    /// The result of a vertex: a filesystem the worker can hand to later ops.
    type Output: Clone + Send + Sync;

    /// What the vertex's key is made of. May resolve things (e.g. an image tag).
    fn cache_map(&self, graph: &Graph, vertex: VertexId) -> Result<CacheMap, WorkerError>;

    /// Digest of the content `vertex` selects from its resolved input `input`.
    fn content_digest(
        &self,
        graph: &Graph,
        vertex: VertexId,
        input: usize,
        value: &Self::Output,
    ) -> Result<ContentDigest, WorkerError>;

    /// Runs the op on its resolved inputs.
    fn exec(
        &self,
        ctx: &ExecContext<'_>,
        graph: &Graph,
        vertex: VertexId,
        inputs: &[Self::Output],
    ) -> Result<Self::Output, WorkerError>;

    /// Whether results of this vertex are worth caching (sources usually are not).
    fn cacheable(&self, vertex: &Vertex) -> bool;

    /// Bytes that [`Worker::decode_result`] turns back into the output.
    fn encode_result(&self, output: &Self::Output) -> Vec<u8>;

    /// `None` when the result's content is gone (the entry then counts as a miss).
    fn decode_result(&self, bytes: &[u8]) -> Option<Self::Output>;
}

#[derive(Debug, Clone, Default)]
pub struct SolveOptions {
    /// Most vertices worked on at once; 0 means no bound.
    pub jobs: usize,
}

/// How one vertex of a solve got its result, for callers that act on the keys a
/// build used (cache export picks the records to export from these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolvedVertex {
    pub vertex: VertexId,
    /// The key the vertex was looked up (and recorded) under.
    pub key: CacheKey,
    /// Whether the result came from the cache (or from an identical vertex of the
    /// same build) rather than from running the op.
    pub cached: bool,
}

/// Every vertex a solve finished, in the order they finished.
#[derive(Debug, Clone, Default)]
pub struct SolveReport {
    pub vertices: Vec<SolvedVertex>,
}

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// The message is the vertex's name; the op's error is the source (printed by
    /// whoever prints the error chain), so it is never repeated.
    #[error("{name}")]
    Op {
        vertex: VertexId,
        name: String,
        #[source]
        source: WorkerError,
    },
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheStoreError),
    #[error("build cancelled")]
    Cancelled,
}

/// What the cache holds for a key.
enum Lookup<O> {
    Hit(O, Outcome),
    /// A record whose result the worker can no longer use.
    Gone,
    Miss,
}

pub struct Solver<'a, W: Worker> {
    pub(crate) worker: &'a W,
    pub(crate) cache: &'a dyn CacheStore,
    pub(crate) progress: &'a dyn ProgressSink,
    pub(crate) cancel: CancelToken,
    pub(crate) options: SolveOptions,
}

/// A solved vertex: its key, its output, and the facts behind its key.
pub(crate) struct Solved<O> {
    pub key: CacheKey,
    pub output: O,
    pub facts: Vec<(String, String)>,
}

/// How a vertex got its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The op ran.
    Ran,
    /// A cache hit; `source` is what [`CacheStore::hit_source`] said of it.
    Cached { source: Option<String> },
}

/// A vertex whose key is known and which has not been looked up or run yet.
pub(crate) struct Keyed {
    pub key: CacheKey,
    pub facts: Vec<(String, String)>,
    pub deps: Vec<DepRecord>,
}

impl<'a, W: Worker> Solver<'a, W> {
    pub fn new(
        worker: &'a W,
        cache: &'a dyn CacheStore,
        progress: &'a dyn ProgressSink,
        options: SolveOptions,
    ) -> Self {
        Solver { worker, cache, progress, cancel: CancelToken::default(), options }
    }

    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Solves what `targets` need and returns their outputs, in the same order.
    ///
    /// Every vertex whose inputs are solved is worked on at once (up to
    /// [`SolveOptions::jobs`]); vertices with the same key run once. The first
    /// failure cancels the build: the ops' cancel token is set, running ops are waited
    /// for, and that first error is returned. The token ops see belongs to this solve
    /// (a failure does not cancel later solves); [`Solver::cancel_token`] reaches it
    /// within a few milliseconds.
    pub fn solve(&self, graph: &Graph, targets: &[VertexId]) -> Result<Vec<W::Output>, SolveError> {
        schedule::run(self, graph, targets).map(|(outputs, _)| outputs)
    }

    /// Like [`Solver::solve`], also saying which key each vertex had and whether it
    /// was a cache hit.
    pub fn solve_with_report(
        &self,
        graph: &Graph,
        targets: &[VertexId],
    ) -> Result<(Vec<W::Output>, SolveReport), SolveError> {
        schedule::run(self, graph, targets)
    }

    /// Computes the vertex's cache key from its cache map and its solved inputs.
    pub(crate) fn key_vertex(
        &self,
        graph: &Graph,
        id: VertexId,
        inputs: &[Solved<W::Output>],
    ) -> Result<Keyed, SolveError> {
        let vertex = graph.vertex(id);
        let op_err = |source: WorkerError| SolveError::Op { vertex: id, name: vertex.name.clone(), source };
        let map: CacheMap = self.worker.cache_map(graph, id).map_err(op_err)?;
        let mut h = KeyHasher::new("vertex");
        h.key(&map.digest);
        let mut deps = Vec::with_capacity(inputs.len());
        // An input the map says nothing about counts by its key: leaving it out of
        // the key would let a changed input hit a stale result.
        let by_key = DepSpec { kind: DepKind::Key, selector: None };
        for (i, input) in inputs.iter().enumerate() {
            let spec = map.deps.get(i).unwrap_or(&by_key);
            h.u64(i as u64);
            h.str(spec.selector.as_deref().unwrap_or(""));
            let key = match spec.kind {
                DepKind::Key | DepKind::KeyAndContent => Some(input.key),
                DepKind::Content => None,
            };
            let content = match spec.kind {
                DepKind::Content | DepKind::KeyAndContent => {
                    Some(self.worker.content_digest(graph, id, i, &input.output).map_err(op_err)?)
                }
                DepKind::Key => None,
            };
            if let Some(k) = &key {
                h.key(k);
            }
            if let Some(c) = &content {
                h.key(&c.digest);
            }
            let name = Some(graph.vertex(vertex.inputs[i]).name.clone());
            deps.push(DepRecord { key, content, name, facts: input.facts.clone() });
        }
        Ok(Keyed { key: h.finish(), facts: map.facts, deps })
    }

    /// Looks the keyed vertex up in the cache and, on a miss, explains why, runs it
    /// and records the result. Says whether it was a hit, and from which source.
    pub(crate) fn run_vertex(
        &self,
        graph: &Graph,
        id: VertexId,
        keyed: Keyed,
        inputs: Vec<W::Output>,
        start: Instant,
        cancel: &CancelToken,
    ) -> Result<(W::Output, Outcome), SolveError> {
        let vertex = graph.vertex(id);
        let op_err = |source: WorkerError| SolveError::Op { vertex: id, name: vertex.name.clone(), source };
        let cacheable = self.worker.cacheable(vertex);
        let usable = cacheable && !vertex.ignore_cache;
        let mut gone = false;
        if usable {
            match self.lookup(vertex, id, &keyed.key)? {
                Lookup::Hit(output, outcome) => return Ok((output, outcome)),
                Lookup::Gone => gone = true,
                Lookup::Miss => {}
            }
        }
        // Another build on the same store may be computing this very key: wait for it
        // and take its result rather than run the step a second time.
        let _claim = if usable { self.claim(id, &keyed.key, cancel)? } else { None };
        if let Some((_, true)) = &_claim
            && let Lookup::Hit(output, outcome) = self.lookup(vertex, id, &keyed.key)?
        {
            return Ok((output, outcome));
        }

        let record = CacheRecord {
            key: keyed.key,
            step_id: vertex.step_id.clone(),
            name: vertex.name.clone(),
            op: vertex.op.clone(),
            facts: keyed.facts,
            deps: keyed.deps,
            result: Vec::new(),
        };
        if cacheable {
            let reasons = self.explain_miss(vertex, &record, gone);
            if !reasons.is_empty() {
                self.progress.event(Event::Explain { vertex: id.into(), reasons });
            }
        }

        let ctx = ExecContext { vertex: id, cancel, progress: self.progress };
        let output = self.worker.exec(&ctx, graph, id, &inputs).map_err(op_err)?;
        if cacheable {
            self.cache.put(&CacheRecord { result: self.worker.encode_result(&output), ..record })?;
        }
        self.progress.event(Event::Done { vertex: id.into(), duration: start.elapsed() });
        Ok((output, Outcome::Ran))
    }

    /// The cache's answer for `key`: a usable result (announced as cached), a record
    /// whose result is gone, or nothing.
    fn lookup(&self, vertex: &Vertex, id: VertexId, key: &CacheKey) -> Result<Lookup<W::Output>, SolveError> {
        let Some(record) = self.cache.get(key)? else { return Ok(Lookup::Miss) };
        let Some(output) = self.worker.decode_result(&record.result) else { return Ok(Lookup::Gone) };
        if let Some(step) = &vertex.step_id
            && let Err(e) = self.cache.set_last_for_step(step, key)
        {
            tracing::warn!("{e}");
        }
        let source = self.cache.hit_source(key);
        self.progress.event(Event::Cached { vertex: id.into(), name: vertex.name.clone(), source: source.clone() });
        Ok(Lookup::Hit(output, Outcome::Cached { source }))
    }

    /// Claims `key` in the cache store, waiting (and saying so) while another process
    /// holds it. Returns the claim and whether it had to wait; `None` when the store
    /// does not coordinate processes.
    fn claim(&self, id: VertexId, key: &CacheKey, cancel: &CancelToken) -> Result<Option<(Claim, bool)>, SolveError> {
        let waiting = |completed: bool| {
            let id_text = "waiting for another build running the same step".to_string();
            self.progress.event(Event::Progress { vertex: id.into(), id: id_text, current: 0, total: None, completed });
        };
        let mut waited = false;
        loop {
            match self.cache.try_claim(key)? {
                ClaimAttempt::Unsupported => return Ok(None),
                ClaimAttempt::Claimed(claim) => {
                    if waited {
                        waiting(true);
                    }
                    return Ok(Some((claim, waited)));
                }
                ClaimAttempt::Busy => {
                    if !waited {
                        waiting(false);
                        waited = true;
                    }
                    if cancel.is_cancelled() {
                        return Err(SolveError::Cancelled);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    }

    fn explain_miss(&self, vertex: &Vertex, record: &CacheRecord, gone: bool) -> Vec<String> {
        if vertex.ignore_cache {
            return vec!["--no-cache".to_string()];
        }
        if gone {
            return vec!["the cached result is no longer available".to_string()];
        }
        let Some(step) = &vertex.step_id else {
            return vec!["not in the cache".to_string()];
        };
        let previous = match self.cache.last_for_step(step) {
            Ok(previous) => previous,
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        };
        explain::reasons(previous.as_ref(), record)
    }
}
