//! JSON shapes of the two calls, as `aws-sdk-lambda` 1.156 writes and reads them.
//!
//! Field names follow the SDK's `protocol_serde` modules (`shape_operation_update.rs`,
//! `shape_operation.rs`, `shape_checkpoint_durable_execution.rs`): PascalCase keys,
//! enums as their upper-case strings, timestamps as epoch seconds (numbers, fractions
//! allowed).
//!
//! Inbound shapes keep every member optional, even the ones the model requires, so
//! that a missing `Id` or `Type` reaches [`super::rules`] and is reported with the
//! index of the update that lacks it instead of as an anonymous parse failure.
//! Unknown members are ignored, as the SDK itself ignores unknown response members.

use serde::{Deserialize, Serialize};

/// Body of `POST .../checkpoint`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CheckpointRequest {
    pub(crate) checkpoint_token: Option<String>,
    pub(crate) client_token: Option<String>,
    pub(crate) updates: Option<Vec<OperationUpdate>>,
}

/// One `OperationUpdate` as sent by the SDK.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct OperationUpdate {
    pub(crate) id: Option<String>,
    pub(crate) parent_id: Option<String>,
    pub(crate) name: Option<String>,
    #[serde(rename = "Type")]
    pub(crate) op_type: Option<String>,
    pub(crate) sub_type: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) payload: Option<String>,
    pub(crate) error: Option<ErrorObject>,
    pub(crate) context_options: Option<ContextOptions>,
    pub(crate) step_options: Option<StepOptions>,
    pub(crate) wait_options: Option<WaitOptions>,
    #[allow(
        dead_code,
        reason = "parsed so a wrongly typed option is refused; not acted on"
    )]
    pub(crate) callback_options: Option<CallbackOptions>,
    #[allow(
        dead_code,
        reason = "parsed so a wrongly typed option is refused; not acted on"
    )]
    pub(crate) chained_invoke_options: Option<ChainedInvokeOptions>,
}

/// `ErrorObject`, both inbound (in an update) and outbound (in operation details).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContextOptions {
    pub(crate) replay_children: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StepOptions {
    pub(crate) next_attempt_delay_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WaitOptions {
    pub(crate) wait_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(
    dead_code,
    reason = "parsed so a wrongly typed option is refused; not acted on"
)]
pub(crate) struct CallbackOptions {
    pub(crate) timeout_seconds: Option<i64>,
    pub(crate) heartbeat_timeout_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(
    dead_code,
    reason = "parsed so a wrongly typed option is refused; not acted on"
)]
pub(crate) struct ChainedInvokeOptions {
    pub(crate) function_name: Option<String>,
    pub(crate) tenant_id: Option<String>,
}

/// Response of `POST .../checkpoint`. No `CheckpointToken` once the execution completed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CheckpointResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) checkpoint_token: Option<String>,
    pub(crate) new_execution_state: OperationsPage,
}

/// `CheckpointUpdatedExecutionState`, and also the whole `GetDurableExecutionState`
/// response: both are `{Operations, NextMarker?}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct OperationsPage {
    pub(crate) operations: Vec<Operation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_marker: Option<String>,
}

/// `Operation` as `shape_operation.rs` parses it. `Id`, `Type`, `StartTimestamp` and
/// `Status` are required by the SDK's builder and always present.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Operation {
    pub(crate) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(rename = "Type")]
    pub(crate) op_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sub_type: Option<String>,
    pub(crate) start_timestamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) end_timestamp: Option<f64>,
    pub(crate) status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) execution_details: Option<ExecutionDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) context_details: Option<ContextDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) step_details: Option<StepDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) wait_details: Option<WaitDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) callback_details: Option<CallbackDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) chained_invoke_details: Option<ChainedInvokeDetails>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ExecutionDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) input_payload: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContextDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replay_children: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorObject>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StepDetails {
    pub(crate) attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_attempt_timestamp: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorObject>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WaitDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scheduled_end_timestamp: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CallbackDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) callback_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorObject>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ChainedInvokeDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorObject>,
}

/// Error body. `Type` is `User` or `Server` as Lambda sends it, or the exception name
/// when the `X-Amzn-ErrorType` header is left out (see
/// [`super::EmulatorBuilder::omit_error_type_header`]).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorBody<'a> {
    #[serde(rename = "Type")]
    pub(crate) kind: &'a str,
    pub(crate) message: &'a str,
}
