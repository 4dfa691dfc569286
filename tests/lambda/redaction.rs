//! Secrets stay out of the invocation's types and the emulator's: formatted with `Debug` (and
//! errors with `Display`), none shows a checkpoint token, an input, a result or an error's text.

use crate::support::*;
use aws_sdk_lambda::types::{
    ErrorObject, OperationAction, OperationType, OperationUpdate, WaitOptions,
};
use checkpoint_batcher::emulator::{Completion, Emulator};
use checkpoint_batcher::invocation::{History, InvocationEvent, InvocationOutput};
use checkpoint_batcher::{DurableBackend, RealBackend, RetryPolicy};
use serde_json::json;

const INPUT: &str = "INPUT-5c2e91-NEVER-SHOWN";
const RESULT: &str = "RESULT-a7d4f0-NEVER-SHOWN";
const ERROR_TEXT: &str = "ERROR-3b8e66-NEVER-SHOWN";
const WAIT_RESULT: &str = "WAKE-91c0de-NEVER-SHOWN";

#[tokio::test(flavor = "current_thread")]
async fn no_invocation_or_emulator_type_shows_a_token_or_a_payload() {
    // One operation a page, so the history is read through `GetDurableExecutionState`.
    let emulator = Emulator::builder().page_size(1).start().await.unwrap();
    let input = json!({"secret": INPUT}).to_string();
    let (arn, first_token) = emulator.start_execution_with_input("secrets", Some(&input));
    let backend = RealBackend::new(emulator.client());
    let failed_step = OperationUpdate::builder()
        .id("s2")
        .r#type(OperationType::Step)
        .action(OperationAction::Fail)
        .error(
            ErrorObject::builder()
                .error_type("Boom")
                .error_message(ERROR_TEXT)
                .error_data(ERROR_TEXT)
                .stack_trace(ERROR_TEXT)
                .build(),
        )
        .build()
        .unwrap();
    let wait = OperationUpdate::builder()
        .id("w1")
        .r#type(OperationType::Wait)
        .action(OperationAction::Start)
        .wait_options(WaitOptions::builder().wait_seconds(60).build())
        .build()
        .unwrap();
    backend
        .checkpoint(
            &arn,
            &first_token,
            vec![
                start("s1"),
                succeed("s1", &format!("\"{RESULT}\"")),
                start("s2"),
                failed_step,
                wait,
            ],
            Some("setup"),
        )
        .await
        .unwrap();
    let completion = Completion::Succeed(Some(WAIT_RESULT.to_owned()));
    emulator
        .complete_operation(&arn, "w1", completion.clone())
        .unwrap();

    let value = emulator.invocation_event(&arn).unwrap();
    let event = InvocationEvent::from_value(value).unwrap();
    assert!(event.next_marker().is_some(), "the history spans pages");
    let history = History::load(&backend, &event, &RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        history.input(),
        Some(input.as_str()),
        "the history holds the input"
    );
    let held = emulator.execution(&arn).unwrap();
    let secrets = vec![
        first_token,
        event.checkpoint_token().to_owned(),
        INPUT.to_owned(),
        RESULT.to_owned(),
        ERROR_TEXT.to_owned(),
        WAIT_RESULT.to_owned(),
    ];
    let succeeded = InvocationOutput::succeeded(json!({"sum": RESULT}).to_string());
    let failed = InvocationOutput::failed(
        ErrorObject::builder()
            .error_type("Boom")
            .error_message(ERROR_TEXT)
            .build(),
    );
    let shown = [
        ("InvocationEvent", format!("{event:?}")),
        ("History", format!("{history:?}")),
        ("InvocationOutput::Succeeded", format!("{succeeded:?}")),
        ("InvocationOutput::Failed", format!("{failed:?}")),
        ("Completion", format!("{completion:?}")),
        ("Emulator", format!("{emulator:?}")),
        ("ExecutionSnapshot", format!("{held:?}")),
        ("OperationRecord", format!("{:?}", held.operation("s2"))),
        (
            "ErrorRecord",
            format!("{:?}", held.operation("s2").unwrap().error),
        ),
    ];
    for (what, text) in &shown {
        assert_clean(what, text, &secrets);
    }
    assert!(
        shown[0].1.contains("chars #"),
        "the event's token is shown redacted, as its length and a hash: {}",
        shown[0].1
    );
    assert!(
        shown[2].1.contains("bytes›"),
        "a result is shown as its length: {}",
        shown[2].1
    );
    emulator.shutdown().await;
}

/// A value of the wrong type is what serde's own messages quote: the errors that read an event
/// or a handler's output say only what kind of fault it was and where.
#[tokio::test(flavor = "current_thread")]
async fn errors_about_malformed_json_do_not_quote_its_values() {
    let event = json!({
        "DurableExecutionArn": "arn:aws:lambda:us-east-1:123456789012:function:f/durable-execution/e/1",
        "CheckpointToken": 5,
        "InitialExecutionState": {"Operations": [{"Id": "op", "Type": "STEP", "Status": "SUCCEEDED",
            "StartTimestamp": 1_700_000_000_000_u64, "StepDetails": {"Result": 42_424_242}}]},
    });
    let error = InvocationEvent::from_value(event.clone()).unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("line"), "it says where: {shown}");
    let mut event = event;
    event["CheckpointToken"] = json!("dG9rZW4");
    let error = InvocationEvent::from_value(event).unwrap_err();
    let shown = format!("{error}");
    assert!(!shown.contains("42424242"), "a result never shows: {shown}");

    let emulator = Emulator::builder().start().await.unwrap();
    let (arn, _) = emulator.start_execution("bad-output");
    let error = emulator
        .finish_invocation(
            &arn,
            &json!({"Status": "FAILED", "Error": {"StackTrace": ERROR_TEXT}}),
        )
        .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains(ERROR_TEXT),
        "an error's text never shows: {shown}"
    );
}

/// The local run's types: neither the input, nor the answer given to a callback, the result, a
/// handler's error text or a callback's Id appears in their `Debug`.
#[tokio::test(flavor = "current_thread")]
async fn no_local_run_type_shows_a_payload_or_a_callback_id() {
    use checkpoint_batcher::emulator::local::{LocalRun, Progress, Waiting};

    let emulator = Emulator::builder().start().await.unwrap();
    let backend = std::sync::Arc::new(RealBackend::new(emulator.client()));
    let run = LocalRun::new(json!({"secret": INPUT}))
        .callback_result(format!("\"{WAIT_RESULT}\""))
        .max_invocations(4);
    let mut calls = 0;
    let mut progress = Vec::new();
    let mut callback_ids = Vec::new();
    let outcome = run
        .run_observed(
            &emulator,
            |event| {
                calls += 1;
                let call = calls;
                let backend = backend.clone();
                async move {
                    match call {
                        // Lambda retries an invocation that answers an error.
                        1 => Err(ERROR_TEXT.to_owned()),
                        // Waits on a callback, which the run answers.
                        2 => {
                            let event = InvocationEvent::from_value(event).unwrap();
                            let callback = OperationUpdate::builder()
                                .id("cb")
                                .r#type(OperationType::Callback)
                                .action(OperationAction::Start)
                                .build()
                                .unwrap();
                            backend
                                .checkpoint(
                                    event.arn(),
                                    event.checkpoint_token(),
                                    vec![callback],
                                    Some("callback"),
                                )
                                .await
                                .unwrap();
                            Ok(json!({"Status": "PENDING"}))
                        }
                        _ => Ok(json!({"Status": "SUCCEEDED", "Result": format!("\"{RESULT}\"")})),
                    }
                }
            },
            |step: &Progress| {
                if let Progress::Completed(op) = step
                    && let Waiting::Callback {
                        callback_id: Some(id),
                    } = &op.kind
                {
                    callback_ids.push(id.clone());
                }
                progress.push(format!("{step:?}"));
            },
        )
        .await
        .unwrap();
    assert!(outcome.succeeded(), "{:?}", outcome.invocations);
    assert_eq!(
        callback_ids.len(),
        1,
        "the callback was answered by the run"
    );
    let mut secrets = vec![
        INPUT.to_owned(),
        RESULT.to_owned(),
        ERROR_TEXT.to_owned(),
        WAIT_RESULT.to_owned(),
    ];
    secrets.extend(callback_ids);
    assert_clean("LocalRun", &format!("{run:?}"), &secrets);
    assert_clean("LocalOutcome", &format!("{outcome:?}"), &secrets);
    for step in &progress {
        assert_clean("Progress", step, &secrets);
    }
    let failed = &outcome.invocations[0].outcome;
    assert_clean("InvocationOutcome (Display)", &failed.to_string(), &secrets);
    assert!(
        format!("{failed:?}").contains("bytes›"),
        "an error's text is shown as its length"
    );
    assert_eq!(
        failed.detail(),
        Some(ERROR_TEXT),
        "the text is there for whoever asks for it"
    );
    emulator.shutdown().await;
}
