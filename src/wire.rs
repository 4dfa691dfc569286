//! The JSON shapes of operations, written once for the whole crate: the emulator writes them in
//! its responses and in the invocation events it builds, and the `invocation` module reads them
//! from the event a durable function receives.
//!
//! Field names follow `aws-sdk-lambda` 1.156 (`shape_operation.rs`, `shape_error_object.rs` and
//! their neighbours): PascalCase keys, enums as their upper-case strings, members in the SDK's
//! order. Two things differ between the places these shapes travel, and both are left to the
//! user of the shape:
//!
//! - **Timestamps.** API responses carry epoch seconds (a number, fractions allowed); the event
//!   a durable function receives carries epoch milliseconds. [`Operation`] is generic over the
//!   timestamp's type, and the unit is the caller's.
//! - **Required members.** The API model requires `Id`, `Type`, `StartTimestamp` and `Status`,
//!   but every member is optional here, so that a reader can name the missing member and the
//!   operation's index instead of reporting an anonymous parse failure. A writer sets them all
//!   (absent members are left out of the JSON, so the output is the same as with required
//!   fields).
//!
//! Unknown members are ignored when reading, as the SDK ignores unknown response members.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// `ErrorObject`: in an update, in operation details, and in a failed invocation's output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ErrorObject {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stack_trace: Option<Vec<String>>,
}

#[cfg(feature = "emulator")]
impl ErrorObject {
    /// Bytes of all fields together, the quantity the service's 1 MiB error limit counts.
    pub(crate) fn byte_len(&self) -> usize {
        let strings = [&self.error_message, &self.error_type, &self.error_data];
        let scalar: usize = strings
            .iter()
            .filter_map(|s| s.as_ref())
            .map(String::len)
            .sum();
        let trace: usize = self.stack_trace.iter().flatten().map(String::len).sum();
        scalar.saturating_add(trace)
    }
}

#[cfg(feature = "lambda")]
impl From<ErrorObject> for aws_sdk_lambda::types::ErrorObject {
    fn from(error: ErrorObject) -> Self {
        Self::builder()
            .set_error_message(error.error_message)
            .set_error_type(error.error_type)
            .set_error_data(error.error_data)
            .set_stack_trace(error.stack_trace)
            .build()
    }
}

#[cfg(feature = "lambda")]
impl From<&aws_sdk_lambda::types::ErrorObject> for ErrorObject {
    fn from(error: &aws_sdk_lambda::types::ErrorObject) -> Self {
        Self {
            error_message: error.error_message.clone(),
            error_type: error.error_type.clone(),
            error_data: error.error_data.clone(),
            stack_trace: error.stack_trace.clone(),
        }
    }
}

/// `{Operations, NextMarker?}`: a checkpoint's `NewExecutionState`, a whole
/// `GetDurableExecutionState` response, and an invocation's `InitialExecutionState`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct OperationsPage<Op> {
    #[serde(default = "Vec::new")]
    pub(crate) operations: Vec<Op>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_marker: Option<String>,
}

/// The event a durable function receives. `Op` is [`Operation`] when writing; a reader may
/// take each operation as a raw JSON value first, to report a malformed one by its index.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Invocation<Op> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) durable_execution_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) checkpoint_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) initial_execution_state: Option<OperationsPage<Op>>,
}

/// `Operation`, with timestamps of type `T` (see the module doc for their unit).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Operation<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub(crate) op_type: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sub_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) start_timestamp: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) end_timestamp: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) execution_details: Option<ExecutionDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) context_details: Option<ContextDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) step_details: Option<StepDetails<T>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) wait_details: Option<WaitDetails<T>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) callback_details: Option<CallbackDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) chained_invoke_details: Option<ChainedInvokeDetails>,
}

#[cfg(feature = "emulator")]
impl<T> Operation<T> {
    /// The same operation with every timestamp converted by `convert` (seconds to
    /// milliseconds, for an invocation event).
    pub(crate) fn map_timestamps<U>(self, convert: impl Fn(T) -> U) -> Operation<U> {
        Operation {
            id: self.id,
            parent_id: self.parent_id,
            name: self.name,
            op_type: self.op_type,
            sub_type: self.sub_type,
            start_timestamp: self.start_timestamp.map(&convert),
            end_timestamp: self.end_timestamp.map(&convert),
            status: self.status,
            execution_details: self.execution_details,
            context_details: self.context_details,
            step_details: self.step_details.map(|step| StepDetails {
                attempt: step.attempt,
                next_attempt_timestamp: step.next_attempt_timestamp.map(&convert),
                result: step.result,
                error: step.error,
            }),
            wait_details: self.wait_details.map(|wait| WaitDetails {
                scheduled_end_timestamp: wait.scheduled_end_timestamp.map(&convert),
            }),
            callback_details: self.callback_details,
            chained_invoke_details: self.chained_invoke_details,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ExecutionDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) input_payload: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContextDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replay_children: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorObject>,
}

/// `StepDetails`. `Attempt` is always written; read, it defaults to 0 as in the SDK.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StepDetails<T> {
    #[serde(default)]
    pub(crate) attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_attempt_timestamp: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorObject>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WaitDetails<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scheduled_end_timestamp: Option<T>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CallbackDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) callback_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorObject>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ChainedInvokeDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorObject>,
}

/// What kind of fault serde found in JSON, and where: never serde's own text, which quotes the
/// offending value (a payload, a token, an error's message).
pub(crate) fn json_fault(error: &serde_json::Error) -> String {
    let kind = match error.classify() {
        serde_json::error::Category::Io => "an I/O error",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "a member missing or of the wrong type",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{kind} at line {} column {}", error.line(), error.column())
}
