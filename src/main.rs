//! `builder`: a daemonless container image builder.
//!
//! This binary is the glue: the CLI, the store, image formats, the ops that give the
//! solver's IR its meaning, exporters and `builder run`. The mechanisms live in the
//! `frontend`, `solver` and `executor` crates.

mod archive;
mod build;
mod cache;
mod cli;
mod commands;
mod export;
mod ignore;
mod image;
mod layer;
mod ops;
mod progress;
mod registry;
mod run;
mod signals;
mod store;

use clap::Parser;
use std::process::ExitCode;

/// An error that carries its own exit code (2 for usage errors, the container's code
/// for `builder run`).
#[derive(Debug)]
pub struct ExitError {
    pub code: u8,
    pub error: Option<anyhow::Error>,
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
    ExitError { code: 2, error: Some(e.into()) }.into()
}

fn main() -> ExitCode {
    executor::maybe_run_init();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli.debug);
    match commands::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<ExitError>() {
                if let Some(inner) = &exit.error {
                    eprintln!("error: {inner:#}");
                }
                return ExitCode::from(exit.code);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(debug: bool) {
    let filter = if debug { "debug" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BUILDER_LOG").unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .try_init();
}
