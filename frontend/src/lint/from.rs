//! The rules about `FROM` lines, run over every stage as BuildKit resolves stage
//! bases: undeclared args in the base name or `--platform`, a default that makes no
//! image name, a redundant `$TARGETPLATFORM` and a constant platform.

use super::rules::*;
use super::{Linter, StageNodes};
use crate::instructions::Dockerfile;
use crate::shell::{Expansion, Lex};
use crate::{BuildOptions, suggest};
use image_spec::{Platform, Reference};
use std::collections::BTreeSet;

/// The global scope twice: as the build sees it (`--build-arg` values) and as a build
/// without any would (the defaults), with every name it declares.
pub(crate) struct Globals {
    pub lex: Lex,
    pub values: Vec<(String, String)>,
    defaults: Vec<(String, String)>,
    /// Predefined args and the global `ARG`s, with a value or not.
    pub declared: BTreeSet<String>,
}

/// `TARGETPLATFORM`, `TARGETOS`, ..., `BUILDVARIANT`.
pub(crate) fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default()));
    }
    out
}

impl Globals {
    pub fn new(dockerfile: &Dockerfile, options: &BuildOptions) -> Self {
        let lex = Lex::new(dockerfile.escape_token);
        let predefined = platform_args(&options.platform, &options.build_platform);
        let mut declared: BTreeSet<String> = predefined.iter().map(|(k, _)| k.clone()).collect();
        let evaluate = |build_args: Option<&std::collections::BTreeMap<String, String>>| {
            let mut values = predefined.clone();
            for (def, _) in &dockerfile.meta_args {
                let given = build_args.and_then(|b| b.get(&def.key)).cloned();
                let value = given.or_else(|| def.value.as_ref().and_then(|d| lex.process_word(d, &values).ok()));
                values.retain(|(k, _)| k != &def.key);
                if let Some(value) = value {
                    values.push((def.key.clone(), value));
                }
            }
            values
        };
        declared.extend(dockerfile.meta_args.iter().map(|(d, _)| d.key.clone()));
        Globals { values: evaluate(Some(&options.build_args)), defaults: evaluate(None), lex, declared }
    }

    pub fn expand(&self, word: &str) -> Option<Expansion> {
        self.lex.process(word, &self.values).ok()
    }

    fn undeclared(&self, expansion: &Expansion, node: &crate::parser::Node, linter: &mut Linter) {
        let keys: Vec<&str> = self.declared.iter().map(String::as_str).collect();
        for arg in expansion.unmatched.iter().filter(|a| !self.declared.contains(*a)) {
            let mut message = format!("FROM argument '{arg}' is not declared");
            if let Some(s) = suggest::closest(arg, &keys) {
                message.push_str(&format!(" (did you mean {s}?)"));
            }
            linter.report(&UNDEFINED_ARG_IN_FROM, node, message);
        }
    }
}

pub(crate) fn check(dockerfile: &Dockerfile, nodes: &[StageNodes<'_>], globals: &Globals, linter: &mut Linter) {
    for (stage, nodes) in dockerfile.stages.iter().zip(nodes) {
        let node = nodes.from;
        // A build without --build-arg must still name an image.
        if let Ok(default) = globals.lex.process_word(&stage.base_name, &globals.defaults)
            && Reference::parse(&default).is_err()
        {
            let message =
                format!("Default value for ARG {} results in empty or invalid base image name", stage.base_name);
            linter.report(&INVALID_DEFAULT_ARG_IN_FROM, node, message);
        }
        if let Some(base) = globals.expand(&stage.base_name) {
            globals.undeclared(&base, node, linter);
        }
        let Some(platform) = &stage.platform else { continue };
        let Some(expanded) = globals.expand(platform) else { continue };
        globals.undeclared(&expanded, node, linter);
        let target = globals.values.iter().find(|(k, _)| k == "TARGETPLATFORM").map(|(_, v)| v.as_str());
        if expanded.matched.len() == 1
            && expanded.unmatched.is_empty()
            && expanded.matched.contains("TARGETPLATFORM")
            && Some(expanded.result.as_str()) == target
        {
            let message = format!(
                "Setting platform to predefined {platform} in FROM is redundant as this is the default behavior"
            );
            linter.report(&REDUNDANT_TARGET_PLATFORM, node, message);
        }
        if expanded.matched.is_empty()
            && expanded.unmatched.is_empty()
            && let Ok(p) = Platform::parse(&expanded.result)
        {
            // A stage named for its platform (`build-arm64`) means the constant.
            let name = stage.name.as_deref().unwrap_or_default();
            if !name.contains(&p.os) && !name.contains(&p.architecture) {
                let message = format!("FROM --platform flag should not use constant value {:?}", expanded.result);
                linter.report(&FROM_PLATFORM_FLAG_CONST_DISALLOWED, node, message);
            }
        }
    }
}
