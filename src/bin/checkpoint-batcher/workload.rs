//! The step workload every `run` and `tune` point drives, and a backend wrapper that times the
//! checkpoint calls.
//!
//! A step is what a durable handler does for `ctx.step(...)`: a STEP START submitted without
//! waiting (fire-and-forget, as the official SDKs do), then the STEP SUCCEED with the result,
//! awaited until durable. `C` tasks each run `K` steps in sequence, so at most `C` steps are in
//! flight and each call can carry at most `min(C, max_batch_updates / 2)` of them; the round
//! trip of one call then bounds the throughput.
//!
//! The acknowledgement latency of a step is the time from submitting its SUCCEED to the
//! acknowledgement, the time a handler is blocked on `ctx.step`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::{
    BackendError, BatcherConfig, BatcherError, BatcherStats, CheckpointBatcher, DurableBackend,
};
use indicatif::ProgressBar;

use crate::error::{CliError, config_usage};

/// The shape of the workload.
#[derive(Clone, Debug)]
pub(crate) struct Workload {
    /// Tasks running at once.
    pub(crate) concurrency: u32,
    /// Steps per task, in sequence.
    pub(crate) steps: u32,
    /// The result payload of every step.
    pub(crate) payload: Arc<str>,
}

impl Workload {
    /// A workload of `concurrency` tasks of `steps` steps, each with a `payload_bytes` result.
    pub(crate) fn new(concurrency: u32, steps: u32, payload_bytes: usize) -> Self {
        Self {
            concurrency,
            steps,
            payload: "x".repeat(payload_bytes).into(),
        }
    }

    /// Steps in all.
    pub(crate) fn total_steps(&self) -> u64 {
        u64::from(self.concurrency) * u64::from(self.steps)
    }

    /// Every step's operation Id, in task-major order: `t<task>-s<step>`.
    pub(crate) fn step_ids(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.concurrency)
            .flat_map(move |task| (0..self.steps).map(move |step| step_id(task, step)))
    }
}

/// The operation Id of step `step` of task `task`, within the service's `[a-zA-Z0-9_-]{1,64}`.
pub(crate) fn step_id(task: u32, step: u32) -> String {
    format!("t{task}-s{step}")
}

/// What one run of the workload measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// From the first submit to the last acknowledgement (shutdown's drain excluded).
    pub(crate) elapsed: Duration,
    /// Steps whose SUCCEED was acknowledged.
    pub(crate) steps_done: u64,
    /// Acknowledgement latency of every acknowledged step, sorted.
    pub(crate) latencies: Vec<Duration>,
    /// The batcher's statistics after shutdown.
    pub(crate) stats: BatcherStats,
    /// Successful checkpoint calls as the backend saw them, and their total time.
    pub(crate) timing: CallTiming,
    /// What stopped the run, if anything did.
    pub(crate) error: Option<CliError>,
}

impl Outcome {
    /// Steps per second.
    pub(crate) fn steps_per_second(&self) -> f64 {
        per_second(self.steps_done, self.elapsed)
    }

    /// The latency at quantile `q` (0 to 1) by nearest rank, or zero with no samples.
    pub(crate) fn latency_quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }
}

/// `count / elapsed`, zero for an empty span.
pub(crate) fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Nearest-rank quantile of sorted samples.
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.saturating_sub(1).min(sorted.len() - 1);
    sorted.get(index).copied().unwrap_or_default()
}

/// Runs `workload` through a new batcher on `backend` and shuts it down. `progress` advances
/// by one per acknowledged step; the caller finishes it.
///
/// # Errors
///
/// A usage error when `config` is out of range; a run that failed is reported in
/// [`Outcome::error`] instead, with whatever was measured until then.
pub(crate) async fn drive(
    backend: Arc<Timed>,
    arn: String,
    token: String,
    config: BatcherConfig,
    workload: &Workload,
    progress: &ProgressBar,
) -> Result<Outcome, CliError> {
    let batcher = CheckpointBatcher::spawn(backend.clone(), arn, token, config)
        .map_err(|e| config_usage(&e))?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..workload.concurrency {
        let batcher = batcher.clone();
        let payload = Arc::clone(&workload.payload);
        let steps = workload.steps;
        let progress = progress.clone();
        drop(tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(steps as usize);
            for step in 0..steps {
                match run_step(&batcher, &step_id(task, step), &payload).await {
                    Ok(latency) => latencies.push(latency),
                    Err(error) => return (latencies, Some(error)),
                }
                progress.inc(1);
            }
            (latencies, None)
        }));
    }

    let mut latencies = Vec::with_capacity(usize::try_from(workload.total_steps()).unwrap_or(0));
    let mut error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((mut done, failure)) => {
                latencies.append(&mut done);
                if error.is_none() {
                    error = failure;
                }
            }
            Err(join_error) => {
                error.get_or_insert(CliError::failed(format!(
                    "a workload task failed: {join_error}"
                )));
            }
        }
    }
    let elapsed = started.elapsed();

    let stats = match batcher.shutdown().await {
        Ok(report) => report.stats,
        Err(shutdown_error) => {
            error.get_or_insert_with(|| CliError::from_batcher(&shutdown_error));
            batcher.stats()
        }
    };
    latencies.sort_unstable();
    Ok(Outcome {
        elapsed,
        steps_done: latencies.len() as u64,
        latencies,
        stats,
        timing: backend.timing(),
        error,
    })
}

/// One step: START without waiting, then SUCCEED awaited. Returns the SUCCEED's
/// acknowledgement latency.
async fn run_step(
    batcher: &checkpoint_batcher::BatcherHandle,
    id: &str,
    payload: &str,
) -> Result<Duration, CliError> {
    let start = step_update(id, OperationAction::Start, None)?;
    let succeed = step_update(id, OperationAction::Succeed, Some(payload))?;
    // The START's acknowledgement is dropped: the update is still written, in order, before
    // the SUCCEED that follows it.
    drop(batcher.submit(start).await.map_err(|e| batcher_error(&e))?);
    let submitted = Instant::now();
    let _ack = batcher
        .checkpoint(succeed)
        .await
        .map_err(|e| batcher_error(&e))?;
    Ok(submitted.elapsed())
}

/// A STEP update.
fn step_update(
    id: &str,
    action: OperationAction,
    payload: Option<&str>,
) -> Result<OperationUpdate, CliError> {
    OperationUpdate::builder()
        .id(id)
        .r#type(OperationType::Step)
        .action(action)
        .set_payload(payload.map(str::to_owned))
        .build()
        .map_err(|e| CliError::failed(format!("could not build the update for {id}: {e}")))
}

/// The user-facing error for a batcher error met by a step.
fn batcher_error(error: &BatcherError) -> CliError {
    CliError::from_batcher(error)
}

/// Counts of the successful checkpoint calls and their summed duration.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CallTiming {
    /// Checkpoint calls that succeeded.
    pub(crate) calls: u64,
    /// Checkpoint attempts, failed ones included.
    pub(crate) attempts: u64,
    /// Total duration of the successful calls.
    pub(crate) total: Duration,
}

impl CallTiming {
    /// Mean duration of a successful checkpoint call, as the client measured it.
    pub(crate) fn mean_round_trip(&self) -> Option<Duration> {
        (self.calls > 0).then(|| {
            Duration::from_nanos(
                u64::try_from(self.total.as_nanos() / u128::from(self.calls)).unwrap_or(u64::MAX),
            )
        })
    }
}

/// A [`DurableBackend`] that passes every call on and times the checkpoint calls, so the run
/// knows the round trip it actually got, on any target.
#[derive(Debug)]
pub(crate) struct Timed {
    inner: Arc<dyn DurableBackend>,
    calls: AtomicU64,
    attempts: AtomicU64,
    nanos: AtomicU64,
}

impl Timed {
    /// Wraps `inner`.
    pub(crate) fn new(inner: Arc<dyn DurableBackend>) -> Self {
        Self {
            inner,
            calls: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        }
    }

    /// The timings so far.
    pub(crate) fn timing(&self) -> CallTiming {
        CallTiming {
            calls: self.calls.load(Ordering::Relaxed),
            attempts: self.attempts.load(Ordering::Relaxed),
            total: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
        }
    }

    /// Counts one attempt, and its time when it succeeded.
    fn record<T>(&self, started: Instant, result: &Result<T, BackendError>) {
        let _ = self.attempts.fetch_add(1, Ordering::Relaxed);
        if result.is_ok() {
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let _ = self.calls.fetch_add(1, Ordering::Relaxed);
            let _ = self.nanos.fetch_add(nanos, Ordering::Relaxed);
        }
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
        let started = Instant::now();
        let result = self
            .inner
            .checkpoint(arn, checkpoint_token, updates, client_token)
            .await;
        self.record(started, &result);
        result
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

    async fn batch_checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: &[OperationUpdate],
        client_token: &str,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        let started = Instant::now();
        let result = self
            .inner
            .batch_checkpoint(arn, checkpoint_token, updates, client_token)
            .await;
        self.record(started, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO, "no samples, no latency");
    }

    #[test]
    fn step_ids_are_valid_operation_ids() {
        let id = step_id(99_999, 999_999);
        assert!(id.len() <= 64, "ids fit the service's 64 characters");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
