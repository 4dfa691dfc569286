//! The checkpoint API emulator over real HTTP on loopback: raw HTTP/1.1 requests for exact
//! status codes, headers and bodies, the real `aws-sdk-lambda` client against it, how
//! `RealBackend` classifies what comes back, and handlers written with AWS's official durable
//! execution SDKs for Python, TypeScript and Rust run against it.
#![cfg(feature = "emulator")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

#[path = "../support/mod.rs"]
mod support;

mod classification;
mod idempotency;
mod injected_faults;
mod official_sdk;
mod paging;
mod python_sdk;
mod robustness;
mod rules;
mod rust_sdk;
mod sdk;
mod tokens;
mod typescript_sdk;
