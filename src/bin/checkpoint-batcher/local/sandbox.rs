//! The function's process, as Lambda runs it in a sandbox: started with the sandbox's
//! environment and a Runtime API of its own, reused while it lives, replaced after it died or
//! was killed.
//!
//! A process is killed (SIGKILL) whenever an invocation is given up on (a timeout, the crash
//! `--kill-after-updates` asks for, Ctrl-C, any error path): the invocation's future holds a
//! guard that drops the sandbox unless the invocation completed, and dropping a sandbox kills
//! it. The program runs in a process group of its own, and the whole group is killed, so that
//! a wrapper (`sh -c`, a script, `cargo run`) does not leave the real function running behind
//! it with a token that still works. Only a SIGKILL of the command itself, which runs no
//! code, leaves the group alive.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use super::runtime_api::{Offer, Reply, RuntimeApi};

/// Everything a process is started with.
#[derive(Debug)]
pub(super) struct Launch {
    /// The program and its arguments.
    pub(super) command: Vec<OsString>,
    /// The sandbox's environment, beside `AWS_LAMBDA_RUNTIME_API`.
    pub(super) env: Vec<(String, String)>,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub(super) function_arn: String,
    /// The invocation's deadline, from its start.
    pub(super) timeout: Duration,
}

/// One live process and its Runtime API. Dropping it kills the process.
#[derive(Debug)]
struct Sandbox {
    child: Child,
    api: RuntimeApi,
    /// The process group the program leads (its pid at spawn): still the group's Id after
    /// the program itself exited, while anything it started lives.
    group: Option<u32>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // The program itself is also killed by `kill_on_drop`; this reaches what it started.
        if let Some(group) = self.group {
            kill_group(group);
        }
    }
}

/// SIGKILL to every process of the group; a group already gone is no error.
#[cfg(unix)]
fn kill_group(group: u32) {
    use rustix::process::{Pid, Signal, kill_process_group};
    if let Some(pid) = i32::try_from(group).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

#[cfg(not(unix))]
fn kill_group(_group: u32) {}

/// The function's host: starts sandboxes as needed and invokes the function in them.
#[derive(Debug)]
pub(super) struct Host {
    launch: Launch,
    sandbox: Option<Sandbox>,
    /// Processes started so far.
    pub(super) starts: u32,
    invocations: u64,
}

/// Why an invocation has no output.
#[derive(Debug)]
pub(super) enum Failure {
    /// The function answered an error; the process lives on.
    Error(String),
    /// The process could not start, died, or reported an init error; the next invocation
    /// starts a new one.
    Process(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Error(text) | Self::Process(text) => f.write_str(text),
        }
    }
}

impl Host {
    pub(super) fn new(launch: Launch) -> Self {
        Self {
            launch,
            sandbox: None,
            starts: 0,
            invocations: 0,
        }
    }

    /// Starts a process now, unless one lives.
    ///
    /// # Errors
    ///
    /// Why the process could not start (or its Runtime API could not listen).
    pub(super) async fn ensure_started(&mut self) -> Result<(), String> {
        if let Some(sandbox) = &mut self.sandbox
            && matches!(sandbox.child.try_wait(), Ok(None))
        {
            return Ok(());
        }
        self.sandbox = None;
        let api = RuntimeApi::start()
            .await
            .map_err(|e| format!("could not serve the Runtime API on 127.0.0.1: {e}"))?;
        let (program, args) = self
            .launch
            .command
            .split_first()
            .ok_or_else(|| "no command given".to_owned())?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
            .env_remove("AWS_PROFILE")
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", api.host_port())
            .stdin(Stdio::null())
            .stdout(to_stderr())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // A group of its own, led by the program, so that one signal reaches all it starts.
        #[cfg(unix)]
        command.process_group(0);
        let child = command.spawn().map_err(|e| {
            format!(
                "could not start {}: {e}",
                std::path::Path::new(program).display()
            )
        })?;
        self.starts += 1;
        eprintln!(
            "local: process {} started (pid {})",
            self.starts,
            child
                .id()
                .map_or_else(|| "?".to_owned(), |id| id.to_string())
        );
        let group = if cfg!(unix) { child.id() } else { None };
        self.sandbox = Some(Sandbox { child, api, group });
        Ok(())
    }

    /// One invocation through the Runtime API: the event offered, the answer awaited. If this
    /// future is dropped before it completes, the process is killed.
    pub(super) async fn invoke(&mut self, event: Value) -> Result<Value, Failure> {
        self.ensure_started().await.map_err(Failure::Process)?;
        self.invocations += 1;
        let request_id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            fastrand::u32(..),
            self.invocations
        );
        let deadline = SystemTime::now()
            .checked_add(self.launch.timeout)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let function_arn = self.launch.function_arn.clone();
        let mut guard = KillUnlessDone {
            slot: &mut self.sandbox,
            done: false,
        };
        let Some(sandbox) = guard.slot.as_mut() else {
            return Err(Failure::Process("no process".to_owned()));
        };
        let (reply, answer) = oneshot::channel();
        let offer = Offer {
            request_id,
            event,
            deadline_ms: deadline,
            function_arn,
            reply,
        };
        if !sandbox.api.offer(offer).await {
            return Err(Failure::Process("the Runtime API stopped".to_owned()));
        }
        let result = tokio::select! {
            biased;
            answer = answer => match answer {
                Ok(Reply::Response(output)) => Ok(output),
                Ok(Reply::Error(text)) => Err(Failure::Error(text)),
                Err(_) => Err(Failure::Process("the Runtime API dropped the invocation".to_owned())),
            },
            status = sandbox.child.wait() => Err(Failure::Process(match status {
                Ok(status) => format!("the process exited before answering ({status})"),
                Err(e) => format!("the process could not be waited for: {e}"),
            })),
            message = sandbox.api.init_error() => Err(Failure::Process(format!(
                "the process reported an init error: {message}"
            ))),
        };
        // The process lives on after an answer or an error it reported; it is replaced after
        // anything else.
        guard.done = !matches!(result, Err(Failure::Process(_)));
        result
    }
}

/// Drops (so kills) the sandbox unless the invocation completed.
struct KillUnlessDone<'a> {
    slot: &'a mut Option<Sandbox>,
    done: bool,
}

impl Drop for KillUnlessDone<'_> {
    fn drop(&mut self) {
        if !self.done
            && let Some(mut sandbox) = self.slot.take()
        {
            // SIGKILL now; tokio reaps the process in the background.
            let _ = sandbox.child.start_kill();
        }
    }
}

/// The child's stdout, sent to this command's stderr so that stdout carries only the report.
fn to_stderr() -> Stdio {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        match std::io::stderr().as_fd().try_clone_to_owned() {
            Ok(fd) => Stdio::from(fd),
            Err(_) => Stdio::inherit(),
        }
    }
    #[cfg(not(unix))]
    {
        Stdio::inherit()
    }
}
