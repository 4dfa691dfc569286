//! The `parallel` and `map` handlers as durable functions of AWS's local runner,
//! `dex-local-runner`: it starts each execution, invokes the function (here a fake Lambda
//! that answers with `Runner::invoke`), and serves its checkpoints. Needs the Python named by
//! `CHECKPOINT_BATCHER_PYTHON` with the runner installed (`.ci/run` makes one); skipped with
//! a printed reason without it.

#[allow(
    dead_code,
    reason = "the differential test's runner; only starting it and its executions is used here"
)]
#[path = "../differential/runner.rs"]
mod dex;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use checkpoint_batcher::durable_lambda::Runner;
use checkpoint_batcher::{FaultyBackend, RealBackend};
use serde_json::{Value, json};

use crate::handlers::{self, MAP_ITEMS};
use crate::rig::{INVOCATION_LIMIT, succeeded};
use crate::support::patient_config;

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

/// The fake Lambda's state: the backend aimed at the runner (counting its calls), and each
/// invocation's answer.
#[derive(Clone)]
struct Function {
    backend: Arc<FaultyBackend>,
    answers: Arc<Mutex<Vec<Value>>>,
}

/// The function the runner invokes: `parallel-*` runs the parallel handler, `example-*` the
/// `durable_lambda_map` example's, anything else the map handler. An invocation-scope error is answered FAILED, so that the test sees it.
async fn invoke(
    State(function): State<Function>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let runner = Runner::new(function.backend.clone()).with_config(patient_config(19));
    let answer = if name.starts_with("parallel") {
        runner.invoke(event, handlers::parallel).await
    } else if name.starts_with("example") {
        runner
            .invoke(event, crate::example::durable_lambda_map::handler)
            .await
    } else {
        runner.invoke(event, handlers::map).await
    };
    let answer = answer.unwrap_or_else(|error| {
        json!({"Status": "FAILED", "Error": {"ErrorType": "InvocationError", "ErrorMessage": error.to_string()}})
    });
    if let Ok(mut answers) = function.answers.lock() {
        answers.push(answer.clone());
    }
    axum::Json(answer)
}

/// The SDK client aimed at the runner.
fn client(runner: &dex::Runner) -> aws_sdk_lambda::Client {
    use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDLOCAL",
            "local-secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(format!("http://{}", runner.addr()))
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

/// Runs one execution of `function_name` on a fresh runner; returns the answers the function gave
/// and the checkpoint calls it made. The execution must end SUCCEEDED.
async fn run_on_the_local_runner(
    function_name: &str,
    input: &str,
) -> Option<(Vec<Value>, Arc<FaultyBackend>)> {
    let python = python()?;
    let _serial = crate::support::SERIAL.lock().await;
    // The runner's address is known only once it runs; the function's backend is aimed at it
    // through a slot filled after the start.
    let slot: Arc<Mutex<Option<Function>>> = Arc::default();
    let router = Router::new()
        .route(
            dex::INVOKE_ROUTE,
            post(
                |State(slot): State<Arc<Mutex<Option<Function>>>>, name, body| async move {
                    let function = slot.lock().ok().and_then(|f| f.clone());
                    match function {
                        Some(function) => invoke(State(function), name, body).await,
                        None => axum::Json(json!({"Status": "FAILED"})),
                    }
                },
            ),
        )
        .with_state(slot.clone());
    let runner = dex::Runner::start_serving(&python, function_name, Some(router))
        .await
        .unwrap_or_else(|e| {
            panic!("CHECKPOINT_BATCHER_PYTHON is set but the runner does not start: {e}")
        });
    let function = Function {
        backend: Arc::new(FaultyBackend::new(Arc::new(RealBackend::new(client(
            &runner,
        ))))),
        answers: Arc::default(),
    };
    *slot.lock().expect("not poisoned") = Some(function.clone());

    let arn = runner
        .start_function(function_name, input)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the runner starts the execution: {e}\n{}",
                runner.log_tail()
            )
        });
    let deadline = Instant::now() + INVOCATION_LIMIT;
    let status = loop {
        let status = runner.execution_status(&arn).await;
        if status != "RUNNING" || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let answers = function.answers.lock().expect("not poisoned").clone();
    assert_eq!(
        status,
        "SUCCEEDED",
        "the runner completes the execution from the function's answers {answers:?}\n{}",
        runner.log_tail()
    );
    Some((answers, function.backend))
}

/// No update went twice through the function's backend, and every call was answered.
fn assert_each_update_sent_once(backend: &FaultyBackend) -> usize {
    let mut seen = HashSet::new();
    let mut updates = 0;
    for call in backend.call_log() {
        assert!(call.succeeded, "the runner accepted every checkpoint");
        for (id, _, action) in call.updates {
            updates += 1;
            assert!(
                seen.insert((id.clone(), action.clone())),
                "no update is sent twice: {action:?} {id}"
            );
        }
    }
    updates
}

#[tokio::test]
async fn fifty_parallel_branches_succeed_under_the_local_runner() {
    let Some((answers, backend)) = run_on_the_local_runner("parallel-on-the-runner", "{}").await
    else {
        return;
    };
    assert_eq!(
        answers,
        [succeeded(json!({"sum": handlers::parallel_sum()}))],
        "one invocation, SUCCEEDED with every branch's steps summed"
    );
    assert_eq!(
        assert_each_update_sent_once(&backend),
        402,
        "402 updates, each sent once"
    );
    eprintln!(
        "parallel under dex-local-runner: {} requests",
        backend.calls()
    );
    crate::workflows::assert_parallel_requests(backend.calls());
}

#[tokio::test]
async fn a_map_of_two_hundred_items_succeeds_under_the_local_runner() {
    let Some((answers, backend)) = run_on_the_local_runner("map-on-the-runner", "{}").await else {
        return;
    };
    let sum: u64 = (0..MAP_ITEMS).sum();
    assert_eq!(
        answers,
        [succeeded(json!({"sum": sum}))],
        "one invocation, SUCCEEDED with every item's value summed"
    );
    assert_eq!(
        assert_each_update_sent_once(&backend),
        802,
        "802 updates, each sent once"
    );
    eprintln!("map under dex-local-runner: {} requests", backend.calls());
    assert!(
        (6..=12).contains(&backend.calls()),
        "200 items' 802 updates coalesce into 6 to 12 requests, got {}",
        backend.calls()
    );
}

#[tokio::test]
async fn the_durable_lambda_map_example_with_two_thousand_items_succeeds_under_the_local_runner() {
    let input = json!({"items": 2000, "concurrency": 200}).to_string();
    let Some((answers, backend)) = run_on_the_local_runner("example-on-the-runner", &input).await
    else {
        return;
    };
    let sum: u64 = (0..2000_u64).map(|i| i * i).sum();
    assert_eq!(
        answers,
        [succeeded(json!({"items": 2000, "sum": sum}))],
        "one invocation, SUCCEEDED with the sum of the squares"
    );
    assert_eq!(
        assert_each_update_sent_once(&backend),
        8002,
        "8,002 updates, each sent once"
    );
    eprintln!(
        "durable_lambda_map under dex-local-runner: {} requests",
        backend.calls()
    );
    assert!(
        (42..=84).contains(&backend.calls()),
        "8,002 updates coalesce into 42 to 84 requests, got {}",
        backend.calls()
    );
}
