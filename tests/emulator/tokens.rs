//! Tokens: every accepted checkpoint returns a new token, a stale, unknown, rotated or
//! revoked token is refused, and an execution's SUCCEED ends the chain.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn every_accepted_checkpoint_including_an_empty_one_returns_a_new_token() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("tokens");
    let r1 = checkpoint(&emu, &arn, &t0, None, json!([])).await;
    assert_eq!(r1.status, 200, "an empty checkpoint is accepted");
    let t1 = r1.token().expect("a new token");
    assert_ne!(t1, t0, "the token rotates on an empty checkpoint");
    let r2 = checkpoint(&emu, &arn, &t1, None, json!([up("s1", "STEP", "START")])).await;
    let t2 = r2.token().expect("a new token");
    assert_ne!(t2, t1, "the token rotates on every checkpoint");
    assert_eq!(
        snapshot(&emu, &arn).current_token.as_deref(),
        Some(t2.as_str())
    );
    assert_eq!(snapshot(&emu, &arn).applied_checkpoints, 2);
}

#[tokio::test]
async fn a_stale_or_unknown_token_is_refused_with_invalid_checkpoint_token() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("stale");
    let t1 = checkpoint(&emu, &arn, &t0, None, json!([]))
        .await
        .token()
        .unwrap();
    // An empty token was never issued: stale too, not a malformed request.
    for bad in [t0.as_str(), "AAAAunknownAAAA", ""] {
        let r = checkpoint(&emu, &arn, bad, None, json!([])).await;
        assert_eq!(r.status, 400, "a stale token is a 400");
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("InvalidParameterValueException")
        );
        assert!(
            r.message().starts_with("Invalid checkpoint token"),
            "message must start with the service's text: {}",
            r.message()
        );
    }
    let s = snapshot(&emu, &arn);
    assert_eq!(
        s.current_token.as_deref(),
        Some(t1.as_str()),
        "a refused request does not consume the token"
    );
    assert_eq!(
        (
            s.checkpoint_calls,
            s.applied_checkpoints,
            s.rejected_checkpoints
        ),
        (4, 1, 3)
    );
}

#[tokio::test]
async fn rotate_token_makes_the_clients_token_stale() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("rotate");
    let fresh = emu.rotate_token(&arn).unwrap();
    assert_ne!(fresh, t0);
    let r = checkpoint(&emu, &arn, &t0, None, json!([])).await;
    assert!(
        r.message().starts_with("Invalid checkpoint token"),
        "old token is stale after rotation"
    );
    let r = checkpoint(&emu, &arn, &fresh, None, json!([])).await;
    assert_eq!(r.status, 200, "the rotated token works");
    assert!(emu.rotate_token("arn:unknown").is_none());
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_get_state_checks_the_token_too() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("revoke");
    let r = request(
        emu.local_addr(),
        "GET",
        &state_path(&arn, "nope", None, None),
        b"",
    )
    .await;
    assert!(
        r.status == 400 && r.message().starts_with("Invalid checkpoint token"),
        "GET checks the token"
    );
    assert!(emu.revoke_token(&arn));
    let r = checkpoint(&emu, &arn, &t0, None, json!([])).await;
    assert!(r.status == 400 && r.message().starts_with("Invalid checkpoint token"));
}

/// A state read without a `CheckpointToken` names no token the service issued: stale, as a
/// read with an empty one is. (A checkpoint without one is a malformed request body.)
#[tokio::test]
async fn a_state_read_without_or_with_an_empty_token_is_answered_as_stale() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("tokenless");
    let without = format!("/2025-12-01/durable-executions/{}/state", enc(&arn));
    for path in [without, state_path(&arn, "", None, None)] {
        let r = request(emu.local_addr(), "GET", &path, b"").await;
        r.assert_invalid_parameter("Invalid checkpoint token", &path);
        assert!(
            r.message().starts_with("Invalid checkpoint token"),
            "the stale-token phrase opens the message: {}",
            r.message()
        );
    }
    assert_eq!(
        snapshot(&emu, &arn).current_token.as_deref(),
        Some(t0.as_str()),
        "a refused read leaves the token as it was"
    );
}

#[tokio::test]
async fn an_execution_succeed_ends_the_token_chain() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("done");
    let exec_id = snapshot(&emu, &arn).execution_operation_id;
    let r = checkpoint(
        &emu,
        &arn,
        &t0,
        None,
        json!([
            up("s", "STEP", "START"),
            with(
                up(&exec_id, "EXECUTION", "SUCCEED"),
                "Payload",
                json!("result")
            ),
        ]),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.json().get("CheckpointToken").is_none(),
        "no token after the execution completed"
    );
    let s = snapshot(&emu, &arn);
    assert!(s.completed && s.current_token.is_none());
    assert_eq!(s.operations[0].status, "SUCCEEDED");
    assert_eq!(s.operations[0].result.as_deref(), Some("result"));
    let r = checkpoint(&emu, &arn, &t0, None, json!([])).await;
    assert!(
        r.status == 400 && r.message().starts_with("Invalid checkpoint token"),
        "later calls are refused"
    );
    assert!(
        emu.rotate_token(&arn).is_none(),
        "a completed execution gets no new token"
    );
}
