//! Handlers written with the community durable-lambda SDK, as its documentation writes them,
//! run on the batcher (`checkpoint_batcher::durable_lambda`) through the real `aws-sdk-lambda`
//! client against the emulator on loopback: sequential steps, `parallel`, `map`, nested child
//! contexts, a wait and a callback, a crash and a re-invocation, throttling; each SUCCEEDED
//! with every operation applied exactly once, in a bounded number of requests. One test runs
//! the same `parallel` handler on durable-lambda's own `RealBackend` and shows why this exists.
//! Also the `durable_lambda_map` example.
#![cfg(all(feature = "durable-lambda", feature = "emulator"))]

#[path = "../support/mod.rs"]
mod support;

mod answers;
mod example;
mod handlers;
mod local_runner;
mod recovery;
mod rig;
mod suspensions;
mod upstream;
mod workflows;
