//! `checkpoint-batcher local` running the two example binaries through the Lambda Runtime API.
//!
//! The examples are separate binaries, which an integration test does not get built for it:
//! [`example`] builds them with the cargo running the tests (a no-op when they are fresh, and
//! what `cargo test --all-features` does anyway), then finds them beside the command, in
//! `target/<profile>/examples/`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use assert_cmd::cargo::cargo_bin;
use serde_json::Value;

/// The example binary `name`, built with every feature (as the tests are, so the library is
/// not built twice).
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        // Without the variables cargo sets for tests (`CARGO_PKG_*`, `CARGO_BIN_EXE_*`...),
        // which would make this build differ from a plain one and rebuild the library each
        // time: only what finds the toolchain and the target directory goes through.
        let kept = std::env::vars_os().filter(|(name, _)| {
            let name = name.to_string_lossy();
            ["PATH", "HOME", "USER", "TMPDIR", "RUSTFLAGS"].contains(&name.as_ref())
                || name.starts_with("RUSTUP_")
                || ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"]
                    .contains(&name.as_ref())
        });
        let output = Command::new(&cargo)
            .env_clear()
            .envs(kept)
            .args([
                "build",
                "--quiet",
                "--all-features",
                "--example",
                "durable_map",
                "--example",
                "durable_lambda_map",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .map_err(|e| format!("could not run {cargo}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`cargo build --all-features --examples` failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(why) = built {
        panic!("the examples are needed to test `local`: {why}");
    }
    let command = cargo_bin("checkpoint-batcher");
    let path = command
        .parent()
        .expect("the command is in a directory")
        .join("examples")
        .join(name);
    assert!(path.is_file(), "{} was built", path.display());
    path
}

/// Runs `local` with `flags`, then `-- example`.
fn local(flags: &[&str], example_name: &str) -> Output {
    Command::new(cargo_bin("checkpoint-batcher"))
        .arg("local")
        .args(flags)
        .arg("--")
        .arg(example(example_name))
        .output()
        .expect("the command runs")
}

/// The `--json` report.
fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON object ({e}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// No (Id, action) applied twice; every operation but the execution SUCCEEDED.
fn assert_applied_once(report: &Value) {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for update in report["applied"].as_array().expect("applied updates") {
        let key = (
            update["id"].as_str().unwrap().to_owned(),
            update["action"].as_str().unwrap().to_owned(),
        );
        *seen.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "updates applied twice: {twice:?}");
    for op in report["operations"].as_array().expect("operations") {
        if op["type"] != "EXECUTION" {
            assert_eq!(op["status"], "SUCCEEDED", "{op}");
        }
    }
}

fn outcomes(report: &Value) -> Vec<String> {
    report["invocations"]
        .as_array()
        .expect("invocations")
        .iter()
        .map(|i| i["outcome"].as_str().unwrap().to_owned())
        .collect()
}

fn result_of(report: &Value) -> Value {
    serde_json::from_str(report["result"].as_str().expect("a result")).expect("a JSON result")
}

/// No report holds a token: the JSON has no member naming one.
fn assert_no_token(report: &Value) {
    let text = report.to_string().to_lowercase();
    assert!(!text.contains("token"), "no token in the report");
}

/// Runs `example` with 50 items under 20 % throttling, killed once `kill_after` updates are
/// applied; checks it ended SUCCEEDED (exit 0) with the sum of i*i below 50, and returns the
/// `--json` report.
fn killed_under_throttling_succeeds(example: &str, kill_after: &str) -> Value {
    let output = local(
        &[
            "--json",
            "--seed",
            "7",
            "--throttle-rate",
            "0.2",
            "--kill-after-updates",
            kill_after,
            "--input",
            r#"{"items":50,"concurrency":10}"#,
        ],
        example,
    );
    let report = json_of(&output);
    assert!(
        output.status.success(),
        "exit 0 for SUCCEEDED; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report["status"], "SUCCEEDED");
    assert_eq!(
        result_of(&report),
        serde_json::json!({"items": 50, "sum": 40425})
    );
    report
}

#[test]
fn durable_map_killed_after_forty_updates_under_throttling_succeeds_with_every_step_once() {
    let report = killed_under_throttling_succeeds("durable_map", "40");
    let outcomes = outcomes(&report);
    assert_eq!(outcomes.first().map(String::as_str), Some("crashed"));
    assert_eq!(outcomes.last().map(String::as_str), Some("SUCCEEDED"));
    let first = &report["invocations"][0];
    let killed_at = first["updates_applied"].as_u64().unwrap();
    assert!(
        (40..100).contains(&killed_at),
        "killed halfway: {killed_at}"
    );
    assert!(
        report["processes"].as_u64().unwrap() >= 2,
        "a new process after the kill"
    );
    assert!(report["execution"]["faulted_checkpoints"].as_u64().unwrap() > 0);
    let steps = report["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| op["type"] == "STEP")
        .count();
    assert_eq!(steps, 50);
    assert_applied_once(&report);
    assert_no_token(&report);
}

#[test]
fn durable_lambda_map_killed_after_its_map_is_durable_under_throttling_replays_to_success() {
    // 50 items: the map's START, each item's context START and SUCCEED and step START and
    // SUCCEED, the map's SUCCEED: 202 updates. Killed after the last of them and before the
    // answer, the next process replays the whole map from the history.
    let report = killed_under_throttling_succeeds("durable_lambda_map", "202");
    assert_eq!(outcomes(&report), ["crashed", "SUCCEEDED"]);
    assert_eq!(
        report["invocations"][1]["updates_applied"], 0,
        "replayed whole"
    );
    assert!(report["execution"]["faulted_checkpoints"].as_u64().unwrap() > 0);
    assert_eq!(report["applied"].as_array().unwrap().len(), 202);
    assert_applied_once(&report);
}

#[test]
fn durable_lambda_map_killed_mid_map_fails_and_says_so() {
    // durable-lambda sends a second START for the map context an earlier invocation left
    // STARTED, which the service refuses (README, "durable-lambda handlers"): the report must
    // say FAILED, and the exit status must not be 0.
    let output = local(
        &[
            "--kill-after-updates",
            "40",
            "--input",
            r#"{"items":50,"concurrency":10}"#,
        ],
        "durable_lambda_map",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("status: FAILED"), "{stdout}");
    assert!(!stdout.contains("SUCCEEDED"), "{stdout}");
    assert!(stderr.contains("already started"), "{stderr}");
}

#[test]
fn durable_map_with_bad_input_exits_one_and_prints_the_error() {
    let output = local(
        &["--input", r#"{"items":"x","concurrency":1}"#],
        "durable_map",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.contains("invocation 1:"), "{stdout}");
    assert!(
        stdout.contains("status: FAILED after 1 invocation(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("error: InvalidInput: invalid input: items"),
        "{stdout}"
    );
    assert!(
        stderr.contains("error: the execution ended FAILED: InvalidInput"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_name_what_is_wrong_and_exit_two() {
    let run = |args: &[&str]| {
        Command::new(cargo_bin("checkpoint-batcher"))
            .args(args)
            .output()
            .expect("the command runs")
    };
    let bad_input = run(&["local", "--input", "{bad", "--", "true"]);
    assert_eq!(bad_input.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_input.stderr).contains("--input <JSON>': not JSON"));

    let no_command = run(&["local"]);
    assert_eq!(no_command.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_command.stderr).contains("<COMMAND>"));

    let missing = run(&["local", "--", "/nonexistent/handler"]);
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("error: could not start /nonexistent/handler: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn a_process_that_dies_at_every_start_is_invoked_up_to_the_limit_and_never_succeeds() {
    let output = Command::new(cargo_bin("checkpoint-batcher"))
        .args(["local", "--json", "--max-invocations", "3", "--", "false"])
        .output()
        .expect("the command runs");
    assert_eq!(output.status.code(), Some(1));
    let report = json_of(&output);
    assert_eq!(report["status"], "RUNNING");
    assert_eq!(report["succeeded"], false);
    assert_eq!(report["end"], "max-invocations");
    assert_eq!(outcomes(&report), ["error", "error", "error"]);
    assert!(
        report["invocations"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("exited before answering"),
        "{report}"
    );
}

#[test]
fn an_error_answered_through_the_runtime_api_is_invoked_again_in_the_same_process() {
    // Every checkpoint throttled: the example's batcher gives up after its retries and the
    // handler answers `Err`, which lambda_runtime posts to `.../invocation/{id}/error`.
    let output = local(
        &[
            "--json",
            "--throttle-rate",
            "1",
            "--max-invocations",
            "2",
            "--input",
            r#"{"items":1,"concurrency":1}"#,
        ],
        "durable_map",
    );
    assert_eq!(output.status.code(), Some(1));
    let report = json_of(&output);
    assert_eq!(report["status"], "RUNNING");
    assert_eq!(report["end"], "max-invocations");
    assert_eq!(outcomes(&report), ["error", "error"]);
    let detail = report["invocations"][0]["detail"].as_str().unwrap();
    assert!(detail.to_lowercase().contains("throttl"), "{detail}");
    assert_eq!(report["processes"], 1, "an error answer keeps the process");
    assert_eq!(report["applied"].as_array().unwrap().len(), 0);
}

/// Whether process `pid` is gone (or dead and waiting to be reaped).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[test]
fn a_process_past_the_timeout_is_killed_and_a_new_one_started_and_none_outlives_the_command() {
    let output = Command::new(cargo_bin("checkpoint-batcher"))
        .args([
            "local",
            "--json",
            "--timeout",
            "1",
            "--max-invocations",
            "2",
            "--",
            "sleep",
            "600",
        ])
        .output()
        .expect("the command runs");
    assert_eq!(output.status.code(), Some(1));
    let report = json_of(&output);
    assert_eq!(outcomes(&report), ["timed out", "timed out"]);
    assert_eq!(report["processes"], 2, "a new process after each timeout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let pids: Vec<u32> = stderr
        .lines()
        .filter_map(|line| {
            line.split("(pid ")
                .nth(1)?
                .trim_end_matches(')')
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(pids.len(), 2, "{stderr}");
    // SIGKILL was sent before the command exited; the kernel may take a moment to finish it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !pids.iter().all(|&pid| dead(pid)) {
        assert!(
            std::time::Instant::now() < deadline,
            "processes {pids:?} outlived the command"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_wrapper_script_and_what_it_started_are_killed_as_one_group() {
    // The program is a shell that starts the "function" in the background: killing the shell
    // alone would leave the function running with a token that still works.
    let output = Command::new(cargo_bin("checkpoint-batcher"))
        .args([
            "local",
            "--json",
            "--timeout",
            "1",
            "--max-invocations",
            "1",
            "--",
            "sh",
            "-c",
            "sleep 600 & echo \"started pid $!\" >&2; wait",
        ])
        .output()
        .expect("the command runs");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(outcomes(&json_of(&output)), ["timed out"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let started: u32 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("started pid ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("the shell printed its child's pid: {stderr}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !dead(started) {
        assert!(
            std::time::Instant::now() < deadline,
            "process {started}, started by the wrapper, outlived the command"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_kill_that_is_never_reached_fails_the_run_even_though_the_execution_succeeded() {
    let output = local(
        &[
            "--json",
            "--kill-after-updates",
            "100000",
            "--input",
            r#"{"items":3,"concurrency":1}"#,
        ],
        "durable_map",
    );
    assert_eq!(output.status.code(), Some(1));
    let report = json_of(&output);
    // The execution itself is fine; the run did not show the replay it was asked for.
    assert_eq!(report["status"], "SUCCEEDED");
    assert_eq!(outcomes(&report), ["SUCCEEDED"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--kill-after-updates 100000 was never reached"),
        "{stderr}"
    );
}
