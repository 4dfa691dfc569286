//! Local validation fails only the caller of a bad update; configuration errors
//! name their field.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use aws_sdk_lambda::types::OperationUpdate;
use checkpoint_batcher::{BatcherConfig, BatcherError, CheckpointBatcher, InMemoryBackend};

#[tokio::test(start_paused = true)]
async fn an_invalid_update_fails_its_caller_only_and_others_go_through() {
    let rig = rig(config());
    let bad = [
        ("Id", start("bad id")),
        ("Id", start(&"x".repeat(65))),
        (
            "ParentId",
            OperationUpdate::builder()
                .id("a")
                .parent_id("p/q")
                .r#type("STEP".into())
                .action("START".into())
                .build()
                .unwrap(),
        ),
        (
            "Name",
            OperationUpdate::builder()
                .id("a")
                .name("n".repeat(257))
                .r#type("STEP".into())
                .action("START".into())
                .build()
                .unwrap(),
        ),
        (
            "SubType",
            OperationUpdate::builder()
                .id("a")
                .sub_type("s".repeat(33))
                .r#type("STEP".into())
                .action("START".into())
                .build()
                .unwrap(),
        ),
        ("Payload", succeed("a", &"p".repeat(1024 * 1024 + 1))),
    ];
    let good = rig.batcher.submit(start("good-before")).await.unwrap();
    for (field, update) in bad {
        let err = rig.batcher.checkpoint(update).await.unwrap_err();
        let BatcherError::InvalidUpdate(invalid) = &err else {
            panic!("expected InvalidUpdate, got {err}")
        };
        assert_eq!(invalid.field(), field);
        assert!(
            err.to_string().contains(field),
            "the message names the field: {err}"
        );
    }
    within(Duration::from_secs(5), good).await.unwrap();
    rig.batcher.checkpoint(start("good-after")).await.unwrap();
    assert_eq!(ids(&rig.memory.applied()), ["good-before", "good-after"]);
    assert!(matches!(
        rig.batcher.try_submit(start("x y")),
        Err(BatcherError::InvalidUpdate(_))
    ));
}

#[tokio::test]
async fn a_bad_configuration_or_token_is_refused_with_the_field_named() {
    let backend = Arc::new(InMemoryBackend::new());
    let bad = BatcherConfig {
        max_batch_updates: 300,
        ..BatcherConfig::default()
    };
    let err = CheckpointBatcher::spawn(backend.clone(), ARN, "t", bad).unwrap_err();
    assert_eq!(err.field(), "max_batch_updates");
    assert!(err.to_string().contains("250"), "{err}");
    let err =
        CheckpointBatcher::spawn(backend.clone(), ARN, "", BatcherConfig::default()).unwrap_err();
    assert_eq!(err.field(), "initial_token");
    // As long as the service's longest tokens in characters, but twice as long in a request.
    let wide = "é".repeat(2048);
    let err =
        CheckpointBatcher::spawn(backend.clone(), ARN, wide, BatcherConfig::default()).unwrap_err();
    assert_eq!(err.field(), "initial_token", "{err}");
    let err = CheckpointBatcher::spawn(backend, "", "t", BatcherConfig::default()).unwrap_err();
    assert_eq!(err.field(), "arn");
}
