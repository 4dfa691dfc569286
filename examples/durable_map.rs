//! A durable map on `lambda_runtime`: the batcher inside a real durable function.
//!
//! The input is `{"items": N, "concurrency": C}`, both whole numbers (`C` at least 1). Item `i`
//! is one STEP with Id `item-{i}` whose result is the JSON number `i*i`; at most `C` items run
//! at once. Each item submits its START
//! without waiting and awaits its SUCCEED, so the batcher carries hundreds of them per call.
//! The output is `SUCCEEDED` with `{"items": N, "sum": <sum of i*i>}`. An optional `"pad": B`
//! (a test knob) adds a string of `B` bytes to the result, to try results over the response
//! limit.
//!
//! Replay: an item whose step is SUCCEEDED in the history is not run again (its stored result is
//! used); one STARTED but not finished runs again and sends only its SUCCEED, since the service
//! refuses a second START of a started step.
//!
//! Output: a result over [`MAX_RESPONSE_BYTES`] is checkpointed as an EXECUTION SUCCEED update
//! and the output's `Result` is left out. A token the service revoked (a checkpoint answered
//! without a new one) returns `PENDING`; the service invokes the function again. Every other
//! error is mapped by its scope alone: an execution-scope error returns `FAILED` with the error,
//! since replaying cannot mend it (the service rejected an update, KMS failed, an update was
//! refused locally, the event cannot be read, the input lacks a field or has one of the wrong
//! type, a stored result is not a number); anything else (a token refused as stale, throttling
//! or 5xx that outlasted the retries) returns `Err`, so that Lambda retries the invocation,
//! which replays from what is durable. Whatever the answer, the batcher is shut down first:
//! the updates already queued are written (or refused) before it, and nothing after.
//!
//! `cargo run --example durable_map --features lambda` builds it and waits for the Lambda
//! runtime API, as any handler does. `RealBackend::from_env` reads the standard AWS
//! configuration, so `AWS_ENDPOINT_URL_LAMBDA` aims it at an emulator.

use std::sync::Arc;

use aws_sdk_lambda::types::builders::OperationUpdateBuilder;
use aws_sdk_lambda::types::{
    ErrorObject, OperationAction, OperationStatus, OperationType, OperationUpdate,
};
use checkpoint_batcher::invocation::{
    History, InvocationError, InvocationEvent, InvocationOutput, MAX_RESPONSE_BYTES,
};
use checkpoint_batcher::{
    BatcherConfig, BatcherError, BatcherHandle, CheckpointBatcher, CloseReason, DurableBackend,
    ErrorKind, FailureScope, RealBackend, SERVICE_MAX_EXECUTION_PAYLOAD_BYTES,
};
use futures::{StreamExt, TryStreamExt, stream};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let backend: Arc<dyn DurableBackend> = Arc::new(RealBackend::from_env().await);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handle(backend.clone(), event.payload, BatcherConfig::default())
    }))
    .await
}

/// One invocation: the event in, the output (or an error for Lambda to retry) out.
pub async fn handle(
    backend: Arc<dyn DurableBackend>,
    event: Value,
    config: BatcherConfig,
) -> Result<Value, Error> {
    let started = match InvocationEvent::from_value(event) {
        Ok(event) => CheckpointBatcher::for_invocation(backend, &event, config).await,
        Err(error) => Err(error),
    };
    // No batcher was started: nothing can have been written.
    let (batcher, history) = match started {
        Ok(started) => started,
        Err(error) => return Ok(answer(error.into())?.to_value()),
    };
    let output = match run(&batcher, &history).await {
        Ok(output) => output,
        Err(error) => {
            // Items still in flight were dropped with their updates queued: drain them (or let
            // the latch refuse them) now, so that nothing is written after the answer. The
            // error that stopped the map is the answer, not the drain's.
            let _drained = batcher.shutdown().await;
            answer(error)?
        }
    };
    Ok(output.to_value())
}

/// The output for an error that stopped the invocation, chosen by its scope alone; `Err` for
/// Lambda to retry the invocation.
fn answer(error: Error) -> Result<InvocationOutput, Error> {
    if error.downcast_ref::<BatcherError>().is_some_and(revoked) {
        return Ok(InvocationOutput::Pending);
    }
    match scope(&error) {
        Some(FailureScope::Execution) => Ok(failed(error_type(&error), &*error)),
        _ => Err(error),
    }
}

/// Which side should give up: the crate's errors say it themselves; input or history the map
/// cannot use fails the execution, since every replay would read the same.
fn scope(error: &Error) -> Option<FailureScope> {
    if let Some(e) = error.downcast_ref::<BatcherError>() {
        e.scope()
    } else if let Some(e) = error.downcast_ref::<InvocationError>() {
        Some(e.scope())
    } else if error.is::<Unusable>() {
        Some(FailureScope::Execution)
    } else {
        None
    }
}

fn error_type(error: &Error) -> &'static str {
    if let Some(e) = error.downcast_ref::<BatcherError>() {
        match (e, e.kind()) {
            (BatcherError::InvalidUpdate(_), _) => "InvalidUpdate",
            (_, Some(ErrorKind::Kms)) => "CheckpointKmsFailure",
            _ => "CheckpointRejected",
        }
    } else if let Some(e) = error.downcast_ref::<InvocationError>() {
        match e.kind() {
            Some(ErrorKind::Kms) => "StateKmsFailure",
            Some(_) => "StateRejected",
            None => "InvalidEvent",
        }
    } else if let Some(e) = error.downcast_ref::<Unusable>() {
        e.error_type
    } else {
        "Unknown"
    }
}

fn failed(error_type: &str, error: &dyn std::error::Error) -> InvocationOutput {
    let object = ErrorObject::builder().error_type(error_type);
    InvocationOutput::failed(object.error_message(error.to_string()).build())
}

/// Input or a stored result the map cannot use. Every replay would read the same, so it fails
/// the execution.
#[derive(Debug)]
struct Unusable {
    error_type: &'static str,
    message: String,
}

impl Unusable {
    fn input(message: impl Into<String>) -> Self {
        Self {
            error_type: "InvalidInput",
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Unusable {}

/// The input's member `field`, which must be present and a whole number of at least `min`; the
/// error names the field.
fn whole_number(input: &Value, field: &str, min: u64, max: u64) -> Result<u64, Unusable> {
    match input.get(field) {
        None => Err(Unusable::input(format!(
            "invalid input: {field} is missing"
        ))),
        Some(value) => value
            .as_u64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                Unusable::input(format!(
                    "invalid input: {field} must be a whole number from {min} to {max}, got {value}"
                ))
            }),
    }
}

/// The most items: their squares' sum, about items³ / 3, stays within a `u64`.
const MAX_ITEMS: u64 = 2_000_000;

/// The map itself; every error is returned for [`handle`] to map to an output.
async fn run(batcher: &BatcherHandle, history: &History) -> Result<InvocationOutput, Error> {
    let input: Value = serde_json::from_str(history.input().unwrap_or("{}"))
        .map_err(|e| Unusable::input(format!("invalid input: not JSON: {e}")))?;
    let items = whole_number(&input, "items", 0, MAX_ITEMS)?;
    let concurrency = whole_number(&input, "concurrency", 1, u64::from(u32::MAX))?;
    // Checked before any step runs: input refused writes nothing.
    let largest = u64::try_from(SERVICE_MAX_EXECUTION_PAYLOAD_BYTES)?;
    let pad = match input.get("pad") {
        Some(_) => Some(whole_number(&input, "pad", 0, largest)?),
        None => None,
    };
    let sum = stream::iter(0..items)
        .map(|i| item(batcher, history, i))
        .buffer_unordered(usize::try_from(concurrency)?)
        .try_fold(0_u64, |sum, square| async move { Ok(sum + square) })
        .await?;

    let mut result = json!({"items": items, "sum": sum});
    if let Some(pad) = pad {
        result["pad"] = json!("x".repeat(usize::try_from(pad)?));
    }
    let result = result.to_string();
    let mut output = InvocationOutput::succeeded(result.clone());
    if serde_json::to_vec(&output)?.len() > MAX_RESPONSE_BYTES {
        let execution = history.execution().ok_or_else(|| Unusable {
            error_type: "InvalidHistory",
            message: "invalid history: it has no EXECUTION operation".to_owned(),
        })?;
        let done = update(
            execution.id(),
            OperationType::Execution,
            OperationAction::Succeed,
        );
        batcher.checkpoint(done.payload(result).build()?).await?;
        output = InvocationOutput::Succeeded { result: None };
    }
    // Report SUCCEEDED only once everything accepted is durable.
    batcher.shutdown().await?;
    Ok(output)
}

/// Item `i`: one STEP, replayed from the history when it already succeeded.
async fn item(batcher: &BatcherHandle, history: &History, i: u64) -> Result<u64, Error> {
    let id = format!("item-{i}");
    let step = history.get(&id);
    match step.map(|op| op.status()) {
        Some(OperationStatus::Succeeded) => {
            let stored = step.and_then(|op| op.step_details()?.result());
            return stored
                .and_then(|result| serde_json::from_str(result).ok())
                .ok_or_else(|| {
                    let message =
                        format!("invalid history: {id} has no whole number as its result");
                    Unusable {
                        error_type: "InvalidHistory",
                        message,
                    }
                    .into()
                });
        }
        // Started by an earlier invocation: the service refuses a second START.
        Some(OperationStatus::Started) => {}
        _ => {
            let start = update(&id, OperationType::Step, OperationAction::Start).build()?;
            drop(batcher.submit(start).await?);
        }
    }
    let square = i * i;
    let succeed = update(&id, OperationType::Step, OperationAction::Succeed);
    batcher
        .checkpoint(succeed.payload(square.to_string()).build()?)
        .await?;
    Ok(square)
}

fn update(id: &str, ty: OperationType, action: OperationAction) -> OperationUpdateBuilder {
    OperationUpdate::builder().id(id).r#type(ty).action(action)
}

/// Whether the service revoked this invocation's token (a checkpoint answered without a new
/// one): it will invoke the function again. A token refused as stale (`Invalid checkpoint
/// token`) is an invocation failure instead, returned as `Err` for Lambda to retry.
fn revoked(error: &BatcherError) -> bool {
    matches!(error, BatcherError::Closed(closed) if closed.reason() == CloseReason::TokenRevoked)
}
