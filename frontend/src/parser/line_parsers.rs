//! Per-instruction argument parsers, as BuildKit's `line_parsers.go`: they only split
//! and classify arguments (JSON or shell form, key/value pairs); expansion comes later.

use super::Node;
use super::split::{split_command, split_whitespace_n};
use crate::error::ParseErrorKind;

/// The arguments of one instruction as the parser sees them.
#[derive(Debug, Default)]
pub struct Args {
    pub args: Vec<String>,
    /// The instruction `ONBUILD` wraps.
    pub sub: Option<Box<Node>>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
}

impl Args {
    fn list(args: Vec<String>) -> Self {
        Args { args, ..Args::default() }
    }
}

pub type ParseFn = fn(&str, char) -> Result<Args, ParseErrorKind>;

/// The parser for an instruction keyword (lower case); unknown keywords are kept
/// with no arguments so the next pass can report them with a suggestion.
pub fn dispatch(keyword: &str) -> ParseFn {
    match keyword {
        "add" | "copy" | "volume" => parse_maybe_json_to_list,
        "arg" => parse_name_or_name_val,
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json,
        "env" => parse_env,
        "label" => parse_label,
        "expose" | "from" => parse_strings_whitespace_delimited,
        "healthcheck" => parse_health_config,
        "maintainer" | "stopsignal" | "user" | "workdir" => parse_string,
        "onbuild" => parse_sub_command,
        _ => parse_ignore,
    }
}

fn parse_ignore(_rest: &str, _escape: char) -> Result<Args, ParseErrorKind> {
    Ok(Args::default())
}

fn parse_sub_command(rest: &str, escape: char) -> Result<Args, ParseErrorKind> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    let child = node_from_line(rest, escape)?;
    Ok(Args { sub: Some(Box::new(child)), ..Args::default() })
}

/// Builds a node (without line numbers or heredocs) from one logical line.
pub fn node_from_line(line: &str, escape: char) -> Result<Node, ParseErrorKind> {
    let (cmd, flags, rest) = split_command(line);
    let parsed = dispatch(&cmd.to_ascii_lowercase())(&rest, escape)?;
    Ok(Node {
        value: cmd,
        args: parsed.args,
        sub: parsed.sub,
        json: parsed.json,
        flags,
        original: line.to_string(),
        ..Node::default()
    })
}

/// Space-delimited or quoted words; quotes and escapes are kept for later expansion.
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let mut ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                // An escape outside quotes keeps itself and the next char, even a quote.
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Args, ParseErrorKind> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(Args::default());
    }
    if !words[0].contains('=') {
        // Legacy form: `KEY name value with spaces`.
        let parts = split_whitespace_n(rest, 2);
        if parts.len() < 2 {
            return Err(ParseErrorKind::invalid(format!("{key} must have two arguments")));
        }
        return Ok(Args::list(vec![parts[0].clone(), parts[1].clone(), String::new()]));
    }
    let mut args = Vec::new();
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(ParseErrorKind::invalid(format!(
                "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
            )));
        };
        args.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(Args::list(args))
}

fn parse_env(rest: &str, escape: char) -> Result<Args, ParseErrorKind> {
    parse_name_val(rest, "ENV", escape)
}

fn parse_label(rest: &str, escape: char) -> Result<Args, ParseErrorKind> {
    parse_name_val(rest, "LABEL", escape)
}

fn parse_name_or_name_val(rest: &str, escape: char) -> Result<Args, ParseErrorKind> {
    Ok(Args::list(parse_words(rest, escape)))
}

fn parse_strings_whitespace_delimited(rest: &str, _escape: char) -> Result<Args, ParseErrorKind> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    Ok(Args::list(split_whitespace_n(rest, usize::MAX)))
}

fn parse_string(rest: &str, _escape: char) -> Result<Args, ParseErrorKind> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    Ok(Args::list(vec![rest.to_string()]))
}

enum JsonError {
    NotJson,
    NotStringArray,
}

fn parse_json(rest: &str) -> Result<Args, JsonError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Err(JsonError::NotJson);
    }
    let values: Vec<serde_json::Value> = serde_json::from_str(rest).map_err(|_| JsonError::NotJson)?;
    let mut args = Vec::with_capacity(values.len());
    for value in values {
        match value {
            serde_json::Value::String(s) => args.push(s),
            _ => return Err(JsonError::NotStringArray),
        }
    }
    Ok(Args { args, json: true, sub: None })
}

fn parse_maybe_json(rest: &str, _escape: char) -> Result<Args, ParseErrorKind> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    match parse_json(rest) {
        Ok(args) => Ok(args),
        Err(JsonError::NotStringArray) => Err(ParseErrorKind::BadJson),
        Err(JsonError::NotJson) => Ok(Args::list(vec![rest.to_string()])),
    }
}

fn parse_maybe_json_to_list(rest: &str, escape: char) -> Result<Args, ParseErrorKind> {
    match parse_json(rest) {
        Ok(args) => Ok(args),
        Err(JsonError::NotStringArray) => Err(ParseErrorKind::BadJson),
        Err(JsonError::NotJson) => parse_strings_whitespace_delimited(rest, escape),
    }
}

fn parse_health_config(rest: &str, escape: char) -> Result<Args, ParseErrorKind> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Args::default());
    }
    let next = rest[sep..].find(|c: char| !c.is_whitespace()).map_or(rest.len(), |n| sep + n);
    let mut cmd = parse_maybe_json(&rest[next..], escape)?;
    cmd.args.insert(0, rest[..sep].to_string());
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes() {
        assert_eq!(parse_words(r#"abc="123 456" def"#, '\\'), vec![r#"abc="123 456""#, "def"]);
        assert_eq!(parse_words(r"a\ b c", '\\'), vec![r"a\ b", "c"]);
    }

    #[test]
    fn env_forms() {
        assert_eq!(parse_env("a b c", '\\').unwrap().args, vec!["a", "b c", ""]);
        assert_eq!(parse_env("a=b c=d", '\\').unwrap().args, vec!["a", "b", "=", "c", "d", "="]);
        assert!(parse_env("PATH", '\\').is_err());
        assert!(parse_env("a=b c", '\\').is_err());
    }

    #[test]
    fn json_or_shell() {
        let a = parse_maybe_json(r#"["a", "b"]"#, '\\').unwrap();
        assert!(a.json);
        assert_eq!(a.args, vec!["a", "b"]);
        let a = parse_maybe_json(r#"['a']"#, '\\').unwrap();
        assert!(!a.json);
        assert!(parse_maybe_json(r#"["a", ["b"]]"#, '\\').is_err());
    }
}
