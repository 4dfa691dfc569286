//! [`RealBackend`]: the checkpoint API through `aws-sdk-lambda`. The only file that calls the
//! SDK client.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::config::retry::RetryConfig;
use aws_sdk_lambda::config::timeout::TimeoutConfig;
use aws_sdk_lambda::error::{ErrorMetadata, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::checkpoint_durable_execution::{
    CheckpointDurableExecutionError, CheckpointDurableExecutionOutput,
};
use aws_sdk_lambda::operation::get_durable_execution_state::{
    GetDurableExecutionStateError, GetDurableExecutionStateOutput,
};
use aws_sdk_lambda::types::OperationUpdate;

use super::DurableBackend;
use crate::error::{BackendError, ErrorKind};
use crate::retry::{is_invalid_checkpoint_token_message, kind_for_status, parse_retry_after};

/// The attempt timeout [`RealBackend::new`] sets on the client.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The checkpoint API of the real service (or of anything that speaks its protocol, such as the
/// emulator), through an `aws_sdk_lambda::Client`.
///
/// It makes exactly one attempt per call: the SDK's own retry layer is disabled on its copy of
/// the client, so the batcher's retries are never multiplied by the SDK's. Failures are
/// classified from the SDK's typed errors and the HTTP status; the only text it reads is the
/// documented `Invalid checkpoint token` message, case-insensitively.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use checkpoint_batcher::{BatcherConfig, CheckpointBatcher, RealBackend};
///
/// # async fn run(arn: String, token: String) -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RealBackend::from_env().await;
/// let batcher = CheckpointBatcher::spawn(Arc::new(backend), arn, token, BatcherConfig::default())?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RealBackend {
    client: Client,
}

impl RealBackend {
    /// Wraps `client`, with its retries disabled and an attempt timeout of
    /// [`DEFAULT_ATTEMPT_TIMEOUT`]. The client's region, credentials and endpoint are kept.
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self::with_attempt_timeout(client, DEFAULT_ATTEMPT_TIMEOUT)
    }

    /// As [`new`](Self::new), with another attempt timeout.
    #[must_use]
    pub fn with_attempt_timeout(client: Client, attempt_timeout: Duration) -> Self {
        let config = client.config();
        let timeouts = config
            .timeout_config()
            .map_or_else(TimeoutConfig::builder, TimeoutConfig::to_builder)
            .operation_attempt_timeout(attempt_timeout)
            .build();
        let config = config
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts)
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }

    /// A backend on the standard AWS configuration chain (environment, profile, instance
    /// role), as a Lambda function has it.
    pub async fn from_env() -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(Client::new(&config))
    }

    /// The client this backend calls (retries disabled).
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl DurableBackend for RealBackend {
    async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        self.client
            .checkpoint_durable_execution()
            .durable_execution_arn(arn)
            .checkpoint_token(checkpoint_token)
            .set_updates(Some(updates))
            .set_client_token(client_token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify(e, checkpoint_error_kind))
    }

    async fn get_execution_state(
        &self,
        arn: &str,
        checkpoint_token: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        self.client
            .get_durable_execution_state()
            .durable_execution_arn(arn)
            .checkpoint_token(checkpoint_token)
            .set_marker(marker.map(str::to_owned))
            .set_max_items(max_items)
            .send()
            .await
            .map_err(|e| classify(e, state_error_kind))
    }
}

fn invalid_parameter_kind(message: Option<&str>) -> ErrorKind {
    if message.is_some_and(is_invalid_checkpoint_token_message) {
        ErrorKind::InvalidCheckpointToken
    } else {
        ErrorKind::Rejected
    }
}

/// The classification of the typed errors both operations share; `None` for `Unhandled` (no
/// error type the SDK knows: an emulator without the error-type header, a new code), which is
/// classified by status.
macro_rules! typed_error_kind {
    ($name:ident, $error:ident) => {
        fn $name(error: &$error) -> Option<ErrorKind> {
            match error {
                $error::TooManyRequestsException(_) => Some(ErrorKind::Throttled),
                $error::ServiceException(_) => Some(ErrorKind::Transient),
                $error::KmsAccessDeniedException(_)
                | $error::KmsDisabledException(_)
                | $error::KmsInvalidStateException(_)
                | $error::KmsNotFoundException(_) => Some(ErrorKind::Kms),
                $error::InvalidParameterValueException(e) => {
                    Some(invalid_parameter_kind(e.message()))
                }
                _ => None,
            }
        }
    };
}

typed_error_kind!(checkpoint_error_kind, CheckpointDurableExecutionError);
typed_error_kind!(state_error_kind, GetDurableExecutionStateError);

/// The code and message of a service error. An error response without a code (an emulator that
/// leaves out `X-Amzn-ErrorType`) reaches us as `Unhandled` with empty metadata, the parsed
/// message kept only in its source; read it there so that such responses are still classified.
fn error_metadata<E>(error: &E) -> &ErrorMetadata
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let own = error.meta();
    if own.code().is_some() || own.message().is_some() {
        return own;
    }
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<ErrorMetadata>())
        .unwrap_or(own)
}

/// Classifies one failed attempt: typed errors first, then the HTTP status for what the SDK
/// could not type, then the kind of transport failure.
fn classify<E>(error: SdkError<E, HttpResponse>, typed: fn(&E) -> Option<ErrorKind>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, message, status, retry_after) = match &error {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let service_error = context.err();
            let metadata = error_metadata(service_error);
            let message = metadata.message().unwrap_or_default().to_owned();
            let code = metadata.code();
            let kind =
                typed(service_error).unwrap_or_else(|| kind_for_status(status, code, &message));
            let retry_after = context
                .raw()
                .headers()
                .get("retry-after")
                .and_then(parse_retry_after);
            let message = match code {
                Some(code) => format!("{code}: {message}"),
                None => message,
            };
            (kind, message, Some(status), retry_after)
        }
        SdkError::TimeoutError(_) => (
            ErrorKind::Transient,
            "the attempt timed out".to_owned(),
            None,
            None,
        ),
        SdkError::DispatchFailure(failure) => {
            let kind = if failure.is_user() {
                ErrorKind::Rejected
            } else {
                ErrorKind::Transient
            };
            let what = if failure.is_timeout() {
                "the connection timed out"
            } else if failure.is_io() {
                "the connection failed"
            } else {
                "the request could not be sent"
            };
            (kind, what.to_owned(), None, None)
        }
        SdkError::ResponseError(response) => {
            // An unreadable answer: the request may have been applied, and a retry with the same
            // client token is safe.
            let status = response.raw().status().as_u16();
            (
                ErrorKind::Transient,
                "the response could not be read".to_owned(),
                Some(status),
                None,
            )
        }
        SdkError::ConstructionFailure(_) => (
            ErrorKind::Rejected,
            "the request could not be built".to_owned(),
            None,
            None,
        ),
        _ => (
            ErrorKind::Transient,
            "the call failed".to_owned(),
            None,
            None,
        ),
    };
    let mut backend_error = BackendError::new(kind, message);
    if let Some(status) = status {
        backend_error = backend_error.with_status(status);
    }
    if let Some(delay) = retry_after {
        backend_error = backend_error.with_retry_after(delay);
    }
    backend_error.with_source(error)
}
