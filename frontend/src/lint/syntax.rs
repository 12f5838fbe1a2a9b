//! The rules BuildKit runs while parsing, over every instruction of the file:
//! casing, stage names, `MAINTAINER`, empty continuation lines and definition
//! descriptions.

use super::rules::*;
use super::{Linter, StageNodes};
use crate::parser::{Ast, Node};
use std::collections::BTreeSet;

/// Stage names that mean something else in `FROM` and `--from`.
const RESERVED_STAGE_NAMES: &[&str] = &["context", "scratch"];

pub(crate) fn check(ast: &Ast, stages: &[StageNodes<'_>], linter: &mut Linter) {
    for (i, node) in ast.children.iter().enumerate() {
        if let Some(line) = node.empty_continuation {
            linter.report_lines(&NO_EMPTY_CONTINUATION, node, line, "Empty continuation line".into());
        }
        match node.keyword().as_str() {
            "maintainer" => linter.report(
                &MAINTAINER_DEPRECATED,
                node,
                "Maintainer instruction is deprecated in favor of using label".into(),
            ),
            "from" => from_casing(node, linter),
            _ => {}
        }
        definition_description(node, i == 0, linter);
    }
    stage_names(stages, linter);
    instruction_casing(stages, linter);
}

/// `FROM image AS Name`: the name in lower case, `AS` cased as `FROM`.
fn from_casing(node: &Node, linter: &mut Linter) {
    if node.args.len() != 3 {
        return;
    }
    let name = &node.args[2];
    if *name != name.to_lowercase() {
        linter.report(&STAGE_NAME_CASING, node, format!("Stage name '{name}' should be lowercase"));
    }
    let (from, as_) = (&node.value, &node.args[1]);
    let matches = if *from == from.to_lowercase() {
        *as_ == as_.to_lowercase()
    } else if *from == from.to_uppercase() {
        *as_ == as_.to_uppercase()
    } else {
        // A mixed-case FROM is ConsistentInstructionCasing's to report.
        true
    };
    if !matches {
        linter.report(&FROM_AS_CASING, node, format!("'{as_}' and '{from}' keywords' casing do not match"));
    }
}

fn stage_names(stages: &[StageNodes<'_>], linter: &mut Linter) {
    let mut seen = BTreeSet::new();
    for stage in stages {
        let Some(name) = stage.from.args.get(2).map(|n| n.to_lowercase()) else { continue };
        if RESERVED_STAGE_NAMES.contains(&name.as_str()) {
            let message = format!("Stage name should not use the same name as reserved stage {name:?}");
            linter.report(&RESERVED_STAGE_NAME, stage.from, message);
        }
        if !seen.insert(name.clone()) {
            let message = format!("Duplicate stage name {name:?}, stage names should be unique");
            linter.report(&DUPLICATE_STAGE_NAME, stage.from, message);
        }
    }
}

fn self_consistent(word: &str) -> bool {
    word == word.to_lowercase() || word == word.to_uppercase()
}

/// Every keyword of the stages (not the global `ARG`s) in the case most of them use.
fn instruction_casing(stages: &[StageNodes<'_>], linter: &mut Linter) {
    let keywords = || stages.iter().flat_map(|s| std::iter::once(s.from).chain(s.nodes.iter().copied()));
    let (mut lower, mut upper) = (0, 0);
    for node in keywords().filter(|n| self_consistent(&n.value)) {
        if node.value == node.value.to_lowercase() {
            lower += 1;
        } else {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    for node in keywords() {
        let name = &node.value;
        let casing = if majority_lower && *name != name.to_lowercase() {
            "lowercase"
        } else if !majority_lower && *name != name.to_uppercase() {
            "uppercase"
        } else {
            continue;
        };
        let message = format!("Command '{name}' should match the case of the command majority ({casing})");
        linter.report(&CONSISTENT_INSTRUCTION_CASING, node, message);
    }
}

/// Whether a comment is a parser directive (only the first instruction's comments
/// can hold them; BuildKit keeps them out of its comments).
fn is_directive(comment: &str) -> bool {
    comment
        .split_once('=')
        .is_some_and(|(key, _)| matches!(key.trim().to_ascii_lowercase().as_str(), "syntax" | "escape" | "check"))
}

/// The comments above a node that may describe it.
pub(crate) fn description_comments(node: &Node, first: bool) -> Vec<&str> {
    let comments = node.comments.iter().map(String::as_str);
    if first { comments.skip_while(|c| is_directive(c)).collect() } else { comments.collect() }
}

/// `# name description` above `FROM ... AS name` and `ARG name`.
fn definition_description(node: &Node, first: bool, linter: &mut Linter) {
    let (instruction, keys): (&str, Vec<String>) = match node.keyword().as_str() {
        "from" if node.args.len() == 3 => ("FROM", vec![node.args[2].to_lowercase()]),
        "arg" => ("ARG", node.args.iter().map(|a| a.split('=').next().unwrap_or_default().to_string()).collect()),
        _ => return,
    };
    let comments = description_comments(node, first);
    let Some(last) = comments.last() else { return };
    if keys.is_empty() || keys.iter().any(|k| k == last.split(' ').next().unwrap_or_default()) {
        return;
    }
    let example = if keys.len() > 1 { "<arg_key>" } else { &keys[0] };
    let message = format!("Comment for {instruction} should follow the format: `# {example} <description>`");
    linter.report(&INVALID_DEFINITION_DESCRIPTION, node, message);
}
