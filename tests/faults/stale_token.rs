//! A token rotated behind the batcher's back mid-run: every caller waiting on it and every later
//! call gets an invocation failure at once, with and without the error type header.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::RTT;
use crate::support::*;
use checkpoint_batcher::emulator::{Emulator, Faults};
use checkpoint_batcher::{BatcherError, ErrorKind, FailureScope};
use tokio::time::Instant;

/// 50 callers checkpoint in a loop; after three applied checkpoints the emulator rotates the
/// token behind the batcher's back (as a re-invocation would). Run with and without the
/// `X-Amzn-ErrorType` header, so both classification paths (typed error, and status plus
/// message) are covered.
async fn stale_token_mid_run(omit_error_type_header: bool) {
    const CALLERS: usize = 50;
    let emu = Emulator::builder()
        .faults(Faults {
            latency: RTT,
            ..Faults::default()
        })
        .seed(0x57A1E)
        .omit_error_type_header(omit_error_type_header)
        .start()
        .await
        .expect("the emulator binds loopback");
    let (arn, batcher) = batcher(&emu, "stale", patient_config(0x57A1E));
    let succeeded = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for c in 0..CALLERS {
        let batcher = batcher.clone();
        let succeeded = Arc::clone(&succeeded);
        callers.push(tokio::spawn(async move {
            for n in 0.. {
                match batcher.checkpoint(start(&format!("c{c}-{n}"))).await {
                    Ok(_) => {
                        let _ = succeeded.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(error) => return (Instant::now(), error),
                }
            }
            unreachable!("the loop ends with an error")
        }));
    }
    within_named(HANG, "three applied checkpoints", async {
        while snapshot(&emu, &arn).applied_checkpoints < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let rotated_at = Instant::now();
    let fresh = emu.rotate_token(&arn).expect("the execution is running");

    let mut answers = Vec::new();
    for caller in callers {
        answers.push(
            within_named(HANG, "a waiting caller", caller)
                .await
                .expect("no panic"),
        );
    }
    let first = answers.iter().map(|(at, _)| *at).min().expect("50 callers");
    let last = answers.iter().map(|(at, _)| *at).max().expect("50 callers");
    let mut sequences = HashSet::new();
    for (_, error) in &answers {
        let BatcherError::Failed(failure) = error else {
            panic!("a stale token is a failure, got {error}")
        };
        assert_eq!(failure.kind(), ErrorKind::InvalidCheckpointToken, "{error}");
        assert_eq!(failure.scope(), FailureScope::Invocation, "{error}");
        assert_eq!(
            failure.attempts(),
            1,
            "a stale token is never retried: {error}"
        );
        let _ = sequences.insert(failure.batch_sequence());
    }
    assert_eq!(
        sequences.len(),
        1,
        "every caller gets the one latched failure"
    );
    // The call in flight at the rotation, or at worst the next one, is refused; every waiting
    // caller is answered when that refusal arrives, in the same step of the actor.
    assert!(
        first - rotated_at < 2 * RTT + 3 * RTT,
        "the first caller learns within two round trips (+ generous slack for a loaded machine): {:?}",
        first - rotated_at
    );
    assert!(
        last - first < RTT,
        "every waiting caller is answered within one round trip of the first: {:?}",
        last - first
    );

    // Later callers get the latched failure at once, without a call.
    let calls = snapshot(&emu, &arn).checkpoint_calls;
    let asked = Instant::now();
    let later = within_named(RTT, "a later caller", batcher.checkpoint(start("later")))
        .await
        .expect_err("latched");
    let later_took = asked.elapsed();
    assert!(
        later_took < RTT,
        "a later caller is answered without a round trip"
    );
    assert_eq!(later.kind(), Some(ErrorKind::InvalidCheckpointToken));
    let flushed = within_named(RTT, "flush", batcher.flush()).await;
    assert_eq!(
        flushed.expect_err("latched").kind(),
        Some(ErrorKind::InvalidCheckpointToken)
    );
    let shut = within_named(RTT, "shutdown", batcher.shutdown()).await;
    assert_eq!(
        shut.expect_err("latched").kind(),
        Some(ErrorKind::InvalidCheckpointToken)
    );

    // Nothing is retried, now or later.
    tokio::time::sleep(5 * RTT).await;
    let snap = snapshot(&emu, &arn);
    assert_eq!(snap.checkpoint_calls, calls, "no call after the latch");
    assert_eq!(
        snap.rejected_checkpoints, 1,
        "the stale token was sent once"
    );
    assert_eq!(snap.checkpoint_calls, snap.applied_checkpoints + 1);
    assert_eq!(snap.current_token.as_deref(), Some(fresh.as_str()));
    let stats = batcher.stats();
    assert_eq!((stats.retries, stats.failures), (0, 1));
    assert_eq!(
        snap.applied.len() as u64,
        succeeded.load(Ordering::SeqCst),
        "what was acknowledged is exactly what was applied"
    );
    println!(
        "stale token (header omitted: {omit_error_type_header}): {CALLERS} callers answered {:?} \
         after the rotation (first) and within {:?} of each other; later caller in {:?}; \
         {} call refused, 0 retries",
        first - rotated_at,
        last - first,
        later_took,
        snap.rejected_checkpoints,
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rotated_behind_the_batchers_back_latches_an_invocation_failure_at_once() {
    let _serial = SERIAL.lock().await;
    stale_token_mid_run(false).await;
    stale_token_mid_run(true).await;
}
