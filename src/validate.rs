//! Local validation of an update's fields, before it is queued.
//!
//! The service would refuse a request holding an update that breaks one of these constraints
//! (docs/PROTOCOL.md, "Field limits"), and since a request is atomic, that one update would fail
//! every other caller's update in the same batch. Checking here fails only its own caller, with
//! [`BatcherError::InvalidUpdate`](crate::BatcherError::InvalidUpdate) naming the field.
//!
//! What is checked is what a single update shows: identifier formats, lengths and sizes, known
//! enum values. Rules that depend on other updates or on the execution's state (parents that
//! exist, legal status transitions) are the service's to judge.
//!
//! Pure functions: no I/O, no tokio.

use aws_sdk_lambda::types::{ErrorObject, OperationAction, OperationType, OperationUpdate};

use crate::error::InvalidUpdate;
use crate::limits::{
    SERVICE_MAX_ERROR_BYTES, SERVICE_MAX_EXECUTION_PAYLOAD_BYTES, SERVICE_MAX_ID_CHARS,
    SERVICE_MAX_NAME_CHARS, SERVICE_MAX_PAYLOAD_BYTES, SERVICE_MAX_SUB_TYPE_CHARS,
};

/// Checks one update against the service's field constraints (docs/PROTOCOL.md, "Field
/// limits").
///
/// # Errors
///
/// An [`InvalidUpdate`] naming the first field that breaks a constraint, and how.
///
/// # Examples
///
/// ```
/// use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
/// use checkpoint_batcher::validate_update;
///
/// let update = OperationUpdate::builder()
///     .id("has space")
///     .r#type(OperationType::Step)
///     .action(OperationAction::Start)
///     .build()?;
/// let err = validate_update(&update).unwrap_err();
/// assert_eq!(err.field(), "Id");
/// # Ok::<(), aws_sdk_lambda::error::BuildError>(())
/// ```
pub fn validate_update(update: &OperationUpdate) -> Result<(), InvalidUpdate> {
    check_id("Id", &update.id)?;
    if let Some(parent) = update.parent_id() {
        check_id("ParentId", parent)?;
    }
    if let Some(name) = update.name() {
        check_max_chars("Name", name, SERVICE_MAX_NAME_CHARS)?;
    }
    if let Some(sub_type) = update.sub_type() {
        check_max_chars("SubType", sub_type, SERVICE_MAX_SUB_TYPE_CHARS)?;
    }
    let op_type = update.r#type.as_str();
    if !OperationType::values().contains(&op_type) {
        return Err(InvalidUpdate::new(
            "Type",
            format!("unknown operation type {op_type:?}"),
        ));
    }
    let action = update.action.as_str();
    if !OperationAction::values().contains(&action) {
        return Err(InvalidUpdate::new(
            "Action",
            format!("unknown action {action:?}"),
        ));
    }
    if let Some(payload) = update.payload() {
        let limit = if update.r#type == OperationType::Execution {
            SERVICE_MAX_EXECUTION_PAYLOAD_BYTES
        } else {
            SERVICE_MAX_PAYLOAD_BYTES
        };
        if payload.len() > limit {
            return Err(InvalidUpdate::new(
                "Payload",
                format!(
                    "{} bytes exceeds the service's limit of {limit} bytes for a {op_type} update",
                    payload.len()
                ),
            ));
        }
    }
    if let Some(error) = &update.error {
        let bytes = error_bytes(error);
        if bytes > SERVICE_MAX_ERROR_BYTES {
            return Err(InvalidUpdate::new(
                "Error",
                format!(
                    "its fields together take {bytes} bytes, over the service's limit of {SERVICE_MAX_ERROR_BYTES}"
                ),
            ));
        }
    }
    Ok(())
}

fn check_id(field: &'static str, id: &str) -> Result<(), InvalidUpdate> {
    if id.is_empty() {
        return Err(InvalidUpdate::new(field, "must not be empty"));
    }
    // All allowed characters are ASCII, so bytes and characters agree whenever the id is valid.
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(InvalidUpdate::new(
            field,
            format!("contains {bad:?}; only ASCII letters, digits, '_' and '-' are allowed"),
        ));
    }
    if id.len() > SERVICE_MAX_ID_CHARS {
        return Err(InvalidUpdate::new(
            field,
            format!(
                "is {} characters long, over the limit of {SERVICE_MAX_ID_CHARS}",
                id.len()
            ),
        ));
    }
    Ok(())
}

fn check_max_chars(field: &'static str, value: &str, max: usize) -> Result<(), InvalidUpdate> {
    let chars = value.chars().count();
    if chars > max {
        return Err(InvalidUpdate::new(
            field,
            format!("is {chars} characters long, over the limit of {max}"),
        ));
    }
    Ok(())
}

fn error_bytes(error: &ErrorObject) -> usize {
    [
        error.error_message(),
        error.error_type(),
        error.error_data(),
    ]
    .into_iter()
    .flatten()
    .map(str::len)
    .sum::<usize>()
        + error
            .stack_trace()
            .iter()
            .map(|line| line.len())
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str) -> aws_sdk_lambda::types::builders::OperationUpdateBuilder {
        OperationUpdate::builder()
            .id(id)
            .r#type(OperationType::Step)
            .action(OperationAction::Start)
    }

    fn field_of(update: OperationUpdate) -> Option<&'static str> {
        validate_update(&update).err().map(|e| e.field())
    }

    #[test]
    fn well_formed_updates_pass() {
        assert_eq!(field_of(step("a-Z_09").build().unwrap()), None);
        assert_eq!(
            field_of(step(&"x".repeat(64)).parent_id("p").build().unwrap()),
            None
        );
        let payload = "p".repeat(SERVICE_MAX_PAYLOAD_BYTES);
        assert_eq!(field_of(step("s").payload(payload).build().unwrap()), None);
    }

    #[test]
    fn each_broken_constraint_names_its_field() {
        let cases = [
            ("Id", step("").build().unwrap()),
            ("Id", step(&"x".repeat(65)).build().unwrap()),
            ("Id", step("a.b").build().unwrap()),
            ("Id", step("é").build().unwrap()),
            ("ParentId", step("a").parent_id("a/b").build().unwrap()),
            ("ParentId", step("a").parent_id("").build().unwrap()),
            ("Name", step("a").name("n".repeat(257)).build().unwrap()),
            (
                "SubType",
                step("a").sub_type("s".repeat(33)).build().unwrap(),
            ),
            (
                "Payload",
                step("a")
                    .payload("p".repeat(SERVICE_MAX_PAYLOAD_BYTES + 1))
                    .build()
                    .unwrap(),
            ),
            (
                "Error",
                step("a")
                    .error(
                        ErrorObject::builder()
                            .error_message("m".repeat(SERVICE_MAX_ERROR_BYTES / 2))
                            .stack_trace("t".repeat(SERVICE_MAX_ERROR_BYTES / 2 + 1))
                            .build(),
                    )
                    .build()
                    .unwrap(),
            ),
            (
                "Type",
                step("a")
                    .r#type(OperationType::from("NOPE"))
                    .build()
                    .unwrap(),
            ),
            (
                "Action",
                step("a")
                    .action(OperationAction::from("NOPE"))
                    .build()
                    .unwrap(),
            ),
        ];
        for (field, update) in cases {
            assert_eq!(
                field_of(update),
                Some(field),
                "a broken {field} must be named"
            );
        }
    }

    #[test]
    fn name_length_counts_characters_not_bytes() {
        let update = step("a").name("é".repeat(256)).build().unwrap();
        assert_eq!(
            field_of(update),
            None,
            "256 two-byte characters are within the limit"
        );
    }

    #[test]
    fn an_execution_result_may_be_up_to_six_mebibytes() {
        let payload = "p".repeat(SERVICE_MAX_EXECUTION_PAYLOAD_BYTES);
        let update = OperationUpdate::builder()
            .id("exec")
            .r#type(OperationType::Execution)
            .action(OperationAction::Succeed)
            .payload(payload)
            .build()
            .unwrap();
        assert_eq!(field_of(update), None);
    }
}
