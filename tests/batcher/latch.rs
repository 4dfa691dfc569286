//! The failure latch: Every caller of the failed batch, everything queued and every
//! later call gets the same error, classified, and nothing hangs.

use std::time::Duration;

use crate::support::*;
use checkpoint_batcher::{BatcherError, ErrorKind, FailureScope, Fault};

async fn failed_rig(kind: ErrorKind) -> (Rig, Vec<checkpoint_batcher::AckFuture>) {
    let rig = rig(config());
    rig.batcher.checkpoint(start("ok")).await.unwrap();
    rig.faulty.hold();
    rig.faulty.push(Fault::Error(kind, "injected".into()));
    let mut acks = vec![rig.batcher.submit(start("doomed")).await.unwrap()];
    rig.faulty.wait_for_calls(2).await;
    for i in 0..5 {
        acks.push(
            rig.batcher
                .submit(start(&format!("queued{i}")))
                .await
                .unwrap(),
        );
    }
    rig.faulty.release();
    (rig, acks)
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_fails_its_callers_everything_queued_and_every_later_call_with_one_cause() {
    let (rig, acks) = failed_rig(ErrorKind::Rejected).await;
    let mut sequences = Vec::new();
    for ack in acks {
        let err = within(Duration::from_secs(5), ack).await.unwrap_err();
        let BatcherError::Failed(failure) = err else {
            panic!("expected Failed, got {err}")
        };
        sequences.push(failure.batch_sequence());
    }
    assert!(
        sequences.iter().all(|s| *s == 2),
        "every caller sees the failing batch as the cause"
    );
    let later = within(
        Duration::from_secs(5),
        rig.batcher.checkpoint(start("later")),
    )
    .await
    .unwrap_err();
    assert_eq!(later.kind(), Some(ErrorKind::Rejected));
    assert!(matches!(
        rig.batcher.try_submit(start("t")),
        Err(BatcherError::Failed(_))
    ));
    assert!(matches!(
        within(Duration::from_secs(5), rig.batcher.flush()).await,
        Err(BatcherError::Failed(_))
    ));
    assert!(matches!(
        within(Duration::from_secs(5), rig.batcher.refresh()).await,
        Err(BatcherError::Failed(_))
    ));
    assert!(matches!(
        within(Duration::from_secs(5), rig.batcher.shutdown()).await,
        Err(BatcherError::Failed(_))
    ));
    assert_eq!(rig.faulty.calls(), 2, "nothing is sent after the latch");
    assert_eq!(ids(&rig.memory.applied()), ["ok"]);
    assert_eq!(rig.batcher.stats().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn the_error_says_which_side_should_give_up() {
    let cases = [
        (ErrorKind::Rejected, FailureScope::Execution),
        (ErrorKind::Kms, FailureScope::Execution),
        (ErrorKind::InvalidCheckpointToken, FailureScope::Invocation),
        (ErrorKind::Throttled, FailureScope::Invocation),
        (ErrorKind::Transient, FailureScope::Invocation),
    ];
    for (kind, scope) in cases {
        let rig = rig(checkpoint_batcher::BatcherConfig {
            retry: checkpoint_batcher::RetryPolicy::no_retries(),
            ..config()
        });
        rig.faulty.push(Fault::Error(kind, "injected".into()));
        let err = within(Duration::from_secs(5), rig.batcher.checkpoint(start("a")))
            .await
            .unwrap_err();
        assert_eq!(err.scope(), Some(scope), "{kind} must fail the {scope:?}");
        assert!(
            err.to_string().contains(&scope.to_string()),
            "the message says it: {err}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_stale_token_latches_as_an_invocation_failure() {
    let rig = rig(config());
    rig.batcher.checkpoint(start("a")).await.unwrap();
    rig.memory.rotate_token();
    let err = within(Duration::from_secs(5), rig.batcher.checkpoint(start("b")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidCheckpointToken));
    assert_eq!(err.scope(), Some(FailureScope::Invocation));
    assert_eq!(rig.faulty.calls(), 2, "a stale token is not retried");
}

#[tokio::test(start_paused = true)]
async fn the_failure_is_the_source_of_the_callers_error() {
    let rig = rig(config());
    rig.faulty.push(Fault::Error(
        ErrorKind::Rejected,
        "payload too large".into(),
    ));
    let err = rig.batcher.checkpoint(start("a")).await.unwrap_err();
    let source = std::error::Error::source(&err).expect("the failure has a source");
    assert!(source.to_string().contains("payload too large"), "{source}");
}
