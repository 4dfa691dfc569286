//! An exhaustive interleaving test of the hand-off between the handle and
//! the actor, for `submit`, `flush` and `shutdown` racing. (`loom` would need the library to
//! use loom's primitives; this bounded enumeration checks the same hand-off deterministically.)
//!
//! # The model
//!
//! Nothing runs on its own. The worker from [`CheckpointBatcher::pair`] is polled by hand, the
//! backend lets a call through only when the schedule grants it a permit, and every caller's
//! future is polled by hand too, on a current-thread runtime with a paused clock (so no timer
//! ever fires) and without tokio's cooperative budget (so a poll that can progress does).
//!
//! A schedule is a word over five symbols: the client operations `S0`, `S1` (submit update 0 or
//! 1), `F` (flush) and `X` (shutdown), each exactly once and in any of their 24 orders, mixed
//! with up to four progress symbols in every position: `W` (poll the actor once) and `P`
//! (grant the backend one call). After every symbol every outstanding caller future is polled
//! once, so a caller sees whatever the actor has answered. After the word, the run is drained:
//! permits are granted and everything polled until every future resolved, within a bound that
//! turns a hang into a failure; then the handle is dropped and the worker must finish.
//!
//! That is run for three shapes (one update per batch with a queue of one, so a `submit` can
//! wait for room; a full batch with a queue of one; a full batch with a queue of four) and two
//! backends (every call succeeds; the first call is refused for good): 35,304 schedules each,
//! 211,824 in all, in a few seconds.
//!
//! # What every run must show
//!
//! - Every caller is answered: each submit, acknowledgement, flush and shutdown resolves.
//! - Nothing accepted is lost or doubled: an update whose `submit` returned `Ok` is applied
//!   exactly once if its acknowledgement is `Ok`, and not at all otherwise; an update refused
//!   at `submit` is never applied; updates are applied in the order they were accepted.
//! - A `submit` or `flush` begun before the `shutdown` is accepted and succeeds (backend
//!   succeeding); one begun after it succeeds or gets `Closed(ShutDown)`, never anything else.
//! - `flush` returns `Ok` only once every update accepted before it began is acknowledged.
//! - `shutdown` reports every applied update and the backend's final token; with the refusing
//!   backend it reports the failure exactly when a call was made, and no call follows it.
//! - The worker finishes once the handle is gone.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::{
    AckFuture, BackendError, BatcherConfig, BatcherError, BatcherHandle, BatcherReport,
    BatcherWorker, CheckpointAck, CheckpointBatcher, CloseReason, DurableBackend, ErrorKind,
    InMemoryBackend,
};

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:f/durable-execution/e/1";
/// The most progress symbols in one schedule.
const MAX_PROGRESS: usize = 4;
/// Drain rounds before a run counts as hung.
const DRAIN_ROUNDS: usize = 200;

/// A backend whose calls each wait for a permit the schedule grants.
#[derive(Debug)]
struct Gated {
    inner: InMemoryBackend,
    permits: tokio::sync::Semaphore,
    calls: AtomicUsize,
    refuse_first: bool,
}

#[async_trait]
impl DurableBackend for Gated {
    async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        self.batch_checkpoint(arn, checkpoint_token, &updates, client_token.unwrap_or(""))
            .await
    }

    async fn batch_checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: &[OperationUpdate],
        client_token: &str,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        self.permits.acquire().await.expect("never closed").forget();
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 && self.refuse_first {
            return Err(BackendError::new(
                ErrorKind::Rejected,
                "refused by the model",
            ));
        }
        self.inner
            .batch_checkpoint(arn, checkpoint_token, updates, client_token)
            .await
    }

    async fn get_execution_state(
        &self,
        arn: &str,
        checkpoint_token: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        self.inner
            .get_execution_state(arn, checkpoint_token, marker, max_items)
            .await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Symbol {
    Submit(usize),
    Flush,
    Shutdown,
    /// Poll the actor once.
    Work,
    /// Grant the backend one call.
    Permit,
}

type Boxed<T> = Pin<Box<dyn Future<Output = T>>>;

/// A flush in progress: its future, the updates accepted before it began, and whether it began
/// before the shutdown.
type PendingFlush = (Boxed<Result<(), BatcherError>>, Vec<usize>, bool);

/// One run of one schedule.
struct Run {
    backend: Arc<Gated>,
    handle: Option<BatcherHandle>,
    worker: BatcherWorker,
    worker_done: bool,
    submits: HashMap<usize, Boxed<Result<AckFuture, BatcherError>>>,
    submit_began_before_shutdown: HashMap<usize, bool>,
    submit_errors: HashMap<usize, BatcherError>,
    accepted: Vec<usize>,
    acks: HashMap<usize, AckFuture>,
    answers: HashMap<usize, Result<CheckpointAck, BatcherError>>,
    flush: Option<PendingFlush>,
    flushed: Option<(Result<(), BatcherError>, bool)>,
    shutdown: Option<Boxed<Result<BatcherReport, BatcherError>>>,
    shutdown_began: bool,
    report: Option<Result<BatcherReport, BatcherError>>,
}

fn update(i: usize) -> OperationUpdate {
    OperationUpdate::builder()
        .id(format!("u{i}"))
        .r#type(OperationType::Step)
        .action(OperationAction::Start)
        .build()
        .expect("complete")
}

impl Run {
    fn new(config: &BatcherConfig, refuse_first: bool) -> Self {
        let inner = InMemoryBackend::new();
        let token = inner
            .current_token()
            .expect("a fresh execution has a token");
        let backend = Arc::new(Gated {
            inner,
            permits: tokio::sync::Semaphore::new(0),
            calls: AtomicUsize::new(0),
            refuse_first,
        });
        let (handle, worker) =
            CheckpointBatcher::pair(backend.clone(), ARN, token, config.clone()).expect("valid");
        Self {
            backend,
            handle: Some(handle),
            worker,
            worker_done: false,
            submits: HashMap::new(),
            submit_began_before_shutdown: HashMap::new(),
            submit_errors: HashMap::new(),
            accepted: Vec::new(),
            acks: HashMap::new(),
            answers: HashMap::new(),
            flush: None,
            flushed: None,
            shutdown: None,
            shutdown_began: false,
            report: None,
        }
    }

    fn handle(&self) -> BatcherHandle {
        self.handle.clone().expect("the handle lives until the end")
    }

    fn step(&mut self, symbol: Symbol, cx: &mut Context<'_>) {
        match symbol {
            Symbol::Submit(i) => {
                let handle = self.handle();
                let _ = self
                    .submits
                    .insert(i, Box::pin(async move { handle.submit(update(i)).await }));
                let _ = self
                    .submit_began_before_shutdown
                    .insert(i, !self.shutdown_began);
            }
            Symbol::Flush => {
                let handle = self.handle();
                self.flush = Some((
                    Box::pin(async move { handle.flush().await }),
                    self.accepted.clone(),
                    !self.shutdown_began,
                ));
            }
            Symbol::Shutdown => {
                let handle = self.handle();
                self.shutdown = Some(Box::pin(async move { handle.shutdown().await }));
                self.shutdown_began = true;
            }
            Symbol::Work => self.poll_worker(cx),
            Symbol::Permit => self.backend.permits.add_permits(1),
        }
        self.poll_callers(cx);
    }

    fn poll_worker(&mut self, cx: &mut Context<'_>) {
        if !self.worker_done && Pin::new(&mut self.worker).poll(cx).is_ready() {
            self.worker_done = true;
        }
    }

    fn poll_callers(&mut self, cx: &mut Context<'_>) {
        let mut ids: Vec<usize> = self.submits.keys().copied().collect();
        ids.sort_unstable();
        for i in ids {
            let fut = self.submits.get_mut(&i).expect("listed");
            if let Poll::Ready(result) = fut.as_mut().poll(cx) {
                let _ = self.submits.remove(&i);
                match result {
                    Ok(ack) => {
                        self.accepted.push(i);
                        let _ = self.acks.insert(i, ack);
                    }
                    Err(error) => {
                        let _ = self.submit_errors.insert(i, error);
                    }
                }
            }
        }
        self.poll_acks(cx);
        if let Some((fut, before, began_before_shutdown)) = &mut self.flush
            && let Poll::Ready(result) = fut.as_mut().poll(cx)
        {
            let before = before.clone();
            let began_before_shutdown = *began_before_shutdown;
            self.flush = None;
            if result.is_ok() {
                // The moment flush returns, everything accepted before it is acknowledged.
                self.poll_acks(cx);
                for i in before {
                    assert!(
                        matches!(self.answers.get(&i), Some(Ok(_))),
                        "flush returned Ok before update {i}, accepted earlier, was acknowledged"
                    );
                }
            }
            self.flushed = Some((result, began_before_shutdown));
        }
        if let Some(fut) = &mut self.shutdown
            && let Poll::Ready(result) = fut.as_mut().poll(cx)
        {
            self.shutdown = None;
            self.report = Some(result);
        }
    }

    fn poll_acks(&mut self, cx: &mut Context<'_>) {
        let ready: Vec<(usize, Result<CheckpointAck, BatcherError>)> = self
            .acks
            .iter_mut()
            .filter_map(|(i, ack)| match Pin::new(ack).poll(cx) {
                Poll::Ready(result) => Some((*i, result)),
                Poll::Pending => None,
            })
            .collect();
        for (i, result) in ready {
            let _ = self.acks.remove(&i);
            let _ = self.answers.insert(i, result);
        }
    }

    fn settled(&self) -> bool {
        self.submits.is_empty()
            && self.acks.is_empty()
            && self.flush.is_none()
            && self.shutdown.is_none()
    }

    /// Drains, then checks every property of the module doc.
    fn finish(
        mut self,
        cx: &mut Context<'_>,
        schedule: &[Symbol],
        refuse_first: bool,
        max_batch: usize,
    ) {
        for _ in 0..DRAIN_ROUNDS {
            if self.settled() {
                break;
            }
            self.backend.permits.add_permits(1);
            self.poll_worker(cx);
            self.poll_callers(cx);
        }
        assert!(self.settled(), "{schedule:?}: a caller was never answered");
        drop(self.handle.take());
        for _ in 0..DRAIN_ROUNDS {
            if self.worker_done {
                break;
            }
            self.backend.permits.add_permits(1);
            self.poll_worker(cx);
        }
        assert!(
            self.worker_done,
            "{schedule:?}: the worker outlived its handles"
        );

        let applied: Vec<usize> = self
            .backend
            .inner
            .applied()
            .iter()
            .map(|u| u.id[1..].parse().expect("u<n>"))
            .collect();
        let acknowledged: Vec<usize> = self
            .accepted
            .iter()
            .copied()
            .filter(|i| matches!(self.answers.get(i), Some(Ok(_))))
            .collect();
        assert_eq!(
            applied, acknowledged,
            "{schedule:?}: exactly the acknowledged updates are applied, once, in acceptance order"
        );
        for ack in self.answers.values().flatten() {
            assert!(
                ack.batch_updates() <= max_batch,
                "{schedule:?}: batch limit"
            );
        }
        let calls = self.backend.calls.load(Ordering::SeqCst);
        for (i, error) in &self.submit_errors {
            let shut =
                matches!(error, BatcherError::Closed(c) if c.reason() == CloseReason::ShutDown);
            let failed = refuse_first && matches!(error, BatcherError::Failed(_));
            assert!(
                shut || failed,
                "{schedule:?}: submit {i} refused with {error}"
            );
            if !refuse_first {
                assert!(
                    !self.submit_began_before_shutdown[i],
                    "{schedule:?}: submit {i} began before the shutdown, yet was refused"
                );
            }
        }
        let (flushed, flush_before_shutdown) = self.flushed.take().expect("flush answered");
        let report = self.report.take().expect("shutdown answered");
        if refuse_first {
            assert!(
                calls <= 1,
                "{schedule:?}: nothing is sent after the failure"
            );
            for (i, answer) in &self.answers {
                assert!(
                    matches!(answer, Ok(_) | Err(BatcherError::Failed(_))),
                    "{schedule:?}: update {i}: {answer:?}"
                );
            }
            assert_eq!(
                report.is_err(),
                calls == 1,
                "{schedule:?}: shutdown reports the failure exactly when a call failed: {report:?}"
            );
        } else {
            assert!(
                self.answers.values().all(Result::is_ok),
                "{schedule:?}: every accepted update is acknowledged"
            );
            match &flushed {
                Ok(()) => {}
                Err(BatcherError::Closed(c)) if c.reason() == CloseReason::ShutDown => {
                    assert!(
                        !flush_before_shutdown,
                        "{schedule:?}: flush refused before the shutdown"
                    );
                }
                Err(other) => panic!("{schedule:?}: flush: {other}"),
            }
            let report = report.unwrap_or_else(|e| panic!("{schedule:?}: shutdown: {e}"));
            assert_eq!(
                report.stats.updates,
                applied.len() as u64,
                "{schedule:?}: the report counts every update"
            );
            assert_eq!(
                report.checkpoint_token,
                self.backend.inner.current_token(),
                "{schedule:?}: the report's token is the backend's"
            );
        }
    }
}

/// Every word with the four client operations in `order` and exactly `progress` progress
/// symbols, each run to completion by `run`.
fn words(
    order: &[Symbol],
    progress: usize,
    prefix: &mut Vec<Symbol>,
    run: &mut dyn FnMut(&[Symbol]),
) {
    if order.is_empty() && progress == 0 {
        run(prefix);
        return;
    }
    if let Some((first, rest)) = order.split_first() {
        prefix.push(*first);
        words(rest, progress, prefix, run);
        let _ = prefix.pop();
    }
    if progress > 0 {
        for symbol in [Symbol::Work, Symbol::Permit] {
            prefix.push(symbol);
            words(order, progress - 1, prefix, run);
            let _ = prefix.pop();
        }
    }
}

fn permutations(items: &[Symbol]) -> Vec<Vec<Symbol>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        let _ = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, *item);
            out.push(tail);
        }
    }
    out
}

#[test]
fn every_interleaving_of_submit_flush_and_shutdown_answers_everyone_and_loses_nothing() {
    // Keeps both cores busy: not alongside the scenarios that measure real time.
    let _serial = crate::support::SERIAL.blocking_lock();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let shapes = [(1, 1), (250, 1), (250, 4)];
    let operations = [
        Symbol::Submit(0),
        Symbol::Submit(1),
        Symbol::Flush,
        Symbol::Shutdown,
    ];
    let orders = permutations(&operations);
    let waker = futures::task::noop_waker();
    let mut total = 0usize;
    rt.block_on(tokio::task::unconstrained(async {
        let mut cx = Context::from_waker(&waker);
        for (max_batch_updates, queue_capacity) in shapes {
            let config = BatcherConfig {
                max_batch_updates,
                queue_capacity,
                ..BatcherConfig::default()
            };
            for refuse_first in [false, true] {
                let mut runs = 0usize;
                for order in &orders {
                    for progress in 0..=MAX_PROGRESS {
                        words(order, progress, &mut Vec::new(), &mut |schedule| {
                            let mut run = Run::new(&config, refuse_first);
                            for symbol in schedule {
                                run.step(*symbol, &mut cx);
                            }
                            run.finish(&mut cx, schedule, refuse_first, max_batch_updates);
                            runs += 1;
                        });
                    }
                }
                assert_eq!(runs, 24 * (1 + 10 + 60 + 280 + 1120), "every schedule ran");
                total += runs;
            }
        }
    }));
    println!("interleavings: {total} schedules, every property held");
}
