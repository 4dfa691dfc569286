//! One operation as the emulated service holds it, and the clock its timestamps use.
//!
//! An [`Op`] is the stored form of an operation: what the client's updates and the
//! service's own completions wrote, plus the list of actions applied to it. It is
//! written out in two shapes: [`Op::to_wire`] for responses and events (the SDK's
//! `Operation`) and [`Op::record`] for snapshots.
//!
//! # Invariants
//!
//! - Timestamps are epoch seconds held with millisecond precision ([`now_secs`]);
//!   responses carry them as they are, invocation events as whole milliseconds
//!   ([`secs_to_millis`]).
//! - `history` only grows: one entry per applied update (the action's name) or per
//!   change the service made (`service:<STATUS>`).
//! - Only the details block of the operation's own type is written to the wire.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use super::rules::{OpType, Status};
use super::snapshot::{ErrorRecord, OperationRecord};
use super::wire;

/// One stored operation.
#[derive(Clone, Debug)]
pub(super) struct Op {
    pub(super) id: String,
    pub(super) parent_id: Option<String>,
    pub(super) name: Option<String>,
    pub(super) sub_type: Option<String>,
    pub(super) op_type: OpType,
    pub(super) status: Status,
    pub(super) start_ts: f64,
    pub(super) end_ts: Option<f64>,
    /// An action's name, or a service's or an invocation's change: mostly static names, so
    /// that recording one allocates nothing.
    pub(super) history: Vec<Cow<'static, str>>,
    pub(super) payload: Option<String>,
    pub(super) result: Option<String>,
    pub(super) error: Option<wire::ErrorObject>,
    pub(super) attempt: u32,
    pub(super) next_attempt_ts: Option<f64>,
    pub(super) scheduled_end_ts: Option<f64>,
    pub(super) callback_id: Option<String>,
    pub(super) replay_children: Option<bool>,
}

impl Op {
    /// A STARTED operation with nothing else set.
    pub(super) fn new(id: &str, op_type: OpType, now: f64) -> Self {
        Self {
            id: id.to_owned(),
            parent_id: None,
            name: None,
            sub_type: None,
            op_type,
            status: Status::Started,
            start_ts: now,
            end_ts: None,
            history: Vec::new(),
            payload: None,
            result: None,
            error: None,
            attempt: 0,
            next_attempt_ts: None,
            scheduled_end_ts: None,
            callback_id: None,
            replay_children: None,
        }
    }

    /// The operation as the API answers it, timestamps in epoch seconds.
    pub(super) fn to_wire(&self) -> wire::Operation {
        let mut op = wire::Operation {
            id: Some(self.id.clone()),
            parent_id: self.parent_id.clone(),
            name: self.name.clone(),
            op_type: Some(Cow::Borrowed(self.op_type.as_str())),
            sub_type: self.sub_type.clone(),
            start_timestamp: Some(self.start_ts),
            end_timestamp: self.end_ts,
            status: Some(Cow::Borrowed(self.status.as_str())),
            execution_details: None,
            context_details: None,
            step_details: None,
            wait_details: None,
            callback_details: None,
            chained_invoke_details: None,
        };
        let result = self.result.clone();
        let error = self.error.clone();
        match self.op_type {
            OpType::Execution => {
                op.execution_details = Some(wire::ExecutionDetails {
                    input_payload: self.payload.clone(),
                });
            }
            OpType::Context => {
                op.context_details = Some(wire::ContextDetails {
                    replay_children: self.replay_children,
                    result,
                    error,
                });
            }
            OpType::Step => {
                op.step_details = Some(wire::StepDetails {
                    attempt: self.attempt,
                    next_attempt_timestamp: self.next_attempt_ts,
                    result,
                    error,
                });
            }
            OpType::Wait => {
                op.wait_details = Some(wire::WaitDetails {
                    scheduled_end_timestamp: self.scheduled_end_ts,
                });
            }
            OpType::Callback => {
                op.callback_details = Some(wire::CallbackDetails {
                    callback_id: self.callback_id.clone(),
                    result,
                    error,
                });
            }
            OpType::ChainedInvoke => {
                op.chained_invoke_details = Some(wire::ChainedInvokeDetails { result, error });
            }
        }
        op
    }

    /// What the operation weighs in a byte-capped page: the UTF-8 bytes of the payloads
    /// it is written with (its result and error, or an EXECUTION's input), at least 1 so
    /// that every operation counts.
    pub(super) fn page_bytes(&self) -> usize {
        let carried = match self.op_type {
            OpType::Execution => self.payload.as_ref(),
            _ => self.result.as_ref(),
        };
        let error = self.error.as_ref().map_or(0, wire::ErrorObject::byte_len);
        carried.map_or(0, String::len).saturating_add(error).max(1)
    }

    /// The operation as a snapshot shows it.
    pub(super) fn record(&self) -> OperationRecord {
        OperationRecord {
            id: self.id.clone(),
            parent_id: self.parent_id.clone(),
            name: self.name.clone(),
            sub_type: self.sub_type.clone(),
            op_type: self.op_type.as_str().to_owned(),
            status: self.status.as_str().to_owned(),
            history: self.history.iter().map(|entry| entry.to_string()).collect(),
            payload: self.payload.clone(),
            result: self.result.clone(),
            error: self.error.as_ref().map(|e| ErrorRecord {
                error_type: e.error_type.clone(),
                error_message: e.error_message.clone(),
                error_data: e.error_data.clone(),
                stack_trace: e.stack_trace.clone().unwrap_or_default(),
            }),
            attempt: self.attempt,
        }
    }
}

/// The current time in epoch seconds, with millisecond precision.
pub(super) fn now_secs() -> f64 {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    // Millisecond precision; the f64 conversion is exact far beyond any real date.
    #[allow(
        clippy::cast_precision_loss,
        reason = "milliseconds since 1970 fit in f64"
    )]
    let secs = millis as f64 / 1000.0;
    secs
}

/// Epoch seconds (held with millisecond precision) as whole epoch milliseconds.
pub(super) fn secs_to_millis(secs: f64) -> i64 {
    // Rounding undoes the binary fraction of `millis / 1000.0`; far below i64's range.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "epoch milliseconds fit in i64"
    )]
    let millis = (secs * 1000.0).round() as i64;
    millis
}

/// The timestamp `secs` whole seconds after `now`; an absent or negative delay counts
/// as none.
pub(super) fn secs_after(now: f64, secs: Option<i64>) -> f64 {
    let secs = secs.unwrap_or(0).max(0);
    // Any delay a client may ask for is far below 2^53 seconds.
    #[allow(
        clippy::cast_precision_loss,
        reason = "delays are far below 2^53 seconds"
    )]
    let f = secs as f64;
    now + f
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn an_operation_is_written_with_every_member_in_the_sdks_order() {
        let mut op = Op::new("s", OpType::Step, 1.5);
        op.parent_id = Some("p".to_owned());
        op.name = Some("n".to_owned());
        op.sub_type = Some("x".to_owned());
        op.status = Status::Succeeded;
        op.end_ts = Some(2.25);
        op.attempt = 1;
        op.next_attempt_ts = Some(3.0);
        op.result = Some("r".to_owned());
        op.error = Some(wire::ErrorObject {
            error_message: Some("m".to_owned()),
            error_type: Some("t".to_owned()),
            ..wire::ErrorObject::default()
        });
        assert_eq!(
            serde_json::to_string(&op.to_wire()).unwrap(),
            r#"{"Id":"s","ParentId":"p","Name":"n","Type":"STEP","SubType":"x","StartTimestamp":1.5,"EndTimestamp":2.25,"Status":"SUCCEEDED","StepDetails":{"Attempt":1,"NextAttemptTimestamp":3.0,"Result":"r","Error":{"ErrorMessage":"m","ErrorType":"t"}}}"#,
            "responses carry epoch seconds and the SDK's member order, absent members left out"
        );
        let event_op = op.to_wire().map_timestamps(secs_to_millis);
        assert_eq!(
            serde_json::to_value(&event_op).unwrap()["StartTimestamp"],
            1500,
            "an invocation event carries whole epoch milliseconds"
        );
    }
}
