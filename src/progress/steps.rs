//! What every renderer tracks per step: its number, name, start time, the output
//! line being assembled, the last lines of output, and the parts of its work.

use super::status::Status;
use solver::progress::{ProgressVertex, Stream};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Lines kept per step (the most any renderer shows).
const TAIL: usize = 10;

/// A partial line longer than this is shown as it is rather than buffered.
const MAX_LINE: usize = 16 * 1024;

/// One output line: seconds since the step started, and the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub at: f64,
    pub text: String,
}

pub struct Step {
    /// `#number` as the user sees it.
    pub number: usize,
    pub name: String,
    pub start: Instant,
    partial: [Vec<u8>; 2],
    pub tail: VecDeque<Line>,
    /// The parts of its work ([`solver::Event::Progress`]), in the order they began.
    pub statuses: Vec<Status>,
}

impl Step {
    pub fn elapsed(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.start).as_secs_f64()
    }

    fn push(&mut self, line: Line) {
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }
}

#[derive(Default)]
pub struct Steps {
    steps: HashMap<ProgressVertex, Step>,
    pub started: usize,
    pub cached: usize,
    pub failed: usize,
}

impl Steps {
    /// The step, numbered now if it was never seen (an event before `Started`).
    pub fn get(&mut self, vertex: ProgressVertex, now: Instant) -> &mut Step {
        let next = self.steps.len() + 1;
        self.steps.entry(vertex).or_insert_with(|| Step {
            number: next,
            name: match vertex {
                ProgressVertex::Graph(id) => format!("vertex {}", id.0),
                ProgressVertex::External(id) => format!("external {}", id.0),
            },
            start: now,
            partial: Default::default(),
            tail: VecDeque::new(),
            statuses: Vec::new(),
        })
    }

    pub fn started(&mut self, vertex: ProgressVertex, name: &str, now: Instant) -> &mut Step {
        self.started += 1;
        let step = self.get(vertex, now);
        step.name = name.to_string();
        step.start = now;
        step
    }

    pub fn name(&self, vertex: ProgressVertex) -> Option<&str> {
        self.steps.get(&vertex).map(|s| s.name.as_str())
    }

    /// Adds output; returns the lines it completed.
    pub fn log(&mut self, vertex: ProgressVertex, stream: Stream, data: &[u8], now: Instant) -> Vec<Line> {
        let step = self.get(vertex, now);
        let at = step.elapsed(now);
        let buf = &mut step.partial[stream as usize];
        buf.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let rest = buf.split_off(end + 1);
            let line = std::mem::replace(buf, rest);
            lines.push(Line { at, text: clean(&line) });
        }
        if buf.len() > MAX_LINE {
            lines.push(Line { at, text: clean(&std::mem::take(buf)) });
        }
        for line in &lines {
            step.push(line.clone());
        }
        lines
    }

    /// Ends the step's unfinished lines; returns them.
    /// Records an update of one part of the step's work; returns the part.
    pub fn progress(
        &mut self,
        vertex: ProgressVertex,
        id: &str,
        (current, total): (u64, Option<u64>),
        completed: bool,
        now: Instant,
    ) -> &mut Status {
        let step = self.get(vertex, now);
        let index = match step.statuses.iter().position(|s| s.id == id) {
            Some(index) => index,
            None => {
                step.statuses.push(Status::new(id, now));
                step.statuses.len() - 1
            }
        };
        let status = &mut step.statuses[index];
        status.update(current, total, completed, now);
        status
    }

    pub fn flush(&mut self, vertex: ProgressVertex, now: Instant) -> Vec<Line> {
        let step = self.get(vertex, now);
        let at = step.elapsed(now);
        let mut lines = Vec::new();
        for buf in &mut step.partial {
            if !buf.is_empty() {
                lines.push(Line { at, text: clean(&std::mem::take(buf)) });
            }
        }
        for line in &lines {
            step.push(line.clone());
        }
        lines
    }
}

/// A raw output line as a terminal would leave it: no line ending, and only what
/// follows the last carriage return (progress meters redraw with `\r`).
fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\n', '\r']);
    text.rsplit('\r').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_assembled_across_chunks() {
        let mut steps = Steps::default();
        let now = Instant::now();
        let v = ProgressVertex::Graph(solver::VertexId(3));
        steps.started(v, "RUN make", now);
        assert!(steps.log(v, Stream::Stdout, b"hel", now).is_empty());
        let lines = steps.log(v, Stream::Stdout, b"lo\r\nwor", now);
        assert_eq!(lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["hello"]);
        let lines = steps.log(v, Stream::Stdout, b"ld\n10%\r50%\r100%\n", now);
        assert_eq!(lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["world", "100%"]);
        steps.log(v, Stream::Stderr, b"partial", now);
        assert_eq!(steps.flush(v, now)[0].text, "partial");
        assert_eq!(steps.get(v, now).tail.len(), 4);
    }

    #[test]
    fn parts_are_kept_in_the_order_they_began() {
        let mut steps = Steps::default();
        let now = Instant::now();
        let v = ProgressVertex::External(solver::progress::ExternalId(1));
        steps.started(v, "[internal] pull busybox", now);
        steps.progress(v, "sha256:a", (0, Some(10)), false, now);
        steps.progress(v, "sha256:b", (0, Some(20)), false, now);
        let a = steps.progress(v, "sha256:a", (10, None), true, now);
        assert_eq!((a.current, a.total, a.completed.is_some()), (10, Some(10), true));
        let ids: Vec<&str> = steps.get(v, now).statuses.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["sha256:a", "sha256:b"]);
    }
}
