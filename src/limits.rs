//! The service's limits, in one place and under one naming scheme: `SERVICE_MAX_<what>_<unit>`.
//!
//! Per-request limits ([`SERVICE_MAX_BATCH_UPDATES`], [`SERVICE_MAX_BATCH_BYTES`]) bound the
//! batcher's configuration: [`BatcherConfig::validate`](crate::BatcherConfig::validate) refuses
//! anything above them. Per-update limits are what local validation checks before an update is
//! queued, so that one bad update fails only its own caller and not the batch it would join.
//! Sizes count UTF-8 bytes, lengths count characters. The figures and their sources are in
//! docs/PROTOCOL.md, "Request limits" and "Field limits".

/// The most updates one checkpoint request carries, as every official SDK applies it
/// (docs/PROTOCOL.md, "Request limits").
pub const SERVICE_MAX_BATCH_UPDATES: usize = 250;

/// The largest checkpoint request, counted as JSON bytes of the request body (750 KiB;
/// docs/PROTOCOL.md, "Request limits").
pub const SERVICE_MAX_BATCH_BYTES: usize = 750 * 1024;

/// The longest `Id` or `ParentId` of an update, in characters (docs/PROTOCOL.md, "Field
/// limits").
pub const SERVICE_MAX_ID_CHARS: usize = 64;

/// The longest `Name` of an update, in characters (docs/PROTOCOL.md, "Field limits").
pub const SERVICE_MAX_NAME_CHARS: usize = 256;

/// The longest `SubType` of an update, in characters (docs/PROTOCOL.md, "Field limits").
pub const SERVICE_MAX_SUB_TYPE_CHARS: usize = 32;

/// The largest `Payload` of any update but an EXECUTION's, in bytes (1 MiB; docs/PROTOCOL.md,
/// "Field limits").
pub const SERVICE_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// The largest `Payload` of an EXECUTION update (a synchronous execution's result), in bytes
/// (6 MiB; docs/PROTOCOL.md, "Field limits").
pub const SERVICE_MAX_EXECUTION_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// The largest `Error` of an update, all its fields together, in bytes (1 MiB;
/// docs/PROTOCOL.md, "Field limits").
pub const SERVICE_MAX_ERROR_BYTES: usize = 1024 * 1024;

/// The longest checkpoint token the service issues, in characters (docs/PROTOCOL.md, "Field
/// limits").
pub const SERVICE_MAX_TOKEN_CHARS: usize = 2048;
