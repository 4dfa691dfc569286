//! What `Runner::invoke` answers when a checkpoint fails, by the failure's scope, and what
//! durable-lambda's code sees through `BatchingBackend`: the classified `BackendError` behind
//! its error, after the batcher's retries and no others.

use std::error::Error as _;
use std::sync::Arc;

use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::durable_lambda::Runner;
use checkpoint_batcher::emulator::{Emulator, Faults};
use checkpoint_batcher::invocation::MAX_RESPONSE_BYTES;
use checkpoint_batcher::{
    BackendError, BatcherError, BatchingBackend, CheckpointBatcher, ErrorKind, Fault, FaultyBackend,
};
use durable_lambda_core::backend::DurableBackend as _;
use serde_json::{Value, json};

use crate::handlers;
use crate::rig::{INVOCATION_LIMIT, pending};
use crate::support::{emulator, patient_config, real, snapshot, within_named};

/// Invokes the sequential handler for three steps through a backend that plays `script` on
/// its first checkpoint calls; returns the answer, the emulator and the execution's ARN.
async fn invoke_scripted(
    script: Vec<Fault>,
    max_attempts: u32,
) -> (Result<Value, String>, Emulator, String) {
    let emulator = emulator(Faults::none(), 16).await;
    let (arn, _) = emulator.start_execution_with_input("scripted", Some(r#"{"steps": 3}"#));
    let event = emulator.invocation_event(&arn).expect("the execution runs");
    let faulty = Arc::new(FaultyBackend::new(real(&emulator)));
    for fault in script {
        faulty.push(fault);
    }
    let mut config = patient_config(16);
    config.retry.max_attempts = max_attempts;
    let runner = Runner::new(faulty).with_config(config);
    let answer = within_named(
        INVOCATION_LIMIT,
        "a scripted invocation",
        runner.invoke(event, handlers::sequential),
    )
    .await
    .map_err(|error| error.to_string());
    (answer, emulator, arn)
}

#[tokio::test]
async fn a_checkpoint_answered_without_a_token_answers_pending() {
    let no_token = CheckpointDurableExecutionOutput::builder().build();
    let (answer, _, _) = invoke_scripted(vec![Fault::Pass, Fault::Respond(no_token)], 6).await;
    assert_eq!(
        answer.expect("a revoked token is an answer"),
        pending(),
        "a token the service revoked answers PENDING: the service invokes the function again"
    );
}

#[tokio::test]
async fn a_rejected_checkpoint_fails_the_execution() {
    let rejected = Fault::Error(ErrorKind::Rejected, "refused by the test".into());
    let (answer, emulator, arn) = invoke_scripted(vec![Fault::Pass, rejected], 6).await;
    let output = answer.expect("an execution-scope failure is an answer");
    assert_eq!(
        output["Status"], "FAILED",
        "a rejected request fails the execution"
    );
    assert_eq!(output["Error"]["ErrorType"], "CheckpointRejected");
    let message = output["Error"]["ErrorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("refused by the test"),
        "the answer carries the service's message, got {message:?}"
    );
    assert_eq!(
        snapshot(&emulator, &arn).applied.len(),
        1,
        "only the update before the refusal was applied"
    );
}

#[tokio::test]
async fn a_failure_that_outlasts_the_retries_is_an_error_for_lambda_to_retry() {
    let (answer, emulator, arn) =
        invoke_scripted(vec![Fault::Pass, Fault::Transient, Fault::Transient], 2).await;
    let error = answer.expect_err("an invocation-scope failure is not an answer");
    assert!(
        error.contains("after 2 attempts") && error.contains("transient failure"),
        "the error says what failed, and that the batcher retried it, got {error:?}"
    );
    assert_eq!(
        snapshot(&emulator, &arn).applied.len(),
        1,
        "the invocation stops at the failure; a re-invocation replays from what is durable"
    );
}

#[tokio::test]
async fn a_step_that_fails_for_good_fails_the_execution_as_durable_lambda_answers() {
    let emulator = emulator(Faults::none(), 17).await;
    let (arn, _) = emulator.start_execution("failing-step");
    let event = emulator.invocation_event(&arn).expect("the execution runs");
    let output = Runner::new(real(&emulator))
        .with_config(patient_config(17))
        .invoke(
            event,
            |_: Value, mut ctx: durable_lambda_core::DurableContext| async move {
                let charged: Result<u64, String> = ctx
                    .step("charge", || async { Err("card declined".to_owned()) })
                    .await?;
                let charged = charged.map_err(|error| {
                    durable_lambda_core::DurableError::child_context_failed("charge", error)
                })?;
                Ok(json!(charged))
            },
        )
        .await
        .expect("the handler's own failure is an answer");
    assert_eq!(
        output["Status"], "FAILED",
        "the handler's error fails the execution"
    );
    assert_eq!(
        output["Error"]["ErrorType"], "CHILD_CONTEXT_FAILED",
        "the error type is durable-lambda's code for the error"
    );
    let held = snapshot(&emulator, &arn);
    let charge = crate::rig::named(&held, "charge");
    assert_eq!(
        charge.history,
        ["START", "FAIL"],
        "the step's failure is durable"
    );
}

#[tokio::test]
async fn durable_lambdas_error_is_caused_by_the_classified_backend_error_after_one_round_of_retries()
 {
    let emulator = emulator(Faults::none(), 18).await;
    let (arn, token) = emulator.start_execution("classified");
    let faulty = Arc::new(FaultyBackend::new(real(&emulator)));
    faulty.push(Fault::Error(
        ErrorKind::Rejected,
        "refused by the test".into(),
    ));
    let batcher = CheckpointBatcher::spawn(faulty.clone(), arn.clone(), token, patient_config(18))
        .expect("a valid configuration");
    let backend = BatchingBackend::new(batcher.clone(), faulty.clone());
    let update = OperationUpdate::builder()
        .id("step-1")
        .r#type(OperationType::Step)
        .action(OperationAction::Start)
        .build()
        .expect("a complete update");

    let error = backend
        .checkpoint(
            &arn,
            "a token durable-lambda thinks is current",
            vec![update],
            None,
        )
        .await
        .expect_err("the batcher's failure reaches durable-lambda");

    assert_eq!(
        error.code(),
        "AWS_SDK_OPERATION",
        "durable-lambda's error for a backend failure"
    );
    let cause = error
        .source()
        .and_then(|source| source.downcast_ref::<BackendError>())
        .expect("the classified BackendError is the error's source");
    assert_eq!(
        cause.kind(),
        ErrorKind::Rejected,
        "the failure keeps its kind"
    );
    assert!(
        cause
            .source()
            .is_some_and(|source| source.downcast_ref::<BatcherError>().is_some()),
        "the BackendError's own source is the batcher's error"
    );
    assert_eq!(
        faulty.calls(),
        1,
        "a refusal is not retried, by the batcher or anyone else"
    );
    assert!(batcher.shutdown().await.is_err(), "the refusal latched");
}

#[tokio::test]
async fn a_result_over_the_response_limit_is_checkpointed_and_the_answer_has_no_result() {
    let emulator = emulator(Faults::none(), 20).await;
    let (arn, _) = emulator.start_execution("large-result");
    let event = emulator.invocation_event(&arn).expect("the execution runs");
    // Its JSON text is 18 bytes short of the limit; the answer wrapping it is over.
    let large = "x".repeat(MAX_RESPONSE_BYTES - 20);
    let expected = serde_json::to_string(&json!(large)).expect("a string serializes");

    let output = Runner::new(real(&emulator))
        .with_config(patient_config(20))
        .invoke(
            event,
            |_: Value, _: durable_lambda_core::DurableContext| async move { Ok(json!(large)) },
        )
        .await
        .expect("a large result is an answer");

    assert_eq!(
        output,
        json!({"Status": "SUCCEEDED"}),
        "a result the response cannot hold is left out of it"
    );
    let held = snapshot(&emulator, &arn);
    let execution = held
        .operation(&held.execution_operation_id)
        .expect("every execution has its EXECUTION operation");
    assert_eq!(
        execution.status, "SUCCEEDED",
        "the EXECUTION SUCCEED update completed it"
    );
    assert!(
        execution.result.as_deref() == Some(expected.as_str()),
        "the EXECUTION SUCCEED update carries the result"
    );
    assert!(
        held.completed,
        "the execution completed before the function answered"
    );
}

/// An event that every re-invocation would bring again fails the execution, naming what could
/// not be read, instead of an error that Lambda would retry forever.
#[tokio::test]
async fn an_event_that_cannot_be_read_fails_the_execution() {
    let emulator = emulator(Faults::none(), 18).await;
    let (arn, _) = emulator.start_execution("unreadable");
    let mut event = emulator.invocation_event(&arn).expect("the execution runs");
    event["InitialExecutionState"]["Operations"][0]["StartTimestamp"] = json!("yesterday");
    let output = Runner::new(real(&emulator))
        .with_config(patient_config(18))
        .invoke(event, handlers::sequential)
        .await
        .expect("an event no re-invocation mends is an answer, not an error to retry");
    assert_eq!(output["Status"], "FAILED", "{output}");
    assert_eq!(
        output["Error"]["ErrorType"], "InvalidInvocation",
        "{output}"
    );
    assert_eq!(
        snapshot(&emulator, &arn).checkpoint_calls,
        0,
        "nothing was sent"
    );
}
