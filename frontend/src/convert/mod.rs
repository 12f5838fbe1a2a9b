//! The third pass: stages to a [`solver::Graph`]. Only the stages the target needs
//! are converted, each once, in dependency order (a stage is converted the first time
//! something refers to it: `FROM`, `COPY --from`, `RUN --mount=from=`). Word
//! expansion happens here, against each stage's ENV and ARG values.

mod args;
mod copy;
mod env_index;
mod metadata;
mod platform;
mod print;
mod run;
mod run_mount;
mod stage;

pub use print::print_graph;

use crate::error::{Location, ParseError};
use crate::instructions::{self, Dockerfile};
use crate::shell::Lex;
use crate::{BuildDefinition, BuildOptions, Error, ImageResolver, ImageSpec, parser};
use args::MetaArgs;
use image_spec::Platform;
use solver::ir::{Op, SourceOp};
use solver::{Graph, Vertex, VertexId};
use std::collections::{BTreeMap, BTreeSet};

/// A conversion error, at the instruction it is about.
pub(crate) type ConvertError = ParseError;

/// What a stage's base is, after expanding global args.
#[derive(Debug, Clone, PartialEq)]
enum Base {
    Scratch,
    Stage(usize),
    Image(String),
    /// A `--build-context`, by key.
    Named(String),
}

#[derive(Debug, Clone)]
struct StageInfo {
    name: Option<String>,
    base: Base,
    /// `FROM --platform=` after expansion.
    platform: Option<String>,
    /// A `--build-context` of the stage's name replaces it: its base is that
    /// context and its instructions are not converted.
    overridden: bool,
}

/// A converted stage: where its filesystem is and the image it describes.
#[derive(Debug, Clone)]
struct Converted {
    vertex: VertexId,
    image: ImageSpec,
    /// Carried into stages built `FROM` this one, as BuildKit does.
    args: Vec<(String, Option<String>)>,
    state_env: Vec<String>,
}

pub(crate) struct Converter<'a> {
    options: &'a BuildOptions,
    resolver: &'a dyn ImageResolver,
    dockerfile: &'a Dockerfile,
    lex: Lex,
    meta: MetaArgs,
    graph: Graph,
    context: Option<VertexId>,
    scratch: Option<VertexId>,
    /// Named contexts' vertices (a local directory's source, an image's), by key.
    named: BTreeMap<String, VertexId>,
    stages: Vec<StageInfo>,
    done: Vec<Option<Converted>>,
    in_progress: Vec<bool>,
    used_args: BTreeSet<String>,
    warnings: Vec<String>,
    /// Stage conversions open at once (see [`MAX_STAGE_DEPTH`]).
    stage_depth: usize,
}

/// A stage converts the stages it uses first, recursively (`FROM` another stage,
/// `COPY --from`, `RUN --mount=from=`): a chain deeper than this is refused with an
/// error at the stage, where a hostile Dockerfile would overflow the stack.
pub const MAX_STAGE_DEPTH: usize = 200;

/// Parses and type-checks a Dockerfile without converting it.
pub fn check(text: &str) -> Result<Dockerfile, ParseError> {
    let ast = parser::parse(text)?;
    instructions::parse_dockerfile(&ast)
}

pub fn compile(text: &str, options: &BuildOptions, resolver: &dyn ImageResolver) -> Result<BuildDefinition, Error> {
    let error = |e: ParseError| Error::in_file(&options.dockerfile_name, e);
    let ast = parser::parse(text).map_err(error)?;
    let dockerfile = instructions::parse_dockerfile(&ast).map_err(error)?;
    let lex = Lex::new(dockerfile.escape_token);
    let mut used_args = BTreeSet::new();
    let meta = MetaArgs::evaluate(&dockerfile.meta_args, options, &lex, &mut used_args).map_err(error)?;
    let mut converter = Converter {
        options,
        resolver,
        dockerfile: &dockerfile,
        lex,
        meta,
        graph: Graph::new(),
        context: None,
        scratch: None,
        named: BTreeMap::new(),
        stages: Vec::new(),
        done: vec![None; dockerfile.stages.len()],
        in_progress: vec![false; dockerfile.stages.len()],
        used_args,
        // The parser's own warnings (empty continuation lines) are the lint's to report.
        warnings: Vec::new(),
        stage_depth: 0,
    };
    converter.resolve_stage_bases().map_err(error)?;
    let target = converter.target_index().map_err(error)?;
    converter.convert_stage(target).map_err(error)?;
    converter.finish(target)
}

impl<'a> Converter<'a> {
    /// Expands every `FROM` in the global scope and links stage-to-stage bases.
    fn resolve_stage_bases(&mut self) -> Result<(), ConvertError> {
        for (i, stage) in self.dockerfile.stages.iter().enumerate() {
            let base_name = self
                .meta
                .expand(&self.lex, &stage.base_name)
                .map_err(|e| ParseError::expansion(stage.location(), e))?;
            if base_name.is_empty() {
                return Err(ParseError::invalid(
                    stage.location(),
                    format!("base name ({}) should not be blank", stage.base_name),
                ));
            }
            let lower = base_name.to_lowercase();
            let base = if lower == "scratch" {
                Base::Scratch
            } else if let Some(j) = self.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str())) {
                Base::Stage(j)
            } else if let Some(key) = self.named_context(&base_name) {
                self.named_base(key)
            } else {
                Base::Image(base_name)
            };
            let named = stage.name.as_deref().and_then(|name| self.named_context(name));
            let overridden = named.is_some();
            let base = named.map_or(base, |key| self.named_base(key));
            let platform = match &stage.platform {
                Some(p) => {
                    Some(self.meta.expand(&self.lex, p).map_err(|e| ParseError::expansion(stage.location(), e))?)
                }
                None => None,
            };
            if let Some(p) = &platform {
                Platform::parse(p).map_err(|e| ParseError::invalid(stage.location(), e.to_string()))?;
            }
            let _ = i;
            self.stages.push(StageInfo { name: stage.name.clone(), base, platform, overridden });
        }
        Ok(())
    }

    /// Converts stage `index` (and what it uses) unless it is converted already.
    pub(super) fn convert_stage(&mut self, index: usize) -> Result<(), ConvertError> {
        if self.done[index].is_some() {
            return Ok(());
        }
        if self.stage_depth >= MAX_STAGE_DEPTH {
            return Err(ParseError::invalid(
                self.dockerfile.stages[index].location(),
                format!("stages depend on each other more than {MAX_STAGE_DEPTH} deep"),
            ));
        }
        self.stage_depth += 1;
        let result = self.convert_stage_body(index);
        self.stage_depth -= 1;
        result
    }

    fn target_index(&self) -> Result<usize, ConvertError> {
        match &self.options.target {
            None => Ok(self.stages.len() - 1),
            Some(t) if t.is_empty() => Ok(self.stages.len() - 1),
            Some(t) => {
                let lower = t.to_lowercase();
                self.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str())).ok_or_else(|| {
                    let names: Vec<&str> = self.stages.iter().filter_map(|s| s.name.as_deref()).collect();
                    let msg = format!("target stage {t:?} could not be found");
                    ParseError::invalid(
                        self.dockerfile.stages.last().map_or(Location::line(1), |s| s.location()),
                        crate::suggest::with_suggestion(msg, t, &names),
                    )
                })
            }
        }
    }

    /// Finds a stage by name (case-insensitive) or index, as `--from` refers to it.
    fn find_stage(&self, reference: &str) -> Option<usize> {
        if let Ok(index) = reference.parse::<usize>() {
            return (index < self.stages.len()).then_some(index);
        }
        let lower = reference.to_lowercase();
        self.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// A stage's base when it is the named context `key`: an image is as if named in
    /// `FROM`, a local directory becomes the stage's filesystem.
    fn named_base(&self, key: String) -> Base {
        match &self.options.named_contexts[&key] {
            crate::NamedContext::Image(reference) => Base::Image(reference.clone()),
            crate::NamedContext::Local { .. } | crate::NamedContext::Git(_) | crate::NamedContext::Http { .. } => {
                Base::Named(key)
            }
        }
    }

    /// The key of the `--build-context` that `reference` names, if any.
    fn named_context(&self, reference: &str) -> Option<String> {
        let key = crate::named_context_key(reference);
        self.options.named_contexts.contains_key(&key).then_some(key)
    }

    /// The vertex of a named context, added once on first use: a local directory's
    /// source (a directory to copy from) or an image.
    fn named_vertex(&mut self, key: &str, current: usize, at: Location) -> Result<VertexId, ConvertError> {
        if let Some(&id) = self.named.get(key) {
            return Ok(id);
        }
        let id = match self.options.named_contexts[key].clone() {
            crate::NamedContext::Local { source } => {
                let op = Op::Source(SourceOp::Local { name: source, exclude: Vec::new() });
                let mut vertex = Vertex::new(op, vec![], format!("load build context {key}"));
                vertex.ignore_cache = self.options.no_cache;
                self.graph.add(vertex)
            }
            crate::NamedContext::Image(reference) => self.image_vertex(&reference, current, at, |e| {
                format!("build context {key}={reference} is not a usable image: {e}")
            })?,
            crate::NamedContext::Git(git) => {
                let name = format!("[context {key}] {}", crate::git_ref::shown(&git));
                let mut vertex = Vertex::new(Op::Source(SourceOp::Git(git)), vec![], name);
                vertex.ignore_cache = self.options.no_cache;
                self.graph.add(vertex)
            }
            crate::NamedContext::Http { url } => {
                // BuildKit's HTTP context is the file `context`; an archive is extracted
                // (as `docker build URL` does with a tarball), onto scratch.
                let op =
                    Op::Source(SourceOp::Http { url: url.clone(), checksum: None, filename: Some("context".into()) });
                let shown = crate::git_ref::redact_remote(&url);
                let mut vertex = Vertex::new(op, vec![], format!("[context {key}] {shown}"));
                vertex.ignore_cache = self.options.no_cache;
                let http = self.graph.add(vertex);
                let scratch = self.scratch_vertex();
                let mut copy = solver::ir::CopyAction::new(1, vec!["context".into()], "/");
                copy.unpack_archives = true;
                copy.allow_wildcard = false;
                let op = Op::File(solver::ir::FileOp { actions: vec![solver::ir::FileAction::Copy(copy)] });
                let mut vertex = Vertex::new(op, vec![scratch, http], format!("[context {key}] extract {shown}"));
                vertex.ignore_cache = self.options.no_cache;
                self.graph.add(vertex)
            }
        };
        self.named.insert(key.to_string(), id);
        Ok(id)
    }

    /// An image as `--from` (or a named context) uses it, on the platform of stage
    /// `current`; `unusable` words the error when it cannot be resolved.
    fn image_vertex(
        &mut self,
        reference: &str,
        current: usize,
        at: Location,
        unusable: impl FnOnce(String) -> String,
    ) -> Result<VertexId, ConvertError> {
        let written = self.stages[current].platform.clone();
        let resolve_platform = self.stage_platform(written.as_deref(), at)?;
        if let Err(e) = self.resolver.resolve(reference, &resolve_platform) {
            return Err(ParseError::invalid(at, unusable(e.to_string())));
        }
        let platform = self.source_platform(written.as_ref(), &resolve_platform);
        let op = Op::Source(SourceOp::Image { reference: reference.to_string(), platform });
        let mut vertex = Vertex::new(op, vec![], format!("FROM {}", stage::display_reference(reference)));
        vertex.ignore_cache = self.options.no_cache;
        Ok(self.graph.add(vertex))
    }

    /// The build context, added once on first use.
    fn context_vertex(&mut self) -> VertexId {
        if let Some(id) = self.context {
            return id;
        }
        let op = Op::Source(SourceOp::Local { name: "context".into(), exclude: self.options.dockerignore.clone() });
        let mut vertex = Vertex::new(op, vec![], "load build context");
        vertex.ignore_cache = self.options.no_cache;
        let id = self.graph.add(vertex);
        self.context = Some(id);
        id
    }

    /// An empty filesystem for ops that build from nothing, added once on first use.
    fn scratch_vertex(&mut self) -> VertexId {
        if let Some(id) = self.scratch {
            return id;
        }
        let id = self.graph.add(Vertex::new(Op::Source(SourceOp::Scratch), vec![], "scratch"));
        self.scratch = Some(id);
        id
    }

    /// The filesystem `reference` names in `--from`: a stage (converted on demand), a
    /// stage index, or an image.
    fn source_for(&mut self, reference: &str, current: usize, at: Location) -> Result<VertexId, ConvertError> {
        let expanded =
            self.lex.process_word(reference, &crate::shell::EmptyEnv).map_err(|e| ParseError::expansion(at, e))?;
        if expanded != reference {
            return Err(ParseError::invalid(
                at,
                "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
            ));
        }
        let reference = reference.to_string();
        if let Some(index) = self.find_stage(&reference) {
            if index == current || self.in_progress[index] {
                return Err(ParseError::invalid(at, format!("circular dependency detected on stage: {reference}")));
            }
            self.convert_stage(index)?;
            return Ok(self.done[index].as_ref().map(|c| c.vertex).unwrap_or(VertexId(0)));
        }
        if reference.parse::<usize>().is_ok() {
            return Err(ParseError::invalid(
                at,
                format!("invalid stage index {reference}: there are only {} stages", self.stages.len()),
            ));
        }
        if let Some(key) = self.named_context(&reference) {
            return self.named_vertex(&key, current, at);
        }
        if reference.contains(char::is_whitespace) || reference.is_empty() {
            return Err(ParseError::invalid(at, format!("invalid --from reference {reference:?}")));
        }
        // A bare word close to a stage name is a misspelt stage, not an image.
        if !reference.contains(['/', ':', '@', '.']) {
            let names: Vec<&str> = self.stages.iter().filter_map(|s| s.name.as_deref()).collect();
            if let Some(stage) = crate::suggest::closest(&reference, &names) {
                return Err(ParseError::invalid(
                    at,
                    format!("undefined stage {reference:?} in --from (did you mean {stage}?)"),
                ));
            }
        }
        self.image_vertex(&reference, current, at, |e| {
            format!("--from={reference} is neither a stage nor a usable image: {e}")
        })
    }

    fn finish(mut self, target: usize) -> Result<BuildDefinition, Error> {
        let converted = self.done[target].take().expect("target stage converted");
        let mut image = converted.image;
        if !self.options.labels.is_empty() {
            let labels = image.config.labels.get_or_insert_with(Default::default);
            labels.extend(self.options.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let unused: Vec<&str> = self
            .options
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k) && !args::is_builtin(k))
            .map(String::as_str)
            .collect();
        if !unused.is_empty() {
            self.warnings.push(format!("one or more build-args [{}] were not consumed", unused.join(" ")));
        }
        Ok(BuildDefinition { graph: self.graph, target: converted.vertex, image, warnings: self.warnings })
    }
}

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod tests;
