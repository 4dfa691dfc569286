//! The client tokens a [`BatchingBackend`](super::BatchingBackend) remembers, so that a call
//! repeated with the same client token is the same call, as the service treats it.
//!
//! Code written against the trait retries a call that timed out or failed on its side with the
//! client token it passed first, counting on the service to apply the call once. Through the
//! batcher, which gives every request a client token of its own, that promise has to be kept
//! here: the first call's outcome is remembered under its client token with its updates, and a
//! repeat of the same updates gets that outcome (waiting for it while the first call runs, even
//! when its caller stopped listening), applying nothing again. The same client token with other
//! updates is refused, as the service refuses it.
//!
//! # Invariants
//!
//! - **One call per client token.** While a token is remembered, its updates are queued at most
//!   once: [`ClientTokens::call`] either returns the remembered call or records the new one,
//!   under one lock.
//! - **Bounded.** At most [`MAX_REMEMBERED_CALLS`] tokens and [`MAX_REMEMBERED_BYTES`] of their
//!   updates (by request bytes) and outcomes (the operations an acknowledgement holds, weighed
//!   by [`outcome_bytes`], counted once the call is answered) are held; past either, the oldest
//!   are forgotten first. The newest is always held, whatever its size.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use aws_sdk_lambda::types::{ErrorObject, Operation, OperationUpdate};
use futures::future::{BoxFuture, Shared};

use super::ack::CheckpointAck;
use crate::error::BatcherError;
use crate::size::update_bytes;

/// How many client tokens are remembered.
pub(crate) const MAX_REMEMBERED_CALLS: usize = 1024;

/// How many bytes of remembered updates (counted as request bytes) are held at most.
pub(crate) const MAX_REMEMBERED_BYTES: usize = 16 * 1024 * 1024;

/// One call's outcome, which every caller presenting its client token shares.
pub(crate) type SharedCall = Shared<BoxFuture<'static, Result<CheckpointAck, BatcherError>>>;

/// What a client token is bound to.
struct Remembered {
    updates: Vec<OperationUpdate>,
    bytes: usize,
    call: SharedCall,
    /// Which recording of the token this is, so that a late [`ClientTokens::settle`] of a
    /// forgotten call does not count against a newer one under the same token.
    generation: u64,
}

/// The remembered calls, oldest first.
#[derive(Default)]
struct Calls {
    by_token: HashMap<String, Remembered>,
    order: VecDeque<String>,
    bytes: usize,
    generations: u64,
}

impl Calls {
    /// Forgets the oldest calls until both bounds hold, keeping the newest whatever its size.
    fn evict(&mut self) {
        while self.order.len() > 1
            && (self.order.len() > MAX_REMEMBERED_CALLS || self.bytes > MAX_REMEMBERED_BYTES)
        {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(forgotten) = self.by_token.remove(&oldest) {
                self.bytes -= forgotten.bytes;
            }
        }
    }
}

/// What [`ClientTokens::call`] found.
pub(crate) enum Lookup {
    /// The call to await: the first one under this client token, or the one just recorded.
    Call(SharedCall),
    /// The client token was used for other updates.
    Conflict,
}

/// The bounded record of calls by client token.
#[derive(Default)]
pub(crate) struct ClientTokens {
    calls: Mutex<Calls>,
}

impl std::fmt::Debug for ClientTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ClientTokens")
            .field("remembered", &calls.order.len())
            .field("bytes", &calls.bytes)
            .finish()
    }
}

impl ClientTokens {
    /// The call bound to `client_token` when it was made with these `updates`; otherwise, when
    /// the token is new, records and returns `start(updates, generation)`, the call, which
    /// [`settle`](Self::settle)s `generation` once answered.
    pub(crate) fn call(
        &self,
        client_token: &str,
        updates: Vec<OperationUpdate>,
        start: impl FnOnce(Vec<OperationUpdate>, u64) -> SharedCall,
    ) -> Lookup {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(first) = calls.by_token.get(client_token) {
            return if first.updates == updates {
                Lookup::Call(first.call.clone())
            } else {
                Lookup::Conflict
            };
        }
        let bytes = updates.iter().map(update_bytes).sum::<usize>() + client_token.len();
        calls.generations += 1;
        let generation = calls.generations;
        let call = start(updates.clone(), generation);
        let remembered = Remembered {
            updates,
            bytes,
            call: call.clone(),
            generation,
        };
        calls.bytes += bytes;
        calls.order.push_back(client_token.to_owned());
        let _ = calls.by_token.insert(client_token.to_owned(), remembered);
        calls.evict();
        Lookup::Call(call)
    }

    /// Counts the outcome of the call recorded as `generation` under `client_token`, `bytes`
    /// by [`outcome_bytes`], against the bound, now that it is known.
    pub(crate) fn settle(&self, client_token: &str, generation: u64, bytes: usize) {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(remembered) = calls.by_token.get_mut(client_token) else {
            return;
        };
        if remembered.generation != generation {
            return;
        }
        remembered.bytes += bytes;
        calls.bytes += bytes;
        calls.evict();
    }
}

/// What a remembered outcome holds, in bytes, roughly: the operations of its acknowledgement,
/// each weighed by its payloads and a fixed overhead. Generous, so that the bound errs towards
/// forgetting; an error weighs nothing (it is shared, and small).
pub(crate) fn outcome_bytes(outcome: &Result<CheckpointAck, BatcherError>) -> usize {
    const PER_OPERATION: usize = 256;
    let error_bytes = |error: Option<&ErrorObject>| {
        error.map_or(0, |e| {
            e.error_message().map_or(0, str::len)
                + e.error_type().map_or(0, str::len)
                + e.error_data().map_or(0, str::len)
                + e.stack_trace().iter().map(String::len).sum::<usize>()
        })
    };
    let operation_bytes = |op: &Operation| {
        let len = |s: Option<&str>| s.map_or(0, str::len);
        PER_OPERATION
            + op.id().len()
            + len(op.name())
            + len(op.parent_id())
            + op.execution_details().map_or(0, |d| len(d.input_payload()))
            + op.step_details()
                .map_or(0, |d| len(d.result()) + error_bytes(d.error()))
            + op.context_details()
                .map_or(0, |d| len(d.result()) + error_bytes(d.error()))
            + op.callback_details()
                .map_or(0, |d| len(d.result()) + error_bytes(d.error()))
            + op.chained_invoke_details()
                .map_or(0, |d| len(d.result()) + error_bytes(d.error()))
    };
    outcome
        .as_ref()
        .map_or(0, |ack| ack.operations().iter().map(operation_bytes).sum())
}
