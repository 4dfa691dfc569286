//! `refresh` carries no update, so it does not wait behind updates: it overtakes a full queue
//! and goes with the next call.

use std::time::Duration;

use crate::support::*;
use checkpoint_batcher::{BatcherConfig, BatcherError, CloseReason};

#[tokio::test(start_paused = true)]
async fn a_refresh_behind_a_full_queue_goes_with_the_next_call() {
    let config = config();
    let capacity = config.queue_capacity;
    let rig = rig(config);
    rig.faulty.hold();
    let mut acks = vec![rig.batcher.submit(start("first")).await.unwrap()];
    rig.faulty.wait_for_calls(1).await;
    // The call is held; the batch behind it fills, then the queue.
    let mut i = 0;
    while let Ok(ack) = rig.batcher.try_submit(start(&format!("s{i}"))) {
        acks.push(ack);
        i += 1;
        tokio::task::yield_now().await;
    }
    assert!(
        i >= capacity,
        "the queue is full ({i} accepted, capacity {capacity})"
    );
    let refresh = tokio::spawn({
        let batcher = rig.batcher.clone();
        async move { batcher.refresh().await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    rig.faulty.release();
    let ack = within(Duration::from_secs(60), refresh)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ack.batch_sequence(),
        2,
        "the refresh went with the call right after the one in flight, not behind {i} updates"
    );
    for ack in acks {
        within(Duration::from_secs(60), ack).await.unwrap();
    }
    rig.batcher.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_refresh_after_shutdown_is_refused_as_shut_down() {
    let rig = rig(BatcherConfig { ..config() });
    rig.batcher.shutdown().await.unwrap();
    let refused = rig.batcher.refresh().await.unwrap_err();
    assert!(
        matches!(&refused, BatcherError::Closed(closed) if closed.reason() == CloseReason::ShutDown),
        "{refused}"
    );
}
