//! What the tests of AWS's official SDKs against the emulator share (`python_sdk.rs`,
//! `typescript_sdk.rs`, `rust_sdk.rs`): invoking a handler with an event, the loop that plays
//! the service's side until the handler finishes (firing the wait, answering the callback,
//! re-invoking, handing each answer to [`Emulator::finish_invocation`]), and the checks on
//! what the emulator holds afterwards.
//!
//! Every handler runs the same workflow (steps, a `map`, a `parallel`, a wait, a callback and a
//! result padded to a requested size), so every test expects the same result and operations.
//! A Python or TypeScript handler is a script run once per invocation as
//! `PROGRAM [ARGS..] EVENT.json OUTPUT.json`: it reads the invocation event from the first file
//! and writes its answer (JSON) to the second, leaving stdout and stderr to the SDK's logs. A
//! Rust handler runs in the test process, called with the event.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkpoint_batcher::emulator::{Completion, Emulator, ExecutionSnapshot};
use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::support::*;

/// The handler is invoked at most this many times: once per suspension (wait, callback) and
/// a margin.
const MAX_INVOCATIONS: usize = 10;

/// One invocation may take this long (interpreter start-up, loading the AWS SDK and a 6 MiB
/// checkpoint on a busy machine) before it is killed as a hang.
const INVOCATION_LIMIT: Duration = Duration::from_secs(90);

/// What the emulator answers the handler's callback with. The Python and TypeScript SDKs hand a
/// callback's result to the handler as it is (their default serdes for callbacks is
/// pass-through, not JSON); the Rust handler asks for the same with a serdes of its own.
const CALLBACK_ANSWER: &str = "approved";

/// The final result's JSON length: past the response limit (6 MiB - 50 bytes), within the
/// EXECUTION payload limit (6 MiB).
pub const OVERSIZED: usize = 6 * 1024 * 1024 - 10;

/// How to run one invocation of a handler written with one of the SDKs.
#[derive(Clone)]
pub struct HandlerRuntime {
    /// Names the SDK in file names and messages, and the execution.
    pub label: &'static str,
    /// What runs the handler.
    pub invoke: Invoke,
    /// Operations, by type and name, the handler makes besides the shared workflow's: each
    /// is held once, and ends SUCCEEDED.
    pub more_operations: &'static [(&'static str, &'static str)],
}

/// What runs one invocation of a handler.
#[derive(Clone)]
pub enum Invoke {
    /// A script, in a child process per invocation.
    Process(HandlerProcess),
    /// A handler in this process, called with a client of the emulator and the invocation's
    /// event; its future answers the handler's output.
    InProcess(InProcessHandler),
}

/// A handler run in the test process (see [`Invoke::InProcess`]).
pub type InProcessHandler =
    Arc<dyn Fn(aws_sdk_lambda::Client, Value) -> BoxFuture<'static, Value> + Send + Sync>;

/// A handler script and the interpreter that runs it.
#[derive(Clone)]
pub struct HandlerProcess {
    /// The interpreter.
    pub program: PathBuf,
    /// What comes before the event and output paths: the script and any interpreter options.
    pub args: Vec<OsString>,
    /// Variables the interpreter needs besides the loopback AWS settings every run gets.
    pub env: Vec<(&'static str, OsString)>,
}

impl HandlerRuntime {
    /// Runs the handler once with `event`, aimed at `emu`, and returns its answer, failing the
    /// test past [`INVOCATION_LIMIT`].
    async fn invoke(&self, emu: &Emulator, event: Value, tag: String) -> Value {
        let limit = INVOCATION_LIMIT + Duration::from_secs(10);
        match &self.invoke {
            Invoke::Process(process) => {
                let (process, label, endpoint) = (process.clone(), self.label, emu.endpoint_url());
                within_named(
                    limit,
                    "a handler invocation",
                    tokio::task::spawn_blocking(move || {
                        process.invoke(label, &endpoint, &event, &tag)
                    }),
                )
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            }
            Invoke::InProcess(handler) => {
                within_named(limit, "a handler invocation", handler(emu.client(), event)).await
            }
        }
    }
}

impl HandlerProcess {
    /// Runs the script once with `event`, aimed at the emulator at `endpoint`, and returns its
    /// answer. The child gets only loopback settings and dummy credentials, so the AWS SDK
    /// reads no configuration and looks up nothing off the machine; it is killed past
    /// [`INVOCATION_LIMIT`].
    fn invoke(&self, label: &str, endpoint: &str, event: &Value, tag: &str) -> Value {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{label}-sdk"));
        std::fs::create_dir_all(&dir).expect("the target tmp dir is writable");
        let event_path = dir.join(format!("{tag}-event.json"));
        let out_path = dir.join(format!("{tag}-output.json"));
        let log_path = dir.join(format!("{tag}-stdout.log"));
        let err_path = dir.join(format!("{tag}-stderr.log"));
        std::fs::write(&event_path, event.to_string()).expect("write the event");
        // A stale answer from an earlier run must not pass for this one's.
        let _ = std::fs::remove_file(&out_path);
        let stdout = std::fs::File::create(&log_path).expect("create the stdout file");
        let stderr = std::fs::File::create(&err_path).expect("create the stderr file");
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .arg(&event_path)
            .arg(&out_path)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL_LAMBDA", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDOFFICIALSDKTEST")
            .env("AWS_SECRET_ACCESS_KEY", "official-sdk-test-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not run: {e}", self.program.display()));
        let deadline = Instant::now() + INVOCATION_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the handler") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the {} handler did not return within {INVOCATION_LIMIT:?}; stderr:\n{}",
                    label,
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        let logs = std::fs::read_to_string(&log_path).unwrap_or_default();
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        assert!(
            status.success(),
            "the {} handler exited with {status}; stdout:\n{logs}\nstderr:\n{err}",
            label
        );
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("the handler's answer is JSON ({e}): {out:?}\nstdout:\n{logs}\nstderr:\n{err}")
        })
    }
}

/// Plays the service's side of a suspension: fires every started WAIT and answers every
/// started CALLBACK. Returns how many operations it completed.
fn complete_pending(emu: &Emulator, arn: &str) -> usize {
    let held = snapshot(emu, arn);
    let mut completed = 0;
    for op in &held.operations {
        let completion = match (op.op_type.as_str(), op.status.as_str()) {
            ("WAIT", "STARTED") => Completion::Succeed(None),
            ("CALLBACK", "STARTED") => Completion::Succeed(Some(CALLBACK_ANSWER.to_owned())),
            _ => continue,
        };
        emu.complete_operation(arn, &op.id, completion)
            .unwrap_or_else(|e| panic!("complete {} {}: {e}", op.op_type, op.id));
        completed += 1;
    }
    completed
}

/// Invokes the handler for a new execution with `input` until it answers SUCCEEDED (or
/// anything but PENDING), handing each answer to the emulator as the service would; returns
/// the execution's ARN, the last output and the number of invocations.
async fn run_to_end(
    emu: &Emulator,
    runtime: &HandlerRuntime,
    input: &Value,
) -> (String, Value, usize) {
    let (arn, output, invocations) = run_until_answer(emu, runtime, input).await;
    emu.finish_invocation(&arn, &output)
        .expect("the handler's answer is one the service accepts");
    (arn, output, invocations)
}

/// Invokes the handler for a new execution with `input` until it answers anything but
/// PENDING, handing each PENDING answer to the emulator and completing what the handler waits
/// for, as the service would; returns the execution's ARN, the last answer (not handed to the
/// emulator) and the number of invocations.
pub async fn run_until_answer(
    emu: &Emulator,
    runtime: &HandlerRuntime,
    input: &Value,
) -> (String, Value, usize) {
    let (arn, _token) =
        emu.start_execution_with_input(&format!("{}-sdk", runtime.label), Some(&input.to_string()));
    for n in 1..=MAX_INVOCATIONS {
        let event = emu
            .invocation_event(&arn)
            .expect("a running execution has an invocation event");
        let tag = format!("{}-{n}", input["pad_to"]);
        let output = runtime.invoke(emu, event, tag).await;
        eprintln!("{} invocation {n}: {}", runtime.label, abbreviated(&output));
        if output["Status"] != "PENDING" {
            return (arn, output, n);
        }
        emu.finish_invocation(&arn, &output)
            .expect("the handler's answer is one the service accepts");
        let completed = complete_pending(emu, &arn);
        assert!(
            completed > 0,
            "the handler suspended with nothing for the service to complete: {:#?}",
            snapshot(emu, &arn).operations
        );
    }
    panic!("the handler did not finish within {MAX_INVOCATIONS} invocations");
}

pub fn abbreviated(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 300 {
        let head: String = text.chars().take(300).collect();
        format!("{head}... ({} bytes)", text.len())
    } else {
        text
    }
}

/// The summary every handler builds for these inputs.
pub fn expected_summary() -> Value {
    json!({
        "count": 3,
        "doubled": [2, 4, 6],
        "parallel": [6, "hello ada"],
        "callback": "approved",
        "finish": "ada:approved",
    })
}

pub fn input(pad_to: usize) -> Value {
    json!({"items": [1, 2, 3], "name": "ada", "pad_to": pad_to})
}

/// No checkpoint was refused, and every operation's history holds each action at most once:
/// nothing was started, completed or fired twice across the invocations.
pub fn assert_each_action_once(held: &ExecutionSnapshot) {
    assert_eq!(
        held.rejected_checkpoints, 0,
        "the emulator refused none of the SDK's checkpoints"
    );
    for op in &held.operations {
        let mut seen = std::collections::HashSet::new();
        for action in &op.history {
            assert!(
                seen.insert(action.as_str()),
                "{} {} ({:?}) has {action} twice: {:?}",
                op.op_type,
                op.id,
                op.name,
                op.history
            );
        }
    }
}

/// The operations the handler must have made, by type and name, each exactly once: the shared
/// workflow's and the runtime's `more_operations`.
pub fn assert_operations(held: &ExecutionSnapshot, runtime: &HandlerRuntime) {
    let named = |op_type: &str, name: &str| {
        held.operations
            .iter()
            .filter(|op| op.op_type == op_type && op.name.as_deref() == Some(name))
            .count()
    };
    for (op_type, name) in [
        ("STEP", "count"),
        ("CONTEXT", "double-all"),
        ("STEP", "double-0"),
        ("STEP", "double-1"),
        ("STEP", "double-2"),
        ("CONTEXT", "two-branches"),
        ("STEP", "sum"),
        ("STEP", "greet"),
        ("WAIT", "pause"),
        ("CALLBACK", "approval"),
        ("STEP", "finish"),
    ]
    .iter()
    .chain(runtime.more_operations)
    {
        assert_eq!(
            named(op_type, name),
            1,
            "{op_type} {name:?} held once: {:#?}",
            held.operations
        );
    }
    // The EXECUTION operation is the caller's to check: how it ended depends on whether the
    // result travelled in the answer or in a checkpoint.
    for op in held
        .operations
        .iter()
        .filter(|op| op.op_type != "EXECUTION")
    {
        assert_eq!(
            op.status, "SUCCEEDED",
            "{} {} ({:?}) ended {}",
            op.op_type, op.id, op.name, op.status
        );
    }
}

/// The runtime, or why there is none (printed as the reason the test is skipped).
pub type Availability = Result<HandlerRuntime, &'static str>;

fn available(runtime: Availability) -> Option<HandlerRuntime> {
    runtime
        .inspect_err(|reason| println!("skipped: {reason}"))
        .ok()
}

/// A handler whose result fits the response finishes SUCCEEDED with it, after suspending for
/// the wait and for the callback, and the service completes the execution from its answer.
pub async fn handler_finishes_with_its_result(runtime: Availability) {
    let Some(runtime) = available(runtime) else {
        return;
    };
    let emu = default_emulator().await;
    let (arn, output, invocations) = run_to_end(&emu, &runtime, &input(0)).await;
    assert_eq!(output["Status"], "SUCCEEDED", "{output}");
    let result: Value = serde_json::from_str(output["Result"].as_str().expect("a Result"))
        .expect("the Result is JSON");
    assert_eq!(result["summary"], expected_summary());
    assert_eq!(result["padding"], "");
    // Suspended for the wait and for the callback.
    assert!(invocations >= 3, "{invocations} invocations");
    let held = snapshot(&emu, &arn);
    assert_each_action_once(&held);
    assert_operations(&held, &runtime);
    // A result within the response limit travels in the answer, not in a checkpoint: the
    // service completes the execution from it (`finish_invocation`).
    let execution = held
        .operation(&held.execution_operation_id)
        .expect("the EXECUTION operation");
    assert_eq!(execution.status, "SUCCEEDED");
    assert_eq!(execution.history, ["invocation:SUCCEEDED"]);
    assert!(held.completed && held.current_token.is_none());
    emu.shutdown().await;
}

/// A result past the response limit is checkpointed as an EXECUTION SUCCEED update (whose Id
/// the SDK makes up) and the answer carries an empty Result: the emulator holds the whole
/// result on the EXECUTION operation.
pub async fn oversized_result_is_checkpointed_on_the_execution(runtime: Availability) {
    let Some(runtime) = available(runtime) else {
        return;
    };
    let emu = default_emulator().await;
    let (arn, output, _) = run_to_end(&emu, &runtime, &input(OVERSIZED)).await;
    assert_eq!(output["Status"], "SUCCEEDED", "{}", abbreviated(&output));
    assert_eq!(
        output["Result"].as_str().unwrap_or_default(),
        "",
        "an oversized result is not returned"
    );
    let held = snapshot(&emu, &arn);
    assert!(
        held.completed,
        "the EXECUTION SUCCEED completed the execution"
    );
    let execution = held
        .operation(&held.execution_operation_id)
        .expect("the EXECUTION operation");
    assert_eq!(execution.status, "SUCCEEDED");
    // Completed by the checkpoint; the answer's empty Result came after and changed nothing.
    assert_eq!(execution.history, ["SUCCEED"]);
    // The SDK names that update with an Id of its own (derived from `execution-result-<ms>`),
    // not the EXECUTION operation's: the emulator takes any Id on an EXECUTION update.
    let updates: Vec<_> = held
        .applied
        .iter()
        .filter(|u| u.op_type == "EXECUTION")
        .collect();
    assert_eq!(updates.len(), 1, "one EXECUTION update: {updates:?}");
    assert_eq!(updates[0].action, "SUCCEED");
    assert_ne!(updates[0].id, held.execution_operation_id);
    eprintln!(
        "{}: EXECUTION SUCCEED with Id {:?} (the operation's is {:?})",
        runtime.label, updates[0].id, held.execution_operation_id
    );
    let payload = execution.result.as_deref().expect("the result is held");
    assert_eq!(payload.len(), OVERSIZED);
    let result: Value = serde_json::from_str(payload).expect("the held result is JSON");
    assert_eq!(result["summary"], expected_summary());
    let padding = result["padding"].as_str().expect("the padding");
    assert!(padding.bytes().all(|b| b == b'x'));
    assert_each_action_once(&held);
    assert_operations(&held, &runtime);
    emu.shutdown().await;
}
