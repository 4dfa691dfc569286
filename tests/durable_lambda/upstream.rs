//! Why the `durable-lambda` feature exists: the same `parallel` handler, on durable-lambda's
//! own `RealBackend` (what each of its `run` functions builds), fails the execution. Every
//! branch is handed a copy of the parent's token and drops the one it gets back, so every
//! branch after the first presents a consumed token. Should this test fail, upstream fixed it.

use std::sync::Arc;

use checkpoint_batcher::emulator::Faults;
use durable_lambda_core::backend::RealBackend as UpstreamBackend;
use durable_lambda_core::context::DurableContext;
use durable_lambda_core::event::parse_invocation;
use durable_lambda_core::response::wrap_handler_result;

use crate::handlers::{self, BRANCHES};
use crate::support::{emulator, snapshot};

#[tokio::test]
async fn the_parallel_handler_on_durable_lambdas_own_backend_fails_with_a_stale_token() {
    let emulator = emulator(Faults::none(), 12).await;
    let (arn, _) = emulator.start_execution("upstream");
    let event = emulator.invocation_event(&arn).expect("the execution runs");

    // What durable_lambda_closure::run does with each invocation, on the same SDK client.
    let invocation = parse_invocation(&event).expect("durable-lambda reads the service's event");
    let context = DurableContext::new(
        Arc::new(UpstreamBackend::new(emulator.client())),
        invocation.durable_execution_arn,
        invocation.checkpoint_token,
        invocation.operations,
        invocation.next_marker,
    )
    .await
    .expect("the event holds the whole history");
    let result = handlers::parallel(invocation.user_event, context).await;
    let error = format!("{:?}", result.as_ref().err()).to_lowercase();
    let output = wrap_handler_result(result).expect("durable-lambda always answers");

    assert_eq!(
        output["Status"], "FAILED",
        "upstream, a parallel handler fails its execution, got {output}"
    );
    assert!(
        error.contains("invalid checkpoint token"),
        "upstream, it fails because a branch presented a consumed token, got {error}"
    );
    let held = snapshot(&emulator, &arn);
    eprintln!(
        "upstream parallel: {} calls, {} applied, {} refused",
        held.checkpoint_calls, held.applied_checkpoints, held.rejected_checkpoints
    );
    assert!(
        held.rejected_checkpoints >= BRANCHES - 1,
        "every branch but the first presents a consumed token, got {} refusals",
        held.rejected_checkpoints
    );
}
