//! `checkpoint-batcher`: answers the two questions people embedding the batcher ask first, on
//! their own machine. Does it keep up with my handler's concurrency (`run`)? Which batch size
//! and flush interval should I use (`tune`)? And it serves the checkpoint API emulator for
//! other SDKs and tools (`emulator`). And it runs a durable function's binary locally, playing
//! Lambda and the durable execution service against the emulator (`local`).
//!
//! The command sees only the crate's public API, as a user's program would.
//!
//! # Exit codes
//!
//! 0 when the run finished and verified; 1 when it failed (a latched batcher failure, a
//! verification problem, an emulator that could not start); 2 for a usage error, from clap or
//! from a value the batcher's configuration refuses. Errors are one line on stderr naming the
//! flag.
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod args;
mod error;
mod local;
mod plot;
mod recorded;
mod report;
mod run;
mod serve;
mod tune;
mod verify;
mod workload;

use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result: Result<(), CliError> = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Tune(args) => tune::tune(args).await,
            Command::Emulator(args) => serve::serve(args).await,
            Command::Local(args) => local::local(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}
