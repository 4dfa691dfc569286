//! AWS's local runner, `dex-local-runner`, as a subprocess on loopback, and the fake Lambda it
//! invokes.
//!
//! The runner creates an execution with `POST /start-durable-execution` and then invokes the
//! function through the Lambda Invoke API at `--lambda-endpoint`; it accepts checkpoints only
//! while that Invoke is in flight. The fake Lambda here hands each Invoke's event to the
//! sequence that started the execution (routed by function name, one per sequence) and holds
//! the request open until that sequence lets go, then answers `FAILED`, which ends the
//! execution.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::{request, try_request};

/// The runner's invocation pool holds `min(32, cpus + 4)` Invokes; 6 on a 2-core machine. A
/// seventh execution would wait for a free worker, so no more run at once.
pub const MAX_OPEN_EXECUTIONS: usize = 6;

/// The Lambda Invoke API's route, as the runner calls it.
pub const INVOKE_ROUTE: &str = "/2015-03-31/functions/{name}/invocations";

/// How long the runner may take to answer `/health` after it was spawned.
const START_LIMIT: Duration = Duration::from_secs(30);

/// How long an Invoke may take to arrive after the execution was started.
const INVOKE_LIMIT: Duration = Duration::from_secs(30);

/// An Invoke held open: its event, and the sender that lets it answer.
struct Held {
    event: Value,
    release: oneshot::Sender<()>,
}

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Held>>>>;

/// The running `dex-local-runner` and its fake Lambda; killed when dropped (also when a test
/// panics).
pub struct Runner {
    child: Child,
    addr: SocketAddr,
    waiting: Waiting,
    lambda: tokio::task::JoinHandle<()>,
    log: PathBuf,
    next: AtomicU64,
}

/// One execution on the runner, with its Invoke held open until this is dropped.
pub struct RunnerExecution {
    pub arn: String,
    pub token: String,
    pub exec_id: String,
    _release: oneshot::Sender<()>,
}

impl Runner {
    /// Starts `dex-local-runner` (the console script next to `python`) on a free loopback
    /// port, with dummy credentials and no AWS configuration, and waits for `/health`. The
    /// port is picked before the runner binds it (it has no port 0), so another process may
    /// take it in between: a runner that exits at start is tried again on another port.
    pub async fn start(python: &Path, tag: &str) -> Result<Self, String> {
        Self::start_serving(python, tag, None).await
    }

    /// [`start`](Self::start), with `lambda` serving the runner's Invokes in place of the fake
    /// Lambda that holds them for a sequence (it must route [`INVOKE_ROUTE`]).
    pub async fn start_serving(
        python: &Path,
        tag: &str,
        lambda: Option<Router>,
    ) -> Result<Self, String> {
        let mut attempt = 1;
        loop {
            match Self::start_once(python, tag, lambda.clone()).await {
                Err(e) if attempt < 3 && e.contains("exited") => attempt += 1,
                result => return result,
            }
        }
    }

    async fn start_once(python: &Path, tag: &str, lambda: Option<Router>) -> Result<Self, String> {
        let script = python
            .parent()
            .map(|dir| dir.join("dex-local-runner"))
            .ok_or_else(|| format!("{} has no parent directory", python.display()))?;
        if !script.exists() {
            return Err(format!(
                "{} does not exist: install tests/python/requirements.txt into the venv of CHECKPOINT_BATCHER_PYTHON",
                script.display()
            ));
        }
        let waiting: Waiting = Arc::default();
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| format!("bind the fake Lambda: {e}"))?;
        let lambda_addr = listener
            .local_addr()
            .map_err(|e| format!("the fake Lambda's address: {e}"))?;
        let app = lambda.unwrap_or_else(|| {
            Router::new()
                .route(INVOKE_ROUTE, post(invoke))
                .with_state(waiting.clone())
        });
        let lambda = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential");
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let log = dir.join(format!("runner-{tag}.log"));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("clone the log handle: {e}"))?;
        // Dummy credentials and no configuration files: boto3 inside the runner signs its
        // Invoke and would otherwise look for real credentials, the instance-metadata address
        // included, which is not loopback.
        let child = Command::new(&script)
            .args(["start-server", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--lambda-endpoint")
            .arg(format!("http://{lambda_addr}"))
            .arg("--local-runner-endpoint")
            .arg(format!("http://{addr}"))
            .args(["--store-type", "memory", "--log-level", "WARNING"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_ACCESS_KEY_ID", "AKIDDIFFERENTIAL")
            .env("AWS_SECRET_ACCESS_KEY", "differential-test-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", script.display()))?;
        let mut runner = Self {
            child,
            addr,
            waiting,
            lambda,
            log,
            next: AtomicU64::new(0),
        };
        runner.wait_healthy().await?;
        Ok(runner)
    }

    async fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(resp) = try_request(self.addr, "GET", "/health", b"").await
                && resp.status == 200
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "dex-local-runner exited with {status} before it was ready:\n{}",
                    self.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "dex-local-runner did not answer /health within {START_LIMIT:?}:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the runner's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts an execution and waits for its Invoke; the Invoke stays open until the returned
    /// execution is dropped.
    pub async fn start_execution(&self) -> Result<RunnerExecution, String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let function = format!("differential-{n}");
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .map_err(|_| "the fake Lambda's table is poisoned".to_owned())?
            .insert(function.clone(), tx);
        let arn = self.start_function(&function, "{}").await?;
        let held = tokio::time::timeout(INVOKE_LIMIT, rx)
            .await
            .map_err(|_| format!("no Invoke for {function} within {INVOKE_LIMIT:?}"))?
            .map_err(|_| format!("the fake Lambda dropped the Invoke for {function}"))?;
        let token = held.event["CheckpointToken"]
            .as_str()
            .ok_or("the Invoke event has no CheckpointToken")?
            .to_owned();
        let exec_id = held.event["InitialExecutionState"]["Operations"]
            .as_array()
            .and_then(|ops| ops.iter().find(|op| op["Type"] == "EXECUTION"))
            .and_then(|op| op["Id"].as_str())
            .ok_or("the Invoke event has no EXECUTION operation")?
            .to_owned();
        if held.event["DurableExecutionArn"] != arn.as_str() {
            return Err(format!(
                "the Invoke for {function} names {} instead of {arn}",
                held.event["DurableExecutionArn"]
            ));
        }
        Ok(RunnerExecution {
            arn,
            token,
            exec_id,
            _release: held.release,
        })
    }

    /// Starts an execution of `function` with `input`; returns its ARN. The runner invokes
    /// `function` at once.
    pub async fn start_function(&self, function: &str, input: &str) -> Result<String, String> {
        let body = json!({
            "AccountId": "123456789012",
            "FunctionName": function,
            "FunctionQualifier": "$LATEST",
            "ExecutionName": function,
            "ExecutionTimeoutSeconds": 3600,
            "ExecutionRetentionPeriodDays": 1,
            "Input": input,
        });
        let resp = request(
            self.addr,
            "POST",
            "/start-durable-execution",
            body.to_string().as_bytes(),
        )
        .await;
        if resp.status != 201 {
            return Err(format!(
                "start-durable-execution answered {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
        }
        resp.json()["ExecutionArn"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "start-durable-execution answered no ExecutionArn".to_owned())
    }

    /// `GetDurableExecution`'s `Status` (RUNNING, SUCCEEDED, FAILED, ...).
    pub async fn execution_status(&self, arn: &str) -> String {
        let path = format!(
            "/2025-12-01/durable-executions/{}",
            crate::support::enc(arn)
        );
        let resp = request(self.addr, "GET", &path, b"").await;
        resp.json()["Status"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lambda.abort();
    }
}

/// The fake Lambda's Invoke: hands the event to the waiting sequence and answers `FAILED`
/// once that sequence is done with the execution (or at once for an Invoke nobody waits for).
async fn invoke(
    State(waiting): State<Waiting>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let waiter = waiting.lock().ok().and_then(|mut w| w.remove(&name));
    if let Some(waiter) = waiter {
        let (release, released) = oneshot::channel();
        if waiter.send(Held { event, release }).is_ok() {
            // Ends when the sequence drops its execution, whether it finished or panicked.
            let _ = released.await;
        }
    }
    axum::Json(json!({
        "Status": "FAILED",
        "Error": {"ErrorType": "DifferentialTestDone", "ErrorMessage": "the sequence is over"},
    }))
}

fn free_port() -> Result<u16, String> {
    let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("find a free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("find a free loopback port: {e}"))
}
