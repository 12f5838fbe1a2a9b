//! The second pass: each AST node becomes a typed instruction with checked flags,
//! and the instructions are grouped into build stages. Values are not expanded yet;
//! `convert` expands them against the stage's environment as it walks the stages.

mod bflags;
mod health;
pub mod mount;
mod parse;

use crate::error::Location;
use crate::parser::Heredoc;
use image_spec::HealthConfig;

pub use parse::{parse_dockerfile, parse_node};

/// `key=value` of ENV and LABEL (value still unexpanded).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One name of an ARG instruction, with its default if given.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgDef {
    pub key: String,
    pub value: Option<String>,
}

/// A command line that is either an exec array or text for the shell.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShellCommand {
    pub cmd_line: Vec<String>,
    /// Shell form: run `cmd_line[0]` through SHELL.
    pub prepend_shell: bool,
    pub files: Vec<Heredoc>,
}

/// An inline source file of COPY/ADD given as a heredoc.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceContent {
    pub path: String,
    pub data: String,
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourcesAndDest {
    pub sources: Vec<String>,
    pub contents: Vec<SourceContent>,
    pub dest: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CopyCommand {
    pub files: SourcesAndDest,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AddCommand {
    pub files: SourcesAndDest,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub checksum: Option<String>,
    pub keep_git_dir: Option<bool>,
    pub unpack: Option<bool>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunCommand {
    pub command: ShellCommand,
    /// Raw `--mount` values, parsed once they can be expanded.
    pub mounts: Vec<String>,
    pub network: Option<String>,
    pub security: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Maintainer(String),
    Add(AddCommand),
    Copy(CopyCommand),
    /// The trigger instruction as written.
    Onbuild(String),
    Workdir(String),
    Run(RunCommand),
    Cmd(ShellCommand),
    Entrypoint(ShellCommand),
    Healthcheck(HealthConfig),
    Expose(Vec<String>),
    User(String),
    Volume(Vec<String>),
    StopSignal(String),
    Arg(Vec<ArgDef>),
    Shell(Vec<String>),
}

/// A typed instruction and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub command: Command,
    /// The keyword in upper case (`COPY`).
    pub keyword: String,
    /// The logical line as written (continuations joined).
    pub original: String,
    pub line: usize,
    /// Where the keyword is on `line`.
    pub column: usize,
    /// The flags as written (`--from=build`) and where each one is.
    pub flags: Vec<(String, Location)>,
}

impl Instruction {
    /// Where the keyword is written.
    pub fn location(&self) -> Location {
        Location::new(self.line, self.column)
    }

    /// Where `--name` is written: the last one given (whose value counts) or, with
    /// `value`, the one given that value; the keyword's location when there is none.
    pub fn flag_location(&self, name: &str, value: Option<&str>) -> Location {
        let is_it = |flag: &str| {
            let Some(rest) = flag.strip_prefix("--").and_then(|f| f.strip_prefix(name)) else {
                return false;
            };
            match value {
                Some(v) => rest.strip_prefix('=') == Some(v),
                None => rest.is_empty() || rest.starts_with('='),
            }
        };
        self.flags.iter().rev().find(|(flag, _)| is_it(flag)).map_or_else(|| self.location(), |(_, at)| *at)
    }
}

/// `FROM base [AS name]` and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Lower-cased stage name, if any.
    pub name: Option<String>,
    pub base_name: String,
    pub platform: Option<String>,
    pub instructions: Vec<Instruction>,
    pub original: String,
    pub line: usize,
    /// Where `FROM` is on `line`.
    pub column: usize,
}

impl Stage {
    /// Where `FROM` is written.
    pub fn location(&self) -> Location {
        Location::new(self.line, self.column)
    }
}

/// A Dockerfile's stages and the ARGs before the first FROM.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dockerfile {
    /// ARGs before the first FROM, each with where it is written.
    pub meta_args: Vec<(ArgDef, Location)>,
    pub stages: Vec<Stage>,
    pub escape_token: char,
}
