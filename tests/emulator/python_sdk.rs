//! The official Python SDK (`aws-durable-execution-sdk-python`) against the emulator: a handler
//! with steps, a `map`, a `parallel`, a wait, a callback and a result past the 6 MiB - 50 byte
//! response limit (`tests/python/handler.py`) is invoked as the service would invoke it until it
//! finishes, the test playing the service's side (`official_sdk.rs`).
//!
//! Needs a Python with the SDK installed, named by `CHECKPOINT_BATCHER_PYTHON` (`.ci/run` makes
//! one in `target/python-venv`); skipped with a printed reason without it.

use std::path::Path;

use crate::official_sdk::{self, Availability, HandlerProcess, HandlerRuntime, Invoke};

fn runtime() -> Availability {
    let python = std::env::var_os("CHECKPOINT_BATCHER_PYTHON")
        .filter(|p| !p.is_empty())
        .ok_or("CHECKPOINT_BATCHER_PYTHON is not set (.ci/run sets it)")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/invoke.py");
    Ok(HandlerRuntime {
        label: "python",
        invoke: Invoke::Process(HandlerProcess {
            program: python.into(),
            args: vec![script.into()],
            env: vec![("PYTHONDONTWRITEBYTECODE", "1".into())],
        }),
        more_operations: &[],
    })
}

#[tokio::test]
async fn python_sdk_handler_finishes_with_its_result() {
    official_sdk::handler_finishes_with_its_result(runtime()).await;
}

#[tokio::test]
async fn python_sdk_oversized_result_is_checkpointed_on_the_execution() {
    official_sdk::oversized_result_is_checkpointed_on_the_execution(runtime()).await;
}
