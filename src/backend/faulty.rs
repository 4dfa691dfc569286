//! [`FaultyBackend`]: a backend wrapper that injects faults, for tests (feature `test-util`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
use tokio::sync::watch;
use tokio::time::Instant;

use super::DurableBackend;
use crate::error::{BackendError, ErrorKind};
use crate::redact::Redacted;

/// One scripted outcome for the next checkpoint call.
///
/// Its `Debug` shows a scripted response's token redacted.
#[derive(Clone)]
#[non_exhaustive]
pub enum Fault {
    /// Pass the call through.
    Pass,
    /// Fail with [`ErrorKind::Throttled`], with this `Retry-After` if any; nothing applied.
    Throttle(Option<Duration>),
    /// Fail with [`ErrorKind::Transient`] (a 500); nothing applied.
    Transient,
    /// Apply the call, then lose the answer: the caller sees a transient failure.
    LostAnswer,
    /// Fail with this kind and message; nothing applied.
    Error(ErrorKind, String),
    /// Wait this long, then pass the call through.
    Delay(Duration),
    /// Never answer (until the caller's attempt timeout gives up).
    Hang,
    /// Answer with this output without calling the wrapped backend (a scripted response, for
    /// example one without a token or with a `NextMarker`).
    Respond(CheckpointDurableExecutionOutput),
}

/// What one checkpoint call carried, as recorded by [`FaultyBackend`].
///
/// Its `Debug` shows the checkpoint tokens redacted.
#[derive(Clone)]
#[non_exhaustive]
pub struct CallRecord {
    /// The checkpoint token it carried.
    pub checkpoint_token: String,
    /// The client token it carried.
    pub client_token: String,
    /// Each update's Id, type and action, in order.
    pub updates: Vec<(String, OperationType, OperationAction)>,
    /// The request body bytes, as the AWS SDK would send them.
    pub bytes: usize,
    /// When the call started (Tokio's clock, so paused time applies).
    pub started: Instant,
    /// The token the call returned, when it succeeded.
    pub returned_token: Option<String>,
    /// Whether it succeeded.
    pub succeeded: bool,
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass => f.write_str("Pass"),
            Self::Throttle(retry_after) => f.debug_tuple("Throttle").field(retry_after).finish(),
            Self::Transient => f.write_str("Transient"),
            Self::LostAnswer => f.write_str("LostAnswer"),
            Self::Error(kind, message) => {
                f.debug_tuple("Error").field(kind).field(message).finish()
            }
            Self::Delay(delay) => f.debug_tuple("Delay").field(delay).finish(),
            Self::Hang => f.write_str("Hang"),
            Self::Respond(output) => f
                .debug_struct("Respond")
                .field(
                    "checkpoint_token",
                    &output.checkpoint_token.as_deref().map(Redacted),
                )
                .field(
                    "operations",
                    &output
                        .new_execution_state
                        .as_ref()
                        .map_or(0, |state| state.operations().len()),
                )
                .finish_non_exhaustive(),
        }
    }
}

impl fmt::Debug for CallRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallRecord")
            .field("checkpoint_token", &Redacted(&self.checkpoint_token))
            .field("client_token", &self.client_token)
            .field("updates", &self.updates)
            .field("bytes", &self.bytes)
            .field("started", &self.started)
            .field(
                "returned_token",
                &self.returned_token.as_deref().map(Redacted),
            )
            .field("succeeded", &self.succeeded)
            .finish()
    }
}

/// Faults drawn at random for every checkpoint call, from a seeded generator so that a run
/// can be reproduced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RandomFaults {
    /// Share of calls throttled (0 to 1).
    pub throttle_rate: f64,
    /// Share of calls failing with a 500, nothing applied.
    pub transient_rate: f64,
    /// Share of calls applied whose answer is then lost.
    pub lost_answer_rate: f64,
    /// The `Retry-After` sent with throttling, if any.
    pub retry_after: Option<Duration>,
    /// Latency added to every call, plus up to `jitter` more.
    pub latency: Duration,
    /// The most random latency added on top of `latency`.
    pub jitter: Duration,
    /// The generator's seed.
    pub seed: u64,
}

/// Wraps a backend and injects faults into its checkpoint calls: a scripted queue of outcomes,
/// a failure after the first N calls, seeded random faults, and a gate that holds calls open.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
/// use checkpoint_batcher::{BatcherConfig, CheckpointBatcher, Fault, FaultyBackend, InMemoryBackend};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let memory = Arc::new(InMemoryBackend::new());
/// let token = memory.current_token().unwrap_or_default();
/// let faulty = Arc::new(FaultyBackend::new(memory.clone()));
/// faulty.push(Fault::LostAnswer);
/// let batcher = CheckpointBatcher::spawn(faulty.clone(), "arn", token, BatcherConfig::default())?;
/// let update = OperationUpdate::builder()
///     .id("s").r#type(OperationType::Step).action(OperationAction::Start).build()?;
/// batcher.checkpoint(update).await?;
/// assert_eq!(faulty.calls(), 2, "the lost answer was retried");
/// assert_eq!(memory.applied().len(), 1, "and applied once: same client token");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn DurableBackend>,
    state: Mutex<FaultState>,
    gate: watch::Sender<bool>,
    started: watch::Sender<u64>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[derive(Debug)]
struct FaultState {
    log: Vec<CallRecord>,
    script: VecDeque<Fault>,
    fail_after: Option<(u64, ErrorKind)>,
    random: Option<(RandomFaults, fastrand::Rng)>,
    calls: u64,
    state_calls: u64,
}

impl FaultyBackend {
    /// Wraps `inner`; with nothing scripted, every call passes through.
    #[must_use]
    pub fn new(inner: Arc<dyn DurableBackend>) -> Self {
        Self {
            inner,
            state: Mutex::new(FaultState {
                log: Vec::new(),
                script: VecDeque::new(),
                fail_after: None,
                random: None,
                calls: 0,
                state_calls: 0,
            }),
            gate: watch::Sender::new(true),
            started: watch::Sender::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    /// Every checkpoint call received, in order.
    #[must_use]
    pub fn call_log(&self) -> Vec<CallRecord> {
        self.lock().log.clone()
    }

    /// The most checkpoint calls that were ever in flight at once.
    #[must_use]
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Scripts the outcome of the next checkpoint call not yet scripted.
    pub fn push(&self, fault: Fault) {
        self.lock().script.push_back(fault);
    }

    /// Every checkpoint call after the first `calls` fails with `kind` (once the script is
    /// empty).
    pub fn fail_after(&self, calls: u64, kind: ErrorKind) {
        self.lock().fail_after = Some((calls, kind));
    }

    /// Draws faults at random for every unscripted call; `None` stops them.
    pub fn set_random(&self, faults: Option<RandomFaults>) {
        self.lock().random = faults.map(|f| {
            let rng = fastrand::Rng::with_seed(f.seed);
            (f, rng)
        });
    }

    /// Holds every checkpoint call open at its start until [`release`](Self::release).
    pub fn hold(&self) {
        let _ = self.gate.send_replace(false);
    }

    /// Lets held and later calls proceed.
    pub fn release(&self) {
        let _ = self.gate.send_replace(true);
    }

    /// Checkpoint calls received so far.
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// State calls received so far.
    #[must_use]
    pub fn state_calls(&self) -> u64 {
        self.lock().state_calls
    }

    /// Waits until at least `calls` checkpoint calls have started.
    pub async fn wait_for_calls(&self, calls: u64) {
        let mut started = self.started.subscribe();
        let _ = started.wait_for(|n| *n >= calls).await;
    }

    fn next_fault(&self) -> Fault {
        let mut state = self.lock();
        state.calls += 1;
        let calls = state.calls;
        if let Some(fault) = state.script.pop_front() {
            return fault;
        }
        if let Some((after, kind)) = state.fail_after
            && calls > after
        {
            return Fault::Error(kind, format!("injected failure after {after} calls"));
        }
        let Some((faults, rng)) = &mut state.random else {
            return Fault::Pass;
        };
        let jitter = faults.jitter.mul_f64(rng.f64());
        let latency = faults.latency + jitter;
        let roll = rng.f64();
        let fault = if roll < faults.throttle_rate {
            Fault::Throttle(faults.retry_after)
        } else if roll < faults.throttle_rate + faults.transient_rate {
            Fault::Transient
        } else if roll < faults.throttle_rate + faults.transient_rate + faults.lost_answer_rate {
            Fault::LostAnswer
        } else {
            Fault::Pass
        };
        match fault {
            Fault::Pass if !latency.is_zero() => Fault::Delay(latency),
            other => other,
        }
    }
}

#[async_trait]
impl DurableBackend for FaultyBackend {
    async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        self.batch_checkpoint(arn, checkpoint_token, &updates, client_token.unwrap_or(""))
            .await
    }

    async fn batch_checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: &[OperationUpdate],
        client_token: &str,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        let fault = self.next_fault();
        let index = {
            let mut state = self.lock();
            state.log.push(CallRecord {
                checkpoint_token: checkpoint_token.to_owned(),
                client_token: client_token.to_owned(),
                updates: updates
                    .iter()
                    .map(|u| (u.id.clone(), u.r#type.clone(), u.action.clone()))
                    .collect(),
                bytes: crate::size::request_bytes(checkpoint_token, client_token, updates),
                started: Instant::now(),
                returned_token: None,
                succeeded: false,
            });
            state.log.len() - 1
        };
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        self.started.send_modify(|n| *n += 1);
        let result = self
            .answer(fault, arn, checkpoint_token, updates, client_token)
            .await;
        let _ = self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(record) = self.lock().log.get_mut(index) {
            record.succeeded = result.is_ok();
            record.returned_token = result
                .as_ref()
                .ok()
                .and_then(|o| o.checkpoint_token.clone());
        }
        result
    }

    async fn get_execution_state(
        &self,
        arn: &str,
        checkpoint_token: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        self.lock().state_calls += 1;
        self.inner
            .get_execution_state(arn, checkpoint_token, marker, max_items)
            .await
    }
}

impl FaultyBackend {
    async fn answer(
        &self,
        fault: Fault,
        arn: &str,
        checkpoint_token: &str,
        updates: &[OperationUpdate],
        client_token: &str,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        let call = self
            .inner
            .batch_checkpoint(arn, checkpoint_token, updates, client_token);
        match fault {
            Fault::Respond(output) => Ok(output),
            Fault::Pass => call.await,
            Fault::Delay(delay) => {
                tokio::time::sleep(delay).await;
                call.await
            }
            Fault::Throttle(retry_after) => {
                let error =
                    BackendError::new(ErrorKind::Throttled, "injected throttling").with_status(429);
                Err(match retry_after {
                    Some(delay) => error.with_retry_after(delay),
                    None => error,
                })
            }
            Fault::Transient => Err(BackendError::new(
                ErrorKind::Transient,
                "injected server error",
            )
            .with_status(500)),
            Fault::LostAnswer => {
                let _applied = call.await?;
                Err(BackendError::new(
                    ErrorKind::Transient,
                    "injected: applied, then the answer was lost",
                )
                .with_status(500))
            }
            Fault::Error(kind, message) => Err(BackendError::new(kind, message)),
            Fault::Hang => {
                futures::future::pending::<()>().await;
                Err(BackendError::new(ErrorKind::Transient, "unreachable"))
            }
        }
    }
}
