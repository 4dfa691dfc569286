//! The in-process fault test: 100 tasks × 100 updates against a backend that throttles, fails
//! with 5xx and applies-then-loses answers at random (seeded), deduplicating by client token.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_lambda::types::OperationAction;
use checkpoint_batcher::{BatcherConfig, RandomFaults, RetryPolicy};
use common::*;

#[tokio::test(start_paused = true)]
async fn every_update_is_applied_exactly_once_in_order_and_every_caller_answered() {
    const TASKS: usize = 100;
    const STEPS: usize = 50; // a START and a SUCCEED each: 100 updates per task
    let rig = rig(BatcherConfig {
        retry: RetryPolicy {
            max_attempts: 30,
            jitter_seed: Some(3),
            ..RetryPolicy::default()
        },
        ..BatcherConfig::default()
    });
    rig.faulty.set_random(Some(RandomFaults {
        throttle_rate: 0.15,
        transient_rate: 0.1,
        lost_answer_rate: 0.1,
        retry_after: None,
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(3),
        seed: 2026,
    }));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let batcher = rig.batcher.clone();
        tasks.push(tokio::spawn(async move {
            let mut answered = 0;
            for s in 0..STEPS {
                let id = format!("t{t}-s{s}");
                let start_ack = batcher.submit(start(&id)).await.unwrap();
                batcher.checkpoint(succeed(&id, "ok")).await.unwrap();
                start_ack.await.unwrap();
                answered += 2;
            }
            answered
        }));
    }
    let mut answered = 0;
    for task in tasks {
        answered += within(Duration::from_secs(600), task).await.unwrap();
    }
    assert_eq!(answered, TASKS * STEPS * 2, "every caller is answered");

    let applied = rig.memory.applied();
    assert_eq!(
        applied.len(),
        TASKS * STEPS * 2,
        "every update applied exactly once"
    );
    let mut per_task: HashMap<&str, Vec<(String, OperationAction)>> = HashMap::new();
    for u in &applied {
        let task = u.id.split('-').next().unwrap();
        per_task
            .entry(task)
            .or_default()
            .push((u.id.clone(), u.action.clone()));
    }
    for t in 0..TASKS {
        let expected: Vec<(String, OperationAction)> = (0..STEPS)
            .flat_map(|s| {
                let id = format!("t{t}-s{s}");
                [
                    (id.clone(), OperationAction::Start),
                    (id, OperationAction::Succeed),
                ]
            })
            .collect();
        assert_eq!(
            per_task[format!("t{t}").as_str()],
            expected,
            "task {t}'s updates in order, once"
        );
    }
    let stats = rig.batcher.stats();
    assert!(stats.retries > 0, "the faults were exercised");
    assert_eq!(stats.failures, 0);
    assert_eq!(stats.updates, (TASKS * STEPS * 2) as u64);
    assert_eq!(
        stats.batches,
        rig.memory.applied_calls(),
        "each batch applied once"
    );
    let report = rig.batcher.shutdown().await.unwrap();
    assert_eq!(
        report.checkpoint_token,
        rig.memory.current_token(),
        "the final token is the service's"
    );
}
