//! Helpers shared by the integration tests: updates, and a batcher over a faulty in-memory
//! backend.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::{
    BatcherConfig, BatcherHandle, CheckpointBatcher, FaultyBackend, InMemoryBackend,
};

pub const ARN: &str =
    "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/e/1";

pub fn update(id: &str, ty: OperationType, action: OperationAction) -> OperationUpdate {
    OperationUpdate::builder()
        .id(id)
        .r#type(ty)
        .action(action)
        .build()
        .expect("id, type and action are set")
}

pub fn step(id: &str, action: OperationAction) -> OperationUpdate {
    update(id, OperationType::Step, action)
}

pub fn start(id: &str) -> OperationUpdate {
    step(id, OperationAction::Start)
}

pub fn succeed(id: &str, payload: &str) -> OperationUpdate {
    OperationUpdate::builder()
        .id(id)
        .r#type(OperationType::Step)
        .action(OperationAction::Succeed)
        .payload(payload)
        .build()
        .expect("id, type and action are set")
}

/// A batcher over `FaultyBackend(InMemoryBackend)`.
pub struct Rig {
    pub memory: Arc<InMemoryBackend>,
    pub faulty: Arc<FaultyBackend>,
    pub batcher: BatcherHandle,
}

pub fn rig(config: BatcherConfig) -> Rig {
    let memory = Arc::new(InMemoryBackend::new());
    let faulty = Arc::new(FaultyBackend::new(memory.clone()));
    let token = memory
        .current_token()
        .expect("a fresh execution has a token");
    let batcher =
        CheckpointBatcher::spawn(faulty.clone(), ARN, token, config).expect("valid config");
    Rig {
        memory,
        faulty,
        batcher,
    }
}

/// A config whose retries are deterministic.
pub fn config() -> BatcherConfig {
    let mut config = BatcherConfig::default();
    config.retry.jitter_seed = Some(7);
    config
}

/// Fails the test instead of hanging when `future` does not complete within `limit` (of the
/// paused clock, where the test pauses it).
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .expect("the future must complete: nothing may hang")
}

/// Ids of the updates a backend applied, in order.
pub fn ids(updates: &[OperationUpdate]) -> Vec<String> {
    updates.iter().map(|u| u.id.clone()).collect()
}

/// A `tracing` writer that keeps everything written, for tests that read the log.
#[derive(Clone, Default)]
pub struct Capture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("logs are UTF-8")
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
