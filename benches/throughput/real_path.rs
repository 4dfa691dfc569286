//! The real path: the step workload through [`RealBackend`] (`aws-sdk-lambda` over loopback
//! HTTP) to the emulator in a child process (`checkpoint-batcher emulator`), so that this
//! process's CPU is the client's alone.
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
use aws_sdk_lambda::types::OperationUpdate;
use checkpoint_batcher::{
    BackendError, BatcherConfig, CheckpointBatcher, DurableBackend, RealBackend,
};

use super::emulator_process::{EMULATOR_BIN, EmulatorProcess, client_config, own_cpu};
use super::{Error, SMALL_PAYLOAD, ms, spawn_workload};

/// Issue 12's targets: client CPU per acknowledged update at saturation, emulator CPU per
/// update, both in microseconds.
pub(crate) const CLIENT_TARGET_US: f64 = 1.8;
pub(crate) const EMULATOR_TARGET_US: f64 = 1.5;

/// The workload: C tasks of K steps, enough tasks that every call carries 250 updates.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RealScenario {
    pub(crate) tasks: usize,
    pub(crate) steps: usize,
}

impl RealScenario {
    pub(crate) fn new(quick: bool) -> Self {
        Self {
            tasks: 1000,
            steps: if quick { 4 } else { 20 },
        }
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

    fn client_met(&self) -> bool {
        self.client_us() <= CLIENT_TARGET_US
    }

    fn emulator_met(&self) -> bool {
        self.emulator_us() <= EMULATOR_TARGET_US
    }

    pub(crate) fn json(&self, scenario: RealScenario) -> serde_json::Value {
        serde_json::json!({
            "scenario": "real path",
            "runtime": "multi_thread(2)",
            "tasks": scenario.tasks,
            "steps_per_task": scenario.steps,
            "latency_ms": 0.0,
            "payload_bytes": SMALL_PAYLOAD.len(),
            "steps": self.steps,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "steps_per_s": self.steps_per_second(),
            "calls": self.calls,
            "mean_batch": self.updates as f64 / self.calls.max(1) as f64,
            "mean_call_ms": self.mean_call.as_secs_f64() * 1000.0,
            "client_cpu_us_per_update": self.client_us(),
            "emulator_cpu_us_per_update": self.emulator_us(),
            "target": target(),
            "client_met": self.client_met(),
            "emulator_met": self.emulator_met(),
            "met": self.client_met() && self.emulator_met(),
        })
    }
}

fn target() -> String {
    format!("client ≤ {CLIENT_TARGET_US} µs, emulator ≤ {EMULATOR_TARGET_US} µs per update")
}

/// The markdown table of the real-path row.
pub(crate) fn table(scenario: RealScenario, run: &RealRun) -> String {
    let mut out = String::from(
        "| real path (RealBackend → HTTP → emulator process) | steps/s | calls | mean batch | round trip ms | client CPU µs/update | emulator CPU µs/update | target | met |\n\
         |---|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    out.push_str(&format!(
        "| C={}, K={}, L=0 ms, {}-byte payloads | {:.0} | {} | {:.1} | {} | {:.2} | {:.2} | {} | client {}, emulator {} |\n",
        scenario.tasks,
        scenario.steps,
        SMALL_PAYLOAD.len(),
        run.steps_per_second(),
        run.calls,
        run.updates as f64 / run.calls.max(1) as f64,
        ms(run.mean_call),
        run.client_us(),
        run.emulator_us(),
        target(),
        met(run.client_met()),
        met(run.emulator_met()),
    ));
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

#[async_trait]
impl DurableBackend for Timed {
    async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        self.inner
            .checkpoint(arn, checkpoint_token, updates, client_token)
            .await
    }

    async fn batch_checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: &[OperationUpdate],
        client_token: &str,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        let started = Instant::now();
        let output = self
            .inner
            .batch_checkpoint(arn, checkpoint_token, updates, client_token)
            .await?;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let _ = self.nanos.fetch_add(nanos, Ordering::Relaxed);
        let _ = self.calls.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .updates
            .fetch_add(updates.len() as u64, Ordering::Relaxed);
        Ok(output)
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

/// One run of the step workload over the real path, against a fresh emulator process.
pub(crate) async fn run(scenario: RealScenario, config: BatcherConfig) -> Result<RealRun, Error> {
    let emulator = EmulatorProcess::start("bench", &[])?;
    let backend = Arc::new(Timed {
        inner: RealBackend::new(aws_sdk_lambda::Client::from_conf(
            client_config(&emulator.endpoint).build(),
        )),
        calls: AtomicU64::new(0),
        updates: AtomicU64::new(0),
        nanos: AtomicU64::new(0),
    });
    // One warm-up call opens the connection (and pays the SDK's first-use costs) outside the
    // measurement.
    let handle = CheckpointBatcher::spawn(
        backend.clone(),
        emulator.arn.clone(),
        emulator.token.clone(),
        config,
    )?;
    let _ = handle.refresh().await?;
    let warm_calls = backend.calls.load(Ordering::Relaxed);
    let warm_updates = backend.updates.load(Ordering::Relaxed);
    let warm_nanos = backend.nanos.load(Ordering::Relaxed);

    let (tasks, gate) = spawn_workload(&handle, scenario.tasks, scenario.steps, SMALL_PAYLOAD);
    let _ = gate.wait().await;
    let client_before = own_cpu();
    let emulator_before = emulator.cpu()?;
    let started = Instant::now();
    for task in tasks {
        let _ = task.await??;
    }
    let elapsed = started.elapsed();
    let client_cpu = own_cpu().saturating_sub(client_before);
    let emulator_cpu = emulator.cpu()?.saturating_sub(emulator_before);
    let _ = handle.shutdown().await?;
    drop(emulator);

    let calls = backend.calls.load(Ordering::Relaxed) - warm_calls;
    let updates = backend.updates.load(Ordering::Relaxed) - warm_updates;
    let nanos = backend.nanos.load(Ordering::Relaxed) - warm_nanos;
    let steps = (scenario.tasks * scenario.steps) as u64;
    assert_eq!(updates, 2 * steps, "every update must be acknowledged");
    Ok(RealRun {
        steps,
        updates,
        elapsed,
        calls,
        mean_call: Duration::from_nanos(nanos / calls.max(1)),
        client_cpu,
        emulator_cpu,
    })
}
