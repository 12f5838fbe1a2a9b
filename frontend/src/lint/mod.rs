//! Build checks: BuildKit's Dockerfile linter (frontend/dockerfile/linter and the
//! places in dockerfile2llb where each rule fires), over the passes the build uses.
//!
//! [`lint`] parses the file again and reports [`Finding`]s: the syntax rules
//! (`syntax.rs`) over the whole AST, as BuildKit's parser and instruction passes do;
//! the `FROM` rules (`from.rs`) over every stage, as its stage resolution does; and
//! the instruction rules (`stage.rs`, `ignored.rs`) over the stages the build runs
//! (every stage when checking without a target), as its dispatch does. The
//! `# check=` directive (`config.rs`) skips rules, enables experimental ones and makes
//! findings fail the build; a `# check=` right above an instruction adds to it there.

mod config;
mod from;
mod ignored;
pub mod rules;
mod stage;
mod subrequests;
mod syntax;

pub use config::{CheckConfig, CheckOptionError};
pub use rules::Rule;
pub use subrequests::{Outline, OutlineItem, Target, outline, targets};

use crate::error::{Location, ParseError};
use crate::instructions::{self, Dockerfile};
use crate::parser::{self, Node};
use crate::{BuildOptions, Error, ImageResolver};

/// One rule violation at a line range of the Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: &'static Rule,
    /// The formatted message (BuildKit's `Detail`).
    pub message: String,
    pub start_line: usize,
    pub end_line: usize,
}

impl Finding {
    /// `RuleName: message (line N)`, BuildKit's short form of a warning.
    pub fn short(&self) -> String {
        format!("{}: {} (line {})", self.rule.name, self.message, self.start_line)
    }
}

/// What checking a Dockerfile found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// In the order of their lines.
    pub findings: Vec<Finding>,
    /// The file's `# check=` configuration.
    pub config: CheckConfig,
    /// Where the Dockerfile cannot be built (the checks stop there).
    pub error: Option<Error>,
}

impl Report {
    /// With `# check=error=true` and a finding: BuildKit's build error.
    pub fn violation(&self) -> Option<String> {
        if !self.config.error || self.findings.is_empty() {
            return None;
        }
        let mut rules: Vec<&str> = self.findings.iter().map(|f| f.rule.name).collect();
        rules.sort_unstable();
        rules.dedup();
        Some(format!("lint violation found for rules: {}", rules.join(", ")))
    }
}

/// Collects findings under a configuration.
pub(crate) struct Linter {
    config: CheckConfig,
    findings: Vec<Finding>,
}

impl Linter {
    /// Reports `rule` at `node` unless the configuration (with the node's own
    /// `# check=` comment) turns it off.
    pub(crate) fn report(&mut self, rule: &'static Rule, node: &Node, message: String) {
        if !self.config.with_comments(&node.comments).enabled(rule) {
            return;
        }
        let finding = Finding { rule, message, start_line: node.start_line, end_line: node.end_line };
        if !self.findings.contains(&finding) {
            self.findings.push(finding);
        }
    }

    /// As [`Linter::report`], at `line` rather than the node's lines.
    pub(crate) fn report_lines(&mut self, rule: &'static Rule, node: &Node, line: usize, message: String) {
        let at = Node { start_line: line, end_line: line, comments: node.comments.clone(), ..Node::default() };
        self.report(rule, &at, message);
    }
}

/// The AST nodes of one stage: its `FROM` and, in order, the node of each of the
/// typed stage's instructions.
pub(crate) struct StageNodes<'a> {
    pub from: &'a Node,
    pub nodes: Vec<&'a Node>,
}

/// Groups the nodes as `instructions::parse_dockerfile` groups instructions: the
/// `ARG`s before the first `FROM`, then one entry per stage.
pub(crate) fn group_nodes(children: &[Node]) -> (Vec<&Node>, Vec<StageNodes<'_>>) {
    let mut meta = Vec::new();
    let mut stages: Vec<StageNodes<'_>> = Vec::new();
    for node in children {
        match (node.keyword().as_str(), stages.last_mut()) {
            ("from", _) => stages.push(StageNodes { from: node, nodes: Vec::new() }),
            (_, Some(stage)) => stage.nodes.push(node),
            (_, None) => meta.push(node),
        }
    }
    (meta, stages)
}

/// Checks a Dockerfile. `all_stages`: check every stage's instructions (as
/// `--call=check` without `--target`), not only those the target needs.
pub fn lint(text: &str, options: &BuildOptions, resolver: &dyn ImageResolver, all_stages: bool) -> Report {
    let file_error = |e: ParseError| Some(Error::in_file(&options.dockerfile_name, e));
    let ast = match parser::parse(text) {
        Ok(ast) => ast,
        Err(e) => return Report { error: file_error(e), ..Report::default() },
    };
    let config = match CheckConfig::parse(ast.directives.check.as_deref().unwrap_or_default()) {
        Ok(config) => config,
        Err(e) => {
            return Report {
                error: file_error(ParseError::invalid(Location::line(1), e.to_string())),
                ..Report::default()
            };
        }
    };
    let mut linter = Linter { config: config.clone(), findings: Vec::new() };
    let (_, stage_nodes) = group_nodes(&ast.children);
    syntax::check(&ast, &stage_nodes, &mut linter);
    let mut error = None;
    match instructions::parse_dockerfile(&ast) {
        Ok(dockerfile) => {
            if let Err(e) = check_stages(&dockerfile, &stage_nodes, options, resolver, all_stages, &mut linter) {
                error = file_error(e);
            }
        }
        Err(e) => error = file_error(e),
    }
    let mut findings = linter.findings;
    findings.sort_by_key(|f| f.start_line);
    Report { findings, config, error }
}

fn check_stages(
    dockerfile: &Dockerfile,
    stage_nodes: &[StageNodes<'_>],
    options: &BuildOptions,
    resolver: &dyn ImageResolver,
    all_stages: bool,
    linter: &mut Linter,
) -> Result<(), ParseError> {
    let globals = from::Globals::new(dockerfile, options);
    from::check(dockerfile, stage_nodes, &globals, linter);
    let run = stage::dispatched(dockerfile, &globals, options, all_stages)?;
    let mut checker = stage::StageChecker::new(dockerfile, options, resolver, &globals);
    for index in run {
        checker.check(index, &stage_nodes[index], linter);
    }
    Ok(())
}
