//! `BatchingBackend` keeps the trait's idempotency: a call repeated with its client token is the
//! same call, as the service treats it, although the batcher sends its own client tokens.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::primitives::DateTime;
use aws_sdk_lambda::types::{
    CheckpointUpdatedExecutionState, Operation, OperationStatus, OperationType, StepDetails,
};
use checkpoint_batcher::{BatcherConfig, BatchingBackend, DurableBackend, ErrorKind, Fault};

fn backend(rig: &Rig) -> BatchingBackend {
    BatchingBackend::new(rig.batcher.clone(), rig.faulty.clone())
}

#[tokio::test(start_paused = true)]
async fn a_call_repeated_with_its_client_token_gets_the_first_outcome_and_applies_nothing_again() {
    let rig = rig(config());
    let backend = backend(&rig);
    let call = || vec![start("a"), succeed("a", "1")];
    let first = backend
        .checkpoint(ARN, "t", call(), Some("retry-me"))
        .await
        .unwrap();
    // Another clone, as a retry from another task would use.
    let again = backend
        .clone()
        .checkpoint(ARN, "t", call(), Some("retry-me"))
        .await
        .unwrap();
    assert_eq!(
        again.checkpoint_token, first.checkpoint_token,
        "the repeat is answered with the first call's outcome"
    );
    assert_eq!(rig.faulty.calls(), 1, "one request for the two calls");
    assert_eq!(rig.memory.applied().len(), 2, "applied once");
    // Without a client token, or under another one, a call is new.
    backend
        .checkpoint(ARN, "t", vec![start("b")], None)
        .await
        .unwrap();
    backend
        .checkpoint(ARN, "t", vec![succeed("b", "2")], Some("other"))
        .await
        .unwrap();
    assert_eq!(rig.memory.applied().len(), 4);
}

/// An SDK whose call timed out on its side retries it while the first is still on its way: the
/// retry waits for the first call's outcome instead of queuing the updates again.
#[tokio::test(start_paused = true)]
async fn a_retry_of_a_call_still_in_flight_waits_for_it_even_when_the_first_caller_gave_up() {
    let rig = rig(config());
    let backend = backend(&rig);
    rig.faulty.hold();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(10),
        backend.checkpoint(ARN, "t", vec![start("slow")], Some("slow-call")),
    )
    .await;
    assert!(gave_up.is_err(), "the first call is held in flight");
    let retry = {
        let backend = backend.clone();
        tokio::spawn(async move {
            backend
                .checkpoint(ARN, "t", vec![start("slow")], Some("slow-call"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    rig.faulty.release();
    let output = within(Duration::from_secs(5), retry)
        .await
        .unwrap()
        .unwrap();
    assert!(output.checkpoint_token.is_some());
    assert_eq!(rig.faulty.calls(), 1, "the retry sent nothing of its own");
    assert_eq!(rig.memory.applied().len(), 1, "the update applied once");
}

#[tokio::test(start_paused = true)]
async fn the_same_client_token_with_other_updates_is_refused_and_nothing_of_it_is_applied() {
    let rig = rig(config());
    let backend = backend(&rig);
    backend
        .checkpoint(ARN, "t", vec![start("a")], Some("once"))
        .await
        .unwrap();
    let refused = backend
        .checkpoint(ARN, "t", vec![start("b")], Some("once"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Rejected, "{refused}");
    assert!(refused.to_string().contains("client token"), "{refused}");
    rig.batcher.shutdown().await.unwrap();
    assert_eq!(
        rig.memory.applied().len(),
        1,
        "only the first call's update was applied"
    );
}

#[tokio::test(start_paused = true)]
async fn the_oldest_client_tokens_are_forgotten_past_the_documented_bound() {
    let rig = rig(config());
    let backend = Arc::new(backend(&rig));
    let bound = BatchingBackend::REMEMBERED_CLIENT_TOKENS;
    for i in 0..=bound {
        backend
            .checkpoint(
                ARN,
                "t",
                vec![start(&format!("s{i}"))],
                Some(&format!("c{i}")),
            )
            .await
            .unwrap();
    }
    let applied = rig.memory.applied().len();
    // The newest is still remembered: its repeat applies nothing.
    let newest = format!("c{bound}");
    backend
        .checkpoint(ARN, "t", vec![start(&format!("s{bound}"))], Some(&newest))
        .await
        .unwrap();
    assert_eq!(rig.memory.applied().len(), applied);
    // The oldest was forgotten: its client token is free again, so a call under it with other
    // updates is a new call, not a conflict.
    backend
        .checkpoint(ARN, "t", vec![succeed("s0", "1")], Some("c0"))
        .await
        .unwrap();
    assert_eq!(rig.memory.applied().len(), applied + 1);
}

#[tokio::test(start_paused = true)]
async fn remembered_updates_are_bounded_in_bytes_too() {
    let rig = rig(config());
    let backend = backend(&rig);
    let payload = "x".repeat(1024 * 1024 - 64);
    let calls = BatchingBackend::REMEMBERED_BYTES / payload.len() + 1;
    for i in 0..calls {
        backend
            .checkpoint(
                ARN,
                "t",
                vec![succeed(&format!("s{i}"), &payload)],
                Some(&format!("c{i}")),
            )
            .await
            .unwrap();
    }
    // Past the bytes held, the oldest call was forgotten: its token is free for a new call.
    backend
        .checkpoint(ARN, "t", vec![start("new")], Some("c0"))
        .await
        .unwrap();
    let last = calls - 1;
    let refused = backend
        .checkpoint(ARN, "t", vec![start("new")], Some(&format!("c{last}")))
        .await
        .unwrap_err();
    assert_eq!(
        refused.kind(),
        ErrorKind::Rejected,
        "the newest is still held"
    );
}

/// A call under a client token that had to wait for room in a full queue, and whose caller gave
/// up meanwhile, still goes (it was made) and does not keep the slot it was waiting for: later
/// submits and the shutdown are not stuck behind it.
#[tokio::test(start_paused = true)]
async fn a_call_abandoned_while_the_queue_is_full_is_still_written_and_holds_no_slot() {
    let rig = rig(BatcherConfig {
        max_batch_updates: 1,
        queue_capacity: 1,
        ..config()
    });
    let backend = backend(&rig);
    rig.faulty.hold();
    let mut acks = vec![rig.batcher.submit(start("a")).await.unwrap()];
    rig.faulty.wait_for_calls(1).await;
    acks.push(rig.batcher.submit(start("b")).await.unwrap());
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    acks.push(rig.batcher.submit(start("c")).await.unwrap());
    let gave_up = tokio::time::timeout(
        Duration::from_millis(10),
        backend.checkpoint(ARN, "t", vec![start("d")], Some("abandoned")),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the call waited for room, and its caller gave up"
    );
    rig.faulty.release();
    for ack in acks {
        within(Duration::from_secs(5), ack).await.unwrap();
    }
    let e = within(Duration::from_secs(60), rig.batcher.submit(start("e")))
        .await
        .unwrap();
    drop(e);
    within(Duration::from_secs(60), rig.batcher.shutdown())
        .await
        .unwrap();
    let applied: Vec<String> = rig.memory.applied().into_iter().map(|u| u.id).collect();
    assert_eq!(
        applied,
        ["a", "b", "c", "d", "e"],
        "the abandoned call was made once"
    );
}

/// The outcomes remembered count against the bound too: answers carrying large operations
/// push the oldest calls out.
#[tokio::test(start_paused = true)]
async fn remembered_outcomes_count_against_the_bytes_bound() {
    let rig = rig(config());
    let backend = backend(&rig);
    let result = "r".repeat(256 * 1024);
    let answers = BatchingBackend::REMEMBERED_BYTES / (4 * result.len()) + 1;
    for i in 0..answers {
        let operations: Vec<Operation> = (0..4)
            .map(|j| {
                Operation::builder()
                    .id(format!("op{i}-{j}"))
                    .r#type(OperationType::Step)
                    .status(OperationStatus::Succeeded)
                    .start_timestamp(DateTime::from_secs(1))
                    .step_details(StepDetails::builder().result(result.clone()).build())
                    .build()
                    .unwrap()
            })
            .collect();
        // Scripted answers leave the in-memory service's token as it was: hand it back.
        rig.faulty.push(Fault::Respond(
            CheckpointDurableExecutionOutput::builder()
                .set_checkpoint_token(rig.memory.current_token())
                .new_execution_state(
                    CheckpointUpdatedExecutionState::builder()
                        .set_operations(Some(operations))
                        .build(),
                )
                .build(),
        ));
        backend
            .checkpoint(
                ARN,
                "t",
                vec![start(&format!("s{i}"))],
                Some(&format!("c{i}")),
            )
            .await
            .unwrap();
    }
    // Small updates, large answers: past the bytes held, the oldest call was forgotten.
    backend
        .checkpoint(ARN, "t", vec![start("new")], Some("c0"))
        .await
        .expect("c0 was forgotten, so this is a new call, not a conflict");
}
