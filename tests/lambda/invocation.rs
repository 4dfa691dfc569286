//! The invocation of a durable function: the event parsed into the SDK's types, the complete
//! history loaded across pages (through a scripted double and through the emulator over real
//! HTTP), and the output in the service's exact format.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::*;
use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::primitives::DateTime;
use aws_sdk_lambda::types::{
    ErrorObject, Operation, OperationStatus, OperationType, OperationUpdate,
};
use checkpoint_batcher::emulator::{Emulator, Faults};
use checkpoint_batcher::invocation::{
    History, InvocationError, InvocationEvent, InvocationOutput, MAX_RESPONSE_BYTES,
};
use checkpoint_batcher::{BackendError, DurableBackend, ErrorKind, RealBackend, RetryPolicy};
use serde_json::{Value, json};

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/x/1";

fn execution_op(input: &str) -> Value {
    json!({"Id": "exec", "Type": "EXECUTION", "Status": "STARTED",
           "StartTimestamp": 1_700_000_000_000_u64,
           "ExecutionDetails": {"InputPayload": input}})
}

fn step_op(id: &str) -> Value {
    json!({"Id": id, "Type": "STEP", "Status": "SUCCEEDED",
           "StartTimestamp": 1_700_000_000_001_u64, "EndTimestamp": 1_700_000_000_002_u64,
           "StepDetails": {"Attempt": 1, "Result": "1"}})
}

fn event(operations: Vec<Value>, next_marker: Option<&str>) -> Value {
    let mut state = json!({"Operations": operations});
    if let Some(marker) = next_marker {
        state["NextMarker"] = json!(marker);
    }
    json!({"DurableExecutionArn": ARN, "CheckpointToken": "dG9rZW4",
           "InitialExecutionState": state})
}

fn parse(value: Value) -> InvocationEvent {
    InvocationEvent::from_value(value).expect("a well-formed event parses")
}

fn parse_err(value: Value) -> InvocationError {
    InvocationEvent::from_value(value).expect_err("the event must be refused")
}

fn millis(t: &DateTime) -> i64 {
    t.to_millis().expect("in range")
}

/// A policy whose retries take no real time to speak of.
fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        jitter_seed: Some(7),
        ..RetryPolicy::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

#[test]
fn every_details_kind_parses_into_the_sdks_operation() {
    let error = json!({"ErrorType": "Boom", "ErrorMessage": "it broke", "ErrorData": "{\"x\":1}",
                       "StackTrace": ["at a", "at b"]});
    let parsed = parse(event(
        vec![
            execution_op("{\"items\":2}"),
            json!({"Id": "ctx", "Type": "CONTEXT", "SubType": "Map", "Name": "items",
                   "Status": "FAILED", "StartTimestamp": 1, "EndTimestamp": 2,
                   "ContextDetails": {"ReplayChildren": true, "Result": "r", "Error": error}}),
            json!({"Id": "step", "ParentId": "ctx", "Type": "STEP", "Status": "PENDING",
                   "StartTimestamp": 3,
                   "StepDetails": {"Attempt": 2, "NextAttemptTimestamp": 4, "Result": "s",
                                   "Error": error}}),
            json!({"Id": "wait", "Type": "WAIT", "Status": "STARTED", "StartTimestamp": 5,
                   "WaitDetails": {"ScheduledEndTimestamp": 6}}),
            json!({"Id": "cb", "Type": "CALLBACK", "Status": "SUCCEEDED", "StartTimestamp": 7,
                   "CallbackDetails": {"CallbackId": "cb-1", "Result": "c", "Error": error}}),
            json!({"Id": "call", "Type": "CHAINED_INVOKE", "Status": "TIMED_OUT",
                   "StartTimestamp": 8,
                   "ChainedInvokeDetails": {"Result": "i", "Error": error}}),
        ],
        None,
    ));
    let expected_error = ErrorObject::builder()
        .error_type("Boom")
        .error_message("it broke")
        .error_data("{\"x\":1}")
        .stack_trace("at a")
        .stack_trace("at b")
        .build();
    let ops = parsed.operations();
    assert_eq!(ops.len(), 6, "every operation of the page is kept");

    let exec = &ops[0];
    assert_eq!(*exec.r#type(), OperationType::Execution);
    assert_eq!(
        exec.execution_details().and_then(|d| d.input_payload()),
        Some("{\"items\":2}"),
        "ExecutionDetails.InputPayload is the user's input"
    );

    let ctx = &ops[1];
    assert_eq!(
        (ctx.r#type(), ctx.status()),
        (&OperationType::Context, &OperationStatus::Failed)
    );
    assert_eq!((ctx.sub_type(), ctx.name()), (Some("Map"), Some("items")));
    let details = ctx.context_details().expect("ContextDetails");
    assert_eq!(details.replay_children(), Some(true));
    assert_eq!(details.result(), Some("r"));
    assert_eq!(
        details.error(),
        Some(&expected_error),
        "every ErrorObject member is kept"
    );
    assert_eq!(ctx.end_timestamp().map(millis), Some(2));

    let step = &ops[2];
    assert_eq!(step.parent_id(), Some("ctx"));
    assert_eq!(*step.status(), OperationStatus::Pending);
    let details = step.step_details().expect("StepDetails");
    assert_eq!(details.attempt(), 2);
    assert_eq!(details.next_attempt_timestamp().map(millis), Some(4));
    assert_eq!(details.result(), Some("s"));
    assert_eq!(details.error(), Some(&expected_error));

    let wait = ops[3].wait_details().expect("WaitDetails");
    assert_eq!(wait.scheduled_end_timestamp().map(millis), Some(6));

    let cb = ops[4].callback_details().expect("CallbackDetails");
    assert_eq!(
        (cb.callback_id(), cb.result(), cb.error()),
        (Some("cb-1"), Some("c"), Some(&expected_error))
    );

    assert_eq!(*ops[5].status(), OperationStatus::TimedOut);
    let call = ops[5]
        .chained_invoke_details()
        .expect("ChainedInvokeDetails");
    assert_eq!(
        (call.result(), call.error()),
        (Some("i"), Some(&expected_error))
    );
}

#[test]
fn timestamps_are_read_as_epoch_milliseconds() {
    let parsed = parse(event(
        vec![json!({"Id": "s", "Type": "STEP", "Status": "SUCCEEDED",
                    "StartTimestamp": 1_700_000_000_123_u64,
                    "EndTimestamp": 1_700_000_000_456.5,
                    "StepDetails": {"NextAttemptTimestamp": 0}})],
        None,
    ));
    let op = &parsed.operations()[0];
    assert_eq!(
        op.start_timestamp().secs(),
        1_700_000_000,
        "1700000000123 ms is 2023-11-14, not 53,000 years from now"
    );
    assert_eq!(
        millis(op.start_timestamp()),
        1_700_000_000_123,
        "whole milliseconds are exact"
    );
    let end = op.end_timestamp().expect("EndTimestamp");
    assert_eq!(
        (end.secs(), end.subsec_nanos()),
        (1_700_000_000, 456_500_000),
        "a fraction of a millisecond is kept"
    );
    let details = op.step_details().expect("StepDetails");
    assert_eq!(
        details.next_attempt_timestamp().map(millis),
        Some(0),
        "zero is the epoch, not absent"
    );
    assert_eq!(
        details.attempt(),
        0,
        "an absent Attempt is 0, as in the SDK"
    );
}

#[test]
fn a_missing_or_empty_arn_or_token_is_an_error_naming_the_member() {
    for field in ["DurableExecutionArn", "CheckpointToken"] {
        for value in [None, Some(json!("")), Some(Value::Null)] {
            let mut raw = event(vec![execution_op("{}")], None);
            match &value {
                None => {
                    raw.as_object_mut().unwrap().remove(field);
                }
                Some(v) => raw[field] = v.clone(),
            }
            let err = parse_err(raw);
            assert!(
                matches!(&err, InvocationError::MissingField { field: f } if *f == field),
                "{field} = {value:?} must be refused as missing, got {err:?}"
            );
            let message = err.to_string();
            assert!(
                message.contains(field),
                "the message names the member: {message}"
            );
            assert!(
                message.starts_with(char::is_lowercase),
                "messages are lowercase: {message}"
            );
        }
    }
}

#[test]
fn an_operation_missing_a_required_member_is_an_error_naming_the_member_and_its_index() {
    for field in ["Id", "Type", "Status", "StartTimestamp"] {
        for empty in [false, true] {
            if empty && field == "StartTimestamp" {
                continue;
            }
            let mut op = step_op("item-7");
            if empty {
                op[field] = json!("");
            } else {
                op.as_object_mut().unwrap().remove(field);
            }
            let err = parse_err(event(vec![execution_op("{}"), op], None));
            match &err {
                InvocationError::MissingOperationField {
                    index,
                    id,
                    field: f,
                } => {
                    assert_eq!(*index, 1, "the error names the operation's index");
                    assert_eq!(*f, field, "the error names the member");
                    let expected_id = (field != "Id").then(|| "item-7".to_owned());
                    assert_eq!(*id, expected_id, "the Id is named when there is one");
                }
                other => {
                    panic!("{field} (empty: {empty}) must be refused as missing, got {other:?}")
                }
            }
            let message = err.to_string();
            assert!(
                message.contains("operation 1") && message.contains(field),
                "the message names the index and the member: {message}"
            );
        }
    }
}

#[test]
fn a_member_of_the_wrong_type_is_an_error_naming_the_operations_index() {
    let mut op = step_op("s");
    op["StepDetails"]["Attempt"] = json!("two");
    let err = parse_err(event(vec![execution_op("{}"), step_op("a"), op], None));
    assert!(
        matches!(err, InvocationError::MalformedOperation { index: 2, .. }),
        "a malformed operation is named by its index, got {err:?}"
    );
    assert!(
        std::error::Error::source(&err).is_none() && !format!("{err}").contains("two"),
        "serde's text, which quotes the value, is neither shown nor chained: {err}"
    );

    let mut op = step_op("s");
    op["StartTimestamp"] = json!(1e300);
    let err = parse_err(event(vec![op], None));
    assert!(
        matches!(
            &err,
            InvocationError::InvalidOperationField {
                index: 0,
                field: "StartTimestamp",
                ..
            }
        ),
        "a timestamp out of range names its member, got {err:?}"
    );
}

#[test]
fn input_that_is_not_an_event_object_is_malformed() {
    for bad in [
        &b"not json"[..],
        b"[]",
        b"null",
        b"42",
        b"{\"CheckpointToken\": 5}",
    ] {
        let err = InvocationEvent::from_slice(bad).expect_err("not an event");
        assert!(
            matches!(err, InvocationError::Malformed(_)),
            "{:?} is malformed, got {err:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn unknown_members_and_unknown_enum_values_are_ignored() {
    let raw = json!({
        "DurableExecutionArn": ARN, "CheckpointToken": "t", "Version": 2,
        "InitialExecutionState": {"Operations": [{
            "Id": "exec", "Type": "EXECUTION", "Status": "STARTED", "StartTimestamp": 1,
            "Future": {"nested": [1, 2]},
            "ExecutionDetails": {"InputPayload": "{}", "Extra": true}},
            {"Id": "x", "Type": "TELEPORT", "Status": "DREAMING", "StartTimestamp": 1,
             "StepDetails": {"Attempt": 1, "Error": {"ErrorType": "E", "Cause": "?"}}}],
            "Unknown": null}
    });
    let parsed = parse(raw);
    assert_eq!(parsed.operations().len(), 2);
    let odd = &parsed.operations()[1];
    assert_eq!(
        odd.r#type().as_str(),
        "TELEPORT",
        "an unknown Type is kept as the SDK's Unknown variant"
    );
    assert_eq!(odd.status().as_str(), "DREAMING");
}

#[test]
fn the_next_marker_is_kept_and_an_empty_or_absent_one_means_a_single_page() {
    let parsed = parse(event(vec![execution_op("{}")], Some("s.0000001f.1")));
    assert_eq!(parsed.next_marker(), Some("s.0000001f.1"));
    let parsed = parse(event(vec![execution_op("{}")], Some("")));
    assert_eq!(
        parsed.next_marker(),
        None,
        "an empty marker ends the pages, as the official SDKs read it"
    );
    let parsed = parse(json!({"DurableExecutionArn": ARN, "CheckpointToken": "t"}));
    assert!(
        parsed.operations().is_empty() && parsed.next_marker().is_none(),
        "an absent InitialExecutionState is an empty page"
    );
}

#[test]
fn a_six_mebibyte_input_payload_parses_from_bytes_from_a_string_and_from_a_value() {
    let input = format!("\"{}\"", "x".repeat(6 * 1024 * 1024 - 2));
    let raw = event(vec![execution_op(&input)], None);
    let bytes = serde_json::to_vec(&raw).unwrap();
    assert!(
        bytes.len() > 6 * 1024 * 1024,
        "the event itself exceeds 6 MiB"
    );

    let from_bytes = InvocationEvent::from_slice(&bytes).expect("a 6 MiB event parses");
    let from_str: InvocationEvent = std::str::from_utf8(&bytes).unwrap().parse().unwrap();
    let from_value = parse(raw);
    for parsed in [&from_bytes, &from_str, &from_value] {
        let payload = parsed.operations()[0]
            .execution_details()
            .and_then(|d| d.input_payload())
            .expect("the input is kept");
        assert_eq!(payload.len(), input.len(), "the input is kept whole");
        assert_eq!(payload, input);
    }
    assert_eq!(
        from_bytes, from_value,
        "every constructor reads the same event"
    );
}

#[test]
fn the_arn_and_token_are_read_as_given() {
    let parsed = parse(event(vec![], None));
    assert_eq!(parsed.arn(), ARN);
    assert_eq!(parsed.checkpoint_token(), "dG9rZW4");
}

// ---------------------------------------------------------------------------------------------
// History, through a scripted double

/// One scripted answer of `GetDurableExecutionState`.
enum Answer {
    Page(Vec<Operation>, Option<&'static str>),
    Fail(ErrorKind),
}

/// One state request: token, marker and page size.
type StateCall = (String, Option<String>, Option<i32>);

/// Serves scripted state pages; once the script is done, either fails every call or, when
/// `endless`, answers an empty page with a fresh marker forever.
#[derive(Default)]
struct Pages {
    script: Mutex<VecDeque<Answer>>,
    calls: Mutex<Vec<StateCall>>,
    endless: bool,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pages")
    }
}

impl Pages {
    fn new(script: impl IntoIterator<Item = Answer>) -> Self {
        Self {
            script: Mutex::new(script.into_iter().collect()),
            ..Self::default()
        }
    }

    fn calls(&self) -> Vec<StateCall> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl DurableBackend for Pages {
    async fn checkpoint(
        &self,
        _arn: &str,
        _checkpoint_token: &str,
        _updates: Vec<OperationUpdate>,
        _client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        Err(BackendError::new(
            ErrorKind::Rejected,
            "loading a history never checkpoints",
        ))
    }

    async fn get_execution_state(
        &self,
        arn: &str,
        checkpoint_token: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        assert_eq!(arn, ARN, "pages are read for the event's execution");
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((
                checkpoint_token.to_owned(),
                marker.map(str::to_owned),
                max_items,
            ));
            calls.len()
        };
        let answer = self.script.lock().unwrap().pop_front();
        let (operations, next) = match answer {
            Some(Answer::Page(ops, next)) => (ops, next.map(str::to_owned)),
            Some(Answer::Fail(kind)) => {
                return Err(BackendError::new(kind, "scripted failure"));
            }
            None if self.endless => (Vec::new(), Some(format!("m{n}"))),
            None => {
                return Err(BackendError::new(
                    ErrorKind::Rejected,
                    "no more pages scripted",
                ));
            }
        };
        Ok(GetDurableExecutionStateOutput::builder()
            .set_operations(Some(operations))
            .set_next_marker(next)
            .build()
            .unwrap())
    }
}

fn sdk_op(id: &str, ty: OperationType, input: Option<&str>) -> Operation {
    let mut op = Operation::builder()
        .id(id)
        .r#type(ty.clone())
        .status(OperationStatus::Started)
        .start_timestamp(DateTime::from_millis(1_700_000_000_000));
    if ty == OperationType::Execution {
        op = op.execution_details(
            aws_sdk_lambda::types::ExecutionDetails::builder()
                .set_input_payload(input.map(str::to_owned))
                .build(),
        );
    }
    op.build().unwrap()
}

fn ids(history: &History) -> Vec<&str> {
    history.iter().map(Operation::id).collect()
}

#[tokio::test(start_paused = true)]
async fn every_page_is_read_with_the_events_token_and_max_items_1000_until_the_marker_ends() {
    let backend = Pages::new([
        Answer::Page(vec![sdk_op("b", OperationType::Step, None)], Some("m2")),
        Answer::Page(
            vec![
                sdk_op("c", OperationType::Step, None),
                sdk_op("exec", OperationType::Execution, Some("{\"n\":3}")),
            ],
            None,
        ),
    ]);
    let first = parse(event(vec![step_op("a")], Some("m1")));
    let history = History::load(&backend, &first, &RetryPolicy::default())
        .await
        .expect("all pages load");
    assert_eq!(
        ids(&history),
        ["a", "b", "c", "exec"],
        "the event's page first, then every later page, in order"
    );
    assert_eq!(history.len(), 4);
    assert!(!history.is_empty());
    assert_eq!(
        history.input(),
        Some("{\"n\":3}"),
        "the input is found on a later page"
    );
    assert_eq!(history.execution().map(Operation::id), Some("exec"));
    assert_eq!(history.get("b").map(Operation::id), Some("b"));
    assert!(history.get("zzz").is_none());
    let by_ref: Vec<&str> = (&history).into_iter().map(Operation::id).collect();
    assert_eq!(by_ref, ids(&history));
    assert_eq!(
        backend.calls(),
        [
            ("dG9rZW4".to_owned(), Some("m1".to_owned()), Some(1000)),
            ("dG9rZW4".to_owned(), Some("m2".to_owned()), Some(1000)),
        ],
        "each page is read with the invocation's token, the previous page's marker and 1000 items"
    );
}

#[tokio::test(start_paused = true)]
async fn an_event_without_a_marker_is_the_whole_history_and_calls_nothing() {
    let backend = Pages::new([]);
    let first = parse(event(vec![execution_op("7"), step_op("a")], None));
    let history = History::load(&backend, &first, &RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(ids(&history), ["exec", "a"]);
    assert_eq!(history.input(), Some("7"));
    assert!(backend.calls().is_empty(), "no marker, no state call");
}

#[tokio::test(start_paused = true)]
async fn an_operation_repeated_on_a_later_page_takes_the_earlier_ones_place() {
    let mut newer = sdk_op("a", OperationType::Step, None);
    newer.status = OperationStatus::Succeeded;
    let backend = Pages::new([Answer::Page(
        vec![newer, sdk_op("b", OperationType::Step, None)],
        None,
    )]);
    let mut started = step_op("a");
    started["Status"] = json!("STARTED");
    let first = parse(event(vec![started], Some("m1")));
    let history = History::load(&backend, &first, &RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        ids(&history),
        ["a", "b"],
        "one entry per Id, in first-seen order"
    );
    assert_eq!(
        history.get("a").map(Operation::status),
        Some(&OperationStatus::Succeeded),
        "the later page holds the newer state"
    );
}

#[tokio::test(start_paused = true)]
async fn throttled_and_transient_pages_are_retried_per_the_policy() {
    let backend = Pages::new([
        Answer::Fail(ErrorKind::Throttled),
        Answer::Fail(ErrorKind::Transient),
        Answer::Page(vec![sdk_op("b", OperationType::Step, None)], None),
    ]);
    let first = parse(event(vec![step_op("a")], Some("m1")));
    let history = History::load(&backend, &first, &quick_retries(3))
        .await
        .expect("the third attempt succeeds");
    assert_eq!(ids(&history), ["a", "b"]);
    let calls = backend.calls();
    assert_eq!(calls.len(), 3, "two retries, then success");
    assert!(
        calls.iter().all(|c| c.1.as_deref() == Some("m1")),
        "a retry asks for the same page"
    );
}

#[tokio::test(start_paused = true)]
async fn a_page_that_keeps_failing_is_a_state_failure_with_its_attempts_and_cause() {
    let backend = Pages::new([
        Answer::Fail(ErrorKind::Transient),
        Answer::Fail(ErrorKind::Transient),
        Answer::Fail(ErrorKind::Transient),
    ]);
    let first = parse(event(vec![], Some("m1")));
    let err = History::load(&backend, &first, &quick_retries(3))
        .await
        .expect_err("every attempt fails");
    assert!(
        matches!(&err, InvocationError::StateFailed { attempts: 3, cause } if cause.kind() == ErrorKind::Transient),
        "the last cause and the attempt count are reported, got {err:?}"
    );
    assert_eq!(err.kind(), Some(ErrorKind::Transient));
    assert!(
        err.to_string().contains("after 3 attempts"),
        "the message counts attempts: {err}"
    );

    let backend = Pages::new([Answer::Fail(ErrorKind::InvalidCheckpointToken)]);
    let err = History::load(&backend, &first, &quick_retries(3))
        .await
        .expect_err("a stale token is final");
    assert!(
        matches!(&err, InvocationError::StateFailed { attempts: 1, .. }),
        "a failure that is not throttling or transient is not retried, got {err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_repeated_marker_is_an_error_instead_of_a_loop() {
    let backend = Pages::new([
        Answer::Page(vec![sdk_op("b", OperationType::Step, None)], Some("m2")),
        Answer::Page(vec![], Some("m1")),
    ]);
    let first = parse(event(vec![step_op("a")], Some("m1")));
    let err = History::load(&backend, &first, &RetryPolicy::default())
        .await
        .expect_err("m1 came back");
    assert!(
        matches!(&err, InvocationError::RepeatedMarker { marker } if marker == "m1"),
        "the repeated marker is named, got {err:?}"
    );
    assert_eq!(
        backend.calls().len(),
        2,
        "the repeated marker is never requested again"
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_marker_on_a_page_ends_the_history() {
    let backend = Pages::new([Answer::Page(
        vec![sdk_op("b", OperationType::Step, None)],
        Some(""),
    )]);
    let first = parse(event(vec![step_op("a")], Some("m1")));
    let history = History::load(&backend, &first, &RetryPolicy::default())
        .await
        .expect("an empty marker is the end, not a restart");
    assert_eq!(ids(&history), ["a", "b"]);
    assert_eq!(backend.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn pages_that_never_end_are_cut_off_at_a_thousand() {
    let backend = Pages {
        endless: true,
        ..Pages::default()
    };
    let first = parse(event(vec![], Some("m0")));
    let err = History::load(&backend, &first, &RetryPolicy::default())
        .await
        .expect_err("the pages never end");
    assert!(
        matches!(err, InvocationError::TooManyPages { limit: 1000 }),
        "the bound is reported, got {err:?}"
    );
    assert_eq!(
        backend.calls().len(),
        1000,
        "no page past the bound is read"
    );
}

#[tokio::test(start_paused = true)]
async fn an_invalid_retry_policy_is_refused_before_any_call() {
    let backend = Pages::new([]);
    let first = parse(event(vec![], Some("m1")));
    let policy = RetryPolicy {
        max_attempts: 0,
        ..RetryPolicy::default()
    };
    let err = History::load(&backend, &first, &policy)
        .await
        .expect_err("zero attempts is out of range");
    assert!(
        matches!(&err, InvocationError::Config(c) if c.field() == "retry.max_attempts"),
        "the field is named, got {err:?}"
    );
    assert!(backend.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn every_invocation_error_says_whether_the_invocation_or_the_execution_should_fail() {
    use checkpoint_batcher::FailureScope::{Execution, Invocation};
    let op = |value: Value| event(vec![value], None);
    let mut unreadable = vec![
        ("an event that is not an object", parse_err(json!("event"))),
        (
            "an event without a token",
            parse_err(json!({"DurableExecutionArn": ARN})),
        ),
        (
            "an operation of the wrong shape",
            parse_err(op(json!({"Id": 5}))),
        ),
        (
            "an operation without a Type",
            parse_err(op(
                json!({"Id": "a", "Status": "STARTED", "StartTimestamp": 1}),
            )),
        ),
        (
            "a timestamp out of range",
            parse_err(op(
                json!({"Id": "a", "Type": "STEP", "Status": "STARTED", "StartTimestamp": 1e20}),
            )),
        ),
    ];
    let first = parse(event(vec![], Some("m1")));
    let zero_attempts = RetryPolicy {
        max_attempts: 0,
        ..RetryPolicy::default()
    };
    let config = History::load(&Pages::new([]), &first, &zero_attempts).await;
    unreadable.push(("a retry policy out of range", config.unwrap_err()));
    let endless = Pages {
        endless: true,
        ..Pages::default()
    };
    let from_m0 = parse(event(vec![], Some("m0")));
    let too_many = History::load(&endless, &from_m0, &RetryPolicy::default()).await;
    unreadable.push(("pages past the bound", too_many.unwrap_err()));
    for (what, error) in &unreadable {
        assert_eq!(
            error.scope(),
            Execution,
            "{what} would be met again by every re-invocation: it fails the execution ({error})"
        );
    }

    for (kind, scope) in [
        (ErrorKind::Kms, Execution),
        (ErrorKind::Rejected, Execution),
        (ErrorKind::InvalidCheckpointToken, Invocation),
        (ErrorKind::Credentials, Invocation),
        (ErrorKind::Throttled, Invocation),
        (ErrorKind::Transient, Invocation),
    ] {
        let backend = Pages::new([Answer::Fail(kind)]);
        let error = History::load(&backend, &first, &quick_retries(1))
            .await
            .expect_err("the page fails");
        assert_eq!(
            error.scope(),
            scope,
            "a page that failed as {kind} fails the {scope:?}, as a checkpoint that failed so would"
        );
    }

    let repeated = Pages::new([Answer::Page(vec![], Some("m1"))]);
    let error = History::load(&repeated, &first, &RetryPolicy::default())
        .await
        .expect_err("m1 came back");
    assert_eq!(
        error.scope(),
        Invocation,
        "a repeated marker is the service's misstep: a re-invocation reads the pages afresh"
    );
}

#[tokio::test(start_paused = true)]
async fn an_event_token_the_service_would_not_take_is_refused_before_the_history_is_read() {
    let backend = std::sync::Arc::new(Pages::new([]));
    let mut value = event(vec![], Some("m1"));
    value["CheckpointToken"] = json!("A".repeat(checkpoint_batcher::SERVICE_MAX_TOKEN_CHARS + 1));
    let err = checkpoint_batcher::CheckpointBatcher::for_invocation(
        backend.clone(),
        &parse(value),
        checkpoint_batcher::BatcherConfig::default(),
    )
    .await
    .expect_err("the token is longer than the service allows");
    assert!(
        matches!(&err, InvocationError::Config(c) if c.field() == "initial_token"),
        "{err}"
    );
    assert!(backend.calls().is_empty(), "no page was read with it");
}

// ---------------------------------------------------------------------------------------------
// The emulator plays the service's side

async fn emulator(page_size: usize) -> Emulator {
    Emulator::builder()
        .page_size(page_size)
        .start()
        .await
        .expect("the emulator binds 127.0.0.1:0")
}

/// Starts an execution with `input` and `steps` STEP operations (each started and succeeded
/// with result `i*i`) checkpointed through the real SDK; returns the ARN.
async fn execution_with_steps(emulator: &Emulator, input: &str, steps: usize) -> String {
    let (arn, token) = emulator.start_execution_with_input("orders", Some(input));
    let backend = RealBackend::new(emulator.client());
    let updates: Vec<OperationUpdate> = (0..steps)
        .flat_map(|i| {
            [
                start(&format!("item-{i}")),
                succeed(&format!("item-{i}"), &(i * i).to_string()),
            ]
        })
        .collect();
    backend
        .checkpoint(&arn, &token, updates, Some("setup"))
        .await
        .expect("the setup checkpoint is applied");
    arn
}

fn now_millis() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

#[tokio::test]
async fn the_emulators_event_pages_like_the_service_and_the_history_reads_every_page() {
    let before = now_millis();
    let emulator = emulator(3).await;
    let arn = execution_with_steps(&emulator, "{\"items\":10}", 10).await;
    let after = now_millis();

    let raw = emulator
        .invocation_event(&arn)
        .expect("the execution exists");
    let state = &raw["InitialExecutionState"];
    assert_eq!(
        state["Operations"].as_array().map(Vec::len),
        Some(3),
        "the first page holds the emulator's page size"
    );
    let marker = state["NextMarker"].as_str().unwrap_or_default();
    assert!(
        marker.starts_with("s.") && marker.ends_with(".3"),
        "the rest is paged from offset 3, with a marker of the event's token: {marker}"
    );
    assert!(
        state["Operations"][0]["StartTimestamp"].is_u64(),
        "timestamps in an event are whole epoch milliseconds"
    );
    let snapshot = emulator.execution(&arn).unwrap();
    assert_eq!(
        raw["CheckpointToken"].as_str(),
        snapshot.current_token.as_deref(),
        "the event carries the current token"
    );

    let first = parse(raw);
    assert_eq!(first.arn(), arn);
    for op in first.operations() {
        let t = millis(op.start_timestamp());
        assert!(
            (before..=after).contains(&t),
            "StartTimestamp {t} is the creation time in ms, within [{before}, {after}]"
        );
    }

    let backend = RealBackend::new(emulator.client());
    let history = History::load(&backend, &first, &RetryPolicy::default())
        .await
        .expect("the emulator accepts the event's marker and token");
    let expected: Vec<String> = std::iter::once(snapshot.execution_operation_id.clone())
        .chain((0..10).map(|i| format!("item-{i}")))
        .collect();
    assert_eq!(
        ids(&history),
        expected,
        "every operation, in creation order, once"
    );
    assert_eq!(history.input(), Some("{\"items\":10}"));
    for i in 0..10 {
        let step = history
            .get(&format!("item-{i}"))
            .expect("each step is held");
        assert_eq!(*step.status(), OperationStatus::Succeeded);
        let expected_result = (i * i).to_string();
        assert_eq!(
            step.step_details().and_then(|d| d.result()),
            Some(expected_result.as_str()),
            "a succeeded step's result is its SUCCEED payload"
        );
    }
    assert_eq!(
        emulator.execution(&arn).unwrap().state_calls,
        1,
        "one page of up to 1000 items reads the rest"
    );
}

#[tokio::test]
async fn the_input_on_a_later_page_is_found_through_the_emulator() {
    let emulator = emulator(3).await;
    let arn = execution_with_steps(&emulator, "{\"later\":true}", 4).await;
    let mut raw = emulator.invocation_event(&arn).unwrap();
    // A first page that does not hold the EXECUTION operation: the whole history is on later
    // pages. The marker keeps the emulator's tag of the event's token, pointed at offset 0.
    let issued = raw["InitialExecutionState"]["NextMarker"]
        .as_str()
        .expect("5 operations, pages of 3: a marker")
        .to_owned();
    let from_start = format!("{}.0", issued.rsplit_once('.').unwrap().0);
    raw["InitialExecutionState"] = json!({"Operations": [], "NextMarker": from_start});
    let first = parse(raw);
    assert!(first.operations().is_empty());
    let backend = RealBackend::new(emulator.client());
    let history = History::load(&backend, &first, &RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(
        history.input(),
        Some("{\"later\":true}"),
        "the input is read from whichever page holds the EXECUTION operation"
    );
}

#[tokio::test]
async fn throttled_state_pages_from_the_emulator_are_retried_until_the_history_is_complete() {
    let emulator = emulator(2).await;
    let arn = execution_with_steps(&emulator, "{}", 5).await;
    emulator.set_faults(Faults {
        throttle_rate: 0.5,
        ..Faults::default()
    });
    let backend = RealBackend::new(emulator.client());
    let loads = 20;
    for _ in 0..loads {
        let first = parse(emulator.invocation_event(&arn).unwrap());
        let history = History::load(&backend, &first, &quick_retries(40))
            .await
            .expect("throttling is retried");
        assert_eq!(history.len(), 6, "every load ends with the whole history");
    }
    let state_calls = emulator.execution(&arn).unwrap().state_calls;
    assert!(
        state_calls > loads,
        "some pages were throttled and retried: {state_calls} calls for {loads} pages"
    );
}

#[tokio::test]
async fn the_event_follows_the_token_and_is_absent_when_the_service_would_not_invoke() {
    let emulator = emulator(1000).await;
    let (arn, _token) = emulator.start_execution_with_input("orders", None);
    assert!(emulator.invocation_event("arn:unknown").is_none());

    let rotated = emulator.rotate_token(&arn).unwrap();
    let raw = emulator.invocation_event(&arn).unwrap();
    assert_eq!(
        raw["CheckpointToken"],
        rotated.as_str(),
        "a re-invocation carries the new token"
    );
    assert!(
        raw["InitialExecutionState"].get("NextMarker").is_none(),
        "one page holds everything: no marker"
    );
    let history = History::load(
        &RealBackend::new(emulator.client()),
        &parse(raw),
        &RetryPolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        history.input(),
        Some("{}"),
        "an execution started without input is invoked with an empty object as its input"
    );

    assert!(emulator.stop_execution(&arn));
    assert!(
        emulator.invocation_event(&arn).is_none(),
        "a stopped execution is not invoked"
    );
}

// ---------------------------------------------------------------------------------------------
// Output

#[test]
fn outputs_serialize_exactly_as_the_service_reads_them() {
    let full_error = ErrorObject::builder()
        .error_type("OrderRejected")
        .error_message("no stock")
        .error_data("{\"sku\":\"a\"}")
        .stack_trace("at step")
        .stack_trace("at handler")
        .build();
    let cases = [
        (
            InvocationOutput::succeeded("{\"sum\":14}"),
            r#"{"Status":"SUCCEEDED","Result":"{\"sum\":14}"}"#,
        ),
        (
            InvocationOutput::Succeeded {
                result: Some(String::new()),
            },
            r#"{"Status":"SUCCEEDED","Result":""}"#,
        ),
        (
            InvocationOutput::Succeeded { result: None },
            r#"{"Status":"SUCCEEDED"}"#,
        ),
        (
            InvocationOutput::failed(full_error),
            r#"{"Status":"FAILED","Error":{"ErrorMessage":"no stock","ErrorType":"OrderRejected","ErrorData":"{\"sku\":\"a\"}","StackTrace":["at step","at handler"]}}"#,
        ),
        (
            InvocationOutput::failed(ErrorObject::builder().build()),
            r#"{"Status":"FAILED","Error":{}}"#,
        ),
        (InvocationOutput::Pending, r#"{"Status":"PENDING"}"#),
    ];
    for (output, expected) in cases {
        assert_eq!(
            serde_json::to_string(&output).unwrap(),
            expected,
            "Serialize writes the service's format"
        );
        assert_eq!(
            output.to_value(),
            serde_json::from_str::<Value>(expected).unwrap(),
            "to_value gives the same JSON (a Value keeps its keys sorted)"
        );
        assert_eq!(
            output.to_value()["Status"],
            output.status(),
            "status() is the Status member"
        );
    }
}

#[test]
fn the_response_limit_is_six_mebibytes_less_fifty_bytes() {
    assert_eq!(MAX_RESPONSE_BYTES, 6 * 1024 * 1024 - 50);
    assert_eq!(MAX_RESPONSE_BYTES, 6_291_406);
}
