//! Progress events: what the solver reports while it works.

use crate::graph::VertexId;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Serialize)]
pub enum Event {
    /// A vertex will be worked on (its key is being computed or its op runs).
    Started {
        vertex: VertexId,
        name: String,
    },
    /// The result came from the cache, or from an identical vertex of the same build.
    Cached {
        vertex: VertexId,
        name: String,
        /// The imported cache the hit came from ([`crate::CacheStore::hit_source`]);
        /// `None` for the local cache.
        source: Option<String>,
    },
    /// Output of the running op.
    Log {
        vertex: VertexId,
        stream: Stream,
        data: Vec<u8>,
    },
    /// Why the vertex missed the cache (one line each).
    Explain {
        vertex: VertexId,
        reasons: Vec<String>,
    },
    Done {
        vertex: VertexId,
        duration: Duration,
    },
    Error {
        vertex: VertexId,
        message: String,
    },
    /// The vertex was started but the build stopped before it finished (another
    /// vertex failed or the build was cancelled).
    Cancelled {
        vertex: VertexId,
    },
}

impl Event {
    /// The vertex the event is about.
    pub fn vertex(&self) -> VertexId {
        match self {
            Event::Started { vertex, .. }
            | Event::Cached { vertex, .. }
            | Event::Log { vertex, .. }
            | Event::Explain { vertex, .. }
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
