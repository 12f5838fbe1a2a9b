//! `RUN --mount`: each parsed mount becomes an [`ir::Mount`](solver::ir::Mount),
//! adding the context, another stage or an image as an input of the exec when needed.

use super::metadata::{clean_path, join_path};
use super::stage::StageState;
use super::{ConvertError, Converter};
use crate::error::{Location, ParseError};
use crate::instructions::mount::{MountType, parse_mount};
use solver::VertexId;
use solver::ir::{CacheSharing, Mount, MountKind};

impl Converter<'_> {
    /// Converts one `--mount` of a RUN (`ssh_index`: how many ssh mounts came before),
    /// pushing any input it reads.
    pub(super) fn run_mount(
        &mut self,
        st: &StageState,
        at: Location,
        spec: &str,
        ssh_index: usize,
        inputs: &mut Vec<VertexId>,
    ) -> Result<Mount, ConvertError> {
        let expand = |w: &str| self.lex.process_word(w, &st.scope());
        let m = parse_mount(spec, &expand).map_err(|e| ParseError::new(at, e))?;
        let target = if m.target.is_empty() { String::new() } else { join_path(&st.workdir(), &m.target) };
        let source = clean_path(&m.source);
        let mut input_for = |this: &mut Self, from: &Option<String>| -> Result<usize, ConvertError> {
            let vertex = match from {
                Some(f) => this.source_for(f, st.index, at)?,
                None => this.context_vertex(),
            };
            inputs.push(vertex);
            Ok(inputs.len() - 1)
        };
        let kind = match m.kind {
            MountType::Bind => {
                let input = input_for(self, &m.from)?;
                MountKind::Bind { input, source, readonly: m.read_only }
            }
            MountType::Cache => {
                let from = match &m.from {
                    Some(_) => Some(input_for(self, &m.from)?),
                    None => None,
                };
                let sharing = match m.sharing.as_deref() {
                    Some("private") => CacheSharing::Private,
                    Some("locked") => CacheSharing::Locked,
                    _ => CacheSharing::Shared,
                };
                // BuildKit's default id is the target as written, cleaned.
                let id = match (m.id.is_empty(), m.target.starts_with('/')) {
                    (false, _) => m.id.clone(),
                    (true, true) => clean_path(&m.target),
                    (true, false) => clean_path(&m.target)[1..].to_string(),
                };
                MountKind::Cache {
                    id,
                    sharing,
                    from,
                    source,
                    mode: m.mode,
                    uid: m.uid,
                    gid: m.gid,
                    readonly: m.read_only,
                }
            }
            MountType::Tmpfs => MountKind::Tmpfs { size: m.size },
            MountType::Secret => {
                let id = match (m.source.is_empty(), m.id.is_empty(), m.target.is_empty()) {
                    (false, _, _) => m.source.clone(),
                    (true, false, _) => m.id.clone(),
                    (true, true, false) => basename(&m.target),
                    (true, true, true) => {
                        return Err(ParseError::invalid(at, "one of source, target required"));
                    }
                };
                let target = match (&m.target.is_empty(), &m.env) {
                    (true, None) => format!("/run/secrets/{}", basename(&id)),
                    _ => target,
                };
                let kind = MountKind::Secret {
                    id,
                    env: m.env.clone(),
                    required: m.required,
                    mode: m.mode.unwrap_or(0o400),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                };
                return Ok(Mount { target, kind });
            }
            MountType::Ssh => {
                let id = if m.id.is_empty() { "default".to_string() } else { m.id.clone() };
                let target = if target.is_empty() { format!("/run/buildkit/ssh_agent.{ssh_index}") } else { target };
                let kind = MountKind::Ssh {
                    id,
                    required: m.required,
                    mode: m.mode.unwrap_or(0o600),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                };
                return Ok(Mount { target, kind });
            }
        };
        if target.is_empty() || target == "/" {
            return Err(ParseError::invalid(at, format!("invalid mount target {:?}", m.target)));
        }
        Ok(Mount { target, kind })
    }
}

fn basename(path: &str) -> String {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or(path).to_string()
}
