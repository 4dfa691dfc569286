//! The Rust SDKs for durable functions side by side on the real path (issue 18, item 5).
//!
//! # Workload
//!
//! One invocation of a handler that runs C branches at once, each K steps in sequence, against
//! `checkpoint-batcher emulator` in a child process on loopback, the emulator adding L ms to
//! every request (`--latency-ms`). The handler is written with each SDK as its documentation
//! writes it: a `map` over C items whose closure runs K steps (each returning a 13-byte JSON
//! string) on the item's child context. Rows:
//!
//! - **AWS's Rust SDK** (`aws-durable-execution-sdk` 0.1.0, the pinned dev-dependency), made
//!   into a Lambda function by its `wrap`, with its checkpoint client built on the
//!   `aws-sdk-lambda` client the bench passes (`Options::lambda_client`): with default
//!   settings (one update per call), with `checkpoint_batching(true)`, and with a
//!   `checkpoint_delay` of 0, 1 and 20 ms (batching on; the SDK maps a delay of 0 to the same
//!   zero window as batching alone).
//! - **durable-lambda** (`durable-lambda-core` 1.2) on the batcher, through this crate's
//!   `durable_lambda::Runner` over a `RealBackend` on the same kind of client (feature
//!   `durable-lambda`).
//! - **the batcher alone**, for reference: this crate's own step workload (C tasks of K steps,
//!   a fire-and-forget STEP START and an awaited STEP SUCCEED, no contexts) through
//!   `RealBackend`, as `throughput`'s real path runs it.
//!
//! Both SDKs' `map` makes each item a CONTEXT (START and SUCCEED) and the map itself one more,
//! so their invocations send 2 + 2C + 2CK updates where the reference row sends 2CK: the table
//! shows updates beside steps.
//!
//! # Measurement
//!
//! Every row runs in a fresh child process of this bench binary (`--row ...`), which starts its
//! own emulator process, so that the client CPU it reports is that client's alone: no thread
//! or pool left by another SDK runs in it. The clock, the client's CPU (`getrusage` of the row
//! process: every thread, the SDK's, hyper's, the batcher's) and the emulator's (its threads'
//! `schedstat`) are read around the invocation alone: from the event handed to the SDK to its
//! answer (for the reference row, from spawning the batcher to its shutdown). Before that, one
//! `GetDurableExecutionState` opens the connection and reads the execution's first state,
//! from which the invocation event is built as the service builds it. Requests and updates are
//! counted by an interceptor on the `aws-sdk-lambda` client every row is given (each HTTP
//! attempt, by operation; the updates of each checkpoint call, by type). A row fails unless
//! the invocation answers SUCCEEDED and every step's SUCCEED was sent exactly once.
//!
//! steps/s = C×K / elapsed; client CPU is divided by the updates sent (and by the steps).
//!
//! # Targets (issue 18)
//!
//! At (C, K, L) = (100, 50, 0) and (250, 40, 0): durable-lambda on the batcher at least 2× the
//! steps/s of AWS's SDK in its best setting, and at most ¼ of its client CPU per update. "Best"
//! is taken per measure: the AWS row with the most steps/s, and the AWS row with the least CPU
//! per update (which is stricter than the fastest row's CPU when they differ).
//!
//! # Running
//!
//! `cargo bench --features cli,durable-lambda --bench sdks`. Without `cli` nothing runs (the
//! emulator binary is missing); without `durable-lambda` its row is skipped with a note.
//! `BENCH_QUICK=1` shrinks K (a smoke run), `BENCH_RUNS=n` runs each row n times (default 3;
//! the run with the median steps/s is reported; AWS's default settings run once at L > 0, as
//! one run takes ~30 s), `BENCH_SCENARIO=100,50,0` and `BENCH_ROWS=aws` filter by substring.
//! `--json` (or `BENCH_JSON=1`) writes the rows as JSON to standard output and the table to
//! standard error; `--json=PATH` writes them to a file.

use std::env;
use std::fs;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_lambda::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_lambda::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionInput;
use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::{BatcherConfig, CheckpointBatcher, RealBackend};
use serde_json::{Value, json};

#[path = "common/emulator_process.rs"]
mod emulator_process;

use emulator_process::{EMULATOR_BIN, EmulatorProcess, client_config, own_cpu};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What every step returns: 13 bytes of JSON once serialized, as `throughput`'s payload.
const STEP_RESULT: &str = "step result";

/// The targets' factors.
const STEPS_FACTOR: f64 = 2.0;
const CPU_FACTOR: f64 = 4.0;

/// One workload: C branches of K steps, L ms added to every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Scenario {
    branches: usize,
    steps: usize,
    latency_ms: u64,
}

impl Scenario {
    fn label(self) -> String {
        format!("{},{},{}", self.branches, self.steps, self.latency_ms)
    }

    /// Whether issue 18's targets apply.
    fn has_target(self, quick: bool) -> bool {
        let full = [(100, 50, 0), (250, 40, 0)];
        full.iter().any(|&(c, k, l)| {
            self.branches == c && (quick || self.steps == k) && self.latency_ms == l
        })
    }
}

fn scenarios(quick: bool) -> Vec<Scenario> {
    let k = |full: usize| if quick { 4 } else { full };
    vec![
        Scenario {
            branches: 100,
            steps: k(20),
            latency_ms: 5,
        },
        Scenario {
            branches: 100,
            steps: k(50),
            latency_ms: 0,
        },
        Scenario {
            branches: 250,
            steps: k(40),
            latency_ms: 0,
        },
    ]
}

/// Who runs the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// AWS's SDK with default options: every checkpoint written at once, one per call.
    AwsDefault,
    /// AWS's SDK with `checkpoint_batching(true)`.
    AwsBatching,
    /// AWS's SDK with `checkpoint_batching(true)` and `checkpoint_delay` of this many ms.
    AwsDelay(u64),
    /// durable-lambda on the batcher.
    DurableLambda,
    /// This crate's own step workload on the batcher.
    Batcher,
}

const CLIENTS: [Client; 7] = [
    Client::AwsDefault,
    Client::AwsBatching,
    Client::AwsDelay(0),
    Client::AwsDelay(1),
    Client::AwsDelay(20),
    Client::DurableLambda,
    Client::Batcher,
];

impl Client {
    fn key(self) -> String {
        match self {
            Self::AwsDefault => "aws-default".to_owned(),
            Self::AwsBatching => "aws-batching".to_owned(),
            Self::AwsDelay(ms) => format!("aws-delay-{ms}"),
            Self::DurableLambda => "durable-lambda".to_owned(),
            Self::Batcher => "batcher".to_owned(),
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        CLIENTS.into_iter().find(|c| c.key() == key)
    }

    fn label(self) -> String {
        match self {
            Self::AwsDefault => "AWS SDK 0.1.0, default settings".to_owned(),
            Self::AwsBatching => "AWS SDK 0.1.0, checkpoint_batching(true)".to_owned(),
            Self::AwsDelay(ms) => format!("AWS SDK 0.1.0, batching, checkpoint_delay {ms} ms"),
            Self::DurableLambda => "durable-lambda 1.2 on the batcher".to_owned(),
            Self::Batcher => "reference: the batcher's own step workload".to_owned(),
        }
    }

    fn is_aws(self) -> bool {
        matches!(
            self,
            Self::AwsDefault | Self::AwsBatching | Self::AwsDelay(_)
        )
    }

    /// Why the row cannot run in this build, if it cannot.
    fn missing(self) -> Option<&'static str> {
        if self == Self::DurableLambda && !cfg!(feature = "durable-lambda") {
            Some("needs the `durable-lambda` feature")
        } else {
            None
        }
    }
}

/// Requests and updates the client sent, counted by [`Counter`].
#[derive(Debug, Default)]
struct Counts {
    checkpoint_requests: AtomicU64,
    state_requests: AtomicU64,
    other_requests: AtomicU64,
    updates: AtomicU64,
    step_starts: AtomicU64,
    step_succeeds: AtomicU64,
    context_updates: AtomicU64,
}

/// The counters' values at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct Counted {
    checkpoint_requests: u64,
    state_requests: u64,
    other_requests: u64,
    updates: u64,
    step_starts: u64,
    step_succeeds: u64,
    context_updates: u64,
}

impl Counts {
    fn read(&self) -> Counted {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counted {
            checkpoint_requests: get(&self.checkpoint_requests),
            state_requests: get(&self.state_requests),
            other_requests: get(&self.other_requests),
            updates: get(&self.updates),
            step_starts: get(&self.step_starts),
            step_succeeds: get(&self.step_succeeds),
            context_updates: get(&self.context_updates),
        }
    }
}

impl Counted {
    fn since(self, before: Self) -> Self {
        Self {
            checkpoint_requests: self.checkpoint_requests - before.checkpoint_requests,
            state_requests: self.state_requests - before.state_requests,
            other_requests: self.other_requests - before.other_requests,
            updates: self.updates - before.updates,
            step_starts: self.step_starts - before.step_starts,
            step_succeeds: self.step_succeeds - before.step_succeeds,
            context_updates: self.context_updates - before.context_updates,
        }
    }
}

/// An `aws-sdk-lambda` interceptor counting every HTTP attempt by operation, and the updates
/// of every checkpoint call (once per call, however often it is retried).
#[derive(Clone, Debug)]
struct Counter(Arc<Counts>);

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "BenchRequestCounter"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Error> {
        if let Some(input) = context
            .input()
            .downcast_ref::<CheckpointDurableExecutionInput>()
        {
            let counts = &self.0;
            for update in input.updates() {
                let _ = counts.updates.fetch_add(1, Ordering::Relaxed);
                match (update.r#type(), update.action()) {
                    (OperationType::Step, OperationAction::Start) => {
                        let _ = counts.step_starts.fetch_add(1, Ordering::Relaxed);
                    }
                    (OperationType::Step, OperationAction::Succeed) => {
                        let _ = counts.step_succeeds.fetch_add(1, Ordering::Relaxed);
                    }
                    (OperationType::Context, _) => {
                        let _ = counts.context_updates.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Error> {
        let uri = context.request().uri();
        let path = uri.split('?').next().unwrap_or(uri);
        let counter = if path.ends_with("/checkpoint") {
            &self.0.checkpoint_requests
        } else if path.ends_with("/state") {
            &self.0.state_requests
        } else {
            &self.0.other_requests
        };
        let _ = counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// CPU time the whole machine has used so far (all but idle and iowait), from `/proc/stat`,
/// in clock ticks (100 per second).
fn machine_busy_ticks() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    Some(fields.iter().sum::<u64>() - fields.get(3)? - fields.get(4)?)
}

/// The client every row is given: a region, static credentials (requests are signed as for
/// the service), the endpoint overridden to the emulator's loopback listener, and the
/// counting interceptor.
fn client(endpoint: &str, counts: &Arc<Counts>) -> aws_sdk_lambda::Client {
    let config = client_config(endpoint)
        .interceptor(Counter(Arc::clone(counts)))
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

/// Reads the new execution's state (which opens the connection) and builds the invocation
/// event the service would send: its ARN, token and first state page, timestamps in
/// milliseconds, an execution started without input carrying `"{}"`.
async fn invocation_event(
    client: &aws_sdk_lambda::Client,
    arn: &str,
    token: &str,
) -> Result<Value, Error> {
    let state = client
        .get_durable_execution_state()
        .durable_execution_arn(arn)
        .checkpoint_token(token)
        .send()
        .await?;
    let operations: Vec<Value> = state
        .operations()
        .iter()
        .map(|op| {
            let input = op
                .execution_details()
                .and_then(|d| d.input_payload())
                .unwrap_or("{}");
            let started = op.start_timestamp().to_millis().unwrap_or_default();
            json!({
                "Id": op.id(),
                "Type": op.r#type().as_str(),
                "Status": op.status().as_str(),
                "StartTimestamp": started,
                "ExecutionDetails": {"InputPayload": input},
            })
        })
        .collect();
    if state.next_marker().is_some() || operations.len() != 1 {
        return Err("a new execution holds one operation".into());
    }
    Ok(json!({
        "DurableExecutionArn": arn,
        "CheckpointToken": token,
        "InitialExecutionState": {"Operations": operations},
    }))
}

/// What one row's run measured (the child process's report, as JSON).
#[derive(Clone, Debug, Default)]
struct Measured {
    elapsed: Duration,
    client_cpu: Duration,
    emulator_cpu: Duration,
    counted: Counted,
    /// Cores' worth of CPU other processes used during the invocation.
    foreign_cores: Option<f64>,
}

impl Measured {
    fn json(&self) -> Value {
        json!({
            "elapsed_s": self.elapsed.as_secs_f64(),
            "client_cpu_s": self.client_cpu.as_secs_f64(),
            "emulator_cpu_s": self.emulator_cpu.as_secs_f64(),
            "checkpoint_requests": self.counted.checkpoint_requests,
            "state_requests": self.counted.state_requests,
            "other_requests": self.counted.other_requests,
            "updates": self.counted.updates,
            "step_starts": self.counted.step_starts,
            "step_succeeds": self.counted.step_succeeds,
            "context_updates": self.counted.context_updates,
            "foreign_cores": self.foreign_cores,
        })
    }

    fn from_json(value: &Value) -> Result<Self, Error> {
        let f = |key: &str| {
            value[key]
                .as_f64()
                .ok_or_else(|| format!("the row's report has no `{key}`: {value}"))
        };
        let n = |key: &str| {
            value[key]
                .as_u64()
                .ok_or_else(|| format!("the row's report has no `{key}`: {value}"))
        };
        Ok(Self {
            elapsed: Duration::from_secs_f64(f("elapsed_s")?),
            client_cpu: Duration::from_secs_f64(f("client_cpu_s")?),
            emulator_cpu: Duration::from_secs_f64(f("emulator_cpu_s")?),
            counted: Counted {
                checkpoint_requests: n("checkpoint_requests")?,
                state_requests: n("state_requests")?,
                other_requests: n("other_requests")?,
                updates: n("updates")?,
                step_starts: n("step_starts")?,
                step_succeeds: n("step_succeeds")?,
                context_updates: n("context_updates")?,
            },
            foreign_cores: value["foreign_cores"].as_f64(),
        })
    }

    fn requests(&self) -> u64 {
        self.counted.checkpoint_requests + self.counted.state_requests + self.counted.other_requests
    }
}

// ---------------------------------------------------------------------------------------------
// The handlers.

/// The workload written with AWS's SDK: a `map` over C items, K steps on each item's context.
async fn aws_handler(
    _event: Value,
    ctx: aws_durable_execution_sdk::DurableContext,
    scenario: Scenario,
) -> Result<Value, aws_durable_execution_sdk::BoxError> {
    let steps = scenario.steps;
    let items: Vec<usize> = (0..scenario.branches).collect();
    let done: Vec<usize> = ctx
        .map(items, move |child, item: usize, _index| async move {
            for step in 0..steps {
                let _: String = child
                    .step(|_| async { Ok(STEP_RESULT.to_owned()) })
                    .name(format!("s{step}"))
                    .await?;
            }
            Ok(item)
        })
        .name("branches")
        .await?;
    Ok(json!({"branches": done.len()}))
}

/// One invocation of the workload on AWS's SDK with `options`.
async fn run_aws(
    client: aws_sdk_lambda::Client,
    event: Value,
    scenario: Scenario,
    setting: Client,
    measure: impl FnOnce() -> Window,
) -> Result<(Closed, Value), Error> {
    use aws_durable_execution_sdk::{LambdaContext, Options, lambda_runtime::LambdaEvent};
    let mut options = Options::builder().lambda_client(client);
    match setting {
        Client::AwsBatching => options = options.checkpoint_batching(true),
        Client::AwsDelay(ms) => {
            options = options
                .checkpoint_batching(true)
                .checkpoint_delay(Duration::from_millis(ms));
        }
        _ => {}
    }
    let function = aws_durable_execution_sdk::wrap(
        move |event: Value, ctx| aws_handler(event, ctx, scenario),
        options.build()?,
    );
    let payload = serde_json::from_value(event)?;
    let mut context = LambdaContext::default();
    context.request_id = "sdks-bench".to_owned();
    let window = measure();
    let answer = function(LambdaEvent::new(payload, context)).await?;
    Ok((window.close(), serde_json::to_value(answer)?))
}

#[cfg(feature = "durable-lambda")]
mod durable_lambda_row {
    //! The workload written with durable-lambda, run on the batcher.

    use std::sync::Arc;

    use checkpoint_batcher::RealBackend;
    use checkpoint_batcher::durable_lambda::Runner;
    use checkpoint_batcher::durable_lambda::prelude::*;
    use serde_json::{Value, json};

    use super::{Closed, Error, STEP_RESULT, Scenario, Window};

    /// A `map` over C items, K steps on each item's child context, as durable-lambda's
    /// documentation writes a map.
    async fn handler(
        _event: Value,
        mut ctx: DurableContext,
        scenario: Scenario,
    ) -> Result<Value, DurableError> {
        let steps = scenario.steps;
        let items: Vec<usize> = (0..scenario.branches).collect();
        let done = ctx
            .map(
                "branches",
                items,
                MapOptions::new(),
                move |item: usize, mut child: DurableContext| async move {
                    for step in 0..steps {
                        let _: Result<String, String> = child
                            .step(&format!("s{step}"), || async { Ok(STEP_RESULT.to_owned()) })
                            .await?;
                    }
                    Ok(item)
                },
            )
            .await?;
        Ok(json!({"branches": done.results.len()}))
    }

    /// One invocation through [`Runner::invoke`] on a `RealBackend` over `client`, with the
    /// default batcher configuration.
    pub(super) async fn run(
        client: aws_sdk_lambda::Client,
        event: Value,
        scenario: Scenario,
        measure: impl FnOnce() -> Window,
    ) -> Result<(Closed, Value), Error> {
        let runner = Runner::new(Arc::new(RealBackend::new(client)));
        let window = measure();
        let answer = runner
            .invoke(event, move |event, ctx| handler(event, ctx, scenario))
            .await?;
        Ok((window.close(), answer))
    }
}

/// The reference row: this crate's step workload on a batcher of its own, C tasks of K steps,
/// each step a fire-and-forget START and an awaited SUCCEED.
async fn run_batcher(
    client: aws_sdk_lambda::Client,
    arn: String,
    token: String,
    scenario: Scenario,
    measure: impl FnOnce() -> Window,
) -> Result<(Closed, Value), Error> {
    let backend = Arc::new(RealBackend::new(client));
    let result = serde_json::to_string(STEP_RESULT)?;
    let window = measure();
    let batcher = CheckpointBatcher::spawn(backend, arn, token, BatcherConfig::default())?;
    let tasks: Vec<_> = (0..scenario.branches)
        .map(|task| {
            let batcher = batcher.clone();
            let result = result.clone();
            tokio::spawn(async move {
                for step in 0..scenario.steps {
                    let id = format!("t{task}-s{step}");
                    let update = |action| {
                        OperationUpdate::builder()
                            .id(id.clone())
                            .r#type(OperationType::Step)
                            .action(action)
                    };
                    drop(
                        batcher
                            .submit(update(OperationAction::Start).build()?)
                            .await?,
                    );
                    let succeed = update(OperationAction::Succeed)
                        .payload(result.clone())
                        .build()?;
                    let _ = batcher.checkpoint(succeed).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let _ = batcher.shutdown().await?;
    Ok((window.close(), json!({"Status": "SUCCEEDED"})))
}

/// The readings around one invocation.
struct Window {
    started: Instant,
    cpu: Duration,
    emulator_cpu: Duration,
    busy: Option<u64>,
    counted: Counted,
    counts: Arc<Counts>,
}

/// A closed window: what was used between its readings.
struct Closed {
    elapsed: Duration,
    client_cpu: Duration,
    counted: Counted,
    busy_ticks: Option<u64>,
    emulator_before: Duration,
}

impl Window {
    fn open(counts: &Arc<Counts>, emulator: &EmulatorProcess) -> Self {
        let emulator_cpu = emulator.cpu().unwrap_or_default();
        let busy = machine_busy_ticks();
        let counted = counts.read();
        let cpu = own_cpu();
        Self {
            started: Instant::now(),
            cpu,
            emulator_cpu,
            busy,
            counted,
            counts: Arc::clone(counts),
        }
    }

    fn close(self) -> Closed {
        let elapsed = self.started.elapsed();
        let client_cpu = own_cpu().saturating_sub(self.cpu);
        let busy_ticks = machine_busy_ticks()
            .zip(self.busy)
            .map(|(after, before)| after - before);
        Closed {
            elapsed,
            client_cpu,
            counted: self.counts.read().since(self.counted),
            busy_ticks,
            emulator_before: self.emulator_cpu,
        }
    }
}

/// Runs one row in this process (the child's side) and returns what it measured.
async fn run_row(client_kind: Client, scenario: Scenario) -> Result<Measured, Error> {
    let emulator = EmulatorProcess::start(
        "sdks-bench",
        &["--latency-ms", &scenario.latency_ms.to_string()],
    )?;
    let counts = Arc::new(Counts::default());
    let client = client(&emulator.endpoint, &counts);
    let event = invocation_event(&client, &emulator.arn, &emulator.token).await?;
    let measure = || Window::open(&counts, &emulator);
    let (closed, answer) = match client_kind {
        Client::AwsDefault | Client::AwsBatching | Client::AwsDelay(_) => {
            run_aws(client, event, scenario, client_kind, measure).await?
        }
        Client::DurableLambda => {
            #[cfg(feature = "durable-lambda")]
            {
                durable_lambda_row::run(client, event, scenario, measure).await?
            }
            #[cfg(not(feature = "durable-lambda"))]
            {
                let _ = (client, event, measure);
                return Err("the durable-lambda row needs the `durable-lambda` feature".into());
            }
        }
        Client::Batcher => {
            let (arn, token) = (emulator.arn.clone(), emulator.token.clone());
            run_batcher(client, arn, token, scenario, measure).await?
        }
    };
    let emulator_cpu = emulator.cpu()?.saturating_sub(closed.emulator_before);
    drop(emulator);
    if answer["Status"] != "SUCCEEDED" {
        let mut shown = answer.to_string();
        shown.truncate(500);
        return Err(format!("{}: the invocation answered {shown}", client_kind.key()).into());
    }
    let steps = (scenario.branches * scenario.steps) as u64;
    if closed.counted.step_succeeds != steps {
        return Err(format!(
            "{}: {} STEP SUCCEEDs sent for {steps} steps",
            client_kind.key(),
            closed.counted.step_succeeds
        )
        .into());
    }
    let foreign_cores = closed.busy_ticks.map(|ticks| {
        let ours = closed.client_cpu + emulator_cpu;
        (ticks as f64 / 100.0 - ours.as_secs_f64()).max(0.0) / closed.elapsed.as_secs_f64()
    });
    Ok(Measured {
        elapsed: closed.elapsed,
        client_cpu: closed.client_cpu,
        emulator_cpu,
        counted: closed.counted,
        foreign_cores,
    })
}

/// The child's side: `--row KEY --scenario C,K,L`, prints one JSON line.
fn child_main(args: &[String]) -> Result<(), Error> {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .ok_or_else(|| format!("missing {name}"))
    };
    let kind = Client::from_key(value("--row")?).ok_or("unknown row")?;
    let parts: Vec<u64> = value("--scenario")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [branches, steps, latency_ms] = parts[..] else {
        return Err("--scenario C,K,L".into());
    };
    let scenario = Scenario {
        branches: usize::try_from(branches)?,
        steps: usize::try_from(steps)?,
        latency_ms,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // As a handler runs: as a task on a worker.
    let measured = runtime.block_on(async {
        tokio::spawn(run_row(kind, scenario))
            .await
            .map_err(Error::from)?
    })?;
    println!("{}", measured.json());
    Ok(())
}

/// Runs one row in a fresh child process of this binary.
fn run_in_child(kind: Client, scenario: Scenario) -> Result<Measured, Error> {
    let exe = env::current_exe()?;
    let output = Command::new(exe)
        .args(["--row", &kind.key(), "--scenario", &scenario.label()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "the row {} at {} failed ({})",
            kind.key(),
            scenario.label(),
            output.status
        )
        .into());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let line = stdout.lines().last().ok_or("the row printed nothing")?;
    Measured::from_json(&serde_json::from_str(line)?)
}

// ---------------------------------------------------------------------------------------------
// The parent: runs every row, prints the table.

/// One row of the table.
struct Row {
    scenario: Scenario,
    client: Client,
    runs: usize,
    measured: Option<Measured>,
    note: Option<String>,
}

impl Row {
    fn steps(&self) -> u64 {
        (self.scenario.branches * self.scenario.steps) as u64
    }

    fn steps_per_second(&self) -> Option<f64> {
        let m = self.measured.as_ref()?;
        Some(self.steps() as f64 / m.elapsed.as_secs_f64())
    }

    fn cpu_per_update_us(&self) -> Option<f64> {
        let m = self.measured.as_ref()?;
        Some(m.client_cpu.as_secs_f64() * 1e6 / m.counted.updates.max(1) as f64)
    }

    fn cpu_per_step_us(&self) -> Option<f64> {
        let m = self.measured.as_ref()?;
        Some(m.client_cpu.as_secs_f64() * 1e6 / self.steps() as f64)
    }

    fn emulator_per_update_us(&self) -> Option<f64> {
        let m = self.measured.as_ref()?;
        Some(m.emulator_cpu.as_secs_f64() * 1e6 / m.counted.updates.max(1) as f64)
    }
}

/// AWS's best figures in one scenario: the most steps/s, and the least CPU per update.
fn aws_best(rows: &[Row], scenario: Scenario) -> Option<(f64, f64)> {
    let aws = || {
        rows.iter()
            .filter(move |r| r.scenario == scenario && r.client.is_aws())
    };
    let steps = aws()
        .filter_map(Row::steps_per_second)
        .max_by(f64::total_cmp)?;
    let cpu = aws()
        .filter_map(Row::cpu_per_update_us)
        .min_by(f64::total_cmp)?;
    Some((steps, cpu))
}

/// The target check of a durable-lambda row: `None` when no target applies.
fn met(row: &Row, rows: &[Row], quick: bool) -> Option<String> {
    if row.client != Client::DurableLambda || !row.scenario.has_target(quick) {
        return None;
    }
    let (Some(steps), Some(cpu)) = (row.steps_per_second(), row.cpu_per_update_us()) else {
        return Some("not measured".to_owned());
    };
    let Some((best_steps, best_cpu)) = aws_best(rows, row.scenario) else {
        return Some("no AWS row to compare".to_owned());
    };
    let yes = |ok: bool| if ok { "yes" } else { "**no**" };
    let speed = steps / best_steps;
    let less = best_cpu / cpu;
    Some(format!(
        "steps/s {speed:.2}× (≥ {STEPS_FACTOR}×): {}; CPU/update {less:.2}× less (≥ {CPU_FACTOR}×): {}",
        yes(speed >= STEPS_FACTOR),
        yes(less >= CPU_FACTOR)
    ))
}

fn table(rows: &[Row], quick: bool) -> String {
    let mut out = String::from(
        "| C, K, L ms | client | steps/s | updates | client CPU µs/update | µs/step | requests (checkpoint + state) | updates/request | emulator CPU µs/update | other processes (cores) | met |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let scenario = format!(
            "{}, {}, {}",
            row.scenario.branches, row.scenario.steps, row.scenario.latency_ms
        );
        let runs = if row.runs == 1 {
            " (1 run)".to_owned()
        } else {
            String::new()
        };
        let label = format!("{}{runs}", row.client.label());
        let Some(m) = &row.measured else {
            out.push_str(&format!(
                "| {scenario} | {label} | — | — | — | — | — | — | — | — | {} |\n",
                row.note.as_deref().unwrap_or("not run")
            ));
            continue;
        };
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}"))
        };
        out.push_str(&format!(
            "| {scenario} | {label} | {} | {} | {} | {} | {} ({} + {}) | {:.1} | {} | {} | {} |\n",
            opt(row.steps_per_second(), 0),
            m.counted.updates,
            opt(row.cpu_per_update_us(), 2),
            opt(row.cpu_per_step_us(), 2),
            m.requests(),
            m.counted.checkpoint_requests,
            m.counted.state_requests,
            m.counted.updates as f64 / m.counted.checkpoint_requests.max(1) as f64,
            opt(row.emulator_per_update_us(), 2),
            opt(m.foreign_cores, 2),
            met(row, rows, quick).unwrap_or_else(|| "—".to_owned()),
        ));
    }
    out
}

fn row_json(row: &Row, rows: &[Row], quick: bool) -> Value {
    json!({
        "bench": "sdks",
        "tasks": row.scenario.branches,
        "steps_per_task": row.scenario.steps,
        "latency_ms": row.scenario.latency_ms,
        "client": row.client.key(),
        "runs": row.runs,
        "steps": row.steps(),
        "steps_per_s": row.steps_per_second(),
        "client_cpu_us_per_update": row.cpu_per_update_us(),
        "client_cpu_us_per_step": row.cpu_per_step_us(),
        "emulator_cpu_us_per_update": row.emulator_per_update_us(),
        "measured": row.measured.as_ref().map(Measured::json),
        "note": row.note,
        "met": met(row, rows, quick),
    })
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Where the JSON rows go: `None`, standard output (`Some(None)`), or a file.
fn json_target(args: &[String]) -> Option<Option<String>> {
    let from_arg = args.iter().find_map(|arg| {
        if arg == "--json" {
            Some(None)
        } else {
            arg.strip_prefix("--json=").map(|p| Some(p.to_owned()))
        }
    });
    from_arg.or_else(|| {
        env::var("BENCH_JSON").ok().map(|v| match v.as_str() {
            "" | "1" | "-" | "true" => None,
            path => Some(path.to_owned()),
        })
    })
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = env::args().skip(1).collect();
    if args.iter().any(|a| a == "--row") {
        return child_main(&args);
    }
    if EMULATOR_BIN.is_none() {
        eprintln!(
            "skipping every row: the bench needs the `cli` feature for the emulator process \
             (cargo bench --features cli,durable-lambda --bench sdks)"
        );
        return Ok(());
    }
    let quick = env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let runs: usize = env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 })
        .max(1);
    let only_scenario = env::var("BENCH_SCENARIO").unwrap_or_default();
    let only_rows = env::var("BENCH_ROWS").unwrap_or_default();
    let json = json_target(&args);
    let load_before = load_average();
    let started = Instant::now();
    let mut rows = Vec::new();
    for scenario in scenarios(quick)
        .into_iter()
        .filter(|s| s.label().contains(only_scenario.as_str()))
    {
        for client in CLIENTS
            .into_iter()
            .filter(|c| c.key().contains(only_rows.as_str()))
        {
            // One call per update at 5 ms a request: ~30 s a run.
            let runs = if client == Client::AwsDefault && scenario.latency_ms > 0 {
                1
            } else {
                runs
            };
            let mut row = Row {
                scenario,
                client,
                runs,
                measured: None,
                note: None,
            };
            if let Some(why) = client.missing() {
                eprintln!("skipping {} at {}: {why}", client.key(), scenario.label());
                row.note = Some(format!("skipped: {why}"));
                rows.push(row);
                continue;
            }
            eprintln!(
                "running {} at C,K,L = {} ×{runs}",
                client.key(),
                scenario.label()
            );
            let mut measured = Vec::with_capacity(runs);
            for _ in 0..runs {
                match run_in_child(client, scenario) {
                    Ok(m) => measured.push(m),
                    Err(e) => {
                        eprintln!("{e}");
                        row.note = Some(format!("failed: {e}"));
                    }
                }
            }
            if !measured.is_empty() {
                measured.sort_by_key(|m| m.elapsed);
                let median = measured.len() / 2;
                row.measured = Some(measured.swap_remove(median));
            }
            rows.push(row);
        }
    }
    let load_after = load_average();
    let mut report = table(&rows, quick);
    report.push_str(&format!(
        "\nEach row a fresh process (2 tokio workers) against an emulator process; median steps/s \
         of {runs} run(s) (AWS default settings at L > 0: 1 run); {} cores; load average before \
         {load_before}, after {load_after}; {:.0} s in all{}\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        started.elapsed().as_secs_f64(),
        if quick { "; BENCH_QUICK" } else { "" }
    ));
    let values: Vec<Value> = rows.iter().map(|r| row_json(r, &rows, quick)).collect();
    match json {
        None => print!("{report}"),
        Some(None) => {
            eprint!("{report}");
            println!("{}", serde_json::to_string(&values)?);
        }
        Some(Some(path)) => {
            print!("{report}");
            fs::write(&path, serde_json::to_string_pretty(&values)?)?;
            eprintln!("wrote {path}");
        }
    }
    Ok(())
}
