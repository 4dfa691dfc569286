//! Batch assembly: which queued updates go together in the next checkpoint request.
//!
//! An [`Assembler`] takes updates one at a time, in submission order, and refuses the first one
//! that would break a rule of one request (docs/PROTOCOL.md, "Request rules" and "Request
//! limits"):
//!
//! - the count limit, [`BatchLimits::max_updates`];
//! - the byte limit, [`BatchLimits::max_bytes`], counted as the exact JSON bytes each update
//!   adds to the request body ([`crate::size`]). The first update of a batch is never refused for
//!   size: an update larger than the limit goes alone and the service decides;
//! - one update per operation Id, except a START of a STEP or CONTEXT followed by one update
//!   that ends or retries it: a STEP's SUCCEED, FAIL or RETRY, a CONTEXT's SUCCEED or FAIL, of
//!   the same type (an EXECUTION update under the STEP's Id is another operation's update);
//! - nothing after an EXECUTION update, which must be the last of its request.
//!
//! The refusal is a [`Cut`]: the batch is closed there, and the refused update opens the next
//! batch. Order is never changed, so concatenating the batches gives back the queue.
//!
//! Pure code: no I/O, no tokio. The actor feeds it; [`split_batches`] runs it over a whole slice
//! for tests and benchmarks.

#![cfg_attr(
    not(feature = "test-util"),
    allow(
        unreachable_pub,
        dead_code,
        reason = "public, and partly used, only through the test-util internals"
    )
)]

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::ops::Range;

use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};

use crate::config::BatcherConfig;
use crate::error::InvalidUpdate;
use crate::limits::{SERVICE_MAX_BATCH_BYTES, SERVICE_MAX_BATCH_UPDATES};
use crate::size::{max_envelope_bytes, update_bytes};

/// The per-request limits a batch obeys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// The most updates in one request. Default: 250, the service's limit.
    pub max_updates: usize,
    /// The most bytes of one request body, envelope included. Default: 750 KiB.
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_updates: SERVICE_MAX_BATCH_UPDATES,
            max_bytes: SERVICE_MAX_BATCH_BYTES,
        }
    }
}

impl BatchLimits {
    /// Limits for tests that force splits with tiny inputs.
    #[must_use]
    pub fn with_limits(max_updates: usize, max_bytes: usize) -> Self {
        Self {
            max_updates,
            max_bytes,
        }
    }
}

impl From<&BatcherConfig> for BatchLimits {
    fn from(config: &BatcherConfig) -> Self {
        Self {
            max_updates: config.max_batch_updates,
            max_bytes: config.max_batch_bytes,
        }
    }
}

/// Why a batch was closed before an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cut {
    /// The batch holds [`BatchLimits::max_updates`] updates.
    Count,
    /// The update would take the request past [`BatchLimits::max_bytes`].
    Bytes,
    /// The batch already holds an update for this operation Id.
    DuplicateId,
    /// The batch ends with an EXECUTION update.
    AfterExecution,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdState {
    /// A START of a STEP: its SUCCEED, FAIL or RETRY may follow.
    StepStarted,
    /// A START of a CONTEXT: its SUCCEED or FAIL may follow.
    ContextStarted,
    /// No further update of this Id fits in the batch.
    Done,
}

impl IdState {
    /// The state an Id is left in by `update`, the first update of the Id in the batch.
    fn first(update: &OperationUpdate) -> Self {
        match (&update.r#type, &update.action) {
            (OperationType::Step, OperationAction::Start) => Self::StepStarted,
            (OperationType::Context, OperationAction::Start) => Self::ContextStarted,
            _ => Self::Done,
        }
    }

    /// Whether `update` may follow in the same request: the one update the service takes
    /// after a START of a STEP or CONTEXT, of that same operation (docs/PROTOCOL.md, rule 3).
    fn admits(self, update: &OperationUpdate) -> bool {
        use OperationAction as A;
        match (self, &update.r#type) {
            (Self::StepStarted, OperationType::Step) => {
                matches!(update.action, A::Succeed | A::Fail | A::Retry)
            }
            (Self::ContextStarted, OperationType::Context) => {
                matches!(update.action, A::Succeed | A::Fail)
            }
            _ => false,
        }
    }
}

/// The hasher for Id hashes, which are already well mixed.
#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Builds one batch at a time, refusing the first update that would break a rule.
///
/// # Examples
///
/// ```
/// use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
/// use checkpoint_batcher::internals::{Assembler, BatchLimits, Cut};
/// use checkpoint_batcher::internals::update_bytes;
///
/// let update = |id: &str, action| {
///     OperationUpdate::builder().id(id).r#type(OperationType::Step).action(action).build()
/// };
/// let mut batch = Assembler::new(BatchLimits::default(), 0);
/// let start = update("a", OperationAction::Start)?;
/// let succeed = update("a", OperationAction::Succeed)?;
/// let again = update("a", OperationAction::Succeed)?;
/// assert_eq!(batch.try_add(&start, update_bytes(&start)), Ok(()));
/// assert_eq!(batch.try_add(&succeed, update_bytes(&succeed)), Ok(()), "START then SUCCEED fit");
/// assert_eq!(batch.try_add(&again, update_bytes(&again)), Err(Cut::DuplicateId));
/// # Ok::<(), aws_sdk_lambda::error::BuildError>(())
/// ```
#[derive(Debug)]
pub struct Assembler {
    limits: BatchLimits,
    envelope: usize,
    len: usize,
    bytes: usize,
    ends_with_execution: bool,
    // Hashes of the Ids in the batch. A collision (one in 2^64 per pair) can only close a batch
    // early, never let two updates of one Id through, so hashing is safe here and spares an
    // allocation per update; for the same reason a fast seeded hash does (SipHash was ~1 % of
    // the real path's CPU).
    ids: HashMap<u64, IdState, BuildHasherDefault<PassThrough>>,
    hasher: foldhash::fast::RandomState,
}

impl Assembler {
    /// An empty batch whose request envelope (token, client token, brackets) takes
    /// `envelope_bytes`; see [`crate::size::envelope_bytes`].
    #[must_use]
    pub fn new(limits: BatchLimits, envelope_bytes: usize) -> Self {
        Self {
            limits,
            envelope: envelope_bytes,
            len: 0,
            bytes: envelope_bytes,
            ends_with_execution: false,
            ids: HashMap::default(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Empties the batch for reuse, with a new envelope size.
    pub fn reset(&mut self, envelope_bytes: usize) {
        self.envelope = envelope_bytes;
        self.len = 0;
        self.bytes = envelope_bytes;
        self.ends_with_execution = false;
        self.ids.clear();
    }

    /// Adds `update`, whose serialized size is `update_bytes` ([`crate::size::update_bytes`]),
    /// unless it would break a rule.
    ///
    /// # Errors
    ///
    /// The [`Cut`] that closes the batch before this update; the batch is unchanged.
    pub fn try_add(&mut self, update: &OperationUpdate, update_bytes: usize) -> Result<(), Cut> {
        if self.len >= self.limits.max_updates {
            return Err(Cut::Count);
        }
        if self.ends_with_execution {
            return Err(Cut::AfterExecution);
        }
        let bytes = if self.len == 0 {
            self.envelope + update_bytes
        } else {
            // A comma separates it from the previous update.
            self.bytes + 1 + update_bytes
        };
        if self.len > 0 && bytes > self.limits.max_bytes {
            return Err(Cut::Bytes);
        }
        let key = self.hasher.hash_one(update.id.as_str());
        let state = match self.ids.get(&key) {
            None => IdState::first(update),
            Some(state) if state.admits(update) => IdState::Done,
            Some(_) => return Err(Cut::DuplicateId),
        };
        let _previous = self.ids.insert(key, state);
        self.len += 1;
        self.bytes = bytes;
        self.ends_with_execution = update.r#type == OperationType::Execution;
        Ok(())
    }

    /// Adds every update of `group` (each with its size), or none of them: the batch is left as
    /// it was when one would break a rule.
    ///
    /// # Errors
    ///
    /// The index in `group` of the first update that does not fit, and the [`Cut`] before it.
    pub fn try_add_all<'a>(
        &mut self,
        group: impl IntoIterator<Item = (&'a OperationUpdate, usize)>,
    ) -> Result<(), (usize, Cut)> {
        let (len, bytes, ends_with_execution) = (self.len, self.bytes, self.ends_with_execution);
        let mut touched = Vec::new();
        for (index, (update, update_bytes)) in group.into_iter().enumerate() {
            let key = self.hasher.hash_one(update.id.as_str());
            let before = self.ids.get(&key).copied();
            if let Err(cut) = self.try_add(update, update_bytes) {
                // Undo in reverse, so that an Id the group touched twice gets its first state.
                for (key, before) in touched.into_iter().rev() {
                    match before {
                        Some(state) => {
                            let _ = self.ids.insert(key, state);
                        }
                        None => {
                            let _ = self.ids.remove(&key);
                        }
                    }
                }
                (self.len, self.bytes, self.ends_with_execution) =
                    (len, bytes, ends_with_execution);
                return Err((index, cut));
            }
            touched.push((key, before));
        }
        Ok(())
    }

    /// Fills an empty batch with `group` alone, past the batch's limits: a group the caller
    /// asked to be atomic goes whole in its request even when the configured limits are smaller
    /// than it ([`check_group`] held it to the service's). Only the rules of one request can
    /// refuse it.
    ///
    /// # Errors
    ///
    /// As [`try_add_all`](Self::try_add_all); [`Cut::Count`] at index 0 when the batch is not
    /// empty.
    pub fn try_add_alone<'a>(
        &mut self,
        group: impl IntoIterator<Item = (&'a OperationUpdate, usize)>,
    ) -> Result<(), (usize, Cut)> {
        if !self.is_empty() {
            return Err((0, Cut::Count));
        }
        let limits = self.limits;
        self.limits = BatchLimits::with_limits(usize::MAX, usize::MAX);
        let added = self.try_add_all(group);
        self.limits = limits;
        added
    }

    /// Updates in the batch.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no update.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The exact request body bytes of the batch, envelope included.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Refuses a group that cannot go in one request (README, "Groups"): more updates or bytes
/// than the service takes in one request (its limits, not the configured ones, which shape
/// batching only; the bytes counted beside the longest envelope a request of the batcher's can
/// have), or a rule of one request broken (an update after an EXECUTION update, a second update
/// of one Id other than a STEP's or CONTEXT's START and the one update that may follow it). The
/// service would refuse such a request whole; the batcher refuses the group whole, before
/// anything is queued, rather than split it and leave part of it applied. A group of one update
/// is a single update: never refused here, and sent alone when it is larger than a request.
///
/// # Errors
///
/// The [`InvalidUpdate`] naming `Updates` and what the group breaks.
pub(crate) fn check_group(updates: &[OperationUpdate]) -> Result<(), InvalidUpdate> {
    if updates.len() < 2 {
        return Ok(());
    }
    if updates.len() > SERVICE_MAX_BATCH_UPDATES {
        return Err(InvalidUpdate::new(
            "Updates",
            format!(
                "a group of {} updates cannot go in one request (at most \
                 {SERVICE_MAX_BATCH_UPDATES}); the service would refuse it whole",
                updates.len()
            ),
        ));
    }
    let envelope = max_envelope_bytes();
    let bytes = envelope + updates.iter().map(update_bytes).sum::<usize>() + (updates.len() - 1);
    if bytes > SERVICE_MAX_BATCH_BYTES {
        return Err(InvalidUpdate::new(
            "Updates",
            format!(
                "a group of {bytes} request bytes cannot go in one request (at most \
                 {SERVICE_MAX_BATCH_BYTES}, with the longest checkpoint token); the service would \
                 refuse it whole"
            ),
        ));
    }
    // Sizes play no part past the checks above: only the rules can refuse.
    let mut assembler = Assembler::new(BatchLimits::with_limits(usize::MAX, usize::MAX), 0);
    let Err((index, cut)) = assembler.try_add_all(updates.iter().map(|update| (update, 0))) else {
        return Ok(());
    };
    let id = updates.get(index).map_or("", |update| update.id.as_str());
    let reason = if cut == Cut::AfterExecution {
        format!(
            "update {index} (Id \"{id}\") follows an EXECUTION update: an EXECUTION update must \
             be the last of a request"
        )
    } else {
        format!(
            "update {index} is a second update of Id \"{id}\" in one group: a request carries \
             one update per operation, or a START of a STEP or CONTEXT and the one update that \
             ends or retries it"
        )
    };
    Err(InvalidUpdate::new("Updates", reason))
}

/// Splits `updates` (each with its [`crate::size::update_bytes`]) into consecutive batches, as
/// the batcher would send them if all were queued at once.
///
/// # Examples
///
/// ```
/// use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
/// use checkpoint_batcher::internals::{split_batches, BatchLimits};
/// use checkpoint_batcher::internals::update_bytes;
///
/// let updates: Vec<(OperationUpdate, usize)> = (0..5)
///     .map(|i| {
///         let u = OperationUpdate::builder()
///             .id(format!("s{i}"))
///             .r#type(OperationType::Step)
///             .action(OperationAction::Start)
///             .build()?;
///         let bytes = update_bytes(&u);
///         Ok((u, bytes))
///     })
///     .collect::<Result<_, aws_sdk_lambda::error::BuildError>>()?;
/// let batches = split_batches(&updates, BatchLimits::with_limits(2, 1 << 20), 0);
/// assert_eq!(batches, vec![0..2, 2..4, 4..5]);
/// # Ok::<(), aws_sdk_lambda::error::BuildError>(())
/// ```
#[must_use]
pub fn split_batches(
    updates: &[(OperationUpdate, usize)],
    limits: BatchLimits,
    envelope_bytes: usize,
) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let mut assembler = Assembler::new(limits, envelope_bytes);
    let mut start = 0;
    for (index, (update, bytes)) in updates.iter().enumerate() {
        if assembler.try_add(update, *bytes).is_err() {
            batches.push(start..index);
            start = index;
            assembler.reset(envelope_bytes);
            // An empty batch takes any update: the first is never refused.
            let _first = assembler.try_add(update, *bytes);
        }
    }
    if start < updates.len() {
        batches.push(start..updates.len());
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::update_bytes;
    use proptest::prelude::*;

    fn update(
        id: &str,
        ty: OperationType,
        action: OperationAction,
        payload: usize,
    ) -> OperationUpdate {
        OperationUpdate::builder()
            .id(id)
            .r#type(ty)
            .action(action)
            .payload("p".repeat(payload))
            .build()
            .unwrap()
    }

    fn sized(u: OperationUpdate) -> (OperationUpdate, usize) {
        let b = update_bytes(&u);
        (u, b)
    }

    #[test]
    fn a_group_that_does_not_fit_leaves_the_batch_as_it_was() {
        let mut batch = Assembler::new(BatchLimits::with_limits(3, 1 << 20), 0);
        let (a, a_bytes) = sized(update("a", OperationType::Step, OperationAction::Start, 0));
        batch.try_add(&a, a_bytes).unwrap();
        let (before_len, before_bytes) = (batch.len(), batch.bytes());
        let group: Vec<_> = ["b", "c", "d"]
            .into_iter()
            .map(|id| sized(update(id, OperationType::Step, OperationAction::Start, 0)))
            .collect();
        let refused = batch.try_add_all(group.iter().map(|(u, b)| (u, *b)));
        assert_eq!(
            refused,
            Err((2, Cut::Count)),
            "the third of the group breaks the count"
        );
        assert_eq!(
            (batch.len(), batch.bytes()),
            (before_len, before_bytes),
            "nothing of a refused group stays in the batch"
        );
        let (b, b_bytes) = &group[0];
        assert_eq!(
            batch.try_add(b, *b_bytes),
            Ok(()),
            "an Id of the refused group is free again"
        );
        let (a_again, bytes) = sized(update(
            "a",
            OperationType::Step,
            OperationAction::Succeed,
            0,
        ));
        assert_eq!(
            batch.try_add_all([(&a_again, bytes)]),
            Ok(()),
            "an Id the batch held before keeps its state (START, so one more fits)"
        );
    }

    #[test]
    fn an_oversized_update_goes_alone() {
        let updates: Vec<_> = [10, 5000, 10]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                sized(update(
                    &format!("s{i}"),
                    OperationType::Step,
                    OperationAction::Succeed,
                    *p,
                ))
            })
            .collect();
        let batches = split_batches(&updates, BatchLimits::with_limits(250, 1024), 100);
        assert_eq!(
            batches,
            vec![0..1, 1..2, 2..3],
            "the big update must travel alone"
        );
    }

    #[test]
    fn start_then_one_more_update_of_a_step_share_a_batch_but_not_a_third() {
        let updates = vec![
            sized(update("a", OperationType::Step, OperationAction::Start, 0)),
            sized(update(
                "a",
                OperationType::Step,
                OperationAction::Succeed,
                0,
            )),
            sized(update("a", OperationType::Step, OperationAction::Start, 0)),
        ];
        assert_eq!(
            split_batches(&updates, BatchLimits::default(), 0),
            vec![0..2, 2..3]
        );
    }

    #[test]
    fn an_execution_update_under_a_steps_id_does_not_join_the_steps_start() {
        let updates = vec![
            sized(update("a", OperationType::Step, OperationAction::Start, 0)),
            sized(update(
                "a",
                OperationType::Execution,
                OperationAction::Succeed,
                0,
            )),
        ];
        assert_eq!(
            split_batches(&updates, BatchLimits::default(), 0),
            vec![0..1, 1..2],
            "the service refuses an EXECUTION update repeating an earlier update's Id"
        );
    }

    #[test]
    fn only_the_update_that_ends_or_retries_a_start_may_share_its_request() {
        use OperationAction as A;
        use OperationType as T;
        let cases = [
            (T::Step, A::Succeed, true),
            (T::Step, A::Fail, true),
            (T::Step, A::Retry, true),
            (T::Step, A::Cancel, false),
            (T::Context, A::Succeed, true),
            (T::Context, A::Fail, true),
            (T::Context, A::Retry, false),
            (T::Context, A::Cancel, false),
        ];
        for (ty, action, shared) in cases {
            let updates = vec![
                sized(update("a", ty.clone(), A::Start, 0)),
                sized(update("a", ty.clone(), action.clone(), 0)),
            ];
            let expected: Vec<Range<usize>> = if shared {
                std::iter::once(0..2).collect()
            } else {
                vec![0..1, 1..2]
            };
            assert_eq!(
                split_batches(&updates, BatchLimits::default(), 0),
                expected,
                "{ty:?} START then {action:?}"
            );
        }
        let updates = vec![
            sized(update("a", T::Step, A::Start, 0)),
            sized(update("a", T::Context, A::Succeed, 0)),
        ];
        assert_eq!(
            split_batches(&updates, BatchLimits::default(), 0),
            vec![0..1, 1..2],
            "an update of another type under the same Id is another operation's"
        );
    }

    #[test]
    fn a_wait_may_not_carry_two_updates_in_one_request() {
        let updates = vec![
            sized(update("w", OperationType::Wait, OperationAction::Start, 0)),
            sized(update(
                "w",
                OperationType::Wait,
                OperationAction::Succeed,
                0,
            )),
        ];
        assert_eq!(
            split_batches(&updates, BatchLimits::default(), 0),
            vec![0..1, 1..2]
        );
    }

    #[test]
    fn nothing_follows_an_execution_update() {
        let updates = vec![
            sized(update(
                "s",
                OperationType::Step,
                OperationAction::Succeed,
                0,
            )),
            sized(update(
                "e",
                OperationType::Execution,
                OperationAction::Succeed,
                0,
            )),
            sized(update("t", OperationType::Step, OperationAction::Start, 0)),
        ];
        assert_eq!(
            split_batches(&updates, BatchLimits::default(), 0),
            vec![0..2, 2..3]
        );
    }

    #[test]
    fn the_byte_limit_counts_envelope_updates_and_commas_exactly() {
        let u = sized(update(
            "s0",
            OperationType::Step,
            OperationAction::Succeed,
            0,
        ));
        let per = u.1;
        let envelope = 50;
        // Exactly three updates fit: envelope + 3 updates + 2 commas.
        let limit = envelope + 3 * per + 2;
        let updates: Vec<_> = (0..4)
            .map(|i| {
                sized(update(
                    &format!("s{i}"),
                    OperationType::Step,
                    OperationAction::Succeed,
                    0,
                ))
            })
            .collect();
        assert_eq!(
            split_batches(&updates, BatchLimits::with_limits(250, limit), envelope),
            vec![0..3, 3..4]
        );
        assert_eq!(
            split_batches(&updates, BatchLimits::with_limits(250, limit - 1), envelope),
            vec![0..2, 2..4]
        );
    }

    fn arb_update() -> impl Strategy<Value = OperationUpdate> {
        let ty = prop_oneof![
            Just(OperationType::Step),
            Just(OperationType::Context),
            Just(OperationType::Wait),
            Just(OperationType::Callback),
            Just(OperationType::Execution),
        ];
        let action = prop_oneof![
            3 => Just(OperationAction::Start),
            3 => Just(OperationAction::Succeed),
            1 => Just(OperationAction::Fail),
            1 => Just(OperationAction::Retry),
        ];
        (0u8..6, ty, action, 0usize..400)
            .prop_map(|(id, ty, action, payload)| update(&format!("op{id}"), ty, action, payload))
    }

    proptest! {
        #[test]
        fn batches_concatenate_back_to_the_input_and_obey_every_rule(
            updates in proptest::collection::vec(arb_update(), 0..200),
            max_updates in 1usize..20,
            max_bytes in 100usize..3000,
            envelope in 0usize..100,
        ) {
            let sized: Vec<_> = updates.into_iter().map(sized).collect();
            let limits = BatchLimits::with_limits(max_updates, max_bytes);
            let batches = split_batches(&sized, limits, envelope);

            let mut next = 0;
            for range in &batches {
                prop_assert_eq!(range.start, next, "batches must be consecutive, in order");
                prop_assert!(!range.is_empty(), "no batch may be empty");
                next = range.end;
                let batch = &sized[range.clone()];
                prop_assert!(batch.len() <= max_updates, "the count limit holds");
                let bytes = envelope + batch.iter().map(|(_, b)| b).sum::<usize>() + batch.len() - 1;
                prop_assert!(bytes <= max_bytes || batch.len() == 1,
                    "the byte limit holds unless one oversized update travels alone");
                let executions = batch.iter().filter(|(u, _)| u.r#type == OperationType::Execution).count();
                prop_assert!(executions <= 1, "at most one EXECUTION update per request");
                if executions == 1 {
                    prop_assert_eq!(&batch[batch.len() - 1].0.r#type, &OperationType::Execution,
                        "the EXECUTION update comes last");
                }
                let mut seen: HashMap<&str, Vec<&OperationUpdate>> = HashMap::new();
                for (u, _) in batch {
                    seen.entry(u.id.as_str()).or_default().push(u);
                }
                for group in seen.values() {
                    let ends = |ty: &OperationType, action: &OperationAction| match ty {
                        OperationType::Step => matches!(action,
                            OperationAction::Succeed | OperationAction::Fail | OperationAction::Retry),
                        OperationType::Context => matches!(action,
                            OperationAction::Succeed | OperationAction::Fail),
                        _ => false,
                    };
                    let allowed = group.len() == 1 || (group.len() == 2
                        && group[0].action == OperationAction::Start
                        && group[1].r#type == group[0].r#type
                        && ends(&group[1].r#type, &group[1].action));
                    prop_assert!(allowed,
                        "one update per Id, except a STEP's or CONTEXT's START and the update that ends or retries it");
                }
            }
            prop_assert_eq!(next, sized.len(), "the batches must cover the whole input");
        }
    }
}
