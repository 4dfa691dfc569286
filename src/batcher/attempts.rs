//! One call made with retries: the schedule every call to the service follows, whether the
//! batcher's actor makes it or a handler loading its history.

use std::future::Future;

use crate::config::RetryPolicy;
use crate::error::{BackendError, ErrorKind};
use crate::retry::backoff_delay;

/// Makes `call` until it succeeds or fails for good: throttled and transient failures
/// (timeouts included) are retried after a full-jitter backoff that honours `Retry-After` up to
/// the policy's `max_backoff`; anything else, or the last attempt's failure, is final.
/// `on_retry` runs before each retry's wait. Returns the outcome and the attempts made.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    rng: &mut fastrand::Rng,
    what: &str,
    mut on_retry: impl FnMut(),
    mut call: F,
) -> (Result<T, BackendError>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        let error = match tokio::time::timeout(policy.attempt_timeout, call()).await {
            Ok(Ok(value)) => return (Ok(value), attempt),
            Ok(Err(error)) => error,
            Err(_) => BackendError::new(
                ErrorKind::Transient,
                format!("attempt timed out after {:?}", policy.attempt_timeout),
            ),
        };
        if !error.kind().is_retryable() || attempt >= policy.max_attempts {
            return (Err(error), attempt);
        }
        let delay = backoff_delay(policy, attempt, error.retry_after(), rng.f64());
        on_retry();
        tracing::warn!(
            attempt,
            kind = %error.kind(),
            delay_ms = delay.as_secs_f64() * 1000.0,
            "{what} failed, retrying: {}",
            error.message()
        );
        tokio::time::sleep(delay).await;
    }
}
