//! Word expansion as BuildKit's `shell` package does it: `$VAR`, `${VAR}`, the
//! `${VAR:-x}` family, pattern trimming and replacement, quotes and escapes, and
//! splitting into words. It knows nothing of instructions; callers hand it an
//! environment through [`Env`].

mod pattern;

use std::collections::BTreeSet;
use std::iter::Peekable;
use std::str::Chars;

/// What a word is expanded against.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

/// No variables at all.
pub struct EmptyEnv;

impl Env for EmptyEnv {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }
}

/// The lexer's options, as BuildKit's `shell.Lex`.
#[derive(Debug, Clone, Copy)]
pub struct Lex {
    pub escape_token: char,
    /// Keep quote characters in the result.
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
}

/// The result of expanding one word: its text and the variables it referred to.
#[derive(Debug, Default)]
pub struct Expansion {
    pub result: String,
    pub words: Vec<String>,
    pub matched: BTreeSet<String>,
    pub unmatched: BTreeSet<String>,
}

impl Lex {
    pub fn new(escape_token: char) -> Self {
        Lex { escape_token, raw_quotes: false, raw_escapes: false, skip_process_quotes: false, skip_unset_env: false }
    }

    /// Expands `word` as one word (quotes removed, no splitting).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, String> {
        self.process(word, env).map(|e| e.result)
    }

    /// Expands `word` and splits it into words the way a shell would.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, String> {
        self.process(word, env).map(|e| e.words)
    }

    /// Expands `word`, reporting both forms and the variables seen.
    pub fn process(&self, word: &str, env: &dyn Env) -> Result<Expansion, String> {
        let mut sw = ShellWord { lex: *self, env, chars: word.chars().peekable(), expansion: Expansion::default() };
        let raw = self.raw_escapes;
        let (result, words) = sw.process_stop_on(None, raw).map_err(|e| format!("failed to process {word:?}: {e}"))?;
        let mut expansion = sw.expansion;
        expansion.result = result;
        expansion.words = words;
        Ok(expansion)
    }
}

struct ShellWord<'a> {
    lex: Lex,
    env: &'a dyn Env,
    chars: Peekable<Chars<'a>>,
    expansion: Expansion,
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn into_words(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

impl ShellWord<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn process_stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Vec<String>), String> {
        let saved = self.lex.raw_escapes;
        self.lex.raw_escapes = raw_escapes;
        let out = self.process_stop_on_inner(stop);
        self.lex.raw_escapes = saved;
        out
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.chars.next();
                return Ok((result, words.into_words()));
            }
            let special = ch == '$' || (!self.lex.skip_process_quotes && (ch == '\'' || ch == '"'));
            if special {
                let tmp = match ch {
                    '$' => self.process_dollar()?,
                    '\'' => self.process_single_quote()?,
                    _ => self.process_double_quote()?,
                };
                result.push_str(&tmp);
                if ch == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
                continue;
            }
            let mut ch = self.chars.next().unwrap_or_default();
            if ch == self.lex.escape_token {
                if self.lex.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                match self.chars.next() {
                    None => break,
                    Some(next) => ch = next,
                }
                words.add_raw_char(ch);
            } else {
                words.add_char(ch);
            }
            result.push(ch);
        }
        if let Some(stop) = stop {
            return Err(format!("unexpected end of statement while looking for matching {stop}"));
        }
        Ok((result, words.into_words()))
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.chars.next().unwrap_or('\'');
        if self.lex.raw_quotes {
            result.push(open);
        }
        loop {
            match self.chars.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.chars.next().unwrap_or('"');
        if self.lex.raw_quotes {
            result.push(open);
        }
        loop {
            match self.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".into()),
                Some('"') => {
                    self.chars.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let mut ch = self.chars.next().unwrap_or_default();
                    if ch == self.lex.escape_token {
                        if self.lex.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.lex.escape_token => {
                                ch = next;
                                self.chars.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(v) => {
                self.expansion.matched.insert(name.to_string());
                Some(v)
            }
            None => {
                self.expansion.unmatched.insert(name.to_string());
                None
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.chars.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.chars.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(ch) = self.chars.next() else {
            return Err("syntax error: missing '}'".into());
        };
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => self.process_modifier(name, ch),
            '/' => self.process_replacement(name),
            c => Err(format!("unsupported modifier ({c}) in substitution")),
        }
    }

    fn process_modifier(&mut self, name: String, first: char) -> Result<String, String> {
        let mut modifier = first;
        let mut chs = first.to_string();
        let null_is_unset = first == ':';
        if null_is_unset {
            match self.chars.next() {
                Some(c) => {
                    modifier = c;
                    chs.push(c);
                }
                None => return Err("syntax error: missing '}'".into()),
            }
        }
        let raw_escapes = modifier == '#' || modifier == '%';
        if null_is_unset && raw_escapes {
            return Err(format!("unsupported modifier ({chs}) in substitution"));
        }
        if !matches!(modifier, '+' | '-' | '?' | '#' | '%') {
            return Err(format!("unsupported modifier ({chs}) in substitution"));
        }
        let word = match self.process_stop_on(Some('}'), raw_escapes) {
            Ok((word, _)) => word,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '}'".into());
                }
                return Err(e);
            }
        };
        let value = self.get_env(&name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let set = value.is_some();
        let value = value.unwrap_or_default();
        let unset = !set || (null_is_unset && value.is_empty());
        match modifier {
            '-' => Ok(if unset { word } else { value }),
            '+' => Ok(if unset { String::new() } else { word }),
            '?' => {
                if !set {
                    let msg = if word.is_empty() { "is not allowed to be unset" } else { &word };
                    return Err(format!("{name}: {msg}"));
                }
                if null_is_unset && value.is_empty() {
                    let msg = if word.is_empty() { "is not allowed to be empty" } else { &word };
                    return Err(format!("{name}: {msg}"));
                }
                Ok(value)
            }
            _ => {
                let (greedy, pat) = match word.strip_prefix(modifier) {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, word),
                };
                if modifier == '%' {
                    pattern::trim_suffix(&pat, &value, greedy)
                } else {
                    pattern::trim_prefix(&pat, &value, greedy)
                }
            }
        }
    }

    fn process_replacement(&mut self, name: String) -> Result<String, String> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.chars.next();
        }
        let pat = match self.process_stop_on(Some('/'), true) {
            Ok((p, _)) => p,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '/' in ${}".into());
                }
                return Err(e);
            }
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((r, _)) => r,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '}'".into());
                }
                return Err(e);
            }
        };
        let Some(value) = self.get_env(&name) else {
            if self.lex.skip_unset_env {
                return Ok(format!("${{{name}/{pat}/{replacement}}}"));
            }
            return pattern::replace(&pat, "", &replacement, replace_all);
        };
        pattern::replace(&pat, &value, &replacement, replace_all)
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.chars.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.chars.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.chars.next();
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![("A".into(), "x y".into()), ("E".into(), String::new())]
    }

    #[test]
    fn expands() {
        let lex = Lex::new('\\');
        assert_eq!(lex.process_word("${A:-z}-$E-${B:-b}", &env()).unwrap(), "x y--b");
        assert_eq!(lex.process_words("a $A", &env()).unwrap(), vec!["a", "x", "y"]);
        assert!(lex.process_word("${A", &env()).is_err());
    }

    #[test]
    fn skip_unset_keeps_references() {
        let mut lex = Lex::new('\\');
        lex.skip_unset_env = true;
        assert_eq!(lex.process_word("$NOPE ${NOPE:-d} $A", &env()).unwrap(), "$NOPE ${NOPE:-d} x y");
    }
}
