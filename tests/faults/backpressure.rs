//! Backpressure: thousands of submitters against a small queue wait rather than fail, the
//! updates held stay bounded, and nothing is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::support::*;
use checkpoint_batcher::emulator::Faults;
use checkpoint_batcher::{BatcherConfig, BatcherError};

/// 10,000 submitters against a queue of 64, at 10 ms a round trip. `submit` waits rather than
/// fails; `try_submit` answers `QueueFull` while they wait; the updates the batcher holds
/// (accepted but not yet acknowledged) never exceed the queue plus two batches; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_submitters_against_a_queue_of_64_wait_and_nothing_is_lost() {
    let _serial = SERIAL.lock().await;
    const SUBMITTERS: usize = 10_000;
    const CAPACITY: usize = 64;
    let emu = emulator(
        Faults {
            latency: Duration::from_millis(10),
            ..Faults::default()
        },
        0xB9,
    )
    .await;
    let (arn, batcher) = batcher(
        &emu,
        "backpressure",
        BatcherConfig {
            queue_capacity: CAPACITY,
            ..patient_config(0xB9)
        },
    );
    let accepted = Arc::new(AtomicU64::new(0));
    let rss_before = rss_kib();
    let mut submitters = Vec::with_capacity(SUBMITTERS);
    for i in 0..SUBMITTERS {
        let batcher = batcher.clone();
        let accepted = Arc::clone(&accepted);
        submitters.push(tokio::spawn(async move {
            let ack = batcher.submit(start(&format!("b{i}"))).await?;
            let _ = accepted.fetch_add(1, Ordering::SeqCst);
            ack.await.map(|_| ())
        }));
    }
    // While they wait: sample what the batcher holds, and knock with try_submit.
    let mut held_max = 0u64;
    let mut refused = Vec::new();
    let mut slipped_in = Vec::new();
    let mut knocks = 0;
    within_named(HANG, "the submitters", async {
        while accepted.load(Ordering::SeqCst) < SUBMITTERS as u64 {
            let held = accepted
                .load(Ordering::SeqCst)
                .saturating_sub(batcher.stats().updates);
            held_max = held_max.max(held);
            if knocks < 200 {
                let id = format!("knock{knocks}");
                match batcher.try_submit(start(&id)) {
                    Err(BatcherError::QueueFull) => refused.push(id),
                    Ok(ack) => slipped_in.push((id, ack)),
                    Err(other) => panic!("try_submit on a full queue: {other}"),
                }
                knocks += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    for submitter in submitters {
        within_named(HANG, "a submitter", submitter)
            .await
            .expect("no panic")
            .expect("submit waits for room and is acknowledged; it never fails");
    }
    for (_, ack) in slipped_in.iter_mut() {
        within_named(HANG, "a try_submit that found room", ack)
            .await
            .expect("acknowledged");
    }
    let rss_after = rss_kib();
    let report = within_named(HANG, "shutdown", batcher.shutdown())
        .await
        .expect("clean");
    let snap = snapshot(&emu, &arn);
    assert!(
        refused.len() > 100,
        "try_submit answers QueueFull while submitters wait ({} of {knocks})",
        refused.len()
    );
    let bound = (CAPACITY + 2 * 250) as u64;
    assert!(
        held_max <= bound,
        "the batcher holds at most the queue plus the batch in flight and the next: {held_max} > {bound}"
    );
    assert!(
        held_max >= CAPACITY as u64,
        "the queue did fill: {held_max}"
    );
    let total = SUBMITTERS + slipped_in.len();
    assert_eq!(
        snap.applied.len(),
        total,
        "every accepted update applied once"
    );
    assert_eq!(report.stats.updates, total as u64);
    for id in &refused {
        assert_eq!(
            applied_count(&snap, id),
            0,
            "{id} was refused: never applied"
        );
    }
    assert_eq!(report.stats.largest_batch, 250);
    println!(
        "backpressure: {SUBMITTERS} submitters, queue {CAPACITY}: at most {held_max} updates held \
         by the batcher (bound {bound}); try_submit refused {} of {knocks}; {} batches (mean \
         {:.1}); RSS {rss_before:?} -> {rss_after:?} KiB",
        refused.len(),
        report.stats.batches,
        report.stats.mean_batch(),
    );
    emu.shutdown().await;
}

/// The process's resident set, from `/proc/self/status` (Linux), for the report only: the
/// test harness shares the process, so it is no assertion.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
