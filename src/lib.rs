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
mod host;
mod ignore;
mod layer;
mod oci_layout;
mod ops;
mod platforms;
mod progress;
mod rootless;
mod run;
mod sandbox;
mod signals;
mod ssh;
mod step_flags;
mod transfer;
mod units;
mod userns;

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
    let mut cli = match cli::Cli::try_parse() {
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
    // As an ordinary user, the store is worked on from a user namespace of builder's own.
    if let Err(e) = rootless::enter(&mut cli) {
        let hint = hint::for_error(&e);
        progress::print_error(&format!("{e:#}"), hint.as_deref());
        let is_run = matches!(cli.command, cli::Command::Run(_));
        return ExitCode::from(if is_run { run::FAILED } else { 1 });
    }
    // A build's attempt outside builder's user namespace shows nothing unless it
    // succeeds: from here on (opening the store, waiting for its lock) log lines and
    // messages are recorded (`progress::Recording`).
    let recorded = userns::attempting().then(|| progress::route_logs(progress::Recording::attempt()));
    // The container's exit code is `run`'s answer, so its own errors must not be
    // mistaken for one: they all end with 125, as `docker run`'s do.
    let is_run = matches!(cli.command, cli::Command::Run(_));
    let root = cli.root.clone().unwrap_or_else(store::Store::default_root);
    let result = commands::dispatch(cli);
    drop(recorded);
    match result {
        Ok(code) => ExitCode::from(code),
        // A build outside builder's user namespace that needs it (or failed for any
        // reason): builder starts over inside, which shows and reports everything.
        Err(e) if userns::falls_back(&e) => {
            let e = userns::reexec(&e);
            progress::print_error(&error_text(&e), None);
            ExitCode::from(1)
        }
        Err(e) => {
            let (code, error, hint) = match e.downcast::<ExitError>() {
                Ok(exit) => (exit.code, exit.error, exit.hint),
                Err(e) if is_usage(&e) => (2, Some(e), None),
                Err(e) => (1, Some(e), None),
            };
            if let Some(error) = error {
                let hint = hint.or_else(|| hint::for_error(&error)).or_else(|| hint::for_full_disk(&root));
                progress::print_error(&error_text(&error), hint.as_deref());
            }
            ExitCode::from(if is_run { run::FAILED } else { code })
        }
    }
}

/// Each cause of an error is printed cut to this many bytes: one may echo a hostile
/// name (a path of a megabyte from a layer or a Dockerfile).
const MAX_CAUSE: usize = 1024;

/// The error and its causes, `: `-separated as `{:#}` prints them, each cut to
/// [`MAX_CAUSE`] bytes.
fn error_text(error: &anyhow::Error) -> String {
    let causes: Vec<String> = error.chain().map(|c| image_spec::cut(&c.to_string(), MAX_CAUSE).into_owned()).collect();
    causes.join(": ")
}

/// The user's mistakes that can only be found while a command runs (a value read
/// from the environment, a name that is checked against what a build made): typed
/// where they are found, usage errors (exit code 2) here.
fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<archive::InvalidEpoch>() || cause.is::<export::InvalidName>() || cause.is::<units::InvalidSize>()
    })
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
        .with_writer(progress::LogWriters)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::{MAX_CAUSE, asks_for_run, error_text, is_usage};

    #[test]
    fn printed_errors_cut_each_long_cause() {
        let name = "a".repeat(1_000_000);
        let error = anyhow::anyhow!("File name too long").context(format!("stat /ctx/{name}")).context("[1/1] COPY");
        let text = error_text(&error);
        assert!(text.len() < 2 * MAX_CAUSE, "{} bytes", text.len());
        assert!(
            text.starts_with("[1/1] COPY: stat /ctx/aaa") && text.ends_with("more bytes): File name too long"),
            "{text}"
        );
        let short = anyhow::anyhow!("b").context("a");
        assert_eq!(error_text(&short), format!("{short:#}"));
    }

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

    #[test]
    fn mistakes_found_while_running_are_usage_errors() {
        let epoch = crate::archive::parse_epoch("yesterday").unwrap_err();
        assert!(is_usage(&anyhow::Error::from(epoch).context("importing x.tar")));
        let name = crate::export::InvalidName { name: "A:b".into(), reason: "uppercase".into() };
        assert!(is_usage(&name.into()));
        let size = crate::units::parse_size("3pb").unwrap_err();
        assert!(is_usage(&anyhow::Error::from(size).context("BUILDER_GC_KEEP_STORAGE")));
        assert!(!is_usage(&anyhow::anyhow!("pulling busybox: connection refused")));
    }
}
