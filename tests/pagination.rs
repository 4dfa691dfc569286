//! Semantic 7: a `NextMarker` in a checkpoint response is followed, with retries and with the
//! new token, before the batch is acknowledged.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::primitives::DateTime;
use aws_sdk_lambda::types::{
    CheckpointUpdatedExecutionState, Operation, OperationStatus, OperationType, OperationUpdate,
};
use checkpoint_batcher::{
    BackendError, BatcherError, CheckpointBatcher, DurableBackend, ErrorKind, FailureScope,
};
use common::*;

fn operation(id: &str) -> Operation {
    Operation::builder()
        .id(id)
        .r#type(OperationType::Step)
        .status(OperationStatus::Succeeded)
        .start_timestamp(DateTime::from_secs(0))
        .build()
        .unwrap()
}

/// Answers the first checkpoint with one operation and a marker, serves two more pages, and
/// fails the first page request with a transient error (or every one, when `broken`).
/// One state request: token, marker and page size.
type StateCall = (String, Option<String>, Option<i32>);

#[derive(Debug, Default)]
struct Paged {
    state_calls: Mutex<Vec<StateCall>>,
    broken: bool,
}

#[async_trait]
impl DurableBackend for Paged {
    async fn checkpoint(
        &self,
        _arn: &str,
        _token: &str,
        _updates: Vec<OperationUpdate>,
        _client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        Ok(CheckpointDurableExecutionOutput::builder()
            .checkpoint_token("new-token")
            .new_execution_state(
                CheckpointUpdatedExecutionState::builder()
                    .operations(operation("op1"))
                    .next_marker("m1")
                    .build(),
            )
            .build())
    }

    async fn get_execution_state(
        &self,
        _arn: &str,
        token: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        let attempt = {
            let mut calls = self.state_calls.lock().unwrap();
            calls.push((token.to_owned(), marker.map(str::to_owned), max_items));
            calls.len()
        };
        if attempt == 1 || self.broken {
            return Err(BackendError::new(ErrorKind::Transient, "injected").with_status(500));
        }
        let (ops, next) = match marker {
            Some("m1") => (vec![operation("op2"), operation("op3")], Some("m2")),
            Some("m2") => (vec![operation("op4")], None),
            other => panic!("unexpected marker {other:?}"),
        };
        Ok(GetDurableExecutionStateOutput::builder()
            .set_operations(Some(ops))
            .set_next_marker(next.map(str::to_owned))
            .build()
            .unwrap())
    }
}

#[tokio::test(start_paused = true)]
async fn every_page_is_fetched_with_the_new_token_before_the_batch_is_acknowledged() {
    let backend = std::sync::Arc::new(Paged::default());
    let batcher = CheckpointBatcher::spawn(backend.clone(), ARN, "t0", config()).unwrap();
    let a = batcher.submit(start("a")).await.unwrap();
    let b = batcher.submit(start("b")).await.unwrap();
    let (a, b) = (
        within(Duration::from_secs(5), a).await.unwrap(),
        within(Duration::from_secs(5), b).await.unwrap(),
    );
    let ids: Vec<&str> = a.operations().iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        ["op1", "op2", "op3", "op4"],
        "every page is in the acknowledgement"
    );
    assert!(
        a.same_batch(&b),
        "one batch's acks share the operations rather than copying them"
    );
    assert!(std::ptr::eq(
        a.operations().as_ptr(),
        b.operations().as_ptr()
    ));
    let calls = backend.state_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "the transient page failure is retried");
    for (token, _, max_items) in &calls {
        assert_eq!(
            token, "new-token",
            "pages are fetched with the token the checkpoint returned"
        );
        assert_eq!(*max_items, Some(1000));
    }
    assert_eq!(calls[0].1, calls[1].1, "the retry asks for the same page");
}

#[tokio::test(start_paused = true)]
async fn a_page_that_cannot_be_fetched_fails_the_batch_and_latches() {
    let backend = std::sync::Arc::new(Paged {
        broken: true,
        ..Paged::default()
    });
    let batcher = CheckpointBatcher::spawn(backend, ARN, "t0", config()).unwrap();
    let err = within(Duration::from_secs(60), batcher.checkpoint(start("a")))
        .await
        .unwrap_err();
    assert!(matches!(err, BatcherError::Failed(_)));
    assert_eq!(err.scope(), Some(FailureScope::Invocation));
    assert!(
        err.to_string()
            .contains("reading the execution state after applied checkpoint"),
        "{err}"
    );
}
