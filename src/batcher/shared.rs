//! State the actor shares with its handles: the terminal error and the statistics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;

use crate::error::BatcherError;

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
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatcherReport {
    /// The last checkpoint token; `None` when the service ended the chain.
    pub checkpoint_token: Option<String>,
    /// The statistics at the end.
    pub stats: BatcherStats,
}

#[derive(Debug)]
pub(crate) struct Shared {
    /// Set once the batcher stops taking updates: the latched failure, or why it closed. A
    /// handle whose send fails reports it, so a caller never sees a bare "closed" when there was
    /// a cause.
    terminal: Mutex<Option<BatcherError>>,
    /// The final report, published by the actor once nothing more will be sent. The actor holds
    /// the sender, so a handle waiting for the report learns when the actor is gone instead.
    report: watch::Receiver<Option<BatcherReport>>,
    updates: AtomicU64,
    batches: AtomicU64,
    bytes: AtomicU64,
    retries: AtomicU64,
    largest_batch: AtomicU64,
    failures: AtomicU64,
}

impl Shared {
    pub(crate) fn new(report: watch::Receiver<Option<BatcherReport>>) -> Self {
        Self {
            terminal: Mutex::default(),
            report,
            updates: AtomicU64::default(),
            batches: AtomicU64::default(),
            bytes: AtomicU64::default(),
            retries: AtomicU64::default(),
            largest_batch: AtomicU64::default(),
            failures: AtomicU64::default(),
        }
    }

    pub(crate) fn terminal(&self) -> Option<BatcherError> {
        self.terminal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records why the batcher stopped. A failure replaces an earlier close (a batch drained
    /// during shutdown can still fail); otherwise the first reason stays.
    pub(crate) fn set_terminal(&self, error: &BatcherError) {
        let mut slot = self.terminal.lock().unwrap_or_else(PoisonError::into_inner);
        let replace = match (&*slot, error) {
            (None, _) => true,
            (Some(BatcherError::Failed(_)), _) => false,
            (Some(_), BatcherError::Failed(_)) => true,
            (Some(_), _) => false,
        };
        if replace {
            *slot = Some(error.clone());
        }
    }

    /// Waits for the final report; `None` if the actor stopped without one (a failure, or its
    /// task is gone).
    pub(crate) async fn final_report(&self) -> Option<BatcherReport> {
        let mut report = self.report.clone();
        report
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|report| report.clone())
    }

    pub(crate) fn record_batch(&self, updates: usize, bytes: usize) {
        let updates = updates as u64;
        let _ = self.updates.fetch_add(updates, Ordering::Relaxed);
        let _ = self.batches.fetch_add(1, Ordering::Relaxed);
        let _ = self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let _ = self.largest_batch.fetch_max(updates, Ordering::Relaxed);
    }

    pub(crate) fn record_retry(&self) {
        let _ = self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_failure(&self) {
        let _ = self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> BatcherStats {
        BatcherStats {
            updates: self.updates.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}
