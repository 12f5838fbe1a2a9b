//! Word expansion as BuildKit's `shell` package does it: `$VAR`, `${VAR}`, the
//! `${VAR:-x}` family, pattern trimming and replacement, quotes and escapes, and
//! splitting into words. It knows nothing of instructions; callers hand it an
//! environment through [`Env`].

mod dollar;
mod pattern;

use std::collections::BTreeSet;
use std::iter::Peekable;
use std::str::Chars;

/// `${...}` nested deeper than this is refused: each level is a frame of a
/// recursive descent, and a hostile Dockerfile must get an error, not a stack
/// overflow.
pub const MAX_NESTING: u32 = 128;

/// An expanded word longer than this is refused (`ENV A=${A}${A}` repeated doubles
/// it each time). Linux cannot pass an environment string over 128 KiB to a
/// program anyway.
pub const MAX_EXPANSION: usize = 1 << 20;

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

/// A word that cannot be expanded (`${x`, a bad pattern, `${x:?unset}`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("failed to process {:?}: {reason}", image_spec::shown(word))]
pub struct ExpansionError {
    pub word: String,
    pub reason: String,
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
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ExpansionError> {
        self.process(word, env).map(|e| e.result)
    }

    /// Expands `word` and splits it into words the way a shell would.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpansionError> {
        self.process(word, env).map(|e| e.words)
    }

    /// Expands `word`, reporting both forms and the variables seen.
    pub fn process(&self, word: &str, env: &dyn Env) -> Result<Expansion, ExpansionError> {
        let mut sw =
            ShellWord { lex: *self, env, chars: word.chars().peekable(), expansion: Expansion::default(), depth: 0 };
        let raw = self.raw_escapes;
        let (result, words) =
            sw.process_stop_on(None, raw).map_err(|reason| ExpansionError { word: word.to_string(), reason })?;
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
    /// How many `process_stop_on` calls are open (see [`MAX_NESTING`]).
    depth: u32,
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
    pub(super) fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    pub(super) fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        if self.depth >= MAX_NESTING {
            return Err(format!("substitutions nested more than {MAX_NESTING} deep"));
        }
        let saved = self.lex.raw_escapes;
        self.lex.raw_escapes = raw_escapes;
        self.depth += 1;
        let out = self.process_stop_on_inner(stop);
        self.depth -= 1;
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
                check_size(&result)?;
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
                    check_size(&result)?;
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
}

/// Fails once an expansion grows past [`MAX_EXPANSION`].
fn check_size(text: &str) -> Result<(), String> {
    if text.len() > MAX_EXPANSION {
        return Err(format!("expansion larger than {MAX_EXPANSION} bytes"));
    }
    Ok(())
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

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let lex = Lex::new('\\');
        let depth = 20_000;
        let word = format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth));
        // On a small stack, as a build's frontend might run.
        let result = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || lex.process_word(&word, &env()))
            .unwrap()
            .join()
            .unwrap();
        assert!(result.unwrap_err().reason.contains("nested more than"));
        let shallow = format!("{}x{}", "${a:-".repeat(50), "}".repeat(50));
        assert_eq!(lex.process_word(&shallow, &env()).unwrap(), "x");
    }

    #[test]
    fn doubling_expansions_stop_at_the_size_cap() {
        let lex = Lex::new('\\');
        let mut env = vec![("A".to_string(), "0123456789abcdef".to_string())];
        let mut failed = None;
        for round in 0..40 {
            match lex.process_word("${A}${A}", &env) {
                Ok(value) => env.push(("A".into(), value)),
                Err(e) => {
                    failed = Some((round, e));
                    break;
                }
            }
        }
        let (round, error) = failed.expect("the doubling stops");
        assert!(round < 20 && error.reason.contains("larger than"), "{round}: {error}");
    }
}
