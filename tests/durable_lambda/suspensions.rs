//! A wait and a callback: each invocation suspends (answers PENDING) until the service
//! completes the operation, and the next replays what is durable and goes on.

use checkpoint_batcher::emulator::{Completion, Faults};
use serde_json::json;

use crate::handlers;
use crate::rig::{
    assert_each_operation_applied_once, finish, invoke, named, pending, report, succeeded,
};
use crate::support::{emulator, snapshot};

#[tokio::test]
async fn a_wait_and_a_callback_completed_by_the_service_succeed_over_three_invocations() {
    let emulator = emulator(Faults::none(), 5).await;
    let (arn, _) = emulator.start_execution("suspensions");

    let first = invoke(&emulator, &arn, 5, handlers::wait_then_callback).await;
    assert_eq!(first, pending(), "the wait suspends the first invocation");
    emulator
        .finish_invocation(&arn, &first)
        .expect("PENDING is an answer");
    let after_first = snapshot(&emulator, &arn);
    assert_eq!(
        named(&after_first, "pause").status,
        "STARTED",
        "the timer runs"
    );
    assert_eq!(
        after_first.applied_checkpoints, 3,
        "the step's START and SUCCEED, the wait's START"
    );
    let wait = named(&after_first, "pause").id.clone();
    emulator
        .complete_operation(&arn, &wait, Completion::Succeed(None))
        .expect("the timer fires");

    let second = invoke(&emulator, &arn, 6, handlers::wait_then_callback).await;
    assert_eq!(
        second,
        pending(),
        "the callback suspends the second invocation"
    );
    emulator
        .finish_invocation(&arn, &second)
        .expect("PENDING is an answer");
    let after_second = snapshot(&emulator, &arn);
    assert_eq!(
        after_second.applied_checkpoints, 4,
        "the second invocation replays the step and the wait, and only starts the callback"
    );
    let callback = named(&after_second, "approval").id.clone();
    emulator
        .complete_operation(
            &arn,
            &callback,
            Completion::Succeed(Some("\"approved\"".into())),
        )
        .expect("the callback is answered");

    let third = invoke(&emulator, &arn, 7, handlers::wait_then_callback).await;
    assert_eq!(
        third,
        succeeded(json!({"answer": "approved", "sum": 3})),
        "the third invocation reads the callback's answer and finishes"
    );
    let held = finish(&emulator, &arn, &third);
    report("wait and callback", &held);
    let types = assert_each_operation_applied_once(&held);
    assert_eq!((types["WAIT"], types["CALLBACK"], types["STEP"]), (1, 1, 2));
    assert_eq!(
        held.applied_checkpoints, 6,
        "one request per update over the three invocations: nothing replayed is sent again"
    );
}
