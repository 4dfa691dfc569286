//! Tracing: one span per batch with its figures; payloads and tokens never logged.

use crate::support::*;
use checkpoint_batcher::Fault;
use tracing_subscriber::fmt::format::FmtSpan;

/// Captures everything logged at every level, with a line per closed span, until the guard
/// is dropped.
fn capture_traces() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    (capture, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(start_paused = true)]
async fn each_batch_has_a_span_with_its_figures_and_no_payload_or_token_is_logged() {
    let (capture, _guard) = capture_traces();

    let rig = rig(config());
    rig.faulty.push(Fault::Transient);
    let ack = rig
        .batcher
        .checkpoint(succeed("s1", "SECRET-PAYLOAD"))
        .await
        .unwrap();
    let token = ack.checkpoint_token().unwrap().to_owned();
    rig.faulty.push(Fault::Error(
        checkpoint_batcher::ErrorKind::Rejected,
        "bad".into(),
    ));
    let _ = rig
        .batcher
        .checkpoint(succeed("s2", "SECRET-PAYLOAD"))
        .await
        .unwrap_err();
    drop(rig);
    tokio::task::yield_now().await;

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let closes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("checkpoint_batch") && l.contains("close"))
        .collect();
    assert_eq!(closes.len(), 2, "one span per batch:\n{log}");
    for field in [
        "sequence=1",
        "updates=1",
        "bytes=",
        "attempts=2",
        "outcome=",
        "latency_ms=",
    ] {
        assert!(
            closes[0].contains(field),
            "the batch span records {field}: {}",
            closes[0]
        );
    }
    assert!(
        closes[1].contains("failed"),
        "the failed batch's outcome: {}",
        closes[1]
    );
    assert!(log.contains("retrying"), "retries are logged");
    assert!(
        !log.contains("SECRET-PAYLOAD"),
        "payloads never appear in logs:\n{log}"
    );
    assert!(!log.contains(&token), "tokens never appear in logs:\n{log}");
    assert!(
        !log.contains("VE9LRU4"),
        "no checkpoint token appears in logs:\n{log}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_span_counts_checkpoint_attempts_and_page_attempts_apart() {
    use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
    use aws_sdk_lambda::types::CheckpointUpdatedExecutionState;

    let (capture, _guard) = capture_traces();

    let rig = rig(config());
    // Two failed attempts, then an answer that announces one more page, which the in-memory
    // execution serves with its current token.
    rig.faulty.push(Fault::Transient);
    rig.faulty.push(Fault::Transient);
    rig.faulty.push(Fault::Respond(
        CheckpointDurableExecutionOutput::builder()
            .checkpoint_token(rig.memory.current_token().unwrap())
            .new_execution_state(
                CheckpointUpdatedExecutionState::builder()
                    .next_marker("more")
                    .build(),
            )
            .build(),
    ));
    rig.batcher.checkpoint(start("s1")).await.unwrap();
    drop(rig);
    tokio::task::yield_now().await;

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let close = log
        .lines()
        .find(|l| l.contains("checkpoint_batch") && l.contains("close"))
        .expect("the batch span closed");
    assert!(
        close.contains("attempts=3"),
        "three checkpoint attempts: {close}"
    );
    assert!(
        close.contains("page_attempts=1"),
        "one page fetched, counted apart: {close}"
    );
}
