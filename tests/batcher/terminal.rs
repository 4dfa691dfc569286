//! The end of the chain: a response without a token ends it.

use std::time::Duration;

use crate::support::*;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::types::{OperationAction, OperationType};
use checkpoint_batcher::{BatcherError, CloseReason, FailureScope, Fault};

#[tokio::test(start_paused = true)]
async fn an_execution_completion_is_acknowledged_without_a_token_then_the_batcher_closes() {
    let rig = rig(config());
    rig.batcher.checkpoint(start("s")).await.unwrap();
    rig.faulty.hold();
    let done = rig
        .batcher
        .submit(update(
            "exec",
            OperationType::Execution,
            OperationAction::Succeed,
        ))
        .await
        .unwrap();
    rig.faulty.wait_for_calls(2).await;
    let queued = rig.batcher.submit(start("after")).await.unwrap();
    rig.faulty.release();
    let ack = within(Duration::from_secs(5), done).await.unwrap();
    assert_eq!(
        ack.checkpoint_token(),
        None,
        "the completion's ack carries no token"
    );
    let err = within(Duration::from_secs(5), queued).await.unwrap_err();
    let BatcherError::Closed(closed) = &err else {
        panic!("expected Closed, got {err}")
    };
    assert_eq!(closed.reason(), CloseReason::ExecutionCompleted);
    let later = rig.batcher.checkpoint(start("later")).await.unwrap_err();
    assert!(
        matches!(later, BatcherError::Closed(c) if c.reason() == CloseReason::ExecutionCompleted)
    );
    let refused = rig.batcher.shutdown().await.unwrap_err();
    assert!(
        matches!(&refused, BatcherError::Closed(c) if c.reason() == CloseReason::ExecutionCompleted),
        "an update accepted behind the completion was refused, so shutdown is no success: {refused}"
    );
    assert_eq!(rig.batcher.stats().unacknowledged, 1);
    assert_eq!(rig.batcher.stats().updates, 2);
    assert_eq!(rig.faulty.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_completion_with_nothing_left_behind_it_is_a_clean_shutdown_without_a_token() {
    let rig = rig(config());
    rig.batcher.checkpoint(start("s")).await.unwrap();
    let ack = rig
        .batcher
        .checkpoint(update(
            "exec",
            OperationType::Execution,
            OperationAction::Succeed,
        ))
        .await
        .unwrap();
    assert_eq!(ack.checkpoint_token(), None);
    rig.batcher
        .flush()
        .await
        .expect("everything accepted was acknowledged");
    let report = rig
        .batcher
        .shutdown()
        .await
        .expect("every accepted update was applied");
    assert_eq!(report.checkpoint_token, None, "no token after completion");
    assert_eq!(report.stats.unacknowledged, 0);
}

#[tokio::test(start_paused = true)]
async fn a_response_without_a_token_otherwise_means_the_token_was_revoked() {
    let rig = rig(config());
    rig.faulty.push(Fault::Respond(
        CheckpointDurableExecutionOutput::builder().build(),
    ));
    let ack = within(Duration::from_secs(5), rig.batcher.checkpoint(start("a")))
        .await
        .unwrap();
    assert_eq!(ack.checkpoint_token(), None);
    let err = rig.batcher.checkpoint(start("b")).await.unwrap_err();
    let BatcherError::Closed(closed) = &err else {
        panic!("expected Closed, got {err}")
    };
    assert_eq!(closed.reason(), CloseReason::TokenRevoked);
    assert_eq!(
        err.scope(),
        Some(FailureScope::Invocation),
        "the invocation should stop"
    );
    assert!(err.to_string().contains("revoked"), "{err}");
}
