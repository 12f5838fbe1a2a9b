//! `--progress=tty`: a live display on stderr. Each running step has a line with a
//! spinner and a timer, followed by the last few lines of its output; a step that
//! ends leaves one line (`CACHED`, `CACHED (from type=local,src=/c)` for a hit from an
//! imported cache, `DONE 1.2s`, `ERROR: …` with its last output lines, `CANCELED`)
//! above the live ones. Under a running step, the parts of its work that have not
//! ended are shown as BuildKit does (`=> sha256:3ed2… 0.52MB / 1.10MB 0.2s`), above
//! its output. A summary line closes the build.
//!
//! Every line is cut to the terminal's width ([`cut`]); plain and rawjson output
//! keep the whole text.

use super::steps::{Line, Steps};
use super::{ERROR_TAIL, Progress, cached_status, shown};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use solver::progress::ProgressVertex;
use solver::{Event, ProgressSink};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Output lines shown under a running step.
const LIVE_TAIL: usize = 5;

/// Unfinished parts of its work shown under a running step.
const LIVE_PARTS: usize = 5;

pub struct Tty {
    multi: MultiProgress,
    explain: bool,
    start: Instant,
    /// The terminal's width now (it may change while the build runs).
    width: Box<dyn Fn() -> usize + Send + Sync>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    steps: Steps,
    live: HashMap<ProgressVertex, Live>,
}

/// The bars of a running step: its own line and the lines under it (parts of its
/// work, then its output tail).
struct Live {
    bar: ProgressBar,
    details: Vec<ProgressBar>,
}

impl Tty {
    /// A display whose summary counts from `start`.
    pub fn new(explain: bool, start: Instant) -> Self {
        let width = || console::Term::stderr().size().1 as usize;
        Self::with_target(ProgressDrawTarget::stderr(), explain, Box::new(width), start)
    }

    fn with_target(
        target: ProgressDrawTarget,
        explain: bool,
        width: Box<dyn Fn() -> usize + Send + Sync>,
        start: Instant,
    ) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        Tty { multi, explain, start, width, state: Mutex::new(State::default()) }
    }

    /// Prints `text` above the live lines, each of its lines cut to the width.
    fn println(&self, text: &str) {
        let width = (self.width)();
        let lines: Vec<String> = text.lines().map(|line| cut(line, width)).collect();
        let _ = self.multi.println(lines.join("\n"));
    }

    fn step_style() -> ProgressStyle {
        let secs = |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
        };
        ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg} {secs}")
            .expect("valid template")
            .with_key("secs", secs)
    }

    fn tail_style() -> ProgressStyle {
        ProgressStyle::with_template("    {wide_msg:.dim}").expect("valid template")
    }

    fn render(&self, state: &mut State, event: &Event, now: Instant) {
        let vertex = event.vertex();
        match event {
            Event::Started { name, .. } => {
                let n = state.steps.started(vertex, name, now).number;
                let bar = ProgressBar::new_spinner()
                    .with_style(Self::step_style())
                    .with_prefix(format!("#{n}"))
                    .with_message(name.clone());
                let bar = self.multi.add(bar);
                bar.enable_steady_tick(Duration::from_millis(100));
                state.live.insert(vertex, Live { bar, details: Vec::new() });
            }
            Event::Log { stream, data, .. } => {
                if !state.steps.log(vertex, *stream, data, now).is_empty() {
                    self.show_details(state, vertex, now);
                }
            }
            Event::Progress { id, current, total, completed, .. } => {
                state.steps.progress(vertex, id, (*current, *total), *completed, now);
                self.show_details(state, vertex, now);
            }
            Event::Explain { reasons, .. } => {
                let n = state.steps.get(vertex, now).number;
                for reason in reasons {
                    self.println(&format!("#{n} MISS: {reason}"));
                }
            }
            Event::Warning { message, .. } => {
                let n = state.steps.get(vertex, now).number;
                self.println(&format!("#{n} WARN: {message}"));
            }
            Event::Cached { source, .. } => {
                state.steps.cached += 1;
                self.end(state, vertex, cached_status(source.as_deref()), &[], now);
            }
            Event::Done { duration, .. } => {
                self.end(state, vertex, format!("DONE {:.1}s", duration.as_secs_f64()), &[], now)
            }
            Event::Error { message, .. } => {
                state.steps.failed += 1;
                state.steps.flush(vertex, now);
                let step = state.steps.get(vertex, now);
                let skip = step.tail.len().saturating_sub(ERROR_TAIL);
                let tail: Vec<Line> = step.tail.iter().skip(skip).cloned().collect();
                self.end(state, vertex, format!("ERROR: {message}"), &tail, now);
            }
            Event::Cancelled { .. } => self.end(state, vertex, "CANCELED".into(), &[], now),
        }
    }

    /// Shows the unfinished parts of a running step's work and its last output lines.
    fn show_details(&self, state: &mut State, vertex: ProgressVertex, now: Instant) {
        let step = state.steps.get(vertex, now);
        let open: Vec<_> = step.statuses.iter().filter(|s| s.completed.is_none()).collect();
        let parts = open.iter().skip(open.len().saturating_sub(LIVE_PARTS)).map(|s| format!("=> {}", s.line(now)));
        let skip = step.tail.len().saturating_sub(LIVE_TAIL);
        let lines: Vec<String> = parts.chain(step.tail.iter().skip(skip).map(|l| l.text.clone())).collect();
        let Some(live) = state.live.get_mut(&vertex) else { return };
        while live.details.len() < lines.len() {
            let after = live.details.last().unwrap_or(&live.bar);
            let bar = self.multi.insert_after(after, ProgressBar::new_spinner().with_style(Self::tail_style()));
            live.details.push(bar);
        }
        for bar in live.details.drain(lines.len()..) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        for (bar, line) in live.details.iter().zip(lines) {
            bar.set_message(line);
        }
    }

    /// Replaces the step's live lines by its final line (and, on error, its output).
    fn end(&self, state: &mut State, vertex: ProgressVertex, status: String, output: &[Line], now: Instant) {
        state.steps.flush(vertex, now);
        if let Some(live) = state.live.remove(&vertex) {
            for bar in live.details.iter().chain([&live.bar]) {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
        }
        let step = state.steps.get(vertex, now);
        let mut text = format!("#{} {} {status}", step.number, step.name);
        for line in output {
            let _ = write!(text, "\n    {:.3} {}", line.at, line.text);
        }
        self.println(&text);
    }
}

impl ProgressSink for Tty {
    fn event(&self, event: Event) {
        self.event_at(event, Instant::now());
    }
}

impl Progress for Tty {
    fn sink(&self) -> &dyn ProgressSink {
        self
    }

    fn message(&self, line: &str) {
        self.println(line);
    }

    fn finish(&self, ok: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (_, live) in state.live.drain() {
            for bar in live.details.iter().chain([&live.bar]) {
                bar.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
        let steps = &state.steps;
        let secs = self.start.elapsed().as_secs_f64();
        let counts = format!("{} steps, {} cached", steps.started, steps.cached);
        let summary = if ok {
            format!("built in {secs:.1}s: {counts}")
        } else {
            format!("build failed after {secs:.1}s: {counts}, {} failed", steps.failed)
        };
        eprintln!("{}", cut(&summary, (self.width)()));
    }

    fn event_at(&self, event: Event, at: Instant) {
        if shown(&event, self.explain) {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.render(&mut state, &event, at);
        }
    }

    fn message_at(&self, line: &str, _at: Instant) {
        self.println(line);
    }
}

/// `line` cut to `width` columns (escape sequences take none, wide characters two).
pub fn cut(line: &str, width: usize) -> String {
    console::truncate_str(line, width, "").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::TermLike;
    use solver::VertexId;
    use solver::progress::{ExternalId, Stream};
    use std::sync::Arc;

    /// A terminal that keeps what is written to it, one entry per write, without the
    /// padding that fills the line.
    #[derive(Debug, Clone)]
    struct Recording(Arc<Mutex<Vec<String>>>, u16);

    impl Default for Recording {
        fn default() -> Self {
            Recording(Arc::default(), 200)
        }
    }

    impl Recording {
        fn tty(&self, explain: bool) -> Tty {
            let width = self.1 as usize;
            Tty::with_target(
                ProgressDrawTarget::term_like(Box::new(self.clone())),
                explain,
                Box::new(move || width),
                Instant::now(),
            )
        }
    }

    impl TermLike for Recording {
        fn width(&self) -> u16 {
            self.1
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push(s.trim_end().to_string());
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn hits_from_an_imported_cache_name_it_with_or_without_explain() {
        for explain in [false, true] {
            let term = Recording::default();
            let tty = term.tty(explain);
            let (a, b) = (VertexId(1).into(), VertexId(2).into());
            tty.event(Event::Started { vertex: a, name: "[build 1/2] FROM alpine".into() });
            tty.event(Event::Started { vertex: b, name: "[build 2/2] RUN make".into() });
            tty.event(Event::Cached { vertex: a, name: "[build 1/2] FROM alpine".into(), source: None });
            let source = Some("type=local,src=/c".to_string());
            tty.event(Event::Cached { vertex: b, name: "[build 2/2] RUN make".into(), source });
            let written = term.0.lock().unwrap().clone();
            assert!(written.iter().any(|w| w == "#1 [build 1/2] FROM alpine CACHED"), "{written:?}");
            let imported = "#2 [build 2/2] RUN make CACHED (from type=local,src=/c)";
            assert!(written.iter().any(|w| w == imported), "{written:?}");
        }
    }

    #[test]
    fn any_event_order_is_drawn_without_panicking() {
        let tty = Tty::with_target(ProgressDrawTarget::hidden(), true, Box::new(|| 80), Instant::now());
        let (a, b) = (VertexId(1).into(), VertexId(2).into());
        let log = |v, text: &str| Event::Log { vertex: v, stream: Stream::Stderr, data: text.as_bytes().to_vec() };
        tty.event(log(a, "before start\n"));
        tty.event(Event::Started { vertex: a, name: "RUN a".into() });
        tty.event(Event::Started { vertex: b, name: "RUN b".into() });
        for i in 0..20 {
            tty.event(log(a, &format!("line {i}\npartial")));
        }
        tty.event(Event::Explain { vertex: b, reasons: vec!["first build of this step".into()] });
        tty.event(Event::Done { vertex: a, duration: Duration::from_millis(5) });
        tty.event(Event::Done { vertex: a, duration: Duration::from_millis(5) });
        tty.event(Event::Error { vertex: b, message: "exit code: 1".into() });
        let part =
            |current| Event::Progress { vertex: b, id: "blob".into(), current, total: Some(9), completed: false };
        tty.event(part(3));
        tty.event(part(9));
        tty.event(Event::Warning { vertex: a, message: "late".into() });
        tty.event(Event::Cancelled { vertex: VertexId(9).into() });
        let state = tty.state.lock().unwrap();
        assert!(state.live.is_empty());
        assert_eq!((state.steps.started, state.steps.failed), (2, 1));
        drop(state);
        tty.finish(false);
    }

    #[test]
    fn lines_are_cut_to_the_width() {
        assert_eq!(cut("#1 [2/2] RUN make", 8), "#1 [2/2]");
        assert_eq!(cut("short", 8), "short");
        assert_eq!(cut("\x1b[1m#1\x1b[0m and more", 4), "\x1b[1m#1\x1b[0m a");
        assert_eq!(cut("漢字漢字", 5), "漢字");
    }

    #[test]
    fn nothing_drawn_is_wider_than_the_terminal() {
        let term = Recording(Arc::default(), 30);
        let tty = term.tty(true);
        let (a, b) = (VertexId(1).into(), ExternalId(1).into());
        let long = "x".repeat(100);
        tty.event(Event::Started { vertex: a, name: format!("[1/1] RUN echo {long}") });
        tty.event(Event::Started { vertex: b, name: format!("[internal] pull {long}") });
        tty.event(Event::Log { vertex: a, stream: Stream::Stdout, data: format!("{long}\n").into_bytes() });
        let part =
            Event::Progress { vertex: b, id: format!("sha256:{long}"), current: 5, total: Some(10), completed: false };
        tty.event(part);
        tty.event(Event::Explain { vertex: a, reasons: vec![long.clone()] });
        tty.event(Event::Warning { vertex: b, message: long.clone() });
        tty.event(Event::Done { vertex: b, duration: Duration::from_millis(5) });
        tty.event(Event::Error { vertex: a, message: long.clone() });
        let written = term.0.lock().unwrap().clone();
        assert!(written.iter().any(|w| w.contains("WARN: ")), "{written:?}");
        for line in written.iter().flat_map(|w| w.lines()) {
            assert!(console::measure_text_width(line) <= 30, "{line:?} is wider than 30 columns");
        }
    }
}
