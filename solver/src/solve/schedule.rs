//! Parallel scheduling: which vertex is worked on when.
//!
//! The calling thread coordinates and owns all the state; the work on a vertex runs on
//! scoped threads that report back over a channel. A vertex goes through two tasks:
//! `Key` once its inputs are solved (cache map, content digests, key), then `Run`
//! (cache lookup, and the op on a miss). Between the two the coordinator dedupes by
//! key, so identical vertices run once: later ones wait for the first one's result
//! without holding a job slot.

use super::{CancelToken, Keyed, Outcome, SolveError, SolveReport, Solved, SolvedVertex, Solver, Worker};
use crate::graph::{Graph, VertexId};
use crate::key::{CacheKey, KeyHasher};
use crate::progress::Event;
use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How often the coordinator passes a cancel from [`Solver::cancel_token`] on to
/// the running ops while it waits for them.
const CANCEL_POLL: Duration = Duration::from_millis(20);

enum Task {
    Key(VertexId),
    Run(VertexId),
}

/// What a task sends back; each spawned task sends exactly one.
enum Report<O> {
    Keyed(VertexId, Result<Keyed, SolveError>),
    /// The output, and whether (and from where) it came from the cache.
    Ran(VertexId, Result<(O, Outcome), SolveError>),
}

/// Who has a key in this build: a vertex is running it (others with the same key
/// wait for it), or it is solved. A solved key remembers the imported cache its
/// result came from, so the vertices that reuse it say so too.
enum KeyState {
    Running { followers: Vec<VertexId> },
    Solved { first: VertexId, source: Option<String> },
}

struct State<'s, 'a, W: Worker> {
    solver: &'s Solver<'a, W>,
    graph: &'s Graph,
    unsolved_inputs: Vec<usize>,
    dependents: Vec<Vec<VertexId>>,
    keys: Vec<Option<CacheKey>>,
    facts: Vec<Vec<(String, String)>>,
    keyed: Vec<Option<Keyed>>,
    solved: Vec<Option<Solved<W::Output>>>,
    started: Vec<Option<Instant>>,
    finished: Vec<bool>,
    report: SolveReport,
    by_key: HashMap<CacheKey, KeyState>,
    ready: VecDeque<Task>,
    running: usize,
    first_error: Option<SolveError>,
    /// What the ops of this solve poll: set by the first failure, or by a cancel of
    /// the solver's own token.
    cancel: CancelToken,
}

pub(crate) fn run<W: Worker>(
    solver: &Solver<'_, W>,
    graph: &Graph,
    targets: &[VertexId],
) -> Result<(Vec<W::Output>, SolveReport), SolveError> {
    let mut state = State::new(solver, graph, targets);
    let (tx, rx) = mpsc::channel::<Report<W::Output>>();
    thread::scope(|scope| {
        loop {
            while state.may_start() {
                let Some(task) = state.ready.pop_front() else { break };
                state.running += 1;
                let tx = tx.clone();
                match task {
                    Task::Key(id) => {
                        let inputs = state.inputs_of(id);
                        let start = Instant::now();
                        state.started[id.0] = Some(start);
                        let name = graph.vertex(id).name.clone();
                        solver.progress.event(Event::Started { vertex: id.into(), name });
                        scope.spawn(move || {
                            let result = guarded(graph, id, || solver.key_vertex(graph, id, &inputs));
                            let _ = tx.send(Report::Keyed(id, result));
                        });
                    }
                    Task::Run(id) => {
                        let inputs = state.inputs_of(id).into_iter().map(|s| s.output).collect();
                        let keyed = state.keyed[id.0].take().expect("keyed before run");
                        let start = state.started[id.0].expect("started before run");
                        let cancel = state.cancel.clone();
                        scope.spawn(move || {
                            let run = || solver.run_vertex(graph, id, keyed, inputs, start, &cancel);
                            let result = guarded(graph, id, run);
                            let _ = tx.send(Report::Ran(id, result));
                        });
                    }
                }
            }
            if state.running == 0 {
                break;
            }
            match rx.recv_timeout(CANCEL_POLL) {
                Ok(report) => {
                    state.running -= 1;
                    state.handle(report);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("the coordinator holds a sender"),
            }
            if solver.cancel.is_cancelled() {
                state.cancel.cancel();
            }
        }
    });
    state.finish(targets)
}

/// Runs `f`, turning a panic into the vertex's error so one broken op cannot hang
/// the build.
fn guarded<T>(graph: &Graph, id: VertexId, f: impl FnOnce() -> Result<T, SolveError>) -> Result<T, SolveError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".to_string());
        Err(SolveError::Op {
            vertex: id,
            name: graph.vertex(id).name.clone(),
            source: format!("panicked: {message}").into(),
        })
    })
}

impl<'s, 'a, W: Worker> State<'s, 'a, W> {
    fn new(solver: &'s Solver<'a, W>, graph: &'s Graph, targets: &[VertexId]) -> Self {
        let n = graph.len();
        let mut state = State {
            solver,
            graph,
            unsolved_inputs: vec![0; n],
            dependents: vec![Vec::new(); n],
            keys: vec![None; n],
            facts: vec![Vec::new(); n],
            keyed: (0..n).map(|_| None).collect(),
            solved: (0..n).map(|_| None).collect(),
            started: vec![None; n],
            finished: vec![false; n],
            report: SolveReport::default(),
            by_key: HashMap::new(),
            ready: VecDeque::new(),
            running: 0,
            first_error: None,
            cancel: CancelToken::default(),
        };
        // `ancestors` is closed under inputs, so every input of a needed vertex is
        // needed too. An input listed twice is counted (and released) twice.
        for id in graph.ancestors(targets) {
            let inputs = &graph.vertex(id).inputs;
            state.unsolved_inputs[id.0] = inputs.len();
            for input in inputs {
                state.dependents[input.0].push(id);
            }
            if inputs.is_empty() {
                state.ready.push_back(Task::Key(id));
            }
        }
        state
    }

    fn may_start(&self) -> bool {
        let jobs = self.solver.options.jobs;
        !self.stopping() && (jobs == 0 || self.running < jobs)
    }

    fn stopping(&self) -> bool {
        self.first_error.is_some() || self.cancel.is_cancelled() || self.solver.cancel.is_cancelled()
    }

    fn inputs_of(&self, id: VertexId) -> Vec<Solved<W::Output>> {
        let solved = |i: &VertexId| self.solved[i.0].as_ref().expect("inputs are solved first");
        self.graph
            .vertex(id)
            .inputs
            .iter()
            .map(solved)
            .map(|s| Solved { key: s.key, output: s.output.clone(), facts: s.facts.clone() })
            .collect()
    }

    fn handle(&mut self, report: Report<W::Output>) {
        match report {
            Report::Keyed(id, Ok(keyed)) => self.keyed(id, keyed),
            Report::Ran(id, Ok((output, outcome))) => self.ran(id, output, outcome),
            Report::Keyed(id, Err(e)) | Report::Ran(id, Err(e)) => self.failed(id, e),
        }
    }

    fn keyed(&mut self, id: VertexId, keyed: Keyed) {
        if self.stopping() {
            return; // The vertex is reported cancelled.
        }
        let key = keyed.key;
        self.keys[id.0] = Some(key);
        self.facts[id.0] = keyed.facts.clone();
        match self.by_key.get_mut(&key) {
            Some(KeyState::Solved { first, source }) => {
                let output = self.solved[first.0].as_ref().expect("solved").output.clone();
                let source = source.clone();
                self.reuse(id, key, output, source);
            }
            Some(KeyState::Running { followers }) => followers.push(id),
            None => {
                self.by_key.insert(key, KeyState::Running { followers: Vec::new() });
                self.keyed[id.0] = Some(keyed);
                self.ready.push_back(Task::Run(id));
            }
        }
    }

    fn ran(&mut self, id: VertexId, output: W::Output, outcome: Outcome) {
        let key = self.keys[id.0].expect("keyed before run");
        let (cached, source) = match outcome {
            Outcome::Ran => (false, None),
            Outcome::Cached { source } => (true, source),
        };
        let solved = KeyState::Solved { first: id, source: source.clone() };
        if let Some(KeyState::Running { followers }) = self.by_key.insert(key, solved) {
            for follower in followers {
                self.reuse(follower, key, output.clone(), source.clone());
            }
        }
        self.report.vertices.push(SolvedVertex { vertex: id, key, cached });
        self.complete(id, key, output);
    }

    /// Solves `id` with the output of an identical vertex solved in this build
    /// (`source`: the imported cache that vertex's hit came from, if any).
    fn reuse(&mut self, id: VertexId, key: CacheKey, output: W::Output, source: Option<String>) {
        let name = self.graph.vertex(id).name.clone();
        self.solver.progress.event(Event::Cached { vertex: id.into(), name, source });
        self.report.vertices.push(SolvedVertex { vertex: id, key, cached: true });
        self.complete(id, key, output);
    }

    fn complete(&mut self, id: VertexId, key: CacheKey, output: W::Output) {
        let facts = std::mem::take(&mut self.facts[id.0]);
        // Dependents key on what this vertex produced, not only on how: a step forced
        // to re-run (`--no-cache-filter`) with a different result invalidates them,
        // while one that reproduces its result byte for byte does not.
        let worker = self.solver.worker;
        let key = if worker.cacheable(self.graph.vertex(id)) {
            let mut h = KeyHasher::new("result");
            h.key(&key);
            h.bytes(&worker.encode_result(&output));
            h.finish()
        } else {
            key
        };
        self.solved[id.0] = Some(Solved { key, output, facts });
        self.finished[id.0] = true;
        for dependent in std::mem::take(&mut self.dependents[id.0]) {
            self.unsolved_inputs[dependent.0] -= 1;
            if self.unsolved_inputs[dependent.0] == 0 {
                self.ready.push_back(Task::Key(dependent));
            }
        }
    }

    /// The first failure is the build's error and cancels the rest; failures after
    /// that (ops that stopped because of the cancel) are its consequences.
    fn failed(&mut self, id: VertexId, error: SolveError) {
        if self.stopping() {
            return;
        }
        let message = match &error {
            SolveError::Op { source, .. } => error_chain(source.as_ref()),
            other => error_chain(other),
        };
        self.solver.progress.event(Event::Error { vertex: id.into(), message });
        self.finished[id.0] = true;
        self.first_error = Some(error);
        self.cancel.cancel();
    }

    fn finish(mut self, targets: &[VertexId]) -> Result<(Vec<W::Output>, SolveReport), SolveError> {
        for (i, started) in self.started.iter().enumerate() {
            if started.is_some() && !self.finished[i] {
                self.solver.progress.event(Event::Cancelled { vertex: VertexId(i).into() });
            }
        }
        if let Some(error) = self.first_error.take() {
            return Err(error);
        }
        let outputs = targets
            .iter()
            .map(|t| self.solved[t.0].as_ref().map(|s| s.output.clone()).ok_or(SolveError::Cancelled))
            .collect::<Result<_, _>>()?;
        Ok((outputs, self.report))
    }
}

/// `error: cause: cause`, the way a user reads it.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
