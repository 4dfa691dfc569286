//! Idempotency: the same client token and token replay the stored answer and apply once, and a
//! lost answer (a 500 or a dropped connection) is applied once.

use crate::support::*;
use checkpoint_batcher::emulator::{Emulator, Faults};
use serde_json::json;

#[tokio::test]
async fn the_same_client_token_and_token_replays_the_stored_answer_and_applies_once() {
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("idem");
    let updates = json!([
        up("s1", "STEP", "START"),
        with(up("s1", "STEP", "SUCCEED"), "Payload", json!("42"))
    ]);
    let first = checkpoint(&emu, &arn, &t0, Some("ct-1"), updates.clone()).await;
    let again = checkpoint(&emu, &arn, &t0, Some("ct-1"), updates.clone()).await;
    assert_eq!(first.status, 200);
    assert_eq!(again.status, 200, "a replay is answered, not refused");
    assert_eq!(
        first.body, again.body,
        "the stored answer is returned byte for byte"
    );
    let s = snapshot(&emu, &arn);
    assert_eq!(s.applied.len(), 2, "the two updates were applied once");
    assert_eq!((s.applied_checkpoints, s.replayed_checkpoints), (1, 1));
    assert_eq!(s.operation("s1").unwrap().history, ["START", "SUCCEED"]);

    let other = checkpoint(&emu, &arn, &t0, Some("ct-1"), json!([])).await;
    assert_eq!(
        other.status, 400,
        "the same ClientToken with other updates is refused"
    );
    let other_ct = checkpoint(&emu, &arn, &t0, Some("ct-2"), updates).await;
    assert!(
        other_ct.message().starts_with("Invalid checkpoint token"),
        "another ClientToken with a consumed token is just stale"
    );
}

#[tokio::test]
async fn a_lost_answer_is_applied_once_and_the_retry_gets_the_stored_answer() {
    let emu = Emulator::builder()
        .faults(Faults {
            lost_answer_rate: 1.0,
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let (arn, t0) = emu.start_execution("lost");
    let updates = json!([up("s1", "STEP", "START")]);
    let lost = checkpoint(&emu, &arn, &t0, Some("retry-me"), updates.clone()).await;
    assert_eq!(lost.status, 500, "the answer is lost as a 500");
    assert_eq!(lost.header("x-amzn-errortype"), Some("ServiceException"));
    let s = snapshot(&emu, &arn);
    assert_eq!(
        (s.applied_checkpoints, s.lost_answers),
        (1, 1),
        "the checkpoint was committed"
    );
    assert_ne!(
        s.current_token.as_deref(),
        Some(t0.as_str()),
        "and the token consumed"
    );

    emu.set_faults(Faults::none());
    let retry = checkpoint(&emu, &arn, &t0, Some("retry-me"), updates).await;
    assert_eq!(
        retry.status, 200,
        "the retry with the same ClientToken is answered"
    );
    assert_eq!(
        retry.token(),
        snapshot(&emu, &arn).current_token,
        "with the token the commit produced"
    );
    let s = snapshot(&emu, &arn);
    assert_eq!(
        (s.applied.len(), s.replayed_checkpoints),
        (1, 1),
        "applied once, replayed once"
    );
}

#[tokio::test]
async fn a_lost_answer_can_drop_the_connection() {
    let emu = Emulator::builder()
        .faults(Faults {
            lost_answer_rate: 1.0,
            drop_connection_on_lost_answer: true,
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let (arn, t0) = emu.start_execution("drop");
    let body = json!({ "CheckpointToken": t0, "ClientToken": "c", "Updates": [] }).to_string();
    let r = try_request(
        emu.local_addr(),
        "POST",
        &checkpoint_path(&arn),
        body.as_bytes(),
    )
    .await;
    assert!(r.is_err(), "no complete response arrives: {r:?}");
    assert_eq!(
        snapshot(&emu, &arn).applied_checkpoints,
        1,
        "yet the checkpoint was applied"
    );
}
