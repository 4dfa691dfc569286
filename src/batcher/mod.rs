//! The batcher: one actor task per durable execution that owns the checkpoint token, and the
//! handles that feed it.
//!
//! Every checkpoint call consumes the token and returns the next, so one call can usefully be in
//! flight at a time. Many tasks submit updates through cloned [`BatcherHandle`]s; the actor
//! gathers whatever queued while the previous call was in flight into the next call, as large as
//! the service allows, and answers each caller once its own update is durable.
//!
//! # Invariants
//!
//! - **Single writer.** Only the actor calls the backend, and it awaits each call (retries and
//!   state pages included) before starting the next: one call in flight, carrying the token the
//!   previous call returned. The token changes only when a call succeeds (`actor::finish_batch`).
//! - **Order.** Updates go out in the order the actor received them, across batch splits:
//!   assembly only ever closes a batch, never reorders (`assemble::Assembler`).
//! - **Batch membership.** A batch obeys every rule of one request: the count and byte limits,
//!   one update per Id except START + one more for a STEP or CONTEXT, an EXECUTION update last
//!   (`assemble::Assembler::try_add`). An update bigger than the byte limit goes alone.
//! - **Idempotent retries.** Each batch gets a fresh client token, reused unchanged on every
//!   retry of that batch with the same checkpoint token and the same updates, so a request the
//!   service applied but whose answer was lost is not applied twice.
//! - **Sticky failure latch.** The first batch that fails for good stores its error where every
//!   handle reads it, closes the channel, then answers its callers, everything queued, and every
//!   later call with the same error. It is never cleared.
//! - **Every caller answered.** Each accepted update is written and its caller answered with
//!   the acknowledgement or an error, whether or not the caller still listens. An update is
//!   never skipped because its caller went away.
//!
//! What callers can rely on (ordering, backpressure, failure, shutdown) is documented on
//! [`CheckpointBatcher`], which users see.

mod ack;
mod actor;
pub(crate) mod assemble;
mod batching_backend;
mod client_tokens;
mod handle;
mod message;
pub(crate) mod queue;
mod send;
mod shared;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, watch};

pub use ack::{AckFuture, CheckpointAck};
pub use batching_backend::BatchingBackend;
pub use handle::BatcherHandle;
#[cfg(feature = "lambda")]
pub(crate) use send::with_retries;
pub use shared::{BatcherReport, BatcherStats};

use crate::backend::DurableBackend;
use crate::config::BatcherConfig;
use crate::error::ConfigError;
use crate::limits::SERVICE_MAX_TOKEN_CHARS;
use crate::size::escaped_len;
use actor::Actor;
use shared::Shared;

/// Refreshes that may wait in their own lane, beside the queue (see `BatcherHandle::refresh`).
/// The actor empties the lane whenever it runs, whatever the queue holds, so a refresh rarely
/// waits for room here.
const REFRESH_LANE: usize = 64;

/// Starts batchers: one actor task per durable execution that owns its checkpoint token, fed by
/// cloned [`BatcherHandle`]s. Every checkpoint call consumes the token and returns the next, so
/// one call can usefully be in flight at a time; the actor gathers whatever queued while the
/// previous call was in flight into the next call, as large as the service allows, and answers
/// each caller once its own update is durable. The crate documentation's "Guarantees" lists
/// what holds; the sections below say how it behaves.
///
/// # Ordering
///
/// Acknowledgements arrive in batch order. Within one handle, an update submitted after another
/// is never written before it. Across handles, the order is the order in which the queue
/// accepted the updates.
///
/// # Backpressure
///
/// The queue holds [`queue_capacity`](crate::BatcherConfig::queue_capacity) commands. Beyond
/// the batch in flight and the one being assembled, the actor takes nothing from it, so a full
/// queue makes [`BatcherHandle::submit`] wait and [`BatcherHandle::try_submit`] fail with
/// [`BatcherError::QueueFull`](crate::BatcherError::QueueFull). A group
/// ([`BatcherHandle::submit_all`]) is one command whatever its size, so the bound in updates
/// is `queue_capacity` plus the groups' sizes beyond one.
///
/// A [`refresh`](BatcherHandle::refresh) carries no update and does not wait in the queue: it
/// has a lane of its own, which the actor reads whatever the queue holds, so it goes with the
/// call after the one in flight.
///
/// # Failure
///
/// Throttling and transient failures are retried per [`RetryPolicy`](crate::RetryPolicy). A
/// failure that persists, or any other failure, latches: see
/// [`BatcherError::Failed`](crate::BatcherError::Failed) and its
/// [`scope`](crate::BatcherError::scope), which says whether the invocation or the execution
/// should fail. A response without a token closes the batcher with
/// [`CloseReason::ExecutionCompleted`](crate::CloseReason::ExecutionCompleted) or
/// [`CloseReason::TokenRevoked`](crate::CloseReason::TokenRevoked).
///
/// # Shutdown
///
/// [`BatcherHandle::shutdown`] stops taking updates, writes everything already accepted, and
/// reports the last token. It answers `Ok` only when every accepted update was acknowledged;
/// when the chain ends or fails during the drain it returns the error that refused the rest,
/// and [`BatcherHandle::stats`] still counts what was applied. Dropping every handle drains the
/// same way without the report.
///
/// If the worker task itself ends abnormally (aborted, panicked, its runtime shut down), every
/// caller waiting on it and every later one gets
/// [`CloseReason::WorkerGone`](crate::CloseReason::WorkerGone).
#[derive(Debug)]
pub struct CheckpointBatcher {
    _private: (),
}

impl CheckpointBatcher {
    /// Spawns the actor for one durable execution on the current Tokio runtime and returns a
    /// handle to it.
    ///
    /// `initial_token` is the `CheckpointToken` the invocation received.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field out of range (see [`BatcherConfig::validate`]), or
    /// `arn` / `initial_token` when empty or too long.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
    /// use checkpoint_batcher::{BatcherConfig, CheckpointBatcher, InMemoryBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = Arc::new(InMemoryBackend::new());
    /// let token = backend.current_token().unwrap_or_default();
    /// let batcher = CheckpointBatcher::spawn(backend.clone(), "arn", token, BatcherConfig::default())?;
    ///
    /// // A hundred branches checkpoint at once; the token chain serializes them into few calls.
    /// let mut branches = Vec::new();
    /// for i in 0..100 {
    ///     let batcher = batcher.clone();
    ///     branches.push(tokio::spawn(async move {
    ///         let update = OperationUpdate::builder()
    ///             .id(format!("branch-{i}"))
    ///             .r#type(OperationType::Step)
    ///             .action(OperationAction::Succeed)
    ///             .build()?;
    ///         batcher.checkpoint(update).await?;
    ///         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    ///     }));
    /// }
    /// for branch in branches {
    ///     branch.await?.map_err(|e| e.to_string())?;
    /// }
    /// let report = batcher.shutdown().await?;
    /// assert_eq!(report.stats.updates, 100);
    /// assert!(report.stats.batches < 100);
    /// # Ok(())
    /// # }
    /// ```
    pub fn spawn(
        backend: Arc<dyn DurableBackend>,
        arn: impl Into<String>,
        initial_token: impl Into<String>,
        config: BatcherConfig,
    ) -> Result<BatcherHandle, ConfigError> {
        let (handle, actor) = Self::build(backend, arn.into(), initial_token.into(), &config)?;
        actor.spawn();
        Ok(handle)
    }

    /// As [`spawn`](Self::spawn), but returns the actor unspawned as a [`BatcherWorker`] future,
    /// so tests can choose where it runs or drop it to simulate a crash.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    pub fn pair(
        backend: Arc<dyn DurableBackend>,
        arn: impl Into<String>,
        initial_token: impl Into<String>,
        config: BatcherConfig,
    ) -> Result<(BatcherHandle, BatcherWorker), ConfigError> {
        let (handle, actor) = Self::build(backend, arn.into(), initial_token.into(), &config)?;
        Ok((
            handle,
            BatcherWorker {
                inner: Box::pin(actor.run()),
            },
        ))
    }

    /// What [`spawn`](Self::spawn) refuses before it starts anything: a configuration out of
    /// range, an empty ARN, a token the service would not take.
    pub(crate) fn check_start(
        arn: &str,
        token: &str,
        config: &BatcherConfig,
    ) -> Result<(), ConfigError> {
        config.validate()?;
        if arn.is_empty() {
            return Err(ConfigError::new("arn", "must not be empty"));
        }
        // Counted as the bytes it takes in a request body: a group is held to the service's
        // request size beside a token of at most this many (`size::max_envelope_bytes`). The
        // service's tokens are base64, one byte a character.
        let bytes = escaped_len(token);
        if token.is_empty() || bytes > SERVICE_MAX_TOKEN_CHARS {
            return Err(ConfigError::new(
                "initial_token",
                format!(
                    "must be 1 to {SERVICE_MAX_TOKEN_CHARS} characters of the base64 alphabet, \
                     got {} characters taking {bytes} bytes in JSON",
                    token.chars().count()
                ),
            ));
        }
        Ok(())
    }

    fn build(
        backend: Arc<dyn DurableBackend>,
        arn: String,
        token: String,
        config: &BatcherConfig,
    ) -> Result<(BatcherHandle, Actor), ConfigError> {
        Self::check_start(&arn, &token, config)?;
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (refresh_tx, refresh_rx) = mpsc::channel(REFRESH_LANE);
        let (report_tx, report_rx) = watch::channel(None);
        let shared = Arc::new(Shared::new(report_rx));
        let handle = BatcherHandle::new(tx, refresh_tx, Arc::clone(&shared), config.flush_interval);
        let channels = actor::Channels {
            commands: rx,
            refreshes: refresh_rx,
        };
        let actor = Actor::new(backend, arn, token, config, channels, shared, report_tx);
        Ok((handle, actor))
    }
}

/// The actor of a batcher made by [`CheckpointBatcher::pair`], as a future to run.
///
/// It completes once the batcher stopped and everything accepted was answered. Dropping it
/// before then stops the batcher: callers get
/// [`CloseReason::WorkerGone`](crate::CloseReason::WorkerGone).
#[must_use = "the batcher does nothing unless its worker runs"]
pub struct BatcherWorker {
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for BatcherWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatcherWorker").finish_non_exhaustive()
    }
}

impl Future for BatcherWorker {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.as_mut().poll(cx)
    }
}
