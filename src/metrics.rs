//! The batcher's metrics, on the `metrics` facade (feature `metrics`; the README's "Metrics"
//! section lists them): what `stats()` counts, broken down by bounded labels, with the
//! distributions `stats()` cannot keep (batch sizes, round trips, acknowledgement latency) and
//! a gauge of the updates waiting to be sent.
//!
//! # Invariants
//!
//! - **Bound at spawn.** Every series is registered when a batcher is spawned, under the
//!   recorder current then (the global one, or a local one the spawning thread holds), and is
//!   recorded through the handles kept in [`Metrics`]: the actor, its send jobs and the callers'
//!   futures may run on any thread and still reach that recorder.
//! - **Bounded labels.** Labels take their values from fixed sets (an outcome, a call, an
//!   error kind, a scope); never an ARN, a token, an Id or a payload.
//! - **Zero cost without the feature.** Then [`Metrics`] and [`Stamp`] are empty, every method
//!   does nothing, no clock is read and the facade is not linked.

#[cfg(feature = "metrics")]
pub(crate) use enabled::{Metrics, Stamp};

#[cfg(not(feature = "metrics"))]
pub(crate) use disabled::{Metrics, Stamp};

#[cfg(feature = "metrics")]
mod enabled {
    use metrics::{Counter, Gauge, Histogram, Unit};
    use tokio::time::Instant;

    use crate::error::{ErrorKind, FailedCall, FailureScope};

    /// Counter of updates, by `outcome`: `acknowledged` (`stats().updates`) or `unacknowledged`
    /// (`stats().unacknowledged`).
    pub(super) const UPDATES: &str = "checkpoint_batcher_updates_total";
    /// Counter of checkpoint requests (one per batch, its retries not counted), by `outcome`: `ok`
    /// (`stats().batches`) or `failed` (`stats().failures`).
    pub(super) const REQUESTS: &str = "checkpoint_batcher_requests_total";
    /// Counter of retries, by `call` and `kind` (`stats().retries` in all).
    pub(super) const RETRIES: &str = "checkpoint_batcher_retries_total";
    /// Counter of batches that failed for good, by `scope` and `kind` (`stats().failures` in all).
    pub(super) const FAILURES: &str = "checkpoint_batcher_failures_total";
    /// Histogram of updates per acknowledged request.
    pub(super) const BATCH_UPDATES: &str = "checkpoint_batcher_batch_updates";
    /// Histogram of request body bytes per acknowledged request.
    pub(super) const BATCH_BYTES: &str = "checkpoint_batcher_batch_bytes";
    /// Histogram of one attempt's round trip, by `call` and `outcome`.
    pub(super) const REQUEST_DURATION: &str = "checkpoint_batcher_request_duration_seconds";
    /// Histogram of the time from an update's submission to its acknowledgement.
    pub(super) const ACK_LATENCY: &str = "checkpoint_batcher_ack_latency_seconds";
    /// Gauge of updates accepted and not yet sent (nor refused).
    pub(super) const QUEUED_UPDATES: &str = "checkpoint_batcher_queued_updates";

    /// Every error kind, for the failure series registered up front.
    const KINDS: [ErrorKind; 6] = [
        ErrorKind::Throttled,
        ErrorKind::Transient,
        ErrorKind::InvalidCheckpointToken,
        ErrorKind::Kms,
        ErrorKind::Rejected,
        ErrorKind::Credentials,
    ];

    /// When something started, kept only with the `metrics` feature.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Stamp(Option<Instant>);

    impl Stamp {
        /// Nothing to measure from (a refresh is not an update).
        pub(crate) const NONE: Self = Self(None);

        /// Now.
        pub(crate) fn now() -> Self {
            Self(Some(Instant::now()))
        }

        fn seconds(self) -> Option<f64> {
            self.0.map(|started| started.elapsed().as_secs_f64())
        }
    }

    /// A batcher's handles on the series it records (see the module's invariants).
    #[derive(Debug)]
    pub(crate) struct Metrics {
        acknowledged: Counter,
        unacknowledged: Counter,
        requests_ok: Counter,
        requests_failed: Counter,
        /// By call (checkpoint, state page) and retryable kind (throttled, transient).
        retries: [[Counter; 2]; 2],
        /// By scope and kind.
        failures: Vec<(FailureScope, ErrorKind, Counter)>,
        batch_updates: Histogram,
        batch_bytes: Histogram,
        /// By call (checkpoint, state page) and outcome (ok, error).
        request_duration: [[Histogram; 2]; 2],
        ack_latency: Histogram,
        queued: Gauge,
    }

    impl Metrics {
        /// Describes and registers every series under the current recorder.
        pub(crate) fn register() -> Self {
            describe();
            let calls = [
                call_label(FailedCall::Checkpoint),
                call_label(FailedCall::StatePage),
            ];
            let retries = calls.map(|call| {
                [ErrorKind::Throttled, ErrorKind::Transient].map(
                    |kind| metrics::counter!(RETRIES, "call" => call, "kind" => kind_label(kind)),
                )
            });
            let request_duration = calls.map(|call| {
                ["ok", "error"].map(|outcome| {
                    metrics::histogram!(REQUEST_DURATION, "call" => call, "outcome" => outcome)
                })
            });
            let mut failures = Vec::with_capacity(KINDS.len() + 2);
            for kind in KINDS {
                // A failure while reading state pages is the invocation's whatever its kind; a
                // failed checkpoint call has its kind's scope.
                let mut scopes = vec![FailureScope::Invocation];
                if kind.scope() == FailureScope::Execution {
                    scopes.push(FailureScope::Execution);
                }
                for scope in scopes {
                    let counter = metrics::counter!(
                        FAILURES,
                        "scope" => scope_label(scope),
                        "kind" => kind_label(kind)
                    );
                    failures.push((scope, kind, counter));
                }
            }
            Self {
                acknowledged: metrics::counter!(UPDATES, "outcome" => "acknowledged"),
                unacknowledged: metrics::counter!(UPDATES, "outcome" => "unacknowledged"),
                requests_ok: metrics::counter!(REQUESTS, "outcome" => "ok"),
                requests_failed: metrics::counter!(REQUESTS, "outcome" => "failed"),
                retries,
                failures,
                batch_updates: metrics::histogram!(BATCH_UPDATES),
                batch_bytes: metrics::histogram!(BATCH_BYTES),
                request_duration,
                ack_latency: metrics::histogram!(ACK_LATENCY),
                queued: metrics::gauge!(QUEUED_UPDATES),
            }
        }

        /// A request acknowledged, carrying `updates` updates in `bytes` bytes.
        pub(crate) fn acknowledged_batch(&self, updates: usize, bytes: usize) {
            self.acknowledged.increment(updates as u64);
            self.requests_ok.increment(1);
            self.batch_updates.record(updates as f64);
            self.batch_bytes.record(bytes as f64);
        }

        /// Updates answered with an error instead of an acknowledgement.
        pub(crate) fn unacknowledged(&self, updates: usize) {
            self.unacknowledged.increment(updates as u64);
        }

        /// A batch that failed for good.
        pub(crate) fn failed_batch(&self, scope: FailureScope, kind: ErrorKind) {
            self.requests_failed.increment(1);
            if let Some((_, _, counter)) = self
                .failures
                .iter()
                .find(|(s, k, _)| *s == scope && *k == kind)
            {
                counter.increment(1);
            }
        }

        /// One attempt of `call` that started at `started` ended, failing with `error` if it
        /// did; `retried` when another attempt follows.
        pub(crate) fn attempt(
            &self,
            call: FailedCall,
            started: Stamp,
            error: Option<ErrorKind>,
            retried: bool,
        ) {
            let by_call = usize::from(call != FailedCall::Checkpoint);
            if let Some(seconds) = started.seconds()
                && let Some(histogram) = self
                    .request_duration
                    .get(by_call)
                    .and_then(|h| h.get(usize::from(error.is_some())))
            {
                histogram.record(seconds);
            }
            let by_kind = match error {
                Some(ErrorKind::Throttled) => 0,
                Some(ErrorKind::Transient) => 1,
                _ => return,
            };
            if retried && let Some(counter) = self.retries.get(by_call).and_then(|r| r.get(by_kind))
            {
                counter.increment(1);
            }
        }

        /// An update (or a group) submitted at `submitted` was acknowledged to its caller.
        pub(crate) fn acknowledged_after(&self, submitted: Stamp) {
            if let Some(seconds) = submitted.seconds() {
                self.ack_latency.record(seconds);
            }
        }

        /// `updates` more updates wait to be sent.
        pub(crate) fn queued(&self, updates: usize) {
            self.queued.increment(updates as f64);
        }

        /// `updates` updates left the queue: into a request, or refused.
        pub(crate) fn dequeued(&self, updates: usize) {
            self.queued.decrement(updates as f64);
        }
    }

    fn describe() {
        metrics::describe_counter!(
            UPDATES,
            Unit::Count,
            "updates acknowledged, or answered with an error instead (outcome)"
        );
        metrics::describe_counter!(
            REQUESTS,
            Unit::Count,
            "checkpoint requests, one per batch whatever its retries, by outcome"
        );
        metrics::describe_counter!(
            RETRIES,
            Unit::Count,
            "attempts after the first, by call and error kind"
        );
        metrics::describe_counter!(
            FAILURES,
            Unit::Count,
            "batches that failed for good (the failure latches), by scope and error kind"
        );
        metrics::describe_histogram!(
            BATCH_UPDATES,
            Unit::Count,
            "updates per acknowledged request"
        );
        metrics::describe_histogram!(
            BATCH_BYTES,
            Unit::Bytes,
            "request body bytes per acknowledged request"
        );
        metrics::describe_histogram!(
            REQUEST_DURATION,
            Unit::Seconds,
            "round trip of one attempt, by call and outcome"
        );
        metrics::describe_histogram!(
            ACK_LATENCY,
            Unit::Seconds,
            "from an update's submission to its acknowledgement"
        );
        metrics::describe_gauge!(
            QUEUED_UPDATES,
            Unit::Count,
            "updates accepted and not yet sent nor refused"
        );
    }

    fn call_label(call: FailedCall) -> &'static str {
        match call {
            FailedCall::Checkpoint => "checkpoint",
            FailedCall::StatePage | FailedCall::AfterStatePage => "state_page",
        }
    }

    fn scope_label(scope: FailureScope) -> &'static str {
        match scope {
            FailureScope::Invocation => "invocation",
            FailureScope::Execution => "execution",
        }
    }

    fn kind_label(kind: ErrorKind) -> &'static str {
        match kind {
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transient",
            ErrorKind::InvalidCheckpointToken => "invalid_checkpoint_token",
            ErrorKind::Kms => "kms",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Credentials => "credentials",
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod disabled {
    use crate::error::{ErrorKind, FailedCall, FailureScope};

    /// Empty without the `metrics` feature: no clock is read.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Stamp;

    impl Stamp {
        pub(crate) const NONE: Self = Self;

        #[inline(always)]
        pub(crate) fn now() -> Self {
            Self
        }
    }

    /// Empty without the `metrics` feature: nothing is recorded.
    #[derive(Debug)]
    pub(crate) struct Metrics;

    #[allow(
        clippy::unused_self,
        reason = "the same calls as with the feature, where they record"
    )]
    impl Metrics {
        #[inline(always)]
        pub(crate) fn register() -> Self {
            Self
        }

        #[inline(always)]
        pub(crate) fn acknowledged_batch(&self, _updates: usize, _bytes: usize) {}

        #[inline(always)]
        pub(crate) fn unacknowledged(&self, _updates: usize) {}

        #[inline(always)]
        pub(crate) fn failed_batch(&self, _scope: FailureScope, _kind: ErrorKind) {}

        #[inline(always)]
        pub(crate) fn attempt(
            &self,
            _call: FailedCall,
            _started: Stamp,
            _error: Option<ErrorKind>,
            _retried: bool,
        ) {
        }

        #[inline(always)]
        pub(crate) fn acknowledged_after(&self, _submitted: Stamp) {}

        #[inline(always)]
        pub(crate) fn queued(&self, _updates: usize) {}

        #[inline(always)]
        pub(crate) fn dequeued(&self, _updates: usize) {}
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use metrics_util::debugging::DebuggingRecorder;

    use super::Metrics;

    /// Users find the series in the README: every name registered is listed in its "Metrics"
    /// section, with every label it takes.
    #[test]
    fn every_series_registered_is_listed_in_the_readme() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Metrics\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap_or_default();
        assert!(!section.is_empty(), "the README has a Metrics section");
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _metrics = metrics::with_local_recorder(&recorder, Metrics::register);
        let snapshot = snapshotter.snapshot().into_vec();
        assert!(snapshot.len() > 20, "every series is registered at spawn");
        for (key, unit, description, _) in snapshot {
            let key = key.key();
            assert!(
                section.contains(&format!("`{}`", key.name())),
                "the README lists {}",
                key.name()
            );
            assert!(
                unit.is_some() && description.is_some(),
                "{} is described",
                key.name()
            );
            for label in key.labels() {
                assert!(
                    section.contains(&format!("`{}`", label.key()))
                        && section.contains(&format!("`{}`", label.value())),
                    "the README names {}'s label {}={}",
                    key.name(),
                    label.key(),
                    label.value()
                );
            }
        }
    }
}
