//! Durable functions written as durable-lambda's documentation writes them: an async function
//! of the event and a `DurableContext`, returning `Result<serde_json::Value, DurableError>`.
//! Step `s` of a workflow returns `s`; each handler returns what its steps summed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use checkpoint_batcher::durable_lambda::prelude::*;
use serde_json::{Value, json};

/// Steps in the sequential handler, unless the event says `{"steps": n}`.
pub const SEQUENTIAL_STEPS: u64 = 20;
/// Branches of the parallel handler, and the steps of each.
pub const BRANCHES: u64 = 50;
pub const STEPS_PER_BRANCH: u64 = 3;
/// Items of the map handler.
pub const MAP_ITEMS: u64 = 200;

fn number(result: Result<u64, String>) -> Result<u64, DurableError> {
    result.map_err(|error| DurableError::child_context_failed("step", error))
}

/// `SEQUENTIAL_STEPS` steps one after another, named `step-{i}`.
pub async fn sequential(event: Value, mut ctx: DurableContext) -> Result<Value, DurableError> {
    let steps = event["steps"].as_u64().unwrap_or(SEQUENTIAL_STEPS);
    let mut sum = 0;
    for i in 0..steps {
        let value: Result<u64, String> = ctx
            .step(&format!("step-{i}"), move || async move { Ok(i) })
            .await?;
        sum += number(value)?;
    }
    Ok(json!({"sum": sum}))
}

/// The sequential handler, except that step `hang_at` never finishes while `hang` is set:
/// the test cuts the invocation there, as a crash would.
pub async fn sequential_hanging(
    event: Value,
    mut ctx: DurableContext,
    hang: Arc<AtomicBool>,
    hang_at: u64,
) -> Result<Value, DurableError> {
    let steps = event["steps"].as_u64().unwrap_or(SEQUENTIAL_STEPS);
    let mut sum = 0;
    for i in 0..steps {
        let hang = i == hang_at && hang.load(Ordering::SeqCst);
        let value: Result<u64, String> = ctx
            .step(&format!("step-{i}"), move || async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                Ok(i)
            })
            .await?;
        sum += number(value)?;
    }
    Ok(json!({"sum": sum}))
}

/// `BRANCHES` branches at once, each `STEPS_PER_BRANCH` steps named `b{b}-s{s}` returning
/// `s`.
pub async fn parallel(_event: Value, mut ctx: DurableContext) -> Result<Value, DurableError> {
    let branches = (0..BRANCHES)
        .map(|b| {
            move |mut ctx: DurableContext| async move {
                let mut sum = 0;
                for s in 0..STEPS_PER_BRANCH {
                    let value: Result<u64, String> = ctx
                        .step(&format!("b{b}-s{s}"), move || async move { Ok(s) })
                        .await?;
                    sum += number(value)?;
                }
                Ok(sum)
            }
        })
        .collect();
    let results = ctx
        .parallel("fan-out", branches, ParallelOptions::new())
        .await?;
    let mut sum = 0;
    for branch in results.results {
        sum += branch.result.ok_or_else(|| {
            DurableError::parallel_failed("fan-out", branch.error.unwrap_or_default())
        })?;
    }
    Ok(json!({"sum": sum}))
}

/// The sum `parallel` returns.
pub fn parallel_sum() -> u64 {
    BRANCHES * (0..STEPS_PER_BRANCH).sum::<u64>()
}

/// `MAP_ITEMS` items at once, each one step named `item-{i}` returning `i`.
pub async fn map(_event: Value, mut ctx: DurableContext) -> Result<Value, DurableError> {
    let results = ctx
        .map(
            "items",
            (0..MAP_ITEMS).collect(),
            MapOptions::new(),
            |i: u64, mut ctx: DurableContext| async move {
                let value: Result<u64, String> = ctx
                    .step(&format!("item-{i}"), move || async move { Ok(i) })
                    .await?;
                number(value)
            },
        )
        .await?;
    let mut sum = 0;
    for item in results.results {
        sum += item
            .result
            .ok_or_else(|| DurableError::map_failed("items", item.error.unwrap_or_default()))?;
    }
    Ok(json!({"sum": sum}))
}

/// A child context holding a step, a child context of two steps, and a step.
pub async fn nested(_event: Value, mut ctx: DurableContext) -> Result<Value, DurableError> {
    let sum: u64 = ctx
        .child_context("outer", |mut outer: DurableContext| async move {
            let first: Result<u64, String> = outer.step("outer-1", || async { Ok(1) }).await?;
            let inner: u64 = outer
                .child_context("inner", |mut inner: DurableContext| async move {
                    let a: Result<u64, String> = inner.step("inner-1", || async { Ok(10) }).await?;
                    let b: Result<u64, String> =
                        inner.step("inner-2", || async { Ok(100) }).await?;
                    Ok(number(a)? + number(b)?)
                })
                .await?;
            let last: Result<u64, String> = outer.step("outer-2", || async { Ok(1000) }).await?;
            Ok(number(first)? + inner + number(last)?)
        })
        .await?;
    Ok(json!({"sum": sum}))
}

/// A step, a wait named `pause`, a callback named `approval` whose answer is returned, and a
/// last step. Suspends (answers PENDING) at the wait and at the callback until the service
/// completes them.
pub async fn wait_then_callback(
    _event: Value,
    mut ctx: DurableContext,
) -> Result<Value, DurableError> {
    let before: Result<u64, String> = ctx.step("before", || async { Ok(1) }).await?;
    ctx.wait("pause", 60).await?;
    let callback = ctx
        .create_callback("approval", CallbackOptions::new().timeout_seconds(3600))
        .await?;
    let answer: String = ctx.callback_result(&callback)?;
    let after: Result<u64, String> = ctx.step("after", || async { Ok(2) }).await?;
    Ok(json!({"answer": answer, "sum": number(before)? + number(after)?}))
}
