//! Memory held per queued update, and peak RSS with a full queue (issue 12).
//!
//! A counting global allocator (a thin wrapper around the system allocator) keeps the live heap
//! bytes, so each figure is the difference between two readings around one step, on a
//! `current_thread` runtime where nothing else runs in between:
//!
//! 1. **The update itself**: N STEP STARTs (Id `s{i}`, no payload) built into a `Vec` sized for
//!    them: `size_of::<OperationUpdate>()` plus the update's own heap, per update.
//! 2. **The batcher's empty footprint**: the heap a spawned batcher holds once its actor idles.
//! 3. **The queue, full**: a batcher with `queue_capacity` N over a [`FaultyBackend`] that holds
//!    every call open, N updates queued with `try_submit`. Nothing runs during the loop, so all N
//!    commands sit in the channel; the table reads the heap there, and again once the actor has
//!    taken its first batch into the (held) call. The `AckFuture`s the caller keeps are counted
//!    apart. What remains after subtracting the updates, the empty batcher and the caller's
//!    futures is the batcher's own heap per queued update, which issue 12 caps at 256 bytes.
//!
//! While the updates are queued the allocator also records the size of every allocation, which
//! splits the cost into its parts (the reply channel, the queue's blocks of 32 commands).
//! Peak RSS is `VmHWM` from `/proc/self/status`, reset before the batcher starts. The held call
//! is then released and the batcher shut down; the run fails unless every update was
//! acknowledged and applied in order.
//!
//! # Running
//!
//! `cargo bench --all-features --bench memory` (a few seconds). `BENCH_UPDATES=n` changes N.

use std::alloc::{GlobalAlloc, Layout, System};
use std::env;
use std::fs;
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
use checkpoint_batcher::{
    AckFuture, BatcherConfig, BatcherError, CheckpointBatcher, FaultyBackend, InMemoryBackend,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:bench/durable-execution/e/1";
/// Issue 12: no more than this much of the batcher's own heap per queued update.
const TARGET_BYTES_PER_UPDATE: f64 = 256.0;

/// The system allocator, counting live bytes, their peak and the number of allocations, and
/// recording allocation sizes while [`RECORDING`] is set.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static RECORDING: AtomicBool = AtomicBool::new(false);

/// Distinct allocation sizes recorded; a size that finds no free slot is counted in
/// [`UNRECORDED`].
const SLOTS: usize = 128;
static SIZES: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static COUNTS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static UNRECORDED: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(size: usize) {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        let _ = PEAK.fetch_max(live, Ordering::Relaxed);
    }

    /// Counts one allocation of `size` bytes in the first slot holding that size, or claims an
    /// empty one. Lock-free and allocation-free, as an allocator must be.
    fn record(size: usize) {
        let start = size % SLOTS;
        for i in (start..SLOTS).chain(0..start) {
            let seen = match SIZES[i].compare_exchange(0, size, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => size,
                Err(current) => current,
            };
            if seen == size {
                let _ = COUNTS[i].fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let _ = UNRECORDED.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// bookkeeping only touches atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
            let _ = ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            if RECORDING.load(Ordering::Relaxed) {
                Self::record(layout.size());
            }
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
            let _ = ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            if RECORDING.load(Ordering::Relaxed) {
                Self::record(layout.size());
            }
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) };
        let _ = LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                Self::grew(new_size - layout.size());
            } else {
                let _ = LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Starts recording allocation sizes, from an empty record.
fn start_recording() {
    for (size, count) in SIZES.iter().zip(&COUNTS) {
        size.store(0, Ordering::Relaxed);
        count.store(0, Ordering::Relaxed);
    }
    UNRECORDED.store(0, Ordering::Relaxed);
    RECORDING.store(true, Ordering::Release);
}

/// Stops recording and returns `(size, count)` for every size seen, largest total first.
fn stop_recording() -> Vec<(usize, usize)> {
    RECORDING.store(false, Ordering::Release);
    let mut sizes: Vec<(usize, usize)> = SIZES
        .iter()
        .zip(&COUNTS)
        .map(|(size, count)| (size.load(Ordering::Relaxed), count.load(Ordering::Relaxed)))
        .filter(|&(size, count)| size > 0 && count > 0)
        .collect();
    sizes.sort_by_key(|&(size, count)| std::cmp::Reverse(size * count));
    sizes
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`).
fn status_kib(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0); false when the kernel refused.
fn reset_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn step_start(i: usize) -> Result<OperationUpdate, Error> {
    Ok(OperationUpdate::builder()
        .id(format!("s{i}"))
        .r#type(OperationType::Step)
        .action(OperationAction::Start)
        .build()?)
}

fn per(bytes: usize, n: usize) -> f64 {
    bytes as f64 / n as f64
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "unknown".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

struct Measured {
    n: usize,
    update_heap: usize,
    update_allocations: usize,
    empty_batcher: usize,
    acks: usize,
    in_channel: usize,
    after_first_call: usize,
    first_batch: usize,
    sizes: Vec<(usize, usize)>,
    unrecorded: usize,
    rss_before: Option<u64>,
    peak_rss: Option<u64>,
    peak_reset: bool,
    heap_peak: usize,
    leftover: usize,
    elapsed: Duration,
}

impl Measured {
    /// The batcher's own heap per queued update: what it holds beyond the updates themselves,
    /// its empty footprint and the caller's `AckFuture`s.
    fn own(&self, total: usize) -> f64 {
        (total as f64 - self.update_heap as f64 - self.empty_batcher as f64 - self.acks as f64)
            / self.n as f64
    }
}

async fn measure(n: usize) -> Result<Measured, Error> {
    let started = Instant::now();

    // 1. The updates alone.
    let before = live();
    let allocations_before = allocations();
    let mut updates = Vec::with_capacity(n);
    for i in 0..n {
        updates.push(step_start(i)?);
    }
    let update_heap = live() - before;
    let update_allocations = allocations() - allocations_before;
    drop(updates);

    // 2. A batcher whose calls are held open, idle.
    let memory = Arc::new(InMemoryBackend::new());
    let token = memory
        .current_token()
        .ok_or("the in-memory backend has no token")?;
    let faulty = Arc::new(FaultyBackend::new(memory.clone()));
    faulty.hold();
    let config = BatcherConfig {
        queue_capacity: n,
        ..BatcherConfig::default()
    };
    let first_batch = config.max_batch_updates;
    let peak_reset = reset_peak_rss();
    let rss_before = status_kib("VmRSS");
    let before = live();
    let batcher = CheckpointBatcher::spawn(faulty.clone(), ARN, token, config)?;
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    let empty_batcher = live() - before;

    // 3. The caller's futures, then N updates queued; nothing else runs during the loop.
    let mut acks: Vec<AckFuture> = Vec::with_capacity(n);
    let acks_bytes = live() - before - empty_batcher;
    start_recording();
    for i in 0..n {
        acks.push(batcher.try_submit(step_start(i)?)?);
    }
    let sizes = stop_recording();
    let unrecorded = UNRECORDED.load(Ordering::Relaxed);
    let in_channel = live() - before;
    match batcher.try_submit(step_start(n)?) {
        Err(BatcherError::QueueFull) => {}
        other => return Err(format!("queue of {n} not full after {n} updates: {other:?}").into()),
    }

    // The actor takes its first batch into the held call (and may assemble the next).
    tokio::time::timeout(Duration::from_secs(10), faulty.wait_for_calls(1)).await?;
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    let after_first_call = live() - before;
    let peak_rss = status_kib("VmHWM");
    let heap_peak = PEAK.load(Ordering::Relaxed);

    // Release, drain, and check that nothing was lost.
    faulty.release();
    let report = tokio::time::timeout(Duration::from_secs(60), batcher.shutdown()).await??;
    let mut acknowledged = 0;
    for ack in acks {
        let _ = ack.await?;
        acknowledged += 1;
    }
    if acknowledged != n || report.stats.updates != n as u64 {
        return Err(format!(
            "{acknowledged} acknowledged, {} reported of {n} queued",
            report.stats.updates
        )
        .into());
    }
    let applied = memory.applied();
    let in_order = applied.len() == n
        && applied
            .iter()
            .enumerate()
            .all(|(i, u)| u.id() == format!("s{i}"));
    if !in_order {
        return Err(format!(
            "the backend applied {} updates, not s0..s{} in order",
            applied.len(),
            n - 1
        )
        .into());
    }
    drop(applied);
    drop(batcher);
    drop(faulty);
    drop(memory);
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    let leftover = live().saturating_sub(before);

    Ok(Measured {
        n,
        update_heap,
        update_allocations,
        empty_batcher,
        acks: acks_bytes,
        in_channel,
        after_first_call,
        first_batch,
        sizes,
        unrecorded,
        rss_before,
        peak_rss,
        peak_reset,
        heap_peak,
        leftover,
        elapsed: started.elapsed(),
    })
}

fn report(m: &Measured) -> String {
    let n = m.n;
    let mut out = String::new();
    out.push_str(&format!(
        "| {n} STEP STARTs queued (queue_capacity {n}) | bytes | per update |\n|---|---:|---:|\n"
    ));
    let mut row = |what: &str, bytes: Option<usize>, per_update: Option<f64>| {
        let bytes = bytes.map_or_else(|| "—".to_owned(), |b| b.to_string());
        let per_update = per_update.map_or_else(|| "—".to_owned(), |p| format!("{p:.1}"));
        out.push_str(&format!("| {what} | {bytes} | {per_update} |\n"));
    };
    row(
        "the updates alone, in a Vec (the update itself)",
        Some(m.update_heap),
        Some(per(m.update_heap, n)),
    );
    row(
        "the batcher, empty (actor idle)",
        Some(m.empty_batcher),
        None,
    );
    row(
        "the caller's AckFutures, in a Vec",
        Some(m.acks),
        Some(per(m.acks, n)),
    );
    row(
        "all queued, in the channel: total heap",
        Some(m.in_channel),
        Some(per(m.in_channel, n)),
    );
    row(
        "**the batcher's own heap per queued update** (channel)",
        None,
        Some(m.own(m.in_channel)),
    );
    row(
        "first batch in the held call: total heap",
        Some(m.after_first_call),
        Some(per(m.after_first_call, n)),
    );
    row(
        "**the batcher's own heap per queued update** (call held)",
        None,
        Some(m.own(m.after_first_call)),
    );
    let own = m.own(m.in_channel).max(m.own(m.after_first_call));
    out.push_str(&format!(
        "\ntarget ≤ {TARGET_BYTES_PER_UPDATE:.0} B of the batcher's own heap per queued update: {} ({own:.1} B)\n",
        if own <= TARGET_BYTES_PER_UPDATE {
            "met"
        } else {
            "**not met**"
        }
    ));
    out.push_str(&format!(
        "\nsize_of: OperationUpdate {} B, AckFuture {} B; the update's own heap {:.1} B in {:.2} allocations per update\n",
        size_of::<OperationUpdate>(),
        size_of::<AckFuture>(),
        per(m.update_heap, n) - size_of::<OperationUpdate>() as f64,
        m.update_allocations as f64 / n as f64,
    ));
    out.push_str("allocations while queueing (size × count, largest total first):");
    for &(size, count) in m.sizes.iter().take(8) {
        out.push_str(&format!(
            " {size} B × {count} ({:.1} B per update);",
            per(size * count, n)
        ));
    }
    if m.unrecorded > 0 {
        out.push_str(&format!(" {} not recorded;", m.unrecorded));
    }
    out.push('\n');
    out.push_str(&format!(
        "peak RSS (VmHWM) with the queue full: {} ({}; RSS before the batcher {}); heap peak {:.1} MiB\n",
        mib(m.peak_rss),
        if m.peak_reset {
            "reset before the batcher started"
        } else {
            "whole process: reset refused"
        },
        mib(m.rss_before),
        m.heap_peak as f64 / 1024.0 / 1024.0,
    ));
    out.push_str(&format!(
        "first batch: up to {} updates; all {n} acknowledged and applied in order after release; heap left after drop {} B; {:.2} s\n",
        m.first_batch,
        m.leftover,
        m.elapsed.as_secs_f64()
    ));
    out
}

fn main() -> Result<(), Error> {
    let n: usize = env::var("BENCH_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
        .max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let measured = runtime.block_on(measure(n))?;
    print!("{}", report(&measured));
    Ok(())
}
