//! Retries with backoff, honouring Retry-After, with the same token, updates and
//! client token.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::*;
use checkpoint_batcher::{
    BatcherConfig, BatcherError, ErrorKind, FailureScope, Fault, RetryPolicy,
};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_no_sooner_than_retry_after() {
    let rig = rig(config());
    rig.faulty
        .push(Fault::Throttle(Some(Duration::from_millis(1500))));
    let started = Instant::now();
    within(Duration::from_secs(10), rig.batcher.checkpoint(start("a")))
        .await
        .unwrap();
    let log = rig.faulty.call_log();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1].started - log[0].started,
        Duration::from_millis(1500),
        "retry-after is honoured"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(1500));
    assert_eq!(rig.batcher.stats().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_max_backoff_is_honoured_only_up_to_it() {
    let rig = rig(config());
    rig.faulty
        .push(Fault::Throttle(Some(Duration::from_secs(3600))));
    within(Duration::from_secs(10), rig.batcher.checkpoint(start("a")))
        .await
        .unwrap();
    let log = rig.faulty.call_log();
    assert_eq!(
        log[1].started - log[0].started,
        config().retry.max_backoff,
        "an hour's Retry-After waits max_backoff, never the hour"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_with_full_jitter_under_a_doubling_ceiling() {
    let policy = RetryPolicy {
        max_attempts: 6,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        jitter_seed: Some(42),
        ..RetryPolicy::default()
    };
    let rig = rig(BatcherConfig {
        retry: policy,
        ..BatcherConfig::default()
    });
    for _ in 0..5 {
        rig.faulty.push(Fault::Transient);
    }
    within(Duration::from_secs(10), rig.batcher.checkpoint(start("a")))
        .await
        .unwrap();
    let log = rig.faulty.call_log();
    assert_eq!(log.len(), 6);
    let ceilings = [100, 200, 400, 400, 400];
    let gaps: Vec<Duration> = log
        .windows(2)
        .map(|w| w[1].started - w[0].started)
        .collect();
    for (gap, ceiling) in gaps.iter().zip(ceilings) {
        assert!(
            *gap <= Duration::from_millis(ceiling),
            "gap {gap:?} exceeds ceiling {ceiling} ms"
        );
    }
    assert!(
        gaps.iter().collect::<HashSet<_>>().len() > 1,
        "full jitter varies the delays: {gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn every_retry_resends_the_same_token_updates_and_client_token() {
    let rig = rig(config());
    rig.faulty.hold();
    let first = rig.batcher.submit(start("first")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let a = rig.batcher.submit(start("a")).await.unwrap();
    let b = rig.batcher.submit(start("b")).await.unwrap();
    rig.faulty.push(Fault::Transient);
    rig.faulty.push(Fault::Throttle(None));
    rig.faulty.release();
    for ack in [first, a, b] {
        within(Duration::from_secs(10), ack).await.unwrap();
    }
    let log = rig.faulty.call_log();
    assert_eq!(log.len(), 4);
    for retry in &log[2..] {
        assert_eq!(retry.checkpoint_token, log[1].checkpoint_token);
        assert_eq!(retry.client_token, log[1].client_token);
        assert_eq!(retry.updates, log[1].updates);
    }
}

#[tokio::test(start_paused = true)]
async fn an_applied_call_whose_answer_was_lost_is_not_applied_twice() {
    let rig = rig(config());
    rig.faulty.push(Fault::LostAnswer);
    rig.faulty.push(Fault::LostAnswer);
    let ack = within(Duration::from_secs(10), rig.batcher.checkpoint(start("a")))
        .await
        .unwrap();
    assert_eq!(rig.faulty.calls(), 3);
    assert_eq!(
        ids(&rig.memory.applied()),
        ["a"],
        "the same client token deduplicates the retry"
    );
    assert_eq!(
        ack.checkpoint_token(),
        rig.memory.current_token().as_deref()
    );
}

#[tokio::test(start_paused = true)]
async fn every_batch_gets_a_fresh_printable_client_token_of_at_most_64_characters() {
    let rig = rig(config());
    for i in 0..20 {
        rig.batcher
            .checkpoint(start(&format!("s{i}")))
            .await
            .unwrap();
    }
    rig.batcher.refresh().await.unwrap();
    let tokens: Vec<String> = rig
        .faulty
        .call_log()
        .into_iter()
        .map(|c| c.client_token)
        .collect();
    assert_eq!(
        tokens.iter().collect::<HashSet<_>>().len(),
        21,
        "one client token per batch"
    );
    for token in &tokens {
        assert!(
            (1..=64).contains(&token.len()),
            "client token length: {token}"
        );
        assert!(
            token.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "printable ASCII: {token}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_hangs_is_abandoned_after_the_attempt_timeout_and_retried() {
    let mut config = config();
    config.retry.attempt_timeout = Duration::from_secs(2);
    let rig = rig(config);
    rig.faulty.push(Fault::Hang);
    let started = Instant::now();
    within(Duration::from_secs(10), rig.batcher.checkpoint(start("a")))
        .await
        .unwrap();
    let log = rig.faulty.call_log();
    assert_eq!(log.len(), 2);
    assert!(log[1].started - log[0].started >= Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn retries_stop_after_max_attempts_with_an_invocation_level_failure() {
    let mut config = config();
    config.retry.max_attempts = 4;
    let rig = rig(config);
    rig.faulty.fail_after(0, ErrorKind::Throttled);
    let err = within(Duration::from_secs(60), rig.batcher.checkpoint(start("a")))
        .await
        .unwrap_err();
    let BatcherError::Failed(failure) = &err else {
        panic!("expected a failure, got {err}")
    };
    assert_eq!(failure.attempts(), 4);
    assert_eq!(failure.kind(), ErrorKind::Throttled);
    assert_eq!(
        err.scope(),
        Some(FailureScope::Invocation),
        "persistent throttling fails the invocation"
    );
    assert_eq!(rig.faulty.calls(), 4);
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn errors_that_are_not_throttling_or_transient_are_never_retried() {
    for kind in [
        ErrorKind::Rejected,
        ErrorKind::InvalidCheckpointToken,
        ErrorKind::Kms,
    ] {
        let rig = rig(config());
        rig.faulty.push(Fault::Error(kind, "no".into()));
        let err = within(Duration::from_secs(10), rig.batcher.checkpoint(start("a")))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Some(kind));
        assert_eq!(rig.faulty.calls(), 1, "{kind} must not be retried");
    }
}
