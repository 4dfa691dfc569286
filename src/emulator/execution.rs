//! One execution as the emulated service holds it: its operations, its token, its
//! idempotency records and counters; and what is built from them (snapshots,
//! invocation events, the service's own completions).
//!
//! The checkpoint procedure ([`super::checkpoint`]) and paging ([`super::paging`])
//! work on an [`Execution`]; the store ([`super::store`]) finds it by ARN.
//!
//! # Invariants
//!
//! - At most one valid token, [`Execution::current_token`]. A completed execution has
//!   none; only an applied checkpoint or the store's admin calls change it.
//! - `ops` only grows at the end and `index` maps every Id to its position, so an
//!   offset into `ops` stays valid for paging. `ops[0]` is the EXECUTION operation
//!   (Id `exec_op_id`), created with the execution.
//! - An idempotency record is keyed by (`ClientToken`, inbound token), written only
//!   for an applied checkpoint, and kept for the life of the execution.
//! - `service_changes` lists operations the service changed since the last applied
//!   checkpoint; that checkpoint reports and clears them.
//! - Counters only grow.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use axum::body::Bytes;

use super::error::{ApiError, EmulatorError};
use super::operation::{Op, now_secs, secs_to_millis};
use super::paging::{self, Marker};
use super::rules::{Action, OpType, OpView, Status};
use super::snapshot::{AppliedUpdate, ExecutionSnapshot};
use super::wire;
use crate::redact::{Redacted, Withheld};

/// The input the service gives an execution started without one: the EXECUTION operation
/// carries `"{}"` as its `ExecutionDetails.InputPayload`, never no input (docs/PROTOCOL.md,
/// "The invocation").
const NO_INPUT: &str = "{}";

/// The largest answer, in bytes of JSON, the service takes from a durable function: the
/// response limit of 6 MiB less 50 bytes (docs/PROTOCOL.md, "The invocation"). A larger result
/// travels in an EXECUTION update instead.
const MAX_ANSWER_BYTES: usize = 6 * 1024 * 1024 - 50;

/// A change the service makes on its own (timer fired, callback answered, invoked
/// function returned), applied with [`super::Emulator::complete_operation`]. The
/// EXECUTION operation is not completed this way (see
/// [`super::Emulator::stop_execution`]). The changed operation is reported in the next applied checkpoint's
/// `NewExecutionState`, which is how an empty checkpoint "fetches new state".
///
/// `Debug` shows a result or a message as its length only.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Completion {
    /// The operation succeeded with this result (WAIT fired, callback succeeded...).
    Succeed(Option<String>),
    /// The operation failed with this error message.
    Fail(Option<String>),
    /// The operation timed out (callbacks, chained invokes).
    TimeOut,
    /// A STEP waiting for its retry (PENDING) may run its next attempt (READY); only
    /// for a PENDING STEP.
    Ready,
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Succeed(result) => f
                .debug_tuple("Succeed")
                .field(&result.as_deref().map(Withheld))
                .finish(),
            Self::Fail(message) => f
                .debug_tuple("Fail")
                .field(&message.as_deref().map(Withheld))
                .finish(),
            Self::TimeOut => f.write_str("TimeOut"),
            Self::Ready => f.write_str("Ready"),
        }
    }
}

/// The answer to an applied checkpoint, kept for a retry of the same request.
#[derive(Clone, Debug)]
pub(super) struct StoredReply {
    /// Hash of the request's `Updates`; a retry must match it.
    pub(super) fingerprint: u64,
    /// Shared with the response that first carried it: storing it copies nothing.
    pub(super) body: Bytes,
}

/// One applied update as the execution keeps it: its type and action as enums, and its
/// request's client token shared by every update of the request, so that the log costs one
/// allocation per update (the Id). [`AppliedUpdate`] is how a snapshot shows it.
pub(super) struct Applied {
    pub(super) checkpoint: u64,
    pub(super) index: usize,
    pub(super) id: String,
    pub(super) op_type: OpType,
    pub(super) action: Action,
    pub(super) client_token: Option<Arc<str>>,
}

impl Applied {
    fn record(&self) -> AppliedUpdate {
        AppliedUpdate {
            checkpoint: self.checkpoint,
            index: self.index,
            id: self.id.clone(),
            op_type: self.op_type.as_str().to_owned(),
            action: self.action.as_str().to_owned(),
            client_token: self.client_token.as_deref().map(str::to_owned),
        }
    }
}

/// A map keyed by operation Id. Its fast hash does not resist crafted collisions, which would
/// only slow down the emulator that the client itself drives, on a test machine.
pub(super) type IdMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// One execution and everything held for it. `Debug` shows the token redacted and counts the
/// rest: operations and stored replies hold payloads and tokens.
pub(super) struct Execution {
    pub(super) arn: String,
    pub(super) name: String,
    pub(super) exec_op_id: String,
    pub(super) current_token: Option<String>,
    pub(super) completed: bool,
    pub(super) ops: Vec<Op>,
    pub(super) index: IdMap<usize>,
    pub(super) applied: Vec<Applied>,
    pub(super) checkpoint_calls: u64,
    pub(super) applied_checkpoints: u64,
    pub(super) replayed: u64,
    pub(super) rejected: u64,
    pub(super) faulted: u64,
    pub(super) lost_answers: u64,
    pub(super) state_calls: u64,
    pub(super) request_body_sizes: Vec<usize>,
    pub(super) idempotency: HashMap<(String, String), StoredReply>,
    /// Changed-operation lists of the checkpoints that answered with a `NextMarker`.
    pub(super) paged_changes: HashMap<u64, Vec<usize>>,
    /// Operations changed by the service since the last applied checkpoint.
    pub(super) service_changes: Vec<usize>,
}

impl fmt::Debug for Execution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Execution")
            .field("arn", &self.arn)
            .field("name", &self.name)
            .field(
                "current_token",
                &self.current_token.as_deref().map(Redacted),
            )
            .field("completed", &self.completed)
            .field("operations", &self.ops.len())
            .field("applied_checkpoints", &self.applied_checkpoints)
            .field("idempotency_records", &self.idempotency.len())
            .finish_non_exhaustive()
    }
}

impl Execution {
    /// A new execution holding only its EXECUTION operation (Id `exec_op_id`, carrying
    /// `input`), with `token` as its current token.
    pub(super) fn new(
        arn: String,
        name: &str,
        exec_op_id: String,
        token: String,
        input: Option<&str>,
    ) -> Self {
        let mut exec_op = Op::new(&exec_op_id, OpType::Execution, now_secs());
        exec_op.name = Some(name.to_owned());
        exec_op.payload = Some(input.unwrap_or(NO_INPUT).to_owned());
        Self {
            arn,
            name: name.to_owned(),
            exec_op_id: exec_op_id.clone(),
            current_token: Some(token),
            completed: false,
            ops: vec![exec_op],
            index: IdMap::from_iter([(exec_op_id, 0)]),
            applied: Vec::new(),
            checkpoint_calls: 0,
            applied_checkpoints: 0,
            replayed: 0,
            rejected: 0,
            faulted: 0,
            lost_answers: 0,
            state_calls: 0,
            request_body_sizes: Vec::new(),
            idempotency: HashMap::new(),
            paged_changes: HashMap::new(),
            service_changes: Vec::new(),
        }
    }

    /// What the rules need to know of a stored operation.
    pub(super) fn view(&self, id: &str) -> Option<OpView<'_>> {
        let op = self.ops.get(*self.index.get(id)?)?;
        Some(OpView {
            op_type: op.op_type,
            status: op.status,
            parent_id: op.parent_id.as_deref(),
            name: op.name.as_deref(),
            sub_type: op.sub_type.as_deref(),
        })
    }

    /// Accepts only the current token.
    pub(super) fn check_token(&self, token: &str) -> Result<(), ApiError> {
        match &self.current_token {
            Some(current) if current == token => Ok(()),
            Some(_) => Err(ApiError::InvalidToken(
                "the token is not the execution's current token",
            )),
            None if self.completed => Err(ApiError::InvalidToken("the execution is complete")),
            None => Err(ApiError::InvalidToken("the token was revoked")),
        }
    }

    pub(super) fn snapshot(&self) -> ExecutionSnapshot {
        ExecutionSnapshot {
            arn: self.arn.clone(),
            name: self.name.clone(),
            execution_operation_id: self.exec_op_id.clone(),
            current_token: self.current_token.clone(),
            completed: self.completed,
            checkpoint_calls: self.checkpoint_calls,
            applied_checkpoints: self.applied_checkpoints,
            replayed_checkpoints: self.replayed,
            rejected_checkpoints: self.rejected,
            faulted_checkpoints: self.faulted,
            lost_answers: self.lost_answers,
            state_calls: self.state_calls,
            request_body_sizes: self.request_body_sizes.clone(),
            operations: self.ops.iter().map(Op::record).collect(),
            applied: self.applied.iter().map(Applied::record).collect(),
        }
    }

    /// The event the service would send an invocation of the execution now: its current
    /// token and the first page of all its operations (creation order, timestamps in epoch
    /// milliseconds, cut at `page_size` operations or `max_page_bytes` as a state page is),
    /// with a `s.<tag>.<offset>` marker, tagged with that token, when more remain. `None` for an
    /// execution without a valid token (completed or revoked).
    pub(super) fn invocation_event(
        &self,
        page_size: usize,
        max_page_bytes: usize,
    ) -> Option<crate::wire::Invocation<crate::wire::Operation<i64>>> {
        let token = self.current_token.clone()?;
        let all: Vec<usize> = (0..self.ops.len()).collect();
        let first = paging::page(
            &self.ops,
            &all,
            Marker::State {
                tag: paging::token_tag(&token),
                offset: 0,
            },
            page_size,
            max_page_bytes,
        );
        Some(crate::wire::Invocation {
            durable_execution_arn: Some(self.arn.clone()),
            checkpoint_token: Some(token),
            initial_execution_state: Some(crate::wire::OperationsPage {
                operations: first
                    .operations
                    .into_iter()
                    .map(|op| op.map_timestamps(secs_to_millis))
                    .collect(),
                next_marker: first.next_marker,
            }),
        })
    }

    /// Stops the execution as `StopDurableExecution` would: an unfinished EXECUTION
    /// operation becomes STOPPED, and the execution completes without a token.
    pub(super) fn stop(&mut self) {
        let now = now_secs();
        if let Some(op) = self.ops.first_mut()
            && !op.status.is_finished()
        {
            op.status = Status::Stopped;
            op.end_ts = Some(now);
            op.history.push("service:STOPPED".into());
        }
        self.completed = true;
        self.current_token = None;
    }

    /// What the service does with an invocation's answer: `SUCCEEDED` or `FAILED` completes
    /// the execution (its EXECUTION operation takes the result or the error, and the token
    /// chain ends), `PENDING` leaves it waiting. An execution a checkpoint already completed
    /// (an EXECUTION update, as for a result over the response limit) stays as it is. An
    /// answer over the response limit is refused whole and changes nothing: Lambda fails such
    /// an invocation.
    pub(super) fn finish_invocation(
        &mut self,
        output: &serde_json::Value,
    ) -> Result<(), EmulatorError> {
        let invalid = |what: &str| EmulatorError::InvalidOutput(what.to_owned());
        let answer_bytes = output.to_string().len();
        if answer_bytes > MAX_ANSWER_BYTES {
            return Err(EmulatorError::InvalidOutput(format!(
                "the answer is {answer_bytes} bytes, over the response limit of \
                 {MAX_ANSWER_BYTES}: a larger result is checkpointed as an EXECUTION update"
            )));
        }
        let (status, result, error) = match output.get("Status").and_then(|s| s.as_str()) {
            Some("PENDING") => return Ok(()),
            Some("SUCCEEDED") => {
                let result = match output.get("Result") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(result)) => Some(result.clone()),
                    Some(_) => return Err(invalid("Result must be a string")),
                };
                (Status::Succeeded, result, None)
            }
            Some("FAILED") => {
                let error = output
                    .get("Error")
                    .map(|e| serde_json::from_value::<wire::ErrorObject>(e.clone()))
                    .transpose()
                    .map_err(|e| {
                        // Only where and what kind: serde's text quotes the value, which may be
                        // the error's message or stack trace.
                        EmulatorError::InvalidOutput(format!(
                            "Error: {}",
                            crate::wire::json_fault(&e)
                        ))
                    })?;
                (Status::Failed, None, error)
            }
            _ => return Err(invalid("Status must be SUCCEEDED, FAILED or PENDING")),
        };
        let completed_by_checkpoint = self.completed;
        let Some(op) = self.ops.first_mut() else {
            return Err(invalid("the execution has no EXECUTION operation"));
        };
        if completed_by_checkpoint || op.status.is_finished() {
            return Ok(());
        }
        op.status = status;
        op.end_ts = Some(now_secs());
        // The input stays: the EXECUTION operation's payload is what the execution started with.
        op.result = result;
        op.error = error;
        op.history
            .push(format!("invocation:{}", status.as_str()).into());
        self.completed = true;
        self.current_token = None;
        Ok(())
    }

    /// Applies a change the service makes on its own to operation `id`, to be reported
    /// by the next applied checkpoint.
    pub(super) fn complete(
        &mut self,
        id: &str,
        completion: Completion,
    ) -> Result<(), EmulatorError> {
        let idx = *self
            .index
            .get(id)
            .ok_or_else(|| EmulatorError::UnknownOperation(id.to_owned()))?;
        let op = self
            .ops
            .get_mut(idx)
            .ok_or_else(|| EmulatorError::UnknownOperation(id.to_owned()))?;
        if op.status.is_finished() {
            return Err(EmulatorError::AlreadyFinished(id.to_owned()));
        }
        let ready_misused = completion == Completion::Ready
            && !(op.op_type == OpType::Step && op.status == Status::Pending);
        if op.op_type == OpType::Execution || ready_misused {
            return Err(EmulatorError::NotApplicable(id.to_owned()));
        }
        let now = now_secs();
        op.status = match completion {
            Completion::Succeed(result) => {
                op.result = result;
                Status::Succeeded
            }
            Completion::Fail(message) => {
                op.error = Some(wire::ErrorObject {
                    error_message: message,
                    ..wire::ErrorObject::default()
                });
                Status::Failed
            }
            Completion::TimeOut => Status::TimedOut,
            Completion::Ready => Status::Ready,
        };
        if op.status.is_finished() {
            op.end_ts = Some(now);
        }
        op.history
            .push(format!("service:{}", op.status.as_str()).into());
        self.service_changes.push(idx);
        Ok(())
    }
}
