//! Parser directives (`# syntax=`, `# escape=`, `# check=`): comment lines at the very
//! top of a Dockerfile that change how the rest is read.

use crate::error::ParseErrorKind;
/// The directives found so far and the state of the scan.
#[derive(Debug, Clone)]
pub struct Directives {
    pub escape_token: char,
    pub syntax: Option<String>,
    pub check: Option<String>,
    seen: Vec<String>,
    done: bool,
    line: usize,
}

impl Default for Directives {
    fn default() -> Self {
        Directives { escape_token: '\\', syntax: None, check: None, seen: Vec::new(), done: false, line: 0 }
    }
}

impl Directives {
    /// Looks at one physical line (newline already trimmed). Directives are only
    /// recognised until the first line that is not one.
    pub fn possible_directive(&mut self, line: &str) -> Result<(), ParseErrorKind> {
        self.line += 1;
        if self.done {
            return Ok(());
        }
        if self.line == 1 && line.starts_with("#!") {
            // A shebang line may precede the directives.
            return Ok(());
        }
        let Some((key, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(ParseErrorKind::invalid(format!("only one {key} parser directive can be used")));
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => {
                if value != "`" && value != "\\" {
                    return Err(ParseErrorKind::invalid(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    )));
                }
                self.escape_token = value.chars().next().unwrap_or('\\');
            }
            "syntax" => self.syntax = Some(value),
            _ => self.check = Some(value),
        }
        Ok(())
    }

    /// Stops recognising directives (after the first instruction).
    pub fn finish(&mut self) {
        self.done = true;
    }
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn match_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let key_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
    let key = &rest[..key_len];
    if !key.chars().next()?.is_ascii_alphabetic() {
        return None;
    }
    let rest = rest[key_len..].trim_start().strip_prefix('=')?;
    let value = rest.trim();
    if value.is_empty() {
        return None;
    }
    Some((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_escape_and_stops_after_other_lines() {
        let mut d = Directives::default();
        d.possible_directive("# syntax = docker/dockerfile:1").unwrap();
        d.possible_directive("#escape=`").unwrap();
        d.possible_directive("# escape=\\").unwrap_err();
        assert_eq!(d.escape_token, '`');
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));

        let mut d = Directives::default();
        d.possible_directive("# a comment").unwrap();
        d.possible_directive("# escape=`").unwrap();
        assert_eq!(d.escape_token, '\\');
    }

    #[test]
    fn rejects_bad_escape() {
        let mut d = Directives::default();
        assert!(d.possible_directive("# escape=x").is_err());
    }
}
