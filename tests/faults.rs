//! The fault campaign (issue 6): what the batcher promises when the service throttles, fails,
//! answers late, loses answers or revokes the token, and when callers send nonsense or walk
//! away. Every scenario runs the real `aws-sdk-lambda` client (`RealBackend`) against the
//! emulator over loopback, with seeded faults, and every wait is bounded so that a hang fails
//! the test instead of blocking CI.
//!
//! Where a scenario needs an exact interleaving ("queued while the call is in flight"), it
//! wraps `RealBackend` in `FaultyBackend` and holds the call at its start; the call itself
//! still goes over HTTP.
//!
//! The scenarios run one at a time (`support::SERIAL`): each measures real time on two cores.
//! The README's "Guarantees" section lists the figure each one checks.
#![cfg(feature = "emulator")]

#[path = "faults/support.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_lambda::types::{ErrorObject, OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::emulator::{Emulator, Faults};
use checkpoint_batcher::{
    AckFuture, BatcherConfig, BatcherError, CheckpointBatcher, CloseReason, ErrorKind,
    FailureScope, Fault, FaultyBackend,
};
use support::*;
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------
// 1. Soak under faults.

/// 500 tasks × 200 updates (100 steps, each a START submitted without waiting and a SUCCEED
/// awaited) through HTTP with 10 % throttling, 5 % 5xx, 5 % answers lost after the commit
/// (the connection is dropped) and 0–20 ms of jitter per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_under_faults_applies_every_update_once_in_order_and_answers_every_caller() {
    let _serial = SERIAL.lock().await;
    const TASKS: usize = 500;
    const STEPS: usize = 100;
    const UPDATES: usize = TASKS * STEPS * 2;
    let emu = emulator(
        Faults {
            jitter: Duration::from_millis(20),
            throttle_rate: 0.10,
            server_error_rate: 0.05,
            lost_answer_rate: 0.05,
            drop_connection_on_lost_answer: true,
            ..Faults::default()
        },
        0x50A4,
    )
    .await;
    let (arn, batcher) = batcher(&emu, "soak", config(0x50A4));
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(TASKS);
    for t in 0..TASKS {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move {
            let mut answered = 0usize;
            let mut last_token = None;
            for s in 0..STEPS {
                let id = format!("t{t}-s{s}");
                let started = batcher.submit(start(&id)).await?;
                let done = batcher.checkpoint(succeed(&id, "\"ok\"")).await?;
                let started = started.await?;
                assert!(
                    started.batch_sequence() <= done.batch_sequence(),
                    "a task's START is acknowledged no later than its SUCCEED"
                );
                answered += 2;
                last_token = done.checkpoint_token().map(str::to_owned);
            }
            Ok::<_, BatcherError>((answered, last_token))
        }));
    }
    let mut answered = 0;
    for task in tasks {
        let (n, _) = within(HANG * 4, "a soak task", task)
            .await
            .expect("a soak task does not panic")
            .expect("no caller gets an error: the faults are all retryable");
        answered += n;
    }
    let elapsed = began.elapsed();
    assert_eq!(answered, UPDATES, "every caller is answered");
    let report = within(HANG, "shutdown", batcher.shutdown())
        .await
        .expect("the drain succeeds");
    let stats = report.stats;
    let snap = snapshot(&emu, &arn);

    // Exactly once, in order per task, against the emulator's history.
    assert_eq!(
        snap.applied.len(),
        UPDATES,
        "every update applied exactly once"
    );
    let mut per_task: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for u in &snap.applied {
        let task = u.id.split('-').next().expect("ids are t<n>-s<n>");
        per_task
            .entry(task)
            .or_default()
            .push((u.id.as_str(), u.action.as_str()));
    }
    for t in 0..TASKS {
        let expected: Vec<(String, &str)> = (0..STEPS)
            .flat_map(|s| {
                let id = format!("t{t}-s{s}");
                [(id.clone(), "START"), (id, "SUCCEED")]
            })
            .collect();
        let got: Vec<(String, &str)> = per_task[format!("t{t}").as_str()]
            .iter()
            .map(|(id, action)| ((*id).to_owned(), *action))
            .collect();
        assert_eq!(
            got, expected,
            "task {t}: its updates applied once each, in order"
        );
    }
    for op in snap.operations.iter().filter(|op| op.op_type == "STEP") {
        assert_eq!(op.history, ["START", "SUCCEED"], "{}: history", op.id);
        assert_eq!(op.status, "SUCCEEDED");
    }

    // One client token per batch, the same on all its retries; batches within the limits.
    let mut per_checkpoint: BTreeMap<u64, (usize, HashSet<&str>)> = BTreeMap::new();
    for u in &snap.applied {
        let entry = per_checkpoint.entry(u.checkpoint).or_default();
        entry.0 += 1;
        let _ = entry.1.insert(u.client_token.as_deref().unwrap_or(""));
    }
    let client_tokens: HashSet<&str> = per_checkpoint
        .values()
        .flat_map(|(_, tokens)| tokens.iter().copied())
        .collect();
    assert!(
        per_checkpoint
            .values()
            .all(|(n, t)| *n <= 250 && t.len() == 1)
    );
    assert_eq!(
        client_tokens.len(),
        per_checkpoint.len(),
        "a fresh client token per applied checkpoint"
    );

    // Retries consistent: every attempt reached the emulator, every batch was applied once,
    // and every lost answer was followed by exactly one replay that got through.
    assert_eq!(stats.updates, UPDATES as u64);
    assert_eq!(stats.failures, 0);
    assert_eq!(
        stats.batches, snap.applied_checkpoints,
        "each batch applied exactly once"
    );
    assert_eq!(
        stats.batches + stats.retries,
        snap.checkpoint_calls,
        "every attempt the batcher counts reached the service, and no other"
    );
    assert_eq!(snap.rejected_checkpoints, 0, "no retry was refused");
    assert!(
        snap.lost_answers > 0 && snap.faulted_checkpoints > 0,
        "faults were injected"
    );
    assert_eq!(
        snap.replayed_checkpoints, snap.lost_answers,
        "each lost answer was recovered by a replay of the same request, never re-applied"
    );
    // The final token is the service's.
    assert_eq!(report.checkpoint_token, snap.current_token);
    println!(
        "soak: {UPDATES} updates in {elapsed:?}; {} batches (mean {:.1}, largest {}), {} retries, \
         {} calls: {} faulted (429/500), {} answers lost, {} replays",
        stats.batches,
        stats.mean_batch(),
        stats.largest_batch,
        stats.retries,
        snap.checkpoint_calls,
        snap.faulted_checkpoints,
        snap.lost_answers,
        snap.replayed_checkpoints,
    );
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 2. A stale token mid-run.

/// The round trip the stale-token scenario runs at: fixed, so "within one round trip" means
/// something.
const RTT: Duration = Duration::from_millis(100);

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
    let (arn, batcher) = batcher(&emu, "stale", config(0x57A1E));
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
    within(HANG, "three applied checkpoints", async {
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
            within(HANG, "a waiting caller", caller)
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
    let later = within(RTT, "a later caller", batcher.checkpoint(start("later")))
        .await
        .expect_err("latched");
    let later_took = asked.elapsed();
    assert!(
        later_took < RTT,
        "a later caller is answered without a round trip"
    );
    assert_eq!(later.kind(), Some(ErrorKind::InvalidCheckpointToken));
    let flushed = within(RTT, "flush", batcher.flush()).await;
    assert_eq!(
        flushed.expect_err("latched").kind(),
        Some(ErrorKind::InvalidCheckpointToken)
    );
    let shut = within(RTT, "shutdown", batcher.shutdown()).await;
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

// ---------------------------------------------------------------------------------------
// 3. A rejected request.

/// A batcher whose calls can be held at their start (the call itself goes over HTTP).
fn held_batcher(
    emu: &Emulator,
    name: &str,
    config: BatcherConfig,
) -> (
    String,
    Arc<FaultyBackend>,
    checkpoint_batcher::BatcherHandle,
) {
    let (arn, token) = emu.start_execution(name);
    let faulty = Arc::new(FaultyBackend::new(real(emu)));
    let handle = CheckpointBatcher::spawn(faulty.clone(), arn.clone(), token, config)
        .expect("a valid configuration");
    (arn, faulty, handle)
}

/// Updates that pass every local check but break a rule of one request (docs/PROTOCOL.md,
/// "Request rules"), so the service refuses the whole request with a 400 that is not about the
/// token.
fn rule_breakers(exec_id: &str) -> Vec<(&'static str, OperationUpdate)> {
    let with_parent = OperationUpdate::builder()
        .id("orphan")
        .parent_id("no-such-context")
        .r#type(OperationType::Step)
        .action(OperationAction::Start)
        .build()
        .expect("complete");
    vec![
        (
            "SUCCEED of a step never started",
            update(
                "never-started",
                OperationType::Step,
                OperationAction::Succeed,
            ),
        ),
        ("ParentId naming no CONTEXT", with_parent),
        (
            "START of a finished step",
            update("done", OperationType::Step, OperationAction::Start),
        ),
        (
            "EXECUTION update with another operation's Id",
            update(
                "not-the-execution",
                OperationType::Execution,
                OperationAction::Succeed,
            ),
        ),
        (
            "SUCCEED of a WAIT (the service completes waits)",
            update("waiting", OperationType::Wait, OperationAction::Succeed),
        ),
        (
            "a type that does not match the stored operation",
            update("done", OperationType::Context, OperationAction::Succeed),
        ),
        (
            "two EXECUTION updates in one request",
            update(exec_id, OperationType::Execution, OperationAction::Start),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_service_rejects_latches_an_execution_failure_and_nothing_hangs() {
    let _serial = SERIAL.lock().await;
    let emu = emulator(Faults::default(), 0x4E7).await;
    let (probe, _) = emu.start_execution("probe");
    let exec_id = snapshot(&emu, &probe).execution_operation_id;
    for (n, (rule, bad)) in rule_breakers(&exec_id).into_iter().enumerate() {
        let (arn, faulty, batcher) = held_batcher(&emu, &format!("rejected-{n}"), config(7));
        // Call 1: the history the rule breakers refer to.
        for setup in [
            start("done"),
            succeed("done", "1"),
            update("waiting", OperationType::Wait, OperationAction::Start),
        ] {
            within(HANG, "setup", batcher.checkpoint(setup))
                .await
                .expect("setup applies");
        }
        let calls_before = faulty.calls();
        // Call 2 held in flight; the bad update queues between good ones, so the next batch
        // holds all of them.
        faulty.hold();
        let first = batcher.submit(start("g0")).await.expect("accepted");
        within(
            HANG,
            "the held call to start",
            faulty.wait_for_calls(calls_before + 1),
        )
        .await;
        let mut acks: Vec<(String, AckFuture)> = Vec::new();
        for i in 1..=4 {
            let id = format!("g{i}");
            acks.push((
                id.clone(),
                batcher.submit(start(&id)).await.expect("accepted"),
            ));
        }
        let bad_id = bad.id.clone();
        acks.push((
            bad_id.clone(),
            batcher.submit(bad).await.expect("passes local checks"),
        ));
        for i in 5..=8 {
            let id = format!("g{i}");
            acks.push((
                id.clone(),
                batcher.submit(start(&id)).await.expect("accepted"),
            ));
        }
        faulty.release();

        within(HANG, "the batch before", first)
            .await
            .expect("applied before the bad batch");
        let mut sequence = None;
        for (id, ack) in acks {
            let error = within(HANG, "a caller of the rejected batch", ack)
                .await
                .expect_err("the whole request is refused");
            let BatcherError::Failed(failure) = &error else {
                panic!("{rule}: expected a failure for {id}, got {error}")
            };
            assert_eq!(failure.kind(), ErrorKind::Rejected, "{rule}: {error}");
            assert_eq!(failure.scope(), FailureScope::Execution, "{rule}: {error}");
            assert_eq!(
                failure.attempts(),
                1,
                "{rule}: a rejected request is not retried"
            );
            assert!(
                error.to_string().contains(&bad_id),
                "{rule}: the message names the update at fault: {error}"
            );
            assert_eq!(
                *sequence.get_or_insert(failure.batch_sequence()),
                failure.batch_sequence()
            );
        }
        let later = within(RTT, "a later caller", batcher.checkpoint(start("later")))
            .await
            .expect_err("latched");
        assert_eq!(later.scope(), Some(FailureScope::Execution), "{rule}");
        assert!(within(RTT, "flush", batcher.flush()).await.is_err());
        assert!(within(RTT, "shutdown", batcher.shutdown()).await.is_err());
        let snap = snapshot(&emu, &arn);
        assert_eq!(
            snap.rejected_checkpoints, 1,
            "{rule}: refused once, never retried"
        );
        assert_eq!(
            snap.checkpoint_calls,
            snap.applied_checkpoints + 1,
            "{rule}"
        );
        for i in 1..=8 {
            assert_eq!(
                applied_count(&snap, &format!("g{i}")),
                0,
                "{rule}: a refused request applies nothing (atomic)"
            );
        }
        assert_eq!(
            applied_count(&snap, "later"),
            0,
            "{rule}: nothing is sent after the latch"
        );
    }
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 4. The terminal checkpoint.

/// `lose_the_answer`: the terminal call is applied but its answer lost, so the batcher retries
/// it and the emulator replays it. `shutdown_in_flight`: a shutdown arrives while the terminal
/// call is in flight, and must get the report of a completed execution (no token).
async fn terminal_checkpoint(lose_the_answer: bool, shutdown_in_flight: bool) {
    let emu = emulator(Faults::default(), 0x7E4).await;
    let (arn, faulty, batcher) = held_batcher(&emu, "terminal", config(5));
    let exec_id = snapshot(&emu, &arn).execution_operation_id;
    within(HANG, "setup", batcher.checkpoint(start("s1")))
        .await
        .expect("applies");
    faulty.hold();
    let step_done = batcher.submit(succeed("s1", "2")).await.expect("accepted");
    within(HANG, "the held call to start", faulty.wait_for_calls(2)).await;
    // Queued while call 2 is in flight: the EXECUTION SUCCEED goes last in its batch, so the
    // updates behind it wait for a batch that never goes.
    let finish = OperationUpdate::builder()
        .id(&exec_id)
        .r#type(OperationType::Execution)
        .action(OperationAction::Succeed)
        .payload("\"result\"")
        .build()
        .expect("complete");
    let before = batcher.submit(start("s2")).await.expect("accepted");
    let done = batcher.submit(finish).await.expect("accepted");
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(
            batcher
                .submit(start(&format!("after{i}")))
                .await
                .expect("accepted"),
        );
    }
    if lose_the_answer {
        // Call 2 drew its fault when it started; this is the terminal call's: applied by the
        // emulator, then the answer lost, so the batcher retries with the same client token.
        faulty.push(Fault::LostAnswer);
    }
    let pending_shutdown = shutdown_in_flight.then(|| {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.shutdown().await })
    });
    if pending_shutdown.is_some() {
        // The shutdown command is queued behind the updates: wait until the actor has read it.
        within(HANG, "the shutdown is received", async {
            while batcher.is_open() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }
    faulty.release();

    let step_done = within(HANG, "the batch before", step_done)
        .await
        .expect("applied");
    assert!(step_done.checkpoint_token().is_some());
    let done = within(HANG, "the terminal checkpoint", done)
        .await
        .expect("acknowledged");
    let before = within(HANG, "its batch companion", before)
        .await
        .expect("acknowledged");
    assert_eq!(
        done.checkpoint_token(),
        None,
        "the terminal checkpoint returns no token"
    );
    assert!(
        before.same_batch(&done),
        "an update before the EXECUTION shares its batch"
    );
    for ack in queued {
        let error = within(HANG, "a queued caller", ack)
            .await
            .expect_err("closed");
        assert!(
            matches!(&error, BatcherError::Closed(c) if c.reason() == CloseReason::ExecutionCompleted),
            "a queued caller learns the execution completed: {error}"
        );
    }
    let later = within(RTT, "a later caller", batcher.checkpoint(start("later")))
        .await
        .expect_err("closed");
    let closed_by = if shutdown_in_flight {
        CloseReason::ShutDown
    } else {
        CloseReason::ExecutionCompleted
    };
    assert!(
        matches!(&later, BatcherError::Closed(c) if c.reason() == closed_by),
        "a later caller learns why the batcher closed first: {later}"
    );
    assert!(!batcher.is_open());
    // Five accepted updates were refused by the completion: no drain may call that a success.
    let refused_by_completion = |answer: Result<(), BatcherError>, what: &str| {
        let error = answer.expect_err("updates accepted behind the completion were refused");
        assert!(
            matches!(&error, BatcherError::Closed(c) if c.reason() == CloseReason::ExecutionCompleted),
            "{what} names the completion that refused them: {error}"
        );
    };
    if let Some(pending) = pending_shutdown {
        let answer = within(HANG, "the pending shutdown", pending)
            .await
            .expect("no panic");
        refused_by_completion(answer.map(drop), "the pending shutdown");
    }
    let answer = within(RTT, "shutdown", batcher.shutdown()).await;
    refused_by_completion(answer.map(drop), "a later shutdown");
    refused_by_completion(within(RTT, "flush", batcher.flush()).await, "a later flush");
    assert_eq!(
        batcher.stats().unacknowledged,
        5,
        "the refused updates are counted, the later caller's is not (never accepted)"
    );
    let snap = snapshot(&emu, &arn);
    assert!(snap.completed && snap.current_token.is_none());
    assert_eq!(
        snap.operation(&exec_id).map(|op| op.status.as_str()),
        Some("SUCCEEDED")
    );
    assert_eq!(
        snap.applied_checkpoints, 3,
        "setup, the step, the terminal batch"
    );
    assert_eq!(
        snap.rejected_checkpoints, 0,
        "nothing was sent after the completion"
    );
    assert!((0..5).all(|i| applied_count(&snap, &format!("after{i}")) == 0));
    assert_eq!(
        snap.replayed_checkpoints,
        u64::from(lose_the_answer),
        "a lost terminal answer is recovered by a replay, not refused as a stale token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_checkpoint_is_acknowledged_without_a_token_and_then_everyone_gets_closed() {
    let _serial = SERIAL.lock().await;
    terminal_checkpoint(false, false).await;
    terminal_checkpoint(true, false).await;
    terminal_checkpoint(false, true).await;
}

// ---------------------------------------------------------------------------------------
// 5. Cancellation.

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
            ..config(3)
        },
    );
    within(HANG, "setup", batcher.checkpoint(start("warm")))
        .await
        .expect("applies");
    faulty.hold();
    drop(batcher.submit(start("in-flight")).await.expect("accepted"));
    within(HANG, "the held call to start", faulty.wait_for_calls(2)).await;
    // The actor takes two into the next batch, the channel holds two more.
    for id in ["queued-1", "queued-2", "queued-3", "queued-4"] {
        drop(
            within(HANG, "room in the queue", batcher.submit(start(id)))
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

    let report = within(HANG, "shutdown drains", batcher.shutdown())
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
            ..config(0xD40)
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
        fates.push(within(HANG, "a caller", caller).await.expect("no panic"));
    }
    let report = within(HANG, "shutdown drains", batcher.shutdown())
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

// ---------------------------------------------------------------------------------------
// 6. Backpressure.

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
            ..config(0xB9)
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
    within(HANG, "the submitters", async {
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
        within(HANG, "a submitter", submitter)
            .await
            .expect("no panic")
            .expect("submit waits for room and is acknowledged; it never fails");
    }
    for (_, ack) in slipped_in.iter_mut() {
        within(HANG, "a try_submit that found room", ack)
            .await
            .expect("acknowledged");
    }
    let rss_after = rss_kib();
    let report = within(HANG, "shutdown", batcher.shutdown())
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

// ---------------------------------------------------------------------------------------
// 7. Bad input.

fn with_error(id: &str, data_bytes: usize) -> OperationUpdate {
    OperationUpdate::builder()
        .id(id)
        .r#type(OperationType::Step)
        .action(OperationAction::Fail)
        .error(
            ErrorObject::builder()
                .error_type("Boom")
                .error_message("failed")
                .error_data("x".repeat(data_bytes))
                .build(),
        )
        .build()
        .expect("complete")
}

fn bad_inputs(exec_id: &str) -> Vec<(&'static str, &'static str, OperationUpdate)> {
    let step = |id: &str| {
        OperationUpdate::builder()
            .id(id)
            .r#type(OperationType::Step)
            .action(OperationAction::Start)
    };
    let mib = 1024 * 1024;
    vec![
        ("empty Id", "Id", step("").build().expect("complete")),
        (
            "Id of 65 characters",
            "Id",
            step(&"i".repeat(65)).build().expect("complete"),
        ),
        (
            "Id with a space",
            "Id",
            step("a b").build().expect("complete"),
        ),
        (
            "Id with a slash",
            "Id",
            step("a/b").build().expect("complete"),
        ),
        (
            "Id with a non-ASCII letter",
            "Id",
            step("caf\u{e9}").build().expect("complete"),
        ),
        (
            "ParentId with a dot",
            "ParentId",
            step("p1").parent_id("ctx.1").build().expect("complete"),
        ),
        (
            "ParentId of 65 characters",
            "ParentId",
            step("p2")
                .parent_id("c".repeat(65))
                .build()
                .expect("complete"),
        ),
        (
            "Name of 257 characters",
            "Name",
            step("n1").name("n".repeat(257)).build().expect("complete"),
        ),
        (
            "SubType of 33 characters",
            "SubType",
            step("st1")
                .sub_type("s".repeat(33))
                .build()
                .expect("complete"),
        ),
        (
            "STEP payload of 1 MiB + 1",
            "Payload",
            succeed("pl1", &"p".repeat(mib + 1)),
        ),
        (
            "EXECUTION payload of 6 MiB + 1",
            "Payload",
            OperationUpdate::builder()
                .id(exec_id)
                .r#type(OperationType::Execution)
                .action(OperationAction::Succeed)
                .payload("p".repeat(6 * mib + 1))
                .build()
                .expect("complete"),
        ),
        ("Error of over 1 MiB", "Error", with_error("e1", mib)),
        (
            "unknown Type",
            "Type",
            update("t1", OperationType::from("BOGUS"), OperationAction::Start),
        ),
        (
            "unknown Action",
            "Action",
            update("a1", OperationType::Step, OperationAction::from("EXPLODE")),
        ),
    ]
}

/// Every field constraint broken one at a time, while 40 other callers checkpoint: each bad
/// caller alone gets `InvalidUpdate` naming the field, nothing of it reaches the service, and
/// the others' updates go through. Values at the limits pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_field_fails_only_its_caller_and_the_others_go_through() {
    let _serial = SERIAL.lock().await;
    let emu = emulator(Faults::default(), 0xBAD).await;
    let (arn, batcher) = batcher(&emu, "bad-input", config(0xBAD));
    let exec_id = snapshot(&emu, &arn).execution_operation_id;
    let mut good = Vec::new();
    for g in 0..40 {
        let batcher = batcher.clone();
        good.push(tokio::spawn(async move {
            for n in 0..5 {
                batcher.checkpoint(start(&format!("good{g}-{n}"))).await?;
            }
            Ok::<_, BatcherError>(())
        }));
    }
    let cases = bad_inputs(&exec_id);
    let mut bad_ids = Vec::new();
    for (what, field, bad) in cases {
        bad_ids.push(bad.id.clone());
        for via_try in [false, true] {
            let error = if via_try {
                batcher
                    .try_submit(bad.clone())
                    .map(drop)
                    .expect_err("refused")
            } else {
                within(HANG, what, batcher.checkpoint(bad.clone()))
                    .await
                    .expect_err("refused")
            };
            let BatcherError::InvalidUpdate(invalid) = &error else {
                panic!("{what}: expected InvalidUpdate, got {error}")
            };
            assert_eq!(invalid.field(), field, "{what}: the error names the field");
            assert!(
                error.to_string().contains(field),
                "{what}: a clear message: {error}"
            );
            assert_eq!(error.scope(), None, "{what}: only this caller is concerned");
        }
        assert!(batcher.is_open(), "{what}: the batcher keeps going");
    }
    // At the limits: accepted.
    let at_limits = [
        start(&"i".repeat(64)),
        OperationUpdate::builder()
            .id("name-256")
            .name("\u{e9}".repeat(256))
            .sub_type("s".repeat(32))
            .r#type(OperationType::Step)
            .action(OperationAction::Start)
            .build()
            .expect("complete"),
    ];
    for ok in at_limits {
        within(HANG, "an update at the limits", batcher.checkpoint(ok))
            .await
            .expect("accepted");
    }
    for task in good {
        within(HANG, "a good caller", task)
            .await
            .expect("no panic")
            .expect("acknowledged");
    }
    let snap = snapshot(&emu, &arn);
    assert_eq!(
        snap.rejected_checkpoints, 0,
        "nothing invalid reached the service"
    );
    assert_eq!(snap.applied.len(), 40 * 5 + 2, "every good update applied");
    for id in bad_ids
        .iter()
        .filter(|id| !id.is_empty() && **id != exec_id)
    {
        assert_eq!(
            applied_count(&snap, id),
            0,
            "{id}: refused locally, never sent"
        );
    }
    println!(
        "bad input: {} broken fields refused locally (checkpoint and try_submit), 200 good \
         updates applied alongside, 0 requests rejected by the service",
        bad_ids.len()
    );
    emu.shutdown().await;
}

/// An update larger than `max_batch_bytes` (800 KiB against 750 KiB) is sent in a batch of its
/// own; the updates queued before and after it go in batches of their own too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_larger_than_a_batch_goes_alone_and_its_neighbours_go_through() {
    let _serial = SERIAL.lock().await;
    let emu = emulator(Faults::default(), 0xB16).await;
    let (arn, faulty, batcher) = held_batcher(&emu, "oversized", config(0xB16));
    within(HANG, "setup", batcher.checkpoint(start("big")))
        .await
        .expect("applies");
    faulty.hold();
    let warm = batcher.submit(start("warm")).await.expect("accepted");
    within(HANG, "the held call to start", faulty.wait_for_calls(2)).await;
    let mut before = Vec::new();
    for i in 0..3 {
        before.push(
            batcher
                .submit(start(&format!("before{i}")))
                .await
                .expect("accepted"),
        );
    }
    let big = batcher
        .submit(succeed("big", &format!("\"{}\"", "x".repeat(800 * 1024))))
        .await
        .expect("1 MiB is the payload limit, 800 KiB passes");
    let mut after = Vec::new();
    for i in 0..3 {
        after.push(
            batcher
                .submit(start(&format!("after{i}")))
                .await
                .expect("accepted"),
        );
    }
    faulty.release();
    within(HANG, "warm", warm).await.expect("acknowledged");
    let big = within(HANG, "the oversized update", big)
        .await
        .expect("acknowledged");
    assert_eq!(big.batch_updates(), 1, "an oversized update goes alone");
    assert!(big.batch_bytes() > 750 * 1024);
    let mut neighbours = Vec::new();
    for ack in before.into_iter().chain(after) {
        neighbours.push(
            within(HANG, "a neighbour", ack)
                .await
                .expect("acknowledged"),
        );
    }
    assert!(
        neighbours[..3]
            .iter()
            .all(|a| a.same_batch(&neighbours[0]) && a.batch_sequence() < big.batch_sequence())
    );
    assert!(
        neighbours[3..]
            .iter()
            .all(|a| a.same_batch(&neighbours[3]) && a.batch_sequence() > big.batch_sequence())
    );
    let snap = snapshot(&emu, &arn);
    let big_checkpoint = snap
        .applied
        .iter()
        .find(|u| u.id == "big" && u.action == "SUCCEED")
        .expect("applied")
        .checkpoint;
    assert_eq!(
        snap.applied
            .iter()
            .filter(|u| u.checkpoint == big_checkpoint)
            .count(),
        1
    );
    assert_eq!(snap.rejected_checkpoints, 0);
    let sizes = &snap.request_body_sizes;
    println!(
        "oversized: an 800 KiB update sent alone in a {} byte request; neighbours in batches of 3",
        sizes.iter().max().copied().unwrap_or(0)
    );
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 8. Emulator robustness. `tests/emulator_http.rs` already covers malformed JSON, wrong
// shapes, wrong methods (GET, DELETE, POST on state), a declared oversized body, unknown,
// empty and undecodable ARNs, unknown paths, bad markers and MaxItems, and random requests
// (`random_requests_never_crash_the_server`). What follows covers what it does not: bodies
// that lie about their length or never declare it, hostile JSON, the remaining methods, bad
// ARNs through the SDK and the batcher, garbage alongside a live batcher, and mutations of
// valid requests.

/// The token the emulator holds now, and a valid checkpoint body for it.
fn valid_body(emu: &Emulator, arn: &str, id: &str) -> (Option<String>, Vec<u8>) {
    let token = snapshot(emu, arn).current_token;
    let body = serde_json::json!({
        "CheckpointToken": token,
        "Updates": [{"Id": id, "Type": "STEP", "Action": "START"}],
    });
    (token, body.to_string().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_the_documented_4xx_and_the_emulator_keeps_serving() {
    let _serial = SERIAL.lock().await;
    let emu = Emulator::builder()
        .max_request_bytes(64 * 1024)
        .start()
        .await
        .expect("binds");
    let (arn, token) = emu.start_execution("hostile");
    let addr = emu.local_addr();
    let cp = checkpoint_path(&arn);
    let deep = format!("{{\"CheckpointToken\":{}", "[".repeat(50_000));
    let with_token = |updates: &str| {
        format!("{{\"CheckpointToken\":\"{token}\",\"Updates\":{updates}}}").into_bytes()
    };
    let mut invalid_utf8 = with_token("[{\"Id\":\"a\",\"Type\":\"STEP\",\"Action\":\"START\"}]");
    invalid_utf8.splice(30..31, [0xFF, 0xFE]);
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("JSON nested 50,000 deep", "POST", deep.into_bytes(), 400),
        ("bytes that are not UTF-8", "POST", invalid_utf8, 400),
        (
            "a token that is a number",
            "POST",
            b"{\"CheckpointToken\":5}".to_vec(),
            400,
        ),
        (
            "an update that is a string",
            "POST",
            with_token("[\"x\"]"),
            400,
        ),
        (
            "an Id that is null",
            "POST",
            with_token("[{\"Id\":null,\"Type\":\"STEP\",\"Action\":\"START\"}]"),
            400,
        ),
        (
            "an unknown Type",
            "POST",
            with_token("[{\"Id\":\"a\",\"Type\":\"NOPE\",\"Action\":\"START\"}]"),
            400,
        ),
        ("an empty body", "POST", Vec::new(), 400),
        ("PUT", "PUT", Vec::new(), 405),
        ("PATCH", "PATCH", Vec::new(), 405),
        ("OPTIONS", "OPTIONS", Vec::new(), 405),
    ];
    for (what, method, body, status) in cases {
        let answer = request(addr, method, &cp, &body)
            .await
            .expect("an HTTP answer");
        assert_eq!(
            answer.status,
            status,
            "{what}: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
        assert!(
            answer.json()["message"].is_string(),
            "{what}: a REST-JSON error body"
        );
        if status == 405 {
            assert_eq!(answer.header("allow").as_deref(), Some("POST"), "{what}");
        }
    }
    // HEAD: no body, but the status and the Allow header.
    let head = send_raw(
        addr,
        format!("HEAD {cp} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("an answer");
    assert_eq!(head.status, 405);

    // A chunked body past the limit, with no Content-Length to refuse it up front.
    let chunk = "y".repeat(8 * 1024);
    let mut chunked = format!(
        "POST {cp} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for _ in 0..16 {
        chunked.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    chunked.push_str("0\r\n\r\n");
    let answer = send_raw(addr, chunked.as_bytes()).await.expect("an answer");
    assert_eq!(answer.status, 413, "a streamed body over the limit");

    // A Content-Length that promises more than arrives: the connection ends early.
    let short = format!(
        "POST {cp} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n{{\"Check"
    );
    let answer = send_raw_then(addr, short.as_bytes(), true).await;
    assert!(
        answer.as_ref().is_none_or(|a| a.status == 400),
        "a truncated body: {answer:?}"
    );
    // Not HTTP at all.
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\x01\x02\xff\r\n\r\n",
        b"POST / HTTP/9.9\r\n\r\n",
    ] {
        let answer = send_raw_then(addr, garbage, true).await;
        assert!(
            answer
                .as_ref()
                .is_none_or(|a| a.status == 400 || a.status == 404 || a.status == 505),
            "{answer:?}"
        );
    }

    // Nothing of that consumed the token, and the emulator still serves.
    let snap = snapshot(&emu, &arn);
    assert_eq!(snap.current_token.as_deref(), Some(token.as_str()));
    assert_eq!(snap.applied_checkpoints, 0);
    let (_, body) = valid_body(&emu, &arn, "after");
    let answer = request(addr, "POST", &cp, &body).await.expect("an answer");
    assert_eq!(answer.status, 200, "still serving");
    emu.shutdown().await;
}

/// A batcher given an ARN the service does not know, or one full of characters that need
/// encoding, gets a 404 through the real SDK: a rejected request, latched, nothing retried and
/// nothing hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_arn_fails_the_batcher_at_once_and_nothing_hangs() {
    let _serial = SERIAL.lock().await;
    let emu = emulator(Faults::default(), 0xA4).await;
    let (real_arn, token) = emu.start_execution("real");
    for bad in [
        "arn:aws:lambda:us-east-1:123456789012:function:f/durable-execution/none/1",
        "arn with spaces/and?query#fragment",
        "\u{e9}t\u{e9}/\u{1F600}/%2F%",
    ] {
        let batcher = CheckpointBatcher::spawn(real(&emu), bad, token.clone(), config(1))
            .expect("a non-empty ARN is accepted locally");
        let error = within(
            HANG,
            "a checkpoint to a bad ARN",
            batcher.checkpoint(start("a")),
        )
        .await
        .expect_err("the service does not know it");
        assert_eq!(error.kind(), Some(ErrorKind::Rejected), "{bad}: {error}");
        let BatcherError::Failed(failure) = &error else {
            panic!("{error}")
        };
        assert_eq!(failure.attempts(), 1, "{bad}: a 404 is not retried");
        assert_eq!(failure.cause().status(), Some(404), "{bad}");
        assert!(
            within(RTT, "later", batcher.checkpoint(start("b")))
                .await
                .is_err()
        );
    }
    let snap = snapshot(&emu, &real_arn);
    assert_eq!(
        snap.checkpoint_calls, 0,
        "no request reached another execution"
    );
    emu.shutdown().await;
}

/// 300 garbage connections while a batcher checkpoints through the same emulator: the
/// batcher's run is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_alongside_a_live_batcher_does_not_disturb_it() {
    let _serial = SERIAL.lock().await;
    let emu = emulator(Faults::default(), 0x6A4).await;
    let (arn, batcher) = batcher(&emu, "live", config(2));
    let addr = emu.local_addr();
    let cp = checkpoint_path(&arn);
    let worker = {
        let batcher = batcher.clone();
        tokio::spawn(async move {
            for n in 0..200 {
                batcher.checkpoint(start(&format!("live{n}"))).await?;
            }
            Ok::<_, BatcherError>(())
        })
    };
    let mut rng = fastrand::Rng::with_seed(0x6A4);
    let mut garbage = Vec::new();
    for _ in 0..300 {
        let body: Vec<u8> = (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect();
        let cp = cp.clone();
        garbage.push(tokio::spawn(async move {
            request(addr, "POST", &cp, &body).await
        }));
    }
    for g in garbage {
        let answer = within(HANG, "a garbage request", g)
            .await
            .expect("no panic");
        assert!(
            answer.is_some_and(|a| a.status == 400),
            "garbage gets a 400"
        );
    }
    within(HANG, "the live batcher", worker)
        .await
        .expect("no panic")
        .expect("unaffected");
    let snap = snapshot(&emu, &arn);
    assert_eq!(snap.applied.len(), 200);
    assert_eq!(
        snap.rejected_checkpoints, 300,
        "every garbage request refused, nothing else"
    );
    emu.shutdown().await;
}

/// Property: a valid checkpoint request mutated at random (a field given a value that may
/// break a rule; bytes flipped, cut, repeated, inserted; the method and the path's ARN changed) gets a 2xx or a 4xx, never a 5xx or a
/// dropped connection; a refused request leaves the token as it was; a 200 rotates it.
#[test]
fn mutated_requests_get_an_answer_and_a_refused_one_consumes_nothing() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let _serial = rt.block_on(SERIAL.lock());
    let emu = rt
        .block_on(Emulator::builder().max_request_bytes(4096).start())
        .expect("binds");
    let (arn, _) = emu.start_execution("mutated");
    let addr = emu.local_addr();
    let mutation = (
        0u8..4,
        any::<prop::sample::Index>(),
        1usize..16,
        any::<u8>(),
    );
    let input = (
        prop::collection::vec(mutation, 0..6),
        prop::sample::select(vec!["POST", "POST", "POST", "GET", "PUT"]),
        prop::option::weighted(0.2, "[ -~]{0,20}"),
        // A field of the update replaced by a value that may break a rule of the service.
        prop::option::weighted(
            0.5,
            (
                prop::sample::select(vec!["Id", "Type", "Action", "ParentId"]),
                prop::sample::select(vec![
                    "",
                    "a b",
                    "ctx",
                    "STEP",
                    "WAIT",
                    "CONTEXT",
                    "EXECUTION",
                    "SUCCEED",
                    "RETRY",
                    "CANCEL",
                    "NOPE",
                ]),
            ),
        ),
    );
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 300,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let statuses: std::sync::Mutex<BTreeMap<u16, usize>> = std::sync::Mutex::default();
    let cases = AtomicU64::new(0);
    runner
        .run(&input, |(mutations, method, arn_tail, replaced)| {
            let case = cases.fetch_add(1, Ordering::SeqCst);
            let before = snapshot(&emu, &arn).current_token;
            let mut update =
                serde_json::json!({"Id": format!("m{case}"), "Type": "STEP", "Action": "START"});
            if let Some((field, value)) = replaced {
                update[field] = serde_json::json!(value);
            }
            let mut body = serde_json::json!({"CheckpointToken": before, "Updates": [update]})
                .to_string()
                .into_bytes();
            for (kind, at, len, byte) in mutations {
                let i = at.index(body.len().max(1)).min(body.len());
                let end = (i + len).min(body.len());
                match kind {
                    0 => {
                        if let Some(b) = body.get_mut(i) {
                            *b ^= byte | 1;
                        }
                    }
                    1 => drop(body.drain(i..end)),
                    2 => {
                        let copy = body[i..end].to_vec();
                        body.splice(i..i, copy);
                    }
                    _ => body.insert(i, byte),
                }
            }
            let target = match &arn_tail {
                Some(tail) => checkpoint_path(&format!("{arn}{tail}")),
                None => checkpoint_path(&arn),
            };
            let answer = rt.block_on(request(addr, method, &target, &body));
            let Some(answer) = answer else {
                return Err(TestCaseError::fail(
                    "the connection closed without an answer",
                ));
            };
            *statuses
                .lock()
                .expect("not poisoned")
                .entry(answer.status)
                .or_default() += 1;
            prop_assert!(
                matches!(answer.status, 200 | 400 | 404 | 405 | 413),
                "an undocumented answer {}: {:?}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
            let after = snapshot(&emu, &arn).current_token;
            if answer.status == 200 {
                prop_assert_ne!(&after, &before, "a 200 consumes the token");
                let answered = answer.json();
                prop_assert_eq!(
                    answered["CheckpointToken"].as_str(),
                    after.as_deref(),
                    "and answers the new one"
                );
            } else {
                prop_assert_eq!(&after, &before, "a refused request consumes nothing");
            }
            Ok(())
        })
        .expect("every mutated request gets a documented answer");
    println!(
        "mutated requests: statuses {:?}",
        statuses.lock().expect("not poisoned")
    );
    rt.block_on(emu.shutdown());
}
