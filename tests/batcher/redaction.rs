//! Secrets stay out of `Debug`, `Display` and logs: no public type that can hold a checkpoint
//! token or a payload prints either, and the batcher logs neither at any level.

use std::sync::Arc;

use crate::support::*;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use checkpoint_batcher::emulator::Emulator;
use checkpoint_batcher::{
    BackendError, BatcherConfig, CheckpointBatcher, ErrorKind, Fault, FaultyBackend,
    InMemoryBackend, RealBackend,
};

const PAYLOAD: &str = "\"PAYLOAD-6f1d2c-NEVER-LOGGED\"";

#[tokio::test(flavor = "current_thread")]
async fn no_public_type_and_no_log_line_shows_a_token_or_a_payload() {
    let capture = Capture::default();
    let writer = capture.clone();
    // Everything this crate logs, at every level. The AWS SDK's own TRACE output (the
    // `aws_smithy_runtime` target) prints whole request bodies: that is the SDK's, and
    // applications keep it at DEBUG or above.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_env_filter("checkpoint_batcher=trace")
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emulator = Emulator::builder().seed(11).start().await.unwrap();
    let (arn, first_token) = emulator.start_execution("secrets");
    let mut secrets = vec![first_token.clone(), PAYLOAD.trim_matches('"').to_owned()];
    let real = RealBackend::new(emulator.client());
    let faulty = Arc::new(FaultyBackend::new(Arc::new(real.clone())));
    faulty.push(Fault::Transient);
    let batcher = CheckpointBatcher::spawn(
        faulty.clone(),
        arn.clone(),
        first_token,
        BatcherConfig::default(),
    )
    .unwrap();
    drop(batcher.submit(start("s1")).await.unwrap());
    let ack = batcher.checkpoint(succeed("s1", PAYLOAD)).await.unwrap();
    secrets.push(ack.checkpoint_token().unwrap().to_owned());
    let refresh = batcher.refresh().await.unwrap();
    secrets.push(refresh.checkpoint_token().unwrap().to_owned());
    let report = batcher.shutdown().await.unwrap();
    let held = emulator.execution(&arn).unwrap();
    secrets.extend(held.current_token.clone());

    // A failure whose cause holds the SDK's error, with its raw response.
    let (arn2, token2) = emulator.start_execution("secrets-2");
    secrets.push(token2.clone());
    secrets.extend(emulator.rotate_token(&arn2));
    let stale = CheckpointBatcher::spawn(
        Arc::new(real.clone()),
        arn2,
        token2,
        BatcherConfig::default(),
    )
    .unwrap();
    let failed = stale.checkpoint(start("s1")).await.unwrap_err();
    assert_eq!(failed.kind(), Some(ErrorKind::InvalidCheckpointToken));

    // A scripted answer and the in-memory double hold tokens too.
    let memory = InMemoryBackend::new();
    secrets.extend(memory.current_token());
    let scripted = Fault::Respond(
        CheckpointDurableExecutionOutput::builder()
            .checkpoint_token("SCRIPTED-TOKEN-f00d")
            .build(),
    );
    secrets.push("SCRIPTED-TOKEN-f00d".to_owned());

    let shown = [
        ("CheckpointAck", format!("{ack:?}")),
        ("a refresh's CheckpointAck", format!("{refresh:?}")),
        ("BatcherReport", format!("{report:?}")),
        ("BatcherStats", format!("{:?}", report.stats)),
        ("BatcherHandle", format!("{batcher:?}")),
        ("BatcherError (Debug)", format!("{failed:?}")),
        ("BatcherError (Display)", failed.to_string()),
        (
            "BackendError",
            format!("{:?}", BackendError::new(ErrorKind::Transient, "x")),
        ),
        ("RealBackend", format!("{real:?}")),
        ("FaultyBackend", format!("{faulty:?}")),
        ("CallRecord", format!("{:?}", faulty.call_log())),
        ("Fault::Respond", format!("{scripted:?}")),
        ("InMemoryBackend", format!("{memory:?}")),
        ("BatcherConfig", format!("{:?}", BatcherConfig::default())),
        // The emulator holds every token it issued and every payload it applied.
        ("Emulator", format!("{emulator:?}")),
        ("ExecutionSnapshot", format!("{held:?}")),
        ("OperationRecord", format!("{:?}", held.operation("s1"))),
    ];
    for (what, text) in &shown {
        assert_clean(what, text, &secrets);
    }
    assert!(
        shown[0].1.contains("chars #"),
        "the token is shown redacted, as its length and a hash: {}",
        shown[0].1
    );
    assert!(
        !real_secret_shown(&format!("{real:?}")),
        "the client's secret key never shows"
    );

    drop((batcher, stale));
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("checkpoint_batch"),
        "the capture saw the batcher's spans:\n{log}"
    );
    assert_clean("the TRACE log", &log, &secrets);
    emulator.shutdown().await;
}

fn real_secret_shown(text: &str) -> bool {
    text.contains("emulator-secret")
}
