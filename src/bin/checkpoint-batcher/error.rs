//! The command's error: one line for the user, and the exit code that goes with it.
//!
//! Two families, because scripts tell them apart by the exit code: a usage error (a flag out of
//! range, a missing region) exits 2 like clap's own parse errors; a run that failed (a batcher
//! failure, a verification that found a duplicate, an emulator that would not bind) exits 1.

use std::fmt;
use std::process::ExitCode;

use checkpoint_batcher::{BatcherError, ConfigError, FailureScope};

/// What went wrong, already worded for the user (lowercase, no trailing period).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A flag or the environment is wrong; nothing ran. Exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The run itself failed or did not verify. Exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// A usage error.
    pub(crate) fn usage(message: impl fmt::Display) -> Self {
        Self::Usage(message.to_string())
    }

    /// A failed run.
    pub(crate) fn failed(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }

    /// The process exit code: 2 for usage, as clap uses, 1 for a failed run.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) => ExitCode::from(2),
            Self::Failed(_) => ExitCode::from(1),
        }
    }

    /// A batcher error that stopped a run, with its classification when it is a latched
    /// failure: what failed, how the batcher classified it, and which side should give up.
    pub(crate) fn from_batcher(error: &BatcherError) -> Self {
        match error {
            BatcherError::Failed(failure) => Self::Failed(format!(
                "the batcher failed ({}, {}; fail the {}): {failure}",
                failure.kind(),
                if failure.kind().is_retryable() {
                    "retryable, retries exhausted"
                } else {
                    "not retryable"
                },
                scope_word(failure.scope()),
            )),
            other => Self::Failed(format!("the batcher stopped: {other}")),
        }
    }
}

/// `invocation` or `execution`: the side that should give up.
pub(crate) fn scope_word(scope: FailureScope) -> &'static str {
    match scope {
        FailureScope::Execution => "execution",
        // `FailureScope` is non-exhaustive; anything new is at least an invocation failure.
        _ => "invocation",
    }
}

/// The flag that sets a [`BatcherConfig`](checkpoint_batcher::BatcherConfig) field, by the
/// field's name as [`ConfigError::field`] reports it.
pub(crate) fn flag_for_field(field: &str) -> &'static str {
    match field {
        "max_batch_updates" => "--max-batch-updates",
        "max_batch_bytes" => "--max-batch-bytes",
        "flush_interval" => "--flush-interval-ms",
        "queue_capacity" => "--queue-capacity",
        "retry.max_attempts" => "--max-attempts",
        "retry.initial_backoff" => "--initial-backoff-ms",
        "retry.max_backoff" => "--max-backoff-ms",
        "retry.attempt_timeout" => "--attempt-timeout-ms",
        "retry.jitter_seed" => "--jitter-seed",
        _ => "a batcher flag",
    }
}

/// A configuration error as a usage error naming the flag, e.g. `--max-batch-updates must be
/// between 1 and 250 (the service's limit), got 300`.
///
/// Field names inside the reason (such as `retry.max_backoff`) become flags too.
pub(crate) fn config_usage(error: &ConfigError) -> CliError {
    let field = error.field();
    let reason = [
        "retry.max_backoff",
        "retry.initial_backoff",
        "retry.attempt_timeout",
        "retry.max_attempts",
    ]
    .iter()
    .fold(error.reason().to_owned(), |text, name| {
        text.replace(name, flag_for_field(name))
    });
    CliError::Usage(format!("{} {reason}", flag_for_field(field)))
}
