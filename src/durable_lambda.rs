//! Durable functions written with the community durable-lambda SDK, on the batcher (feature
//! `durable-lambda`).
//!
//! [durable-lambda](https://crates.io/crates/durable-lambda-core) (`durable-lambda-core` 1.2
//! and its `-closure`, `-trait`, `-builder` and `-macro` front ends) runs a handler against a
//! `DurableContext` whose operations checkpoint through its own `DurableBackend` trait, one
//! call per update, each call carrying the token the previous call returned. Every `parallel`
//! branch and `map` item is handed a copy of its parent's token and drops the token it gets
//! back, so with the service's backend (`RealBackend`) every branch after the first presents a
//! consumed token and the execution fails with `Invalid checkpoint token`.
//!
//! This module puts the batcher underneath instead:
//!
//! - [`BatchingBackend`] implements `durable_lambda_core::backend::DurableBackend`. The tokens
//!   the SDK passes are ignored (the batcher owns the chain), calls from parallel branches
//!   coalesce into few requests, and retries are the batcher's alone: a failure is returned as
//!   `DurableError::AwsSdkOperation` whose [`source`](std::error::Error::source) is the
//!   classified [`BackendError`], itself caused by the [`BatcherError`].
//! - [`run`] replaces `durable_lambda_closure::run`: one AWS client per process, one batcher
//!   per invocation, drained before the answer, failures answered by scope.
//! - [`Runner`] is the same with a backend and a configuration of your choosing, and
//!   [`Runner::invoke`] answers one event, for tests and custom runtimes.
//!
//! # The switch
//!
//! durable-lambda's `ClosureContext`, `TraitContext` and `BuilderContext` can only be built
//! inside their own crates (their constructors are `pub(crate)`), and each of their `run`
//! functions builds a `RealBackend` inside. So the handler given to [`run`] takes the
//! `DurableContext` those wrappers wrap, which has every one of their methods with the same
//! signature. A closure-style program changes its `run` line, and its handler's context type:
//!
//! ```text
//! - use durable_lambda_closure::prelude::*;
//! + use checkpoint_batcher::durable_lambda::prelude::*;
//!   async fn handler(event: serde_json::Value, mut ctx: DurableContext) -> Result<serde_json::Value, DurableError> { ... }
//! - durable_lambda_closure::run(handler).await
//! + checkpoint_batcher::durable_lambda::run(handler).await
//! ```
//!
//! A `#[durable_execution]` handler already takes `DurableContext`: drop the attribute and
//! write the `main` it generated, calling [`run`].
//!
//! # Answers
//!
//! Once the handler returns, the batcher is shut down, so that nothing it accepted is left
//! unwritten when the function answers. Then, in this order:
//!
//! 1. The drain failed (a failure latched during the handler or the drain):
//!    - the service revoked the token: `PENDING`, and the service invokes the function again;
//!    - an execution-scope failure (the service rejected a request, KMS): `FAILED`, with
//!      `CheckpointRejected` or `CheckpointKmsFailure` as the error type;
//!    - anything else (a stale token, throttling or 5xx that outlasted the retries, a dead
//!      worker): `Err`, so that Lambda retries the invocation, which replays from what is
//!      durable.
//! 2. The handler returned `Ok(value)`: `SUCCEEDED` with `value` as a JSON string. A result
//!    over [`MAX_RESPONSE_BYTES`] is checkpointed as an EXECUTION SUCCEED update before the
//!    drain, and the answer leaves `Result` out.
//! 3. The handler returned a suspension (`WaitSuspended`, `CallbackSuspended`,
//!    `StepRetryScheduled`, `InvokeSuspended`): `PENDING`.
//! 4. The handler returned an error caused by a [`BackendError`] of invocation scope (a state
//!    read through `get_execution_state` that failed): `Err`.
//! 5. Any other error (the handler's own, a step that failed for good, an update refused
//!    locally as [`InvalidUpdate`](crate::InvalidUpdate)): `FAILED`, with the error's
//!    `code()` as the error type and its text as the message, as durable-lambda answers.
//!
//! An event that cannot be read, or a history that cannot be loaded, is `Err` (the
//! invocation's), before the handler runs. An input that is not JSON is `FAILED`
//! (`InvalidInput`): replaying cannot mend it. An execution started without input gives the
//! handler `{}`, as durable-lambda does.
//!
//! # Examples
//!
//! A handler on an in-memory execution, through [`Runner::invoke`]:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::sync::Arc;
//! use checkpoint_batcher::InMemoryBackend;
//! use checkpoint_batcher::durable_lambda::Runner;
//! use checkpoint_batcher::durable_lambda::prelude::*;
//!
//! async fn handler(event: serde_json::Value, mut ctx: DurableContext) -> Result<serde_json::Value, DurableError> {
//!     let name = event["name"].as_str().unwrap_or("world").to_owned();
//!     let greeting: Result<String, String> =
//!         ctx.step("greet", move || async move { Ok(format!("hello {name}")) }).await?;
//!     Ok(serde_json::json!({"greeting": greeting.unwrap_or_default()}))
//! }
//!
//! let service = Arc::new(InMemoryBackend::new());
//! let event = serde_json::json!({
//!     "DurableExecutionArn": "arn:aws:lambda:us-east-1:123456789012:function:f/durable-execution/e/1",
//!     "CheckpointToken": service.current_token().unwrap_or_default(),
//!     "InitialExecutionState": {"Operations": [{"Id": "exec", "Type": "EXECUTION",
//!         "Status": "STARTED", "StartTimestamp": 1700000000000u64,
//!         "ExecutionDetails": {"InputPayload": "{\"name\":\"ada\"}"}}]}});
//!
//! let output = Runner::new(service.clone()).invoke(event, handler).await?;
//! assert_eq!(output["Status"], "SUCCEEDED");
//! assert_eq!(output["Result"], r#"{"greeting":"hello ada"}"#);
//! assert_eq!(service.updates(), 2, "the step's START and SUCCEED");
//! # Ok(())
//! # }
//! ```

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::{ErrorObject, OperationAction, OperationType, OperationUpdate};
use durable_lambda_core::context::DurableContext;
use durable_lambda_core::error::DurableError;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

use crate::backend::{DurableBackend, RealBackend};
use crate::batcher::{BatcherHandle, BatchingBackend, CheckpointBatcher};
use crate::config::BatcherConfig;
use crate::error::{BackendError, BatcherError, CloseReason, ErrorKind, FailureScope};
use crate::invocation::{History, InvocationEvent, InvocationOutput, MAX_RESPONSE_BYTES};

/// What a durable-lambda handler needs in scope, as `durable_lambda_closure::prelude` gives
/// it, with [`run`] and `DurableContext` (the context [`run`] hands the handler) in place of
/// durable-lambda-closure's `run` and `ClosureContext`.
pub mod prelude {
    pub use super::run;
    pub use durable_lambda_core::context::DurableContext;
    pub use durable_lambda_core::error::DurableError;
    pub use durable_lambda_core::ops_trait::DurableContextOps;
    pub use durable_lambda_core::types::{
        BatchItem, BatchItemStatus, BatchResult, CallbackHandle, CallbackOptions, CheckpointResult,
        CompletionReason, ExecutionMode, MapOptions, ParallelOptions, StepOptions,
    };
}

/// Runs a durable-lambda handler as a Lambda function, on the batcher: the drop-in for
/// `durable_lambda_closure::run`.
///
/// Reads the standard AWS configuration once ([`RealBackend::from_env`], so
/// `AWS_ENDPOINT_URL_LAMBDA` aims it at an emulator) and answers every invocation with
/// [`Runner::invoke`] under the default [`BatcherConfig`]: one batcher per invocation, drained
/// before the answer, failures answered by scope (see the [module](self) documentation).
///
/// The handler takes `DurableContext`, the type durable-lambda-closure's `ClosureContext`
/// wraps, with the same methods: `ClosureContext` cannot be built outside its crate.
///
/// # Errors
///
/// As `lambda_runtime::run`: the runtime could not start, or failed for good.
///
/// # Examples
///
/// ```no_run
/// use checkpoint_batcher::durable_lambda::prelude::*;
///
/// async fn handler(
///     event: serde_json::Value,
///     mut ctx: DurableContext,
/// ) -> Result<serde_json::Value, DurableError> {
///     let order = ctx.step("validate_order", || async {
///         Ok::<_, String>(serde_json::json!({"id": 123, "valid": true}))
///     }).await?;
///     Ok(serde_json::json!({"order": order}))
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), lambda_runtime::Error> {
///     checkpoint_batcher::durable_lambda::run(handler).await
/// }
/// ```
pub async fn run<F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(Value, DurableContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, DurableError>> + Send,
{
    Runner::from_env().await.run(handler).await
}

/// Answers durable-lambda handlers' invocations on the batcher, with a backend and a
/// configuration of your choosing.
///
/// [`run`] is `Runner::from_env().await.run(handler)`. Tests and custom runtimes call
/// [`invoke`](Self::invoke) with one event.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use checkpoint_batcher::durable_lambda::Runner;
/// use checkpoint_batcher::durable_lambda::prelude::*;
/// use checkpoint_batcher::{BatcherConfig, RealBackend};
///
/// async fn handler(_: serde_json::Value, _: DurableContext) -> Result<serde_json::Value, DurableError> {
///     Ok(serde_json::json!("done"))
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), lambda_runtime::Error> {
///     let mut config = BatcherConfig::default();
///     config.flush_interval = Duration::from_millis(1);
///     Runner::new(Arc::new(RealBackend::from_env().await))
///         .with_config(config)
///         .run(handler)
///         .await
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Runner {
    backend: Arc<dyn DurableBackend>,
    config: BatcherConfig,
}

impl Runner {
    /// A runner on `backend` (usually a [`RealBackend`]; the emulator's client in tests), with
    /// the default [`BatcherConfig`].
    #[must_use]
    pub fn new(backend: Arc<dyn DurableBackend>) -> Self {
        Self {
            backend,
            config: BatcherConfig::default(),
        }
    }

    /// A runner on a [`RealBackend`] built from the standard AWS configuration: the
    /// environment, profiles, and `AWS_ENDPOINT_URL_LAMBDA`.
    pub async fn from_env() -> Self {
        Self::new(Arc::new(RealBackend::from_env().await))
    }

    /// Each invocation's batcher is started with `config`. Defaults to
    /// [`BatcherConfig::default`].
    #[must_use]
    pub fn with_config(mut self, config: BatcherConfig) -> Self {
        self.config = config;
        self
    }

    /// Registers `handler` with the Lambda runtime and answers every invocation with
    /// [`invoke`](Self::invoke).
    ///
    /// # Errors
    ///
    /// As `lambda_runtime::run`: the runtime could not start, or failed for good.
    pub async fn run<F, Fut>(self, handler: F) -> Result<(), lambda_runtime::Error>
    where
        F: Fn(Value, DurableContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, DurableError>> + Send,
    {
        let runner = &self;
        let handler = &handler;
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
            runner.invoke(event.payload, handler).await
        }))
        .await
    }

    /// Answers one invocation: reads `event`, loads the whole history and starts a batcher
    /// ([`CheckpointBatcher::for_invocation`]), runs `handler` on a `DurableContext` that
    /// checkpoints through the batcher ([`BatchingBackend`]), shuts the batcher down, and
    /// returns the output the service expects (`SUCCEEDED`, `FAILED` or `PENDING`, as JSON),
    /// mapped as the [module](self) documentation says.
    ///
    /// # Errors
    ///
    /// An invocation-scope failure, for Lambda to retry the invocation: the history could not
    /// be loaded for now, or a checkpoint failed in a way a re-invocation mends (a stale token,
    /// throttling or 5xx that outlasted the retries, a dead worker). An event or a history that
    /// every re-invocation would meet again (`InvocationError::scope` is the execution's)
    /// answers `FAILED` instead.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime.
    pub async fn invoke<F, Fut>(
        &self,
        event: Value,
        handler: F,
    ) -> Result<Value, lambda_runtime::Error>
    where
        F: FnOnce(Value, DurableContext) -> Fut,
        Fut: Future<Output = Result<Value, DurableError>>,
    {
        // An event or a history that every re-invocation would meet again fails the
        // execution; one a later attempt can read (a stale token, throttling) fails the
        // invocation.
        let started = match InvocationEvent::from_value(event) {
            Ok(event) => {
                CheckpointBatcher::for_invocation(self.backend.clone(), &event, self.config.clone())
                    .await
                    .map(|(batcher, history)| (event, batcher, history))
            }
            Err(error) => Err(error),
        };
        let (event, batcher, history) = match started {
            Ok(started) => started,
            Err(error) if error.scope() == FailureScope::Execution => {
                return Ok(failed("InvalidInvocation", &error).to_value());
            }
            Err(error) => return Err(Box::new(error)),
        };
        let answer = async {
            let input = match input(&history) {
                Ok(input) => input,
                Err(error) => return Ok(failed("InvalidInput", &error)),
            };
            let backend = Arc::new(BatchingBackend::new(batcher.clone(), self.backend.clone()));
            let context = DurableContext::new(
                backend,
                event.arn().to_owned(),
                event.checkpoint_token().to_owned(),
                history.operations().to_vec(),
                // The history is complete: the context reads no page.
                None,
            )
            .await?;
            complete(&batcher, &history, handler(input, context).await).await
        }
        .await;
        // Nothing the batcher accepted may be left unwritten when the function answers; a
        // drain that failed decides the answer whatever the handler returned.
        match batcher.shutdown().await {
            Ok(_) => answer,
            Err(error) => drain_failed(error),
        }
        .map(|output| output.to_value())
    }
}

/// The user's input: the EXECUTION operation's `InputPayload`, `{}` when there is none.
fn input(history: &History) -> Result<Value, serde_json::Error> {
    history.input().map_or_else(
        || Ok(Value::Object(serde_json::Map::new())),
        serde_json::from_str,
    )
}

/// The answer for the handler's `result`, before the drain. A result over the response limit
/// is checkpointed here, so that the drain covers it.
async fn complete(
    batcher: &BatcherHandle,
    history: &History,
    result: Result<Value, DurableError>,
) -> Result<InvocationOutput, lambda_runtime::Error> {
    let error = match result {
        Ok(value) => return succeeded(batcher, history, &value).await,
        Err(error) => error,
    };
    if is_suspension(&error) {
        return Ok(InvocationOutput::Pending);
    }
    match backend_cause(&error) {
        Some(cause) if cause.kind().scope() == FailureScope::Invocation => Err(Box::new(error)),
        _ => Ok(failed(error.code(), &error)),
    }
}

async fn succeeded(
    batcher: &BatcherHandle,
    history: &History,
    value: &Value,
) -> Result<InvocationOutput, lambda_runtime::Error> {
    let result = serde_json::to_string(value)?;
    let output = InvocationOutput::succeeded(result.clone());
    if serde_json::to_vec(&output)?.len() <= MAX_RESPONSE_BYTES {
        return Ok(output);
    }
    let Some(execution) = history.execution() else {
        return Ok(InvocationOutput::failed(
            ErrorObject::builder()
                .error_type("InvalidHistory")
                .error_message("the history has no EXECUTION operation to carry the result")
                .build(),
        ));
    };
    let update = OperationUpdate::builder()
        .id(execution.id())
        .r#type(OperationType::Execution)
        .action(OperationAction::Succeed)
        .payload(result)
        .build()?;
    match batcher.checkpoint(update).await {
        Err(error @ BatcherError::InvalidUpdate(_)) => Ok(failed("InvalidUpdate", &error)),
        // A failure latched: the drain returns it again, and it decides the answer.
        Ok(_) | Err(_) => Ok(InvocationOutput::Succeeded { result: None }),
    }
}

fn is_suspension(error: &DurableError) -> bool {
    matches!(
        error,
        DurableError::WaitSuspended { .. }
            | DurableError::CallbackSuspended { .. }
            | DurableError::StepRetryScheduled { .. }
            | DurableError::InvokeSuspended { .. }
    )
}

/// The first [`BackendError`] in `error`'s chain of sources.
fn backend_cause<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a BackendError> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(cause) = error.downcast_ref::<BackendError>() {
            return Some(cause);
        }
        next = error.source();
    }
    None
}

/// The answer when the drain failed: the failure that latched decides it.
fn drain_failed(error: BatcherError) -> Result<InvocationOutput, lambda_runtime::Error> {
    match &error {
        BatcherError::Closed(closed) if closed.reason() == CloseReason::TokenRevoked => {
            Ok(InvocationOutput::Pending)
        }
        BatcherError::Failed(failure) if failure.scope() == FailureScope::Execution => {
            Ok(match failure.kind() {
                ErrorKind::Kms => failed("CheckpointKmsFailure", &error),
                _ => failed("CheckpointRejected", &error),
            })
        }
        // An update refused before it was queued: the handler's, and it would build it again.
        _ if error.scope() == Some(FailureScope::Execution) => Ok(failed("InvalidUpdate", &error)),
        _ => Err(Box::new(error)),
    }
}

fn failed(error_type: &str, error: &dyn StdError) -> InvocationOutput {
    InvocationOutput::failed(
        ErrorObject::builder()
            .error_type(error_type)
            .error_message(error.to_string())
            .build(),
    )
}

/// durable-lambda's backend trait over the batcher. The tokens passed are ignored, as
/// [`BatchingBackend`]'s own [`DurableBackend`] implementation ignores them; a failure is
/// `DurableError::AwsSdkOperation` caused by the classified [`BackendError`].
#[async_trait]
impl durable_lambda_core::backend::DurableBackend for BatchingBackend {
    async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, DurableError> {
        let output = DurableBackend::checkpoint(self, arn, checkpoint_token, updates, client_token)
            .await
            .map_err(DurableError::aws_sdk_operation)?;
        if output.checkpoint_token().is_none() {
            // durable-lambda needs a token to go on; the chain ended with this batch (the
            // execution completed, or the service revoked the token): the invocation stops.
            return Err(DurableError::aws_sdk_operation(BackendError::new(
                ErrorKind::InvalidCheckpointToken,
                "the checkpoint was applied, but the service answered without a next token: \
                 the token chain ended",
            )));
        }
        Ok(output)
    }

    async fn get_execution_state(
        &self,
        arn: &str,
        checkpoint_token: &str,
        next_marker: &str,
        max_items: i32,
    ) -> Result<GetDurableExecutionStateOutput, DurableError> {
        let marker = Some(next_marker).filter(|marker| !marker.is_empty());
        DurableBackend::get_execution_state(self, arn, checkpoint_token, marker, Some(max_items))
            .await
            .map_err(DurableError::aws_sdk_operation)
    }
}
