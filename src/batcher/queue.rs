//! The pending queue: the batch being assembled, what waits behind it, and when it must go.
//!
//! The actor owns one [`PendingQueue`]. Updates enter at the back, in the order the actor took
//! them; the front batch is filled through an [`Assembler`] until an update would break a rule
//! of one request, which *cuts* the batch: from then on updates wait behind it (`overflow`)
//! until the batch is taken. Pure: no tokio, no I/O; the deadline type is the caller's, so that
//! tests drive it with plain numbers.
//!
//! # Invariants
//!
//! - **Order.** [`take_batch`](PendingQueue::take_batch) yields updates in the order they were
//!   pushed, across batches; a batch is only ever closed, never reordered.
//! - **One request's rules.** The front batch always obeys the limits and rules the
//!   [`Assembler`] checks; `cut` is set exactly when something waits in `overflow` that the
//!   front could not take.
//! - **Groups.** A unit of several updates ([`Pending::unit`]) enters the front whole or closes
//!   it, and is never split: one larger than the configured limits goes alone in its batch,
//!   whole (the handle held it to the service's limits), and nothing joins it.
//! - **Deadlines.** `immediate` and `earliest` describe exactly the updates queued: recomputed
//!   whenever a batch is taken.

use std::collections::VecDeque;

use aws_sdk_lambda::types::OperationUpdate;

use super::assemble::{Assembler, BatchLimits, Cut};

/// What the queue needs to know of a queued update.
pub(crate) trait Pending {
    /// When the update's batch must go at the latest.
    type Deadline: Ord + Copy;

    /// The update itself.
    fn update(&self) -> &OperationUpdate;
    /// Its exact bytes in a request body.
    fn bytes(&self) -> usize;
    /// `None`: as soon as no call is in flight.
    fn deadline(&self) -> Option<Self::Deadline>;
    /// How many updates the unit starting here holds: 1 for a single update, a group's size on
    /// its first update, 0 on its others.
    fn unit(&self) -> usize;
}

/// The batch being assembled and the updates waiting behind it.
#[derive(Debug)]
pub(crate) struct PendingQueue<P: Pending> {
    limits: BatchLimits,
    front: Vec<P>,
    assembler: Assembler,
    cut: Option<Cut>,
    overflow: VecDeque<P>,
    /// Whether some queued update has no deadline.
    immediate: bool,
    /// The earliest deadline among the queued updates.
    earliest: Option<P::Deadline>,
}

impl<P: Pending> PendingQueue<P> {
    /// An empty queue whose requests' envelope takes `envelope_bytes`.
    pub(crate) fn new(limits: BatchLimits, envelope_bytes: usize) -> Self {
        Self {
            limits,
            front: Vec::with_capacity(limits.max_updates),
            assembler: Assembler::new(limits, envelope_bytes),
            cut: None,
            overflow: VecDeque::new(),
            immediate: false,
            earliest: None,
        }
    }

    /// Updates queued, front batch and overflow together.
    pub(crate) fn len(&self) -> usize {
        self.front.len() + self.overflow.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many more updates the actor should take in: what one batch holds, less what is
    /// queued. Beyond that, updates wait in the channel, so memory stays bounded (one batch in
    /// flight, at most one batch's worth queued here) and `submit` feels backpressure.
    pub(crate) fn room(&self) -> usize {
        self.limits.max_updates.saturating_sub(self.len())
    }

    /// Whether the front batch can take nothing more: full, or cut by a rule.
    pub(crate) fn is_closed(&self) -> bool {
        self.cut.is_some() || self.front.len() >= self.limits.max_updates
    }

    /// Whether some queued update should go as soon as no call is in flight, or has reached its
    /// deadline at `now`.
    pub(crate) fn is_due(&self, now: P::Deadline) -> bool {
        self.immediate || self.earliest.is_some_and(|at| at <= now)
    }

    /// The earliest deadline among the queued updates, if any has one.
    pub(crate) fn earliest(&self) -> Option<P::Deadline> {
        self.earliest
    }

    /// The exact request bytes of the front batch.
    pub(crate) fn front_bytes(&self) -> usize {
        self.assembler.bytes()
    }

    /// Updates in the front batch.
    pub(crate) fn front_len(&self) -> usize {
        self.front.len()
    }

    /// Queues one update.
    pub(crate) fn push(&mut self, pending: P) {
        self.note_deadline(pending.deadline());
        if self.cut.is_none() && self.overflow.is_empty() {
            match self.assembler.try_add(pending.update(), pending.bytes()) {
                Ok(()) => self.front.push(pending),
                Err(cut) => {
                    self.cut = Some(cut);
                    self.overflow.push_back(pending);
                }
            }
        } else {
            self.overflow.push_back(pending);
        }
    }

    /// Queues a group so that it goes in one batch: into the front batch if all of it fits
    /// there, otherwise behind a cut, to start the next batch. A group larger than the
    /// configured limits goes alone in its batch, whole.
    pub(crate) fn push_group(&mut self, group: Vec<P>) {
        if self.cut.is_some() || !self.overflow.is_empty() {
            group.iter().for_each(|p| self.note_deadline(p.deadline()));
            self.overflow.extend(group);
            return;
        }
        match self
            .assembler
            .try_add_all(group.iter().map(|p| (p.update(), p.bytes())))
        {
            Ok(()) => {
                group.iter().for_each(|p| self.note_deadline(p.deadline()));
                self.front.extend(group);
            }
            Err((_, cut)) if !self.front.is_empty() => {
                group.iter().for_each(|p| self.note_deadline(p.deadline()));
                self.cut = Some(cut);
                self.overflow.extend(group);
            }
            Err(_) => {
                group.iter().for_each(|p| self.note_deadline(p.deadline()));
                self.overflow.extend(group);
                self.refill_front();
            }
        }
    }

    /// Takes the front batch, handing its updates to `each` in order, and returns its request
    /// bytes. The next batch is then assembled from what waited, for requests whose envelope
    /// takes `envelope_bytes`. The front keeps its capacity: no batch allocates a new one.
    pub(crate) fn take_batch(&mut self, envelope_bytes: usize, each: impl FnMut(P)) -> usize {
        let bytes = self.assembler.bytes();
        self.front.drain(..).for_each(each);
        self.refill(envelope_bytes);
        self.recompute_deadlines();
        bytes
    }

    /// Re-assembles the front batch for requests whose envelope takes `envelope_bytes` (the
    /// token changed length, which changes what fits).
    pub(crate) fn reassemble(&mut self, envelope_bytes: usize) {
        for pending in self.front.drain(..).rev() {
            self.overflow.push_front(pending);
        }
        self.refill(envelope_bytes);
    }

    /// Empties the queue, in order.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = P> + '_ {
        self.cut = None;
        self.immediate = false;
        self.earliest = None;
        self.front.drain(..).chain(self.overflow.drain(..))
    }

    fn note_deadline(&mut self, deadline: Option<P::Deadline>) {
        match deadline {
            None => self.immediate = true,
            Some(at) => self.earliest = Some(self.earliest.map_or(at, |e| e.min(at))),
        }
    }

    fn recompute_deadlines(&mut self) {
        let (mut immediate, mut earliest) = (false, None);
        for pending in self.front.iter().chain(self.overflow.iter()) {
            match pending.deadline() {
                None => immediate = true,
                Some(at) => earliest = Some(earliest.map_or(at, |e: P::Deadline| e.min(at))),
            }
        }
        (self.immediate, self.earliest) = (immediate, earliest);
    }

    /// Moves updates from `overflow` into the (empty) front batch until one does not fit. A
    /// group moves whole, or closes the batch before it; one larger than the configured limits
    /// moves whole into the empty batch and closes it.
    fn refill(&mut self, envelope_bytes: usize) {
        self.assembler.reset(envelope_bytes);
        self.refill_front();
    }

    /// [`refill`](Self::refill) into the front as it is, which must be empty or open.
    fn refill_front(&mut self) {
        self.cut = None;
        while let Some(head) = self.overflow.front() {
            let unit = head.unit().clamp(1, self.overflow.len());
            if unit > 1 {
                let group = self.overflow.range(..unit).map(|p| (p.update(), p.bytes()));
                match self.assembler.try_add_all(group) {
                    Ok(()) => {
                        self.front.extend(self.overflow.drain(..unit));
                        continue;
                    }
                    Err((_, cut)) if !self.front.is_empty() => {
                        self.cut = Some(cut);
                        break;
                    }
                    Err(_) => {}
                }
                // Larger than the configured limits: alone in its request, whole, and nothing
                // joins it. The handle held it to the service's limits and rules
                // (`check_group`), so this fails only for a group that came another way.
                let group = self.overflow.range(..unit).map(|p| (p.update(), p.bytes()));
                if self.assembler.try_add_alone(group).is_ok() {
                    self.front.extend(self.overflow.drain(..unit));
                    self.cut = Some(Cut::Count);
                    break;
                }
            }
            let Some(pending) = self.overflow.pop_front() else {
                break;
            };
            if let Err(cut) = self.assembler.try_add(pending.update(), pending.bytes()) {
                self.cut = Some(cut);
                self.overflow.push_front(pending);
                break;
            }
            self.front.push(pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_lambda::types::{OperationAction, OperationType};

    use super::*;
    use crate::size::update_bytes;

    /// A queued update with a plain-number deadline.
    #[derive(Debug)]
    struct Item {
        update: OperationUpdate,
        bytes: usize,
        deadline: Option<u64>,
        unit: usize,
    }

    impl Pending for Item {
        type Deadline = u64;
        fn update(&self) -> &OperationUpdate {
            &self.update
        }
        fn bytes(&self) -> usize {
            self.bytes
        }
        fn deadline(&self) -> Option<u64> {
            self.deadline
        }
        fn unit(&self) -> usize {
            self.unit
        }
    }

    fn item(id: &str, deadline: Option<u64>) -> Item {
        let update = OperationUpdate::builder()
            .id(id)
            .r#type(OperationType::Step)
            .action(OperationAction::Start)
            .build()
            .unwrap();
        Item {
            bytes: update_bytes(&update),
            update,
            deadline,
            unit: 1,
        }
    }

    fn group(ids: &[&str]) -> Vec<Item> {
        let mut items: Vec<Item> = ids.iter().map(|id| item(id, None)).collect();
        let size = items.len();
        for (i, item) in items.iter_mut().enumerate() {
            item.unit = if i == 0 { size } else { 0 };
        }
        items
    }

    fn batches(queue: &mut PendingQueue<Item>) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        while !queue.is_empty() {
            let mut ids = Vec::new();
            let _ = queue.take_batch(0, |item| ids.push(item.update.id.clone()));
            out.push(ids);
        }
        out
    }

    #[test]
    fn updates_leave_in_the_order_they_came_split_where_the_limit_falls() {
        let mut queue = PendingQueue::new(BatchLimits::with_limits(2, 1 << 20), 0);
        for id in ["a", "b", "c", "d", "e"] {
            queue.push(item(id, None));
        }
        assert!(queue.is_closed(), "the front is closed once full");
        assert_eq!(queue.room(), 0, "and takes nothing more in");
        assert_eq!(
            batches(&mut queue),
            [vec!["a", "b"], vec!["c", "d"], vec!["e"]]
        );
    }

    #[test]
    fn a_group_closes_the_front_rather_than_split_and_moves_whole_on_refill() {
        let mut queue = PendingQueue::new(BatchLimits::with_limits(3, 1 << 20), 0);
        queue.push(item("a", None));
        queue.push(item("b", None));
        queue.push_group(group(&["g", "h"]));
        assert!(
            queue.is_closed(),
            "the group did not fit, so the front is cut"
        );
        queue.push_group(group(&["x", "y"]));
        assert_eq!(
            batches(&mut queue),
            [vec!["a", "b"], vec!["g", "h"], vec!["x", "y"]],
            "each group goes whole: [g, h, x] would split the second"
        );
    }

    #[test]
    fn a_group_larger_than_the_configured_limits_goes_alone_and_whole() {
        let mut queue = PendingQueue::new(BatchLimits::with_limits(2, 1 << 20), 0);
        queue.push(item("a", None));
        queue.push_group(group(&["g1", "g2", "g3"]));
        queue.push(item("b", None));
        assert_eq!(
            batches(&mut queue),
            [vec!["a"], vec!["g1", "g2", "g3"], vec!["b"]],
            "a group is never split; nothing joins one past the limits"
        );
        let one = item("a", None).bytes;
        let mut queue = PendingQueue::new(BatchLimits::with_limits(250, one), 0);
        queue.push_group(group(&["g1", "g2"]));
        queue.push(item("b", None));
        assert!(queue.is_closed(), "the group alone closes the batch");
        assert_eq!(
            batches(&mut queue),
            [vec!["g1", "g2"], vec!["b"]],
            "over the byte limit too, into an empty front"
        );
    }

    #[test]
    fn deadlines_describe_exactly_what_is_queued() {
        let mut queue = PendingQueue::new(BatchLimits::with_limits(1, 1 << 20), 0);
        queue.push(item("a", Some(30)));
        queue.push(item("b", Some(10)));
        assert_eq!(queue.earliest(), Some(10));
        assert!(!queue.is_due(5) && queue.is_due(10));
        let _ = queue.take_batch(0, drop);
        assert_eq!(queue.earliest(), Some(10), "b still waits");
        let _ = queue.take_batch(0, drop);
        assert_eq!(queue.earliest(), None, "nothing queued, no deadline");
        queue.push(item("c", None));
        assert!(
            queue.is_due(0),
            "an update without a deadline is due at once"
        );
    }

    #[test]
    fn reassembly_after_the_envelope_grew_keeps_order_and_the_byte_limit() {
        let one = item("a", None).bytes;
        // Room for two updates with a zero envelope; a larger envelope leaves room for one.
        let limit = 2 * one + 1 + 10;
        let mut queue = PendingQueue::new(BatchLimits::with_limits(250, limit), 0);
        for id in ["a", "b", "c"] {
            queue.push(item(id, None));
        }
        assert_eq!(queue.front_len(), 2);
        queue.reassemble(one);
        assert_eq!(
            queue.front_len(),
            1,
            "the grown envelope leaves room for one"
        );
        let mut order = Vec::new();
        while !queue.is_empty() {
            let _ = queue.take_batch(one, |item| order.push(item.update.id.clone()));
        }
        assert_eq!(order, ["a", "b", "c"]);
    }
}
