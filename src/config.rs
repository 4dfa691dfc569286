//! Configuration: plain data with documented defaults, checked once by
//! [`BatcherConfig::validate`] when a batcher starts.
//!
//! The knobs follow the split that Kafka producers made familiar. Per-request limits shape one
//! checkpoint call ([`max_batch_updates`](BatcherConfig::max_batch_updates),
//! [`max_batch_bytes`](BatcherConfig::max_batch_bytes),
//! [`flush_interval`](BatcherConfig::flush_interval)); the admission limit bounds what may wait
//! in memory ([`queue_capacity`](BatcherConfig::queue_capacity)); the [`RetryPolicy`] bounds how
//! long one batch may keep trying.

use std::time::Duration;

use crate::error::ConfigError;
use crate::limits::{SERVICE_MAX_BATCH_BYTES, SERVICE_MAX_BATCH_UPDATES};

/// The configuration of a [`CheckpointBatcher`](crate::CheckpointBatcher).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use checkpoint_batcher::BatcherConfig;
///
/// let config = BatcherConfig {
///     flush_interval: Duration::from_millis(5),
///     ..BatcherConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct BatcherConfig {
    /// The most updates one checkpoint call carries (1 to 250).
    ///
    /// Default: 250, the service's limit. Smaller batches only add calls. A group
    /// ([`checkpoint_all`](crate::BatcherHandle::checkpoint_all)) larger than this still goes
    /// whole, alone in its request: this shapes batching, not atomicity (the crate README's
    /// "Groups" guarantee).
    pub max_batch_updates: usize,
    /// The most bytes one checkpoint request body may hold, counted exactly as the JSON the AWS
    /// SDK sends (envelope included). An update that alone exceeds it is sent alone and the
    /// service decides; a group that exceeds it goes whole, alone in its request, up to the
    /// service's limit (the crate README's "Groups" guarantee).
    ///
    /// Default: 750 KiB, the service's limit
    /// ([`SERVICE_MAX_BATCH_BYTES`](crate::SERVICE_MAX_BATCH_BYTES)), which is also the most it
    /// may be. Must be at least 1 KiB.
    pub max_batch_bytes: usize,
    /// How long an update may wait for company before its batch goes (what Kafka calls
    /// `linger.ms`). Larger values make larger batches at the cost of that much added latency to
    /// a lone caller.
    ///
    /// Each update's deadline is counted from its own submission, and a batch goes when the
    /// earliest deadline among its updates passes, or earlier when it is full, when a rule of
    /// the service closes it, or when a [`flush`](crate::BatcherHandle::flush),
    /// [`refresh`](crate::BatcherHandle::refresh) or [`shutdown`](crate::BatcherHandle::shutdown)
    /// asks for it. Updates that queue while a call is in flight therefore wait for their own
    /// deadlines when the call returns; only with a zero interval do they go at once.
    ///
    /// Default: zero. The token chain already batches: everything queued while one call is in
    /// flight goes in the next, so a wait only helps a handler whose steps arrive in bursts
    /// smaller than the round trip. (Python's 1 s window added about 100 ms to every sequential
    /// step.)
    pub flush_interval: Duration,
    /// How many submitted updates and commands may wait in the queue before
    /// [`submit`](crate::BatcherHandle::submit) waits and
    /// [`try_submit`](crate::BatcherHandle::try_submit) answers
    /// [`QueueFull`](crate::BatcherError::QueueFull). Beyond it the batcher holds at most one
    /// batch in flight and one being assembled, so memory stays bounded.
    ///
    /// Default: 4096, enough for hundreds of branches to submit at once without waiting.
    pub queue_capacity: usize,
    /// How failed calls are retried.
    ///
    /// Default: [`RetryPolicy::default`].
    pub retry: RetryPolicy,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            max_batch_updates: SERVICE_MAX_BATCH_UPDATES,
            max_batch_bytes: SERVICE_MAX_BATCH_BYTES,
            flush_interval: Duration::ZERO,
            queue_capacity: 4096,
            retry: RetryPolicy::default(),
        }
    }
}

impl BatcherConfig {
    /// Checks every field, naming the first one out of range.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=SERVICE_MAX_BATCH_UPDATES).contains(&self.max_batch_updates) {
            return Err(ConfigError::new(
                "max_batch_updates",
                format!(
                    "must be between 1 and {SERVICE_MAX_BATCH_UPDATES} (the service's limit), got {}",
                    self.max_batch_updates
                ),
            ));
        }
        if !(MIN_BATCH_BYTES..=SERVICE_MAX_BATCH_BYTES).contains(&self.max_batch_bytes) {
            return Err(ConfigError::new(
                "max_batch_bytes",
                format!(
                    "must be between {MIN_BATCH_BYTES} and {SERVICE_MAX_BATCH_BYTES} (the service's limit), got {}",
                    self.max_batch_bytes
                ),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::new(
                "queue_capacity",
                "must be at least 1, got 0",
            ));
        }
        // tokio's bounded channel refuses larger capacities.
        if self.queue_capacity > usize::MAX >> 3 {
            return Err(ConfigError::new(
                "queue_capacity",
                format!(
                    "must be at most {}, got {}",
                    usize::MAX >> 3,
                    self.queue_capacity
                ),
            ));
        }
        if self.flush_interval > MAX_DURATION {
            return Err(ConfigError::new(
                "flush_interval",
                format!("must be at most one hour, got {:?}", self.flush_interval),
            ));
        }
        self.retry.validate()
    }
}

/// The smallest `max_batch_bytes`: room for the request's envelope and a small update.
const MIN_BATCH_BYTES: usize = 1024;

/// Durations beyond this are refused: they would only ever be typing mistakes, and far-future
/// deadlines overflow `Instant` arithmetic on some platforms.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(3600);

/// How a batch whose call failed with a throttling or transient error is retried.
///
/// Every retry sends the same token, the same updates and the same client token, so a request
/// the service applied but whose answer was lost is not applied twice. The delay before retry
/// `n` (counting from 1) is drawn uniformly from zero to `min(max_backoff, initial_backoff ×
/// 2^(n-1))` ("full jitter"), and is never shorter than the `Retry-After` the service sent, as
/// far as `max_backoff` allows: a `Retry-After` is a hint, and one of an hour would hold the
/// invocation until Lambda ends it.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included; 1 disables retries.
    ///
    /// Default: 6: five retries whose backoff ceilings (50, 100, 200, 400, 800 ms) add up to
    /// 1.55 s, about 0.8 s on average with full jitter, plus any `Retry-After` the service asks
    /// for, before the invocation fails and the service re-invokes it.
    pub max_attempts: u32,
    /// The ceiling of the first backoff.
    ///
    /// Default: 50 ms, about one checkpoint round trip.
    pub initial_backoff: Duration,
    /// The largest ceiling a backoff may reach, and the longest `Retry-After` honoured.
    ///
    /// Default: 2 s. A Lambda invocation's time is bounded; waiting longer mostly burns it.
    pub max_backoff: Duration,
    /// How long one attempt may take before it is abandoned and counted as a transient failure.
    /// Because the retry carries the same client token, an attempt abandoned after the service
    /// applied it is not applied twice.
    ///
    /// Default: 10 s, far above the service's usual latency even for a 750 KiB request.
    ///
    /// [`RealBackend`](crate::RealBackend) also sets an attempt timeout on its SDK client
    /// ([`RealBackend::with_attempt_timeout`](crate::RealBackend::with_attempt_timeout), default
    /// 10 s); the shorter of the two applies.
    pub attempt_timeout: Duration,
    /// A seed for the jitter, for reproducible runs; `None` seeds from the operating system.
    /// It affects only the delays: client tokens are always drawn from the operating system,
    /// so that two batchers never share one.
    ///
    /// Default: `None`.
    pub jitter_seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(10),
            jitter_seed: None,
        }
    }
}

impl RetryPolicy {
    /// A policy that makes one attempt and never retries.
    #[must_use]
    pub fn no_retries() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Checks every field, naming the first one out of range.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field (`retry.max_attempts`, ...) and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.max_attempts) {
            return Err(ConfigError::new(
                "retry.max_attempts",
                format!("must be between 1 and 100, got {}", self.max_attempts),
            ));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(ConfigError::new(
                "retry.initial_backoff",
                format!(
                    "must not exceed retry.max_backoff ({:?}), got {:?}",
                    self.max_backoff, self.initial_backoff
                ),
            ));
        }
        if self.max_backoff > MAX_DURATION {
            return Err(ConfigError::new(
                "retry.max_backoff",
                format!("must be at most one hour, got {:?}", self.max_backoff),
            ));
        }
        if self.attempt_timeout.is_zero() || self.attempt_timeout > MAX_DURATION {
            return Err(ConfigError::new(
                "retry.attempt_timeout",
                format!(
                    "must be more than zero and at most one hour, got {:?}",
                    self.attempt_timeout
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_is_valid() {
        assert_eq!(BatcherConfig::default().validate(), Ok(()));
    }

    #[test]
    fn each_out_of_range_field_is_named_in_the_error() {
        let cases: Vec<(&str, BatcherConfig)> = vec![
            (
                "max_batch_updates",
                BatcherConfig {
                    max_batch_updates: 0,
                    ..Default::default()
                },
            ),
            (
                "max_batch_updates",
                BatcherConfig {
                    max_batch_updates: 251,
                    ..Default::default()
                },
            ),
            (
                "max_batch_bytes",
                BatcherConfig {
                    max_batch_bytes: 10,
                    ..Default::default()
                },
            ),
            (
                "max_batch_bytes",
                BatcherConfig {
                    max_batch_bytes: SERVICE_MAX_BATCH_BYTES + 1,
                    ..Default::default()
                },
            ),
            (
                "queue_capacity",
                BatcherConfig {
                    queue_capacity: 0,
                    ..Default::default()
                },
            ),
            (
                "flush_interval",
                BatcherConfig {
                    flush_interval: Duration::from_secs(7200),
                    ..Default::default()
                },
            ),
            (
                "retry.max_attempts",
                BatcherConfig {
                    retry: RetryPolicy {
                        max_attempts: 0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "retry.initial_backoff",
                BatcherConfig {
                    retry: RetryPolicy {
                        initial_backoff: Duration::from_secs(3),
                        max_backoff: Duration::from_secs(1),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "retry.attempt_timeout",
                BatcherConfig {
                    retry: RetryPolicy {
                        attempt_timeout: Duration::ZERO,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
        ];
        for (field, config) in cases {
            let err = config
                .validate()
                .expect_err("an out-of-range field must be refused");
            assert_eq!(err.field(), field, "the error must name the field at fault");
            assert!(
                err.to_string().contains(field),
                "the message must name the field: {err}"
            );
        }
    }
}
