//! The build flags every `RUN` step gets: `--add-host`, `--ulimit` and `--shm-size`.
//!
//! As in BuildKit, where they are fields of each ExecOp's `Meta` (the shm size a
//! tmpfs mount at `/dev/shm`), they are written into every exec op of the graph
//! before the solve, so that they count in the step's cache key: change
//! `--add-host` and the step runs again with the new `/etc/hosts`. When the step
//! runs, the worker reads them back from its op (see `ops::exec`). The frontend
//! never sees them: they are the same for every `RUN` of every stage.

use anyhow::{Result, anyhow};
use solver::ir::{ExecOp, HostIp, Op, Ulimit};
use solver::{Graph, VertexId};

/// `--add-host`, `--ulimit` and `--shm-size` as given, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepFlags {
    pub extra_hosts: Vec<HostIp>,
    pub ulimits: Vec<Ulimit>,
    /// Bytes as asked; the machine's tmpfs cap applies when a step runs, so that
    /// the key does not depend on the memory of the machine that built.
    pub shm_size: Option<u64>,
}

impl StepFlags {
    /// Parses the command line's values; the errors are the user's (usage errors).
    pub fn parse(add_hosts: &[String], ulimits: &[String], shm_size: Option<&str>) -> Result<Self, String> {
        let extra_hosts =
            crate::build_flags::parse_add_hosts(add_hosts)?.into_iter().map(|(host, ip)| HostIp { host, ip }).collect();
        let ulimits = ulimits.iter().map(|u| parse_ulimit(u)).collect::<Result<_, _>>()?;
        Ok(StepFlags { extra_hosts, ulimits, shm_size: crate::build_flags::parse_shm_size(shm_size)? })
    }

    /// Sets the flags on every exec op of `graph`.
    pub fn set_on(&self, graph: &mut Graph) {
        for i in 0..graph.len() {
            if let Op::Exec(exec) = &mut graph.vertex_mut(VertexId(i)).op {
                exec.extra_hosts = self.extra_hosts.clone();
                exec.ulimits = self.ulimits.clone();
                exec.shm_size = self.shm_size;
            }
        }
    }
}

/// `--ulimit NAME=SOFT[:HARD]`, checked as `sandbox::parse_ulimit` checks it, under
/// Docker's short lowercase name (`RLIMIT_NOFILE` and ` nofile` are `nofile`): the
/// same limit written two ways is one key.
fn parse_ulimit(text: &str) -> Result<Ulimit, String> {
    let limit = crate::sandbox::parse_ulimit(text).map_err(|e| e.to_string())?;
    let name = text.split_once('=').map_or(text, |(name, _)| name).trim().to_ascii_lowercase();
    let name = name.strip_prefix("rlimit_").unwrap_or(&name).to_string();
    Ok(Ulimit { name, soft: limit.soft, hard: limit.hard })
}

/// The `/etc/hosts` lines the op asks for.
pub fn extra_hosts(op: &ExecOp) -> Vec<(String, std::net::IpAddr)> {
    op.extra_hosts.iter().map(|h| (h.host.clone(), h.ip)).collect()
}

/// The step's resources: the build's `base` limits, then the op's ulimits and its
/// `/dev/shm` size, capped as any tmpfs of a step is (`sandbox::tmpfs_size`).
pub fn resources(op: &ExecOp, base: &executor::Resources) -> Result<executor::Resources> {
    let mut resources = base.clone();
    for Ulimit { name, soft, hard } in &op.ulimits {
        let resource = executor::rlimit_by_name(name).ok_or_else(|| anyhow!("unknown ulimit {name:?} in the step"))?;
        resources.rlimits.push(executor::Rlimit { resource, soft: *soft, hard: *hard });
    }
    if let Some(size) = op.shm_size {
        resources.shm_size = Some(crate::sandbox::tmpfs_size(Some(size)));
    }
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use solver::Vertex;
    use solver::ir::SourceOp;

    fn exec() -> ExecOp {
        ExecOp::new(vec!["true".into()])
    }

    #[test]
    fn set_on_every_exec_and_read_back() {
        let flags =
            StepFlags::parse(&["db:10.0.0.1".into()], &["RLIMIT_NOFILE=1024:2048".into()], Some("64m")).unwrap();
        assert_eq!(flags.ulimits, [Ulimit { name: "nofile".into(), soft: 1024, hard: 2048 }]);
        let mut graph = Graph::new();
        let root = graph.add(Vertex::new(Op::Source(SourceOp::Scratch), vec![], "scratch"));
        let a = graph.add(Vertex::new(Op::Exec(exec()), vec![root], "a"));
        let b = graph.add(Vertex::new(Op::Exec(exec()), vec![a], "b"));
        flags.set_on(&mut graph);
        assert_eq!(graph.vertex(root).op, Op::Source(SourceOp::Scratch));
        for id in [a, b] {
            let Op::Exec(op) = &graph.vertex(id).op else { unreachable!() };
            assert_eq!(extra_hosts(op), [("db".to_string(), "10.0.0.1".parse().unwrap())]);
            let resources = resources(op, &executor::Resources::default()).unwrap();
            let nofile = executor::rlimit_by_name("nofile").unwrap();
            assert_eq!(resources.rlimits, [executor::Rlimit { resource: nofile, soft: 1024, hard: 2048 }]);
            assert_eq!(resources.shm_size, Some(crate::sandbox::tmpfs_size(Some(64 << 20))));
        }
    }

    #[test]
    fn shm_size_is_capped_when_run_not_in_the_op() {
        let mut op = exec();
        op.shm_size = StepFlags::parse(&[], &[], Some("100000g")).unwrap().shm_size;
        assert_eq!(op.shm_size, Some(100000 << 30));
        let shm = resources(&op, &executor::Resources::default()).unwrap().shm_size.unwrap();
        assert!(shm < 100000 << 30, "not capped");
        assert!(StepFlags::parse(&[], &["files=1".into()], None).unwrap_err().contains("files"));
    }
}
