//! Scheduler tests with a fake worker: ops are `Exec`s whose first argument names
//! them and whose later arguments say how they behave (`fail`, `wait-cancel`,
//! `barrier`, `sleep`, `panic`). Overlap is shown with barriers, never wall-clock
//! thresholds.

use solver::ir::{ExecOp, Op};
use solver::progress::Event;
use solver::{
    CacheMap, CacheStore, ContentDigest, DepKind, DepSpec, ExecContext, Graph, MemoryCacheStore, ProgressSink,
    SolveError, SolveOptions, Solver, Vertex, VertexId, Worker, WorkerError,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Long enough that a barrier only times out when its parties cannot meet.
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Default)]
struct FakeWorker {
    runs: Mutex<HashMap<String, usize>>,
    /// `(label, start, end)` of every exec.
    spans: Mutex<Vec<(String, Instant, Instant)>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    barrier: Mutex<usize>,
    barrier_cv: Condvar,
    barrier_parties: usize,
    returned: Mutex<Vec<String>>,
    /// `(path, digest)` of the files a `copy` vertex reads from its input 1.
    files: Mutex<Vec<(String, String)>>,
}

impl FakeWorker {
    fn with_barrier(parties: usize) -> Self {
        FakeWorker { barrier_parties: parties, ..Default::default() }
    }

    fn runs(&self, label: &str) -> usize {
        self.runs.lock().unwrap().get(label).copied().unwrap_or(0)
    }

    fn total_runs(&self) -> usize {
        self.runs.lock().unwrap().values().sum()
    }

    /// Waits until `barrier_parties` execs have arrived; false on timeout.
    fn meet(&self) -> bool {
        let mut arrived = self.barrier.lock().unwrap();
        *arrived += 1;
        self.barrier_cv.notify_all();
        let (arrived, timeout) =
            self.barrier_cv.wait_timeout_while(arrived, PATIENCE, |n| *n < self.barrier_parties).unwrap();
        drop(arrived);
        !timeout.timed_out()
    }

    fn has_started(&self, label: &str) -> bool {
        self.runs(label) > 0
    }
}

fn label(graph: &Graph, id: VertexId) -> (String, Vec<String>) {
    match &graph.vertex(id).op {
        Op::Exec(e) => (e.args[0].clone(), e.args[1..].to_vec()),
        _ => panic!("fake ops are execs"),
    }
}

impl Worker for FakeWorker {
    type Output = String;

    fn cache_map(&self, graph: &Graph, id: VertexId) -> Result<CacheMap, WorkerError> {
        let vertex = graph.vertex(id);
        Ok(CacheMap {
            digest: solver::CacheKey::of("op", &vertex.op),
            facts: vec![],
            deps: (0..vertex.inputs.len())
                .map(|i| {
                    let copy_source = label(graph, id).0 == "copy" && i == 1;
                    DepSpec { kind: if copy_source { DepKind::Content } else { DepKind::Key }, selector: None }
                })
                .collect(),
        })
    }

    fn content_digest(&self, _: &Graph, _: VertexId, _: usize, _: &String) -> Result<ContentDigest, WorkerError> {
        let entries = self.files.lock().unwrap().clone();
        Ok(ContentDigest { digest: solver::CacheKey::of("files", &format!("{entries:?}")), entries })
    }

    fn exec(
        &self,
        ctx: &ExecContext<'_>,
        graph: &Graph,
        id: VertexId,
        inputs: &[String],
    ) -> Result<String, WorkerError> {
        let (name, behaviour) = label(graph, id);
        let start = Instant::now();
        *self.runs.lock().unwrap().entry(name.clone()).or_default() += 1;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        ctx.log(solver::progress::Stream::Stdout, format!("running {name}\n").as_bytes());
        let result = self.behave(ctx, &name, &behaviour);
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.spans.lock().unwrap().push((name.clone(), start, Instant::now()));
        self.returned.lock().unwrap().push(name.clone());
        result?;
        Ok(format!("{name}({})", inputs.join(",")))
    }

    fn cacheable(&self, _: &Vertex) -> bool {
        true
    }

    fn encode_result(&self, output: &String) -> Vec<u8> {
        output.as_bytes().to_vec()
    }

    fn decode_result(&self, bytes: &[u8]) -> Option<String> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl FakeWorker {
    fn behave(&self, ctx: &ExecContext<'_>, name: &str, behaviour: &[String]) -> Result<(), WorkerError> {
        for b in behaviour {
            match b.split_once(':').unwrap_or((b, "")) {
                ("barrier", _) if !self.meet() => return Err(format!("{name}: nobody else at the barrier").into()),
                ("sleep", ms) => std::thread::sleep(Duration::from_millis(ms.parse().unwrap())),
                ("after", other) => {
                    let deadline = Instant::now() + PATIENCE;
                    while !self.has_started(other) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                ("fail", _) => return Err(format!("{name} failed").into()),
                ("panic", _) => panic!("{name} exploded"),
                ("wait-cancel", _) => {
                    let deadline = Instant::now() + PATIENCE;
                    while !ctx.cancel.is_cancelled() {
                        if Instant::now() > deadline {
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    return Err("cancelled".into());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl ProgressSink for Recorder {
    fn event(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    fn explanations(&self, vertex: VertexId) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Explain { vertex: v, reasons } if v == vertex => Some(reasons),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn count(&self, kind: fn(&Event) -> bool) -> usize {
        self.events().iter().filter(|e| kind(e)).count()
    }
}

fn op(args: &[&str], env: &[&str]) -> Op {
    Op::Exec(ExecOp {
        env: env.iter().map(|s| s.to_string()).collect(),
        ..ExecOp::new(args.iter().map(|s| s.to_string()).collect())
    })
}

fn add(graph: &mut Graph, args: &[&str], inputs: &[VertexId]) -> VertexId {
    let mut v = Vertex::new(op(args, &[]), inputs.to_vec(), args[0]);
    v.step_id = Some(format!("step-{}", args[0]));
    graph.add(v)
}

fn solve(
    worker: &FakeWorker,
    cache: &dyn CacheStore,
    progress: &dyn ProgressSink,
    jobs: usize,
    graph: &Graph,
    targets: &[VertexId],
) -> Result<Vec<String>, SolveError> {
    Solver::new(worker, cache, progress, SolveOptions { jobs }).solve(graph, targets)
}

#[test]
fn diamond_runs_each_vertex_once() {
    let mut g = Graph::new();
    let a = add(&mut g, &["a"], &[]);
    let b = add(&mut g, &["b"], &[a]);
    let c = add(&mut g, &["c"], &[a]);
    let d = add(&mut g, &["d"], &[b, c]);
    let (w, cache, rec) = (FakeWorker::default(), MemoryCacheStore::default(), Recorder::default());
    let out = solve(&w, &cache, &rec, 0, &g, &[d, b]).unwrap();
    assert_eq!(out, ["d(b(a()),c(a()))", "b(a())"]);
    for l in ["a", "b", "c", "d"] {
        assert_eq!(w.runs(l), 1, "{l}");
    }
    assert_eq!(rec.count(|e| matches!(e, Event::Done { .. })), 4);

    // A second build is all cache hits.
    let w2 = FakeWorker::default();
    let rec2 = Recorder::default();
    assert_eq!(solve(&w2, &cache, &rec2, 0, &g, &[d]).unwrap(), ["d(b(a()),c(a()))"]);
    assert_eq!(w2.total_runs(), 0);
    assert_eq!(rec2.count(|e| matches!(e, Event::Cached { .. })), 4);
}

#[test]
fn independent_branches_overlap() {
    let mut g = Graph::new();
    let a = add(&mut g, &["a"], &[]);
    let b = add(&mut g, &["b", "barrier"], &[a]);
    let c = add(&mut g, &["c", "barrier"], &[a]);
    let d = add(&mut g, &["d"], &[b, c]);
    let w = FakeWorker::with_barrier(2);
    solve(&w, &MemoryCacheStore::default(), &Recorder::default(), 0, &g, &[d]).unwrap();
    let spans = w.spans.lock().unwrap().clone();
    let span = |l: &str| spans.iter().find(|s| s.0 == l).map(|s| (s.1, s.2)).unwrap();
    let (b, c) = (span("b"), span("c"));
    assert!(b.0 < c.1 && c.0 < b.1, "b and c ran at the same time");
    assert!(span("d").0 >= b.1.max(c.1), "d waited for both inputs");
    assert_eq!(w.max_running.load(Ordering::SeqCst), 2);
}

#[test]
fn only_what_targets_need_runs() {
    let mut g = Graph::new();
    let a = add(&mut g, &["a"], &[]);
    let _unused = add(&mut g, &["unused"], &[a]);
    let b = add(&mut g, &["b"], &[a]);
    let w = FakeWorker::default();
    solve(&w, &MemoryCacheStore::default(), &Recorder::default(), 0, &g, &[b]).unwrap();
    assert_eq!(w.runs("unused"), 0);
    assert_eq!(w.total_runs(), 2);
}

#[test]
fn changed_input_invalidates_only_its_downstream() {
    let build = |version: &str| {
        let mut g = Graph::new();
        let a = add(&mut g, &["a"], &[]);
        let mut v = Vertex::new(op(&["b"], &[&format!("VERSION={version}")]), vec![a], "b");
        v.step_id = Some("step-b".into());
        let b = g.add(v);
        let c = add(&mut g, &["c"], &[b]);
        let side = add(&mut g, &["side"], &[a]);
        let top = add(&mut g, &["top"], &[c, side]);
        (g, top, b, c)
    };
    let cache = MemoryCacheStore::default();
    let (g1, top1, ..) = build("1.2");
    solve(&FakeWorker::default(), &cache, &Recorder::default(), 0, &g1, &[top1]).unwrap();

    let (g2, top2, b, c) = build("1.3");
    let (w, rec) = (FakeWorker::default(), Recorder::default());
    solve(&w, &cache, &rec, 0, &g2, &[top2]).unwrap();
    for (l, runs) in [("a", 0), ("b", 1), ("c", 1), ("side", 0), ("top", 1)] {
        assert_eq!(w.runs(l), runs, "{l}");
    }
    assert_eq!(rec.explanations(b), ["env VERSION changed 1.2 → 1.3"]);
    assert_eq!(rec.explanations(c), ["input b changed"]);
}

#[test]
fn proxy_env_is_in_neither_the_key_nor_the_record() {
    let build = |proxy: &str| {
        let mut g = Graph::new();
        let a = add(&mut g, &["a"], &[]);
        let mut v = Vertex::new(op(&["b"], &[]), vec![a], "b");
        v.step_id = Some("step-b".into());
        v.proxy_env = vec![("HTTP_PROXY".into(), proxy.into())];
        let b = g.add(v);
        (g, b)
    };
    let (cache, rec) = (MemoryCacheStore::default(), Recorder::default());
    let (g1, b1) = build("http://a:1");
    let w = FakeWorker::default();
    let solver = Solver::new(&w, &cache, &rec, SolveOptions::default());
    let (_, report) = solver.solve_with_report(&g1, &[b1]).unwrap();
    let key = report.vertices.iter().find(|v| v.vertex == b1).unwrap().key;
    let record = serde_json::to_string(&cache.get(&key).unwrap().unwrap()).unwrap();
    assert!(!record.contains("a:1"), "{record}");

    let (g2, b2) = build("http://b:2");
    let w = FakeWorker::default();
    let solver = Solver::new(&w, &cache, &rec, SolveOptions::default());
    let (_, again) = solver.solve_with_report(&g2, &[b2]).unwrap();
    assert_eq!(w.total_runs(), 0);
    assert_eq!(again.vertices.iter().find(|v| v.vertex == b2).unwrap().key, key);
}

#[test]
fn first_build_and_no_cache_are_explained() {
    let mut g = Graph::new();
    let a = add(&mut g, &["a"], &[]);
    let cache = MemoryCacheStore::default();
    let rec = Recorder::default();
    solve(&FakeWorker::default(), &cache, &rec, 0, &g, &[a]).unwrap();
    assert_eq!(rec.explanations(a), ["first build of this step"]);

    g.vertex_mut(a).ignore_cache = true;
    let (w, rec) = (FakeWorker::default(), Recorder::default());
    solve(&w, &cache, &rec, 0, &g, &[a]).unwrap();
    assert_eq!(w.runs("a"), 1);
    assert_eq!(rec.explanations(a), ["--no-cache"]);
}

#[test]
fn failure_cancels_running_siblings() {
    let mut g = Graph::new();
    let a = add(&mut g, &["a"], &[]);
    let bad = add(&mut g, &["bad", "after:slow", "fail"], &[a]);
    let slow = add(&mut g, &["slow", "wait-cancel"], &[a]);
    let d = add(&mut g, &["d"], &[bad, slow]);
    let (w, rec) = (FakeWorker::default(), Recorder::default());
    let err = solve(&w, &MemoryCacheStore::default(), &rec, 0, &g, &[d]).unwrap_err();
    match &err {
        SolveError::Op { vertex, name, source } => {
            assert_eq!((*vertex, name.as_str()), (bad, "bad"));
            assert_eq!(source.to_string(), "bad failed");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.to_string(), "bad");
    assert!(w.returned.lock().unwrap().contains(&"slow".to_string()), "the sibling returned");
    assert_eq!(w.runs("d"), 0);
    assert!(!solver_cancelled_after_failure(), "a failure cancels only its own solve");
    let events = rec.events();
    let errors: Vec<_> = events.iter().filter(|e| matches!(e, Event::Error { .. })).collect();
    assert_eq!(errors.len(), 1, "only the first failure is reported as an error");
    assert!(matches!(errors[0], Event::Error { vertex, message } if *vertex == bad && message == "bad failed"));
    assert!(events.iter().any(|e| matches!(e, Event::Cancelled { vertex } if *vertex == slow)));
}

#[test]
fn a_panicking_op_fails_the_build() {
    let mut g = Graph::new();
    let a = add(&mut g, &["a", "panic"], &[]);
    let err =
        solve(&FakeWorker::default(), &MemoryCacheStore::default(), &Recorder::default(), 0, &g, &[a]).unwrap_err();
    let SolveError::Op { name, source, .. } = err else { panic!("not an op error") };
    assert_eq!((name.as_str(), source.to_string().as_str()), ("a", "panicked: a exploded"));
}

#[test]
fn identical_vertices_run_once() {
    let mut g = Graph::new();
    let a1 = add(&mut g, &["a", "sleep:20"], &[]);
    let a2 = add(&mut g, &["a", "sleep:20"], &[]);
    let b1 = add(&mut g, &["b"], &[a1]);
    let b2 = add(&mut g, &["b"], &[a2]);
    let top = add(&mut g, &["top"], &[b1, b2]);
    let (w, rec) = (FakeWorker::default(), Recorder::default());
    let out = solve(&w, &MemoryCacheStore::default(), &rec, 0, &g, &[top, b2]).unwrap();
    assert_eq!(out, ["top(b(a()),b(a()))", "b(a())"]);
    assert_eq!((w.runs("a"), w.runs("b"), w.runs("top")), (1, 1, 1));
    // The duplicates are reported as cached.
    assert_eq!(rec.count(|e| matches!(e, Event::Cached { .. })), 2);
}

#[test]
fn jobs_bound_is_respected() {
    let mut g = Graph::new();
    let targets: Vec<VertexId> = (0..6).map(|i| add(&mut g, &[&format!("v{i}"), "sleep:10"], &[])).collect();
    let w = FakeWorker::default();
    solve(&w, &MemoryCacheStore::default(), &Recorder::default(), 2, &g, &targets).unwrap();
    assert_eq!(w.total_runs(), 6);
    assert!(w.max_running.load(Ordering::SeqCst) <= 2);

    // Unbounded, all six meet at a barrier: they did run at once.
    let mut g = Graph::new();
    let targets: Vec<VertexId> = (0..6).map(|i| add(&mut g, &[&format!("v{i}"), "barrier"], &[])).collect();
    let w = FakeWorker::with_barrier(6);
    solve(&w, &MemoryCacheStore::default(), &Recorder::default(), 0, &g, &targets).unwrap();
    assert_eq!(w.max_running.load(Ordering::SeqCst), 6);
}

#[test]
fn events_of_a_vertex_come_in_order() {
    let mut g = Graph::new();
    let a = add(&mut g, &["a"], &[]);
    let rec = Recorder::default();
    solve(&FakeWorker::default(), &MemoryCacheStore::default(), &rec, 0, &g, &[a]).unwrap();
    let kinds: Vec<&str> = rec
        .events()
        .iter()
        .map(|e| match e {
            Event::Started { .. } => "started",
            Event::Explain { .. } => "explain",
            Event::Log { .. } => "log",
            Event::Done { .. } => "done",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["started", "explain", "log", "done"]);
}

#[test]
fn external_cancel_stops_the_build() {
    let mut g = Graph::new();
    let a = add(&mut g, &["a", "wait-cancel"], &[]);
    let b = add(&mut g, &["b"], &[a]);
    let w = FakeWorker::default();
    let (cache, rec) = (MemoryCacheStore::default(), Recorder::default());
    let solver = Solver::new(&w, &cache, &rec, SolveOptions::default());
    let token = solver.cancel_token();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !w.has_started("a") {
                std::thread::sleep(Duration::from_millis(1));
            }
            token.cancel();
        });
        assert!(matches!(solver.solve(&g, &[b]), Err(SolveError::Cancelled)));
    });
    assert_eq!(w.runs("b"), 0);
    assert_eq!(rec.count(|e| matches!(e, Event::Error { .. })), 0);
}

#[test]
fn content_dependencies_count_by_content_and_name_the_file() {
    let mut g = Graph::new();
    let base = add(&mut g, &["base"], &[]);
    let context = add(&mut g, &["context", "sleep:1"], &[]);
    let copy = add(&mut g, &["copy"], &[base, context]);
    let run = add(&mut g, &["run"], &[copy]);
    let cache = MemoryCacheStore::default();
    let files = |list: &[(&str, &str)]| Mutex::new(list.iter().map(|(p, d)| (p.to_string(), d.to_string())).collect());
    let w = FakeWorker { files: files(&[("src/lib.rs", "1"), ("src/main.rs", "2")]), ..Default::default() };
    solve(&w, &cache, &Recorder::default(), 0, &g, &[run]).unwrap();

    // The context's own key changes (its op differs), but only its content counts.
    g.vertex_mut(context).op = op(&["context", "sleep:2"], &[]);
    let w = FakeWorker { files: files(&[("src/lib.rs", "1"), ("src/main.rs", "2")]), ..Default::default() };
    solve(&w, &cache, &Recorder::default(), 0, &g, &[run]).unwrap();
    assert_eq!((w.runs("copy"), w.runs("run")), (0, 0));

    let (rec, w) = (Recorder::default(), FakeWorker { files: files(&[("src/main.rs", "3")]), ..Default::default() });
    solve(&w, &cache, &rec, 0, &g, &[run]).unwrap();
    assert_eq!((w.runs("copy"), w.runs("run")), (1, 1));
    assert_eq!(rec.explanations(copy), ["src/lib.rs removed", "src/main.rs changed (2 → 3)"]);
    assert_eq!(rec.explanations(run), ["input copy changed"]);
}

/// Solves a failing graph and then a good one with the same solver.
fn solver_cancelled_after_failure() -> bool {
    let mut g = Graph::new();
    let bad = add(&mut g, &["bad", "fail"], &[]);
    let good = add(&mut g, &["good"], &[]);
    let (w, cache, rec) = (FakeWorker::default(), MemoryCacheStore::default(), Recorder::default());
    let solver = Solver::new(&w, &cache, &rec, SolveOptions::default());
    assert!(solver.solve(&g, &[bad]).is_err());
    solver.cancel_token().is_cancelled() || solver.solve(&g, &[good]).is_err()
}

#[test]
fn report_names_each_vertex_key_and_whether_it_hit() {
    let mut g = Graph::new();
    let a = add(&mut g, &["a"], &[]);
    let b = add(&mut g, &["b"], &[a]);
    let twin = add(&mut g, &["b"], &[a]);
    let c = add(&mut g, &["c"], &[b, twin]);
    let cache = MemoryCacheStore::default();
    let (w, rec) = (FakeWorker::default(), Recorder::default());
    let solver = Solver::new(&w, &cache, &rec, SolveOptions::default());
    let (_, report) = solver.solve_with_report(&g, &[c]).unwrap();
    let mut seen: Vec<_> = report.vertices.iter().map(|v| (v.vertex, v.cached)).collect();
    seen.sort_by_key(|(v, _)| v.0);
    // The twin of `b` reuses its result within the build.
    assert_eq!(seen.iter().filter(|(v, _)| *v == b || *v == twin).filter(|(_, cached)| *cached).count(), 1);
    assert!(seen.iter().all(|(v, cached)| *v == b || *v == twin || !cached));
    let key_of = |r: &solver::SolveReport, v: VertexId| r.vertices.iter().find(|s| s.vertex == v).unwrap().key;
    assert_eq!(key_of(&report, b), key_of(&report, twin));
    assert!(cache.get(&key_of(&report, c)).unwrap().is_some(), "the reported key is the recorded one");

    let (w2, rec2) = (FakeWorker::default(), Recorder::default());
    let solver = Solver::new(&w2, &cache, &rec2, SolveOptions::default());
    let (_, again) = solver.solve_with_report(&g, &[c]).unwrap();
    assert_eq!(again.vertices.len(), 4);
    assert!(again.vertices.iter().all(|v| v.cached));
    assert_eq!(key_of(&again, c), key_of(&report, c));
}

/// A cache whose every record counts as imported from `type=local,src=/c`.
#[derive(Default)]
struct ImportedCache(MemoryCacheStore);

impl CacheStore for ImportedCache {
    fn get(&self, key: &solver::CacheKey) -> Result<Option<solver::CacheRecord>, solver::cache::CacheStoreError> {
        self.0.get(key)
    }

    fn put(&self, record: &solver::CacheRecord) -> Result<(), solver::cache::CacheStoreError> {
        self.0.put(record)
    }

    fn last_for_step(&self, step_id: &str) -> Result<Option<solver::CacheRecord>, solver::cache::CacheStoreError> {
        self.0.last_for_step(step_id)
    }

    fn hit_source(&self, key: &solver::CacheKey) -> Option<String> {
        self.0.get(key).unwrap().map(|_| "type=local,src=/c".to_string())
    }
}

#[test]
fn cached_events_name_the_imported_cache_a_hit_came_from() {
    let mut g = Graph::new();
    let a = add(&mut g, &["a"], &[]);
    let b = add(&mut g, &["b"], &[a]);
    let twin = add(&mut g, &["b"], &[a]);
    let c = add(&mut g, &["c"], &[b, twin]);
    let cache = ImportedCache::default();
    solve(&FakeWorker::default(), &cache, &Recorder::default(), 0, &g, &[c]).unwrap();

    let rec = Recorder::default();
    solve(&FakeWorker::default(), &cache, &rec, 0, &g, &[c]).unwrap();
    let mut sources: Vec<(VertexId, Option<String>)> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Cached { vertex, source, .. } => Some((vertex.graph().unwrap(), source)),
            _ => None,
        })
        .collect();
    sources.sort_by_key(|(v, _)| v.0);
    let imported = Some("type=local,src=/c".to_string());
    // The twin of `b` reuses b's hit within the build, so it came from there too.
    assert_eq!(sources, [(a, imported.clone()), (b, imported.clone()), (twin, imported.clone()), (c, imported)]);
}

#[test]
fn local_hits_name_no_source() {
    let mut g = Graph::new();
    let a = add(&mut g, &["a"], &[]);
    let cache = MemoryCacheStore::default();
    solve(&FakeWorker::default(), &cache, &Recorder::default(), 0, &g, &[a]).unwrap();
    let rec = Recorder::default();
    solve(&FakeWorker::default(), &cache, &rec, 0, &g, &[a]).unwrap();
    assert!(matches!(rec.events().as_slice(), [Event::Started { .. }, Event::Cached { source: None, .. }]));
}
