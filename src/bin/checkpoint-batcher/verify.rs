//! The exactly-once check: after a run against the embedded emulator, every step must be a
//! STEP that SUCCEEDED with the run's payload, created by one START and finished by one
//! SUCCEED, and nothing else may have been applied.
//!
//! The emulator applies a checkpoint at most once per client token, so a retried call whose
//! answer was lost must show up here as a single START and SUCCEED; a duplicate, a lost
//! update or a stray operation fails the check.

use std::collections::{HashMap, HashSet};

use checkpoint_batcher::emulator::ExecutionSnapshot;

use crate::workload::Workload;

/// What the check found.
#[derive(Debug)]
pub(crate) struct Verification {
    /// Steps that SUCCEEDED exactly once, with the right result.
    pub(crate) steps_verified: u64,
    /// Updates the emulator applied.
    pub(crate) updates_applied: u64,
    /// Checkpoint requests the emulator received, faulted and replayed ones included.
    pub(crate) checkpoint_calls: u64,
    /// Checkpoints the emulator applied.
    pub(crate) applied_checkpoints: u64,
    /// Checkpoints answered from the idempotency store (retries of applied requests).
    pub(crate) replayed_checkpoints: u64,
    /// Problems found, worded for the user; empty when verified.
    pub(crate) problems: Vec<String>,
}

impl Verification {
    /// Whether every step SUCCEEDED exactly once and nothing else happened.
    pub(crate) fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How many problems are listed before the rest are only counted.
const PROBLEMS_SHOWN: usize = 5;

/// Checks `snapshot` against `workload`.
pub(crate) fn verify(snapshot: &ExecutionSnapshot, workload: &Workload) -> Verification {
    let mut problems = Vec::new();
    let expected: HashSet<String> = workload.step_ids().collect();

    let mut applied: HashMap<&str, Vec<&str>> = HashMap::new();
    for update in &snapshot.applied {
        applied
            .entry(update.id.as_str())
            .or_default()
            .push(update.action.as_str());
    }

    let mut steps_verified = 0;
    for op in &snapshot.operations {
        if op.id == snapshot.execution_operation_id {
            continue;
        }
        if !expected.contains(&op.id) {
            problems.push(format!(
                "unexpected operation {} ({} {})",
                op.id, op.op_type, op.status
            ));
            continue;
        }
        let actions = applied.get(op.id.as_str()).cloned().unwrap_or_default();
        if op.op_type != "STEP" {
            problems.push(format!("{} is a {}, not a STEP", op.id, op.op_type));
        } else if op.status != "SUCCEEDED" {
            problems.push(format!("{} is {}, not SUCCEEDED", op.id, op.status));
        } else if op.history != ["START", "SUCCEED"] || actions != ["START", "SUCCEED"] {
            problems.push(format!(
                "{} was not applied exactly once: history {:?}, applied {:?}",
                op.id, op.history, actions
            ));
        } else if op.result.as_deref() != Some(&*workload.payload) {
            problems.push(format!("{} has the wrong result", op.id));
        } else {
            steps_verified += 1;
        }
    }
    let missing = expected
        .iter()
        .filter(|id| snapshot.operation(id).is_none())
        .count();
    if missing > 0 {
        problems.push(format!("{missing} steps never reached the emulator"));
    }
    if problems.len() > PROBLEMS_SHOWN {
        let more = problems.len() - PROBLEMS_SHOWN;
        problems.truncate(PROBLEMS_SHOWN);
        problems.push(format!("and {more} more"));
    }

    Verification {
        steps_verified,
        updates_applied: snapshot.applied.len() as u64,
        checkpoint_calls: snapshot.checkpoint_calls,
        applied_checkpoints: snapshot.applied_checkpoints,
        replayed_checkpoints: snapshot.replayed_checkpoints,
        problems,
    }
}
