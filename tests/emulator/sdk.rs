//! The real `aws-sdk-lambda` client against the emulator over loopback: the wire shapes and
//! typed errors round trip, a lost answer the SDK retries is applied once, and `RealBackend`
//! sends exactly the body the size count predicts, classifies real error responses, follows a
//! `NextMarker` and latches a refused connection with a clear message.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use aws_sdk_lambda::types::{
    ErrorObject, OperationAction, OperationType, OperationUpdate, StepOptions,
};
use checkpoint_batcher::emulator::{Emulator, Faults};
use checkpoint_batcher::{
    BatcherConfig, BatcherError, CheckpointBatcher, DurableBackend, ErrorKind, FailureScope,
    RealBackend, RetryPolicy,
};

/// An empty checkpoint sent with `token` to `arn` through the SDK, which must be refused: its
/// service error.
async fn refused_checkpoint(
    client: &aws_sdk_lambda::Client,
    arn: &str,
    token: &str,
) -> aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionError {
    client
        .checkpoint_durable_execution()
        .durable_execution_arn(arn)
        .checkpoint_token(token)
        .send()
        .await
        .expect_err("the checkpoint must be refused")
        .into_service_error()
}

/// The SDK client aimed at the emulator, without retries.
fn sdk_client(emu: &Emulator) -> aws_sdk_lambda::Client {
    sdk_client_retrying(emu, aws_sdk_lambda::config::retry::RetryConfig::disabled())
}

/// The SDK client aimed at the emulator, retrying per `retry`.
fn sdk_client_retrying(
    emu: &Emulator,
    retry: aws_sdk_lambda::config::retry::RetryConfig,
) -> aws_sdk_lambda::Client {
    use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "emulator",
        ))
        .endpoint_url(emu.endpoint_url())
        .retry_config(retry)
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

#[tokio::test]
async fn aws_sdk_lambda_round_trips_checkpoints_state_and_typed_errors() {
    use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionError as CpErr;
    use aws_sdk_lambda::types::{
        ErrorObject, OperationAction, OperationStatus, OperationType, OperationUpdate,
    };

    let emu = Emulator::builder().page_size(2).start().await.unwrap();
    let client = sdk_client(&emu);
    let (arn, t0) = emu.start_execution_with_input("sdk", Some("{\"order\":1}"));
    let update = |id: &str, action: OperationAction| {
        OperationUpdate::builder()
            .id(id)
            .r#type(OperationType::Step)
            .action(action)
            .build()
            .unwrap()
    };
    let out = client
        .checkpoint_durable_execution()
        .durable_execution_arn(&arn)
        .checkpoint_token(&t0)
        .updates(update("a", OperationAction::Start))
        .updates(
            OperationUpdate::builder()
                .id("a")
                .r#type(OperationType::Step)
                .action(OperationAction::Succeed)
                .payload("\"ok\"")
                .build()
                .unwrap(),
        )
        .updates(update("b", OperationAction::Start))
        .updates(
            OperationUpdate::builder()
                .id("b")
                .r#type(OperationType::Step)
                .action(OperationAction::Fail)
                .error(
                    ErrorObject::builder()
                        .error_message("bad")
                        .error_type("E")
                        .stack_trace("at x")
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .updates(update("c", OperationAction::Start))
        .send()
        .await
        .unwrap();
    let t1 = out.checkpoint_token().unwrap().to_owned();
    let state = out.new_execution_state().unwrap();
    assert_eq!(state.operations().len(), 2, "page_size 2");
    let a = &state.operations()[0];
    assert_eq!(
        (a.id(), a.r#type(), a.status()),
        ("a", &OperationType::Step, &OperationStatus::Succeeded)
    );
    assert_eq!(a.step_details().unwrap().result(), Some("\"ok\""));
    assert!(
        a.start_timestamp().secs() > 1_600_000_000,
        "a real epoch timestamp"
    );
    let b = &state.operations()[1];
    assert_eq!(b.status(), &OperationStatus::Failed);
    assert_eq!(
        b.step_details().unwrap().error().unwrap().error_message(),
        Some("bad")
    );
    let marker = state.next_marker().unwrap().to_owned();

    let page = client
        .get_durable_execution_state()
        .durable_execution_arn(&arn)
        .checkpoint_token(&t1)
        .marker(&marker)
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.operations().iter().map(|o| o.id()).collect::<Vec<_>>(),
        ["c"]
    );
    assert!(page.next_marker().is_none());

    let full = client
        .get_durable_execution_state()
        .durable_execution_arn(&arn)
        .checkpoint_token(&t1)
        .max_items(1)
        .send()
        .await
        .unwrap();
    let exec = &full.operations()[0];
    assert_eq!(exec.r#type(), &OperationType::Execution);
    assert_eq!(
        exec.execution_details().unwrap().input_payload(),
        Some("{\"order\":1}")
    );

    let stale = refused_checkpoint(&client, &arn, &t0).await;
    match &stale {
        CpErr::InvalidParameterValueException(e) => {
            assert!(
                e.message().unwrap().starts_with("Invalid checkpoint token"),
                "{e:?}"
            );
        }
        other => panic!("expected InvalidParameterValueException, got {other:?}"),
    }
    let missing = refused_checkpoint(
        &client,
        "arn:aws:lambda:us-east-1:123456789012:function:x:$LATEST/durable-execution/x/none",
        &t1,
    )
    .await;
    assert!(
        {
            use aws_sdk_lambda::error::ProvideErrorMetadata;
            // The checkpoint call does not model ResourceNotFound: it is unhandled, with
            // the code from the header.
            missing.code() == Some("ResourceNotFoundException")
        },
        "{missing:?}"
    );

    emu.set_faults(Faults {
        throttle_rate: 1.0,
        retry_after: Duration::from_secs(3),
        ..Faults::default()
    });
    let throttled = refused_checkpoint(&client, &arn, &t1).await;
    match &throttled {
        CpErr::TooManyRequestsException(e) => assert_eq!(e.retry_after_seconds(), Some("3")),
        other => panic!("expected TooManyRequestsException, got {other:?}"),
    }
    emu.set_faults(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    });
    let failed = refused_checkpoint(&client, &arn, &t1).await;
    assert!(matches!(failed, CpErr::ServiceException(_)), "{failed:?}");
    emu.set_faults(Faults::none());

    let exec_id = snapshot(&emu, &arn).execution_operation_id;
    let done = client
        .checkpoint_durable_execution()
        .durable_execution_arn(&arn)
        .checkpoint_token(&t1)
        .updates(
            OperationUpdate::builder()
                .id(&exec_id)
                .r#type(OperationType::Execution)
                .action(OperationAction::Succeed)
                .payload("42")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        done.checkpoint_token().is_none(),
        "no token after EXECUTION SUCCEED"
    );
    let s = snapshot(&emu, &arn);
    assert!(s.completed);
    // Every SDK call carried an SDK-generated ClientToken.
    assert!(
        s.applied.iter().all(|a| a.client_token.is_some()),
        "the SDK fills ClientToken in"
    );
}

#[tokio::test]
async fn the_sdk_retrying_a_lost_answer_is_applied_once() {
    use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("sdk-retry");
    let client = sdk_client_retrying(
        &emu,
        aws_sdk_lambda::config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(1)),
    );
    // Seed 0x5EED with rate 0.5: the first answer is lost, a later attempt gets through
    // (checked by the assertions below, so a change of generator shows up here).
    emu.set_faults(Faults {
        lost_answer_rate: 0.5,
        ..Faults::default()
    });
    let mut lost_any = false;
    let mut token = t0;
    for i in 0..6 {
        let out = client
            .checkpoint_durable_execution()
            .durable_execution_arn(&arn)
            .checkpoint_token(&token)
            .updates(
                OperationUpdate::builder()
                    .id(format!("s{i}"))
                    .r#type(OperationType::Step)
                    .action(OperationAction::Start)
                    .build()
                    .unwrap(),
            )
            .send()
            .await;
        let Ok(out) = out else {
            // Attempts exhausted: pick up the service's token, as a re-invocation would.
            token = snapshot(&emu, &arn).current_token.unwrap();
            continue;
        };
        token = out.checkpoint_token().unwrap().to_owned();
        lost_any |= snapshot(&emu, &arn).lost_answers > 0;
    }
    let s = snapshot(&emu, &arn);
    assert!(
        lost_any && s.replayed_checkpoints > 0,
        "answers were lost and replayed: {s:?}"
    );
    assert_eq!(
        s.applied.len() as u64,
        s.applied_checkpoints,
        "each update applied exactly once"
    );
    let mut ids: Vec<&str> = s.applied.iter().map(|a| a.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), s.applied.len(), "no update applied twice");
}

async fn emulator_with(
    configure: impl FnOnce(
        checkpoint_batcher::emulator::EmulatorBuilder,
    ) -> checkpoint_batcher::emulator::EmulatorBuilder,
) -> Emulator {
    configure(Emulator::builder())
        .start()
        .await
        .expect("the emulator binds 127.0.0.1:0")
}

#[tokio::test]
async fn checkpoints_empty_checkpoints_and_state_pages_go_through_the_real_sdk() {
    let emulator = emulator_with(|b| b.page_size(2)).await;
    let (arn, token) = emulator.start_execution("direct");
    let backend = RealBackend::new(emulator.client());

    let updates: Vec<OperationUpdate> = (0..5).map(|i| start(&format!("s{i}"))).collect();
    let out = backend
        .checkpoint(&arn, &token, updates, Some("client-1"))
        .await
        .unwrap();
    let token2 = out.checkpoint_token.clone().expect("a new token");
    assert_ne!(token2, token);
    let state = out.new_execution_state.unwrap();
    assert_eq!(
        state.operations.unwrap_or_default().len(),
        2,
        "the first page of five changes"
    );
    let mut marker = state.next_marker;
    let mut paged = 2;
    while let Some(m) = marker {
        let page = backend
            .get_execution_state(&arn, &token2, Some(&m), Some(2))
            .await
            .unwrap();
        paged += page.operations.len();
        marker = page.next_marker;
    }
    assert_eq!(paged, 5, "NextMarker pages are fetched with the new token");

    let empty = backend
        .checkpoint(&arn, &token2, Vec::new(), Some("client-2"))
        .await
        .unwrap();
    let token3 = empty
        .checkpoint_token
        .expect("an empty checkpoint rotates the token");
    assert_ne!(token3, token2);
    let all = backend
        .get_execution_state(&arn, &token3, None, Some(1000))
        .await
        .unwrap();
    assert_eq!(
        all.operations.len(),
        6,
        "five steps and the EXECUTION operation"
    );
    assert_eq!(emulator.execution(&arn).unwrap().applied_checkpoints, 2);
}

#[tokio::test]
async fn the_size_count_equals_the_body_the_sdk_sends() {
    let emulator = emulator_with(|b| b).await;
    let (arn, token) = emulator.start_execution("sizes");
    let backend = Arc::new(RealBackend::new(emulator.client()));
    let batcher =
        CheckpointBatcher::spawn(backend, arn.clone(), token, BatcherConfig::default()).unwrap();
    let tricky = [
        OperationUpdate::builder()
            .id("a")
            .name("quote \" backslash \\ newline \n tab \t bell \u{7} é 日本")
            .sub_type("Step")
            .r#type(OperationType::Step)
            .action(OperationAction::Start)
            .build()
            .unwrap(),
        OperationUpdate::builder()
            .id("a")
            .r#type(OperationType::Step)
            .action(OperationAction::Retry)
            .error(
                ErrorObject::builder()
                    .error_type("E")
                    .error_message("line1\r\nline2 \u{1}")
                    .stack_trace("at f")
                    .stack_trace("at g")
                    .build(),
            )
            .step_options(
                StepOptions::builder()
                    .next_attempt_delay_seconds(30)
                    .build(),
            )
            .build()
            .unwrap(),
        OperationUpdate::builder()
            .id("b")
            .r#type(OperationType::Context)
            .action(OperationAction::Start)
            .payload(r#"{"json":"in \"json\"","n":[1,2,3]}"#)
            .build()
            .unwrap(),
    ];
    let mut acks = Vec::new();
    for update in tricky {
        acks.push(batcher.checkpoint(update).await.unwrap());
    }
    acks.push(batcher.refresh().await.unwrap());
    let sizes = emulator.execution(&arn).unwrap().request_body_sizes;
    let counted: Vec<usize> = acks.iter().map(|a| a.batch_bytes()).collect();
    assert_eq!(
        counted, sizes,
        "the batcher's byte count must equal the SDK's request body"
    );
}

async fn classify(
    emulator: &Emulator,
    arn: &str,
    token: &str,
    updates: Vec<OperationUpdate>,
) -> checkpoint_batcher::BackendError {
    RealBackend::new(emulator.client())
        .checkpoint(arn, token, updates, Some("c"))
        .await
        .expect_err("the emulator refuses this call")
}

#[tokio::test]
async fn real_error_responses_are_classified_with_and_without_the_error_type_header() {
    for omit in [false, true] {
        let emulator = emulator_with(|b| b.omit_error_type_header(omit)).await;
        let (arn, token) = emulator.start_execution("errors");
        let how = if omit {
            "without the header"
        } else {
            "with the header"
        };

        emulator.set_faults(Faults {
            throttle_rate: 1.0,
            retry_after: Duration::from_secs(2),
            ..Faults::default()
        });
        let err = classify(&emulator, &arn, &token, vec![start("a")]).await;
        assert_eq!(err.kind(), ErrorKind::Throttled, "429 {how}: {err}");
        assert_eq!(
            err.retry_after(),
            Some(Duration::from_secs(2)),
            "Retry-After {how}"
        );
        assert_eq!(err.status(), Some(429));

        emulator.set_faults(Faults {
            server_error_rate: 1.0,
            ..Faults::default()
        });
        let calls_before = emulator.execution(&arn).unwrap().checkpoint_calls;
        let err = classify(&emulator, &arn, &token, vec![start("a")]).await;
        assert_eq!(err.kind(), ErrorKind::Transient, "500 {how}: {err}");
        let calls = emulator.execution(&arn).unwrap().checkpoint_calls - calls_before;
        assert_eq!(
            calls, 1,
            "RealBackend makes one attempt: the SDK's retries are off"
        );
        emulator.set_faults(Faults::none());

        let err = classify(&emulator, &arn, "c3RhbGU=", vec![start("a")]).await;
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidCheckpointToken,
            "stale token {how}: {err}"
        );
        assert_eq!(err.kind().scope(), FailureScope::Invocation);

        let err = classify(
            &emulator,
            &arn,
            &token,
            vec![step("never-started", OperationAction::Succeed)],
        )
        .await;
        assert_eq!(
            err.kind(),
            ErrorKind::Rejected,
            "a broken rule {how}: {err}"
        );
        assert_eq!(err.kind().scope(), FailureScope::Execution);

        let err = classify(
            &emulator,
            "arn:aws:lambda:us-east-1:1:function:nope/durable-execution/x/y",
            &token,
            vec![],
        )
        .await;
        assert_eq!(
            err.kind(),
            ErrorKind::Rejected,
            "an unknown execution {how}: {err}"
        );
        assert_eq!(err.status(), Some(404));

        let err = RealBackend::new(emulator.client())
            .get_execution_state(&arn, "c3RhbGU=", None, None)
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidCheckpointToken,
            "state with a stale token {how}"
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "the SDK error is kept as the source"
        );
        emulator.shutdown().await;
    }
}

#[tokio::test]
async fn a_next_marker_is_followed_before_the_batch_is_acknowledged() {
    let emulator = emulator_with(|b| b.page_size(3)).await;
    let (arn, token) = emulator.start_execution("pages");
    let backend = Arc::new(RealBackend::new(emulator.client()));
    let batcher = CheckpointBatcher::spawn(
        backend,
        arn.clone(),
        token,
        BatcherConfig {
            flush_interval: Duration::from_secs(60),
            ..BatcherConfig::default()
        },
    )
    .unwrap();
    let mut acks = Vec::new();
    for i in 0..10 {
        acks.push(batcher.submit(start(&format!("s{i}"))).await.unwrap());
    }
    batcher.flush().await.unwrap();
    let first = acks.remove(0).await.unwrap();
    let ids: Vec<&str> = first.operations().iter().map(|o| o.id.as_str()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    assert_eq!(
        ids, expected,
        "all four pages of the batch's changes are in its acknowledgement"
    );
    assert_eq!(
        emulator.execution(&arn).unwrap().state_calls,
        1,
        "the rest comes in one page of up to 1000"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_latched_with_a_clear_message() {
    let emulator = emulator_with(|b| b).await;
    let (arn, token) = emulator.start_execution("gone");
    let backend = Arc::new(RealBackend::new(emulator.client()));
    let config = BatcherConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            jitter_seed: Some(1),
            ..RetryPolicy::default()
        },
        ..BatcherConfig::default()
    };
    let batcher = CheckpointBatcher::spawn(backend, arn, token, config).unwrap();
    batcher.checkpoint(start("before")).await.unwrap();
    emulator.shutdown().await;
    let err = tokio::time::timeout(Duration::from_secs(30), batcher.checkpoint(start("after")))
        .await
        .expect("nothing hangs")
        .unwrap_err();
    let BatcherError::Failed(failure) = &err else {
        panic!("expected a latched failure, got {err}")
    };
    assert_eq!(failure.kind(), ErrorKind::Transient);
    assert_eq!(failure.attempts(), 3, "a refused connection is retried");
    assert_eq!(err.scope(), Some(FailureScope::Invocation));
    let message = err.to_string();
    assert!(
        message.contains("connection failed") && message.contains("after 3 attempts"),
        "{message}"
    );
    assert_eq!(batcher.stats().retries, 2);
    let later = batcher.checkpoint(start("later")).await.unwrap_err();
    assert_eq!(
        later.to_string(),
        message,
        "later callers get the same latched error"
    );
}
