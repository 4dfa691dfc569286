//! The request rules: every violation is a 400 that names the rule and consumes nothing, the
//! allowed sequences follow the documented transitions, and service completions reach the
//! client through the next checkpoint.

use crate::support::*;
use checkpoint_batcher::BatcherConfig;
use checkpoint_batcher::emulator::{Completion, Emulator, EmulatorError, EmulatorLimits};
use serde_json::{Value, json};

#[tokio::test]
async fn every_rule_violation_is_a_400_that_names_the_rule_and_consumes_nothing() {
    let emu = Emulator::builder()
        .limits(EmulatorLimits {
            max_payload_bytes: 16,
            max_execution_payload_bytes: 32,
            max_error_bytes: 16,
            max_updates: Some(4),
            ..EmulatorLimits::default()
        })
        .start()
        .await
        .unwrap();
    let (arn, t0) = emu.start_execution("rules");
    let exec_id = snapshot(&emu, &arn).execution_operation_id;
    // Existing state: a started CONTEXT, a started STEP, a finished STEP, a WAIT.
    let setup = json!([
        up("ctx", "CONTEXT", "START"),
        up("run", "STEP", "START"),
        up("done", "STEP", "START"),
        with(
            up("w", "WAIT", "START"),
            "WaitOptions",
            json!({"WaitSeconds": 60})
        ),
    ]);
    let t1 = checkpoint(&emu, &arn, &t0, None, setup)
        .await
        .token()
        .unwrap();
    let t2 = checkpoint(
        &emu,
        &arn,
        &t1,
        None,
        json!([up("done", "STEP", "SUCCEED")]),
    )
    .await
    .token()
    .unwrap();

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing Id",
            json!([{ "Type": "STEP", "Action": "START" }]),
            "update 0: missing field",
        ),
        (
            "unknown Type",
            json!([up("a", "TASK", "START")]),
            "unknown enum value",
        ),
        (
            "unknown Action",
            json!([up("a", "STEP", "JUMP")]),
            "unknown enum value",
        ),
        (
            "bad Id chars",
            json!([up("a b", "STEP", "START")]),
            "id format",
        ),
        (
            "Id too long",
            json!([up(&"x".repeat(65), "STEP", "START")]),
            "id format",
        ),
        (
            "bad ParentId",
            json!([with(up("a", "STEP", "START"), "ParentId", json!("p/q"))]),
            "id format",
        ),
        (
            "Name too long",
            json!([with(
                up("a", "STEP", "START"),
                "Name",
                json!("n".repeat(257))
            )]),
            "name too long",
        ),
        (
            "SubType too long",
            json!([with(
                up("a", "STEP", "START"),
                "SubType",
                json!("s".repeat(33))
            )]),
            "subtype too long",
        ),
        (
            "payload too large",
            json!([with(
                up("a", "STEP", "START"),
                "Payload",
                json!("p".repeat(17))
            )]),
            "payload too large",
        ),
        (
            "error too large",
            json!([with(
                up("run", "STEP", "FAIL"),
                "Error",
                json!({"ErrorMessage": "m".repeat(10), "StackTrace": ["s".repeat(7)]})
            )]),
            "error too large",
        ),
        (
            "EXECUTION payload too large",
            json!([with(
                up(&exec_id, "EXECUTION", "SUCCEED"),
                "Payload",
                json!("p".repeat(33))
            )]),
            "payload too large",
        ),
        (
            "too many updates",
            json!([
                up("a", "STEP", "START"),
                up("b", "STEP", "START"),
                up("c", "STEP", "START"),
                up("d", "STEP", "START"),
                up("e", "STEP", "START")
            ]),
            "too many updates",
        ),
        (
            "two EXECUTION updates",
            json!([
                up(&exec_id, "EXECUTION", "SUCCEED"),
                up(&exec_id, "EXECUTION", "FAIL")
            ]),
            "update 0 (id",
        ),
        (
            "EXECUTION not last",
            json!([
                up(&exec_id, "EXECUTION", "SUCCEED"),
                up("a", "STEP", "START")
            ]),
            "execution update must be last",
        ),
        (
            "EXECUTION SUCCEED carrying an Error",
            json!([with(
                up(&exec_id, "EXECUTION", "SUCCEED"),
                "Error",
                json!({ "ErrorMessage": "no" })
            )]),
            "a SUCCEED carries no Error and a FAIL no Payload",
        ),
        (
            "EXECUTION FAIL carrying a Payload",
            json!([with(
                up(&exec_id, "EXECUTION", "FAIL"),
                "Payload",
                json!("\"result\"")
            )]),
            "a SUCCEED carries no Error and a FAIL no Payload",
        ),
        (
            "START of an EXECUTION",
            json!([up(&exec_id, "EXECUTION", "START")]),
            "illegal status transition",
        ),
        (
            "duplicate Id",
            json!([up("a", "STEP", "START"), up("a", "STEP", "START")]),
            "update 1 (id \"a\"): one update per id",
        ),
        (
            "two non-START after START",
            json!([
                up("a", "STEP", "START"),
                retry("a", 0),
                up("a", "STEP", "SUCCEED")
            ]),
            "update 2 (id \"a\"): one update per id",
        ),
        (
            "WAIT with two updates",
            json!([up("w9", "WAIT", "START"), up("w9", "WAIT", "CANCEL")]),
            "one update per id",
        ),
        (
            "unknown parent",
            json!([with(up("a", "STEP", "START"), "ParentId", json!("nope"))]),
            "parent must be a context",
        ),
        (
            "parent is a STEP",
            json!([with(up("a", "STEP", "START"), "ParentId", json!("run"))]),
            "parent must be a context",
        ),
        (
            "parent started later",
            json!([
                with(up("a", "STEP", "START"), "ParentId", json!("c2")),
                up("c2", "CONTEXT", "START")
            ]),
            "update 0 (id \"a\"): parent must be a context",
        ),
        (
            "type mismatch",
            json!([up("run", "CONTEXT", "SUCCEED")]),
            "type mismatch",
        ),
        (
            "SUCCEED never started",
            json!([up("ghost", "STEP", "SUCCEED")]),
            "never started",
        ),
        (
            "RETRY never started",
            json!([up("ghost", "STEP", "RETRY")]),
            "never started",
        ),
        (
            "START of a finished op",
            json!([up("done", "STEP", "START")]),
            "finished",
        ),
        (
            "START of a started op",
            json!([up("run", "STEP", "START")]),
            "already started",
        ),
        (
            "RETRY of a CONTEXT",
            json!([up("ctx", "CONTEXT", "RETRY")]),
            "illegal status transition",
        ),
        (
            "client SUCCEED of a WAIT",
            json!([up("w", "WAIT", "SUCCEED")]),
            "the service completes",
        ),
        ("bad ClientToken", json!([]), "client token format"),
    ];
    for (name, updates, expected) in cases {
        let client_token = (name == "bad ClientToken").then_some("has space");
        assert_refused(&emu, &arn, &t2, client_token, updates, &[expected], name).await;
    }
    // The token still works after all those refusals.
    assert_eq!(
        checkpoint(&emu, &arn, &t2, None, json!([])).await.status,
        200
    );
}

/// A STEP RETRY update carrying the delay of its next attempt, as the SDKs send it.
fn retry(id: &str, delay: i64) -> Value {
    with(
        up(id, "STEP", "RETRY"),
        "StepOptions",
        json!({ "NextAttemptDelaySeconds": delay }),
    )
}

/// Sends `updates` with `token` and asserts the request was refused whole: a 400
/// `InvalidParameterValueException` whose message holds every piece of `expected`, the
/// token still current, and no operation or update recorded.
async fn assert_refused(
    emu: &Emulator,
    arn: &str,
    token: &str,
    client_token: Option<&str>,
    updates: Value,
    expected: &[&str],
    name: &str,
) {
    let before = snapshot(emu, arn);
    let r = checkpoint(emu, arn, token, client_token, updates).await;
    assert_eq!(r.status, 400, "{name}: must be refused: {:?}", r.json());
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("InvalidParameterValueException"),
        "{name}"
    );
    for piece in expected {
        assert!(
            r.message().contains(piece),
            "{name}: message {:?} must contain {piece:?}",
            r.message()
        );
    }
    let after = snapshot(emu, arn);
    assert_eq!(
        after.current_token.as_deref(),
        Some(token),
        "{name}: token not consumed"
    );
    assert_eq!(
        after.operations, before.operations,
        "{name}: nothing applied (atomic)"
    );
    assert_eq!(
        after.applied, before.applied,
        "{name}: nothing applied (atomic)"
    );
}

/// Applies `updates` and returns the new token, failing the test on a refusal.
async fn applied(emu: &Emulator, arn: &str, token: &str, updates: Value) -> String {
    let r = checkpoint(emu, arn, token, None, updates).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.token().unwrap()
}

/// A SUCCEED takes its result and a FAIL its error: a STEP or CONTEXT SUCCEED carrying an
/// `Error`, or FAIL carrying a `Payload`, is refused, also right after its START in the
/// same request.
#[tokio::test]
async fn a_succeed_carrying_an_error_or_a_fail_carrying_a_payload_is_refused() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("outcome");
    let t1 = applied(
        &emu,
        &arn,
        &t0,
        json!([up("s", "STEP", "START"), up("c", "CONTEXT", "START")]),
    )
    .await;
    let error = json!({ "ErrorMessage": "no" });
    for (id, ty) in [("s", "STEP"), ("c", "CONTEXT")] {
        let succeed = with(up(id, ty, "SUCCEED"), "Error", error.clone());
        let fail = with(up(id, ty, "FAIL"), "Payload", json!("\"r\""));
        for (update, field) in [(succeed, "Error"), (fail, "Payload")] {
            let stored = format!("update 0 (id \"{id}\")");
            let case = format!("{ty} {field} on a started operation");
            let pieces = [stored.as_str(), "a SUCCEED carries no Error", field];
            assert_refused(
                &emu,
                &arn,
                &t1,
                None,
                json!([update.clone()]),
                &pieces,
                &case,
            )
            .await;
            let fresh = format!("{id}2");
            let mut late = update;
            late["Id"] = json!(fresh);
            let same_request = format!("update 1 (id \"{fresh}\")");
            let case = format!("{ty} {field} after its START in the request");
            let updates = json!([up(&fresh, ty, "START"), late]);
            let pieces = [same_request.as_str(), field];
            assert_refused(&emu, &arn, &t1, None, updates, &pieces, &case).await;
        }
    }
    // Each with its own member is applied.
    applied(
        &emu,
        &arn,
        &t1,
        json!([
            with(up("s", "STEP", "FAIL"), "Error", error),
            with(up("c", "CONTEXT", "SUCCEED"), "Payload", json!("\"r\""))
        ]),
    )
    .await;
}

/// A STEP RETRY names the delay before the next attempt (`StepOptions`); without it the
/// request is refused, also right after the START in the same request.
#[tokio::test]
async fn a_step_retry_without_step_options_is_refused() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("retry");
    let t1 = applied(&emu, &arn, &t0, json!([up("s", "STEP", "START")])).await;
    let bare = up("s", "STEP", "RETRY");
    let empty = with(up("s", "STEP", "RETRY"), "StepOptions", json!({}));
    for (name, update) in [("no StepOptions", bare), ("empty StepOptions", empty)] {
        let pieces = [
            "update 0 (id \"s\")",
            "required options missing",
            "StepOptions",
        ];
        assert_refused(&emu, &arn, &t1, None, json!([update]), &pieces, name).await;
    }
    let pieces = ["update 1 (id \"n\")", "StepOptions"];
    let updates = json!([up("n", "STEP", "START"), up("n", "STEP", "RETRY")]);
    assert_refused(&emu, &arn, &t1, None, updates, &pieces, "START then RETRY").await;
    let r = checkpoint(&emu, &arn, &t1, None, json!([retry("s", 0)])).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        r.json()["NewExecutionState"]["Operations"][0]["Status"],
        "PENDING"
    );
}

/// A CALLBACK takes only START from the client, like a CHAINED_INVOKE: a CANCEL of either
/// is refused; the service completes them.
#[tokio::test]
async fn a_callback_or_chained_invoke_cancel_is_refused() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("cancel");
    let invoke = with(
        up("i", "CHAINED_INVOKE", "START"),
        "ChainedInvokeOptions",
        json!({ "FunctionName": "f" }),
    );
    let t1 = applied(
        &emu,
        &arn,
        &t0,
        json!([up("cb", "CALLBACK", "START"), invoke]),
    )
    .await;
    for (id, ty) in [("cb", "CALLBACK"), ("i", "CHAINED_INVOKE")] {
        let located = format!("update 0 (id \"{id}\")");
        let pieces = [located.as_str(), "CANCEL of a", "the service completes"];
        assert_refused(
            &emu,
            &arn,
            &t1,
            None,
            json!([up(id, ty, "CANCEL")]),
            &pieces,
            ty,
        )
        .await;
    }
}

/// A CHAINED_INVOKE START names the function it invokes (`ChainedInvokeOptions`, whose
/// `FunctionName` the API model requires).
#[tokio::test]
async fn a_chained_invoke_start_without_its_function_is_refused() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("invoke");
    let cases = [
        ("no options", up("i", "CHAINED_INVOKE", "START")),
        (
            "no FunctionName",
            with(
                up("i", "CHAINED_INVOKE", "START"),
                "ChainedInvokeOptions",
                json!({ "TenantId": "t" }),
            ),
        ),
        (
            "empty FunctionName",
            with(
                up("i", "CHAINED_INVOKE", "START"),
                "ChainedInvokeOptions",
                json!({ "FunctionName": "" }),
            ),
        ),
    ];
    for (name, update) in cases {
        let pieces = ["update 0 (id \"i\")", "ChainedInvokeOptions.FunctionName"];
        assert_refused(&emu, &arn, &t0, None, json!([update]), &pieces, name).await;
    }
}

/// An update's `ParentId`, `Name` and `SubType`, when it sends them, are the operation's: a
/// different value, or one where the operation has none, is refused; one left out is fine.
#[tokio::test]
async fn an_update_naming_another_parent_name_or_subtype_is_refused() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("metadata");
    let mut step = with(up("s", "STEP", "START"), "ParentId", json!("c1"));
    step = with(with(step, "Name", json!("n")), "SubType", json!("Step"));
    let t1 = applied(
        &emu,
        &arn,
        &t0,
        json!([
            up("c1", "CONTEXT", "START"),
            up("c2", "CONTEXT", "START"),
            step,
            up("plain", "STEP", "START")
        ]),
    )
    .await;
    let cases = [
        ("s", "ParentId", "c2", "differs from the operation's \"c1\""),
        ("s", "Name", "m", "differs from the operation's \"n\""),
        (
            "s",
            "SubType",
            "Other",
            "differs from the operation's \"Step\"",
        ),
        ("plain", "Name", "n", "the operation has none"),
        ("plain", "ParentId", "c1", "the operation has none"),
    ];
    for (id, field, value, detail) in cases {
        let update = with(up(id, "STEP", "SUCCEED"), field, json!(value));
        let located = format!("update 0 (id \"{id}\")");
        let pieces = [
            located.as_str(),
            "differs from the operation",
            field,
            detail,
        ];
        let name = format!("{field} on {id}");
        assert_refused(&emu, &arn, &t1, None, json!([update]), &pieces, &name).await;
    }
    let started = with(up("n", "STEP", "START"), "Name", json!("a"));
    let renamed = with(up("n", "STEP", "SUCCEED"), "Name", json!("b"));
    let pieces = ["update 1 (id \"n\")", "Name"];
    let updates = json!([started, renamed]);
    assert_refused(
        &emu,
        &arn,
        &t1,
        None,
        updates,
        &pieces,
        "renamed in the request",
    )
    .await;
    // Left out, or the same: applied.
    let same = with(
        with(up("s", "STEP", "SUCCEED"), "Name", json!("n")),
        "ParentId",
        json!("c1"),
    );
    applied(
        &emu,
        &arn,
        &t1,
        json!([same, up("plain", "STEP", "SUCCEED")]),
    )
    .await;
}

/// A WAIT START without a positive `WaitSeconds` (no `WaitOptions`, an empty one, or 0) is
/// due the moment it starts: the answer already shows it SUCCEEDED. A real wait stays
/// STARTED until the service fires it.
#[tokio::test]
async fn a_wait_of_no_time_succeeds_at_once() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("wait");
    let r = checkpoint(
        &emu,
        &arn,
        &t0,
        None,
        json!([
            up("w0", "WAIT", "START"),
            with(up("w1", "WAIT", "START"), "WaitOptions", json!({})),
            with(
                up("w2", "WAIT", "START"),
                "WaitOptions",
                json!({"WaitSeconds": 0})
            ),
            with(
                up("w3", "WAIT", "START"),
                "WaitOptions",
                json!({"WaitSeconds": 30})
            )
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let ops = r.json()["NewExecutionState"]["Operations"].clone();
    let statuses: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["Status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "STARTED"]);
    assert!(
        ops[0]["EndTimestamp"].is_number(),
        "a finished wait has an end"
    );
    assert!(ops[3]["EndTimestamp"].is_null(), "a running wait has none");
    let held = snapshot(&emu, &arn);
    assert_eq!(
        held.operation("w0").unwrap().history,
        ["START", "service:SUCCEEDED"],
        "the service completed it, not the client"
    );
    let t1 = r.token().unwrap();
    let pieces = ["update 0 (id \"w0\")", "finished"];
    let cancel = json!([up("w0", "WAIT", "CANCEL")]);
    assert_refused(
        &emu,
        &arn,
        &t1,
        None,
        cancel,
        &pieces,
        "CANCEL of a finished wait",
    )
    .await;
}

#[tokio::test]
async fn allowed_sequences_follow_the_documented_transitions() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("ok");
    let updates = json!([
        up("ctx", "CONTEXT", "START"),
        with(up("s1", "STEP", "START"), "ParentId", json!("ctx")),
        with(up("s1", "STEP", "SUCCEED"), "Payload", json!("\"r1\"")),
        up("s2", "STEP", "START"),
        with(
            with(
                up("s2", "STEP", "RETRY"),
                "Error",
                json!({"ErrorMessage": "boom", "ErrorType": "E"})
            ),
            "StepOptions",
            json!({"NextAttemptDelaySeconds": 5})
        ),
        with(
            up("w", "WAIT", "START"),
            "WaitOptions",
            json!({"WaitSeconds": 10})
        ),
        up("cb", "CALLBACK", "START"),
        with(
            up("inv", "CHAINED_INVOKE", "START"),
            "ChainedInvokeOptions",
            json!({"FunctionName": "f"})
        ),
    ]);
    let r = checkpoint(&emu, &arn, &t0, None, updates).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let t1 = r.token().unwrap();
    let state = r.json()["NewExecutionState"].clone();
    assert_eq!(
        op_ids(&state["Operations"]),
        ["ctx", "s1", "s2", "w", "cb", "inv"],
        "changed operations in first-change order"
    );
    let ops = state["Operations"].as_array().unwrap();
    assert_eq!(ops[1]["Status"], "SUCCEEDED");
    assert_eq!(ops[1]["ParentId"], "ctx");
    assert_eq!(ops[1]["StepDetails"]["Result"], "\"r1\"");
    assert_eq!(ops[2]["Status"], "PENDING", "RETRY leaves the step PENDING");
    assert_eq!(ops[2]["StepDetails"]["Error"]["ErrorMessage"], "boom");
    assert!(ops[2]["StepDetails"]["NextAttemptTimestamp"].is_number());
    assert!(ops[3]["WaitDetails"]["ScheduledEndTimestamp"].is_number());
    assert!(ops[4]["CallbackDetails"]["CallbackId"].is_string());
    assert!(
        ops[0]["StartTimestamp"].is_number(),
        "timestamps are epoch-second numbers"
    );

    let r = checkpoint(
        &emu,
        &arn,
        &t1,
        None,
        json!([
            up("s2", "STEP", "START"),
            up("s2", "STEP", "SUCCEED"),
            up("ctx", "CONTEXT", "SUCCEED"),
            up("w", "WAIT", "CANCEL"),
        ]),
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "a restart after RETRY is a new attempt: {:?}",
        r.json()
    );
    let s = snapshot(&emu, &arn);
    let s2 = s.operation("s2").unwrap();
    assert_eq!((s2.status.as_str(), s2.attempt), ("SUCCEEDED", 2));
    assert_eq!(s2.history, ["START", "RETRY", "START", "SUCCEED"]);
    assert_eq!(s.operation("w").unwrap().status, "CANCELLED");
    assert_eq!(s.applied.iter().filter(|a| a.checkpoint == 2).count(), 4);
}

#[tokio::test]
async fn service_completions_reach_the_client_through_the_next_checkpoint() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("svc");
    let t1 = checkpoint(
        &emu,
        &arn,
        &t0,
        None,
        json!([with(
            up("w", "WAIT", "START"),
            "WaitOptions",
            json!({"WaitSeconds": 60})
        )]),
    )
    .await
    .token()
    .unwrap();
    emu.complete_operation(&arn, "w", Completion::Succeed(None))
        .unwrap();
    let r = checkpoint(&emu, &arn, &t1, None, json!([])).await;
    let ops = &r.json()["NewExecutionState"]["Operations"];
    assert_eq!(
        op_ids(ops),
        ["w"],
        "an empty checkpoint fetches the service's changes"
    );
    assert_eq!(ops[0]["Status"], "SUCCEEDED");
    assert!(
        emu.complete_operation(&arn, "w", Completion::TimeOut)
            == Err(EmulatorError::AlreadyFinished("w".to_owned())),
        "already finished"
    );
    assert!(
        emu.complete_operation(&arn, "nope", Completion::TimeOut)
            .is_err()
    );
    let exec_id = snapshot(&emu, &arn).execution_operation_id;
    assert_eq!(
        emu.complete_operation(&arn, &exec_id, Completion::Succeed(None)),
        Err(EmulatorError::NotApplicable(exec_id.clone())),
        "the execution is not completed through complete_operation"
    );
    let t2 = r.token().unwrap();
    let t3 = checkpoint(
        &emu,
        &arn,
        &t2,
        None,
        json!([up("s", "STEP", "START"), retry("s", 1)]),
    )
    .await
    .token()
    .unwrap();
    emu.complete_operation(&arn, "s", Completion::Ready)
        .unwrap();
    let r = checkpoint(&emu, &arn, &t3, None, json!([up("s", "STEP", "SUCCEED")])).await;
    assert_eq!(
        r.status, 200,
        "a READY step may succeed without a new START"
    );
    assert_eq!(
        snapshot(&emu, &arn).operation("s").unwrap().history,
        ["START", "RETRY", "service:READY", "SUCCEED"]
    );
}

/// The official SDKs send an oversized result as an EXECUTION SUCCEED under an Id of their own
/// (`execution-result-<epoch ms>`, hashed in TypeScript); the service applies it to the
/// execution whatever Id it names, and so does the emulator.
#[tokio::test]
async fn an_execution_update_under_an_id_of_its_own_completes_the_execution() {
    let emu = default_emulator().await;
    let (arn, batcher) = batcher(&emu, "big-result", BatcherConfig::default());
    let exec_id = snapshot(&emu, &arn).execution_operation_id;
    let done = aws_sdk_lambda::types::OperationUpdate::builder()
        .id("execution-result-1700000000000")
        .r#type(aws_sdk_lambda::types::OperationType::Execution)
        .action(aws_sdk_lambda::types::OperationAction::Succeed)
        .payload("\"a result too large for the response\"")
        .build()
        .unwrap();
    let ack = batcher
        .checkpoint(done)
        .await
        .expect("accepted, as the service accepts it");
    assert_eq!(ack.checkpoint_token(), None, "the execution completed");
    let held = snapshot(&emu, &arn);
    assert!(held.completed, "the execution is complete");
    let execution = held.operation(&exec_id).expect("the execution's operation");
    assert_eq!(execution.status, "SUCCEEDED");
    assert_eq!(
        held.applied.last().map(|u| u.id.as_str()),
        Some("execution-result-1700000000000"),
        "the update is recorded as sent"
    );
}

/// The service completes an execution from its function's answer; `finish_invocation` plays
/// that part, and refuses an answer the service would not accept.
#[tokio::test]
async fn a_handlers_answer_completes_the_execution_as_the_service_would() {
    let emu = default_emulator().await;
    let (arn, token) = emu.start_execution("answered");
    let exec_id = snapshot(&emu, &arn).execution_operation_id;

    emu.finish_invocation(&arn, &json!({"Status": "PENDING"}))
        .unwrap();
    assert!(!snapshot(&emu, &arn).completed, "PENDING leaves it waiting");
    assert_eq!(
        emu.finish_invocation(&arn, &json!({"Status": "DONE"})),
        Err(EmulatorError::InvalidOutput(
            "Status must be SUCCEEDED, FAILED or PENDING".to_owned()
        ))
    );
    emu.finish_invocation(
        &arn,
        &json!({"Status": "FAILED", "Error": {"ErrorType": "Boom", "ErrorMessage": "no"}}),
    )
    .unwrap();
    let held = snapshot(&emu, &arn);
    let execution = held.operation(&exec_id).unwrap();
    assert_eq!(execution.status, "FAILED");
    assert_eq!(execution.history, ["invocation:FAILED"]);
    assert!(held.completed && held.current_token.is_none());
    let late = checkpoint(&emu, &arn, &token, None, json!([])).await;
    assert!(
        late.status == 400 && late.message().starts_with("Invalid checkpoint token"),
        "the chain ended with the answer: {}",
        late.message()
    );
    assert!(
        emu.finish_invocation("no-such-arn", &json!({"Status": "PENDING"}))
            .is_err()
    );
}

/// The EXECUTION operation keeps the input it started with: its result, from a checkpoint or
/// from the handler's answer, is held as its result, and the event shows the input.
#[tokio::test]
async fn completing_an_execution_keeps_its_input_and_holds_its_result() {
    let emu = default_emulator().await;
    for by_checkpoint in [true, false] {
        let (arn, t0) = emu.start_execution_with_input("kept", Some(r#"{"input":1}"#));
        let exec_id = snapshot(&emu, &arn).execution_operation_id;
        if by_checkpoint {
            let done = with(
                up("execution-result-1", "EXECUTION", "SUCCEED"),
                "Payload",
                json!("\"the result\""),
            );
            let r = checkpoint(&emu, &arn, &t0, None, json!([done])).await;
            assert_eq!(r.status, 200, "{:?}", r.json());
            let answered = &r.json()["NewExecutionState"]["Operations"][0];
            assert_eq!(
                answered["ExecutionDetails"]["InputPayload"], r#"{"input":1}"#,
                "the answer shows the input, not the result"
            );
        } else {
            emu.finish_invocation(
                &arn,
                &json!({"Status": "SUCCEEDED", "Result": "\"the result\""}),
            )
            .unwrap();
        }
        let held = snapshot(&emu, &arn);
        let execution = held.operation(&exec_id).unwrap();
        assert_eq!(
            execution.payload.as_deref(),
            Some(r#"{"input":1}"#),
            "by checkpoint: {by_checkpoint}"
        );
        assert_eq!(
            execution.result.as_deref(),
            Some("\"the result\""),
            "by checkpoint: {by_checkpoint}"
        );
    }
}

/// An execution started without input carries the input the service gives it, `"{}"`: the
/// invocation event, the state pages and the held EXECUTION operation all show it.
#[tokio::test]
async fn an_execution_started_without_input_carries_an_empty_object_as_its_input() {
    let emu = default_emulator().await;
    let (plain, token) = emu.start_execution("no-input");
    let (with_none, _) = emu.start_execution_with_input("no-input-either", None);
    for arn in [&plain, &with_none] {
        let event = emu.invocation_event(arn).unwrap();
        let execution = &event["InitialExecutionState"]["Operations"][0];
        assert_eq!(execution["Type"], "EXECUTION");
        assert_eq!(
            execution["ExecutionDetails"]["InputPayload"], "{}",
            "an execution started without input is invoked with an empty object as its input"
        );
        let held = snapshot(&emu, arn);
        let exec_id = held.execution_operation_id.clone();
        assert_eq!(
            held.operation(&exec_id).unwrap().payload.as_deref(),
            Some("{}"),
            "the EXECUTION operation holds that input"
        );
    }
    let page = request(
        emu.local_addr(),
        "GET",
        &state_path(&plain, &token, None, None),
        b"",
    )
    .await;
    assert_eq!(page.status, 200, "{:?}", page.json());
    assert_eq!(
        page.json()["Operations"][0]["ExecutionDetails"]["InputPayload"],
        "{}",
        "a state page shows the same input"
    );
    emu.shutdown().await;
}

/// The service takes an answer of at most 6 MiB less 50 bytes of JSON; a larger one is
/// refused whole (Lambda fails the invocation) and completes nothing, so the execution is
/// still waiting for an answer it can take.
#[tokio::test]
async fn an_answer_over_the_response_limit_is_refused_and_completes_nothing() {
    const LIMIT: usize = 6 * 1024 * 1024 - 50;
    let emu = default_emulator().await;
    let answer = |json_bytes: usize| {
        let overhead = json!({"Status": "SUCCEEDED", "Result": ""})
            .to_string()
            .len();
        json!({"Status": "SUCCEEDED", "Result": "x".repeat(json_bytes - overhead)})
    };
    let (over, _) = emu.start_execution("over");
    let refused = emu.finish_invocation(&over, &answer(LIMIT + 1));
    assert!(
        matches!(&refused, Err(EmulatorError::InvalidOutput(why)) if why.contains("response limit")),
        "an answer one byte over the response limit is refused: {refused:?}"
    );
    let held = snapshot(&emu, &over);
    assert!(
        !held.completed && held.current_token.is_some(),
        "a refused answer completes nothing and ends no token chain"
    );
    let exec_id = held.execution_operation_id.clone();
    assert_eq!(held.operation(&exec_id).unwrap().status, "STARTED");
    let (at, _) = emu.start_execution("at");
    emu.finish_invocation(&at, &answer(LIMIT))
        .expect("an answer of exactly the response limit is taken");
    assert!(snapshot(&emu, &at).completed);
    emu.shutdown().await;
}

/// An EXECUTION update's own Id counts once per request, as every Id does; under an Id of its
/// own it names no stored operation, so its Name is not compared with the execution's.
#[tokio::test]
async fn an_execution_update_repeating_an_id_is_refused_and_its_own_id_is_not_compared() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("ids");
    let wait = with(
        up("x1", "WAIT", "START"),
        "WaitOptions",
        json!({"WaitSeconds": 60}),
    );
    let done = with(up("x1", "EXECUTION", "SUCCEED"), "Payload", json!("1"));
    assert_refused(
        &emu,
        &arn,
        &t0,
        None,
        json!([wait, done]),
        &["update 1", "repeats the Id"],
        "EXECUTION update under an earlier update's Id",
    )
    .await;
    let named = with(
        with(
            up("execution-result-1", "EXECUTION", "SUCCEED"),
            "Payload",
            json!("1"),
        ),
        "Name",
        json!("other"),
    );
    let r = checkpoint(&emu, &arn, &t0, None, json!([named])).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(snapshot(&emu, &arn).completed);
}
