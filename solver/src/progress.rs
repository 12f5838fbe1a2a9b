//! Progress events: what the solver reports while it works, and what its caller
//! reports about the work it does around the solve.
//!
//! Every event is about a [`ProgressVertex`]: a vertex of the graph being solved, or
//! an [`ExternalId`] for work outside the graph that a display shows as a vertex of
//! its own (resolving a base image, exporting the result, pushing it). The solver
//! only sends events about its graph; it never makes external vertices.
//!
//! A vertex's life: `Started`, then any number of `Log`, `Progress`, `Warning` and
//! `Explain`, then one of `Cached`, `Done`, `Error` or `Cancelled`.

use crate::graph::VertexId;
use serde::Serialize;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A vertex outside the graph, numbered apart from the graph's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ExternalId(pub u32);

impl ExternalId {
    /// A fresh id, never given out before in this process.
    pub fn next() -> ExternalId {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        ExternalId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// The vertex an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ProgressVertex {
    /// A vertex of the graph being solved.
    Graph(VertexId),
    /// Work outside the graph, shown as a vertex of its own.
    External(ExternalId),
}

impl ProgressVertex {
    /// The graph vertex, if it is one.
    pub fn graph(self) -> Option<VertexId> {
        match self {
            ProgressVertex::Graph(id) => Some(id),
            ProgressVertex::External(_) => None,
        }
    }
}

impl From<VertexId> for ProgressVertex {
    fn from(id: VertexId) -> Self {
        ProgressVertex::Graph(id)
    }
}

impl From<ExternalId> for ProgressVertex {
    fn from(id: ExternalId) -> Self {
        ProgressVertex::External(id)
    }
}

impl PartialEq<VertexId> for ProgressVertex {
    fn eq(&self, other: &VertexId) -> bool {
        *self == ProgressVertex::Graph(*other)
    }
}

#[derive(Debug, Clone, Serialize)]
pub enum Event {
    /// A vertex will be worked on (its key is being computed or its op runs).
    Started {
        vertex: ProgressVertex,
        name: String,
    },
    /// The result came from the cache, or from an identical vertex of the same build.
    Cached {
        vertex: ProgressVertex,
        name: String,
        /// The imported cache the hit came from ([`crate::CacheStore::hit_source`]);
        /// `None` for the local cache.
        source: Option<String>,
    },
    /// Output of the running op.
    Log {
        vertex: ProgressVertex,
        stream: Stream,
        data: Vec<u8>,
    },
    /// Why the vertex missed the cache (one line each).
    Explain {
        vertex: ProgressVertex,
        reasons: Vec<String>,
    },
    /// One part of a vertex's work, named by `id` (what a user reads: a blob digest,
    /// `naming to NAME`, `pushing layers`): sent when it starts, as it moves and once
    /// more, `completed`, when it ends. A part that moves bytes counts them in
    /// `current` of `total` (`None` while unknown); a part that does not leaves both
    /// at zero.
    Progress {
        vertex: ProgressVertex,
        id: String,
        current: u64,
        total: Option<u64>,
        completed: bool,
    },
    /// Something the user should know that does not stop the vertex.
    Warning {
        vertex: ProgressVertex,
        message: String,
    },
    Done {
        vertex: ProgressVertex,
        duration: Duration,
    },
    Error {
        vertex: ProgressVertex,
        message: String,
    },
    /// The vertex was started but the build stopped before it finished (another
    /// vertex failed or the build was cancelled).
    Cancelled {
        vertex: ProgressVertex,
    },
}

impl Event {
    /// The vertex the event is about.
    pub fn vertex(&self) -> ProgressVertex {
        match self {
            Event::Started { vertex, .. }
            | Event::Cached { vertex, .. }
            | Event::Log { vertex, .. }
            | Event::Explain { vertex, .. }
            | Event::Progress { vertex, .. }
            | Event::Warning { vertex, .. }
            | Event::Done { vertex, .. }
            | Event::Error { vertex, .. }
            | Event::Cancelled { vertex } => *vertex,
        }
    }
}

/// Receives events; called from worker threads.
pub trait ProgressSink: Send + Sync {
    fn event(&self, event: Event);
}

/// Discards every event.
pub struct NullProgress;

impl ProgressSink for NullProgress {
    fn event(&self, _: Event) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_are_never_reused() {
        let (a, b) = (ExternalId::next(), ExternalId::next());
        assert_ne!(a, b);
        assert_ne!(ProgressVertex::from(a), ProgressVertex::from(b));
        assert_eq!(ProgressVertex::from(VertexId(3)), VertexId(3));
        assert_eq!(ProgressVertex::from(a).graph(), None);
    }
}
