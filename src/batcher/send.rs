//! One batch's send job: the checkpoint call with its retries, then the state pages its answer
//! announces. Besides the actor, the only place that sleeps (between retries).
//!
//! The actor starts a [`SendJob`] per batch and polls its future beside the command channel, so
//! updates keep arriving while the call runs.
//!
//! # Invariants
//!
//! - **Idempotent retries.** Every attempt of a batch carries the same checkpoint token, the
//!   same updates and the same client token (docs/PROTOCOL.md, "Idempotency").
//! - **Complete state.** A `NextMarker` is followed with the new token before the batch counts
//!   as sent; from there on the checkpoint is applied, so any failure is the invocation's
//!   ([`FailedCall::StatePage`]), never the execution's (docs/PROTOCOL.md, "State paging" and
//!   "Error classification").
//! - **Bounded.** Pages stop at an empty or repeated marker, [`MAX_STATE_PAGES`] pages or
//!   [`MAX_STATE_OPERATIONS`] operations.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_sdk_lambda::types::{Operation, OperationAction, OperationType, OperationUpdate};
use tokio::time::Instant;
use tracing::{Instrument, Span, field};

use super::message::AckSender;
use super::shared::Shared;
use crate::backend::DurableBackend;
use crate::config::RetryPolicy;
use crate::error::{BackendError, BatchFailure, ErrorKind, FailedCall};
use crate::metrics::Stamp;
use crate::retry::backoff_delay;

/// The most state pages fetched after one checkpoint; a service that kept answering with new
/// markers beyond this would otherwise hold the batch forever.
const MAX_STATE_PAGES: u32 = 10_000;
/// The most operations held from one checkpoint's state pages: the memory bound, whatever the
/// pages' sizes. Far above what one batch of 250 updates changes.
const MAX_STATE_OPERATIONS: usize = 100_000;
/// Page size asked for when following a `NextMarker`: the API's maximum, for fewest calls
/// (docs/PROTOCOL.md, "State paging").
const STATE_PAGE_ITEMS: i32 = 1000;

/// A checkpoint that succeeded, pages included.
pub(crate) struct Sent {
    pub(crate) token: Option<String>,
    pub(crate) operations: Vec<Operation>,
    /// The marker of pages the response announced that could not be read (no token).
    pub(crate) unread_marker: Option<String>,
}

/// A batch's call, retries and pages included.
type SendFuture = Pin<Box<dyn Future<Output = Result<Sent, BatchFailure>> + Send>>;

/// The batch whose call is in flight, and who waits for it.
pub(crate) struct InFlight {
    pub(crate) call: SendFuture,
    /// One per update, in batch order; `None` where a group's later update answers for it.
    pub(crate) replies: Vec<Option<AckSender>>,
    pub(crate) refreshes: Vec<AckSender>,
    /// The sequence number of its last update (updates are numbered from 1 as received).
    pub(crate) last_update: u64,
    pub(crate) sequence: u64,
    pub(crate) bytes: usize,
    /// Whether it carries the EXECUTION's completion: an answer without a token then means
    /// the execution completed, not that the token was revoked.
    pub(crate) ends_execution: bool,
    pub(crate) span: Span,
    pub(crate) started: Instant,
}

/// The span of one batch, with the figures it records as it goes.
pub(crate) fn batch_span(sequence: u64, updates: usize, bytes: usize, refreshes: usize) -> Span {
    tracing::info_span!(
        "checkpoint_batch",
        sequence,
        updates,
        bytes,
        refreshes,
        attempts = field::Empty,
        page_attempts = field::Empty,
        outcome = field::Empty,
        latency_ms = field::Empty,
    )
}

/// Everything one batch needs to be sent, retried and paged, owned so that the call can run
/// while the actor keeps taking updates.
pub(crate) struct SendJob {
    pub(crate) backend: Arc<dyn DurableBackend>,
    pub(crate) arn: Arc<str>,
    pub(crate) token: Arc<str>,
    pub(crate) updates: Vec<OperationUpdate>,
    pub(crate) client_token: String,
    pub(crate) policy: Arc<RetryPolicy>,
    pub(crate) rng: fastrand::Rng,
    pub(crate) shared: Arc<Shared>,
    pub(crate) sequence: u64,
    pub(crate) span: Span,
}

impl SendJob {
    /// Starts the call; `replies` and `refreshes` wait for it.
    pub(crate) fn start(
        self,
        replies: Vec<Option<AckSender>>,
        refreshes: Vec<AckSender>,
        last_update: u64,
        bytes: usize,
    ) -> InFlight {
        let ends_execution = self.updates.last().is_some_and(|u| {
            u.r#type == OperationType::Execution
                && matches!(u.action, OperationAction::Succeed | OperationAction::Fail)
        });
        let (sequence, span) = (self.sequence, self.span.clone());
        InFlight {
            call: Box::pin(self.run().instrument(span.clone())),
            replies,
            refreshes,
            last_update,
            sequence,
            bytes,
            ends_execution,
            span,
            started: Instant::now(),
        }
    }

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
        // An empty token cannot carry a next call: it ends the chain as a missing one does
        // (docs/PROTOCOL.md, "The token chain").
        let token = output.checkpoint_token.filter(|token| !token.is_empty());
        let (mut operations, mut marker) = output
            .new_execution_state
            .map(|state| (state.operations.unwrap_or_default(), state.next_marker))
            // An empty marker is the last page's, as a missing one is (docs/PROTOCOL.md, "State
            // paging"): sent back, it would restart the listing.
            .map(|(operations, marker)| (operations, marker.filter(|m| !m.is_empty())))
            .unwrap_or_default();
        // More operations are waiting: fetch them with the new token before acknowledging, so
        // callers never act on half of the state (the TypeScript SDK ignored NextMarker). From
        // here on the checkpoint is applied: any failure is the invocation's (`FailedCall`;
        // docs/PROTOCOL.md, "State paging").
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
            marker = page.next_marker.filter(|m| !m.is_empty());
        }
        Ok(Sent {
            token,
            operations,
            unread_marker: marker,
        })
    }
}

/// Why the state pages of an applied checkpoint cannot be followed to `marker`, if they cannot:
/// a repeated marker (a service that would loop), or more pages or operations than
/// [`MAX_STATE_PAGES`] and [`MAX_STATE_OPERATIONS`] allow (memory). An empty marker never gets
/// here: it ends the pages, as no marker does.
fn page_problem(
    marker: &str,
    seen: &HashSet<String>,
    pages: u32,
    operations: usize,
) -> Option<String> {
    if seen.contains(marker) {
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

/// Makes one call with retries ([`with_retries`]), counting retries in the statistics, every
/// attempt in the metrics, and every attempt in `attempts` (the pages of one batch share one
/// count).
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
        FailedCall::StatePage | FailedCall::AfterStatePage => "state page call",
    };
    let on_attempt =
        |started, error, retried| shared.record_attempt(during, started, error, retried);
    let (result, made) = with_retries(policy, rng, what, on_attempt, call).await;
    *attempts += made;
    result.map_err(|error| BatchFailure::new(error, sequence, made, during))
}

/// Makes `call` until it succeeds or fails for good: throttled and transient failures
/// (timeouts included) are retried after a full-jitter backoff that honours `Retry-After` up to
/// the policy's `max_backoff` (docs/PROTOCOL.md, "Error classification"); anything else, or
/// the last attempt's failure, is final.
/// `on_attempt` runs as each attempt ends, before a retry's wait: with when the attempt started
/// (a [`Stamp`], empty without the `metrics` feature), its error's kind if it failed, and
/// whether another attempt follows. Returns the outcome and the attempts made.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    rng: &mut fastrand::Rng,
    what: &str,
    mut on_attempt: impl FnMut(Stamp, Option<ErrorKind>, bool),
    mut call: F,
) -> (Result<T, BackendError>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        let started = Stamp::now();
        let error = match tokio::time::timeout(policy.attempt_timeout, call()).await {
            Ok(Ok(value)) => {
                on_attempt(started, None, false);
                return (Ok(value), attempt);
            }
            Ok(Err(error)) => error,
            Err(_) => BackendError::new(
                ErrorKind::Transient,
                format!("attempt timed out after {:?}", policy.attempt_timeout),
            ),
        };
        let retried = error.kind().is_retryable() && attempt < policy.max_attempts;
        on_attempt(started, Some(error.kind()), retried);
        if !retried {
            return (Err(error), attempt);
        }
        let delay = backoff_delay(policy, attempt, error.retry_after(), rng.f64());
        tracing::warn!(
            attempt,
            kind = %error.kind(),
            delay_ms = delay.as_secs_f64() * 1000.0,
            "{what} failed, retrying: {}",
            error.message()
        );
        tokio::time::sleep(delay).await;
    }
}
