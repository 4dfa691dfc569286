//! The `metrics` feature: what a recorder sees agrees with `stats()` after a run under faults,
//! a latched failure is counted by scope and kind, and the gauge counts the updates waiting.
//!
//! Each test holds its own `DebuggingRecorder` as the thread's local recorder only while the
//! batcher is spawned: the batcher registers its series then and records through their
//! handles, so tests running in parallel never see each other's figures. A snapshot drains
//! what it reads (counters and gauges restart at zero), so each test takes one.

use std::collections::HashMap;
use std::time::Duration;

use ::metrics::with_local_recorder;
use checkpoint_batcher::{BatcherConfig, BatcherError, ErrorKind, Fault, RandomFaults};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};

use crate::support::*;

/// A series: its kind, name and sorted labels.
type Series = (MetricKind, String, Vec<(String, String)>);

/// One snapshot, by series.
struct Figures(HashMap<Series, DebugValue>);

impl Figures {
    fn take(snapshotter: &Snapshotter) -> Self {
        let entries = snapshotter.snapshot().into_vec();
        Self(
            entries
                .into_iter()
                .map(
                    |(key, _unit, _description, value): (CompositeKey, _, _, _)| {
                        let (kind, key) = key.into_parts();
                        let mut labels: Vec<(String, String)> = key
                            .labels()
                            .map(|l| (l.key().to_owned(), l.value().to_owned()))
                            .collect();
                        labels.sort();
                        ((kind, key.name().to_owned(), labels), value)
                    },
                )
                .collect(),
        )
    }

    fn get(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> &DebugValue {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.0
            .get(&(kind, name.to_owned(), labels.clone()))
            .unwrap_or_else(|| panic!("the series {name}{labels:?} is registered"))
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(MetricKind::Counter, name, labels) {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is a counter, got {other:?}"),
        }
    }

    /// The sum of a counter over all its label sets.
    fn counter_total(&self, name: &str) -> u64 {
        self.0
            .iter()
            .filter(|((kind, n, _), _)| *kind == MetricKind::Counter && n == name)
            .map(|(_, value)| match value {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.get(MetricKind::Histogram, name, labels) {
            DebugValue::Histogram(values) => values.iter().map(|v| v.into_inner()).collect(),
            other => panic!("{name} is a histogram, got {other:?}"),
        }
    }

    fn gauge(&self, name: &str) -> f64 {
        match self.get(MetricKind::Gauge, name, &[]) {
            DebugValue::Gauge(value) => value.into_inner(),
            other => panic!("{name} is a gauge, got {other:?}"),
        }
    }
}

/// A rig whose batcher records into a recorder of its own.
fn recorded_rig(config: BatcherConfig) -> (Rig, Snapshotter) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rig = with_local_recorder(&recorder, || rig(config));
    (rig, snapshotter)
}

fn sum(values: &[f64]) -> f64 {
    values.iter().sum()
}

#[tokio::test(start_paused = true)]
async fn the_metrics_agree_with_the_stats_after_a_run_under_throttling_and_transient_faults() {
    const CALLERS: usize = 20;
    const STEPS: usize = 15;
    let latency = Duration::from_millis(5);
    let mut config = config();
    config.retry.max_attempts = 30;
    config.retry.initial_backoff = Duration::from_millis(1);
    let (rig, snapshotter) = recorded_rig(config);
    rig.faulty.set_random(Some(RandomFaults {
        throttle_rate: 0.2,
        transient_rate: 0.1,
        lost_answer_rate: 0.1,
        latency,
        seed: 20,
        ..RandomFaults::default()
    }));
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let batcher = rig.batcher.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..STEPS {
                batcher
                    .checkpoint(start(&format!("c{caller}-s{step}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        within(Duration::from_secs(600), task).await.unwrap();
    }
    let stats = within(Duration::from_secs(60), rig.batcher.shutdown())
        .await
        .unwrap()
        .stats;
    let figures = Figures::take(&snapshotter);
    let updates = (CALLERS * STEPS) as u64;

    assert_eq!(stats.updates, updates, "every update was acknowledged");
    assert!(
        stats.retries > 0,
        "the faults were injected and retried: {stats:?}"
    );
    let acknowledged = figures.counter(
        "checkpoint_batcher_updates_total",
        &[("outcome", "acknowledged")],
    );
    assert_eq!(
        acknowledged, stats.updates,
        "acknowledged updates = stats().updates"
    );
    assert_eq!(
        figures.counter(
            "checkpoint_batcher_updates_total",
            &[("outcome", "unacknowledged")]
        ),
        0,
        "nothing was refused"
    );
    assert_eq!(
        figures.counter("checkpoint_batcher_requests_total", &[("outcome", "ok")]),
        stats.batches,
        "acknowledged requests = stats().batches"
    );
    assert_eq!(
        figures.counter_total("checkpoint_batcher_retries_total"),
        stats.retries,
        "retries of every call and kind add up to stats().retries"
    );
    for kind in ["throttled", "transient"] {
        assert!(
            figures.counter(
                "checkpoint_batcher_retries_total",
                &[("call", "checkpoint"), ("kind", kind)]
            ) > 0,
            "{kind} retries are counted under their kind"
        );
    }
    assert_eq!(
        figures.counter_total("checkpoint_batcher_failures_total"),
        stats.failures,
        "no failure, as stats() says"
    );

    let batch_updates = figures.histogram("checkpoint_batcher_batch_updates", &[]);
    assert_eq!(
        batch_updates.len() as u64,
        stats.batches,
        "one batch size per request"
    );
    assert_eq!(
        sum(&batch_updates),
        stats.updates as f64,
        "batch sizes add up to the updates"
    );
    assert_eq!(
        batch_updates.iter().copied().fold(0.0, f64::max),
        stats.largest_batch as f64,
        "the largest batch recorded is stats().largest_batch"
    );
    let batch_bytes = figures.histogram("checkpoint_batcher_batch_bytes", &[]);
    assert_eq!(
        sum(&batch_bytes),
        stats.bytes as f64,
        "batch bytes add up to stats().bytes"
    );

    let answered = figures.histogram(
        "checkpoint_batcher_request_duration_seconds",
        &[("call", "checkpoint"), ("outcome", "ok")],
    );
    let refused = figures.histogram(
        "checkpoint_batcher_request_duration_seconds",
        &[("call", "checkpoint"), ("outcome", "error")],
    );
    assert_eq!(
        (answered.len() + refused.len()) as u64,
        rig.faulty.calls(),
        "one round trip per attempt, as the backend saw them"
    );
    assert_eq!(
        answered.len() as u64,
        stats.batches,
        "one answered attempt per acknowledged request"
    );
    assert!(
        answered.iter().all(|&s| s == latency.as_secs_f64()),
        "an answered attempt takes the backend's latency on the paused clock: {answered:?}"
    );

    let acks = figures.histogram("checkpoint_batcher_ack_latency_seconds", &[]);
    assert_eq!(
        acks.len() as u64,
        updates,
        "one latency per awaited acknowledgement"
    );
    assert!(
        acks.iter().all(|&s| s >= latency.as_secs_f64()),
        "no update is acknowledged sooner than one round trip"
    );
    assert_eq!(
        figures.gauge("checkpoint_batcher_queued_updates"),
        0.0,
        "nothing waits after the shutdown"
    );
}

#[tokio::test(start_paused = true)]
async fn a_latched_failure_is_counted_by_scope_and_kind_with_the_updates_it_refused() {
    let (rig, snapshotter) = recorded_rig(config());
    rig.faulty
        .push(Fault::Error(ErrorKind::Rejected, "no such step".into()));
    rig.faulty.hold();
    let first = rig.batcher.submit(start("a")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let mut queued = Vec::new();
    for id in ["b", "c", "d"] {
        queued.push(rig.batcher.submit(start(id)).await.unwrap());
    }
    rig.faulty.release();
    for ack in std::iter::once(first).chain(queued) {
        let error = within(Duration::from_secs(10), ack).await.unwrap_err();
        assert!(matches!(error, BatcherError::Failed(_)), "{error}");
    }
    let _ = within(Duration::from_secs(10), rig.batcher.shutdown()).await;
    let stats = rig.batcher.stats();
    let figures = Figures::take(&snapshotter);

    assert_eq!(stats.failures, 1);
    assert_eq!(
        figures.counter(
            "checkpoint_batcher_failures_total",
            &[("scope", "execution"), ("kind", "rejected")]
        ),
        1,
        "a rejected request fails the execution, and is counted so"
    );
    assert_eq!(
        figures.counter_total("checkpoint_batcher_failures_total"),
        stats.failures,
        "failures of every scope and kind add up to stats().failures"
    );
    assert_eq!(
        figures.counter(
            "checkpoint_batcher_requests_total",
            &[("outcome", "failed")]
        ),
        1,
        "the failed request is counted once, however many updates it refused"
    );
    assert_eq!(
        figures.counter(
            "checkpoint_batcher_updates_total",
            &[("outcome", "unacknowledged")]
        ),
        stats.unacknowledged,
        "refused updates = stats().unacknowledged"
    );
    assert_eq!(
        stats.unacknowledged, 4,
        "the failed batch's update and the three behind it"
    );
    assert!(
        figures
            .histogram("checkpoint_batcher_ack_latency_seconds", &[])
            .is_empty(),
        "an error is not an acknowledgement"
    );
    assert_eq!(
        figures.gauge("checkpoint_batcher_queued_updates"),
        0.0,
        "refused updates leave the queue"
    );
}

#[tokio::test(start_paused = true)]
async fn the_queued_gauge_counts_updates_accepted_and_not_yet_sent() {
    let (rig, snapshotter) = recorded_rig(config());
    rig.faulty.hold();
    let first = rig.batcher.submit(start("a")).await.unwrap();
    rig.faulty.wait_for_calls(1).await;
    let mut waiting = Vec::new();
    for id in ["b", "c"] {
        waiting.push(rig.batcher.submit(start(id)).await.unwrap());
    }
    waiting.push(
        rig.batcher
            .submit_all(vec![start("e"), succeed("e", "1")])
            .await
            .unwrap(),
    );
    waiting.push(rig.batcher.try_submit(start("f")).unwrap());
    let figures = Figures::take(&snapshotter);
    assert_eq!(
        figures.gauge("checkpoint_batcher_queued_updates"),
        5.0,
        "the updates behind the call in flight wait, a group's each counted; the one sent does not"
    );
    rig.faulty.release();
    for ack in std::iter::once(first).chain(waiting) {
        within(Duration::from_secs(10), ack).await.unwrap();
    }
}
