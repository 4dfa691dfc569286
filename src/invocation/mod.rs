//! The invocation of a durable function, typed (feature `lambda`): the event it receives, the
//! complete history it replays from, and the output it returns.
//!
//! A durable function is invoked with an event naming its execution, the checkpoint token to
//! start from and the first page of the execution's operations. The batcher needs the ARN and
//! the token; the handler needs the history, to skip the steps that already ran and to read the
//! user's input; and the service needs the output in its own format. This module gives the three
//! in the crate's terms: operations are [`aws_sdk_lambda::types::Operation`] values, pages are
//! read through a [`DurableBackend`](crate::DurableBackend), and retries follow the batcher's
//! [`RetryPolicy`](crate::RetryPolicy).
//!
//! - [`InvocationEvent`] parses the event (`DurableExecutionArn`, `CheckpointToken`,
//!   `InitialExecutionState`).
//! - [`History`] is every operation: the event's page, then every `GetDurableExecutionState`
//!   page after it. The user's input is [`History::input`].
//! - [`CheckpointBatcher::for_invocation`](crate::CheckpointBatcher::for_invocation) does both
//!   at once: loads the history and starts the batcher on the event's ARN and token.
//! - [`InvocationOutput`] is the answer: `SUCCEEDED` with a result, `FAILED` with an error, or
//!   `PENDING`; at most [`MAX_RESPONSE_BYTES`].
//!
//! The JSON shapes of operations are the crate's one description of them, shared with the
//! emulator, which builds the same events for tests
//! (`Emulator::invocation_event`, feature `emulator`).
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use checkpoint_batcher::invocation::{History, InvocationEvent, InvocationOutput};
//! use checkpoint_batcher::{BatcherConfig, CheckpointBatcher, InMemoryBackend, RetryPolicy};
//!
//! # let backend = Arc::new(InMemoryBackend::new());
//! # let token = backend.current_token().expect("a fresh backend has a token");
//! # let payload = serde_json::json!({
//! #     "DurableExecutionArn": "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/x/1",
//! #     "CheckpointToken": token,
//! #     "InitialExecutionState": {"Operations": [{"Id": "exec", "Type": "EXECUTION",
//! #         "Status": "STARTED", "StartTimestamp": 1700000000000u64,
//! #         "ExecutionDetails": {"InputPayload": "{\"items\":3}"}}]}});
//! // In a handler, `payload` is the `serde_json::Value` of `LambdaEvent<serde_json::Value>`.
//! let event = InvocationEvent::from_value(payload)?;
//! let history = History::load(backend.as_ref(), &event, &RetryPolicy::default()).await?;
//! let batcher = CheckpointBatcher::spawn(
//!     backend.clone(),
//!     event.arn().to_owned(),
//!     event.checkpoint_token().to_owned(),
//!     BatcherConfig::default(),
//! )?;
//! assert_eq!(history.input(), Some(r#"{"items":3}"#));
//! // ... run the steps the history does not show as SUCCEEDED, checkpointing through `batcher`.
//! batcher.shutdown().await?;
//! let output = InvocationOutput::succeeded("14");
//! assert_eq!(output.to_value()["Status"], "SUCCEEDED");
//! # Ok(())
//! # }
//! ```

mod error;
mod event;
mod history;
mod output;
mod start;

pub use error::InvocationError;
pub use event::InvocationEvent;
pub use history::History;
pub use output::{InvocationOutput, MAX_RESPONSE_BYTES};
