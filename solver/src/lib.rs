//! The solver: the build graph IR, its cache keys, and the scheduler that runs it.
//!
//! A [`Graph`] is a DAG of [`Vertex`]es; each vertex carries an [`ir::Op`] (a source,
//! an exec or a file operation) and the ids of its inputs, which always precede it.
//! [`Solver::solve`] computes a [`CacheKey`] for every vertex bottom-up from the
//! [`CacheMap`] that a [`Worker`] gives for it, looks each key up in a [`CacheStore`],
//! and runs the misses through the worker, reporting [`progress::Event`]s as it goes.
//!
//! Solving is parallel (`solve/schedule.rs`): every vertex whose inputs are solved is worked
//! on at once, up to [`SolveOptions::jobs`]; vertices with the same key run once; the
//! first failure cancels the rest through the [`CancelToken`]. A cacheable vertex that
//! misses is explained ([`explain`]) against the last record of the same step; one that
//! hits names the imported cache it came from, if any ([`CacheStore::hit_source`]).
//!
//! The solver never knows what a Dockerfile, an OCI image or a Linux namespace is: ops
//! are plain data it hashes and hands back to the worker, and results are opaque
//! values of the worker's choosing.

pub mod cache;
pub mod explain;
pub mod graph;
mod graph_merge;
pub mod ir;
pub mod key;
pub mod progress;
pub mod solve;

pub use cache::{
    CacheMap, CacheRecord, CacheStore, Claim, ClaimAttempt, ContentDigest, DepKind, DepSpec, MemoryCacheStore,
};
pub use graph::{Graph, Vertex, VertexId};
pub use key::{CacheKey, KeyHasher, StableEncode};
pub use progress::{Event, ProgressSink};
pub use solve::{
    CancelToken, ExecContext, SolveError, SolveOptions, SolveReport, SolvedVertex, Solver, Worker, WorkerError,
};
