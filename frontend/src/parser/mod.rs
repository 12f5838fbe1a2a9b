//! Dockerfile text to an AST, as BuildKit's `parser` package: parser directives,
//! line continuations, comments, heredocs, `--flags`, and per-instruction argument
//! splitting (JSON or shell form, key/value pairs). Nothing is expanded here.
//! [`Node::dump`] prints BuildKit's AST dump format, which the conformance vectors pin.

mod directives;
mod heredoc;
mod line_parsers;
mod quote;
mod split;

pub use crate::error::{Location, ParseError, ParseErrorKind};
pub use directives::Directives;
pub use heredoc::{Heredoc, chomp_heredoc_content, parse_heredoc};
pub use line_parsers::parse_words;
pub use quote::{go_quote, go_quote_list};
pub use split::split_whitespace_n;

/// One instruction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// The keyword as written (`copy`, `COPY`).
    pub value: String,
    pub args: Vec<String>,
    /// The instruction an `ONBUILD` wraps.
    pub sub: Option<Box<Node>>,
    pub flags: Vec<String>,
    /// The arguments were given as a JSON array.
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    /// The logical line, continuations joined.
    pub original: String,
    /// 1-based, inclusive.
    pub start_line: usize,
    pub end_line: usize,
    /// Comment lines right above the instruction.
    pub comments: Vec<String>,
    /// The last line of an instruction that has an empty continuation line in it
    /// (where BuildKit reports `NoEmptyContinuation`).
    pub empty_continuation: Option<usize>,
    /// Where each physical line's part of `original` starts in the file.
    pub(crate) segments: Vec<Segment>,
}

/// A physical line's part of a logical line: from byte `offset` of
/// [`Node::original`] on, the text was written at `location`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Segment {
    offset: usize,
    location: Location,
}

impl Node {
    /// BuildKit's `Node.Dump()` for one instruction, without the surrounding parens.
    pub fn dump(&self) -> String {
        let mut s = self.value.to_lowercase();
        if !self.flags.is_empty() {
            s.push(' ');
            s.push_str(&go_quote_list(&self.flags));
        }
        if let Some(sub) = &self.sub {
            s.push_str(&format!(" ({})", sub.dump()));
        }
        for arg in &self.args {
            s.push(' ');
            s.push_str(&go_quote(arg));
        }
        s.trim().to_string()
    }

    /// The keyword in lower case.
    pub fn keyword(&self) -> String {
        self.value.to_ascii_lowercase()
    }

    /// Where the keyword is written.
    pub fn location(&self) -> Location {
        self.location_at(0)
    }

    /// Where byte `offset` of [`Node::original`] is written.
    pub fn location_at(&self, offset: usize) -> Location {
        match self.segments.iter().rev().find(|s| s.offset <= offset) {
            Some(s) => {
                let column = s.location.column + self.original.get(s.offset..offset).map_or(0, |t| t.chars().count());
                Location::new(s.location.line, column)
            }
            None => Location::line(self.start_line.max(1)),
        }
    }

    /// Where a flag (`--from=x`, or the stray word given as one) is written: the
    /// first occurrence after the keyword, where flags are.
    pub fn flag_location(&self, flag: &str) -> Location {
        let after = self.value.len();
        match self.original.get(after..).and_then(|rest| rest.find(flag)) {
            Some(i) => self.location_at(after + i),
            None => self.location(),
        }
    }

    fn can_contain_heredoc(&self) -> bool {
        matches!(self.keyword().as_str(), "add" | "copy" | "run")
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct Ast {
    pub children: Vec<Node>,
    pub directives: Directives,
    /// Non-fatal findings, e.g. empty continuation lines.
    pub warnings: Vec<String>,
}

impl Ast {
    /// The whole AST in BuildKit's dump format, one `(...)` line per instruction.
    pub fn dump(&self) -> String {
        self.children.iter().map(|c| format!("({})\n", c.dump())).collect()
    }
}

fn trim_newline(s: &str) -> &str {
    s.strip_suffix("\r\n").or_else(|| s.strip_suffix('\n')).unwrap_or(s)
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

struct Continuation {
    escape: char,
}

impl Continuation {
    /// Strips a trailing escape token (plus spaces/tabs); `true` when the line ends here.
    fn trim<'a>(&self, line: &'a str) -> (&'a str, bool) {
        let trimmed = line.trim_end_matches([' ', '\t']);
        // An escaped escape token (`\\` at the end) is not a continuation.
        match trimmed.strip_suffix(self.escape) {
            Some(rest) if !rest.ends_with(self.escape) => (rest, false),
            _ => (line, true),
        }
    }
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Ast, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let mut directives = Directives::default();
    let mut children = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut current = 0usize;

    while let Some(raw) = lines.next() {
        if is_comment(raw) {
            let comment = trim_newline(raw).trim_start()[1..].trim().to_string();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment);
            }
        }
        let untrimmed = trim_newline(raw);
        let token = untrimmed.trim_start();
        directives.possible_directive(token).map_err(|e| ParseError::new(Location::line(current + 1), e))?;
        let token = if is_comment(token) { "" } else { token };
        current += 1;
        let start = current;
        let at = Location::new(start, untrimmed.chars().count() - token.chars().count() + 1);
        let mut segments = vec![Segment { offset: 0, location: at }];
        let cont = Continuation { escape: directives.escape_token };
        let (first, mut end_of_line) = cont.trim(token);
        let mut line = first.to_string();
        if end_of_line && line.is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while !end_of_line {
            let Some(raw) = lines.next() else { break };
            let token = trim_newline(raw);
            directives.possible_directive(token).map_err(|e| ParseError::new(Location::line(current + 1), e))?;
            current += 1;
            if is_comment(raw) {
                continue;
            }
            if token.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, eol) = cont.trim(token);
            segments.push(Segment { offset: line.len(), location: Location::line(current) });
            line.push_str(part);
            end_of_line = eol;
        }
        directives.finish();
        if empty_continuation {
            warnings.push(format!("empty continuation line found in: {line}"));
        }
        let mut child =
            line_parsers::node_from_line(&line, directives.escape_token).map_err(|e| ParseError::new(at, e))?;
        child.empty_continuation = empty_continuation.then_some(current);
        if child.can_contain_heredoc() && line.contains("<<") {
            let docs = heredoc::heredocs_from_line(&line).map_err(|e| ParseError::new(at, e))?;
            for mut doc in docs {
                let mut terminated = false;
                for raw in lines.by_ref() {
                    current += 1;
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(ParseError::new(at, ParseErrorKind::UnterminatedHeredoc { name: doc.name }));
                }
                child.heredocs.push(doc);
            }
        }
        child.start_line = start;
        child.end_line = current;
        child.comments = std::mem::take(&mut comments);
        child.segments = segments;
        children.push(child);
    }
    if children.is_empty() {
        return Err(ParseError::invalid(Location::line(current.max(1)), "file with no instructions"));
    }
    Ok(Ast { children, directives, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_dumps() {
        let ast = parse("FROM a AS b\nRUN --mount=type=cache,target=/x \\\n  make\nCMD [\"x\"]\n").unwrap();
        assert_eq!(
            ast.dump(),
            "(from \"a\" \"AS\" \"b\")\n(run [\"--mount=type=cache,target=/x\"] \"make\")\n(cmd \"x\")\n"
        );
        assert_eq!((ast.children[1].start_line, ast.children[1].end_line), (2, 3));
        assert!(ast.children[2].json);
    }

    #[test]
    fn reads_heredocs() {
        let ast = parse("FROM a\nRUN <<EOF\necho hi\nEOF\nCOPY <<-X /f\n\tdata\n\tX\n").unwrap();
        assert_eq!(ast.children[1].heredocs[0].content, "echo hi\n");
        assert_eq!(ast.children[2].heredocs[0].content, "\tdata\n");
        assert_eq!(ast.children[2].end_line, 7);
        let e = parse("FROM a\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(e.location, Location::new(2, 1));
        assert_eq!(e.to_string(), "2:1: unterminated heredoc \"EOF\"");
    }

    #[test]
    fn nodes_know_where_their_words_are() {
        let ast = parse("FROM a\n  COPY --chmod=755 \\\n    --chown=1 x y\n").unwrap();
        let copy = &ast.children[1];
        assert_eq!(copy.location(), Location::new(2, 3));
        assert_eq!(copy.flag_location("--chmod=755"), Location::new(2, 8));
        assert_eq!(copy.flag_location("--chown=1"), Location::new(3, 5));
    }

    #[test]
    fn rejects_empty() {
        assert!(parse("").is_err());
        assert!(parse("# only\n").is_err());
    }
}
