//! The `# check=skip=A,B;error=true;experimental=C` directive, as BuildKit's
//! `linter.ParseLintOptions`: at the top of the file it configures the whole build; in
//! the comments right above an instruction it adds to that for the instruction.

use super::rules::Rule;
use std::collections::BTreeSet;

/// Which rules run and whether findings fail the build.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckConfig {
    pub skip_all: bool,
    pub skip: BTreeSet<String>,
    pub experimental_all: bool,
    pub experimental: BTreeSet<String>,
    /// `error=true`: any finding fails the build.
    pub error: bool,
}

/// A `check` value BuildKit rejects; the message is its own.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("failed to parse check options: {0}")]
pub struct CheckOptionError(String);

fn names(value: &str) -> BTreeSet<String> {
    value.split(',').map(|n| n.trim().to_string()).collect()
}

impl CheckConfig {
    /// Parses a directive's value (`skip=all`, `error=true;skip=A,B`).
    pub fn parse(value: &str) -> Result<Self, CheckOptionError> {
        let mut config = CheckConfig::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(config);
        }
        for part in value.splitn(3, ';') {
            let (key, v) =
                part.split_once('=').ok_or_else(|| CheckOptionError(format!("invalid check option {part:?}")))?;
            let v = v.trim();
            match key.trim() {
                "skip" if v == "all" => config.skip_all = true,
                "skip" => config.skip = names(v),
                "experimental" if v == "all" => config.experimental_all = true,
                "experimental" => config.experimental = names(v),
                "error" => {
                    config.error = parse_bool(v).ok_or_else(|| {
                        CheckOptionError(format!("failed to parse check option {part:?}: invalid syntax"))
                    })?
                }
                other => return Err(CheckOptionError(format!("invalid check option {other:?}"))),
            }
        }
        Ok(config)
    }

    /// Whether `rule` reports under this configuration.
    pub fn enabled(&self, rule: &Rule) -> bool {
        if rule.experimental {
            self.experimental_all || self.experimental.contains(rule.name)
        } else {
            !self.skip_all && !self.skip.contains(rule.name)
        }
    }

    /// This configuration with a `# check=` among an instruction's comments added (the
    /// first one counts; one that does not parse changes nothing, as in BuildKit).
    pub fn with_comments(&self, comments: &[String]) -> CheckConfig {
        let Some(value) = comments.iter().find_map(|c| check_comment(c)) else {
            return self.clone();
        };
        let Ok(other) = CheckConfig::parse(value.split(' ').next().unwrap_or_default()) else {
            return self.clone();
        };
        let mut merged = self.clone();
        merged.skip_all |= other.skip_all;
        merged.experimental_all |= other.experimental_all;
        merged.skip.extend(other.skip);
        merged.experimental.extend(other.experimental);
        merged
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The value of a comment (text after `#`, trimmed) that is a `check=` directive.
fn check_comment(comment: &str) -> Option<&str> {
    let (key, value) = comment.split_once('=')?;
    let value = value.trim();
    (key.trim().eq_ignore_ascii_case("check") && !value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::rules::{INVALID_DEFINITION_DESCRIPTION, STAGE_NAME_CASING, UNDEFINED_VAR};

    #[test]
    fn parses_buildkit_forms() {
        let c = CheckConfig::parse("skip=StageNameCasing, UndefinedVar;error=true").unwrap();
        assert!(c.error);
        assert!(!c.enabled(&STAGE_NAME_CASING) && !c.enabled(&UNDEFINED_VAR));
        assert!(CheckConfig::parse("skip=all").unwrap().skip_all);
        assert!(!CheckConfig::default().enabled(&INVALID_DEFINITION_DESCRIPTION));
        assert!(CheckConfig::parse("experimental=all").unwrap().enabled(&INVALID_DEFINITION_DESCRIPTION));
        assert_eq!(CheckConfig::parse("").unwrap(), CheckConfig::default());
        let e = CheckConfig::parse("bogus=1").unwrap_err();
        assert_eq!(e.to_string(), "failed to parse check options: invalid check option \"bogus\"");
        assert!(CheckConfig::parse("error=maybe").is_err());
        assert!(CheckConfig::parse("skip").is_err());
    }

    #[test]
    fn comments_add_to_the_file_config() {
        let base = CheckConfig::parse("error=true").unwrap();
        let c = base.with_comments(&["a note".into(), "check=skip=UndefinedVar".into()]);
        assert!(c.error && !c.enabled(&UNDEFINED_VAR) && c.enabled(&STAGE_NAME_CASING));
        assert_eq!(base.with_comments(&["check=nonsense".into()]), base);
    }
}
