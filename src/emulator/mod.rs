//! An HTTP emulator of the Lambda durable-execution checkpoint API, for tests and
//! local runs (feature `emulator`).
//!
//! The real checkpoint API cannot be called outside a durable invocation, and its
//! interesting behaviours (token rotation, refused batches, throttling, answers lost
//! after the commit) are hard to provoke on demand. The emulator serves
//! `CheckpointDurableExecution` and `GetDurableExecutionState` on loopback with the
//! JSON shapes `aws-sdk-lambda` sends and parses, so a client built with
//! `endpoint_url(emulator.endpoint_url())` runs its real serialization against it,
//! and a test can then read back what the service would hold.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use checkpoint_batcher::emulator::Emulator;
//!
//! let emulator = Emulator::builder().start().await?;
//! let (arn, token) = emulator.start_execution("orders");
//! // Point `aws_sdk_lambda::Client` at `emulator.endpoint_url()`, then checkpoint
//! // with `arn` and `token`...
//! let snapshot = emulator.execution(&arn).expect("the execution exists");
//! assert_eq!(snapshot.current_token.as_deref(), Some(token.as_str()));
//! emulator.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Behaviour
//!
//! - **Tokens.** Only the execution's current token is accepted. Every applied
//!   checkpoint, empty ones included, consumes it and answers a new one; a refused
//!   request leaves it valid. A stale, unknown or revoked token is answered 400
//!   `InvalidParameterValueException` with a message starting `Invalid checkpoint
//!   token`, and so is an empty one, or a state read without one. After an EXECUTION
//!   SUCCEED or FAIL the answer carries no token (and holds every change, unpaged: no
//!   page could be read without one), and every later call gets that 400, but for a
//!   retry of the completing call itself, which gets its stored answer (below).
//! - **Idempotency.** A request with the same `ClientToken` and the same inbound token
//!   as an applied one gets the stored answer again, byte for byte, and nothing is
//!   applied twice. The same pair with different `Updates` is refused with 400. Records
//!   are kept for the life of the execution (the service keeps them 15 minutes).
//! - **Validation.** The rules of [`rules`](self#rules) (see the `rules` module doc
//!   for the full transition table): a request breaking one is refused whole with a
//!   400 whose message names the update index, its Id and the rule.
//! - **Paging.** `NewExecutionState.Operations` lists the operations the checkpoint
//!   changed (current state of each) plus those the service changed since the last
//!   checkpoint ([`Emulator::complete_operation`]), the checkpoint's own first (in the
//!   order of their first update) and the service's after them, at most
//!   [`EmulatorBuilder::page_size`]; past that it answers `NextMarker`, to be fetched
//!   with `GetDurableExecutionState` and the new token. That call pages all operations
//!   (creation order) by `Marker` and `MaxItems` (absent or 0: 100; 1–1000; else 400),
//!   and cuts a page at [`EmulatorLimits::max_page_bytes`] (5 MiB) of operations too,
//!   though never below one operation.
//!   Marker forms are documented in the `paging` module: `c.<checkpoint>.<tag>.<offset>`
//!   and `s.<tag>.<offset>`, where `<tag>` names the checkpoint token the marker was
//!   issued with; a garbled or unknown marker, or one issued with another token than the
//!   query's (a checkpoint or rotation moved the chain since), is refused with 400.
//! - **Invocations.** [`Emulator::invocation_event`] builds the event the service would
//!   send the durable function now: the current token and the first page of all
//!   operations (cut as a state page is), with timestamps in epoch milliseconds and
//!   `NextMarker = s.<tag>.<offset>`, tied to that token, when more remain.
//! - **Robustness.** Malformed JSON, a wrong shape, a wrong method (405), a body over
//!   the limit (413), an unknown ARN (404) or path (404), an ARN that does not decode
//!   (400) all get a REST-JSON error; no input makes the server panic. Unknown JSON
//!   members and query parameters are ignored.
//! - **Faults.** Seeded latency, throttling, server errors and lost answers, see
//!   [`Faults`]; changeable at run time with [`Emulator::set_faults`].
//! - **Callbacks.** `SendDurableExecutionCallbackSuccess`, `...Failure` and `...Heartbeat`
//!   (`POST /2025-12-01/durable-execution-callbacks/{CallbackId}/succeed`, `/fail`,
//!   `/heartbeat`) answer a CALLBACK by the `CallbackId` its START was given, in any execution,
//!   as [`Emulator::complete_operation`] does (a failure keeps the error's message); an unknown
//!   or already completed callback is answered 400. These calls draw no faults.
//! - **Local runs.** [`local::LocalRun`] plays the service's side of a whole execution for a
//!   handler function: invocations, waits, callbacks, crashes, re-invocations, until it ends.
//!
//! # Rules
//!
//! Summarised from the `rules` module: `Id`/`ParentId` format; at most one EXECUTION
//! update, last, applied to the execution's own operation
//! ([`ExecutionSnapshot::execution_operation_id`]) whatever Id it names; one update per
//! Id except START plus one non-START for a STEP or CONTEXT; `ParentId` names a CONTEXT
//! that exists or was started earlier in the request; `ParentId`, `Name` and `SubType`,
//! when sent, match the operation's; legal status transitions (STEP: START, SUCCEED,
//! FAIL, RETRY with `StepOptions`; CONTEXT: START, SUCCEED, FAIL; WAIT: START, CANCEL, and
//! a START without a positive `WaitSeconds` completes at once; CALLBACK: START;
//! CHAINED_INVOKE: START with `ChainedInvokeOptions`; WAIT, CALLBACK and CHAINED_INVOKE
//! are completed by the service; EXECUTION: SUCCEED, FAIL); a SUCCEED carries no `Error`
//! and a FAIL no `Payload`; size limits of [`EmulatorLimits`].
//!
//! # Dependencies
//!
//! The emulator shares no logic with the rest of the crate (its rules and size limits are its
//! own reading of the service), so it judges the batcher from outside rather than agreeing with
//! it by construction. It shares only the JSON shapes of operations (the crate's `wire`
//! module), which it writes and the `invocation` module reads: one description of the
//! format, not two that could drift apart. Being a server, it is the one part of the crate besides
//! the batcher's actor that spawns tasks (the listener) and sleeps (injected latency).
//!
//! # Shutdown
//!
//! [`Emulator::shutdown`] stops accepting, closes the listener (later connections are
//! refused), lets in-flight requests finish and waits for the server task. Dropping the
//! handle signals the same stop without waiting for it.

#[cfg(test)]
mod batch_parity;
mod builder;
mod checkpoint;
mod error;
mod execution;
mod faults;
mod http;
pub mod local;
mod operation;
mod paging;
mod rules;
mod snapshot;
mod store;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use self::builder::{DEFAULT_PAGE_SIZE, DEFAULT_SEED, EmulatorBuilder};
pub use self::error::EmulatorError;
pub use self::execution::Completion;
pub use self::faults::Faults;
pub use self::rules::EmulatorLimits;
pub use self::snapshot::{AppliedUpdate, ErrorRecord, ExecutionSnapshot, OperationRecord};

use self::store::Store;

/// How long [`Emulator::shutdown`] waits for in-flight requests before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running emulator; dropping it stops the server.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Emulator {
    pub(crate) fn new(
        addr: SocketAddr,
        store: Arc<Store>,
        stop: oneshot::Sender<()>,
        task: JoinHandle<()>,
    ) -> Self {
        Self {
            addr,
            store,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A builder with the defaults: loopback, port 0, service limits, no faults.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// Base URL for `endpoint_url`, e.g. `http://127.0.0.1:41234`.
    #[must_use]
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the listener is bound to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// An `aws-sdk-lambda` client aimed at this emulator: its endpoint, a fixed region and
    /// static test credentials, so no AWS configuration is read and nothing leaves the machine.
    /// Wrap it in [`RealBackend`](crate::RealBackend) to drive a batcher through the real SDK
    /// serialization.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
    /// use checkpoint_batcher::emulator::Emulator;
    /// use checkpoint_batcher::{BatcherConfig, CheckpointBatcher, RealBackend};
    ///
    /// let emulator = Emulator::builder().start().await?;
    /// let (arn, token) = emulator.start_execution("orders");
    /// let backend = Arc::new(RealBackend::new(emulator.client()));
    /// let batcher = CheckpointBatcher::spawn(backend, arn.clone(), token, BatcherConfig::default())?;
    /// let update = OperationUpdate::builder()
    ///     .id("step-1").r#type(OperationType::Step).action(OperationAction::Start).build()?;
    /// batcher.checkpoint(update).await?;
    /// let held = emulator.execution(&arn).expect("started above");
    /// assert_eq!(held.operation("step-1").map(|op| op.status.as_str()), Some("STARTED"));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn client(&self) -> aws_sdk_lambda::Client {
        use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_lambda::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIDEMULATOR",
                "emulator-secret",
                None,
                None,
                "checkpoint-batcher-emulator",
            ))
            .endpoint_url(self.endpoint_url())
            .build();
        aws_sdk_lambda::Client::from_conf(config)
    }

    /// Starts an execution named `name` without input; returns its ARN (which contains
    /// `/`) and its first checkpoint token. Its EXECUTION operation carries the input the
    /// service gives such an execution, `"{}"` (docs/PROTOCOL.md, "The invocation").
    pub fn start_execution(&self, name: &str) -> (String, String) {
        self.store.executions().start_execution(name, None)
    }

    /// Starts an execution whose EXECUTION operation carries `input` as
    /// `ExecutionDetails.InputPayload` (`None`: `"{}"`, as [`start_execution`](Self::start_execution));
    /// returns its ARN and first token.
    pub fn start_execution_with_input(&self, name: &str, input: Option<&str>) -> (String, String) {
        self.store.executions().start_execution(name, input)
    }

    /// The event the service would send a durable function invoked for this execution now,
    /// as JSON: `DurableExecutionArn`, the current `CheckpointToken`, and
    /// `InitialExecutionState` holding the execution's operations in creation order
    /// (timestamps in epoch milliseconds, as in a real event). At most
    /// [`EmulatorBuilder::page_size`] operations, weighing at most
    /// [`EmulatorLimits::max_page_bytes`], are included; past that the state carries a
    /// `NextMarker` that `GetDurableExecutionState` pages from, with the same token.
    ///
    /// Tests use it to play the service's side of an invocation: invoke a handler with it,
    /// stop the handler halfway, and invoke it again with a fresh event. To make the first
    /// invocation's token stale, as a real re-invocation does, call
    /// [`rotate_token`](Self::rotate_token) first.
    ///
    /// `None` for an unknown ARN, and for an execution that has no valid token (completed,
    /// stopped or revoked): the service would not invoke it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use checkpoint_batcher::emulator::Emulator;
    ///
    /// let emulator = Emulator::builder().start().await?;
    /// let (arn, token) = emulator.start_execution_with_input("orders", Some(r#"{"n":1}"#));
    /// let event = emulator.invocation_event(&arn).expect("the execution exists");
    /// assert_eq!(event["CheckpointToken"], token.as_str());
    /// let execution = &event["InitialExecutionState"]["Operations"][0];
    /// assert_eq!(execution["Type"], "EXECUTION");
    /// assert_eq!(execution["ExecutionDetails"]["InputPayload"], r#"{"n":1}"#);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn invocation_event(&self, arn: &str) -> Option<serde_json::Value> {
        let event = self.store.executions().invocation_event(arn)?;
        // Plain structs of strings and numbers always convert.
        serde_json::to_value(event).ok()
    }

    /// A copy of everything held for the execution, or `None` for an unknown ARN.
    #[must_use]
    pub fn execution(&self, arn: &str) -> Option<ExecutionSnapshot> {
        self.store.executions().snapshot(arn)
    }

    /// ARNs of all executions started, sorted.
    #[must_use]
    pub fn execution_arns(&self) -> Vec<String> {
        self.store.executions().arns()
    }

    /// Replaces the injected faults from the next request on. The generator keeps its
    /// position, so a run that switches faults at the same points stays reproducible.
    pub fn set_faults(&self, faults: Faults) {
        self.store.fault_dice().set(faults);
    }

    /// The faults currently injected.
    #[must_use]
    pub fn faults(&self) -> Faults {
        self.store.fault_dice().faults().clone()
    }

    /// Restarts the fault generator from `seed`.
    pub fn reseed_faults(&self, seed: u64) {
        self.store.fault_dice().reseed(seed);
    }

    /// Replaces the execution's current token behind the client's back, as a service
    /// re-invocation would; the client's token becomes stale. Returns the new token, or
    /// `None` for an unknown or completed execution.
    pub fn rotate_token(&self, arn: &str) -> Option<String> {
        self.store.executions().rotate_token(arn)
    }

    /// Revokes the current token without completing the execution: every later call
    /// gets the invalid-token 400. Returns false for an unknown ARN.
    pub fn revoke_token(&self, arn: &str) -> bool {
        let revoked = self.store.executions().revoke_token(arn);
        self.store.checkpointed.notify_waiters();
        revoked
    }

    /// Stops the execution as `StopDurableExecution` would: the EXECUTION operation
    /// becomes STOPPED, the execution completes and its token is revoked. Returns false
    /// for an unknown ARN.
    pub fn stop_execution(&self, arn: &str) -> bool {
        let stopped = self.store.executions().stop_execution(arn);
        // A local run waiting on a callback learns that nothing waits any more.
        self.store.checkpointed.notify_waiters();
        stopped
    }

    /// Plays the service's side of a handler's answer (`{"Status": "SUCCEEDED", "Result":
    /// ...}`, `{"Status": "FAILED", "Error": {...}}` or `{"Status": "PENDING"}`): a result or an
    /// error completes the execution, as the service completes it from the function's answer,
    /// so that the snapshot shows the EXECUTION operation SUCCEEDED or FAILED and the token
    /// chain ended; `PENDING` leaves it waiting for the next invocation. An execution a
    /// checkpoint already completed (an EXECUTION update, the path of a result over the response
    /// limit) stays as it is.
    ///
    /// # Errors
    ///
    /// [`EmulatorError::UnknownExecution`], or [`EmulatorError::InvalidOutput`] for an answer
    /// the service would not accept: one that is not an output, or one over the response limit
    /// (6 MiB less 50 bytes of JSON), which Lambda fails.
    pub fn finish_invocation(
        &self,
        arn: &str,
        output: &serde_json::Value,
    ) -> Result<(), EmulatorError> {
        self.store.executions().finish_invocation(arn, output)
    }

    /// Applies a change the service makes on its own (a WAIT firing, a callback being
    /// answered, a retry becoming due). The operation is then reported by the next
    /// applied checkpoint, empty ones included.
    ///
    /// # Errors
    ///
    /// [`EmulatorError::UnknownExecution`], [`EmulatorError::UnknownOperation`],
    /// [`EmulatorError::AlreadyFinished`] for an operation in an end state, or
    /// [`EmulatorError::NotApplicable`] for the EXECUTION operation or a READY of
    /// anything but a PENDING STEP.
    pub fn complete_operation(
        &self,
        arn: &str,
        id: &str,
        completion: Completion,
    ) -> Result<(), EmulatorError> {
        let result = self
            .store
            .executions()
            .complete_operation(arn, id, completion);
        self.store.checkpointed.notify_waiters();
        result
    }

    /// Stops the server: no new connections (the listener is closed), in-flight
    /// requests finish (up to 5 s, then they are cut), and the server task is awaited.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Sending (or dropping) the stop sender triggers the graceful shutdown; the
        // server task then closes the listener on its own.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
