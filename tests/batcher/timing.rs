//! When a batch goes. Under paused time, so every span is exact.

use std::time::Duration;

use crate::support::*;
use checkpoint_batcher::{BatcherConfig, Fault};
use tokio::time::Instant;

const LATENCY: Duration = Duration::from_millis(7);

fn with_latency(rig: &Rig, calls: usize) {
    for _ in 0..calls {
        rig.faulty.push(Fault::Delay(LATENCY));
    }
}

#[tokio::test(start_paused = true)]
async fn with_a_zero_interval_a_lone_caller_waits_only_for_the_backend() {
    let rig = rig(config());
    with_latency(&rig, 3);
    for i in 0..3 {
        let started = Instant::now();
        rig.batcher
            .checkpoint(start(&format!("s{i}")))
            .await
            .unwrap();
        assert_eq!(
            started.elapsed(),
            LATENCY,
            "no linger and no polling may add latency"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn with_a_zero_interval_updates_queued_during_a_call_go_when_it_returns() {
    let rig = rig(config());
    with_latency(&rig, 2);
    let started = Instant::now();
    let first = rig.batcher.submit(start("a")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let second = rig.batcher.submit(start("b")).await.unwrap();
    let third = rig.batcher.submit(start("c")).await.unwrap();
    first.await.unwrap();
    assert_eq!(started.elapsed(), LATENCY);
    let (b, c) = (second.await.unwrap(), third.await.unwrap());
    assert_eq!(
        started.elapsed(),
        LATENCY * 2,
        "the next call starts as the previous returns"
    );
    assert!(b.same_batch(&c), "what queued meanwhile goes together");
    let log = rig.faulty.call_log();
    assert_eq!(log[1].started - log[0].started, LATENCY);
}

#[tokio::test(start_paused = true)]
async fn with_a_flush_interval_the_batch_goes_at_the_earliest_deadline() {
    let rig = rig(BatcherConfig {
        flush_interval: Duration::from_millis(20),
        ..config()
    });
    with_latency(&rig, 1);
    let started = Instant::now();
    let a = rig.batcher.submit(start("a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = rig.batcher.submit(start("b")).await.unwrap();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(
        a.same_batch(&b),
        "an update arriving within the interval joins the batch"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(20) + LATENCY);
    assert_eq!(
        rig.faulty.call_log()[0].started - started,
        Duration::from_millis(20)
    );
}

#[tokio::test(start_paused = true)]
async fn checkpoint_within_sets_that_updates_own_deadline() {
    let rig = rig(BatcherConfig {
        flush_interval: Duration::from_millis(100),
        ..config()
    });
    with_latency(&rig, 2);
    let started = Instant::now();
    let lazy = rig.batcher.submit(start("lazy")).await.unwrap();
    rig.batcher
        .checkpoint_within(start("eager"), Duration::from_millis(5))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(5) + LATENCY);
    let lazy = lazy.await.unwrap();
    assert_eq!(
        lazy.batch_sequence(),
        1,
        "the earlier update rides with the eager one: order is kept"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_at_once_whatever_the_interval() {
    let rig = rig(BatcherConfig {
        flush_interval: Duration::from_secs(1),
        max_batch_updates: 10,
        ..config()
    });
    let started = Instant::now();
    let mut acks = Vec::new();
    for i in 0..10 {
        acks.push(rig.batcher.submit(start(&format!("s{i}"))).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "a full batch must not wait for the interval"
    );
}

#[tokio::test(start_paused = true)]
async fn flush_sends_at_once_and_returns_when_earlier_updates_are_acknowledged() {
    let rig = rig(BatcherConfig {
        flush_interval: Duration::from_secs(1),
        ..config()
    });
    with_latency(&rig, 1);
    let started = Instant::now();
    let a = rig.batcher.submit(start("a")).await.unwrap();
    let b = rig.batcher.submit(start("b")).await.unwrap();
    rig.batcher.flush().await.unwrap();
    assert_eq!(started.elapsed(), LATENCY);
    assert_eq!(
        rig.memory.applied().len(),
        2,
        "flush returns once everything before it is durable"
    );
    a.await.unwrap();
    b.await.unwrap();
    let started = Instant::now();
    rig.batcher.flush().await.unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "with nothing queued, flush returns at once"
    );
    assert_eq!(rig.faulty.calls(), 1, "an empty flush sends nothing");
}

#[tokio::test(start_paused = true)]
async fn an_idle_batcher_makes_no_calls() {
    let rig = rig(BatcherConfig {
        flush_interval: Duration::from_millis(10),
        ..config()
    });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        rig.faulty.calls(),
        0,
        "no idle polling: nothing queued, nothing sent"
    );
    rig.batcher.checkpoint(start("a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(rig.faulty.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_max_delay_of_duration_max_waits_at_most_an_hour() {
    let rig = rig(config());
    let started = Instant::now();
    rig.batcher
        .checkpoint_within(start("whenever"), Duration::MAX)
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(3600));
}

/// Counts how often the batcher's task is polled.
struct Polls<F> {
    inner: std::pin::Pin<Box<F>>,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<F: std::future::Future> std::future::Future for Polls<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.as_mut().poll(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_batcher_is_not_woken_at_all() {
    let memory = std::sync::Arc::new(checkpoint_batcher::InMemoryBackend::new());
    let token = memory.current_token().unwrap();
    let config = BatcherConfig {
        flush_interval: Duration::from_millis(10),
        ..config()
    };
    let (batcher, worker) =
        checkpoint_batcher::CheckpointBatcher::pair(memory.clone(), ARN, token, config).unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker = tokio::spawn(Polls {
        inner: Box::pin(worker),
        count: count.clone(),
    });
    batcher.checkpoint(start("a")).await.unwrap();
    let after_work = count.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        after_work,
        "an idle batcher sleeps until something arrives: no polling, no timer ticks"
    );
    drop(batcher);
    within(Duration::from_secs(5), worker).await.unwrap();
}
