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

use std::mem;
use std::sync::{Arc, OnceLock};

use super::{Actor, Phase};
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

    /// Answers the callers of the last batch that succeeded, then the flushes it completed.
    ///
    /// When the next batch is already closed (full, or cut by a rule) it goes first and the
    /// answers follow, so that the callers' wake-ups, which may each cost the scheduler a system
    /// call to unpark a worker, overlap the next round trip instead of delaying it. When the
    /// next batch still has room, [`gather`](Self::gather) delivers first, since the callers'
    /// next updates belong in it. Always called before anything else is answered, so answers
    /// keep batch order.
    pub(super) fn deliver(&mut self) {
        let Some(answers) = self.answers.take() else {
            return;
        };
        for (position, reply) in answers.replies.into_iter().enumerate() {
            // A caller that dropped its future only loses the answer.
            if let Some(reply) = reply {
                let ack = CheckpointAck::new(Arc::clone(&answers.acked), Some(position));
                let _ = reply.send(Ok(ack));
            }
        }
        for reply in answers.refreshes {
            let _ = reply.send(Ok(CheckpointAck::new(Arc::clone(&answers.acked), None)));
        }
        for reply in answers.flushes {
            let _ = reply.send(Ok(()));
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
