//! Helpers for the fault campaign: an emulator on loopback driven through `RealBackend`,
//! update builders, bounded waits, a raw HTTP/1.1 client, and the lock that keeps the
//! timing-sensitive scenarios from sharing two cores with the soak.
#![allow(
    dead_code,
    reason = "not every scenario uses every helper; the module is compiled once per test binary"
)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::emulator::{Emulator, ExecutionSnapshot, Faults};
use checkpoint_batcher::{
    BatcherConfig, BatcherHandle, CheckpointBatcher, RealBackend, RetryPolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The scenarios of `tests/faults.rs` run one at a time: each measures real time on a
/// machine with two cores, and the soak alone keeps both busy. (A tokio mutex: it does not
/// poison when a scenario fails, so one failure does not fail the others.)
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The longest any single wait may take before the scenario fails as a hang.
pub const HANG: Duration = Duration::from_secs(60);

/// Fails the test instead of hanging when `future` does not complete within `limit`.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not complete within {limit:?}: nothing may hang"),
    }
}

pub fn update(id: &str, ty: OperationType, action: OperationAction) -> OperationUpdate {
    OperationUpdate::builder()
        .id(id)
        .r#type(ty)
        .action(action)
        .build()
        .expect("id, type and action are set")
}

pub fn start(id: &str) -> OperationUpdate {
    update(id, OperationType::Step, OperationAction::Start)
}

pub fn succeed(id: &str, payload: &str) -> OperationUpdate {
    OperationUpdate::builder()
        .id(id)
        .r#type(OperationType::Step)
        .action(OperationAction::Succeed)
        .payload(payload)
        .build()
        .expect("id, type and action are set")
}

/// An emulator on 127.0.0.1, port 0, with these faults and this seed.
pub async fn emulator(faults: Faults, seed: u64) -> Emulator {
    Emulator::builder()
        .faults(faults)
        .seed(seed)
        .start()
        .await
        .expect("the emulator binds loopback")
}

/// The real SDK client aimed at the emulator, as the batcher's backend.
pub fn real(emu: &Emulator) -> Arc<RealBackend> {
    Arc::new(RealBackend::new(emu.client()))
}

/// Retries quick enough for a test, many enough that injected faults never latch by chance
/// (a call fails with probability below 0.2 here, so 30 attempts fail with about 1e-21).
pub fn patient(seed: u64) -> RetryPolicy {
    RetryPolicy {
        max_attempts: 30,
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
        attempt_timeout: Duration::from_secs(10),
        jitter_seed: Some(seed),
    }
}

pub fn config(seed: u64) -> BatcherConfig {
    BatcherConfig {
        retry: patient(seed),
        ..BatcherConfig::default()
    }
}

/// A batcher for a new execution of `emu`, through `RealBackend`.
pub fn batcher(emu: &Emulator, name: &str, config: BatcherConfig) -> (String, BatcherHandle) {
    let (arn, token) = emu.start_execution(name);
    let handle = CheckpointBatcher::spawn(real(emu), arn.clone(), token, config)
        .expect("a valid configuration");
    (arn, handle)
}

pub fn snapshot(emu: &Emulator, arn: &str) -> ExecutionSnapshot {
    emu.execution(arn).expect("the execution exists")
}

/// How many times each Id was applied (any action).
pub fn applied_count(snapshot: &ExecutionSnapshot, id: &str) -> usize {
    snapshot.applied.iter().filter(|u| u.id == id).count()
}

// ---------------------------------------------------------------------------------------
// A raw HTTP/1.1 client, for requests the SDK would never send.

#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Writes `request` as is and reads to EOF. `None` when the server closed the connection
/// without a status line (allowed for requests that are not HTTP at all).
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> Option<Raw> {
    send_raw_then(addr, request, false).await
}

/// As [`send_raw`]; with `half_close`, the write side is shut after the request, which is how
/// a client says "that is all you get" when its request is incomplete. (hyper closes the
/// connection on a half-close by default, so a complete request must not be sent this way.)
pub async fn send_raw_then(addr: SocketAddr, request: &[u8], half_close: bool) -> Option<Raw> {
    within(Duration::from_secs(20), "a raw request", async {
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("the emulator listens");
        // The server may answer and close before reading everything (413): ignore write errors.
        let _ = stream.write_all(request).await;
        if half_close {
            let _ = stream.shutdown().await;
        }
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf).await;
        parse(&buf)
    })
    .await
}

fn parse(buf: &[u8]) -> Option<Raw> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(buf.get(..end)?).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let rest = buf.get(end + 4..)?.to_vec();
    let mut raw = Raw {
        status,
        head,
        body: Vec::new(),
    };
    raw.body = match raw
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        Some(len) => rest.get(..len).unwrap_or(&rest).to_vec(),
        None => rest,
    };
    Some(raw)
}

/// A request with a correct `Content-Length`.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<Raw> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    send_raw(addr, &req).await
}

/// Percent-encodes everything but unreserved characters, as the SDK encodes a label.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn checkpoint_path(arn: &str) -> String {
    format!("/2025-12-01/durable-executions/{}/checkpoint", enc(arn))
}

pub fn state_path(arn: &str) -> String {
    format!("/2025-12-01/durable-executions/{}/state", enc(arn))
}
