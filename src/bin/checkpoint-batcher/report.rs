//! The summary of a `run`: as aligned text for people, or as one JSON object for scripts.
//!
//! The throughput ceiling is `min(C, max_batch_updates / 2) / round trip` steps per second:
//! one call is in flight at a time, a step is two updates, and at most `C` steps wait at once.
//! The round trip is the mean duration of the successful checkpoint calls as this process
//! measured them (client side, serialization and HTTP included), so it is known on every
//! target; for the embedded emulator the configured latency is shown beside it.

use std::fmt::Write as _;
use std::time::Duration;

use checkpoint_batcher::BatcherConfig;
use serde_json::{Value, json};

use crate::recorded::Recorded;
use crate::verify::Verification;
use crate::workload::{Outcome, Workload, per_second};

/// Where the run went.
#[derive(Debug)]
pub(crate) enum TargetInfo {
    /// The embedded emulator, with the latency and faults it was given.
    Emulator {
        /// Its endpoint URL on loopback.
        endpoint: String,
        /// Fixed latency per call.
        latency: Duration,
        /// Maximum extra latency per call.
        jitter: Duration,
        /// Throttle, server error and lost answer rates.
        rates: [f64; 3],
        /// Seed of its fault generator.
        seed: u64,
    },
    /// An external endpoint.
    External {
        /// The endpoint URL, or `None` for the configuration chain's.
        endpoint: Option<String>,
        /// The execution's ARN.
        arn: String,
    },
}

/// Everything the summary shows.
#[derive(Debug)]
pub(crate) struct Summary<'a> {
    /// The target.
    pub(crate) target: &'a TargetInfo,
    /// The workload.
    pub(crate) workload: &'a Workload,
    /// Bytes of each step's result.
    pub(crate) payload_bytes: usize,
    /// The batcher's configuration.
    pub(crate) config: &'a BatcherConfig,
    /// What the run measured.
    pub(crate) outcome: &'a Outcome,
    /// The exactly-once check, embedded emulator only.
    pub(crate) verification: Option<&'a Verification>,
    /// The batcher's metrics, as the process's recorder saw them.
    pub(crate) metrics: Option<&'a Recorded>,
}

impl Summary<'_> {
    /// Steps per call at most: `min(C, max_batch_updates / 2)`.
    fn steps_per_call_bound(&self) -> f64 {
        f64::from(self.workload.concurrency).min(self.config.max_batch_updates as f64 / 2.0)
    }

    /// The ceiling in steps per second, from the measured round trip.
    pub(crate) fn ceiling(&self) -> Option<f64> {
        let round_trip = self.outcome.timing.mean_round_trip()?;
        let secs = round_trip.as_secs_f64();
        (secs > 0.0).then(|| self.steps_per_call_bound() / secs)
    }

    /// The mean latency the emulator was configured to add, `latency + jitter / 2`.
    fn configured_mean(&self) -> Option<Duration> {
        match self.target {
            TargetInfo::Emulator {
                latency, jitter, ..
            } => Some(*latency + *jitter / 2),
            TargetInfo::External { .. } => None,
        }
    }

    /// The summary as text, one line per figure.
    pub(crate) fn text(&self) -> String {
        let o = self.outcome;
        let stats = &o.stats;
        let w = self.workload;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "checkpoint-batcher run: {} tasks x {} steps, {}-byte results",
            w.concurrency, w.steps, self.payload_bytes
        );
        match self.target {
            TargetInfo::Emulator {
                endpoint,
                latency,
                jitter,
                rates,
                seed,
            } => {
                let faults = if rates.iter().all(|r| *r == 0.0) {
                    "no faults".to_owned()
                } else {
                    format!(
                        "throttle {}, server error {}, lost answer {}, seed {seed}",
                        rates[0], rates[1], rates[2]
                    )
                };
                let _ = writeln!(
                    out,
                    "target:  embedded emulator at {endpoint}, latency {} + jitter 0-{}, {faults}",
                    ms(*latency),
                    ms(*jitter)
                );
            }
            TargetInfo::External { endpoint, arn } => {
                let _ = writeln!(
                    out,
                    "target:  {} (execution {arn})",
                    endpoint
                        .as_deref()
                        .unwrap_or("the AWS configuration's endpoint")
                );
            }
        }
        let c = self.config;
        let _ = writeln!(
            out,
            "batcher: max_batch_updates {}, max_batch_bytes {}, flush_interval {}, queue_capacity {}, max_attempts {}",
            c.max_batch_updates,
            c.max_batch_bytes,
            ms(c.flush_interval),
            c.queue_capacity,
            c.retry.max_attempts
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  steps            {} in {:.2} s: {:.0} steps/s",
            o.steps_done,
            o.elapsed.as_secs_f64(),
            o.steps_per_second()
        );
        let _ = writeln!(
            out,
            "  updates          {}: {:.0} updates/s",
            stats.updates,
            per_second(stats.updates, o.elapsed)
        );
        let _ = writeln!(
            out,
            "  calls            {} checkpoint calls, {:.1} per 1000 steps",
            stats.batches,
            per_thousand(stats.batches, o.steps_done)
        );
        let _ = writeln!(
            out,
            "  batch            mean {:.1}, largest {} updates",
            stats.mean_batch(),
            stats.largest_batch
        );
        let _ = writeln!(
            out,
            "  ack latency      p50 {}, p99 {}, max {}",
            ms(o.latency_quantile(0.5)),
            ms(o.latency_quantile(0.99)),
            ms(o.latency_quantile(1.0))
        );
        let _ = writeln!(
            out,
            "  retries          {} ({} attempts for {} calls)",
            stats.retries, o.timing.attempts, o.timing.calls
        );
        if let Some(round_trip) = o.timing.mean_round_trip() {
            let configured = self
                .configured_mean()
                .map(|d| format!("; the emulator adds {} on average", ms(d)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  round trip       {} mean per checkpoint call, measured{configured}",
                ms(round_trip)
            );
            if let Some(ceiling) = self.ceiling() {
                let _ = writeln!(
                    out,
                    "  ceiling          min(C={}, {}/2) / {} = {ceiling:.0} steps/s; reached {:.0}%",
                    w.concurrency,
                    c.max_batch_updates,
                    ms(round_trip),
                    100.0 * o.steps_per_second() / ceiling
                );
            }
        }
        if let Some(metrics) = self.metrics {
            let _ = writeln!(out);
            out.push_str(&metrics.text());
        }
        let _ = writeln!(out);
        match self.verification {
            Some(v) if v.ok() => {
                let _ = writeln!(
                    out,
                    "verified: all {} steps SUCCEEDED exactly once (emulator: {} updates applied by {} checkpoints; {} requests, {} answered again on retry)",
                    v.steps_verified,
                    v.updates_applied,
                    v.applied_checkpoints,
                    v.checkpoint_calls,
                    v.replayed_checkpoints
                );
            }
            Some(v) => {
                let _ = writeln!(
                    out,
                    "NOT verified: {} of {} steps SUCCEEDED exactly once",
                    v.steps_verified,
                    w.total_steps()
                );
                for problem in &v.problems {
                    let _ = writeln!(out, "  - {problem}");
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "answered: all {} callers acknowledged, no failure (the exactly-once check needs the embedded emulator's state)",
                    o.steps_done
                );
            }
        }
        out
    }

    /// The summary as one JSON object.
    pub(crate) fn json(&self) -> Value {
        let o = self.outcome;
        let stats = &o.stats;
        let c = self.config;
        let target = match self.target {
            TargetInfo::Emulator {
                endpoint,
                latency,
                jitter,
                rates,
                seed,
            } => json!({
                "kind": "embedded-emulator",
                "endpoint": endpoint,
                "latency_ms": whole_millis(*latency),
                "jitter_ms": whole_millis(*jitter),
                "throttle_rate": rates[0],
                "server_error_rate": rates[1],
                "lost_answer_rate": rates[2],
                "seed": seed,
            }),
            TargetInfo::External { endpoint, arn } => json!({
                "kind": "external",
                "endpoint": endpoint,
                "arn": arn,
            }),
        };
        let verification = match self.verification {
            Some(v) => json!({
                "method": "emulator-state",
                "verified": v.ok(),
                "steps_verified": v.steps_verified,
                "updates_applied": v.updates_applied,
                "checkpoint_requests": v.checkpoint_calls,
                "applied_checkpoints": v.applied_checkpoints,
                "replayed_checkpoints": v.replayed_checkpoints,
                "problems": v.problems,
            }),
            None => json!({
                "method": "callers-answered",
                "verified": o.error.is_none() && o.steps_done == self.workload.total_steps(),
            }),
        };
        json!({
            "target": target,
            "concurrency": self.workload.concurrency,
            "steps_per_task": self.workload.steps,
            "payload_bytes": self.payload_bytes,
            "config": {
                "max_batch_updates": c.max_batch_updates,
                "max_batch_bytes": c.max_batch_bytes,
                "flush_interval_ms": whole_millis(c.flush_interval),
                "queue_capacity": c.queue_capacity,
                "max_attempts": c.retry.max_attempts,
                "initial_backoff_ms": whole_millis(c.retry.initial_backoff),
                "max_backoff_ms": whole_millis(c.retry.max_backoff),
                "attempt_timeout_ms": whole_millis(c.retry.attempt_timeout),
                "jitter_seed": c.retry.jitter_seed,
            },
            "steps": o.steps_done,
            "updates": stats.updates,
            "elapsed_s": o.elapsed.as_secs_f64(),
            "steps_per_s": o.steps_per_second(),
            "updates_per_s": per_second(stats.updates, o.elapsed),
            "calls": stats.batches,
            "calls_per_1000_steps": per_thousand(stats.batches, o.steps_done),
            "attempts": o.timing.attempts,
            "retries": stats.retries,
            "mean_batch": stats.mean_batch(),
            "largest_batch": stats.largest_batch,
            "ack_latency_ms": {
                "p50": millis(o.latency_quantile(0.5)),
                "p99": millis(o.latency_quantile(0.99)),
                "max": millis(o.latency_quantile(1.0)),
            },
            "round_trip_ms": {
                "measured_mean": o.timing.mean_round_trip().map(millis),
                "configured_mean": self.configured_mean().map(millis),
            },
            "ceiling_steps_per_s": self.ceiling(),
            "ceiling_ratio": self.ceiling().map(|ceiling| o.steps_per_second() / ceiling),
            "verification": verification,
            "metrics": self.metrics.map(Recorded::json),
        })
    }
}

/// `count` per 1000 `steps`.
pub(crate) fn per_thousand(count: u64, steps: u64) -> f64 {
    if steps == 0 {
        0.0
    } else {
        1000.0 * count as f64 / steps as f64
    }
}

/// Milliseconds as a float, for JSON and tables.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Whole milliseconds, for the configured durations in JSON.
fn whole_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A duration for people: `6.2 ms`, `0.3 ms`, `1.25 s`.
pub(crate) fn ms(duration: Duration) -> String {
    let value = millis(duration);
    if value >= 1000.0 {
        format!("{:.2} s", value / 1000.0)
    } else if value >= 10.0 || value == 0.0 {
        format!("{value:.0} ms")
    } else {
        format!("{value:.1} ms")
    }
}
