//! `LocalRun` with handler functions in the test process.

#[allow(
    dead_code,
    reason = "the tests call `handle`; `main` waits for the Lambda runtime"
)]
#[path = "../../examples/durable_map.rs"]
mod example;

#[allow(
    dead_code,
    reason = "the tests here use one of durable-lambda's handlers"
)]
#[path = "../durable_lambda/handlers.rs"]
mod handlers;

#[allow(
    dead_code,
    reason = "the tests here use its checks, not its invocations"
)]
#[path = "../durable_lambda/rig.rs"]
mod rig;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use checkpoint_batcher::DurableBackend;
use checkpoint_batcher::durable_lambda::Runner;
use checkpoint_batcher::emulator::local::{
    EndReason, InvocationOutcome, LocalOutcome, LocalRun, Progress, Waiting,
};
use checkpoint_batcher::emulator::{Emulator, Faults};
use serde_json::{Value, json};

use crate::support::{emulator, patient_config, real, within_named};
use handlers::wait_then_callback;
use rig::assert_each_operation_applied_once;

/// Generous for a loaded two-core machine; a hang fails instead of blocking.
const LIMIT: Duration = Duration::from_secs(60);

/// The handler's answer once the run succeeded: the execution's result, as JSON.
fn succeeded_result(outcome: &LocalOutcome) -> Value {
    assert!(
        outcome.succeeded(),
        "{:?} {:?}",
        outcome.status,
        outcome.invocations
    );
    serde_json::from_str(outcome.result.as_deref().expect("a result")).expect("a JSON result")
}

/// How each invocation ended, in order.
fn outcomes(outcome: &LocalOutcome) -> Vec<InvocationOutcome> {
    outcome
        .invocations
        .iter()
        .map(|i| i.outcome.clone())
        .collect()
}

#[tokio::test]
async fn a_wait_and_a_callback_are_played_by_the_run_until_the_execution_succeeds() {
    let emulator = emulator(Faults::none(), 3).await;
    let runner = Runner::new(real(&emulator)).with_config(patient_config(3));
    let outcome = within_named(
        LIMIT,
        "the local run",
        LocalRun::new(json!({}))
            .skip_waits(true)
            .callback_result("\"approved\"")
            .run(&emulator, |event| runner.invoke(event, wait_then_callback)),
    )
    .await
    .expect("the run ends");

    let result = succeeded_result(&outcome);
    assert_eq!(result, json!({"answer": "approved", "sum": 3}));
    assert_eq!(
        outcomes(&outcome),
        [
            InvocationOutcome::Pending,
            InvocationOutcome::Pending,
            InvocationOutcome::Succeeded
        ],
        "the wait suspends the first invocation, the callback the second"
    );
    assert_eq!(outcome.end, EndReason::Completed);
    assert_each_operation_applied_once(&outcome.execution);
}

#[tokio::test]
async fn a_callback_nobody_answers_stops_the_run_as_blocked_without_success() {
    let emulator = emulator(Faults::none(), 4).await;
    let runner = Runner::new(real(&emulator)).with_config(patient_config(4));
    let outcome = within_named(
        LIMIT,
        "the local run",
        LocalRun::new(json!({}))
            .skip_waits(true)
            .run(&emulator, |event| runner.invoke(event, wait_then_callback)),
    )
    .await
    .expect("the run ends");
    assert!(!outcome.succeeded());
    assert_eq!(outcome.status, "RUNNING");
    let EndReason::Blocked(blocked) = &outcome.end else {
        panic!("blocked on the callback, got {:?}", outcome.end);
    };
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].op_type, "CALLBACK");
    assert_eq!(outcome.invocations.len(), 2);
}

#[tokio::test]
async fn the_last_invocation_allowed_ends_the_run_without_waiting_for_a_callback() {
    let emulator = emulator(Faults::none(), 5).await;
    let runner = Runner::new(real(&emulator)).with_config(patient_config(5));
    // Invocation 2 leaves the handler waiting on a callback nobody answers: with no third
    // invocation allowed, waiting for the answer could only delay the end, forever.
    let outcome = within_named(
        LIMIT,
        "the local run",
        LocalRun::new(json!({}))
            .skip_waits(true)
            .wait_for_callbacks(true)
            .max_invocations(2)
            .run(&emulator, |event| runner.invoke(event, wait_then_callback)),
    )
    .await
    .expect("the run ends");
    assert!(!outcome.succeeded());
    assert_eq!(outcome.status, "RUNNING");
    assert_eq!(outcome.end, EndReason::MaxInvocations);
    assert_eq!(outcome.invocations.len(), 2);
}

#[tokio::test]
async fn a_callback_answered_through_the_sdk_while_the_run_waits_ends_the_wait() {
    let emulator = emulator(Faults::none(), 5).await;
    let runner = Runner::new(real(&emulator)).with_config(patient_config(5));
    let client = emulator.client();
    let mut answered = Vec::new();
    let outcome = within_named(
        LIMIT,
        "the local run",
        LocalRun::new(json!({}))
            .skip_waits(true)
            .wait_for_callbacks(true)
            .run_observed(
                &emulator,
                |event| runner.invoke(event, wait_then_callback),
                |progress: &Progress| {
                    let Progress::AwaitingCallbacks(callbacks) = progress else {
                        return;
                    };
                    let Some(Waiting::Callback {
                        callback_id: Some(id),
                    }) = callbacks.first().map(|c| c.kind.clone())
                    else {
                        panic!("a callback with its Id: {callbacks:?}");
                    };
                    answered.push(id.clone());
                    // Another client answers it, as someone would from another shell.
                    let send = client
                        .send_durable_execution_callback_success()
                        .callback_id(id)
                        .result(Blob::new("\"approved\""));
                    drop(tokio::spawn(async move {
                        send.send().await.expect("the emulator takes the answer");
                    }));
                },
            ),
    )
    .await
    .expect("the run ends");
    let result = succeeded_result(&outcome);
    assert_eq!(answered.len(), 1, "awaited once");
    assert_eq!(result, json!({"answer": "approved", "sum": 3}));
    assert_each_operation_applied_once(&outcome.execution);

    // The same Id again: the callback is completed, and the emulator says so.
    let again = client
        .send_durable_execution_callback_success()
        .callback_id(&answered[0])
        .result(Blob::new("\"twice\""))
        .send()
        .await;
    let error = again.expect_err("a completed callback takes no second answer");
    assert!(
        format!("{:?}", error).contains("already completed"),
        "{error:?}"
    );
}

fn backend(emulator: &Emulator) -> Arc<dyn DurableBackend> {
    real(emulator)
}

#[tokio::test]
async fn a_map_crashed_after_forty_updates_under_throttling_replays_to_success() {
    let faults = Faults {
        throttle_rate: 0.2,
        ..Faults::default()
    };
    let emulator = emulator(faults, 7).await;
    let backend = backend(&emulator);
    let outcome = within_named(
        LIMIT,
        "the local run",
        LocalRun::new(json!({"items": 50, "concurrency": 10}))
            .crash_after_updates(40)
            .run(&emulator, |event| {
                example::handle(backend.clone(), event, patient_config(11))
            }),
    )
    .await
    .expect("the run ends");

    assert_eq!(
        succeeded_result(&outcome),
        json!({"items": 50, "sum": 40425}),
        "the sum of i*i below 50"
    );
    let first = &outcome.invocations[0];
    assert_eq!(first.outcome, InvocationOutcome::Crashed);
    assert!(outcome.crashed() && outcome.replayed());
    assert!(
        (40..100).contains(&first.updates_applied),
        "crashed after 40 updates, before the map's 100: {}",
        first.updates_applied
    );
    assert_eq!(
        outcome.invocations.last().map(|i| &i.outcome),
        Some(&InvocationOutcome::Succeeded)
    );
    let held = &outcome.execution;
    assert_each_operation_applied_once(held);
    let steps = held
        .operations
        .iter()
        .filter(|op| op.op_type == "STEP")
        .count();
    assert_eq!(steps, 50);
    assert!(
        held.faulted_checkpoints > 0,
        "throttling was injected: {} calls, {} applied, {:?}",
        held.checkpoint_calls,
        held.applied_checkpoints,
        outcome.invocations
    );
}

#[tokio::test]
async fn a_handler_answering_failed_ends_the_run_failed_with_its_error() {
    let emulator = emulator(Faults::none(), 12).await;
    let backend = backend(&emulator);
    let outcome = within_named(
        LIMIT,
        "the local run",
        LocalRun::new(json!({"items": "x", "concurrency": 1})).run(&emulator, |event| {
            example::handle(backend.clone(), event, patient_config(12))
        }),
    )
    .await
    .expect("the run ends");
    assert!(!outcome.succeeded());
    assert_eq!(outcome.status, "FAILED");
    assert_eq!(outcome.invocations.len(), 1, "a FAILED answer is final");
    assert_eq!(outcome.invocations[0].outcome, InvocationOutcome::Failed);
    let error = outcome.error.expect("the execution's error");
    assert!(
        error.error_message.unwrap_or_default().contains("items"),
        "the error names the field"
    );
}

#[tokio::test]
async fn errors_and_timeouts_are_invoked_again_up_to_the_limit() {
    let emulator = emulator(Faults::none(), 13).await;
    let mut calls = 0_u32;
    let outcome = within_named(
        LIMIT,
        "the local run",
        LocalRun::new(json!({}))
            .max_invocations(3)
            .timeout(Duration::from_millis(50))
            .run(&emulator, |_event| {
                calls += 1;
                let call = calls;
                async move {
                    match call {
                        1 => Err("boom"),
                        2 => std::future::pending().await,
                        _ => Ok(json!({"Status": "SUCCEEDED", "Result": "\"late\""})),
                    }
                }
            }),
    )
    .await
    .expect("the run ends");
    assert_eq!(
        outcomes(&outcome),
        [
            InvocationOutcome::Error("boom".to_owned()),
            InvocationOutcome::TimedOut,
            InvocationOutcome::Succeeded
        ]
    );
    assert!(outcome.succeeded());
    assert_eq!(outcome.result.as_deref(), Some("\"late\""));

    let outcome = LocalRun::new(json!({}))
        .max_invocations(2)
        .run(&emulator, |_event| async { Err::<Value, _>("always") })
        .await
        .expect("the run ends");
    assert_eq!(outcome.end, EndReason::MaxInvocations);
    assert_eq!(outcome.status, "RUNNING");
    assert!(!outcome.succeeded());
}

/// README, "Testing your handler", as written there (its doctest is not run: a `#[tokio::test]`
/// inside a doctest is not compiled). Keep the two the same.
mod readme_testing_your_handler {
    use super::example as durable_map;

    use std::collections::HashSet;
    use std::sync::Arc;

    use checkpoint_batcher::emulator::local::{InvocationOutcome, LocalRun};
    use checkpoint_batcher::emulator::{Emulator, Faults};
    use checkpoint_batcher::{BatcherConfig, RealBackend};
    use serde_json::json;

    #[tokio::test]
    async fn the_map_replays_after_a_crash_under_throttling()
    -> Result<(), Box<dyn std::error::Error>> {
        let faults = Faults {
            throttle_rate: 0.2,
            ..Faults::default()
        };
        let emulator = Emulator::builder().faults(faults).start().await?;
        let backend = Arc::new(RealBackend::new(emulator.client()));
        let outcome = LocalRun::new(json!({"items": 50, "concurrency": 10}))
            .crash_after_updates(40) // the first invocation dies halfway through the map
            .skip_waits(true)
            .run(&emulator, |event| {
                durable_map::handle(backend.clone(), event, BatcherConfig::default())
            })
            .await?;

        assert!(outcome.succeeded(), "ended {}", outcome.status);
        assert_eq!(
            outcome.result.as_deref(),
            Some(r#"{"items":50,"sum":40425}"#)
        );
        assert_eq!(outcome.invocations[0].outcome, InvocationOutcome::Crashed);
        let mut seen = HashSet::new();
        let once = outcome
            .execution
            .applied
            .iter()
            .all(|u| seen.insert((&u.id, &u.action)));
        assert!(once, "no update applied twice across the crash");
        Ok(())
    }
}
