//! The emulator held against AWS's local runner, `dex-local-runner` (package
//! `aws-durable-execution-sdk-python-testing`, pinned in `tests/python/requirements.txt`):
//! seeded sequences of checkpoint and state requests go to both, and every answer is compared
//! once reduced to what both must agree on (accepted or refused, the error type, the
//! stale-token class, the token chain, the operations by Id, type, status and parent), then
//! the operations each holds at the end, by Name and SubType too. An entry of `known.rs` for
//! a request this crate refuses holds only when this crate's message names the update the
//! entry explains. Where the two are known to differ, `known.rs` says
//! so, why, and how the difference must look; any other difference fails the test with the
//! seed, the request and both answers.
//!
//! Needs a Python with the runner installed, named by `CHECKPOINT_BATCHER_PYTHON` (`.ci/run`
//! makes one in `target/python-venv`); skipped with a printed reason without it, failed when
//! it is set and the runner does not start.
//!
//! - `DIFFERENTIAL_SEED` (decimal or `0x` hex): the run's seed, to reproduce a failure.
//! - `DIFFERENTIAL_SEQUENCES`: how many seeded sequences (default 2,000).
//! - `DIFFERENTIAL_ONLY`: run only the sequence of this number (below the count, or the test
//!   fails naming the variable).
//! - `DIFFERENTIAL_PRINT` (any value): print each sequence as JSON, the form
//!   `regressions.json` keeps, before it runs.
//!
//! The sequences that ever differed are kept in `regressions.json` and always run.
#![cfg(feature = "emulator")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

#[path = "../support/mod.rs"]
mod support;

mod drive;
mod generate;
mod known;
mod runner;
mod sequence;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use checkpoint_batcher::emulator::Emulator;
use futures::StreamExt;

use crate::drive::Side;
use crate::known::{Ctx, KNOWN, Known, Standing};
use crate::runner::{MAX_OPEN_EXECUTIONS, Runner};
use crate::sequence::Sequence;

/// The run's seed when `DIFFERENTIAL_SEED` is not set.
const DEFAULT_SEED: u64 = 0x00D1_FF13;

/// Sequences per run when `DIFFERENTIAL_SEQUENCES` is not set.
const DEFAULT_SEQUENCES: usize = 2000;

/// The runner keeps every execution in memory: a fresh one (and a fresh emulator) after this
/// many sequences.
const RESTART_EVERY: usize = 1000;

/// The Python named by `CHECKPOINT_BATCHER_PYTHON`; `None`, with the reason printed, when the
/// variable is not set (the test is then skipped).
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("CHECKPOINT_BATCHER_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    if python.is_none() {
        println!("skipped: CHECKPOINT_BATCHER_PYTHON is not set (.ci/run sets it)");
    }
    python
}

fn env_number(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    let raw = raw.trim();
    let parsed = match raw.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => raw.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={raw:?} is not a number: {e}")))
}

/// The seed of sequence `n` of a run seeded `seed`.
fn sequence_seed(seed: u64, n: usize) -> u64 {
    (seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(17)
}

/// What one sequence came to.
#[derive(Default)]
struct Verdict {
    requests: usize,
    known: Vec<&'static str>,
    stopped_by: Option<&'static str>,
    failure: Option<String>,
}

/// Runs `seq` on a new execution of each server.
async fn run_sequence(runner: &Runner, emu: &Emulator, seq: &Sequence, label: &str) -> Verdict {
    let mut out = Verdict::default();
    let fail = |what: String| {
        format!(
            "{label}: {what}\n  sequence (for regressions.json): {}",
            serde_json::to_string(seq).unwrap_or_default()
        )
    };
    let theirs = match runner.start_execution().await {
        Ok(execution) => execution,
        Err(e) => {
            out.failure = Some(fail(format!(
                "the runner did not start an execution: {e}\n{}",
                runner.log_tail()
            )));
            return out;
        }
    };
    let (arn, token) = emu.start_execution(label);
    let exec_id = emu.execution(&arn).unwrap().execution_operation_id;
    let mut runner_side = Side::new(
        runner.addr(),
        theirs.arn.clone(),
        theirs.token.clone(),
        theirs.exec_id.clone(),
        false,
    );
    let mut ours = Side::new(emu.local_addr(), arn.clone(), token, exec_id, true);

    for (i, req) in seq.requests.iter().enumerate() {
        let before = emu.execution(&arn).unwrap().operations;
        let (theirs_answer, ours_answer) = tokio::join!(runner_side.send(req), ours.send(req));
        out.requests += 1;
        let ctx = Ctx {
            index: i,
            requests: &seq.requests,
            ours: &ours,
            ops_before: &before,
        };
        let applicable: Vec<&Known> = KNOWN
            .iter()
            .filter(|k| (k.applies)(req, &ctx, &ours_answer.outcome))
            .collect();
        let show = |why: &str| {
            fail(format!(
                "request {i}: {why}\n  request:  {}\n  runner:   {}\n            {}\n  emulator: {}\n            {}",
                req.describe(),
                theirs_answer.outcome,
                theirs_answer.raw,
                ours_answer.outcome,
                ours_answer.raw
            ))
        };
        for (answer, runner) in [(&theirs_answer, true), (&ours_answer, false)] {
            if let Some(shape) = &answer.error_shape
                && !known::error_shape_as_documented(shape, runner)
            {
                out.failure = Some(show(&format!(
                    "the {} error's shape is not the documented one (docs/PROTOCOL.md, \"{}\"): {shape:?}",
                    if runner { "runner's" } else { "emulator's" },
                    known::ERROR_SHAPE
                )));
                return out;
            }
        }
        if theirs_answer.outcome == ours_answer.outcome {
            if let Some(k) = applicable.first() {
                out.failure = Some(show(&format!(
                    "the known difference \"{}\" ({}) no longer shows: both answer alike (update known.rs and docs/PROTOCOL.md)",
                    k.name, k.reason
                )));
                return out;
            }
            continue;
        }
        match applicable
            .iter()
            .find(|k| (k.shows)(&theirs_answer.outcome, &ours_answer.outcome, &ctx))
        {
            Some(k) => {
                out.known.push(k.name);
                if k.diverges {
                    out.stopped_by = Some(k.name);
                    return out;
                }
            }
            None if applicable.is_empty() => {
                out.failure = Some(show("an unexplained difference"));
                return out;
            }
            None => {
                let names: Vec<String> = applicable
                    .iter()
                    .map(|k| format!("{}: {}", k.name, k.reason))
                    .collect();
                out.failure = Some(show(&format!(
                    "known difference(s) {names:?} apply but do not show as documented"
                )));
                return out;
            }
        }
    }

    let (theirs_ops, ours_ops) = tokio::join!(runner_side.all_operations(), ours.all_operations());
    match (theirs_ops, ours_ops) {
        (Ok(a), Ok(b)) if a == b => {}
        (Err(a), Err(b)) if a.is_stale() && b.is_stale() => {
            // Both completed: compare how, through the runner's GetDurableExecution.
            let status = runner.execution_status(&theirs.arn).await;
            let held = emu.execution(&arn).unwrap();
            let ours_status = held
                .operation(&held.execution_operation_id)
                .map(|op| op.status.clone())
                .unwrap_or_default();
            if status != ours_status {
                out.failure = Some(fail(format!(
                    "after the sequence the execution is {status} on the runner, {ours_status} on the emulator"
                )));
            }
        }
        (a, b) => {
            let list = |r: &Result<Vec<drive::OpKey>, drive::Outcome>| match r {
                Ok(ops) => ops
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => format!("state read refused: {e}"),
            };
            out.failure = Some(fail(format!(
                "the operations differ after the sequence\n  runner:   {}\n  emulator: {}",
                list(&a),
                list(&b)
            )));
        }
    }
    drop(theirs);
    out
}

/// The totals of a run.
#[derive(Default)]
struct Tally {
    sequences: usize,
    requests: usize,
    stopped: usize,
    known: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, outcome: Verdict) {
        self.sequences += 1;
        self.requests += outcome.requests;
        self.stopped += usize::from(outcome.stopped_by.is_some());
        for name in outcome.known {
            *self.known.entry(name).or_default() += 1;
        }
        self.failures.extend(outcome.failure);
    }

    fn report(&self, what: &str, started: Instant) {
        println!(
            "{what}: {} sequences, {} requests in {:.1} s; {} stopped at a known difference that changes state",
            self.sequences,
            self.requests,
            started.elapsed().as_secs_f64(),
            self.stopped
        );
        for k in KNOWN {
            let standing = match k.standing {
                Standing::Deliberate(row) => format!("deliberate ({row})"),
                Standing::Open(question) => format!("open ({question})"),
            };
            println!(
                "  {:>5}  {} — {standing}",
                self.known.get(k.name).copied().unwrap_or(0),
                k.name
            );
        }
    }

    fn assert_clean(&self, seed_note: &str) {
        assert!(
            self.failures.is_empty(),
            "{} of {} sequences differ unexplained ({seed_note}):\n\n{}",
            self.failures.len(),
            self.sequences,
            self.failures.join("\n\n")
        );
    }
}

/// Runs `sequences` (numbered from their index) through fresh runners and emulators, at most
/// [`MAX_OPEN_EXECUTIONS`] at once.
async fn run_all(python: &Path, sequences: Vec<(usize, Sequence)>, tag: &str) -> Tally {
    let mut tally = Tally::default();
    for (batch, chunk) in sequences.chunks(RESTART_EVERY).enumerate() {
        let runner = Runner::start(python, &format!("{tag}-{batch}"))
            .await
            .unwrap_or_else(|e| {
                panic!("CHECKPOINT_BATCHER_PYTHON is set but the runner does not start: {e}")
            });
        let emu = support::default_emulator().await;
        let outcomes: Vec<Verdict> = futures::stream::iter(chunk.iter())
            .map(|(n, seq)| {
                let label = format!("sequence {n} ({})", seq.name);
                let (runner, emu) = (&runner, &emu);
                async move { run_sequence(runner, emu, seq, &label).await }
            })
            .buffer_unordered(MAX_OPEN_EXECUTIONS)
            .collect()
            .await;
        for outcome in outcomes {
            tally.add(outcome);
        }
        emu.shutdown().await;
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_sequences_agree_with_the_local_runner() {
    let Some(python) = python() else {
        return;
    };
    let _serial = support::SERIAL.lock().await;
    let seed = env_number("DIFFERENTIAL_SEED").unwrap_or(DEFAULT_SEED);
    let count = env_number("DIFFERENTIAL_SEQUENCES").map_or(DEFAULT_SEQUENCES, |n| n as usize);
    let only = env_number("DIFFERENTIAL_ONLY").map(|n| n as usize);
    if let Some(only) = only {
        assert!(
            only < count,
            "DIFFERENTIAL_ONLY={only} names no sequence: a run has sequences 0 to {} (DIFFERENTIAL_SEQUENCES={count})",
            count.saturating_sub(1)
        );
    }
    let sequences: Vec<(usize, Sequence)> = (0..count)
        .filter(|n| only.is_none_or(|only| only == *n))
        .map(|n| {
            (
                n,
                generate::sequence(sequence_seed(seed, n), format!("seed {seed:#x} #{n}")),
            )
        })
        .collect();
    if std::env::var_os("DIFFERENTIAL_PRINT").is_some() {
        for (_, seq) in &sequences {
            println!("{}", serde_json::to_string(seq).unwrap_or_default());
        }
    }
    let started = Instant::now();
    let tally = run_all(&python, sequences, "seeded").await;
    tally.report(&format!("seed {seed:#x}"), started);
    assert!(
        tally.requests >= tally.sequences,
        "every sequence sent requests"
    );
    tally.assert_clean(&format!(
        "rerun with DIFFERENTIAL_SEED={seed:#x}, one sequence with DIFFERENTIAL_ONLY=<n>"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_cases_agree_with_the_local_runner() {
    let Some(python) = python() else {
        return;
    };
    let _serial = support::SERIAL.lock().await;
    let text = include_str!("regressions.json");
    let cases: Vec<Sequence> = serde_json::from_str(text).unwrap_or_else(|e| {
        panic!("tests/differential/regressions.json is not a list of sequences: {e}")
    });
    assert!(
        !cases.is_empty(),
        "regressions.json holds the cases that ever differed"
    );
    let started = Instant::now();
    let tally = run_all(
        &python,
        cases.into_iter().enumerate().collect(),
        "regressions",
    )
    .await;
    tally.report("regressions.json", started);
    tally.assert_clean("the cases of tests/differential/regressions.json");
    // Every known difference is held to its documented shape on every run, not only when the
    // seed happens to reach it.
    let unseen: Vec<&str> = KNOWN
        .iter()
        .filter(|k| !tally.known.contains_key(k.name))
        .map(|k| k.name)
        .collect();
    assert!(
        unseen.is_empty(),
        "regressions.json holds no case showing {unseen:?}: add one"
    );
}

/// Each deliberate difference quotes the text of `docs/PROTOCOL.md` that gives its reason; the
/// quote must be found there (backticks aside), so that neither drifts from the other.
#[test]
fn deliberate_differences_are_documented_in_protocol_md() {
    let doc = include_str!("../../docs/PROTOCOL.md").replace('`', "");
    for k in KNOWN {
        if let Standing::Deliberate(quote) = k.standing {
            assert!(
                doc.contains(&quote.replace('`', "")),
                "known difference {:?} cites {quote:?}, which docs/PROTOCOL.md does not contain",
                k.name
            );
        }
    }
}
