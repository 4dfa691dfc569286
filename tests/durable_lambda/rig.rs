//! What every test here does: an emulator, a runner on the real SDK client aimed at it, an
//! invocation with the service's event, and the checks that every operation was applied
//! exactly once and the execution completed.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use checkpoint_batcher::durable_lambda::Runner;
use checkpoint_batcher::durable_lambda::prelude::*;
use checkpoint_batcher::emulator::{Emulator, ExecutionSnapshot};
use checkpoint_batcher::invocation::InvocationOutput;
use serde_json::{Value, json};

use crate::support::{patient_config, real, snapshot, within_named};

/// Generous for a loaded two-core machine; a hang fails instead of blocking.
pub const INVOCATION_LIMIT: Duration = Duration::from_secs(120);

/// A runner on the real SDK client aimed at `emulator`, with patient retries.
pub fn runner(emulator: &Emulator, seed: u64) -> Runner {
    Runner::new(real(emulator)).with_config(patient_config(seed))
}

/// Invokes `handler` with the event the service would send now; the answer must be `Ok`.
pub async fn invoke<F, Fut>(emulator: &Emulator, arn: &str, seed: u64, handler: F) -> Value
where
    F: FnOnce(Value, DurableContext) -> Fut,
    Fut: Future<Output = Result<Value, DurableError>>,
{
    let event = emulator
        .invocation_event(arn)
        .expect("the execution runs, so the service would invoke it");
    within_named(
        INVOCATION_LIMIT,
        "an invocation",
        runner(emulator, seed).invoke(event, handler),
    )
    .await
    .expect("the invocation answers with an output, not an error for Lambda to retry")
}

/// The `SUCCEEDED` answer of a handler that returned `result`.
pub fn succeeded(result: Value) -> Value {
    InvocationOutput::succeeded(result.to_string()).to_value()
}

/// The answer of a suspended handler.
pub fn pending() -> Value {
    json!({"Status": "PENDING"})
}

/// Plays the service's side of a final answer, and checks the execution completed with it.
pub fn finish(emulator: &Emulator, arn: &str, output: &Value) -> ExecutionSnapshot {
    emulator
        .finish_invocation(arn, output)
        .expect("the service accepts the answer");
    let held = snapshot(emulator, arn);
    let execution = held
        .operation(&held.execution_operation_id)
        .expect("every execution has its EXECUTION operation");
    assert_eq!(
        execution.status, "SUCCEEDED",
        "the service completes the execution from a SUCCEEDED answer"
    );
    assert!(held.completed, "the token chain ended with the execution");
    held
}

/// Every operation the handler created was started once and succeeded once (a WAIT or a
/// CALLBACK: started once, and completed by the service), and no update was applied twice.
/// Returns how many operations of each type there are.
pub fn assert_each_operation_applied_once(held: &ExecutionSnapshot) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for update in &held.applied {
        let count = seen
            .entry((update.id.clone(), update.action.clone()))
            .or_insert(0);
        *count += 1;
        assert_eq!(
            *count, 1,
            "no update is applied twice: {} {} {} was applied again",
            update.op_type, update.action, update.id
        );
    }
    let mut types = HashMap::new();
    for op in &held.operations {
        if op.id == held.execution_operation_id {
            continue;
        }
        *types.entry(op.op_type.clone()).or_insert(0) += 1;
        let expected: &[&str] = match op.op_type.as_str() {
            "WAIT" | "CALLBACK" => &["START", "service:SUCCEEDED"],
            _ => &["START", "SUCCEED"],
        };
        assert_eq!(
            op.history, expected,
            "{} {:?} ({:?}) is started once and completed once",
            op.op_type, op.name, op.sub_type
        );
        assert_eq!(op.status, "SUCCEEDED", "{:?} ends SUCCEEDED", op.name);
    }
    types
}

/// The operation named `name`.
pub fn named<'a>(
    held: &'a ExecutionSnapshot,
    name: &str,
) -> &'a checkpoint_batcher::emulator::OperationRecord {
    held.operations
        .iter()
        .find(|op| op.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("an operation named {name} exists"))
}

/// Checkpoint requests the emulator applied, and what each carried on average.
pub fn report(test: &str, held: &ExecutionSnapshot) {
    eprintln!(
        "{test}: {} updates in {} applied checkpoints ({} calls, {} faulted, {} state reads)",
        held.applied.len(),
        held.applied_checkpoints,
        held.checkpoint_calls,
        held.faulted_checkpoints,
        held.state_calls
    );
}
