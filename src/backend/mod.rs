//! The boundary between the batcher and the checkpoint API.
//!
//! [`DurableBackend`] is the one thing the batcher calls. [`RealBackend`] implements it on
//! `aws-sdk-lambda`; [`InMemoryBackend`] is an in-process double for examples, tests and
//! benchmarks. With the `test-util` feature, [`FaultyBackend`] wraps any backend and injects
//! faults: scripted errors, random throttling, answers lost after the request was applied,
//! latency, and calls held open.
//!
//! A backend makes **one attempt** per call and classifies its failure into a
//! [`BackendError`]; retries are the batcher's. A backend that retried on its own would multiply
//! the batcher's attempts and hide throttling from its backoff.

mod aws;
#[cfg(feature = "test-util")]
mod faulty;
mod memory;

use std::fmt;

use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::OperationUpdate;

use crate::error::BackendError;

pub use aws::{DEFAULT_ATTEMPT_TIMEOUT, RealBackend};
#[cfg(feature = "test-util")]
pub use faulty::{CallRecord, Fault, FaultyBackend, RandomFaults};
pub use memory::InMemoryBackend;

/// The two calls of the checkpoint API, one attempt each.
///
/// Object-safe: the batcher holds an `Arc<dyn DurableBackend>`.
///
/// # Examples
///
/// A backend that delegates to another and counts calls:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use async_trait::async_trait;
/// use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
/// use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
/// use aws_sdk_lambda::types::OperationUpdate;
/// use checkpoint_batcher::{BackendError, DurableBackend, InMemoryBackend};
///
/// #[derive(Debug)]
/// struct Counting { inner: InMemoryBackend, calls: AtomicU64 }
///
/// #[async_trait]
/// impl DurableBackend for Counting {
///     async fn checkpoint(
///         &self,
///         arn: &str,
///         checkpoint_token: &str,
///         updates: Vec<OperationUpdate>,
///         client_token: Option<&str>,
///     ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
///         self.calls.fetch_add(1, Ordering::Relaxed);
///         self.inner.checkpoint(arn, checkpoint_token, updates, client_token).await
///     }
///
///     async fn get_execution_state(
///         &self,
///         arn: &str,
///         checkpoint_token: &str,
///         marker: Option<&str>,
///         max_items: Option<i32>,
///     ) -> Result<GetDurableExecutionStateOutput, BackendError> {
///         self.inner.get_execution_state(arn, checkpoint_token, marker, max_items).await
///     }
/// }
/// ```
#[async_trait]
pub trait DurableBackend: Send + Sync + fmt::Debug {
    /// `CheckpointDurableExecution`: applies `updates` atomically and returns the next token.
    ///
    /// `client_token` makes the call idempotent: the service treats a repeated client token as
    /// the same request for 15 minutes.
    ///
    /// # Errors
    ///
    /// A classified [`BackendError`]; the batcher retries throttled and transient ones.
    async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError>;

    /// `GetDurableExecutionState`: one page of the execution's operations, starting at `marker`.
    /// `max_items` is 1 to 1000 (`None`: the service's default of 100).
    ///
    /// # Errors
    ///
    /// A classified [`BackendError`].
    async fn get_execution_state(
        &self,
        arn: &str,
        checkpoint_token: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError>;

    /// The call the batcher makes for each attempt of a batch. The updates are borrowed because
    /// the batcher keeps them for a retry; the default copies them into
    /// [`checkpoint`](DurableBackend::checkpoint). A backend that can send from a borrow (an
    /// in-process double, a custom transport) overrides it to avoid the copy.
    ///
    /// # Errors
    ///
    /// As [`checkpoint`](DurableBackend::checkpoint).
    async fn batch_checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: &[OperationUpdate],
        client_token: &str,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        self.checkpoint(arn, checkpoint_token, updates.to_vec(), Some(client_token))
            .await
    }
}
