//! The rules BuildKit runs as it dispatches each instruction of the stages a build
//! needs: undefined variables, relative `WORKDIR`, shell-form `CMD`/`ENTRYPOINT`,
//! repeated `CMD`/`ENTRYPOINT`/`HEALTHCHECK`, legacy `ENV`/`LABEL` form, secrets in
//! `ARG`/`ENV` names, `EXPOSE` format and sources `.dockerignore` excludes.

use super::from::Globals;
use super::ignored::Ignore;
use super::rules::*;
use super::{Linter, StageNodes};
use crate::error::{Location, ParseError};
use crate::instructions::mount::parse_mount;
use crate::instructions::{Command, Dockerfile, Instruction};
use crate::parser::Node;
use crate::shell::Env;
use crate::{BuildOptions, ImageResolver, suggest};
use image_spec::Platform;
use std::cell::RefCell;
use std::collections::BTreeSet;

/// Args BuildKit never reports as undefined.
const NON_ENV_ARGS: &[&str] = &["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// What a stage's words are expanded against, as far as the checks need.
#[derive(Debug, Clone, Default)]
struct Scope {
    env: Vec<(String, String)>,
    args: Vec<(String, String)>,
    /// Every `ARG` name the stage declared (with a value or not).
    declared: BTreeSet<String>,
    /// The base image's environment could not be known: no undefined-variable reports.
    unknown_env: bool,
    /// A `SHELL` (here or in the base) makes the shell form deliberate.
    shell: bool,
    /// An earlier `WORKDIR` (here or in a base stage) fixed the working directory;
    /// later relative ones are relative to it.
    workdir_set: bool,
}

impl Env for Scope {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.env.as_slice(), name).or_else(|| Env::get(self.args.as_slice(), name))
    }
}

/// The index of the stage `reference` names (case-insensitive, or its index).
fn find_stage(dockerfile: &Dockerfile, reference: &str) -> Option<usize> {
    if let Ok(index) = reference.parse::<usize>() {
        return (index < dockerfile.stages.len()).then_some(index);
    }
    let lower = reference.to_lowercase();
    dockerfile.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str()))
}

/// The stage a stage is built `FROM`, if it is one.
fn base_stage(dockerfile: &Dockerfile, globals: &Globals, index: usize) -> Option<usize> {
    let base = globals.expand(&dockerfile.stages[index].base_name)?.result.to_lowercase();
    dockerfile.stages[..index].iter().position(|s| s.name.as_deref() == Some(base.as_str()))
}

/// The stages a build of the target runs, in file order; every stage with
/// `all_stages` and no `--target`.
pub(crate) fn dispatched(
    dockerfile: &Dockerfile,
    globals: &Globals,
    options: &BuildOptions,
    all_stages: bool,
) -> Result<Vec<usize>, ParseError> {
    let target = options.target.as_deref().filter(|t| !t.is_empty());
    if all_stages && target.is_none() {
        return Ok((0..dockerfile.stages.len()).collect());
    }
    let target = match target {
        None => dockerfile.stages.len() - 1,
        Some(t) => find_stage(dockerfile, t).ok_or_else(|| {
            let at = dockerfile.stages.last().map_or(Location::line(1), |s| s.location());
            ParseError::invalid(at, format!("target stage {t:?} could not be found"))
        })?,
    };
    let mut seen = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(index) = todo.pop() {
        if !seen.insert(index) {
            continue;
        }
        todo.extend(base_stage(dockerfile, globals, index));
        for instruction in &dockerfile.stages[index].instructions {
            let from: Vec<String> = match &instruction.command {
                Command::Copy(c) => c.from.iter().cloned().collect(),
                Command::Run(r) => r
                    .mounts
                    .iter()
                    .flat_map(|m| m.split(','))
                    .filter_map(|kv| kv.strip_prefix("from=").map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            todo.extend(from.iter().filter_map(|f| find_stage(dockerfile, f)));
        }
    }
    Ok(seen.into_iter().collect())
}

/// Whether an `ARG`/`ENV` name looks like it holds a secret (BuildKit's word lists,
/// matched against the name's `_`-separated words).
fn secret_name(key: &str) -> bool {
    const DENY: &[&str] =
        &["apikey", "auth", "credential", "credentials", "key", "password", "pword", "passwd", "secret", "token"];
    const ALLOW: &[&str] = &["public", "file", "version"];
    let words: Vec<String> = key.split('_').map(str::to_ascii_lowercase).collect();
    words.iter().any(|w| DENY.contains(&w.as_str())) && !words.iter().any(|w| ALLOW.contains(&w.as_str()))
}

/// `[ip:][host:]port[/proto]` as Docker splits it: (ip, host port, proto).
fn split_port(raw: &str) -> (String, String, String) {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let (ip, host, container) = match n {
        1 => (String::new(), "", parts[0]),
        2 => (String::new(), parts[0], parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let proto = container.split_once('/').map_or("tcp", |(_, p)| p);
    (ip, host.to_string(), proto.to_string())
}

pub(crate) struct StageChecker<'a> {
    dockerfile: &'a Dockerfile,
    options: &'a BuildOptions,
    resolver: &'a dyn ImageResolver,
    globals: &'a Globals,
    /// Each checked stage's scope at its end, for the stages built from it.
    done: Vec<Option<Scope>>,
}

impl<'a> StageChecker<'a> {
    pub fn new(
        dockerfile: &'a Dockerfile,
        options: &'a BuildOptions,
        resolver: &'a dyn ImageResolver,
        globals: &'a Globals,
    ) -> Self {
        StageChecker { dockerfile, options, resolver, globals, done: vec![None; dockerfile.stages.len()] }
    }

    /// The scope a stage starts with: its base stage's, or its base image's config.
    fn base_scope(&self, index: usize) -> Scope {
        if let Some(base) = base_stage(self.dockerfile, self.globals, index) {
            return self.done[base].clone().unwrap_or(Scope { unknown_env: true, ..Scope::default() });
        }
        let stage = &self.dockerfile.stages[index];
        let Some(name) = self.globals.expand(&stage.base_name).map(|e| e.result) else {
            return Scope { unknown_env: true, ..Scope::default() };
        };
        if name.eq_ignore_ascii_case("scratch") {
            return Scope::default();
        }
        let platform = stage
            .platform
            .as_deref()
            .and_then(|p| self.globals.expand(p))
            .and_then(|p| Platform::parse(&p.result).ok())
            .unwrap_or_else(|| self.options.platform.clone());
        match self.resolver.resolve(&name, &platform) {
            Ok(Some(image)) => Scope {
                env: image
                    .config
                    .env
                    .iter()
                    .flatten()
                    .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                    .collect(),
                shell: image.config.shell.is_some(),
                ..Scope::default()
            },
            _ => Scope { unknown_env: true, ..Scope::default() },
        }
    }

    pub fn check(&mut self, index: usize, nodes: &StageNodes<'_>, linter: &mut Linter) {
        let mut scope = self.base_scope(index);
        let ignore = Ignore::new(&self.options.dockerignore);
        let mut last: [Option<&Node>; 3] = [None; 3];
        let stage = &self.dockerfile.stages[index];
        for (instruction, node) in stage.instructions.iter().zip(nodes.nodes.iter().copied()) {
            self.instruction(instruction, node, &mut scope, ignore.as_ref(), &mut last, linter);
        }
        self.done[index] = Some(scope);
    }

    fn instruction<'n>(
        &self,
        instruction: &Instruction,
        node: &'n Node,
        scope: &mut Scope,
        ignore: Option<&Ignore<'_>>,
        last: &mut [Option<&'n Node>; 3],
        linter: &mut Linter,
    ) {
        let keyword = instruction.keyword.as_str();
        let words = |scope: &Scope, words: &[&str], linter: &mut Linter| {
            for word in words {
                self.undefined(word, scope, node, linter);
            }
        };
        let legacy = || node.args.chunks(3).any(|c| c.get(2).is_some_and(|d| d.is_empty()));
        match &instruction.command {
            Command::Env(pairs) => {
                if legacy() {
                    linter.report(&LEGACY_KEY_VALUE_FORMAT, node, legacy_message(keyword));
                }
                for kv in pairs {
                    words(scope, &[&kv.key, &kv.value], linter);
                    self.secret(keyword, &kv.key, node, linter);
                }
                // Every pair is expanded before any is set, as in BuildKit.
                for kv in pairs {
                    let key = self.globals.lex.process_word(&kv.key, scope).unwrap_or(kv.key.clone());
                    let value = self.globals.lex.process_word(&kv.value, scope).unwrap_or_default();
                    scope.env.retain(|(k, _)| *k != key);
                    scope.env.push((key, value));
                }
            }
            Command::Label(pairs) => {
                if legacy() {
                    linter.report(&LEGACY_KEY_VALUE_FORMAT, node, legacy_message(keyword));
                }
                for kv in pairs {
                    words(scope, &[&kv.key, &kv.value], linter);
                }
            }
            Command::Add(add) => {
                let mut all = vec![add.files.dest.as_str()];
                all.extend([&add.chown, &add.chmod, &add.checksum].into_iter().flatten().map(String::as_str));
                all.extend(add.files.sources.iter().map(String::as_str));
                words(scope, &all, linter);
                let local = add.files.sources.iter().filter(|s| !s.contains("://") && !s.starts_with("git@"));
                self.ignored("Add", local, scope, ignore, node, linter);
            }
            Command::Copy(copy) => {
                let mut all = vec![copy.files.dest.as_str()];
                all.extend([&copy.chown, &copy.chmod].into_iter().flatten().map(String::as_str));
                all.extend(copy.files.sources.iter().map(String::as_str));
                words(scope, &all, linter);
                if copy.from.is_none() {
                    self.ignored("Copy", copy.files.sources.iter(), scope, ignore, node, linter);
                }
            }
            Command::Workdir(path) => {
                words(scope, &[path], linter);
                let expanded = self.globals.lex.process_word(path, scope).unwrap_or(path.clone());
                if !scope.workdir_set && !expanded.starts_with('/') {
                    let message =
                        format!("Relative workdir {expanded:?} can have unexpected results if the base image changes");
                    linter.report(&WORKDIR_RELATIVE_PATH, node, message);
                }
                scope.workdir_set = true;
            }
            Command::User(word) | Command::StopSignal(word) => words(scope, &[word], linter),
            Command::Volume(paths) => words(scope, &paths.iter().map(String::as_str).collect::<Vec<_>>(), linter),
            Command::Run(run) => {
                for spec in &run.mounts {
                    let unmatched = RefCell::new(BTreeSet::new());
                    let expand = |w: &str| {
                        let e = self.globals.lex.process(w, scope)?;
                        unmatched.borrow_mut().extend(e.unmatched);
                        Ok(e.result)
                    };
                    let _ = parse_mount(spec, &expand);
                    self.report_unmatched(unmatched.into_inner(), scope, node, linter);
                }
            }
            Command::Arg(defs) => {
                for def in defs {
                    self.secret(keyword, &def.key, node, linter);
                    if let Some(default) = &def.value {
                        words(scope, &[default], linter);
                    }
                    scope.declared.insert(def.key.clone());
                    let value = self.options.build_args.get(&def.key).cloned().or_else(|| match &def.value {
                        Some(d) => self.globals.lex.process_word(d, scope).ok(),
                        None => Env::get(self.globals.values.as_slice(), &def.key),
                    });
                    scope.args.retain(|(k, _)| *k != def.key);
                    if let Some(value) = value {
                        scope.args.push((def.key.clone(), value));
                    }
                }
            }
            Command::Cmd(command) | Command::Entrypoint(command) => {
                self.used_once(if keyword == "CMD" { 0 } else { 1 }, keyword, node, last, linter);
                if command.prepend_shell && !scope.shell {
                    let message = format!(
                        "JSON arguments recommended for {keyword} to prevent unintended behavior related to OS signals"
                    );
                    linter.report(&JSON_ARGS_RECOMMENDED, node, message);
                }
            }
            Command::Healthcheck(_) => self.used_once(2, keyword, node, last, linter),
            Command::Shell(_) => scope.shell = true,
            Command::Expose(ports) => {
                for port in ports {
                    let expanded = self.globals.lex.process_words(port, scope).unwrap_or_else(|_| vec![port.clone()]);
                    for raw in expanded {
                        let (ip, host, proto) = split_port(&raw);
                        if proto != proto.to_lowercase() {
                            let message = format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase");
                            linter.report(&EXPOSE_PROTO_CASING, node, message);
                        }
                        if !ip.is_empty() || !host.is_empty() {
                            let message = format!(
                                "EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"
                            );
                            linter.report(&EXPOSE_INVALID_FORMAT, node, message);
                        }
                    }
                }
            }
            Command::Maintainer(_) | Command::Onbuild(_) => {}
        }
    }

    /// The earlier of two `CMD`s (or ...) is the one that is ignored: it is reported.
    fn used_once<'n>(
        &self,
        slot: usize,
        keyword: &str,
        node: &'n Node,
        last: &mut [Option<&'n Node>; 3],
        linter: &mut Linter,
    ) {
        if let Some(previous) = last[slot] {
            let message = format!(
                "Multiple {keyword} instructions should not be used in the same stage because only the last one will be used"
            );
            linter.report(&MULTIPLE_INSTRUCTIONS_DISALLOWED, previous, message);
        }
        last[slot] = Some(node);
    }

    fn secret(&self, keyword: &str, key: &str, node: &Node, linter: &mut Linter) {
        if secret_name(key) {
            let message = format!("Do not use ARG or ENV instructions for sensitive data ({keyword} {key:?})");
            linter.report(&SECRETS_USED_IN_ARG_OR_ENV, node, message);
        }
    }

    fn ignored<'s>(
        &self,
        command: &str,
        sources: impl Iterator<Item = &'s String>,
        scope: &Scope,
        ignore: Option<&Ignore<'_>>,
        node: &Node,
        linter: &mut Linter,
    ) {
        let Some(ignore) = ignore else { return };
        for source in sources {
            let expanded = self.globals.lex.process_word(source, scope).unwrap_or(source.clone());
            if let Some(path) = ignore.ignored(&expanded) {
                let message = format!("Attempting to {command} file {path:?} that is excluded by .dockerignore");
                linter.report(&COPY_IGNORED_FILE, node, message);
            }
        }
    }

    fn undefined(&self, word: &str, scope: &Scope, node: &Node, linter: &mut Linter) {
        if let Ok(expansion) = self.globals.lex.process(word, scope) {
            self.report_unmatched(expansion.unmatched, scope, node, linter);
        }
    }

    fn report_unmatched(&self, unmatched: BTreeSet<String>, scope: &Scope, node: &Node, linter: &mut Linter) {
        if scope.unknown_env {
            return;
        }
        let known: Vec<&str> = scope.env.iter().chain(&scope.args).map(|(k, _)| k.as_str()).collect();
        for name in unmatched {
            if scope.declared.contains(&name) || NON_ENV_ARGS.contains(&name.as_str()) {
                continue;
            }
            let mut message = format!("Usage of undefined variable '${name}'");
            if let Some(s) = suggest::closest(&name, &known) {
                message.push_str(&format!(" (did you mean ${s}?)"));
            }
            linter.report(&UNDEFINED_VAR, node, message);
        }
    }
}

fn legacy_message(keyword: &str) -> String {
    format!("\"{keyword} key=value\" should be used instead of legacy \"{keyword} key value\" format")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_and_ports() {
        assert!(secret_name("GITHUB_TOKEN") && secret_name("api_key") && secret_name("AUTH"));
        assert!(!secret_name("PUBLIC_KEY") && !secret_name("TOKENIZER") && !secret_name("KEY_FILE"));
        assert_eq!(split_port("80/TCP"), (String::new(), String::new(), "TCP".into()));
        assert_eq!(split_port("127.0.0.1:80:80"), ("127.0.0.1".into(), "80".into(), "tcp".into()));
        assert_eq!(split_port("8080:80/udp"), (String::new(), "8080".into(), "udp".into()));
    }
}
