//! The `durable_map` example's handler, called directly (not through the Lambda runtime) against
//! the emulator over real HTTP: a large map in few calls, a crash halfway and a second
//! invocation that replays, the same under faults, and each documented output (a result over
//! the response limit, a revoked token, a rejected update, an invocation-scope failure). Also
//! `CheckpointBatcher::for_invocation`, with which the handler starts.

#[allow(
    dead_code,
    reason = "the tests call `handle`; `main` waits for the Lambda runtime"
)]
#[path = "../../examples/durable_map.rs"]
mod example;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{start, succeed};
use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::OperationUpdate;
use checkpoint_batcher::emulator::{Emulator, ExecutionSnapshot, Faults};
use checkpoint_batcher::invocation::{
    InvocationError, InvocationEvent, InvocationOutput, MAX_RESPONSE_BYTES,
};
use checkpoint_batcher::{
    BackendError, BatcherConfig, BatcherError, CheckpointBatcher, DurableBackend, ErrorKind,
    RealBackend, RetryPolicy, SERVICE_MAX_EXECUTION_PAYLOAD_BYTES,
};
use example::handle;
use serde_json::{Value, json};

const ITEMS: u64 = 2000;
const CONCURRENCY: u64 = 200;

/// Generous, fast retries: a millisecond's backoff, twenty attempts.
fn config() -> BatcherConfig {
    BatcherConfig {
        retry: RetryPolicy {
            max_attempts: 20,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            jitter_seed: Some(7),
            ..RetryPolicy::default()
        },
        ..BatcherConfig::default()
    }
}

async fn emulator(faults: Faults) -> Emulator {
    Emulator::builder()
        .faults(faults)
        .start()
        .await
        .expect("the emulator binds 127.0.0.1:0")
}

fn backend(emulator: &Emulator) -> Arc<dyn DurableBackend> {
    Arc::new(RealBackend::new(emulator.client()))
}

fn map_input(items: u64, concurrency: u64) -> String {
    json!({"items": items, "concurrency": concurrency}).to_string()
}

/// The output the handler must return for a map of `items`: their squares summed.
fn succeeded(items: u64) -> Value {
    let sum: u64 = (0..items).map(|i| i * i).sum();
    InvocationOutput::succeeded(json!({"items": items, "sum": sum}).to_string()).to_value()
}

fn snapshot(emulator: &Emulator, arn: &str) -> ExecutionSnapshot {
    emulator.execution(arn).expect("the execution exists")
}

fn succeeded_items(snapshot: &ExecutionSnapshot) -> HashSet<String> {
    snapshot
        .operations
        .iter()
        .filter(|op| op.op_type == "STEP" && op.status == "SUCCEEDED")
        .map(|op| op.id.clone())
        .collect()
}

/// Every item's step was started once and succeeded once, with `i*i` as its result.
fn assert_each_item_succeeded_once(snapshot: &ExecutionSnapshot, items: u64) {
    for i in 0..items {
        let id = format!("item-{i}");
        let op = snapshot.operation(&id).expect("every item has a step");
        assert_eq!(
            op.history,
            ["START", "SUCCEED"],
            "{id} is started once and succeeds once: never a second START, never a START after SUCCEED"
        );
        assert_eq!(
            op.result.as_deref(),
            Some((i * i).to_string().as_str()),
            "{id}'s result is i*i"
        );
    }
}

#[tokio::test]
async fn two_thousand_items_two_hundred_at_a_time_succeed_in_about_one_call_per_125_items() {
    let emulator = emulator(Faults::none()).await;
    let (arn, _) = emulator.start_execution_with_input("map", Some(&map_input(ITEMS, CONCURRENCY)));
    let event = emulator.invocation_event(&arn).expect("the execution runs");

    let output = handle(backend(&emulator), event, config()).await.unwrap();

    assert_eq!(
        output,
        succeeded(ITEMS),
        "the result is the sum of the squares"
    );
    let held = snapshot(&emulator, &arn);
    assert_each_item_succeeded_once(&held, ITEMS);
    assert_eq!(held.applied.len(), 4000, "a START and a SUCCEED per item");
    let most = ITEMS / 125 * 2;
    assert!(
        held.applied_checkpoints <= most,
        "the batcher coalesces: 4000 updates in at most {most} calls, got {}",
        held.applied_checkpoints
    );
    // The service completes the execution from the answer.
    emulator
        .finish_invocation(&arn, &output)
        .expect("an answer the service accepts");
    let held = snapshot(&emulator, &arn);
    let execution = held.operation(&held.execution_operation_id).unwrap();
    assert_eq!(execution.status, "SUCCEEDED");
    assert!(held.completed);
}

/// Runs the map, cancels the first invocation once about half the items succeeded, then invokes
/// the handler again with the service's fresh event.
async fn crash_halfway_then_invoke_again(faults: Faults) {
    let emulator = emulator(faults).await;
    let (arn, _) = emulator.start_execution_with_input("map", Some(&map_input(ITEMS, CONCURRENCY)));
    let event = emulator.invocation_event(&arn).expect("the execution runs");
    let first = tokio::spawn(handle(backend(&emulator), event, config()));
    let mut polls = 0;
    while succeeded_items(&snapshot(&emulator, &arn)).len() < (ITEMS / 2) as usize {
        assert!(
            !first.is_finished(),
            "the first invocation must still be running when it is cut"
        );
        polls += 1;
        assert!(polls < 10_000, "half the items succeed within 10 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    first.abort();
    assert!(
        first.await.unwrap_err().is_cancelled(),
        "the first invocation was cut before it could finish"
    );
    // As the service does before it invokes again: the crashed invocation's token goes stale,
    // so its batcher, still draining, can write nothing more.
    emulator.rotate_token(&arn).expect("the execution runs");
    let before = snapshot(&emulator, &arn);
    let done_before = succeeded_items(&before);
    assert!(
        (done_before.len() as u64) < ITEMS,
        "the crash left items to do"
    );

    let event = emulator.invocation_event(&arn).expect("the execution runs");
    let output = handle(backend(&emulator), event, config()).await.unwrap();

    assert_eq!(
        output,
        succeeded(ITEMS),
        "the second invocation completes the map with the right sum"
    );
    let after = snapshot(&emulator, &arn);
    assert_each_item_succeeded_once(&after, ITEMS);
    let rerun: Vec<_> = after.applied[before.applied.len()..]
        .iter()
        .filter(|update| done_before.contains(&update.id))
        .collect();
    assert!(
        rerun.is_empty(),
        "a step SUCCEEDED in the history is not run again, got {rerun:?}"
    );
}

#[tokio::test]
async fn a_map_cut_halfway_completes_on_the_next_invocation_without_running_a_step_twice() {
    crash_halfway_then_invoke_again(Faults::none()).await;
}

#[tokio::test]
async fn a_map_cut_halfway_completes_on_the_next_invocation_under_throttling_5xx_and_lost_answers()
{
    crash_halfway_then_invoke_again(Faults {
        throttle_rate: 0.1,
        server_error_rate: 0.05,
        lost_answer_rate: 0.05,
        ..Faults::default()
    })
    .await;
}

#[tokio::test]
async fn a_started_step_sends_only_its_succeed_and_a_succeeded_step_its_stored_result() {
    let emulator = emulator(Faults::none()).await;
    let (arn, token) = emulator.start_execution_with_input("map", Some(&map_input(4, 4)));
    // item-0 STARTED only; item-1 SUCCEEDED with a stored result that is not 1*1, to tell a
    // replayed result from a recomputed one.
    RealBackend::new(emulator.client())
        .checkpoint(
            &arn,
            &token,
            vec![start("item-0"), start("item-1"), succeed("item-1", "100")],
            Some("setup"),
        )
        .await
        .expect("the setup checkpoint is applied");
    let event = emulator.invocation_event(&arn).expect("the execution runs");

    let output = handle(backend(&emulator), event, config()).await.unwrap();

    let sum = 100 + 2 * 2 + 3 * 3;
    assert_eq!(
        output,
        InvocationOutput::succeeded(json!({"items": 4, "sum": sum}).to_string()).to_value(),
        "a SUCCEEDED step's stored result is used, not recomputed"
    );
    let held = snapshot(&emulator, &arn);
    for id in ["item-0", "item-1", "item-2", "item-3"] {
        let op = held.operation(id).expect("every item has a step");
        assert_eq!(
            op.history,
            ["START", "SUCCEED"],
            "{id}: a STARTED step is not started again, a SUCCEEDED one is not run again"
        );
    }
}

#[tokio::test]
async fn a_result_over_the_response_limit_is_checkpointed_and_the_output_has_no_result() {
    let emulator = emulator(Faults::none()).await;
    // A result just short of the EXECUTION payload limit, whose output is over the response
    // limit once its quotes are escaped and the envelope added.
    let pad = MAX_RESPONSE_BYTES - 40;
    let result = json!({"items": 2, "sum": 1, "pad": "x".repeat(pad)}).to_string();
    assert!(result.len() <= SERVICE_MAX_EXECUTION_PAYLOAD_BYTES);
    let inline = serde_json::to_vec(&InvocationOutput::succeeded(result.clone())).unwrap();
    assert!(inline.len() > MAX_RESPONSE_BYTES);
    let input = json!({"items": 2, "concurrency": 2, "pad": pad}).to_string();
    let (arn, _) = emulator.start_execution_with_input("big", Some(&input));
    let event = emulator.invocation_event(&arn).expect("the execution runs");

    let output = handle(backend(&emulator), event, config()).await.unwrap();

    assert_eq!(
        output,
        json!({"Status": "SUCCEEDED"}),
        "a result over the response limit leaves Result out of the output"
    );
    let held = snapshot(&emulator, &arn);
    let execution = held
        .operation(&held.execution_operation_id)
        .expect("the EXECUTION operation exists");
    assert_eq!(
        (execution.status.as_str(), held.completed),
        ("SUCCEEDED", true),
        "the execution is completed by an EXECUTION SUCCEED update"
    );
    assert!(
        execution.result.as_deref() == Some(result.as_str()),
        "the EXECUTION SUCCEED update carries the result as its payload"
    );
}

#[tokio::test]
async fn a_token_refused_as_stale_is_an_error_for_lambda_to_retry() {
    let emulator = emulator(Faults::none()).await;
    let (arn, _) = emulator.start_execution_with_input("map", Some(&map_input(10, 10)));
    let event = emulator.invocation_event(&arn).expect("the execution runs");
    emulator.rotate_token(&arn).expect("the execution runs");

    let error = handle(backend(&emulator), event, config())
        .await
        .expect_err(
            "a stale token fails the invocation: the service invokes again, with a fresh one",
        );
    let stale = error
        .downcast_ref::<BatcherError>()
        .and_then(BatcherError::kind);
    assert_eq!(stale, Some(ErrorKind::InvalidCheckpointToken), "{error}");
    assert!(
        snapshot(&emulator, &arn).applied.is_empty(),
        "nothing is written with a stale token"
    );
}

/// Passes every call to the emulator, but changes what checkpoints answer.
#[derive(Debug)]
struct Twisted {
    inner: RealBackend,
    twist: Twist,
}

#[derive(Clone, Copy, Debug)]
enum Twist {
    /// Applies the checkpoint and answers without a new token: the service revoked it.
    DropToken,
    /// Refuses every checkpoint with this kind of error.
    Fail(ErrorKind),
}

#[async_trait]
impl DurableBackend for Twisted {
    async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        match self.twist {
            Twist::Fail(kind) => Err(BackendError::new(kind, "refused by the test's backend")),
            Twist::DropToken => {
                let answer = self
                    .inner
                    .checkpoint(arn, checkpoint_token, updates, client_token)
                    .await?;
                Ok(CheckpointDurableExecutionOutput::builder()
                    .set_new_execution_state(answer.new_execution_state().cloned())
                    .build())
            }
        }
    }

    async fn get_execution_state(
        &self,
        arn: &str,
        checkpoint_token: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        self.inner
            .get_execution_state(arn, checkpoint_token, marker, max_items)
            .await
    }
}

/// Invokes a map of 10 items once through a [`Twisted`] backend.
async fn invoke_twisted(twist: Twist, config: BatcherConfig) -> Result<Value, String> {
    let emulator = emulator(Faults::none()).await;
    let (arn, _) = emulator.start_execution_with_input("map", Some(&map_input(10, 10)));
    let event = emulator.invocation_event(&arn).expect("the execution runs");
    let backend = Arc::new(Twisted {
        inner: RealBackend::new(emulator.client()),
        twist,
    });
    handle(backend, event, config)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn an_answer_without_a_new_token_returns_pending() {
    let output = invoke_twisted(Twist::DropToken, config()).await.unwrap();
    assert_eq!(
        output,
        InvocationOutput::Pending.to_value(),
        "a checkpoint answered without a token before the execution completed means the token was revoked: PENDING"
    );
}

#[tokio::test]
async fn a_rejected_update_fails_the_execution_with_the_error() {
    let output = invoke_twisted(Twist::Fail(ErrorKind::Rejected), config())
        .await
        .unwrap();
    assert_eq!(
        output["Status"], "FAILED",
        "an execution-scope failure is FAILED"
    );
    assert_eq!(output["Error"]["ErrorType"], "CheckpointRejected");
    let message = output["Error"]["ErrorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("refused by the test's backend"),
        "the output's error carries the service's message, got {message:?}"
    );
}

#[tokio::test]
async fn a_failure_that_outlasts_the_retries_is_an_error_for_lambda_to_retry() {
    let mut config = config();
    config.retry.max_attempts = 2;
    let error = invoke_twisted(Twist::Fail(ErrorKind::Transient), config)
        .await
        .expect_err("an invocation-scope failure is not an output");
    assert!(
        error.contains("refused by the test's backend"),
        "the error says what failed, got {error:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Starting an invocation: `CheckpointBatcher::for_invocation`

/// An execution holding `steps` succeeded steps, served `page_size` operations a page, and the
/// event that invokes it.
async fn paged_execution(page_size: usize, steps: usize) -> (Emulator, String, InvocationEvent) {
    let emulator = Emulator::builder()
        .page_size(page_size)
        .start()
        .await
        .expect("the emulator binds 127.0.0.1:0");
    let (arn, token) = emulator.start_execution_with_input("map", Some(&map_input(3, 1)));
    let updates = (0..steps)
        .flat_map(|i| {
            [
                start(&format!("item-{i}")),
                succeed(&format!("item-{i}"), "0"),
            ]
        })
        .collect();
    RealBackend::new(emulator.client())
        .checkpoint(&arn, &token, updates, Some("setup"))
        .await
        .expect("the setup checkpoint is applied");
    let event = InvocationEvent::from_value(emulator.invocation_event(&arn).unwrap())
        .expect("the emulator's event parses");
    (emulator, arn, event)
}

#[tokio::test]
async fn for_invocation_reads_every_page_then_checkpoints_with_the_events_token() {
    let (emulator, arn, event) = paged_execution(2, 5).await;
    assert!(
        event.next_marker().is_some(),
        "the event holds one page of several"
    );

    let (batcher, history) =
        CheckpointBatcher::for_invocation(backend(&emulator), &event, config())
            .await
            .expect("the invocation starts");

    assert_eq!(
        history.len(),
        6,
        "the history holds every page: the EXECUTION and 5 steps"
    );
    assert!(history.get("item-4").is_some(), "the last page is read");
    batcher
        .checkpoint(start("item-5"))
        .await
        .expect("the batcher starts from the event's token, which the pages did not consume");
    batcher.shutdown().await.expect("everything is durable");
    assert_eq!(
        snapshot(&emulator, &arn).applied_checkpoints,
        2,
        "setup, then the new step"
    );
}

#[tokio::test]
async fn for_invocation_refuses_an_invalid_configuration_before_any_call() {
    let (emulator, arn, event) = paged_execution(2, 5).await;
    let config = BatcherConfig {
        max_batch_updates: 0,
        ..config()
    };

    let error = CheckpointBatcher::for_invocation(backend(&emulator), &event, config)
        .await
        .expect_err("a batch of zero updates is out of range");

    assert!(
        matches!(&error, InvocationError::Config(e) if e.field() == "max_batch_updates"),
        "the error names the field, got {error:?}"
    );
    let held = snapshot(&emulator, &arn);
    assert_eq!(
        (held.state_calls, held.checkpoint_calls),
        (0, 1),
        "a configuration out of range is refused before any page is read (the one checkpoint is the setup's)"
    );
}

// ---------------------------------------------------------------------------------------------
// Refusing what cannot be mended: every FAILED path, and the batcher drained before it

#[tokio::test]
async fn an_input_with_a_field_missing_or_of_the_wrong_type_fails_the_execution_naming_the_field() {
    let cases = [
        (Some(r#"{"items": "3", "concurrency": 1}"#), "items"),
        (Some(r#"{"concurrency": 1}"#), "items"),
        (Some(r#"{"items": 3}"#), "concurrency"),
        (Some(r#"{"items": 3, "concurrency": 0}"#), "concurrency"),
        (Some(r#"{"items": -1, "concurrency": 1}"#), "items"),
        // Past the most whose sum of squares a u64 holds.
        (Some(r#"{"items": 3000000, "concurrency": 1}"#), "items"),
        (
            Some(r#"{"items": 1, "concurrency": 1, "pad": 7000000}"#),
            "pad",
        ),
        (None, "items"),
    ];
    let emulator = emulator(Faults::none()).await;
    for (input, field) in cases {
        let (arn, _) = emulator.start_execution_with_input("bad", input);
        let event = emulator.invocation_event(&arn).expect("the execution runs");

        let output = handle(backend(&emulator), event, config())
            .await
            .expect("bad input is an output, not an error for Lambda to retry forever");

        assert_eq!(
            (
                output["Status"].as_str(),
                output["Error"]["ErrorType"].as_str()
            ),
            (Some("FAILED"), Some("InvalidInput")),
            "{input:?}: input the map cannot use fails the execution"
        );
        let message = output["Error"]["ErrorMessage"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{input:?}: the error names the field {field}, got {message:?}"
        );
        assert!(
            snapshot(&emulator, &arn).applied.is_empty(),
            "{input:?}: nothing is written for input refused"
        );
    }
}

#[tokio::test]
async fn an_event_the_handler_cannot_read_fails_the_execution_instead_of_being_retried_forever() {
    let emulator = emulator(Faults::none()).await;
    let (arn, _) = emulator.start_execution_with_input("map", Some(&map_input(3, 1)));
    let mut event = emulator.invocation_event(&arn).expect("the execution runs");
    event["InitialExecutionState"]["Operations"][0]["StartTimestamp"] = json!("yesterday");

    let output = handle(backend(&emulator), event, config())
        .await
        .expect("every invocation would get the same event: an output, not an error");

    assert_eq!(
        (
            output["Status"].as_str(),
            output["Error"]["ErrorType"].as_str()
        ),
        (Some("FAILED"), Some("InvalidEvent")),
        "an unreadable event fails the execution, got {output}"
    );
    assert_eq!(snapshot(&emulator, &arn).checkpoint_calls, 0);
}

/// Passes every call to the emulator and counts the checkpoints started after the handler
/// answered.
#[derive(Debug)]
struct Watched {
    inner: RealBackend,
    answered: std::sync::atomic::AtomicBool,
    late_calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl DurableBackend for Watched {
    async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        use std::sync::atomic::Ordering;
        if self.answered.load(Ordering::SeqCst) {
            let _before = self.late_calls.fetch_add(1, Ordering::SeqCst);
        }
        self.inner
            .checkpoint(arn, checkpoint_token, updates, client_token)
            .await
    }

    async fn get_execution_state(
        &self,
        arn: &str,
        checkpoint_token: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        self.inner
            .get_execution_state(arn, checkpoint_token, marker, max_items)
            .await
    }
}

#[tokio::test]
async fn a_failed_map_drains_its_batcher_before_it_answers_so_nothing_is_written_after() {
    use std::sync::atomic::Ordering;
    let emulator = emulator(Faults::none()).await;
    let (arn, token) = emulator.start_execution_with_input("map", Some(&map_input(10, 10)));
    // item-5 succeeded earlier with a result that is not a number: the map fails there, while
    // items 0 to 4 have their updates queued.
    RealBackend::new(emulator.client())
        .checkpoint(
            &arn,
            &token,
            vec![start("item-5"), succeed("item-5", "\"five\"")],
            Some("setup"),
        )
        .await
        .expect("the setup checkpoint is applied");
    let event = emulator.invocation_event(&arn).expect("the execution runs");
    let watched = Arc::new(Watched {
        inner: RealBackend::new(emulator.client()),
        answered: false.into(),
        late_calls: 0.into(),
    });

    let output = handle(watched.clone(), event, config()).await.unwrap();
    watched.answered.store(true, Ordering::SeqCst);
    let applied_at_answer = snapshot(&emulator, &arn).applied.len();

    assert_eq!(
        (
            output["Status"].as_str(),
            output["Error"]["ErrorType"].as_str()
        ),
        (Some("FAILED"), Some("InvalidHistory")),
        "a stored result the map cannot read fails the execution, got {output}"
    );
    // The batcher's task holds the backend until it ends: wait for it to let go.
    let mut polls = 0;
    while Arc::strong_count(&watched) > 1 {
        polls += 1;
        assert!(polls < 10_000, "the batcher ends within 10 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        watched.late_calls.load(Ordering::SeqCst),
        0,
        "on a FAILED path the batcher is shut down before the answer: no checkpoint after it"
    );
    assert_eq!(
        snapshot(&emulator, &arn).applied.len(),
        applied_at_answer,
        "nothing is written after the output"
    );
}
