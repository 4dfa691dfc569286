//! Bad input: each broken field fails only its caller while the others go through, and an
//! update larger than a batch goes alone.

use crate::support::*;
use aws_sdk_lambda::types::{ErrorObject, OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::emulator::Faults;
use checkpoint_batcher::{BatcherError, FailureScope};

fn with_error(id: &str, data_bytes: usize) -> OperationUpdate {
    OperationUpdate::builder()
        .id(id)
        .r#type(OperationType::Step)
        .action(OperationAction::Fail)
        .error(
            ErrorObject::builder()
                .error_type("Boom")
                .error_message("failed")
                .error_data("x".repeat(data_bytes))
                .build(),
        )
        .build()
        .expect("complete")
}

fn bad_inputs(exec_id: &str) -> Vec<(&'static str, &'static str, OperationUpdate)> {
    let step = |id: &str| {
        OperationUpdate::builder()
            .id(id)
            .r#type(OperationType::Step)
            .action(OperationAction::Start)
    };
    let mib = 1024 * 1024;
    vec![
        ("empty Id", "Id", step("").build().expect("complete")),
        (
            "Id of 65 characters",
            "Id",
            step(&"i".repeat(65)).build().expect("complete"),
        ),
        (
            "Id with a space",
            "Id",
            step("a b").build().expect("complete"),
        ),
        (
            "Id with a slash",
            "Id",
            step("a/b").build().expect("complete"),
        ),
        (
            "Id with a non-ASCII letter",
            "Id",
            step("caf\u{e9}").build().expect("complete"),
        ),
        (
            "ParentId with a dot",
            "ParentId",
            step("p1").parent_id("ctx.1").build().expect("complete"),
        ),
        (
            "ParentId of 65 characters",
            "ParentId",
            step("p2")
                .parent_id("c".repeat(65))
                .build()
                .expect("complete"),
        ),
        (
            "Name of 257 characters",
            "Name",
            step("n1").name("n".repeat(257)).build().expect("complete"),
        ),
        (
            "SubType of 33 characters",
            "SubType",
            step("st1")
                .sub_type("s".repeat(33))
                .build()
                .expect("complete"),
        ),
        (
            "STEP payload of 1 MiB + 1",
            "Payload",
            succeed("pl1", &"p".repeat(mib + 1)),
        ),
        (
            "EXECUTION payload of 6 MiB + 1",
            "Payload",
            OperationUpdate::builder()
                .id(exec_id)
                .r#type(OperationType::Execution)
                .action(OperationAction::Succeed)
                .payload("p".repeat(6 * mib + 1))
                .build()
                .expect("complete"),
        ),
        ("Error of over 1 MiB", "Error", with_error("e1", mib)),
        (
            "unknown Type",
            "Type",
            update("t1", OperationType::from("BOGUS"), OperationAction::Start),
        ),
        (
            "unknown Action",
            "Action",
            update("a1", OperationType::Step, OperationAction::from("EXPLODE")),
        ),
    ]
}

/// Every field constraint broken one at a time, while 40 other callers checkpoint: each bad
/// caller alone gets `InvalidUpdate` naming the field, nothing of it reaches the service, and
/// the others' updates go through. Values at the limits pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_field_fails_only_its_caller_and_the_others_go_through() {
    let _serial = SERIAL.lock().await;
    let emu = emulator(Faults::default(), 0xBAD).await;
    let (arn, batcher) = batcher(&emu, "bad-input", patient_config(0xBAD));
    let exec_id = snapshot(&emu, &arn).execution_operation_id;
    let mut good = Vec::new();
    for g in 0..40 {
        let batcher = batcher.clone();
        good.push(tokio::spawn(async move {
            for n in 0..5 {
                batcher.checkpoint(start(&format!("good{g}-{n}"))).await?;
            }
            Ok::<_, BatcherError>(())
        }));
    }
    let cases = bad_inputs(&exec_id);
    let mut bad_ids = Vec::new();
    for (what, field, bad) in cases {
        bad_ids.push(bad.id.clone());
        for via_try in [false, true] {
            let error = if via_try {
                batcher
                    .try_submit(bad.clone())
                    .map(drop)
                    .expect_err("refused")
            } else {
                within_named(HANG, what, batcher.checkpoint(bad.clone()))
                    .await
                    .expect_err("refused")
            };
            let BatcherError::InvalidUpdate(invalid) = &error else {
                panic!("{what}: expected InvalidUpdate, got {error}")
            };
            assert_eq!(invalid.field(), field, "{what}: the error names the field");
            assert!(
                error.to_string().contains(field),
                "{what}: a clear message: {error}"
            );
            assert_eq!(
                error.scope(),
                Some(FailureScope::Execution),
                "{what}: a refused update is the handler's bug, which a re-invocation would repeat: it fails the execution"
            );
        }
        assert!(batcher.is_open(), "{what}: the batcher keeps going");
    }
    // At the limits: accepted.
    let at_limits = [
        start(&"i".repeat(64)),
        OperationUpdate::builder()
            .id("name-256")
            .name("\u{e9}".repeat(256))
            .sub_type("s".repeat(32))
            .r#type(OperationType::Step)
            .action(OperationAction::Start)
            .build()
            .expect("complete"),
    ];
    for ok in at_limits {
        within_named(HANG, "an update at the limits", batcher.checkpoint(ok))
            .await
            .expect("accepted");
    }
    for task in good {
        within_named(HANG, "a good caller", task)
            .await
            .expect("no panic")
            .expect("acknowledged");
    }
    let snap = snapshot(&emu, &arn);
    assert_eq!(
        snap.rejected_checkpoints, 0,
        "nothing invalid reached the service"
    );
    assert_eq!(snap.applied.len(), 40 * 5 + 2, "every good update applied");
    for id in bad_ids
        .iter()
        .filter(|id| !id.is_empty() && **id != exec_id)
    {
        assert_eq!(
            applied_count(&snap, id),
            0,
            "{id}: refused locally, never sent"
        );
    }
    println!(
        "bad input: {} broken fields refused locally (checkpoint and try_submit), 200 good \
         updates applied alongside, 0 requests rejected by the service",
        bad_ids.len()
    );
    emu.shutdown().await;
}

/// An update larger than `max_batch_bytes` (800 KiB against 750 KiB) is sent in a batch of its
/// own; the updates queued before and after it go in batches of their own too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_larger_than_a_batch_goes_alone_and_its_neighbours_go_through() {
    let _serial = SERIAL.lock().await;
    let emu = emulator(Faults::default(), 0xB16).await;
    let (arn, faulty, batcher) = held_batcher(&emu, "oversized", patient_config(0xB16));
    within_named(HANG, "setup", batcher.checkpoint(start("big")))
        .await
        .expect("applies");
    faulty.hold();
    let warm = batcher.submit(start("warm")).await.expect("accepted");
    within_named(HANG, "the held call to start", faulty.wait_for_calls(2)).await;
    let mut before = Vec::new();
    for i in 0..3 {
        before.push(
            batcher
                .submit(start(&format!("before{i}")))
                .await
                .expect("accepted"),
        );
    }
    let big = batcher
        .submit(succeed("big", &format!("\"{}\"", "x".repeat(800 * 1024))))
        .await
        .expect("1 MiB is the payload limit, 800 KiB passes");
    let mut after = Vec::new();
    for i in 0..3 {
        after.push(
            batcher
                .submit(start(&format!("after{i}")))
                .await
                .expect("accepted"),
        );
    }
    faulty.release();
    within_named(HANG, "warm", warm)
        .await
        .expect("acknowledged");
    let big = within_named(HANG, "the oversized update", big)
        .await
        .expect("acknowledged");
    assert_eq!(big.batch_updates(), 1, "an oversized update goes alone");
    assert!(big.batch_bytes() > 750 * 1024);
    let mut neighbours = Vec::new();
    for ack in before.into_iter().chain(after) {
        neighbours.push(
            within_named(HANG, "a neighbour", ack)
                .await
                .expect("acknowledged"),
        );
    }
    assert!(
        neighbours[..3]
            .iter()
            .all(|a| a.same_batch(&neighbours[0]) && a.batch_sequence() < big.batch_sequence())
    );
    assert!(
        neighbours[3..]
            .iter()
            .all(|a| a.same_batch(&neighbours[3]) && a.batch_sequence() > big.batch_sequence())
    );
    let snap = snapshot(&emu, &arn);
    let big_checkpoint = snap
        .applied
        .iter()
        .find(|u| u.id == "big" && u.action == "SUCCEED")
        .expect("applied")
        .checkpoint;
    assert_eq!(
        snap.applied
            .iter()
            .filter(|u| u.checkpoint == big_checkpoint)
            .count(),
        1
    );
    assert_eq!(snap.rejected_checkpoints, 0);
    let sizes = &snap.request_body_sizes;
    println!(
        "oversized: an 800 KiB update sent alone in a {} byte request; neighbours in batches of 3",
        sizes.iter().max().copied().unwrap_or(0)
    );
    emu.shutdown().await;
}
