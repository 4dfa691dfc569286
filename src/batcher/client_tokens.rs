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
//!   updates (by request bytes) are held; past either, the oldest are forgotten first. The
//!   newest is always held, whatever its size.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use aws_sdk_lambda::types::OperationUpdate;
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
}

/// The remembered calls, oldest first.
#[derive(Default)]
struct Calls {
    by_token: HashMap<String, Remembered>,
    order: VecDeque<String>,
    bytes: usize,
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
    /// the token is new, records and returns `start(updates)`, the call's future, which runs
    /// only once awaited.
    pub(crate) fn call(
        &self,
        client_token: &str,
        updates: Vec<OperationUpdate>,
        start: impl FnOnce(Vec<OperationUpdate>) -> SharedCall,
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
        let call = start(updates.clone());
        let remembered = Remembered {
            updates,
            bytes,
            call: call.clone(),
        };
        calls.bytes += bytes;
        calls.order.push_back(client_token.to_owned());
        let _ = calls.by_token.insert(client_token.to_owned(), remembered);
        while calls.order.len() > 1
            && (calls.order.len() > MAX_REMEMBERED_CALLS || calls.bytes > MAX_REMEMBERED_BYTES)
        {
            let Some(oldest) = calls.order.pop_front() else {
                break;
            };
            if let Some(forgotten) = calls.by_token.remove(&oldest) {
                calls.bytes -= forgotten.bytes;
            }
        }
        Lookup::Call(call)
    }
}
