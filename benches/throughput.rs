//! End-to-end throughput of the batcher against the token chain's ceiling (issue 5).
//!
//! Each checkpoint consumes the token and returns the next, so one call can be in flight per
//! execution and throughput is bounded by the updates one call may carry. This benchmark
//! measures how close the batcher runs to that bound, and what it costs on top of the backend.
//!
//! # Workload
//!
//! C tasks each run K steps in sequence. A step submits a STEP START without waiting for it,
//! then awaits a STEP SUCCEED carrying a payload: two updates per step, as the official SDKs
//! send them. The backend ([`BenchBackend`]) is in process and answers each checkpoint after
//! L milliseconds of a real `tokio::time::sleep`, checking the token chain and counting calls,
//! updates, bytes and its own mean call time (timers round up, so the time is measured, not
//! assumed).
//!
//! The ceiling is `min(C, max_batch_updates / 2) / mean_call_time` steps per second, measured
//! in the same run; in the large-payload scenario the byte limit closes batches first, so its
//! ceiling also counts how many steps fit in `max_batch_bytes`. Every scenario runs beside a
//! **naive baseline**: a mutex around the token and one call per update, as a handler without
//! a batcher would do. The baseline is slow by nature (two round trips per step, serialized),
//! so it runs a bounded sample: the same workload, cut off after a time cap.
//!
//! # Running
//!
//! `cargo bench --all-features --bench throughput` prints one markdown table. `BENCH_QUICK=1`
//! shrinks every scenario (a smoke run under 30 s). `--json` (or `BENCH_JSON=1`) writes the rows
//! as JSON to standard output and the table to standard error; `--json=PATH` (or
//! `BENCH_JSON=PATH`) writes them to a file. `BENCH_RUNS=n` sets how many times each scenario
//! runs; the run with the median throughput is reported. `BENCH_SCENARIO=name` runs only the
//! scenarios whose name contains it, and `BENCH_NAIVE=0` skips the baselines (for profiling).
//!
//! Scenarios run on a multi-threaded runtime with 2 workers, except the "one core" rows: the
//! concurrent, saturated and service-like workloads again on a `current_thread` runtime, the
//! workload and the batcher on one thread, as a handler on a small Lambda runs them
//! (`BENCH_SCENARIO=one`). The **service-like round trip** rows (C=1000, K=10, L=20 ms) are
//! what users see in Lambda: a call as slow as the service's, the acknowledgement's p99 beside
//! the ratio.
//!
//! The **real path** rows (`BENCH_SCENARIO="real path"`, need `--all-features`) run the step
//! workload (C=1000 and C=100) through `RealBackend`, `aws-sdk-lambda` and loopback HTTP to the
//! emulator in a child process, each beside its **floor** (the same updates in calls of the
//! same size, through `RealBackend` with no batcher), and report the client's CPU per update
//! with and without the batcher, their ratio, and the emulator's CPU per update (see
//! `throughput/real_path.rs`). `BENCH_PROFILE=1` skips the cross-core timing, which would spin
//! for minutes under valgrind.

use std::env;
use std::fmt::{self, Write as _};
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::internals::{envelope_bytes, request_bytes, update_bytes};
use tokio::sync::Barrier;

use checkpoint_batcher::{
    BackendError, BatcherConfig, BatcherHandle, CheckpointBatcher, DurableBackend, ErrorKind,
};

#[path = "common/emulator_process.rs"]
mod emulator_process;
#[path = "throughput/real_path.rs"]
mod real_path;

type Error = Box<dyn std::error::Error + Send + Sync>;

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:bench/durable-execution/e/1";
/// The client tokens the batcher generates are this long; the baseline uses the same length.
const CLIENT_TOKEN_LEN: usize = 32;
const SMALL_PAYLOAD: &str = r#"{"result":42}"#;

/// An in-process checkpoint API that answers after a fixed latency and checks the token chain.
#[derive(Debug)]
struct BenchBackend {
    latency: Duration,
    /// Whether to count request bytes with `size::request_bytes` (costs a pass over every
    /// update, so the overhead scenario leaves it off).
    measure_bytes: bool,
    token: Mutex<(u64, String)>,
    busy: AtomicBool,
    calls: AtomicU64,
    updates: AtomicU64,
    call_nanos: AtomicU64,
    /// Calls that overlapped another, or carried a stale token: both must stay zero.
    violations: AtomicU64,
    /// Request body bytes of each call, when measured.
    requests: Mutex<Vec<usize>>,
    /// When calls started and ended, to split a run's time into calls, the gaps between them,
    /// and the lead-in and tail around them.
    timeline: Mutex<Timeline>,
}

#[derive(Debug, Default)]
struct Timeline {
    first_start: Option<Instant>,
    last_end: Option<Instant>,
    gaps: Duration,
    /// Updates in each call, in order.
    batches: Vec<usize>,
}

fn token_for(n: u64) -> String {
    format!("VE9LRU4{n:016}")
}

impl BenchBackend {
    fn new(latency: Duration, measure_bytes: bool) -> Self {
        Self {
            latency,
            measure_bytes,
            token: Mutex::new((0, token_for(0))),
            busy: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            updates: AtomicU64::new(0),
            call_nanos: AtomicU64::new(0),
            violations: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            timeline: Mutex::new(Timeline::default()),
        }
    }

    fn current_token(&self) -> String {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    fn mean_call(&self) -> Duration {
        let calls = self.calls.load(Ordering::Relaxed).max(1);
        Duration::from_nanos(self.call_nanos.load(Ordering::Relaxed) / calls)
    }
}

#[async_trait]
impl DurableBackend for BenchBackend {
    async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        self.batch_checkpoint(arn, checkpoint_token, &updates, client_token.unwrap_or("-"))
            .await
    }

    async fn batch_checkpoint(
        &self,
        _arn: &str,
        checkpoint_token: &str,
        updates: &[OperationUpdate],
        client_token: &str,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        let started = Instant::now();
        {
            let mut timeline = self.timeline.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = timeline.first_start.get_or_insert(started);
            timeline.batches.push(updates.len());
            if let Some(end) = timeline.last_end {
                timeline.gaps += started.saturating_duration_since(end);
            }
        }
        if self.busy.swap(true, Ordering::AcqRel) {
            let _ = self.violations.fetch_add(1, Ordering::Relaxed);
        }
        if self.measure_bytes {
            let bytes = request_bytes(checkpoint_token, client_token, updates);
            self.requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(bytes);
        }
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let next = {
            let mut token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
            if token.1 != checkpoint_token {
                let _ = self.violations.fetch_add(1, Ordering::Relaxed);
                self.busy.store(false, Ordering::Release);
                return Err(BackendError::new(
                    ErrorKind::InvalidCheckpointToken,
                    "Invalid checkpoint token",
                ));
            }
            token.0 += 1;
            token.1 = token_for(token.0);
            token.1.clone()
        };
        let _ = self.calls.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .updates
            .fetch_add(updates.len() as u64, Ordering::Relaxed);
        let ended = Instant::now();
        let elapsed = u64::try_from((ended - started).as_nanos()).unwrap_or(u64::MAX);
        let _ = self.call_nanos.fetch_add(elapsed, Ordering::Relaxed);
        self.timeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_end = Some(ended);
        self.busy.store(false, Ordering::Release);
        Ok(CheckpointDurableExecutionOutput::builder()
            .checkpoint_token(next)
            .build())
    }

    async fn get_execution_state(
        &self,
        _arn: &str,
        _checkpoint_token: &str,
        _marker: Option<&str>,
        _max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        GetDurableExecutionStateOutput::builder()
            .set_operations(Some(Vec::new()))
            .build()
            .map_err(|e| BackendError::new(ErrorKind::Rejected, e.to_string()))
    }
}

/// What a scenario must reach.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// Ratio to the ceiling at least this.
    Ratio(f64),
    /// Ratio to the ceiling, and speed-up over the naive baseline, at least these.
    RatioAndSpeedup(f64, f64),
    /// Updates acknowledged per second at least this.
    UpdatesPerSecond(f64),
    /// Every request within `max_batch_bytes`, and batches at least this full by bytes.
    Fill(f64),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ratio(r) => write!(f, "ratio ≥ {r}"),
            Self::RatioAndSpeedup(r, s) => write!(f, "ratio ≥ {r}, ≥ {s}× naive"),
            Self::UpdatesPerSecond(u) => write!(f, "≥ {:.1}M updates/s", u / 1e6),
            Self::Fill(p) => write!(f, "≤ max bytes, ≥ {:.0} % full", p * 100.0),
        }
    }
}

/// The runtime a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    /// Multi-threaded, 2 workers.
    MultiThread,
    /// `current_thread`: the workload and the batcher on one thread, as a small Lambda runs them.
    CurrentThread,
}

impl Flavour {
    fn label(self) -> &'static str {
        match self {
            Self::MultiThread => "multi_thread(2)",
            Self::CurrentThread => "current_thread",
        }
    }
}

#[derive(Clone, Debug)]
struct Scenario {
    name: &'static str,
    tasks: usize,
    steps: usize,
    latency: Duration,
    payload_bytes: usize,
    target: Target,
    runtime: Flavour,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (C={}, K={}, L={} ms",
            self.name,
            self.tasks,
            self.steps,
            self.latency.as_millis()
        )?;
        if self.payload_bytes > SMALL_PAYLOAD.len() {
            write!(f, ", {} KiB payloads", self.payload_bytes / 1024)?;
        }
        if self.runtime == Flavour::CurrentThread {
            write!(f, ", current_thread")?;
        }
        write!(f, ")")
    }
}

fn scenarios(quick: bool) -> Vec<Scenario> {
    let ms = Duration::from_millis;
    // Quick runs keep C (it decides the batch shapes) and shrink K.
    let k = |full: usize, small: usize| if quick { small } else { full };
    vec![
        Scenario {
            name: "sequential",
            tasks: 1,
            steps: k(200, 30),
            latency: ms(5),
            payload_bytes: SMALL_PAYLOAD.len(),
            target: Target::Ratio(0.95),
            runtime: Flavour::MultiThread,
        },
        Scenario {
            name: "concurrent",
            tasks: 100,
            steps: k(20, 5),
            latency: ms(5),
            payload_bytes: SMALL_PAYLOAD.len(),
            target: Target::Ratio(0.96),
            runtime: Flavour::MultiThread,
        },
        Scenario {
            name: "saturated",
            tasks: 1000,
            steps: k(5, 2),
            latency: ms(5),
            payload_bytes: SMALL_PAYLOAD.len(),
            target: Target::RatioAndSpeedup(0.98, 100.0),
            runtime: Flavour::MultiThread,
        },
        Scenario {
            name: "overhead",
            tasks: 1000,
            steps: k(100, 20),
            latency: Duration::ZERO,
            payload_bytes: SMALL_PAYLOAD.len(),
            target: Target::UpdatesPerSecond(2_000_000.0),
            runtime: Flavour::MultiThread,
        },
        Scenario {
            name: "large payloads",
            tasks: 200,
            steps: k(5, 2),
            latency: ms(5),
            payload_bytes: 64 * 1024,
            target: Target::Fill(0.90),
            runtime: Flavour::MultiThread,
        },
        Scenario {
            name: "service-like round trip",
            tasks: 1000,
            steps: k(10, 3),
            latency: ms(20),
            payload_bytes: SMALL_PAYLOAD.len(),
            target: Target::Ratio(0.99),
            runtime: Flavour::MultiThread,
        },
        Scenario {
            name: "concurrent, one core",
            tasks: 100,
            steps: k(20, 5),
            latency: ms(5),
            payload_bytes: SMALL_PAYLOAD.len(),
            target: Target::Ratio(0.96),
            runtime: Flavour::CurrentThread,
        },
        Scenario {
            name: "saturated, one core",
            tasks: 1000,
            steps: k(5, 2),
            latency: ms(5),
            payload_bytes: SMALL_PAYLOAD.len(),
            target: Target::RatioAndSpeedup(0.98, 100.0),
            runtime: Flavour::CurrentThread,
        },
        Scenario {
            name: "service-like round trip, one core",
            tasks: 1000,
            steps: k(10, 3),
            latency: ms(20),
            payload_bytes: SMALL_PAYLOAD.len(),
            target: Target::Ratio(0.99),
            runtime: Flavour::CurrentThread,
        },
    ]
}

fn payload(bytes: usize) -> String {
    if bytes <= SMALL_PAYLOAD.len() {
        SMALL_PAYLOAD.to_owned()
    } else {
        "x".repeat(bytes)
    }
}

/// The Id of one step: `t{task}-s{step}`, shared by its START and SUCCEED. Sized up front: a
/// bare `format!` grows its buffer twice, which showed in the overhead profile.
fn step_id(task: usize, step: usize) -> String {
    let mut id = String::with_capacity(24);
    let _ = write!(id, "t{task}-s{step}");
    id
}

fn update(
    id: String,
    action: OperationAction,
    payload: Option<&str>,
) -> Result<OperationUpdate, Error> {
    Ok(OperationUpdate::builder()
        .id(id)
        .r#type(OperationType::Step)
        .action(action)
        .set_payload(payload.map(str::to_owned))
        .build()?)
}

/// What one run of a workload measured.
#[derive(Clone, Debug, Default)]
struct Run {
    steps: u64,
    elapsed: Duration,
    calls: u64,
    updates: u64,
    mean_call: Duration,
    /// Acknowledgement latency of each awaited SUCCEED, in microseconds, sorted.
    latencies: Vec<u32>,
    /// Request body bytes of each call (when measured).
    requests: Vec<usize>,
    violations: u64,
    /// From the start of the run to the first call.
    lead: Duration,
    /// Mean time between the end of one call and the start of the next: what the batcher and
    /// the callers add per round trip.
    gap: Duration,
    /// From the end of the last call to the end of the run.
    tail: Duration,
    /// Updates in each call, in order.
    batches: Vec<usize>,
}

impl Run {
    fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        Duration::from_micros(u64::from(self.latencies[rank - 1]))
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// One task of the batcher workload: K steps, each a fire-and-forget START and an awaited
/// SUCCEED.
async fn batcher_task(
    handle: BatcherHandle,
    task: usize,
    steps: usize,
    payload: Arc<str>,
    gate: Arc<Barrier>,
) -> Result<Vec<u32>, Error> {
    let mut latencies = Vec::with_capacity(steps);
    let _ = gate.wait().await;
    for step in 0..steps {
        let id = step_id(task, step);
        let start = update(id.clone(), OperationAction::Start, None)?;
        drop(handle.submit(start).await?);
        let succeed = update(id, OperationAction::Succeed, Some(&payload))?;
        let submitted = Instant::now();
        let _ack = handle.checkpoint(succeed).await?;
        latencies.push(micros(submitted.elapsed()));
    }
    Ok(latencies)
}

/// One workload task's handle: the acknowledgement latencies of its steps.
type WorkloadTask = tokio::task::JoinHandle<Result<Vec<u32>, Error>>;

/// Spawns the workload's `tasks` tasks of `steps` steps each. They wait behind the returned
/// barrier, whose last party is the caller, so that they all start when it is released.
fn spawn_workload(
    handle: &BatcherHandle,
    tasks: usize,
    steps: usize,
    payload: &str,
) -> (Vec<WorkloadTask>, Arc<Barrier>) {
    let payload: Arc<str> = payload.into();
    let gate = Arc::new(Barrier::new(tasks + 1));
    let spawned = (0..tasks)
        .map(|task| {
            tokio::spawn(batcher_task(
                handle.clone(),
                task,
                steps,
                Arc::clone(&payload),
                Arc::clone(&gate),
            ))
        })
        .collect();
    (spawned, gate)
}

/// Runs a workload as a handler runs: as a task on a worker, so the tasks it spawns start on
/// that worker's queue (`block_on` would run it on the main thread, outside the workers).
fn on_worker<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    workload: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    runtime.block_on(async { tokio::spawn(workload).await? })
}

async fn run_batcher(scenario: Scenario, config: BatcherConfig) -> Result<Run, Error> {
    let scenario = &scenario;
    let backend = Arc::new(BenchBackend::new(
        scenario.latency,
        !scenario.latency.is_zero(),
    ));
    let token = backend.current_token();
    let handle = CheckpointBatcher::spawn(backend.clone(), ARN, token, config)?;
    let (tasks, gate) = spawn_workload(
        &handle,
        scenario.tasks,
        scenario.steps,
        &payload(scenario.payload_bytes),
    );
    // The clock starts once every task is spawned and waiting: spawning is not the batcher's
    // cost, and tasks that start one by one would make the first batches ragged.
    let _ = gate.wait().await;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(scenario.tasks * scenario.steps);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let ended = Instant::now();
    let elapsed = ended - started;
    let report = handle.shutdown().await?;
    let (lead, gap, tail) = phases(&backend, started, ended);
    latencies.sort_unstable();
    let steps = (scenario.tasks * scenario.steps) as u64;
    assert_eq!(
        report.stats.updates,
        2 * steps,
        "every update must be acknowledged"
    );
    Ok(Run {
        steps,
        elapsed,
        calls: backend.calls.load(Ordering::Relaxed),
        updates: backend.updates.load(Ordering::Relaxed),
        mean_call: backend.mean_call(),
        latencies,
        requests: mem_take(&backend.requests),
        violations: backend.violations.load(Ordering::Relaxed),
        lead,
        gap,
        tail,
        batches: mem_take(&backend.timeline).batches,
    })
}

/// The lead-in, mean gap and tail of a run that started at `started` and ended at `ended`.
fn phases(
    backend: &BenchBackend,
    started: Instant,
    ended: Instant,
) -> (Duration, Duration, Duration) {
    let timeline = backend
        .timeline
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let calls = u32::try_from(backend.calls.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
    let lead = timeline
        .first_start
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(started));
    let tail = timeline
        .last_end
        .map_or(Duration::ZERO, |t| ended.saturating_duration_since(t));
    let gap = timeline.gaps / calls.saturating_sub(1).max(1);
    (lead, gap, tail)
}

fn mem_take<T: Default>(slot: &Mutex<T>) -> T {
    std::mem::take(&mut *slot.lock().unwrap_or_else(PoisonError::into_inner))
}

/// A handler without a batcher: a mutex around the token, one call per update.
#[derive(Debug)]
struct Naive {
    backend: Arc<BenchBackend>,
    token: tokio::sync::Mutex<String>,
    client_tokens: AtomicU64,
    /// When the sample ends (set when the tasks start): calls that get the lock later are not
    /// made.
    deadline: OnceLock<Instant>,
}

impl Naive {
    /// One checkpoint call carrying `update`; `false` when the sample had ended.
    async fn call(&self, update: OperationUpdate) -> Result<bool, Error> {
        let mut token = self.token.lock().await;
        if self.deadline.get().is_some_and(|&d| Instant::now() >= d) {
            return Ok(false);
        }
        let client_token = format!(
            "{:0width$x}",
            self.client_tokens.fetch_add(1, Ordering::Relaxed),
            width = CLIENT_TOKEN_LEN
        );
        let output = self
            .backend
            .batch_checkpoint(ARN, &token, std::slice::from_ref(&update), &client_token)
            .await?;
        *token = output.checkpoint_token.ok_or("the chain ended")?;
        Ok(true)
    }
}

async fn naive_task(
    naive: Arc<Naive>,
    task: usize,
    steps: usize,
    payload: Arc<str>,
    done: Arc<AtomicU64>,
    gate: Arc<Barrier>,
) -> Result<Vec<u32>, Error> {
    let mut latencies = Vec::new();
    let _ = gate.wait().await;
    for step in 0..steps {
        let id = step_id(task, step);
        let start = update(id.clone(), OperationAction::Start, None)?;
        if !naive.call(start).await? {
            break;
        }
        let succeed = update(id, OperationAction::Succeed, Some(&payload))?;
        let submitted = Instant::now();
        if !naive.call(succeed).await? {
            break;
        }
        latencies.push(micros(submitted.elapsed()));
        let _ = done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latencies)
}

async fn run_naive(scenario: Scenario, cap: Duration) -> Result<Run, Error> {
    let scenario = &scenario;
    let backend = Arc::new(BenchBackend::new(scenario.latency, false));
    let naive = Arc::new(Naive {
        token: tokio::sync::Mutex::new(backend.current_token()),
        backend: Arc::clone(&backend),
        client_tokens: AtomicU64::new(0),
        deadline: OnceLock::new(),
    });
    let gate = Arc::new(Barrier::new(scenario.tasks + 1));
    let payload: Arc<str> = payload(scenario.payload_bytes).into();
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..scenario.tasks)
        .map(|task| {
            tokio::spawn(naive_task(
                Arc::clone(&naive),
                task,
                scenario.steps,
                Arc::clone(&payload),
                Arc::clone(&done),
                Arc::clone(&gate),
            ))
        })
        .collect();
    let _ = gate.wait().await;
    let started = Instant::now();
    let _ = naive.deadline.set(started + cap);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let ended = Instant::now();
    let elapsed = ended - started;
    let (lead, gap, tail) = phases(&backend, started, ended);
    latencies.sort_unstable();
    Ok(Run {
        steps: done.load(Ordering::Relaxed),
        elapsed,
        calls: backend.calls.load(Ordering::Relaxed),
        updates: backend.updates.load(Ordering::Relaxed),
        mean_call: backend.mean_call(),
        latencies,
        requests: Vec::new(),
        violations: backend.violations.load(Ordering::Relaxed),
        lead,
        gap,
        tail,
        batches: mem_take(&backend.timeline).batches,
    })
}

/// One row of the table: the median batcher run beside the baseline.
#[derive(Debug)]
struct Row {
    scenario: Scenario,
    batcher: Run,
    naive: Run,
    naive_capped: bool,
    /// Cores' worth of CPU that other processes used while the scenario ran.
    foreign: Option<f64>,
    /// Steps per call the limits allow (count, or bytes when smaller).
    steps_per_call: f64,
    max_batch_bytes: usize,
}

impl Row {
    fn ceiling(&self) -> Option<f64> {
        if self.scenario.latency.is_zero() {
            return None;
        }
        Some(self.steps_per_call / self.batcher.mean_call.as_secs_f64())
    }

    fn ratio(&self) -> Option<f64> {
        self.ceiling().map(|c| self.batcher.steps_per_second() / c)
    }

    /// The baseline's rate in steps per second: the calls it completed, two per step, over
    /// its sample. With C tasks queued on one mutex, the first steps only finish after C
    /// STARTs (saturated: 1000 × 6 ms), so counting completed steps in a time-capped sample
    /// would understate it; in the long run it completes one step per two calls whatever C.
    fn naive_steps_per_second(&self) -> f64 {
        self.naive.updates as f64 / 2.0 / self.naive.elapsed.as_secs_f64()
    }

    fn speedup(&self) -> f64 {
        self.batcher.steps_per_second() / self.naive_steps_per_second()
    }

    fn updates_per_second(&self) -> f64 {
        self.batcher.updates as f64 / self.batcher.elapsed.as_secs_f64()
    }

    fn mean_batch(&self) -> f64 {
        self.batcher.updates as f64 / self.batcher.calls.max(1) as f64
    }

    /// Mean fill by bytes of every request but the last, which only drains the tail.
    fn fill(&self) -> Option<f64> {
        let requests = &self.batcher.requests;
        let body = requests.get(..requests.len().saturating_sub(1))?;
        if body.is_empty() {
            return None;
        }
        let sum: usize = body.iter().sum();
        Some(sum as f64 / body.len() as f64 / self.max_batch_bytes as f64)
    }

    /// The least full request, the last excepted.
    fn min_fill(&self) -> Option<f64> {
        let requests = &self.batcher.requests;
        let body = requests.get(..requests.len().saturating_sub(1))?;
        body.iter()
            .min()
            .map(|&b| b as f64 / self.max_batch_bytes as f64)
    }

    fn largest_request(&self) -> usize {
        self.batcher.requests.iter().copied().max().unwrap_or(0)
    }

    fn met(&self) -> bool {
        let sound = self.batcher.violations == 0 && self.naive.violations == 0;
        sound
            && match self.scenario.target {
                Target::Ratio(r) => self.ratio().is_some_and(|x| x >= r),
                Target::RatioAndSpeedup(r, s) => {
                    self.ratio().is_some_and(|x| x >= r) && self.speedup() >= s
                }
                Target::UpdatesPerSecond(u) => self.updates_per_second() >= u,
                Target::Fill(p) => {
                    self.largest_request() <= self.max_batch_bytes
                        && self.fill().is_some_and(|f| f >= p)
                }
            }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": self.scenario.name,
            "runtime": self.scenario.runtime.label(),
            "tasks": self.scenario.tasks,
            "steps_per_task": self.scenario.steps,
            "latency_ms": self.scenario.latency.as_secs_f64() * 1000.0,
            "payload_bytes": self.scenario.payload_bytes,
            "steps": self.batcher.steps,
            "elapsed_s": self.batcher.elapsed.as_secs_f64(),
            "steps_per_s": self.batcher.steps_per_second(),
            "updates_per_s": self.updates_per_second(),
            "mean_call_ms": self.batcher.mean_call.as_secs_f64() * 1000.0,
            "ceiling_steps_per_s": self.ceiling(),
            "ratio": self.ratio(),
            "calls": self.batcher.calls,
            "lead_ms": self.batcher.lead.as_secs_f64() * 1000.0,
            "mean_gap_us": self.batcher.gap.as_secs_f64() * 1e6,
            "tail_ms": self.batcher.tail.as_secs_f64() * 1000.0,
            "mean_batch": self.mean_batch(),
            "fill": self.fill(),
            "min_fill": self.min_fill(),
            "largest_request_bytes": self.largest_request(),
            "ack_p50_us": self.batcher.percentile(0.50).as_micros() as u64,
            "ack_p99_us": self.batcher.percentile(0.99).as_micros() as u64,
            "naive_steps": self.naive.steps,
            "naive_steps_per_s": self.naive_steps_per_second(),
            "naive_calls": self.naive.calls,
            "naive_capped": self.naive_capped,
            "speedup": self.speedup(),
            "foreign_cores": self.foreign,
            "target": self.scenario.target.to_string(),
            "met": self.met(),
        })
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.1}")
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| scenario | steps/s | ceiling | ratio | calls | mean batch | fill | ack p50 ms | ack p99 ms | naive steps/s | speed-up | target | met |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
    for row in rows {
        let ceiling = row
            .ceiling()
            .map_or_else(|| "—".to_owned(), |c| format!("{c:.0}"));
        let ratio = row
            .ratio()
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.3}"));
        let fill = row
            .fill()
            .map_or_else(|| "—".to_owned(), |f| format!("{:.1} %", f * 100.0));
        let mut steps = format!("{:.0}", row.batcher.steps_per_second());
        if row.scenario.latency.is_zero() {
            steps.push_str(&format!(
                " ({:.2}M updates/s)",
                row.updates_per_second() / 1e6
            ));
        }
        let naive = format!(
            "{:.0}{}",
            row.naive_steps_per_second(),
            if row.naive_capped { "*" } else { "" }
        );
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {:.1}× | {} | {} |\n",
            row.scenario,
            steps,
            ceiling,
            ratio,
            row.batcher.calls,
            row.mean_batch(),
            fill,
            ms(row.batcher.percentile(0.50)),
            ms(row.batcher.percentile(0.99)),
            naive,
            row.speedup(),
            row.scenario.target,
            if row.met() { "yes" } else { "**no**" },
        ));
    }
    out
}

fn details(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        out.push_str(&format!(
            "- {}: {} steps in {:.3} s = lead-in {} ms + {} calls × (mean call {} ms + mean gap {} µs) + tail {} ms; largest request {} B (limit {} B)",
            row.scenario.name,
            row.batcher.steps,
            row.batcher.elapsed.as_secs_f64(),
            ms(row.batcher.lead),
            row.batcher.calls,
            ms(row.batcher.mean_call),
            row.batcher.gap.as_micros(),
            ms(row.batcher.tail),
            row.largest_request(),
            row.max_batch_bytes,
        ));
        if let Some(min) = row.min_fill() {
            out.push_str(&format!("; least full request {:.1} %", min * 100.0));
        }
        out.push_str(&format!(
            "; naive: {} calls and {} whole steps in {:.2} s, mean call {} ms",
            row.naive.calls,
            row.naive.steps,
            row.naive.elapsed.as_secs_f64(),
            ms(row.naive.mean_call)
        ));
        out.push_str(&format!(
            "; updates per call: {}",
            run_lengths(&row.batcher.batches)
        ));
        if let Some(foreign) = row.foreign {
            out.push_str(&format!(
                "; other processes used {foreign:.2} cores meanwhile"
            ));
        }
        if row.batcher.violations + row.naive.violations > 0 {
            out.push_str(&format!(
                "; TOKEN CHAIN VIOLATIONS: {} / {}",
                row.batcher.violations, row.naive.violations
            ));
        }
        out.push('\n');
    }
    out
}

/// CPU time, in clock ticks, that the whole machine and this process have used so far.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy = fields.iter().sum::<u64>() - fields.get(3)? - fields.get(4)?;
    let own = fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime and stime are the 12th
    // and 13th.
    let after = own.rsplit_once(')')?.1;
    let mut own_fields = after.split_whitespace().skip(11);
    let utime: u64 = own_fields.next()?.parse().ok()?;
    let stime: u64 = own_fields.next()?.parse().ok()?;
    Some((busy, utime + stime))
}

/// How many cores' worth of CPU other processes used between two [`cpu_ticks`] readings
/// taken `elapsed` apart: a measure of how quiet the machine was.
fn foreign_load(
    before: Option<(u64, u64)>,
    after: Option<(u64, u64)>,
    elapsed: Duration,
) -> Option<f64> {
    let ((busy0, own0), (busy1, own1)) = (before?, after?);
    let ticks_per_second = 100.0;
    let foreign = (busy1 - busy0).saturating_sub(own1 - own0) as f64 / ticks_per_second;
    Some(foreign / elapsed.as_secs_f64())
}

/// Batch sizes in call order, runs of equal sizes shortened: `2, 200×19, 198`.
fn run_lengths(batches: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut rest = batches;
    while let Some(&first) = rest.first() {
        let run = rest.iter().take_while(|&&b| b == first).count();
        out.push(if run == 1 {
            first.to_string()
        } else {
            format!("{first}×{run}")
        });
        rest = &rest[run..];
    }
    if out.len() > 12 {
        let shown = out[..12].join(", ");
        return format!("{shown}, … ({} more runs)", out.len() - 12);
    }
    out.join(", ")
}

/// The mean time for two threads to hand a cache line back and forth once, in nanoseconds.
///
/// The same binary ran 2.4 times slower on this virtual machine at one time than fifteen
/// minutes earlier, with the guest idle and a single-threaded loop as fast as ever: what
/// changed was how fast the two virtual cores reach each other's memory, which every
/// submission and acknowledgement crosses. The footer records it.
fn ping_pong_ns() -> f64 {
    const ROUNDS: u64 = 1_000_000;
    let ball = Arc::new(AtomicU64::new(0));
    let other = Arc::clone(&ball);
    let started = Instant::now();
    let partner = std::thread::spawn(move || {
        for round in 0..ROUNDS {
            while other.load(Ordering::Acquire) != 2 * round + 1 {
                std::hint::spin_loop();
            }
            other.store(2 * round + 2, Ordering::Release);
        }
    });
    for round in 0..ROUNDS {
        ball.store(2 * round + 1, Ordering::Release);
        while ball.load(Ordering::Acquire) != 2 * round + 2 {
            std::hint::spin_loop();
        }
    }
    let elapsed = started.elapsed();
    let _ = partner.join();
    elapsed.as_nanos() as f64 / ROUNDS as f64
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Where the JSON rows go: `None`, standard output (`Some(None)`), or a file.
fn json_target() -> Option<Option<String>> {
    let from_arg = env::args().skip(1).find_map(|arg| {
        if arg == "--json" {
            Some(None)
        } else {
            arg.strip_prefix("--json=").map(|p| Some(p.to_owned()))
        }
    });
    from_arg.or_else(|| {
        env::var("BENCH_JSON").ok().map(|v| match v.as_str() {
            "" | "1" | "-" | "true" => None,
            path => Some(path.to_owned()),
        })
    })
}

fn steps_per_call(scenario: &Scenario, config: &BatcherConfig) -> Result<f64, Error> {
    let by_count = scenario.tasks.min(config.max_batch_updates / 2);
    let id = step_id(scenario.tasks - 1, scenario.steps - 1);
    let start = update(id.clone(), OperationAction::Start, None)?;
    let succeed = update(
        id,
        OperationAction::Succeed,
        Some(&payload(scenario.payload_bytes)),
    )?;
    // Each step adds its two updates and two commas to a request.
    let step_bytes = update_bytes(&start) + update_bytes(&succeed) + 2;
    let envelope = envelope_bytes(&token_for(0), CLIENT_TOKEN_LEN);
    let by_bytes = (config.max_batch_bytes - envelope) / step_bytes;
    Ok(by_count.min(by_bytes) as f64)
}

fn main() -> Result<(), Error> {
    let quick = env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let runs: usize = env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 })
        .max(1);
    let cap = if quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    };
    let json = json_target();
    let multi_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let current_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let config = BatcherConfig::default();
    let load_before = load_average();
    // Under a profiler (valgrind runs one thread at a time) the cross-core timing would spin
    // for minutes and mean nothing.
    let profiling = env::var("BENCH_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0");
    let ping_pong = || if profiling { f64::NAN } else { ping_pong_ns() };
    let ping_pong_before = ping_pong();
    let mut rows = Vec::new();
    let only = env::var("BENCH_SCENARIO").unwrap_or_default();
    let skip_naive = env::var("BENCH_NAIVE").is_ok_and(|v| v == "0");
    for scenario in scenarios(quick)
        .into_iter()
        .filter(|s| s.name.contains(only.as_str()))
    {
        eprintln!("running {scenario} ×{runs} and its naive baseline");
        let runtime = match scenario.runtime {
            Flavour::MultiThread => &multi_thread,
            Flavour::CurrentThread => &current_thread,
        };
        let ticks = cpu_ticks();
        let clock = Instant::now();
        let mut measured = Vec::with_capacity(runs);
        for _ in 0..runs {
            measured.push(on_worker(
                runtime,
                run_batcher(scenario.clone(), config.clone()),
            )?);
        }
        measured.sort_by(|a, b| a.steps_per_second().total_cmp(&b.steps_per_second()));
        let batcher = measured.swap_remove(runs / 2);
        let naive = if skip_naive {
            Run {
                elapsed: Duration::from_secs(1),
                ..Run::default()
            }
        } else {
            on_worker(runtime, run_naive(scenario.clone(), cap))?
        };
        let foreign = foreign_load(ticks, cpu_ticks(), clock.elapsed());
        rows.push(Row {
            foreign,
            naive_capped: naive.updates < batcher.updates,
            steps_per_call: steps_per_call(&scenario, &config)?,
            max_batch_bytes: config.max_batch_bytes,
            scenario,
            batcher,
            naive,
        });
    }
    let mut real = Vec::new();
    if "real path".contains(only.as_str()) {
        if real_path::available() {
            for scenario in real_path::RealScenario::all(quick) {
                eprintln!(
                    "running the real path (C={}, K={}) and its floor ×{runs}",
                    scenario.tasks, scenario.steps
                );
                let mut measured = Vec::with_capacity(runs);
                for _ in 0..runs {
                    measured.push(on_worker(
                        &multi_thread,
                        real_path::run(scenario, config.clone()),
                    )?);
                }
                // The target is the client's CPU over the floor's: report the median run.
                measured.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
                real.push(measured.swap_remove(runs / 2));
            }
        } else {
            eprintln!("skipping the real path: it needs the `cli` feature (--all-features)");
        }
    }
    let load_after = load_average();
    let ping_pong_after = ping_pong();

    let mut report = if rows.is_empty() {
        String::new()
    } else {
        table(&rows)
    };
    if !real.is_empty() {
        if !report.is_empty() {
            report.push('\n');
        }
        report.push_str(&real_path::table(&real));
    }
    report.push_str(&format!(
        "\n* naive baseline (the same workload, one call per update under a mutex around the \
         token) cut off after {} s: its steps/s is the calls it completed ÷ 2 over that sample.\n\n",
        cap.as_secs_f64()
    ));
    report.push_str(&details(&rows));
    report.push_str(&format!(
        "\n{} worker threads (one-core rows: a current_thread runtime) on {} cores; median of {runs} run(s); load average before {load_before}, after {load_after}; \
         cross-core round trip {:.0} ns before, {:.0} ns after{}\n",
        2,
        std::thread::available_parallelism().map_or(0, usize::from),
        ping_pong_before,
        ping_pong_after,
        if quick { "; BENCH_QUICK" } else { "" }
    ));
    let mut values: Vec<_> = rows.iter().map(Row::json).collect();
    values.extend(real.iter().map(real_path::RealPair::json));
    match json {
        None => print!("{report}"),
        Some(None) => {
            eprint!("{report}");
            println!("{}", serde_json::to_string_pretty(&values)?);
        }
        Some(Some(path)) => {
            print!("{report}");
            fs::write(&path, serde_json::to_string_pretty(&values)?)?;
            eprintln!("wrote {path}");
        }
    }
    Ok(())
}
