//! The worker of a build outside builder's user namespace (`crate::userns`): the
//! ops it refuses, before any side effect, because they need root of the namespace
//! (a sandbox, an overlay mount, files of any owner in a snapshot) or would write a
//! snapshot whose owners differ from those written inside (as the caller, a file is
//! uid 1000, not 0). The refusal ([`NeedsUserNamespace`]) ends the attempt; the build
//! then starts over inside. What a cached build needs passes: resolving images from
//! the store, opening and hashing the context, merging layer lists, cache hits.

use crate::userns::NeedsUserNamespace;
use solver::Vertex;
use solver::ir::{Op, SourceOp};

/// Whether `vertex`'s key can be made outside: sources that fetch (`ADD <url>`
/// downloads into a snapshot, git fetches and checks out) cannot.
pub(super) fn check_key(vertex: &Vertex) -> Result<(), NeedsUserNamespace> {
    match &vertex.op {
        Op::Source(SourceOp::Http { .. } | SourceOp::Git(_)) => Err(refused()),
        _ => Ok(()),
    }
}

/// Whether `vertex`'s op can run outside: only sources read from the store or the
/// context, and merges.
pub(super) fn check_exec(vertex: &Vertex) -> Result<(), NeedsUserNamespace> {
    match &vertex.op {
        Op::Source(SourceOp::Scratch | SourceOp::Image { .. } | SourceOp::Local { .. }) | Op::Merge => Ok(()),
        Op::Source(SourceOp::Http { .. } | SourceOp::Git(_)) | Op::Exec(_) | Op::File(_) => Err(refused()),
    }
}

/// The solver names the step in the error.
fn refused() -> NeedsUserNamespace {
    NeedsUserNamespace::op("the step")
}

#[cfg(test)]
mod tests {
    use super::*;
    use solver::ir::{ExecOp, FileOp};

    fn vertex(op: Op) -> Vertex {
        Vertex {
            op,
            inputs: Vec::new(),
            name: "[2/3] RUN make".into(),
            step_id: None,
            group: None,
            ignore_cache: false,
            proxy_env: Vec::new(),
            platform: None,
        }
    }

    #[test]
    fn only_what_a_cached_build_runs_passes() {
        let image = Op::Source(SourceOp::Image { reference: "busybox".into(), platform: None });
        let local = Op::Source(SourceOp::Local { name: "context".into(), exclude: Vec::new() });
        for op in [Op::Source(SourceOp::Scratch), image, local, Op::Merge] {
            let v = vertex(op);
            assert!(check_key(&v).is_ok() && check_exec(&v).is_ok(), "{:?}", v.op);
        }
        let url = Op::Source(SourceOp::Http { url: "https://x/y".into(), checksum: None, filename: None });
        let e = check_key(&vertex(url.clone())).unwrap_err();
        assert_eq!(e.to_string(), "the step needs builder's user namespace");
        assert!(check_exec(&vertex(url)).is_err());
        let exec = ExecOp::new(vec!["make".into()]);
        for op in [Op::Exec(exec), Op::File(FileOp { actions: Vec::new() })] {
            let v = vertex(op);
            assert!(check_key(&v).is_ok(), "its key is the op's: {:?}", v.op);
            assert!(check_exec(&v).is_err(), "{:?}", v.op);
        }
    }
}
