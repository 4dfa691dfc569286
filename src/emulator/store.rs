//! The emulated service's store: every execution by ARN, the generator of ids and
//! tokens, the admin operations of the [`super::Emulator`] handle, and the locks the
//! server and the handle share.
//!
//! The two calls are processed against [`Executions`] in their own modules: the
//! checkpoint procedure in [`super::checkpoint`], `GetDurableExecutionState` in
//! [`super::paging`].
//!
//! # Invariants
//!
//! - Every request is processed whole under the executions lock ([`Store::executions`]),
//!   so a checkpoint's check, application and idempotency record are one critical
//!   section, and a retry can never apply twice.
//! - Tokens are unique: each starts with a serial number that never repeats.
//! - Ids and tokens come from their own generator, seeded apart from the fault dice, so
//!   generating ids never shifts the faults a seed gives.
//! - A completed execution gets no new token ([`Executions::rotate_token`] refuses it).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::error::{ApiError, EmulatorError};
use super::execution::{Completion, Execution};
use super::faults::FaultDice;
use super::rules::EmulatorLimits;
use super::rules::OpType;
use super::snapshot::ExecutionSnapshot;

/// What the server and the handle share: the executions and the fault dice, each behind
/// its own lock, and the settings the HTTP front end reads.
#[derive(Debug)]
pub(crate) struct Store {
    executions: Mutex<Executions>,
    fault_dice: Mutex<FaultDice>,
    pub(crate) omit_error_type_header: bool,
    pub(crate) limits: EmulatorLimits,
    /// Woken after every checkpoint request is processed and every change the service makes
    /// (a callback answered, an operation completed through the handle), for the local
    /// driver's watchers ([`super::local`]): the crash after N updates, a callback awaited.
    pub(crate) checkpointed: tokio::sync::Notify,
}

impl Store {
    pub(crate) fn new(
        executions: Executions,
        fault_dice: FaultDice,
        omit_header: bool,
        limits: EmulatorLimits,
    ) -> Self {
        Self {
            executions: Mutex::new(executions),
            fault_dice: Mutex::new(fault_dice),
            omit_error_type_header: omit_header,
            limits,
            checkpointed: tokio::sync::Notify::new(),
        }
    }

    // A panic while holding a lock cannot leave the store half-written (a checkpoint
    // is validated before it is applied), so a poisoned lock is still usable.
    pub(crate) fn executions(&self) -> MutexGuard<'_, Executions> {
        self.executions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn fault_dice(&self) -> MutexGuard<'_, FaultDice> {
        self.fault_dice
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// All executions by ARN, plus the generator for ids and tokens.
#[derive(Debug)]
pub(crate) struct Executions {
    pub(super) executions: HashMap<String, Execution>,
    pub(super) rng: fastrand::Rng,
    serial: u64,
    pub(super) page_size: usize,
    pub(super) limits: EmulatorLimits,
}

impl Executions {
    pub(crate) fn new(seed: u64, page_size: usize, limits: EmulatorLimits) -> Self {
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
    pub(super) fn new_token(&mut self) -> String {
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
        let execution = Execution::new(arn.clone(), name, id, token.clone(), input);
        let _previous = self.executions.insert(arn.clone(), execution);
        (arn, token)
    }

    pub(crate) fn snapshot(&self, arn: &str) -> Option<ExecutionSnapshot> {
        self.executions.get(arn).map(Execution::snapshot)
    }

    /// See [`Execution::invocation_event`]; also `None` for an unknown ARN.
    pub(crate) fn invocation_event(
        &self,
        arn: &str,
    ) -> Option<crate::wire::Invocation<crate::wire::Operation<i64>>> {
        self.executions
            .get(arn)?
            .invocation_event(self.page_size, self.limits.max_page_bytes)
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
        exec.stop();
        true
    }

    /// The execution `arn`, or [`EmulatorError::UnknownExecution`].
    pub(super) fn get(&self, arn: &str) -> Result<&Execution, EmulatorError> {
        self.executions
            .get(arn)
            .ok_or_else(|| EmulatorError::UnknownExecution(arn.to_owned()))
    }

    /// As [`get`](Self::get), to change it.
    fn get_mut(&mut self, arn: &str) -> Result<&mut Execution, EmulatorError> {
        self.executions
            .get_mut(arn)
            .ok_or_else(|| EmulatorError::UnknownExecution(arn.to_owned()))
    }

    pub(crate) fn finish_invocation(
        &mut self,
        arn: &str,
        output: &serde_json::Value,
    ) -> Result<(), EmulatorError> {
        self.get_mut(arn)?.finish_invocation(output)
    }

    /// Completes the CALLBACK whose `CallbackId` is `callback_id`, in whichever execution holds
    /// it; `None` (a heartbeat) only checks that it still waits.
    pub(crate) fn answer_callback(
        &mut self,
        callback_id: &str,
        completion: Option<Completion>,
    ) -> Result<(), ApiError> {
        let found = self.executions.values_mut().find_map(|execution| {
            let op = execution.ops.iter().find(|op| {
                op.op_type == OpType::Callback && op.callback_id.as_deref() == Some(callback_id)
            })?;
            Some((op.id.clone(), op.status.is_finished(), execution))
        });
        let Some((op_id, finished, execution)) = found else {
            return Err(ApiError::InvalidParameter(format!(
                "no callback has the CallbackId {callback_id}"
            )));
        };
        if finished {
            return Err(ApiError::InvalidParameter(format!(
                "the callback {callback_id} is already completed"
            )));
        }
        match completion {
            Some(completion) => execution
                .complete(&op_id, completion)
                .map_err(|e| ApiError::InvalidParameter(e.to_string())),
            None => Ok(()),
        }
    }

    pub(crate) fn complete_operation(
        &mut self,
        arn: &str,
        id: &str,
        completion: Completion,
    ) -> Result<(), EmulatorError> {
        self.get_mut(arn)?.complete(id, completion)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_in_the_base64_alphabet() {
        let mut store = Executions::new(1, 10, EmulatorLimits::default());
        let a = store.new_token();
        let b = store.new_token();
        assert_ne!(a, b, "every token is new");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
    }
}
