//! [`BatchingBackend`]: a [`DurableBackend`] that checkpoints through a running batcher, for
//! code written against the trait.
//!
//! An SDK built on [`DurableBackend`] calls `checkpoint(arn, token, updates, client_token)` once
//! per operation and threads the token itself. From one task that works; from parallel branches
//! it breaks, since each branch holds a token another branch may already have consumed. Handing
//! such code a `BatchingBackend` instead of the service's backend gives it the batcher's
//! guarantees without changing it: calls from many tasks coalesce into few requests, one is in
//! flight at a time, and the token chain is the batcher's.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::{CheckpointUpdatedExecutionState, OperationUpdate};

use futures::FutureExt as _;

use super::ack::CheckpointAck;
use super::client_tokens::{
    ClientTokens, Lookup, MAX_REMEMBERED_BYTES, MAX_REMEMBERED_CALLS, SharedCall, outcome_bytes,
};
use super::handle::BatcherHandle;
use crate::backend::DurableBackend;
use crate::error::{BackendError, BatcherError, CloseReason, ErrorKind};

/// A [`DurableBackend`] whose checkpoints go through a running batcher.
///
/// - `checkpoint` queues the call's updates as one group
///   ([`BatcherHandle::checkpoint_all`]): in order and in one request, as one request to the
///   service is atomic, and the call returns once all of them are durable. A call the service
///   could not take in one request (over 250 updates or 750 KiB, or breaking a rule of one
///   request) is refused whole, as the service would refuse it: the crate README's
///   "Groups" guarantee. An empty call is a [`refresh`](BatcherHandle::refresh).
/// - **The token passed in is ignored**: the batcher owns the chain, so a caller may pass a
///   stale or made-up token.
/// - **The client token keeps its promise**: a call repeated with the client token of an
///   earlier call and the same updates is that call: it gets the first call's outcome (waiting
///   for it if the first is still on its way, even if its caller gave up) and nothing is
///   applied again, as the service would answer a retry. The same client token with other
///   updates is refused ([`ErrorKind::Rejected`]), as the service refuses it. The last
///   [`REMEMBERED_CLIENT_TOKENS`](Self::REMEMBERED_CLIENT_TOKENS) client tokens are remembered,
///   with at most [`REMEMBERED_BYTES`](Self::REMEMBERED_BYTES) of their updates; past either
///   bound the oldest is forgotten, and a repeat of it is a new call. Once made, such a call
///   runs on a task of its own, so it is written even if every caller gives up waiting (as a
///   request the service received would be applied). A call without a client token, or
///   without updates (a refresh, which applies nothing), is always new. The batcher gives
///   every request its own client token, whatever the caller passed.
///   The output carries the token the batch returned (the batcher's current one, unless a later
///   batch went since) and the new execution state of the batch that carried the call's last
///   update: the operations that batch changed, the call's own among them. Changes the service
///   reported to other batches are in their callers' outputs, not this one; code that tracks
///   state from outputs alone should read it with `get_execution_state`.
///   When the batch's answer announced pages the batcher could not read (the service ended
///   the token chain with it), the output keeps their `NextMarker`.
/// - `get_execution_state` passes through to the backend given at construction, with the
///   token the caller passes. A token from an output is only good until the next batch goes
///   (each call consumes the current token), so a read with it can fail as stale while other
///   tasks checkpoint; an empty `checkpoint` call (a [`refresh`](BatcherHandle::refresh))
///   returns the changes the service reports without that race.
///
/// A batcher failure becomes a [`BackendError`] of the same scope: a failure keeps its kind
/// ([`ErrorKind::Rejected`], [`ErrorKind::Kms`], [`ErrorKind::Credentials`], ...), except one
/// whose checkpoint was applied and only its state pages failed, which is
/// [`ErrorKind::Transient`] (the invocation's, never the execution's); a revoked token or a
/// completed execution is [`ErrorKind::InvalidCheckpointToken`]; an update refused locally is
/// [`ErrorKind::Rejected`]; a dead worker or a batcher shut down is [`ErrorKind::Transient`].
/// The batcher already retried: a caller that retries a latched failure gets it again at once.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
/// use checkpoint_batcher::{
///     BatcherConfig, BatchingBackend, CheckpointBatcher, DurableBackend, InMemoryBackend,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let service = Arc::new(InMemoryBackend::new());
/// let token = service.current_token().unwrap_or_default();
/// let batcher = CheckpointBatcher::spawn(service.clone(), "arn", token, BatcherConfig::default())?;
/// let backend = BatchingBackend::new(batcher.clone(), service.clone());
///
/// // Code written against the trait, passing whatever token it thinks is current.
/// let update = OperationUpdate::builder()
///     .id("step-1").r#type(OperationType::Step).action(OperationAction::Start).build()?;
/// let output = backend.checkpoint("arn", "stale-token", vec![update], None).await?;
/// assert!(output.checkpoint_token.is_some());
/// assert_eq!(service.applied().len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct BatchingBackend {
    batcher: BatcherHandle,
    state: Arc<dyn DurableBackend>,
    /// Shared by clones: a retry may come through another clone.
    client_tokens: Arc<ClientTokens>,
}

impl BatchingBackend {
    /// How many client tokens (the newest) a `BatchingBackend` and its clones remember.
    pub const REMEMBERED_CLIENT_TOKENS: usize = MAX_REMEMBERED_CALLS;

    /// How many bytes of the remembered calls' updates (as request bytes) and outcomes (the
    /// operations their acknowledgements hold, weighed by their payloads plus a fixed overhead
    /// each) are held at most.
    pub const REMEMBERED_BYTES: usize = MAX_REMEMBERED_BYTES;

    /// Checkpoints through `batcher`; reads execution state from `state` (usually the backend
    /// the batcher itself calls).
    #[must_use]
    pub fn new(batcher: BatcherHandle, state: Arc<dyn DurableBackend>) -> Self {
        Self {
            batcher,
            state,
            client_tokens: Arc::default(),
        }
    }

    /// The batcher this backend checkpoints through.
    #[must_use]
    pub fn batcher(&self) -> &BatcherHandle {
        &self.batcher
    }

    /// One `checkpoint` call, answered with the operations `scope` asks for.
    pub(crate) async fn checkpoint_call(
        &self,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
        scope: Operations,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        // A refresh is made to fetch what changed: it always gets the batch's operations.
        let own_ids: Option<Vec<String>> = (scope == Operations::Own && !updates.is_empty())
            .then(|| updates.iter().map(|update| update.id.clone()).collect());
        let ack = match client_token {
            // A refresh applies nothing: its repeat is harmless, so it is never remembered.
            Some(client_token) if !updates.is_empty() => {
                let call = self
                    .client_tokens
                    .call(client_token, updates, |updates, generation| {
                        self.start(client_token, updates, generation)
                    });
                match call {
                    Lookup::Call(call) => call.await,
                    Lookup::Conflict => {
                        return Err(BackendError::new(
                            ErrorKind::Rejected,
                            "the client token was used before with other updates: a repeated \
                             client token must repeat its call",
                        ));
                    }
                }
            }
            _ => checkpoint(self.batcher.clone(), updates).await,
        };
        ack.map(|ack| output(&ack, own_ids.as_deref()))
            .map_err(backend_error)
    }

    /// Makes the call remembered under `client_token`. It runs on a task of its own, so that
    /// once made it goes on whoever awaits it: a caller that gives up while the queue is full
    /// must not leave the call parked in the queue's line, holding the slot it would get, for
    /// a retry that may never come. The call settles its outcome's weight when answered.
    fn start(
        &self,
        client_token: &str,
        updates: Vec<OperationUpdate>,
        generation: u64,
    ) -> SharedCall {
        let (batcher, tokens) = (self.batcher.clone(), Arc::clone(&self.client_tokens));
        let client_token = client_token.to_owned();
        let task = tokio::spawn(async move {
            let outcome = checkpoint(batcher, updates).await;
            tokens.settle(&client_token, generation, outcome_bytes(&outcome));
            outcome
        });
        let batcher = self.batcher.clone();
        async move {
            // The task ends only by answering, unless its runtime is shutting down.
            task.await.unwrap_or_else(|_| Err(batcher.worker_gone()))
        }
        .boxed()
        .shared()
    }
}

#[async_trait]
impl DurableBackend for BatchingBackend {
    async fn checkpoint(
        &self,
        _arn: &str,
        _checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        self.checkpoint_call(updates, client_token, Operations::Batch)
            .await
    }

    async fn get_execution_state(
        &self,
        arn: &str,
        checkpoint_token: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        self.state
            .get_execution_state(arn, checkpoint_token, marker, max_items)
            .await
    }
}

/// One call's checkpoint: a group, or a refresh when there are no updates.
async fn checkpoint(
    batcher: BatcherHandle,
    updates: Vec<OperationUpdate>,
) -> Result<CheckpointAck, BatcherError> {
    if updates.is_empty() {
        batcher.refresh().await
    } else {
        batcher.checkpoint_all(updates).await
    }
}

/// Which operations a call's output carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operations {
    /// Every operation the call's batch changed (the trait's documented answer).
    Batch,
    /// Only the operations the call's own updates name: what code that reads back its own
    /// operation needs, without a copy of the whole batch's changes per call.
    #[cfg_attr(
        not(feature = "durable-lambda"),
        allow(dead_code, reason = "asked for by the durable-lambda adapter only")
    )]
    Own,
}

/// The output of a call answered by `ack`: the batch's operations, or only those whose Id is
/// in `own_ids`.
fn output(ack: &CheckpointAck, own_ids: Option<&[String]>) -> CheckpointDurableExecutionOutput {
    let operations = match own_ids {
        None => ack.operations().to_vec(),
        // One lookup per update, not a scan of the batch per update: a call of one update in
        // a batch of 250 must not cost 250 comparisons.
        Some(ids) => ack.operations_named(ids.iter().map(String::as_str)),
    };
    CheckpointDurableExecutionOutput::builder()
        .set_checkpoint_token(ack.checkpoint_token().map(str::to_owned))
        .new_execution_state(
            CheckpointUpdatedExecutionState::builder()
                .set_operations(Some(operations))
                // Pages the batcher could not read stay announced: without the marker the
                // output would pass for the whole state.
                .set_next_marker(ack.unread_marker().map(str::to_owned))
                .build(),
        )
        .build()
}

fn backend_error(error: BatcherError) -> BackendError {
    let kind = match &error {
        // Its scope is the invocation's whatever the cause: keep it so for the caller.
        BatcherError::Failed(failure) if failure.scope() != failure.kind().scope() => {
            ErrorKind::Transient
        }
        BatcherError::Failed(failure) => failure.kind(),
        BatcherError::Closed(closed)
            if matches!(
                closed.reason(),
                CloseReason::TokenRevoked | CloseReason::ExecutionCompleted
            ) =>
        {
            ErrorKind::InvalidCheckpointToken
        }
        BatcherError::InvalidUpdate(_) => ErrorKind::Rejected,
        _ => ErrorKind::Transient,
    };
    BackendError::new(kind, error.to_string()).with_source(error)
}
