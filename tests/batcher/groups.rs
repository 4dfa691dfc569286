//! Groups of updates (`submit_all`, `checkpoint_all`) and the drop-in `BatchingBackend` that
//! uses them: a group stays together and in order, in one request whenever it fits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use aws_sdk_lambda::types::{OperationAction, OperationType};
use checkpoint_batcher::{
    BatcherConfig, BatcherError, BatchingBackend, CheckpointBatcher, DurableBackend, ErrorKind,
    FaultyBackend, InMemoryBackend, RandomFaults,
};

/// The Ids each checkpoint call carried, in order.
fn calls(rig: &Rig) -> Vec<Vec<String>> {
    rig.faulty
        .call_log()
        .into_iter()
        .map(|call| call.updates.into_iter().map(|(id, _, _)| id).collect())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_group_that_does_not_fit_the_batch_being_assembled_starts_the_next_one_whole() {
    let rig = rig(BatcherConfig {
        max_batch_updates: 4,
        ..config()
    });
    rig.faulty.hold();
    let first = rig.batcher.submit(start("a")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let mut acks = vec![first];
    for id in ["b", "c", "d"] {
        acks.push(rig.batcher.submit(start(id)).await.unwrap());
    }
    let group = rig
        .batcher
        .submit_all(vec![start("e"), succeed("e", "1")])
        .await
        .unwrap();
    rig.faulty.release();
    for ack in acks {
        within(Duration::from_secs(5), ack).await.unwrap();
    }
    let ack = within(Duration::from_secs(5), group).await.unwrap();
    assert_eq!(ack.batch_updates(), 2);
    assert_eq!(
        ack.position(),
        Some(1),
        "the group's ack is its last update's"
    );
    assert_eq!(
        calls(&rig),
        [vec!["a"], vec!["b", "c", "d"], vec!["e", "e"]],
        "the group is not split across requests when it fits in one"
    );
}

/// The configured limits shape batching, not atomicity: a group larger than them goes whole,
/// alone in its request, and whatever queued behind it goes in the next one.
#[tokio::test(start_paused = true)]
async fn a_group_larger_than_the_configured_limits_goes_whole_in_a_request_of_its_own() {
    let rig = rig(BatcherConfig {
        max_batch_updates: 4,
        max_batch_bytes: 1024,
        ..config()
    });
    rig.faulty.hold();
    let first = rig.batcher.submit(start("a")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let before = rig.batcher.submit(start("b")).await.unwrap();
    let group: Vec<_> = (0..6).map(|i| start(&format!("g{i}"))).collect();
    let group = rig.batcher.submit_all(group).await.unwrap();
    let after = rig.batcher.submit(start("c")).await.unwrap();
    let big = "x".repeat(600);
    let heavy = rig
        .batcher
        .submit_all(vec![succeed("h1", &big), succeed("h2", &big)])
        .await
        .unwrap();
    rig.faulty.release();
    for ack in [first, before, after] {
        within(Duration::from_secs(5), ack).await.unwrap();
    }
    let ack = within(Duration::from_secs(5), group).await.unwrap();
    assert_eq!(ack.batch_updates(), 6, "the whole group in one request");
    let heavy = within(Duration::from_secs(5), heavy).await.unwrap();
    assert_eq!(
        heavy.batch_updates(),
        2,
        "over max_batch_bytes, still whole"
    );
    assert_eq!(
        calls(&rig),
        [
            vec!["a"],
            vec!["b"],
            vec!["g0", "g1", "g2", "g3", "g4", "g5"],
            vec!["c"],
            vec!["h1", "h2"],
        ],
        "a group is never split; nothing joins one past the configured limits; order kept"
    );
    assert_eq!(rig.memory.applied().len(), 11);
}

/// What the service cannot take in one request, it would refuse whole: such a group is refused
/// whole before anything is queued, through the handle and through the trait alike.
#[tokio::test(start_paused = true)]
async fn a_group_past_the_services_request_limits_is_refused_whole_before_anything_is_queued() {
    let rig = rig(config());
    let too_many: Vec<_> = (0..251).map(|i| start(&format!("g{i}"))).collect();
    let refused = rig.batcher.submit_all(too_many.clone()).await.unwrap_err();
    assert!(
        matches!(&refused, BatcherError::InvalidUpdate(bad)
            if bad.field() == "Updates" && bad.reason().contains("251 updates")),
        "{refused}"
    );
    let payload = "x".repeat(200 * 1024);
    let too_large: Vec<_> = (0..4)
        .map(|i| succeed(&format!("p{i}"), &payload))
        .collect();
    let refused = rig.batcher.submit_all(too_large).await.unwrap_err();
    assert!(
        matches!(&refused, BatcherError::InvalidUpdate(bad)
            if bad.field() == "Updates" && bad.reason().contains("request bytes")),
        "{refused}"
    );
    let trait_backend = BatchingBackend::new(rig.batcher.clone(), rig.faulty.clone());
    let refused = trait_backend
        .checkpoint(ARN, "ignored", too_many, None)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Rejected, "{refused}");
    // At the limits a group passes: 250 updates, and as many bytes as fit beside the longest
    // token.
    let most: Vec<_> = (0..250).map(|i| start(&format!("m{i}"))).collect();
    let ack = rig.batcher.checkpoint_all(most).await.unwrap();
    assert_eq!(ack.batch_updates(), 250);
    let three: Vec<_> = (0..3)
        .map(|i| succeed(&format!("q{i}"), &payload))
        .collect();
    assert_eq!(
        rig.batcher
            .checkpoint_all(three)
            .await
            .unwrap()
            .batch_updates(),
        3
    );
    // One update is never refused for size: it goes alone and the service decides.
    let alone = "y".repeat(800 * 1024);
    rig.batcher
        .checkpoint_all(vec![succeed("alone", &alone)])
        .await
        .unwrap();
    rig.batcher.shutdown().await.unwrap();
    assert_eq!(
        rig.memory.applied().len(),
        254,
        "nothing of a refused group was applied"
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_or_invalid_group_is_refused_whole_before_anything_is_queued() {
    let rig = rig(config());
    let empty = rig.batcher.submit_all(Vec::new()).await.unwrap_err();
    assert!(
        matches!(&empty, BatcherError::InvalidUpdate(bad) if bad.field() == "Updates"),
        "{empty}"
    );
    let bad = rig
        .batcher
        .submit_all(vec![start("ok"), start("not ok")])
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, BatcherError::InvalidUpdate(bad) if bad.field() == "Id"),
        "{bad}"
    );
    rig.batcher.shutdown().await.unwrap();
    assert_eq!(rig.faulty.calls(), 0, "nothing of a refused group was sent");
}

/// A group that breaks a rule of one request would be refused whole by the service; split at
/// the rule, its first part would be applied alone (an EXECUTION completion, say) and the rest
/// refused behind it. It is refused before anything is queued, naming the update, and code
/// written against the trait gets a rejected request, as from the service.
#[tokio::test(start_paused = true)]
async fn a_group_that_breaks_a_request_rule_is_refused_whole_not_split() {
    let rig = rig(config());
    let done = update("exec", OperationType::Execution, OperationAction::Succeed);
    let after_execution = rig
        .batcher
        .submit_all(vec![done.clone(), start("x")])
        .await
        .unwrap_err();
    assert!(
        matches!(&after_execution, BatcherError::InvalidUpdate(bad)
            if bad.field() == "Updates" && bad.reason().contains("update 1 (Id \"x\")")),
        "{after_execution}"
    );
    let twice = rig
        .batcher
        .submit_all(vec![start("a"), succeed("a", "1"), succeed("a", "2")])
        .await
        .unwrap_err();
    assert!(
        matches!(&twice, BatcherError::InvalidUpdate(bad) if bad.reason().contains("update 2")),
        "{twice}"
    );
    let trait_backend = BatchingBackend::new(rig.batcher.clone(), rig.faulty.clone());
    let refused = trait_backend
        .checkpoint(ARN, "ignored", vec![done, start("y")], None)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Rejected, "{refused}");
    // A START and one more update of a STEP is a legal pair, and goes as one request.
    rig.batcher
        .checkpoint_all(vec![start("s"), succeed("s", "1")])
        .await
        .unwrap();
    rig.batcher.shutdown().await.unwrap();
    assert_eq!(calls(&rig), [["s", "s"]], "only the legal group was sent");
}

#[tokio::test(start_paused = true)]
async fn code_written_against_the_trait_gets_coalesced_calls_and_the_right_token_chain() {
    const TASKS: usize = 200;
    const CALLS: usize = 50;
    let memory = Arc::new(InMemoryBackend::new());
    let faulty = Arc::new(FaultyBackend::new(memory.clone()));
    faulty.set_random(Some(RandomFaults {
        throttle_rate: 0.05,
        lost_answer_rate: 0.02,
        latency: Duration::from_millis(5),
        jitter: Duration::from_millis(2),
        seed: 0x6E0,
        ..RandomFaults::default()
    }));
    let mut config = config();
    config.retry.max_attempts = 20;
    let token = memory.current_token().unwrap();
    let batcher = CheckpointBatcher::spawn(faulty.clone(), ARN, token, config).unwrap();
    let backend = Arc::new(BatchingBackend::new(batcher.clone(), faulty.clone()));

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let backend = backend.clone();
        tasks.push(tokio::spawn(async move {
            let mut token = format!("made-up-{task}");
            for call in 0..CALLS {
                let id = format!("t{task}-c{call}");
                let output = backend
                    .checkpoint(ARN, &token, vec![start(&id), succeed(&id, "1")], Some(&id))
                    .await
                    .expect("every call is durable");
                // Threading the returned token, as such code does; stale by the next call.
                token = output.checkpoint_token.expect("the chain goes on");
            }
        }));
    }
    for task in tasks {
        within(Duration::from_secs(600), task).await.unwrap();
    }
    batcher.shutdown().await.unwrap();

    let applied = memory.applied();
    assert_eq!(
        applied.len(),
        TASKS * CALLS * 2,
        "every update applied exactly once"
    );
    let mut next: HashMap<usize, usize> = HashMap::new();
    for pair in applied.chunks(2) {
        let [begin, end] = pair else {
            panic!("updates come in pairs")
        };
        assert_eq!(begin.id, end.id, "a call's two updates stay together");
        assert_eq!(
            (begin.action.clone(), end.action.clone()),
            (OperationAction::Start, OperationAction::Succeed)
        );
        assert_eq!(begin.r#type, OperationType::Step);
        let (task, call) = begin
            .id
            .trim_start_matches('t')
            .split_once("-c")
            .map(|(t, c)| (t.parse::<usize>().unwrap(), c.parse::<usize>().unwrap()))
            .unwrap();
        let expected = next.entry(task).or_default();
        assert_eq!(call, *expected, "task {task}'s calls are applied in order");
        *expected += 1;
    }
    for call in faulty.call_log() {
        let ids: Vec<&String> = call.updates.iter().map(|(id, _, _)| id).collect();
        for pair in ids.chunks(2) {
            assert!(
                pair.len() == 2 && pair[0] == pair[1],
                "a group is never split across requests when it fits: {ids:?}"
            );
        }
    }
    assert_eq!(faulty.max_in_flight(), 1, "one call in flight at a time");
    let requests = faulty.call_log().iter().filter(|c| c.succeeded).count();
    assert!(
        requests <= TASKS * CALLS * 2 / 200,
        "calls from 200 tasks coalesce: {requests} requests applied 20,000 updates"
    );
}
