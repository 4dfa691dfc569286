//! Bounded waits: a hang fails the test instead of blocking CI.

use std::future::Future;
use std::time::Duration;

/// Tests that measure real time, or that keep both cores busy, run one at a time: each
/// measures on a machine with two cores, and a soak alone keeps both busy. (A tokio mutex: it
/// does not poison when a test fails, so one failure does not fail the others.)
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The longest any single wait over real HTTP may take before the test fails as a hang.
pub const HANG: Duration = Duration::from_secs(60);

/// Fails the test instead of hanging when `future` does not complete within `limit` (of the
/// paused clock, where the test pauses it).
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .expect("the future must complete: nothing may hang")
}

/// As [`within`], naming what did not complete.
pub async fn within_named<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not complete within {limit:?}: nothing may hang"),
    }
}
