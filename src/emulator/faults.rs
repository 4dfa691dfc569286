//! Seeded fault injection: latency, throttling, server errors and lost answers.
//!
//! Every request routed to one of the two endpoints draws its fate from one
//! [`fastrand::Rng`] seeded by [`super::EmulatorBuilder::seed`]. Each request makes
//! the same four draws in the same order (jitter, throttle, server error, lost
//! answer) whatever the outcome, so a client that sends the same requests in the same
//! order sees the same faults on every run. Concurrent clients interleave their draws
//! in arrival order, which is only as reproducible as that order.

use std::time::Duration;

use super::error::ApiError;

/// Faults the emulator injects; change them at run time with
/// [`super::Emulator::set_faults`].
///
/// Rates are probabilities per request in `0.0..=1.0` (values outside are clamped,
/// NaN counts as 0). Plain data; [`Default`] injects nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Fixed delay before each request is handled. Default: zero.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `0..=jitter`, added to `latency`. Default: zero.
    pub jitter: Duration,
    /// Share of requests answered 429 `TooManyRequestsException` (with `Retry-After`)
    /// without being processed. Default: 0.
    pub throttle_rate: f64,
    /// Share of requests answered 500 `ServiceException` without being processed.
    /// Default: 0.
    pub server_error_rate: f64,
    /// Share of successful checkpoints that are committed and then answered 500, as if
    /// the answer was lost on the way back; a retry with the same `ClientToken` and
    /// token gets the stored answer. Default: 0.
    pub lost_answer_rate: f64,
    /// Whether a lost answer closes the connection without a complete response instead
    /// of answering 500. Default: false.
    pub drop_connection_on_lost_answer: bool,
    /// Value of the `Retry-After` header on a 429, rounded up to whole seconds.
    /// Default: zero (header `0`).
    pub retry_after: Duration,
}

impl Faults {
    /// No faults at all; the same as [`Faults::default`].
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }
}

/// What the fault injector decided for one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Roll {
    pub(crate) delay: Duration,
    pub(crate) throttle: bool,
    pub(crate) server_error: bool,
    pub(crate) lose_answer: bool,
    pub(crate) drop_connection: bool,
    pub(crate) retry_after_secs: u64,
}

impl Roll {
    /// The error this roll injects instead of processing the request, if any:
    /// throttling wins over a server error.
    pub(crate) fn injected_error(&self) -> Option<ApiError> {
        if self.throttle {
            Some(ApiError::TooManyRequests {
                retry_after_secs: self.retry_after_secs,
            })
        } else if self.server_error {
            Some(ApiError::Service("internal failure (injected)"))
        } else {
            None
        }
    }
}

/// The dice of the fault injector: the current faults plus the seeded generator they
/// are drawn with; kept behind one lock so draws are serialized.
#[derive(Debug)]
pub(crate) struct FaultDice {
    faults: Faults,
    rng: fastrand::Rng,
}

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

impl FaultDice {
    pub(crate) fn new(faults: Faults, seed: u64) -> Self {
        Self {
            faults,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Replaces the faults; the generator keeps its position.
    pub(crate) fn set(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Restarts the generator from `seed`.
    pub(crate) fn reseed(&mut self, seed: u64) {
        self.rng = fastrand::Rng::with_seed(seed);
    }

    /// Draws the fate of one request. Always four draws, see the module doc.
    pub(crate) fn roll(&mut self) -> Roll {
        let f = &self.faults;
        let jitter_nanos = u64::try_from(f.jitter.as_nanos()).unwrap_or(u64::MAX);
        let jitter = self.rng.u64(0..=jitter_nanos);
        let throttle = self.rng.f64() < clamp_rate(f.throttle_rate);
        let server_error = self.rng.f64() < clamp_rate(f.server_error_rate);
        let lose_answer = self.rng.f64() < clamp_rate(f.lost_answer_rate);
        let retry_after_secs = f
            .retry_after
            .as_secs()
            .saturating_add(u64::from(f.retry_after.subsec_nanos() > 0));
        Roll {
            delay: f.latency.saturating_add(Duration::from_nanos(jitter)),
            throttle,
            server_error,
            lose_answer,
            drop_connection: f.drop_connection_on_lost_answer,
            retry_after_secs,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn sequence(seed: u64) -> Vec<Roll> {
        let faults = Faults {
            jitter: Duration::from_millis(5),
            throttle_rate: 0.3,
            server_error_rate: 0.2,
            lost_answer_rate: 0.1,
            ..Faults::default()
        };
        let mut dice = FaultDice::new(faults, seed);
        (0..200).map(|_| dice.roll()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        assert_eq!(sequence(7), sequence(7), "rolls are a function of the seed");
        assert_ne!(sequence(7), sequence(8), "another seed, other rolls");
    }

    #[test]
    fn rates_outside_the_unit_interval_are_clamped() {
        let faults = Faults {
            throttle_rate: 5.0,
            server_error_rate: f64::NAN,
            lost_answer_rate: -1.0,
            ..Faults::default()
        };
        let mut dice = FaultDice::new(faults, 1);
        let roll = dice.roll();
        assert!(roll.throttle && !roll.server_error && !roll.lose_answer);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let faults = Faults {
            retry_after: Duration::from_millis(1500),
            ..Faults::default()
        };
        assert_eq!(FaultDice::new(faults, 0).roll().retry_after_secs, 2);
    }
}
