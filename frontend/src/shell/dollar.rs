//! `$NAME`, `${NAME}` and the `${NAME<modifier>...}` forms of word expansion.

use super::{ShellWord, pattern};

impl ShellWord<'_> {
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

    pub(super) fn process_dollar(&mut self) -> Result<String, String> {
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
