//! The `durable_lambda_map` example's handler, through the runner `main` uses, against the
//! emulator: 2,000 items 200 at a time, and input it refuses.

#[allow(
    dead_code,
    reason = "the tests call `handler`; `main` waits for the Lambda runtime"
)]
#[path = "../../examples/durable_lambda_map.rs"]
pub mod durable_lambda_map;

use checkpoint_batcher::emulator::Faults;
use serde_json::{Value, json};

use crate::rig::{assert_each_operation_applied_once, finish, invoke, named, report, succeeded};
use crate::support::{emulator, snapshot};

const ITEMS: u64 = 2000;
const CONCURRENCY: u64 = 200;

#[tokio::test]
async fn two_thousand_items_two_hundred_at_a_time_succeed_with_their_updates_coalesced() {
    let emulator = emulator(Faults::none(), 13).await;
    let input = json!({"items": ITEMS, "concurrency": CONCURRENCY}).to_string();
    let (arn, _) = emulator.start_execution_with_input("durable-lambda-map", Some(&input));

    let output = invoke(&emulator, &arn, 13, durable_lambda_map::handler).await;

    let sum: u64 = (0..ITEMS).map(|i| i * i).sum();
    assert_eq!(
        output,
        succeeded(json!({"items": ITEMS, "sum": sum})),
        "the result is the sum of the squares"
    );
    let held = finish(&emulator, &arn, &output);
    report("durable_lambda_map", &held);
    let types = assert_each_operation_applied_once(&held);
    assert_eq!(types["STEP"], ITEMS as usize, "one step per item");
    for i in [0, 1, ITEMS / 2, ITEMS - 1] {
        assert_eq!(
            named(&held, &format!("item-{i}")).result.as_deref(),
            Some((i * i).to_string().as_str()),
            "item-{i}'s step result is i*i"
        );
    }
    assert_eq!(
        held.applied.len() as u64,
        2 + 4 * ITEMS,
        "each update applied once"
    );
    // Ten waves of 200 items, each item awaiting its four updates in turn: at least 2 + 40
    // requests (each round of 200 fits one). Observed at the floor on the test's one-threaded
    // runtime; twice the floor leaves room for rounds split in two. Without the batcher, each
    // of the 8,002 updates is a request.
    assert!(
        (42..=84).contains(&held.applied_checkpoints),
        "8,002 updates coalesce into 42 to 84 requests, got {}",
        held.applied_checkpoints
    );
}

async fn refused(input: Value, field: &str) {
    let emulator = emulator(Faults::none(), 14).await;
    let (arn, _) = emulator.start_execution_with_input("bad-input", Some(&input.to_string()));

    let output = invoke(&emulator, &arn, 14, durable_lambda_map::handler).await;

    assert_eq!(
        output["Status"], "FAILED",
        "bad input fails the execution: {input}"
    );
    let message = output["Error"]["ErrorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("`{field}`")),
        "the error names the field at fault ({field}), got {message:?}"
    );
    assert!(
        snapshot(&emulator, &arn).applied.is_empty(),
        "nothing is checkpointed for bad input"
    );
}

#[tokio::test]
async fn an_item_count_given_as_a_string_fails_the_execution_naming_items() {
    refused(json!({"items": "3", "concurrency": 2}), "items").await;
}

#[tokio::test]
async fn a_missing_concurrency_fails_the_execution_naming_concurrency() {
    refused(json!({"items": 3}), "concurrency").await;
}

#[tokio::test]
async fn a_concurrency_of_zero_fails_the_execution_naming_concurrency() {
    refused(json!({"items": 3, "concurrency": 0}), "concurrency").await;
}
