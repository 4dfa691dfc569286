//! `RealBackend` over real HTTP against the emulator: the SDK's own serialization and error
//! parsing, classification from real responses, and the batcher end to end under faults.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_lambda::types::{
    ErrorObject, OperationAction, OperationType, OperationUpdate, StepOptions,
};
use checkpoint_batcher::emulator::{Emulator, Faults};
use checkpoint_batcher::{
    BatcherConfig, BatcherError, CheckpointBatcher, DurableBackend, ErrorKind, FailureScope,
    RealBackend, RetryPolicy,
};
use common::*;

async fn emulator(
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
    let emulator = emulator(|b| b.page_size(2)).await;
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
    let emulator = emulator(|b| b).await;
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
        let emulator = emulator(|b| b.omit_error_type_header(omit)).await;
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
    let emulator = emulator(|b| b.page_size(3)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tasks_of_fifty_steps_under_every_fault_apply_each_step_exactly_once() {
    soak(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_lost_as_dropped_connections_are_not_applied_twice_either() {
    soak(true).await;
}

/// 200 tasks × 50 steps (START submitted without waiting, SUCCEED awaited) with throttling,
/// server errors and lost answers, the latter as 500s or as dropped connections.
async fn soak(drop_connection_on_lost_answer: bool) {
    const TASKS: usize = 200;
    const STEPS: usize = 50;
    let emulator = emulator(|b| {
        b.seed(11).faults(Faults {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(3),
            throttle_rate: 0.1,
            server_error_rate: 0.05,
            lost_answer_rate: 0.05,
            drop_connection_on_lost_answer,
            retry_after: Duration::ZERO,
        })
    })
    .await;
    let (arn, token) = emulator.start_execution("soak");
    let backend = Arc::new(RealBackend::new(emulator.client()));
    let config = BatcherConfig {
        retry: RetryPolicy {
            max_attempts: 30,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            jitter_seed: Some(5),
            ..RetryPolicy::default()
        },
        ..BatcherConfig::default()
    };
    let batcher = CheckpointBatcher::spawn(backend, arn.clone(), token, config).unwrap();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move {
            for s in 0..STEPS {
                let id = format!("t{t}-s{s}");
                let started = batcher.submit(start(&id)).await.unwrap();
                drop(started);
                batcher.checkpoint(succeed(&id, "\"done\"")).await.unwrap();
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("no task may hang")
            .unwrap();
    }
    let report = batcher.shutdown().await.unwrap();
    let held = emulator.execution(&arn).unwrap();
    assert!(
        held.faulted_checkpoints > 0 && held.lost_answers > 0,
        "the faults were exercised"
    );
    assert_eq!(
        report.checkpoint_token, held.current_token,
        "the batcher ends holding the service's token"
    );
    let steps: Vec<_> = held
        .operations
        .iter()
        .filter(|o| o.op_type == "STEP")
        .collect();
    assert_eq!(steps.len(), TASKS * STEPS);
    for op in &steps {
        assert_eq!(op.status, "SUCCEEDED", "{} must have succeeded", op.id);
        assert_eq!(
            op.history,
            ["START", "SUCCEED"],
            "{} applied exactly once each",
            op.id
        );
    }
    assert_eq!(
        held.applied.len(),
        TASKS * STEPS * 2,
        "no update applied twice"
    );
    let mut per_task: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for u in &held.applied {
        per_task
            .entry(u.id.split('-').next().unwrap())
            .or_default()
            .push((u.id.as_str(), u.action.as_str()));
    }
    for t in 0..TASKS {
        let got = &per_task[format!("t{t}").as_str()];
        let expected: Vec<(String, &str)> = (0..STEPS)
            .flat_map(|s| {
                [
                    (format!("t{t}-s{s}"), "START"),
                    (format!("t{t}-s{s}"), "SUCCEED"),
                ]
            })
            .collect();
        let got: Vec<(String, &str)> = got.iter().map(|(id, a)| (id.to_string(), *a)).collect();
        assert_eq!(
            got, expected,
            "task {t}'s updates reach the service in order"
        );
    }
    assert_eq!(
        report.stats.batches, held.applied_checkpoints,
        "each batch applied once"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_latched_with_a_clear_message() {
    let emulator = emulator(|b| b).await;
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
