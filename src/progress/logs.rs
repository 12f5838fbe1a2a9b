//! Log lines (`tracing`: warnings, `--debug`) written while a build's display is up
//! go through it, so that nothing else reaches stderr: `plain` and `tty` show them as
//! lines of their own, `rawjson` as `message` objects. The error `main` prints last
//! is JSON too after a rawjson display ([`print_error`]). Warnings and errors are
//! counted ([`warnings_logged`]): a build outside builder's user namespace that logged
//! one is run again inside (`crate::userns`), where it may not happen.

use super::Progress;
use serde_json::json;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// When the rawjson display of this process started, if it has one.
static JSON_SINCE: OnceLock<Instant> = OnceLock::new();

/// Errors are printed as JSON from now on, with times since `start`.
pub(super) fn errors_as_json(start: Instant) {
    let _ = JSON_SINCE.set(start);
}

/// Prints the error that ends the command, and its hint: `error: …` and `hint: …`
/// lines, or after a rawjson display one `failed` object.
pub fn print_error(error: &str, hint: Option<&str>) {
    let Some(start) = JSON_SINCE.get() else {
        eprintln!("error: {error}");
        if let Some(hint) = hint {
            eprintln!("hint: {hint}");
        }
        return;
    };
    let time = (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let mut object = json!({ "time": time, "event": "failed", "message": error });
    if let Some(hint) = hint {
        object["hint"] = json!(hint);
    }
    let _ = writeln!(std::io::stderr(), "{object}");
}

/// The display log lines go to; stderr itself when there is none.
static DISPLAY: Mutex<Option<Arc<dyn Progress>>> = Mutex::new(None);

/// Sends log lines to `display` until dropped.
pub fn route_logs(display: Arc<dyn Progress>) -> Routed {
    *DISPLAY.lock().unwrap_or_else(|e| e.into_inner()) = Some(display);
    Routed(())
}

pub struct Routed(());

impl Drop for Routed {
    fn drop(&mut self) {
        *DISPLAY.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A line about no step in particular (a warning said once per process): through the
/// display while a build's is up, else on stderr.
pub fn message(line: &str) {
    let display = DISPLAY.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match display {
        Some(display) => display.message(line),
        None => eprintln!("{line}"),
    }
}

/// How many log events at level warn or error this process wrote so far.
static WARNINGS: AtomicUsize = AtomicUsize::new(0);

/// How many warnings and errors were logged so far (not a step's warnings: those are
/// progress events).
pub fn warnings_logged() -> usize {
    WARNINGS.load(Ordering::Relaxed)
}

/// The writers `tracing` writes log events into ([`LogWriter`]), told each event's level.
pub struct LogWriters;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriters {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter::default()
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LogWriter {
        // Levels order by verbosity: ERROR < WARN < INFO.
        LogWriter { text: Vec::new(), warning: *meta.level() <= tracing::Level::WARN }
    }
}

/// What `tracing` writes one log event into; the event goes on when it is dropped.
#[derive(Default)]
pub struct LogWriter {
    text: Vec<u8>,
    warning: bool,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.warning && !self.text.is_empty() {
            WARNINGS.fetch_add(1, Ordering::Relaxed);
        }
        let display = DISPLAY.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match display {
            Some(display) => {
                for line in String::from_utf8_lossy(&self.text).lines().filter(|l| !l.is_empty()) {
                    display.message(line);
                }
            }
            None => {
                let _ = std::io::stderr().write_all(&self.text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_and_errors_are_counted_and_other_levels_not() {
        // A subscriber of this thread alone: other tests log nothing through it.
        let subscriber =
            tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(LogWriters).finish();
        tracing::subscriber::with_default(subscriber, || {
            let before = warnings_logged();
            tracing::debug!("user namespace: not needed");
            tracing::info!("info");
            assert_eq!(warnings_logged(), before);
            tracing::warn!("removing stale /s/tmp/x: permission denied");
            assert_eq!(warnings_logged(), before + 1);
            tracing::error!("an error");
            assert_eq!(warnings_logged(), before + 2);
        });
    }
}
