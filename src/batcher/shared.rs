//! State the actor shares with its handles: the terminal error and the statistics.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;

use crate::error::{BatchFailure, BatcherError, CloseReason, ErrorKind, FailedCall};
use crate::metrics::{Metrics, Stamp};
use crate::redact::Redacted;

/// A snapshot of a batcher's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatcherStats {
    /// Updates acknowledged.
    pub updates: u64,
    /// Checkpoint calls that succeeded (batches), refreshes included.
    pub batches: u64,
    /// Request body bytes of the successful batches.
    pub bytes: u64,
    /// Retries made (attempts after the first), for checkpoints and state pages alike.
    pub retries: u64,
    /// The most updates one batch carried.
    pub largest_batch: u64,
    /// Batches that failed for good (at most one: the failure latches).
    pub failures: u64,
    /// Updates that were accepted but answered with an error instead of an acknowledgement:
    /// the batcher stopped (a latched failure, the end of the token chain) before they were
    /// acknowledged. Most were never sent; those of a batch whose answer was lost, or whose
    /// state pages could not be read, may have been applied.
    pub unacknowledged: u64,
}

impl BatcherStats {
    /// Mean updates per successful batch (0 before the first).
    #[must_use]
    pub fn mean_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.updates as f64 / self.batches as f64
        }
    }
}

/// What [`shutdown`](crate::BatcherHandle::shutdown) reports once everything queued is written.
///
/// Its `Debug` shows the token redacted (length and a short hash), never the token itself.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatcherReport {
    /// The last checkpoint token; `None` when the service ended the chain.
    pub checkpoint_token: Option<String>,
    /// The statistics at the end.
    pub stats: BatcherStats,
}

impl fmt::Debug for BatcherReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatcherReport")
            .field(
                "checkpoint_token",
                &self.checkpoint_token.as_deref().map(Redacted),
            )
            .field("stats", &self.stats)
            .finish()
    }
}

/// What the actor answers every `shutdown` with, published once nothing more will happen.
pub(crate) type FinalAnswer = Result<BatcherReport, BatcherError>;

#[derive(Debug)]
pub(crate) struct Shared {
    /// Set once the batcher stops taking updates: the latched failure, or why it closed. A
    /// handle whose send fails reports it, so a caller never sees a bare "closed" when there was
    /// a cause.
    terminal: Mutex<Option<BatcherError>>,
    /// The final answer, published by the actor once every accepted update was answered. The
    /// actor holds the sender, so a handle waiting for it learns when the actor is gone instead.
    finished: watch::Receiver<Option<FinalAnswer>>,
    updates: AtomicU64,
    batches: AtomicU64,
    bytes: AtomicU64,
    retries: AtomicU64,
    largest_batch: AtomicU64,
    failures: AtomicU64,
    unacknowledged: AtomicU64,
    /// The same figures and more, for the application's recorder (feature `metrics`).
    pub(crate) metrics: Metrics,
}

impl Shared {
    pub(crate) fn new(finished: watch::Receiver<Option<FinalAnswer>>) -> Self {
        Self {
            terminal: Mutex::default(),
            finished,
            updates: AtomicU64::default(),
            batches: AtomicU64::default(),
            bytes: AtomicU64::default(),
            retries: AtomicU64::default(),
            largest_batch: AtomicU64::default(),
            failures: AtomicU64::default(),
            unacknowledged: AtomicU64::default(),
            metrics: Metrics::register(),
        }
    }

    /// Why a handle's send failed (the actor closed or dropped the queue): the stored cause
    /// while the actor runs or after it finished, [`CloseReason::WorkerGone`] once it is gone
    /// without finishing (aborted, panicked, its runtime shut down), whatever it was doing.
    pub(crate) fn stopped(&self) -> BatcherError {
        if self.worker_gone() {
            return self.gone();
        }
        self.terminal()
            .unwrap_or_else(|| BatcherError::closed(CloseReason::WorkerGone))
    }

    /// What a caller whose reply the actor dropped unanswered is told: the actor is gone
    /// ([`CloseReason::WorkerGone`]), unless something had ended the batcher for good before (a
    /// latched failure, a revoked token, a completed execution), which is the cause that kept
    /// its update from being written and tells the handler what to do. A shutdown in progress
    /// is not such a cause: it would have written the update.
    pub(crate) fn gone(&self) -> BatcherError {
        match self.terminal() {
            Some(BatcherError::Closed(closed)) if closed.reason() == CloseReason::ShutDown => {
                BatcherError::closed(CloseReason::WorkerGone)
            }
            Some(ended) => ended,
            None => BatcherError::closed(CloseReason::WorkerGone),
        }
    }

    fn terminal(&self) -> Option<BatcherError> {
        self.terminal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the actor is gone without publishing its final answer. The actor drops the
    /// sender before its queue (field order), so a send that failed because the queue's
    /// receiver was dropped sees this already.
    fn worker_gone(&self) -> bool {
        self.finished.has_changed().is_err() && self.finished.borrow().is_none()
    }

    /// Records why the batcher stopped. What ended it for good replaces a shutdown in progress
    /// (a batch drained during shutdown can still fail, or end the token chain), since that is
    /// what a later caller must act on; otherwise the first reason stays.
    pub(crate) fn set_terminal(&self, error: &BatcherError) {
        let mut slot = self.terminal.lock().unwrap_or_else(PoisonError::into_inner);
        let shutting_down = |e: &BatcherError| matches!(e, BatcherError::Closed(c) if c.reason() == CloseReason::ShutDown);
        let replace = match (&*slot, error) {
            (None, _) => true,
            (Some(BatcherError::Failed(_)), _) => false,
            (Some(_), BatcherError::Failed(_)) => true,
            (Some(current), new) => shutting_down(current) && !shutting_down(new),
        };
        if replace {
            *slot = Some(error.clone());
        }
    }

    /// Waits for the actor's final answer (what every `shutdown` gets), or for the actor to be
    /// gone without one.
    pub(crate) async fn final_answer(&self) -> FinalAnswer {
        let mut finished = self.finished.clone();
        match finished.wait_for(Option::is_some).await {
            Ok(answer) => answer.clone().unwrap_or_else(|| Err(self.gone())),
            Err(_) => Err(self.gone()),
        }
    }

    pub(crate) fn record_batch(&self, updates: usize, bytes: usize) {
        self.metrics.acknowledged_batch(updates, bytes);
        let updates = updates as u64;
        let _ = self.updates.fetch_add(updates, Ordering::Relaxed);
        let _ = self.batches.fetch_add(1, Ordering::Relaxed);
        let _ = self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let _ = self.largest_batch.fetch_max(updates, Ordering::Relaxed);
    }

    /// One attempt of `call`, started at `started`, ended (failing with `error` if it did);
    /// `retried` when another attempt follows.
    pub(crate) fn record_attempt(
        &self,
        call: FailedCall,
        started: Stamp,
        error: Option<ErrorKind>,
        retried: bool,
    ) {
        if retried {
            let _ = self.retries.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.attempt(call, started, error, retried);
    }

    pub(crate) fn record_failure(&self, failure: &BatchFailure) {
        let _ = self.failures.fetch_add(1, Ordering::Relaxed);
        self.metrics.failed_batch(failure.scope(), failure.kind());
    }

    pub(crate) fn record_unacknowledged(&self, updates: usize) {
        let _ = self
            .unacknowledged
            .fetch_add(updates as u64, Ordering::Relaxed);
        self.metrics.unacknowledged(updates);
    }

    pub(crate) fn unacknowledged(&self) -> u64 {
        self.unacknowledged.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> BatcherStats {
        BatcherStats {
            updates: self.updates.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            unacknowledged: self.unacknowledged.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(error: &BatcherError) -> Option<CloseReason> {
        match error {
            BatcherError::Closed(closed) => Some(closed.reason()),
            _ => None,
        }
    }

    /// A worker that dies after the chain ended leaves callers still in its channel with the
    /// end of the chain (what the handler must act on), not a bare "gone"; one that dies
    /// during a shutdown leaves them with "gone", since the shutdown would have written them.
    #[test]
    fn a_worker_gone_after_the_chain_ended_reports_the_end_of_the_chain() {
        for (terminal, told) in [
            (CloseReason::TokenRevoked, CloseReason::TokenRevoked),
            (
                CloseReason::ExecutionCompleted,
                CloseReason::ExecutionCompleted,
            ),
            (CloseReason::ShutDown, CloseReason::WorkerGone),
        ] {
            let (published, finished) = watch::channel(None);
            let shared = Shared::new(finished);
            shared.set_terminal(&BatcherError::closed(terminal));
            drop(published);
            assert_eq!(reason(&shared.gone()), Some(told), "{terminal:?}");
            assert_eq!(reason(&shared.stopped()), Some(told), "{terminal:?}");
        }
    }
}
