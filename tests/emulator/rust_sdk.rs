//! AWS's official Rust SDK (`aws-durable-execution-sdk`, pinned in `Cargo.toml`) against the
//! emulator: the same workflow as the Python and TypeScript SDKs' tests, written with the Rust
//! SDK and with its last step in a child context of its own, invoked as the service would
//! invoke it until it finishes, the test playing the service's side (`official_sdk.rs`).
//!
//! The handler runs in the test process: the SDK's `wrap` turns it into the function Lambda's
//! runtime would call, which the test calls with the emulator's invocation event. Its checkpoint
//! client is private, but `Options::lambda_client` takes the `aws-sdk-lambda` client it builds
//! that client on: the emulator's own (`Emulator::client`), aimed at its loopback endpoint. So
//! no environment variable is read or set, and the tests run in parallel threads safely.
//!
//! The SDK (0.1.0) has no path for a result over the response limit: where the Python and
//! TypeScript SDKs checkpoint it as an EXECUTION update and answer an empty `Result`, it answers
//! the whole result, which the service refuses. A test here holds it to that, and will say so
//! when a later version checkpoints instead.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_durable_execution_sdk::lambda_runtime::LambdaEvent;
use aws_durable_execution_sdk::serdes::{Serdes, SerdesContext};
use aws_durable_execution_sdk::{BoxError, Branch, DurableContext, LambdaContext, Options};
use checkpoint_batcher::emulator::EmulatorError;
use serde_json::{Value, json};

use crate::official_sdk::{self, HandlerRuntime, InProcessHandler, Invoke};
use crate::support::*;

/// Hands a callback's result to the handler as it came, as the Python and TypeScript SDKs'
/// default serdes for callbacks does; the Rust SDK's default reads it as JSON.
struct AsItCame;

impl Serdes<String> for AsItCame {
    async fn serialize(&self, value: String, _: SerdesContext) -> Result<String, BoxError> {
        Ok(value)
    }

    async fn deserialize(&self, wire: String, _: SerdesContext) -> Result<String, BoxError> {
        Ok(wire)
    }
}

/// The workflow of `tests/python/handler.py`, written with the Rust SDK; the `finish` step
/// runs in a child context (`wrap-up`).
async fn workflow(event: Value, ctx: DurableContext) -> Result<Value, BoxError> {
    let items: Vec<i64> = serde_json::from_value(event["items"].clone())?;
    let name = event["name"]
        .as_str()
        .ok_or("the input names someone")?
        .to_owned();
    let count = items.len();
    let first: usize = ctx
        .step(move |_| async move { Ok(count) })
        .name("count")
        .await?;
    let doubled: Vec<i64> = ctx
        .map(items.clone(), |child, item: i64, index| async move {
            let doubled = child
                .step(move |_| async move { Ok(item * 2) })
                .name(format!("double-{index}"))
                .await?;
            Ok(doubled)
        })
        .name("double-all")
        .await?;
    let sum: i64 = items.iter().sum();
    let greeting = format!("hello {name}");
    let both: Vec<Value> = ctx
        .parallel([
            Branch::new("sum-branch", move |child: DurableContext| async move {
                let sum = child
                    .step(move |_| async move { Ok(sum) })
                    .name("sum")
                    .await?;
                Ok(json!(sum))
            }),
            Branch::new("greet-branch", move |child: DurableContext| async move {
                let greeting = child
                    .step(move |_| async move { Ok(greeting) })
                    .name("greet")
                    .await?;
                Ok(json!(greeting))
            }),
        ])
        .name("two-branches")
        .await?;
    ctx.wait(Duration::from_secs(3)).name("pause").await?;
    let callback = ctx
        .create_callback::<String>()
        .name("approval")
        .serdes(AsItCame)
        .await?;
    let approval = callback.result().await?;
    let finish = format!("{name}:{approval}");
    let last: String = ctx
        .run_in_child_context(move |child| async move {
            let last = child
                .step(move |_| async move { Ok(finish) })
                .name("finish")
                .await?;
            Ok(last)
        })
        .name("wrap-up")
        .await?;
    let summary = json!({
        "count": first,
        "doubled": doubled,
        "parallel": both,
        "callback": approval,
        "finish": last,
    });
    // The SDK answers the result as compact JSON, so the padding makes that `pad_to` bytes.
    let pad_to = event["pad_to"].as_u64().unwrap_or(0);
    let overhead = json!({"summary": summary, "padding": ""}).to_string().len();
    let padding = "x".repeat(usize::try_from(pad_to)?.saturating_sub(overhead));
    Ok(json!({"summary": summary, "padding": padding}))
}

/// Calls `handler`, made into a Lambda function by the SDK's `wrap` with `client` as its
/// checkpoint client, once with `event`, as Lambda's runtime would, and returns its answer.
/// An invocation that fails (the SDK's answer to a checkpoint failure it deems retryable:
/// Lambda would invoke the function again) fails the test.
async fn invoke<F, Fut, O>(handler: F, client: aws_sdk_lambda::Client, event: Value) -> Value
where
    F: Fn(Value, DurableContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, BoxError>> + Send,
    O: serde::Serialize + Send + 'static,
{
    let options = Options::builder()
        .lambda_client(client)
        .build()
        .expect("a client alone is valid options");
    let function = aws_durable_execution_sdk::wrap(handler, options);
    let payload = serde_json::from_value(event).expect("any JSON is an invocation payload");
    let mut context = LambdaContext::default();
    context.request_id = format!("rust-sdk-{}", fastrand::u64(..));
    let answer = function(LambdaEvent::new(payload, context))
        .await
        .unwrap_or_else(|e| panic!("the invocation failed (Lambda would retry it): {e}"));
    serde_json::to_value(answer).expect("the SDK's answer is JSON")
}

fn runtime() -> HandlerRuntime {
    let handler: InProcessHandler =
        Arc::new(|client, event| Box::pin(invoke(workflow, client, event)));
    HandlerRuntime {
        label: "rust",
        invoke: Invoke::InProcess(handler),
        more_operations: &[("CONTEXT", "wrap-up")],
    }
}

#[tokio::test]
async fn rust_sdk_handler_finishes_with_its_result() {
    official_sdk::handler_finishes_with_its_result(Ok(runtime())).await;
}

/// The SDK answers a result past the response limit whole, where the Python and TypeScript
/// SDKs checkpoint it (`official_sdk::oversized_result_is_checkpointed_on_the_execution`), and
/// the emulator, like the service, refuses that answer. Every operation before it was still
/// applied once.
#[tokio::test]
async fn rust_sdk_answers_a_result_over_the_response_limit_whole_and_the_service_refuses_it() {
    let emu = default_emulator().await;
    let runtime = runtime();
    let (arn, answer, _) = official_sdk::run_until_answer(
        &emu,
        &runtime,
        &official_sdk::input(official_sdk::OVERSIZED),
    )
    .await;
    assert_eq!(
        answer["Status"],
        "SUCCEEDED",
        "{}",
        official_sdk::abbreviated(&answer)
    );
    let result = answer["Result"].as_str().unwrap_or_default();
    assert_eq!(
        result.len(),
        official_sdk::OVERSIZED,
        "the 0.1.0 SDK answers a result past the response limit whole; a version that \
         checkpoints it instead belongs in official_sdk::oversized_result_is_checkpointed_on_the_execution"
    );
    let parsed: Value = serde_json::from_str(result).expect("the result is JSON");
    assert_eq!(parsed["summary"], official_sdk::expected_summary());
    let held = snapshot(&emu, &arn);
    let execution_updates: Vec<_> = held
        .applied
        .iter()
        .filter(|u| u.op_type == "EXECUTION")
        .collect();
    assert!(
        execution_updates.is_empty(),
        "the SDK checkpointed no EXECUTION update: {execution_updates:?}"
    );
    official_sdk::assert_each_action_once(&held);
    official_sdk::assert_operations(&held, &runtime);
    match emu.finish_invocation(&arn, &answer) {
        Err(EmulatorError::InvalidOutput(why)) => assert!(
            why.contains("response limit"),
            "the answer is refused for its size: {why}"
        ),
        other => panic!(
            "an answer over the response limit is refused, as the service refuses it: {other:?}"
        ),
    }
    assert!(
        !snapshot(&emu, &arn).completed,
        "a refused answer completes nothing"
    );
    emu.shutdown().await;
}

/// An execution started without input is invoked with the input the service sends for it,
/// `"{}"`, which the SDK reads as the handler's event; without `InputPayload` the SDK refuses
/// the invocation as malformed.
#[tokio::test]
async fn rust_sdk_handler_of_an_execution_started_without_input_gets_an_empty_object() {
    let emu = default_emulator().await;
    let (arn, _token) = emu.start_execution("rust-sdk-no-input");
    let event = emu
        .invocation_event(&arn)
        .expect("a new execution has an invocation event");
    let echo = |event: Value, ctx: DurableContext| async move {
        let seen = ctx
            .step(move |_| async move { Ok(event) })
            .name("echo")
            .await?;
        Ok::<_, BoxError>(seen)
    };
    let answer = within(Duration::from_secs(60), invoke(echo, emu.client(), event)).await;
    assert_eq!(
        answer,
        json!({"Status": "SUCCEEDED", "Result": "{}"}),
        "the handler of an execution started without input gets an empty object"
    );
    emu.finish_invocation(&arn, &answer)
        .expect("the service accepts the answer");
    let held = snapshot(&emu, &arn);
    assert!(held.completed);
    let echo = held
        .operations
        .iter()
        .find(|op| op.name.as_deref() == Some("echo"))
        .expect("the step is held");
    assert_eq!(echo.history, ["START", "SUCCEED"], "the step ran once");
    emu.shutdown().await;
}
