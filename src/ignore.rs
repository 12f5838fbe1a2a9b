//! `.dockerignore` patterns with Docker's semantics (moby/patternmatcher and the
//! dockerignore reader), not gitignore's.
//!
//! A pattern is cleaned like Go's `filepath.Clean`, loses a leading `/`, and is matched
//! against the whole context-relative path and against each of its parent directories,
//! so a pattern naming a directory excludes everything below it. `*`, `?` and `[...]`
//! stay inside one path component, `**` spans any number of them, a `!` pattern
//! re-includes what it matches, and the last matching pattern wins. Like Docker,
//! `[!a]` is a class of `!` and `a`; only `[^a]` negates.

use anyhow::{Result, bail};

/// A compiled set of dockerignore patterns.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    cleaned: String,
    exclusion: bool,
    kind: Kind,
}

/// How a pattern is matched; mirrors patternmatcher's match types, whose shortcuts
/// (`foo**` as a prefix, `**foo` as a suffix) have observable semantics of their own.
#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// Pattern ends in `**` and has no other wildcard: a plain string prefix.
    Prefix(String),
    /// Pattern starts with `**` and has no other wildcard: a plain string suffix.
    Suffix(String),
    Glob(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    /// `?`: one character other than `/`.
    AnyChar,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` followed by more pattern: `(.*/)?`.
    AnyDirs,
    /// `**` at the end: `.*`.
    AnyRest,
    /// `[...]`; `^` negates, `a-z` ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// The patterns of a `.dockerignore` file, normalized the way Docker's reader does:
/// `#` comments and blank lines dropped, whitespace trimmed, each pattern cleaned and
/// stripped of a leading `/` (a `!` prefix is kept).
pub fn parse_dockerignore(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines().filter(|line| !line.starts_with('#')).filter_map(normalize_pattern).collect()
}

/// One dockerignore line as Docker's reader normalizes it, `None` if it is blank.
fn normalize_pattern(line: &str) -> Option<String> {
    let mut pattern = line.trim();
    if pattern.is_empty() {
        return None;
    }
    let invert = pattern.starts_with('!');
    if invert {
        pattern = pattern[1..].trim();
    }
    let mut cleaned = String::new();
    if !pattern.is_empty() {
        cleaned = clean_path(pattern);
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
    }
    Some(if invert { format!("!{cleaned}") } else { cleaned })
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

impl Matcher {
    /// Compiles patterns as they appear in a `.dockerignore` (or as
    /// [`parse_dockerignore`] returns them).
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut matcher = Matcher::default();
        for raw in patterns {
            let Some(normalized) = normalize_pattern(raw) else { continue };
            let (exclusion, body) = match normalized.strip_prefix('!') {
                Some(rest) => (true, rest.to_string()),
                None => (false, normalized),
            };
            if exclusion && body.is_empty() {
                bail!("illegal exclusion pattern: \"!\"");
            }
            let kind = compile(&body).map_err(|e| anyhow::anyhow!("invalid .dockerignore pattern {raw:?}: {e}"))?;
            matcher.exclusions |= exclusion;
            matcher.patterns.push(Pattern { cleaned: body, exclusion, kind });
        }
        Ok(matcher)
    }

    /// Parses the text of a `.dockerignore` file.
    // `allow`, not `expect`: dead in the library, used by its unit tests, so the lint
    // fires on one target and not the other.
    #[allow(dead_code)] // for callers that hold the file's text rather than its lines
    pub fn from_dockerignore(text: &str) -> Result<Self> {
        Matcher::new(&parse_dockerignore(text))
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the context-relative, `/`-separated `path` is excluded: Docker's
    /// `MatchesOrParentMatches`.
    pub fn matches(&self, path: &str) -> bool {
        let path = clean_path(path);
        if path == "." || self.patterns.is_empty() {
            return false;
        }
        // Each parent directory as (byte length, char length) of the path's prefix.
        let chars: Vec<char> = path.chars().collect();
        let parents: Vec<(usize, usize)> =
            path.char_indices().enumerate().filter(|(_, (_, c))| *c == '/').map(|(ci, (bi, _))| (bi, ci)).collect();
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.matches(&path, &chars)
                || parents.iter().any(|&(bytes, count)| pattern.matches(&path[..bytes], &chars[..count]));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Whether an exception pattern could re-include something below the excluded
    /// directory `dir`, so a walker must descend into it rather than prune it.
    pub fn may_include_below(&self, dir: &str) -> bool {
        if !self.exclusions {
            return false;
        }
        let dir = clean_path(dir);
        let dir_parts: Vec<&str> = if dir == "." { Vec::new() } else { dir.split('/').collect() };
        self.patterns.iter().filter(|p| p.exclusion).any(|p| prefix_may_match(&p.cleaned, &dir_parts))
    }

    /// Whether a non-exception pattern could match something below `dir` (for
    /// include patterns, whose non-matching directories are still walked).
    pub fn may_match_below(&self, dir: &str) -> bool {
        let dir = clean_path(dir);
        let dir_parts: Vec<&str> = if dir == "." { Vec::new() } else { dir.split('/').collect() };
        self.patterns.iter().filter(|p| !p.exclusion).any(|p| prefix_may_match(&p.cleaned, &dir_parts))
    }
}

/// Go's `filepath.Match` for one path component: `*`, `?`, `[...]` (`^` negates)
/// and `\` escapes; a malformed pattern matches nothing.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::AnyChar),
            '\\' => {
                let Some(&next) = chars.get(i) else { return false };
                tokens.push(Token::Literal(next));
                i += 1;
            }
            '[' => match parse_class(&chars, i) {
                Ok((token, next)) => {
                    tokens.push(token);
                    i = next;
                }
                Err(_) => return false,
            },
            _ => tokens.push(Token::Literal(ch)),
        }
    }
    let name: Vec<char> = name.chars().collect();
    match_tokens(&tokens, &name)
}

/// Whether paths below the directory `dir_parts` could match `pattern`: each
/// component of the directory must match the pattern's component at that depth,
/// until the pattern runs out or reaches a `**`.
fn prefix_may_match(pattern: &str, dir_parts: &[&str]) -> bool {
    let pattern_parts: Vec<&str> = pattern.split('/').collect();
    for (i, dir_part) in dir_parts.iter().enumerate() {
        let Some(pattern_part) = pattern_parts.get(i) else {
            // The pattern names an ancestor of `dir`; as an exception it re-includes
            // everything below it.
            return true;
        };
        if pattern_part.contains("**") {
            return true;
        }
        match compile(pattern_part) {
            Ok(kind) => {
                let probe = Pattern { cleaned: pattern_part.to_string(), exclusion: false, kind };
                let chars: Vec<char> = dir_part.chars().collect();
                if !probe.matches(dir_part, &chars) {
                    return false;
                }
            }
            Err(_) => return true,
        }
    }
    true
}

impl Pattern {
    /// `chars` is `path` as characters (globs match character-wise).
    fn matches(&self, path: &str, chars: &[char]) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str()) || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Kind::Glob(tokens) => match_tokens(tokens, chars),
        }
    }
}

/// Compiles one cleaned pattern, following patternmatcher's `compile` so the match
/// type (exact, prefix, suffix, glob) comes out the same.
fn compile(pattern: &str) -> Result<Kind> {
    #[derive(PartialEq)]
    enum Type {
        Exact,
        Prefix,
        Suffix,
        Glob,
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut kind = Type::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == Type::Exact {
                        kind = Type::Prefix;
                    } else {
                        tokens.push(Token::AnyRest);
                        kind = Type::Glob;
                    }
                } else {
                    tokens.push(Token::AnyDirs);
                    kind = Type::Glob;
                }
                if first {
                    kind = Type::Suffix;
                }
            }
            '*' => {
                tokens.push(Token::Star);
                kind = Type::Glob;
            }
            '?' => {
                tokens.push(Token::AnyChar);
                kind = Type::Glob;
            }
            '\\' => match chars.get(i) {
                Some(&next) => {
                    tokens.push(Token::Literal(next));
                    i += 1;
                    kind = Type::Glob;
                }
                None => tokens.push(Token::Literal('\\')),
            },
            '[' => {
                let (token, next) = parse_class(&chars, i)?;
                tokens.push(token);
                i = next;
                kind = Type::Glob;
            }
            ']' => {
                tokens.push(Token::Literal(']'));
                kind = Type::Glob;
            }
            _ => tokens.push(Token::Literal(ch)),
        }
        first = false;
    }
    Ok(match kind {
        Type::Exact => Kind::Exact,
        Type::Prefix => Kind::Prefix(pattern[..pattern.len() - 2].to_string()),
        Type::Suffix => Kind::Suffix(pattern[2..].to_string()),
        Type::Glob => Kind::Glob(tokens),
    })
}

/// Parses a class body starting just after `[`; returns the token and the index
/// after the closing `]`.
fn parse_class(chars: &[char], mut i: usize) -> Result<(Token, usize)> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else { bail!("syntax error in pattern: unclosed [") };
        i += 1;
        if c == ']' && !first {
            break;
        }
        first = false;
        let lo = if c == '\\' {
            let Some(&escaped) = chars.get(i) else { bail!("syntax error in pattern: unclosed [") };
            i += 1;
            escaped
        } else {
            c
        };
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                let Some(&escaped) = chars.get(i) else { bail!("syntax error in pattern: unclosed [") };
                i += 1;
                hi = escaped;
            }
            if hi < lo {
                bail!("syntax error in pattern: bad range {lo}-{hi}");
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
    Ok((Token::Class { negated, ranges }, i))
}

/// Runs the pattern as a Thompson NFA over the path: one pass over the characters
/// with a set of live positions, so the time is linear in the path whatever the
/// pattern (a backtracking matcher takes exponential time on repeated `**`/`*`, as
/// BuildKit's compiled regexps do not).
///
/// State `2i` is "at token i"; state `2i + 1` is "inside the `(.*/)?` of token i,
/// having consumed something that must end in `/`".
fn match_tokens(tokens: &[Token], path: &[char]) -> bool {
    let states = 2 * (tokens.len() + 1);
    let mut current = vec![false; states];
    let mut next = vec![false; states];
    add_state(tokens, &mut current, 0);
    for &c in path {
        next.fill(false);
        for (state, _) in current.iter().enumerate().filter(|(_, live)| **live) {
            let i = state / 2;
            let Some(token) = tokens.get(i) else { continue };
            match token {
                Token::Literal(l) if *l == c => add_state(tokens, &mut next, 2 * (i + 1)),
                Token::AnyChar if c != '/' => add_state(tokens, &mut next, 2 * (i + 1)),
                Token::Class { negated, ranges } if ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated => {
                    add_state(tokens, &mut next, 2 * (i + 1));
                }
                Token::Star if c != '/' => add_state(tokens, &mut next, 2 * i),
                Token::AnyDirs => {
                    next[2 * i + 1] = true;
                    if c == '/' {
                        add_state(tokens, &mut next, 2 * (i + 1));
                    }
                }
                Token::AnyRest => add_state(tokens, &mut next, 2 * i),
                _ => {}
            }
        }
        std::mem::swap(&mut current, &mut next);
        if !current.iter().any(|&live| live) {
            return false;
        }
    }
    current[2 * tokens.len()]
}

/// Adds the "at token" state `state` and what it reaches without consuming a
/// character: past a `*`, `(.*/)?` or trailing `.*`, which may all match nothing.
fn add_state(tokens: &[Token], set: &mut [bool], mut state: usize) {
    loop {
        if set[state] {
            return;
        }
        set[state] = true;
        match tokens.get(state / 2) {
            Some(Token::Star | Token::AnyDirs | Token::AnyRest) => state += 2,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str]) -> Matcher {
        Matcher::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[track_caller]
    fn check(patterns: &[&str], yes: &[&str], no: &[&str]) {
        let matcher = m(patterns);
        for path in yes {
            assert!(matcher.matches(path), "{patterns:?} should exclude {path}");
        }
        for path in no {
            assert!(!matcher.matches(path), "{patterns:?} should not exclude {path}");
        }
    }

    /// The recursive matcher this module had: exponential on repeated stars, but
    /// plainly right; the NFA must agree with it.
    fn backtrack(tokens: &[Token], path: &[char]) -> bool {
        let Some((token, rest)) = tokens.split_first() else { return path.is_empty() };
        match token {
            Token::Literal(c) => path.first() == Some(c) && backtrack(rest, &path[1..]),
            Token::AnyChar => path.first().is_some_and(|&c| c != '/') && backtrack(rest, &path[1..]),
            Token::Class { negated, ranges } => path.first().is_some_and(|&c| {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated && backtrack(rest, &path[1..])
            }),
            Token::Star => {
                (0..=path.len()).take_while(|&i| i == 0 || path[i - 1] != '/').any(|i| backtrack(rest, &path[i..]))
            }
            Token::AnyDirs => {
                backtrack(rest, path)
                    || path.iter().enumerate().any(|(i, &c)| c == '/' && backtrack(rest, &path[i + 1..]))
            }
            Token::AnyRest => true,
        }
    }

    #[test]
    fn nfa_agrees_with_backtracking_on_generated_patterns() {
        // A small deterministic generator: patterns and paths over a tiny alphabet,
        // so that stars, `**` and classes meet many near misses.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as usize
        };
        let pattern_parts = ["a", "b", "/", "*", "**", "**/", "?", "[ab]", "[^a]", "\\*"];
        let path_parts = ["a", "b", "/", "*", "c"];
        let mut compared = 0;
        for _ in 0..4000 {
            let pattern: String = (0..1 + next(6)).map(|_| pattern_parts[next(pattern_parts.len() as u64)]).collect();
            let Ok(Kind::Glob(tokens)) = compile(&pattern) else { continue };
            for _ in 0..8 {
                let path: String = (0..next(8)).map(|_| path_parts[next(path_parts.len() as u64)]).collect();
                let chars: Vec<char> = path.chars().collect();
                assert_eq!(match_tokens(&tokens, &chars), backtrack(&tokens, &chars), "{pattern:?} on {path:?}");
                compared += 1;
            }
        }
        assert!(compared > 10_000, "{compared}");
    }

    #[test]
    fn repeated_double_stars_match_in_linear_time() {
        // 40 `**` took minutes with backtracking; the NFA does it at once.
        let pattern = format!("{}x", "**/a".repeat(40));
        let matcher = m(&[&pattern]);
        let path = "a/".repeat(200) + "b";
        let started = std::time::Instant::now();
        assert!(!matcher.matches(&path));
        let star_pattern = format!("{}x", "a*".repeat(40));
        let stars = m(&[&star_pattern]);
        assert!(!stars.matches(&"a".repeat(300)));
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn clean_path_like_go() {
        assert_eq!(clean_path("./a/b/../c/"), "a/c");
        assert_eq!(clean_path("/a//b/./"), "/a/b");
        assert_eq!(clean_path("../a"), "../a");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("a/.."), ".");
        assert_eq!(clean_path(""), ".");
    }

    #[test]
    fn reader_drops_comments_blanks_and_leading_slash() {
        let text =
            "\u{feff}# comment\n\n  *.log  \n/abs/path\n./rel/dir/\n! /keep.log\n!important\n  # not a comment\n";
        assert_eq!(
            parse_dockerignore(text),
            vec!["*.log", "abs/path", "rel/dir", "!keep.log", "!important", "# not a comment"]
        );
    }

    #[test]
    fn exact_and_directory_patterns() {
        check(&["foo"], &["foo", "foo/bar", "foo/bar/baz"], &["foobar", "bar/foo", "fo"]);
        check(&["dir/sub"], &["dir/sub", "dir/sub/x"], &["dir", "dir/subx", "other/dir/sub"]);
        check(&["/abs"], &["abs", "abs/x"], &["x/abs"]);
        check(&["./dot/"], &["dot", "dot/x"], &["x/dot"]);
    }

    #[test]
    fn single_star_stays_in_one_component() {
        check(&["*.go"], &["a.go", "a.go/inner"], &["dir/a.go", "a.goo"]);
        check(&["*/*.go"], &["dir/a.go"], &["a.go", "a/b/c.go"]);
        check(&["a*b"], &["ab", "axxb"], &["a/b"]);
        check(&["*"], &["anything", "a/b"], &[]);
    }

    #[test]
    fn question_mark_and_classes() {
        check(&["?.txt"], &["a.txt"], &["ab.txt", "/.txt"]);
        check(&["file[0-9].txt"], &["file1.txt"], &["filea.txt", "file10.txt"]);
        check(&["file[^0-9].txt"], &["filea.txt"], &["file1.txt"]);
        // Docker compiles `[!a]` to a regexp class, where `!` is a plain member.
        check(&["[!a].txt"], &["!.txt", "a.txt"], &["b.txt"]);
        check(&["[ab]c"], &["ac", "bc"], &["cc"]);
    }

    #[test]
    fn double_star() {
        check(&["**/*.go"], &["a.go", "x/a.go", "x/y/a.go"], &["a.goo", "x/a.go.txt"]);
        check(&["**/foo"], &["foo", "a/foo", "a/b/foo/c"], &["afoo/x"]);
        check(&["a/**/b"], &["a/b", "a/x/b", "a/x/y/b", "a/x/b/c"], &["b", "ax/b"]);
        check(&["a/**"], &["a/b", "a/b/c"], &["a", "ab"]);
        check(&["**"], &["a", "a/b"], &[]);
        check(&["dir/**/*.md"], &["dir/a.md", "dir/x/y/a.md"], &["a.md", "other/a.md"]);
        check(&["**/node_modules"], &["node_modules/x", "a/node_modules", "a/b/node_modules/c"], &["a/node_modulesx"]);
    }

    #[test]
    fn docker_shortcut_quirks() {
        // patternmatcher treats a leading `**` without other wildcards as a suffix test
        // and a trailing one as a prefix test.
        check(&["**foo"], &["foo", "barfoo", "a/barfoo"], &["foobar"]);
        check(&["foo**"], &["foo", "foobar", "foo/x"], &["xfoo"]);
    }

    #[test]
    fn exceptions_and_last_match_wins() {
        check(&["*.md", "!README.md"], &["a.md"], &["README.md", "x.txt"]);
        check(&["*.md", "!README.md", "README*"], &["a.md", "README.md", "README-x"], &[]);
        check(&["*", "!keep"], &["other", "dir/x"], &["keep", "keep/inner"]);
        check(&["dir", "!dir/keep"], &["dir", "dir/other", "dir/other/deep"], &["dir/keep", "dir/keep/deep"]);
        check(&["!x", "x"], &["x"], &[]);
    }

    #[test]
    fn escapes_and_special_chars() {
        check(&["\\*.txt"], &["*.txt"], &["a.txt"]);
        check(&["a.b"], &["a.b"], &["axb"]);
        check(&["(x)+{y}$|"], &["(x)+{y}$|"], &["x"]);
        check(&["a b"], &["a b"], &["ab"]);
    }

    /// patternmatcher's own table (`TestMatches`), through `MatchesOrParentMatches`.
    #[test]
    fn patternmatcher_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true),
        ];
        for &(pattern, path, expected) in cases {
            assert_eq!(m(&[pattern]).matches(path), expected, "pattern {pattern:?} path {path:?}");
        }
        let multi: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (&["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", true),
            (&["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", false),
        ];
        for &(patterns, path, expected) in multi {
            assert_eq!(m(patterns).matches(path), expected, "patterns {patterns:?} path {path:?}");
        }
    }

    #[test]
    fn unicode_paths() {
        check(&["déjà/*.txt"], &["déjà/été.txt", "déjà/x.txt/y"], &["deja/x.txt"]);
        check(&["?é"], &["àé"], &["a/é"]);
    }

    #[test]
    fn root_is_never_excluded() {
        check(&["*", "**"], &["a"], &[".", ""]);
    }

    #[test]
    fn invalid_patterns() {
        assert!(Matcher::new(&["!".to_string()]).is_err());
        assert!(Matcher::new(&["[abc".to_string()]).is_err());
        assert!(Matcher::from_dockerignore("# only comment\n\n").unwrap().is_empty());
    }

    #[test]
    fn descent_into_excluded_dirs_only_when_an_exception_can_match() {
        let matcher = m(&["dir", "!dir/keep/*.txt"]);
        assert!(matcher.may_include_below("dir"));
        assert!(matcher.may_include_below("dir/keep"));
        assert!(!matcher.may_include_below("dir/other"));
        assert!(!matcher.may_include_below("elsewhere"));
        assert!(m(&["dir", "!**/*.txt"]).may_include_below("dir/any"));
        assert!(!m(&["dir"]).may_include_below("dir"));
        assert!(m(&["a/b", "!a"]).may_include_below("a/b"));
    }

    #[test]
    fn from_dockerignore_end_to_end() {
        let matcher = Matcher::from_dockerignore(
            "# build output\ntarget/\n*.log\n!important.log\n**/.git\n/secret.env\nnode_modules\n!node_modules/keep\n",
        )
        .unwrap();
        for excluded in ["target", "target/debug/x", "a.log", ".git/HEAD", "sub/.git", "secret.env", "node_modules/x"] {
            assert!(matcher.matches(excluded), "{excluded}");
        }
        for kept in ["important.log", "src/main.rs", "sub/secret.env", "node_modules/keep", "sub/a.log"] {
            assert!(!matcher.matches(kept), "{kept}");
        }
    }
}
