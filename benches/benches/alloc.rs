//! Allocations per get/release cycle in steady state, and acquisition cost by pool size.
//!
//! A counting global allocator (`stats_alloc`, so this file needs no `unsafe`) counts every
//! allocation of the process. Each pool is warmed up first (connections opened, queues and
//! caches grown), then `CYCLES` get + drop cycles run and the allocations (plus reallocations)
//! are divided by `CYCLES`. The count is printed before the criterion groups run:
//!
//! - `single`: one task (current-thread runtime) or one thread, uncontended;
//! - `contended`: 16 or 256 tasks on a 2-worker runtime holding the connection across a yield,
//!   so most gets wait. Spawning the tasks costs a few allocations per run (one per task, plus
//!   a few). At 256 tasks ours also makes the grant cells of the run's first queueings beyond
//!   the spare cells it keeps (about 220 per run); they are reused after that, so the total
//!   stays the same with four times the cycles.
//!
//! Then `acquire/sizeN/<pool>` measures one uncontended get + drop with N idle connections.

use std::alloc::System;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use pool_benches::noop;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::runtime::Runtime;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CYCLES: u64 = 100_000;
const WARMUP: u64 = 10_000;
const POOL_SIZE: usize = 8;

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `warm` then `run(CYCLES)` and returns allocations + reallocations per cycle.
fn per_cycle(mut run: impl FnMut(u64)) -> (f64, usize) {
    run(WARMUP);
    let region = Region::new(GLOBAL);
    run(CYCLES);
    let stats = region.change();
    let n = stats.allocations + stats.reallocations;
    #[allow(clippy::cast_precision_loss)]
    let per = n as f64 / CYCLES as f64;
    (per, n)
}

/// An async single-task loop body for any pool: `$get` yields a guard with `.id`.
macro_rules! single_async {
    ($rt:expr, $pool:expr, |$p:ident| $get:expr) => {
        |n: u64| {
            let $p = &$pool;
            $rt.block_on(async {
                for _ in 0..n {
                    let conn = $get.expect("get");
                    black_box(conn.id);
                }
            })
        }
    };
}

/// `$tasks` tasks sharing `n` cycles, holding the connection across one yield.
macro_rules! contended_async {
    ($rt:expr, $pool:expr, $tasks:expr, |$p:ident| $get:expr) => {
        |n: u64| {
            let tasks: u64 = $tasks;
            $rt.block_on(async {
                let handles: Vec<_> = (0..tasks)
                    .map(|_| {
                        let $p = $pool.clone();
                        tokio::spawn(async move {
                            for _ in 0..n / tasks {
                                let conn = $get.expect("get");
                                black_box(conn.id);
                                tokio::task::yield_now().await;
                                drop(conn);
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.await.expect("task");
                }
            })
        }
    };
}

fn report_allocations() {
    let ct = current_thread();
    let mt = multi_thread();
    let ours = noop::ours(POOL_SIZE);
    let dead = noop::deadpool(POOL_SIZE);
    let bb8 = ct.block_on(noop::bb8(POOL_SIZE));
    let bb8_mt = mt.block_on(noop::bb8(POOL_SIZE));
    let mobc = ct.block_on(async { noop::mobc(POOL_SIZE) });
    // bb8 and mobc spawn helper tasks on the runtime they are first used on.
    let mobc_mt = mt.block_on(async { noop::mobc(POOL_SIZE) });
    let r2d2 = noop::r2d2(POOL_SIZE);

    let mut rows: Vec<(&str, &str, (f64, usize))> = Vec::new();
    rows.push((
        "ours",
        "single get().await",
        per_cycle(single_async!(ct, ours, |p| p.get().await)),
    ));
    rows.push((
        "ours",
        "single scope+scoped",
        per_cycle(|n| {
            ct.block_on(async {
                for _ in 0..n {
                    ours.scope(async { black_box(ours.scoped().await.expect("scoped").id) })
                        .await;
                }
            })
        }),
    ));
    rows.push((
        "ours",
        "single get_blocking()",
        per_cycle(|n| {
            for _ in 0..n {
                black_box(ours.get_blocking().expect("get").id);
            }
        }),
    ));
    rows.push((
        "ours",
        "single try_get()",
        per_cycle(|n| {
            for _ in 0..n {
                black_box(ours.try_get().expect("idle connection").id);
            }
        }),
    ));
    rows.push((
        "deadpool",
        "single get().await",
        per_cycle(single_async!(ct, dead, |p| p.get().await)),
    ));
    rows.push((
        "bb8",
        "single get().await",
        per_cycle(single_async!(ct, bb8, |p| p.get().await)),
    ));
    rows.push((
        "mobc",
        "single get().await",
        per_cycle(single_async!(ct, mobc, |p| p.get().await)),
    ));
    rows.push((
        "r2d2",
        "single get()",
        per_cycle(|n| {
            for _ in 0..n {
                black_box(r2d2.get().expect("get").id);
            }
        }),
    ));
    for tasks in [16, 256] {
        let mode = if tasks == 16 {
            "contended 16 tasks"
        } else {
            "contended 256 tasks"
        };
        rows.push((
            "ours",
            mode,
            per_cycle(contended_async!(mt, ours, tasks, |p| p.get().await)),
        ));
        rows.push((
            "deadpool",
            mode,
            per_cycle(contended_async!(mt, dead, tasks, |p| p.get().await)),
        ));
        rows.push((
            "bb8",
            mode,
            per_cycle(contended_async!(mt, bb8_mt, tasks, |p| p.get_owned().await)),
        ));
        rows.push((
            "mobc",
            mode,
            per_cycle(contended_async!(mt, mobc_mt, tasks, |p| p.get().await)),
        ));
    }

    println!("\nallocations per get/release cycle (steady state, {CYCLES} cycles after {WARMUP} warm-up, pool of {POOL_SIZE})");
    println!(
        "{:<10} {:<24} {:>12} {:>12}",
        "pool", "mode", "per cycle", "total"
    );
    for (pool, mode, (per, total)) in rows {
        println!("{pool:<10} {mode:<24} {per:>12.4} {total:>12}");
    }
    println!();
}

fn bench_acquire(c: &mut Criterion) {
    let rt = current_thread();
    for size in [8usize, 1024] {
        let mut g = c.benchmark_group(format!("acquire/size{size}"));
        g.throughput(Throughput::Elements(1));

        let ours = noop::ours(size);
        rt.block_on(async {
            let mut held = Vec::with_capacity(size);
            for _ in 0..size {
                held.push(ours.get().await.expect("get"));
            }
        });
        g.bench_function(BenchmarkId::new("ours", "async"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(ours.get().await.expect("get").id) })
        });
        g.bench_function(BenchmarkId::new("ours", "blocking"), |b| {
            b.iter(|| black_box(ours.get_blocking().expect("get").id))
        });

        let dead = noop::deadpool(size);
        rt.block_on(async {
            let mut held = Vec::with_capacity(size);
            for _ in 0..size {
                held.push(dead.get().await.expect("get"));
            }
        });
        g.bench_function(BenchmarkId::new("deadpool", "async"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(dead.get().await.expect("get").id) })
        });

        let bb8 = rt.block_on(async {
            let pool = noop::bb8(size).await;
            let mut held = Vec::with_capacity(size);
            for _ in 0..size {
                held.push(pool.get_owned().await.expect("get"));
            }
            drop(held);
            pool
        });
        g.bench_function(BenchmarkId::new("bb8", "async"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(bb8.get().await.expect("get").id) })
        });

        let mobc = noop::mobc(size);
        rt.block_on(async {
            let mut held = Vec::with_capacity(size);
            for _ in 0..size {
                held.push(mobc.get().await.expect("get"));
            }
        });
        g.bench_function(BenchmarkId::new("mobc", "async"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(mobc.get().await.expect("get").id) })
        });

        let r2d2 = noop::r2d2(size);
        g.bench_function(BenchmarkId::new("r2d2", "blocking"), |b| {
            b.iter(|| black_box(r2d2.get().expect("get").id))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench_acquire
}

fn main() {
    if !std::env::args().any(|a| a == "--list") {
        report_allocations();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
