//! The display of a build that runs outside builder's user namespace first
//! (`crate::userns`): it may find that it needs the namespace, and then builder
//! starts over inside, where the build shows its steps itself. So nothing of this
//! attempt may reach the terminal before it succeeds: its events and lines (log
//! lines, a lock wait, a step's warnings) are recorded with when they came, and
//! replayed on the real display ([`Recording::replay`]) only once it has succeeded,
//! at their own times, so that a replay shows what the display would have shown.
//! The attempt's recording ([`Recording::attempt`]) starts as soon as `main` knows it
//! is one, before the store is opened: a wait for its lock is told there too.

use super::Progress;
use solver::{Event, ProgressSink};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// One thing a display was told.
#[derive(Debug)]
enum Entry {
    Event(Event, Instant),
    Message(String, Instant),
}

/// A display that shows nothing and remembers everything, in order.
pub struct Recording {
    start: Instant,
    entries: Mutex<Vec<Entry>>,
    /// [`super::warnings_logged`] when it started.
    warnings_before: usize,
}

impl Default for Recording {
    fn default() -> Self {
        Recording { start: Instant::now(), entries: Mutex::default(), warnings_before: super::warnings_logged() }
    }
}

impl Recording {
    /// The recording of this process's attempt outside builder's user namespace,
    /// started by the first call.
    pub fn attempt() -> Arc<Recording> {
        static ATTEMPT: OnceLock<Arc<Recording>> = OnceLock::new();
        ATTEMPT.get_or_init(Arc::default).clone()
    }

    /// How many warnings and errors were logged since it started.
    pub fn warnings(&self) -> usize {
        super::warnings_logged().saturating_sub(self.warnings_before)
    }

    /// When the recording started: the real display's time 0 ([`super::new_since`]).
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Shows everything recorded on `display`, in order, each at the time it came.
    pub fn replay(&self, display: &dyn Progress) {
        let entries = std::mem::take(&mut *self.entries.lock().unwrap_or_else(|e| e.into_inner()));
        for entry in entries {
            match entry {
                Entry::Event(event, at) => display.event_at(event, at),
                Entry::Message(line, at) => display.message_at(&line, at),
            }
        }
    }

    fn push(&self, entry: Entry) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
    }
}

impl ProgressSink for Recording {
    fn event(&self, event: Event) {
        self.push(Entry::Event(event, Instant::now()));
    }
}

impl Progress for Recording {
    fn sink(&self) -> &dyn ProgressSink {
        self
    }

    fn message(&self, line: &str) {
        self.push(Entry::Message(line.to_string(), Instant::now()));
    }

    /// The replay's display finishes; a recording has nothing to clear.
    fn finish(&self, _ok: bool) {}

    fn event_at(&self, event: Event, at: Instant) {
        self.push(Entry::Event(event, at));
    }

    fn message_at(&self, line: &str, at: Instant) {
        self.push(Entry::Message(line.to_string(), at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::plain::Plain;
    use crate::progress::rawjson::RawJson;
    use solver::VertexId;
    use solver::progress::{ExternalId, Stream};
    use std::sync::Arc;
    use std::time::Duration;

    /// A writer whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A build's display told `events` and a log line, in that order.
    fn tell(display: &dyn Progress) {
        let (step, task) = (VertexId(0).into(), ExternalId::next().into());
        let sink = display.sink();
        sink.event(Event::Started { vertex: task, name: "[internal] load build definition from Dockerfile".into() });
        sink.event(Event::Warning { vertex: task, message: "JSONArgsRecommended: use JSON".into() });
        sink.event(Event::Done { vertex: task, duration: Duration::from_millis(20) });
        display.message("waiting for a prune to finish");
        sink.event(Event::Started { vertex: step, name: "[1/2] RUN make".into() });
        sink.event(Event::Log { vertex: step, stream: Stream::Stdout, data: b"cc -o app\n".to_vec() });
        sink.event(Event::Cached { vertex: step, name: "[1/2] RUN make".into(), source: None });
    }

    #[test]
    fn nothing_is_shown_until_the_replay_and_then_all_of_it_once_in_order() {
        let (direct, replayed) = (Shared::default(), Shared::default());
        let plain = Plain::new(direct.clone(), false);
        tell(&plain);
        plain.finish(true);

        let recording = Recording::default();
        tell(&recording);
        assert_eq!(recording.entries.lock().unwrap().len(), 7);
        let display = Plain::new(replayed.clone(), false);
        assert_eq!(replayed.text(), "", "a recording shows nothing by itself");
        recording.replay(&display);
        display.finish(true);
        assert_eq!(replayed.text(), direct.text());
        assert!(replayed.text().contains("#1 WARN: JSONArgsRecommended"), "{}", replayed.text());
        // A second replay (there is none) would show nothing twice.
        recording.replay(&display);
        assert_eq!(replayed.text(), direct.text());
    }

    #[test]
    fn a_replay_keeps_the_times_things_came_at() {
        let recording = Recording::default();
        let sink = recording.sink();
        let task = ExternalId::next().into();
        std::thread::sleep(Duration::from_millis(30));
        sink.event(Event::Started { vertex: task, name: "exporting to image".into() });
        std::thread::sleep(Duration::from_millis(30));
        recording.message("a line");
        // The display is made later, its time 0 the recording's start.
        std::thread::sleep(Duration::from_millis(50));
        let made = recording.start().elapsed().as_secs_f64();
        let out = Shared::default();
        let display = RawJson::new(out.clone(), false, recording.start());
        recording.replay(&display);
        let times: Vec<f64> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["time"].as_f64().unwrap())
            .collect();
        assert_eq!(times.len(), 2, "{}", out.text());
        // When they came, not when they were replayed (`made` and after).
        assert!(times[0] >= 0.03 && times[1] - times[0] >= 0.03, "{times:?}");
        assert!(times[1] + 0.04 < made, "{times:?} replayed at {made}");
    }
}
