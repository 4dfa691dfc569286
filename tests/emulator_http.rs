//! The checkpoint API emulator over real HTTP on loopback: raw HTTP/1.1 requests for
//! exact status codes, headers and bodies, and `aws-sdk-lambda` itself for the wire
//! shapes.
#![cfg(feature = "emulator")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::net::SocketAddr;
use std::time::Duration;

use checkpoint_batcher::emulator::{
    Completion, Emulator, EmulatorError, EmulatorLimits, ExecutionSnapshot, Faults,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------
// A tiny HTTP/1.1 client: one request per connection, `Connection: close`.

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn token(&self) -> Option<String> {
        self.json()["CheckpointToken"].as_str().map(str::to_owned)
    }
}

/// Sends raw bytes and reads the answer to EOF; `Err` when the connection broke before
/// a complete response arrived.
async fn send_raw(addr: SocketAddr, request: &[u8]) -> Result<Resp, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    // A reset after a partial answer still leaves `buf` with what arrived.
    let _ = stream.read_to_end(&mut buf).await;
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> Result<Resp, String> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("incomplete head ({} bytes)", buf.len()))?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &buf[end + 4..];
    let resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length".to_owned())?;
        if rest.len() < len {
            return Err(format!("truncated body: {} of {len}", rest.len()));
        }
        return Ok(Resp {
            body: rest[..len].to_vec(),
            ..resp
        });
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        let mut rest = rest;
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("truncated chunk")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap_or("x"), 16)
                    .map_err(|_| "bad chunk size".to_owned())?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                return Ok(Resp { body, ..resp });
            }
            if rest.len() < size + 2 {
                return Err("truncated chunk".to_owned());
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }
    Ok(Resp {
        body: rest.to_vec(),
        ..resp
    })
}

async fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Resp {
    try_request(addr, method, path, body).await.unwrap()
}

async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Resp, String> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    send_raw(addr, &req).await
}

/// Percent-encodes everything but unreserved characters, as the SDK encodes labels.
fn enc(s: &str) -> String {
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

fn checkpoint_path(arn: &str) -> String {
    format!("/2025-12-01/durable-executions/{}/checkpoint", enc(arn))
}

fn state_path(arn: &str, token: &str, marker: Option<&str>, max_items: Option<&str>) -> String {
    let mut path = format!(
        "/2025-12-01/durable-executions/{}/state?CheckpointToken={}",
        enc(arn),
        enc(token)
    );
    if let Some(m) = marker {
        path.push_str(&format!("&Marker={}", enc(m)));
    }
    if let Some(n) = max_items {
        path.push_str(&format!("&MaxItems={n}"));
    }
    path
}

async fn checkpoint(
    emu: &Emulator,
    arn: &str,
    token: &str,
    client_token: Option<&str>,
    updates: Value,
) -> Resp {
    let mut body = json!({ "CheckpointToken": token, "Updates": updates });
    if let Some(ct) = client_token {
        body["ClientToken"] = json!(ct);
    }
    request(
        emu.local_addr(),
        "POST",
        &checkpoint_path(arn),
        body.to_string().as_bytes(),
    )
    .await
}

fn up(id: &str, ty: &str, action: &str) -> Value {
    json!({ "Id": id, "Type": ty, "Action": action })
}

fn with(mut update: Value, key: &str, value: Value) -> Value {
    update[key] = value;
    update
}

async fn emulator() -> Emulator {
    Emulator::builder().start().await.unwrap()
}

fn snap(emu: &Emulator, arn: &str) -> ExecutionSnapshot {
    emu.execution(arn).expect("execution exists")
}

fn op_ids(ops: &Value) -> Vec<String> {
    ops.as_array()
        .unwrap()
        .iter()
        .map(|op| op["Id"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------
// Tokens

#[tokio::test]
async fn every_accepted_checkpoint_including_an_empty_one_returns_a_new_token() {
    let emu = emulator().await;
    let (arn, t0) = emu.start_execution("tokens");
    let r1 = checkpoint(&emu, &arn, &t0, None, json!([])).await;
    assert_eq!(r1.status, 200, "an empty checkpoint is accepted");
    let t1 = r1.token().expect("a new token");
    assert_ne!(t1, t0, "the token rotates on an empty checkpoint");
    let r2 = checkpoint(&emu, &arn, &t1, None, json!([up("s1", "STEP", "START")])).await;
    let t2 = r2.token().expect("a new token");
    assert_ne!(t2, t1, "the token rotates on every checkpoint");
    assert_eq!(snap(&emu, &arn).current_token.as_deref(), Some(t2.as_str()));
    assert_eq!(snap(&emu, &arn).applied_checkpoints, 2);
}

#[tokio::test]
async fn a_stale_or_unknown_token_is_refused_with_invalid_checkpoint_token() {
    let emu = emulator().await;
    let (arn, t0) = emu.start_execution("stale");
    let t1 = checkpoint(&emu, &arn, &t0, None, json!([]))
        .await
        .token()
        .unwrap();
    for bad in [t0.as_str(), "AAAAunknownAAAA"] {
        let r = checkpoint(&emu, &arn, bad, None, json!([])).await;
        assert_eq!(r.status, 400, "a stale token is a 400");
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("InvalidParameterValueException")
        );
        assert!(
            r.message().starts_with("Invalid checkpoint token"),
            "message must start with the service's text: {}",
            r.message()
        );
    }
    let s = snap(&emu, &arn);
    assert_eq!(
        s.current_token.as_deref(),
        Some(t1.as_str()),
        "a refused request does not consume the token"
    );
    assert_eq!(
        (
            s.checkpoint_calls,
            s.applied_checkpoints,
            s.rejected_checkpoints
        ),
        (3, 1, 2)
    );
}

#[tokio::test]
async fn rotate_token_makes_the_clients_token_stale() {
    let emu = emulator().await;
    let (arn, t0) = emu.start_execution("rotate");
    let fresh = emu.rotate_token(&arn).unwrap();
    assert_ne!(fresh, t0);
    let r = checkpoint(&emu, &arn, &t0, None, json!([])).await;
    assert!(
        r.message().starts_with("Invalid checkpoint token"),
        "old token is stale after rotation"
    );
    let r = checkpoint(&emu, &arn, &fresh, None, json!([])).await;
    assert_eq!(r.status, 200, "the rotated token works");
    assert!(emu.rotate_token("arn:unknown").is_none());
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_get_state_checks_the_token_too() {
    let emu = emulator().await;
    let (arn, t0) = emu.start_execution("revoke");
    let r = request(
        emu.local_addr(),
        "GET",
        &state_path(&arn, "nope", None, None),
        b"",
    )
    .await;
    assert!(
        r.status == 400 && r.message().starts_with("Invalid checkpoint token"),
        "GET checks the token"
    );
    assert!(emu.revoke_token(&arn));
    let r = checkpoint(&emu, &arn, &t0, None, json!([])).await;
    assert!(r.status == 400 && r.message().starts_with("Invalid checkpoint token"));
}

// ---------------------------------------------------------------------------------
// Idempotency and lost answers

#[tokio::test]
async fn the_same_client_token_and_token_replays_the_stored_answer_and_applies_once() {
    let emu = emulator().await;
    let (arn, t0) = emu.start_execution("idem");
    let updates = json!([
        up("s1", "STEP", "START"),
        with(up("s1", "STEP", "SUCCEED"), "Payload", json!("42"))
    ]);
    let first = checkpoint(&emu, &arn, &t0, Some("ct-1"), updates.clone()).await;
    let again = checkpoint(&emu, &arn, &t0, Some("ct-1"), updates.clone()).await;
    assert_eq!(first.status, 200);
    assert_eq!(again.status, 200, "a replay is answered, not refused");
    assert_eq!(
        first.body, again.body,
        "the stored answer is returned byte for byte"
    );
    let s = snap(&emu, &arn);
    assert_eq!(s.applied.len(), 2, "the two updates were applied once");
    assert_eq!((s.applied_checkpoints, s.replayed_checkpoints), (1, 1));
    assert_eq!(s.operation("s1").unwrap().history, ["START", "SUCCEED"]);

    let other = checkpoint(&emu, &arn, &t0, Some("ct-1"), json!([])).await;
    assert_eq!(
        other.status, 400,
        "the same ClientToken with other updates is refused"
    );
    let other_ct = checkpoint(&emu, &arn, &t0, Some("ct-2"), updates).await;
    assert!(
        other_ct.message().starts_with("Invalid checkpoint token"),
        "another ClientToken with a consumed token is just stale"
    );
}

#[tokio::test]
async fn a_lost_answer_is_applied_once_and_the_retry_gets_the_stored_answer() {
    let emu = Emulator::builder()
        .faults(Faults {
            lost_answer_rate: 1.0,
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let (arn, t0) = emu.start_execution("lost");
    let updates = json!([up("s1", "STEP", "START")]);
    let lost = checkpoint(&emu, &arn, &t0, Some("retry-me"), updates.clone()).await;
    assert_eq!(lost.status, 500, "the answer is lost as a 500");
    assert_eq!(lost.header("x-amzn-errortype"), Some("ServiceException"));
    let s = snap(&emu, &arn);
    assert_eq!(
        (s.applied_checkpoints, s.lost_answers),
        (1, 1),
        "the checkpoint was committed"
    );
    assert_ne!(
        s.current_token.as_deref(),
        Some(t0.as_str()),
        "and the token consumed"
    );

    emu.set_faults(Faults::none());
    let retry = checkpoint(&emu, &arn, &t0, Some("retry-me"), updates).await;
    assert_eq!(
        retry.status, 200,
        "the retry with the same ClientToken is answered"
    );
    assert_eq!(
        retry.token(),
        snap(&emu, &arn).current_token,
        "with the token the commit produced"
    );
    let s = snap(&emu, &arn);
    assert_eq!(
        (s.applied.len(), s.replayed_checkpoints),
        (1, 1),
        "applied once, replayed once"
    );
}

#[tokio::test]
async fn a_lost_answer_can_drop_the_connection() {
    let emu = Emulator::builder()
        .faults(Faults {
            lost_answer_rate: 1.0,
            drop_connection_on_lost_answer: true,
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let (arn, t0) = emu.start_execution("drop");
    let body = json!({ "CheckpointToken": t0, "ClientToken": "c", "Updates": [] }).to_string();
    let r = try_request(
        emu.local_addr(),
        "POST",
        &checkpoint_path(&arn),
        body.as_bytes(),
    )
    .await;
    assert!(r.is_err(), "no complete response arrives: {r:?}");
    assert_eq!(
        snap(&emu, &arn).applied_checkpoints,
        1,
        "yet the checkpoint was applied"
    );
}

// ---------------------------------------------------------------------------------
// Validation rules

#[tokio::test]
async fn every_rule_violation_is_a_400_that_names_the_rule_and_consumes_nothing() {
    let emu = Emulator::builder()
        .limits(EmulatorLimits {
            max_payload_bytes: 16,
            max_execution_payload_bytes: 32,
            max_error_bytes: 16,
            max_updates: Some(4),
            ..EmulatorLimits::default()
        })
        .start()
        .await
        .unwrap();
    let (arn, t0) = emu.start_execution("rules");
    let exec_id = snap(&emu, &arn).execution_operation_id;
    // Existing state: a started CONTEXT, a started STEP, a finished STEP, a WAIT.
    let setup = json!([
        up("ctx", "CONTEXT", "START"),
        up("run", "STEP", "START"),
        up("done", "STEP", "START"),
        up("w", "WAIT", "START"),
    ]);
    let t1 = checkpoint(&emu, &arn, &t0, None, setup)
        .await
        .token()
        .unwrap();
    let t2 = checkpoint(
        &emu,
        &arn,
        &t1,
        None,
        json!([up("done", "STEP", "SUCCEED")]),
    )
    .await
    .token()
    .unwrap();

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing Id",
            json!([{ "Type": "STEP", "Action": "START" }]),
            "update 0: missing field",
        ),
        (
            "unknown Type",
            json!([up("a", "TASK", "START")]),
            "unknown enum value",
        ),
        (
            "unknown Action",
            json!([up("a", "STEP", "JUMP")]),
            "unknown enum value",
        ),
        (
            "bad Id chars",
            json!([up("a b", "STEP", "START")]),
            "id format",
        ),
        (
            "Id too long",
            json!([up(&"x".repeat(65), "STEP", "START")]),
            "id format",
        ),
        (
            "bad ParentId",
            json!([with(up("a", "STEP", "START"), "ParentId", json!("p/q"))]),
            "id format",
        ),
        (
            "Name too long",
            json!([with(
                up("a", "STEP", "START"),
                "Name",
                json!("n".repeat(257))
            )]),
            "name too long",
        ),
        (
            "SubType too long",
            json!([with(
                up("a", "STEP", "START"),
                "SubType",
                json!("s".repeat(33))
            )]),
            "subtype too long",
        ),
        (
            "payload too large",
            json!([with(
                up("a", "STEP", "START"),
                "Payload",
                json!("p".repeat(17))
            )]),
            "payload too large",
        ),
        (
            "error too large",
            json!([with(
                up("run", "STEP", "FAIL"),
                "Error",
                json!({"ErrorMessage": "m".repeat(10), "StackTrace": ["s".repeat(7)]})
            )]),
            "error too large",
        ),
        (
            "EXECUTION payload too large",
            json!([with(
                up(&exec_id, "EXECUTION", "SUCCEED"),
                "Payload",
                json!("p".repeat(33))
            )]),
            "payload too large",
        ),
        (
            "too many updates",
            json!([
                up("a", "STEP", "START"),
                up("b", "STEP", "START"),
                up("c", "STEP", "START"),
                up("d", "STEP", "START"),
                up("e", "STEP", "START")
            ]),
            "too many updates",
        ),
        (
            "two EXECUTION updates",
            json!([
                up(&exec_id, "EXECUTION", "SUCCEED"),
                up(&exec_id, "EXECUTION", "FAIL")
            ]),
            "update 0 (id",
        ),
        (
            "EXECUTION not last",
            json!([
                up(&exec_id, "EXECUTION", "SUCCEED"),
                up("a", "STEP", "START")
            ]),
            "execution update must be last",
        ),
        (
            "EXECUTION with a foreign Id",
            json!([up("other", "EXECUTION", "SUCCEED")]),
            "execution update must name the execution operation",
        ),
        (
            "START of an EXECUTION",
            json!([up(&exec_id, "EXECUTION", "START")]),
            "illegal status transition",
        ),
        (
            "duplicate Id",
            json!([up("a", "STEP", "START"), up("a", "STEP", "START")]),
            "update 1 (id \"a\"): one update per id",
        ),
        (
            "two non-START after START",
            json!([
                up("a", "STEP", "START"),
                up("a", "STEP", "RETRY"),
                up("a", "STEP", "SUCCEED")
            ]),
            "update 2 (id \"a\"): one update per id",
        ),
        (
            "WAIT with two updates",
            json!([up("w9", "WAIT", "START"), up("w9", "WAIT", "CANCEL")]),
            "one update per id",
        ),
        (
            "unknown parent",
            json!([with(up("a", "STEP", "START"), "ParentId", json!("nope"))]),
            "parent must be a context",
        ),
        (
            "parent is a STEP",
            json!([with(up("a", "STEP", "START"), "ParentId", json!("run"))]),
            "parent must be a context",
        ),
        (
            "parent started later",
            json!([
                with(up("a", "STEP", "START"), "ParentId", json!("c2")),
                up("c2", "CONTEXT", "START")
            ]),
            "update 0 (id \"a\"): parent must be a context",
        ),
        (
            "type mismatch",
            json!([up("run", "CONTEXT", "SUCCEED")]),
            "type mismatch",
        ),
        (
            "SUCCEED never started",
            json!([up("ghost", "STEP", "SUCCEED")]),
            "never started",
        ),
        (
            "RETRY never started",
            json!([up("ghost", "STEP", "RETRY")]),
            "never started",
        ),
        (
            "START of a finished op",
            json!([up("done", "STEP", "START")]),
            "finished",
        ),
        (
            "START of a started op",
            json!([up("run", "STEP", "START")]),
            "already started",
        ),
        (
            "RETRY of a CONTEXT",
            json!([up("ctx", "CONTEXT", "RETRY")]),
            "illegal status transition",
        ),
        (
            "client SUCCEED of a WAIT",
            json!([up("w", "WAIT", "SUCCEED")]),
            "the service completes",
        ),
        ("bad ClientToken", json!([]), "client token format"),
    ];
    for (name, updates, expected) in cases {
        let client_token = (name == "bad ClientToken").then_some("has space");
        let before = snap(&emu, &arn);
        let r = checkpoint(&emu, &arn, &t2, client_token, updates).await;
        assert_eq!(r.status, 400, "{name}: must be refused");
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("InvalidParameterValueException"),
            "{name}"
        );
        assert!(
            r.message().contains(expected),
            "{name}: message {:?} must contain {expected:?}",
            r.message()
        );
        let after = snap(&emu, &arn);
        assert_eq!(
            after.current_token.as_deref(),
            Some(t2.as_str()),
            "{name}: token not consumed"
        );
        assert_eq!(
            after.operations, before.operations,
            "{name}: nothing applied (atomic)"
        );
        assert_eq!(
            after.applied, before.applied,
            "{name}: nothing applied (atomic)"
        );
    }
    // The token still works after all those refusals.
    assert_eq!(
        checkpoint(&emu, &arn, &t2, None, json!([])).await.status,
        200
    );
}

#[tokio::test]
async fn allowed_sequences_follow_the_documented_transitions() {
    let emu = emulator().await;
    let (arn, t0) = emu.start_execution("ok");
    let updates = json!([
        up("ctx", "CONTEXT", "START"),
        with(up("s1", "STEP", "START"), "ParentId", json!("ctx")),
        with(up("s1", "STEP", "SUCCEED"), "Payload", json!("\"r1\"")),
        up("s2", "STEP", "START"),
        with(
            with(
                up("s2", "STEP", "RETRY"),
                "Error",
                json!({"ErrorMessage": "boom", "ErrorType": "E"})
            ),
            "StepOptions",
            json!({"NextAttemptDelaySeconds": 5})
        ),
        with(
            up("w", "WAIT", "START"),
            "WaitOptions",
            json!({"WaitSeconds": 10})
        ),
        up("cb", "CALLBACK", "START"),
        with(
            up("inv", "CHAINED_INVOKE", "START"),
            "ChainedInvokeOptions",
            json!({"FunctionName": "f"})
        ),
    ]);
    let r = checkpoint(&emu, &arn, &t0, None, updates).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let t1 = r.token().unwrap();
    let state = r.json()["NewExecutionState"].clone();
    assert_eq!(
        op_ids(&state["Operations"]),
        ["ctx", "s1", "s2", "w", "cb", "inv"],
        "changed operations in first-change order"
    );
    let ops = state["Operations"].as_array().unwrap();
    assert_eq!(ops[1]["Status"], "SUCCEEDED");
    assert_eq!(ops[1]["ParentId"], "ctx");
    assert_eq!(ops[1]["StepDetails"]["Result"], "\"r1\"");
    assert_eq!(ops[2]["Status"], "PENDING", "RETRY leaves the step PENDING");
    assert_eq!(ops[2]["StepDetails"]["Error"]["ErrorMessage"], "boom");
    assert!(ops[2]["StepDetails"]["NextAttemptTimestamp"].is_number());
    assert!(ops[3]["WaitDetails"]["ScheduledEndTimestamp"].is_number());
    assert!(ops[4]["CallbackDetails"]["CallbackId"].is_string());
    assert!(
        ops[0]["StartTimestamp"].is_number(),
        "timestamps are epoch-second numbers"
    );

    let r = checkpoint(
        &emu,
        &arn,
        &t1,
        None,
        json!([
            up("s2", "STEP", "START"),
            up("s2", "STEP", "SUCCEED"),
            up("ctx", "CONTEXT", "SUCCEED"),
            up("w", "WAIT", "CANCEL"),
        ]),
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "a restart after RETRY is a new attempt: {:?}",
        r.json()
    );
    let s = snap(&emu, &arn);
    let s2 = s.operation("s2").unwrap();
    assert_eq!((s2.status.as_str(), s2.attempt), ("SUCCEEDED", 2));
    assert_eq!(s2.history, ["START", "RETRY", "START", "SUCCEED"]);
    assert_eq!(s.operation("w").unwrap().status, "CANCELLED");
    assert_eq!(s.applied.iter().filter(|a| a.checkpoint == 2).count(), 4);
}

#[tokio::test]
async fn service_completions_reach_the_client_through_the_next_checkpoint() {
    let emu = emulator().await;
    let (arn, t0) = emu.start_execution("svc");
    let t1 = checkpoint(&emu, &arn, &t0, None, json!([up("w", "WAIT", "START")]))
        .await
        .token()
        .unwrap();
    emu.complete_operation(&arn, "w", Completion::Succeed(None))
        .unwrap();
    let r = checkpoint(&emu, &arn, &t1, None, json!([])).await;
    let ops = &r.json()["NewExecutionState"]["Operations"];
    assert_eq!(
        op_ids(ops),
        ["w"],
        "an empty checkpoint fetches the service's changes"
    );
    assert_eq!(ops[0]["Status"], "SUCCEEDED");
    assert!(
        emu.complete_operation(&arn, "w", Completion::TimeOut)
            == Err(EmulatorError::AlreadyFinished("w".to_owned())),
        "already finished"
    );
    assert!(
        emu.complete_operation(&arn, "nope", Completion::TimeOut)
            .is_err()
    );
    let exec_id = snap(&emu, &arn).execution_operation_id;
    assert_eq!(
        emu.complete_operation(&arn, &exec_id, Completion::Succeed(None)),
        Err(EmulatorError::NotApplicable(exec_id.clone())),
        "the execution is not completed through complete_operation"
    );
    let t2 = r.token().unwrap();
    let t3 = checkpoint(
        &emu,
        &arn,
        &t2,
        None,
        json!([up("s", "STEP", "START"), up("s", "STEP", "RETRY")]),
    )
    .await
    .token()
    .unwrap();
    emu.complete_operation(&arn, "s", Completion::Ready)
        .unwrap();
    let r = checkpoint(&emu, &arn, &t3, None, json!([up("s", "STEP", "SUCCEED")])).await;
    assert_eq!(
        r.status, 200,
        "a READY step may succeed without a new START"
    );
    assert_eq!(
        snap(&emu, &arn).operation("s").unwrap().history,
        ["START", "RETRY", "service:READY", "SUCCEED"]
    );
}

// ---------------------------------------------------------------------------------
// Completion and paging

#[tokio::test]
async fn an_execution_succeed_ends_the_token_chain() {
    let emu = emulator().await;
    let (arn, t0) = emu.start_execution("done");
    let exec_id = snap(&emu, &arn).execution_operation_id;
    let r = checkpoint(
        &emu,
        &arn,
        &t0,
        None,
        json!([
            up("s", "STEP", "START"),
            with(
                up(&exec_id, "EXECUTION", "SUCCEED"),
                "Payload",
                json!("result")
            ),
        ]),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.json().get("CheckpointToken").is_none(),
        "no token after the execution completed"
    );
    let s = snap(&emu, &arn);
    assert!(s.completed && s.current_token.is_none());
    assert_eq!(s.operations[0].status, "SUCCEEDED");
    assert_eq!(s.operations[0].result.as_deref(), Some("result"));
    let r = checkpoint(&emu, &arn, &t0, None, json!([])).await;
    assert!(
        r.status == 400 && r.message().starts_with("Invalid checkpoint token"),
        "later calls are refused"
    );
    assert!(
        emu.rotate_token(&arn).is_none(),
        "a completed execution gets no new token"
    );
}

#[tokio::test]
async fn a_next_marker_from_a_checkpoint_is_fetched_with_the_new_token() {
    let emu = Emulator::builder().page_size(3).start().await.unwrap();
    let (arn, t0) = emu.start_execution("paging");
    let ids: Vec<String> = (0..7).map(|i| format!("s{i}")).collect();
    let updates: Vec<Value> = ids.iter().map(|id| up(id, "STEP", "START")).collect();
    let r = checkpoint(&emu, &arn, &t0, None, json!(updates)).await;
    let t1 = r.token().unwrap();
    let state = &r.json()["NewExecutionState"];
    let mut seen = op_ids(&state["Operations"]);
    assert_eq!(seen.len(), 3, "the first page holds page_size operations");
    let mut marker = state["NextMarker"].as_str().map(str::to_owned);
    assert!(
        marker.is_some(),
        "more changes than a page: NextMarker is set"
    );
    let stale = request(
        emu.local_addr(),
        "GET",
        &state_path(&arn, &t0, marker.as_deref(), None),
        b"",
    )
    .await;
    assert_eq!(stale.status, 400, "the old token cannot fetch the marker");
    while let Some(m) = marker {
        let page = request(
            emu.local_addr(),
            "GET",
            &state_path(&arn, &t1, Some(&m), Some("2")),
            b"",
        )
        .await;
        assert_eq!(page.status, 200, "{:?}", page.json());
        let body = page.json();
        let got = op_ids(&body["Operations"]);
        assert!(got.len() <= 2, "MaxItems bounds the page");
        seen.extend(got);
        marker = body["NextMarker"].as_str().map(str::to_owned);
    }
    assert_eq!(
        seen, ids,
        "the pages together list every changed operation once, in order"
    );
    assert_eq!(
        snap(&emu, &arn).current_token.as_deref(),
        Some(t1.as_str()),
        "GET does not rotate the token"
    );
}

#[tokio::test]
async fn get_state_pages_all_operations_and_bounds_max_items() {
    let emu = emulator().await;
    let (arn, t0) = emu.start_execution("state");
    let updates: Vec<Value> = (0..150)
        .map(|i| up(&format!("s{i}"), "STEP", "START"))
        .collect();
    let t1 = checkpoint(&emu, &arn, &t0, None, json!(updates))
        .await
        .token()
        .unwrap();
    let addr = emu.local_addr();

    let all = request(addr, "GET", &state_path(&arn, &t1, None, Some("1000")), b"")
        .await
        .json();
    assert_eq!(
        all["Operations"].as_array().unwrap().len(),
        151,
        "EXECUTION plus 150 steps"
    );
    assert!(
        all.get("NextMarker").is_none(),
        "everything fits: no marker"
    );

    for default in [None, Some("0")] {
        let page = request(addr, "GET", &state_path(&arn, &t1, None, default), b"")
            .await
            .json();
        assert_eq!(
            page["Operations"].as_array().unwrap().len(),
            100,
            "MaxItems {default:?} means 100"
        );
        let next = page["NextMarker"].as_str().unwrap();
        let rest = request(addr, "GET", &state_path(&arn, &t1, Some(next), None), b"")
            .await
            .json();
        assert_eq!(rest["Operations"].as_array().unwrap().len(), 51);
    }
    for bad in ["1001", "-1", "abc", "99999999999999999999999"] {
        let r = request(addr, "GET", &state_path(&arn, &t1, None, Some(bad)), b"").await;
        assert_eq!(r.status, 400, "MaxItems {bad} is out of range");
    }
    for bad in ["garbage", "s.9999", "c.42.0", "c.1", "s.-1", "%FF"] {
        let r = request(addr, "GET", &state_path(&arn, &t1, Some(bad), None), b"").await;
        assert_eq!(r.status, 400, "marker {bad:?} must be refused");
    }
    assert_eq!(snap(&emu, &arn).state_calls, 15);
}

// ---------------------------------------------------------------------------------
// Error form and robustness

#[tokio::test]
async fn errors_carry_the_type_header_unless_told_to_leave_it_out() {
    let with_header = emulator().await;
    let r = request(
        with_header.local_addr(),
        "POST",
        &checkpoint_path("arn:nope"),
        b"{}",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("ResourceNotFoundException")
    );
    assert_eq!(r.json()["Type"], "User");

    let without = Emulator::builder()
        .omit_error_type_header(true)
        .start()
        .await
        .unwrap();
    let (arn, _) = without.start_execution("bare");
    let r = checkpoint(&without, &arn, "stale", None, json!([])).await;
    assert_eq!(r.status, 400);
    assert!(r.header("x-amzn-errortype").is_none(), "header left out");
    assert_eq!(
        r.json()["Type"],
        "InvalidParameterValueException",
        "the body names the error"
    );
    assert!(r.message().starts_with("Invalid checkpoint token"));
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_and_never_a_crash() {
    let emu = Emulator::builder()
        .max_request_bytes(1024)
        .start()
        .await
        .unwrap();
    let (arn, token) = emu.start_execution("robust");
    let addr = emu.local_addr();
    let cp = checkpoint_path(&arn);
    let cases: Vec<(&str, &str, String, Vec<u8>, u16)> = vec![
        (
            "malformed JSON",
            "POST",
            cp.clone(),
            b"{not json".to_vec(),
            400,
        ),
        ("JSON array", "POST", cp.clone(), b"[1,2]".to_vec(), 400),
        (
            "wrong shape",
            "POST",
            cp.clone(),
            json!({"CheckpointToken": token, "Updates": [{"Id": 5}]})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "Updates not a list",
            "POST",
            cp.clone(),
            json!({"CheckpointToken": token, "Updates": "x"})
                .to_string()
                .into_bytes(),
            400,
        ),
        ("missing token", "POST", cp.clone(), b"{}".to_vec(), 400),
        ("oversized body", "POST", cp.clone(), vec![b' '; 4096], 413),
        ("GET on checkpoint", "GET", cp.clone(), Vec::new(), 405),
        (
            "DELETE on checkpoint",
            "DELETE",
            cp.clone(),
            Vec::new(),
            405,
        ),
        (
            "POST on state",
            "POST",
            state_path(&arn, &token, None, None),
            Vec::new(),
            405,
        ),
        (
            "unknown ARN",
            "POST",
            checkpoint_path("arn:aws:lambda:nope"),
            b"{}".to_vec(),
            404,
        ),
        (
            "ARN not UTF-8",
            "POST",
            "/2025-12-01/durable-executions/%FF%FE/checkpoint".to_owned(),
            b"{}".to_vec(),
            400,
        ),
        (
            "unknown path",
            "GET",
            "/2015-03-31/functions".to_owned(),
            Vec::new(),
            404,
        ),
        (
            "empty ARN",
            "POST",
            "/2025-12-01/durable-executions//checkpoint".to_owned(),
            Vec::new(),
            404,
        ),
        (
            "unknown action",
            "POST",
            format!("/2025-12-01/durable-executions/{}/stop", enc(&arn)),
            Vec::new(),
            404,
        ),
    ];
    for (name, method, path, body, status) in cases {
        let r = request(addr, method, &path, &body).await;
        assert_eq!(
            r.status,
            status,
            "{name}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.json()["message"].is_string(),
            "{name}: REST-JSON error body"
        );
        if status == 405 {
            assert!(
                r.header("allow").is_some(),
                "{name}: 405 names the allowed method"
            );
        }
    }
    let unknown_members =
        json!({"CheckpointToken": token, "Updates": [], "Extra": {"x": 1}}).to_string();
    let r = request(addr, "POST", &cp, unknown_members.as_bytes()).await;
    assert_eq!(r.status, 200, "unknown members are ignored");
    let s = snap(&emu, &arn);
    assert_eq!(s.applied_checkpoints, 1);
    assert_eq!(
        s.request_body_sizes.len() as u64,
        s.checkpoint_calls,
        "one size per checkpoint call"
    );
    assert!(
        s.request_body_sizes.contains(&4096),
        "the oversized body is recorded"
    );
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let emu = emulator().await;
    let addr = emu.local_addr();
    assert!(emu.endpoint_url().starts_with("http://127.0.0.1:"));
    assert!(
        TcpStream::connect(addr).await.is_ok(),
        "listening before shutdown"
    );
    emu.shutdown().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "connections are refused after shutdown"
    );
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let emu = emulator().await;
    let addr = emu.local_addr();
    drop(emu);
    let mut refused = false;
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "the listener closes soon after the drop");
}

// ---------------------------------------------------------------------------------
// Faults

async fn fault_statuses(seed: u64, switch_off_at: Option<usize>) -> Vec<(u16, Option<String>)> {
    let emu = Emulator::builder()
        .seed(seed)
        .faults(Faults {
            throttle_rate: 0.3,
            server_error_rate: 0.2,
            jitter: Duration::from_millis(1),
            retry_after: Duration::from_secs(2),
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let (arn, token) = emu.start_execution("faults");
    let mut out = Vec::new();
    for i in 0..40 {
        if Some(i) == switch_off_at {
            emu.set_faults(Faults::none());
        }
        let r = request(
            emu.local_addr(),
            "GET",
            &state_path(&arn, &token, None, None),
            b"",
        )
        .await;
        out.push((r.status, r.header("retry-after").map(str::to_owned)));
    }
    out
}

#[tokio::test]
async fn the_same_seed_injects_the_same_faults() {
    let a = fault_statuses(42, None).await;
    let b = fault_statuses(42, None).await;
    assert_eq!(a, b, "same seed, same requests: same faults");
    assert!(
        a.iter().any(|(s, _)| *s == 200)
            && a.iter().any(|(s, _)| *s == 429)
            && a.iter().any(|(s, _)| *s == 500)
    );
    assert!(
        a.iter()
            .filter(|(s, _)| *s == 429)
            .all(|(_, ra)| ra.as_deref() == Some("2")),
        "every 429 carries Retry-After"
    );
    assert_ne!(
        a,
        fault_statuses(43, None).await,
        "another seed, other faults"
    );
    let switched = fault_statuses(42, Some(20)).await;
    assert_eq!(
        switched[..20],
        a[..20],
        "faults changed at run time keep the earlier sequence"
    );
    assert!(
        switched[20..].iter().all(|(s, _)| *s == 200),
        "no faults after set_faults(none)"
    );
}

#[tokio::test]
async fn injected_faults_do_not_apply_the_checkpoint() {
    let emu = Emulator::builder()
        .faults(Faults {
            throttle_rate: 1.0,
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let (arn, t0) = emu.start_execution("throttled");
    let r = checkpoint(
        &emu,
        &arn,
        &t0,
        Some("c"),
        json!([up("s", "STEP", "START")]),
    )
    .await;
    assert_eq!(
        (r.status, r.header("x-amzn-errortype")),
        (429, Some("TooManyRequestsException"))
    );
    emu.set_faults(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    });
    let r = checkpoint(
        &emu,
        &arn,
        &t0,
        Some("c"),
        json!([up("s", "STEP", "START")]),
    )
    .await;
    assert_eq!(r.status, 500);
    let s = snap(&emu, &arn);
    assert_eq!(
        (
            s.applied_checkpoints,
            s.faulted_checkpoints,
            s.checkpoint_calls
        ),
        (0, 2, 2)
    );
    assert_eq!(
        s.current_token.as_deref(),
        Some(t0.as_str()),
        "a faulted request keeps the token"
    );
}

// ---------------------------------------------------------------------------------
// The real SDK against the emulator

fn sdk_client(emu: &Emulator) -> aws_sdk_lambda::Client {
    use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "emulator",
        ))
        .endpoint_url(emu.endpoint_url())
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

#[tokio::test]
async fn aws_sdk_lambda_round_trips_checkpoints_state_and_typed_errors() {
    use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionError as CpErr;
    use aws_sdk_lambda::types::{
        ErrorObject, OperationAction, OperationStatus, OperationType, OperationUpdate,
    };

    let emu = Emulator::builder().page_size(2).start().await.unwrap();
    let client = sdk_client(&emu);
    let (arn, t0) = emu.start_execution_with_input("sdk", Some("{\"order\":1}"));
    let update = |id: &str, action: OperationAction| {
        OperationUpdate::builder()
            .id(id)
            .r#type(OperationType::Step)
            .action(action)
            .build()
            .unwrap()
    };
    let out = client
        .checkpoint_durable_execution()
        .durable_execution_arn(&arn)
        .checkpoint_token(&t0)
        .updates(update("a", OperationAction::Start))
        .updates(
            OperationUpdate::builder()
                .id("a")
                .r#type(OperationType::Step)
                .action(OperationAction::Succeed)
                .payload("\"ok\"")
                .build()
                .unwrap(),
        )
        .updates(update("b", OperationAction::Start))
        .updates(
            OperationUpdate::builder()
                .id("b")
                .r#type(OperationType::Step)
                .action(OperationAction::Fail)
                .error(
                    ErrorObject::builder()
                        .error_message("bad")
                        .error_type("E")
                        .stack_trace("at x")
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .updates(update("c", OperationAction::Start))
        .send()
        .await
        .unwrap();
    let t1 = out.checkpoint_token().unwrap().to_owned();
    let state = out.new_execution_state().unwrap();
    assert_eq!(state.operations().len(), 2, "page_size 2");
    let a = &state.operations()[0];
    assert_eq!(
        (a.id(), a.r#type(), a.status()),
        ("a", &OperationType::Step, &OperationStatus::Succeeded)
    );
    assert_eq!(a.step_details().unwrap().result(), Some("\"ok\""));
    assert!(
        a.start_timestamp().secs() > 1_600_000_000,
        "a real epoch timestamp"
    );
    let b = &state.operations()[1];
    assert_eq!(b.status(), &OperationStatus::Failed);
    assert_eq!(
        b.step_details().unwrap().error().unwrap().error_message(),
        Some("bad")
    );
    let marker = state.next_marker().unwrap().to_owned();

    let page = client
        .get_durable_execution_state()
        .durable_execution_arn(&arn)
        .checkpoint_token(&t1)
        .marker(&marker)
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.operations().iter().map(|o| o.id()).collect::<Vec<_>>(),
        ["c"]
    );
    assert!(page.next_marker().is_none());

    let full = client
        .get_durable_execution_state()
        .durable_execution_arn(&arn)
        .checkpoint_token(&t1)
        .max_items(1)
        .send()
        .await
        .unwrap();
    let exec = &full.operations()[0];
    assert_eq!(exec.r#type(), &OperationType::Execution);
    assert_eq!(
        exec.execution_details().unwrap().input_payload(),
        Some("{\"order\":1}")
    );

    let stale = client
        .checkpoint_durable_execution()
        .durable_execution_arn(&arn)
        .checkpoint_token(&t0)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    match &stale {
        CpErr::InvalidParameterValueException(e) => {
            assert!(
                e.message().unwrap().starts_with("Invalid checkpoint token"),
                "{e:?}"
            );
        }
        other => panic!("expected InvalidParameterValueException, got {other:?}"),
    }
    let missing = client
        .checkpoint_durable_execution()
        .durable_execution_arn(
            "arn:aws:lambda:us-east-1:123456789012:function:x:$LATEST/durable-execution/x/none",
        )
        .checkpoint_token(&t1)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        {
            use aws_sdk_lambda::error::ProvideErrorMetadata;
            // The checkpoint call does not model ResourceNotFound: it is unhandled, with
            // the code from the header.
            missing.code() == Some("ResourceNotFoundException")
        },
        "{missing:?}"
    );

    emu.set_faults(Faults {
        throttle_rate: 1.0,
        retry_after: Duration::from_secs(3),
        ..Faults::default()
    });
    let throttled = client
        .checkpoint_durable_execution()
        .durable_execution_arn(&arn)
        .checkpoint_token(&t1)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    match &throttled {
        CpErr::TooManyRequestsException(e) => assert_eq!(e.retry_after_seconds(), Some("3")),
        other => panic!("expected TooManyRequestsException, got {other:?}"),
    }
    emu.set_faults(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    });
    let failed = client
        .checkpoint_durable_execution()
        .durable_execution_arn(&arn)
        .checkpoint_token(&t1)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(failed, CpErr::ServiceException(_)), "{failed:?}");
    emu.set_faults(Faults::none());

    let exec_id = snap(&emu, &arn).execution_operation_id;
    let done = client
        .checkpoint_durable_execution()
        .durable_execution_arn(&arn)
        .checkpoint_token(&t1)
        .updates(
            OperationUpdate::builder()
                .id(&exec_id)
                .r#type(OperationType::Execution)
                .action(OperationAction::Succeed)
                .payload("42")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        done.checkpoint_token().is_none(),
        "no token after EXECUTION SUCCEED"
    );
    let s = snap(&emu, &arn);
    assert!(s.completed);
    // Every SDK call carried an SDK-generated ClientToken.
    assert!(
        s.applied.iter().all(|a| a.client_token.is_some()),
        "the SDK fills ClientToken in"
    );
}

#[tokio::test]
async fn the_sdk_retrying_a_lost_answer_is_applied_once() {
    use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
    let emu = emulator().await;
    let (arn, t0) = emu.start_execution("sdk-retry");
    let client = {
        use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
        let config = aws_sdk_lambda::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "emulator",
            ))
            .endpoint_url(emu.endpoint_url())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .build();
        aws_sdk_lambda::Client::from_conf(config)
    };
    // Seed 0x5EED with rate 0.5: the first answer is lost, a later attempt gets through
    // (checked by the assertions below, so a change of generator shows up here).
    emu.set_faults(Faults {
        lost_answer_rate: 0.5,
        ..Faults::default()
    });
    let mut lost_any = false;
    let mut token = t0;
    for i in 0..6 {
        let out = client
            .checkpoint_durable_execution()
            .durable_execution_arn(&arn)
            .checkpoint_token(&token)
            .updates(
                OperationUpdate::builder()
                    .id(format!("s{i}"))
                    .r#type(OperationType::Step)
                    .action(OperationAction::Start)
                    .build()
                    .unwrap(),
            )
            .send()
            .await;
        let Ok(out) = out else {
            // Attempts exhausted: pick up the service's token, as a re-invocation would.
            token = snap(&emu, &arn).current_token.unwrap();
            continue;
        };
        token = out.checkpoint_token().unwrap().to_owned();
        lost_any |= snap(&emu, &arn).lost_answers > 0;
    }
    let s = snap(&emu, &arn);
    assert!(
        lost_any && s.replayed_checkpoints > 0,
        "answers were lost and replayed: {s:?}"
    );
    assert_eq!(
        s.applied.len() as u64,
        s.applied_checkpoints,
        "each update applied exactly once"
    );
    let mut ids: Vec<&str> = s.applied.iter().map(|a| a.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), s.applied.len(), "no update applied twice");
}

// ---------------------------------------------------------------------------------
// Property: no input crashes the server.

#[test]
fn random_requests_never_crash_the_server() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emu = rt
        .block_on(
            Emulator::builder()
                .max_request_bytes(64 * 1024)
                .page_size(2)
                .start(),
        )
        .unwrap();
    let (arn, t0) = emu.start_execution("prop");
    let addr = emu.local_addr();
    let token = std::sync::Mutex::new(t0);

    let id = prop::sample::select(vec!["a", "b", "c", "ctx", "w"]);
    let ty = prop::sample::select(vec![
        "STEP",
        "CONTEXT",
        "WAIT",
        "CALLBACK",
        "CHAINED_INVOKE",
        "EXECUTION",
        "BOGUS",
    ]);
    let action = prop::sample::select(vec!["START", "SUCCEED", "FAIL", "RETRY", "CANCEL", "NOPE"]);
    let parent = prop::option::of(prop::sample::select(vec!["ctx", "a", "zz"]));
    let update = (id, ty, action, parent).prop_map(|(id, ty, action, parent)| {
        let mut u = up(id, ty, action);
        if let Some(p) = parent {
            u["ParentId"] = json!(p);
        }
        u
    });
    let input = prop_oneof![
        // Structured: plausible update lists with the current token.
        prop::collection::vec(update, 0..6).prop_map(|ups| (
            0u8,
            json!(ups).to_string().into_bytes(),
            String::new()
        )),
        // Raw garbage bodies.
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| (1u8, b, String::new())),
        // Garbage path tails and queries.
        "[ -~]{0,40}".prop_map(|p| (2u8, Vec::new(), p)),
    ];

    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 160,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    runner
        .run(&input, |(kind, body, path)| {
            rt.block_on(async {
                let resp = match kind {
                    0 => {
                        let current = token.lock().unwrap().clone();
                        let updates: Value = serde_json::from_slice(&body).unwrap();
                        let r = checkpoint(&emu, &arn, &current, None, updates).await;
                        let snapshot = snap(&emu, &arn);
                        if r.status == 200 {
                            let next = r.token();
                            if snapshot.completed {
                                prop_assert!(next.is_none(), "no token after completion");
                                // Keep going on a fresh execution-less token; further
                                // requests are simply refused.
                            } else {
                                prop_assert_ne!(
                                    next.as_deref(),
                                    Some(current.as_str()),
                                    "token rotates"
                                );
                                *token.lock().unwrap() = next.unwrap();
                            }
                        } else {
                            prop_assert_eq!(r.status, 400, "{:?}", r.json());
                            prop_assert_eq!(
                                snapshot.current_token.as_deref(),
                                (!snapshot.completed).then_some(current.as_str())
                            );
                        }
                        r
                    }
                    1 => request(addr, "POST", &checkpoint_path(&arn), &body).await,
                    _ => {
                        let raw = format!(
                            "/2025-12-01/durable-executions/{}/state?{}",
                            enc(&arn),
                            path.replace(' ', "%20")
                        );
                        let r = try_request(addr, "GET", &raw.replace('#', "%23"), b"").await;
                        match r {
                            Ok(r) => r,
                            // hyper refuses unparseable request lines itself, with 400.
                            Err(e) => panic!("no answer: {e}"),
                        }
                    }
                };
                prop_assert!(
                    resp.status < 500,
                    "never a server error: {} {:?}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                );
                Ok(())
            })
        })
        .unwrap();
    // Still serving.
    let r = rt.block_on(request(
        addr,
        "GET",
        &state_path(&arn, "x", None, None),
        b"",
    ));
    assert_eq!(r.status, 400);
    drop(emu);
}
