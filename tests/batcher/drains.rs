//! What `flush` and `shutdown` answer when the batcher ends during a drain, and what every
//! caller is told when the worker task itself dies: `Ok` only for what the service
//! acknowledged, never a success for an update that was refused or left unwritten.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::OperationUpdate;
use checkpoint_batcher::{
    BackendError, BatcherError, BatcherHandle, CheckpointBatcher, CloseReason, DurableBackend,
    ErrorKind, FailureScope, Fault, InMemoryBackend,
};
use tokio::task::JoinHandle;

const LIMIT: Duration = Duration::from_secs(30);

fn is_closed(error: &BatcherError, reason: CloseReason) -> bool {
    matches!(error, BatcherError::Closed(closed) if closed.reason() == reason)
}

/// Starts a `shutdown` and a `flush` on other tasks and waits until the actor has read both
/// (the shutdown closes the queue; the flush was sent before it).
async fn drain_from_other_tasks(
    batcher: &BatcherHandle,
) -> (
    JoinHandle<Result<(), BatcherError>>,
    JoinHandle<Result<checkpoint_batcher::BatcherReport, BatcherError>>,
) {
    let flush = tokio::spawn({
        let batcher = batcher.clone();
        async move { batcher.flush().await }
    });
    tokio::task::yield_now().await;
    let shutdown = tokio::spawn({
        let batcher = batcher.clone();
        async move { batcher.shutdown().await }
    });
    within(LIMIT, async {
        while batcher.is_open() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    (flush, shutdown)
}

/// Update `a` in flight, its call held; once released, it is answered without a token, and not
/// as the execution's end (a revocation).
async fn a_held_in_flight_to_be_revoked() -> (Rig, checkpoint_batcher::AckFuture) {
    let rig = rig(config());
    rig.faulty.hold();
    rig.faulty.push(Fault::Respond(
        CheckpointDurableExecutionOutput::builder().build(),
    ));
    let in_flight = rig.batcher.submit(start("a")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    (rig, in_flight)
}

#[tokio::test(start_paused = true)]
async fn a_drain_cut_short_by_a_revoked_token_is_no_success() {
    let (rig, in_flight) = a_held_in_flight_to_be_revoked().await;
    let queued = rig.batcher.submit(start("b")).await.unwrap();
    let (flush, shutdown) = drain_from_other_tasks(&rig.batcher).await;
    rig.faulty.release();

    let ack = within(LIMIT, in_flight)
        .await
        .expect("the update in flight was applied");
    assert_eq!(ack.checkpoint_token(), None, "its answer carried no token");
    let refused = within(LIMIT, queued).await.unwrap_err();
    assert!(
        is_closed(&refused, CloseReason::TokenRevoked),
        "the queued update is refused by the revocation: {refused}"
    );
    let flushed = within(LIMIT, flush).await.unwrap();
    assert!(
        matches!(&flushed, Err(e) if is_closed(e, CloseReason::TokenRevoked)),
        "flush must not answer Ok: an update accepted before it was refused ({flushed:?})"
    );
    let shut = within(LIMIT, shutdown).await.unwrap();
    let error = shut.expect_err("shutdown must not answer Ok: an accepted update was refused");
    assert!(is_closed(&error, CloseReason::TokenRevoked), "{error}");
    assert_eq!(error.scope(), Some(FailureScope::Invocation));
    let again = rig.batcher.shutdown().await.unwrap_err();
    assert!(
        is_closed(&again, CloseReason::TokenRevoked),
        "a later shutdown gets the same answer, not ShutDown: {again}"
    );
    let later = rig.batcher.submit(start("c")).await.map(drop).unwrap_err();
    assert!(
        is_closed(&later, CloseReason::TokenRevoked),
        "a later submit learns the token was revoked, which it must act on: {later}"
    );
    let stats = rig.batcher.stats();
    assert_eq!(stats.updates, 1, "what was applied stays readable");
    assert_eq!(stats.unacknowledged, 1, "and what was refused");
    assert_eq!(
        rig.faulty.calls(),
        1,
        "nothing is sent after the revocation"
    );
}

/// A flush that reached the actor while the batch it waits for was in flight, and one sent
/// after that batch's answer revoked the token, cover the same acknowledged update: both are
/// told the revocation, as the shutdown is, so that no drain invites the handler to report a
/// result.
#[tokio::test(start_paused = true)]
async fn flushes_over_a_batch_answered_with_a_revocation_agree_with_the_shutdown() {
    let (rig, ack) = a_held_in_flight_to_be_revoked().await;
    let early = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.flush().await }
    });
    // Let the flush reach the actor while the call is held.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    rig.faulty.release();
    let ack = within(LIMIT, ack).await.expect("`a` was applied");
    assert_eq!(ack.checkpoint_token(), None);
    let early = within(LIMIT, early).await.unwrap();
    let late = within(LIMIT, rig.batcher.flush()).await;
    let shut = within(LIMIT, rig.batcher.shutdown()).await.map(drop);
    for (who, answer) in [
        ("early flush", &early),
        ("late flush", &late),
        ("shutdown", &shut),
    ] {
        assert!(
            matches!(answer, Err(e) if is_closed(e, CloseReason::TokenRevoked)),
            "{who}: {answer:?}"
        );
    }
}

/// A flush that reached the actor while a refresh's call (no updates) was in flight has no
/// update of its own to wait for, but the call may still revoke the token: then it is told the
/// revocation, as every other drain is.
#[tokio::test(start_paused = true)]
async fn a_flush_during_a_refresh_that_revokes_the_token_is_told_the_revocation() {
    let rig = rig(config());
    rig.faulty.hold();
    rig.faulty.push(Fault::Respond(
        CheckpointDurableExecutionOutput::builder().build(),
    ));
    let refresh = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.refresh().await }
    });
    rig.faulty.wait_for_calls(1).await;
    let flush = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.flush().await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    rig.faulty.release();
    let refreshed = within(LIMIT, refresh).await.unwrap().unwrap();
    assert_eq!(
        refreshed.checkpoint_token(),
        None,
        "the call revoked the token"
    );
    let flushed = within(LIMIT, flush).await.unwrap();
    assert!(
        matches!(&flushed, Err(e) if is_closed(e, CloseReason::TokenRevoked)),
        "a flush over a revoking call is no success: {flushed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_drain_cut_short_by_a_latched_failure_returns_that_failure() {
    let rig = rig(config());
    rig.faulty.hold();
    rig.faulty
        .push(Fault::Error(ErrorKind::Rejected, "refused".into()));
    let in_flight = rig.batcher.submit(start("a")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let queued = rig.batcher.submit(start("b")).await.unwrap();
    let (flush, shutdown) = drain_from_other_tasks(&rig.batcher).await;
    rig.faulty.release();

    for (what, answer) in [
        (
            "the update in flight",
            within(LIMIT, in_flight).await.map(drop),
        ),
        ("the queued update", within(LIMIT, queued).await.map(drop)),
        ("flush", within(LIMIT, flush).await.unwrap()),
        ("shutdown", within(LIMIT, shutdown).await.unwrap().map(drop)),
    ] {
        let error = answer.expect_err("nothing was written");
        assert_eq!(
            error.kind(),
            Some(ErrorKind::Rejected),
            "{what} gets the failure that refused it: {error}"
        );
    }
    assert_eq!(rig.batcher.stats().unacknowledged, 2);
}

#[tokio::test(start_paused = true)]
async fn updates_still_in_the_queue_when_the_chain_ends_are_counted_before_shutdown_answers() {
    // The revocation arrives while updates wait in the channel itself (not yet taken by the
    // actor): shutdown must wait until they are drained and refused before it answers.
    let mut config = config();
    config.max_batch_updates = 1;
    let rig = rig(config);
    rig.faulty.hold();
    rig.faulty.push(Fault::Respond(
        CheckpointDurableExecutionOutput::builder().build(),
    ));
    let first = rig.batcher.submit(start("a")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let mut behind = Vec::new();
    for i in 0..20 {
        behind.push(rig.batcher.submit(start(&format!("b{i}"))).await.unwrap());
    }
    let shutdown = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.shutdown().await }
    });
    tokio::task::yield_now().await;
    rig.faulty.release();
    within(LIMIT, first).await.expect("applied");
    for ack in behind {
        assert!(within(LIMIT, ack).await.is_err(), "refused");
    }
    let error = within(LIMIT, shutdown).await.unwrap().unwrap_err();
    assert!(is_closed(&error, CloseReason::TokenRevoked), "{error}");
    assert_eq!(rig.batcher.stats().unacknowledged, 20);
}

/// Answers every checkpoint call by panicking after 10 ms, as a buggy backend might.
#[derive(Debug)]
struct Panicking;

#[async_trait]
impl DurableBackend for Panicking {
    async fn checkpoint(
        &self,
        _arn: &str,
        _token: &str,
        _updates: Vec<OperationUpdate>,
        _client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        panic!("the backend broke while the batcher was draining")
    }

    async fn get_execution_state(
        &self,
        _arn: &str,
        _token: &str,
        _marker: Option<&str>,
        _max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        panic!("not called")
    }
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_panics_during_a_shutdown_drain_is_named_gone_not_shut_down() {
    let batcher = CheckpointBatcher::spawn(Arc::new(Panicking), ARN, "t0", config()).unwrap();
    let queued = batcher.submit(start("a")).await.unwrap();
    // Read while the call is in flight: the panic comes during the shutdown's drain.
    let shutdown = tokio::spawn({
        let batcher = batcher.clone();
        async move { batcher.shutdown().await }
    });
    let error = within(LIMIT, queued).await.unwrap_err();
    assert!(
        is_closed(&error, CloseReason::WorkerGone),
        "the caller whose update was in flight: {error}"
    );
    assert_eq!(
        error.scope(),
        Some(FailureScope::Invocation),
        "an unconfirmed update fails the invocation"
    );
    let error = within(LIMIT, shutdown).await.unwrap().unwrap_err();
    assert!(
        is_closed(&error, CloseReason::WorkerGone),
        "the shutdown waiting for the drain: {error}"
    );
    for (what, answer) in [
        ("a later shutdown", batcher.shutdown().await.map(drop)),
        ("a later flush", batcher.flush().await),
        (
            "a later checkpoint",
            batcher.checkpoint(start("b")).await.map(drop),
        ),
        ("a later refresh", batcher.refresh().await.map(drop)),
    ] {
        let error = answer.unwrap_err();
        assert!(
            is_closed(&error, CloseReason::WorkerGone),
            "{what} learns the worker is gone, not that it was shut down: {error}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_aborted_worker_during_a_shutdown_drain_answers_everyone_worker_gone() {
    let memory = Arc::new(InMemoryBackend::new());
    let faulty = Arc::new(checkpoint_batcher::FaultyBackend::new(memory.clone()));
    let token = memory.current_token().unwrap();
    let (batcher, worker) = CheckpointBatcher::pair(faulty.clone(), ARN, token, config()).unwrap();
    let worker = tokio::spawn(worker);
    faulty.hold();
    let in_flight = batcher.submit(start("a")).await.unwrap();
    faulty.wait_for_calls(1).await;
    let queued = batcher.submit(start("b")).await.unwrap();
    let (flush, shutdown) = drain_from_other_tasks(&batcher).await;
    worker.abort();
    assert!(worker.await.unwrap_err().is_cancelled());

    for (what, answer) in [
        (
            "the update in flight",
            within(LIMIT, in_flight).await.map(drop),
        ),
        ("the queued update", within(LIMIT, queued).await.map(drop)),
        ("the flush", within(LIMIT, flush).await.unwrap()),
        (
            "the shutdown",
            within(LIMIT, shutdown).await.unwrap().map(drop),
        ),
        ("a later shutdown", batcher.shutdown().await.map(drop)),
        ("a later submit", batcher.submit(start("c")).await.map(drop)),
    ] {
        let error = answer.expect_err("nothing the dead worker held is confirmed");
        assert!(
            is_closed(&error, CloseReason::WorkerGone),
            "{what} is told the worker is gone: {error}"
        );
    }
}
