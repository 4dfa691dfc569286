//! Callers that walk away (cancellation) at each point, and at random points, never lose or
//! duplicate an update.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::*;
use checkpoint_batcher::emulator::Faults;
use checkpoint_batcher::{BatcherConfig, BatcherError};

/// Each drop point once, exactly: an acknowledgement dropped while its call is in flight, two
/// dropped while queued, a `submit` dropped while it waits for room, a `try_submit` refused,
/// and a task aborted inside `checkpoint` while it waits for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_walk_away_at_each_point_never_lose_or_duplicate_an_update() {
    let _serial = SERIAL.lock().await;
    let emu = emulator(Faults::default(), 0xCA1).await;
    // Two updates per batch and two places in the queue, so the queue fills at once.
    let (arn, faulty, batcher) = held_batcher(
        &emu,
        "walk-away",
        BatcherConfig {
            max_batch_updates: 2,
            queue_capacity: 2,
            ..patient_config(3)
        },
    );
    within_named(HANG, "setup", batcher.checkpoint(start("warm")))
        .await
        .expect("applies");
    faulty.hold();
    drop(batcher.submit(start("in-flight")).await.expect("accepted"));
    within_named(HANG, "the held call to start", faulty.wait_for_calls(2)).await;
    // The actor takes two into the next batch, the channel holds two more.
    for id in ["queued-1", "queued-2", "queued-3", "queued-4"] {
        drop(
            within_named(HANG, "room in the queue", batcher.submit(start(id)))
                .await
                .expect("accepted"),
        );
    }
    // Now full: a submit waits, and is dropped while it waits.
    let waiting = tokio::time::timeout(Duration::from_millis(50), batcher.submit(start("never-1")));
    assert!(waiting.await.is_err(), "a full queue makes submit wait");
    assert!(matches!(
        batcher.try_submit(start("never-2")),
        Err(BatcherError::QueueFull)
    ));
    let aborted = {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.checkpoint(start("never-3")).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    aborted.abort();
    assert!(aborted.await.expect_err("aborted").is_cancelled());
    faulty.release();

    let report = within_named(HANG, "shutdown drains", batcher.shutdown())
        .await
        .expect("clean");
    let snap = snapshot(&emu, &arn);
    let applied: Vec<&str> = snap.applied.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        applied,
        [
            "warm",
            "in-flight",
            "queued-1",
            "queued-2",
            "queued-3",
            "queued-4"
        ],
        "every accepted update is applied once, in order; nothing that was not accepted is"
    );
    assert_eq!(report.stats.updates, 6);
    assert_eq!(report.checkpoint_token, snap.current_token);
}

/// 300 callers, each walking away at a point drawn from a seeded generator, against an
/// emulator with jitter, throttling and lost answers and a queue small enough that `submit`
/// waits. What was accepted is applied exactly once; what was not accepted is never applied;
/// a caller cancelled inside `checkpoint` (accepted or not, it cannot know) is applied at most
/// once; `shutdown` still drains everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_walk_away_at_random_points_never_lose_or_duplicate_an_update() {
    let _serial = SERIAL.lock().await;
    const CALLERS: usize = 300;
    let emu = emulator(
        Faults {
            latency: Duration::from_millis(2),
            jitter: Duration::from_millis(8),
            throttle_rate: 0.05,
            lost_answer_rate: 0.05,
            ..Faults::default()
        },
        0xD40,
    )
    .await;
    let (arn, batcher) = batcher(
        &emu,
        "random-walk-away",
        BatcherConfig {
            max_batch_updates: 20,
            queue_capacity: 16,
            ..patient_config(0xD40)
        },
    );
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Fate {
        /// Accepted: must be applied exactly once.
        Accepted,
        /// Never queued: must not be applied.
        NotQueued,
        /// Cancelled inside `checkpoint`: at most once.
        Unknown,
    }
    let mut rng = fastrand::Rng::with_seed(0xD40);
    let mut callers = Vec::new();
    let mut modes = [0usize; 6];
    for c in 0..CALLERS {
        let id = format!("w{c}");
        let mode = rng.usize(0..6);
        modes[mode] += 1;
        let delay = Duration::from_micros(rng.u64(0..20_000));
        let batcher = batcher.clone();
        callers.push(tokio::spawn(async move {
            let fate = match mode {
                // Dropped before it was ever polled.
                0 => {
                    drop(batcher.submit(start(&id)));
                    Fate::NotQueued
                }
                // Dropped while it may be waiting for room.
                1 => match tokio::time::timeout(delay, batcher.submit(start(&id))).await {
                    Ok(ack) => {
                        drop(ack.expect("accepted"));
                        Fate::Accepted
                    }
                    Err(_) => Fate::NotQueued,
                },
                // Accepted, acknowledgement dropped at once (fire and forget).
                2 => {
                    drop(batcher.submit(start(&id)).await.expect("accepted"));
                    Fate::Accepted
                }
                // Accepted, acknowledgement dropped after a random wait: queued, in flight, or
                // already answered.
                3 => {
                    let ack = batcher.submit(start(&id)).await.expect("accepted");
                    let _ = tokio::time::timeout(delay, ack).await;
                    Fate::Accepted
                }
                // `checkpoint` cancelled at a random point.
                4 => match tokio::time::timeout(delay, batcher.checkpoint(start(&id))).await {
                    Ok(ack) => {
                        let _ = ack.expect("acknowledged");
                        Fate::Accepted
                    }
                    Err(_) => Fate::Unknown,
                },
                // Waits for its answer.
                _ => {
                    let _ = batcher.checkpoint(start(&id)).await.expect("acknowledged");
                    Fate::Accepted
                }
            };
            (id, fate)
        }));
    }
    let mut fates = Vec::new();
    for caller in callers {
        fates.push(
            within_named(HANG, "a caller", caller)
                .await
                .expect("no panic"),
        );
    }
    let report = within_named(HANG, "shutdown drains", batcher.shutdown())
        .await
        .expect("clean");
    let snap = snapshot(&emu, &arn);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for u in &snap.applied {
        *counts.entry(u.id.as_str()).or_default() += 1;
    }
    let mut tally: HashMap<String, usize> = HashMap::new();
    for (id, fate) in &fates {
        let n = counts.get(id.as_str()).copied().unwrap_or(0);
        match fate {
            Fate::Accepted => assert_eq!(n, 1, "{id} was accepted: applied exactly once"),
            Fate::NotQueued => assert_eq!(n, 0, "{id} was never queued: never applied"),
            Fate::Unknown => assert!(n <= 1, "{id}: at most once"),
        }
        *tally.entry(format!("{fate:?}/{n}")).or_default() += 1;
    }
    assert_eq!(counts.len(), snap.applied.len(), "no update applied twice");
    assert_eq!(
        report.stats.updates,
        snap.applied.len() as u64,
        "shutdown drained all"
    );
    assert_eq!(report.checkpoint_token, snap.current_token);
    assert_eq!(snap.replayed_checkpoints, snap.lost_answers);
    let mut tally: Vec<_> = tally.into_iter().collect();
    tally.sort();
    println!(
        "walk away: {CALLERS} callers, modes {modes:?}, fates (fate/times applied) {tally:?}, \
         {} lost answers replayed",
        snap.lost_answers
    );
    emu.shutdown().await;
}
