//! Update builders: a STEP's START and SUCCEED, any type and action, and the Ids of a list.

use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};

pub fn update(id: &str, ty: OperationType, action: OperationAction) -> OperationUpdate {
    OperationUpdate::builder()
        .id(id)
        .r#type(ty)
        .action(action)
        .build()
        .expect("id, type and action are set")
}

pub fn step(id: &str, action: OperationAction) -> OperationUpdate {
    update(id, OperationType::Step, action)
}

pub fn start(id: &str) -> OperationUpdate {
    step(id, OperationAction::Start)
}

pub fn succeed(id: &str, payload: &str) -> OperationUpdate {
    OperationUpdate::builder()
        .id(id)
        .r#type(OperationType::Step)
        .action(OperationAction::Succeed)
        .payload(payload)
        .build()
        .expect("id, type and action are set")
}

/// Ids of the updates a backend applied, in order.
pub fn ids(updates: &[OperationUpdate]) -> Vec<String> {
    updates.iter().map(|u| u.id.clone()).collect()
}
