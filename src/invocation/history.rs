//! [`History`]: every operation of the execution, the event's page and all the pages after it.

use std::collections::{HashMap, HashSet};

use aws_sdk_lambda::types::{Operation, OperationType};

use super::error::InvocationError;
use super::event::InvocationEvent;
use crate::backend::DurableBackend;
use crate::batcher::with_retries;
use crate::config::RetryPolicy;

/// `MaxItems` of each `GetDurableExecutionState` call: the most the service allows.
const STATE_PAGE_ITEMS: i32 = 1000;

/// The most `GetDurableExecutionState` pages one [`History::load`] follows: a million
/// operations at [`STATE_PAGE_ITEMS`] a page. Past it the service is taken to be looping.
const MAX_STATE_PAGES: usize = 1000;

/// The complete history of a durable execution as one invocation sees it: the operations of the
/// event's first page, then those of every later page, in the service's order.
///
/// A replaying handler looks its operations up by Id ([`get`](Self::get)): a STEP that is
/// SUCCEEDED here is not run again, its stored result (`StepDetails.Result`) is used instead.
/// The user's input is the EXECUTION operation's `ExecutionDetails.InputPayload`
/// ([`input`](Self::input)), which may arrive on any page.
///
/// Should the same Id appear on two pages, the later one (the newer state) takes the earlier
/// one's place.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use checkpoint_batcher::invocation::{History, InvocationEvent};
/// use checkpoint_batcher::{InMemoryBackend, RetryPolicy};
///
/// let event: InvocationEvent = r#"{"DurableExecutionArn": "arn", "CheckpointToken": "t",
///     "InitialExecutionState": {"Operations": [
///         {"Id": "exec", "Type": "EXECUTION", "Status": "STARTED", "StartTimestamp": 1700000000000,
///          "ExecutionDetails": {"InputPayload": "{\"items\":3}"}},
///         {"Id": "item-0", "Type": "STEP", "Status": "SUCCEEDED", "StartTimestamp": 1700000000001,
///          "StepDetails": {"Attempt": 1, "Result": "0"}}]}}"#.parse()?;
/// // No NextMarker: the event holds everything and the backend is not called.
/// let history = History::load(&InMemoryBackend::new(), &event, &RetryPolicy::default()).await?;
/// assert_eq!(history.input(), Some(r#"{"items":3}"#));
/// let done = history.get("item-0").and_then(|op| op.step_details()).and_then(|s| s.result());
/// assert_eq!(done, Some("0"));
/// assert_eq!(history.len(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    operations: Vec<Operation>,
    by_id: HashMap<String, usize>,
}

impl History {
    /// Loads the complete history: the event's operations, then, while there is a
    /// `NextMarker`, `GetDurableExecutionState` pages of 1000 operations (the most the service
    /// allows) read with the
    /// event's checkpoint token. Throttled and transient failures of a page are retried per
    /// `retry` (full-jitter backoff honouring `Retry-After`, each attempt bounded by
    /// `retry.attempt_timeout`), as the batcher retries its own calls.
    ///
    /// # Errors
    ///
    /// - [`InvocationError::Config`] when `retry` is out of range;
    /// - [`InvocationError::StateFailed`] when a page fails for good;
    /// - [`InvocationError::RepeatedMarker`] when the service answers a marker a second time,
    ///   and [`InvocationError::TooManyPages`] past 1000 pages (a million operations): pages
    ///   that would never end.
    ///
    /// No update has been written when one happens; [`InvocationError::scope`] says whether
    /// the invocation or the execution should fail.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads. Dropping the future abandons the load.
    pub async fn load(
        backend: &dyn DurableBackend,
        event: &InvocationEvent,
        retry: &RetryPolicy,
    ) -> Result<Self, InvocationError> {
        retry.validate()?;
        let mut history = Self::default();
        history.extend(event.operations().iter().cloned());
        let mut rng = retry
            .jitter_seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let mut seen: HashSet<String> = HashSet::new();
        let mut marker = event.next_marker().map(str::to_owned);
        while let Some(current) = marker.take() {
            if seen.len() >= MAX_STATE_PAGES {
                return Err(InvocationError::TooManyPages {
                    limit: MAX_STATE_PAGES,
                });
            }
            if !seen.insert(current.clone()) {
                return Err(InvocationError::RepeatedMarker { marker: current });
            }
            let call = || {
                backend.get_execution_state(
                    event.arn(),
                    event.checkpoint_token(),
                    Some(&current),
                    Some(STATE_PAGE_ITEMS),
                )
            };
            let (page, attempts) = with_retries(
                retry,
                &mut rng,
                "reading the execution state",
                |_, _, _| {},
                call,
            )
            .await;
            let page = page.map_err(|cause| InvocationError::StateFailed { attempts, cause })?;
            history.extend(page.operations);
            // An empty marker would restart the listing from the beginning; it ends it, as the
            // official SDKs read it.
            marker = page.next_marker.filter(|m| !m.is_empty());
        }
        Ok(history)
    }

    fn extend(&mut self, operations: impl IntoIterator<Item = Operation>) {
        for op in operations {
            match self.by_id.get(op.id()) {
                Some(&at) => {
                    if let Some(slot) = self.operations.get_mut(at) {
                        *slot = op;
                    }
                }
                None => {
                    let _previous = self.by_id.insert(op.id().to_owned(), self.operations.len());
                    self.operations.push(op);
                }
            }
        }
    }

    /// The operation with this Id, if the history holds one.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<&Operation> {
        self.operations.get(*self.by_id.get(id)?)
    }

    /// Every operation, in the service's order (the event's page first).
    #[must_use]
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// Iterates over the operations in the service's order.
    pub fn iter(&self) -> std::slice::Iter<'_, Operation> {
        self.operations.iter()
    }

    /// How many operations the history holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether the history holds no operation at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The EXECUTION operation, if the history holds one (the service always sends it).
    #[must_use]
    pub fn execution(&self) -> Option<&Operation> {
        self.operations
            .iter()
            .find(|op| *op.r#type() == OperationType::Execution)
    }

    /// The user's input: the EXECUTION operation's `ExecutionDetails.InputPayload`, a JSON
    /// string, whichever page it came on. `None` when the execution was started without one.
    #[must_use]
    pub fn input(&self) -> Option<&str> {
        self.execution()?.execution_details()?.input_payload()
    }
}

impl<'a> IntoIterator for &'a History {
    type Item = &'a Operation;
    type IntoIter = std::slice::Iter<'a, Operation>;

    fn into_iter(self) -> Self::IntoIter {
        self.operations.iter()
    }
}
