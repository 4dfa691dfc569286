//! [`CheckpointBatcher::for_invocation`]: the one call that starts a handler's batcher.

use std::sync::Arc;

use super::error::InvocationError;
use super::event::InvocationEvent;
use super::history::History;
use crate::backend::DurableBackend;
use crate::batcher::{BatcherHandle, CheckpointBatcher};
use crate::config::BatcherConfig;

impl CheckpointBatcher {
    /// Starts the batcher of one invocation: checks `config`, loads the complete [`History`]
    /// (every page after the event's, read with `config.retry`), then spawns the batcher on the
    /// event's ARN and checkpoint token. Returns the handle and the history the handler replays
    /// from.
    ///
    /// The history is loaded before the batcher starts because both use the event's token: the
    /// state pages are read with it, and the batcher's first checkpoint consumes it.
    ///
    /// # Errors
    ///
    /// - [`InvocationError::Config`] naming the field of `config` out of range, or the event's
    ///   token when it is longer than the service allows; nothing was called.
    /// - The errors of [`History::load`] when a state page cannot be read.
    ///
    /// [`InvocationError::scope`] says which side should give up: the invocation (return an
    /// error to Lambda, which invokes the function again) or the execution (return `FAILED`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes abandons the history load, and no
    /// batcher is started.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
    /// use checkpoint_batcher::invocation::{InvocationEvent, InvocationOutput};
    /// use checkpoint_batcher::{BatcherConfig, CheckpointBatcher, InMemoryBackend};
    ///
    /// # let backend = Arc::new(InMemoryBackend::new());
    /// # let token = backend.current_token().expect("a fresh backend has a token");
    /// # let payload = serde_json::json!({
    /// #     "DurableExecutionArn": "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/x/1",
    /// #     "CheckpointToken": token,
    /// #     "InitialExecutionState": {"Operations": [{"Id": "exec", "Type": "EXECUTION",
    /// #         "Status": "STARTED", "StartTimestamp": 1700000000000u64,
    /// #         "ExecutionDetails": {"InputPayload": "{\"name\":\"ada\"}"}}]}});
    /// // In a handler, `payload` is the `serde_json::Value` of `LambdaEvent<serde_json::Value>`.
    /// let event = InvocationEvent::from_value(payload)?;
    /// let (batcher, history) =
    ///     CheckpointBatcher::for_invocation(backend.clone(), &event, BatcherConfig::default()).await?;
    /// assert_eq!(history.input(), Some(r#"{"name":"ada"}"#));
    ///
    /// // A step the history does not show as SUCCEEDED runs, and its result is checkpointed.
    /// if history.get("greet").is_none() {
    ///     let step = |action| OperationUpdate::builder()
    ///         .id("greet").r#type(OperationType::Step).action(action);
    ///     drop(batcher.submit(step(OperationAction::Start).build()?).await?);
    ///     batcher.checkpoint(step(OperationAction::Succeed).payload("\"hi ada\"").build()?).await?;
    /// }
    /// batcher.shutdown().await?;
    /// assert_eq!(InvocationOutput::succeeded("\"hi ada\"").status(), "SUCCEEDED");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "lambda")))]
    pub async fn for_invocation(
        backend: Arc<dyn DurableBackend>,
        event: &InvocationEvent,
        config: BatcherConfig,
    ) -> Result<(BatcherHandle, History), InvocationError> {
        // Refused before the history is read with the same token: nothing is called.
        Self::check_start(event.arn(), event.checkpoint_token(), &config)?;
        let history = History::load(backend.as_ref(), event, &config.retry).await?;
        let batcher = Self::spawn(backend, event.arn(), event.checkpoint_token(), config)?;
        Ok((batcher, history))
    }
}
