//! A durable map written with the community durable-lambda SDK, on the batcher, on
//! `lambda_runtime`.
//!
//! The input is `{"items": N, "concurrency": C}`. Item `i` is one step named `item-{i}` whose
//! result is `i*i`, inside durable-lambda's `map`, at most `C` items at once (`MapOptions`'s
//! batch size). The output is `SUCCEEDED` with `{"items": N, "sum": <sum of i*i>}`.
//!
//! A missing field, or one that is not a whole number (`{"items": "3"}`), or a concurrency of
//! 0, fails the execution with an error naming the field: replaying cannot mend an input.
//!
//! The handler is written as durable-lambda's documentation writes one; only `main` differs:
//! it calls `checkpoint_batcher::durable_lambda::run` where durable-lambda's own front ends
//! build a `RealBackend`, under which every map item after the first would present a consumed
//! token. `run` drains each invocation's batcher before answering, and answers a revoked token
//! with `PENDING`, an invocation-scope failure with `Err` (Lambda retries) and an
//! execution-scope one with `FAILED`.
//!
//! `cargo run --example durable_lambda_map --features durable-lambda` builds it and waits for
//! the Lambda runtime API, as any handler does. It reads the standard AWS configuration, so
//! `AWS_ENDPOINT_URL_LAMBDA` aims it at an emulator.

use checkpoint_batcher::durable_lambda::prelude::*;
use serde::de::Error as _;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    checkpoint_batcher::durable_lambda::run(handler).await
}

/// The durable function: the map, then the sum of its results.
pub async fn handler(event: Value, mut ctx: DurableContext) -> Result<Value, DurableError> {
    let items = field(&event, "items")?;
    let concurrency = field(&event, "concurrency")?;
    if concurrency == 0 {
        return Err(invalid("concurrency", "must be at least 1"));
    }
    let batch_size = usize::try_from(concurrency).unwrap_or(usize::MAX);
    let squares = ctx
        .map(
            "squares",
            (0..items).collect(),
            MapOptions::new().batch_size(batch_size),
            |i: u64, mut item: DurableContext| async move {
                let square: Result<u64, String> = item
                    .step(&format!("item-{i}"), move || async move { Ok(i * i) })
                    .await?;
                square.map_err(|error| DurableError::map_failed(format!("item-{i}"), error))
            },
        )
        .await?;

    let mut sum = 0_u64;
    for item in squares.results {
        match item.result {
            Some(square) => sum += square,
            None => {
                let error = item.error.unwrap_or_default();
                return Err(DurableError::map_failed(
                    "squares",
                    format!("item-{} failed: {error}", item.index),
                ));
            }
        }
    }
    Ok(json!({"items": items, "sum": sum}))
}

/// The input's `name` member, a whole number.
fn field(input: &Value, name: &str) -> Result<u64, DurableError> {
    match input.get(name) {
        None => Err(invalid(name, "is missing")),
        Some(value) => value
            .as_u64()
            .ok_or_else(|| invalid(name, &format!("must be a whole number, got {value}"))),
    }
}

fn invalid(field: &str, reason: &str) -> DurableError {
    let error = serde_json::Error::custom(format!("`{field}` {reason}"));
    DurableError::deserialization("input", error)
}
