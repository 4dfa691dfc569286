//! What a caller gets back: the acknowledgement of its update, and the future that brings it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use aws_sdk_lambda::types::Operation;
use tokio::sync::oneshot;

use super::shared::Shared;
use crate::error::BatcherError;
use crate::metrics::Stamp;
use crate::redact::Redacted;

/// One acknowledged batch, shared by the acknowledgements of all its updates.
pub(crate) struct AckedBatch {
    pub(crate) token: Option<String>,
    pub(crate) sequence: u64,
    pub(crate) updates: usize,
    pub(crate) bytes: usize,
    pub(crate) operations: Vec<Operation>,
    /// The `NextMarker` of pages that could not be read (no token to read them with).
    pub(crate) unread_marker: Option<String>,
    /// Indices of `operations` in the order of their Ids, one per Id (the latest copy of an
    /// Id the state repeats), built by the first [`CheckpointAck::operation`] (most batches
    /// are never searched).
    pub(crate) by_id: OnceLock<Vec<u32>>,
}

impl AckedBatch {
    /// The index in `operations` of the operation named `id`, by binary search in the Id
    /// index.
    pub(crate) fn index_of(&self, id: &str) -> Option<usize> {
        let id_of = |i: u32| self.operations.get(i as usize).map(Operation::id);
        let by_id = self.by_id.get_or_init(|| {
            // A response carries at most a page of operations, far fewer than `u32::MAX`.
            let mut order: Vec<u32> = (0..self.operations.len())
                .filter_map(|i| u32::try_from(i).ok())
                .collect();
            order.sort_unstable_by(|&a, &b| id_of(a).cmp(&id_of(b)).then(a.cmp(&b)));
            // An Id on the checkpoint's answer and again on a later page of the state is the
            // later copy, as in the invocation's history: keep only the last index of each Id.
            order.dedup_by(|later, kept| {
                let same = id_of(*later) == id_of(*kept);
                if same {
                    *kept = *later;
                }
                same
            });
            order
        });
        let found = by_id.binary_search_by(|&i| id_of(i).cmp(&Some(id))).ok()?;
        by_id.get(found).map(|&i| i as usize)
    }
}

/// The acknowledgement of a durable update: the checkpoint that carried it succeeded.
///
/// Every acknowledgement of one batch shares the batch's data (one `Arc`): cloning an
/// acknowledgement, or handing one to each of 250 callers, copies neither the token nor the
/// operations. Its `Debug` shows the token redacted and counts the operations: neither the
/// token nor any result appears in logs.
#[derive(Clone)]
pub struct CheckpointAck {
    batch: Arc<AckedBatch>,
    position: Option<usize>,
}

impl fmt::Debug for CheckpointAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointAck")
            .field(
                "checkpoint_token",
                &self.batch.token.as_deref().map(Redacted),
            )
            .field("batch_sequence", &self.batch.sequence)
            .field("batch_updates", &self.batch.updates)
            .field("batch_bytes", &self.batch.bytes)
            .field("position", &self.position)
            .field("operations", &self.batch.operations.len())
            .field("state_complete", &self.state_complete())
            .finish()
    }
}

impl CheckpointAck {
    pub(crate) fn new(batch: Arc<AckedBatch>, position: Option<usize>) -> Self {
        Self { batch, position }
    }

    /// The token the checkpoint returned, which the batcher now holds; `None` when the service
    /// ended the chain (the execution completed, or the token was revoked).
    #[must_use]
    pub fn checkpoint_token(&self) -> Option<&str> {
        self.batch.token.as_deref()
    }

    /// The batch's sequence number: 1 for the first checkpoint call this batcher made.
    #[must_use]
    pub fn batch_sequence(&self) -> u64 {
        self.batch.sequence
    }

    /// How many updates the batch carried.
    #[must_use]
    pub fn batch_updates(&self) -> usize {
        self.batch.updates
    }

    /// The request body bytes of the batch, as sent.
    #[must_use]
    pub fn batch_bytes(&self) -> usize {
        self.batch.bytes
    }

    /// This update's index in its batch; `None` for the acknowledgement of a
    /// [`refresh`](crate::BatcherHandle::refresh).
    #[must_use]
    pub fn position(&self) -> Option<usize> {
        self.position
    }

    /// The operations of the response's new execution state, including every further page the
    /// batcher fetched when the response had a `NextMarker`.
    ///
    /// Complete unless [`state_complete`](Self::state_complete) says otherwise.
    #[must_use]
    pub fn operations(&self) -> &[Operation] {
        &self.batch.operations
    }

    /// The operation named `id` among [`operations`](Self::operations), if the batch changed
    /// it: typically the state of this update's own operation after the checkpoint.
    ///
    /// The first search of a batch sorts an index of its operations by Id, which every
    /// acknowledgement of the batch then shares; each search after that is a binary search.
    /// An Id the state names twice (on the checkpoint's answer and again on a later page) gives
    /// its later copy.
    ///
    /// ```
    /// use aws_sdk_lambda::types::OperationStatus;
    /// use checkpoint_batcher::CheckpointAck;
    ///
    /// /// Whether the service holds step `id` as succeeded after the checkpoint `ack` answers.
    /// fn succeeded(ack: &CheckpointAck, id: &str) -> bool {
    ///     ack.operation(id)
    ///         .is_some_and(|op| op.status() == &OperationStatus::Succeeded)
    /// }
    /// ```
    #[must_use]
    pub fn operation(&self, id: &str) -> Option<&Operation> {
        self.batch
            .index_of(id)
            .and_then(|i| self.batch.operations.get(i))
    }

    /// The operations named by `ids`, each once, in the batch's order.
    pub(crate) fn operations_named<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Vec<Operation> {
        let mut found: Vec<usize> = ids
            .into_iter()
            .filter_map(|id| self.batch.index_of(id))
            .collect();
        // A START and its SUCCEED in one call name one operation: it is given once.
        found.sort_unstable();
        found.dedup();
        found
            .into_iter()
            .filter_map(|i| self.batch.operations.get(i).cloned())
            .collect()
    }

    /// Whether [`operations`](Self::operations) holds the whole new execution state. `false`
    /// only when the service ended the token chain with this checkpoint yet announced more
    /// pages (a `NextMarker`): without a token they cannot be read. The update is durable all
    /// the same; a re-invocation reads the state afresh.
    #[must_use]
    pub fn state_complete(&self) -> bool {
        self.batch.unread_marker.is_none()
    }

    /// The `NextMarker` of the pages that could not be read, when
    /// [`state_complete`](Self::state_complete) is `false`.
    #[must_use]
    pub fn unread_marker(&self) -> Option<&str> {
        self.batch.unread_marker.as_deref()
    }

    /// Whether `other` acknowledges an update of the same batch.
    #[must_use]
    pub fn same_batch(&self, other: &CheckpointAck) -> bool {
        Arc::ptr_eq(&self.batch, &other.batch)
    }
}

/// The acknowledgement of a submitted update, to await or to drop.
///
/// Dropping it never cancels the update: it was accepted and will be written; only the answer
/// is discarded.
///
/// # Cancel safety
///
/// Awaiting it is cancel safe: dropping the future loses only the answer.
#[derive(Debug)]
#[must_use = "an update is written whether or not its acknowledgement is awaited; drop it explicitly for fire-and-forget"]
pub struct AckFuture {
    rx: oneshot::Receiver<Result<CheckpointAck, BatcherError>>,
    shared: Arc<Shared>,
    /// When its update was submitted, for the acknowledgement latency (feature `metrics`).
    submitted: Stamp,
}

impl AckFuture {
    pub(crate) fn new(
        rx: oneshot::Receiver<Result<CheckpointAck, BatcherError>>,
        shared: Arc<Shared>,
        submitted: Stamp,
    ) -> Self {
        Self {
            rx,
            shared,
            submitted,
        }
    }
}

impl Future for AckFuture {
    type Output = Result<CheckpointAck, BatcherError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(answer)) => {
                if answer.is_ok() {
                    self.shared.metrics.acknowledged_after(self.submitted);
                }
                Poll::Ready(answer)
            }
            // A running actor answers everything it accepted, even after it stopped; a sender
            // dropped unanswered means the task itself is gone (aborted, panicked, its runtime
            // shut down), whatever the batcher was doing then.
            Poll::Ready(Err(_)) => Poll::Ready(Err(self.shared.gone())),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_lambda::primitives::DateTime;
    use aws_sdk_lambda::types::{OperationStatus, OperationType};

    use super::*;

    fn op(id: &str, status: OperationStatus) -> Operation {
        Operation::builder()
            .id(id)
            .r#type(OperationType::Step)
            .status(status)
            .start_timestamp(DateTime::from_secs(0))
            .build()
            .expect("id, type, status and start are set")
    }

    #[test]
    fn an_id_the_state_repeats_is_found_as_its_later_copy() {
        let batch = Arc::new(AckedBatch {
            token: Some("t1".to_owned()),
            sequence: 1,
            updates: 2,
            bytes: 0,
            operations: vec![
                op("b", OperationStatus::Started),
                op("a", OperationStatus::Started),
                op("c", OperationStatus::Succeeded),
                // A later page names `a` and `b` again, as they stand now.
                op("a", OperationStatus::Succeeded),
                op("b", OperationStatus::Failed),
            ],
            unread_marker: None,
            by_id: OnceLock::new(),
        });
        let ack = CheckpointAck::new(Arc::clone(&batch), Some(0));
        let status = |id| ack.operation(id).map(|op| op.status().clone());
        assert_eq!(status("a"), Some(OperationStatus::Succeeded));
        assert_eq!(status("b"), Some(OperationStatus::Failed));
        assert_eq!(status("c"), Some(OperationStatus::Succeeded));
        assert_eq!(status("d"), None);
        let named: Vec<_> = ack
            .operations_named(["a", "b", "a"])
            .iter()
            .map(|op| (op.id().to_owned(), op.status().clone()))
            .collect();
        assert_eq!(
            named,
            [
                ("a".to_owned(), OperationStatus::Succeeded),
                ("b".to_owned(), OperationStatus::Failed),
            ],
            "each once, the later copy, in the batch's order"
        );
    }

    #[test]
    fn the_latest_copy_wins_whatever_the_layout() {
        // `copies` of Id `x`, the last one the latest, spread among `others` operations named
        // either side of it: small batches and ones past the sizes sorted by insertion.
        for copies in [2, 3, 5, 40] {
            for others in [0, 1, 2, 7, 8, 33, 100, 249] {
                let mut operations: Vec<Operation> = (0..others)
                    .map(|j| {
                        let id = if j % 2 == 0 {
                            format!("a{j}")
                        } else {
                            format!("z{j}")
                        };
                        op(&id, OperationStatus::Succeeded)
                    })
                    .collect();
                for c in 0..copies {
                    let status = if c + 1 == copies {
                        OperationStatus::Succeeded
                    } else {
                        OperationStatus::Started
                    };
                    let at = (c * (others + 1) / copies).min(operations.len());
                    // Later copies always come after earlier ones.
                    let at = operations
                        .iter()
                        .rposition(|o| o.id() == "x")
                        .map_or(at, |last| at.max(last + 1));
                    operations.insert(at, op("x", status));
                }
                let batch = Arc::new(AckedBatch {
                    token: None,
                    sequence: 1,
                    updates: 1,
                    bytes: 0,
                    operations,
                    unread_marker: None,
                    by_id: OnceLock::new(),
                });
                let ack = CheckpointAck::new(batch, Some(0));
                assert_eq!(
                    ack.operation("x").map(|o| o.status().clone()),
                    Some(OperationStatus::Succeeded),
                    "{copies} copies among {others} others"
                );
            }
        }
    }
}
