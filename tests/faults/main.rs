//! The fault campaign: what the batcher promises when the service throttles, fails, answers
//! late, loses answers or revokes the token, and when callers send nonsense or walk away.
//! Every scenario over HTTP runs the real `aws-sdk-lambda` client (`RealBackend`) against the
//! emulator over loopback, with seeded faults, and every wait is bounded so that a hang fails
//! the test instead of blocking CI.
//!
//! Where a scenario needs an exact interleaving ("queued while the call is in flight"), it
//! wraps `RealBackend` in `FaultyBackend` and holds the call at its start; the call itself
//! still goes over HTTP. The hand-off between the handle and the actor is also checked over
//! every interleaving of a bounded schedule.
//!
//! The scenarios run one at a time (`support::SERIAL`): each measures real time on two cores.
//! The README's "Guarantees" section lists the figure each one checks.

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "emulator")]
use std::time::Duration;

/// The round trip the scenarios that answer "within one round trip" run at: fixed, so that
/// means something.
#[cfg(feature = "emulator")]
const RTT: Duration = Duration::from_millis(100);

#[cfg(feature = "emulator")]
mod backpressure;
#[cfg(feature = "emulator")]
mod bad_input;
mod interleavings;
#[cfg(feature = "emulator")]
mod rejected;
#[cfg(feature = "emulator")]
mod robustness;
mod soak;
#[cfg(feature = "emulator")]
mod stale_token;
#[cfg(feature = "emulator")]
mod terminal;
#[cfg(feature = "emulator")]
mod walk_away;
