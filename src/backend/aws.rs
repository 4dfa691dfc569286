//! [`RealBackend`]: the checkpoint API through `aws-sdk-lambda`. The only file that calls the
//! SDK client.

use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::provider::error::CredentialsError;
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
    /// What the client lacks to sign a request, if anything: a call that fails before it is
    /// sent is then the configuration's fault, not the network's.
    missing: Option<&'static str>,
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
        // Credentials cannot be checked here (the client does not expose its identity
        // resolvers); a provider that fails is recognised by its error when a call is made.
        let missing = config
            .region()
            .is_none()
            .then_some("the client has no region");
        Self {
            client: Client::from_conf(config),
            missing,
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
            .map_err(|e| classify(e, checkpoint_error_kind, self.missing))
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
            .map_err(|e| classify(e, state_error_kind, self.missing))
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

/// Whether `T` is somewhere in `error`'s chain of sources.
fn has_source<T: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<T>() {
            return true;
        }
        next = error.source();
    }
    false
}

/// Classifies one failed attempt: typed errors first, then the HTTP status for what the SDK
/// could not type, then the kind of transport failure. `missing` is what the client's
/// configuration lacks, if anything (see [`RealBackend::missing`]).
fn classify<E>(
    error: SdkError<E, HttpResponse>,
    typed: fn(&E) -> Option<ErrorKind>,
    missing: Option<&'static str>,
) -> BackendError
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
            // Before anything is sent, the SDK resolves the endpoint, loads credentials and
            // signs; a failure there is reported as a dispatch failure too. It is the client's
            // configuration at fault (no region, no or broken credentials), not the network,
            // and retrying within the invocation cannot mend it.
            let (kind, what) = if failure.is_timeout() {
                (ErrorKind::Transient, "the connection timed out")
            } else if failure.is_io() {
                (ErrorKind::Transient, "the connection failed")
            } else if failure.is_user() {
                (
                    ErrorKind::Credentials,
                    "the client could not build the request",
                )
            } else if has_source::<CredentialsError>(&error) {
                (
                    ErrorKind::Credentials,
                    "the client could not load its credentials",
                )
            } else if let Some(missing) = missing.filter(|_| failure.as_other().is_none()) {
                (ErrorKind::Credentials, missing)
            } else {
                (ErrorKind::Transient, "the request could not be sent")
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
        // Our own validation runs before the SDK's, so what the SDK cannot build is down to the
        // client's configuration or a bug of ours, not the user's update: fail the invocation.
        SdkError::ConstructionFailure(_) => (
            ErrorKind::Credentials,
            "the client could not build the request".to_owned(),
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
