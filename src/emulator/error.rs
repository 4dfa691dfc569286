//! Errors: the ones answered over HTTP ([`ApiError`]) and the ones the handle's test
//! hooks return ([`EmulatorError`]).

use super::rules::RuleViolation;

/// Text every stale, unknown or revoked token answer starts with, as the service's
/// does; clients match on this prefix (case-insensitively: docs/PROTOCOL.md, "Error
/// classification").
pub(crate) const INVALID_TOKEN: &str = "Invalid checkpoint token";

/// An error answered to an HTTP client, in the REST-JSON form the SDK maps to its
/// typed errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request broke a rule or could not be read (400).
    #[error("{0}")]
    InvalidParameter(String),
    /// The token is not the execution's current one (400, fixed message prefix).
    #[error("{INVALID_TOKEN}: {0}")]
    InvalidToken(&'static str),
    /// No execution with this ARN (404).
    #[error("durable execution not found: {0}")]
    NotFound(String),
    /// Injected throttling (429 with `Retry-After`).
    #[error("rate exceeded")]
    TooManyRequests {
        /// Seconds for the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// Injected or lost-answer server error (500).
    #[error("{0}")]
    Service(&'static str),
    /// The body exceeded the configured maximum (413).
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    /// Known path, wrong method (405).
    #[error("method not allowed; use {0}")]
    MethodNotAllowed(&'static str),
    /// No such route (404).
    #[error("unknown operation: {0}")]
    UnknownOperation(String),
}

impl From<RuleViolation> for ApiError {
    fn from(v: RuleViolation) -> Self {
        Self::InvalidParameter(v.to_string())
    }
}

impl ApiError {
    /// HTTP status code.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::InvalidParameter(_) | Self::InvalidToken(_) => 400,
            Self::NotFound(_) | Self::UnknownOperation(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::TooLarge(_) => 413,
            Self::TooManyRequests { .. } => 429,
            Self::Service(_) => 500,
        }
    }

    /// The exception name, sent in `X-Amzn-ErrorType`.
    pub(crate) fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidParameter(_) | Self::InvalidToken(_) => "InvalidParameterValueException",
            Self::NotFound(_) => "ResourceNotFoundException",
            Self::TooManyRequests { .. } => "TooManyRequestsException",
            Self::Service(_) => "ServiceException",
            Self::TooLarge(_) => "RequestTooLargeException",
            Self::MethodNotAllowed(_) => "MethodNotAllowedException",
            Self::UnknownOperation(_) => "UnknownOperationException",
        }
    }

    /// Lambda's `Type` member: whose fault it is.
    pub(crate) fn fault_kind(&self) -> &'static str {
        match self {
            Self::Service(_) => "Server",
            _ => "User",
        }
    }
}

/// Why a test hook on [`super::Emulator`] could not act.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// No execution has this ARN.
    #[error("unknown durable execution: {0}")]
    UnknownExecution(String),
    /// The execution has no operation with this Id.
    #[error("unknown operation: {0}")]
    UnknownOperation(String),
    /// The operation already reached an end state.
    #[error("operation {0} is already finished")]
    AlreadyFinished(String),
    /// The completion does not apply to this operation (READY to anything but a
    /// PENDING STEP, or any completion of the EXECUTION operation: use
    /// [`super::Emulator::stop_execution`]).
    #[error("completion does not apply to operation {0}")]
    NotApplicable(String),
    /// A handler's answer given to [`super::Emulator::finish_invocation`] is not one the
    /// service accepts; the text says what is wrong.
    #[error("invalid invocation output: {0}")]
    InvalidOutput(String),
}
