//! The commands a handle sends to the actor. Private: the handle is the only producer.

use aws_sdk_lambda::types::OperationUpdate;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Span;

use super::ack::CheckpointAck;
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
    pub(crate) reply: AckSender,
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
    Refresh(AckSender),
    Flush(FlushSender),
    Shutdown(ShutdownSender),
}
