//! Paging: a `NextMarker` from a checkpoint is fetched with the new token, and the state call
//! pages all operations, bounds `MaxItems` and cuts a page at 5 MiB of operations.

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
    assert_eq!(snapshot(&emu, &arn).state_calls, 15);
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
