//! Batching: one call in flight, the token chain, submission order and the rules that close a
//! batch.

use std::collections::HashMap;
use std::future::Future as _;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use crate::support::*;
use aws_sdk_lambda::types::{OperationAction, OperationType};
use checkpoint_batcher::internals::{request_bytes, update_bytes};
use checkpoint_batcher::{BatcherConfig, Fault};

/// `callers` tasks, each checkpointing `steps` STEP STARTs in sequence (Ids `t{task}-s{step}`).
async fn run_callers(batcher: &checkpoint_batcher::BatcherHandle, callers: usize, steps: usize) {
    let mut tasks = Vec::new();
    for t in 0..callers {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move {
            for s in 0..steps {
                batcher
                    .checkpoint(start(&format!("t{t}-s{s}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        within(Duration::from_secs(60), task).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn one_call_is_in_flight_and_each_carries_the_token_the_previous_returned() {
    let rig = rig(config());
    rig.faulty
        .set_random(Some(checkpoint_batcher::RandomFaults {
            latency: Duration::from_millis(5),
            jitter: Duration::from_millis(5),
            seed: 1,
            ..Default::default()
        }));
    run_callers(&rig.batcher, 50, 20).await;
    let log = rig.faulty.call_log();
    assert_eq!(
        rig.faulty.max_in_flight(),
        1,
        "at most one checkpoint call may be in flight"
    );
    for pair in log.windows(2) {
        assert_eq!(
            pair[0].returned_token.as_deref(),
            Some(pair[1].checkpoint_token.as_str()),
            "call n+1 must carry the token call n returned"
        );
    }
    assert_eq!(rig.memory.applied().len(), 1000);
    assert!(
        log.len() < 1000,
        "concurrent updates must share calls, made {}",
        log.len()
    );
}

#[tokio::test(start_paused = true)]
async fn the_token_changes_only_when_a_call_succeeds() {
    let rig = rig(config());
    rig.faulty.push(Fault::Transient);
    rig.faulty.push(Fault::Throttle(None));
    let ack = within(Duration::from_secs(10), rig.batcher.checkpoint(start("a")))
        .await
        .unwrap();
    let log = rig.faulty.call_log();
    assert_eq!(log.len(), 3);
    assert!(
        log.iter()
            .all(|c| c.checkpoint_token == log[0].checkpoint_token),
        "every retry must carry the same token"
    );
    assert_eq!(
        ack.checkpoint_token(),
        rig.memory.current_token().as_deref()
    );
    assert_ne!(
        ack.checkpoint_token(),
        Some(log[0].checkpoint_token.as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn updates_keep_submission_order_across_batches() {
    let rig = rig(config());
    rig.faulty.hold();
    let first = rig.batcher.submit(start("u0")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let mut acks = vec![first];
    for i in 1..1000 {
        acks.push(rig.batcher.submit(start(&format!("u{i}"))).await.unwrap());
    }
    rig.faulty.release();
    let mut sequences = Vec::new();
    for ack in acks {
        sequences.push(
            within(Duration::from_secs(10), ack)
                .await
                .unwrap()
                .batch_sequence(),
        );
    }
    assert!(
        sequences.windows(2).all(|w| w[0] <= w[1]),
        "acknowledgements come in batch order"
    );
    let expected: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
    assert_eq!(
        ids(&rig.memory.applied()),
        expected,
        "the service must see submission order"
    );
    let sizes: Vec<usize> = rig.call_sizes();
    assert_eq!(
        sizes,
        [1, 250, 250, 250, 249],
        "queued updates fill batches to the count limit"
    );
}

#[tokio::test(start_paused = true)]
async fn the_byte_limit_counts_the_exact_request_body_and_an_oversized_update_goes_alone() {
    let config = BatcherConfig {
        max_batch_bytes: 2048,
        ..config()
    };
    let rig = rig(config);
    rig.faulty.hold();
    let first = rig.batcher.submit(start("first")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let payload = "x".repeat(500);
    let mut acks = vec![first];
    for i in 0..10 {
        acks.push(
            rig.batcher
                .submit(succeed(&format!("s{i}"), &payload))
                .await
                .unwrap(),
        );
        if i == 4 {
            acks.push(
                rig.batcher
                    .submit(succeed("big", &"y".repeat(3000)))
                    .await
                    .unwrap(),
            );
        }
    }
    rig.faulty.release();
    for ack in acks {
        within(Duration::from_secs(10), ack).await.unwrap();
    }
    let log = rig.faulty.call_log();
    for call in &log {
        let big = call.updates.iter().any(|(id, _, _)| id == "big");
        if big {
            assert_eq!(call.updates.len(), 1, "an oversized update travels alone");
            assert!(call.bytes > 2048);
        } else {
            assert!(
                call.bytes <= 2048,
                "a batch must stay within max_batch_bytes: {}",
                call.bytes
            );
        }
    }
    // Three 500-byte updates fit in 2048 bytes with the envelope; a fourth would not.
    let one = update_bytes(&succeed("s0", &payload));
    let envelope = request_bytes(&log[1].checkpoint_token, &log[1].client_token, &[]);
    assert!(envelope + 3 * one + 2 <= 2048 && envelope + 4 * one + 3 > 2048);
    let sizes: Vec<usize> = log.iter().map(|c| c.updates.len()).collect();
    assert_eq!(sizes, [1, 3, 2, 1, 3, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_closes_before_a_second_update_of_an_id_except_start_then_one_more() {
    let rig = rig(config());
    rig.faulty.hold();
    let first = rig.batcher.submit(start("hold")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let sequence = [
        step("a", OperationAction::Start),
        step("a", OperationAction::Succeed),
        update("w", OperationType::Wait, OperationAction::Start),
        update("w", OperationType::Wait, OperationAction::Succeed),
        update("c", OperationType::Context, OperationAction::Start),
        update("c", OperationType::Context, OperationAction::Succeed),
        step("c", OperationAction::Start),
    ];
    let mut acks = vec![first];
    for u in sequence {
        acks.push(rig.batcher.submit(u).await.unwrap());
    }
    rig.faulty.release();
    for ack in acks {
        within(Duration::from_secs(10), ack).await.unwrap();
    }
    let batches: Vec<Vec<String>> = rig
        .faulty
        .call_log()
        .iter()
        .map(|c| {
            c.updates
                .iter()
                .map(|(id, _, a)| format!("{id}:{}", a.as_str()))
                .collect()
        })
        .collect();
    assert_eq!(
        batches,
        vec![
            vec!["hold:START"],
            vec!["a:START", "a:SUCCEED", "w:START"],
            vec!["w:SUCCEED", "c:START", "c:SUCCEED"],
            vec!["c:START"],
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_follows_an_execution_update_in_a_batch() {
    let rig = rig(config());
    rig.faulty.hold();
    let first = rig.batcher.submit(start("hold")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let a = rig.batcher.submit(start("a")).await.unwrap();
    let exec = rig
        .batcher
        .submit(update(
            "exec",
            OperationType::Execution,
            OperationAction::Start,
        ))
        .await
        .unwrap();
    let b = rig.batcher.submit(start("b")).await.unwrap();
    rig.faulty.release();
    for ack in [first, a, exec, b] {
        within(Duration::from_secs(10), ack).await.unwrap();
    }
    let sizes: Vec<usize> = rig.call_sizes();
    assert_eq!(sizes, [1, 2, 1], "the EXECUTION update ends its batch");
}

#[tokio::test(start_paused = true)]
async fn the_count_limit_is_the_configured_one() {
    let rig = rig(BatcherConfig {
        max_batch_updates: 7,
        ..config()
    });
    rig.faulty.hold();
    let mut acks = vec![rig.batcher.submit(start("h")).await.unwrap()];
    rig.faulty.wait_for_calls(1).await;
    for i in 0..20 {
        acks.push(rig.batcher.submit(start(&format!("u{i}"))).await.unwrap());
    }
    rig.faulty.release();
    for ack in acks {
        within(Duration::from_secs(10), ack).await.unwrap();
    }
    let sizes: Vec<usize> = rig.call_sizes();
    assert_eq!(sizes, [1, 7, 7, 6]);
}

/// Answers the first checkpoint with a token 600 characters longer, later ones with tokens of
/// that length, and records each request's exact body size.
#[derive(Debug, Default)]
struct GrowingTokens {
    calls: std::sync::Mutex<Vec<usize>>,
    gate: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl checkpoint_batcher::DurableBackend for GrowingTokens {
    async fn checkpoint(
        &self,
        _arn: &str,
        token: &str,
        updates: Vec<aws_sdk_lambda::types::OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<
        aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput,
        checkpoint_batcher::BackendError,
    > {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(request_bytes(token, client_token.unwrap(), &updates));
            calls.len()
        };
        if n == 1 {
            self.gate.notified().await;
        }
        Ok(
            aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput::builder()
                .checkpoint_token(format!("{}{n:04}", "A".repeat(600)))
                .build(),
        )
    }

    async fn get_execution_state(
        &self,
        _arn: &str,
        _token: &str,
        _marker: Option<&str>,
        _max_items: Option<i32>,
    ) -> Result<
        aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput,
        checkpoint_batcher::BackendError,
    > {
        unreachable!("no marker is ever returned")
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_assembled_under_a_shorter_token_is_reassembled_to_stay_within_the_limit() {
    let backend = std::sync::Arc::new(GrowingTokens::default());
    let config = BatcherConfig {
        max_batch_bytes: 4096,
        ..config()
    };
    let batcher =
        checkpoint_batcher::CheckpointBatcher::spawn(backend.clone(), ARN, "dG9r", config).unwrap();
    let first = batcher.submit(start("first")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    // Assembled while the first call holds the 4-character token: nearly 4096 bytes.
    let payload = "x".repeat(900);
    let mut acks = vec![first];
    for i in 0..12 {
        acks.push(
            batcher
                .submit(succeed(&format!("s{i}"), &payload))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    backend.gate.notify_one();
    for ack in acks {
        within(Duration::from_secs(5), ack).await.unwrap();
    }
    let sizes = backend.calls.lock().unwrap().clone();
    assert!(sizes.len() > 2);
    for size in &sizes {
        assert!(
            *size <= 4096,
            "every request stays within max_batch_bytes after the token grew: {sizes:?}"
        );
    }
}

/// Callers that one acknowledgement wakes all ride the next batch together, call after call:
/// batches never alternate small and large.
#[tokio::test(start_paused = true)]
async fn callers_woken_by_one_acknowledgement_all_ride_the_next_batch() {
    use checkpoint_batcher::RandomFaults;
    const CALLERS: usize = 100;
    let rig = rig(config());
    rig.faulty.set_random(Some(RandomFaults {
        latency: Duration::from_millis(5),
        ..RandomFaults::default()
    }));
    run_callers(&rig.batcher, CALLERS, 20).await;
    let sizes: Vec<usize> = rig.call_sizes();
    // The first call goes with whoever submitted first; from then on every caller is woken by
    // one acknowledgement and must be gathered into the next call.
    assert!(
        sizes.iter().skip(2).take(15).all(|&n| n == CALLERS),
        "every call after the start carries all {CALLERS} callers: {sizes:?}"
    );
}

/// Records when an acknowledgement future's answer is sent: a oneshot's sender wakes the
/// waker its receiver registered as it sends, so the order of these wakes is the order the
/// answers were sent in, whichever worker sent them and whenever each caller then runs.
struct SendOrder {
    /// Which caller's which update, as logged.
    key: (usize, usize),
    log: Arc<Mutex<Vec<(usize, usize)>>>,
    /// The waker of the task that awaits the answer, woken in turn.
    task: Mutex<Waker>,
}

impl Wake for SendOrder {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.log.lock().unwrap().push(self.key);
        self.task.lock().unwrap().wake_by_ref();
    }
}

/// On a multi-threaded runtime, where the actor hands a batch's answers to the scheduler to
/// send once its worker runs out of ready tasks and may itself run on the other worker
/// meanwhile: every caller gets its own batch's acknowledgement, and no answer is sent before
/// every answer of an earlier batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_keep_batch_order_on_a_multi_threaded_runtime() {
    const CALLERS: usize = 64;
    const STEPS: usize = 25;
    let rig = rig(config());
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for t in 0..CALLERS {
        let batcher = rig.batcher.clone();
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::with_capacity(STEPS);
            for s in 0..STEPS {
                let ack = batcher.submit(start(&format!("t{t}-s{s}"))).await.unwrap();
                let mut ack = std::pin::pin!(ack);
                let order = Arc::new(SendOrder {
                    key: (t, s),
                    log: Arc::clone(&log),
                    task: Mutex::new(Waker::noop().clone()),
                });
                // An answer already there when first polled registers no waker and is not
                // logged (it was sent at an unknown time); every other one is, as it is sent.
                let ack = std::future::poll_fn(|cx| {
                    *order.task.lock().unwrap() = cx.waker().clone();
                    let waker = Waker::from(Arc::clone(&order));
                    ack.as_mut().poll(&mut Context::from_waker(&waker))
                })
                .await
                .unwrap();
                acks.push((s, ack));
            }
            acks
        }));
    }
    let mut sequence_of = HashMap::new();
    let mut answered = Vec::new();
    for task in tasks {
        answered.push(within(Duration::from_secs(10), task).await.unwrap());
    }
    let calls: HashMap<u64, _> = rig
        .faulty
        .call_log()
        .into_iter()
        .map(|call| {
            // The client token ends with the batch's sequence, in 16 hex digits.
            let sequence = u64::from_str_radix(&call.client_token[16..], 16).unwrap();
            (sequence, call)
        })
        .collect();
    for (t, acks) in answered.iter().enumerate() {
        for (s, ack) in acks {
            let call = &calls[&ack.batch_sequence()];
            let position = ack.position().expect("an update's own acknowledgement");
            assert_eq!(
                call.updates[position].0,
                format!("t{t}-s{s}"),
                "each caller gets its own batch's acknowledgement, at its own position"
            );
            assert_eq!(ack.batch_updates(), call.updates.len());
            assert_eq!(ack.checkpoint_token(), call.returned_token.as_deref());
            sequence_of.insert((t, *s), ack.batch_sequence());
        }
    }
    let sent: Vec<u64> = log.lock().unwrap().iter().map(|k| sequence_of[k]).collect();
    assert!(
        sent.len() >= CALLERS * STEPS / 2,
        "most answers arrive while their callers wait: {} of {}",
        sent.len(),
        CALLERS * STEPS
    );
    assert!(
        sent.windows(2).all(|w| w[0] <= w[1]),
        "answers are sent in batch order: {sent:?}"
    );
    assert!(calls.len() < CALLERS * STEPS, "callers share batches");
}

/// An in-memory backend that, when its first checkpoint completes, wakes a task which then
/// holds its worker thread in one long poll.
#[derive(Debug)]
struct WakesAHog {
    memory: Arc<checkpoint_batcher::InMemoryBackend>,
    hog: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl checkpoint_batcher::DurableBackend for WakesAHog {
    async fn checkpoint(
        &self,
        arn: &str,
        token: &str,
        updates: Vec<aws_sdk_lambda::types::OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<
        aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput,
        checkpoint_batcher::BackendError,
    > {
        let answer = self
            .memory
            .checkpoint(arn, token, updates, client_token)
            .await;
        // Woken from the actor's poll, the hog runs next on the actor's worker thread.
        self.hog.notify_one();
        answer
    }

    async fn get_execution_state(
        &self,
        arn: &str,
        token: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<
        aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput,
        checkpoint_batcher::BackendError,
    > {
        self.memory
            .get_execution_state(arn, token, marker, max_items)
            .await
    }
}

/// A batch's answers do not wait for a task that holds the actor's worker thread in a long
/// poll: the other worker is idle, and the actor sends them from there soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_the_actors_thread_does_not_hold_the_answers() {
    const HOG: Duration = Duration::from_millis(800);
    let memory = Arc::new(checkpoint_batcher::InMemoryBackend::new());
    let token = memory
        .current_token()
        .expect("a fresh execution has a token");
    let hog = Arc::new(tokio::sync::Notify::new());
    let backend = Arc::new(WakesAHog {
        memory: memory.clone(),
        hog: Arc::clone(&hog),
    });
    let batcher = checkpoint_batcher::CheckpointBatcher::spawn(backend, ARN, token, config())
        .expect("valid config");
    let (waiting, hog_waits) = tokio::sync::oneshot::channel();
    let hogging = tokio::spawn(async move {
        let woken = hog.notified();
        tokio::pin!(woken);
        // Waiting before the checkpoint completes, so that the actor's poll is what wakes it.
        woken.as_mut().enable();
        let _ = waiting.send(());
        woken.await;
        std::thread::sleep(HOG);
    });
    hog_waits.await.expect("the hog waits");
    let caller = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let ack = batcher.checkpoint(start("a")).await;
        (ack, started.elapsed())
    });
    let (ack, waited) = within(Duration::from_secs(20), caller)
        .await
        .expect("the caller ran");
    assert!(ack.is_ok(), "{ack:?}");
    // Generous for a loaded machine, and still well short of the hog's poll.
    assert!(
        waited < HOG / 2,
        "the acknowledgement waited {waited:?} for another task's {HOG:?} poll"
    );
    within(Duration::from_secs(20), hogging)
        .await
        .expect("the hog ran");
}
