//! Workflows that complete in one invocation: sequential steps, `parallel` with 50 branches,
//! `map` with 200 items, nested child contexts.

use checkpoint_batcher::emulator::Faults;
use serde_json::json;

use crate::handlers::{self, BRANCHES, MAP_ITEMS, SEQUENTIAL_STEPS, STEPS_PER_BRANCH};
use crate::rig::{assert_each_operation_applied_once, finish, invoke, named, report, succeeded};
use crate::support::{emulator, snapshot};

#[tokio::test]
async fn sequential_steps_succeed_with_one_request_per_update() {
    let emulator = emulator(Faults::none(), 1).await;
    let (arn, _) = emulator.start_execution("sequential");

    let output = invoke(&emulator, &arn, 1, handlers::sequential).await;

    let sum: u64 = (0..SEQUENTIAL_STEPS).sum();
    assert_eq!(
        output,
        succeeded(json!({"sum": sum})),
        "the steps' values summed"
    );
    let held = finish(&emulator, &arn, &output);
    report("sequential", &held);
    let types = assert_each_operation_applied_once(&held);
    assert_eq!(
        types["STEP"], SEQUENTIAL_STEPS as usize,
        "one STEP per step"
    );
    // Each update waits for the previous one to be durable: nothing to coalesce.
    assert_eq!(
        held.applied_checkpoints,
        2 * SEQUENTIAL_STEPS,
        "a sequential handler awaits each START and SUCCEED: one request each"
    );
    assert_eq!(
        held.checkpoint_calls, held.applied_checkpoints,
        "no call refused"
    );
}

#[tokio::test]
async fn fifty_parallel_branches_succeed_with_their_updates_coalesced() {
    let emulator = emulator(Faults::none(), 2).await;
    let (arn, _) = emulator.start_execution("parallel");

    let output = invoke(&emulator, &arn, 2, handlers::parallel).await;

    assert_eq!(
        output,
        succeeded(json!({"sum": handlers::parallel_sum()})),
        "every branch's steps summed"
    );
    let held = finish(&emulator, &arn, &output);
    report("parallel", &held);
    let types = assert_each_operation_applied_once(&held);
    assert_eq!(types["STEP"], (BRANCHES * STEPS_PER_BRANCH) as usize);
    assert_eq!(
        types["CONTEXT"],
        BRANCHES as usize + 1,
        "the parallel block and its branches"
    );
    assert_eq!(
        named(&held, "fan-out").sub_type.as_deref(),
        Some("Parallel")
    );
    let updates = 2 + BRANCHES * (2 + 2 * STEPS_PER_BRANCH);
    assert_eq!(
        held.applied.len() as u64,
        updates,
        "402 updates, each applied once"
    );
    assert_parallel_requests(held.applied_checkpoints);
}

/// The block's START and SUCCEED go alone, and each branch awaits its eight updates one after
/// another: at least 10 requests. On the test's one-threaded runtime every branch queues its
/// next update before the batcher runs, so each round is one request and the floor is what
/// is observed; twice the floor leaves room for a round split in two. Without the batcher,
/// each of the 402 updates is a request.
pub fn assert_parallel_requests(requests: u64) {
    assert!(
        (10..=20).contains(&requests),
        "50 branches' 402 updates coalesce into 10 to 20 requests, got {requests}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_branches_on_a_multi_threaded_runtime_succeed_with_their_updates_coalesced()
{
    let emulator = emulator(Faults::none(), 15).await;
    let (arn, _) = emulator.start_execution("parallel-threads");

    let output = invoke(&emulator, &arn, 15, handlers::parallel).await;

    assert_eq!(
        output,
        succeeded(json!({"sum": handlers::parallel_sum()})),
        "every branch's steps summed"
    );
    let held = finish(&emulator, &arn, &output);
    report("parallel, two threads", &held);
    assert_each_operation_applied_once(&held);
    // Branches on two threads reach the queue at different times: rounds may split, but
    // every update queued during a call goes in the next one.
    assert!(
        (10..=PARALLEL_THREADS_MOST_REQUESTS).contains(&held.applied_checkpoints),
        "402 updates from two threads coalesce into 10 to {PARALLEL_THREADS_MOST_REQUESTS} requests, got {}",
        held.applied_checkpoints
    );
}

/// The most requests `parallel` may take on two threads, far below one per update (402).
const PARALLEL_THREADS_MOST_REQUESTS: u64 = 100;

#[tokio::test]
async fn a_map_of_two_hundred_items_succeeds_with_their_updates_coalesced() {
    let emulator = emulator(Faults::none(), 3).await;
    let (arn, _) = emulator.start_execution("map");

    let output = invoke(&emulator, &arn, 3, handlers::map).await;

    let sum: u64 = (0..MAP_ITEMS).sum();
    assert_eq!(
        output,
        succeeded(json!({"sum": sum})),
        "every item's value summed"
    );
    let held = finish(&emulator, &arn, &output);
    report("map", &held);
    let types = assert_each_operation_applied_once(&held);
    assert_eq!(types["STEP"], MAP_ITEMS as usize);
    assert_eq!(
        types["CONTEXT"],
        MAP_ITEMS as usize + 1,
        "the map block and its items"
    );
    for i in [0, MAP_ITEMS / 2, MAP_ITEMS - 1] {
        assert_eq!(
            named(&held, &format!("item-{i}")).result.as_deref(),
            Some(i.to_string().as_str()),
            "item-{i}'s step result is {i}"
        );
    }
    assert_eq!(
        held.applied.len() as u64,
        2 + 4 * MAP_ITEMS,
        "802 updates, each applied once"
    );
    // The block's START and SUCCEED go alone, and each item awaits its four updates in turn:
    // at least 2 + 4 requests (each round of 200 fits one). Observed at the floor, as for
    // `parallel`; twice the floor leaves room for a round split in two.
    assert!(
        (6..=12).contains(&held.applied_checkpoints),
        "200 items' 802 updates coalesce into 6 to 12 requests, got {}",
        held.applied_checkpoints
    );
}

#[tokio::test]
async fn nested_child_contexts_succeed_with_one_request_per_update() {
    let emulator = emulator(Faults::none(), 4).await;
    let (arn, _) = emulator.start_execution("nested");

    let output = invoke(&emulator, &arn, 4, handlers::nested).await;

    assert_eq!(
        output,
        succeeded(json!({"sum": 1111})),
        "every step of both contexts summed"
    );
    let held = finish(&emulator, &arn, &output);
    report("nested", &held);
    let types = assert_each_operation_applied_once(&held);
    assert_eq!(types["CONTEXT"], 2, "the outer and the inner context");
    assert_eq!(types["STEP"], 4);
    // durable-lambda sets no ParentId on a child context or on a step inside one (only on
    // parallel branches and map items): the contexts are known by name.
    assert_eq!(named(&held, "inner").sub_type.as_deref(), Some("Context"));
    assert_eq!(named(&held, "outer").sub_type.as_deref(), Some("Context"));
    assert_eq!(snapshot(&emulator, &arn).applied.len(), 12);
    assert_eq!(
        held.applied_checkpoints, 12,
        "a context's updates are awaited one after another: one request each"
    );
}
