//! The emulator's robustness against hostile requests: bodies that lie about their length,
//! hostile JSON, bad ARNs through the SDK and the batcher, garbage alongside a live batcher, and
//! mutations of valid requests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::RTT;
use crate::support::*;
use checkpoint_batcher::emulator::{Emulator, Faults};
use checkpoint_batcher::{BatcherError, CheckpointBatcher, ErrorKind};

// `tests/emulator/` already covers malformed JSON, wrong
// shapes, wrong methods (GET, DELETE, POST on state), a declared oversized body, unknown,
// empty and undecodable ARNs, unknown paths, bad markers and MaxItems, and random requests
// (`random_requests_never_crash_the_server`). What follows covers what it does not: bodies
// that lie about their length or never declare it, hostile JSON, the remaining methods, bad
// ARNs through the SDK and the batcher, garbage alongside a live batcher, and mutations of
// valid requests.

/// The token the emulator holds now, and a valid checkpoint body for it.
fn valid_body(emu: &Emulator, arn: &str, id: &str) -> (Option<String>, Vec<u8>) {
    let token = snapshot(emu, arn).current_token;
    let body = serde_json::json!({
        "CheckpointToken": token,
        "Updates": [{"Id": id, "Type": "STEP", "Action": "START"}],
    });
    (token, body.to_string().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_the_documented_4xx_and_the_emulator_keeps_serving() {
    let _serial = SERIAL.lock().await;
    let emu = Emulator::builder()
        .max_request_bytes(64 * 1024)
        .start()
        .await
        .expect("binds");
    let (arn, token) = emu.start_execution("hostile");
    let addr = emu.local_addr();
    let cp = checkpoint_path(&arn);
    let deep = format!("{{\"CheckpointToken\":{}", "[".repeat(50_000));
    let with_token = |updates: &str| {
        format!("{{\"CheckpointToken\":\"{token}\",\"Updates\":{updates}}}").into_bytes()
    };
    let mut invalid_utf8 = with_token("[{\"Id\":\"a\",\"Type\":\"STEP\",\"Action\":\"START\"}]");
    invalid_utf8.splice(30..31, [0xFF, 0xFE]);
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("JSON nested 50,000 deep", "POST", deep.into_bytes(), 400),
        ("bytes that are not UTF-8", "POST", invalid_utf8, 400),
        (
            "a token that is a number",
            "POST",
            b"{\"CheckpointToken\":5}".to_vec(),
            400,
        ),
        (
            "an update that is a string",
            "POST",
            with_token("[\"x\"]"),
            400,
        ),
        (
            "an Id that is null",
            "POST",
            with_token("[{\"Id\":null,\"Type\":\"STEP\",\"Action\":\"START\"}]"),
            400,
        ),
        (
            "an unknown Type",
            "POST",
            with_token("[{\"Id\":\"a\",\"Type\":\"NOPE\",\"Action\":\"START\"}]"),
            400,
        ),
        ("an empty body", "POST", Vec::new(), 400),
        ("PUT", "PUT", Vec::new(), 405),
        ("PATCH", "PATCH", Vec::new(), 405),
        ("OPTIONS", "OPTIONS", Vec::new(), 405),
    ];
    for (what, method, body, status) in cases {
        let answer = try_request(addr, method, &cp, &body)
            .await
            .expect("an HTTP answer");
        assert_eq!(
            answer.status,
            status,
            "{what}: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
        assert!(
            answer.json()["message"].is_string(),
            "{what}: a REST-JSON error body"
        );
        if status == 405 {
            assert_eq!(answer.header("allow"), Some("POST"), "{what}");
        }
    }
    // HEAD: no body, but the status and the Allow header.
    let head = send_raw(
        addr,
        format!("HEAD {cp} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("an answer");
    assert_eq!(head.status, 405);

    // A chunked body past the limit, with no Content-Length to refuse it up front.
    let chunk = "y".repeat(8 * 1024);
    let mut chunked = format!(
        "POST {cp} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for _ in 0..16 {
        chunked.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    chunked.push_str("0\r\n\r\n");
    let answer = send_raw(addr, chunked.as_bytes()).await.expect("an answer");
    assert_eq!(answer.status, 413, "a streamed body over the limit");

    // A Content-Length that promises more than arrives: the connection ends early.
    let short = format!(
        "POST {cp} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n{{\"Check"
    );
    let answer = send_raw_then(addr, short.as_bytes(), true).await;
    assert!(
        answer.as_ref().ok().is_none_or(|a| a.status == 400),
        "a truncated body: {answer:?}"
    );
    // Not HTTP at all.
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\x01\x02\xff\r\n\r\n",
        b"POST / HTTP/9.9\r\n\r\n",
    ] {
        let answer = send_raw_then(addr, garbage, true).await;
        assert!(
            answer
                .as_ref()
                .ok()
                .is_none_or(|a| a.status == 400 || a.status == 404 || a.status == 505),
            "{answer:?}"
        );
    }

    // Nothing of that consumed the token, and the emulator still serves.
    let snap = snapshot(&emu, &arn);
    assert_eq!(snap.current_token.as_deref(), Some(token.as_str()));
    assert_eq!(snap.applied_checkpoints, 0);
    let (_, body) = valid_body(&emu, &arn, "after");
    let answer = try_request(addr, "POST", &cp, &body)
        .await
        .expect("an answer");
    assert_eq!(answer.status, 200, "still serving");
    emu.shutdown().await;
}

/// A batcher given an ARN the service does not know, or one full of characters that need
/// encoding, gets a 404 through the real SDK: a rejected request, latched, nothing retried and
/// nothing hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_arn_fails_the_batcher_at_once_and_nothing_hangs() {
    let _serial = SERIAL.lock().await;
    let emu = emulator(Faults::default(), 0xA4).await;
    let (real_arn, token) = emu.start_execution("real");
    for bad in [
        "arn:aws:lambda:us-east-1:123456789012:function:f/durable-execution/none/1",
        "arn with spaces/and?query#fragment",
        "\u{e9}t\u{e9}/\u{1F600}/%2F%",
    ] {
        let batcher = CheckpointBatcher::spawn(real(&emu), bad, token.clone(), patient_config(1))
            .expect("a non-empty ARN is accepted locally");
        let error = within_named(
            HANG,
            "a checkpoint to a bad ARN",
            batcher.checkpoint(start("a")),
        )
        .await
        .expect_err("the service does not know it");
        assert_eq!(error.kind(), Some(ErrorKind::Rejected), "{bad}: {error}");
        let BatcherError::Failed(failure) = &error else {
            panic!("{error}")
        };
        assert_eq!(failure.attempts(), 1, "{bad}: a 404 is not retried");
        assert_eq!(failure.cause().status(), Some(404), "{bad}");
        assert!(
            within_named(RTT, "later", batcher.checkpoint(start("b")))
                .await
                .is_err()
        );
    }
    let snap = snapshot(&emu, &real_arn);
    assert_eq!(
        snap.checkpoint_calls, 0,
        "no request reached another execution"
    );
    emu.shutdown().await;
}

/// 300 garbage connections while a batcher checkpoints through the same emulator: the
/// batcher's run is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_alongside_a_live_batcher_does_not_disturb_it() {
    let _serial = SERIAL.lock().await;
    let emu = emulator(Faults::default(), 0x6A4).await;
    let (arn, batcher) = batcher(&emu, "live", patient_config(2));
    let addr = emu.local_addr();
    let cp = checkpoint_path(&arn);
    let worker = {
        let batcher = batcher.clone();
        tokio::spawn(async move {
            for n in 0..200 {
                batcher.checkpoint(start(&format!("live{n}"))).await?;
            }
            Ok::<_, BatcherError>(())
        })
    };
    let mut rng = fastrand::Rng::with_seed(0x6A4);
    let mut garbage = Vec::new();
    for _ in 0..300 {
        let body: Vec<u8> = (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect();
        let cp = cp.clone();
        garbage.push(tokio::spawn(async move {
            try_request(addr, "POST", &cp, &body).await
        }));
    }
    for g in garbage {
        let answer = within_named(HANG, "a garbage request", g)
            .await
            .expect("no panic");
        assert!(answer.is_ok_and(|a| a.status == 400), "garbage gets a 400");
    }
    within_named(HANG, "the live batcher", worker)
        .await
        .expect("no panic")
        .expect("unaffected");
    let snap = snapshot(&emu, &arn);
    assert_eq!(snap.applied.len(), 200);
    assert_eq!(
        snap.rejected_checkpoints, 300,
        "every garbage request refused, nothing else"
    );
    emu.shutdown().await;
}

/// Property: a valid checkpoint request mutated at random (a field given a value that may
/// break a rule; bytes flipped, cut, repeated, inserted; the method and the path's ARN changed) gets a 2xx or a 4xx, never a 5xx or a
/// dropped connection; a refused request leaves the token as it was; a 200 rotates it.
#[test]
fn mutated_requests_get_an_answer_and_a_refused_one_consumes_nothing() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let _serial = rt.block_on(SERIAL.lock());
    let emu = rt
        .block_on(Emulator::builder().max_request_bytes(4096).start())
        .expect("binds");
    let (arn, _) = emu.start_execution("mutated");
    let addr = emu.local_addr();
    let mutation = (
        0u8..4,
        any::<prop::sample::Index>(),
        1usize..16,
        any::<u8>(),
    );
    let input = (
        prop::collection::vec(mutation, 0..6),
        prop::sample::select(vec!["POST", "POST", "POST", "GET", "PUT"]),
        prop::option::weighted(0.2, "[ -~]{0,20}"),
        // A field of the update replaced by a value that may break a rule of the service.
        prop::option::weighted(
            0.5,
            (
                prop::sample::select(vec!["Id", "Type", "Action", "ParentId"]),
                prop::sample::select(vec![
                    "",
                    "a b",
                    "ctx",
                    "STEP",
                    "WAIT",
                    "CONTEXT",
                    "EXECUTION",
                    "SUCCEED",
                    "RETRY",
                    "CANCEL",
                    "NOPE",
                ]),
            ),
        ),
    );
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 300,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let statuses: std::sync::Mutex<BTreeMap<u16, usize>> = std::sync::Mutex::default();
    let cases = AtomicU64::new(0);
    runner
        .run(&input, |(mutations, method, arn_tail, replaced)| {
            let case = cases.fetch_add(1, Ordering::SeqCst);
            let before = snapshot(&emu, &arn).current_token;
            let mut update =
                serde_json::json!({"Id": format!("m{case}"), "Type": "STEP", "Action": "START"});
            if let Some((field, value)) = replaced {
                update[field] = serde_json::json!(value);
            }
            let mut body = serde_json::json!({"CheckpointToken": before, "Updates": [update]})
                .to_string()
                .into_bytes();
            for (kind, at, len, byte) in mutations {
                let i = at.index(body.len().max(1)).min(body.len());
                let end = (i + len).min(body.len());
                match kind {
                    0 => {
                        if let Some(b) = body.get_mut(i) {
                            *b ^= byte | 1;
                        }
                    }
                    1 => drop(body.drain(i..end)),
                    2 => {
                        let copy = body[i..end].to_vec();
                        body.splice(i..i, copy);
                    }
                    _ => body.insert(i, byte),
                }
            }
            let target = match &arn_tail {
                Some(tail) => checkpoint_path(&format!("{arn}{tail}")),
                None => checkpoint_path(&arn),
            };
            let answer = rt.block_on(try_request(addr, method, &target, &body));
            let Ok(answer) = answer else {
                return Err(TestCaseError::fail(
                    "the connection closed without an answer",
                ));
            };
            *statuses
                .lock()
                .expect("not poisoned")
                .entry(answer.status)
                .or_default() += 1;
            prop_assert!(
                matches!(answer.status, 200 | 400 | 404 | 405 | 413),
                "an undocumented answer {}: {:?}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
            let after = snapshot(&emu, &arn).current_token;
            if answer.status == 200 {
                prop_assert_ne!(&after, &before, "a 200 consumes the token");
                let answered = answer.json();
                prop_assert_eq!(
                    answered["CheckpointToken"].as_str(),
                    after.as_deref(),
                    "and answers the new one"
                );
            } else {
                prop_assert_eq!(&after, &before, "a refused request consumes nothing");
            }
            Ok(())
        })
        .expect("every mutated request gets a documented answer");
    println!(
        "mutated requests: statuses {:?}",
        statuses.lock().expect("not poisoned")
    );
    rt.block_on(emu.shutdown());
}
