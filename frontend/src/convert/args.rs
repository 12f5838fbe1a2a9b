//! Build arguments: the predefined platform and proxy args, global ARGs before the
//! first FROM, and the environment words are expanded against.

use crate::BuildOptions;
use crate::error::{Location, ParseError};
use crate::instructions::ArgDef;
use crate::shell::{Env, ExpansionError, Lex};
use image_spec::Platform;
use std::collections::BTreeSet;

/// Proxy args are passed to RUN when given, without an ARG to declare them.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Args the builder defines itself; giving them never warns.
pub fn is_builtin(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
        || name == "SOURCE_DATE_EPOCH"
        || name.starts_with("BUILDKIT_")
        || platform_args(&Platform::new("linux", "amd64"), &Platform::new("linux", "amd64"))
            .iter()
            .any(|(k, _)| k == name)
}

/// `TARGETPLATFORM`, `TARGETOS`, ..., `BUILDVARIANT` for the given platforms.
pub fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default()));
    }
    out
}

/// Variables visible to a word: ENV values first, then ARG values (ENV wins).
pub struct ScopeEnv<'a> {
    pub env: &'a [String],
    pub args: &'a [(String, Option<String>)],
}

impl Env for ScopeEnv<'_> {
    fn get(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        if let Some(v) = self.env.iter().rev().find_map(|e| e.strip_prefix(&prefix)) {
            return Some(v.to_string());
        }
        self.args.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.clone())
    }
}

/// The global scope: predefined args, then ARGs before the first FROM.
#[derive(Debug, Default)]
pub struct MetaArgs {
    pub values: Vec<(String, Option<String>)>,
}

impl MetaArgs {
    /// Evaluates the global ARGs in order, `--build-arg` values overriding defaults.
    pub fn evaluate(
        defs: &[(ArgDef, Location)],
        options: &BuildOptions,
        lex: &Lex,
        used: &mut BTreeSet<String>,
    ) -> Result<Self, ParseError> {
        let mut values: Vec<(String, Option<String>)> =
            platform_args(&options.platform, &options.build_platform).into_iter().map(|(k, v)| (k, Some(v))).collect();
        for (def, line) in defs {
            used.insert(def.key.clone());
            let value = match (options.build_args.get(&def.key), &def.value) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => {
                    let env = ScopeEnv { env: &[], args: &values };
                    Some(lex.process_word(default, &env).map_err(|e| ParseError::expansion(*line, e))?)
                }
                // `ARG TARGETARCH` before FROM keeps the predefined value, as in BuildKit.
                (None, None) => values.iter().find(|(k, _)| k == &def.key).and_then(|(_, v)| v.clone()),
            };
            values.retain(|(k, _)| k != &def.key);
            values.push((def.key.clone(), value));
        }
        Ok(MetaArgs { values })
    }

    pub fn get(&self, name: &str) -> Option<&Option<String>> {
        self.values.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Expands a word in the global scope (FROM, `--platform`, `--from`).
    pub fn expand(&self, lex: &Lex, word: &str) -> Result<String, ExpansionError> {
        lex.process_word(word, &ScopeEnv { env: &[], args: &self.values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_wins_over_args() {
        let env = vec!["A=env".to_string()];
        let args = vec![("A".to_string(), Some("arg".to_string())), ("B".to_string(), Some("b".to_string()))];
        let scope = ScopeEnv { env: &env, args: &args };
        assert_eq!(scope.get("A").as_deref(), Some("env"));
        assert_eq!(scope.get("B").as_deref(), Some("b"));
        assert_eq!(scope.get("C"), None);
    }

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!(Platform::parse("linux").is_err());
        assert!(is_builtin("TARGETARCH"));
        let options = crate::BuildOptions::new(p.clone(), Platform::new("linux", "amd64"));
        let declared = [(ArgDef { key: "TARGETARCH".into(), value: None }, Location::line(1))];
        let meta = MetaArgs::evaluate(&declared, &options, &Lex::new('\\'), &mut BTreeSet::new()).unwrap();
        assert_eq!(meta.get("TARGETARCH"), Some(&Some("arm".to_string())), "a bare ARG keeps the predefined value");
        assert!(!is_builtin("VERSION"));
    }
}
