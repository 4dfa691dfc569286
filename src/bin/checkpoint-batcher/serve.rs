//! `emulator`: serve the checkpoint API emulator until interrupted, so other SDKs and tools
//! can be tested against it.
//!
//! Stdout carries only `key: value` lines a script can parse, printed once the listener is
//! bound: `endpoint: http://127.0.0.1:PORT`, then with `--start-execution` the `arn:` and
//! `token:` of a fresh execution. Everything for people goes to stderr.

use std::io::Write as _;
use std::net::SocketAddr;

use checkpoint_batcher::emulator::{Emulator, Faults};

use crate::args::ServeArgs;
use crate::error::CliError;

/// Serves until Ctrl-C (or SIGTERM on Unix), then prints what each execution received.
///
/// # Errors
///
/// A failed run when the address cannot be bound or the signal cannot be watched.
pub(crate) async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let addr = SocketAddr::new(args.host, args.port);
    let emulator = Emulator::builder()
        .bind(addr)
        .faults(args.faults.faults(args.latency_ms, args.jitter_ms))
        .seed(args.faults.seed)
        .page_size(args.page_size)
        .start()
        .await
        .map_err(|e| {
            CliError::failed(format!("could not listen on {addr} (--host/--port): {e}"))
        })?;

    let mut out = std::io::stdout().lock();
    let mut lines = vec![format!("endpoint: {}", emulator.endpoint_url())];
    if let Some(name) = &args.start_execution {
        let (arn, token) = emulator.start_execution(name);
        lines.push(format!("arn: {arn}"));
        lines.push(format!("token: {token}"));
    }
    for line in &lines {
        writeln!(out, "{line}").map_err(|e| CliError::failed(format!("stdout: {e}")))?;
    }
    out.flush()
        .map_err(|e| CliError::failed(format!("stdout: {e}")))?;
    drop(out);
    eprintln!(
        "serving the checkpoint API emulator at {} until interrupted (Ctrl-C)",
        emulator.endpoint_url()
    );
    if !args.host.is_loopback() {
        eprintln!(
            "warning: bound to {}, not loopback: anyone who can reach it can call it",
            args.host
        );
    }

    interrupted().await?;

    for arn in emulator.execution_arns() {
        if let Some(execution) = emulator.execution(&arn) {
            eprintln!(
                "{}: {} checkpoint requests, {} applied, {} operations{}",
                execution.arn,
                execution.checkpoint_calls,
                execution.applied_checkpoints,
                execution.operations.len(),
                if execution.completed {
                    ", completed"
                } else {
                    ""
                }
            );
        }
    }
    emulator.shutdown().await;
    Ok(())
}

/// Starts an emulator on a free loopback port with `faults`, seeded, for the commands that
/// run against one of their own (`run`, `tune`, `local`).
///
/// # Errors
///
/// A failed run when it cannot start.
pub(crate) async fn start_emulator(faults: Faults, seed: u64) -> Result<Emulator, CliError> {
    Emulator::builder()
        .faults(faults)
        .seed(seed)
        .start()
        .await
        .map_err(|e| CliError::failed(format!("could not start the emulator: {e}")))
}

/// Waits for Ctrl-C, or SIGTERM on Unix.
pub(crate) async fn interrupted() -> Result<(), CliError> {
    let failed = |e: std::io::Error| CliError::failed(format!("could not watch for Ctrl-C: {e}"));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(failed)?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(failed),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(failed)
    }
}
