//! Micro-benchmarks of the per-update work (issue 5): JSON size accounting, batch assembly,
//! and the queue → acknowledgement round trip through a running batcher.
//!
//! Each is measured for small updates (a 13-byte payload, what a step's result usually is) and
//! for 64 KiB payloads (where the byte limit, not the count, closes batches and the size count
//! has to walk the payload to escape it). Criterion reports time per iteration and, where set,
//! per update (`thrpt`).
//!
//! Run with `cargo bench --all-features --bench batch`; add a filter (`-- size`) to run one
//! group. End-to-end throughput against a slow backend is `benches/throughput.rs`.

use std::fmt;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use aws_sdk_lambda::operation::checkpoint_durable_execution::CheckpointDurableExecutionOutput;
use aws_sdk_lambda::operation::get_durable_execution_state::GetDurableExecutionStateOutput;
use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::internals::{Assembler, BatchLimits, split_batches};
use checkpoint_batcher::internals::{envelope_bytes, request_bytes, update_bytes};
use checkpoint_batcher::{
    BackendError, BatcherConfig, BatcherHandle, CheckpointBatcher, DurableBackend, ErrorKind,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const TOKEN: &str = "VE9LRU4wMDAwMDAwMDAwMDAwMDAwMA";
const CLIENT_TOKEN_LEN: usize = 32;

/// The payload sizes every group runs with.
#[derive(Clone, Copy, Debug)]
enum Payload {
    Small,
    Large,
}

impl Payload {
    const ALL: [Self; 2] = [Self::Small, Self::Large];

    fn text(self) -> String {
        match self {
            Self::Small => r#"{"result":42}"#.to_owned(),
            Self::Large => "x".repeat(64 * 1024),
        }
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Small => "small",
            Self::Large => "64KiB",
        })
    }
}

/// `steps` steps as the step workload sends them: START, then SUCCEED with the payload, each
/// pair sharing its Id.
fn step_updates(steps: usize, payload: Payload) -> Vec<(OperationUpdate, usize)> {
    let text = payload.text();
    let mut updates = Vec::with_capacity(2 * steps);
    for step in 0..steps {
        for (action, payload) in [
            (OperationAction::Start, None),
            (OperationAction::Succeed, Some(text.clone())),
        ] {
            let update = OperationUpdate::builder()
                .id(format!("t0-s{step}"))
                .r#type(OperationType::Step)
                .action(action)
                .set_payload(payload)
                .build()
                .expect("id, type and action are set");
            let bytes = update_bytes(&update);
            updates.push((update, bytes));
        }
    }
    updates
}

/// JSON size accounting: the work each caller's task does per update before queueing it.
fn size(c: &mut Criterion) {
    let mut group = c.benchmark_group("size");
    for payload in Payload::ALL {
        let updates = step_updates(1, payload);
        let (succeed, _) = &updates[1];
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::new("update_bytes", payload),
            succeed,
            |b, update| b.iter(|| update_bytes(black_box(update))),
        );
        // The reference the count is checked against, for scale.
        group.bench_with_input(
            BenchmarkId::new("serde_json_len_of_payload", payload),
            succeed,
            |b, update| {
                b.iter(|| {
                    serde_json::to_string(black_box(update.payload().unwrap_or_default()))
                        .map(|s| s.len())
                })
            },
        );
    }
    group.finish();
}

/// Batch assembly: the actor's per-update work (the Id set, the limits), over a full batch.
fn assembly(c: &mut Criterion) {
    let mut group = c.benchmark_group("assemble");
    let limits = BatchLimits::default();
    let envelope = envelope_bytes(TOKEN, CLIENT_TOKEN_LEN);
    for payload in Payload::ALL {
        // Small: 125 steps fill one batch by count. Large: the byte limit closes a batch after
        // 11 steps, so 1000 steps make about 90 batches.
        let steps = match payload {
            Payload::Small => 125,
            Payload::Large => 1000,
        };
        let updates = step_updates(steps, payload);
        group.throughput(Throughput::Elements(updates.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("try_add", payload),
            &updates,
            |b, updates| {
                let mut assembler = Assembler::new(limits, envelope);
                b.iter(|| {
                    assembler.reset(envelope);
                    for (update, bytes) in updates {
                        if assembler.try_add(update, *bytes).is_err() {
                            assembler.reset(envelope);
                            let _ = assembler.try_add(update, *bytes);
                        }
                    }
                    assembler.len()
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("split_batches", payload),
            &updates,
            |b, updates| b.iter(|| split_batches(black_box(updates), limits, envelope)),
        );
        let only: Vec<OperationUpdate> = updates.iter().map(|(u, _)| u.clone()).collect();
        group.bench_with_input(
            BenchmarkId::new("request_bytes", payload),
            &only,
            |b, updates| b.iter(|| request_bytes(TOKEN, "c", black_box(updates))),
        );
    }
    group.finish();
}

/// A backend that answers every checkpoint at once with the next token: what is left is the
/// batcher's own cost.
#[derive(Debug, Default)]
struct InstantBackend {
    issued: AtomicU64,
}

#[async_trait]
impl DurableBackend for InstantBackend {
    async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        updates: Vec<OperationUpdate>,
        client_token: Option<&str>,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        self.batch_checkpoint(arn, checkpoint_token, &updates, client_token.unwrap_or("-"))
            .await
    }

    async fn batch_checkpoint(
        &self,
        _arn: &str,
        _checkpoint_token: &str,
        _updates: &[OperationUpdate],
        _client_token: &str,
    ) -> Result<CheckpointDurableExecutionOutput, BackendError> {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        Ok(CheckpointDurableExecutionOutput::builder()
            .checkpoint_token(format!("VE9LRU4{n:016}"))
            .build())
    }

    async fn get_execution_state(
        &self,
        _arn: &str,
        _checkpoint_token: &str,
        _marker: Option<&str>,
        _max_items: Option<i32>,
    ) -> Result<GetDurableExecutionStateOutput, BackendError> {
        GetDurableExecutionStateOutput::builder()
            .set_operations(Some(Vec::new()))
            .build()
            .map_err(|e| BackendError::new(ErrorKind::Rejected, e.to_string()))
    }
}

fn spawn_batcher(runtime: &tokio::runtime::Runtime) -> BatcherHandle {
    let _guard = runtime.enter();
    CheckpointBatcher::spawn(
        Arc::new(InstantBackend::default()),
        "arn:aws:lambda:us-east-1:123456789012:function:bench/durable-execution/e/1",
        TOKEN,
        BatcherConfig::default(),
    )
    .expect("the default configuration is valid")
}

/// The queue → acknowledgement round trip with an instant backend: one caller awaiting each
/// update (latency), and a burst of 250 updates submitted at once and then awaited
/// (throughput, one full batch).
fn round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("round_trip");
    for payload in Payload::ALL {
        let handle = spawn_batcher(&runtime);
        let text = payload.text();
        let update = move |id: &str| {
            OperationUpdate::builder()
                .id(id)
                .r#type(OperationType::Step)
                .action(OperationAction::Succeed)
                .payload(text.clone())
                .build()
                .expect("id, type and action are set")
        };

        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("checkpoint", payload), |b| {
            b.iter_batched(
                || update("s0"),
                |u| runtime.block_on(handle.checkpoint(u)),
                criterion::BatchSize::SmallInput,
            );
        });

        let ids: Vec<String> = (0..250).map(|i| format!("s{i}")).collect();
        group.throughput(Throughput::Elements(ids.len() as u64));
        group.bench_function(BenchmarkId::new("burst_of_250", payload), |b| {
            b.iter_batched(
                || ids.iter().map(|id| update(id)).collect::<Vec<_>>(),
                |updates| {
                    runtime.block_on(async {
                        let mut acks = Vec::with_capacity(updates.len());
                        for u in updates {
                            acks.push(handle.submit(u).await?);
                        }
                        for ack in acks {
                            let _ = ack.await?;
                        }
                        Ok::<_, checkpoint_batcher::BatcherError>(())
                    })
                },
                criterion::BatchSize::SmallInput,
            );
        });
        runtime
            .block_on(handle.shutdown())
            .expect("the batcher shuts down");
    }
    group.finish();
}

criterion_group!(benches, size, assembly, round_trip);
criterion_main!(benches);
