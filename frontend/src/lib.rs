//! The Dockerfile frontend: Dockerfile text in, a [`solver::Graph`] and the image
//! config of the target stage out.
//!
//! Three passes, as in BuildKit: [`parser`] turns text into an AST with line ranges,
//! `instructions` types each instruction, and `convert` walks the stages and emits
//! vertices. What it must know about base images (their config) it asks an
//! [`ImageResolver`]. The frontend is pure: no filesystem, no network, no processes.
//!
//! Entry points: [`compile`] (text to [`BuildDefinition`]), [`check`] (syntax and
//! instruction errors only), [`print_graph`] (a stable dump for golden tests and
//! debugging), [`parser::parse`] with [`parser::Ast::dump`] (BuildKit's AST dump), and
//! [`shell::Lex`] (BuildKit's word expansion).
//!
//! Every pass reports a [`ParseError`]: a [`Location`] (line and column of the
//! instruction, or of the flag at fault) and a typed [`ParseErrorKind`]; [`compile`]
//! adds the file name ([`Error`], shown as `Dockerfile:7:1: ...`).

mod convert;
mod error;
mod git_ref;
mod instructions;
pub mod lint;
pub mod parser;
pub mod shell;
mod suggest;

pub use convert::print_graph;
pub use error::{Location, ParseError, ParseErrorKind};
pub use git_ref::{GitRef, parse_git_ref, redact_remote, shown as show_git};

use image_spec::{ContainerConfig, History, Platform};
use solver::{Graph, VertexId};
use std::collections::BTreeMap;

/// Everything about a build the Dockerfile does not say itself.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Name used in error messages and step ids (`Dockerfile`, `build/prod.Dockerfile`).
    pub dockerfile_name: String,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    /// The target platform of this compile (`TARGETPLATFORM`, the platform of stages
    /// without `FROM --platform`).
    pub platform: Platform,
    /// The platform of the machine that builds (`BUILDPLATFORM`).
    pub build_platform: Platform,
    /// The build is one of several target platforms: step names say their stage's
    /// platform (`[linux/arm64 build 2/3] RUN make`), as BuildKit's do.
    pub multi_platform: bool,
    /// `.dockerignore` patterns, already read by the caller.
    pub dockerignore: Vec<String>,
    /// `--no-cache`: no vertex may use the cache.
    pub no_cache: bool,
    /// `--no-cache-filter`: stages whose vertices may not use the cache.
    pub no_cache_filter: Vec<String>,
    /// Labels given on the command line (`--label`), applied to the final image.
    pub labels: BTreeMap<String, String>,
    /// `--build-context NAME=...`: what `FROM NAME`, `COPY --from=NAME` and
    /// `RUN --mount=from=NAME` mean instead of an image or of the stage so named.
    /// Keys are image names in their short form (`alpine`, `alpine:3.20`, no
    /// `:latest`) or stage names.
    pub named_contexts: BTreeMap<String, NamedContext>,
}

impl BuildOptions {
    /// The options of a plain build of `Dockerfile` for `platform` on a machine of
    /// `build_platform`: no target, build args, ignore patterns, labels or named
    /// contexts, the cache allowed.
    pub fn new(platform: Platform, build_platform: Platform) -> Self {
        BuildOptions {
            dockerfile_name: "Dockerfile".into(),
            target: None,
            build_args: BTreeMap::new(),
            platform,
            build_platform,
            multi_platform: false,
            dockerignore: Vec::new(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            labels: BTreeMap::new(),
            named_contexts: BTreeMap::new(),
        }
    }
}

/// What a named build context stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory, read through the local source of this name (the caller
    /// maps it to the directory).
    Local { source: String },
    /// An image (`docker-image://REF`, or `oci-layout://` once the caller loaded it).
    Image(String),
    /// A git repository (`https://host/repo.git#ref:subdir`, `git@host:repo.git`, ...).
    Git(solver::ir::GitSource),
    /// A file over HTTP(S): a tar archive is extracted, anything else is the file
    /// `/context`.
    Http { url: String },
}

/// The key a reference has among named contexts: its short form, as BuildKit looks
/// them up (`docker.io/library/alpine:latest` → `alpine`).
pub fn named_context_key(reference: &str) -> String {
    let short = reference.strip_prefix("docker.io/").unwrap_or(reference);
    let short = short.strip_prefix("library/").filter(|s| !s.contains('/')).unwrap_or(short);
    short.strip_suffix(":latest").unwrap_or(short).to_string()
}

/// A base image as the frontend sees it.
#[derive(Debug, Clone, Default)]
pub struct BaseImage {
    /// Canonical reference, e.g. `docker.io/library/alpine:3.20`.
    pub reference: String,
    pub config: ContainerConfig,
    pub history: Vec<History>,
}

/// Why a base image cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The image exists, but not for the platform the stage is for.
    #[error("{image} has no image for platform {wanted} (it has: {})", available.join(", "))]
    NoPlatform { image: String, wanted: String, available: Vec<String> },
    /// Anything else (a registry, the store), as the resolver words it.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for ResolveError {
    fn from(text: String) -> Self {
        ResolveError::Failed(text)
    }
}

impl From<&str> for ResolveError {
    fn from(text: &str) -> Self {
        ResolveError::Failed(text.to_string())
    }
}

/// Answers questions about base images. Implemented by the builder over its store
/// (and registry); tests use a map.
pub trait ImageResolver {
    /// The config of `reference`, or `Ok(None)` when it cannot be resolved offline
    /// (only allowed when printing the graph).
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<Option<BaseImage>, ResolveError>;
}

/// One history entry the build adds. `layer` is the vertex whose result adds the
/// layer, if the instruction changes the filesystem; the exporter marks the entry
/// `empty_layer` when that vertex turned out to change nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryStep {
    pub created_by: String,
    pub comment: Option<String>,
    pub layer: Option<VertexId>,
}

/// The image the target stage describes.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    pub config: ContainerConfig,
    /// History of the base image, then of the build's own instructions.
    pub base_history: Vec<History>,
    pub history: Vec<HistoryStep>,
}

/// The result of compiling a Dockerfile.
#[derive(Debug, Clone)]
pub struct BuildDefinition {
    pub graph: Graph,
    /// The vertex whose result is the target stage's filesystem.
    pub target: VertexId,
    pub image: ImageSpec,
    /// Non-fatal findings (unused build args, ...), one line each.
    pub warnings: Vec<String>,
}

/// A Dockerfile error with its position: `Dockerfile:7:1: unknown instruction ...`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{location}: {kind}")]
pub struct Error {
    pub file: String,
    pub location: Location,
    pub kind: ParseErrorKind,
}

impl Error {
    fn in_file(file: &str, error: ParseError) -> Self {
        Error { file: file.to_string(), location: error.location, kind: error.kind }
    }
}

/// Compiles a Dockerfile into a build graph.
pub fn compile(
    dockerfile: &str,
    options: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<BuildDefinition, Error> {
    convert::compile(dockerfile, options, resolver)
}

/// Parses and checks a Dockerfile without converting it (syntax, instructions,
/// flags).
pub fn check(dockerfile: &str) -> Result<(), ParseError> {
    convert::check(dockerfile).map(|_| ())
}
