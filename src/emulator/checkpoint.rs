//! The `CheckpointDurableExecution` procedure: parse the body, answer a retry from its
//! idempotency record, check the token, validate the whole request with
//! [`rules::validate`], apply it, and build and record the answer.
//!
//! # Invariants
//!
//! - A checkpoint is applied whole or not at all: [`rules::validate`] runs on the
//!   whole request before [`apply_update`] touches anything.
//! - Only an applied checkpoint replaces the execution's token; a refused request
//!   leaves it valid.
//! - The same `ClientToken` with the same inbound token gets the stored answer, byte for
//!   byte, and nothing is applied again; the same pair with different `Updates` is
//!   refused with 400. The record is written in the same critical section (the
//!   executions lock, see [`super::store`]) that applies the checkpoint.
//! - Every call to a known execution counts in `checkpoint_calls` and in exactly one
//!   of applied, replayed, rejected or faulted.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Arc;

use axum::body::Bytes;

use super::error::ApiError;
use super::execution::{Applied, Execution, StoredReply};
use super::faults::Roll;
use super::operation::{Op, now_secs, secs_after};
use super::paging::{self, Marker};
use super::rules::{self, Action, EmulatorLimits, OpType, Status, ValidUpdate};
use super::store::Executions;
use super::wire;

/// The body of a checkpoint request as the HTTP layer read it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Body<'a> {
    Complete(&'a [u8]),
    /// Refused at this many bytes, over the limit.
    TooLarge(usize),
}

/// A processed checkpoint: the answer, and whether the fault injector wants it lost.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) result: Result<Bytes, ApiError>,
    pub(crate) lose_answer: bool,
}

enum Processed {
    Applied(Bytes),
    Replayed(Bytes),
}

impl Executions {
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
        limits: &EmulatorLimits,
    ) -> Result<Processed, ApiError> {
        // Drawn before anything can refuse the call, so the ids and tokens a seed
        // gives do not depend on which calls were refused.
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
        if let Some(err) = roll.injected_error() {
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
}

/// Parses, checks and applies one checkpoint body against `exec`.
fn process(
    exec: &mut Execution,
    bytes: &[u8],
    new_token: String,
    callback_seed: u64,
    page_size: usize,
    limits: &EmulatorLimits,
) -> Result<Processed, ApiError> {
    let request = parse_request(bytes)?;
    let token = request
        .checkpoint_token
        .as_deref()
        .ok_or_else(|| ApiError::InvalidParameter("CheckpointToken is required".to_owned()))?;
    // An empty token is one the service never issued: stale, as the service answers it.
    if token.is_empty() {
        return Err(ApiError::InvalidToken("the token is empty"));
    }
    let print = fingerprint(request.updates.as_deref());

    // Idempotency comes before the token check: the replayed request's token was
    // consumed by its first, applied, attempt.
    let key = request
        .client_token
        .as_ref()
        .map(|ct| (ct.to_string(), token.to_owned()));
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
    let exec_op_id = exec.exec_op_id.clone();
    let held: &Execution = exec;
    let valid = rules::validate(
        updates,
        request.client_token.as_deref(),
        |id| held.view(id),
        &exec_op_id,
        limits,
    )?;

    let checkpoint = exec.applied_checkpoints.saturating_add(1);
    let now = now_secs();
    // The operations changed, in first-change order; `listed` keeps the order linear in the
    // request's size (a request may carry over 100,000 updates).
    let mut changed: Vec<usize> = Vec::new();
    let mut listed: HashSet<usize, foldhash::fast::RandomState> = HashSet::default();
    let client_token: Option<Arc<str>> = request.client_token.as_deref().map(Arc::from);
    let mut callback_rng = fastrand::Rng::with_seed(callback_seed);
    for update in &valid {
        let idx = apply_update(exec, update, now, &mut callback_rng);
        if listed.insert(idx) {
            changed.push(idx);
        }
        exec.applied.push(Applied {
            checkpoint,
            index: update.index,
            // As sent: an EXECUTION update may name an Id other than the operation it completes.
            id: update.update.id.as_deref().unwrap_or(update.id).to_owned(),
            op_type: update.op_type,
            action: update.action,
            client_token: client_token.clone(),
        });
    }
    for idx in std::mem::take(&mut exec.service_changes) {
        if listed.insert(idx) {
            changed.push(idx);
        }
    }
    let completes = valid
        .iter()
        .any(|u| u.op_type == OpType::Execution && u.to.is_finished());
    // The answer's marker is read with the token the answer carries.
    let tag = paging::token_tag(&new_token);
    if completes {
        exec.completed = true;
        exec.current_token = None;
    } else {
        exec.current_token = Some(new_token);
    }
    exec.applied_checkpoints = checkpoint;

    let first = Marker::Checkpoint {
        n: checkpoint,
        tag,
        offset: 0,
    };
    // Cut by the page size only: a checkpoint's answer is not byte-capped. An answer that ends
    // the chain carries no token to read further pages with, so it holds every change.
    let page_size = if completes { usize::MAX } else { page_size };
    let new_execution_state = paging::page(&exec.ops, &changed, first, page_size, usize::MAX);
    if new_execution_state.next_marker.is_some() {
        let _previous = exec.paged_changes.insert(checkpoint, changed);
    }
    let response = wire::CheckpointResponse {
        checkpoint_token: exec.current_token.clone(),
        new_execution_state,
    };
    let body: Bytes = serde_json::to_vec(&response)
        .map_err(|_| ApiError::Service("could not serialize the response"))?
        .into();
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
            op.parent_id = owned(wire.parent_id.as_deref());
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
        op.name = owned(wire.name.as_deref());
    }
    if op.sub_type.is_none() {
        op.sub_type = owned(wire.sub_type.as_deref());
    }
    // The EXECUTION operation's payload is the execution's input: its result goes to `result`.
    if wire.payload.is_some() && update.op_type != OpType::Execution {
        op.payload = owned(wire.payload.as_deref());
    }
    op.status = update.to;
    op.history.push(update.action.as_str().into());
    match update.action {
        Action::Start => {
            op.attempt = op.attempt.saturating_add(1);
            op.next_attempt_ts = None;
            if update.from.is_none() {
                op.start_ts = now;
                match update.op_type {
                    OpType::Wait => {
                        let secs = wire.wait_options.as_ref().and_then(|w| w.wait_seconds);
                        op.scheduled_end_ts = Some(secs_after(now, secs));
                        if update.to == Status::Succeeded {
                            // A wait of no time: the service's timer fires within the
                            // request that starts it (see `rules::waits`).
                            op.end_ts = Some(now);
                            op.history
                                .push(format!("service:{}", Status::Succeeded.as_str()).into());
                        }
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
            op.result = owned(wire.payload.as_deref());
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
                .and_then(|s| s.next_attempt_delay_seconds);
            op.next_attempt_ts = Some(secs_after(now, delay));
        }
        Action::Cancel => {
            op.end_ts = Some(now);
        }
    }
    idx
}

/// What the operation keeps of a string the request lent it.
fn owned(value: Option<&str>) -> Option<String> {
    value.map(str::to_owned)
}

/// Parses a checkpoint body straight into its typed shape: one pass, no intermediate
/// `serde_json::Value` (which cost a tree of maps and a copy of every string per update).
fn parse_request(bytes: &[u8]) -> Result<wire::CheckpointRequest<'_>, ApiError> {
    // Serde would also take a JSON array for a struct (as its fields in order): refuse
    // anything but an object up front, with the message a reader expects.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        return Err(ApiError::InvalidParameter(
            "malformed request body: expected a JSON object".to_owned(),
        ));
    }
    // Checked whole, in one pass: parsing text already known to be UTF-8 spares serde_json
    // checking each string it lends on its own. A body that is not UTF-8 somewhere is left to
    // serde_json to judge as it reads, as before: bytes in a member it skips do not matter.
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    };
    parsed.map_err(|e| {
        let what = if e.is_data() {
            "wrong shape"
        } else {
            "invalid JSON"
        };
        bad_body(what, &e)
    })
}

/// Identifies a request's `Updates` as parsed (members the emulator does not know are not
/// part of it), to tell a retry from a different request.
fn fingerprint(updates: Option<&[wire::OperationUpdate<'_>]>) -> u64 {
    // Fixed, not random: the fingerprint is stored and compared across calls.
    foldhash::quality::FixedState::default().hash_one(updates)
}

fn bad_body(what: &str, err: &serde_json::Error) -> ApiError {
    ApiError::InvalidParameter(format!("malformed request body: {what}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(
        id: &str,
        name: Option<&str>,
        payload: Option<&str>,
    ) -> wire::OperationUpdate<'static> {
        wire::OperationUpdate {
            id: Some(id.to_owned().into()),
            name: name.map(|name| name.to_owned().into()),
            payload: payload.map(|payload| payload.to_owned().into()),
            ..wire::OperationUpdate::default()
        }
    }

    #[test]
    fn checking_utf8_first_changes_no_verdict() {
        // The fast path (UTF-8 checked whole, then `from_str`) must judge every body as
        // serde_json's own reading of the bytes does, a body with bytes that are not UTF-8 in a
        // member it skips included.
        let bodies: [&[u8]; 6] = [
            br#"{"CheckpointToken":"t","Updates":[{"Id":"s1","Type":"STEP","Action":"START"}]}"#,
            b"{\"CheckpointToken\":\"t\",\"Zz\":\"caf\xe9\",\"Updates\":[]}",
            b"{\"CheckpointToken\":\"\xff\xfe\"}",
            b"{\"CheckpointToken\":\"t\",\"Updates\":[{\"Id\":\"s1\",\"Zz\":{\"a\":[\"\xc0\xaf\"]}}]}",
            br#"{"CheckpointToken":"t","Updates":[{"Id":5}]}"#,
            br#"{"CheckpointToken":"caf\u00e9 \"x\"","Updates":[]}"#,
        ];
        for body in bodies {
            let fast = parse_request(body).map(|r| format!("{r:?}"));
            let reference = serde_json::from_slice::<wire::CheckpointRequest<'_>>(body)
                .map(|r| format!("{r:?}"))
                .map_err(|e| e.to_string());
            match (fast, reference) {
                (Ok(fast), Ok(reference)) => assert_eq!(fast, reference),
                (Err(fast), Err(reference)) => {
                    assert!(
                        fast.to_string().ends_with(&reference),
                        "{fast} must report serde_json's {reference}"
                    );
                }
                (fast, reference) => panic!(
                    "{:?}: {fast:?} where serde_json reads {reference:?}",
                    String::from_utf8_lossy(body)
                ),
            }
        }
    }

    #[test]
    fn fingerprints_tell_a_retry_from_a_different_request() {
        let a = [update("s1", None, Some("42")), update("s2", None, None)];
        let same = a.clone();
        assert_eq!(fingerprint(Some(&a)), fingerprint(Some(&same)));
        let cases: [&[wire::OperationUpdate]; 5] = [
            &[update("s1", None, Some("43")), update("s2", None, None)],
            &[update("s2", None, None), update("s1", None, Some("42"))],
            &[update("s1", Some("42"), None), update("s2", None, None)],
            &[update("s1", None, Some("42"))],
            &[update("s1", None, Some("42")), update("s2", None, Some(""))],
        ];
        for (n, other) in cases.iter().enumerate() {
            assert_ne!(
                fingerprint(Some(&a)),
                fingerprint(Some(other)),
                "case {n} must differ"
            );
        }
        assert_ne!(fingerprint(None), fingerprint(Some(&[])));
    }
}
