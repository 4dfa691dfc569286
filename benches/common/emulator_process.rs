//! What the real-path benches share: the emulator in a child process (`checkpoint-batcher
//! emulator`), the CPU time of that process and of this one, and the SDK client that reaches it.
//! Included by `#[path]` in each bench that runs on the real path.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The emulator binary, when the bench is built with the `cli` feature.
pub(crate) const EMULATOR_BIN: Option<&str> = option_env!("CARGO_BIN_EXE_checkpoint-batcher");

/// The emulator in a child process, killed when dropped.
pub(crate) struct EmulatorProcess {
    child: Child,
    pub(crate) endpoint: String,
    pub(crate) arn: String,
    pub(crate) token: String,
}

impl EmulatorProcess {
    /// Starts `checkpoint-batcher emulator` on a free loopback port with one execution named
    /// `execution`, with `extra` arguments, and reads its endpoint, ARN and token from its
    /// standard output.
    pub(crate) fn start(execution: &str, extra: &[&str]) -> Result<Self, Error> {
        let bin = EMULATOR_BIN.ok_or("the real path needs the `cli` feature")?;
        let mut child = Command::new(bin)
            .args(["emulator", "--host", "127.0.0.1", "--port", "0"])
            .args(["--start-execution", execution])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("the emulator has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut field = |name: &str| -> Result<String, Error> {
            let line = lines
                .next()
                .ok_or_else(|| format!("the emulator exited before printing `{name}:`"))??;
            line.strip_prefix(&format!("{name}: "))
                .map(str::to_owned)
                .ok_or_else(|| {
                    format!("expected `{name}: ...` from the emulator, got {line:?}").into()
                })
        };
        let started = (|| Ok::<_, Error>((field("endpoint")?, field("arn")?, field("token")?)))();
        match started {
            Ok((endpoint, arn, token)) => Ok(Self {
                child,
                endpoint,
                arn,
                token,
            }),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }

    /// The CPU time all of the emulator's threads have used so far: the sum of their run
    /// times (`schedstat`'s first field, nanoseconds).
    pub(crate) fn cpu(&self) -> Result<Duration, Error> {
        let mut nanos = 0u64;
        for entry in fs::read_dir(format!("/proc/{}/task", self.child.id()))? {
            let stat = fs::read_to_string(entry?.path().join("schedstat"))?;
            let first = stat.split_whitespace().next().ok_or("empty schedstat")?;
            nanos += first.parse::<u64>()?;
        }
        Ok(Duration::from_nanos(nanos))
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's CPU time so far, every thread included (also those that have exited).
pub(crate) fn own_cpu() -> Duration {
    // SAFETY: `getrusage` only writes the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let _ = libc::getrusage(libc::RUSAGE_SELF, &raw mut usage);
        usage
    };
    let micros = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

/// The configuration of an SDK client that reaches the emulator at `endpoint`: a region and
/// static credentials (requests are signed as for the service), the endpoint overridden to the
/// loopback listener.
pub(crate) fn client_config(endpoint: &str) -> aws_sdk_lambda::config::Builder {
    use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDBENCH",
            "bench-secret",
            None,
            None,
            "bench",
        ))
        .endpoint_url(endpoint)
}
