//! The batcher against in-process backends: how updates are batched and timed, retried,
//! latched on failure and ended, how pages and groups are handled, validation, the lifecycle
//! and its drains, tracing, and what is kept out of logs.

#[path = "../support/mod.rs"]
mod support;

mod batching;
mod drains;
mod groups;
mod idempotency;
mod latch;
mod lifecycle;
#[cfg(feature = "metrics")]
mod metrics;
mod pagination;
#[cfg(feature = "emulator")]
mod redaction;
mod refresh;
mod retries;
mod terminal;
mod timing;
mod tracing;
mod validation;
