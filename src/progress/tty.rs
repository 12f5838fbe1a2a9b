//! `--progress=tty`: a live display on stderr. Each running step has a line with a
//! spinner and a timer, followed by the last few lines of its output; a step that
//! ends leaves one line (`CACHED`, `CACHED (from type=local,src=/c)` for a hit from an
//! imported cache, `DONE 1.2s`, `ERROR: …` with its last output lines, `CANCELED`)
//! above the live ones. A summary line closes the build.

use super::steps::{Line, Steps};
use super::{ERROR_TAIL, Progress, cached_status, shown};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use solver::{Event, ProgressSink, VertexId};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Output lines shown under a running step.
const LIVE_TAIL: usize = 5;

pub struct Tty {
    multi: MultiProgress,
    explain: bool,
    start: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    steps: Steps,
    live: HashMap<VertexId, Live>,
}

/// The bars of a running step: its own line and its output tail.
struct Live {
    bar: ProgressBar,
    tail: Vec<ProgressBar>,
}

impl Tty {
    pub fn new(explain: bool) -> Self {
        Self::with_target(ProgressDrawTarget::stderr(), explain)
    }

    fn with_target(target: ProgressDrawTarget, explain: bool) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        Tty { multi, explain, start: Instant::now(), state: Mutex::new(State::default()) }
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
                state.live.insert(vertex, Live { bar, tail: Vec::new() });
            }
            Event::Log { stream, data, .. } => {
                if !state.steps.log(vertex, *stream, data, now).is_empty() {
                    self.show_tail(state, vertex, now);
                }
            }
            Event::Explain { reasons, .. } => {
                let n = state.steps.get(vertex, now).number;
                for reason in reasons {
                    let _ = self.multi.println(format!("#{n} MISS: {reason}"));
                }
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

    fn show_tail(&self, state: &mut State, vertex: VertexId, now: Instant) {
        let step = state.steps.get(vertex, now);
        let skip = step.tail.len().saturating_sub(LIVE_TAIL);
        let lines: Vec<String> = step.tail.iter().skip(skip).map(|l| l.text.clone()).collect();
        let Some(live) = state.live.get_mut(&vertex) else { return };
        while live.tail.len() < lines.len() {
            let after = live.tail.last().unwrap_or(&live.bar);
            let bar = self.multi.insert_after(after, ProgressBar::new_spinner().with_style(Self::tail_style()));
            live.tail.push(bar);
        }
        for (bar, line) in live.tail.iter().zip(lines) {
            bar.set_message(line);
        }
    }

    /// Replaces the step's live lines by its final line (and, on error, its output).
    fn end(&self, state: &mut State, vertex: VertexId, status: String, output: &[Line], now: Instant) {
        state.steps.flush(vertex, now);
        if let Some(live) = state.live.remove(&vertex) {
            for bar in live.tail.iter().chain([&live.bar]) {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
        }
        let step = state.steps.get(vertex, now);
        let mut text = format!("#{} {} {status}", step.number, step.name);
        for line in output {
            let _ = write!(text, "\n    {:.3} {}", line.at, line.text);
        }
        let _ = self.multi.println(text);
    }
}

impl ProgressSink for Tty {
    fn event(&self, event: Event) {
        if shown(&event, self.explain) {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.render(&mut state, &event, Instant::now());
        }
    }
}

impl Progress for Tty {
    fn sink(&self) -> &dyn ProgressSink {
        self
    }

    fn finish(&self, ok: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (_, live) in state.live.drain() {
            for bar in live.tail.iter().chain([&live.bar]) {
                bar.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
        let steps = &state.steps;
        let secs = self.start.elapsed().as_secs_f64();
        let counts = format!("{} steps, {} cached", steps.started, steps.cached);
        if ok {
            eprintln!("built in {secs:.1}s: {counts}");
        } else {
            eprintln!("build failed after {secs:.1}s: {counts}, {} failed", steps.failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::TermLike;
    use solver::progress::Stream;
    use std::sync::Arc;

    /// A terminal that keeps what is written to it, one entry per write, without the
    /// padding that fills the line.
    #[derive(Debug, Default, Clone)]
    struct Recording(Arc<Mutex<Vec<String>>>);

    impl TermLike for Recording {
        fn width(&self) -> u16 {
            200
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
            let tty = Tty::with_target(ProgressDrawTarget::term_like(Box::new(term.clone())), explain);
            let (a, b) = (VertexId(1), VertexId(2));
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
        let tty = Tty::with_target(ProgressDrawTarget::hidden(), true);
        let (a, b) = (VertexId(1), VertexId(2));
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
        tty.event(Event::Cancelled { vertex: VertexId(9) });
        let state = tty.state.lock().unwrap();
        assert!(state.live.is_empty());
        assert_eq!((state.steps.started, state.steps.failed), (2, 1));
        drop(state);
        tty.finish(false);
    }
}
