//! [`BatcherHandle`]: the cloneable front of the batcher that callers hold.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_lambda::types::OperationUpdate;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Span;

use super::ack::{AckFuture, CheckpointAck};
use super::assemble::check_group;
use super::message::{AckSender, Command, Submission};
use super::shared::{BatcherReport, BatcherStats, Shared};
use crate::config::MAX_DURATION;
use crate::error::{BatcherError, InvalidUpdate};
use crate::size::update_bytes;
use crate::validate::validate_update;

/// A handle to a running batcher. Cheap to clone; every clone feeds the same actor, which owns
/// the execution's checkpoint token.
///
/// When every handle is dropped, the actor writes what is queued and exits, as on
/// [`shutdown`](Self::shutdown).
#[derive(Clone, Debug)]
pub struct BatcherHandle {
    tx: mpsc::Sender<Command>,
    /// The lane of commands that carry no update: a refresh overtakes a full queue.
    refresh_tx: mpsc::Sender<AckSender>,
    shared: Arc<Shared>,
    flush_interval: Duration,
}

impl BatcherHandle {
    pub(crate) fn new(
        tx: mpsc::Sender<Command>,
        refresh_tx: mpsc::Sender<AckSender>,
        shared: Arc<Shared>,
        flush_interval: Duration,
    ) -> Self {
        Self {
            tx,
            refresh_tx,
            shared,
            flush_interval,
        }
    }

    /// Queues `update` and waits until the checkpoint that carries it succeeded.
    ///
    /// # Errors
    ///
    /// - [`BatcherError::InvalidUpdate`] if the update breaks a field constraint of the service;
    ///   nothing was queued.
    /// - [`BatcherError::Failed`] if its batch, or an earlier one, failed for good. When the
    ///   failure's [`checkpoint_applied`](crate::BatchFailure::checkpoint_applied) is true, the
    ///   update is durable though unacknowledged (only the state pages that followed could not
    ///   be read), and the failure's scope is the invocation's.
    /// - [`BatcherError::Closed`] if the batcher had stopped taking updates, the service ended
    ///   the token chain before the update's batch went, or the worker task is gone
    ///   ([`CloseReason::WorkerGone`](crate::CloseReason::WorkerGone): the update may or may not
    ///   have been applied).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the update is queued queues nothing; dropping it afterwards
    /// loses only the answer: the update is still written.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
    /// # use checkpoint_batcher::{BatcherConfig, CheckpointBatcher, InMemoryBackend};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let backend = Arc::new(InMemoryBackend::new());
    /// # let token = backend.current_token().unwrap_or_default();
    /// let batcher = CheckpointBatcher::spawn(backend, "arn", token, BatcherConfig::default())?;
    /// let update = OperationUpdate::builder()
    ///     .id("step-1")
    ///     .r#type(OperationType::Step)
    ///     .action(OperationAction::Succeed)
    ///     .payload("42")
    ///     .build()?;
    /// let ack = batcher.checkpoint(update).await?;
    /// assert_eq!(ack.batch_sequence(), 1);
    /// assert!(ack.checkpoint_token().is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn checkpoint(&self, update: OperationUpdate) -> Result<CheckpointAck, BatcherError> {
        self.submit(update).await?.await
    }

    /// As [`checkpoint`](Self::checkpoint), but this update may wait at most `max_delay` for
    /// company, instead of the configured
    /// [`flush_interval`](crate::BatcherConfig::flush_interval). Its batch goes when the
    /// earliest deadline among its updates passes. A `max_delay` over an hour counts as an
    /// hour, so `Duration::MAX` means "whenever a batch goes anyway".
    ///
    /// # Errors
    ///
    /// As [`checkpoint`](Self::checkpoint).
    ///
    /// # Cancel safety
    ///
    /// As [`checkpoint`](Self::checkpoint).
    pub async fn checkpoint_within(
        &self,
        update: OperationUpdate,
        max_delay: Duration,
    ) -> Result<CheckpointAck, BatcherError> {
        self.enqueue(update, max_delay).await?.await
    }

    /// Waits for room in the queue, queues `update`, and returns the future of its
    /// acknowledgement. Dropping that future (fire-and-forget, as the official SDKs do for a
    /// step's START) never cancels the update.
    ///
    /// `Ok` means the update was accepted: it will be written unless the batcher fails or the
    /// service ends the token chain first (a revoked token, a completed execution), and then
    /// its future says so. It does not mean the update is durable; await the [`AckFuture`] for
    /// that.
    ///
    /// # Errors
    ///
    /// [`BatcherError::InvalidUpdate`], or the error that stopped the batcher
    /// ([`BatcherError::Failed`] or [`BatcherError::Closed`]).
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped before it completes, the update was not queued.
    pub async fn submit(&self, update: OperationUpdate) -> Result<AckFuture, BatcherError> {
        self.enqueue(update, self.flush_interval).await
    }

    /// As [`submit`](Self::submit) with a `max_delay` of its own, as in
    /// [`checkpoint_within`](Self::checkpoint_within).
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Cancel safety
    ///
    /// As [`submit`](Self::submit).
    pub async fn submit_within(
        &self,
        update: OperationUpdate,
        max_delay: Duration,
    ) -> Result<AckFuture, BatcherError> {
        self.enqueue(update, max_delay).await
    }

    /// Queues `update` without waiting.
    ///
    /// # Errors
    ///
    /// [`BatcherError::QueueFull`] when the queue has no room (nothing was queued), or as
    /// [`submit`](Self::submit).
    pub fn try_submit(&self, update: OperationUpdate) -> Result<AckFuture, BatcherError> {
        let (command, ack) = self.prepare(update, self.flush_interval)?;
        match self.tx.try_send(command) {
            Ok(()) => Ok(ack),
            Err(mpsc::error::TrySendError::Full(_)) => Err(BatcherError::QueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.stopped()),
        }
    }

    /// Sends an empty checkpoint to fetch new execution state (completed callbacks, fired
    /// timers) and returns its acknowledgement, whose [`operations`](CheckpointAck::operations)
    /// hold the changes.
    ///
    /// Concurrent refreshes share one call, and a refresh rides along with a batch of updates
    /// when one goes next anyway. The batch it joins is sent without waiting for the flush
    /// interval.
    ///
    /// A refresh carries no update, so it does not queue behind updates: it reaches the batcher
    /// in a lane of its own and goes with the next call, within one round trip of the call in
    /// flight, however full the queue is. Its acknowledgement therefore says nothing of updates
    /// submitted before it that are still queued (use [`flush`](Self::flush) for that).
    ///
    /// # Errors
    ///
    /// As [`checkpoint`](Self::checkpoint), but never [`BatcherError::InvalidUpdate`].
    pub async fn refresh(&self) -> Result<CheckpointAck, BatcherError> {
        let (reply, rx) = oneshot::channel();
        self.refresh_tx
            .send(reply)
            .await
            .map_err(|_| self.stopped())?;
        AckFuture::new(rx, Arc::clone(&self.shared)).await
    }

    /// Sends what is queued now, without waiting for the flush interval, and returns once every
    /// update submitted before this call is acknowledged or has failed.
    ///
    /// `Ok` means every update accepted before this call was acknowledged by the service. When
    /// the batcher is already draining for a [`shutdown`](Self::shutdown), `flush` waits for
    /// the drain and answers as the shutdown does.
    ///
    /// # Errors
    ///
    /// The error that stopped the batcher ([`BatcherError::Failed`], or
    /// [`BatcherError::Closed`] when the token chain ended or the worker is gone) if any update
    /// accepted before this call was answered with it instead of an acknowledgement; a latched
    /// failure always.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future loses only the answer; the updates go as they would have.
    pub async fn flush(&self) -> Result<(), BatcherError> {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Flush(reply)).await.is_err() {
            // The queue is closed: the batcher stopped, or a shutdown is writing everything
            // accepted, ours included. Its final answer says whether all of it was acknowledged.
            return self.shared.final_answer().await.map(drop);
        }
        rx.await.unwrap_or_else(|_| Err(self.shared.gone()))
    }

    /// Stops taking updates, writes everything already queued, and returns the last token and
    /// the statistics. Later calls on any handle get [`BatcherError::Closed`] with
    /// [`CloseReason::ShutDown`](crate::CloseReason::ShutDown), or the reason the drain ended
    /// for good if it did (a failure, the end of the token chain); calling `shutdown` again
    /// returns the same answer.
    ///
    /// `Ok` means every update the batcher accepted was acknowledged by the service: none was
    /// refused, none is left unwritten. A handler may then report its result.
    ///
    /// # Errors
    ///
    /// - [`BatcherError::Failed`] if a batch failed for good, before or during the drain.
    /// - [`BatcherError::Closed`] with
    ///   [`CloseReason::TokenRevoked`](crate::CloseReason::TokenRevoked) if the service revoked
    ///   the token, whether or not accepted updates were still unwritten (they were refused
    ///   with it): the invocation should stop and return PENDING.
    /// - [`BatcherError::Closed`] with
    ///   [`CloseReason::ExecutionCompleted`](crate::CloseReason::ExecutionCompleted) if the
    ///   execution completed while accepted updates were still unwritten: they were refused
    ///   with it. When nothing was left, the answer is `Ok` with no token.
    /// - [`BatcherError::Closed`] with [`CloseReason::WorkerGone`](crate::CloseReason::WorkerGone)
    ///   if the worker ended before the drain did.
    ///
    /// What was applied stays readable after an error: [`stats`](Self::stats) counts the
    /// acknowledged updates (`updates`) and those answered with the error
    /// (`unacknowledged`).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not stop the shutdown once it was sent: the batcher still
    /// drains.
    pub async fn shutdown(&self) -> Result<BatcherReport, BatcherError> {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Shutdown(reply)).await.is_err() {
            // Another shutdown (or the end of the chain) closed the queue first. Its drain may
            // still be running: wait for the answer it will publish, or for the actor to end
            // without one.
            return self.shared.final_answer().await;
        }
        rx.await.unwrap_or_else(|_| Err(self.shared.gone()))
    }

    /// A snapshot of the statistics so far.
    #[must_use]
    pub fn stats(&self) -> BatcherStats {
        self.shared.stats()
    }

    /// Whether the batcher still takes updates.
    #[must_use]
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    async fn enqueue(
        &self,
        update: OperationUpdate,
        max_delay: Duration,
    ) -> Result<AckFuture, BatcherError> {
        // Checked and sized before waiting for room, so an invalid update is refused whatever
        // the queue's state; the command is built only once a slot is held. What `Sender::send`
        // does, without keeping the command in this future across the wait: a command is a few
        // hundred bytes, and each move is a copy on every update.
        validate_update(&update).map_err(BatcherError::InvalidUpdate)?;
        let (bytes, deadline) = (update_bytes(&update), deadline_after(max_delay));
        let permit = self.tx.reserve().await.map_err(|_| self.stopped())?;
        let (command, ack) = self.command(update, bytes, deadline);
        permit.send(command);
        Ok(ack)
    }

    /// Validation and sizing run here, in the caller's task, so that many callers share the
    /// work and the actor only adds up numbers.
    fn prepare(
        &self,
        update: OperationUpdate,
        max_delay: Duration,
    ) -> Result<(Command, AckFuture), BatcherError> {
        validate_update(&update).map_err(BatcherError::InvalidUpdate)?;
        let (bytes, deadline) = (update_bytes(&update), deadline_after(max_delay));
        Ok(self.command(update, bytes, deadline))
    }

    /// The command that queues one checked update of `bytes` bytes, and its acknowledgement.
    fn command(
        &self,
        update: OperationUpdate,
        bytes: usize,
        deadline: Option<Instant>,
    ) -> (Command, AckFuture) {
        let (reply, rx) = oneshot::channel();
        let submission = Submission {
            bytes,
            update,
            deadline,
            reply: Some(reply),
            unit: 1,
            span: Span::current(),
        };
        let ack = AckFuture::new(rx, Arc::clone(&self.shared));
        (Command::Update(submission), ack)
    }

    /// As [`prepare`](Self::prepare), for a group answered once its last update is durable.
    fn prepare_group(
        &self,
        updates: Vec<OperationUpdate>,
    ) -> Result<(Command, AckFuture), BatcherError> {
        if updates.is_empty() {
            return Err(BatcherError::InvalidUpdate(InvalidUpdate::new(
                "Updates",
                "a group needs at least one update (refresh sends an empty checkpoint)",
            )));
        }
        for update in &updates {
            validate_update(update).map_err(BatcherError::InvalidUpdate)?;
        }
        check_group(&updates).map_err(BatcherError::InvalidUpdate)?;
        let deadline = deadline_after(self.flush_interval);
        let span = Span::current();
        let (reply, rx) = oneshot::channel();
        let mut reply = Some(reply);
        let size = updates.len();
        let mut group: Vec<Submission> = updates
            .into_iter()
            .rev()
            .enumerate()
            .map(|(from_end, update)| Submission {
                bytes: update_bytes(&update),
                update,
                deadline,
                reply: reply.take(),
                unit: if from_end + 1 == size { size } else { 0 },
                span: span.clone(),
            })
            .collect();
        group.reverse();
        let ack = AckFuture::new(rx, Arc::clone(&self.shared));
        Ok((Command::Group(group), ack))
    }

    /// Queues `updates` as one group and waits until all of them are durable: they go whole,
    /// in order, in one checkpoint request, alone in it if they must, as the crate README's
    /// "Groups" guarantee states (the configured batch limits do not split a group; the
    /// service's limits refuse one). This is what a caller that checkpoints several updates of
    /// one operation at once (a START and its SUCCEED, a CONTEXT and its children) needs.
    ///
    /// The acknowledgement is that of the group's last update: its
    /// [`position`](CheckpointAck::position) is the last update's index in its batch.
    ///
    /// # Errors
    ///
    /// As [`checkpoint`](Self::checkpoint); [`BatcherError::InvalidUpdate`] for an empty group,
    /// for the first update that breaks a field constraint, or for a group the service could
    /// not take in one request (over 250 updates or 750 KiB, an update after an EXECUTION
    /// update, two updates of one Id other than a STEP's or CONTEXT's START and the update that
    /// ends it), which it would refuse whole: then nothing was queued.
    ///
    /// # Cancel safety
    ///
    /// As [`checkpoint`](Self::checkpoint): once queued, the whole group is written.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
    /// # use checkpoint_batcher::{BatcherConfig, CheckpointBatcher, InMemoryBackend};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let backend = Arc::new(InMemoryBackend::new());
    /// # let token = backend.current_token().unwrap_or_default();
    /// let batcher = CheckpointBatcher::spawn(backend, "arn", token, BatcherConfig::default())?;
    /// let step = |action| {
    ///     OperationUpdate::builder().id("charge").r#type(OperationType::Step).action(action).build()
    /// };
    /// let ack = batcher
    ///     .checkpoint_all(vec![step(OperationAction::Start)?, step(OperationAction::Succeed)?])
    ///     .await?;
    /// assert_eq!(ack.batch_updates(), 2, "both in one request");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn checkpoint_all(
        &self,
        updates: Vec<OperationUpdate>,
    ) -> Result<CheckpointAck, BatcherError> {
        self.submit_all(updates).await?.await
    }

    /// Queues `updates` as one group, as in [`checkpoint_all`](Self::checkpoint_all), and
    /// returns the future of the group's acknowledgement.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit); [`BatcherError::InvalidUpdate`] as for
    /// [`checkpoint_all`](Self::checkpoint_all), before anything is queued.
    ///
    /// # Cancel safety
    ///
    /// As [`submit`](Self::submit).
    pub async fn submit_all(
        &self,
        updates: Vec<OperationUpdate>,
    ) -> Result<AckFuture, BatcherError> {
        let (command, ack) = self.prepare_group(updates)?;
        let permit = self.tx.reserve().await.map_err(|_| self.stopped())?;
        permit.send(command);
        Ok(ack)
    }

    async fn send(&self, command: Command) -> Result<(), BatcherError> {
        self.tx.send(command).await.map_err(|_| self.stopped())
    }

    /// What a caller is told when the worker, or a task answering for it, ended unanswered.
    pub(crate) fn worker_gone(&self) -> BatcherError {
        self.shared.gone()
    }

    /// Why sending failed: the stored cause, never a bare "closed" when there was one.
    fn stopped(&self) -> BatcherError {
        self.shared.stopped()
    }
}

/// When an update queued now with `max_delay` must go at the latest; `None`: at once. Capped,
/// so that `Duration::MAX` ("no hurry") cannot overflow the clock.
fn deadline_after(max_delay: Duration) -> Option<Instant> {
    let max_delay = max_delay.min(MAX_DURATION);
    (!max_delay.is_zero()).then(|| Instant::now() + max_delay)
}
