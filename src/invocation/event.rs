//! [`InvocationEvent`]: the event of one invocation, parsed into the SDK's types.

use std::fmt;
use std::str::FromStr;

use aws_sdk_lambda::primitives::DateTime;
use aws_sdk_lambda::types::{
    CallbackDetails, ChainedInvokeDetails, ContextDetails, ExecutionDetails, Operation,
    OperationStatus, OperationType, StepDetails, WaitDetails,
};
use serde::Deserialize;

use super::error::InvocationError;
use crate::redact::Redacted;
use crate::wire;

/// The largest timestamp magnitude accepted, in epoch milliseconds: the range of JavaScript
/// dates (±100 million days), far beyond any execution, and small enough that its microseconds
/// fit in `i64`.
const MAX_EPOCH_MILLIS: f64 = 8.64e15;

/// The event the service sends a durable function on every invocation.
///
/// It names the execution (`DurableExecutionArn`), carries the checkpoint token this invocation
/// starts from (`CheckpointToken`), and holds the first page of the execution's operations
/// (`InitialExecutionState`). When the page has a `NextMarker`, the remaining operations are
/// read with `GetDurableExecutionState`: see [`History::load`](super::History::load).
///
/// Parsing follows the service's format: operations become [`aws_sdk_lambda::types::Operation`]
/// values (timestamps arrive in epoch milliseconds), unknown members are ignored, and an unknown
/// `Type` or `Status` string becomes the SDK enum's `Unknown` variant, as when the SDK reads a
/// response. An absent `InitialExecutionState` counts as an empty first page, and an empty
/// `NextMarker` as none (as the official SDKs read it).
///
/// # Examples
///
/// ```
/// use checkpoint_batcher::invocation::InvocationEvent;
///
/// let event: InvocationEvent = r#"{
///     "DurableExecutionArn": "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/x/1",
///     "CheckpointToken": "dG9rZW4",
///     "InitialExecutionState": {"Operations": [{
///         "Id": "exec", "Type": "EXECUTION", "Status": "STARTED",
///         "StartTimestamp": 1700000000000,
///         "ExecutionDetails": {"InputPayload": "{\"items\":3}"}}]}
/// }"#.parse()?;
/// assert_eq!(event.checkpoint_token(), "dG9rZW4");
/// assert_eq!(event.operations()[0].start_timestamp().to_millis()?, 1_700_000_000_000);
/// assert_eq!(event.next_marker(), None);
/// // `Debug` shows the token as its length and a hash, and the SDK hides the payloads.
/// assert!(!format!("{event:?}").contains("dG9rZW4"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct InvocationEvent {
    arn: String,
    checkpoint_token: String,
    operations: Vec<Operation>,
    next_marker: Option<String>,
}

impl InvocationEvent {
    /// Reads the event from JSON already parsed, as `lambda_runtime` hands it over
    /// (`LambdaEvent<serde_json::Value>`).
    ///
    /// # Errors
    ///
    /// [`InvocationError::Malformed`] for a value that is not an event object (or has a
    /// member of the wrong type), [`InvocationError::MissingField`] naming
    /// `DurableExecutionArn` or `CheckpointToken` when one is missing or empty, and the
    /// operation errors ([`InvocationError::MalformedOperation`],
    /// [`InvocationError::MissingOperationField`], [`InvocationError::InvalidOperationField`])
    /// naming the operation's index and the member at fault.
    pub fn from_value(value: serde_json::Value) -> Result<Self, InvocationError> {
        let shape = wire::Invocation::<serde_json::Value>::deserialize(value)
            .map_err(InvocationError::Malformed)?;
        Self::from_shape(shape)
    }

    /// Reads the event from its JSON bytes.
    ///
    /// # Errors
    ///
    /// As [`from_value`](Self::from_value); bytes that are not JSON give
    /// [`InvocationError::Malformed`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvocationError> {
        let shape = serde_json::from_slice::<wire::Invocation<serde_json::Value>>(bytes)
            .map_err(InvocationError::Malformed)?;
        Self::from_shape(shape)
    }

    fn from_shape(shape: wire::Invocation<serde_json::Value>) -> Result<Self, InvocationError> {
        let arn = required(shape.durable_execution_arn, "DurableExecutionArn")?;
        let checkpoint_token = required(shape.checkpoint_token, "CheckpointToken")?;
        let page = shape
            .initial_execution_state
            .unwrap_or(wire::OperationsPage {
                operations: Vec::new(),
                next_marker: None,
            });
        let operations = page
            .operations
            .into_iter()
            .enumerate()
            .map(|(index, value)| operation(index, value))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            arn,
            checkpoint_token,
            operations,
            next_marker: page.next_marker.filter(|m| !m.is_empty()),
        })
    }

    /// The execution's ARN (`DurableExecutionArn`).
    #[must_use]
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The checkpoint token this invocation starts from (`CheckpointToken`): the one to give
    /// the batcher, and the one that reads the remaining state pages.
    #[must_use]
    pub fn checkpoint_token(&self) -> &str {
        &self.checkpoint_token
    }

    /// The operations of the first page (`InitialExecutionState.Operations`), in the event's
    /// order. Not the whole history when [`next_marker`](Self::next_marker) is set.
    #[must_use]
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// Where the remaining operations start (`InitialExecutionState.NextMarker`), or `None`
    /// when the first page holds them all.
    #[must_use]
    pub fn next_marker(&self) -> Option<&str> {
        self.next_marker.as_deref()
    }
}

impl fmt::Debug for InvocationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a bearer credential for the execution; the operations' payloads are
        // hidden by the SDK's own `Debug`.
        f.debug_struct("InvocationEvent")
            .field("arn", &self.arn)
            .field("checkpoint_token", &Redacted(&self.checkpoint_token))
            .field("operations", &self.operations)
            .field("next_marker", &self.next_marker)
            .finish()
    }
}

impl FromStr for InvocationEvent {
    type Err = InvocationError;

    /// As [`InvocationEvent::from_slice`], from a string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_slice(s.as_bytes())
    }
}

impl TryFrom<serde_json::Value> for InvocationEvent {
    type Error = InvocationError;

    /// As [`InvocationEvent::from_value`].
    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        Self::from_value(value)
    }
}

fn required(value: Option<String>, field: &'static str) -> Result<String, InvocationError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or(InvocationError::MissingField { field })
}

/// One operation of the event, at `index`, into the SDK's type.
fn operation(index: usize, value: serde_json::Value) -> Result<Operation, InvocationError> {
    let op = wire::Operation::<f64>::deserialize(value)
        .map_err(|error| InvocationError::MalformedOperation { index, error })?;
    let id = op
        .id
        .filter(|id| !id.is_empty())
        .ok_or(InvocationError::MissingOperationField {
            index,
            id: None,
            field: "Id",
        })?;
    let missing = |field| InvocationError::MissingOperationField {
        index,
        id: Some(id.clone()),
        field,
    };
    let op_type = op
        .op_type
        .filter(|t| !t.is_empty())
        .ok_or_else(|| missing("Type"))?;
    let status = op
        .status
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("Status"))?;
    let start = op
        .start_timestamp
        .ok_or_else(|| missing("StartTimestamp"))?;

    let time = |field: &'static str, millis: f64| {
        epoch_millis(millis).ok_or_else(|| InvocationError::InvalidOperationField {
            index,
            id: id.clone(),
            field,
            reason: format!("{millis} is not a time in epoch milliseconds"),
        })
    };
    let start_timestamp = time("StartTimestamp", start)?;
    let end_timestamp = op
        .end_timestamp
        .map(|t| time("EndTimestamp", t))
        .transpose()?;
    let step_details = op
        .step_details
        .map(|step| {
            let attempt = i32::try_from(step.attempt).map_err(|_| {
                InvocationError::InvalidOperationField {
                    index,
                    id: id.clone(),
                    field: "StepDetails.Attempt",
                    reason: format!("{} is out of range", step.attempt),
                }
            })?;
            let next_attempt = step
                .next_attempt_timestamp
                .map(|t| time("StepDetails.NextAttemptTimestamp", t))
                .transpose()?;
            Ok::<_, InvocationError>(
                StepDetails::builder()
                    .attempt(attempt)
                    .set_next_attempt_timestamp(next_attempt)
                    .set_result(step.result)
                    .set_error(step.error.map(Into::into))
                    .build(),
            )
        })
        .transpose()?;
    let wait_details = op
        .wait_details
        .map(|wait| {
            let end = wait
                .scheduled_end_timestamp
                .map(|t| time("WaitDetails.ScheduledEndTimestamp", t))
                .transpose()?;
            Ok::<_, InvocationError>(
                WaitDetails::builder()
                    .set_scheduled_end_timestamp(end)
                    .build(),
            )
        })
        .transpose()?;

    let built = Operation::builder()
        .id(id.clone())
        .set_parent_id(op.parent_id)
        .set_name(op.name)
        .r#type(OperationType::from(op_type.as_ref()))
        .set_sub_type(op.sub_type)
        .start_timestamp(start_timestamp)
        .set_end_timestamp(end_timestamp)
        .status(OperationStatus::from(status.as_ref()))
        .set_execution_details(op.execution_details.map(|details| {
            ExecutionDetails::builder()
                .set_input_payload(details.input_payload)
                .build()
        }))
        .set_context_details(op.context_details.map(|details| {
            ContextDetails::builder()
                .set_replay_children(details.replay_children)
                .set_result(details.result)
                .set_error(details.error.map(Into::into))
                .build()
        }))
        .set_step_details(step_details)
        .set_wait_details(wait_details)
        .set_callback_details(op.callback_details.map(|details| {
            CallbackDetails::builder()
                .set_callback_id(details.callback_id)
                .set_result(details.result)
                .set_error(details.error.map(Into::into))
                .build()
        }))
        .set_chained_invoke_details(op.chained_invoke_details.map(|details| {
            ChainedInvokeDetails::builder()
                .set_result(details.result)
                .set_error(details.error.map(Into::into))
                .build()
        }))
        .build();
    // Every member the builder requires was checked above; this only guards against a newer
    // SDK requiring more.
    built.map_err(|err| InvocationError::InvalidOperationField {
        index,
        id,
        field: "Operation",
        reason: err.to_string(),
    })
}

/// A time in epoch milliseconds (fractions allowed, kept to the microsecond), or `None` when it
/// is not a finite number within [`MAX_EPOCH_MILLIS`].
fn epoch_millis(millis: f64) -> Option<DateTime> {
    if !millis.is_finite() || millis.abs() > MAX_EPOCH_MILLIS {
        return None;
    }
    // Exact for whole milliseconds: |millis × 1000| stays below 2^63 and, for any real date,
    // below 2^53.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "bounded by MAX_EPOCH_MILLIS above"
    )]
    let micros = (millis * 1000.0).round() as i64;
    let seconds = micros.div_euclid(1_000_000);
    let nanos = u32::try_from(micros.rem_euclid(1_000_000).checked_mul(1000)?).ok()?;
    Some(DateTime::from_secs_and_nanos(seconds, nanos))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn whole_milliseconds_convert_exactly_and_fractions_keep_microseconds() {
        let t = epoch_millis(1_700_000_000_123.0).unwrap();
        assert_eq!(t.to_millis().unwrap(), 1_700_000_000_123, "ms are exact");
        assert_eq!(t.subsec_nanos(), 123_000_000);
        let t = epoch_millis(1.5).unwrap();
        assert_eq!((t.secs(), t.subsec_nanos()), (0, 1_500_000));
        let t = epoch_millis(-1.0).unwrap();
        assert_eq!(
            t.to_millis().unwrap(),
            -1,
            "times before 1970 are kept, not wrapped"
        );
    }

    #[test]
    fn times_out_of_range_are_refused() {
        for bad in [f64::NAN, f64::INFINITY, -f64::INFINITY, 1e16, -1e16] {
            assert!(epoch_millis(bad).is_none(), "{bad} must be refused");
        }
    }
}
