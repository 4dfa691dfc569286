//! The terminal checkpoint: acknowledged without a token, even when its answer is lost or a
//! shutdown arrives while it is in flight, and then everyone gets `Closed`.

use std::time::Duration;

use crate::RTT;
use crate::support::*;
use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::emulator::Faults;
use checkpoint_batcher::{BatcherError, CloseReason, Fault};

/// `lose_the_answer`: the terminal call is applied but its answer lost, so the batcher retries
/// it and the emulator replays it. `shutdown_in_flight`: a shutdown arrives while the terminal
/// call is in flight, and must get the report of a completed execution (no token).
async fn terminal_checkpoint(lose_the_answer: bool, shutdown_in_flight: bool) {
    let emu = emulator(Faults::default(), 0x7E4).await;
    let (arn, faulty, batcher) = held_batcher(&emu, "terminal", patient_config(5));
    let exec_id = snapshot(&emu, &arn).execution_operation_id;
    within_named(HANG, "setup", batcher.checkpoint(start("s1")))
        .await
        .expect("applies");
    faulty.hold();
    let step_done = batcher.submit(succeed("s1", "2")).await.expect("accepted");
    within_named(HANG, "the held call to start", faulty.wait_for_calls(2)).await;
    // Queued while call 2 is in flight: the EXECUTION SUCCEED goes last in its batch, so the
    // updates behind it wait for a batch that never goes.
    let finish = OperationUpdate::builder()
        .id(&exec_id)
        .r#type(OperationType::Execution)
        .action(OperationAction::Succeed)
        .payload("\"result\"")
        .build()
        .expect("complete");
    let before = batcher.submit(start("s2")).await.expect("accepted");
    let done = batcher.submit(finish).await.expect("accepted");
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(
            batcher
                .submit(start(&format!("after{i}")))
                .await
                .expect("accepted"),
        );
    }
    if lose_the_answer {
        // Call 2 drew its fault when it started; this is the terminal call's: applied by the
        // emulator, then the answer lost, so the batcher retries with the same client token.
        faulty.push(Fault::LostAnswer);
    }
    let pending_shutdown = shutdown_in_flight.then(|| {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.shutdown().await })
    });
    if pending_shutdown.is_some() {
        // The shutdown command is queued behind the updates: wait until the actor has read it.
        within_named(HANG, "the shutdown is received", async {
            while batcher.is_open() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }
    faulty.release();

    let step_done = within_named(HANG, "the batch before", step_done)
        .await
        .expect("applied");
    assert!(step_done.checkpoint_token().is_some());
    let done = within_named(HANG, "the terminal checkpoint", done)
        .await
        .expect("acknowledged");
    let before = within_named(HANG, "its batch companion", before)
        .await
        .expect("acknowledged");
    assert_eq!(
        done.checkpoint_token(),
        None,
        "the terminal checkpoint returns no token"
    );
    assert!(
        before.same_batch(&done),
        "an update before the EXECUTION shares its batch"
    );
    for ack in queued {
        let error = within_named(HANG, "a queued caller", ack)
            .await
            .expect_err("closed");
        assert!(
            matches!(&error, BatcherError::Closed(c) if c.reason() == CloseReason::ExecutionCompleted),
            "a queued caller learns the execution completed: {error}"
        );
    }
    let later = within_named(RTT, "a later caller", batcher.checkpoint(start("later")))
        .await
        .expect_err("closed");
    assert!(
        matches!(&later, BatcherError::Closed(c) if c.reason() == CloseReason::ExecutionCompleted),
        "a later caller learns the execution completed, even during a shutdown's drain: {later}"
    );
    assert!(!batcher.is_open());
    // Five accepted updates were refused by the completion: no drain may call that a success.
    let refused_by_completion = |answer: Result<(), BatcherError>, what: &str| {
        let error = answer.expect_err("updates accepted behind the completion were refused");
        assert!(
            matches!(&error, BatcherError::Closed(c) if c.reason() == CloseReason::ExecutionCompleted),
            "{what} names the completion that refused them: {error}"
        );
    };
    if let Some(pending) = pending_shutdown {
        let answer = within_named(HANG, "the pending shutdown", pending)
            .await
            .expect("no panic");
        refused_by_completion(answer.map(drop), "the pending shutdown");
    }
    let answer = within_named(RTT, "shutdown", batcher.shutdown()).await;
    refused_by_completion(answer.map(drop), "a later shutdown");
    refused_by_completion(
        within_named(RTT, "flush", batcher.flush()).await,
        "a later flush",
    );
    assert_eq!(
        batcher.stats().unacknowledged,
        5,
        "the refused updates are counted, the later caller's is not (never accepted)"
    );
    let snap = snapshot(&emu, &arn);
    assert!(snap.completed && snap.current_token.is_none());
    assert_eq!(
        snap.operation(&exec_id).map(|op| op.status.as_str()),
        Some("SUCCEEDED")
    );
    assert_eq!(
        snap.applied_checkpoints, 3,
        "setup, the step, the terminal batch"
    );
    assert_eq!(
        snap.rejected_checkpoints, 0,
        "nothing was sent after the completion"
    );
    assert!((0..5).all(|i| applied_count(&snap, &format!("after{i}")) == 0));
    assert_eq!(
        snap.replayed_checkpoints,
        u64::from(lose_the_answer),
        "a lost terminal answer is recovered by a replay, not refused as a stale token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_checkpoint_is_acknowledged_without_a_token_and_then_everyone_gets_closed() {
    let _serial = SERIAL.lock().await;
    terminal_checkpoint(false, false).await;
    terminal_checkpoint(true, false).await;
    terminal_checkpoint(false, true).await;
}
