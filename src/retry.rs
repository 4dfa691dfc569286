//! Error classification and the backoff schedule.
//!
//! Classification decides everything about a failure: whether it is retried and which side
//! gives up when it persists (docs/PROTOCOL.md, "Error classification"). Backends classify typed
//! errors themselves; what they cannot type (an emulator's error without an `X-Amzn-ErrorType`
//! header, an unknown code) falls back to [`kind_for_status`] here, which reads the HTTP status
//! and, for one documented message only, its text.
//!
//! Pure functions: no I/O, no tokio. The caller supplies the randomness.

use std::time::Duration;

use crate::config::RetryPolicy;
use crate::error::ErrorKind;

/// The documented prefix of the message that marks a stale or unknown checkpoint token
/// (docs/PROTOCOL.md, "Error classification").
const INVALID_TOKEN_PREFIX: &str = "invalid checkpoint token";

/// Whether an `InvalidParameterValueException` message reports a stale or unknown checkpoint
/// token. Compared case-insensitively: several official SDKs matched `Invalid Checkpoint Token`
/// case-sensitively, missed the service's wording, and failed whole executions instead of one
/// invocation (docs/PROTOCOL.md, "Error classification").
#[must_use]
pub(crate) fn is_invalid_checkpoint_token_message(message: &str) -> bool {
    message
        .trim_start()
        .get(..INVALID_TOKEN_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(INVALID_TOKEN_PREFIX))
}

/// Error codes that mean throttling, whatever status they come with (docs/PROTOCOL.md, "Error
/// classification").
const THROTTLING_CODES: [&str; 4] = [
    "TooManyRequestsException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
];

/// Error codes that refuse the caller's credentials or permissions: the request is fine, the
/// caller is not (an expired session, a wrong clock, a missing permission). The invocation
/// fails, not the execution (docs/PROTOCOL.md, "Error classification").
const CREDENTIALS_CODES: [&str; 11] = [
    "ExpiredTokenException",
    "ExpiredToken",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "RequestExpired",
    "AccessDeniedException",
    "NotAuthorized",
];

/// Classifies a failed response that carried no typed error, from its status, its error code
/// (when one was sent) and its message, per the table of docs/PROTOCOL.md, "Error
/// classification":
///
/// - a throttling code (`TooManyRequestsException`, `ThrottlingException`, `Throttling`,
///   `RequestLimitExceeded`) with any status, or a 429: throttled.
/// - a code refusing the caller's credentials or permissions (`ExpiredTokenException`,
///   `UnrecognizedClientException`, `InvalidClientTokenId`, `InvalidSignatureException`,
///   `SignatureDoesNotMatch`, `IncompleteSignature`, `MissingAuthenticationToken`,
///   `RequestExpired`, `AccessDeniedException`, `NotAuthorized`, ...):
///   [`ErrorKind::Credentials`], which fails the invocation, not the execution.
/// - a 408 (a request timeout from something in between): transient.
/// - a 401 or 403 without a code: [`ErrorKind::Credentials`], as a refused credential is.
/// - an error code starting with `KMS`: KMS. The service always sends its KMS errors with their
///   code; a 502 or 503 without one comes from a proxy or gateway in between, and is transient.
/// - other 4xx: an invalid checkpoint token when the message says so, otherwise rejected. A
///   payload-too-large 413 is rejected too: retrying it cannot help (one official SDK retried
///   it and re-invoked forever).
/// - 5xx and anything else unexpected: transient.
///
/// Codes are compared without a namespace (`aws.protocols#ThrottlingException`) or a trailing
/// `:`-suffix, as some protocols send them.
#[must_use]
pub(crate) fn kind_for_status(status: u16, code: Option<&str>, message: &str) -> ErrorKind {
    let code = code.map(bare_code);
    if status == 429 || code.is_some_and(|c| THROTTLING_CODES.contains(&c)) {
        return ErrorKind::Throttled;
    }
    if code.is_some_and(|c| CREDENTIALS_CODES.contains(&c)) {
        return ErrorKind::Credentials;
    }
    if code.is_some_and(|c| c.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("kms"))) {
        return ErrorKind::Kms;
    }
    match status {
        400..=499 if is_invalid_checkpoint_token_message(message) => {
            ErrorKind::InvalidCheckpointToken
        }
        // A request timeout from something in between: the request itself was not judged.
        408 => ErrorKind::Transient,
        // Unauthenticated or forbidden without a code: the caller's credentials or permissions
        // (or a proxy's), not the request; the execution must not be failed for them.
        401 | 403 if code.is_none() => ErrorKind::Credentials,
        400..=499 => ErrorKind::Rejected,
        _ => ErrorKind::Transient,
    }
}

/// `ns#Name:detail` → `Name`.
fn bare_code(code: &str) -> &str {
    let code = code.rsplit('#').next().unwrap_or(code);
    code.split(':').next().unwrap_or(code).trim()
}

/// Parses a `Retry-After` value given in seconds (`"2"`, `"0.5"`). The HTTP-date form is not
/// used by the service (docs/PROTOCOL.md, "Error classification") and gives `None`, as does
/// anything negative or unreadable.
#[must_use]
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(seconds.min(3600.0)).ok()
}

/// The ceiling of the backoff before retry number `retry` (1 for the first retry):
/// `min(max_backoff, initial_backoff × 2^(retry-1))`.
#[must_use]
pub(crate) fn backoff_ceiling(policy: &RetryPolicy, retry: u32) -> Duration {
    let doublings = retry.saturating_sub(1).min(31);
    policy
        .initial_backoff
        .checked_mul(1u32 << doublings)
        .unwrap_or(policy.max_backoff)
        .min(policy.max_backoff)
}

/// The delay before retry number `retry`: full jitter, `unit × ceiling` with `unit` drawn
/// uniformly from `[0, 1)`, but never shorter than the `Retry-After` the service asked for, as
/// far as the policy's `max_backoff` allows. `Retry-After` is a hint (docs/PROTOCOL.md, "Error
/// classification"): one that asked for an hour would otherwise hold the invocation until
/// Lambda ends it.
#[must_use]
pub(crate) fn backoff_delay(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    let jittered = backoff_ceiling(policy, retry).mul_f64(unit.clamp(0.0, 1.0));
    retry_after.map_or(jittered, |hint| jittered.max(hint.min(policy.max_backoff)))
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
    fn unauthenticated_or_forbidden_without_a_code_is_the_invocations_credentials() {
        for status in [401, 403] {
            let kind = kind_for_status(status, None, "Forbidden");
            assert_eq!(kind, ErrorKind::Credentials, "{status}");
            assert_eq!(kind.scope(), crate::FailureScope::Invocation);
        }
        assert_eq!(
            kind_for_status(403, Some("SomeOtherException"), "no"),
            ErrorKind::Rejected,
            "a named 403 the service documents elsewhere keeps its reading"
        );
    }

    #[test]
    fn a_gateway_error_without_a_code_is_transient_and_kms_needs_its_code() {
        assert_eq!(
            kind_for_status(502, None, "Bad Gateway"),
            ErrorKind::Transient,
            "the service always names its KMS errors; a bare 502 is a proxy"
        );
        assert_eq!(kind_for_status(503, None, ""), ErrorKind::Transient);
        assert_eq!(
            kind_for_status(408, None, "Request Timeout"),
            ErrorKind::Transient,
            "a proxy's request timeout did not judge the request"
        );
        for code in [
            "KMSAccessDeniedException",
            "KMSDisabledException",
            "KMSInvalidStateException",
            "KMSNotFoundException",
        ] {
            assert_eq!(
                kind_for_status(502, Some(code), ""),
                ErrorKind::Kms,
                "{code}"
            );
        }
    }

    #[test]
    fn throttling_codes_are_throttled_whatever_their_status() {
        for code in THROTTLING_CODES {
            for status in [400, 429, 503] {
                assert_eq!(
                    kind_for_status(status, Some(code), "slow down"),
                    ErrorKind::Throttled,
                    "{code} with {status} is throttling"
                );
            }
        }
        assert_eq!(
            kind_for_status(400, Some("aws.protocols#ThrottlingException:extra"), ""),
            ErrorKind::Throttled,
            "a namespaced code is still throttling"
        );
    }

    #[test]
    fn credential_codes_fail_the_invocation_not_the_execution() {
        for code in CREDENTIALS_CODES {
            for status in [400, 403] {
                let kind = kind_for_status(status, Some(code), "denied");
                assert_eq!(kind, ErrorKind::Credentials, "{code} with {status}");
                assert_eq!(kind.scope(), crate::FailureScope::Invocation);
                assert!(
                    !kind.is_retryable(),
                    "{code} is not retried in the invocation"
                );
            }
        }
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
        assert_eq!(
            backoff_delay(&policy, 1, Some(Duration::from_secs(3600)), 0.9),
            policy.max_backoff,
            "retry-after is honoured only up to max_backoff"
        );
    }
}
