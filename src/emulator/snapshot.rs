//! Read-only copies of what the emulated service holds, for tests to assert on.
//!
//! Their fields are public, for tests to read; their `Debug` shows tokens as their length and
//! a hash and payloads (results, inputs, error texts) as their length only, as the rest of the
//! crate does.

use std::fmt;

use crate::redact::{Redacted, Withheld};

/// One execution as the emulator holds it, copied out by [`super::Emulator::execution`].
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct ExecutionSnapshot {
    /// The execution's ARN (contains `/`; URL-encode it in paths).
    pub arn: String,
    /// The name given to [`super::Emulator::start_execution`].
    pub name: String,
    /// Id of the EXECUTION operation; an EXECUTION update must carry this Id.
    pub execution_operation_id: String,
    /// The only token the next checkpoint may use; `None` once the execution completed
    /// or its token was revoked.
    pub current_token: Option<String>,
    /// Whether an EXECUTION SUCCEED/FAIL was applied or the execution was stopped.
    pub completed: bool,
    /// Checkpoint requests received for this execution: applied, replayed, rejected and
    /// faulted alike.
    pub checkpoint_calls: u64,
    /// Checkpoints applied (each consumed the token).
    pub applied_checkpoints: u64,
    /// Checkpoints answered from the idempotency store (same `ClientToken` and token).
    pub replayed_checkpoints: u64,
    /// Checkpoints refused with a 4xx (rules, token, body): nothing applied.
    pub rejected_checkpoints: u64,
    /// Checkpoints answered with an injected 429 or 500 before being processed.
    pub faulted_checkpoints: u64,
    /// Checkpoint answers (applied or replayed) lost on purpose by a [`super::Faults`]
    /// lost answer.
    pub lost_answers: u64,
    /// `GetDurableExecutionState` requests received.
    pub state_calls: u64,
    /// Size in bytes of each checkpoint request body, in arrival order, one entry per
    /// call. A body over the limit counts as the bytes received before it was refused.
    pub request_body_sizes: Vec<usize>,
    /// Every operation, in creation order; the EXECUTION operation first.
    pub operations: Vec<OperationRecord>,
    /// Every update ever applied, in application order (replays not repeated).
    pub applied: Vec<AppliedUpdate>,
}

impl ExecutionSnapshot {
    /// The operation with this Id, if any.
    #[must_use]
    pub fn operation(&self, id: &str) -> Option<&OperationRecord> {
        self.operations.iter().find(|op| op.id == id)
    }
}

/// One operation's current state and history.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct OperationRecord {
    /// Operation Id.
    pub id: String,
    /// Enclosing CONTEXT, if any.
    pub parent_id: Option<String>,
    /// Name given at creation.
    pub name: Option<String>,
    /// SubType given at creation.
    pub sub_type: Option<String>,
    /// `EXECUTION`, `CONTEXT`, `STEP`, `WAIT`, `CALLBACK` or `CHAINED_INVOKE`.
    pub op_type: String,
    /// `STARTED`, `PENDING`, `READY`, `SUCCEEDED`, `FAILED`, `CANCELLED`, `TIMED_OUT` or
    /// `STOPPED`.
    pub status: String,
    /// Actions applied, in order: `START`, `SUCCEED`, `FAIL`, `RETRY`, `CANCEL` from
    /// checkpoints; `service:<STATUS>` for changes made through the handle.
    pub history: Vec<String>,
    /// The last `Payload` received in any update (the execution's input for the
    /// EXECUTION operation).
    pub payload: Option<String>,
    /// The result: the `Payload` of the SUCCEED update, or given on a service completion.
    pub result: Option<String>,
    /// The error of the last FAIL or RETRY (or service failure).
    pub error: Option<ErrorRecord>,
    /// Attempts started (STEP only; 1 after the first START).
    pub attempt: u32,
}

/// An `ErrorObject` as received.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorRecord {
    /// `ErrorType`.
    pub error_type: Option<String>,
    /// `ErrorMessage`.
    pub error_message: Option<String>,
    /// `ErrorData`.
    pub error_data: Option<String>,
    /// `StackTrace` lines.
    pub stack_trace: Vec<String>,
}

/// One update applied by a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppliedUpdate {
    /// 1-based number of the applied checkpoint that carried it.
    pub checkpoint: u64,
    /// Position of the update in its request.
    pub index: usize,
    /// Operation Id.
    pub id: String,
    /// Operation type.
    pub op_type: String,
    /// Action.
    pub action: String,
    /// `ClientToken` of the request, if it had one.
    pub client_token: Option<String>,
}

impl fmt::Debug for ExecutionSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutionSnapshot")
            .field("arn", &self.arn)
            .field("name", &self.name)
            .field("execution_operation_id", &self.execution_operation_id)
            .field(
                "current_token",
                &self.current_token.as_deref().map(Redacted),
            )
            .field("completed", &self.completed)
            .field("checkpoint_calls", &self.checkpoint_calls)
            .field("applied_checkpoints", &self.applied_checkpoints)
            .field("replayed_checkpoints", &self.replayed_checkpoints)
            .field("rejected_checkpoints", &self.rejected_checkpoints)
            .field("faulted_checkpoints", &self.faulted_checkpoints)
            .field("lost_answers", &self.lost_answers)
            .field("state_calls", &self.state_calls)
            .field("request_body_sizes", &self.request_body_sizes)
            .field("operations", &self.operations)
            .field("applied", &self.applied)
            .finish()
    }
}

impl fmt::Debug for OperationRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperationRecord")
            .field("id", &self.id)
            .field("parent_id", &self.parent_id)
            .field("name", &self.name)
            .field("sub_type", &self.sub_type)
            .field("op_type", &self.op_type)
            .field("status", &self.status)
            .field("history", &self.history)
            .field("payload", &self.payload.as_deref().map(Withheld))
            .field("result", &self.result.as_deref().map(Withheld))
            .field("error", &self.error)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl fmt::Debug for ErrorRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorRecord")
            .field("error_type", &self.error_type)
            .field(
                "error_message",
                &self.error_message.as_deref().map(Withheld),
            )
            .field("error_data", &self.error_data.as_deref().map(Withheld))
            .field(
                "stack_trace",
                &self
                    .stack_trace
                    .iter()
                    .map(|line| Withheld(line.as_str()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
