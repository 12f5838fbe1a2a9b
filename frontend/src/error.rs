//! Where a Dockerfile is wrong and how: [`ParseError`] is a [`Location`] (1-based line
//! and column) and a [`ParseErrorKind`]. Every pass reports through it; the crate's
//! public [`crate::Error`] adds the file name.

use crate::shell::ExpansionError;
use std::fmt;

/// A 1-based position in the Dockerfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn new(line: usize, column: usize) -> Self {
        Location { line, column }
    }

    /// The start of a line, for errors about a line as a whole.
    pub fn line(line: usize) -> Self {
        Location { line, column: 1 }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// ` (did you mean X?)` when there is a suggestion.
fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default()
}

/// What is wrong. Messages keep BuildKit's wording, which users and tests know.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("unknown instruction {instruction:?}{}", did_you_mean(suggestion))]
    UnknownInstruction { instruction: String, suggestion: Option<String> },
    #[error("unknown flag: --{flag}{}", did_you_mean(suggestion))]
    UnknownFlag { flag: String, suggestion: Option<String> },
    #[error("duplicate flag specified: --{flag}")]
    DuplicateFlag { flag: String },
    #[error("missing a value on flag: --{flag}")]
    MissingFlagValue { flag: String },
    #[error("expecting boolean value for flag --{flag}, not: {value}")]
    NotBoolean { flag: String, value: String },
    /// A word in the flag position that is not a `--flag`.
    #[error("arg should start with -- : {arg}")]
    NotAFlag { arg: String },
    #[error("{instruction} requires at least one argument")]
    MissingArgument { instruction: String },
    #[error("{instruction} requires exactly one argument")]
    NotOneArgument { instruction: String },
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    BadJson,
    #[error("unterminated heredoc {name:?}")]
    UnterminatedHeredoc { name: String },
    /// A `$var`, `${var:-x}` or quote that word expansion rejects.
    #[error(transparent)]
    BadExpansion(#[from] ExpansionError),
    /// Anything else, in BuildKit's words.
    #[error("{message}")]
    Invalid { message: String },
}

impl ParseErrorKind {
    pub fn invalid(message: impl Into<String>) -> Self {
        ParseErrorKind::Invalid { message: message.into() }
    }

    /// The flag (as written, `--name[=value]` or the stray word) the error is about.
    pub fn flag(&self) -> Option<String> {
        match self {
            ParseErrorKind::UnknownFlag { flag, .. }
            | ParseErrorKind::DuplicateFlag { flag }
            | ParseErrorKind::MissingFlagValue { flag }
            | ParseErrorKind::NotBoolean { flag, .. } => Some(format!("--{flag}")),
            ParseErrorKind::NotAFlag { arg } => Some(arg.clone()),
            _ => None,
        }
    }
}

/// A Dockerfile error at a position: `7:1: unknown instruction "COPPY"`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct ParseError {
    pub location: Location,
    pub kind: ParseErrorKind,
}

impl ParseError {
    pub fn new(location: Location, kind: ParseErrorKind) -> Self {
        ParseError { location, kind }
    }

    pub fn invalid(location: Location, message: impl Into<String>) -> Self {
        ParseError::new(location, ParseErrorKind::invalid(message))
    }

    pub fn expansion(location: Location, error: ExpansionError) -> Self {
        ParseError::new(location, ParseErrorKind::BadExpansion(error))
    }
}
