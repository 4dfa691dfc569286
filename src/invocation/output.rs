//! [`InvocationOutput`]: what a durable function returns, in the service's format.

use std::fmt;

use aws_sdk_lambda::types::ErrorObject;
use serde::{Serialize, Serializer};

use crate::redact::Withheld;
use crate::wire;

/// The largest response a durable function may return, in bytes: 6 MiB less 50 bytes.
///
/// A result whose output would be larger is checkpointed instead, as the `Payload` of an
/// EXECUTION SUCCEED update, and the function returns [`InvocationOutput::Succeeded`] with no
/// result.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 - 50;

/// What a durable function returns to the service at the end of an invocation.
///
/// Serialized exactly as the service reads it ([`Serialize`], or [`to_value`](Self::to_value)
/// for a `serde_json::Value`):
///
/// | variant | JSON |
/// |---|---|
/// | `Succeeded { result: Some(r) }` | `{"Status":"SUCCEEDED","Result":r}` |
/// | `Succeeded { result: None }` | `{"Status":"SUCCEEDED"}` |
/// | `Failed { error }` | `{"Status":"FAILED","Error":{"ErrorMessage":…,"ErrorType":…,"ErrorData":…,"StackTrace":[…]}}` |
/// | `Pending` | `{"Status":"PENDING"}` |
///
/// Members of `Error` that are `None` are left out; its keys come in the AWS SDK's order.
///
/// A failure of the invocation (a throttled or transient checkpoint that kept failing, a stale
/// token) is not an output: the handler returns an error to Lambda, which invokes it again.
///
/// `Debug` shows a result as its length only, and an error as the SDK shows it (every member
/// hidden): both are the user's data.
///
/// # Examples
///
/// ```
/// use aws_sdk_lambda::types::ErrorObject;
/// use checkpoint_batcher::invocation::InvocationOutput;
///
/// let done = InvocationOutput::succeeded(r#"{"sum":5}"#);
/// assert_eq!(serde_json::to_string(&done)?, r#"{"Status":"SUCCEEDED","Result":"{\"sum\":5}"}"#);
///
/// let failed = InvocationOutput::Failed {
///     error: ErrorObject::builder().error_type("OrderRejected").error_message("no stock").build(),
/// };
/// assert_eq!(
///     serde_json::to_string(&failed)?,
///     r#"{"Status":"FAILED","Error":{"ErrorMessage":"no stock","ErrorType":"OrderRejected"}}"#
/// );
/// assert_eq!(InvocationOutput::Pending.to_value(), serde_json::json!({"Status": "PENDING"}));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum InvocationOutput {
    /// The execution completed (`SUCCEEDED`).
    Succeeded {
        /// The result, a JSON string (`Result`). `None` leaves `Result` out: use it when the
        /// result was larger than [`MAX_RESPONSE_BYTES`] and was checkpointed as an EXECUTION
        /// SUCCEED update instead, or when there is no result.
        result: Option<String>,
    },
    /// The execution failed (`FAILED`) with this error (`Error`).
    Failed {
        /// What failed, as the SDK's `ErrorObject` (the same value an EXECUTION FAIL update
        /// carries).
        error: ErrorObject,
    },
    /// The execution is not finished (`PENDING`): it waits for a timer, a callback, or a
    /// re-invocation after the service revoked the token.
    Pending,
}

impl InvocationOutput {
    /// `Succeeded` with `result`.
    #[must_use]
    pub fn succeeded(result: impl Into<String>) -> Self {
        Self::Succeeded {
            result: Some(result.into()),
        }
    }

    /// `Failed` with `error`.
    #[must_use]
    pub fn failed(error: ErrorObject) -> Self {
        Self::Failed { error }
    }

    /// The `Status` member: `SUCCEEDED`, `FAILED` or `PENDING`.
    #[must_use]
    pub fn status(&self) -> &'static str {
        match self {
            Self::Succeeded { .. } => "SUCCEEDED",
            Self::Failed { .. } => "FAILED",
            Self::Pending => "PENDING",
        }
    }

    /// The output as JSON, ready to return from a `lambda_runtime` handler. A `Value` keeps an
    /// object's keys sorted, so its text lists `Result` before `Status`; the order means
    /// nothing to the service. [`Serialize`] writes `Status` first.
    #[must_use]
    pub fn to_value(&self) -> serde_json::Value {
        // Only strings and lists of strings: the conversion cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl fmt::Debug for InvocationOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Succeeded { result } => f
                .debug_struct("Succeeded")
                .field("result", &result.as_deref().map(Withheld))
                .finish(),
            Self::Failed { error } => f.debug_struct("Failed").field("error", error).finish(),
            Self::Pending => f.write_str("Pending"),
        }
    }
}

/// The output's JSON shape.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct OutputShape<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<wire::ErrorObject>,
}

impl Serialize for InvocationOutput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (result, error) = match self {
            Self::Succeeded { result } => (result.as_deref(), None),
            Self::Failed { error } => (None, Some(wire::ErrorObject::from(error))),
            Self::Pending => (None, None),
        };
        OutputShape {
            status: self.status(),
            result,
            error,
        }
        .serialize(serializer)
    }
}
