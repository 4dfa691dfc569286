//! A request the service rejects: the batch's callers, everything queued and every later call
//! get an execution failure, and nothing hangs.

use crate::RTT;
use crate::support::*;
use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate, WaitOptions};
use checkpoint_batcher::emulator::Faults;
use checkpoint_batcher::{AckFuture, BatcherError, ErrorKind, FailureScope};

/// Updates that pass every local check but break a rule of one request (docs/PROTOCOL.md,
/// "Request rules"), so the service refuses the whole request with a 400 that is not about the
/// token.
fn rule_breakers(exec_id: &str) -> Vec<(&'static str, OperationUpdate)> {
    let with_parent = OperationUpdate::builder()
        .id("orphan")
        .parent_id("no-such-context")
        .r#type(OperationType::Step)
        .action(OperationAction::Start)
        .build()
        .expect("complete");
    vec![
        (
            "SUCCEED of a step never started",
            update(
                "never-started",
                OperationType::Step,
                OperationAction::Succeed,
            ),
        ),
        ("ParentId naming no CONTEXT", with_parent),
        (
            "START of a finished step",
            update("done", OperationType::Step, OperationAction::Start),
        ),
        (
            "SUCCEED of a WAIT (the service completes waits)",
            update("waiting", OperationType::Wait, OperationAction::Succeed),
        ),
        (
            "a type that does not match the stored operation",
            update("done", OperationType::Context, OperationAction::Succeed),
        ),
        (
            "two EXECUTION updates in one request",
            update(exec_id, OperationType::Execution, OperationAction::Start),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_service_rejects_latches_an_execution_failure_and_nothing_hangs() {
    let _serial = SERIAL.lock().await;
    let emu = emulator(Faults::default(), 0x4E7).await;
    let (probe, _) = emu.start_execution("probe");
    let exec_id = snapshot(&emu, &probe).execution_operation_id;
    for (n, (rule, bad)) in rule_breakers(&exec_id).into_iter().enumerate() {
        let (arn, faulty, batcher) =
            held_batcher(&emu, &format!("rejected-{n}"), patient_config(7));
        // Call 1: the history the rule breakers refer to.
        for setup in [
            start("done"),
            succeed("done", "1"),
            // A wait of a minute, still running when the rule breakers name it.
            OperationUpdate::builder()
                .id("waiting")
                .r#type(OperationType::Wait)
                .action(OperationAction::Start)
                .wait_options(WaitOptions::builder().wait_seconds(60).build())
                .build()
                .expect("complete"),
        ] {
            within_named(HANG, "setup", batcher.checkpoint(setup))
                .await
                .expect("setup applies");
        }
        let calls_before = faulty.calls();
        // Call 2 held in flight; the bad update queues between good ones, so the next batch
        // holds all of them.
        faulty.hold();
        let first = batcher.submit(start("g0")).await.expect("accepted");
        within_named(
            HANG,
            "the held call to start",
            faulty.wait_for_calls(calls_before + 1),
        )
        .await;
        let mut acks: Vec<(String, AckFuture)> = Vec::new();
        for i in 1..=4 {
            let id = format!("g{i}");
            acks.push((
                id.clone(),
                batcher.submit(start(&id)).await.expect("accepted"),
            ));
        }
        let bad_id = bad.id.clone();
        acks.push((
            bad_id.clone(),
            batcher.submit(bad).await.expect("passes local checks"),
        ));
        for i in 5..=8 {
            let id = format!("g{i}");
            acks.push((
                id.clone(),
                batcher.submit(start(&id)).await.expect("accepted"),
            ));
        }
        faulty.release();

        within_named(HANG, "the batch before", first)
            .await
            .expect("applied before the bad batch");
        let mut sequence = None;
        for (id, ack) in acks {
            let error = within_named(HANG, "a caller of the rejected batch", ack)
                .await
                .expect_err("the whole request is refused");
            let BatcherError::Failed(failure) = &error else {
                panic!("{rule}: expected a failure for {id}, got {error}")
            };
            assert_eq!(failure.kind(), ErrorKind::Rejected, "{rule}: {error}");
            assert_eq!(failure.scope(), FailureScope::Execution, "{rule}: {error}");
            assert_eq!(
                failure.attempts(),
                1,
                "{rule}: a rejected request is not retried"
            );
            assert!(
                error.to_string().contains(&bad_id),
                "{rule}: the message names the update at fault: {error}"
            );
            assert_eq!(
                *sequence.get_or_insert(failure.batch_sequence()),
                failure.batch_sequence()
            );
        }
        let later = within_named(RTT, "a later caller", batcher.checkpoint(start("later")))
            .await
            .expect_err("latched");
        assert_eq!(later.scope(), Some(FailureScope::Execution), "{rule}");
        assert!(within_named(RTT, "flush", batcher.flush()).await.is_err());
        assert!(
            within_named(RTT, "shutdown", batcher.shutdown())
                .await
                .is_err()
        );
        let snap = snapshot(&emu, &arn);
        assert_eq!(
            snap.rejected_checkpoints, 1,
            "{rule}: refused once, never retried"
        );
        assert_eq!(
            snap.checkpoint_calls,
            snap.applied_checkpoints + 1,
            "{rule}"
        );
        for i in 1..=8 {
            assert_eq!(
                applied_count(&snap, &format!("g{i}")),
                0,
                "{rule}: a refused request applies nothing (atomic)"
            );
        }
        assert_eq!(
            applied_count(&snap, "later"),
            0,
            "{rule}: nothing is sent after the latch"
        );
    }
    emu.shutdown().await;
}
