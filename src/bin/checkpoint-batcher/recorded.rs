//! The batcher's metrics (the library's `metrics` feature, which `cli` enables) as `run` prints
//! them: an in-memory recorder (`metrics-util`'s `DebuggingRecorder`) is installed as the
//! process's recorder before the batcher is spawned, and read once after the run.
//!
//! The text summary shows the series that recorded something, with one line per series; the
//! JSON has every series, zeros included, so a script finds each name it knows.

use std::fmt::Write as _;
use std::time::Duration;

use metrics::Unit;
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::{Map, Value, json};

use crate::report::ms;

/// The prefix every series of the batcher's carries, left out of the text summary.
const PREFIX: &str = "checkpoint_batcher_";

/// Installs an in-memory recorder for the whole process, and returns what reads it; `None` when
/// a recorder was installed already (nothing here does, so never in practice).
pub(crate) fn install() -> Option<Snapshotter> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().ok().map(|()| snapshotter)
}

/// One series as it stood when read.
#[derive(Debug)]
struct Series {
    name: String,
    /// Sorted by key.
    labels: Vec<(String, String)>,
    unit: Option<Unit>,
    value: Figure,
}

#[derive(Debug)]
enum Figure {
    Counter(u64),
    Gauge(f64),
    /// The samples, sorted.
    Histogram(Vec<f64>),
}

/// Every series the recorder held, sorted by name and labels.
#[derive(Debug)]
pub(crate) struct Recorded(Vec<Series>);

impl Recorded {
    /// Reads (and drains) the recorder.
    pub(crate) fn take(snapshotter: &Snapshotter) -> Self {
        let mut series: Vec<Series> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, unit, _description, value)| {
                let (_, key) = key.into_parts();
                let mut labels: Vec<(String, String)> = key
                    .labels()
                    .map(|label| (label.key().to_owned(), label.value().to_owned()))
                    .collect();
                labels.sort();
                let value = match value {
                    DebugValue::Counter(n) => Figure::Counter(n),
                    DebugValue::Gauge(value) => Figure::Gauge(value.into_inner()),
                    DebugValue::Histogram(values) => {
                        let mut values: Vec<f64> =
                            values.into_iter().map(|v| v.into_inner()).collect();
                        values.sort_by(f64::total_cmp);
                        Figure::Histogram(values)
                    }
                };
                Series {
                    name: key.name().to_owned(),
                    labels,
                    unit,
                    value,
                }
            })
            .collect();
        series.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        Self(series)
    }

    /// The series that recorded something, one line each, under a heading.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "metrics ({PREFIX}*, as a recorder saw them; series at zero not shown):"
        );
        let lines: Vec<(String, String)> = self
            .0
            .iter()
            .filter_map(|series| {
                let figure = match &series.value {
                    Figure::Counter(0) => return None,
                    Figure::Counter(n) => n.to_string(),
                    Figure::Gauge(value) => format!("{value}"),
                    Figure::Histogram(values) if values.is_empty() => return None,
                    Figure::Histogram(values) => distribution(values, series.unit),
                };
                Some((series.label(), figure))
            })
            .collect();
        let width = lines
            .iter()
            .map(|(label, _)| label.len())
            .max()
            .unwrap_or(0);
        for (label, figure) in lines {
            let _ = writeln!(out, "  {label:<width$}  {figure}");
        }
        out
    }

    /// Every series, as a JSON array of objects.
    pub(crate) fn json(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|series| {
                    let labels: Map<String, Value> = series
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                        .collect();
                    let unit = series.unit.map(|unit| unit.as_str());
                    let mut object = json!({
                        "name": series.name,
                        "labels": labels,
                        "unit": unit,
                    });
                    let figures = match &series.value {
                        Figure::Counter(n) => {
                            json!({"kind": kind(MetricKind::Counter), "value": n})
                        }
                        Figure::Gauge(value) => {
                            json!({"kind": kind(MetricKind::Gauge), "value": value})
                        }
                        Figure::Histogram(values) => json!({
                            "kind": kind(MetricKind::Histogram),
                            "count": values.len(),
                            "sum": values.iter().sum::<f64>(),
                            "p50": nearest_rank(values, 0.5),
                            "p99": nearest_rank(values, 0.99),
                            "max": values.last(),
                        }),
                    };
                    if let (Some(object), Value::Object(figures)) =
                        (object.as_object_mut(), figures)
                    {
                        object.extend(figures);
                    }
                    object
                })
                .collect(),
        )
    }
}

impl Series {
    /// `name{key="value",...}` without the common prefix.
    fn label(&self) -> String {
        let name = self.name.strip_prefix(PREFIX).unwrap_or(&self.name);
        if self.labels.is_empty() {
            return name.to_owned();
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{name}{{{}}}", labels.join(","))
    }
}

fn kind(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    }
}

/// A histogram for people: its count, mean, median, p99 and largest sample, in its unit.
fn distribution(sorted: &[f64], unit: Option<Unit>) -> String {
    let show = |value: f64| match unit {
        Some(Unit::Seconds) => ms(Duration::from_secs_f64(value.max(0.0))),
        Some(Unit::Bytes) => format!("{value:.0} B"),
        _ => format!("{value:.1}"),
    };
    let mean = sorted.iter().sum::<f64>() / sorted.len().max(1) as f64;
    format!(
        "n {}, mean {}, p50 {}, p99 {}, max {}",
        sorted.len(),
        show(mean),
        show(nearest_rank(sorted, 0.5).unwrap_or_default()),
        show(nearest_rank(sorted, 0.99).unwrap_or_default()),
        show(sorted.last().copied().unwrap_or_default())
    )
}

/// Nearest-rank quantile `q` of sorted samples; `None` without samples.
fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_line_gives_its_count_mean_quantiles_and_largest_in_its_unit() {
        let samples: Vec<f64> = (1..=99).map(|ms| f64::from(ms) / 1000.0).collect();
        assert_eq!(
            distribution(&samples, Some(Unit::Seconds)),
            "n 99, mean 50 ms, p50 50 ms, p99 99 ms, max 99 ms"
        );
        assert_eq!(
            distribution(&[2.0, 4.0], Some(Unit::Bytes)),
            "n 2, mean 3 B, p50 2 B, p99 4 B, max 4 B"
        );
        assert_eq!(nearest_rank(&[], 0.5), None, "no samples, no quantile");
    }
}
