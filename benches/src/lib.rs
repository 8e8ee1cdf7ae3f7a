//! Shared code of the `pool-benches` benchmarks and of the `loadgen` program.
//!
//! - [`baseline`]: the 40-line pool (`Semaphore` + `Mutex<Vec>`, or `Mutex<Vec>` + `Condvar`
//!   for threads) that every benchmark runs beside ours and the peers.
//! - [`noop`]: managers whose connections do nothing, one per pool implementation (ours,
//!   deadpool, bb8, r2d2, mobc), so that a benchmark measures the pool's own cost alone.
//! - [`env`](mod@env): where the live-database benchmarks find their servers.
//! - [`percentiles`]: a small summary of an `hdrhistogram` used by benches and `loadgen`.

pub mod baseline;
pub mod env;
pub mod noop;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Whether the `--coop off` control is on: `POOL_BENCH_COOP=off` for the criterion benches.
///
/// With it, every contender's loop runs under [`tokio::task::coop::unconstrained`], so that no
/// pool is made to yield by tokio's cooperative budget and one that never yields gains nothing
/// from it: a lead that remains is not from skipping yields.
pub fn coop_off_from_env() -> bool {
    std::env::var("POOL_BENCH_COOP")
        .map(|v| v.eq_ignore_ascii_case("off"))
        .unwrap_or(false)
}

/// Runs `fut` under tokio's cooperative budget (`coop`), or unconstrained (`!coop`).
pub async fn with_coop<F: std::future::Future>(coop: bool, fut: F) -> F::Output {
    if coop {
        fut.await
    } else {
        tokio::task::coop::unconstrained(fut).await
    }
}

/// p50, p99 and maximum of a latency histogram recorded in nanoseconds, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Largest value recorded, µs.
    pub max_us: f64,
}

/// Summarises a histogram of nanosecond values (an empty histogram gives zeros).
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    // Lossless for any latency below 2^53 ns (104 days).
    #[allow(clippy::cast_precision_loss)]
    let us = |ns: u64| ns as f64 / 1_000.0;
    Percentiles {
        p50_us: us(h.value_at_quantile(0.50)),
        p99_us: us(h.value_at_quantile(0.99)),
        max_us: us(h.max()),
    }
}

/// A histogram for nanosecond latencies: 3 significant figures, grows as needed.
pub fn latency_histogram() -> Histogram<u64> {
    // 3 significant figures is a valid precision, so this cannot fail.
    Histogram::new(3).expect("sigfig 3 is valid")
}

/// Saturating `Duration` → nanoseconds for recording into a histogram.
pub fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
