//! `local`: run a durable function's binary as Lambda and the durable execution service would,
//! against the embedded emulator, until its execution ends.
//!
//! The loop is the library's [`LocalRun`]; its "handler" here is a round trip through a Lambda
//! Runtime API ([`runtime_api`]) to a process started as a sandbox starts it ([`sandbox`]).
//! Every invocation is printed as it ends, then the execution's status and result as the
//! emulator holds them: the exit status is 0 only when the emulator holds it SUCCEEDED.

mod runtime_api;
mod sandbox;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use checkpoint_batcher::emulator::ErrorRecord;
use checkpoint_batcher::emulator::local::{
    EndReason, InvocationOutcome, LocalOutcome, LocalRun, PendingOperation, Progress, Waiting,
};
use serde_json::{Value, json};

use self::sandbox::{Host, Launch};
use crate::args::LocalArgs;
use crate::error::CliError;

/// Runs `local`.
///
/// # Errors
///
/// A usage error when the command cannot start; a failed run when the execution did not end
/// SUCCEEDED, the run stopped before it ended, or it was interrupted.
pub(crate) async fn local(args: LocalArgs) -> Result<(), CliError> {
    let name = args
        .function_name
        .clone()
        .unwrap_or_else(|| default_name(args.command.first().map(Path::new)));
    let emulator = crate::serve::start_emulator(
        args.faults.faults(args.latency_ms, args.jitter_ms),
        args.faults.seed,
    )
    .await?;
    let timeout = Duration::from_secs(args.timeout);
    let launch = Launch {
        command: args.command.clone(),
        env: sandbox_env(&name, args.memory_size, &emulator.endpoint_url()),
        function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}:$LATEST"),
        timeout,
    };
    let mut host = Host::new(launch);
    // Started before the first invocation, so that a command that cannot start is a usage
    // error naming it, not an invocation failure twenty times over.
    host.ensure_started().await.map_err(CliError::usage)?;
    let host = Arc::new(tokio::sync::Mutex::new(host));

    let mut run = LocalRun::new(args.input.clone())
        .name(name)
        .skip_waits(args.skip_waits)
        .max_invocations(args.max_invocations)
        .timeout(timeout);
    match &args.callback_result {
        Some(result) => run = run.callback_result(result.to_string()),
        // Someone answers them from another shell, through the emulator's endpoint.
        None => run = run.wait_for_callbacks(true),
    }
    if let Some(updates) = args.kill_after_updates {
        run = run.crash_after_updates(usize::try_from(updates).unwrap_or(usize::MAX));
    }
    let json_out = args.json;
    let kill_after = args.kill_after_updates;
    let invoke = |event: Value| {
        let host = Arc::clone(&host);
        async move { host.lock().await.invoke(event).await }
    };
    let endpoint = emulator.endpoint_url();
    let observe = |progress: &Progress| {
        say(json_out, &progress_line(progress, kill_after, &endpoint));
    };
    let outcome = tokio::select! {
        outcome = run.run_observed(&emulator, invoke, observe) => outcome
            .map_err(|e| CliError::failed(format!("the emulator lost the execution: {e}")))?,
        interrupted = crate::serve::interrupted() => {
            interrupted?;
            // Dropping the run dropped the invocation in flight, which killed its process.
            return Err(CliError::failed("interrupted: the execution did not end"));
        }
    };
    let starts = host.lock().await.starts;
    // Every process is killed here, before the report, whatever the outcome.
    drop(host);

    if json_out {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", to_json(&outcome, starts))
            .and_then(|()| out.flush())
            .map_err(|e| CliError::failed(format!("stdout: {e}")))?;
    } else {
        for line in report_lines(&outcome) {
            say(false, &line);
        }
    }
    if !outcome.succeeded() {
        return Err(CliError::failed(failure_line(&outcome)));
    }
    // A kill was asked for to show a replay: a run that never showed one has not passed.
    match kill_after {
        Some(n) if !outcome.crashed() => Err(CliError::failed(format!(
            "--kill-after-updates {n} was never reached: the execution applied {} updates, so no \
             process was killed and no replay was shown (pick a smaller N)",
            outcome.execution.applied.len()
        ))),
        Some(n) if !outcome.replayed() => Err(CliError::failed(format!(
            "--kill-after-updates {n}: the kill came with the update that completed the \
             execution, so no invocation replayed after it (pick a smaller N)"
        ))),
        _ => Ok(()),
    }
}

/// The function name from the command's file name: its letters, digits, `-` and `_`.
fn default_name(program: Option<&Path>) -> String {
    let stem = program
        .and_then(Path::file_stem)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    if name.is_empty() {
        "local".to_owned()
    } else {
        name
    }
}

/// The environment of a Lambda sandbox, with dummy credentials and the Lambda endpoint aimed
/// at the emulator: nothing the AWS SDK sends leaves the machine.
fn sandbox_env(name: &str, memory: u32, endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "local/[$LATEST]checkpoint-batcher".to_owned(),
        ),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDLOCAL".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "local-secret".to_owned()),
        ("AWS_SESSION_TOKEN", "local-session".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_ENDPOINT_URL_LAMBDA", endpoint.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A human line: stdout, or stderr when stdout carries the JSON.
fn say(json_out: bool, line: &str) {
    if line.is_empty() {
        return;
    }
    if json_out {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn progress_line(progress: &Progress, kill_after: Option<u64>, endpoint: &str) -> String {
    match progress {
        Progress::Invoked(record) => {
            let outcome = match (&record.outcome, kill_after) {
                // The kill lands once the count is reached; the process may apply a few more
                // updates first, which the line's own count shows.
                (InvocationOutcome::Crashed, Some(n)) => format!(
                    "killed (SIGKILL): the execution reached {n} applied updates \
                     (--kill-after-updates)"
                ),
                // The function's word, not the execution's status: that is the last line's.
                (
                    InvocationOutcome::Succeeded
                    | InvocationOutcome::Failed
                    | InvocationOutcome::Pending,
                    _,
                ) => format!("answered {}", record.outcome.label()),
                (outcome, _) => match outcome.detail() {
                    Some(detail) => format!("{}: {detail}", outcome.label()),
                    None => outcome.label().to_owned(),
                },
            };
            format!(
                "invocation {}: {:.0?}, {} updates applied, {} requests, {outcome}",
                record.number, record.duration, record.updates_applied, record.requests
            )
        }
        Progress::Completed(op) => format!("service: {} completed", describe(op)),
        Progress::Sleeping(wait) => format!(
            "service: waiting {:.1?} for the next timer (--skip-waits fires timers at once)",
            wait
        ),
        Progress::AwaitingCallbacks(callbacks) => callbacks
            .iter()
            .map(|op| how_to_answer(op, endpoint))
            .collect::<Vec<_>>()
            .join("\n"),
        // `Progress` is non-exhaustive; invocations starting need no line.
        _ => String::new(),
    }
}

/// How to answer a callback from another shell, with the AWS CLI, against the emulator.
fn how_to_answer(op: &PendingOperation, endpoint: &str) -> String {
    let id = match &op.kind {
        Waiting::Callback {
            callback_id: Some(id),
        } => id.as_str(),
        _ => "?",
    };
    format!(
        "service: waiting for {} to be answered (Ctrl-C to stop); from another shell:\n  \
         AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1 aws lambda \
         send-durable-execution-callback-success --endpoint-url {endpoint} --callback-id {id} \
         --result '\"approved\"'\n  \
         (AWS CLI v2: add --cli-binary-format raw-in-base64-out; to fail it: \
         send-durable-execution-callback-failure ... --error ErrorMessage=no; or run again with \
         --callback-result JSON)",
        describe(op)
    )
}

/// `WAIT pause (Id ...)`.
fn describe(op: &PendingOperation) -> String {
    match &op.name {
        Some(name) => format!("{} {name} (Id {})", op.op_type, op.id),
        None => format!("{} {}", op.op_type, op.id),
    }
}

fn report_lines(outcome: &LocalOutcome) -> Vec<String> {
    let mut lines = vec![format!(
        "status: {} after {} invocation(s)",
        outcome.status,
        outcome.invocations.len()
    )];
    if let Some(result) = &outcome.result {
        lines.push(format!("result: {result}"));
    }
    if let Some(error) = &outcome.error {
        lines.push(format!("error: {}", error_line(error)));
    }
    if let EndReason::Blocked(ops) = &outcome.end {
        for op in ops {
            let how = match &op.kind {
                Waiting::Callback { callback_id } => format!(
                    "callback Id {}, not awaited while the run is blocked on something else",
                    callback_id.as_deref().unwrap_or("?")
                ),
                _ => "the local run does not play it".to_owned(),
            };
            lines.push(format!("waiting on {}: {how}", describe(op)));
        }
    }
    lines
}

fn error_line(error: &ErrorRecord) -> String {
    match (&error.error_type, &error.error_message) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (None, Some(message)) => message.clone(),
        (Some(kind), None) => kind.clone(),
        (None, None) => "(no type, no message)".to_owned(),
    }
}

/// The one-line error for a run that did not end SUCCEEDED.
fn failure_line(outcome: &LocalOutcome) -> String {
    match &outcome.end {
        EndReason::MaxInvocations => format!(
            "the execution did not end within {} invocations (--max-invocations)",
            outcome.invocations.len()
        ),
        EndReason::Blocked(_) => {
            "the execution waits on operations nothing here completes (see above)".to_owned()
        }
        _ => match &outcome.error {
            Some(error) => format!(
                "the execution ended {}: {}",
                outcome.status,
                error_line(error)
            ),
            None => format!("the execution ended {}", outcome.status),
        },
    }
}

/// Everything as one JSON object; no tokens (client tokens included).
fn to_json(outcome: &LocalOutcome, processes: u32) -> Value {
    let held = &outcome.execution;
    let error = |e: &ErrorRecord| {
        json!({
            "type": e.error_type,
            "message": e.error_message,
            "data": e.error_data,
            "stack_trace": e.stack_trace,
        })
    };
    let end = match &outcome.end {
        EndReason::Completed => "completed",
        EndReason::MaxInvocations => "max-invocations",
        EndReason::Blocked(_) => "blocked",
        _ => "other",
    };
    json!({
        "status": outcome.status,
        "succeeded": outcome.succeeded(),
        "result": outcome.result,
        "error": outcome.error.as_ref().map(error),
        "end": end,
        "processes": processes,
        "invocations": outcome.invocations.iter().map(|i| json!({
            "number": i.number,
            "duration_ms": i.duration.as_secs_f64() * 1000.0,
            "updates_applied": i.updates_applied,
            "requests": i.requests,
            "outcome": i.outcome.label(),
            "detail": i.outcome.detail(),
        })).collect::<Vec<_>>(),
        "execution": {
            "arn": held.arn,
            "checkpoint_calls": held.checkpoint_calls,
            "applied_checkpoints": held.applied_checkpoints,
            "replayed_checkpoints": held.replayed_checkpoints,
            "rejected_checkpoints": held.rejected_checkpoints,
            "faulted_checkpoints": held.faulted_checkpoints,
            "lost_answers": held.lost_answers,
            "state_calls": held.state_calls,
        },
        "operations": held.operations.iter().map(|op| json!({
            "id": op.id,
            "parent_id": op.parent_id,
            "name": op.name,
            "sub_type": op.sub_type,
            "type": op.op_type,
            "status": op.status,
            "history": op.history,
            "attempt": op.attempt,
            "payload": op.payload,
            "result": op.result,
            "error": op.error.as_ref().map(error),
        })).collect::<Vec<_>>(),
        "applied": held.applied.iter().map(|u| json!({
            "checkpoint": u.checkpoint,
            "index": u.index,
            "id": u.id,
            "type": u.op_type,
            "action": u.action,
        })).collect::<Vec<_>>(),
    })
}
