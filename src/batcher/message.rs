//! The commands a handle sends to the actor. Private: the handle is the only producer.

use aws_sdk_lambda::types::OperationUpdate;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Span;

use super::ack::CheckpointAck;
use super::queue::Pending;
use super::shared::BatcherReport;
use crate::error::BatcherError;

pub(crate) type AckSender = oneshot::Sender<Result<CheckpointAck, BatcherError>>;
pub(crate) type FlushSender = oneshot::Sender<Result<(), BatcherError>>;
pub(crate) type ShutdownSender = oneshot::Sender<Result<BatcherReport, BatcherError>>;

/// One validated update on its way to a batch.
#[derive(Debug)]
pub(crate) struct Submission {
    pub(crate) update: OperationUpdate,
    /// Its exact JSON bytes in a request body, measured by the caller's task so the actor's hot
    /// loop only adds numbers.
    pub(crate) bytes: usize,
    /// When its batch must go at the latest; `None`: as soon as no call is in flight.
    pub(crate) deadline: Option<Instant>,
    /// Who waits for it: the caller of a single update, or of a group's last update (a group is
    /// answered once all of it is durable); `None` for a group's other updates.
    pub(crate) reply: Option<AckSender>,
    /// How many updates the unit that starts here holds: 1 for a single update, the group's
    /// size on a group's first update, 0 on its others. A unit goes in one batch when it fits.
    pub(crate) unit: usize,
    /// The caller's span, so the batch's span can point back at the callers it served.
    pub(crate) span: Span,
}

#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "updates are nearly every command; boxing them would cost an allocation each"
)]
pub(crate) enum Command {
    Update(Submission),
    /// The updates of one `submit_all`, in order.
    Group(Vec<Submission>),
    Flush(FlushSender),
    Shutdown(ShutdownSender),
}

impl Pending for Submission {
    type Deadline = Instant;

    fn update(&self) -> &OperationUpdate {
        &self.update
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn unit(&self) -> usize {
        self.unit
    }
}
