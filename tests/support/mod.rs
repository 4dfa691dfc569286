//! Helpers shared by every test binary: updates, a batcher over a faulty in-memory backend,
//! bounded waits, log capture, and (with the emulator) the emulator on loopback, the batcher
//! through `RealBackend` against it and a raw HTTP/1.1 client.
//!
//! Each binary includes this module with `#[path = "../support/mod.rs"] mod support;` and its
//! modules `use crate::support::*`.
#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part of the helpers"
)]

pub mod capture;
#[cfg(feature = "emulator")]
pub mod emulator;
#[cfg(feature = "emulator")]
pub mod http;
pub mod rig;
pub mod updates;
pub mod wait;

pub use capture::*;
#[cfg(feature = "emulator")]
pub use emulator::*;
#[cfg(feature = "emulator")]
pub use http::*;
pub use rig::*;
pub use updates::*;
pub use wait::*;
