//! The scheduler: keys bottom-up, cache lookups, and running the misses.

use crate::cache::{CacheMap, CacheRecord, CacheStore, ContentDigest, DepKind, DepRecord};
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
        self.progress.event(Event::Log { vertex: self.vertex, stream, data: data.to_vec() })
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
    /// Most ops running at once; 0 means no bound.
    pub jobs: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error("{name}: {source}")]
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

pub struct Solver<'a, W: Worker> {
    worker: &'a W,
    cache: &'a dyn CacheStore,
    progress: &'a dyn ProgressSink,
    cancel: CancelToken,
    #[allow(dead_code)]
    options: SolveOptions,
}

struct Solved<O> {
    key: CacheKey,
    output: O,
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
    pub fn solve(&self, graph: &Graph, targets: &[VertexId]) -> Result<Vec<W::Output>, SolveError> {
        let order = graph.ancestors(targets);
        let mut solved: Vec<Option<Solved<W::Output>>> = (0..graph.len()).map(|_| None).collect();
        for id in order {
            if self.cancel.is_cancelled() {
                return Err(SolveError::Cancelled);
            }
            let vertex = graph.vertex(id);
            let inputs: Vec<&Solved<W::Output>> =
                vertex.inputs.iter().map(|i| solved[i.0].as_ref().expect("inputs solved first")).collect();
            let result = self.solve_vertex(graph, id, &inputs);
            if let Err(e) = &result {
                self.progress.event(Event::Error { vertex: id, message: e.to_string() });
            }
            solved[id.0] = Some(result?);
        }
        Ok(targets.iter().map(|t| solved[t.0].as_ref().expect("target solved").output.clone()).collect())
    }

    fn solve_vertex(
        &self,
        graph: &Graph,
        id: VertexId,
        inputs: &[&Solved<W::Output>],
    ) -> Result<Solved<W::Output>, SolveError> {
        let vertex = graph.vertex(id);
        let op_err = |source: WorkerError| SolveError::Op { vertex: id, name: vertex.name.clone(), source };
        let start = Instant::now();
        self.progress.event(Event::Started { vertex: id, name: vertex.name.clone() });

        let map = self.worker.cache_map(graph, id).map_err(op_err)?;
        let mut h = KeyHasher::new("vertex");
        h.key(&map.digest);
        let mut deps = Vec::with_capacity(inputs.len());
        for (i, (input, spec)) in inputs.iter().zip(&map.deps).enumerate() {
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
            deps.push(DepRecord { key, content });
        }
        let key = h.finish();

        let cacheable = self.worker.cacheable(vertex);
        if cacheable && !vertex.ignore_cache {
            if let Some(record) = self.cache.get(&key)? {
                if let Some(output) = self.worker.decode_result(&record.result) {
                    self.progress.event(Event::Cached { vertex: id, name: vertex.name.clone() });
                    return Ok(Solved { key, output });
                }
            }
        }

        let outputs: Vec<W::Output> = inputs.iter().map(|s| s.output.clone()).collect();
        let ctx = ExecContext { vertex: id, cancel: &self.cancel, progress: self.progress };
        let output = self.worker.exec(&ctx, graph, id, &outputs).map_err(op_err)?;
        if cacheable {
            self.cache.put(&CacheRecord {
                key,
                step_id: vertex.step_id.clone(),
                name: vertex.name.clone(),
                op: vertex.op.clone(),
                facts: map.facts,
                deps,
                result: self.worker.encode_result(&output),
            })?;
        }
        self.progress.event(Event::Done { vertex: id, duration: start.elapsed() });
        Ok(Solved { key, output })
    }
}
