//! A durable map on `lambda_runtime`: the batcher inside a real durable function.
//!
//! The input is `{"items": N, "concurrency": C}`. Item `i` is one STEP with Id `item-{i}` whose
//! result is the JSON number `i*i`; at most `C` items run at once. Each item submits its START
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
//! without a new one) returns `PENDING`; the service invokes the function again. An
//! execution-scope failure (the service rejected an update), an update refused locally or an
//! input that is not JSON returns `FAILED` with the error: replaying cannot mend them. Anything
//! else (a token refused as stale, throttling or 5xx that outlasted the retries, unreadable
//! state) returns `Err`, so that Lambda retries the invocation, which replays from what is
//! durable.
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
    History, InvocationEvent, InvocationOutput, MAX_RESPONSE_BYTES,
};
use checkpoint_batcher::{
    BatcherConfig, BatcherError, BatcherHandle, CheckpointBatcher, CloseReason, DurableBackend,
    ErrorKind, FailureScope, RealBackend,
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
    let event = InvocationEvent::from_value(event)?;
    let (batcher, history) = CheckpointBatcher::for_invocation(backend, &event, config).await?;
    let output = match run(&batcher, &history).await {
        Ok(output) => output,
        Err(error) => match error.downcast_ref::<BatcherError>() {
            Some(e) if revoked(e) => InvocationOutput::Pending,
            Some(e) if e.scope() == Some(FailureScope::Execution) => match e.kind() {
                Some(ErrorKind::Kms) => failed("CheckpointKmsFailure", e),
                _ => failed("CheckpointRejected", e),
            },
            // Replaying cannot mend a bad update or bad input: fail the execution.
            Some(e @ BatcherError::InvalidUpdate(_)) => failed("InvalidUpdate", e),
            None if error.is::<serde_json::Error>() => failed("InvalidInput", &*error),
            _ => return Err(error),
        },
    };
    Ok(output.to_value())
}

fn failed(error_type: &str, error: &dyn std::error::Error) -> InvocationOutput {
    let object = ErrorObject::builder().error_type(error_type);
    InvocationOutput::failed(object.error_message(error.to_string()).build())
}

/// The map itself; every error is returned for [`handle`] to map to an output.
async fn run(batcher: &BatcherHandle, history: &History) -> Result<InvocationOutput, Error> {
    let input: Value = serde_json::from_str(history.input().unwrap_or("{}"))?;
    let items = input["items"].as_u64().unwrap_or(0);
    let concurrency = input["concurrency"].as_u64().unwrap_or(1).max(1);
    let sum = stream::iter(0..items)
        .map(|i| item(batcher, history, i))
        .buffer_unordered(usize::try_from(concurrency)?)
        .try_fold(0_u64, |sum, square| async move { Ok(sum + square) })
        .await?;

    let mut result = json!({"items": items, "sum": sum});
    if let Some(pad) = input["pad"].as_u64() {
        result["pad"] = json!("x".repeat(usize::try_from(pad)?));
    }
    let result = result.to_string();
    let mut output = InvocationOutput::succeeded(result.clone());
    if serde_json::to_vec(&output)?.len() > MAX_RESPONSE_BYTES {
        let execution = history.execution().ok_or("the history has no EXECUTION")?;
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
            return Ok(serde_json::from_str(
                stored.ok_or("a SUCCEEDED step has a result")?,
            )?);
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
