//! The errors of the crate, in three families.
//!
//! - [`BatcherError`] is what a caller of a [`BatcherHandle`](crate::BatcherHandle) sees. One
//!   failed batch answers many callers, so it is cheap to clone: the cause sits behind an `Arc`.
//! - [`BackendError`] is what a [`DurableBackend`](crate::DurableBackend) returns for one call,
//!   already classified into an [`ErrorKind`] that decides whether the batcher retries it.
//! - [`ConfigError`] names the configuration field that was out of range.
//!
//! Every error says which side should give up: [`FailureScope::Invocation`] means the Lambda
//! invocation should fail and the service will re-invoke it with a fresh token;
//! [`FailureScope::Execution`] means the request itself was wrong and retrying cannot help.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How a backend failure is classified. The classification decides retries and the
/// [`FailureScope`] a caller is told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The service throttled the call (HTTP 429, `TooManyRequestsException`). Retried with
    /// backoff, honouring `Retry-After`.
    Throttled,
    /// A transient failure: HTTP 5xx, a timeout, a connection that failed or was reset.
    /// Retried with backoff, with the same client token.
    Transient,
    /// The checkpoint token is stale or unknown (`InvalidParameterValueException` whose message
    /// starts with `Invalid checkpoint token`). Not retried: the invocation should stop and let
    /// the service re-invoke it with a fresh token.
    InvalidCheckpointToken,
    /// KMS refused to encrypt or decrypt the execution's data (HTTP 502 `KMS*Exception`). Not
    /// retried; the execution fails.
    Kms,
    /// The service rejected the request as wrong (any other 4xx). Not retried; the execution
    /// fails.
    Rejected,
    /// The caller's credentials or permissions were refused (`ExpiredTokenException`,
    /// `UnrecognizedClientException`, `InvalidSignatureException`, `SignatureDoesNotMatch`,
    /// `AccessDeniedException`), or the client could not send the request because of its own
    /// configuration (no region, no credentials). Not retried, but the request itself is fine:
    /// the invocation fails, and the execution resumes once the role, clock or configuration is
    /// fixed.
    Credentials,
}

impl ErrorKind {
    /// Whether the batcher retries a call that failed this way.
    #[must_use]
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::Transient)
    }

    /// Which side should give up when a failure of this kind is final.
    #[must_use]
    pub fn scope(self) -> FailureScope {
        match self {
            Self::Throttled
            | Self::Transient
            | Self::InvalidCheckpointToken
            | Self::Credentials => FailureScope::Invocation,
            Self::Kms | Self::Rejected => FailureScope::Execution,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::Transient => "transient failure",
            Self::InvalidCheckpointToken => "invalid checkpoint token",
            Self::Kms => "kms failure",
            Self::Rejected => "request rejected",
            Self::Credentials => "credentials or client configuration refused",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side should give up after a final failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureScope {
    /// Fail the Lambda invocation (return an error or PENDING); the service re-invokes the
    /// function, which replays from the last durable checkpoint with a fresh token.
    Invocation,
    /// Fail the durable execution: the request itself is wrong, and replaying it cannot succeed.
    Execution,
}

impl fmt::Display for FailureScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Invocation => "the invocation should fail and be retried by the service",
            Self::Execution => "the execution should fail",
        })
    }
}

/// The failure of one backend call, classified.
///
/// Backends build it with [`BackendError::new`]; test backends use it to inject faults.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use checkpoint_batcher::{BackendError, ErrorKind};
///
/// let err = BackendError::new(ErrorKind::Throttled, "rate exceeded")
///     .with_retry_after(Duration::from_secs(1));
/// assert!(err.kind().is_retryable());
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
/// assert_eq!(err.to_string(), "throttled: rate exceeded");
/// ```
pub struct BackendError {
    kind: ErrorKind,
    message: String,
    status: Option<u16>,
    retry_after: Option<Duration>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl BackendError {
    /// A failure of `kind`, described by `message` (lowercase, no trailing period).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            retry_after: None,
            source: None,
        }
    }

    /// The delay the service asked for before the next attempt (`Retry-After`).
    #[must_use]
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The HTTP status of the response, when there was one.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// The underlying error, reported by [`Error::source`](StdError::source).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// How the failure is classified.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status, when the failure came with a response.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The delay the service asked for (`Retry-After`), when it sent one.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// The source is shown by its `Display` only: an SDK error's `Debug` holds the raw HTTP
/// response, whose body may carry a checkpoint token.
impl fmt::Debug for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("status", &self.status)
            .field("retry_after", &self.retry_after)
            .field(
                "source",
                &self.source.as_ref().map(|source| source.to_string()),
            )
            .finish()
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(status) = self.status {
            write!(f, " (http {status})")?;
        }
        Ok(())
    }
}

impl StdError for BackendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A batch that failed for good: the cause, the batch and how many attempts were made.
///
/// Shared by every caller the failure answers; cloning it clones an `Arc`.
#[derive(Clone, Debug)]
pub struct BatchFailure {
    inner: Arc<FailureInner>,
}

#[derive(Debug)]
struct FailureInner {
    cause: BackendError,
    sequence: u64,
    attempts: u32,
    during: FailedCall,
}

/// Which call of a batch failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailedCall {
    Checkpoint,
    StatePage,
    /// Not a call of this update's: an earlier batch was applied but its state pages could not
    /// be read, and this update was refused without being sent.
    AfterStatePage,
}

impl BatchFailure {
    pub(crate) fn new(
        cause: BackendError,
        sequence: u64,
        attempts: u32,
        during: FailedCall,
    ) -> Self {
        Self {
            inner: Arc::new(FailureInner {
                cause,
                sequence,
                attempts,
                during,
            }),
        }
    }

    /// The classified cause of the last attempt.
    #[must_use]
    pub fn cause(&self) -> &BackendError {
        &self.inner.cause
    }

    /// The classification of the cause.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.inner.cause.kind()
    }

    /// Which side should give up.
    ///
    /// When the checkpoint was applied and only reading its further state pages failed, this is
    /// [`FailureScope::Invocation`] whatever the cause: the batch's updates are durable, and a
    /// re-invocation reads the state afresh. Failing the execution for them would undo work
    /// the service holds.
    #[must_use]
    pub fn scope(&self) -> FailureScope {
        match self.inner.during {
            FailedCall::Checkpoint => self.inner.cause.kind().scope(),
            FailedCall::StatePage | FailedCall::AfterStatePage => FailureScope::Invocation,
        }
    }

    /// Whether the checkpoint itself is known to be applied, and only reading the state pages
    /// that followed it failed: the batch's updates are durable, though their callers were
    /// answered with this failure. Only the callers of that batch are told so (and a flush or
    /// shutdown that covered nothing else); updates refused after it (queued behind it, or
    /// submitted later) were never sent, and their failure says `false`.
    ///
    /// `false` means *not known* to be applied, not *known not* to be: a call whose answer was
    /// lost on its last attempt may have been applied by the service (see
    /// [`BatcherStats::unacknowledged`](crate::BatcherStats::unacknowledged)).
    #[must_use]
    pub fn checkpoint_applied(&self) -> bool {
        self.inner.during == FailedCall::StatePage
    }

    /// The same failure as told to an update that was not in the failed batch: never sent.
    pub(crate) fn for_unsent(&self) -> Self {
        self.retold(FailedCall::AfterStatePage)
    }

    /// This failure as told to callers outside the failed batch; a failed checkpoint call is
    /// told as it is (nothing of it is known to be applied).
    fn retold(&self, during: FailedCall) -> Self {
        if self.inner.during == FailedCall::Checkpoint {
            return self.clone();
        }
        let cause = &self.inner.cause;
        let mut copy = BackendError::new(cause.kind, cause.message.clone());
        copy.status = cause.status;
        copy.retry_after = cause.retry_after;
        Self::new(copy, self.inner.sequence, self.inner.attempts, during)
    }

    /// The sequence number of the batch that failed.
    #[must_use]
    pub fn batch_sequence(&self) -> u64 {
        self.inner.sequence
    }

    /// How many attempts were made before giving up.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }
}

impl fmt::Display for BatchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.inner.during {
            FailedCall::Checkpoint => "checkpoint batch",
            FailedCall::StatePage => "reading the execution state after applied checkpoint batch",
            FailedCall::AfterStatePage => {
                "not sent: reading the execution state after applied checkpoint batch"
            }
        };
        let attempts = self.inner.attempts;
        let plural = if attempts == 1 { "" } else { "s" };
        write!(
            f,
            "{what} {} failed after {attempts} attempt{plural}: {}; {}",
            self.inner.sequence,
            self.inner.cause,
            self.scope()
        )
    }
}

impl StdError for BatchFailure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.inner.cause)
    }
}

/// Why the batcher stopped taking updates without a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// A checkpoint carrying the EXECUTION's completion was acknowledged without a new token:
    /// the execution is complete and no further checkpoint is possible.
    ExecutionCompleted,
    /// The service answered a checkpoint without a new token although the execution did not
    /// complete: the token was revoked. The invocation should stop (return PENDING) and let the
    /// service re-invoke it.
    TokenRevoked,
    /// [`BatcherHandle::shutdown`](crate::BatcherHandle::shutdown) was called.
    ShutDown,
    /// The batcher task is gone (its runtime shut down, or the worker of
    /// [`CheckpointBatcher::pair`](crate::CheckpointBatcher::pair) was dropped).
    WorkerGone,
}

/// The batcher is closed; the reason says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    reason: CloseReason,
}

impl Closed {
    pub(crate) fn new(reason: CloseReason) -> Self {
        Self { reason }
    }

    /// Why the batcher closed.
    #[must_use]
    pub fn reason(&self) -> CloseReason {
        self.reason
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.reason {
            CloseReason::ExecutionCompleted => {
                "batcher closed: the execution completed and the service ended the token chain"
            }
            CloseReason::TokenRevoked => {
                "batcher closed: the service revoked the checkpoint token; the invocation should stop and let the service re-invoke it"
            }
            CloseReason::ShutDown => "batcher closed: it was shut down",
            CloseReason::WorkerGone => "batcher closed: its task is no longer running",
        })
    }
}

impl StdError for Closed {}

/// An update refused before it was queued, with the field and the rule it broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidUpdate {
    field: &'static str,
    reason: String,
}

impl InvalidUpdate {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The `OperationUpdate` field at fault, as the API names it (`Id`, `Payload`, ...).
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for InvalidUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl StdError for InvalidUpdate {}

/// What a caller of the batcher sees when its update was not acknowledged.
///
/// Cheap to clone: one failure answers every caller of a batch.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatcherError {
    /// A batch failed for good; every later call gets the same failure (the latch).
    #[error(transparent)]
    Failed(BatchFailure),
    /// The batcher no longer takes updates.
    #[error(transparent)]
    Closed(Closed),
    /// The queue is full ([`BatcherHandle::try_submit`](crate::BatcherHandle::try_submit) only).
    #[error("checkpoint queue is full")]
    QueueFull,
    /// The update breaks a field constraint of the service and was not queued.
    #[error(transparent)]
    InvalidUpdate(InvalidUpdate),
}

impl BatcherError {
    /// Which side should give up when a handler cannot go on past this error.
    ///
    /// - [`BatcherError::Failed`]: the failure's scope (its [`ErrorKind`], or the invocation's
    ///   when the batch was applied and only its state pages failed).
    /// - [`BatcherError::Closed`] with [`CloseReason::TokenRevoked`]:
    ///   [`FailureScope::Invocation`], the invocation should stop and be re-invoked. So it is
    ///   for [`CloseReason::WorkerGone`]: updates may be unwritten, and a re-invocation replays
    ///   from what is durable.
    /// - [`BatcherError::InvalidUpdate`]: [`FailureScope::Execution`]. The handler built an
    ///   update the service would refuse; a re-invocation replays the same code and builds it
    ///   again, so re-invoking would never end. Only this caller is refused: the batcher goes
    ///   on, and a handler that can do without the update may carry on.
    /// - [`BatcherError::QueueFull`]: [`FailureScope::Invocation`]. The queue drains as calls
    ///   complete; nothing is wrong with the execution.
    /// - `None` for [`BatcherError::Closed`] with [`CloseReason::ShutDown`] or
    ///   [`CloseReason::ExecutionCompleted`]: the handler's own shutdown or the execution's
    ///   completion closed the batcher, and no failure is left for either side to act on.
    #[must_use]
    pub fn scope(&self) -> Option<FailureScope> {
        match self {
            Self::Failed(failure) => Some(failure.scope()),
            Self::Closed(closed) => match closed.reason() {
                CloseReason::TokenRevoked | CloseReason::WorkerGone => {
                    Some(FailureScope::Invocation)
                }
                CloseReason::ShutDown | CloseReason::ExecutionCompleted => None,
            },
            Self::QueueFull => Some(FailureScope::Invocation),
            Self::InvalidUpdate(_) => Some(FailureScope::Execution),
        }
    }

    /// The classification of the backend failure behind this error, if there is one.
    #[must_use]
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Failed(failure) => Some(failure.kind()),
            _ => None,
        }
    }

    pub(crate) fn closed(reason: CloseReason) -> Self {
        Self::Closed(Closed::new(reason))
    }
}

/// A configuration value out of range; the message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field} {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The field at fault, as named in [`BatcherConfig`](crate::BatcherConfig) (for example
    /// `retry.max_attempts`).
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it, without the field name (for example `must be between 1 and 250
    /// (the service's limit), got 300`).
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
