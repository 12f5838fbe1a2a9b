//! Instruction flags (`--from=x`, `--link`, `--mount=...` repeated), as BuildKit's
//! `BFlags`: each instruction declares what it accepts, then the flags are checked.

use crate::error::ParseErrorKind;
use crate::suggest;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    String,
    Strings,
}

/// The flags given to one instruction, checked against what it accepts.
#[derive(Debug, Default)]
pub struct Flags {
    args: Vec<String>,
    kinds: BTreeMap<&'static str, Kind>,
    values: BTreeMap<String, Vec<String>>,
}

impl Flags {
    pub fn new(args: &[String]) -> Self {
        Flags { args: args.to_vec(), ..Flags::default() }
    }

    pub fn add_bool(&mut self, name: &'static str) -> &mut Self {
        self.kinds.insert(name, Kind::Bool);
        self
    }

    pub fn add_string(&mut self, name: &'static str) -> &mut Self {
        self.kinds.insert(name, Kind::String);
        self
    }

    pub fn add_strings(&mut self, name: &'static str) -> &mut Self {
        self.kinds.insert(name, Kind::Strings);
        self
    }

    /// Checks every flag given; errors name the flag (with a suggestion if misspelt).
    pub fn parse(&mut self) -> Result<(), ParseErrorKind> {
        for arg in &self.args {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(ParseErrorKind::NotAFlag { arg: arg.clone() });
            };
            if body.is_empty() {
                return Ok(());
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(kind) = self.kinds.get(name).copied() else {
                let options: Vec<&str> = self.kinds.keys().copied().collect();
                let suggestion = suggest::closest(name, &options).map(str::to_string);
                return Err(ParseErrorKind::UnknownFlag { flag: name.to_string(), suggestion });
            };
            if self.values.contains_key(name) && kind != Kind::Strings {
                return Err(ParseErrorKind::DuplicateFlag { flag: name.to_string() });
            }
            let value = match (kind, value) {
                (Kind::Bool, Some("")) => return Err(ParseErrorKind::MissingFlagValue { flag: name.to_string() }),
                (Kind::Bool, None) => "true".to_string(),
                (Kind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" => "true".into(),
                    "false" => "false".into(),
                    _ => return Err(ParseErrorKind::NotBoolean { flag: name.to_string(), value: v.to_string() }),
                },
                (_, None) => return Err(ParseErrorKind::MissingFlagValue { flag: name.to_string() }),
                (_, Some(v)) => v.to_string(),
            };
            self.values.entry(name.to_string()).or_default().push(value);
        }
        Ok(())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }

    pub fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let mut f = Flags::new(&["--from=a".into(), "--link".into(), "--exclude=x".into(), "--exclude=y".into()]);
        f.add_string("from").add_bool("link").add_strings("exclude");
        f.parse().unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert_eq!(f.bool("link"), Some(true));
        assert_eq!(f.strings("exclude"), vec!["x", "y"]);

        let mut f = Flags::new(&["--chmd=7".into()]);
        f.add_string("chmod");
        assert_eq!(f.parse().unwrap_err().to_string(), "unknown flag: --chmd (did you mean chmod?)");

        let mut f = Flags::new(&["--from".into()]);
        f.add_string("from");
        assert!(f.parse().is_err());
    }
}
