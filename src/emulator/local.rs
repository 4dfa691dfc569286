//! The service's side of a durable execution, played against the emulator: invoke a handler,
//! complete what the service completes, and invoke it again until the execution ends.
//!
//! A durable function is not called once: the service invokes it, the handler checkpoints and
//! answers `PENDING` when it must wait (a timer, a callback, a retry), and the service invokes
//! it again when the wait is over, with the history so far. An invocation that crashes, times
//! out or answers an error is invoked again too, and must replay from what is durable. Testing
//! a handler therefore means driving that loop, which is what [`LocalRun`] does: it starts an
//! execution on an [`Emulator`], hands the handler the event the service would send
//! ([`Emulator::invocation_event`]), completes the execution from its answer
//! ([`Emulator::finish_invocation`]), fires waits and retries when due (or at once), answers
//! callbacks, and can cut an invocation after a number of applied updates, as a crash would,
//! to prove the replay. It returns what the emulator holds at the end: the execution's status
//! and result, every operation, and one [`InvocationRecord`] per invocation.
//!
//! The handler is any `FnMut(serde_json::Value) -> impl Future<Output = Result<Value, E>>`:
//! the event in, the function's answer (`{"Status": ...}`) out, or an error, which Lambda
//! records as a failed invocation and retries. That fits the crate's own handlers
//! (`InvocationEvent::from_value` and `CheckpointBatcher::for_invocation`), durable-lambda's
//! `Runner::invoke`, and the `checkpoint-batcher local` command, whose "handler" is a round
//! trip through the Lambda Runtime API to a child process.
//!
//! # What counts as an end
//!
//! [`LocalOutcome::status`] is the EXECUTION operation's status as the emulator holds it,
//! never the handler's word: a handler that answers `SUCCEEDED` while the emulator refuses
//! the answer does not make the outcome `SUCCEEDED`. The loop stops when the execution
//! completed, when [`LocalRun::max_invocations`] were made, or when it waits for something
//! nothing will complete (a callback without [`LocalRun::callback_result`], a chained invoke).
//!
//! # Crashes in process
//!
//! [`LocalRun::crash_after_updates`] drops the handler's future once that many updates were
//! applied in the execution: to the service, that is what a crashed sandbox looks like. The
//! crash lands when the run is next polled after the checkpoint that reached the count, so a
//! handler running on other threads may read that checkpoint's answer and apply a few more
//! updates first ("at least N", not "exactly N"). A run whose execution never reaches the
//! count never crashes: [`LocalOutcome::crashed`] and [`LocalOutcome::replayed`] say whether
//! the replay was tested. Tasks the
//! handler spawned (a batcher's worker) may live on; every re-invocation gets a fresh token
//! ([`Emulator::rotate_token`]), as the service gives one, so whatever they still send is
//! refused as stale instead of being applied behind the new invocation's back.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::execution::Completion;
use super::operation::now_secs;
use super::rules::{OpType, Status};
use super::{Emulator, EmulatorError, ErrorRecord, ExecutionSnapshot};
use crate::redact::{Redacted, Withheld};

/// Default of [`LocalRun::max_invocations`].
pub const DEFAULT_MAX_INVOCATIONS: u32 = 20;

/// Default of [`LocalRun::timeout`]: a minute, where Lambda's own limit is 15.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one durable execution to its end against an [`Emulator`], invoking a handler as the
/// service would; see the [module documentation](self).
///
/// Faults (throttling, lost answers...) are the emulator's: give them to
/// [`Emulator::builder`] or [`Emulator::set_faults`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use checkpoint_batcher::emulator::Emulator;
/// use checkpoint_batcher::emulator::local::LocalRun;
/// use serde_json::{Value, json};
///
/// let emulator = Emulator::builder().start().await?;
/// // A handler that checkpoints nothing and answers at once.
/// let outcome = LocalRun::new(json!({"n": 2}))
///     .run(&emulator, |_event: Value| async {
///         Ok::<_, std::convert::Infallible>(json!({"Status": "SUCCEEDED", "Result": "4"}))
///     })
///     .await?;
/// assert!(outcome.succeeded());
/// assert_eq!(outcome.result.as_deref(), Some("4"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a LocalRun does nothing until `run` is awaited"]
pub struct LocalRun {
    input: String,
    name: String,
    skip_waits: bool,
    callback_result: Option<String>,
    wait_for_callbacks: bool,
    max_invocations: u32,
    timeout: Duration,
    crash_after_updates: Option<usize>,
}

impl LocalRun {
    /// A run of an execution started with `input` (the execution's input payload, as JSON).
    pub fn new(input: Value) -> Self {
        Self {
            input: input.to_string(),
            name: "local".to_owned(),
            skip_waits: false,
            callback_result: None,
            wait_for_callbacks: false,
            max_invocations: DEFAULT_MAX_INVOCATIONS,
            timeout: DEFAULT_TIMEOUT,
            crash_after_updates: None,
        }
    }

    /// The execution's name (it appears in its ARN as the function's name). Default: `local`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Fires waits, and makes steps waiting for a retry ready, as soon as the handler answers
    /// `PENDING` instead of when they are due. Default: false (they fire when due, by the wall
    /// clock: under tokio's paused clock, set this).
    pub fn skip_waits(mut self, skip: bool) -> Self {
        self.skip_waits = skip;
        self
    }

    /// Completes every callback the handler waits on with this result (the payload the
    /// callback's sender would give, as text, usually JSON). Default: none, and a run waiting
    /// only on callbacks stops with [`EndReason::Blocked`].
    pub fn callback_result(mut self, result: impl Into<String>) -> Self {
        self.callback_result = Some(result.into());
        self
    }

    /// Without [`callback_result`](Self::callback_result): waits for someone else to answer
    /// the callbacks the handler waits on (`SendDurableExecutionCallbackSuccess` or `...Failure`
    /// sent to the emulator, or [`Emulator::complete_operation`]), however long that takes,
    /// instead of stopping with [`EndReason::Blocked`]. [`Progress::AwaitingCallbacks`] tells
    /// when. Default: false.
    pub fn wait_for_callbacks(mut self, wait: bool) -> Self {
        self.wait_for_callbacks = wait;
        self
    }

    /// The most invocations before giving up (at least 1). Default:
    /// [`DEFAULT_MAX_INVOCATIONS`].
    pub fn max_invocations(mut self, max: u32) -> Self {
        self.max_invocations = max.max(1);
        self
    }

    /// How long one invocation may run before it is cut, as Lambda cuts a function at its
    /// timeout, and invoked again. Default: [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Crashes the invocation running when the execution's applied updates reach `updates`,
    /// once in the run: its future is dropped (see the [module documentation](self#crashes-in-process))
    /// and the next invocation replays. Whether that happened is
    /// [`LocalOutcome::replayed`]: an execution that applies fewer updates never crashes.
    /// Default: never.
    pub fn crash_after_updates(mut self, updates: usize) -> Self {
        self.crash_after_updates = Some(updates);
        self
    }

    /// Starts the execution on `emulator` and invokes `handler` until the execution ends, the
    /// invocations run out, or nothing will complete what it waits on.
    ///
    /// # Errors
    ///
    /// Only when the emulator loses the execution it started (it cannot); everything that goes
    /// wrong in the handler is in the outcome.
    pub async fn run<H, Fut, E>(
        &self,
        emulator: &Emulator,
        handler: H,
    ) -> Result<LocalOutcome, EmulatorError>
    where
        H: FnMut(Value) -> Fut,
        Fut: Future<Output = Result<Value, E>>,
        E: fmt::Display,
    {
        self.run_observed(emulator, handler, |_: &Progress| {})
            .await
    }

    /// [`run`](Self::run), telling `observe` what happens as it happens: each invocation
    /// starting and ending, waits fired, callbacks completed, time waited.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn run_observed<H, Fut, E, O>(
        &self,
        emulator: &Emulator,
        mut handler: H,
        mut observe: O,
    ) -> Result<LocalOutcome, EmulatorError>
    where
        H: FnMut(Value) -> Fut,
        Fut: Future<Output = Result<Value, E>>,
        E: fmt::Display,
        O: FnMut(&Progress),
    {
        let (arn, _token) = emulator.start_execution_with_input(&self.name, Some(&self.input));
        let mut invocations = Vec::new();
        let mut crash_pending = self.crash_after_updates;
        let mut end = EndReason::MaxInvocations;
        for number in 1..=self.max_invocations {
            if number > 1 && emulator.rotate_token(&arn).is_none() {
                end = EndReason::Completed;
                break;
            }
            let Some(event) = emulator.invocation_event(&arn) else {
                end = EndReason::Completed;
                break;
            };
            observe(&Progress::Invoking { number });
            let before = counters(emulator, &arn)?;
            let started = Instant::now();
            let answer = {
                let invocation = handler(event);
                let crash = crash_watch(emulator, &arn, crash_pending);
                tokio::select! {
                    biased;
                    answer = invocation => match answer {
                        Ok(output) => Answer::Output(output),
                        Err(error) => Answer::Error(error.to_string()),
                    },
                    () = crash => Answer::Crashed,
                    () = tokio::time::sleep(self.timeout) => Answer::TimedOut,
                }
            };
            let duration = started.elapsed();
            if matches!(answer, Answer::Crashed) {
                crash_pending = None;
            }
            let outcome = match answer {
                Answer::Output(output) => match emulator.finish_invocation(&arn, &output) {
                    Ok(()) => match output.get("Status").and_then(Value::as_str) {
                        Some("SUCCEEDED") => InvocationOutcome::Succeeded,
                        Some("FAILED") => InvocationOutcome::Failed,
                        _ => InvocationOutcome::Pending,
                    },
                    Err(EmulatorError::InvalidOutput(why)) => InvocationOutcome::InvalidOutput(why),
                    Err(other) => return Err(other),
                },
                Answer::Error(message) => InvocationOutcome::Error(message),
                Answer::Crashed => InvocationOutcome::Crashed,
                Answer::TimedOut => InvocationOutcome::TimedOut,
            };
            let after = counters(emulator, &arn)?;
            let record = InvocationRecord {
                number,
                duration,
                updates_applied: after.applied.saturating_sub(before.applied),
                requests: after.requests.saturating_sub(before.requests),
                outcome,
            };
            observe(&Progress::Invoked(record.clone()));
            let pending = matches!(record.outcome, InvocationOutcome::Pending);
            invocations.push(record);
            if after.completed {
                end = EndReason::Completed;
                break;
            }
            // After the last invocation allowed, nothing would use what the service completes:
            // waiting for it (a timer, a callback) would only delay the end.
            if pending
                && number < self.max_invocations
                && let Some(blocked) = self.play_service(emulator, &arn, &mut observe).await?
            {
                end = blocked;
                break;
            }
        }
        let execution = emulator
            .execution(&arn)
            .ok_or_else(|| EmulatorError::UnknownExecution(arn.clone()))?;
        let exec_op = execution.operation(&execution.execution_operation_id);
        let status = match exec_op {
            Some(op) if execution.completed => op.status.clone(),
            _ => "RUNNING".to_owned(),
        };
        let result = exec_op.and_then(|op| op.result.clone());
        let error = exec_op.and_then(|op| op.error.clone());
        Ok(LocalOutcome {
            status,
            result,
            error,
            end,
            invocations,
            execution,
        })
    }

    /// After a `PENDING` answer: completes what is due (at once with `skip_waits`), waiting for
    /// the earliest timer when nothing is due yet. `Some(Blocked)` when the handler waits only on
    /// what nothing here completes.
    async fn play_service<O: FnMut(&Progress)>(
        &self,
        emulator: &Emulator,
        arn: &str,
        observe: &mut O,
    ) -> Result<Option<EndReason>, EmulatorError> {
        let waiting = waiting_on(emulator, arn)?;
        let mut earliest: Option<f64> = None;
        let mut blocked = Vec::new();
        let mut fired = false;
        let now = now_secs();
        for op in &waiting {
            let completion = match op.kind {
                Waiting::Timer { due } if self.skip_waits || due <= now => op.completion(),
                Waiting::Timer { due } => {
                    earliest = Some(earliest.map_or(due, |e: f64| e.min(due)));
                    continue;
                }
                Waiting::Callback { .. } => match &self.callback_result {
                    Some(result) => Completion::Succeed(Some(result.clone())),
                    None => {
                        blocked.push(op.clone());
                        continue;
                    }
                },
                Waiting::Other => {
                    blocked.push(op.clone());
                    continue;
                }
            };
            complete(emulator, arn, &op.id, completion)?;
            observe(&Progress::Completed(op.clone()));
            fired = true;
        }
        if fired || waiting.is_empty() {
            // Something changed, or the handler answered PENDING with nothing to wait on (a
            // revoked token): the service invokes it again now.
            return Ok(None);
        }
        let callbacks: Vec<PendingOperation> = blocked
            .iter()
            .filter(|op| matches!(op.kind, Waiting::Callback { .. }))
            .cloned()
            .collect();
        let awaiting = self.wait_for_callbacks && !callbacks.is_empty();
        let Some(due) = earliest else {
            if !awaiting || callbacks.len() < blocked.len() {
                return Ok(Some(EndReason::Blocked(blocked)));
            }
            observe(&Progress::AwaitingCallbacks(callbacks.clone()));
            callback_answered(emulator, arn, &callbacks).await;
            return Ok(None);
        };
        let wait = Duration::from_secs_f64((due - now_secs()).max(0.0));
        observe(&Progress::Sleeping(wait));
        if awaiting {
            observe(&Progress::AwaitingCallbacks(callbacks.clone()));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = callback_answered(emulator, arn, &callbacks) => return Ok(None),
            }
        } else {
            tokio::time::sleep(wait).await;
        }
        for op in waiting_on(emulator, arn)? {
            if let Waiting::Timer { due } = op.kind
                && due <= now_secs()
            {
                complete(emulator, arn, &op.id, op.completion())?;
                observe(&Progress::Completed(op));
            }
        }
        Ok(None)
    }
}

/// What the handler's future came to.
enum Answer {
    Output(Value),
    Error(String),
    Crashed,
    TimedOut,
}

/// Completes `id`; an operation something else completed or changed meanwhile (a checkpoint
/// between reading what waits and completing it) is left as it is.
fn complete(
    emulator: &Emulator,
    arn: &str,
    id: &str,
    completion: Completion,
) -> Result<(), EmulatorError> {
    match emulator.complete_operation(arn, id, completion) {
        Ok(()) | Err(EmulatorError::AlreadyFinished(_) | EmulatorError::NotApplicable(..)) => {
            Ok(())
        }
        Err(other) => Err(other),
    }
}

/// Resolves once the execution's applied updates reach `threshold`; never without one.
async fn crash_watch(emulator: &Emulator, arn: &str, threshold: Option<usize>) {
    let Some(threshold) = threshold else {
        return std::future::pending().await;
    };
    loop {
        let notified = emulator.store.checkpointed.notified();
        tokio::pin!(notified);
        // Registered before the count is read, so no checkpoint slips between the two.
        notified.as_mut().enable();
        let applied = emulator
            .store
            .executions()
            .executions
            .get(arn)
            .map_or(0, |e| e.applied.len());
        if applied >= threshold {
            return;
        }
        notified.await;
    }
}

/// Resolves once one of `callbacks` no longer waits (answered, or gone), or the execution
/// completed.
async fn callback_answered(emulator: &Emulator, arn: &str, callbacks: &[PendingOperation]) {
    loop {
        let notified = emulator.store.checkpointed.notified();
        tokio::pin!(notified);
        // Registered before the state is read, so no answer slips between the two.
        notified.as_mut().enable();
        let answered = {
            let executions = emulator.store.executions();
            let Some(execution) = executions.executions.get(arn) else {
                return;
            };
            // Stopped, or completed by a checkpoint: nothing will wait on the callbacks now.
            execution.completed
                || callbacks.iter().any(|callback| {
                    execution
                        .index
                        .get(&callback.id)
                        .and_then(|&i| execution.ops.get(i))
                        .is_none_or(|op| op.status != Status::Started)
                })
        };
        if answered {
            return;
        }
        notified.await;
    }
}

/// The counters an invocation record is the difference of.
struct Counters {
    applied: usize,
    requests: u64,
    completed: bool,
}

fn counters(emulator: &Emulator, arn: &str) -> Result<Counters, EmulatorError> {
    let executions = emulator.store.executions();
    let execution = executions.get(arn)?;
    Ok(Counters {
        applied: execution.applied.len(),
        requests: execution
            .checkpoint_calls
            .saturating_add(execution.state_calls),
        completed: execution.completed,
    })
}

/// The operations the execution waits on, in creation order.
fn waiting_on(emulator: &Emulator, arn: &str) -> Result<Vec<PendingOperation>, EmulatorError> {
    let executions = emulator.store.executions();
    let execution = executions.get(arn)?;
    Ok(execution
        .ops
        .iter()
        .filter_map(|op| {
            let kind = match (op.op_type, op.status) {
                (OpType::Wait, Status::Started) => Waiting::Timer {
                    due: op.scheduled_end_ts.unwrap_or(0.0),
                },
                (OpType::Step, Status::Pending) => Waiting::Timer {
                    due: op.next_attempt_ts.unwrap_or(0.0),
                },
                (OpType::Callback, Status::Started) => Waiting::Callback {
                    callback_id: op.callback_id.clone(),
                },
                (OpType::ChainedInvoke, Status::Started) => Waiting::Other,
                _ => return None,
            };
            Some(PendingOperation {
                id: op.id.clone(),
                name: op.name.clone(),
                op_type: op.op_type.as_str().to_owned(),
                kind,
            })
        })
        .collect())
}

/// An operation the execution waits on, which the service completes.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PendingOperation {
    /// Operation Id.
    pub id: String,
    /// Name given at creation.
    pub name: Option<String>,
    /// `WAIT`, `STEP` (waiting for its retry), `CALLBACK` or `CHAINED_INVOKE`.
    pub op_type: String,
    /// What it waits for.
    pub kind: Waiting,
}

impl PendingOperation {
    /// What completes it when its timer is due: a wait succeeds, a step becomes ready.
    fn completion(&self) -> Completion {
        if self.op_type == OpType::Step.as_str() {
            Completion::Ready
        } else {
            Completion::Succeed(None)
        }
    }
}

/// What a [`PendingOperation`] waits for. `Debug` shows a callback's Id redacted: whoever
/// holds it can answer the callback.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Waiting {
    /// A timer: a WAIT's scheduled end or a STEP's next attempt, in epoch seconds.
    Timer {
        /// When it is due, in epoch seconds.
        due: f64,
    },
    /// A callback's answer, sent by someone else with its callback Id.
    Callback {
        /// The Id a sender answers it with.
        callback_id: Option<String>,
    },
    /// Something the local run does not play (a chained invoke).
    Other,
}

/// What happened, as [`LocalRun::run_observed`] reports it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Progress {
    /// Invocation `number` (1-based) starts.
    Invoking {
        /// Its number.
        number: u32,
    },
    /// An invocation ended.
    Invoked(InvocationRecord),
    /// The service's side completed this operation (a wait fired, a retry became ready, a
    /// callback was answered).
    Completed(PendingOperation),
    /// Nothing is due yet: the run sleeps this long for the earliest timer.
    Sleeping(Duration),
    /// The handler waits on these callbacks, and the run waits for someone to answer one
    /// ([`LocalRun::wait_for_callbacks`]).
    AwaitingCallbacks(Vec<PendingOperation>),
}

/// One invocation of the handler.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct InvocationRecord {
    /// 1-based.
    pub number: u32,
    /// From the event handed over to the answer (or the crash, or the timeout).
    pub duration: Duration,
    /// Updates the emulator applied to the execution meanwhile.
    pub updates_applied: usize,
    /// Checkpoint and state requests the emulator received for the execution meanwhile
    /// (faulted and refused ones included).
    pub requests: u64,
    /// How it ended.
    pub outcome: InvocationOutcome,
}

/// How one invocation ended. `Debug` shows an error's text as its length, `Display` the
/// [`label`](Self::label) only; [`detail`](Self::detail) gives the text.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvocationOutcome {
    /// It answered `SUCCEEDED`, and the emulator accepted the answer.
    Succeeded,
    /// It answered `FAILED`, and the emulator accepted the answer.
    Failed,
    /// It answered `PENDING`.
    Pending,
    /// It answered an error (Lambda retries the invocation): the error's text.
    Error(String),
    /// It answered something the service does not accept as an output: why.
    InvalidOutput(String),
    /// It was crashed after the configured number of applied updates.
    Crashed,
    /// It ran past the timeout and was cut.
    TimedOut,
}

impl InvocationOutcome {
    /// A short word for reports: `SUCCEEDED`, `FAILED`, `PENDING`, `error`, `invalid output`,
    /// `crashed`, `timed out`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Pending => "PENDING",
            Self::Error(_) => "error",
            Self::InvalidOutput(_) => "invalid output",
            Self::Crashed => "crashed",
            Self::TimedOut => "timed out",
        }
    }

    /// The error's text, or why the output was refused: what a person running the handler
    /// reads, which neither `Display` nor `Debug` shows (it may quote the handler's data).
    #[must_use]
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Error(why) | Self::InvalidOutput(why) => Some(why),
            _ => None,
        }
    }
}

/// The [`label`](InvocationOutcome::label); [`detail`](InvocationOutcome::detail) has the
/// error's text.
impl fmt::Display for InvocationOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why the run stopped.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EndReason {
    /// The execution completed (see [`LocalOutcome::status`] for how).
    Completed,
    /// [`LocalRun::max_invocations`] were made and the execution still runs.
    MaxInvocations,
    /// The handler waits only on operations nothing here completes: callbacks without
    /// [`LocalRun::callback_result`], chained invokes.
    Blocked(Vec<PendingOperation>),
}

/// The end of a [`LocalRun`]: what the emulator holds, and every invocation. `Debug` shows
/// the result as its length, as the emulator's own types do.
#[derive(Clone)]
#[non_exhaustive]
pub struct LocalOutcome {
    /// The EXECUTION operation's status as the emulator holds it once the execution completed
    /// (`SUCCEEDED`, `FAILED`, `STOPPED`...), `RUNNING` when it has not.
    pub status: String,
    /// The execution's result (the SUCCEEDED answer's `Result`, or the EXECUTION update's
    /// payload).
    pub result: Option<String>,
    /// The execution's error, when it failed.
    pub error: Option<ErrorRecord>,
    /// Why the run stopped.
    pub end: EndReason,
    /// Every invocation, in order.
    pub invocations: Vec<InvocationRecord>,
    /// Everything the emulator holds for the execution: operations, their histories, every
    /// applied update.
    pub execution: ExecutionSnapshot,
}

impl LocalOutcome {
    /// Whether the emulator holds the execution completed and SUCCEEDED.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.execution.completed && self.status == "SUCCEEDED"
    }

    /// Whether an invocation was crashed ([`LocalRun::crash_after_updates`]). A run asked to
    /// crash whose execution applied fewer updates than the threshold never crashes, and still
    /// succeeds: a test of the replay should assert this, or [`replayed`](Self::replayed).
    #[must_use]
    pub fn crashed(&self) -> bool {
        self.invocations
            .iter()
            .any(|i| i.outcome == InvocationOutcome::Crashed)
    }

    /// Whether an invocation followed a crashed one, so the handler replayed from what the
    /// crashed one left durable. A crash on the update that completed the execution is followed
    /// by no invocation: the service has nothing left to invoke.
    #[must_use]
    pub fn replayed(&self) -> bool {
        self.invocations
            .iter()
            .position(|i| i.outcome == InvocationOutcome::Crashed)
            .is_some_and(|crashed| crashed + 1 < self.invocations.len())
    }
}

// Payloads (the input, results, errors' text) as their length and callback Ids redacted, as
// every type of the emulator formats them (`crate::redact`).

impl fmt::Debug for LocalRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRun")
            .field("input", &Withheld(&self.input))
            .field("name", &self.name)
            .field("skip_waits", &self.skip_waits)
            .field(
                "callback_result",
                &self.callback_result.as_deref().map(Withheld),
            )
            .field("wait_for_callbacks", &self.wait_for_callbacks)
            .field("max_invocations", &self.max_invocations)
            .field("timeout", &self.timeout)
            .field("crash_after_updates", &self.crash_after_updates)
            .finish()
    }
}

impl fmt::Debug for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timer { due } => f.debug_struct("Timer").field("due", due).finish(),
            Self::Callback { callback_id } => f
                .debug_struct("Callback")
                .field("callback_id", &callback_id.as_deref().map(Redacted))
                .finish(),
            Self::Other => f.write_str("Other"),
        }
    }
}

impl fmt::Debug for InvocationOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error(text) => f.debug_tuple("Error").field(&Withheld(text)).finish(),
            Self::InvalidOutput(why) => f
                .debug_tuple("InvalidOutput")
                .field(&Withheld(why))
                .finish(),
            Self::Succeeded => f.write_str("Succeeded"),
            Self::Failed => f.write_str("Failed"),
            Self::Pending => f.write_str("Pending"),
            Self::Crashed => f.write_str("Crashed"),
            Self::TimedOut => f.write_str("TimedOut"),
        }
    }
}

impl fmt::Debug for LocalOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalOutcome")
            .field("status", &self.status)
            .field("result", &self.result.as_deref().map(Withheld))
            .field("error", &self.error)
            .field("end", &self.end)
            .field("invocations", &self.invocations)
            .field("execution", &self.execution)
            .finish()
    }
}
