//! Embedding in a durable function: the invocation (the event, the complete history, the
//! output) and the `durable_map` example's handler against the emulator.
#![cfg(all(feature = "lambda", feature = "emulator"))]

#[path = "../support/mod.rs"]
mod support;

mod durable_map;
mod invocation;
mod redaction;
