//! Injected faults: the same seed injects the same faults, and a faulted request does not apply
//! the checkpoint.

use std::time::Duration;

use crate::support::*;
use checkpoint_batcher::emulator::{Emulator, Faults};
use serde_json::json;

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
    let s = snapshot(&emu, &arn);
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
