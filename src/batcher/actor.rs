//! The actor: one task that owns the checkpoint token, the queue and the failure latch.
//!
//! It waits on three things at once (the call in flight, the command channel, and the linger
//! timer) and never polls. The call in flight is a future the actor owns, so updates keep
//! arriving and a next batch keeps forming while it runs. Only this file spawns or sleeps.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;

use aws_sdk_lambda::types::{Operation, OperationAction, OperationType, OperationUpdate};
use futures::FutureExt as _;
use futures::future::OptionFuture;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};
use tracing::{Instrument, Span, field};

use super::ack::{AckedBatch, CheckpointAck};
use super::assemble::{Assembler, BatchLimits, Cut};
use super::attempts::with_retries;
use super::message::{AckSender, Command, FlushSender, ShutdownSender, Submission};
use super::shared::{BatcherReport, FinalAnswer, Shared};
use crate::backend::DurableBackend;
use crate::config::{BatcherConfig, RetryPolicy};
use crate::error::{BackendError, BatchFailure, BatcherError, CloseReason, ErrorKind, FailedCall};
use crate::size::{CLIENT_TOKEN_LEN, envelope_bytes};

/// The most state pages fetched after one checkpoint; a service that kept answering with new
/// markers beyond this would otherwise hold the batch forever.
const MAX_STATE_PAGES: u32 = 10_000;
/// The most operations held from one checkpoint's state pages: the memory bound, whatever the
/// pages' sizes. Far above what one batch of 250 updates changes.
const MAX_STATE_OPERATIONS: usize = 100_000;
/// The most yields [`Actor::gather`] makes before cutting a batch. Callers that submit without
/// pause fill the batch in far fewer; this only ends a gathering that a task making commands in
/// a tight loop would otherwise keep alive.
const MAX_GATHER_ROUNDS: u32 = 32;
/// Page size asked for when following a `NextMarker`: the API's maximum, for fewest calls.
const STATE_PAGE_ITEMS: i32 = 1000;

type SendFuture = Pin<Box<dyn Future<Output = Result<Sent, BatchFailure>> + Send>>;

/// A checkpoint that succeeded, pages included.
struct Sent {
    token: Option<String>,
    operations: Vec<Operation>,
    /// False when the response announced more pages that could not be read (no token).
    state_complete: bool,
}

/// The batch whose call is in flight, and who waits for it.
struct InFlight {
    call: SendFuture,
    /// One per update, in batch order; `None` where a group's later update answers for it.
    replies: Vec<Option<AckSender>>,
    refreshes: Vec<AckSender>,
    /// The sequence number of its last update (updates are numbered from 1 as received).
    last_update: u64,
    sequence: u64,
    bytes: usize,
    ends_execution: bool,
    span: Span,
    started: Instant,
}

/// The answers to a batch that succeeded, not yet sent (see [`Actor::deliver`]).
struct Answers {
    acked: Arc<AckedBatch>,
    replies: Vec<Option<AckSender>>,
    refreshes: Vec<AckSender>,
    flushes: Vec<FlushSender>,
}

pub(crate) struct Actor {
    /// Where the final answer is published for handles (see `Shared::final_answer`). Declared
    /// before `rx` so that it drops first: a handle whose send fails because the actor is gone
    /// then always sees the actor gone.
    published: watch::Sender<Option<FinalAnswer>>,
    backend: Arc<dyn DurableBackend>,
    arn: Arc<str>,
    /// The token the next call must carry. Replaced only when a call succeeds.
    token: Arc<str>,
    limits: BatchLimits,
    policy: Arc<RetryPolicy>,
    rx: mpsc::Receiver<Command>,
    /// False once the channel is closed and drained.
    rx_open: bool,
    inbox: Vec<Command>,
    shared: Arc<Shared>,

    // The next batch being assembled (`front`) and what waits behind it (`overflow`).
    front: Vec<Submission>,
    assembler: Assembler,
    cut: Option<Cut>,
    overflow: VecDeque<Submission>,
    /// Whether some queued update has no deadline (goes as soon as no call is in flight).
    immediate: bool,
    /// The earliest deadline among the queued updates.
    earliest: Option<Instant>,

    received: u64,
    acknowledged: u64,
    flushes: VecDeque<(u64, FlushSender)>,
    refreshes: Vec<AckSender>,
    shutdowns: Vec<ShutdownSender>,
    shutting_down: bool,
    /// Set once the batcher stopped for good: the latched failure or why it closed.
    stopped: Option<BatcherError>,

    in_flight: Option<InFlight>,
    /// The answers to the last batch that succeeded, not yet sent.
    answers: Option<Answers>,
    batches_sent: u64,
    client_token_prefix: u64,
    rng: fastrand::Rng,
    timer: Pin<Box<Sleep>>,
    timer_armed: Option<Instant>,
}

impl Actor {
    pub(crate) fn new(
        backend: Arc<dyn DurableBackend>,
        arn: String,
        token: String,
        config: &BatcherConfig,
        rx: mpsc::Receiver<Command>,
        shared: Arc<Shared>,
        published: watch::Sender<Option<FinalAnswer>>,
    ) -> Self {
        let rng = config
            .retry
            .jitter_seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let limits = BatchLimits::from(config);
        let envelope = envelope_bytes(&token, CLIENT_TOKEN_LEN);
        Self {
            published,
            backend,
            arn: arn.into(),
            token: token.into(),
            limits,
            policy: Arc::new(config.retry.clone()),
            rx,
            rx_open: true,
            inbox: Vec::with_capacity(limits.max_updates),
            shared,
            front: Vec::with_capacity(limits.max_updates),
            assembler: Assembler::new(limits, envelope),
            cut: None,
            overflow: VecDeque::new(),
            immediate: false,
            earliest: None,
            received: 0,
            acknowledged: 0,
            flushes: VecDeque::new(),
            refreshes: Vec::new(),
            shutdowns: Vec::new(),
            shutting_down: false,
            stopped: None,
            in_flight: None,
            answers: None,
            batches_sent: 0,
            // Never from the jitter seed: two batchers seeded alike (a re-invocation of the same
            // execution) would reuse client tokens, and the service would take a new batch for
            // the replay of an old one.
            client_token_prefix: fastrand::Rng::new().u64(..),
            rng,
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            timer_armed: None,
        }
    }

    /// Runs the actor on the current runtime.
    pub(crate) fn spawn(self) {
        drop(tokio::spawn(self.run()));
    }

    pub(crate) async fn run(mut self) {
        loop {
            if self.in_flight.is_none() && self.stopped.is_none() && self.ready_to_send() {
                if !self.shutting_down {
                    self.gather().await;
                }
                self.start_batch();
            }
            if self.is_done() {
                break;
            }
            let wake_at = self.wake_at();
            if let Some(at) = wake_at
                && self.timer_armed != Some(at)
            {
                self.timer.as_mut().reset(at);
                self.timer_armed = Some(at);
            }
            // Take from the channel only while the next batch has room: beyond that, updates
            // wait in the bounded channel, so memory stays bounded and `submit` feels
            // backpressure. A stopped batcher drains everything to answer it.
            let room = if self.stopped.is_some() {
                self.limits.max_updates
            } else {
                self.limits.max_updates.saturating_sub(self.queued())
            };
            let call = OptionFuture::from(self.in_flight.as_mut().map(|f| f.call.as_mut()));
            tokio::select! {
                biased;
                Some(result) = call => self.finish_batch(result),
                // After the call branch: a batch started above is on its way before the callers
                // of the previous one are answered.
                () = std::future::ready(()), if self.answers.is_some() => self.deliver(),
                received = self.rx.recv_many(&mut self.inbox, room), if self.rx_open && room > 0 => {
                    if received == 0 {
                        self.rx_open = false;
                    } else {
                        self.take_inbox();
                    }
                }
                () = &mut self.timer, if wake_at.is_some() => self.timer_armed = None,
            }
        }
        self.exit();
    }

    /// Lets the tasks that are ready to run submit before a batch that has room is cut, then
    /// takes what they queued. When one acknowledgement wakes many callers, the first to
    /// submit would otherwise wake the actor and leave alone in a call, and everyone else
    /// would wait a whole round trip for the next: batches would alternate small and large, at
    /// half the throughput. The actor yields until two yields in a row bring no new update, the
    /// batch is closed, or [`MAX_GATHER_ROUNDS`] yields passed: a few yields per batch, never
    /// one per update, and never unbounded.
    ///
    /// Two, because a yield can end before the tasks queued ahead of the actor have run: every
    /// 61 polls a tokio worker checks its timers and I/O, wakes the tasks that yielded, and
    /// puts the last one woken in its LIFO slot, ahead of its queue. One yield in a row was
    /// not enough in about 1 % of batches, each then costing a call (benches/throughput).
    ///
    /// Only updates count as news: a task that flushes or refreshes in a tight loop must not
    /// hold back the batch that would answer it, or a refresh waiting behind it.
    async fn gather(&mut self) {
        let mut quiet = 0;
        for _ in 0..MAX_GATHER_ROUNDS {
            let room = self.limits.max_updates.saturating_sub(self.queued());
            if room == 0 || self.cut.is_some() || !self.rx_open || quiet == 2 {
                break;
            }
            // Callers submit their next updates only once answered.
            self.deliver();
            tokio::task::yield_now().await;
            let before = self.received;
            match self.rx.recv_many(&mut self.inbox, room).now_or_never() {
                Some(0) => self.rx_open = false,
                Some(_) => self.take_inbox(),
                None => {}
            }
            if self.received == before {
                quiet += 1;
            } else {
                quiet = 0;
            }
        }
    }

    fn queued(&self) -> usize {
        self.front.len() + self.overflow.len()
    }

    fn is_done(&self) -> bool {
        if self.rx_open || self.in_flight.is_some() {
            return false;
        }
        self.stopped.is_some() || (self.queued() == 0 && self.refreshes.is_empty())
    }

    /// Whether the next batch should go now (no call is in flight).
    fn ready_to_send(&self) -> bool {
        if !self.refreshes.is_empty() {
            return true;
        }
        if self.queued() == 0 {
            return false;
        }
        self.shutting_down
            || !self.rx_open
            || self.cut.is_some()
            || self.front.len() >= self.limits.max_updates
            || self.immediate
            || self
                .flushes
                .back()
                .is_some_and(|(mark, _)| *mark > self.acknowledged)
            || self.earliest.is_some_and(|at| at <= Instant::now())
    }

    /// When the linger timer should fire, if the actor is waiting for one.
    fn wake_at(&self) -> Option<Instant> {
        if self.in_flight.is_some() || self.stopped.is_some() || self.queued() == 0 {
            return None;
        }
        self.earliest
    }

    fn take_inbox(&mut self) {
        let mut inbox = mem::take(&mut self.inbox);
        for command in inbox.drain(..) {
            self.on_command(command);
        }
        self.inbox = inbox;
    }

    fn on_command(&mut self, command: Command) {
        if let Some(error) = self.stopped.clone() {
            self.answer_stopped(command, &error);
            return;
        }
        match command {
            Command::Update(submission) => {
                self.received += 1;
                self.enqueue(submission);
            }
            Command::Group(group) => {
                self.received += group.len() as u64;
                self.enqueue_group(group);
            }
            Command::Refresh(reply) => self.refreshes.push(reply),
            Command::Flush(reply) => {
                if self.received == self.acknowledged {
                    let _ = reply.send(Ok(()));
                } else {
                    self.flushes.push_back((self.received, reply));
                }
            }
            Command::Shutdown(reply) => {
                self.shutdowns.push(reply);
                if !self.shutting_down {
                    self.shutting_down = true;
                    // Store the reason before closing, so a handle that fails to send reads it.
                    self.shared
                        .set_terminal(&BatcherError::closed(CloseReason::ShutDown));
                    self.rx.close();
                }
            }
        }
    }

    fn note_deadline(&mut self, deadline: Option<Instant>) {
        match deadline {
            None => self.immediate = true,
            Some(at) => self.earliest = Some(self.earliest.map_or(at, |e| e.min(at))),
        }
    }

    /// Queues a group so that it goes in one batch whenever it fits in one: into the front
    /// batch if all of it fits there, otherwise behind a cut, to start the next batch. A group
    /// larger than one batch is split in order, as single updates would be.
    fn enqueue_group(&mut self, group: Vec<Submission>) {
        if self.cut.is_some() || !self.overflow.is_empty() {
            if let Some(first) = group.first() {
                self.note_deadline(first.deadline);
            }
            self.overflow.extend(group);
            return;
        }
        match self
            .assembler
            .try_add_all(group.iter().map(|s| (&s.update, s.bytes)))
        {
            Ok(()) => {
                if let Some(first) = group.first() {
                    self.note_deadline(first.deadline);
                }
                self.front.extend(group);
            }
            Err((_, cut)) if !self.front.is_empty() => {
                if let Some(first) = group.first() {
                    self.note_deadline(first.deadline);
                }
                self.cut = Some(cut);
                self.overflow.extend(group);
            }
            Err(_) => group.into_iter().for_each(|s| self.enqueue(s)),
        }
    }

    fn enqueue(&mut self, submission: Submission) {
        self.note_deadline(submission.deadline);
        if self.cut.is_none() && self.overflow.is_empty() {
            match self.assembler.try_add(&submission.update, submission.bytes) {
                Ok(()) => self.front.push(submission),
                Err(cut) => {
                    self.cut = Some(cut);
                    self.overflow.push_back(submission);
                }
            }
        } else {
            self.overflow.push_back(submission);
        }
    }

    /// Moves updates from `overflow` into the (empty) front batch until one does not fit. A
    /// group moves whole, or closes the batch before it; one that fills an empty batch alone
    /// (larger than a batch) is split, its updates moving one by one.
    fn refill_front(&mut self) {
        self.assembler
            .reset(envelope_bytes(&self.token, CLIENT_TOKEN_LEN));
        self.cut = None;
        while let Some(head) = self.overflow.front() {
            let unit = head.unit.clamp(1, self.overflow.len());
            if unit > 1 && !self.front.is_empty() {
                let group = self.overflow.range(..unit).map(|s| (&s.update, s.bytes));
                if let Err((_, cut)) = self.assembler.try_add_all(group) {
                    self.cut = Some(cut);
                    break;
                }
                self.front.extend(self.overflow.drain(..unit));
                continue;
            }
            if unit > 1 {
                let group = self.overflow.range(..unit).map(|s| (&s.update, s.bytes));
                if self.assembler.try_add_all(group).is_ok() {
                    self.front.extend(self.overflow.drain(..unit));
                    continue;
                }
            }
            let Some(submission) = self.overflow.pop_front() else {
                break;
            };
            if let Err(cut) = self.assembler.try_add(&submission.update, submission.bytes) {
                self.cut = Some(cut);
                self.overflow.push_front(submission);
                break;
            }
            self.front.push(submission);
        }
    }

    /// Re-assembles the front batch after the token changed length, which changes the
    /// envelope's size and so what fits.
    fn reassemble_front(&mut self) {
        for submission in self.front.drain(..).rev() {
            self.overflow.push_front(submission);
        }
        self.refill_front();
    }

    fn start_batch(&mut self) {
        let bytes = self.assembler.bytes();
        let count = self.front.len();
        let mut updates = Vec::with_capacity(count);
        let mut replies = Vec::with_capacity(count);
        let refreshes = mem::take(&mut self.refreshes);
        self.batches_sent += 1;
        let sequence = self.batches_sent;
        let span = tracing::info_span!(
            "checkpoint_batch",
            sequence,
            updates = count,
            bytes,
            refreshes = refreshes.len(),
            attempts = field::Empty,
            page_attempts = field::Empty,
            outcome = field::Empty,
            latency_ms = field::Empty,
        );
        let record_callers = !span.is_disabled();
        // Drained, not swapped for a new vector: the front keeps its capacity (a full batch of
        // submissions is about 110 KB), so no batch allocates and frees one.
        for submission in self.front.drain(..) {
            if record_callers {
                span.follows_from(&submission.span);
            }
            updates.push(submission.update);
            replies.push(submission.reply);
        }
        self.refill_front();
        self.recompute_deadlines();
        // Batches go in order and one at a time, so this batch's last update is the one after
        // everything acknowledged so far plus this batch.
        let last_update = self.acknowledged + updates.len() as u64;
        let ends_execution = updates.last().is_some_and(|u| {
            u.r#type == OperationType::Execution
                && matches!(u.action, OperationAction::Succeed | OperationAction::Fail)
        });
        // A fresh client token per batch, the same on every retry of it: fixed length, so the
        // envelope's size is known when the batch is assembled.
        let client_token = format!("{:016x}{sequence:016x}", self.client_token_prefix);
        let job = SendJob {
            backend: Arc::clone(&self.backend),
            arn: Arc::clone(&self.arn),
            token: Arc::clone(&self.token),
            updates,
            client_token,
            policy: Arc::clone(&self.policy),
            rng: self.rng.fork(),
            shared: Arc::clone(&self.shared),
            sequence,
            span: span.clone(),
        };
        self.in_flight = Some(InFlight {
            call: Box::pin(job.run().instrument(span.clone())),
            replies,
            refreshes,
            last_update,
            sequence,
            bytes,
            ends_execution,
            span,
            started: Instant::now(),
        });
    }

    fn recompute_deadlines(&mut self) {
        let mut immediate = false;
        let mut earliest: Option<Instant> = None;
        for submission in self.front.iter().chain(self.overflow.iter()) {
            match submission.deadline {
                None => immediate = true,
                Some(at) => earliest = Some(earliest.map_or(at, |e| e.min(at))),
            }
        }
        self.immediate = immediate;
        self.earliest = earliest;
    }

    fn finish_batch(&mut self, result: Result<Sent, BatchFailure>) {
        // Batch order: the previous batch's callers are answered first.
        self.deliver();
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        let latency = flight.started.elapsed();
        flight
            .span
            .record("latency_ms", latency.as_secs_f64() * 1000.0);
        match result {
            Ok(sent) => {
                flight.span.record("outcome", "ok");
                self.shared.record_batch(flight.replies.len(), flight.bytes);
                let acked = Arc::new(AckedBatch {
                    token: sent.token.clone(),
                    sequence: flight.sequence,
                    updates: flight.replies.len(),
                    bytes: flight.bytes,
                    operations: sent.operations,
                    state_complete: sent.state_complete,
                });
                self.acknowledged = flight.last_update;
                let mut flushes = Vec::new();
                while self
                    .flushes
                    .front()
                    .is_some_and(|(mark, _)| *mark <= self.acknowledged)
                {
                    if let Some((_, reply)) = self.flushes.pop_front() {
                        flushes.push(reply);
                    }
                }
                // Answered by `deliver`, once the next call (if one is ready) has started.
                self.answers = Some(Answers {
                    acked,
                    replies: flight.replies,
                    refreshes: flight.refreshes,
                    flushes,
                });
                match sent.token {
                    Some(token) => {
                        if token.len() != self.token.len() {
                            self.token = token.into();
                            self.reassemble_front();
                        } else {
                            self.token = token.into();
                        }
                    }
                    None => {
                        let reason = if flight.ends_execution {
                            CloseReason::ExecutionCompleted
                        } else {
                            CloseReason::TokenRevoked
                        };
                        tracing::info!(?reason, "the service ended the token chain");
                        self.stop(BatcherError::closed(reason), Vec::new(), 0);
                    }
                }
            }
            Err(failure) => {
                flight.span.record("outcome", "failed");
                self.shared.record_failure();
                tracing::error!(
                    sequence = flight.sequence,
                    kind = %failure.kind(),
                    scope = ?failure.scope(),
                    "checkpoint batch failed for good: {failure}"
                );
                // The latch, in tower's order: store the error, close the channel, then answer
                // everyone who waits, the batch's own callers first.
                let updates = flight.replies.len();
                let mut first: Vec<AckSender> = flight.replies.into_iter().flatten().collect();
                first.extend(flight.refreshes);
                self.stop(BatcherError::Failed(failure), first, updates);
            }
        }
    }

    /// Answers the callers of the last batch that succeeded, then the flushes it completed.
    ///
    /// When the next batch is already closed (full, or cut by a rule) it goes first and the
    /// answers follow, so that the callers' wake-ups, which may each cost the scheduler a system
    /// call to unpark a worker, overlap the next round trip instead of delaying it. When the
    /// next batch still has room, [`gather`](Self::gather) delivers first, since the callers'
    /// next updates belong in it. Always called before anything else is answered, so answers
    /// keep batch order.
    fn deliver(&mut self) {
        let Some(answers) = self.answers.take() else {
            return;
        };
        for (position, reply) in answers.replies.into_iter().enumerate() {
            let Some(reply) = reply else {
                continue;
            };
            // A caller that dropped its future only loses the answer.
            let _ = reply.send(Ok(CheckpointAck::new(
                Arc::clone(&answers.acked),
                Some(position),
            )));
        }
        for reply in answers.refreshes {
            let _ = reply.send(Ok(CheckpointAck::new(Arc::clone(&answers.acked), None)));
        }
        for reply in answers.flushes {
            let _ = reply.send(Ok(()));
        }
    }

    /// Stops for good: stores `error` where handles read it, closes the channel, and answers
    /// `first` (the failed batch's callers), then everything queued, with it. Messages still in
    /// the channel are answered as they are drained; shutdowns are answered last, by
    /// [`exit`](Self::exit), once every accepted update has its answer.
    fn stop(&mut self, error: BatcherError, first: Vec<AckSender>, first_updates: usize) {
        // The last successful batch's callers are answered first: answers keep batch order.
        self.deliver();
        // Recorded before anything else: the report depends on it (no token once the service
        // ended the chain).
        self.stopped = Some(error.clone());
        self.shared.set_terminal(&error);
        self.rx.close();
        self.shared
            .record_unacknowledged(first_updates + self.queued());
        for reply in first {
            let _ = reply.send(Err(error.clone()));
        }
        for reply in self.front.drain(..).chain(self.overflow.drain(..)) {
            if let Some(reply) = reply.reply {
                let _ = reply.send(Err(error.clone()));
            }
        }
        for reply in self.refreshes.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, reply) in self.flushes.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
        self.immediate = false;
        self.earliest = None;
    }

    /// What a shutdown gets, once every accepted update was answered: the report when every
    /// one of them was acknowledged, otherwise the error that refused them. A latched failure
    /// is always the answer, as it is for every call after it, and so is a revoked token: the
    /// invocation must stop (PENDING), and an `Ok` would invite it to report a result.
    fn final_answer(&self) -> FinalAnswer {
        match &self.stopped {
            Some(error @ BatcherError::Failed(_)) => Err(error.clone()),
            Some(error @ BatcherError::Closed(closed))
                if closed.reason() == CloseReason::TokenRevoked =>
            {
                Err(error.clone())
            }
            Some(error) if self.shared.unacknowledged() > 0 => Err(error.clone()),
            _ => Ok(self.report()),
        }
    }

    fn report(&self) -> BatcherReport {
        let token = match &self.stopped {
            Some(BatcherError::Closed(closed))
                if matches!(
                    closed.reason(),
                    CloseReason::ExecutionCompleted | CloseReason::TokenRevoked
                ) =>
            {
                None
            }
            _ => Some(self.token.to_string()),
        };
        BatcherReport {
            checkpoint_token: token,
            stats: self.shared.stats(),
        }
    }

    /// Answers a command that arrived after the batcher stopped with `error`. Commands leave
    /// the channel in the order they entered it, so a flush taken now follows every update
    /// accepted before it: each was acknowledged or has already been refused.
    fn answer_stopped(&mut self, command: Command, error: &BatcherError) {
        match command {
            Command::Update(submission) => {
                self.shared.record_unacknowledged(1);
                if let Some(reply) = submission.reply {
                    let _ = reply.send(Err(error.clone()));
                }
            }
            Command::Group(group) => {
                self.shared.record_unacknowledged(group.len());
                for reply in group.into_iter().filter_map(|s| s.reply) {
                    let _ = reply.send(Err(error.clone()));
                }
            }
            Command::Refresh(reply) => {
                let _ = reply.send(Err(error.clone()));
            }
            Command::Flush(reply) => {
                let _ = reply.send(self.final_answer().map(drop));
            }
            // Updates accepted behind it may still be drained and refused: answered at exit.
            Command::Shutdown(reply) => self.shutdowns.push(reply),
        }
    }

    /// Answers the shutdowns and publishes the final answer, for handles whose `shutdown` or
    /// `flush` found the queue closed. Runs once the channel is drained and nothing is in
    /// flight, so the answer is final.
    fn exit(mut self) {
        self.deliver();
        let answer = self.final_answer();
        self.published.send_replace(Some(answer.clone()));
        for reply in self.shutdowns.drain(..) {
            let _ = reply.send(answer.clone());
        }
    }
}

/// Everything one batch needs to be sent, retried and paged, owned so that the call can run
/// while the actor keeps taking updates.
struct SendJob {
    backend: Arc<dyn DurableBackend>,
    arn: Arc<str>,
    token: Arc<str>,
    updates: Vec<OperationUpdate>,
    client_token: String,
    policy: Arc<RetryPolicy>,
    rng: fastrand::Rng,
    shared: Arc<Shared>,
    sequence: u64,
    span: Span,
}

impl SendJob {
    async fn run(mut self) -> Result<Sent, BatchFailure> {
        let backend = Arc::clone(&self.backend);
        let mut attempts = 0;
        let output = {
            let (arn, token, updates, client_token) =
                (&self.arn, &self.token, &self.updates, &self.client_token);
            let call = || backend.batch_checkpoint(arn, token, updates, client_token);
            let result = retrying(
                &self.policy,
                &mut self.rng,
                &self.shared,
                &mut attempts,
                self.sequence,
                FailedCall::Checkpoint,
                call,
            )
            .await;
            self.span.record("attempts", attempts);
            result?
        };
        // An empty token cannot carry a next call: it ends the chain as a missing one does.
        let token = output.checkpoint_token.filter(|token| !token.is_empty());
        let (mut operations, mut marker) = output
            .new_execution_state
            .map(|state| (state.operations.unwrap_or_default(), state.next_marker))
            .unwrap_or_default();
        // More operations are waiting: fetch them with the new token before acknowledging, so
        // callers never act on half of the state (the TypeScript SDK ignored NextMarker). From
        // here on the checkpoint is applied: any failure is the invocation's (`FailedCall`).
        let mut page_attempts = 0;
        let mut seen = HashSet::new();
        let mut pages = 0;
        // Without a token no page can be read: the marker stays, and the state is incomplete.
        while let Some(page_token) = token.as_deref()
            && let Some(page_marker) = marker.take()
        {
            pages += 1;
            if let Some(problem) = page_problem(&page_marker, &seen, pages, operations.len()) {
                self.span.record("page_attempts", page_attempts);
                let cause = BackendError::new(ErrorKind::Transient, problem);
                return Err(BatchFailure::new(
                    cause,
                    self.sequence,
                    page_attempts.max(1),
                    FailedCall::StatePage,
                ));
            }
            let page = retrying(
                &self.policy,
                &mut self.rng,
                &self.shared,
                &mut page_attempts,
                self.sequence,
                FailedCall::StatePage,
                || {
                    backend.get_execution_state(
                        &self.arn,
                        page_token,
                        Some(&page_marker),
                        Some(STATE_PAGE_ITEMS),
                    )
                },
            )
            .await;
            self.span.record("page_attempts", page_attempts);
            let page = page?;
            operations.extend(page.operations);
            let _ = seen.insert(page_marker);
            marker = page.next_marker;
        }
        Ok(Sent {
            token,
            operations,
            state_complete: marker.is_none(),
        })
    }
}

/// Why the state pages of an applied checkpoint cannot be followed to `marker`, if they cannot:
/// an empty or repeated marker (a service that would loop), or more pages or operations than
/// [`MAX_STATE_PAGES`] and [`MAX_STATE_OPERATIONS`] allow (memory).
fn page_problem(
    marker: &str,
    seen: &HashSet<String>,
    pages: u32,
    operations: usize,
) -> Option<String> {
    if marker.is_empty() {
        Some("the service returned an empty NextMarker".to_owned())
    } else if seen.contains(marker) {
        Some("the service returned a NextMarker it had returned before".to_owned())
    } else if pages > MAX_STATE_PAGES {
        Some(format!(
            "the service returned more than {MAX_STATE_PAGES} state pages"
        ))
    } else if operations > MAX_STATE_OPERATIONS {
        Some(format!(
            "the state pages held more than {MAX_STATE_OPERATIONS} operations"
        ))
    } else {
        None
    }
}

/// Makes one call with retries ([`with_retries`]), counting retries in the statistics and
/// every attempt in `attempts` (the pages of one batch share one count).
async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    rng: &mut fastrand::Rng,
    shared: &Shared,
    attempts: &mut u32,
    sequence: u64,
    during: FailedCall,
    call: F,
) -> Result<T, BatchFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let what = match during {
        FailedCall::Checkpoint => "checkpoint call",
        FailedCall::StatePage => "state page call",
    };
    let (result, made) = with_retries(policy, rng, what, || shared.record_retry(), call).await;
    *attempts += made;
    result.map_err(|error| BatchFailure::new(error, sequence, made, during))
}
