#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod backend;
mod batcher;
mod config;
mod error;
mod limits;
mod redact;
mod retry;
mod size;
mod validate;
#[cfg(any(feature = "emulator", feature = "lambda"))]
mod wire;

#[cfg(feature = "emulator")]
#[cfg_attr(docsrs, doc(cfg(feature = "emulator")))]
pub mod emulator;

#[cfg(feature = "lambda")]
#[cfg_attr(docsrs, doc(cfg(feature = "lambda")))]
pub mod invocation;

#[cfg(feature = "durable-lambda")]
#[cfg_attr(docsrs, doc(cfg(feature = "durable-lambda")))]
pub mod durable_lambda;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use backend::{CallRecord, Fault, FaultyBackend, RandomFaults};
pub use backend::{DEFAULT_ATTEMPT_TIMEOUT, DurableBackend, InMemoryBackend, RealBackend};
pub use batcher::{
    AckFuture, BatcherHandle, BatcherReport, BatcherStats, BatcherWorker, BatchingBackend,
    CheckpointAck, CheckpointBatcher,
};
pub use config::{BatcherConfig, RetryPolicy};
pub use error::{
    BackendError, BatchFailure, BatcherError, CloseReason, Closed, ConfigError, ErrorKind,
    FailureScope, InvalidUpdate,
};
pub use limits::{
    SERVICE_MAX_BATCH_BYTES, SERVICE_MAX_BATCH_UPDATES, SERVICE_MAX_ERROR_BYTES,
    SERVICE_MAX_EXECUTION_PAYLOAD_BYTES, SERVICE_MAX_ID_CHARS, SERVICE_MAX_NAME_CHARS,
    SERVICE_MAX_PAYLOAD_BYTES, SERVICE_MAX_SUB_TYPE_CHARS, SERVICE_MAX_TOKEN_CHARS,
};
pub use size::update_bytes;
pub use validate::validate_update;

/// The crate's internals, for its own benchmarks and tests (batch assembly, request sizes).
/// Not part of the API: no semver promise, hidden from the documentation, and only with the
/// `test-util` feature.
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub mod internals {
    pub use crate::batcher::assemble::{Assembler, BatchLimits, Cut, split_batches};
    pub use crate::size::{envelope_bytes, request_bytes, update_bytes};
}
