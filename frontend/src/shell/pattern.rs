//! Shell patterns (`*`, `?`, literals) for `${VAR#pat}`, `${VAR%pat}` and
//! `${VAR/pat/repl}`, matched with the same leftmost, shortest-or-longest rules as
//! the regular expressions BuildKit compiles them to.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Star,
    Any,
    Lit(char),
}

fn compile(pattern: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push(Token::Star),
            '?' => out.push(Token::Any),
            '\\' => {
                if chars.peek() == Some(&'}') {
                    continue;
                }
                match chars.next() {
                    Some(e @ ('*' | '?' | '\\')) => out.push(Token::Lit(e)),
                    Some(e) => {
                        return Err(format!("invalid pattern ({pattern}) in substitution: invalid escape '\\{e}'"));
                    }
                    None => return Err(format!("invalid pattern ({pattern}) in substitution: trailing backslash")),
                }
            }
            c => out.push(Token::Lit(c)),
        }
    }
    Ok(out)
}

/// Every end index at which `tokens` match `text` starting at `start`.
fn match_ends(tokens: &[Token], text: &[char], start: usize, ends: &mut Vec<usize>) {
    let Some((first, rest)) = tokens.split_first() else {
        ends.push(start);
        return;
    };
    match first {
        Token::Lit(c) => {
            if text.get(start) == Some(c) {
                match_ends(rest, text, start + 1, ends);
            }
        }
        // Like the regexp `.`, which does not match a newline.
        Token::Any => {
            if text.get(start).is_some_and(|c| *c != '\n') {
                match_ends(rest, text, start + 1, ends);
            }
        }
        Token::Star => {
            let mut i = start;
            loop {
                match_ends(rest, text, i, ends);
                if i >= text.len() || text[i] == '\n' {
                    break;
                }
                i += 1;
            }
        }
    }
}

fn find_at(tokens: &[Token], text: &[char], start: usize, greedy: bool) -> Option<usize> {
    let mut ends = Vec::new();
    match_ends(tokens, text, start, &mut ends);
    if greedy { ends.into_iter().max() } else { ends.into_iter().min() }
}

/// `${VAR#pat}` / `${VAR##pat}`: drop the shortest (longest) matching prefix.
pub fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let tokens = compile(pattern)?;
    let text: Vec<char> = value.chars().collect();
    Ok(match find_at(&tokens, &text, 0, greedy) {
        Some(end) => text[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// Reverses a pattern, keeping `\x` escapes in front of what they escape.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; chars.len()];
    let last = chars.len().saturating_sub(1);
    let mut i = 0;
    while i < chars.len() {
        let out_idx = last - i;
        if chars[i] == '\\' && i != last {
            out[out_idx - 1] = '\\';
            out[out_idx] = chars[i + 1];
            i += 2;
        } else {
            out[out_idx] = chars[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// `${VAR%pat}` / `${VAR%%pat}`: drop the shortest (longest) matching suffix.
pub fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// `${VAR/pat/repl}` and `${VAR//pat/repl}`: leftmost-longest replacement.
pub fn replace(pattern: &str, value: &str, replacement: &str, all: bool) -> Result<String, String> {
    let tokens = compile(pattern)?;
    let text: Vec<char> = value.chars().collect();
    let find = |from: usize| (from..=text.len()).find_map(|s| find_at(&tokens, &text, s, true).map(|e| (s, e)));
    if !all {
        return Ok(match find(0) {
            Some((s, e)) => {
                let mut out: String = text[..s].iter().collect();
                out.push_str(replacement);
                out.extend(&text[e..]);
                out
            }
            None => value.to_string(),
        });
    }
    // Go's ReplaceAll: empty matches right after a match are skipped.
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= text.len() {
        let Some((s, e)) = find(search) else { break };
        out.extend(&text[last_end..s]);
        if e > last_end || s == 0 {
            out.push_str(replacement);
        }
        last_end = e;
        search = if search + 1 > e { search + 1 } else { e };
    }
    out.extend(&text[last_end.min(text.len())..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims() {
        assert_eq!(trim_prefix("*/", "linux/arm/v7", false).unwrap(), "arm/v7");
        assert_eq!(trim_prefix("*/", "linux/arm/v7", true).unwrap(), "v7");
        assert_eq!(trim_suffix("/*", "linux/arm/v7", false).unwrap(), "linux/arm");
        assert_eq!(trim_suffix("/*", "linux/arm/v7", true).unwrap(), "linux");
    }

    #[test]
    fn replaces() {
        assert_eq!(replace("a", "banana", "o", false).unwrap(), "bonana");
        assert_eq!(replace("a", "banana", "o", true).unwrap(), "bonono");
        assert_eq!(replace("n*", "banana", "", false).unwrap(), "ba");
    }
}
