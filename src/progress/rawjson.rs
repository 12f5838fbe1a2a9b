//! `--progress=rawjson`: one JSON object per event, one per line, on stderr.
//!
//! Every object has `event` (`started`, `cached`, `log`, `explain`, `progress`,
//! `warning`, `done`, `error`, `cancelled`, and a last `finish`) and `time` (seconds
//! since the display started). Step events also have `step` (the `#N` of the other
//! displays: it names the step in this stream), `name`, and for a step of the build
//! graph `vertex` (its index in the graph, stable for a given graph); steps outside
//! the graph (`[internal] load metadata for …`, `exporting to image`) have no
//! `vertex`. Then per event (docs/progress.md has an example of each):
//!
//! - `log`: `stream` (`stdout`|`stderr`) and `data`, the chunk as UTF-8 with invalid
//!   bytes replaced by U+FFFD; when the chunk is not valid UTF-8, `data_base64` holds
//!   its exact bytes (standard alphabet, padded). Chunks are not split into lines.
//! - `cached`: `source`, the imported cache the hit came from (`type=local,src=/c`),
//!   only when it came from one rather than the local cache.
//! - `explain` (only with `--explain`): `reasons`, an array of strings.
//! - `progress`: one part of the step's work: `id` (a blob digest, `naming to NAME`),
//!   `current` bytes of `total` (absent while unknown; both 0 for a part that moves
//!   no bytes) and `completed`.
//! - `warning`: `message`.
//! - `done`: `duration` in seconds.
//! - `error`: `message`.
//! - `finish`: `ok`, and the counts `steps`, `cached`, `failed`.
//! - `message` (about no step): `text`, a log line of the program itself.
//!
//! After `finish`, a failed command's error is one `failed` object: `message` and,
//! when there is one, `hint` (printed by `main` through [`super::print_error`]).

use super::steps::Steps;
use super::{Progress, shown};
use serde_json::{Value, json};
use solver::progress::{ProgressVertex, Stream};
use solver::{Event, ProgressSink};
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

pub struct RawJson<W: Write + Send> {
    state: Mutex<Renderer<W>>,
}

impl<W: Write + Send> RawJson<W> {
    /// A display whose `time` 0 is `start`.
    pub fn new(out: W, explain: bool, start: Instant) -> Self {
        RawJson { state: Mutex::new(Renderer::new(out, explain, start)) }
    }

    /// When the display started (its `time` 0).
    pub fn start(&self) -> Instant {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).start
    }
}

impl<W: Write + Send> ProgressSink for RawJson<W> {
    fn event(&self, event: Event) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).render(&event, Instant::now());
    }
}

impl<W: Write + Send> Progress for RawJson<W> {
    fn sink(&self) -> &dyn ProgressSink {
        self
    }

    fn message(&self, line: &str) {
        self.message_at(line, Instant::now());
    }

    fn finish(&self, ok: bool) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).finish(ok, Instant::now());
    }

    fn event_at(&self, event: Event, at: Instant) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).render(&event, at);
    }

    fn message_at(&self, line: &str, at: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let object = json!({ "time": state.time(at), "event": "message", "text": line });
        state.line(&object);
    }
}

pub struct Renderer<W: Write> {
    out: W,
    explain: bool,
    start: Instant,
    steps: Steps,
}

impl<W: Write> Renderer<W> {
    pub fn new(out: W, explain: bool, start: Instant) -> Self {
        Renderer { out, explain, start, steps: Steps::default() }
    }

    pub fn render(&mut self, event: &Event, now: Instant) {
        if !shown(event, self.explain) {
            return;
        }
        let vertex = event.vertex();
        let (kind, extra) = match event {
            Event::Started { name, .. } => {
                self.steps.started(vertex, name, now);
                ("started", json!({}))
            }
            Event::Cached { source, .. } => {
                self.steps.cached += 1;
                match source {
                    Some(source) => ("cached", json!({ "source": source })),
                    None => ("cached", json!({})),
                }
            }
            Event::Log { stream, data, .. } => {
                let stream = match stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                };
                let mut fields = json!({ "stream": stream, "data": String::from_utf8_lossy(data) });
                if std::str::from_utf8(data).is_err() {
                    fields["data_base64"] = Value::from(base64(data));
                }
                ("log", fields)
            }
            Event::Explain { reasons, .. } => ("explain", json!({ "reasons": reasons })),
            Event::Done { duration, .. } => ("done", json!({ "duration": duration.as_secs_f64() })),
            Event::Error { message, .. } => {
                self.steps.failed += 1;
                ("error", json!({ "message": message }))
            }
            Event::Progress { id, current, total, completed, .. } => {
                let mut fields = json!({ "id": id, "current": current, "completed": completed });
                if let Some(total) = total {
                    fields["total"] = Value::from(*total);
                }
                ("progress", fields)
            }
            Event::Warning { message, .. } => ("warning", json!({ "message": message })),
            Event::Cancelled { .. } => ("cancelled", json!({})),
        };
        let number = self.steps.get(vertex, now).number;
        let mut object = json!({
            "time": self.time(now),
            "event": kind,
            "step": number,
            "name": self.steps.name(vertex),
        });
        if let ProgressVertex::Graph(id) = vertex {
            object["vertex"] = Value::from(id.0);
        }
        if let (Value::Object(object), Value::Object(extra)) = (&mut object, extra) {
            object.extend(extra);
        }
        self.line(&object);
    }

    pub fn finish(&mut self, ok: bool, now: Instant) {
        let object = json!({
            "time": self.time(now),
            "event": "finish",
            "ok": ok,
            "steps": self.steps.started,
            "cached": self.steps.cached,
            "failed": self.steps.failed,
        });
        self.line(&object);
    }

    fn time(&self, now: Instant) -> f64 {
        (now.saturating_duration_since(self.start).as_secs_f64() * 1000.0).round() / 1000.0
    }

    fn line(&mut self, object: &Value) {
        let mut bytes = serde_json::to_vec(object).expect("json values serialize");
        bytes.push(b'\n');
        // One write per line, so lines of concurrent builds sharing stderr stay whole.
        let _ = self.out.write_all(&bytes).and_then(|_| self.out.flush());
    }
}

fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use solver::VertexId;
    use solver::progress::ExternalId;
    use std::time::Duration;

    #[test]
    fn one_object_per_event() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut r = Renderer::new(Vec::new(), true, start);
        let v = VertexId(5).into();
        r.render(&Event::Started { vertex: v, name: "RUN make".into() }, at(0));
        r.render(&Event::Explain { vertex: v, reasons: vec!["env A changed 1 → 2".into()] }, at(1));
        r.render(&Event::Log { vertex: v, stream: Stream::Stdout, data: b"ok\n".to_vec() }, at(250));
        r.render(&Event::Log { vertex: v, stream: Stream::Stderr, data: vec![b'a', 0xff] }, at(260));
        r.render(&Event::Done { vertex: v, duration: Duration::from_millis(1500) }, at(1500));
        r.finish(true, at(1600));
        let out = String::from_utf8(r.out).unwrap();
        let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            lines,
            [
                json!({"time": 0.0, "event": "started", "vertex": 5, "step": 1, "name": "RUN make"}),
                json!({"time": 0.001, "event": "explain", "vertex": 5, "step": 1, "name": "RUN make",
                       "reasons": ["env A changed 1 → 2"]}),
                json!({"time": 0.25, "event": "log", "vertex": 5, "step": 1, "name": "RUN make",
                       "stream": "stdout", "data": "ok\n"}),
                json!({"time": 0.26, "event": "log", "vertex": 5, "step": 1, "name": "RUN make",
                       "stream": "stderr", "data": "a\u{fffd}", "data_base64": "Yf8="}),
                json!({"time": 1.5, "event": "done", "vertex": 5, "step": 1, "name": "RUN make", "duration": 1.5}),
                json!({"time": 1.6, "event": "finish", "ok": true, "steps": 1, "cached": 0, "failed": 0}),
            ]
        );
    }

    #[test]
    fn cached_names_its_imported_source_only_when_it_has_one() {
        let start = Instant::now();
        let mut r = Renderer::new(Vec::new(), false, start);
        let (a, b) = (VertexId(1).into(), VertexId(2).into());
        r.render(&Event::Started { vertex: a, name: "RUN a".into() }, start);
        r.render(&Event::Started { vertex: b, name: "RUN b".into() }, start);
        r.render(&Event::Cached { vertex: a, name: "RUN a".into(), source: None }, start);
        let source = Some("type=local,src=/c".to_string());
        r.render(&Event::Cached { vertex: b, name: "RUN b".into(), source }, start);
        let out = String::from_utf8(r.out).unwrap();
        let lines: Vec<Value> = out.lines().skip(2).map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            lines,
            [
                json!({"time": 0.0, "event": "cached", "vertex": 1, "step": 1, "name": "RUN a"}),
                json!({"time": 0.0, "event": "cached", "vertex": 2, "step": 2, "name": "RUN b",
                       "source": "type=local,src=/c"}),
            ]
        );
    }

    #[test]
    fn external_steps_have_no_vertex_and_parts_carry_bytes() {
        let start = Instant::now();
        let mut r = Renderer::new(Vec::new(), false, start);
        let v = ExternalId(7).into();
        let name = "[internal] pull 127.0.0.1:5000/busybox:latest";
        r.render(&Event::Started { vertex: v, name: name.into() }, start);
        let part = |current, completed| Event::Progress {
            vertex: v,
            id: "sha256:3ed2".into(),
            current,
            total: Some(1100),
            completed,
        };
        r.render(&part(0, false), start);
        r.render(&part(1100, true), start);
        r.render(
            &Event::Progress { vertex: v, id: "naming to a".into(), current: 0, total: None, completed: true },
            start,
        );
        r.render(&Event::Warning { vertex: v, message: "careful".into() }, start);
        let out = String::from_utf8(r.out).unwrap();
        let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let step = json!({"time": 0.0, "step": 1, "name": name});
        let with = |fields: Value| {
            let mut object = step.clone();
            object.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
            object
        };
        assert_eq!(
            lines,
            [
                with(json!({"event": "started"})),
                with(
                    json!({"event": "progress", "id": "sha256:3ed2", "current": 0, "total": 1100, "completed": false})
                ),
                with(
                    json!({"event": "progress", "id": "sha256:3ed2", "current": 1100, "total": 1100, "completed": true})
                ),
                with(json!({"event": "progress", "id": "naming to a", "current": 0, "completed": true})),
                with(json!({"event": "warning", "message": "careful"})),
            ]
        );
    }

    #[test]
    fn messages_are_objects_too() {
        let raw = RawJson::new(Vec::new(), false, Instant::now());
        raw.message("WARN saving stat cache: disk full");
        let out = raw.state.into_inner().unwrap().out;
        let object: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(object["event"], "message");
        assert_eq!(object["text"], "WARN saving stat cache: disk full");
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
