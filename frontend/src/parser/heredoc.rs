//! Heredocs (`RUN <<EOF`, `COPY <<-EOT /file`): finding their names on an
//! instruction line. The parser then reads their bodies from the following lines.

use crate::error::ParseErrorKind;
use crate::shell::{EmptyEnv, Lex};

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator word (quotes removed).
    pub name: String,
    /// Body, each line with its newline.
    pub content: String,
    /// The word was unquoted: the body is subject to variable expansion.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the terminator.
    pub chomp: bool,
    pub file_descriptor: u32,
}

/// Parses one word as a heredoc opener (`<<EOF`, `<<-"EOF"`, `3<<EOF`).
pub fn parse_heredoc(src: &str) -> Result<Option<Heredoc>, ParseErrorKind> {
    // ^(\d*)<<(-?)([^<]*)$
    let digits = src.find(|c: char| !c.is_ascii_digit()).unwrap_or(src.len());
    let Some(rest) = src[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let file_descriptor = src[..digits].parse().unwrap_or(0);

    let mut lex = Lex::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &EmptyEnv)?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &EmptyEnv)?;
    if raw.len() != words.len() {
        return Err(ParseErrorKind::invalid(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        )));
    }
    let count = |s: &str| s.matches(['\'', '"']).count();
    let expand = count(&words[0]) == count(&raw[0]);
    Ok(Some(Heredoc { name: words[0].clone(), content: String::new(), expand, chomp, file_descriptor }))
}

/// All heredoc openers on an instruction line, in order.
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ParseErrorKind> {
    let mut lex = Lex::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    let words = lex.process_words(line, &EmptyEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Strips leading tabs from every line (`<<-`).
pub fn chomp_heredoc_content(src: &str) -> String {
    src.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_heredocs() {
        let docs = heredocs_from_line("RUN python3 <<EOF 3<<-'END' x").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].name.as_str(), docs[0].expand, docs[0].chomp), ("EOF", true, false));
        assert_eq!((docs[1].name.as_str(), docs[1].expand, docs[1].chomp), ("END", false, true));
        assert_eq!(docs[1].file_descriptor, 3);
        assert!(heredocs_from_line("RUN echo a<<b").unwrap().is_empty());
    }

    #[test]
    fn chomps_tabs() {
        assert_eq!(chomp_heredoc_content("\t\ta\n\tb\n"), "a\nb\n");
    }
}
