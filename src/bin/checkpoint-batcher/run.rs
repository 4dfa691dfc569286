//! `run`: drive the step workload through one batcher against the embedded emulator or an
//! external endpoint, then print a summary, verified against the emulator's state when there
//! is one.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use checkpoint_batcher::RealBackend;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::RunArgs;
use crate::error::CliError;
use crate::recorded::{self, Recorded};
use crate::report::{Summary, TargetInfo};
use crate::verify::{Verification, verify};
use crate::workload::{Timed, Workload, drive};

/// Runs `run` and prints its summary.
///
/// # Errors
///
/// A usage error for a flag out of range or a missing region; a failed run when the batcher
/// failed, not every step was acknowledged, or the exactly-once check found a problem.
pub(crate) async fn run(args: RunArgs) -> Result<(), CliError> {
    let config = args.batcher.config()?;
    let workload = Workload::new(args.concurrency, args.steps, args.payload_bytes);
    let attempt_timeout = config.retry.attempt_timeout;

    let (target, emulator, arn, token, backend) = match (&args.arn, &args.checkpoint_token) {
        (Some(arn), Some(token)) => {
            let client =
                external_client(args.endpoint_url.as_deref(), args.region.as_deref()).await?;
            let backend = RealBackend::with_attempt_timeout(client, attempt_timeout);
            let target = TargetInfo::External {
                endpoint: args.endpoint_url.clone(),
                arn: arn.clone(),
            };
            (target, None, arn.clone(), token.clone(), backend)
        }
        _ => {
            let faults = args.faults.faults(args.latency_ms, args.jitter_ms);
            let emulator = crate::serve::start_emulator(faults.clone(), args.faults.seed).await?;
            let (arn, token) = emulator.start_execution("checkpoint-batcher-run");
            let backend = RealBackend::with_attempt_timeout(emulator.client(), attempt_timeout);
            let target = TargetInfo::Emulator {
                endpoint: emulator.endpoint_url(),
                latency: faults.latency,
                jitter: faults.jitter,
                rates: [
                    faults.throttle_rate,
                    faults.server_error_rate,
                    faults.lost_answer_rate,
                ],
                seed: args.faults.seed,
            };
            (target, Some(emulator), arn, token, backend)
        }
    };

    // Before the batcher is spawned: it registers its series with the recorder current then.
    let snapshotter = recorded::install();
    let progress = progress_bar(workload.total_steps(), args.json);
    let timed = Arc::new(Timed::new(Arc::new(backend)));
    let outcome = drive(
        timed,
        arn.clone(),
        token,
        config.clone(),
        &workload,
        &progress,
    )
    .await;
    progress.finish_and_clear();
    let outcome = outcome?;
    let metrics = snapshotter.as_ref().map(Recorded::take);

    if let Some(error) = outcome.error {
        return Err(CliError::failed(format!(
            "{error} (after {} of {} steps were acknowledged)",
            outcome.steps_done,
            workload.total_steps()
        )));
    }

    let verification: Option<Verification> = match &emulator {
        Some(emulator) => {
            let snapshot = emulator
                .execution(&arn)
                .ok_or_else(|| CliError::failed("the emulator lost the execution it started"))?;
            Some(verify(&snapshot, &workload))
        }
        None => None,
    };
    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }

    let summary = Summary {
        target: &target,
        workload: &workload,
        payload_bytes: args.payload_bytes,
        config: &config,
        outcome: &outcome,
        verification: verification.as_ref(),
        metrics: metrics.as_ref(),
    };
    if args.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.text());
    }

    if outcome.steps_done != workload.total_steps() {
        return Err(CliError::failed(format!(
            "only {} of {} steps were acknowledged",
            outcome.steps_done,
            workload.total_steps()
        )));
    }
    match verification {
        Some(v) if !v.ok() => Err(CliError::failed(format!(
            "verification failed: {}",
            v.problems.join("; ")
        ))),
        _ => Ok(()),
    }
}

/// An `aws-sdk-lambda` client on the standard AWS configuration chain (environment, profile,
/// SSO, credential process), aimed at `endpoint_url` when given.
///
/// # Errors
///
/// A usage error when no region is configured: signing needs one.
async fn external_client(
    endpoint_url: Option<&str>,
    region: Option<&str>,
) -> Result<aws_sdk_lambda::Client, CliError> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(CliError::usage(
            "no AWS region for --arn: pass --region or set AWS_REGION",
        ));
    }
    Ok(aws_sdk_lambda::Client::new(&config))
}

/// A progress bar of acknowledged steps on stderr; hidden for `--json` and when stderr is not
/// a terminal.
pub(crate) fn progress_bar(total: u64, hidden: bool) -> ProgressBar {
    if hidden || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} steps (eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
