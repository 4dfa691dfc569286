//! Pagination: a `NextMarker` in a checkpoint response is followed, with retries and with the
//! new token, before the batch is acknowledged.

use std::sync::Mutex;
use std::time::Duration;

use crate::support::*;
use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::primitives::DateTime;
use aws_sdk_lambda::types::{
    CheckpointUpdatedExecutionState, Operation, OperationStatus, OperationType, OperationUpdate,
};
use checkpoint_batcher::{
    BackendError, BatcherConfig, BatcherError, CheckpointBatcher, DurableBackend, ErrorKind,
    FailureScope,
};

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

/// A checkpoint's answer: `token` (if any), operation `op1`, and the marker `m1` of more pages.
fn first_page(token: Option<&str>) -> CheckpointDurableExecutionOutput {
    CheckpointDurableExecutionOutput::builder()
        .set_checkpoint_token(token.map(str::to_owned))
        .new_execution_state(
            CheckpointUpdatedExecutionState::builder()
                .operations(operation("op1"))
                .next_marker("m1")
                .build(),
        )
        .build()
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
        Ok(first_page(Some("new-token")))
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
async fn an_acknowledgement_finds_any_operation_of_its_batch_by_id_on_every_page() {
    let backend = std::sync::Arc::new(Paged::default());
    let batcher = CheckpointBatcher::spawn(backend, ARN, "t0", config()).unwrap();
    let a = batcher.submit(start("a")).await.unwrap();
    let b = batcher.submit(start("b")).await.unwrap();
    let (a, b) = (
        within(Duration::from_secs(5), a).await.unwrap(),
        within(Duration::from_secs(5), b).await.unwrap(),
    );
    for id in ["op4", "op1", "op3", "op2"] {
        let found = a.operation(id).map(|op| op.id.as_str());
        assert_eq!(found, Some(id), "{id} is on a page of the batch");
        assert!(
            std::ptr::eq(a.operation(id).unwrap(), b.operation(id).unwrap()),
            "the batch's acknowledgements search the same operations"
        );
    }
    for missing in ["", "op", "op0", "op5", "op10", "a"] {
        assert!(
            a.operation(missing).is_none(),
            "{missing:?} is not in the batch"
        );
    }
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

/// How the state pages after an applied checkpoint go wrong.
#[derive(Debug, Clone, Copy)]
enum PageTrouble {
    /// The service refuses the marker as a bad request.
    RejectedMarker,
    /// The next page names the marker that led to it.
    RepeatedMarker,
    /// The next page carries an empty marker.
    EmptyMarker,
    /// Every page holds 1000 operations and a new marker.
    Endless,
    /// The checkpoint's answer ends the chain (no token) yet announces more pages.
    NoToken,
}

#[derive(Debug)]
struct Troubled {
    trouble: PageTrouble,
    pages: Mutex<u32>,
}

#[async_trait]
impl DurableBackend for Troubled {
    async fn checkpoint(
        &self,
        _arn: &str,
        _token: &str,
        _updates: Vec<OperationUpdate>,
        _client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        let token = (!matches!(self.trouble, PageTrouble::NoToken)).then_some("new-token");
        Ok(first_page(token))
    }

    async fn get_execution_state(
        &self,
        _arn: &str,
        _token: &str,
        marker: Option<&str>,
        _max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        let page = {
            let mut pages = self.pages.lock().unwrap();
            *pages += 1;
            *pages
        };
        let output = GetDurableExecutionStateOutput::builder();
        let output = match self.trouble {
            PageTrouble::RejectedMarker => {
                return Err(
                    BackendError::new(ErrorKind::Rejected, "marker expired").with_status(400)
                );
            }
            PageTrouble::RepeatedMarker => output
                .operations(operation(&format!("p{page}")))
                .next_marker(marker.unwrap_or_default()),
            PageTrouble::EmptyMarker => output.operations(operation("p")).next_marker(""),
            PageTrouble::Endless => (0..1000)
                .fold(output, |out, i| {
                    out.operations(operation(&format!("p{page}-{i}")))
                })
                .next_marker(format!("m{}", page + 1)),
            PageTrouble::NoToken => unreachable!("no token, no page"),
        };
        Ok(output.build().unwrap())
    }
}

async fn checkpoint_through(
    trouble: PageTrouble,
) -> (Result<checkpoint_batcher::CheckpointAck, BatcherError>, u32) {
    let backend = std::sync::Arc::new(Troubled {
        trouble,
        pages: Mutex::new(0),
    });
    let batcher = CheckpointBatcher::spawn(backend.clone(), ARN, "t0", config()).unwrap();
    let answer = within(Duration::from_secs(600), batcher.checkpoint(start("a"))).await;
    let pages = *backend.pages.lock().unwrap();
    (answer, pages)
}

#[tokio::test(start_paused = true)]
async fn a_durable_update_whose_state_pages_fail_is_an_invocation_failure_never_an_execution_one() {
    for (trouble, expected_pages, says) in [
        (PageTrouble::RejectedMarker, 1, "marker expired"),
        (PageTrouble::RepeatedMarker, 1, "returned before"),
        (PageTrouble::Endless, 100, "more than 100000 operations"),
    ] {
        let (answer, pages) = checkpoint_through(trouble).await;
        let error = answer.expect_err("the state could not be read in full");
        let BatcherError::Failed(failure) = &error else {
            panic!("{trouble:?}: expected a failure, got {error}")
        };
        assert_eq!(
            error.scope(),
            Some(FailureScope::Invocation),
            "{trouble:?}: the update is durable, so the execution must not fail: {error}"
        );
        assert!(
            failure.checkpoint_applied(),
            "{trouble:?}: the failure says the checkpoint was applied"
        );
        assert!(error.to_string().contains(says), "{trouble:?}: {error}");
        assert_eq!(
            pages, expected_pages,
            "{trouble:?}: pages fetched before giving up"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_empty_marker_ends_the_pages_as_a_missing_one_does() {
    let (answer, pages) = checkpoint_through(PageTrouble::EmptyMarker).await;
    let ack = answer.expect("an empty marker is the last page's: nothing failed");
    assert_eq!(pages, 1, "the page that carried it was read, and no other");
    assert!(ack.state_complete());
    let ids: Vec<&str> = ack.operations().iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["op1", "p"]);
}

#[tokio::test(start_paused = true)]
async fn only_the_applied_batch_is_told_applied_when_its_state_pages_fail() {
    let backend = std::sync::Arc::new(Troubled {
        trouble: PageTrouble::RejectedMarker,
        pages: Mutex::new(0),
    });
    let config = BatcherConfig {
        max_batch_updates: 1,
        ..config()
    };
    let batcher = CheckpointBatcher::spawn(backend, ARN, "t0", config).unwrap();
    let applied = batcher.submit(start("a")).await.unwrap();
    let queued = batcher.submit(start("b")).await.unwrap();
    let applied_failure = within(Duration::from_secs(600), applied).await.unwrap_err();
    let queued_failure = within(Duration::from_secs(600), queued).await.unwrap_err();
    let later_failure = batcher.checkpoint(start("c")).await.unwrap_err();
    let applied_flag = |error: &BatcherError| match error {
        BatcherError::Failed(failure) => failure.checkpoint_applied(),
        other => panic!("expected the latched failure, got {other}"),
    };
    assert!(
        applied_flag(&applied_failure),
        "the batch whose pages failed was applied"
    );
    for (who, error) in [("queued", &queued_failure), ("later", &later_failure)] {
        assert!(
            !applied_flag(error),
            "a {who} update was never sent and must not be told it was applied: {error}"
        );
        assert_eq!(error.scope(), Some(FailureScope::Invocation), "{who}");
    }
}

#[tokio::test(start_paused = true)]
async fn pages_announced_by_an_answer_without_a_token_are_reported_missing() {
    let (answer, pages) = checkpoint_through(PageTrouble::NoToken).await;
    let ack = answer.expect("the update was applied");
    assert_eq!(ack.checkpoint_token(), None);
    assert_eq!(pages, 0, "without a token no page can be read");
    assert!(
        !ack.state_complete(),
        "an acknowledgement must not claim the whole state when pages were left unread"
    );
}

/// The batcher over [`Troubled`] with a rejected marker: every checkpoint is applied, every
/// state page refused.
fn pages_refused(config: BatcherConfig) -> checkpoint_batcher::BatcherHandle {
    let backend = std::sync::Arc::new(Troubled {
        trouble: PageTrouble::RejectedMarker,
        pages: Mutex::new(0),
    });
    CheckpointBatcher::spawn(backend, ARN, "t0", config).unwrap()
}

fn failure(error: &BatcherError) -> &checkpoint_batcher::BatchFailure {
    match error {
        BatcherError::Failed(failure) => failure,
        other => panic!("expected the latched failure, got {other}"),
    }
}

/// A flush or shutdown that covers only the applied batch (and batches acknowledged before it)
/// is told what that batch's callers are told: applied, not "not sent".
#[tokio::test(start_paused = true)]
async fn a_drain_that_covers_only_the_applied_batch_is_told_applied() {
    let batcher = pages_refused(config());
    drop(batcher.submit(start("a")).await.unwrap());
    let flushed = within(Duration::from_secs(600), batcher.flush())
        .await
        .unwrap_err();
    let shut = within(Duration::from_secs(600), batcher.shutdown())
        .await
        .unwrap_err();
    for (who, error) in [("flush", &flushed), ("shutdown", &shut)] {
        assert!(
            failure(error).checkpoint_applied(),
            "{who}: every update it covers is durable: {error}"
        );
        assert!(!error.to_string().contains("not sent"), "{who}: {error}");
        assert_eq!(error.scope(), Some(FailureScope::Invocation), "{who}");
    }

    // With an update refused unsent behind the applied batch, the shutdown covers it too.
    let config = BatcherConfig {
        max_batch_updates: 1,
        ..config()
    };
    let batcher = pages_refused(config);
    drop(batcher.submit(start("a")).await.unwrap());
    drop(batcher.submit(start("b")).await.unwrap());
    let shut = within(Duration::from_secs(600), batcher.shutdown())
        .await
        .unwrap_err();
    assert!(!failure(&shut).checkpoint_applied(), "`b` was never sent");
    assert!(shut.to_string().starts_with("not sent"), "{shut}");
}

/// A group goes whole in one request even past `max_batch_updates`, so when that request was
/// applied and its pages then refused, the whole group is told "applied"; a group queued behind
/// the failed batch is plainly not sent.
#[tokio::test(start_paused = true)]
async fn a_group_past_the_batch_size_whose_pages_fail_is_told_applied_whole() {
    let config = BatcherConfig {
        max_batch_updates: 1,
        ..config()
    };
    let batcher = pages_refused(config.clone());
    let error = within(
        Duration::from_secs(600),
        batcher.checkpoint_all(vec![start("a"), start("b")]),
    )
    .await
    .unwrap_err();
    assert!(
        failure(&error).checkpoint_applied(),
        "the group went in the applied request: {error}"
    );
    assert_eq!(error.scope(), Some(FailureScope::Invocation));
    let batcher = pages_refused(config);
    let first = batcher.submit(start("a")).await.unwrap();
    let group = batcher
        .submit_all(vec![start("b"), start("c")])
        .await
        .unwrap();
    assert!(
        failure(&within(Duration::from_secs(600), first).await.unwrap_err()).checkpoint_applied()
    );
    let group = within(Duration::from_secs(600), group).await.unwrap_err();
    assert!(group.to_string().starts_with("not sent"), "{group}");
}

/// Code written against the trait sees that pages were left unread: the output keeps the
/// `NextMarker` an answer without a token announced.
#[tokio::test(start_paused = true)]
async fn batching_backend_keeps_unread_pages_announced() {
    let backend = std::sync::Arc::new(Troubled {
        trouble: PageTrouble::NoToken,
        pages: Mutex::new(0),
    });
    let batcher = CheckpointBatcher::spawn(backend.clone(), ARN, "t0", config()).unwrap();
    let trait_backend = checkpoint_batcher::BatchingBackend::new(batcher, backend);
    let output = within(
        Duration::from_secs(600),
        trait_backend.checkpoint(ARN, "ignored", vec![start("a")], None),
    )
    .await
    .expect("applied");
    assert_eq!(output.checkpoint_token, None);
    let state = output.new_execution_state.expect("a state");
    assert_eq!(state.next_marker.as_deref(), Some("m1"));
}
