//! Paging: a `NextMarker` from a checkpoint is fetched with the new token, the state call
//! pages all operations, bounds `MaxItems` and cuts a page at 5 MiB of operations, and a
//! marker is refused once a checkpoint moved the token chain past the token it came with.

use crate::support::*;
use checkpoint_batcher::emulator::Emulator;
use serde_json::{Value, json};

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
        snapshot(&emu, &arn).current_token.as_deref(),
        Some(t1.as_str()),
        "GET does not rotate the token"
    );
}

#[tokio::test]
async fn get_state_pages_all_operations_and_bounds_max_items() {
    let emu = default_emulator().await;
    let (arn, t1) = with_steps(&emu, "state", 150).await;
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
    // `%2B1` is `+1`: digits only.
    for bad in ["1001", "-1", "abc", "99999999999999999999999", "%2B1"] {
        let r = request(addr, "GET", &state_path(&arn, &t1, None, Some(bad)), b"").await;
        assert_eq!(r.status, 400, "MaxItems {bad} is out of range");
    }
    // The tag of t1, as the markers answered with it carry it.
    let tag = all_tagged_with(&arn, &t1, addr).await;
    for bad in [
        "garbage".to_owned(),
        format!("s.{tag}.9999"),
        format!("c.42.{tag}.0"),
        format!("s.{tag}.-1"),
        "s.1".to_owned(),
        "c.1".to_owned(),
        "%FF".to_owned(),
    ] {
        let r = request(addr, "GET", &state_path(&arn, &t1, Some(&bad), None), b"").await;
        assert_eq!(r.status, 400, "marker {bad:?} must be refused");
    }
    assert_eq!(snapshot(&emu, &arn).state_calls, 18);
}

/// A state page (and an invocation event) holds at most 5 MiB of operations, counted as the
/// bytes of their results, errors and input; a checkpoint's answer is cut by count only.
#[tokio::test]
async fn state_pages_are_cut_at_five_mib_of_operations() {
    const MIB: usize = 1024 * 1024;
    let emu = default_emulator().await;
    let (arn, t0) = emu.start_execution("bytes");
    let result = json!("r".repeat(MIB)); // The largest result a STEP may carry.
    let ids: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    let updates: Vec<Value> = ids
        .iter()
        .flat_map(|id| {
            [
                up(id, "STEP", "START"),
                with(up(id, "STEP", "SUCCEED"), "Payload", result.clone()),
            ]
        })
        .collect();
    let r = checkpoint(&emu, &arn, &t0, None, json!(updates)).await;
    assert_eq!(r.status, 200, "{}", r.message());
    let answer = &r.json()["NewExecutionState"];
    assert_eq!(
        op_ids(&answer["Operations"]),
        ids,
        "the checkpoint's answer carries all 6 MiB: it is not byte-capped"
    );
    assert!(answer.get("NextMarker").is_none());
    let t1 = r.token().unwrap();

    let addr = emu.local_addr();
    let first = request(addr, "GET", &state_path(&arn, &t1, None, Some("1000")), b"").await;
    assert_eq!(first.status, 200);
    let first = first.json();
    // The EXECUTION operation (no input: it weighs 1 byte) and four 1 MiB results fill
    // 4 MiB + 1; a fifth would pass 5 MiB.
    let exec_id = snapshot(&emu, &arn).execution_operation_id;
    let mut expected = vec![exec_id];
    expected.extend(ids.iter().take(4).cloned());
    assert_eq!(op_ids(&first["Operations"]), expected);
    let next = first["NextMarker"]
        .as_str()
        .expect("more remain")
        .to_owned();
    let rest = request(
        addr,
        "GET",
        &state_path(&arn, &t1, Some(&next), Some("1000")),
        b"",
    )
    .await
    .json();
    assert_eq!(op_ids(&rest["Operations"]), ["s4", "s5"]);
    assert!(rest.get("NextMarker").is_none(), "the last page");

    let event = emu.invocation_event(&arn).unwrap();
    let state = &event["InitialExecutionState"];
    assert_eq!(
        op_ids(&state["Operations"]).len(),
        5,
        "an invocation event is cut as a state page is"
    );
    assert_eq!(state["NextMarker"].as_str(), Some(next.as_str()));
}

/// The `<tag>` of the markers a state read with `token` answers (`s.<tag>.<offset>`).
async fn all_tagged_with(arn: &str, token: &str, addr: std::net::SocketAddr) -> String {
    let page = request(addr, "GET", &state_path(arn, token, None, Some("1")), b"")
        .await
        .json();
    let marker = page["NextMarker"]
        .as_str()
        .expect("more than one operation: a marker");
    let parts: Vec<&str> = marker.split('.').collect();
    assert!(
        parts.len() == 3 && parts[0] == "s" && parts[2] == "1",
        "a state page's marker is s.<tag>.<offset>: {marker}"
    );
    parts[1].to_owned()
}

/// A state page's marker is taken with the token it was read with until a checkpoint moves
/// the chain; then it is refused, with the old token (stale) and with the new one (a marker of
/// another token). A rotation of the token does the same.
#[tokio::test]
async fn a_state_marker_is_refused_once_a_checkpoint_moved_the_chain() {
    let emu = default_emulator().await;
    let addr = emu.local_addr();
    let (arn, t1) = with_steps(&emu, "markers", 5).await;
    let get = |token: &str, marker: Option<&str>| state_path(&arn, token, marker, Some("2"));

    let first = request(addr, "GET", &get(&t1, None), b"").await.json();
    let m1 = first["NextMarker"].as_str().unwrap().to_owned();
    let again = request(addr, "GET", &get(&t1, Some(&m1)), b"").await;
    assert_eq!(again.status, 200, "before a checkpoint the marker is taken");
    assert_eq!(op_ids(&again.json()["Operations"]), ["s1", "s2"]);
    let m2 = again.json()["NextMarker"].as_str().unwrap().to_owned();

    let t2 = checkpoint(&emu, &arn, &t1, None, json!([]))
        .await
        .token()
        .unwrap();
    for marker in [&m1, &m2] {
        request(addr, "GET", &get(&t2, Some(marker)), b"")
            .await
            .assert_invalid_parameter(
                "issued with another checkpoint token",
                "a marker of the last token",
            );
        request(addr, "GET", &get(&t1, Some(marker)), b"")
            .await
            .assert_invalid_parameter(
                "Invalid checkpoint token",
                "with the consumed token, the token is stale first",
            );
    }
    let fresh = request(addr, "GET", &get(&t2, None), b"").await.json();
    let m3 = fresh["NextMarker"].as_str().unwrap().to_owned();
    assert_ne!(
        m3, m1,
        "the same offset read with another token has another marker"
    );
    let r = request(addr, "GET", &get(&t2, Some(&m3)), b"").await;
    assert_eq!(r.status, 200, "a marker of the current token is taken");

    let t3 = emu.rotate_token(&arn).unwrap();
    let r = request(addr, "GET", &get(&t3, Some(&m3)), b"").await;
    assert_eq!(r.status, 400, "a rotation moves the chain too");
}

/// A checkpoint answer's marker is issued with the token the answer carries: followed with it
/// at once it pages the rest, and once the next checkpoint moved the chain it is refused.
#[tokio::test]
async fn a_checkpoint_answers_marker_is_tied_to_the_token_it_answers() {
    let emu = Emulator::builder().page_size(3).start().await.unwrap();
    let addr = emu.local_addr();
    let (arn, t0) = emu.start_execution("checkpoint-markers");
    let steps: Vec<Value> = (0..5)
        .map(|i| up(&format!("s{i}"), "STEP", "START"))
        .collect();
    let r = checkpoint(&emu, &arn, &t0, None, json!(steps)).await;
    let t1 = r.token().unwrap();
    let marker = r.json()["NewExecutionState"]["NextMarker"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest = request(
        addr,
        "GET",
        &state_path(&arn, &t1, Some(&marker), None),
        b"",
    )
    .await;
    assert_eq!(rest.status, 200, "{:?}", rest.json());
    assert_eq!(op_ids(&rest.json()["Operations"]), ["s3", "s4"]);

    let t2 = checkpoint(&emu, &arn, &t1, None, json!([]))
        .await
        .token()
        .unwrap();
    request(
        addr,
        "GET",
        &state_path(&arn, &t2, Some(&marker), None),
        b"",
    )
    .await
    .assert_invalid_parameter(
        "issued with another checkpoint token",
        "the next checkpoint retires the marker",
    );
}

/// A new execution with `n` STEPs `s0`… started in one checkpoint: its ARN and the token that
/// checkpoint answered.
async fn with_steps(emu: &Emulator, name: &str, n: usize) -> (String, String) {
    let (arn, t0) = emu.start_execution(name);
    let steps: Vec<Value> = (0..n)
        .map(|i| up(&format!("s{i}"), "STEP", "START"))
        .collect();
    let token = checkpoint(emu, &arn, &t0, None, json!(steps))
        .await
        .token()
        .expect("the checkpoint is applied");
    (arn, token)
}

/// A checkpoint that completes the execution answers without a token, so no page could be read
/// after it: its answer holds every change, whatever the page size.
#[tokio::test]
async fn the_answer_that_completes_the_execution_is_never_paged() {
    let emu = Emulator::builder().page_size(2).start().await.unwrap();
    let (arn, t0) = emu.start_execution("done");
    let done = with(up("result", "EXECUTION", "SUCCEED"), "Payload", json!("1"));
    let updates = json!([
        up("s1", "STEP", "START"),
        up("s2", "STEP", "START"),
        up("s3", "STEP", "START"),
        done
    ]);
    let r = checkpoint(&emu, &arn, &t0, None, updates).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.token(), None);
    let state = &r.json()["NewExecutionState"];
    assert!(state.get("NextMarker").is_none(), "{state}");
    assert_eq!(state["Operations"].as_array().unwrap().len(), 4);
}
