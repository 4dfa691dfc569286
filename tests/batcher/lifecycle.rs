//! Refresh, flush, shutdown, dropped callers, dropped workers and backpressure.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use checkpoint_batcher::{
    AckFuture, BatcherConfig, BatcherError, BatcherHandle, CheckpointBatcher, CloseReason,
    FaultyBackend, InMemoryBackend,
};

#[test]
fn the_handle_and_its_futures_can_cross_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync::<BatcherHandle>();
    send::<AckFuture>();
    send_sync::<BatcherError>();
}

#[tokio::test(start_paused = true)]
async fn concurrent_refreshes_share_one_empty_call() {
    let rig = rig(config());
    let (a, b, c) = tokio::join!(
        rig.batcher.refresh(),
        rig.batcher.refresh(),
        rig.batcher.refresh()
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert!(
        a.same_batch(&b) && b.same_batch(&c),
        "concurrent refreshes share one call"
    );
    assert_eq!(a.position(), None);
    let log = rig.faulty.call_log();
    assert_eq!(log.len(), 1);
    assert!(
        log[0].updates.is_empty(),
        "a refresh is an empty checkpoint"
    );
    assert_eq!(
        a.checkpoint_token(),
        rig.memory.current_token().as_deref(),
        "it rotates the token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_rides_along_with_the_next_batch() {
    let rig = rig(BatcherConfig {
        flush_interval: Duration::from_secs(1),
        ..config()
    });
    rig.faulty.hold();
    let first = rig.batcher.submit(start("first")).await.unwrap();
    // A flush sends the first batch despite the interval; nobody waits for it.
    drop(tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.flush().await }
    }));
    rig.faulty.wait_for_calls(1).await;
    let update = rig.batcher.submit(start("second")).await.unwrap();
    let refresh = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.refresh().await }
    });
    tokio::task::yield_now().await;
    rig.faulty.release();
    within(Duration::from_secs(5), first).await.unwrap();
    let update = within(Duration::from_secs(5), update).await.unwrap();
    let refresh = within(Duration::from_secs(5), refresh)
        .await
        .unwrap()
        .unwrap();
    assert!(
        refresh.same_batch(&update),
        "the refresh joins the batch that goes next"
    );
    assert_eq!(rig.faulty.calls(), 2, "no separate empty call");
    assert!(
        tokio::time::Instant::now() - rig.faulty.call_log()[1].started < Duration::from_secs(1),
        "a refresh does not wait for the flush interval"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_writes_everything_queued_and_reports_the_last_token() {
    let rig = rig(BatcherConfig {
        flush_interval: Duration::from_secs(3600),
        ..config()
    });
    let mut acks = Vec::new();
    for i in 0..600 {
        acks.push(rig.batcher.submit(start(&format!("s{i}"))).await.unwrap());
    }
    let report = within(Duration::from_secs(5), rig.batcher.shutdown())
        .await
        .unwrap();
    assert_eq!(rig.memory.applied().len(), 600, "shutdown drains the queue");
    assert_eq!(report.checkpoint_token, rig.memory.current_token());
    assert_eq!(report.stats.updates, 600);
    assert_eq!(report.stats.batches, 3);
    assert_eq!(report.stats.largest_batch, 250);
    for ack in acks {
        ack.await.unwrap();
    }
    let err = rig.batcher.checkpoint(start("late")).await.unwrap_err();
    assert!(matches!(err, BatcherError::Closed(c) if c.reason() == CloseReason::ShutDown));
    assert!(!rig.batcher.is_open());
    assert_eq!(
        rig.batcher.shutdown().await.unwrap(),
        report,
        "a second shutdown reports again"
    );
}

#[tokio::test(start_paused = true)]
async fn when_every_handle_is_dropped_the_actor_writes_what_is_queued_and_exits() {
    let memory = Arc::new(InMemoryBackend::new());
    let token = memory.current_token().unwrap();
    let config = BatcherConfig {
        flush_interval: Duration::from_secs(3600),
        ..config()
    };
    let (handle, worker) = CheckpointBatcher::pair(memory.clone(), ARN, token, config).unwrap();
    let worker = tokio::spawn(worker);
    let ack = handle.submit(start("a")).await.unwrap();
    drop(ack);
    let _second = handle.submit(start("b")).await.unwrap();
    drop(handle);
    within(Duration::from_secs(5), worker).await.unwrap();
    assert_eq!(ids(&memory.applied()), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_walks_away_still_gets_its_update_written() {
    let rig = rig(config());
    rig.faulty.hold();
    let batcher = rig.batcher.clone();
    let caller = tokio::spawn(async move { batcher.checkpoint(start("walked-away")).await });
    rig.faulty.wait_for_calls(1).await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    let fire_and_forget = rig.batcher.submit(start("forgotten")).await.unwrap();
    drop(fire_and_forget);
    rig.faulty.release();
    rig.batcher.flush().await.unwrap();
    assert_eq!(ids(&rig.memory.applied()), ["walked-away", "forgotten"]);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_worker_answers_callers_with_closed() {
    let memory = Arc::new(InMemoryBackend::new());
    let faulty = Arc::new(FaultyBackend::new(memory.clone()));
    faulty.hold();
    let token = memory.current_token().unwrap();
    let (handle, worker) = CheckpointBatcher::pair(faulty.clone(), ARN, token, config()).unwrap();
    let worker = tokio::spawn(worker);
    let pending = handle.submit(start("a")).await.unwrap();
    faulty.wait_for_calls(1).await;
    worker.abort();
    let err = within(Duration::from_secs(5), pending).await.unwrap_err();
    assert!(
        matches!(&err, BatcherError::Closed(c) if c.reason() == CloseReason::WorkerGone),
        "{err}"
    );
    let err = handle.checkpoint(start("b")).await.unwrap_err();
    assert!(
        matches!(&err, BatcherError::Closed(c) if c.reason() == CloseReason::WorkerGone),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_try_submit_and_makes_submit_wait() {
    let rig = rig(BatcherConfig {
        max_batch_updates: 1,
        queue_capacity: 2,
        ..config()
    });
    rig.faulty.hold();
    let mut acks = vec![rig.batcher.try_submit(start("in-flight")).unwrap()];
    rig.faulty.wait_for_calls(1).await;
    acks.push(rig.batcher.try_submit(start("next-batch")).unwrap());
    tokio::time::sleep(Duration::from_millis(1)).await;
    acks.push(rig.batcher.try_submit(start("queued1")).unwrap());
    acks.push(rig.batcher.try_submit(start("queued2")).unwrap());
    assert!(matches!(
        rig.batcher.try_submit(start("refused")),
        Err(BatcherError::QueueFull)
    ));
    let waiting = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.submit(start("waited")).await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!waiting.is_finished(), "submit waits for room");
    rig.faulty.release();
    acks.push(
        within(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap(),
    );
    for ack in acks {
        within(Duration::from_secs(5), ack).await.unwrap();
    }
    assert_eq!(
        ids(&rig.memory.applied()),
        ["in-flight", "next-batch", "queued1", "queued2", "waited"],
        "nothing refused was written, nothing accepted was lost"
    );
}

#[tokio::test(start_paused = true)]
async fn statistics_count_updates_batches_bytes_and_retries() {
    let rig = rig(config());
    rig.faulty.push(checkpoint_batcher::Fault::Transient);
    rig.batcher.checkpoint(start("a")).await.unwrap();
    rig.batcher.checkpoint(start("b")).await.unwrap();
    let stats = rig.batcher.stats();
    assert_eq!(stats.updates, 2);
    assert_eq!(stats.batches, 2);
    assert_eq!(stats.retries, 1);
    assert_eq!(stats.failures, 0);
    assert_eq!(stats.largest_batch, 1);
    assert!((stats.mean_batch() - 1.0).abs() < f64::EPSILON);
    assert_eq!(
        stats.bytes,
        rig.memory.bytes(),
        "bytes are the request bodies as sent"
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_shutdown_during_the_drain_waits_for_the_same_report() {
    let rig = rig(config());
    rig.faulty.hold();
    let ack = rig.batcher.submit(start("draining")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let first = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(
        !rig.batcher.is_open(),
        "the first shutdown closed the queue"
    );
    let second = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(
        !second.is_finished(),
        "the second shutdown waits for the drain"
    );
    rig.faulty.release();
    let first = within(Duration::from_secs(5), first)
        .await
        .unwrap()
        .unwrap();
    let second = within(Duration::from_secs(5), second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(first.stats.updates, 1);
    within(Duration::from_secs(5), ack).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_second_shutdown_during_a_drain_that_fails_gets_the_failure() {
    let rig = rig(config());
    rig.faulty.hold();
    rig.faulty.push(checkpoint_batcher::Fault::Error(
        checkpoint_batcher::ErrorKind::Rejected,
        "refused".into(),
    ));
    let ack = rig.batcher.submit(start("doomed")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let first = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    let second = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    rig.faulty.release();
    for shutdown in [first, second] {
        let err = within(Duration::from_secs(5), shutdown)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, BatcherError::Failed(_)),
            "both shutdowns report the failure: {err}"
        );
    }
    assert!(within(Duration::from_secs(5), ack).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_flush_during_a_shutdown_drain_waits_for_the_drain() {
    let rig = rig(config());
    rig.faulty.hold();
    let ack = rig.batcher.submit(start("a")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let shutdown = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    let flush = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.flush().await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(
        !flush.is_finished(),
        "the flush waits: its update is still being written"
    );
    rig.faulty.release();
    within(Duration::from_secs(5), flush)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rig.memory.applied().len(),
        1,
        "flush returned once the update was durable"
    );
    within(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    within(Duration::from_secs(5), ack).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn client_tokens_differ_between_batchers_even_with_the_same_jitter_seed() {
    let first = rig(config());
    let second = rig(config());
    first.batcher.checkpoint(start("a")).await.unwrap();
    second.batcher.checkpoint(start("a")).await.unwrap();
    let token = |r: &Rig| r.faulty.call_log()[0].client_token.clone();
    assert_ne!(
        token(&first),
        token(&second),
        "a re-invocation must never replay an earlier batcher's client token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_is_served_while_another_task_flushes_in_a_tight_loop() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let rig = rig(config());
    let flushes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = tokio::spawn({
        let (batcher, flushes, stop) = (rig.batcher.clone(), flushes.clone(), stop.clone());
        async move {
            // Bounded, so that a starved refresh fails the test instead of hanging it.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                batcher
                    .flush()
                    .await
                    .expect("nothing to flush, nothing fails");
                flushes.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    tokio::task::yield_now().await;
    let ack = within(Duration::from_secs(5), rig.batcher.refresh())
        .await
        .expect("the refresh is answered");
    let seen = flushes.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    flusher.await.unwrap();
    assert!(ack.checkpoint_token().is_some());
    assert!(
        seen < 500,
        "a refresh must be served within a few hundred flushes of a busy neighbour, not after \
         it gives up: {seen} flushes went first"
    );
}
