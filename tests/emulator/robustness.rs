//! Robustness: errors carry the type header unless told to leave it out, malformed and random
//! requests get a 4xx and never a crash, and shutting down or dropping the handle stops the
//! server.

use std::time::Duration;

use crate::support::*;
use checkpoint_batcher::emulator::Emulator;
use serde_json::{Value, json};
use tokio::net::TcpStream;

#[tokio::test]
async fn errors_carry_the_type_header_unless_told_to_leave_it_out() {
    let with_header = default_emulator().await;
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
            "not UTF-8 inside a string",
            "POST",
            cp.clone(),
            b"{\"CheckpointToken\":\"\xff\xfe\"}".to_vec(),
            400,
        ),
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
    let s = snapshot(&emu, &arn);
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
    let emu = default_emulator().await;
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
    let emu = default_emulator().await;
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
                        let snapshot = snapshot(&emu, &arn);
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

#[tokio::test]
async fn escaped_strings_are_read_as_any_json_parser_reads_them() {
    // Most strings are read in place; one that JSON escapes is unescaped first. Both must
    // reach the operation as the text the client meant.
    let emu = default_emulator().await;
    let (arn, token) = emu.start_execution("escapes");
    let body = format!(
        r#"{{"CheckpointToken":"{token}","ClientToken":"ct\u002d1","Updates":[
            {{"Id":"s\u0031","Type":"STEP","Action":"START","Name":"caf\u00e9 \"au lait\""}},
            {{"Id":"s1","Type":"STEP","Action":"SUCCEED","Payload":"{{\"k\":\"line\\nbreak\"}}"}},
            {{"Id":"s2","Type":"STEP","Action":"START","Name":"plain"}}
        ]}}"#
    );
    let r = request(
        emu.local_addr(),
        "POST",
        &checkpoint_path(&arn),
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let snapshot = emu.execution(&arn).unwrap();
    let s1 = snapshot.operations.iter().find(|op| op.id == "s1").unwrap();
    assert_eq!(s1.name.as_deref(), Some("café \"au lait\""));
    assert_eq!(s1.result.as_deref(), Some(r#"{"k":"line\nbreak"}"#));
    assert_eq!(s1.history, ["START", "SUCCEED"]);
    let s2 = snapshot.operations.iter().find(|op| op.id == "s2").unwrap();
    assert_eq!(s2.name.as_deref(), Some("plain"));
    assert!(
        snapshot
            .applied
            .iter()
            .all(|applied| applied.client_token.as_deref() == Some("ct-1")),
        "every update of the request records its client token"
    );
    assert_eq!(
        snapshot
            .applied
            .iter()
            .map(|applied| (
                applied.id.as_str(),
                applied.op_type.as_str(),
                applied.action.as_str()
            ))
            .collect::<Vec<_>>(),
        [
            ("s1", "STEP", "START"),
            ("s1", "STEP", "SUCCEED"),
            ("s2", "STEP", "START")
        ]
    );
    let answered = r.json();
    let ops = answered["NewExecutionState"]["Operations"]
        .as_array()
        .unwrap();
    let s1 = ops.iter().find(|op| op["Id"] == "s1").unwrap();
    assert_eq!(s1["StepDetails"]["Result"], r#"{"k":"line\nbreak"}"#);
    assert_eq!(s1["Name"], "café \"au lait\"");
}
