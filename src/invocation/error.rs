//! [`InvocationError`]: what can go wrong reading an invocation event or loading the history.

use crate::error::{BackendError, ConfigError, ErrorKind, FailureScope};

/// The invocation event could not be read, or the execution's history could not be loaded.
///
/// No update has been written when one of these happens. Which side should give up is
/// [`scope`](Self::scope): the invocation (return an error to Lambda, which invokes the function
/// again) when a later attempt can succeed, the execution (return `FAILED`) when every
/// re-invocation would meet the same failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvocationError {
    /// The event is not JSON, or does not have the shape of an invocation event.
    ///
    /// Its message says what kind of fault serde found and where, never serde's own text,
    /// which may quote a value of the event (a payload, a token); for the same reason the
    /// serde error is not its [`source`](std::error::Error::source). Match the variant to
    /// read it.
    #[error("malformed invocation event: {}", crate::wire::json_fault(.0))]
    Malformed(serde_json::Error),
    /// `DurableExecutionArn` or `CheckpointToken` is missing or empty.
    #[error("missing or empty {field} in the invocation event")]
    MissingField {
        /// The member at fault, as the event names it.
        field: &'static str,
    },
    /// An operation of `InitialExecutionState.Operations` does not have the shape of an
    /// operation (a member of the wrong type).
    ///
    /// As for [`Malformed`](Self::Malformed), its message says only what kind of fault serde
    /// found and where.
    #[error("malformed operation {index} in the invocation event: {}", crate::wire::json_fault(.error))]
    MalformedOperation {
        /// The operation's position in `InitialExecutionState.Operations`.
        index: usize,
        /// What serde found wrong (not chained as the error's source: its text may quote a
        /// value of the event).
        error: serde_json::Error,
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
    /// Which side should give up: every variant has a scope.
    ///
    /// - [`FailureScope::Execution`] for an event the crate cannot read
    ///   ([`Malformed`](Self::Malformed), [`MissingField`](Self::MissingField),
    ///   [`MalformedOperation`](Self::MalformedOperation),
    ///   [`MissingOperationField`](Self::MissingOperationField),
    ///   [`InvalidOperationField`](Self::InvalidOperationField)). The service builds every
    ///   invocation's event from the same durable history, and a re-invocation runs the same
    ///   version of the function, so re-invoking would meet the same event forever: an endless
    ///   loop of failed invocations is worse than one failed execution that says what it could
    ///   not read.
    /// - [`FailureScope::Execution`] for [`Config`](Self::Config): the handler's own
    ///   configuration is out of range, and every re-invocation would build it again.
    /// - For [`StateFailed`](Self::StateFailed), the scope of its cause
    ///   ([`ErrorKind::scope`]): a KMS failure or a rejected read fails the execution; a stale
    ///   token, credentials, throttling or a transient failure that outlasted the retries, the
    ///   invocation.
    /// - [`FailureScope::Invocation`] for [`RepeatedMarker`](Self::RepeatedMarker): the
    ///   service misbehaved while listing a history it holds whole, and a re-invocation reads
    ///   the pages afresh, with a fresh token; failing the execution would lose it to the
    ///   service's fault.
    /// - [`FailureScope::Execution`] for [`TooManyPages`](Self::TooManyPages): the history only
    ///   grows, so every re-invocation would find it past the bound again.
    ///
    /// # Examples
    ///
    /// ```
    /// use checkpoint_batcher::FailureScope;
    /// use checkpoint_batcher::invocation::InvocationEvent;
    ///
    /// let error = InvocationEvent::from_slice(br#"{"CheckpointToken": "dG9rZW4"}"#).unwrap_err();
    /// assert_eq!(error.scope(), FailureScope::Execution, "{error}");
    /// ```
    #[must_use]
    pub fn scope(&self) -> FailureScope {
        match self {
            Self::StateFailed { cause, .. } => cause.kind().scope(),
            Self::RepeatedMarker { .. } => FailureScope::Invocation,
            Self::Malformed(_)
            | Self::MissingField { .. }
            | Self::MalformedOperation { .. }
            | Self::MissingOperationField { .. }
            | Self::InvalidOperationField { .. }
            | Self::Config(_)
            | Self::TooManyPages { .. } => FailureScope::Execution,
        }
    }

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
