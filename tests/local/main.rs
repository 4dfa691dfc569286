//! Local runs: the service's side of a durable execution played against the emulator until
//! the execution ends. `driver` holds the library's `LocalRun` to handler functions (a wait and
//! a callback, a crash after N updates, a FAILED answer); `command` runs the two example
//! binaries under `checkpoint-batcher local`, through the Lambda Runtime API, killed halfway
//! and throttled.
#![cfg(all(feature = "cli", feature = "durable-lambda"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

#[path = "../support/mod.rs"]
mod support;

mod command;
mod driver;
