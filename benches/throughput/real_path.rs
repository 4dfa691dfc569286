//! The real path: the step workload through [`RealBackend`] (`aws-sdk-lambda` over loopback
//! HTTP) to the emulator in a child process (`checkpoint-batcher emulator`), so that this
//! process's CPU is the client's alone.
//!
//! Each run is made twice: once through the batcher, and once as the **floor**: the same
//! updates (the same Ids, payloads and order, built the same way) sent in calls of the same
//! size straight through [`RealBackend`] with no batcher, one call in flight, each batch handed
//! to the SDK by value as a handler without a batcher would. What the batcher costs is the
//! ratio of the two CPU figures; the floor is what the SDK, hyper and building the updates cost
//! on their own.
//!
//! The client's CPU is `getrusage(RUSAGE_SELF)` around the run (every thread of this process:
//! the workload's tasks, the batcher, the SDK and hyper); the emulator's is the sum of its
//! threads' run time from `/proc/<pid>/task/*/schedstat`, in nanoseconds. Both are divided by
//! the updates acknowledged. Needs the `cli` feature (the bench then gets the binary's path
//! from Cargo); without it the row is skipped with a note.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::{OperationAction, OperationUpdate};
use checkpoint_batcher::{
    BackendError, BatcherConfig, CheckpointBatcher, DurableBackend, RealBackend,
};

use super::emulator_process::{EMULATOR_BIN, EmulatorProcess, client_config, own_cpu};
use super::{Error, SMALL_PAYLOAD, ms, spawn_workload, step_id, update};

/// Issue 19's targets, where a scenario has them: the client's CPU per update through the
/// batcher at most this multiple of the floor's; the emulator's CPU per update (issue 12's), in
/// microseconds.
pub(crate) const FLOOR_RATIO_TARGET: f64 = 1.10;
pub(crate) const EMULATOR_TARGET_US: f64 = 1.5;

/// The workload: C tasks of K steps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RealScenario {
    pub(crate) tasks: usize,
    pub(crate) steps: usize,
    /// Whether this scenario's row is held to the targets (the saturated one, every call 250
    /// updates); the other row gives the figures.
    pub(crate) targeted: bool,
}

impl RealScenario {
    /// C = 1000 (every call 250 updates; the targets) and C = 100 (calls of up to 200 updates),
    /// with the same number of steps.
    pub(crate) fn all(quick: bool) -> [Self; 2] {
        let steps = if quick { 4 } else { 20 };
        [
            Self {
                tasks: 1000,
                steps,
                targeted: true,
            },
            Self {
                tasks: 100,
                steps: steps * 10,
                targeted: false,
            },
        ]
    }

    /// How many updates each floor call carries: what the batcher's calls carry when every
    /// task has its START and SUCCEED queued, up to the batch limit.
    fn floor_batch(self, config: &BatcherConfig) -> usize {
        // Even, so that a step's START and SUCCEED always share a call.
        (2 * self.tasks).min(config.max_batch_updates) & !1
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct RealRun {
    pub(crate) steps: u64,
    pub(crate) updates: u64,
    pub(crate) elapsed: Duration,
    pub(crate) calls: u64,
    pub(crate) mean_call: Duration,
    /// This process's CPU time over the run.
    pub(crate) client_cpu: Duration,
    /// The emulator process's CPU time over the run.
    pub(crate) emulator_cpu: Duration,
}

impl RealRun {
    fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.elapsed.as_secs_f64()
    }

    fn per_update_us(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.updates.max(1) as f64
    }

    pub(crate) fn client_us(&self) -> f64 {
        self.per_update_us(self.client_cpu)
    }

    pub(crate) fn emulator_us(&self) -> f64 {
        self.per_update_us(self.emulator_cpu)
    }

    fn mean_batch(&self) -> f64 {
        self.updates as f64 / self.calls.max(1) as f64
    }
}

/// One run of a scenario through the batcher, and its floor.
#[derive(Clone, Debug)]
pub(crate) struct RealPair {
    pub(crate) scenario: RealScenario,
    pub(crate) batcher: RealRun,
    pub(crate) floor: RealRun,
}

impl RealPair {
    /// The batcher's client CPU per update over the floor's.
    pub(crate) fn ratio(&self) -> f64 {
        self.batcher.client_us() / self.floor.client_us()
    }

    fn ratio_met(&self) -> bool {
        self.ratio() <= FLOOR_RATIO_TARGET
    }

    fn emulator_met(&self) -> bool {
        self.batcher.emulator_us() <= EMULATOR_TARGET_US
    }

    fn met(&self) -> Option<bool> {
        self.scenario
            .targeted
            .then(|| self.ratio_met() && self.emulator_met())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let run = |run: &RealRun| {
            serde_json::json!({
                "steps": run.steps,
                "elapsed_s": run.elapsed.as_secs_f64(),
                "steps_per_s": run.steps_per_second(),
                "calls": run.calls,
                "mean_batch": run.mean_batch(),
                "mean_call_ms": run.mean_call.as_secs_f64() * 1000.0,
                "client_cpu_us_per_update": run.client_us(),
                "emulator_cpu_us_per_update": run.emulator_us(),
            })
        };
        serde_json::json!({
            "scenario": "real path",
            "runtime": "multi_thread(2)",
            "tasks": self.scenario.tasks,
            "steps_per_task": self.scenario.steps,
            "latency_ms": 0.0,
            "payload_bytes": SMALL_PAYLOAD.len(),
            "batcher": run(&self.batcher),
            "floor": run(&self.floor),
            "client_cpu_ratio_to_floor": self.ratio(),
            "target": self.scenario.targeted.then(target),
            "met": self.met(),
        })
    }
}

fn target() -> String {
    format!("client ≤ {FLOOR_RATIO_TARGET}× floor, emulator ≤ {EMULATOR_TARGET_US} µs per update")
}

/// The markdown table of the real-path rows.
pub(crate) fn table(pairs: &[RealPair]) -> String {
    let mut out = String::from(
        "| real path (RealBackend → HTTP → emulator process) | steps/s (floor) | calls (floor) | mean batch | round trip ms (floor) | client CPU µs/update | floor µs/update | ratio to floor | emulator CPU µs/update | target | met |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    for pair in pairs {
        let (batcher, floor) = (&pair.batcher, &pair.floor);
        let verdict = match pair.met() {
            None => "—".to_owned(),
            Some(_) => format!(
                "client {}, emulator {}",
                met(pair.ratio_met()),
                met(pair.emulator_met())
            ),
        };
        out.push_str(&format!(
            "| C={}, K={}, L=0 ms, {}-byte payloads | {:.0} ({:.0}) | {} ({}) | {:.1} | {} ({}) | {:.2} | {:.2} | {:.3} | {:.2} | {} | {} |\n",
            pair.scenario.tasks,
            pair.scenario.steps,
            SMALL_PAYLOAD.len(),
            batcher.steps_per_second(),
            floor.steps_per_second(),
            batcher.calls,
            floor.calls,
            batcher.mean_batch(),
            ms(batcher.mean_call),
            ms(floor.mean_call),
            batcher.client_us(),
            floor.client_us(),
            pair.ratio(),
            batcher.emulator_us(),
            if pair.scenario.targeted { target() } else { "figures only".to_owned() },
            verdict,
        ));
    }
    out
}

/// Whether the real path can run (the bench was built with the `cli` feature).
pub(crate) fn available() -> bool {
    EMULATOR_BIN.is_some()
}

/// [`RealBackend`], timing its calls.
#[derive(Debug)]
struct Timed {
    inner: RealBackend,
    calls: AtomicU64,
    updates: AtomicU64,
    nanos: AtomicU64,
}

impl Timed {
    /// Awaits one call of `updates` updates, counting it and its time when it succeeds.
    async fn timed(
        &self,
        updates: usize,
        call: impl Future<Output = Result<CheckpointDurableExecutionOutput, BackendError>>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        let started = Instant::now();
        let output = call.await?;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let _ = self.nanos.fetch_add(nanos, Ordering::Relaxed);
        let _ = self.calls.fetch_add(1, Ordering::Relaxed);
        let _ = self.updates.fetch_add(updates as u64, Ordering::Relaxed);
        Ok(output)
    }
}

#[async_trait]
impl DurableBackend for Timed {
    async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        let count = updates.len();
        self.timed(
            count,
            self.inner
                .checkpoint(arn, checkpoint_token, updates, client_token),
        )
        .await
    }

    async fn batch_checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: &[OperationUpdate],
        client_token: &str,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        self.timed(
            updates.len(),
            self.inner
                .batch_checkpoint(arn, checkpoint_token, updates, client_token),
        )
        .await
    }

    async fn get_execution_state(
        &self,
        arn: &str,
        checkpoint_token: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        self.inner
            .get_execution_state(arn, checkpoint_token, marker, max_items)
            .await
    }
}

impl Timed {
    /// A timed [`RealBackend`] whose SDK client reaches `emulator`.
    fn new(emulator: &EmulatorProcess) -> Self {
        Self {
            inner: RealBackend::new(aws_sdk_lambda::Client::from_conf(
                client_config(&emulator.endpoint).build(),
            )),
            calls: AtomicU64::new(0),
            updates: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        }
    }

    /// Calls, updates and nanoseconds in calls so far.
    fn counts(&self) -> (u64, u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.updates.load(Ordering::Relaxed),
            self.nanos.load(Ordering::Relaxed),
        )
    }

    /// What was measured since `warm` (the counts after the warm-up call).
    fn run_since(
        &self,
        warm: (u64, u64, u64),
        scenario: RealScenario,
        measured: Measured,
    ) -> RealRun {
        let (calls, updates, nanos) = self.counts();
        let (calls, updates, nanos) = (calls - warm.0, updates - warm.1, nanos - warm.2);
        let steps = (scenario.tasks * scenario.steps) as u64;
        assert_eq!(updates, 2 * steps, "every update must be acknowledged");
        RealRun {
            steps,
            updates,
            elapsed: measured.elapsed,
            calls,
            mean_call: Duration::from_nanos(nanos / calls.max(1)),
            client_cpu: measured.client_cpu,
            emulator_cpu: measured.emulator_cpu,
        }
    }
}

/// The clock and both processes' CPU over a measured stretch.
struct Measured {
    elapsed: Duration,
    client_cpu: Duration,
    emulator_cpu: Duration,
}

/// Starts measuring; [`Stopwatch::stop`] gives what was spent since.
struct Stopwatch<'a> {
    emulator: &'a EmulatorProcess,
    started: Instant,
    client: Duration,
    emulator_cpu: Duration,
}

impl<'a> Stopwatch<'a> {
    fn start(emulator: &'a EmulatorProcess) -> Result<Self, Error> {
        Ok(Self {
            emulator,
            client: own_cpu(),
            emulator_cpu: emulator.cpu()?,
            started: Instant::now(),
        })
    }

    fn stop(self) -> Result<Measured, Error> {
        let elapsed = self.started.elapsed();
        Ok(Measured {
            elapsed,
            client_cpu: own_cpu().saturating_sub(self.client),
            emulator_cpu: self.emulator.cpu()?.saturating_sub(self.emulator_cpu),
        })
    }
}

/// One run of `scenario` through the batcher and one of its floor, each against a fresh
/// emulator process.
pub(crate) async fn run(scenario: RealScenario, config: BatcherConfig) -> Result<RealPair, Error> {
    let batcher = run_batcher(scenario, config.clone()).await?;
    let floor = run_floor(scenario, &config).await?;
    Ok(RealPair {
        scenario,
        batcher,
        floor,
    })
}

/// The step workload's tasks through the batcher.
async fn run_batcher(scenario: RealScenario, config: BatcherConfig) -> Result<RealRun, Error> {
    let emulator = EmulatorProcess::start("bench", &[])?;
    let backend = Arc::new(Timed::new(&emulator));
    // One warm-up call opens the connection (and pays the SDK's first-use costs) outside the
    // measurement.
    let handle = CheckpointBatcher::spawn(
        backend.clone(),
        emulator.arn.clone(),
        emulator.token.clone(),
        config,
    )?;
    let _ = handle.refresh().await?;
    let warm = backend.counts();

    let (tasks, gate) = spawn_workload(&handle, scenario.tasks, scenario.steps, SMALL_PAYLOAD);
    let _ = gate.wait().await;
    let stopwatch = Stopwatch::start(&emulator)?;
    for task in tasks {
        let _ = task.await??;
    }
    let measured = stopwatch.stop()?;
    let _ = handle.shutdown().await?;
    Ok(backend.run_since(warm, scenario, measured))
}

/// The floor: the same updates in calls of the same size, straight through [`RealBackend`].
///
/// Step k of every task goes before step k + 1 of any, each step's START beside its SUCCEED,
/// as the batcher's calls carry them when every task has both queued. The updates are built
/// as the workload's tasks build them, and each batch is handed to the SDK by value.
async fn run_floor(scenario: RealScenario, config: &BatcherConfig) -> Result<RealRun, Error> {
    let emulator = EmulatorProcess::start("bench", &[])?;
    let backend = Timed::new(&emulator);
    let client_token = |n: u64| format!("{n:032x}");
    let mut calls = 0u64;
    let next_token = |output: CheckpointDurableExecutionOutput| {
        output
            .checkpoint_token
            .ok_or_else(|| Error::from("the emulator ended the token chain"))
    };
    // The warm-up call, as the batcher run's refresh.
    let mut token = next_token(
        backend
            .checkpoint(
                &emulator.arn,
                &emulator.token,
                Vec::new(),
                Some(&client_token(calls)),
            )
            .await?,
    )?;
    let warm = backend.counts();

    let per_call = scenario.floor_batch(config);
    let stopwatch = Stopwatch::start(&emulator)?;
    let mut batch = Vec::with_capacity(per_call);
    for step in 0..scenario.steps {
        for task in 0..scenario.tasks {
            let id = step_id(task, step);
            batch.push(update(id.clone(), OperationAction::Start, None)?);
            batch.push(update(id, OperationAction::Succeed, Some(SMALL_PAYLOAD))?);
            let last = step + 1 == scenario.steps && task + 1 == scenario.tasks;
            if batch.len() == per_call || last {
                calls += 1;
                let sent = std::mem::replace(&mut batch, Vec::with_capacity(per_call));
                token = next_token(
                    backend
                        .checkpoint(&emulator.arn, &token, sent, Some(&client_token(calls)))
                        .await?,
                )?;
            }
        }
    }
    let measured = stopwatch.stop()?;
    Ok(backend.run_since(warm, scenario, measured))
}
