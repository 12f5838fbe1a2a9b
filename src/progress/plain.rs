//! `--progress=plain`: numbered lines in the style of `docker buildx build`.
//!
//! ```text
//! #3 [build 2/4] RUN make
//! #3 MISS: src/main.rs changed
//! #3 0.512 cc -o app main.c
//! #3 DONE 1.2s
//!
//! #4 [build 3/4] COPY app /usr/bin/
//! #4 CACHED
//!
//! #5 [build 4/4] RUN strip /usr/bin/app
//! #5 CACHED (from type=local,src=/c)
//!
//! #6 [internal] pull docker.io/library/busybox:latest
//! #6 sha256:3ed2… 0B / 1.10MB
//! #6 sha256:3ed2… 1.10MB / 1.10MB 0.3s done
//! #6 DONE 0.4s
//! ```
//!
//! Parts of a step's work (`Progress` events) are shown as they begin and end, and
//! in between when they moved 5% or 5s passed, as BuildKit does; a warning is
//! `#N WARN: message` (BuildKit's words).
//!
//! A failed step ends with `#N ERROR: message`; at the end its last output lines, if
//! it had any, are shown again between `------` rules, as buildx does (the error
//! itself is then printed by whoever handles it).

use super::steps::{Line, Steps};
use super::{ERROR_TAIL, Progress, cached_status, shown};
use solver::progress::ProgressVertex;
use solver::{Event, ProgressSink};
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

pub struct Plain<W: Write + Send> {
    state: Mutex<Renderer<W>>,
}

impl<W: Write + Send> Plain<W> {
    pub fn new(out: W, explain: bool) -> Self {
        Plain { state: Mutex::new(Renderer::new(out, explain)) }
    }
}

impl<W: Write + Send> ProgressSink for Plain<W> {
    fn event(&self, event: Event) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).render(&event, Instant::now());
    }
}

impl<W: Write + Send> Progress for Plain<W> {
    fn sink(&self) -> &dyn ProgressSink {
        self
    }

    fn message(&self, line: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(state.out, "{line}").and_then(|_| state.out.flush());
    }

    fn finish(&self, _ok: bool) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).finish();
    }

    fn event_at(&self, event: Event, at: Instant) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).render(&event, at);
    }

    fn message_at(&self, line: &str, _at: Instant) {
        self.message(line);
    }
}

pub struct Renderer<W: Write> {
    out: W,
    explain: bool,
    steps: Steps,
    /// Failed steps: their name and last output lines.
    errors: Vec<(String, Vec<Line>)>,
}

impl<W: Write> Renderer<W> {
    pub fn new(out: W, explain: bool) -> Self {
        Renderer { out, explain, steps: Steps::default(), errors: Vec::new() }
    }

    /// Writes what `event` shows. Write errors (a closed stderr) are ignored: the
    /// build goes on without a display.
    pub fn render(&mut self, event: &Event, now: Instant) {
        if !shown(event, self.explain) {
            return;
        }
        let _ = self.write(event, now);
    }

    fn write(&mut self, event: &Event, now: Instant) -> std::io::Result<()> {
        let vertex = event.vertex();
        match event {
            Event::Started { name, .. } => {
                let n = self.steps.started(vertex, name, now).number;
                writeln!(self.out, "#{n} {name}")?;
            }
            Event::Log { stream, data, .. } => {
                let lines = self.steps.log(vertex, *stream, data, now);
                self.lines(vertex, &lines, now)?;
            }
            Event::Explain { reasons, .. } => {
                let n = self.steps.get(vertex, now).number;
                for reason in reasons {
                    writeln!(self.out, "#{n} MISS: {reason}")?;
                }
            }
            Event::Cached { source, .. } => {
                self.steps.cached += 1;
                self.end(vertex, cached_status(source.as_deref()), now)?;
            }
            Event::Done { duration, .. } => {
                self.end(vertex, format!("DONE {:.1}s", duration.as_secs_f64()), now)?;
            }
            Event::Error { message, .. } => {
                self.steps.failed += 1;
                self.end(vertex, format!("ERROR: {message}"), now)?;
                let step = self.steps.get(vertex, now);
                let skip = step.tail.len().saturating_sub(ERROR_TAIL);
                let tail = step.tail.iter().skip(skip).cloned().collect();
                self.errors.push((step.name.clone(), tail));
            }
            Event::Progress { id, current, total, completed, .. } => {
                let n = self.steps.get(vertex, now).number;
                let status = self.steps.progress(vertex, id, (*current, *total), *completed, now);
                if status.take_printable(now) {
                    writeln!(self.out, "#{n} {}", status.line(now))?;
                }
            }
            Event::Warning { message, .. } => {
                let n = self.steps.get(vertex, now).number;
                writeln!(self.out, "#{n} WARN: {message}")?;
            }
            Event::Cancelled { .. } => self.end(vertex, "CANCELED".to_string(), now)?,
        }
        self.out.flush()
    }

    fn lines(&mut self, vertex: ProgressVertex, lines: &[Line], now: Instant) -> std::io::Result<()> {
        let n = self.steps.get(vertex, now).number;
        for line in lines {
            writeln!(self.out, "#{n} {:.3} {}", line.at, line.text)?;
        }
        Ok(())
    }

    /// Flushes the step's unfinished output, then writes its last line.
    fn end(&mut self, vertex: ProgressVertex, status: String, now: Instant) -> std::io::Result<()> {
        let lines = self.steps.flush(vertex, now);
        self.lines(vertex, &lines, now)?;
        let n = self.steps.get(vertex, now).number;
        writeln!(self.out, "#{n} {status}")?;
        writeln!(self.out)
    }

    pub fn finish(&mut self) {
        let _ = self.write_errors();
    }

    fn write_errors(&mut self) -> std::io::Result<()> {
        // A step that failed without output (a resolve, a set-up error) has nothing to show again.
        for (name, tail) in std::mem::take(&mut self.errors).into_iter().filter(|(_, tail)| !tail.is_empty()) {
            writeln!(self.out, "------")?;
            writeln!(self.out, " > {name}:")?;
            for line in &tail {
                writeln!(self.out, "{:.3} {}", line.at, line.text)?;
            }
            writeln!(self.out, "------")?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use solver::VertexId;
    use solver::progress::{ExternalId, Stream};
    use std::time::Duration;

    fn render(events: &[(u64, Event)], explain: bool) -> String {
        let start = Instant::now();
        let mut r = Renderer::new(Vec::new(), explain);
        for (ms, e) in events {
            r.render(e, start + Duration::from_millis(*ms));
        }
        r.finish();
        String::from_utf8(r.out).unwrap()
    }

    fn started(v: usize, name: &str) -> Event {
        Event::Started { vertex: VertexId(v).into(), name: name.into() }
    }

    fn log(v: usize, data: &str) -> Event {
        Event::Log { vertex: VertexId(v).into(), stream: Stream::Stdout, data: data.as_bytes().to_vec() }
    }

    #[test]
    fn numbered_steps_logs_cached_done() {
        let out = render(
            &[
                (0, started(7, "[build 1/2] FROM alpine")),
                (0, started(9, "[build 2/2] RUN make")),
                (5, Event::Cached { vertex: VertexId(7).into(), name: "[build 1/2] FROM alpine".into(), source: None }),
                (10, Event::Explain { vertex: VertexId(9).into(), reasons: vec!["src/main.rs changed".into()] }),
                (512, log(9, "cc main.c\nld")),
                (700, log(9, " app\n")),
                (900, log(9, "tail without newline")),
                (1200, Event::Done { vertex: VertexId(9).into(), duration: Duration::from_millis(1234) }),
            ],
            true,
        );
        assert_eq!(
            out,
            "#1 [build 1/2] FROM alpine\n\
             #2 [build 2/2] RUN make\n\
             #1 CACHED\n\n\
             #2 MISS: src/main.rs changed\n\
             #2 0.512 cc main.c\n\
             #2 0.700 ld app\n\
             #2 1.200 tail without newline\n\
             #2 DONE 1.2s\n\n"
        );
    }

    #[test]
    fn events_out_of_order_still_render() {
        let out = render(
            &[
                (0, log(4, "early\n")),
                (0, started(4, "RUN x")),
                (1, Event::Done { vertex: VertexId(6).into(), duration: Duration::ZERO }),
                (2, Event::Done { vertex: VertexId(4).into(), duration: Duration::ZERO }),
            ],
            false,
        );
        assert_eq!(out, "#1 0.000 early\n#1 RUN x\n#2 DONE 0.0s\n\n#1 DONE 0.0s\n\n");
    }

    #[test]
    fn hits_from_an_imported_cache_name_it_with_or_without_explain() {
        let source = Some("type=local,src=/c".to_string());
        let events = [
            (0, started(3, "[build 2/2] RUN make")),
            (1, Event::Cached { vertex: VertexId(3).into(), name: "[build 2/2] RUN make".into(), source }),
        ];
        for explain in [false, true] {
            assert_eq!(render(&events, explain), "#1 [build 2/2] RUN make\n#1 CACHED (from type=local,src=/c)\n\n");
        }
    }

    #[test]
    fn parts_with_bytes_and_warnings_of_an_external_vertex() {
        let v = ExternalId(1).into();
        let part = |id: &str, current, total, completed| Event::Progress {
            vertex: v,
            id: id.into(),
            current,
            total: Some(total),
            completed,
        };
        let naming =
            Event::Progress { vertex: v, id: "naming to app:1".into(), current: 0, total: None, completed: true };
        let out = render(
            &[
                (0, Event::Started { vertex: v, name: "[internal] pull busybox".into() }),
                (0, part("sha256:3ed2", 0, 1_100_000, false)),
                (100, part("sha256:3ed2", 10_000, 1_100_000, false)),
                (200, part("sha256:3ed2", 600_000, 1_100_000, false)),
                (300, part("sha256:3ed2", 1_100_000, 1_100_000, true)),
                (300, Event::Warning { vertex: v, message: "cache not imported".into() }),
                (300, naming),
                (400, Event::Done { vertex: v, duration: Duration::from_millis(400) }),
            ],
            false,
        );
        assert_eq!(
            out,
            "#1 [internal] pull busybox\n\
             #1 sha256:3ed2 0B / 1.10MB\n\
             #1 sha256:3ed2 600.00kB / 1.10MB 0.2s\n\
             #1 sha256:3ed2 1.10MB / 1.10MB 0.3s done\n\
             #1 WARN: cache not imported\n\
             #1 naming to app:1 done\n\
             #1 DONE 0.4s\n\n"
        );
    }

    #[test]
    fn explanations_only_when_asked() {
        let events =
            [(0, started(1, "RUN x")), (1, Event::Explain { vertex: VertexId(1).into(), reasons: vec!["r".into()] })];
        assert_eq!(render(&events, false), "#1 RUN x\n");
    }

    #[test]
    fn failure_shows_last_lines_with_error() {
        let mut events = vec![(0, started(0, "[2/2] RUN make")), (0, started(1, "[1/1] RUN sleep"))];
        for i in 0..12 {
            events.push((100 * i, log(0, &format!("line {i}\n"))));
        }
        events.push((1300, Event::Error { vertex: VertexId(0).into(), message: "exit code 2".into() }));
        events.push((1300, Event::Cancelled { vertex: VertexId(1).into() }));
        let out = render(&events, false);
        assert!(out.contains("#1 1.100 line 11\n#1 ERROR: exit code 2\n\n#2 CANCELED\n\n"), "{out}");
        let block = out.split_once("------\n").unwrap().1;
        assert_eq!(
            block,
            " > [2/2] RUN make:\n0.200 line 2\n0.300 line 3\n0.400 line 4\n0.500 line 5\n0.600 line 6\n\
             0.700 line 7\n0.800 line 8\n0.900 line 9\n1.000 line 10\n1.100 line 11\n------\n"
        );
    }
}
