//! One stage: its base (scratch, an image, an earlier stage), ONBUILD triggers of the
//! base, and the walk over its instructions. Also the naming of its vertices the way
//! BuildKit's progress shows them (`[build 2/5] RUN make`).

use super::env_index::{EnvIndex, IndexedEnv};
use super::{Base, ConvertError, Converted, Converter};
use crate::error::{Location, ParseError};
use crate::instructions::{self, Command, Instruction};
use crate::shell::Lex;
use crate::{ImageSpec, parser};
use image_spec::{ContainerConfig, Platform};
use solver::ir::{CopyAction, FileAction, FileOp, Op, SourceOp};
use solver::{Vertex, VertexId};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The state of the stage being converted.
pub(super) struct StageState {
    pub index: usize,
    /// Shown in vertex names: the stage name, `stage-N`, or nothing for a lone unnamed stage.
    pub label: Option<String>,
    /// Stage name or index, for step ids and groups.
    pub key: String,
    pub vertex: VertexId,
    pub image: ImageSpec,
    /// ARGs declared in this stage (or its base stage), with their values.
    pub args: Vec<(String, Option<String>)>,
    /// What RUN sees and words expand against: the image env plus ENV, with ARG
    /// values set in declaration order (BuildKit's state env).
    pub state_env: Vec<String>,
    /// Where each key of `state_env` and of the image's env is.
    pub state_env_index: EnvIndex,
    pub config_env_index: EnvIndex,
    /// The instruction being converted is a base image's ONBUILD trigger.
    pub onbuild: bool,
    pub cmd_index: usize,
    pub cmd_total: usize,
    pub ignore_cache: bool,
    /// CMD was set in this stage (ENTRYPOINT keeps it then).
    pub cmd_set: bool,
    /// Index of the instruction being converted (FROM is 0).
    pub step: usize,
    pub location: Location,
    /// The stage's platform: `FROM --platform`'s, else the target's.
    pub platform: Platform,
}

impl StageState {
    pub fn scope(&self) -> IndexedEnv<'_> {
        IndexedEnv { env: &self.state_env, index: &self.state_env_index }
    }

    pub fn expand(&self, lex: &Lex, word: &str) -> Result<String, ConvertError> {
        lex.process_word(word, &self.scope()).map_err(|e| ParseError::expansion(self.location, e))
    }

    pub fn workdir(&self) -> String {
        self.image.config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into())
    }

    pub fn user(&self) -> String {
        self.image.config.user.clone().unwrap_or_default()
    }

    pub fn shell(&self) -> Vec<String> {
        match &self.image.config.shell {
            Some(s) if !s.is_empty() => s.clone(),
            _ => vec!["/bin/sh".into(), "-c".into()],
        }
    }
}

/// The config of `FROM scratch` (and of bases that cannot be resolved offline).
pub fn empty_config() -> ContainerConfig {
    ContainerConfig {
        env: Some(vec![format!("PATH={DEFAULT_PATH}")]),
        working_dir: Some("/".into()),
        ..ContainerConfig::default()
    }
}

/// `alpine` → `docker.io/library/alpine:latest`, as BuildKit shows image names.
pub fn display_reference(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let first = name.split('/').next().unwrap_or("");
    let has_domain = name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = match (has_domain, name.contains('/')) {
        (true, _) => name.to_string(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && digest.is_none() {
        full.push_str(":latest");
    }
    if let Some(d) = digest {
        full = format!("{full}@{d}");
    }
    full
}

/// `copy --from=a x y` → `COPY --from=a x y`.
pub fn uppercase_command(text: &str) -> String {
    match text.split_once(' ') {
        Some((cmd, rest)) => format!("{} {rest}", cmd.to_uppercase()),
        None => text.to_uppercase(),
    }
}

fn counts_as_step(instruction: &Instruction) -> bool {
    matches!(instruction.command, Command::Add(_) | Command::Copy(_) | Command::Run(_) | Command::Workdir(_))
}

impl Converter<'_> {
    pub(super) fn convert_stage_body(&mut self, index: usize) -> Result<(), ConvertError> {
        if self.done[index].is_some() {
            return Ok(());
        }
        let stage = &self.dockerfile.stages[index];
        if self.in_progress[index] {
            let name = stage.name.clone().unwrap_or_else(|| index.to_string());
            return Err(ParseError::invalid(
                stage.location(),
                format!("circular dependency detected on stage: {name}"),
            ));
        }
        self.in_progress[index] = true;
        let at = stage.location();
        let info = self.stages[index].clone();

        let (base_vertex, mut image, base_args, base_env) = match &info.base {
            Base::Scratch => (None, ImageSpec { config: empty_config(), ..ImageSpec::default() }, vec![], None),
            Base::Stage(j) => {
                self.convert_stage(*j)?;
                let base = self.done[*j].clone().expect("base stage converted");
                (Some(base.vertex), base.image, base.args, Some(base.state_env))
            }
            Base::Image(reference) => {
                (None, self.resolve_image(reference, info.platform.as_deref(), at)?, vec![], None)
            }
            Base::Named(_) => (None, ImageSpec { config: empty_config(), ..ImageSpec::default() }, vec![], None),
        };
        // BuildKit makes sure every stage has a PATH.
        let env = image.config.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        let state_env = base_env.unwrap_or_else(|| env.clone());

        let mut instructions = Vec::new();
        if !info.overridden {
            instructions = self.onbuild_triggers(&image.config, at)?;
        }
        let triggers = instructions.len();
        image.config.on_build = None;
        if !info.overridden {
            instructions.extend(stage.instructions.iter().cloned());
        }

        // As BuildKit: no label when the Dockerfile has a single stage.
        let label = match &info.name {
            _ if self.stages.len() == 1 => None,
            Some(n) => Some(n.clone()),
            None => Some(format!("stage-{index}")),
        };
        let key = info.name.clone().unwrap_or_else(|| index.to_string());
        let ignore_cache = self.options.no_cache
            || self.options.no_cache_filter.iter().any(|f| f.eq_ignore_ascii_case(&key) || *f == index.to_string());
        let from_step = usize::from(matches!(info.base, Base::Image(_) | Base::Named(_)));
        let state_env_index = EnvIndex::of(&state_env);
        let config_env_index = EnvIndex::of(image.config.env.as_deref().unwrap_or_default());
        let platform = self.stage_platform(info.platform.as_deref(), at)?;
        let mut st = StageState {
            index,
            label,
            key,
            vertex: VertexId(0),
            image,
            args: base_args,
            state_env,
            state_env_index,
            config_env_index,
            onbuild: false,
            cmd_index: 0,
            cmd_total: instructions.iter().filter(|i| counts_as_step(i)).count() + from_step,
            ignore_cache,
            cmd_set: false,
            step: 0,
            location: at,
            platform,
        };
        st.vertex = match (&info.base, base_vertex) {
            (_, Some(v)) => v,
            (Base::Image(reference), None) => {
                let platform = self.source_platform(info.platform.as_ref(), &st.platform);
                let op = Op::Source(SourceOp::Image { reference: reference.clone(), platform });
                self.add_step(&mut st, op, vec![], &format!("FROM {}", display_reference(reference)), true)
            }
            (Base::Named(key), None) => {
                // A local directory as the stage's filesystem: copied onto scratch.
                let scratch = self.scratch_vertex();
                let local = self.named_vertex(key, index, at)?;
                let copy = FileAction::Copy(CopyAction::new(1, vec![".".into()], "/"));
                let op = Op::File(FileOp { actions: vec![copy] });
                self.add_step(&mut st, op, vec![scratch, local], &format!("FROM {key}"), true)
            }
            _ => self.add_step(&mut st, Op::Source(SourceOp::Scratch), vec![], "FROM scratch", false),
        };

        for (k, instruction) in instructions.iter().enumerate() {
            st.step = k + 1;
            st.location = instruction.location();
            st.onbuild = k < triggers;
            self.dispatch(&mut st, instruction)?;
        }
        self.done[index] =
            Some(Converted { vertex: st.vertex, image: st.image, args: st.args, state_env: st.state_env });
        self.in_progress[index] = false;
        Ok(())
    }

    fn resolve_image(
        &mut self,
        reference: &str,
        platform: Option<&str>,
        at: Location,
    ) -> Result<ImageSpec, ConvertError> {
        let platform = self.stage_platform(platform, at)?;
        match self.resolver.resolve(reference, &platform) {
            Ok(Some(base)) => Ok(ImageSpec { config: base.config, base_history: base.history, history: Vec::new() }),
            Ok(None) => Ok(ImageSpec { config: empty_config(), ..ImageSpec::default() }),
            Err(e) => Err(ParseError::invalid(at, format!("failed to resolve base image {reference}: {e}"))),
        }
    }

    /// Parses the base image's ONBUILD triggers; they run first, as Docker does.
    fn onbuild_triggers(&self, config: &ContainerConfig, at: Location) -> Result<Vec<Instruction>, ConvertError> {
        let mut out = Vec::new();
        for trigger in config.on_build.iter().flatten() {
            let bad =
                |e: String| ParseError::invalid(at, format!("invalid ONBUILD trigger {trigger:?} of base image: {e}"));
            let ast = parser::parse(trigger).map_err(|e| bad(e.kind.to_string()))?;
            for node in &ast.children {
                if matches!(node.keyword().as_str(), "onbuild" | "from" | "maintainer") {
                    return Err(bad(format!("{} isn't allowed as an ONBUILD trigger", node.value.to_uppercase())));
                }
                let mut instruction = instructions::parse_node(node).map_err(|e| bad(e.to_string()))?;
                // A trigger is reported at the FROM that brought it in, flags included.
                (instruction.line, instruction.column) = (at.line, at.column);
                instruction.flags.iter_mut().for_each(|(_, flag_at)| *flag_at = at);
                out.push(instruction);
            }
        }
        Ok(out)
    }

    /// The vertex name for an instruction: `[label i/n] TEXT` with env expanded.
    pub(super) fn step_name(&self, st: &mut StageState, text: &str, counted: bool) -> String {
        let text = uppercase_command(&self.lex.process_word(text, &st.scope()).unwrap_or_else(|_| text.to_string()));
        self.prefixed(st, text, counted)
    }

    /// `[label i/n] ` in front of `text` (and `ONBUILD ` for triggers), as BuildKit does.
    pub(super) fn prefixed(&self, st: &mut StageState, text: String, counted: bool) -> String {
        if !counted || st.cmd_total == 0 {
            return text;
        }
        st.cmd_index += 1;
        let width = st.cmd_total.to_string().len();
        let mut label = st.label.as_ref().map(|l| format!("{l} ")).unwrap_or_default();
        if self.options.multi_platform {
            label.insert_str(0, &format!("{}{} ", st.platform, self.target_suffix(st)));
        }
        let onbuild = if st.onbuild { "ONBUILD " } else { "" };
        format!("[{label}{:>width$}/{}] {onbuild}{text}", st.cmd_index, st.cmd_total)
    }

    /// Adds a vertex for the current instruction of `st`.
    pub(super) fn add_step(
        &mut self,
        st: &mut StageState,
        op: Op,
        inputs: Vec<VertexId>,
        text: &str,
        counted: bool,
    ) -> VertexId {
        let name = self.step_name(st, text, counted);
        self.add_named_step(st, op, inputs, name)
    }

    /// Adds a vertex for the current instruction of `st` under a ready-made name.
    pub(super) fn add_named_step(&mut self, st: &StageState, op: Op, inputs: Vec<VertexId>, name: String) -> VertexId {
        let mut vertex = Vertex::new(op, inputs, name);
        vertex.step_id = Some(format!("{}:{}:{}", self.options.dockerfile_name, st.key, st.step));
        vertex.group = Some(st.key.clone());
        vertex.ignore_cache = st.ignore_cache;
        if matches!(vertex.op, Op::Exec(_)) {
            vertex.platform = self.foreign_platform(&st.platform);
        }
        self.graph.add(vertex)
    }

    /// Converts one instruction.
    fn dispatch(&mut self, st: &mut StageState, instruction: &Instruction) -> Result<(), ConvertError> {
        match &instruction.command {
            Command::Run(run) => self.dispatch_run(st, instruction, run),
            Command::Copy(copy) => self.dispatch_copy(st, instruction, copy),
            Command::Add(add) => self.dispatch_add(st, instruction, add),
            Command::Workdir(path) => self.dispatch_workdir(st, instruction, path),
            Command::Arg(defs) => self.dispatch_arg(st, defs),
            _ => self.dispatch_metadata(st, instruction),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_references() {
        assert_eq!(display_reference("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(display_reference("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(display_reference("me/app"), "docker.io/me/app:latest");
        assert_eq!(display_reference("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(display_reference("a@sha256:00"), "docker.io/library/a@sha256:00");
    }
}
