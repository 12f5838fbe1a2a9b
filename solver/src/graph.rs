//! The build graph: vertices in topological order by construction.

use crate::ir::Op;
use serde::{Deserialize, Serialize};

/// Index of a vertex in its [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VertexId(pub usize);

/// One node of the build graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vertex {
    pub op: Op,
    /// Results this op consumes; for exec and file ops input 0 is the root filesystem.
    pub inputs: Vec<VertexId>,
    /// What the user sees, e.g. `[build 2/4] RUN make`.
    pub name: String,
    /// A stable identity of the step across builds (e.g. `Dockerfile:build:2`), used to
    /// explain a cache miss by comparing with the previous build of the same step.
    pub step_id: Option<String>,
    /// Group the step belongs to (a stage name), for `--no-cache-filter`.
    pub group: Option<String>,
    /// Never use a cached result for this vertex (`--no-cache`, `--no-cache-filter`).
    pub ignore_cache: bool,
    /// Variables added to the environment of an exec op's process that are not part
    /// of the op: the proxy settings of the machine running the build (BuildKit's
    /// `ProxyEnv`). Kept off the op so they never reach its cache key, its cache
    /// record or an explanation, and a build behind a proxy shares cache with one that
    /// is not. The op's own env wins when both set a name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_env: Vec<(String, String)>,
    /// The platform (`linux/arm64`) an exec op's process runs as, when it is not the
    /// platform of the machine running the build; `None` for every other op. The
    /// worker puts it in the op's cache key and checks that it can run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl Vertex {
    pub fn new(op: Op, inputs: Vec<VertexId>, name: impl Into<String>) -> Self {
        Vertex {
            op,
            inputs,
            name: name.into(),
            step_id: None,
            group: None,
            ignore_cache: false,
            proxy_env: Vec::new(),
            platform: None,
        }
    }
}

/// A DAG of ops. Inputs of a vertex must already be in the graph, so the vertex order
/// is a topological order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    vertices: Vec<Vertex>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vertex. Panics if an input is not yet in the graph (a frontend bug).
    pub fn add(&mut self, vertex: Vertex) -> VertexId {
        for input in &vertex.inputs {
            assert!(input.0 < self.vertices.len(), "input {} of {:?} not in graph", input.0, vertex.name);
        }
        self.vertices.push(vertex);
        VertexId(self.vertices.len() - 1)
    }

    pub fn vertex(&self, id: VertexId) -> &Vertex {
        &self.vertices[id.0]
    }

    pub fn vertex_mut(&mut self, id: VertexId) -> &mut Vertex {
        &mut self.vertices[id.0]
    }

    pub fn len(&self) -> usize {
        self.vertices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (VertexId, &Vertex)> {
        self.vertices.iter().enumerate().map(|(i, v)| (VertexId(i), v))
    }

    /// The vertices `targets` depend on (themselves included), in topological order.
    pub fn ancestors(&self, targets: &[VertexId]) -> Vec<VertexId> {
        let mut needed = vec![false; self.vertices.len()];
        let mut stack: Vec<VertexId> = targets.to_vec();
        while let Some(id) = stack.pop() {
            if !needed[id.0] {
                needed[id.0] = true;
                stack.extend(self.vertices[id.0].inputs.iter().copied());
            }
        }
        (0..self.vertices.len()).filter(|&i| needed[i]).map(VertexId).collect()
    }
}
