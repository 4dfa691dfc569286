//! Error classification and the backoff schedule.
//!
//! Classification decides everything about a failure: whether it is retried and which side
//! gives up when it persists (SERVICE.md, "Errors and what they mean"). Backends classify typed
//! errors themselves; what they cannot type (an emulator's error without an `X-Amzn-ErrorType`
//! header, an unknown code) falls back to [`kind_for_status`] here, which reads the HTTP status
//! and, for one documented message only, its text.
//!
//! Pure functions: no I/O, no tokio. The caller supplies the randomness.

use std::time::Duration;

use crate::config::RetryPolicy;
use crate::error::ErrorKind;

/// The documented prefix of the message that marks a stale or unknown checkpoint token.
const INVALID_TOKEN_PREFIX: &str = "invalid checkpoint token";

/// Whether an `InvalidParameterValueException` message reports a stale or unknown checkpoint
/// token. Compared case-insensitively: several official SDKs matched `Invalid Checkpoint Token`
/// case-sensitively, missed the service's wording, and failed whole executions instead of one
/// invocation.
#[must_use]
pub fn is_invalid_checkpoint_token_message(message: &str) -> bool {
    message
        .trim_start()
        .get(..INVALID_TOKEN_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(INVALID_TOKEN_PREFIX))
}

/// Classifies a failed response that carried no typed error, from its status, its error code
/// (when one was sent) and its message.
///
/// - 429: throttled.
/// - an error code starting with `KMS`, or a 502 with no code: KMS (the API sends its KMS
///   errors, and only those, as 502).
/// - other 4xx: an invalid checkpoint token when the message says so, otherwise rejected. A
///   payload-too-large 413 is rejected too: retrying it cannot help (one official SDK retried
///   it and re-invoked forever).
/// - 5xx and anything else unexpected: transient.
#[must_use]
pub fn kind_for_status(status: u16, code: Option<&str>, message: &str) -> ErrorKind {
    if status == 429 {
        return ErrorKind::Throttled;
    }
    if code.is_some_and(|c| c.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("kms"))) {
        return ErrorKind::Kms;
    }
    // The API answers its four KMS errors, and nothing else, with 502 (SERVICE.md). Without an
    // error code (an emulator that leaves out `X-Amzn-ErrorType`), the status is all there is,
    // and a KMS failure must fail the execution, not be retried into endless re-invocations.
    if status == 502 && code.is_none() {
        return ErrorKind::Kms;
    }
    match status {
        400..=499 if is_invalid_checkpoint_token_message(message) => {
            ErrorKind::InvalidCheckpointToken
        }
        400..=499 => ErrorKind::Rejected,
        _ => ErrorKind::Transient,
    }
}

/// Parses a `Retry-After` value given in seconds (`"2"`, `"0.5"`). The HTTP-date form is not
/// used by the service and gives `None`, as does anything negative or unreadable.
#[must_use]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(seconds.min(3600.0)).ok()
}

/// The ceiling of the backoff before retry number `retry` (1 for the first retry):
/// `min(max_backoff, initial_backoff × 2^(retry-1))`.
#[must_use]
pub fn backoff_ceiling(policy: &RetryPolicy, retry: u32) -> Duration {
    let doublings = retry.saturating_sub(1).min(31);
    policy
        .initial_backoff
        .checked_mul(1u32 << doublings)
        .unwrap_or(policy.max_backoff)
        .min(policy.max_backoff)
}

/// The delay before retry number `retry`: full jitter, `unit × ceiling` with `unit` drawn
/// uniformly from `[0, 1)`, but never shorter than the `Retry-After` the service asked for.
#[must_use]
pub fn backoff_delay(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    let jittered = backoff_ceiling(policy, retry).mul_f64(unit.clamp(0.0, 1.0));
    retry_after.map_or(jittered, |floor| jittered.max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stale_token_message_is_matched_whatever_its_case() {
        for message in [
            "Invalid checkpoint token",
            "Invalid Checkpoint Token: expired",
            "INVALID CHECKPOINT TOKEN",
            "  invalid checkpoint token for execution",
        ] {
            assert!(
                is_invalid_checkpoint_token_message(message),
                "{message:?} is a stale token"
            );
        }
        for message in [
            "Invalid checkpoint",
            "token invalid",
            "Invalid parameter: Id",
            "",
        ] {
            assert!(
                !is_invalid_checkpoint_token_message(message),
                "{message:?} is not"
            );
        }
    }

    #[test]
    fn statuses_classify_as_the_service_documents() {
        assert_eq!(kind_for_status(429, None, ""), ErrorKind::Throttled);
        assert_eq!(kind_for_status(500, None, ""), ErrorKind::Transient);
        assert_eq!(kind_for_status(503, None, ""), ErrorKind::Transient);
        assert_eq!(
            kind_for_status(502, Some("KMSDisabledException"), ""),
            ErrorKind::Kms
        );
        assert_eq!(
            kind_for_status(400, None, "Invalid Checkpoint Token"),
            ErrorKind::InvalidCheckpointToken
        );
        assert_eq!(
            kind_for_status(400, None, "Id too long"),
            ErrorKind::Rejected
        );
        assert_eq!(
            kind_for_status(413, None, "payload too large"),
            ErrorKind::Rejected
        );
        assert_eq!(
            kind_for_status(404, None, "no such execution"),
            ErrorKind::Rejected
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_refuses_the_rest() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("NaN"), None);
    }

    #[test]
    fn the_backoff_ceiling_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(300),
            ..RetryPolicy::default()
        };
        let ceilings: Vec<u128> = (1..=6)
            .map(|r| backoff_ceiling(&policy, r).as_millis())
            .collect();
        assert_eq!(ceilings, [50, 100, 200, 300, 300, 300]);
        assert_eq!(
            backoff_ceiling(&policy, 1000),
            Duration::from_millis(300),
            "no overflow"
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling_and_honours_retry_after() {
        let policy = RetryPolicy::default();
        assert_eq!(backoff_delay(&policy, 1, None, 0.0), Duration::ZERO);
        assert_eq!(
            backoff_delay(&policy, 1, None, 0.5),
            policy.initial_backoff / 2
        );
        let floor = Duration::from_secs(1);
        assert_eq!(
            backoff_delay(&policy, 1, Some(floor), 0.9),
            floor,
            "retry-after is a floor"
        );
    }
}
