//! JSON shapes of the two calls, as `aws-sdk-lambda` 1.156 writes and reads them.
//!
//! Field names follow the SDK's `protocol_serde` modules (`shape_operation_update.rs`,
//! `shape_checkpoint_durable_execution.rs`): PascalCase keys, enums as their upper-case
//! strings. The shapes of operations and errors are the crate's shared ones
//! ([`crate::wire`]), here with timestamps as epoch seconds (numbers, fractions allowed).
//!
//! Inbound shapes keep every member optional, even the ones the model requires, so
//! that a missing `Id` or `Type` reaches [`super::rules`] and is reported with the
//! index of the update that lacks it instead of as an anonymous parse failure.
//! Unknown members are ignored, as the SDK itself ignores unknown response members.
//!
//! A request's strings borrow from its body where JSON escapes none of their characters
//! (nearly always): parsing then allocates for the lists and the rarer members that stay owned
//! (an error, a chained invoke's function name), and what the emulator keeps is copied once,
//! into its operations.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub(crate) use crate::wire::{
    CallbackDetails, ChainedInvokeDetails, ContextDetails, ErrorObject, ExecutionDetails,
    StepDetails, WaitDetails,
};

/// Reads an optional string in place when JSON escapes none of its characters. (serde reads
/// `Option<Cow<str>>` itself as an owned copy: it lends only a bare `Cow<str>`.)
fn lent<'de: 'a, 'a, D>(deserializer: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Lent<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Lent<'a>>::deserialize(deserializer)?.map(|Lent(value)| value))
}

/// Body of `POST .../checkpoint`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CheckpointRequest<'a> {
    #[serde(borrow, default, deserialize_with = "lent")]
    pub(crate) checkpoint_token: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lent")]
    pub(crate) client_token: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) updates: Option<Vec<OperationUpdate<'a>>>,
}

/// One `OperationUpdate` as sent by the SDK. `Hash` fingerprints a request's updates (see
/// `checkpoint::fingerprint`).
#[derive(Debug, Clone, Default, Hash, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct OperationUpdate<'a> {
    #[serde(borrow, default, deserialize_with = "lent")]
    pub(crate) id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lent")]
    pub(crate) parent_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lent")]
    pub(crate) name: Option<Cow<'a, str>>,
    #[serde(rename = "Type", borrow, default, deserialize_with = "lent")]
    pub(crate) op_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lent")]
    pub(crate) sub_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lent")]
    pub(crate) action: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lent")]
    pub(crate) payload: Option<Cow<'a, str>>,
    pub(crate) error: Option<ErrorObject>,
    pub(crate) context_options: Option<ContextOptions>,
    pub(crate) step_options: Option<StepOptions>,
    pub(crate) wait_options: Option<WaitOptions>,
    #[allow(
        dead_code,
        reason = "parsed so a wrongly typed option is refused; not acted on"
    )]
    pub(crate) callback_options: Option<CallbackOptions>,
    pub(crate) chained_invoke_options: Option<ChainedInvokeOptions>,
}

#[derive(Debug, Clone, Default, Hash, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContextOptions {
    pub(crate) replay_children: Option<bool>,
}

#[derive(Debug, Clone, Default, Hash, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StepOptions {
    pub(crate) next_attempt_delay_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Hash, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WaitOptions {
    pub(crate) wait_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Hash, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(
    dead_code,
    reason = "parsed so a wrongly typed option is refused; not acted on"
)]
pub(crate) struct CallbackOptions {
    pub(crate) timeout_seconds: Option<i64>,
    pub(crate) heartbeat_timeout_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Hash, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ChainedInvokeOptions {
    /// Required on a START (`rules`).
    pub(crate) function_name: Option<String>,
    #[allow(
        dead_code,
        reason = "parsed so a wrongly typed option is refused; not acted on"
    )]
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

/// An operation as the API answers it: timestamps in epoch seconds.
pub(crate) type Operation = crate::wire::Operation<f64>;

/// `CheckpointUpdatedExecutionState`, and also the whole `GetDurableExecutionState`
/// response: both are `{Operations, NextMarker?}`.
pub(crate) type OperationsPage = crate::wire::OperationsPage<Operation>;

/// Error body. `Type` is `User` or `Server` as Lambda sends it, or the exception name
/// when the `X-Amzn-ErrorType` header is left out (see
/// [`super::EmulatorBuilder::omit_error_type_header`]).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorBody<'a> {
    #[serde(rename = "Type")]
    pub(crate) kind: &'a str,
    pub(crate) message: &'a str,
}
