//! `--call=targets` and `--call=outline`: what a Dockerfile offers without building
//! it, as BuildKit's `frontend.targets` and `frontend.outline` subrequests answer.
//! Descriptions come from `# NAME description` comments above `FROM ... AS NAME` and
//! `ARG NAME`.

use super::from::Globals;
use super::syntax::description_comments;
use super::{StageNodes, group_nodes};
use crate::error::ParseError;
use crate::instructions::mount::{MountType, parse_mount};
use crate::instructions::{self, Command, Dockerfile};
use crate::parser::{self, Node};
use crate::{BuildOptions, Error};

/// One stage that `--target` can name.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: Option<String>,
    pub description: Option<String>,
    /// The last stage, built without `--target`.
    pub default: bool,
    pub base: String,
    pub platform: Option<String>,
    pub line: usize,
}

/// A build argument, secret or ssh id the target uses.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlineItem {
    pub name: String,
    pub value: Option<String>,
    pub description: Option<String>,
    pub required: bool,
    pub line: usize,
}

/// What building the target takes from outside.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outline {
    pub name: Option<String>,
    pub description: Option<String>,
    pub args: Vec<OutlineItem>,
    pub secrets: Vec<OutlineItem>,
    pub ssh: Vec<OutlineItem>,
}

/// `# NAME description` among the comments above `node`.
fn doc_comment(node: &Node, first: bool, name: &str) -> Option<String> {
    let prefix = format!("{name} ");
    description_comments(node, first).iter().find_map(|c| c.strip_prefix(&prefix).map(str::to_string))
}

fn parse(text: &str, options: &BuildOptions) -> Result<(parser::Ast, Dockerfile), Error> {
    let error = |e: ParseError| Error::in_file(&options.dockerfile_name, e);
    let ast = parser::parse(text).map_err(error)?;
    let dockerfile = instructions::parse_dockerfile(&ast).map_err(error)?;
    Ok((ast, dockerfile))
}

fn is_first(ast: &parser::Ast, node: &Node) -> bool {
    ast.children.first().is_some_and(|n| std::ptr::eq(n, node))
}

/// Every stage, in file order.
pub fn targets(text: &str, options: &BuildOptions) -> Result<Vec<Target>, Error> {
    let (ast, dockerfile) = parse(text, options)?;
    let (_, nodes) = group_nodes(&ast.children);
    let last = dockerfile.stages.len() - 1;
    Ok(dockerfile
        .stages
        .iter()
        .zip(&nodes)
        .enumerate()
        .map(|(i, (stage, n))| Target {
            description: stage.name.as_deref().and_then(|name| doc_comment(n.from, is_first(&ast, n.from), name)),
            name: stage.name.clone(),
            default: i == last,
            base: stage.base_name.clone(),
            platform: stage.platform.clone(),
            line: stage.line,
        })
        .collect())
}

/// The build arguments, secrets and ssh ids the target's stages use, by line.
pub fn outline(text: &str, options: &BuildOptions) -> Result<Outline, Error> {
    let (ast, dockerfile) = parse(text, options)?;
    let (meta_nodes, nodes) = group_nodes(&ast.children);
    let globals = Globals::new(&dockerfile, options);
    let error = |e: ParseError| Error::in_file(&options.dockerfile_name, e);
    let stages = super::stage::dispatched(&dockerfile, &globals, options, false).map_err(error)?;
    let target = *stages.iter().max().unwrap_or(&0);
    let target = match options.target.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => dockerfile.stages.iter().position(|s| s.name.as_deref() == Some(t.to_lowercase().as_str())),
        None => Some(target),
    }
    .unwrap_or(target);
    let global = |name: &str| dockerfile.meta_args.iter().position(|(d, _)| d.key == name);
    let mut outline = Outline {
        name: dockerfile.stages[target].name.clone(),
        description: dockerfile.stages[target]
            .name
            .as_deref()
            .and_then(|name| doc_comment(nodes[target].from, is_first(&ast, nodes[target].from), name)),
        ..Outline::default()
    };
    let global_item = |i: usize| {
        let (def, at) = &dockerfile.meta_args[i];
        let node = meta_nodes.iter().find(|n| n.start_line == at.line).copied();
        OutlineItem {
            name: def.key.clone(),
            value: def.value.clone(),
            description: node.and_then(|n| doc_comment(n, is_first(&ast, n), &def.key)),
            required: false,
            line: at.line,
        }
    };
    for &index in &stages {
        let stage = &dockerfile.stages[index];
        let from_words = [Some(&stage.base_name), stage.platform.as_ref()];
        for word in from_words.into_iter().flatten() {
            let used = globals.expand(word).map(|e| e.matched.into_iter().chain(e.unmatched)).into_iter().flatten();
            outline.args.extend(used.filter_map(|name| global(&name)).map(global_item));
        }
        items(stage, &nodes[index], &ast, &global_item, &global, &mut outline);
    }
    for list in [&mut outline.args, &mut outline.secrets, &mut outline.ssh] {
        list.sort_by_key(|item| item.line);
        let mut seen = std::collections::BTreeSet::new();
        list.retain(|item| seen.insert(item.name.clone()));
    }
    Ok(outline)
}

fn items(
    stage: &instructions::Stage,
    nodes: &StageNodes<'_>,
    ast: &parser::Ast,
    global_item: &dyn Fn(usize) -> OutlineItem,
    global: &dyn Fn(&str) -> Option<usize>,
    outline: &mut Outline,
) {
    for (instruction, node) in stage.instructions.iter().zip(&nodes.nodes) {
        match &instruction.command {
            Command::Arg(defs) => {
                for def in defs {
                    // A global ARG redeclared without a value takes the global one.
                    let item = match (global(&def.key), &def.value) {
                        (Some(i), None) => global_item(i),
                        _ => OutlineItem {
                            name: def.key.clone(),
                            value: def.value.clone(),
                            description: doc_comment(node, is_first(ast, node), &def.key),
                            required: false,
                            line: instruction.line,
                        },
                    };
                    outline.args.push(item);
                }
            }
            Command::Run(run) => {
                for spec in &run.mounts {
                    let Ok(m) = parse_mount(spec, &|w: &str| Ok(w.to_string())) else { continue };
                    let (list, name) = match m.kind {
                        MountType::Secret if m.id.is_empty() => {
                            (&mut outline.secrets, m.target.rsplit('/').next().unwrap_or_default().to_string())
                        }
                        MountType::Secret => (&mut outline.secrets, m.id.clone()),
                        MountType::Ssh if m.id.is_empty() => (&mut outline.ssh, "default".to_string()),
                        MountType::Ssh => (&mut outline.ssh, m.id.clone()),
                        _ => continue,
                    };
                    let line = instruction.line;
                    list.push(OutlineItem { name, value: None, description: None, required: m.required, line });
                }
            }
            _ => {}
        }
    }
}
