//! The actor: one task that owns the checkpoint token, the pending queue and the failure latch.
//!
//! It waits on four things at once (the call in flight, the refreshes' lane, the command
//! channel, and the linger timer) and never polls. The call in flight is a [`SendJob`] future the actor owns, so updates
//! keep arriving and a next batch keeps forming while it runs. Only this file and `send.rs`
//! spawn or sleep.
//!
//! # Lifecycle
//!
//! One [`Phase`]: `Open` (taking updates), `Draining` (a shutdown closed the channel; what was
//! accepted goes out without lingering), `Stopped` (nothing more is sent; what is left is
//! answered with the error). The actor exits once the channel is drained and no call is in
//! flight, answering every shutdown with one final answer.
//!
//! # Scheduling
//!
//! [`Actor::gather`] relies on the scheduler: a `yield_now` lets the callers an acknowledgement
//! woke run and submit before the next batch is cut. Its reasoning (two quiet yields, the LIFO
//! slot of a multi-threaded runtime) is written there, in one place. The concurrent scenario of
//! `benches/throughput.rs`, on the multi-threaded runtime, is what notices a tokio upgrade that
//! changes it: batches alternate small and large, and its "met" column says no.

use std::collections::VecDeque;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::OptionFuture;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};

use super::assemble::BatchLimits;
use super::message::{AckSender, Command, FlushSender, ShutdownSender, Submission};
use super::queue::PendingQueue;
use super::send::{InFlight, SendJob, Sent, batch_span};
use super::shared::{FinalAnswer, Shared};
use crate::backend::DurableBackend;
use crate::config::{BatcherConfig, RetryPolicy};
use crate::error::{BatchFailure, BatcherError, CloseReason};
use crate::size::{CLIENT_TOKEN_LEN, envelope_bytes};
use answers::{Answers, FailedBatch, Handover};

mod answers;

/// The most yields [`Actor::gather`] makes before cutting a batch. Callers that submit without
/// pause fill the batch in far fewer; this only ends a gathering that a task making commands in
/// a tight loop would otherwise keep alive.
const MAX_GATHER_ROUNDS: u32 = 32;

/// How long answers handed to a courier (see `Actor::dispatch`) may wait for their worker
/// thread to return to the scheduler before the actor sends them itself. A task that holds
/// that thread in a long poll would otherwise hold them as long, while another worker sits
/// idle; the actor's timer fires on whichever worker is free.
const COURIER_PATIENCE: Duration = Duration::from_millis(1);

/// Where the batcher is in its life.
enum Phase {
    /// Taking updates.
    Open,
    /// A shutdown closed the channel: what was accepted goes out without lingering.
    Draining,
    /// Nothing more is sent: the latched failure, or why the chain ended. What is left in the
    /// channel is answered with it.
    Stopped(BatcherError),
}

/// What feeds the actor: the queue of commands, and the refreshes' lane beside it.
pub(crate) struct Channels {
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) refreshes: mpsc::Receiver<AckSender>,
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
    /// The refreshes' own lane, read whatever the queue holds, so that a refresh overtakes a
    /// full queue. Closed with `rx`.
    refresh_rx: mpsc::Receiver<AckSender>,
    /// False once the lane is closed and drained.
    refresh_open: bool,
    inbox: Vec<Command>,
    shared: Arc<Shared>,
    phase: Phase,
    queue: PendingQueue<Submission>,
    /// Updates taken from the channel, and acknowledged, so far: a flush waits for its mark.
    received: u64,
    acknowledged: u64,
    flushes: VecDeque<(u64, FlushSender)>,
    refreshes: Vec<AckSender>,
    shutdowns: Vec<ShutdownSender>,
    in_flight: Option<InFlight>,
    /// The answers to the last batch that succeeded, not yet sent.
    answers: Option<Answers>,
    /// The answers handed to the scheduler to send (`Actor::dispatch`), which
    /// `Actor::deliver` takes back if it must answer anything before the courier ran, and
    /// when the actor sends them itself if the courier has not by then ([`COURIER_PATIENCE`]).
    /// (On a runtime with one thread there is no other thread to send them from: no bound.)
    handover: Option<(Arc<Handover>, Option<Instant>)>,
    /// The batch whose failure stopped the batcher, if one did.
    failed_batch: Option<FailedBatch>,
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
        channels: Channels,
        shared: Arc<Shared>,
        published: watch::Sender<Option<FinalAnswer>>,
    ) -> Self {
        let limits = BatchLimits::from(config);
        Self {
            published,
            backend,
            arn: arn.into(),
            queue: PendingQueue::new(limits, envelope_bytes(&token, CLIENT_TOKEN_LEN)),
            token: token.into(),
            limits,
            policy: Arc::new(config.retry.clone()),
            rx: channels.commands,
            rx_open: true,
            refresh_rx: channels.refreshes,
            refresh_open: true,
            inbox: Vec::with_capacity(limits.max_updates),
            shared,
            phase: Phase::Open,
            received: 0,
            acknowledged: 0,
            flushes: VecDeque::new(),
            refreshes: Vec::new(),
            shutdowns: Vec::new(),
            in_flight: None,
            answers: None,
            handover: None,
            failed_batch: None,
            batches_sent: 0,
            // Never from the jitter seed: two batchers seeded alike (a re-invocation of the same
            // execution) would reuse client tokens, and the service would take a new batch for
            // the replay of an old one.
            client_token_prefix: fastrand::Rng::new().u64(..),
            rng: config
                .retry
                .jitter_seed
                .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
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
            if self.in_flight.is_none() && self.ready_to_send() {
                if matches!(self.phase, Phase::Open) {
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
            // Take from the channel only while the next batch has room (see
            // `PendingQueue::room`). A stopped batcher drains everything to answer it.
            let room = match self.phase {
                Phase::Stopped(_) => self.limits.max_updates,
                _ => self.queue.room(),
            };
            let call = OptionFuture::from(self.in_flight.as_mut().map(|f| f.call.as_mut()));
            tokio::select! {
                biased;
                Some(result) = call => self.finish_batch(result),
                // After the call branch: a batch started above is on its way before the callers
                // of the previous one are answered.
                () = std::future::ready(()), if self.answers.is_some() => self.dispatch(),
                // Before the queue, and whatever room it has: a refresh waits for no update.
                reply = self.refresh_rx.recv(), if self.refresh_open => match reply {
                    Some(reply) => self.on_refresh(reply),
                    None => self.refresh_open = false,
                },
                received = self.rx.recv_many(&mut self.inbox, room), if self.rx_open && room > 0 => {
                    if received == 0 {
                        self.rx_open = false;
                    } else {
                        self.take_inbox();
                    }
                }
                () = &mut self.timer, if wake_at.is_some() => {
                    self.timer_armed = None;
                    self.deliver_overdue();
                }
            }
        }
        self.exit();
    }

    /// Lets the tasks that are ready to run submit before a batch that has room is cut, then
    /// takes what they queued. When one acknowledgement wakes many callers, the first to
    /// submit would otherwise wake the actor and leave alone in a call, and everyone else
    /// would wait a whole round trip for the next: batches would alternate small and large, at
    /// half the throughput. The actor yields until two yields in a row bring no new update, the
    /// batch is closed, or [`MAX_GATHER_ROUNDS`] yields passed.
    ///
    /// Two, because a yield can end before the tasks queued ahead of the actor have run: every
    /// 61 polls a tokio worker checks its timers and I/O, wakes the tasks that yielded, and
    /// puts the last one woken in its LIFO slot, ahead of its queue. One yield in a row was
    /// not enough in about 1 % of batches, each then costing a call (benches/throughput).
    /// Only updates count as news: a task that flushes or refreshes in a tight loop must not
    /// hold back the batch that would answer it.
    async fn gather(&mut self) {
        let mut quiet = 0;
        for _ in 0..MAX_GATHER_ROUNDS {
            let room = self.queue.room();
            if room == 0 || self.queue.is_closed() || !self.rx_open || quiet == 2 {
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
            quiet = if self.received == before {
                quiet + 1
            } else {
                0
            };
        }
    }

    fn is_done(&self) -> bool {
        if self.rx_open || self.refresh_open || self.in_flight.is_some() {
            return false;
        }
        matches!(self.phase, Phase::Stopped(_))
            || (self.queue.is_empty() && self.refreshes.is_empty())
    }

    /// Whether the next batch should go now (no call is in flight).
    fn ready_to_send(&self) -> bool {
        if matches!(self.phase, Phase::Stopped(_)) {
            return false;
        }
        if !self.refreshes.is_empty() {
            return true;
        }
        if self.queue.is_empty() {
            return false;
        }
        matches!(self.phase, Phase::Draining)
            || !self.rx_open
            || self.queue.is_closed()
            || self
                .flushes
                .back()
                .is_some_and(|(mark, _)| *mark > self.acknowledged)
            || self.queue.is_due(Instant::now())
    }

    /// When the actor's timer should fire, if it waits for one: the linger of the batch being
    /// gathered, or the bound on answers a courier still holds ([`COURIER_PATIENCE`]).
    fn wake_at(&self) -> Option<Instant> {
        let courier = self
            .handover
            .as_ref()
            .filter(|(handover, _)| handover.is_pending())
            .and_then(|&(_, due)| due);
        let queue = if self.in_flight.is_some() || matches!(self.phase, Phase::Stopped(_)) {
            None
        } else {
            self.queue.earliest()
        };
        match (courier, queue) {
            (Some(courier), Some(queue)) => Some(courier.min(queue)),
            (courier, queue) => courier.or(queue),
        }
    }

    fn take_inbox(&mut self) {
        let mut inbox = mem::take(&mut self.inbox);
        for command in inbox.drain(..) {
            self.on_command(command);
        }
        self.inbox = inbox;
    }

    fn on_command(&mut self, command: Command) {
        if let Phase::Stopped(error) = &self.phase {
            let error = error.clone();
            self.answer_stopped(command, &error);
            return;
        }
        match command {
            Command::Update(submission) => {
                self.received += 1;
                self.queue.push(submission);
            }
            Command::Group(group) => {
                self.received += group.len() as u64;
                self.queue.push_group(group);
            }
            // Nothing to wait for only when no call is in flight either: a refresh's call that
            // revokes the token must fail this flush too, as it fails every drain.
            Command::Flush(reply)
                if self.received == self.acknowledged && self.in_flight.is_none() =>
            {
                // After the acknowledgements it follows, if a courier still holds them.
                self.deliver();
                let _ = reply.send(Ok(()));
            }
            Command::Flush(reply) => self.flushes.push_back((self.received, reply)),
            Command::Shutdown(reply) => {
                self.shutdowns.push(reply);
                if matches!(self.phase, Phase::Open) {
                    // The batcher's end shows to handles at once (they fail fast from here
                    // on): every acknowledgement a courier still holds goes before it.
                    self.deliver();
                    self.phase = Phase::Draining;
                    // Store the reason before closing, so a handle that fails to send reads it.
                    self.shared
                        .set_terminal(&BatcherError::closed(CloseReason::ShutDown));
                    self.rx.close();
                    self.refresh_rx.close();
                }
            }
        }
    }

    fn on_refresh(&mut self, reply: AckSender) {
        match &self.phase {
            Phase::Stopped(error) => {
                let _ = reply.send(Err(error.clone()));
            }
            _ => self.refreshes.push(reply),
        }
    }

    fn start_batch(&mut self) {
        let count = self.queue.front_len();
        let mut updates = Vec::with_capacity(count);
        let mut replies = Vec::with_capacity(count);
        // Refreshes that reached the lane meanwhile ride along.
        while let Ok(reply) = self.refresh_rx.try_recv() {
            self.refreshes.push(reply);
        }
        let refreshes = mem::take(&mut self.refreshes);
        self.batches_sent += 1;
        let sequence = self.batches_sent;
        let span = batch_span(sequence, count, self.queue.front_bytes(), refreshes.len());
        let record_callers = !span.is_disabled();
        let envelope = envelope_bytes(&self.token, CLIENT_TOKEN_LEN);
        self.shared.metrics.dequeued(count);
        let bytes = self.queue.take_batch(envelope, |submission| {
            if record_callers {
                span.follows_from(&submission.span);
            }
            updates.push(submission.update);
            replies.push(submission.reply);
        });
        // Batches go in order and one at a time, so this batch's last update is the one after
        // everything acknowledged so far plus this batch.
        let last_update = self.acknowledged + updates.len() as u64;
        let job = SendJob {
            backend: Arc::clone(&self.backend),
            arn: Arc::clone(&self.arn),
            token: Arc::clone(&self.token),
            updates,
            // A fresh client token per batch, the same on every retry of it: fixed length, so
            // the envelope's size is known when the batch is assembled.
            client_token: format!("{:016x}{sequence:016x}", self.client_token_prefix),
            policy: Arc::clone(&self.policy),
            rng: self.rng.fork(),
            shared: Arc::clone(&self.shared),
            sequence,
            span,
        };
        self.in_flight = Some(job.start(replies, refreshes, last_update, bytes));
    }

    fn finish_batch(&mut self, result: Result<Sent, BatchFailure>) {
        // Batch order: the previous batch's callers are answered first.
        self.deliver();
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        let latency_ms = flight.started.elapsed().as_secs_f64() * 1000.0;
        flight.span.record("latency_ms", latency_ms);
        let ends_execution = flight.ends_execution;
        let token = match result {
            Ok(sent) => self.acknowledge(flight, sent),
            Err(failure) => return self.fail(flight, failure),
        };
        match token {
            Some(token) => {
                let before = envelope_bytes(&self.token, CLIENT_TOKEN_LEN);
                self.token = token.into();
                let after = envelope_bytes(&self.token, CLIENT_TOKEN_LEN);
                if after != before {
                    // The envelope changed size (its escaped bytes, not only its length), and
                    // with it what fits in the next batch.
                    self.queue.reassemble(after);
                }
            }
            None => {
                let reason = if ends_execution {
                    CloseReason::ExecutionCompleted
                } else {
                    CloseReason::TokenRevoked
                };
                tracing::info!(?reason, "the service ended the token chain");
                let closed = BatcherError::closed(reason);
                self.stop(closed.clone(), Vec::new(), &closed, 0);
            }
        }
    }
}
