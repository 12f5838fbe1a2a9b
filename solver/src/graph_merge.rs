//! Merging graphs: a caller with several graphs of one build (a multi-platform build
//! has one per target platform) solves their union, in which a vertex that is the
//! same in two graphs (the same op on the same inputs: a shared source, a step every
//! graph has alike) is one vertex — shown once, run once.

use crate::graph::{Graph, Vertex, VertexId};
use std::collections::HashMap;

/// What makes two vertices the same work: everything but how they are shown.
fn identity(vertex: &Vertex) -> String {
    let Vertex { op, inputs, name: _, step_id: _, group: _, ignore_cache, proxy_env, platform } = vertex;
    serde_json::to_string(&(op, inputs, ignore_cache, proxy_env, platform)).expect("vertices serialize")
}

impl Graph {
    /// Adds the vertices of `other`, reusing any vertex of `self` that does the same
    /// work on the same inputs (the first one's name and step id stay). Vertices of
    /// `other` stay as many as they are: two identical vertices of one graph are
    /// shown as two, as before (the solver runs them once by key). Returns where each
    /// vertex of `other` is now, by its index in `other`.
    pub fn merge(&mut self, other: &Graph) -> Vec<VertexId> {
        let existing: HashMap<String, VertexId> = self.iter().map(|(id, v)| (identity(v), id)).collect();
        let mut moved = Vec::with_capacity(other.len());
        for (_, vertex) in other.iter() {
            let mut vertex = vertex.clone();
            vertex.inputs = vertex.inputs.iter().map(|input| moved[input.0]).collect();
            let id = match existing.get(&identity(&vertex)) {
                Some(&id) => id,
                None => self.add(vertex),
            };
            moved.push(id);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use crate::ir::{Op, SourceOp};
    use crate::{Graph, Vertex};

    fn image(reference: &str, platform: Option<&str>) -> Op {
        Op::Source(SourceOp::Image { reference: reference.into(), platform: platform.map(String::from) })
    }

    #[test]
    fn shared_vertices_are_merged_and_others_kept_apart() {
        let mut a = Graph::new();
        let build = a.add(Vertex::new(image("rust", Some("linux/amd64")), vec![], "FROM rust"));
        let run = a.add(Vertex::new(Op::Merge, vec![build], "[build 1/1] RUN make"));
        let base = a.add(Vertex::new(image("busybox", None), vec![], "FROM busybox"));
        a.add(Vertex::new(Op::Merge, vec![base, run], "COPY --from=build"));

        let mut b = Graph::new();
        let b_build = b.add(Vertex::new(image("rust", Some("linux/amd64")), vec![], "FROM rust"));
        let mut b_run = Vertex::new(Op::Merge, vec![b_build], "another name, same work");
        b_run.step_id = Some("Dockerfile:build:1".into());
        let b_run = b.add(b_run);
        let b_base = b.add(Vertex::new(image("busybox", Some("linux/arm64")), vec![], "FROM busybox"));
        let mut foreign = Vertex::new(Op::Merge, vec![b_base, b_run], "COPY --from=build");
        foreign.platform = Some("linux/arm64".into());
        b.add(foreign);

        let moved = a.merge(&b);
        assert_eq!(moved[0], build);
        assert_eq!(moved[1], run);
        assert_eq!(a.vertex(run).name, "[build 1/1] RUN make");
        assert_eq!(a.len(), 6, "busybox for arm64 and its COPY are new");
        assert_eq!(a.vertex(moved[3]).inputs, vec![moved[2], run]);
        // Merging a graph into itself adds nothing.
        let again = a.clone();
        assert_eq!(a.merge(&again).len(), 6);
        assert_eq!(a.len(), 6);
        // Into an empty graph, identical vertices of one graph stay two.
        let mut twice = Graph::new();
        twice.add(Vertex::new(image("busybox", None), vec![], "FROM busybox"));
        twice.add(Vertex::new(image("busybox", None), vec![], "FROM busybox"));
        let mut empty = Graph::new();
        assert_eq!(empty.merge(&twice), [crate::VertexId(0), crate::VertexId(1)]);
    }
}
