//! The `checkpoint-batcher` command, run as a user runs it: each subcommand on a small
//! workload, flag errors, and `run --endpoint-url` against the emulator that `emulator` serves
//! in another process. Everything stays on loopback.
#![cfg(feature = "cli")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use assert_cmd::cargo::{cargo_bin, cargo_bin_cmd};
use serde_json::Value;

/// The command with a quick, fault-free embedded emulator.
fn quick_run(extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = cargo_bin_cmd!("checkpoint-batcher");
    cmd.args([
        "run",
        "--concurrency",
        "4",
        "--steps",
        "5",
        "--latency-ms",
        "0",
        "--jitter-ms",
        "0",
    ])
    .args(extra);
    cmd
}

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn run_drives_the_steps_and_verifies_each_succeeded_exactly_once() {
    let output = quick_run(&[]).output().unwrap();
    let stdout = stdout_of(&output);
    assert!(
        output.status.success(),
        "a clean run exits 0: {stdout}{}",
        stderr_of(&output)
    );
    assert!(
        stdout.contains("verified: all 20 steps SUCCEEDED exactly once"),
        "the summary reports the exactly-once check: {stdout}"
    );
    for figure in [
        "steps/s",
        "updates/s",
        "checkpoint calls",
        "p50",
        "p99",
        "max",
        "retries",
        "ceiling",
        "metrics (checkpoint_batcher_*",
        "ack_latency_seconds",
    ] {
        assert!(
            stdout.contains(figure),
            "the summary shows {figure}: {stdout}"
        );
    }
    assert!(
        stdout.lines().any(|line| line
            .trim_start()
            .starts_with("updates_total{outcome=\"acknowledged\"}")
            && line.trim_end().ends_with(" 40")),
        "the metrics count the 40 updates acknowledged: {stdout}"
    );
}

#[test]
fn run_with_json_prints_one_object_with_the_summary() {
    let output = quick_run(&["--json"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "--json prints one JSON object ({e}): {}",
            stdout_of(&output)
        )
    });
    assert_eq!(summary["steps"], 20);
    assert_eq!(summary["updates"], 40, "a step is a START and a SUCCEED");
    assert_eq!(summary["verification"]["verified"], true);
    assert_eq!(summary["verification"]["method"], "emulator-state");
    assert!(summary["ack_latency_ms"]["p99"].as_f64().is_some());
    assert!(
        summary["ceiling_steps_per_s"]
            .as_f64()
            .is_some_and(|c| c > 0.0)
    );
    assert_eq!(summary["config"]["max_batch_updates"], 250);
}

#[test]
fn run_with_injected_faults_still_verifies_exactly_once() {
    let output = quick_run(&[
        "--throttle-rate",
        "0.2",
        "--server-error-rate",
        "0.2",
        "--lost-answer-rate",
        "0.3",
        "--seed",
        "11",
        "--initial-backoff-ms",
        "1",
        "--max-backoff-ms",
        "5",
        "--max-attempts",
        "20",
        "--json",
    ])
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        summary["verification"]["verified"], true,
        "faults never duplicate or lose a step"
    );
    assert!(
        summary["retries"].as_u64().unwrap() > 0,
        "the faults were injected and retried: {summary}"
    );
}

/// The series named `name` whose labels include `labels`, from `run --json`'s metrics.
fn series<'a>(summary: &'a Value, name: &str, labels: &[(&str, &str)]) -> Vec<&'a Value> {
    summary["metrics"]
        .as_array()
        .expect("run --json has the metrics")
        .iter()
        .filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .collect()
}

#[test]
fn run_reports_the_batchers_metrics_and_they_agree_with_its_summary_under_faults() {
    let output = quick_run(&[
        "--throttle-rate",
        "0.2",
        "--server-error-rate",
        "0.2",
        "--seed",
        "5",
        "--initial-backoff-ms",
        "1",
        "--max-backoff-ms",
        "5",
        "--max-attempts",
        "20",
        "--json",
    ])
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let counter = |name: &str, labels: &[(&str, &str)]| -> u64 {
        series(&summary, name, labels)
            .iter()
            .map(|s| s["value"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        counter(
            "checkpoint_batcher_updates_total",
            &[("outcome", "acknowledged")]
        ),
        40,
        "every update of the 20 steps is counted acknowledged"
    );
    assert_eq!(
        counter("checkpoint_batcher_requests_total", &[("outcome", "ok")]),
        summary["calls"].as_u64().unwrap(),
        "acknowledged requests are the summary's calls"
    );
    assert_eq!(
        counter("checkpoint_batcher_retries_total", &[]),
        summary["retries"].as_u64().unwrap(),
        "the retries of every kind add up to the summary's"
    );
    assert!(
        counter("checkpoint_batcher_retries_total", &[]) > 0,
        "the faults were retried"
    );
    let acks = series(&summary, "checkpoint_batcher_ack_latency_seconds", &[]);
    assert_eq!(acks.len(), 1, "one ack latency series");
    assert_eq!(
        acks[0]["count"], 20,
        "one acknowledgement awaited per step (its START is fire-and-forget)"
    );
    assert_eq!(acks[0]["unit"], "seconds");
    let queued = series(&summary, "checkpoint_batcher_queued_updates", &[]);
    assert_eq!(queued[0]["value"], 0.0, "nothing waits after the run");
    for s in summary["metrics"].as_array().unwrap() {
        assert!(
            s["name"]
                .as_str()
                .unwrap()
                .starts_with("checkpoint_batcher_"),
            "every series carries the prefix: {s}"
        );
    }
}

#[test]
fn a_latched_failure_prints_its_cause_and_classification_and_exits_1() {
    let output = quick_run(&[
        "--server-error-rate",
        "1",
        "--max-attempts",
        "2",
        "--initial-backoff-ms",
        "1",
    ])
    .output()
    .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a failed run exits 1: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "one error line: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("transient failure"),
        "the classification is named: {stderr}"
    );
    assert!(
        stderr.contains("ServiceException"),
        "the cause is named: {stderr}"
    );
    assert!(
        stderr.contains("fail the invocation"),
        "the scope is named: {stderr}"
    );
}

#[test]
fn a_configuration_out_of_range_names_the_flag_and_exits_2() {
    let output = quick_run(&["--max-batch-updates", "300"]).output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a usage error exits 2: {stderr}"
    );
    assert_eq!(
        stderr.trim_end(),
        "error: --max-batch-updates must be between 1 and 250 (the service's limit), got 300"
    );

    let output = quick_run(&["--initial-backoff-ms", "5000", "--max-backoff-ms", "100"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.starts_with("error: --initial-backoff-ms must not exceed --max-backoff-ms"),
        "fields are named as flags: {stderr}"
    );
}

#[test]
fn bad_flags_are_refused_by_name_with_exit_2() {
    let cases: [(&[&str], &str); 4] = [
        (&["--throttle-rate", "2"], "--throttle-rate"),
        (&["--concurrency", "0"], "--concurrency"),
        (&["--endpoint-url", "http://127.0.0.1:9"], "--arn"),
        (
            &["--arn", "a", "--checkpoint-token", "t", "--latency-ms", "3"],
            "--latency-ms",
        ),
    ];
    for (flags, named) in cases {
        let output = quick_run(flags).output().unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flags:?} is a usage error: {stderr}"
        );
        assert!(
            stderr.contains(named),
            "{flags:?}: the message names {named}: {stderr}"
        );
    }

    let output = cargo_bin_cmd!("checkpoint-batcher")
        .args(["tune", "--batch-sizes", "10,0"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--batch-sizes"),
        "the list flag is named: {stderr}"
    );
}

/// A tune grid small enough for a test: 4 tasks of 3 steps, 2 batch sizes × 2 flush intervals.
const SMALL_TUNE: [&str; 15] = [
    "tune",
    "--concurrency",
    "4",
    "--steps",
    "3",
    "--latency-ms",
    "1",
    "--jitter-ms",
    "0",
    "--batch-sizes",
    "2,10",
    "--flush-intervals",
    "0,1",
    "--max-p99-ms",
    "1000",
];

#[test]
fn tune_prints_a_table_recommends_and_writes_a_valid_svg() {
    let plot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-tune-chart.svg");
    let _ = std::fs::remove_file(&plot);
    let output = cargo_bin_cmd!("checkpoint-batcher")
        .args(SMALL_TUNE)
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    let stdout = stdout_of(&output);
    assert!(output.status.success(), "{stdout}{}", stderr_of(&output));
    for header in ["steps/s", "p50 ms", "p99 ms", "calls/1000"] {
        assert!(stdout.contains(header), "the table has {header}: {stdout}");
    }
    let rows = stdout
        .lines()
        .filter(|line| {
            let first = line.trim_start_matches('*').split_whitespace().next();
            first.is_some_and(|word| word.parse::<usize>().is_ok())
        })
        .count();
    assert_eq!(rows, 4, "one row per combination: {stdout}");
    assert_eq!(
        stdout.lines().filter(|line| line.starts_with('*')).count(),
        1,
        "exactly one row is marked recommended: {stdout}"
    );
    assert!(
        stdout.contains("recommended: --max-batch-updates "),
        "{stdout}"
    );

    let svg = std::fs::read_to_string(&plot).expect("--plot writes the chart");
    assert!(svg.starts_with("<svg"), "the chart is an SVG document");
    assert!(
        svg.trim_end().ends_with("</svg>"),
        "the SVG document is complete"
    );
    assert_eq!(
        svg.matches("<text").count(),
        svg.matches("</text>").count(),
        "every text element is closed"
    );
    for label in [
        "p99 acknowledgement latency (ms)",
        "throughput (steps/s)",
        "max_batch_updates 10",
        "recommended",
    ] {
        assert!(svg.contains(label), "the chart shows {label:?}");
    }
}

#[test]
fn tune_with_json_prints_the_grid_and_the_recommendation_as_one_object() {
    let output = cargo_bin_cmd!("checkpoint-batcher")
        .args(SMALL_TUNE)
        .arg("--json")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let sweep: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "--json prints one JSON object and nothing else ({e}): {}",
            stdout_of(&output)
        )
    });
    let points = sweep["points"].as_array().expect("the grid is an array");
    let pairs: Vec<(u64, u64)> = points
        .iter()
        .map(|p| {
            (
                p["max_batch_updates"].as_u64().unwrap(),
                p["flush_interval_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [(2, 0), (2, 1), (10, 0), (10, 1)],
        "one point per combination, batch size major"
    );
    for p in points {
        assert!(p["steps_per_s"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["ack_latency_ms"]["p99"].as_f64().is_some(), "{p}");
        assert!(p["calls_per_1000_steps"].as_f64().is_some(), "{p}");
    }
    let marked: Vec<&Value> = points.iter().filter(|p| p["recommended"] == true).collect();
    assert_eq!(marked.len(), 1, "exactly one point is marked recommended");
    let recommendation = &sweep["recommendation"];
    assert_eq!(
        recommendation["max_batch_updates"], marked[0]["max_batch_updates"],
        "the recommendation is the marked point"
    );
    assert_eq!(
        recommendation["flush_interval_ms"],
        marked[0]["flush_interval_ms"]
    );
    assert_eq!(recommendation["within_budget"], true, "a 1 s budget is met");
    assert_eq!(sweep["max_p99_ms"], 1000.0);
    assert_eq!(sweep["concurrency"], 4);
    assert_eq!(sweep["chart"], Value::Null, "no --plot, no chart");
}

/// An `emulator` subcommand in its own process, killed when dropped.
struct Served {
    child: Child,
    endpoint: String,
    arn: String,
    token: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Served {
    let mut child = Command::new(cargo_bin!("checkpoint-batcher"))
        .args(["emulator", "--port", "0", "--start-execution", "cli-test"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut served = Served {
        child,
        endpoint: String::new(),
        arn: String::new(),
        token: String::new(),
    };
    for line in BufReader::new(stdout).lines().take(3) {
        let line = line.unwrap();
        let (key, value) = line.split_once(": ").expect("`key: value` lines");
        match key {
            "endpoint" => served.endpoint = value.to_owned(),
            "arn" => served.arn = value.to_owned(),
            "token" => served.token = value.to_owned(),
            other => panic!("unexpected line {other:?}"),
        }
    }
    assert!(
        served.endpoint.starts_with("http://127.0.0.1:"),
        "loopback by default"
    );
    assert!(
        !served.arn.is_empty() && !served.token.is_empty(),
        "--start-execution prints both"
    );
    served
}

/// The command with the standard credential chain kept on this machine: static keys from the
/// environment, no profile files, no instance metadata.
fn external_run() -> assert_cmd::Command {
    let mut cmd = cargo_bin_cmd!("checkpoint-batcher");
    cmd.env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_LAMBDA");
    cmd
}

#[test]
fn run_with_an_endpoint_url_drives_the_emulator_served_by_another_process() {
    let served = serve();
    let output = external_run()
        .args(["run", "--concurrency", "3", "--steps", "4", "--json"])
        .args(["--endpoint-url", &served.endpoint])
        .args(["--arn", &served.arn])
        .args(["--checkpoint-token", &served.token])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["target"]["kind"], "external");
    assert_eq!(summary["steps"], 12);
    assert_eq!(summary["verification"]["method"], "callers-answered");
    assert_eq!(summary["verification"]["verified"], true);

    // The same token again is stale now: the run must fail with the classification.
    let output = external_run()
        .args(["run", "--concurrency", "1", "--steps", "1"])
        .args(["--endpoint-url", &served.endpoint])
        .args(["--arn", &served.arn])
        .args(["--checkpoint-token", &served.token])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("invalid checkpoint token"),
        "a consumed token is classified: {stderr}"
    );
}
