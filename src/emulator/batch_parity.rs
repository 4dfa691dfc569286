//! The batcher's requests against the emulator's rules: whatever the batcher cuts from updates
//! that the service takes one request at a time, the service takes too.
//!
//! Random sequences of updates and groups over a few Ids are first sent one unit (an update,
//! or a group as its own request) at a time through the emulator's request validation, keeping
//! only what it accepts: a sequence a correct handler could send. The kept units then go through
//! the batcher's group check and pending queue, with small random limits and batches taken at
//! random moments, and every request the queue cuts must pass the same validation against the
//! state the requests before it left. A difference between the assembler's rules of one request
//! and the emulator's shows as a request refused here.

use std::collections::HashMap;

use aws_sdk_lambda::types::{
    ErrorObject as SdkError, OperationAction, OperationType, OperationUpdate as SdkUpdate,
    StepOptions as SdkStepOptions, WaitOptions as SdkWaitOptions,
};
use proptest::prelude::*;

use super::rules::{Action, EmulatorLimits, OpType, OpView, RuleViolation, Status, validate};
use super::wire::{OperationUpdate as WireUpdate, StepOptions, WaitOptions};
use crate::batcher::assemble::{BatchLimits, check_group};
use crate::batcher::queue::{Pending, PendingQueue};
use crate::size::update_bytes;
use crate::wire::ErrorObject;

const IDS: [&str; 4] = ["a", "b", "c", "d"];
const EXECUTION_ID: &str = "exec";

/// One generated update: what it is, before it is built in either form.
#[derive(Clone, Debug)]
struct Spec {
    id: usize,
    op_type: OpType,
    action: Action,
    parent: Option<usize>,
    waits: bool,
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    let op_type = prop_oneof![
        4 => Just(OpType::Step),
        3 => Just(OpType::Context),
        1 => Just(OpType::Wait),
        1 => Just(OpType::Callback),
        1 => Just(OpType::Execution),
    ];
    let action = prop_oneof![
        4 => Just(Action::Start),
        3 => Just(Action::Succeed),
        1 => Just(Action::Fail),
        1 => Just(Action::Retry),
        1 => Just(Action::Cancel),
    ];
    (
        0..IDS.len(),
        op_type,
        action,
        proptest::option::weighted(0.3, 0..IDS.len()),
        any::<bool>(),
    )
        .prop_map(|(id, op_type, action, parent, waits)| Spec {
            id,
            op_type,
            action,
            parent,
            waits,
        })
}

/// The update in the SDK's form (what the batcher queues) and the wire form (what the
/// emulator validates), carrying what each action needs to be well formed.
fn build(spec: &Spec) -> (SdkUpdate, WireUpdate<'static>) {
    let id = IDS.get(spec.id).copied().unwrap_or("a");
    let parent = spec
        .parent
        .and_then(|p| IDS.get(p))
        .map(|p| (*p).to_owned());
    let mut sdk = SdkUpdate::builder()
        .id(id)
        .r#type(OperationType::from(spec.op_type.as_str()))
        .action(OperationAction::from(spec.action.as_str()))
        .set_parent_id(parent.clone());
    let mut wire = WireUpdate {
        id: Some(id.to_owned().into()),
        op_type: Some(spec.op_type.as_str().into()),
        action: Some(spec.action.as_str().into()),
        parent_id: parent.map(Into::into),
        ..WireUpdate::default()
    };
    match spec.action {
        Action::Succeed => {
            sdk = sdk.payload("1");
            wire.payload = Some("1".into());
        }
        Action::Fail => {
            sdk = sdk.error(SdkError::builder().error_type("E").build());
            wire.error = Some(ErrorObject {
                error_type: Some("E".to_owned()),
                ..ErrorObject::default()
            });
        }
        Action::Retry => {
            sdk = sdk.step_options(
                SdkStepOptions::builder()
                    .next_attempt_delay_seconds(1)
                    .build(),
            );
            wire.step_options = Some(StepOptions {
                next_attempt_delay_seconds: Some(1),
            });
        }
        Action::Start if spec.op_type == OpType::Wait => {
            let seconds = if spec.waits { 10 } else { 0 };
            sdk = sdk.wait_options(SdkWaitOptions::builder().wait_seconds(seconds).build());
            wire.wait_options = Some(WaitOptions {
                wait_seconds: Some(i64::from(seconds)),
            });
        }
        Action::Start | Action::Cancel => {}
    }
    (sdk.build().unwrap(), wire)
}

/// What the service holds: each operation's type, status and parent.
#[derive(Default)]
struct Model {
    operations: HashMap<String, (OpType, Status, Option<String>)>,
    completed: bool,
}

impl Model {
    fn new() -> Self {
        let mut model = Self::default();
        let _ = model.operations.insert(
            EXECUTION_ID.to_owned(),
            (OpType::Execution, Status::Started, None),
        );
        model
    }

    /// Validates one request and, when the emulator takes it, applies it.
    fn checkpoint(&mut self, updates: &[WireUpdate]) -> Result<(), RuleViolation> {
        let operations = &self.operations;
        let existing = |id: &str| {
            operations.get(id).map(|(op_type, status, parent)| OpView {
                op_type: *op_type,
                status: *status,
                parent_id: parent.as_deref(),
                name: None,
                sub_type: None,
            })
        };
        let applied: Vec<(String, OpType, Status, Option<String>)> = validate(
            updates,
            None,
            existing,
            EXECUTION_ID,
            &EmulatorLimits::default(),
        )?
        .into_iter()
        .map(|valid| {
            let parent = operations.get(valid.id).map_or_else(
                || valid.update.parent_id.as_deref().map(str::to_owned),
                |held| held.2.clone(),
            );
            (valid.id.to_owned(), valid.op_type, valid.to, parent)
        })
        .collect();
        for (id, op_type, status, parent) in applied {
            self.completed |= op_type == OpType::Execution;
            let _ = self.operations.insert(id, (op_type, status, parent));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Item {
    sdk: SdkUpdate,
    wire: WireUpdate<'static>,
    bytes: usize,
    unit: usize,
    /// Which kept unit it belongs to.
    member_of: usize,
}

impl Pending for Item {
    type Deadline = u64;
    fn update(&self) -> &SdkUpdate {
        &self.sdk
    }
    fn bytes(&self) -> usize {
        self.bytes
    }
    fn deadline(&self) -> Option<u64> {
        None
    }
    fn unit(&self) -> usize {
        self.unit
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_request_the_batcher_cuts_from_valid_units_passes_the_emulators_rules(
        units in proptest::collection::vec(proptest::collection::vec(arb_spec(), 1..4), 1..60),
        singles in proptest::collection::vec(any::<bool>(), 60),
        takes in proptest::collection::vec(0u8..4, 60),
        max_updates in 1usize..8,
        max_bytes in 60usize..400,
    ) {
        // What a correct handler sends: each unit accepted as a request of its own, in order.
        let mut sequential = Model::new();
        let mut kept: Vec<Vec<(SdkUpdate, WireUpdate<'static>)>> = Vec::new();
        for (index, specs) in units.iter().enumerate() {
            if sequential.completed {
                break;
            }
            // A unit of several updates is a group, unless split into single updates.
            let specs: Vec<&[Spec]> = if singles.get(index).copied().unwrap_or(true) {
                specs.chunks(1).collect()
            } else {
                vec![specs.as_slice()]
            };
            for unit in specs {
                let built: Vec<_> = unit.iter().map(build).collect();
                let sdk: Vec<SdkUpdate> = built.iter().map(|(sdk, _)| sdk.clone()).collect();
                if check_group(&sdk).is_err() {
                    continue;
                }
                let wire: Vec<WireUpdate> = built.iter().map(|(_, wire)| wire.clone()).collect();
                if !sequential.completed && sequential.checkpoint(&wire).is_ok() {
                    kept.push(built);
                }
            }
        }

        // The same units through the batcher's queue, batches taken at random moments.
        let envelope = 40;
        let mut queue = PendingQueue::new(BatchLimits::with_limits(max_updates, max_bytes), envelope);
        let mut batched = Model::new();
        let mut batches: Vec<Vec<Item>> = Vec::new();
        let take = |queue: &mut PendingQueue<Item>, batches: &mut Vec<Vec<Item>>| {
            let mut batch = Vec::new();
            let _ = queue.take_batch(envelope, |item| batch.push(item));
            batches.push(batch);
        };
        for (member_of, unit) in kept.into_iter().enumerate() {
            let size = unit.len();
            let mut items: Vec<Item> = unit
                .into_iter()
                .enumerate()
                .map(|(i, (sdk, wire))| Item {
                    bytes: update_bytes(&sdk),
                    sdk,
                    wire,
                    unit: if i == 0 { size } else { 0 },
                    member_of,
                })
                .collect();
            if size == 1 && member_of % 2 == 0 {
                queue.push(items.remove(0));
            } else {
                queue.push_group(items);
            }
            for _ in 0..takes.get(member_of % takes.len()).copied().unwrap_or(0) {
                if !queue.is_empty() {
                    take(&mut queue, &mut batches);
                }
            }
        }
        while !queue.is_empty() {
            take(&mut queue, &mut batches);
        }

        let mut batch_of_unit: HashMap<usize, usize> = HashMap::new();
        for (number, batch) in batches.iter().enumerate() {
            prop_assert!(!batch.is_empty(), "no request is empty");
            for item in batch {
                let first = *batch_of_unit.entry(item.member_of).or_insert(number);
                prop_assert_eq!(first, number, "a group is never split across requests");
            }
            let wire: Vec<WireUpdate> = batch.iter().map(|item| item.wire.clone()).collect();
            let ids: Vec<String> = batch.iter().map(|item| format!("{} {} {}",
                item.sdk.r#type.as_str(), item.sdk.action.as_str(), item.sdk.id)).collect();
            let verdict = batched.checkpoint(&wire);
            prop_assert!(verdict.is_ok(),
                "request {} {:?} of updates the service takes one unit at a time was refused: {:?}",
                number, ids, verdict);
        }
    }
}
