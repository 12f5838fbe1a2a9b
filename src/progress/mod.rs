//! The progress display: turns the solver's [`Event`]s into what the user sees.
//!
//! [`new`] picks a renderer for `--progress`:
//! - `plain`: Docker/buildx-style numbered lines on stderr (see [`plain`]);
//! - `tty`: live indicatif display, one line per running step with its output tail
//!   (`plain` when stderr is not a terminal, where it could not be drawn);
//! - `rawjson`: one JSON object per event per line on stderr (see [`rawjson`]);
//! - `auto`: `tty` when stderr is a terminal, else `plain`.
//!
//! Steps are numbered `#1`, `#2`… in the order they start: the graph's vertices and
//! the work around the solve ([`Task`]: resolving and pulling base images, cache
//! imports and exports, outputs), so that everything a build writes on stderr is one
//! of its steps. A step's parts (`Progress` events: a blob's bytes, `naming to …`) are
//! tracked in `status.rs`. Miss explanations are shown only when `explain` is set; a
//! hit from an imported cache always names it (`CACHED (from type=local,src=/c)`).
//! When a step fails, its last output lines are shown with the error. The events and
//! the rawjson schema are described in docs/progress.md.

mod logs;
mod plain;
mod rawjson;
mod recording;
mod status;
mod steps;
mod task;
mod tty;

pub use logs::{LogWriters, message, print_error, route_logs, warnings_logged};
pub use recording::Recording;
pub use task::{Task, print_transfer, pull};

use solver::{Event, ProgressSink};
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Instant;

/// How many output lines of a failed step are shown with its error.
const ERROR_TAIL: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Tty,
    Plain,
    RawJson,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, UnknownMode> {
        match s {
            "auto" => Ok(Mode::Auto),
            "tty" => Ok(Mode::Tty),
            "plain" => Ok(Mode::Plain),
            "rawjson" => Ok(Mode::RawJson),
            other => Err(UnknownMode { value: other.to_string() }),
        }
    }
}

/// A `--progress` value that is none of the modes.
#[derive(Debug, thiserror::Error)]
#[error("unknown --progress value {value:?} (want auto, tty, plain or rawjson)")]
pub struct UnknownMode {
    pub value: String,
}

/// A progress display for one build.
pub trait Progress: ProgressSink {
    /// The display as the sink the solver reports to.
    fn sink(&self) -> &dyn ProgressSink;
    /// A line about no step in particular (a log line of the program itself).
    fn message(&self, line: &str);
    /// Ends the display: clears live lines, shows failed steps' output and a summary.
    fn finish(&self, ok: bool);
    /// An event that came at `at` (a [`Recording`] replayed: times stay as they were).
    fn event_at(&self, event: Event, at: Instant);
    /// A [`Progress::message`] written at `at`.
    fn message_at(&self, line: &str, at: Instant);
}

pub fn new(mode: Mode, explain: bool) -> Arc<dyn Progress> {
    new_since(mode, explain, Instant::now())
}

/// A display whose time 0 is `start` (the start of the [`Recording`] it replays).
pub fn new_since(mode: Mode, explain: bool, start: Instant) -> Arc<dyn Progress> {
    // A live display on something that is not a terminal would show nothing.
    let mode = match mode {
        Mode::Auto | Mode::Tty if std::io::stderr().is_terminal() => Mode::Tty,
        Mode::Auto | Mode::Tty => Mode::Plain,
        other => other,
    };
    match mode {
        Mode::Tty => Arc::new(tty::Tty::new(explain, start)),
        Mode::RawJson => {
            let display = rawjson::RawJson::new(std::io::stderr(), explain, start);
            logs::errors_as_json(display.start());
            Arc::new(display)
        }
        _ => Arc::new(plain::Plain::new(std::io::stderr(), explain)),
    }
}

/// No display at all (`build -q`): errors still reach stderr through the caller.
pub fn quiet() -> Arc<dyn Progress> {
    Arc::new(plain::Plain::new(std::io::sink(), false))
}

/// The last word of a cached step: `CACHED`, or `CACHED (from SOURCE)` when the hit
/// came from an imported cache rather than the local one.
fn cached_status(source: Option<&str>) -> String {
    match source {
        Some(source) => format!("CACHED (from {source})"),
        None => "CACHED".to_string(),
    }
}

/// Whether an event is shown at all.
fn shown(event: &Event, explain: bool) -> bool {
    explain || !matches!(event, Event::Explain { .. })
}
