//! The actor's answers: what each caller is told, and when. Kept beside the event loop
//! (`super`) because every answer depends on its state, and apart from it so that the loop
//! reads in one sitting.
//!
//! # Invariants
//!
//! - **Batch order.** A successful batch's callers are answered before anything later, and
//!   [`Actor::deliver`] runs before any other answer.
//! - **Truthful drains.** A shutdown is answered only at [`Actor::exit`], once every accepted
//!   update has its answer; `Ok` only when all were acknowledged.
//! - **Nobody forgotten.** [`Actor::stop`] answers everything queued; commands drained after
//!   it are answered by [`Actor::answer_stopped`].

use std::future::Future as _;
use std::mem;
use std::pin::pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Wake, Waker};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::Instant;

use super::{Actor, COURIER_PATIENCE, Phase};
use crate::batcher::ack::{AckedBatch, CheckpointAck};
use crate::batcher::message::{AckSender, Command, FlushSender};
use crate::batcher::send::{InFlight, Sent};
use crate::batcher::shared::{BatcherReport, FinalAnswer};
use crate::error::{BatchFailure, BatcherError, CloseReason};

/// The batch whose failure stopped the batcher, for the drains' answers.
pub(super) struct FailedBatch {
    /// The sequence of its last update, as a flush's mark counts them.
    last_update: u64,
    updates: usize,
    /// What its own callers were told.
    error: BatcherError,
}

/// The answers to a batch that succeeded, not yet sent (see [`Actor::deliver`]).
pub(super) struct Answers {
    acked: Arc<AckedBatch>,
    replies: Vec<Option<AckSender>>,
    refreshes: Vec<AckSender>,
    flushes: Vec<FlushSender>,
}

impl Answers {
    /// Sends every answer: the callers in batch order, then the refreshes, then the flushes.
    fn send(self) {
        for (position, reply) in self.replies.into_iter().enumerate() {
            // A caller that dropped its future only loses the answer.
            if let Some(reply) = reply {
                let ack = CheckpointAck::new(Arc::clone(&self.acked), Some(position));
                let _ = reply.send(Ok(ack));
            }
        }
        for reply in self.refreshes {
            let _ = reply.send(Ok(CheckpointAck::new(Arc::clone(&self.acked), None)));
        }
        for reply in self.flushes {
            let _ = reply.send(Ok(()));
        }
    }
}

/// Answers handed to the scheduler to send all at once (see [`Actor::dispatch`]), shared
/// between the actor and the [`Courier`] that tokio holds. Whoever takes them first sends them:
/// the courier when tokio wakes or drops it, or the actor through [`Actor::deliver`] when it
/// must answer anything else first.
///
/// The lock is held while the answers are sent, not only while they are taken: a
/// [`send`](Self::send) that finds them gone has waited until whoever took them has sent them
/// all. Otherwise the courier could take batch N's answers on one worker while the actor,
/// stolen to another, found the slot empty and sent batch N+1's before them. Nothing sent under
/// the lock can come back to it: sending on a oneshot only wakes the caller's waker (tokio
/// schedules the caller's task, it never polls it there), and only the actor and the courier
/// ever reach a handover. The wait is for at most one batch's sends.
pub(super) struct Handover {
    answers: Mutex<Option<Answers>>,
}

impl Handover {
    /// Sends the answers if nobody has yet; returns once they are all sent, by whoever took
    /// them.
    fn send(&self) {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(answers) = answers.take() {
            answers.send();
        }
    }

    /// Whether nobody has sent the answers yet.
    pub(super) fn is_pending(&self) -> bool {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// The waker [`Actor::dispatch`] hands to tokio's deferred wake-ups: it sends its
/// [`Handover`]'s answers when woken, and when dropped unwoken (its runtime's worker context
/// ended, or the runtime shut down), so no caller waits on a waker nobody will wake.
///
/// It does not wake the actor: nothing the actor waits on changes when the answers are sent
/// (its call, its channels, its timer each wake it themselves), and the callers' next
/// commands wake it through the channel.
struct Courier(Arc<Handover>);

impl Wake for Courier {
    fn wake(self: Arc<Self>) {
        self.0.send();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.send();
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        self.0.send();
    }
}

impl Actor {
    /// Records a batch that succeeded and prepares its answers (sent by
    /// [`deliver`](Self::deliver), once the next call, if one is ready, has started). Returns
    /// the token it brought.
    pub(super) fn acknowledge(&mut self, flight: InFlight, sent: Sent) -> Option<String> {
        flight.span.record("outcome", "ok");
        self.shared.record_batch(flight.replies.len(), flight.bytes);
        self.acknowledged = flight.last_update;
        let mut flushes = Vec::new();
        // A revoked token (no token, and not the answer to the execution's completion) makes
        // every drain an error, as the final answer is: the flushes this batch completed are
        // left for `stop`, which answers them so.
        let revoked = sent.token.is_none() && !flight.ends_execution;
        while !revoked
            && let Some((mark, _)) = self.flushes.front()
            && *mark <= self.acknowledged
        {
            flushes.extend(self.flushes.pop_front().map(|(_, reply)| reply));
        }
        let token = sent.token.clone();
        self.answers = Some(Answers {
            acked: Arc::new(AckedBatch {
                token: sent.token,
                sequence: flight.sequence,
                updates: flight.replies.len(),
                bytes: flight.bytes,
                operations: sent.operations,
                unread_marker: sent.unread_marker,
                by_id: OnceLock::new(),
            }),
            replies: flight.replies,
            refreshes: flight.refreshes,
            flushes,
        });
        token
    }

    /// Latches a batch that failed for good, in tower's order: store the error, close the
    /// channel, then answer everyone who waits, the batch's own callers first.
    pub(super) fn fail(&mut self, flight: InFlight, failure: BatchFailure) {
        flight.span.record("outcome", "failed");
        self.shared.record_failure(&failure);
        tracing::error!(
            sequence = flight.sequence,
            kind = %failure.kind(),
            scope = ?failure.scope(),
            "checkpoint batch failed for good: {failure}"
        );
        let updates = flight.replies.len();
        let mut first: Vec<AckSender> = flight.replies.into_iter().flatten().collect();
        first.extend(flight.refreshes);
        // Everyone else gets the failure as it concerns them: their updates were not sent.
        let unsent = BatcherError::Failed(failure.for_unsent());
        let own = BatcherError::Failed(failure);
        self.failed_batch = Some(FailedBatch {
            last_update: flight.last_update,
            updates,
            error: own.clone(),
        });
        self.stop(unsent, first, &own, updates);
    }

    /// Answers the callers of the last batch that succeeded, then the flushes it completed,
    /// now: whether they wait in [`answers`](Actor::answers) or in a [`Handover`] that
    /// [`dispatch`](Self::dispatch) gave a courier and that the courier has not sent yet (if
    /// it is sending them on another worker, this waits until it has).
    ///
    /// When the next batch is already closed (full, or cut by a rule) it goes first and the
    /// answers follow, so that the callers' wake-ups overlap the next round trip instead of
    /// delaying it. When the next batch still has room, [`gather`](Self::gather) delivers first,
    /// since the callers' next updates belong in it. Always called before anything else is
    /// answered, so answers keep batch order.
    pub(super) fn deliver(&mut self) {
        // First: they are older than any in `answers`. Waits if the courier is sending them.
        if let Some((handover, _)) = self.handover.take() {
            handover.send();
        }
        if let Some(answers) = self.answers.take() {
            answers.send();
        }
    }

    /// Hands the answers of the last batch that succeeded to the scheduler, to send once the
    /// tasks ready on this thread have run, all at once.
    ///
    /// Why not send them here: on a multi-threaded runtime every caller woken while another
    /// worker sleeps makes the scheduler wake that worker, a system call each time (an
    /// `eventfd` write, an inter-processor interrupt on a virtual machine) while the other
    /// worker steals one caller, runs it and sleeps again; an acknowledgement of 100 callers
    /// spent most of the time between calls there. A waker given to `yield_now` is deferred:
    /// tokio wakes it once its worker has run out of ready tasks (or at its periodic driver
    /// poll), right after polling the drivers, where tasks it schedules notify no other worker
    /// one by one; it then wakes at most one parked worker for all of them. The
    /// [`Courier`] is the waker so deferred: it sends the answers there. Outside a tokio worker
    /// (or inside `block_in_place`) `yield_now` wakes it at once, which sends them here.
    ///
    /// What it could cost: the answers wait until this worker thread returns to the scheduler,
    /// and a task that holds the thread in a long poll would hold them as long, where callers
    /// woken at once could have been stolen by an idle worker meanwhile. So the actor's timer
    /// is armed for [`COURIER_PATIENCE`]: if the courier has not sent them by then, the actor,
    /// woken on whichever worker is free, sends them itself (`deliver_overdue`). (A thread
    /// that never returns, such as a blocking executor driving the worker on a runtime's
    /// thread, is beyond this: it never ends [`gather`](Self::gather)'s yields either.)
    ///
    /// That timing is tokio's (1.54: `runtime::scheduler::{defer, multi_thread::worker}`), not
    /// its promise; only the saving depends on it. Correctness does not: the answers are sent
    /// when the courier is woken or dropped, whenever that is, and nothing else is answered
    /// before them, since [`deliver`](Self::deliver), which runs before any other answer,
    /// takes them back first.
    pub(super) fn dispatch(&mut self) {
        let Some(answers) = self.answers.take() else {
            return;
        };
        // An earlier handover, if one were still pending, goes first.
        self.deliver();
        let handover = Arc::new(Handover {
            answers: Mutex::new(Some(answers)),
        });
        let courier = Waker::from(Arc::new(Courier(Arc::clone(&handover))));
        // Always pending on its first poll, after giving tokio a clone of the courier to wake
        // (`context::defer`), or waking it at once outside a runtime's worker. The future itself
        // is not needed after that: dropping it cancels nothing.
        let _ = pin!(tokio::task::yield_now()).poll(&mut Context::from_waker(&courier));
        // Dropping ours sends the answers now if tokio kept no clone.
        drop(courier);
        if Arc::strong_count(&handover) > 1 {
            // Only another worker can send them sooner than this thread: with none, a timer
            // would only wake the actor for nothing.
            let other_workers = matches!(
                Handle::try_current().map(|runtime| runtime.runtime_flavor()),
                Ok(RuntimeFlavor::MultiThread)
            );
            let due = other_workers.then(|| Instant::now() + COURIER_PATIENCE);
            self.handover = Some((handover, due));
        }
    }

    /// Sends the answers a courier has held past [`COURIER_PATIENCE`].
    pub(super) fn deliver_overdue(&mut self) {
        if self
            .handover
            .as_ref()
            .and_then(|&(_, due)| due)
            .is_some_and(|due| due <= Instant::now())
        {
            self.deliver();
        }
    }

    /// Stops for good: stores `error` where handles read it, closes the channel, answers
    /// `first` (the failed batch's callers, `failed_updates` updates) with `first_error`, then
    /// everything queued with `error`. Messages still in the channel are answered as they are
    /// drained; shutdowns are answered last, by [`exit`](Self::exit), once every accepted update
    /// has its answer.
    pub(super) fn stop(
        &mut self,
        error: BatcherError,
        first: Vec<AckSender>,
        first_error: &BatcherError,
        failed_updates: usize,
    ) {
        // The last successful batch's callers are answered first: answers keep batch order.
        self.deliver();
        self.phase = Phase::Stopped(error.clone());
        self.shared.set_terminal(&error);
        self.rx.close();
        self.refresh_rx.close();
        self.shared
            .record_unacknowledged(failed_updates + self.queue.len());
        self.shared.metrics.dequeued(self.queue.len());
        for reply in first {
            let _ = reply.send(Err(first_error.clone()));
        }
        // Nothing queued was sent: a group never leaves in parts (README, "Groups").
        for reply in self.queue.drain().filter_map(|submission| submission.reply) {
            let _ = reply.send(Err(error.clone()));
        }
        for reply in self.refreshes.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
        for (mark, reply) in mem::take(&mut self.flushes) {
            let _ = reply.send(Err(self.drain_error(Some(mark), &error)));
        }
    }

    /// What a drain (a flush up to `mark`, or the shutdown: `None`) is told once the batcher
    /// stopped with `error`: the failed batch's own failure when every update it covers that
    /// was not acknowledged was in that batch (so "applied" stays true where it is), otherwise
    /// `error`, as told to the updates that were never sent.
    fn drain_error(&self, mark: Option<u64>, error: &BatcherError) -> BatcherError {
        match &self.failed_batch {
            Some(failed)
                if mark.map_or(
                    self.shared.unacknowledged() == failed.updates as u64,
                    |mark| mark <= failed.last_update,
                ) =>
            {
                failed.error.clone()
            }
            _ => error.clone(),
        }
    }

    /// What a shutdown gets, once every accepted update was answered: the report when every
    /// one of them was acknowledged, otherwise the error that refused them. A latched failure
    /// is always the answer, as it is for every call after it, and so is a revoked token: the
    /// invocation must stop (PENDING), and an `Ok` would invite it to report a result.
    fn final_answer(&self) -> FinalAnswer {
        let Phase::Stopped(error) = &self.phase else {
            return Ok(self.report(true));
        };
        let revoked =
            matches!(error, BatcherError::Closed(c) if c.reason() == CloseReason::TokenRevoked);
        if matches!(error, BatcherError::Failed(_)) || revoked || self.shared.unacknowledged() > 0 {
            return Err(self.drain_error(None, error));
        }
        // Stopped without refusing anything and not by a revocation: the execution completed.
        Ok(self.report(false))
    }

    fn report(&self, chain_open: bool) -> BatcherReport {
        BatcherReport {
            checkpoint_token: chain_open.then(|| self.token.to_string()),
            stats: self.shared.stats(),
        }
    }

    /// Answers a command that arrived after the batcher stopped with `error`. Commands leave
    /// the channel in the order they entered it, so a flush taken now follows every update
    /// accepted before it: each was acknowledged or has already been refused.
    pub(super) fn answer_stopped(&mut self, command: Command, error: &BatcherError) {
        let refused: Vec<AckSender> = match command {
            Command::Update(submission) => {
                self.shared.record_unacknowledged(1);
                self.shared.metrics.dequeued(1);
                submission.reply.into_iter().collect()
            }
            Command::Group(group) => {
                self.shared.record_unacknowledged(group.len());
                self.shared.metrics.dequeued(group.len());
                group.into_iter().filter_map(|s| s.reply).collect()
            }
            Command::Flush(reply) => {
                let _ = reply.send(self.final_answer().map(drop));
                Vec::new()
            }
            // Updates accepted behind it may still be drained and refused: answered at exit.
            Command::Shutdown(reply) => {
                self.shutdowns.push(reply);
                Vec::new()
            }
        };
        for reply in refused {
            let _ = reply.send(Err(error.clone()));
        }
    }

    /// Answers the shutdowns and publishes the final answer, for handles whose `shutdown` or
    /// `flush` found the queue closed. Runs once the channel is drained and nothing is in
    /// flight, so the answer is final.
    pub(super) fn exit(mut self) {
        self.deliver();
        let answer = self.final_answer();
        self.published.send_replace(Some(answer.clone()));
        for reply in self.shutdowns.drain(..) {
            let _ = reply.send(answer.clone());
        }
    }
}

impl Drop for Actor {
    /// An actor dropped before its exit (its [`BatcherWorker`](crate::BatcherWorker) dropped,
    /// its task aborted, its runtime shut down) first sends what a courier still holds, whose
    /// batch the service acknowledged, so that those callers are answered before its fields'
    /// drop tells everyone else the worker is gone. Without it a runtime's shutdown, which
    /// drops tasks before it wakes the deferred wakers, would answer a later caller before an
    /// earlier one. (`answers` is always empty when the actor waits, so this only changes what
    /// the courier would have sent a moment later.)
    fn drop(&mut self) {
        self.deliver();
    }
}
