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

/// Adds the NFA state `state` for a match that began at `start`, and the states it
/// reaches without consuming (past a `*`). Per state only the leftmost start is kept:
/// two runs in the same state have the same future, and the leftmost one wins.
fn add(tokens: &[Token], set: &mut [Option<usize>], mut state: usize, start: usize) {
    loop {
        if set[state].is_some_and(|s| s <= start) {
            return;
        }
        set[state] = Some(start);
        if tokens.get(state) != Some(&Token::Star) {
            return;
        }
        state += 1;
    }
}

/// The leftmost match at or after `from` (at `from` only when `anchored`), as
/// (start, end): the longest end when `greedy`, else the shortest. One pass over the
/// text with a set of live NFA states, so the time is linear in the text whatever the
/// pattern (a backtracking matcher is exponential in the number of `*`, and listing
/// every end allocates quadratically).
fn search(tokens: &[Token], text: &[char], from: usize, anchored: bool, greedy: bool) -> Option<(usize, usize)> {
    let accept = tokens.len();
    let mut current = vec![None; accept + 1];
    let mut next = vec![None; accept + 1];
    let mut best: Option<(usize, usize)> = None;
    for pos in from..=text.len() {
        if best.is_none() && (pos == from || !anchored) {
            add(tokens, &mut current, 0, pos);
        }
        if let Some(start) = current[accept] {
            match best {
                Some((s, _)) if start > s => {}
                Some((s, _)) if start == s && !greedy => {}
                _ => best = Some((start, pos)),
            }
            if !greedy && anchored {
                return best;
            }
        }
        let Some(&c) = text.get(pos) else { break };
        next.fill(None);
        for (state, token) in tokens.iter().enumerate() {
            let Some(start) = current[state] else { continue };
            if best.is_some_and(|(s, _)| start > s) {
                continue;
            }
            // Like the regexp `.`, `?` and `*` do not match a newline.
            match token {
                Token::Lit(l) if *l == c => add(tokens, &mut next, state + 1, start),
                Token::Any if c != '\n' => add(tokens, &mut next, state + 1, start),
                Token::Star if c != '\n' => add(tokens, &mut next, state, start),
                _ => {}
            }
        }
        std::mem::swap(&mut current, &mut next);
        if (best.is_some() || anchored) && current.iter().all(Option::is_none) {
            break;
        }
    }
    best
}

fn find_at(tokens: &[Token], text: &[char], start: usize, greedy: bool) -> Option<usize> {
    search(tokens, text, start, true, greedy).map(|(_, end)| end)
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
    let find = |from: usize| search(&tokens, &text, from, false, true);
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
        // Each match may add the whole replacement: bound the result as it grows.
        super::check_size(&out)?;
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

    /// The backtracking matcher this module had (every end of a match at `start`):
    /// exponential, but plainly right; the NFA must agree with it.
    fn ends(tokens: &[Token], text: &[char], start: usize, out: &mut Vec<usize>) {
        let Some((first, rest)) = tokens.split_first() else {
            out.push(start);
            return;
        };
        match first {
            Token::Lit(c) if text.get(start) == Some(c) => ends(rest, text, start + 1, out),
            Token::Any if text.get(start).is_some_and(|c| *c != '\n') => ends(rest, text, start + 1, out),
            Token::Star => {
                let mut i = start;
                loop {
                    ends(rest, text, i, out);
                    if i >= text.len() || text[i] == '\n' {
                        break;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
    }

    #[test]
    fn nfa_agrees_with_backtracking_on_generated_patterns() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let pattern_parts = ["a", "b", "*", "?", "\\*"];
        let text_parts = ["a", "b", "*", "\n"];
        for _ in 0..3000 {
            let pattern: String = (0..next(6)).map(|_| pattern_parts[next(pattern_parts.len())]).collect();
            let tokens = compile(&pattern).unwrap();
            let text: String = (0..next(9)).map(|_| text_parts[next(text_parts.len())]).collect();
            let chars: Vec<char> = text.chars().collect();
            for greedy in [false, true] {
                let mut all = Vec::new();
                ends(&tokens, &chars, 0, &mut all);
                let want = if greedy { all.iter().max() } else { all.iter().min() }.copied();
                assert_eq!(find_at(&tokens, &chars, 0, greedy), want, "{pattern:?} on {text:?}");
            }
            let leftmost = (0..=chars.len()).find_map(|s| {
                let mut all = Vec::new();
                ends(&tokens, &chars, s, &mut all);
                all.into_iter().max().map(|e| (s, e))
            });
            assert_eq!(search(&tokens, &chars, 0, false, true), leftmost, "{pattern:?} in {text:?}");
        }
    }

    #[test]
    fn hostile_patterns_take_linear_time() {
        let started = std::time::Instant::now();
        let value = "a".repeat(100);
        assert_eq!(trim_prefix("*a*a*a*a*a*a*ab", &value, true).unwrap(), value);
        let long = "x".repeat(100_000);
        assert_eq!(replace("**", &long, "b", false).unwrap(), "b");
        assert_eq!(replace("*y", &long, "b", true).unwrap(), long);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn replaces() {
        assert_eq!(replace("a", "banana", "o", false).unwrap(), "bonana");
        assert_eq!(replace("a", "banana", "o", true).unwrap(), "bonono");
        assert_eq!(replace("n*", "banana", "", false).unwrap(), "ba");
    }
}
