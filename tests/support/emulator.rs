//! The emulator on loopback: starting it, its execution snapshots, the batcher through
//! `RealBackend` against it, and the SDK client aimed at it.

use std::sync::Arc;
use std::time::Duration;

use checkpoint_batcher::emulator::{Emulator, ExecutionSnapshot, Faults};
use checkpoint_batcher::{
    BatcherConfig, BatcherHandle, CheckpointBatcher, FaultyBackend, RealBackend, RetryPolicy,
};

/// An emulator on 127.0.0.1, port 0, with its defaults.
pub async fn default_emulator() -> Emulator {
    Emulator::builder()
        .start()
        .await
        .expect("the emulator binds loopback")
}

/// An emulator on 127.0.0.1, port 0, with these faults and this seed.
pub async fn emulator(faults: Faults, seed: u64) -> Emulator {
    Emulator::builder()
        .faults(faults)
        .seed(seed)
        .start()
        .await
        .expect("the emulator binds loopback")
}

/// The real SDK client aimed at the emulator, as the batcher's backend.
pub fn real(emu: &Emulator) -> Arc<RealBackend> {
    Arc::new(RealBackend::new(emu.client()))
}

/// Retries quick enough for a test, many enough that injected faults never latch by chance
/// (a call fails with probability below 0.2 here, so 30 attempts fail with about 1e-21).
pub fn patient(seed: u64) -> RetryPolicy {
    RetryPolicy {
        max_attempts: 30,
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
        attempt_timeout: Duration::from_secs(10),
        jitter_seed: Some(seed),
    }
}

/// The default configuration with [`patient`] retries.
pub fn patient_config(seed: u64) -> BatcherConfig {
    BatcherConfig {
        retry: patient(seed),
        ..BatcherConfig::default()
    }
}

/// A batcher for a new execution of `emu`, through `RealBackend`.
pub fn batcher(emu: &Emulator, name: &str, config: BatcherConfig) -> (String, BatcherHandle) {
    let (arn, token) = emu.start_execution(name);
    let handle = CheckpointBatcher::spawn(real(emu), arn.clone(), token, config)
        .expect("a valid configuration");
    (arn, handle)
}

pub fn snapshot(emu: &Emulator, arn: &str) -> ExecutionSnapshot {
    emu.execution(arn).expect("the execution exists")
}

/// How many times each Id was applied (any action).
pub fn applied_count(snapshot: &ExecutionSnapshot, id: &str) -> usize {
    snapshot.applied.iter().filter(|u| u.id == id).count()
}

/// A batcher whose calls can be held at their start (the call itself goes over HTTP).
pub fn held_batcher(
    emu: &Emulator,
    name: &str,
    config: BatcherConfig,
) -> (String, Arc<FaultyBackend>, BatcherHandle) {
    let (arn, token) = emu.start_execution(name);
    let faulty = Arc::new(FaultyBackend::new(real(emu)));
    let handle = CheckpointBatcher::spawn(faulty.clone(), arn.clone(), token, config)
        .expect("a valid configuration");
    (arn, faulty, handle)
}
