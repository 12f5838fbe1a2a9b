//! `builder`: a daemonless container image builder.
//!
//! This library is the glue: the CLI, the ops that give the solver's IR its meaning
//! (`ops`), layers (`layer`), the cache (`cache`), exporters (`export`, `archive`),
//! transfers between the store and registries (`transfer`), the progress display and
//! `builder run`. The mechanisms live in the `frontend`, `solver`, `executor`,
//! `store`, `registry` and `image-spec` crates; the binary (`main.rs`) only calls
//! [`main`], which alone turns errors into exit codes.

mod archive;
mod autogc;
mod build;
mod build_flags;
mod cache;
mod check;
mod cli;
mod commands;
mod emulator;
mod export;
mod hint;
mod ignore;
mod layer;
mod oci_layout;
mod ops;
mod platforms;
mod progress;
mod run;
mod sandbox;
mod signals;
mod ssh;
mod transfer;

use clap::Parser;
use std::process::ExitCode;

/// An error that carries its own exit code (2 for usage errors, 128+N after signal N).
/// `builder run` ends every error of its own with [`run::FAILED`] instead.
#[derive(Debug)]
pub struct ExitError {
    pub code: u8,
    pub error: Option<anyhow::Error>,
    /// What to do about it, when the error's own chain cannot say ([`hint`]).
    pub hint: Option<String>,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            Some(e) => write!(f, "{e:#}"),
            None => write!(f, "exit code {}", self.code),
        }
    }
}

impl std::error::Error for ExitError {}

/// A usage error (bad flags, bad Dockerfile): exit code 2.
pub fn usage_error(e: impl Into<anyhow::Error>) -> anyhow::Error {
    ExitError { code: 2, error: Some(e.into()), hint: None }.into()
}

/// The whole `builder` command: parses the command line, runs it, prints the error
/// (with its hint) and returns the exit code.
pub fn main() -> ExitCode {
    executor::maybe_run_init();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = match e.use_stderr() {
                false => 0,
                true if asks_for_run(std::env::args_os()) => run::FAILED,
                true => 2,
            };
            return ExitCode::from(code);
        }
    };
    init_logging(cli.debug);
    // The container's exit code is `run`'s answer, so its own errors must not be
    // mistaken for one: they all end with 125, as `docker run`'s do.
    let is_run = matches!(cli.command, cli::Command::Run(_));
    let root = cli.root.clone().unwrap_or_else(store::Store::default_root);
    match commands::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let (code, error, hint) = match e.downcast::<ExitError>() {
                Ok(exit) => (exit.code, exit.error, exit.hint),
                Err(e) => (1, Some(e), None),
            };
            if let Some(error) = error {
                let hint = hint.or_else(|| hint::for_error(&error)).or_else(|| hint::for_full_disk(&root));
                progress::print_error(&format!("{error:#}"), hint.as_deref());
            }
            ExitCode::from(if is_run { run::FAILED } else { code })
        }
    }
}

/// Whether a command line that failed to parse asks for `builder run` (read again,
/// leniently), whose usage errors exit with [`run::FAILED`] as `docker run`'s do.
fn asks_for_run(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    use clap::CommandFactory as _;
    cli::Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .is_ok_and(|matches| matches.subcommand_name() == Some("run"))
}

fn init_logging(debug: bool) {
    let filter = if debug { "debug" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BUILDER_LOG").unwrap_or_else(|_| filter.into()))
        // While a build's display is up, log lines go through it.
        .with_writer(progress::LogWriter::default)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::asks_for_run;

    fn asks(line: &str) -> bool {
        asks_for_run(line.split_whitespace().map(Into::into))
    }

    #[test]
    fn run_usage_errors_are_told_apart() {
        assert!(asks("builder run --bogus busybox true"));
        assert!(asks("builder --root /tmp/r run"));
        assert!(asks("builder --debug run -v"));
        assert!(asks("builder run --network"));
        assert!(!asks("builder images --bogus"));
        assert!(!asks("builder build --bogus ."));
        assert!(!asks("builder --bogus"));
        assert!(!asks("builder runn busybox"));
    }
}
