//! An in-process backend that behaves like one execution of the service.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::{
    CheckpointUpdatedExecutionState, OperationAction, OperationType, OperationUpdate,
};

use super::DurableBackend;
use crate::error::{BackendError, ErrorKind};
use crate::redact::Redacted;
use crate::size;

/// An in-process stand-in for one durable execution: it checks and rotates the checkpoint
/// token, deduplicates retries by client token, ends the chain after an EXECUTION completion,
/// and records what it applied.
///
/// It answers at once. For latency and faults, wrap it in `FaultyBackend` (feature
/// `test-util`); for the real wire protocol, use the emulator (feature `emulator`).
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
/// let batcher = CheckpointBatcher::spawn(
///     backend.clone(),
///     "arn:aws:lambda:us-east-1:123456789012:function:f/durable-execution/e/1",
///     backend.current_token().unwrap_or_default(),
///     BatcherConfig::default(),
/// )?;
/// let update = OperationUpdate::builder()
///     .id("step-1")
///     .r#type(OperationType::Step)
///     .action(OperationAction::Start)
///     .build()?;
/// batcher.checkpoint(update).await?;
/// assert_eq!(backend.applied().len(), 1);
/// # Ok(())
/// # }
/// ```
pub struct InMemoryBackend {
    state: Mutex<State>,
    record: bool,
}

/// Counts only: the current token is shown redacted, the applied updates and stored answers
/// by their number, so that neither tokens nor payloads reach a log.
impl std::fmt::Debug for InMemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("InMemoryBackend")
            .field("token", &state.token.as_deref().map(Redacted))
            .field("calls", &state.calls)
            .field("applied_calls", &state.applied_calls)
            .field("updates", &state.updates)
            .field("bytes", &state.bytes)
            .field("recorded", &state.applied.len())
            .field("answers_kept", &state.answered.len())
            .finish()
    }
}

struct State {
    token: Option<String>,
    issued: u64,
    calls: u64,
    applied_calls: u64,
    updates: u64,
    bytes: u64,
    applied: Vec<OperationUpdate>,
    /// Client token → (inbound token, stored answer), for idempotent retries.
    answered: HashMap<String, (String, CheckpointDurableExecutionOutput)>,
}

impl Default for InMemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryBackend {
    /// A fresh execution that records every update it applies.
    #[must_use]
    pub fn new() -> Self {
        Self::with_recording(true)
    }

    /// A fresh execution that only counts updates, for benchmarks where keeping every update
    /// would measure the allocator.
    #[must_use]
    pub fn counting() -> Self {
        Self::with_recording(false)
    }

    fn with_recording(record: bool) -> Self {
        Self {
            state: Mutex::new(State {
                token: Some(token_for(0)),
                issued: 0,
                calls: 0,
                applied_calls: 0,
                updates: 0,
                bytes: 0,
                applied: Vec::new(),
                answered: HashMap::new(),
            }),
            record,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic in a caller's thread: every update to it is
        // a plain assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The token the next checkpoint must carry; `None` once the chain ended.
    #[must_use]
    pub fn current_token(&self) -> Option<String> {
        self.lock().token.clone()
    }

    /// Replaces the current token behind the client's back, as the service does when it
    /// revokes one. The client's next call fails with an invalid-token error.
    pub fn rotate_token(&self) -> Option<String> {
        let mut state = self.lock();
        state.token.as_ref()?;
        state.issued += 1;
        let token = token_for(state.issued);
        state.token = Some(token.clone());
        Some(token)
    }

    /// Every update applied, in order (empty for [`counting`](Self::counting)).
    #[must_use]
    pub fn applied(&self) -> Vec<OperationUpdate> {
        self.lock().applied.clone()
    }

    /// Checkpoint calls received, including repeats and refused ones.
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Checkpoint calls applied (a repeated client token is not applied again).
    #[must_use]
    pub fn applied_calls(&self) -> u64 {
        self.lock().applied_calls
    }

    /// Updates applied.
    #[must_use]
    pub fn updates(&self) -> u64 {
        self.lock().updates
    }

    /// Request body bytes of the applied calls, as the AWS SDK would send them.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

fn token_for(n: u64) -> String {
    format!("VE9LRU4{n:08}")
}

fn ends_execution(update: &OperationUpdate) -> bool {
    update.r#type == OperationType::Execution
        && matches!(
            update.action,
            OperationAction::Succeed | OperationAction::Fail
        )
}

#[async_trait]
impl DurableBackend for InMemoryBackend {
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
        _arn: &str,
        checkpoint_token: &str,
        updates: &[OperationUpdate],
        client_token: &str,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        let mut state = self.lock();
        state.calls += 1;
        if let Some((inbound, answer)) = state.answered.get(client_token)
            && inbound == checkpoint_token
        {
            return Ok(answer.clone());
        }
        if state.token.as_deref() != Some(checkpoint_token) {
            return Err(BackendError::new(
                ErrorKind::InvalidCheckpointToken,
                "Invalid checkpoint token",
            )
            .with_status(400));
        }
        state.applied_calls += 1;
        state.updates += updates.len() as u64;
        state.bytes += size::request_bytes(checkpoint_token, client_token, updates) as u64;
        if self.record {
            state.applied.extend_from_slice(updates);
        }
        let next = if updates.last().is_some_and(ends_execution) {
            None
        } else {
            state.issued += 1;
            Some(token_for(state.issued))
        };
        state.token.clone_from(&next);
        let answer = CheckpointDurableExecutionOutput::builder()
            .set_checkpoint_token(next)
            .new_execution_state(CheckpointUpdatedExecutionState::builder().build())
            .build();
        if !client_token.is_empty() {
            state.answered.insert(
                client_token.to_owned(),
                (checkpoint_token.to_owned(), answer.clone()),
            );
        }
        Ok(answer)
    }

    async fn get_execution_state(
        &self,
        _arn: &str,
        checkpoint_token: &str,
        _marker: Option<&str>,
        _max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        if self.lock().token.as_deref() != Some(checkpoint_token) {
            return Err(BackendError::new(
                ErrorKind::InvalidCheckpointToken,
                "Invalid checkpoint token",
            )
            .with_status(400));
        }
        GetDurableExecutionStateOutput::builder()
            .set_operations(Some(Vec::new()))
            .build()
            .map_err(|e| BackendError::new(ErrorKind::Rejected, e.to_string()).with_source(e))
    }
}
