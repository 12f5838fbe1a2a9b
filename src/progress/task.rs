//! Steps outside the build graph: the work `builder build` does around the solve
//! (loading a base image's metadata and pulling it, importing and exporting the
//! cache, exporting and pushing the image), reported to the display as vertices of
//! their own ([`ProgressVertex::External`]) so that every line of a build is one of
//! its steps.
//!
//! A [`Task`] is one such step: started when made, ended by [`Task::finish`] (done or
//! failed) or, dropped unfinished, cancelled. [`pull`] and [`Task::transfer`] turn a
//! registry transfer's [`Transfer`] reports into steps, parts and byte counts.

use registry::Transfer;
use solver::progress::{ExternalId, ProgressVertex, Stream};
use solver::{Event, ProgressSink};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Byte counts of one part are sent at most this often (its first and last always).
const BYTES_INTERVAL: Duration = Duration::from_millis(100);

pub struct Task<'a> {
    sink: &'a dyn ProgressSink,
    vertex: ProgressVertex,
    start: Instant,
    /// When each part last reported its bytes.
    reported: Mutex<HashMap<String, Instant>>,
    ended: bool,
}

impl<'a> Task<'a> {
    pub fn start(sink: &'a dyn ProgressSink, name: impl Into<String>) -> Task<'a> {
        let vertex = ProgressVertex::External(ExternalId::next());
        sink.event(Event::Started { vertex, name: name.into() });
        Task { sink, vertex, start: Instant::now(), reported: Mutex::default(), ended: false }
    }

    /// A line of the step's output.
    pub fn log(&self, line: &str) {
        let data = format!("{line}\n").into_bytes();
        self.sink.event(Event::Log { vertex: self.vertex, stream: Stream::Stderr, data });
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.sink.event(Event::Warning { vertex: self.vertex, message: message.into() });
    }

    /// A part of the step's work that moves no bytes (`naming to NAME`): begun, or
    /// ended when `completed`.
    pub fn part(&self, id: &str, completed: bool) {
        let event = Event::Progress { vertex: self.vertex, id: id.to_string(), current: 0, total: None, completed };
        self.sink.event(event);
    }

    /// `current` of `total` bytes of a part; sent at most every [`BYTES_INTERVAL`]
    /// unless it is the part's first count or its last (`completed`).
    pub fn bytes(&self, id: &str, current: u64, total: Option<u64>, completed: bool) {
        let now = Instant::now();
        {
            let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
            let due = match reported.get(id) {
                None => true,
                Some(at) => completed || now.saturating_duration_since(*at) >= BYTES_INTERVAL,
            };
            if !due {
                return;
            }
            reported.insert(id.to_string(), now);
        }
        self.sink.event(Event::Progress { vertex: self.vertex, id: id.to_string(), current, total, completed });
    }

    /// The bytes of a blob moving (its digest names the part); anything else a
    /// transfer says is a line of output.
    pub fn transfer(&self, transfer: Transfer<'_>) {
        match transfer {
            Transfer::Line(line) => self.log(line),
            Transfer::Manifest(_) => {}
            Transfer::Blob { digest, current, total } => {
                self.bytes(digest.as_str(), current, Some(total), current == total)
            }
        }
    }

    /// Ends the step: `DONE`, or `ERROR` with the error's chain; hands `result` on.
    pub fn finish<T>(mut self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        self.ended = true;
        let event = match &result {
            Ok(_) => Event::Done { vertex: self.vertex, duration: self.start.elapsed() },
            Err(e) => Event::Error { vertex: self.vertex, message: format!("{e:#}") },
        };
        self.sink.event(event);
        result
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.sink.event(Event::Cancelled { vertex: self.vertex });
        }
    }
}

/// Pulls an image as BuildKit shows it: `[internal] load metadata for REF` until
/// the manifest is known, then `[internal] pull REF` with the bytes of each blob.
pub fn pull<T>(
    sink: &dyn ProgressSink,
    reference: &str,
    pull: impl FnOnce(&dyn Fn(Transfer<'_>)) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    // The step being reported to: the metadata's, then the layers' once the
    // manifest is known.
    let step = Mutex::new(Some(Task::start(sink, format!("[internal] load metadata for {reference}"))));
    let report = |transfer: Transfer<'_>| {
        let mut step = step.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(transfer, Transfer::Manifest(_))
            && let Some(metadata) = step.take()
        {
            let _ = metadata.finish(Ok(()));
            *step = Some(Task::start(sink, format!("[internal] pull {reference}")));
        }
        if let Some(step) = step.as_ref() {
            step.transfer(transfer);
        }
    };
    let result = pull(&report);
    match step.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(step) => step.finish(result),
        None => result,
    }
}

/// `builder pull`/`push` outside a build: a transfer as lines on stderr (`3ed246eb60b7:
/// downloading 1.10MB`, `3ed246eb60b7: done`).
pub fn print_transfer(transfer: Transfer<'_>, moving: &str, moved: &str) {
    match transfer {
        Transfer::Line(line) => eprintln!("{line}"),
        Transfer::Manifest(_) => {}
        Transfer::Blob { digest, current, total } => {
            if current == 0 {
                eprintln!("{}: {moving} {}", digest.short(), super::status::bytes(total));
            }
            if current == total {
                eprintln!("{}: {moved}", digest.short());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_spec::Digest;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Event>>);

    impl ProgressSink for Recorder {
        fn event(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    impl Recorder {
        /// The events as short strings: `started NAME`, `log TEXT`, `bytes ID C/T`…
        fn summary(&self) -> Vec<String> {
            let events = self.0.lock().unwrap();
            events
                .iter()
                .map(|e| match e {
                    Event::Started { name, .. } => format!("started {name}"),
                    Event::Log { data, .. } => format!("log {}", String::from_utf8_lossy(data).trim_end()),
                    Event::Progress { id, current, total, completed, .. } => {
                        format!("part {id} {current}/{total:?}{}", if *completed { " done" } else { "" })
                    }
                    Event::Done { .. } => "done".into(),
                    Event::Error { message, .. } => format!("error {message}"),
                    Event::Cancelled { .. } => "cancelled".into(),
                    other => format!("{other:?}"),
                })
                .collect()
        }
    }

    #[test]
    fn a_pull_is_metadata_then_layers() {
        let sink = Recorder::default();
        let digest = Digest::of(b"layer");
        let image = pull(&sink, "busybox:latest", |report| {
            report(Transfer::Line("resolving busybox:latest"));
            report(Transfer::Manifest(&digest));
            report(Transfer::Blob { digest: &digest, current: 0, total: 10 });
            report(Transfer::Blob { digest: &digest, current: 4, total: 10 });
            report(Transfer::Blob { digest: &digest, current: 10, total: 10 });
            Ok("image")
        });
        assert_eq!(image.unwrap(), "image");
        assert_eq!(
            sink.summary(),
            [
                "started [internal] load metadata for busybox:latest".to_string(),
                "log resolving busybox:latest".into(),
                "done".into(),
                "started [internal] pull busybox:latest".into(),
                format!("part {digest} 0/Some(10)"),
                // 4/10 came too soon after the first count to be sent.
                format!("part {digest} 10/Some(10) done"),
                "done".into(),
            ]
        );
    }

    #[test]
    fn a_failed_resolve_fails_the_metadata_step() {
        let sink = Recorder::default();
        let result: anyhow::Result<()> = pull(&sink, "nope", |_| Err(anyhow::anyhow!("manifest unknown")));
        assert!(result.is_err());
        assert_eq!(sink.summary(), ["started [internal] load metadata for nope", "error manifest unknown"]);
    }

    #[test]
    fn a_task_dropped_unfinished_is_cancelled() {
        let sink = Recorder::default();
        let task = Task::start(&sink, "exporting to image");
        task.part("naming to app:1", true);
        drop(task);
        assert_eq!(sink.summary(), ["started exporting to image", "part naming to app:1 0/None done", "cancelled"]);
    }
}
