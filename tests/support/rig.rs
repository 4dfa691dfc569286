//! A batcher over `FaultyBackend(InMemoryBackend)`, with deterministic retries.

use std::sync::Arc;

use checkpoint_batcher::{
    BatcherConfig, BatcherHandle, CheckpointBatcher, FaultyBackend, InMemoryBackend,
};

pub const ARN: &str =
    "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/e/1";

/// A batcher over `FaultyBackend(InMemoryBackend)`.
pub struct Rig {
    pub memory: Arc<InMemoryBackend>,
    pub faulty: Arc<FaultyBackend>,
    pub batcher: BatcherHandle,
}

impl Rig {
    /// How many updates each checkpoint call carried, in order.
    pub fn call_sizes(&self) -> Vec<usize> {
        self.faulty
            .call_log()
            .iter()
            .map(|c| c.updates.len())
            .collect()
    }
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
