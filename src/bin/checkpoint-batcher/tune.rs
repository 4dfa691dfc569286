//! `tune`: run the step workload once per combination of `--batch-sizes` and
//! `--flush-intervals` against a fresh embedded emulator, tabulate throughput and latency,
//! and recommend the configuration with the most throughput whose p99 fits `--max-p99-ms`.
//!
//! Every point is checked exactly-once like `run`, so a configuration that looks fast because
//! it lost updates cannot win. `--json` prints the grid and the recommendation as one object,
//! as `run --json` prints its summary.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use checkpoint_batcher::{BatcherConfig, RealBackend};
use serde_json::{Value, json};

use crate::args::TuneArgs;
use crate::error::{CliError, config_usage};
use crate::plot;
use crate::report::{millis, ms, per_thousand};
use crate::run::progress_bar;
use crate::verify::verify;
use crate::workload::{Timed, Workload, drive};

/// One measured configuration.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Point {
    /// `max_batch_updates`.
    pub(crate) batch_size: usize,
    /// `flush_interval` in milliseconds.
    pub(crate) flush_ms: u64,
    /// Steps per second.
    pub(crate) steps_per_s: f64,
    /// Median acknowledgement latency, in milliseconds.
    pub(crate) p50_ms: f64,
    /// 99th percentile acknowledgement latency, in milliseconds.
    pub(crate) p99_ms: f64,
    /// Checkpoint calls per 1000 steps.
    pub(crate) calls_per_1000: f64,
    /// Mean updates per call.
    pub(crate) mean_batch: f64,
}

/// Runs the sweep, prints the table and the recommendation, and writes the chart.
///
/// # Errors
///
/// A usage error for a batch size or interval out of range (before anything runs); a failed
/// run when a point fails or does not verify, or the chart cannot be written.
pub(crate) async fn tune(args: TuneArgs) -> Result<(), CliError> {
    let configs = configurations(&args)?;
    let workload = Workload::new(args.concurrency, args.steps, args.payload_bytes);
    let faults = args.faults.faults(args.latency_ms, args.jitter_ms);
    if !args.json {
        eprintln!(
            "sweeping {} configurations of {} steps each ...",
            configs.len(),
            workload.total_steps()
        );
    }
    let progress = progress_bar(workload.total_steps() * configs.len() as u64, args.json);

    let mut points = Vec::with_capacity(configs.len());
    for config in configs {
        let emulator = crate::serve::start_emulator(faults.clone(), args.faults.seed).await?;
        let (arn, token) = emulator.start_execution("checkpoint-batcher-tune");
        let backend =
            RealBackend::with_attempt_timeout(emulator.client(), config.retry.attempt_timeout);
        let timed = Arc::new(Timed::new(Arc::new(backend)));
        let outcome = drive(
            timed,
            arn.clone(),
            token,
            config.clone(),
            &workload,
            &progress,
        )
        .await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                progress.finish_and_clear();
                return Err(error);
            }
        };
        let label = format!(
            "max_batch_updates {} flush_interval {}",
            config.max_batch_updates,
            ms(config.flush_interval)
        );
        if let Some(error) = outcome.error {
            progress.finish_and_clear();
            return Err(CliError::failed(format!("{label}: {error}")));
        }
        let snapshot = emulator
            .execution(&arn)
            .ok_or_else(|| CliError::failed("the emulator lost the execution it started"))?;
        let verification = verify(&snapshot, &workload);
        if !verification.ok() {
            progress.finish_and_clear();
            return Err(CliError::failed(format!(
                "{label}: verification failed: {}",
                verification.problems.join("; ")
            )));
        }
        emulator.shutdown().await;
        points.push(Point {
            batch_size: config.max_batch_updates,
            flush_ms: u64::try_from(config.flush_interval.as_millis()).unwrap_or(u64::MAX),
            steps_per_s: outcome.steps_per_second(),
            p50_ms: millis(outcome.latency_quantile(0.5)),
            p99_ms: millis(outcome.latency_quantile(0.99)),
            calls_per_1000: per_thousand(outcome.stats.batches, outcome.steps_done),
            mean_batch: outcome.stats.mean_batch(),
        });
    }
    progress.finish_and_clear();

    let recommended = recommend(&points, args.max_p99_ms);
    if args.json {
        if let Some(path) = &args.plot {
            chart(&args, &points, recommended, path)?;
        }
        println!("{}", json_summary(&args, &points, recommended));
        return Ok(());
    }
    print!(
        "{}",
        table(&args, &points, recommended.map(|(index, _)| index))
    );
    match recommended {
        Some((index, true)) => {
            if let Some(p) = points.get(index) {
                println!(
                    "recommended: --max-batch-updates {} --flush-interval-ms {}: {:.0} steps/s with p99 {:.1} ms, within the {} ms budget",
                    p.batch_size, p.flush_ms, p.steps_per_s, p.p99_ms, args.max_p99_ms
                );
            }
        }
        Some((index, false)) => {
            if let Some(p) = points.get(index) {
                println!(
                    "no configuration kept p99 within {} ms; the lowest p99 was {:.1} ms with --max-batch-updates {} --flush-interval-ms {} ({:.0} steps/s)",
                    args.max_p99_ms, p.p99_ms, p.batch_size, p.flush_ms, p.steps_per_s
                );
            }
        }
        None => {}
    }
    if let Some(path) = &args.plot {
        chart(&args, &points, recommended, path)?;
        println!("chart: {}", path.display());
    }
    Ok(())
}

/// Writes the SVG chart of `points` to `path`.
fn chart(
    args: &TuneArgs,
    points: &[Point],
    recommended: Option<(usize, bool)>,
    path: &std::path::Path,
) -> Result<(), CliError> {
    let faults = args.faults.faults(args.latency_ms, args.jitter_ms);
    let title = format!(
        "{} tasks x {} steps, emulator latency {} + 0-{} jitter (labels: flush interval)",
        args.concurrency,
        args.steps,
        ms(faults.latency),
        ms(faults.jitter)
    );
    plot::chart(
        path,
        &title,
        points,
        args.max_p99_ms,
        recommended.map(|(index, _)| index),
    )
}

/// The sweep as one JSON object: the workload and the emulator, every point of the grid in the
/// order run, and the recommendation (`null` when nothing was measured), named as in
/// `run --json`.
fn json_summary(args: &TuneArgs, points: &[Point], recommended: Option<(usize, bool)>) -> Value {
    let grid: Vec<Value> = points
        .iter()
        .enumerate()
        .map(|(index, p)| {
            json!({
                "max_batch_updates": p.batch_size,
                "flush_interval_ms": p.flush_ms,
                "steps_per_s": p.steps_per_s,
                "ack_latency_ms": {"p50": p.p50_ms, "p99": p.p99_ms},
                "calls_per_1000_steps": p.calls_per_1000,
                "mean_batch": p.mean_batch,
                "recommended": recommended.is_some_and(|(r, _)| r == index),
            })
        })
        .collect();
    let recommendation = recommended.and_then(|(index, within_budget)| {
        points.get(index).map(|p| {
            json!({
                "max_batch_updates": p.batch_size,
                "flush_interval_ms": p.flush_ms,
                "steps_per_s": p.steps_per_s,
                "p99_ms": p.p99_ms,
                "within_budget": within_budget,
            })
        })
    });
    json!({
        "target": {
            "kind": "embedded-emulator",
            "latency_ms": args.latency_ms,
            "jitter_ms": args.jitter_ms,
            "throttle_rate": args.faults.throttle_rate,
            "server_error_rate": args.faults.server_error_rate,
            "lost_answer_rate": args.faults.lost_answer_rate,
            "seed": args.faults.seed,
        },
        "concurrency": args.concurrency,
        "steps_per_task": args.steps,
        "payload_bytes": args.payload_bytes,
        "max_p99_ms": args.max_p99_ms,
        "points": grid,
        "recommendation": recommendation,
        "chart": args.plot.as_ref().map(|path| path.display().to_string()),
    })
}

/// Every combination to try, batch size major, each validated before anything runs.
fn configurations(args: &TuneArgs) -> Result<Vec<BatcherConfig>, CliError> {
    let mut configs = Vec::new();
    for &batch_size in &args.batch_sizes {
        for &flush_ms in &args.flush_intervals {
            let config = BatcherConfig {
                max_batch_updates: batch_size,
                flush_interval: Duration::from_millis(flush_ms),
                ..BatcherConfig::default()
            };
            config.validate().map_err(|e| {
                let error = config_usage(&e);
                // The sweep's flags take lists; say which one held the bad value.
                CliError::usage(
                    error
                        .to_string()
                        .replace("--max-batch-updates", "--batch-sizes: a batch size")
                        .replace("--flush-interval-ms", "--flush-intervals: an interval"),
                )
            })?;
            configs.push(config);
        }
    }
    Ok(configs)
}

/// The point to recommend, and whether it met the budget: the most throughput among the
/// points within `budget_ms` (ties to the lower p99), else the point with the lowest p99.
pub(crate) fn recommend(points: &[Point], budget_ms: f64) -> Option<(usize, bool)> {
    let within = points
        .iter()
        .enumerate()
        .filter(|(_, p)| p.p99_ms <= budget_ms)
        .max_by(|(_, a), (_, b)| {
            a.steps_per_s
                .total_cmp(&b.steps_per_s)
                .then(b.p99_ms.total_cmp(&a.p99_ms))
        })
        .map(|(index, _)| (index, true));
    within.or_else(|| {
        points
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| a.p99_ms.total_cmp(&b.p99_ms))
            .map(|(index, _)| (index, false))
    })
}

/// The results as an aligned table; the recommended row is marked `*`.
fn table(args: &TuneArgs, points: &[Point], recommended: Option<usize>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tune: {} tasks x {} steps, {}-byte results, emulator latency {} ms + jitter 0-{} ms; p99 budget {} ms",
        args.concurrency,
        args.steps,
        args.payload_bytes,
        args.latency_ms,
        args.jitter_ms,
        args.max_p99_ms
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:>6} {:>8} {:>10} {:>8} {:>8} {:>11} {:>11}",
        "batch", "flush", "steps/s", "p50 ms", "p99 ms", "calls/1000", "mean batch"
    );
    for (index, p) in points.iter().enumerate() {
        let mark = if Some(index) == recommended { '*' } else { ' ' };
        let _ = writeln!(
            out,
            "{mark} {:>6} {:>5} ms {:>10.0} {:>8.1} {:>8.1} {:>11.1} {:>11.1}",
            p.batch_size,
            p.flush_ms,
            p.steps_per_s,
            p.p50_ms,
            p.p99_ms,
            p.calls_per_1000,
            p.mean_batch
        );
    }
    let _ = writeln!(out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(batch_size: usize, steps_per_s: f64, p99_ms: f64) -> Point {
        Point {
            batch_size,
            flush_ms: 0,
            steps_per_s,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            calls_per_1000: 0.0,
            mean_batch: 0.0,
        }
    }

    #[test]
    fn the_fastest_point_within_the_budget_is_recommended() {
        let points = [
            point(10, 900.0, 5.0),
            point(250, 5000.0, 40.0),
            point(50, 9000.0, 80.0),
        ];
        assert_eq!(recommend(&points, 50.0), Some((1, true)));
    }

    #[test]
    fn without_a_point_in_budget_the_lowest_p99_is_offered() {
        let points = [point(10, 900.0, 70.0), point(250, 5000.0, 60.0)];
        assert_eq!(recommend(&points, 50.0), Some((1, false)));
        assert_eq!(
            recommend(&[], 50.0),
            None,
            "nothing measured, nothing to recommend"
        );
    }
}
