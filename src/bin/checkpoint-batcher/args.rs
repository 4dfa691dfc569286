//! The command line: subcommands and flags (clap derive), and their conversion into the
//! library's [`BatcherConfig`] and the emulator's [`Faults`].
//!
//! Defaults come from the library's own defaults wherever one exists, so the help text cannot
//! drift from [`BatcherConfig::default`]. Ranges clap can check (counts, rates) are checked at
//! parse time; the batcher's fields are checked by [`BatcherConfig::validate`] and its error is
//! turned back into the flag's name (see [`crate::error::config_usage`]).

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

use checkpoint_batcher::SERVICE_MAX_PAYLOAD_BYTES;
use checkpoint_batcher::emulator::{DEFAULT_SEED, Faults};
use checkpoint_batcher::{BatcherConfig, RetryPolicy};

use crate::error::{CliError, config_usage};

/// Load and tuning runs for the checkpoint batcher, against the embedded emulator or a real
/// endpoint.
#[derive(Debug, Parser)]
#[command(name = "checkpoint-batcher", version, about, long_about = None)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Drive the step workload through one batcher and print a verified summary.
    Run(RunArgs),
    /// Sweep batch sizes and flush intervals against the embedded emulator and recommend one.
    Tune(TuneArgs),
    /// Serve the checkpoint API emulator until interrupted.
    Emulator(ServeArgs),
    /// Run a durable function binary (any lambda_runtime binary) as Lambda and the durable
    /// execution service would, against the embedded emulator, until its execution ends.
    Local(LocalArgs),
}

/// `run`: the step workload, the batcher's configuration, and the target.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Tasks running steps at the same time (the handler's concurrency).
    #[arg(short = 'c', long, default_value_t = 100, value_name = "C", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) concurrency: u32,
    /// Steps each task runs one after another.
    #[arg(short = 'k', long, default_value_t = 50, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) steps: u32,
    /// Bytes of each step's result payload.
    #[arg(long, default_value_t = 64, value_name = "BYTES", value_parser = parse_payload_bytes)]
    pub(crate) payload_bytes: usize,

    /// The batcher's configuration.
    #[command(flatten)]
    pub(crate) batcher: BatcherArgs,

    /// Fixed latency the embedded emulator adds to every call, in milliseconds.
    #[arg(long, default_value_t = 5, value_name = "MS", help_heading = EMULATOR_HEADING)]
    pub(crate) latency_ms: u64,
    /// Extra latency drawn uniformly from 0 to this, in milliseconds.
    #[arg(long, default_value_t = 2, value_name = "MS", help_heading = EMULATOR_HEADING)]
    pub(crate) jitter_ms: u64,
    /// Faults the embedded emulator injects.
    #[command(flatten)]
    pub(crate) faults: FaultArgs,

    /// An external endpoint instead of the embedded emulator (the real service, or any
    /// emulator of it), called through the standard AWS credential chain.
    #[arg(long, value_name = "URL", requires_all = ["arn", "checkpoint_token"], help_heading = EXTERNAL_HEADING)]
    pub(crate) endpoint_url: Option<String>,
    /// The durable execution's ARN (external target only). Without --endpoint-url, the
    /// endpoint comes from the AWS configuration chain.
    #[arg(
        long,
        value_name = "ARN",
        requires = "checkpoint_token",
        conflicts_with_all = ["latency_ms", "jitter_ms", "throttle_rate", "server_error_rate", "lost_answer_rate", "seed"],
        help_heading = EXTERNAL_HEADING,
    )]
    pub(crate) arn: Option<String>,
    /// The execution's current checkpoint token (external target only).
    #[arg(long, value_name = "TOKEN", requires = "arn", help_heading = EXTERNAL_HEADING)]
    pub(crate) checkpoint_token: Option<String>,
    /// The AWS region for signing (external target only); defaults to the configuration
    /// chain's (AWS_REGION, profile).
    #[arg(long, value_name = "REGION", requires = "arn", help_heading = EXTERNAL_HEADING)]
    pub(crate) region: Option<String>,

    /// Print the summary as one JSON object (and no progress bar).
    #[arg(long)]
    pub(crate) json: bool,
}

/// `tune`: the workload of each point, the sweep, and the budget.
#[derive(Debug, Args)]
pub(crate) struct TuneArgs {
    /// Tasks running steps at the same time.
    #[arg(short = 'c', long, default_value_t = 100, value_name = "C", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) concurrency: u32,
    /// Steps each task runs, at every point of the sweep.
    #[arg(short = 'k', long, default_value_t = 20, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) steps: u32,
    /// Bytes of each step's result payload.
    #[arg(long, default_value_t = 64, value_name = "BYTES", value_parser = parse_payload_bytes)]
    pub(crate) payload_bytes: usize,
    /// Values of max_batch_updates to try, comma-separated.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "10,50,100,250", value_name = "N,..")]
    pub(crate) batch_sizes: Vec<usize>,
    /// Flush intervals to try, in milliseconds, comma-separated.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "0,1,5,20", value_name = "MS,..")]
    pub(crate) flush_intervals: Vec<u64>,
    /// The p99 acknowledgement latency budget the recommendation must meet, in milliseconds.
    #[arg(long, default_value_t = 50.0, value_name = "MS", value_parser = parse_positive_ms)]
    pub(crate) max_p99_ms: f64,
    /// Write an SVG chart of throughput against p99 latency to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) plot: Option<PathBuf>,
    /// Print the grid and the recommendation as one JSON object (and no progress).
    #[arg(long)]
    pub(crate) json: bool,
    /// Fixed latency the embedded emulator adds to every call, in milliseconds.
    #[arg(long, default_value_t = 5, value_name = "MS", help_heading = EMULATOR_HEADING)]
    pub(crate) latency_ms: u64,
    /// Extra latency drawn uniformly from 0 to this, in milliseconds.
    #[arg(long, default_value_t = 2, value_name = "MS", help_heading = EMULATOR_HEADING)]
    pub(crate) jitter_ms: u64,
    /// Faults the embedded emulator injects.
    #[command(flatten)]
    pub(crate) faults: FaultArgs,
}

/// `emulator`: where to listen, what to inject, and whether to start an execution.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to bind; loopback unless you mean to expose it.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub(crate) host: IpAddr,
    /// Port to listen on; 0 picks a free one (printed on the first line).
    #[arg(long, default_value_t = 9014, value_name = "PORT")]
    pub(crate) port: u16,
    /// Start an execution (named NAME, default `checkpoint-batcher`) and print its ARN and
    /// first checkpoint token.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "checkpoint-batcher")]
    pub(crate) start_execution: Option<String>,
    /// Most operations in a checkpoint's NewExecutionState before it answers a NextMarker.
    #[arg(long, default_value_t = checkpoint_batcher::emulator::DEFAULT_PAGE_SIZE, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000).map(|n| n as usize))]
    pub(crate) page_size: usize,
    /// Fixed latency added to every call, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS", help_heading = EMULATOR_HEADING)]
    pub(crate) latency_ms: u64,
    /// Extra latency drawn uniformly from 0 to this, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS", help_heading = EMULATOR_HEADING)]
    pub(crate) jitter_ms: u64,
    /// Faults to inject.
    #[command(flatten)]
    pub(crate) faults: FaultArgs,
}

/// `local`: the execution's input, how the service's side is played, and the command.
///
/// The command gets a Lambda Runtime API on 127.0.0.1 (`AWS_LAMBDA_RUNTIME_API`), the
/// environment a Lambda sandbox gives a function, dummy credentials and
/// `AWS_ENDPOINT_URL_LAMBDA` aimed at the embedded emulator, so nothing it sends through the
/// AWS SDK leaves the machine. Its stdout and stderr go to this command's stderr, unprefixed;
/// this command's stdout carries only the report (or, with --json, the JSON).
#[derive(Debug, Args)]
#[command(
    after_help = "The command runs with a Lambda sandbox's environment, AWS_LAMBDA_RUNTIME_API \
                  on 127.0.0.1, dummy credentials and AWS_ENDPOINT_URL_LAMBDA aimed at the \
                  embedded emulator. Its stdout and stderr go to this command's stderr, \
                  unprefixed; stdout carries only the report (or the --json object).\n\n\
                  Exit status: 0 only when the emulator holds the execution SUCCEEDED; 1 when it \
                  ended otherwise or the run stopped (invocations used up, an operation \
                  nothing here completes, Ctrl-C); 2 for a usage error (bad flag, --input not JSON, a command \
                  that cannot start)."
)]
pub(crate) struct LocalArgs {
    /// The execution's input, as JSON.
    #[arg(long, default_value = "{}", value_name = "JSON", value_parser = parse_json)]
    pub(crate) input: serde_json::Value,
    /// Fire waits (and retries of steps) as soon as the function answers PENDING instead of
    /// when they are due.
    #[arg(long)]
    pub(crate) skip_waits: bool,
    /// Answer every callback the function waits on with this result (JSON). Without it, the
    /// run waits for someone to answer the callback through the emulator (it prints the AWS
    /// CLI command that does).
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub(crate) callback_result: Option<serde_json::Value>,
    /// The most invocations before giving up.
    #[arg(long, default_value_t = checkpoint_batcher::emulator::local::DEFAULT_MAX_INVOCATIONS, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) max_invocations: u32,
    /// How long one invocation may run, in seconds; past it the process is killed and the
    /// function invoked again, as Lambda does at a function's timeout.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=900))]
    pub(crate) timeout: u64,
    /// Kill the process (SIGKILL) once the execution has N updates applied, once, to show a
    /// replay: the next invocation starts a new process.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) kill_after_updates: Option<u64>,
    /// The function's name (AWS_LAMBDA_FUNCTION_NAME, and the execution's ARN); default: the
    /// command's file name.
    #[arg(long, value_name = "NAME", value_parser = parse_function_name)]
    pub(crate) function_name: Option<String>,
    /// The function's memory, in MB (AWS_LAMBDA_FUNCTION_MEMORY_SIZE).
    #[arg(long, default_value_t = 128, value_name = "MB", value_parser = clap::value_parser!(u32).range(128..=10_240))]
    pub(crate) memory_size: u32,
    /// Print the outcome, every invocation and the whole history (the operations and the
    /// updates applied, as the emulator holds them; no tokens) as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Fixed latency the embedded emulator adds to every call, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS", help_heading = EMULATOR_HEADING)]
    pub(crate) latency_ms: u64,
    /// Extra latency drawn uniformly from 0 to this, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS", help_heading = EMULATOR_HEADING)]
    pub(crate) jitter_ms: u64,
    /// Faults the embedded emulator injects.
    #[command(flatten)]
    pub(crate) faults: FaultArgs,
    /// The function: a program and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1.., value_name = "COMMAND")]
    pub(crate) command: Vec<OsString>,
}

/// Help heading of the emulator's latency and fault flags.
const EMULATOR_HEADING: &str = "Embedded emulator";
/// Help heading of the external-endpoint flags.
const EXTERNAL_HEADING: &str = "External endpoint";
/// Help heading of the batcher's configuration flags.
const BATCHER_HEADING: &str = "Batcher configuration";

/// One flag per [`BatcherConfig`] field; durations in milliseconds.
#[derive(Debug, Args)]
pub(crate) struct BatcherArgs {
    /// Most updates in one checkpoint call (1 to 250).
    #[arg(long, default_value_t = defaults().max_batch_updates, value_name = "N", help_heading = BATCHER_HEADING)]
    pub(crate) max_batch_updates: usize,
    /// Most request body bytes in one checkpoint call (at least 1024).
    #[arg(long, default_value_t = defaults().max_batch_bytes, value_name = "BYTES", help_heading = BATCHER_HEADING)]
    pub(crate) max_batch_bytes: usize,
    /// How long an update may wait for company before its batch goes, in milliseconds.
    #[arg(long, default_value_t = millis(defaults().flush_interval), value_name = "MS", help_heading = BATCHER_HEADING)]
    pub(crate) flush_interval_ms: u64,
    /// Updates that may wait in the queue before submit waits.
    #[arg(long, default_value_t = defaults().queue_capacity, value_name = "N", help_heading = BATCHER_HEADING)]
    pub(crate) queue_capacity: usize,
    /// Attempts per call, the first included; 1 disables retries.
    #[arg(long, default_value_t = defaults().retry.max_attempts, value_name = "N", help_heading = BATCHER_HEADING)]
    pub(crate) max_attempts: u32,
    /// Ceiling of the first backoff, in milliseconds.
    #[arg(long, default_value_t = millis(defaults().retry.initial_backoff), value_name = "MS", help_heading = BATCHER_HEADING)]
    pub(crate) initial_backoff_ms: u64,
    /// Largest backoff ceiling, in milliseconds.
    #[arg(long, default_value_t = millis(defaults().retry.max_backoff), value_name = "MS", help_heading = BATCHER_HEADING)]
    pub(crate) max_backoff_ms: u64,
    /// How long one attempt may take, in milliseconds.
    #[arg(long, default_value_t = millis(defaults().retry.attempt_timeout), value_name = "MS", help_heading = BATCHER_HEADING)]
    pub(crate) attempt_timeout_ms: u64,
    /// Seed of the retry jitter, for reproducible runs (default: from the system).
    #[arg(long, value_name = "SEED", help_heading = BATCHER_HEADING)]
    pub(crate) jitter_seed: Option<u64>,
}

impl BatcherArgs {
    /// The configuration these flags describe, validated.
    ///
    /// # Errors
    ///
    /// A usage error naming the flag whose value is out of range.
    pub(crate) fn config(&self) -> Result<BatcherConfig, CliError> {
        let config = BatcherConfig {
            max_batch_updates: self.max_batch_updates,
            max_batch_bytes: self.max_batch_bytes,
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            queue_capacity: self.queue_capacity,
            retry: RetryPolicy {
                max_attempts: self.max_attempts,
                initial_backoff: Duration::from_millis(self.initial_backoff_ms),
                max_backoff: Duration::from_millis(self.max_backoff_ms),
                attempt_timeout: Duration::from_millis(self.attempt_timeout_ms),
                jitter_seed: self.jitter_seed,
            },
        };
        config.validate().map_err(|e| config_usage(&e))?;
        Ok(config)
    }
}

/// The emulator's fault rates and seed, shared by every subcommand that starts one.
#[derive(Debug, Args)]
pub(crate) struct FaultArgs {
    /// Share of calls answered 429 TooManyRequestsException (0 to 1).
    #[arg(long, default_value_t = 0.0, value_name = "RATE", value_parser = parse_rate, help_heading = EMULATOR_HEADING)]
    pub(crate) throttle_rate: f64,
    /// Share of calls answered 500 ServiceException without being applied (0 to 1).
    #[arg(long, default_value_t = 0.0, value_name = "RATE", value_parser = parse_rate, help_heading = EMULATOR_HEADING)]
    pub(crate) server_error_rate: f64,
    /// Share of checkpoints applied and then answered 500, as if the answer was lost (0 to 1).
    #[arg(long, default_value_t = 0.0, value_name = "RATE", value_parser = parse_rate, help_heading = EMULATOR_HEADING)]
    pub(crate) lost_answer_rate: f64,
    /// Seed of the emulator's fault generator: the same seed, the same faults.
    #[arg(long, default_value_t = DEFAULT_SEED, value_name = "SEED", help_heading = EMULATOR_HEADING)]
    pub(crate) seed: u64,
}

impl FaultArgs {
    /// The emulator's faults for these rates and the given latency and jitter.
    pub(crate) fn faults(&self, latency_ms: u64, jitter_ms: u64) -> Faults {
        Faults {
            latency: Duration::from_millis(latency_ms),
            jitter: Duration::from_millis(jitter_ms),
            throttle_rate: self.throttle_rate,
            server_error_rate: self.server_error_rate,
            lost_answer_rate: self.lost_answer_rate,
            ..Faults::default()
        }
    }
}

/// The library's defaults, which the flags' defaults are read from.
fn defaults() -> BatcherConfig {
    BatcherConfig::default()
}

/// Whole milliseconds of `duration`, saturating.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A probability: a number from 0 to 1.
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("must be a number from 0 to 1, got {text:?}"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("must be between 0 and 1, got {text}"))
    }
}

/// A JSON document.
fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

/// A function name as Lambda takes one: 1 to 64 letters, digits, `-` or `_`.
fn parse_function_name(text: &str) -> Result<String, String> {
    let valid = (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err("must be 1 to 64 letters, digits, '-' or '_'".to_owned())
    }
}

/// A latency budget: a positive, finite number of milliseconds.
fn parse_positive_ms(text: &str) -> Result<f64, String> {
    let ms: f64 = text
        .parse()
        .map_err(|_| format!("must be a number of milliseconds, got {text:?}"))?;
    if ms.is_finite() && ms > 0.0 {
        Ok(ms)
    } else {
        Err(format!("must be more than 0, got {text}"))
    }
}

/// A step payload size, at most the service's STEP payload limit.
fn parse_payload_bytes(text: &str) -> Result<usize, String> {
    let bytes: usize = text
        .parse()
        .map_err(|_| format!("must be a number of bytes, got {text:?}"))?;
    if bytes <= SERVICE_MAX_PAYLOAD_BYTES {
        Ok(bytes)
    } else {
        Err(format!(
            "must be at most {SERVICE_MAX_PAYLOAD_BYTES} (the service's payload limit), got {bytes}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_default_flags_give_the_default_configuration() {
        let cli = Cli::try_parse_from(["checkpoint-batcher", "run"]);
        let Ok(Cli {
            command: Command::Run(run),
        }) = cli
        else {
            unreachable!("`run` alone parses");
        };
        assert_eq!(
            run.batcher.config().ok(),
            Some(BatcherConfig::default()),
            "flag defaults are read from BatcherConfig::default"
        );
    }
}
