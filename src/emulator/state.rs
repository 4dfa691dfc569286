//! What the emulated service holds: executions, their tokens, operations, history and
//! idempotency records; and the processing of the two calls against it.
//!
//! # Invariants
//!
//! - An execution has at most one valid token, `Execution::current_token`. Only an
//!   applied checkpoint replaces it (`Store::checkpoint`); a refused request leaves it.
//! - A checkpoint is applied whole or not at all: [`rules::validate`] runs on the
//!   whole request before `apply_update` touches anything.
//! - The idempotency record for (`ClientToken`, inbound token) is written in the same
//!   critical section that applies the checkpoint, so a retry can never apply twice.
//! - Operations are never removed, and `Execution::ops` only grows at the end, so an
//!   offset into it stays valid for paging.
//!
//! # Markers
//!
//! Markers are opaque to clients but have a fixed, documented form:
//!
//! - `c.<n>.<offset>`: the operations changed by applied checkpoint number `<n>` of this
//!   execution, from `<offset>` on. A checkpoint whose changes exceed the page size
//!   stores its list of changed operations and answers `NextMarker = c.<n>.<page>`, so
//!   the rest is fetched with `GetDurableExecutionState` using the **new** token. Pages
//!   show each operation's current state at fetch time.
//! - `s.<offset>`: all operations in creation order, from `<offset>` on. An invocation
//!   event ([`super::Emulator::invocation_event`]) holds the first page of these and
//!   answers the rest with `NextMarker = s.<page>`.
//!
//! Anything else, an unknown `<n>`, or an offset past the end is refused with 400.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::error::{ApiError, EmulatorError};
use super::faults::{FaultState, Roll};
use super::rules::{self, Action, Limits, OpType, OpView, Status, ValidUpdate};
use super::snapshot::{AppliedUpdate, ErrorRecord, ExecutionSnapshot, OperationRecord};
use super::wire;

/// `MaxItems` when absent or 0.
pub(crate) const DEFAULT_MAX_ITEMS: usize = 100;
/// Largest `MaxItems` the service accepts.
pub(crate) const MAX_MAX_ITEMS: usize = 1000;

/// A change the service makes on its own (timer fired, callback answered, invoked
/// function returned), applied with [`super::Emulator::complete_operation`]. The
/// EXECUTION operation is not completed this way (see
/// [`super::Emulator::stop_execution`]). The changed operation is reported in the next applied checkpoint's
/// `NewExecutionState`, which is how an empty checkpoint "fetches new state".
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Completion {
    /// The operation succeeded with this result (WAIT fired, callback succeeded...).
    Succeed(Option<String>),
    /// The operation failed with this error message.
    Fail(Option<String>),
    /// The operation timed out (callbacks, chained invokes).
    TimeOut,
    /// A STEP waiting for its retry (PENDING) may run its next attempt (READY); only
    /// for a PENDING STEP.
    Ready,
}

/// State shared by the server and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    faults: Mutex<FaultState>,
    pub(crate) omit_error_type_header: bool,
    pub(crate) limits: Limits,
}

impl Shared {
    pub(crate) fn new(store: Store, faults: FaultState, omit_header: bool, limits: Limits) -> Self {
        Self {
            store: Mutex::new(store),
            faults: Mutex::new(faults),
            omit_error_type_header: omit_header,
            limits,
        }
    }

    // A panic while holding a lock cannot leave the store half-written (a checkpoint
    // is validated before it is applied), so a poisoned lock is still usable.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultState> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The body of a checkpoint request as the HTTP layer read it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Body<'a> {
    Complete(&'a [u8]),
    /// Refused at this many bytes, over the limit.
    TooLarge(usize),
}

/// Query of `GetDurableExecutionState`, still raw.
#[derive(Clone, Debug, Default)]
pub(crate) struct StateQuery {
    pub(crate) checkpoint_token: Option<String>,
    pub(crate) marker: Option<String>,
    pub(crate) max_items: Option<String>,
}

/// A processed checkpoint: the answer, and whether the fault injector wants it lost.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) result: Result<Vec<u8>, ApiError>,
    pub(crate) lose_answer: bool,
}

#[derive(Clone, Debug)]
struct Op {
    id: String,
    parent_id: Option<String>,
    name: Option<String>,
    sub_type: Option<String>,
    op_type: OpType,
    status: Status,
    start_ts: f64,
    end_ts: Option<f64>,
    history: Vec<String>,
    payload: Option<String>,
    result: Option<String>,
    error: Option<wire::ErrorObject>,
    attempt: u32,
    next_attempt_ts: Option<f64>,
    scheduled_end_ts: Option<f64>,
    callback_id: Option<String>,
    replay_children: Option<bool>,
}

impl Op {
    fn new(id: &str, op_type: OpType, now: f64) -> Self {
        Self {
            id: id.to_owned(),
            parent_id: None,
            name: None,
            sub_type: None,
            op_type,
            status: Status::Started,
            start_ts: now,
            end_ts: None,
            history: Vec::new(),
            payload: None,
            result: None,
            error: None,
            attempt: 0,
            next_attempt_ts: None,
            scheduled_end_ts: None,
            callback_id: None,
            replay_children: None,
        }
    }

    fn to_wire(&self) -> wire::Operation {
        let mut op = wire::Operation {
            id: Some(self.id.clone()),
            parent_id: self.parent_id.clone(),
            name: self.name.clone(),
            op_type: Some(Cow::Borrowed(self.op_type.as_str())),
            sub_type: self.sub_type.clone(),
            start_timestamp: Some(self.start_ts),
            end_timestamp: self.end_ts,
            status: Some(Cow::Borrowed(self.status.as_str())),
            execution_details: None,
            context_details: None,
            step_details: None,
            wait_details: None,
            callback_details: None,
            chained_invoke_details: None,
        };
        let result = self.result.clone();
        let error = self.error.clone();
        match self.op_type {
            OpType::Execution => {
                op.execution_details = Some(wire::ExecutionDetails {
                    input_payload: self.payload.clone(),
                });
            }
            OpType::Context => {
                op.context_details = Some(wire::ContextDetails {
                    replay_children: self.replay_children,
                    result,
                    error,
                });
            }
            OpType::Step => {
                op.step_details = Some(wire::StepDetails {
                    attempt: self.attempt,
                    next_attempt_timestamp: self.next_attempt_ts,
                    result,
                    error,
                });
            }
            OpType::Wait => {
                op.wait_details = Some(wire::WaitDetails {
                    scheduled_end_timestamp: self.scheduled_end_ts,
                });
            }
            OpType::Callback => {
                op.callback_details = Some(wire::CallbackDetails {
                    callback_id: self.callback_id.clone(),
                    result,
                    error,
                });
            }
            OpType::ChainedInvoke => {
                op.chained_invoke_details = Some(wire::ChainedInvokeDetails { result, error });
            }
        }
        op
    }

    fn record(&self) -> OperationRecord {
        OperationRecord {
            id: self.id.clone(),
            parent_id: self.parent_id.clone(),
            name: self.name.clone(),
            sub_type: self.sub_type.clone(),
            op_type: self.op_type.as_str().to_owned(),
            status: self.status.as_str().to_owned(),
            history: self.history.clone(),
            payload: self.payload.clone(),
            result: self.result.clone(),
            error: self.error.as_ref().map(|e| ErrorRecord {
                error_type: e.error_type.clone(),
                error_message: e.error_message.clone(),
                error_data: e.error_data.clone(),
                stack_trace: e.stack_trace.clone().unwrap_or_default(),
            }),
            attempt: self.attempt,
        }
    }
}

#[derive(Clone, Debug)]
struct StoredReply {
    fingerprint: u64,
    body: Vec<u8>,
}

#[derive(Debug)]
struct Execution {
    arn: String,
    name: String,
    exec_op_id: String,
    current_token: Option<String>,
    completed: bool,
    ops: Vec<Op>,
    index: HashMap<String, usize>,
    applied: Vec<AppliedUpdate>,
    checkpoint_calls: u64,
    applied_checkpoints: u64,
    replayed: u64,
    rejected: u64,
    faulted: u64,
    lost_answers: u64,
    state_calls: u64,
    request_body_sizes: Vec<usize>,
    idempotency: HashMap<(String, String), StoredReply>,
    /// Changed-operation lists of the checkpoints that answered with a `NextMarker`.
    paged_changes: HashMap<u64, Vec<usize>>,
    /// Operations changed by the service since the last applied checkpoint.
    service_changes: Vec<usize>,
}

impl Execution {
    fn view(&self, id: &str) -> Option<OpView> {
        let op = self.ops.get(*self.index.get(id)?)?;
        Some(OpView {
            op_type: op.op_type,
            status: op.status,
        })
    }

    fn check_token(&self, token: &str) -> Result<(), ApiError> {
        match &self.current_token {
            Some(current) if current == token => Ok(()),
            Some(_) => Err(ApiError::InvalidToken(
                "the token is not the execution's current token",
            )),
            None if self.completed => Err(ApiError::InvalidToken("the execution is complete")),
            None => Err(ApiError::InvalidToken("the token was revoked")),
        }
    }

    fn snapshot(&self) -> ExecutionSnapshot {
        ExecutionSnapshot {
            arn: self.arn.clone(),
            name: self.name.clone(),
            execution_operation_id: self.exec_op_id.clone(),
            current_token: self.current_token.clone(),
            completed: self.completed,
            checkpoint_calls: self.checkpoint_calls,
            applied_checkpoints: self.applied_checkpoints,
            replayed_checkpoints: self.replayed,
            rejected_checkpoints: self.rejected,
            faulted_checkpoints: self.faulted,
            lost_answers: self.lost_answers,
            state_calls: self.state_calls,
            request_body_sizes: self.request_body_sizes.clone(),
            operations: self.ops.iter().map(Op::record).collect(),
            applied: self.applied.clone(),
        }
    }

    /// A page of `source` (indices into `ops`) from `offset`, at most `size` long.
    fn page(&self, source: &[usize], offset: usize, size: usize) -> Vec<wire::Operation> {
        source
            .iter()
            .skip(offset)
            .take(size)
            .filter_map(|&i| self.ops.get(i))
            .map(Op::to_wire)
            .collect()
    }
}

/// Where a marker points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    Checkpoint { n: u64, offset: usize },
    State { offset: usize },
}

impl Marker {
    fn parse(s: &str) -> Option<Self> {
        let digits = |p: &str| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        };
        let mut parts = s.split('.');
        let marker = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("c"), Some(n), Some(offset), None) => Self::Checkpoint {
                n: digits(n).and_then(|n: usize| u64::try_from(n).ok())?,
                offset: digits(offset)?,
            },
            (Some("s"), Some(offset), None, None) => Self::State {
                offset: digits(offset)?,
            },
            _ => return None,
        };
        Some(marker)
    }

    fn render(self) -> String {
        match self {
            Self::Checkpoint { n, offset } => format!("c.{n}.{offset}"),
            Self::State { offset } => format!("s.{offset}"),
        }
    }
}

/// Parses `MaxItems`: absent or 0 means [`DEFAULT_MAX_ITEMS`], 1–1000 is taken as is.
pub(crate) fn parse_max_items(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(DEFAULT_MAX_ITEMS);
    };
    match raw.parse::<usize>() {
        Ok(0) => Ok(DEFAULT_MAX_ITEMS),
        Ok(n) if n <= MAX_MAX_ITEMS => Ok(n),
        _ => Err(ApiError::InvalidParameter(format!(
            "MaxItems must be an integer between 1 and {MAX_MAX_ITEMS}, got {raw:?}"
        ))),
    }
}

fn now_secs() -> f64 {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    // Millisecond precision; the f64 conversion is exact far beyond any real date.
    #[allow(
        clippy::cast_precision_loss,
        reason = "milliseconds since 1970 fit in f64"
    )]
    let secs = millis as f64 / 1000.0;
    secs
}

/// Epoch seconds (held with millisecond precision) as whole epoch milliseconds.
fn secs_to_millis(secs: f64) -> i64 {
    // Rounding undoes the binary fraction of `millis / 1000.0`; far below i64's range.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "epoch milliseconds fit in i64"
    )]
    let millis = (secs * 1000.0).round() as i64;
    millis
}

fn fingerprint(value: &serde_json::Value) -> u64 {
    let mut h = DefaultHasher::new();
    value.get("Updates").map(ToString::to_string).hash(&mut h);
    h.finish()
}

fn bad_body(what: &str, err: &serde_json::Error) -> ApiError {
    ApiError::InvalidParameter(format!("malformed request body: {what}: {err}"))
}

const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// All executions, plus the generator for ids and tokens.
#[derive(Debug)]
pub(crate) struct Store {
    executions: HashMap<String, Execution>,
    rng: fastrand::Rng,
    serial: u64,
    page_size: usize,
    limits: Limits,
}

impl Store {
    pub(crate) fn new(seed: u64, page_size: usize, limits: Limits) -> Self {
        Self {
            executions: HashMap::new(),
            // Distinct from the fault generator so ids do not shift fault draws.
            rng: fastrand::Rng::with_seed(seed ^ 0x9E37_79B9_7F4A_7C15),
            serial: 0,
            page_size: page_size.max(1),
            limits,
        }
    }

    /// A fresh token: a serial (unique) then random characters, all in the base64
    /// alphabet the service uses, none needing URL escaping.
    fn new_token(&mut self) -> String {
        self.serial = self.serial.wrapping_add(1);
        let mut token = format!("{:012X}", self.serial);
        for _ in 0..36 {
            let i = self.rng.usize(..TOKEN_ALPHABET.len());
            token.push(char::from(TOKEN_ALPHABET.get(i).copied().unwrap_or(b'A')));
        }
        token
    }

    fn new_uuid(&mut self) -> String {
        let a = self.rng.u128(..);
        let hex = format!("{a:032x}");
        let part = |r: std::ops::Range<usize>| hex.get(r).unwrap_or_default().to_owned();
        format!(
            "{}-{}-{}-{}-{}",
            part(0..8),
            part(8..12),
            part(12..16),
            part(16..20),
            part(20..32)
        )
    }

    pub(crate) fn start_execution(&mut self, name: &str, input: Option<&str>) -> (String, String) {
        let id = self.new_uuid();
        let arn = format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{name}:$LATEST/durable-execution/{name}/{id}"
        );
        let token = self.new_token();
        let mut exec_op = Op::new(&id, OpType::Execution, now_secs());
        exec_op.name = Some(name.to_owned());
        exec_op.payload = input.map(str::to_owned);
        let execution = Execution {
            arn: arn.clone(),
            name: name.to_owned(),
            exec_op_id: id.clone(),
            current_token: Some(token.clone()),
            completed: false,
            ops: vec![exec_op],
            index: HashMap::from([(id, 0)]),
            applied: Vec::new(),
            checkpoint_calls: 0,
            applied_checkpoints: 0,
            replayed: 0,
            rejected: 0,
            faulted: 0,
            lost_answers: 0,
            state_calls: 0,
            request_body_sizes: Vec::new(),
            idempotency: HashMap::new(),
            paged_changes: HashMap::new(),
            service_changes: Vec::new(),
        };
        let _previous = self.executions.insert(arn.clone(), execution);
        (arn, token)
    }

    pub(crate) fn snapshot(&self, arn: &str) -> Option<ExecutionSnapshot> {
        self.executions.get(arn).map(Execution::snapshot)
    }

    /// The event the service would send an invocation of the execution now: its current
    /// token and the first page of all its operations (creation order, timestamps in epoch
    /// milliseconds), with a `s.<offset>` marker when more remain. `None` for an unknown
    /// ARN or an execution without a valid token (completed or revoked).
    pub(crate) fn invocation_event(
        &self,
        arn: &str,
    ) -> Option<crate::wire::Invocation<crate::wire::Operation<i64>>> {
        let exec = self.executions.get(arn)?;
        let token = exec.current_token.clone()?;
        let all: Vec<usize> = (0..exec.ops.len()).collect();
        let operations = exec
            .page(&all, 0, self.page_size)
            .into_iter()
            .map(|op| op.map_timestamps(secs_to_millis))
            .collect();
        let next_marker = (all.len() > self.page_size).then(|| {
            Marker::State {
                offset: self.page_size,
            }
            .render()
        });
        Some(crate::wire::Invocation {
            durable_execution_arn: Some(exec.arn.clone()),
            checkpoint_token: Some(token),
            initial_execution_state: Some(crate::wire::OperationsPage {
                operations,
                next_marker,
            }),
        })
    }

    pub(crate) fn arns(&self) -> Vec<String> {
        let mut arns: Vec<String> = self.executions.keys().cloned().collect();
        arns.sort();
        arns
    }

    pub(crate) fn rotate_token(&mut self, arn: &str) -> Option<String> {
        if self.executions.get(arn)?.completed {
            return None;
        }
        let token = self.new_token();
        let exec = self.executions.get_mut(arn)?;
        exec.current_token = Some(token.clone());
        Some(token)
    }

    pub(crate) fn revoke_token(&mut self, arn: &str) -> bool {
        self.executions
            .get_mut(arn)
            .map(|e| e.current_token = None)
            .is_some()
    }

    pub(crate) fn stop_execution(&mut self, arn: &str) -> bool {
        let Some(exec) = self.executions.get_mut(arn) else {
            return false;
        };
        let now = now_secs();
        if let Some(op) = exec.ops.first_mut()
            && !op.status.is_finished()
        {
            op.status = Status::Stopped;
            op.end_ts = Some(now);
            op.history.push("service:STOPPED".to_owned());
        }
        exec.completed = true;
        exec.current_token = None;
        true
    }

    pub(crate) fn complete_operation(
        &mut self,
        arn: &str,
        id: &str,
        completion: Completion,
    ) -> Result<(), EmulatorError> {
        let exec = self
            .executions
            .get_mut(arn)
            .ok_or_else(|| EmulatorError::UnknownExecution(arn.to_owned()))?;
        let idx = *exec
            .index
            .get(id)
            .ok_or_else(|| EmulatorError::UnknownOperation(id.to_owned()))?;
        let op = exec
            .ops
            .get_mut(idx)
            .ok_or_else(|| EmulatorError::UnknownOperation(id.to_owned()))?;
        if op.status.is_finished() {
            return Err(EmulatorError::AlreadyFinished(id.to_owned()));
        }
        let ready_misused = completion == Completion::Ready
            && !(op.op_type == OpType::Step && op.status == Status::Pending);
        if op.op_type == OpType::Execution || ready_misused {
            return Err(EmulatorError::NotApplicable(id.to_owned()));
        }
        let now = now_secs();
        op.status = match completion {
            Completion::Succeed(result) => {
                op.result = result;
                Status::Succeeded
            }
            Completion::Fail(message) => {
                op.error = Some(wire::ErrorObject {
                    error_message: message,
                    ..wire::ErrorObject::default()
                });
                Status::Failed
            }
            Completion::TimeOut => Status::TimedOut,
            Completion::Ready => Status::Ready,
        };
        if op.status.is_finished() {
            op.end_ts = Some(now);
        }
        op.history.push(format!("service:{}", op.status.as_str()));
        exec.service_changes.push(idx);
        Ok(())
    }

    /// Processes one `CheckpointDurableExecution` call. See the module invariants.
    pub(crate) fn checkpoint(&mut self, arn: &str, body: Body<'_>, roll: &Roll) -> Reply {
        let page_size = self.page_size;
        let limits = self.limits;
        match self.checkpoint_inner(arn, body, roll, page_size, &limits) {
            Ok(Processed::Applied(body) | Processed::Replayed(body)) => {
                if roll.lose_answer
                    && let Some(exec) = self.executions.get_mut(arn)
                {
                    exec.lost_answers = exec.lost_answers.saturating_add(1);
                }
                Reply {
                    result: Ok(body),
                    lose_answer: roll.lose_answer,
                }
            }
            Err(err) => Reply {
                result: Err(err),
                lose_answer: false,
            },
        }
    }

    fn checkpoint_inner(
        &mut self,
        arn: &str,
        body: Body<'_>,
        roll: &Roll,
        page_size: usize,
        limits: &Limits,
    ) -> Result<Processed, ApiError> {
        let new_token = self.new_token();
        let callback_seed = self.rng.u64(..);
        let exec = self
            .executions
            .get_mut(arn)
            .ok_or_else(|| ApiError::NotFound(arn.to_owned()))?;
        exec.checkpoint_calls = exec.checkpoint_calls.saturating_add(1);
        let bytes = match body {
            Body::Complete(bytes) => {
                exec.request_body_sizes.push(bytes.len());
                bytes
            }
            Body::TooLarge(seen) => {
                exec.request_body_sizes.push(seen);
                exec.rejected = exec.rejected.saturating_add(1);
                return Err(ApiError::TooLarge(limits.max_request_bytes));
            }
        };
        if let Some(err) = injected(roll) {
            exec.faulted = exec.faulted.saturating_add(1);
            return Err(err);
        }
        let result = process(exec, bytes, new_token, callback_seed, page_size, limits);
        match &result {
            Ok(Processed::Applied(_)) => {}
            Ok(Processed::Replayed(_)) => exec.replayed = exec.replayed.saturating_add(1),
            Err(_) => exec.rejected = exec.rejected.saturating_add(1),
        }
        result
    }

    /// Processes one `GetDurableExecutionState` call.
    pub(crate) fn state(
        &mut self,
        arn: &str,
        query: &StateQuery,
        roll: &Roll,
    ) -> Result<Vec<u8>, ApiError> {
        let exec = self
            .executions
            .get_mut(arn)
            .ok_or_else(|| ApiError::NotFound(arn.to_owned()))?;
        exec.state_calls = exec.state_calls.saturating_add(1);
        if let Some(err) = injected(roll) {
            return Err(err);
        }
        let token = query
            .checkpoint_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::InvalidParameter("CheckpointToken is required".to_owned()))?;
        exec.check_token(token)?;
        let max_items = parse_max_items(query.max_items.as_deref())?;
        let marker = match query.marker.as_deref().filter(|m| !m.is_empty()) {
            None => Marker::State { offset: 0 },
            Some(raw) => Marker::parse(raw)
                .ok_or_else(|| ApiError::InvalidParameter(format!("invalid marker {raw:?}")))?,
        };
        let all: Vec<usize>;
        let (source, offset): (&[usize], usize) = match marker {
            Marker::State { offset } => {
                all = (0..exec.ops.len()).collect();
                (&all, offset)
            }
            Marker::Checkpoint { n, offset } => {
                let changes = exec.paged_changes.get(&n).ok_or_else(|| {
                    ApiError::InvalidParameter(format!(
                        "invalid marker {:?}: unknown page",
                        marker.render()
                    ))
                })?;
                (changes.as_slice(), offset)
            }
        };
        if offset > source.len() {
            return Err(ApiError::InvalidParameter(format!(
                "invalid marker {:?}: past the end",
                marker.render()
            )));
        }
        let operations = exec.page(source, offset, max_items);
        let end = offset.saturating_add(operations.len());
        let next_marker = (end < source.len()).then(|| match marker {
            Marker::State { .. } => Marker::State { offset: end }.render(),
            Marker::Checkpoint { n, .. } => Marker::Checkpoint { n, offset: end }.render(),
        });
        let page = wire::OperationsPage {
            operations,
            next_marker,
        };
        serde_json::to_vec(&page).map_err(|_| ApiError::Service("could not serialize the response"))
    }
}

/// The injected error for this roll, if any: throttling wins over a server error.
fn injected(roll: &Roll) -> Option<ApiError> {
    if roll.throttle {
        Some(ApiError::TooManyRequests {
            retry_after_secs: roll.retry_after_secs,
        })
    } else if roll.server_error {
        Some(ApiError::Service("internal failure (injected)"))
    } else {
        None
    }
}

enum Processed {
    Applied(Vec<u8>),
    Replayed(Vec<u8>),
}

/// Parses, checks and applies one checkpoint body against `exec`.
fn process(
    exec: &mut Execution,
    bytes: &[u8],
    new_token: String,
    callback_seed: u64,
    page_size: usize,
    limits: &Limits,
) -> Result<Processed, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad_body("invalid JSON", &e))?;
    if !value.is_object() {
        return Err(ApiError::InvalidParameter(
            "malformed request body: expected a JSON object".to_owned(),
        ));
    }
    let request =
        wire::CheckpointRequest::deserialize(&value).map_err(|e| bad_body("wrong shape", &e))?;
    let token = request
        .checkpoint_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::InvalidParameter("CheckpointToken is required".to_owned()))?;
    let print = fingerprint(&value);

    // Idempotency comes before the token check: the replayed request's token was
    // consumed by its first, applied, attempt.
    let key = request
        .client_token
        .as_ref()
        .map(|ct| (ct.clone(), token.to_owned()));
    if let Some(key) = &key
        && let Some(stored) = exec.idempotency.get(key)
    {
        if stored.fingerprint == print {
            return Ok(Processed::Replayed(stored.body.clone()));
        }
        return Err(ApiError::InvalidParameter(format!(
            "ClientToken {:?} was already used with a different request",
            key.0
        )));
    }
    exec.check_token(token)?;

    let updates = request.updates.as_deref().unwrap_or_default();
    let valid = rules::validate(
        updates,
        request.client_token.as_deref(),
        |id| exec.view(id),
        &exec.exec_op_id,
        limits,
    )?;

    let checkpoint = exec.applied_checkpoints.saturating_add(1);
    let now = now_secs();
    let mut changed: Vec<usize> = Vec::new();
    let mut callback_rng = fastrand::Rng::with_seed(callback_seed);
    for update in &valid {
        let idx = apply_update(exec, update, now, &mut callback_rng);
        if !changed.contains(&idx) {
            changed.push(idx);
        }
        exec.applied.push(AppliedUpdate {
            checkpoint,
            index: update.index,
            id: update.id.to_owned(),
            op_type: update.op_type.as_str().to_owned(),
            action: update.action.as_str().to_owned(),
            client_token: request.client_token.clone(),
        });
    }
    for idx in std::mem::take(&mut exec.service_changes) {
        if !changed.contains(&idx) {
            changed.push(idx);
        }
    }
    let completes = valid
        .iter()
        .any(|u| u.op_type == OpType::Execution && u.to.is_finished());
    if completes {
        exec.completed = true;
        exec.current_token = None;
    } else {
        exec.current_token = Some(new_token);
    }
    exec.applied_checkpoints = checkpoint;

    let operations = exec.page(&changed, 0, page_size);
    let next_marker = (changed.len() > page_size).then(|| {
        Marker::Checkpoint {
            n: checkpoint,
            offset: page_size,
        }
        .render()
    });
    if next_marker.is_some() {
        let _previous = exec.paged_changes.insert(checkpoint, changed);
    }
    let response = wire::CheckpointResponse {
        checkpoint_token: exec.current_token.clone(),
        new_execution_state: wire::OperationsPage {
            operations,
            next_marker,
        },
    };
    let body = serde_json::to_vec(&response)
        .map_err(|_| ApiError::Service("could not serialize the response"))?;
    if let Some(key) = key {
        let _previous = exec.idempotency.insert(
            key,
            StoredReply {
                fingerprint: print,
                body: body.clone(),
            },
        );
    }
    Ok(Processed::Applied(body))
}

/// Applies one validated update; returns the index of the operation it touched.
fn apply_update(
    exec: &mut Execution,
    update: &ValidUpdate<'_>,
    now: f64,
    rng: &mut fastrand::Rng,
) -> usize {
    let wire = update.update;
    let idx = match exec.index.get(update.id) {
        Some(&idx) => idx,
        None => {
            let mut op = Op::new(update.id, update.op_type, now);
            op.parent_id = wire.parent_id.clone();
            let idx = exec.ops.len();
            exec.ops.push(op);
            let _previous = exec.index.insert(update.id.to_owned(), idx);
            idx
        }
    };
    let Some(op) = exec.ops.get_mut(idx) else {
        return idx;
    };
    if op.name.is_none() {
        op.name = wire.name.clone();
    }
    if op.sub_type.is_none() {
        op.sub_type = wire.sub_type.clone();
    }
    if wire.payload.is_some() {
        op.payload = wire.payload.clone();
    }
    op.status = update.to;
    op.history.push(update.action.as_str().to_owned());
    match update.action {
        Action::Start => {
            op.attempt = op.attempt.saturating_add(1);
            op.next_attempt_ts = None;
            if update.from.is_none() {
                op.start_ts = now;
                match update.op_type {
                    OpType::Wait => {
                        let secs = wire
                            .wait_options
                            .as_ref()
                            .and_then(|w| w.wait_seconds)
                            .unwrap_or(0)
                            .max(0);
                        op.scheduled_end_ts = Some(now + secs_f64(secs));
                    }
                    OpType::Callback => {
                        op.callback_id = Some(format!("cb-{:016x}", rng.u64(..)));
                    }
                    OpType::Context => {
                        op.replay_children = wire
                            .context_options
                            .as_ref()
                            .and_then(|c| c.replay_children);
                    }
                    _ => {}
                }
            }
        }
        Action::Succeed => {
            op.end_ts = Some(now);
            op.result = wire.payload.clone();
        }
        Action::Fail => {
            op.end_ts = Some(now);
            op.error = wire.error.clone();
        }
        Action::Retry => {
            op.error = wire.error.clone();
            let delay = wire
                .step_options
                .as_ref()
                .and_then(|s| s.next_attempt_delay_seconds)
                .unwrap_or(0)
                .max(0);
            op.next_attempt_ts = Some(now + secs_f64(delay));
        }
        Action::Cancel => {
            op.end_ts = Some(now);
        }
    }
    idx
}

fn secs_f64(secs: i64) -> f64 {
    // Any delay a client may ask for is far below 2^53 seconds.
    #[allow(
        clippy::cast_precision_loss,
        reason = "delays are far below 2^53 seconds"
    )]
    let f = secs as f64;
    f
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_garbage_is_refused() {
        for m in [
            Marker::Checkpoint { n: 3, offset: 10 },
            Marker::State { offset: 0 },
        ] {
            assert_eq!(
                Marker::parse(&m.render()),
                Some(m),
                "render then parse is identity"
            );
        }
        for bad in [
            "", "c.1", "s.", "s.-1", "x.1", "c.1.2.3", "s.1e3", "s. 1", "s.+1",
        ] {
            assert_eq!(Marker::parse(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn max_items_defaults_and_bounds() {
        assert_eq!(parse_max_items(None).unwrap(), 100, "absent means 100");
        assert_eq!(parse_max_items(Some("0")).unwrap(), 100, "0 means 100");
        assert_eq!(parse_max_items(Some("1000")).unwrap(), 1000);
        for bad in ["1001", "-1", "x", "1.5"] {
            assert!(
                parse_max_items(Some(bad)).is_err(),
                "{bad:?} is out of range"
            );
        }
    }

    #[test]
    fn an_operation_is_written_with_every_member_in_the_sdks_order() {
        let mut op = Op::new("s", OpType::Step, 1.5);
        op.parent_id = Some("p".to_owned());
        op.name = Some("n".to_owned());
        op.sub_type = Some("x".to_owned());
        op.status = Status::Succeeded;
        op.end_ts = Some(2.25);
        op.attempt = 1;
        op.next_attempt_ts = Some(3.0);
        op.result = Some("r".to_owned());
        op.error = Some(wire::ErrorObject {
            error_message: Some("m".to_owned()),
            error_type: Some("t".to_owned()),
            ..wire::ErrorObject::default()
        });
        assert_eq!(
            serde_json::to_string(&op.to_wire()).unwrap(),
            r#"{"Id":"s","ParentId":"p","Name":"n","Type":"STEP","SubType":"x","StartTimestamp":1.5,"EndTimestamp":2.25,"Status":"SUCCEEDED","StepDetails":{"Attempt":1,"NextAttemptTimestamp":3.0,"Result":"r","Error":{"ErrorMessage":"m","ErrorType":"t"}}}"#,
            "responses carry epoch seconds and the SDK's member order, absent members left out"
        );
        let event_op = op.to_wire().map_timestamps(secs_to_millis);
        assert_eq!(
            serde_json::to_value(&event_op).unwrap()["StartTimestamp"],
            1500,
            "an invocation event carries whole epoch milliseconds"
        );
    }

    #[test]
    fn tokens_are_unique_and_in_the_base64_alphabet() {
        let mut store = Store::new(1, 10, Limits::default());
        let a = store.new_token();
        let b = store.new_token();
        assert_ne!(a, b, "every token is new");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
    }
}
