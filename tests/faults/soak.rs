//! The soak under faults: many tasks, each submitting a START without waiting and awaiting a
//! SUCCEED per step, against a backend that throttles, fails with 5xx and loses answers after
//! applying them (seeded). Every update is applied exactly once and in order per task, every
//! caller is answered, each batch is applied once and the batcher ends holding the service's
//! token.
//!
//! One parameterized [`soak`] (workload size, backend in process or over HTTP, fault rates,
//! retries) serves every workload; each test below runs one of them and adds the checks that
//! only its backend can make.

use std::collections::HashMap;
#[cfg(feature = "emulator")]
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

#[cfg(feature = "emulator")]
use checkpoint_batcher::emulator::{Emulator, ExecutionSnapshot, Faults};
use checkpoint_batcher::{BatcherConfig, BatcherError, BatcherStats, RandomFaults, RetryPolicy};
use tokio::time::Instant;

use crate::support::*;

/// Where the batcher's calls go.
pub enum Backend {
    /// `FaultyBackend` over `InMemoryBackend`, with these random faults, deduplicating by
    /// client token.
    InProcess(RandomFaults),
    /// `RealBackend` against the emulator on loopback, with these faults and this seed.
    #[cfg(feature = "emulator")]
    Http { faults: Faults, seed: u64 },
}

/// One soak's workload.
pub struct Soak {
    pub tasks: usize,
    /// Steps per task: a START and a SUCCEED each.
    pub steps: usize,
    pub backend: Backend,
    pub retry: RetryPolicy,
    /// Whether each task awaits its START's acknowledgement; without, it drops it (a caller
    /// that walks away) and only its SUCCEED is answered.
    pub await_start: bool,
    /// The SUCCEED's payload.
    pub payload: &'static str,
    /// How long a task may take before the soak fails as a hang.
    pub task_limit: Duration,
}

/// What a soak leaves for the checks a test adds.
#[cfg_attr(
    not(feature = "emulator"),
    allow(dead_code, reason = "the soaks over HTTP read it")
)]
pub struct SoakRun {
    pub updates: usize,
    pub stats: BatcherStats,
    pub elapsed: Duration,
    /// The emulator's execution at the end, for a soak over HTTP.
    #[cfg(feature = "emulator")]
    pub snapshot: Option<ExecutionSnapshot>,
}

/// The backend under the batcher, kept to read what it applied.
enum Target {
    InProcess(Rig),
    #[cfg(feature = "emulator")]
    Http {
        emu: Emulator,
        arn: String,
    },
}

/// What the service applied, as each backend reports it.
struct Applied {
    /// Every applied update's Id and action, in order.
    updates: Vec<(String, String)>,
    /// Checkpoint calls applied.
    calls: u64,
    /// The token the service holds.
    token: Option<String>,
    /// Whether the faults were exercised.
    faults_exercised: bool,
    #[cfg(feature = "emulator")]
    snapshot: Option<ExecutionSnapshot>,
}

/// Runs `soak` and checks what every soak promises; the test adds its backend's checks.
pub async fn soak(soak: Soak) -> SoakRun {
    let Soak {
        tasks: task_count,
        steps,
        backend,
        retry,
        await_start,
        payload,
        task_limit,
    } = soak;
    let updates = task_count * steps * 2;
    let config = BatcherConfig {
        retry,
        ..BatcherConfig::default()
    };
    let (target, batcher) = match backend {
        Backend::InProcess(faults) => {
            let rig = rig(config);
            rig.faulty.set_random(Some(faults));
            let batcher = rig.batcher.clone();
            (Target::InProcess(rig), batcher)
        }
        #[cfg(feature = "emulator")]
        Backend::Http { faults, seed } => {
            let emu = emulator(faults, seed).await;
            let (arn, batcher) = batcher(&emu, "soak", config);
            (Target::Http { emu, arn }, batcher)
        }
    };

    let began = Instant::now();
    let mut tasks = Vec::with_capacity(task_count);
    for t in 0..task_count {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move {
            let mut answered = 0usize;
            for s in 0..steps {
                let id = format!("t{t}-s{s}");
                let started = batcher.submit(start(&id)).await?;
                let done = batcher.checkpoint(succeed(&id, payload)).await?;
                if await_start {
                    let started = started.await?;
                    assert!(
                        started.batch_sequence() <= done.batch_sequence(),
                        "a task's START is acknowledged no later than its SUCCEED"
                    );
                    answered += 2;
                } else {
                    drop(started);
                    answered += 1;
                }
            }
            Ok::<_, BatcherError>(answered)
        }));
    }
    let mut answered = 0;
    for task in tasks {
        answered += within_named(task_limit, "a soak task", task)
            .await
            .expect("a soak task does not panic")
            .expect("no caller gets an error: the faults are all retryable");
    }
    let elapsed = began.elapsed();
    let callers = if await_start { updates } else { updates / 2 };
    assert_eq!(answered, callers, "every caller is answered");
    let report = within_named(HANG, "shutdown", batcher.shutdown())
        .await
        .expect("the drain succeeds");
    let stats = report.stats;

    let applied = match target {
        Target::InProcess(rig) => Applied {
            updates: rig
                .memory
                .applied()
                .iter()
                .map(|u| (u.id.clone(), u.action.as_str().to_owned()))
                .collect(),
            calls: rig.memory.applied_calls(),
            token: rig.memory.current_token(),
            faults_exercised: stats.retries > 0,
            #[cfg(feature = "emulator")]
            snapshot: None,
        },
        #[cfg(feature = "emulator")]
        Target::Http { emu, arn } => {
            let snap = snapshot(&emu, &arn);
            emu.shutdown().await;
            Applied {
                updates: snap
                    .applied
                    .iter()
                    .map(|u| (u.id.clone(), u.action.clone()))
                    .collect(),
                calls: snap.applied_checkpoints,
                token: snap.current_token.clone(),
                faults_exercised: snap.lost_answers > 0 && snap.faulted_checkpoints > 0,
                snapshot: Some(snap),
            }
        }
    };

    // Exactly once, in order per task.
    assert_eq!(
        applied.updates.len(),
        updates,
        "every update applied exactly once"
    );
    let mut per_task: HashMap<&str, Vec<(String, &str)>> = HashMap::new();
    for (id, action) in &applied.updates {
        let task = id.split('-').next().expect("ids are t<n>-s<n>");
        per_task
            .entry(task)
            .or_default()
            .push((id.clone(), action.as_str()));
    }
    for t in 0..task_count {
        let expected: Vec<(String, &str)> = (0..steps)
            .flat_map(|s| {
                let id = format!("t{t}-s{s}");
                [(id.clone(), "START"), (id, "SUCCEED")]
            })
            .collect();
        assert_eq!(
            per_task[format!("t{t}").as_str()],
            expected,
            "task {t}: its updates applied once each, in order"
        );
    }
    assert!(applied.faults_exercised, "the faults were exercised");
    assert_eq!(stats.failures, 0);
    assert_eq!(stats.updates, updates as u64);
    assert_eq!(stats.batches, applied.calls, "each batch applied once");
    assert_eq!(
        report.checkpoint_token, applied.token,
        "the final token is the service's"
    );
    SoakRun {
        updates,
        stats,
        elapsed,
        #[cfg(feature = "emulator")]
        snapshot: applied.snapshot,
    }
}

/// Every STEP operation was started, then succeeded, each once.
#[cfg(feature = "emulator")]
fn assert_each_step_started_then_succeeded_once(snap: &ExecutionSnapshot, steps: usize) {
    let ops: Vec<_> = snap
        .operations
        .iter()
        .filter(|op| op.op_type == "STEP")
        .collect();
    assert_eq!(ops.len(), steps);
    for op in ops {
        assert_eq!(op.status, "SUCCEEDED", "{} must have succeeded", op.id);
        assert_eq!(
            op.history,
            ["START", "SUCCEED"],
            "{} applied exactly once each",
            op.id
        );
    }
}

/// In process: 100 tasks × 100 updates, under the paused clock.
#[tokio::test(start_paused = true)]
async fn every_update_is_applied_exactly_once_in_order_and_every_caller_answered() {
    let _serial = SERIAL.lock().await;
    soak(Soak {
        tasks: 100,
        steps: 50,
        backend: Backend::InProcess(RandomFaults {
            throttle_rate: 0.15,
            transient_rate: 0.1,
            lost_answer_rate: 0.1,
            retry_after: None,
            latency: Duration::from_millis(2),
            jitter: Duration::from_millis(3),
            seed: 2026,
        }),
        retry: RetryPolicy {
            max_attempts: 30,
            jitter_seed: Some(3),
            ..RetryPolicy::default()
        },
        await_start: true,
        payload: "ok",
        task_limit: Duration::from_secs(600),
    })
    .await;
}

/// Over HTTP: 500 tasks × 200 updates with 10 % throttling, 5 % 5xx, 5 % answers lost after
/// the commit (the connection is dropped) and 0–20 ms of jitter per request.
#[cfg(feature = "emulator")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_under_faults_applies_every_update_once_in_order_and_answers_every_caller() {
    let _serial = SERIAL.lock().await;
    let run = soak(Soak {
        tasks: 500,
        steps: 100,
        backend: Backend::Http {
            faults: Faults {
                jitter: Duration::from_millis(20),
                throttle_rate: 0.10,
                server_error_rate: 0.05,
                lost_answer_rate: 0.05,
                drop_connection_on_lost_answer: true,
                ..Faults::default()
            },
            seed: 0x50A4,
        },
        retry: patient(0x50A4),
        await_start: true,
        payload: "\"ok\"",
        task_limit: HANG * 4,
    })
    .await;
    let snap = run.snapshot.expect("a soak over HTTP");
    let stats = run.stats;
    assert_each_step_started_then_succeeded_once(&snap, run.updates / 2);

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
    assert_eq!(
        stats.batches + stats.retries,
        snap.checkpoint_calls,
        "every attempt the batcher counts reached the service, and no other"
    );
    assert_eq!(snap.rejected_checkpoints, 0, "no retry was refused");
    assert_eq!(
        snap.replayed_checkpoints, snap.lost_answers,
        "each lost answer was recovered by a replay of the same request, never re-applied"
    );
    println!(
        "soak: {} updates in {:?}; {} batches (mean {:.1}, largest {}), {} retries, \
         {} calls: {} faulted (429/500), {} answers lost, {} replays",
        run.updates,
        run.elapsed,
        stats.batches,
        stats.mean_batch(),
        stats.largest_batch,
        stats.retries,
        snap.checkpoint_calls,
        snap.faulted_checkpoints,
        snap.lost_answers,
        snap.replayed_checkpoints,
    );
}

/// Over HTTP: 200 tasks × 50 steps (START submitted and its acknowledgement dropped, SUCCEED
/// awaited) with throttling, server errors and lost answers, the latter as 500s or as dropped
/// connections.
#[cfg(feature = "emulator")]
async fn every_fault_soak(drop_connection_on_lost_answer: bool) {
    let _serial = SERIAL.lock().await;
    let run = soak(Soak {
        tasks: 200,
        steps: 50,
        backend: Backend::Http {
            faults: Faults {
                latency: Duration::from_millis(1),
                jitter: Duration::from_millis(3),
                throttle_rate: 0.1,
                server_error_rate: 0.05,
                lost_answer_rate: 0.05,
                drop_connection_on_lost_answer,
                retry_after: Duration::ZERO,
            },
            seed: 11,
        },
        retry: RetryPolicy {
            max_attempts: 30,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            jitter_seed: Some(5),
            ..RetryPolicy::default()
        },
        await_start: false,
        payload: "\"done\"",
        task_limit: Duration::from_secs(120),
    })
    .await;
    let snap = run.snapshot.expect("a soak over HTTP");
    assert_each_step_started_then_succeeded_once(&snap, run.updates / 2);
}

#[cfg(feature = "emulator")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tasks_of_fifty_steps_under_every_fault_apply_each_step_exactly_once() {
    every_fault_soak(false).await;
}

#[cfg(feature = "emulator")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_lost_as_dropped_connections_are_not_applied_twice_either() {
    every_fault_soak(true).await;
}
