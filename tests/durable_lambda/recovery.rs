//! A crash halfway and the re-invocation that finishes the work; throttling that the batcher
//! rides out.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use checkpoint_batcher::emulator::Faults;
use serde_json::json;

use crate::handlers::{self, SEQUENTIAL_STEPS};
use crate::rig::{
    INVOCATION_LIMIT, assert_each_operation_applied_once, finish, invoke, named, report, runner,
    succeeded,
};
use crate::support::{emulator, snapshot, within_named};

/// The step the first invocation never finishes.
const CRASH_AT: u64 = 10;

#[tokio::test]
async fn an_invocation_cut_halfway_is_finished_by_the_next_without_applying_anything_twice() {
    let emulator = emulator(Faults::none(), 8).await;
    let (arn, _) = emulator.start_execution("crash");
    let event = emulator.invocation_event(&arn).expect("the execution runs");
    let hang = Arc::new(AtomicBool::new(true));
    let first_runner = runner(&emulator, 8);
    let first_hang = hang.clone();
    let first = tokio::spawn(async move {
        first_runner
            .invoke(event, move |event, ctx| {
                handlers::sequential_hanging(event, ctx, first_hang, CRASH_AT)
            })
            .await
    });
    let crash_step = format!("step-{CRASH_AT}");
    within_named(
        INVOCATION_LIMIT,
        "the first invocation reaching its hanging step",
        async {
            while !snapshot(&emulator, &arn)
                .operations
                .iter()
                .any(|op| op.name.as_deref() == Some(crash_step.as_str()))
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        },
    )
    .await;
    first.abort();
    assert!(
        first
            .await
            .expect_err("cut before it answered")
            .is_cancelled(),
        "the first invocation is cut, as a crash would"
    );
    // As the service does before it invokes again: the cut invocation's token goes stale.
    emulator.rotate_token(&arn).expect("the execution runs");
    let before = snapshot(&emulator, &arn);
    assert_eq!(
        named(&before, &crash_step).status,
        "STARTED",
        "the crash left {crash_step} started and unfinished"
    );
    assert_eq!(
        before.applied_checkpoints,
        2 * CRASH_AT + 1,
        "the first invocation applied ten steps and the eleventh's START"
    );
    hang.store(false, std::sync::atomic::Ordering::SeqCst);

    let output = invoke(&emulator, &arn, 9, |event, ctx| {
        handlers::sequential_hanging(event, ctx, hang, CRASH_AT)
    })
    .await;

    let sum: u64 = (0..SEQUENTIAL_STEPS).sum();
    assert_eq!(
        output,
        succeeded(json!({"sum": sum})),
        "the second invocation finishes"
    );
    let held = finish(&emulator, &arn, &output);
    report("crash and re-invocation", &held);
    assert_each_operation_applied_once(&held);
    let second: Vec<_> = held.applied[before.applied.len()..].iter().collect();
    assert_eq!(
        second.len() as u64,
        2 * (SEQUENTIAL_STEPS - CRASH_AT) - 1,
        "the replayed steps send nothing; the started one sends only its SUCCEED, got {second:?}"
    );
    assert_eq!(
        held.applied_checkpoints,
        2 * SEQUENTIAL_STEPS,
        "one request per update over both invocations"
    );
}

/// One request in five is answered 429 before it is processed.
fn throttling() -> Faults {
    Faults {
        throttle_rate: 0.2,
        ..Faults::default()
    }
}

#[tokio::test]
async fn sequential_steps_succeed_under_twenty_percent_throttling() {
    let emulator = emulator(throttling(), 10).await;
    let (arn, _) = emulator.start_execution("throttled-sequential");

    let output = invoke(&emulator, &arn, 10, handlers::sequential).await;

    let sum: u64 = (0..SEQUENTIAL_STEPS).sum();
    assert_eq!(
        output,
        succeeded(json!({"sum": sum})),
        "throttling only delays"
    );
    let held = finish(&emulator, &arn, &output);
    report("sequential, throttled", &held);
    assert_each_operation_applied_once(&held);
    assert!(
        held.faulted_checkpoints > 0,
        "the emulator throttled some requests"
    );
    assert_eq!(
        held.applied_checkpoints,
        2 * SEQUENTIAL_STEPS,
        "a throttled request is retried, not duplicated: one applied request per update"
    );
    assert_eq!(
        held.checkpoint_calls,
        held.applied_checkpoints + held.faulted_checkpoints,
        "every call was applied or throttled"
    );
}

#[tokio::test]
async fn fifty_parallel_branches_succeed_under_twenty_percent_throttling() {
    let emulator = emulator(throttling(), 11).await;
    let (arn, _) = emulator.start_execution("throttled-parallel");

    let output = invoke(&emulator, &arn, 11, handlers::parallel).await;

    assert_eq!(
        output,
        succeeded(json!({"sum": handlers::parallel_sum()})),
        "throttling only delays"
    );
    let held = finish(&emulator, &arn, &output);
    report("parallel, throttled", &held);
    assert_each_operation_applied_once(&held);
    assert!(
        held.faulted_checkpoints > 0,
        "the emulator throttled some requests"
    );
    // A throttled request is retried with everything it carried: rounds stay whole.
    crate::workflows::assert_parallel_requests(held.applied_checkpoints);
    assert_eq!(
        held.checkpoint_calls,
        held.applied_checkpoints + held.faulted_checkpoints,
        "every call was applied or throttled"
    );
}
