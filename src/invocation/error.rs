//! [`InvocationError`]: what can go wrong reading an invocation event or loading the history.

use crate::error::{BackendError, ConfigError, ErrorKind};

/// The invocation event could not be read, or the execution's history could not be loaded.
///
/// None of these failures means that the execution is wrong: no update has been written when
/// they happen, so the right answer is to fail the invocation (return an error to Lambda) and
/// let the service invoke the function again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvocationError {
    /// The event is not JSON, or does not have the shape of an invocation event.
    #[error("malformed invocation event: {0}")]
    Malformed(#[source] serde_json::Error),
    /// `DurableExecutionArn` or `CheckpointToken` is missing or empty.
    #[error("missing or empty {field} in the invocation event")]
    MissingField {
        /// The member at fault, as the event names it.
        field: &'static str,
    },
    /// An operation of `InitialExecutionState.Operations` does not have the shape of an
    /// operation (a member of the wrong type).
    #[error("malformed operation {index} in the invocation event: {source}")]
    MalformedOperation {
        /// The operation's position in `InitialExecutionState.Operations`.
        index: usize,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// An operation of `InitialExecutionState.Operations` lacks a member the API model
    /// requires (`Id`, `Type`, `StartTimestamp` or `Status`), or has it empty.
    #[error("operation {index}{} in the invocation event has no {field}", describe_id(.id.as_deref()))]
    MissingOperationField {
        /// The operation's position in `InitialExecutionState.Operations`.
        index: usize,
        /// The operation's Id, when it has one.
        id: Option<String>,
        /// The member at fault, as the event names it.
        field: &'static str,
    },
    /// A member of an operation has a value the crate cannot represent (a timestamp out of
    /// range, an attempt count beyond `i32`).
    #[error("operation {index}{} in the invocation event: {field} {reason}", describe_id(Some(.id.as_str())))]
    InvalidOperationField {
        /// The operation's position in `InitialExecutionState.Operations`.
        index: usize,
        /// The operation's Id.
        id: String,
        /// The member at fault, as the event names it (`EndTimestamp`, `StepDetails.Attempt`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The retry policy given to [`History::load`](super::History::load), or the configuration
    /// given to [`CheckpointBatcher::for_invocation`](crate::CheckpointBatcher::for_invocation),
    /// is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A `GetDurableExecutionState` call failed for good: not retryable, or still failing
    /// after the retry policy's last attempt.
    #[error("reading the execution state failed after {attempts} attempt{}: {cause}", plural(*.attempts))]
    StateFailed {
        /// Attempts made for the failing page.
        attempts: u32,
        /// The classified failure of the last attempt.
        #[source]
        cause: BackendError,
    },
    /// The service answered a `NextMarker` it had already answered: following it would loop.
    #[error("the execution state repeated the marker {marker:?}; the pages would never end")]
    RepeatedMarker {
        /// The repeated marker.
        marker: String,
    },
    /// The execution state kept answering new markers past the crate's bound.
    #[error("the execution state did not end within {limit} pages")]
    TooManyPages {
        /// The most `GetDurableExecutionState` pages one load follows.
        limit: usize,
    },
}

impl InvocationError {
    /// The classification of the backend failure behind this error, if there is one.
    #[must_use]
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::StateFailed { cause, .. } => Some(cause.kind()),
            _ => None,
        }
    }
}

fn describe_id(id: Option<&str>) -> String {
    id.map(|id| format!(" (Id {id:?})")).unwrap_or_default()
}

fn plural(count: u32) -> &'static str {
    if count == 1 { "" } else { "s" }
}
