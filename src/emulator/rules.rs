//! Validation of one checkpoint request against the service's rules; pure, no HTTP.
//!
//! [`validate`] walks the updates in order, simulating their effect on a private view
//! of the operations (the stored ones overlaid with what earlier updates of the same
//! request did), and either returns every update with its resulting status or the
//! first rule broken. Because nothing is written until the whole request passed, a
//! rejected request leaves the execution untouched (rule 1, atomicity).
//!
//! # Rules checked (docs/PROTOCOL.md, "Request rules" and "Field limits")
//!
//! - Fields: `Id`, `Type` and `Action` present and known; `Id`/`ParentId` 1–64 chars of
//!   `[a-zA-Z0-9_-]`; `Name` ≤ 256 chars; `SubType` ≤ 32 chars; `Payload` ≤
//!   [`EmulatorLimits::max_payload_bytes`] ([`EmulatorLimits::max_execution_payload_bytes`] for an
//!   EXECUTION update); all `Error` fields together ≤ [`EmulatorLimits::max_error_bytes`];
//!   optional cap on the number of updates ([`EmulatorLimits::max_updates`]).
//! - At most one EXECUTION update, and it is the last one. Its `Id` is not checked, as the
//!   service does not check it: it applies to the execution's own operation whatever it names.
//! - One update per `Id`, except that a STEP or CONTEXT may carry a START followed by
//!   exactly one non-START update.
//! - A `ParentId` names a CONTEXT that exists or was STARTed earlier in the request.
//! - An update's `Type` matches the operation's type; its `ParentId`, `Name` and `SubType`,
//!   when present, match the operation's (a member left out is not compared, but one
//!   present where the operation has none is a mismatch).
//! - Each type takes only its own actions: STEP START, SUCCEED, FAIL, RETRY; CONTEXT START,
//!   SUCCEED, FAIL; WAIT START, CANCEL; CALLBACK and CHAINED_INVOKE START only; EXECUTION
//!   SUCCEED, FAIL.
//! - A SUCCEED carries no `Error` and a FAIL no `Payload` (STEP, CONTEXT and EXECUTION).
//! - A STEP RETRY carries `StepOptions` with `NextAttemptDelaySeconds`; a CHAINED_INVOKE
//!   START carries `ChainedInvokeOptions` with a `FunctionName`.
//! - Status transitions, per type (anything else is refused):
//!
//! | type | action | from | to |
//! |---|---|---|---|
//! | STEP | START | absent, PENDING, READY | STARTED (a restart counts a new attempt) |
//! | STEP | SUCCEED / FAIL | STARTED, READY | SUCCEEDED / FAILED |
//! | STEP | RETRY | STARTED, READY | PENDING |
//! | CONTEXT | START | absent | STARTED |
//! | CONTEXT | SUCCEED / FAIL | STARTED | SUCCEEDED / FAILED |
//! | WAIT | START | absent | STARTED; SUCCEEDED at once when `WaitSeconds` is absent or not positive |
//! | WAIT | CANCEL | STARTED | CANCELLED |
//! | CALLBACK, CHAINED_INVOKE | START | absent | STARTED |
//! | EXECUTION | SUCCEED / FAIL | STARTED | SUCCEEDED / FAILED |
//!
//! WAIT, CALLBACK and CHAINED_INVOKE are completed by the service (timer fired, callback
//! answered, invoked function returned), never by the client; the emulator's handle
//! does that with [`super::Emulator::complete_operation`]. A wait of no time is due at
//! once, so the service's side completes it in the same request. An EXECUTION is
//! started by the service, so START of an EXECUTION is refused.
//!
//! Every update is checked, including one whose operation is started earlier in the same
//! request. Not enforced (lenient on purpose): children of a finished CONTEXT and numeric
//! option ranges. These, and where else the emulator differs from the service, are listed
//! in docs/PROTOCOL.md, "Deliberate differences".

use std::collections::HashMap;
use std::fmt;

use super::wire::OperationUpdate;

/// Per-request and per-field size limits the emulator enforces.
///
/// Plain data; [`Default`] gives the service's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmulatorLimits {
    /// Largest request body accepted, in bytes; a larger one gets 413
    /// `RequestTooLargeException` before it is parsed.
    ///
    /// Default: 7 MiB, room for a maximal 6 MiB EXECUTION result plus the request
    /// envelope and moderate JSON escaping. (The SDKs' own 750 KiB batch cap is a client
    /// choice; the API model sets no request limit, the HTTP front end does.)
    pub max_request_bytes: usize,
    /// Largest `Payload` of a non-EXECUTION update, in UTF-8 bytes. Default: 1 MiB.
    pub max_payload_bytes: usize,
    /// Largest `Payload` of an EXECUTION update (a synchronous result). Default: 6 MiB.
    pub max_execution_payload_bytes: usize,
    /// Largest `Error`, all its fields together, in UTF-8 bytes. Default: 1 MiB.
    pub max_error_bytes: usize,
    /// Most updates in one request, if any cap. Default: `None`, as in the API model.
    pub max_updates: Option<usize>,
    /// Most bytes of operations in one `GetDurableExecutionState` page or invocation
    /// event, besides the page size: an operation weighs the UTF-8 bytes of its result,
    /// error and input (at least 1), and a page always holds at least one operation, so a
    /// larger one travels alone. Checkpoint answers are cut by the page size only.
    /// Default: 5 MiB.
    pub max_page_bytes: usize,
}

const MIB: usize = 1024 * 1024;

impl Default for EmulatorLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 7 * MIB,
            max_payload_bytes: MIB,
            max_execution_payload_bytes: 6 * MIB,
            max_error_bytes: MIB,
            max_updates: None,
            max_page_bytes: 5 * MIB,
        }
    }
}

/// Operation types of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OpType {
    Execution,
    Context,
    Step,
    Wait,
    Callback,
    ChainedInvoke,
}

impl OpType {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "EXECUTION" => Self::Execution,
            "CONTEXT" => Self::Context,
            "STEP" => Self::Step,
            "WAIT" => Self::Wait,
            "CALLBACK" => Self::Callback,
            "CHAINED_INVOKE" => Self::ChainedInvoke,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Execution => "EXECUTION",
            Self::Context => "CONTEXT",
            Self::Step => "STEP",
            Self::Wait => "WAIT",
            Self::Callback => "CALLBACK",
            Self::ChainedInvoke => "CHAINED_INVOKE",
        }
    }
}

/// Update actions of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    Start,
    Succeed,
    Fail,
    Retry,
    Cancel,
}

impl Action {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "START" => Self::Start,
            "SUCCEED" => Self::Succeed,
            "FAIL" => Self::Fail,
            "RETRY" => Self::Retry,
            "CANCEL" => Self::Cancel,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Start => "START",
            Self::Succeed => "SUCCEED",
            Self::Fail => "FAIL",
            Self::Retry => "RETRY",
            Self::Cancel => "CANCEL",
        }
    }
}

/// Operation statuses of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Status {
    Started,
    Pending,
    Ready,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    Stopped,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Started => "STARTED",
            Self::Pending => "PENDING",
            Self::Ready => "READY",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::TimedOut => "TIMED_OUT",
            Self::Stopped => "STOPPED",
        }
    }

    /// Whether the operation reached an end state.
    pub(crate) fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::TimedOut | Self::Stopped
        )
    }
}

/// The rule a rejected request broke; its [`fmt::Display`] is the rule's short name,
/// which appears in the 400 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    MissingField,
    UnknownEnum,
    IdFormat,
    NameTooLong,
    SubTypeTooLong,
    PayloadTooLarge,
    ErrorTooLarge,
    TooManyUpdates,
    MultipleExecutionUpdates,
    ExecutionNotLast,
    Outcome,
    DuplicateId,
    Parent,
    TypeMismatch,
    Inconsistent,
    Transition,
    MissingOptions,
    ClientToken,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingField => "missing field",
            Self::UnknownEnum => "unknown enum value",
            Self::IdFormat => "id format",
            Self::NameTooLong => "name too long",
            Self::SubTypeTooLong => "subtype too long",
            Self::PayloadTooLarge => "payload too large",
            Self::ErrorTooLarge => "error too large",
            Self::TooManyUpdates => "too many updates",
            Self::MultipleExecutionUpdates => "one execution update per request",
            Self::ExecutionNotLast => "execution update must be last",
            Self::Outcome => "a SUCCEED carries no Error and a FAIL no Payload",
            Self::DuplicateId => "one update per id",
            Self::Parent => "parent must be a context",
            Self::TypeMismatch => "type mismatch",
            Self::Inconsistent => "differs from the operation",
            Self::Transition => "illegal status transition",
            Self::MissingOptions => "required options missing",
            Self::ClientToken => "client token format",
        })
    }
}

/// Why a request was refused: the rule, where (update index and `Id`), and details.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{rule}: {detail}", location(*.index, .id.as_deref()))]
pub(crate) struct RuleViolation {
    pub(crate) rule: Rule,
    pub(crate) index: Option<usize>,
    pub(crate) id: Option<String>,
    pub(crate) detail: String,
}

fn location(index: Option<usize>, id: Option<&str>) -> String {
    match (index, id) {
        (Some(i), Some(id)) => format!("update {i} (id {id:?}): "),
        (Some(i), None) => format!("update {i}: "),
        (None, _) => String::new(),
    }
}

/// What the validator needs to know about a stored operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpView<'e> {
    pub(crate) op_type: OpType,
    pub(crate) status: Status,
    pub(crate) parent_id: Option<&'e str>,
    pub(crate) name: Option<&'e str>,
    pub(crate) sub_type: Option<&'e str>,
}

#[cfg(test)]
impl OpView<'_> {
    /// A view with no `ParentId`, `Name` or `SubType`.
    fn bare(op_type: OpType, status: Status) -> Self {
        Self {
            op_type,
            status,
            parent_id: None,
            name: None,
            sub_type: None,
        }
    }
}

/// A checked update, with the status it leaves its operation in.
#[derive(Clone, Debug)]
pub(crate) struct ValidUpdate<'a> {
    pub(crate) index: usize,
    pub(crate) id: &'a str,
    pub(crate) op_type: OpType,
    pub(crate) action: Action,
    /// Status before this update (`None`: this update creates the operation).
    pub(crate) from: Option<Status>,
    pub(crate) to: Status,
    pub(crate) update: &'a OperationUpdate<'a>,
}

/// Whether `s` is a valid `Id`/`ParentId`: 1–64 chars of `[a-zA-Z0-9_-]`.
pub(crate) fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `s` is a valid `ClientToken`: 1–64 chars in `[\x21-\x7E]`.
pub(crate) fn is_valid_client_token(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

/// The status `action` moves an operation of `op_type` to from `from`, or why not.
pub(crate) fn transition(
    op_type: OpType,
    from: Option<Status>,
    action: Action,
) -> Result<Status, String> {
    use Action as A;
    use OpType as T;
    use Status as S;
    let refuse = |why: &str| {
        let from = from.map_or("absent", Status::as_str);
        Err(format!(
            "{} of a {} in status {from}: {why}",
            action.as_str(),
            op_type.as_str()
        ))
    };
    // The actions each type takes at all come first: a CALLBACK CANCEL is refused as an
    // action the type does not take, whatever the callback's status.
    if !takes(op_type, action) {
        return refuse(match (op_type, action) {
            (T::Execution, A::Start) => "the service starts the execution",
            (T::Wait | T::Callback | T::ChainedInvoke, _) => {
                "the service completes this operation type, not the client"
            }
            _ => "action not allowed for this type",
        });
    }
    match (op_type, action, from) {
        (T::Execution, A::Succeed, Some(S::Started)) => Ok(S::Succeeded),
        (T::Execution, A::Fail, Some(S::Started)) => Ok(S::Failed),
        (_, A::Start, None) => Ok(S::Started),
        (T::Step, A::Start, Some(S::Pending | S::Ready)) => Ok(S::Started),
        (_, A::Start, Some(s)) if s.is_finished() => refuse("the operation is finished"),
        (_, A::Start, Some(_)) => refuse("the operation is already started"),
        (_, _, None) => refuse("the operation was never started"),
        (_, _, Some(s)) if s.is_finished() => refuse("the operation is finished"),
        (T::Step, A::Succeed, Some(S::Started | S::Ready)) => Ok(S::Succeeded),
        (T::Step, A::Fail, Some(S::Started | S::Ready)) => Ok(S::Failed),
        (T::Step, A::Retry, Some(S::Started | S::Ready)) => Ok(S::Pending),
        (T::Step, _, Some(_)) => refuse("a retry is pending; START the next attempt first"),
        (T::Context, A::Succeed, Some(S::Started)) => Ok(S::Succeeded),
        (T::Context, A::Fail, Some(S::Started)) => Ok(S::Failed),
        (T::Wait, A::Cancel, Some(S::Started)) => Ok(S::Cancelled),
        _ => refuse("action not allowed in this status"),
    }
}

/// Which of `ParentId`, `Name` and `SubType` the update names differently from `current`:
/// a member left out is not compared, one present where the operation has none differs.
fn inconsistency(update: &OperationUpdate, current: &OpView<'_>) -> Option<String> {
    [
        ("ParentId", update.parent_id.as_deref(), current.parent_id),
        ("Name", update.name.as_deref(), current.name),
        ("SubType", update.sub_type.as_deref(), current.sub_type),
    ]
    .into_iter()
    .find_map(|(field, sent, held)| {
        let sent = sent?;
        (Some(sent) != held).then(|| match held {
            Some(held) => format!("{field} {sent:?} differs from the operation's {held:?}"),
            None => format!("{field} {sent:?} given, but the operation has none"),
        })
    })
}

/// Why a SUCCEED or FAIL carries the other outcome's member, if it does: a SUCCEED
/// carries its result, a FAIL its error.
fn misplaced_outcome(update: &OperationUpdate, action: Action) -> Option<&'static str> {
    match action {
        Action::Succeed => update.error.is_some().then_some("SUCCEED carries an Error"),
        Action::Fail => update.payload.is_some().then_some("FAIL carries a Payload"),
        _ => None,
    }
}

/// Which required options the update lacks, if any: a STEP RETRY names the delay
/// before the next attempt, a CHAINED_INVOKE START the function it invokes.
fn missing_options(
    update: &OperationUpdate,
    op_type: OpType,
    action: Action,
) -> Option<&'static str> {
    match (op_type, action) {
        (OpType::Step, Action::Retry) => update
            .step_options
            .as_ref()
            .and_then(|o| o.next_attempt_delay_seconds)
            .is_none()
            .then_some("RETRY of a STEP needs StepOptions.NextAttemptDelaySeconds"),
        (OpType::ChainedInvoke, Action::Start) => update
            .chained_invoke_options
            .as_ref()
            .and_then(|o| o.function_name.as_deref())
            .is_none_or(str::is_empty)
            .then_some("START of a CHAINED_INVOKE needs ChainedInvokeOptions.FunctionName"),
        _ => None,
    }
}

/// Whether a WAIT START asks for a positive wait; one without `WaitSeconds`, or with
/// zero or less, is due at once.
fn waits(update: &OperationUpdate) -> bool {
    update
        .wait_options
        .as_ref()
        .and_then(|w| w.wait_seconds)
        .is_some_and(|secs| secs > 0)
}

/// Whether a client may send `action` for an operation of `op_type` at all.
fn takes(op_type: OpType, action: Action) -> bool {
    use Action as A;
    match op_type {
        OpType::Step => matches!(action, A::Start | A::Succeed | A::Fail | A::Retry),
        OpType::Context => matches!(action, A::Start | A::Succeed | A::Fail),
        OpType::Wait => matches!(action, A::Start | A::Cancel),
        OpType::Callback | OpType::ChainedInvoke => action == A::Start,
        OpType::Execution => matches!(action, A::Succeed | A::Fail),
    }
}

/// Per-Id bookkeeping while walking one request.
struct Seen<'v> {
    /// The operation as the updates so far leave it.
    view: OpView<'v>,
    actions: Vec<Action>,
}

/// Checks `updates` against the rules, given the stored operations (`existing`) and
/// the Id of the execution's own operation.
///
/// # Errors
///
/// The first rule broken, in update order.
pub(crate) fn validate<'a, 'e, F>(
    updates: &'a [OperationUpdate<'a>],
    client_token: Option<&str>,
    existing: F,
    execution_op_id: &'a str,
    limits: &EmulatorLimits,
) -> Result<Vec<ValidUpdate<'a>>, RuleViolation>
where
    F: Fn(&str) -> Option<OpView<'e>>,
{
    let whole = |rule: Rule, detail: String| RuleViolation {
        rule,
        index: None,
        id: None,
        detail,
    };
    if let Some(token) = client_token
        && !is_valid_client_token(token)
    {
        return Err(whole(
            Rule::ClientToken,
            "ClientToken must be 1-64 characters in [\\x21-\\x7E]".to_owned(),
        ));
    }
    if let Some(max) = limits.max_updates
        && updates.len() > max
    {
        return Err(whole(
            Rule::TooManyUpdates,
            format!("{} updates, at most {max} allowed", updates.len()),
        ));
    }

    let mut seen: HashMap<&'a str, Seen, foldhash::fast::RandomState> = HashMap::default();
    let mut out = Vec::with_capacity(updates.len());
    let mut execution_seen = false;
    let last = updates.len().saturating_sub(1);

    for (index, update) in updates.iter().enumerate() {
        let fail = |rule: Rule, detail: String| RuleViolation {
            rule,
            index: Some(index),
            id: update.id.as_deref().map(str::to_owned),
            detail,
        };
        let id = update
            .id
            .as_deref()
            .ok_or_else(|| fail(Rule::MissingField, "Id is required".to_owned()))?;
        let type_str = update
            .op_type
            .as_deref()
            .ok_or_else(|| fail(Rule::MissingField, "Type is required".to_owned()))?;
        let action_str = update
            .action
            .as_deref()
            .ok_or_else(|| fail(Rule::MissingField, "Action is required".to_owned()))?;
        let op_type = OpType::parse(type_str)
            .ok_or_else(|| fail(Rule::UnknownEnum, format!("unknown Type {type_str:?}")))?;
        let action = Action::parse(action_str)
            .ok_or_else(|| fail(Rule::UnknownEnum, format!("unknown Action {action_str:?}")))?;

        if !is_valid_id(id) {
            return Err(fail(
                Rule::IdFormat,
                "Id must be 1-64 characters of [a-zA-Z0-9_-]".to_owned(),
            ));
        }
        if let Some(parent) = update.parent_id.as_deref()
            && !is_valid_id(parent)
        {
            return Err(fail(
                Rule::IdFormat,
                "ParentId must be 1-64 characters of [a-zA-Z0-9_-]".to_owned(),
            ));
        }
        if let Some(name) = update.name.as_deref()
            && name.chars().count() > 256
        {
            return Err(fail(
                Rule::NameTooLong,
                "Name must be at most 256 characters".to_owned(),
            ));
        }
        if let Some(sub) = update.sub_type.as_deref()
            && sub.chars().count() > 32
        {
            return Err(fail(
                Rule::SubTypeTooLong,
                "SubType must be at most 32 characters".to_owned(),
            ));
        }
        let max_payload = if op_type == OpType::Execution {
            limits.max_execution_payload_bytes
        } else {
            limits.max_payload_bytes
        };
        if let Some(payload) = update.payload.as_deref()
            && payload.len() > max_payload
        {
            return Err(fail(
                Rule::PayloadTooLarge,
                format!(
                    "Payload is {} bytes, at most {max_payload} allowed",
                    payload.len()
                ),
            ));
        }
        if let Some(error) = update.error.as_ref()
            && error.byte_len() > limits.max_error_bytes
        {
            return Err(fail(
                Rule::ErrorTooLarge,
                format!(
                    "Error is {} bytes, at most {} allowed",
                    error.byte_len(),
                    limits.max_error_bytes
                ),
            ));
        }

        if op_type == OpType::Execution {
            if execution_seen {
                return Err(fail(
                    Rule::MultipleExecutionUpdates,
                    "a request carries at most one EXECUTION update".to_owned(),
                ));
            }
            if index != last {
                return Err(fail(
                    Rule::ExecutionNotLast,
                    "the EXECUTION update must be the last update of the request".to_owned(),
                ));
            }
            execution_seen = true;
        }
        // The service does not check an EXECUTION update's Id: the official SDKs send an
        // oversized result under an Id of their own (docs/PROTOCOL.md, "Request rules"). The
        // update applies to the execution's own operation whatever it names.
        let sent_id = id;
        let id = if op_type == OpType::Execution {
            // Its own Id still counts once per request (rule 3), as the runner checks it.
            if seen.contains_key(sent_id) {
                return Err(fail(
                    Rule::DuplicateId,
                    "the EXECUTION update repeats the Id of an earlier update".to_owned(),
                ));
            }
            execution_op_id
        } else {
            id
        };

        // Current view of the operation: this request's effect first, then the store.
        let prior = seen.get(id);
        if let Some(prior) = prior {
            let start_then_one = matches!(prior.view.op_type, OpType::Step | OpType::Context)
                && prior.actions.as_slice() == [Action::Start]
                && action != Action::Start;
            if !start_then_one {
                return Err(fail(
                    Rule::DuplicateId,
                    "only a STEP or CONTEXT may repeat its Id, as START then one non-START update"
                        .to_owned(),
                ));
            }
        }
        let current = prior.map(|p| p.view).or_else(|| existing(id));

        if let Some(current) = current {
            if current.op_type != op_type {
                return Err(fail(
                    Rule::TypeMismatch,
                    format!(
                        "operation is a {}, update says {}",
                        current.op_type.as_str(),
                        op_type.as_str()
                    ),
                ));
            }
            // An EXECUTION update under an Id of its own names no stored operation to be
            // consistent with (the runner compares only an operation stored under that Id).
            let compared = op_type != OpType::Execution || sent_id == execution_op_id;
            if let Some(detail) = compared.then(|| inconsistency(update, &current)).flatten() {
                return Err(fail(Rule::Inconsistent, detail));
            }
        }

        if let Some(parent) = update.parent_id.as_deref() {
            let parent_type = seen
                .get(parent)
                .map(|p| p.view.op_type)
                .or_else(|| existing(parent).map(|p| p.op_type));
            match parent_type {
                Some(OpType::Context) => {}
                Some(other) => {
                    return Err(fail(
                        Rule::Parent,
                        format!("ParentId {parent:?} is a {}", other.as_str()),
                    ));
                }
                None => {
                    return Err(fail(
                        Rule::Parent,
                        format!(
                            "ParentId {parent:?} names no existing CONTEXT nor one started earlier in this request"
                        ),
                    ));
                }
            }
        }

        let from = current.map(|c| c.status);
        let mut to =
            transition(op_type, from, action).map_err(|why| fail(Rule::Transition, why))?;
        if let Some(detail) = misplaced_outcome(update, action) {
            return Err(fail(Rule::Outcome, detail.to_owned()));
        }
        if let Some(detail) = missing_options(update, op_type, action) {
            return Err(fail(Rule::MissingOptions, detail.to_owned()));
        }
        if op_type == OpType::Wait && action == Action::Start && !waits(update) {
            // Due the moment it starts: the service's side completes it in this request.
            to = Status::Succeeded;
        }

        let entry = seen.entry(id).or_insert_with(|| Seen {
            view: OpView {
                op_type,
                status: to,
                parent_id: update.parent_id.as_deref(),
                name: update.name.as_deref(),
                sub_type: update.sub_type.as_deref(),
            },
            actions: Vec::new(),
        });
        if let Some(current) = current {
            entry.view = current;
        }
        entry.view.status = to;
        entry.actions.push(action);

        out.push(ValidUpdate {
            index,
            id,
            op_type,
            action,
            from,
            to,
            update,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    fn upd(id: &str, ty: &str, action: &str) -> OperationUpdate<'static> {
        OperationUpdate {
            id: Some(id.to_owned().into()),
            op_type: Some(ty.to_owned().into()),
            action: Some(action.to_owned().into()),
            ..OperationUpdate::default()
        }
    }

    fn retry(id: &str, delay: i64) -> OperationUpdate<'static> {
        OperationUpdate {
            step_options: Some(super::super::wire::StepOptions {
                next_attempt_delay_seconds: Some(delay),
            }),
            ..upd(id, "STEP", "RETRY")
        }
    }

    fn run<'a>(updates: &'a [OperationUpdate<'a>]) -> Result<Vec<ValidUpdate<'a>>, RuleViolation> {
        validate(updates, None, |_| None, "exec", &EmulatorLimits::default())
    }

    /// Validates `updates` against one stored, STARTED operation of `op_type` named `held`.
    fn run_on<'a>(
        updates: &'a [OperationUpdate<'a>],
        held: &OpView<'static>,
    ) -> Result<Vec<ValidUpdate<'a>>, RuleViolation> {
        let held = *held;
        validate(
            updates,
            None,
            move |id| (id == "a").then_some(held),
            "exec",
            &EmulatorLimits::default(),
        )
    }

    #[test]
    fn each_type_takes_only_its_own_actions() {
        let allowed = [
            ("STEP", ["START", "SUCCEED", "FAIL", "RETRY"].as_slice()),
            ("CONTEXT", &["START", "SUCCEED", "FAIL"]),
            ("WAIT", &["START", "CANCEL"]),
            ("CALLBACK", &["START"]),
            ("CHAINED_INVOKE", &["START"]),
            ("EXECUTION", &["SUCCEED", "FAIL"]),
        ];
        for (ty, actions) in allowed {
            let op_type = OpType::parse(ty).unwrap();
            for action in ["START", "SUCCEED", "FAIL", "RETRY", "CANCEL"] {
                assert_eq!(
                    takes(op_type, Action::parse(action).unwrap()),
                    actions.contains(&action),
                    "{action} of a {ty}"
                );
            }
        }
    }

    #[test]
    fn a_callback_cancel_is_refused_whatever_the_callbacks_status() {
        for from in [None, Some(Status::Started)] {
            let why = transition(OpType::Callback, from, Action::Cancel).unwrap_err();
            assert!(
                why.contains("the service completes this operation type"),
                "{why}"
            );
        }
    }

    #[test]
    fn a_succeed_with_an_error_or_a_fail_with_a_payload_is_refused_even_after_a_start_in_the_request()
     {
        for ty in ["STEP", "CONTEXT"] {
            let mut succeed = upd("a", ty, "SUCCEED");
            succeed.error = Some(super::super::wire::ErrorObject::default());
            let mut fail = upd("a", ty, "FAIL");
            fail.payload = Some("".into());
            for (update, field) in [(succeed, "Error"), (fail, "Payload")] {
                let ups = [upd("a", ty, "START"), update];
                let err = run(&ups).unwrap_err();
                assert_eq!((err.rule, err.index), (Rule::Outcome, Some(1)), "{ty}");
                assert!(err.to_string().contains(field), "{err}");
            }
        }
    }

    #[test]
    fn a_retry_needs_the_delay_of_its_next_attempt() {
        for options in [None, Some(super::super::wire::StepOptions::default())] {
            let mut bare = upd("a", "STEP", "RETRY");
            bare.step_options = options;
            let ups = [upd("a", "STEP", "START"), bare];
            let err = run(&ups).unwrap_err();
            assert_eq!((err.rule, err.index), (Rule::MissingOptions, Some(1)));
            assert!(err.to_string().contains("StepOptions"), "{err}");
        }
        let ups = [upd("a", "STEP", "START"), retry("a", 0)];
        assert_eq!(
            run(&ups).unwrap()[1].to,
            Status::Pending,
            "with options: PENDING"
        );
    }

    #[test]
    fn a_chained_invoke_start_needs_the_function_it_invokes() {
        let mut named = upd("a", "CHAINED_INVOKE", "START");
        named.chained_invoke_options = Some(super::super::wire::ChainedInvokeOptions {
            function_name: Some("f".to_owned()),
            tenant_id: None,
        });
        assert!(
            run(std::slice::from_ref(&named)).is_ok(),
            "FunctionName given"
        );
        for options in [
            None,
            Some(super::super::wire::ChainedInvokeOptions::default()),
        ] {
            let mut bare = named.clone();
            bare.chained_invoke_options = options;
            let err = run(&[bare]).unwrap_err();
            assert_eq!(err.rule, Rule::MissingOptions);
            assert!(err.to_string().contains("FunctionName"), "{err}");
        }
    }

    #[test]
    fn metadata_is_compared_only_when_sent() {
        let held = OpView {
            parent_id: Some("p"),
            name: Some("n"),
            ..OpView::bare(OpType::Step, Status::Started)
        };
        let silent = [upd("a", "STEP", "SUCCEED")];
        assert!(
            run_on(&silent, &held).is_ok(),
            "members left out are not compared"
        );
        let mut same = upd("a", "STEP", "SUCCEED");
        same.name = Some("n".into());
        assert!(
            run_on(std::slice::from_ref(&same), &held).is_ok(),
            "the same Name"
        );
        let cases = [
            ("ParentId", "q", "differs from the operation's \"p\""),
            ("Name", "m", "differs from the operation's \"n\""),
            ("SubType", "x", "the operation has none"),
        ];
        for (field, value, expected) in cases {
            let mut update = upd("a", "STEP", "SUCCEED");
            let slot = match field {
                "ParentId" => &mut update.parent_id,
                "Name" => &mut update.name,
                _ => &mut update.sub_type,
            };
            *slot = Some(value.to_owned().into());
            let err = run_on(std::slice::from_ref(&update), &held).unwrap_err();
            assert_eq!(err.rule, Rule::Inconsistent, "{field}");
            let msg = err.to_string();
            assert!(msg.contains(field) && msg.contains(expected), "{msg}");
        }
    }

    #[test]
    fn metadata_is_compared_with_a_start_earlier_in_the_request() {
        let mut start = upd("a", "STEP", "START");
        start.name = Some("n".into());
        let mut succeed = upd("a", "STEP", "SUCCEED");
        succeed.name = Some("m".into());
        let err = run(&[start, succeed]).unwrap_err();
        assert_eq!((err.rule, err.index), (Rule::Inconsistent, Some(1)));
    }

    #[test]
    fn a_wait_of_no_time_succeeds_at_once() {
        for secs in [None, Some(0), Some(-3)] {
            let mut wait = upd("w", "WAIT", "START");
            wait.wait_options = secs.map(|s| super::super::wire::WaitOptions {
                wait_seconds: Some(s),
            });
            assert_eq!(run(&[wait]).unwrap()[0].to, Status::Succeeded, "{secs:?}");
        }
        let mut wait = upd("w", "WAIT", "START");
        wait.wait_options = Some(super::super::wire::WaitOptions {
            wait_seconds: Some(1),
        });
        assert_eq!(run(&[wait]).unwrap()[0].to, Status::Started, "a real wait");
    }

    #[test]
    fn an_execution_update_completes_the_execution_whatever_id_it_names() {
        for id in ["exec", "execution-result-1700000000000", "a1b2c3d4e5f6"] {
            let mut update = upd(id, "EXECUTION", "SUCCEED");
            update.payload = Some("\"big result\"".into());
            let ups = [update];
            let started = |op: &str| {
                (op == "exec").then_some(OpView::bare(OpType::Execution, Status::Started))
            };
            let ok = validate(&ups, None, started, "exec", &EmulatorLimits::default())
                .unwrap_or_else(|e| panic!("{id}: {}", e.detail));
            assert_eq!(
                ok[0].id, "exec",
                "{id}: applies to the execution's own operation"
            );
            assert_eq!(ok[0].to, Status::Succeeded);
        }
    }

    #[test]
    fn start_then_succeed_of_a_step_in_one_request_is_allowed() {
        let ups = [upd("a", "STEP", "START"), upd("a", "STEP", "SUCCEED")];
        let ok = run(&ups).unwrap();
        assert_eq!(ok[1].to, Status::Succeeded, "START+SUCCEED ends SUCCEEDED");
    }

    #[test]
    fn a_second_non_start_update_for_the_same_id_is_refused() {
        let ups = [
            upd("a", "STEP", "START"),
            retry("a", 0),
            upd("a", "STEP", "SUCCEED"),
        ];
        let err = run(&ups).unwrap_err();
        assert_eq!(err.rule, Rule::DuplicateId);
        assert_eq!(err.index, Some(2), "the third update breaks the rule");
    }

    #[test]
    fn the_execution_update_must_come_last() {
        let ups = [
            upd("exec", "EXECUTION", "SUCCEED"),
            upd("a", "STEP", "START"),
        ];
        assert_eq!(run(&ups).unwrap_err().rule, Rule::ExecutionNotLast);
    }

    #[test]
    fn a_parent_started_earlier_in_the_request_is_accepted() {
        let mut child = upd("c", "STEP", "START");
        child.parent_id = Some("ctx".into());
        let ups = [upd("ctx", "CONTEXT", "START"), child];
        assert!(run(&ups).is_ok(), "rule 4: parent started earlier is fine");
    }

    #[test]
    fn a_parent_started_later_in_the_request_is_refused() {
        let mut child = upd("c", "STEP", "START");
        child.parent_id = Some("ctx".into());
        let ups = [child, upd("ctx", "CONTEXT", "START")];
        let err = run(&ups).unwrap_err();
        assert_eq!((err.rule, err.index), (Rule::Parent, Some(0)));
    }

    #[test]
    fn succeed_of_a_never_started_step_is_refused() {
        let err = run(&[upd("a", "STEP", "SUCCEED")]).unwrap_err();
        assert_eq!(err.rule, Rule::Transition);
        assert!(err.to_string().contains("never started"), "{err}");
    }

    #[test]
    fn start_of_a_finished_step_is_refused() {
        let existing = |_: &str| Some(OpView::bare(OpType::Step, Status::Succeeded));
        let ups = [upd("a", "STEP", "START")];
        let err = validate(&ups, None, existing, "exec", &EmulatorLimits::default()).unwrap_err();
        assert_eq!(err.rule, Rule::Transition);
    }

    #[test]
    fn ids_outside_the_pattern_are_refused() {
        for bad in ["", "a b", "é", &"x".repeat(65)] {
            assert!(!is_valid_id(bad), "{bad:?} must be refused");
        }
        assert!(is_valid_id("Ab_9-"), "pattern chars accepted");
    }

    #[test]
    fn violation_message_names_index_id_and_rule() {
        let err = run(&[upd("a", "STEP", "SUCCEED")]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("update 0 (id \"a\"): illegal status transition"),
            "{msg}"
        );
    }
}
