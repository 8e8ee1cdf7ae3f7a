//! Pure pool overhead: get + release of a no-op connection, ours beside deadpool, bb8, mobc
//! (async) and r2d2 (threads).
//!
//! - `tasksN/<pool>`: N tasks on a 2-worker tokio runtime share a pool of 8; each does its
//!   share of `iters` get + drop cycles. Nothing is held across an `.await`, so with 2 workers
//!   at most 2 connections are out at once: the uncontended path under task churn.
//! - `tasksN_hold/<pool>`: the same, but each task yields once while holding the connection,
//!   so 16 or 256 tasks really queue for 8 connections: the waiting and hand-off path.
//! - `threadsN/<pool>`: N OS threads, `get_blocking()` (ours) vs r2d2's `get()`.
//! - `scope/tasksN`: ours through the scope API (`pool.scope(async { pool.scoped().await })`).
//! - `affinity/<pool>`: a single thread (or task) repeatedly gets and drops.
//!
//! After the criterion groups it prints p50/p99/p99.9/max of single `get` latencies for every
//! async pool at 1, 16 and 256 tasks, then at 16 and 256 tasks in the hold variant, the pools
//! interleaved round by round, with ours' throughput as a ratio to each: `POOL_BENCH_ROUNDS`
//! rounds (default 9) of 100 000 gets per pool; then sustained blocking gets at 8 and 32
//! threads, ours (strict FIFO and with the opt-in queue bypass) beside r2d2, interleaved the
//! same way (skip both with `POOL_BENCH_LATENCY=0`).

use std::future::Future;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use pool_benches::{latency_histogram, nanos, noop, percentiles};
use tokio::runtime::Runtime;

const POOL_SIZE: usize = 8;
const TASKS: [usize; 3] = [1, 16, 256];
const HOLD_TASKS: [usize; 2] = [16, 256];
const THREADS: [usize; 3] = [1, 8, 32];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Share of `iters` for worker `i` of `n` (the first `iters % n` get one more).
fn share(iters: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    iters / n + u64::from((i as u64) < iters % n)
}

/// Spawns `tasks` tasks, each running `work(its share)`, and times them all.
async fn spread<F, Fut>(tasks: usize, iters: u64, work: F) -> Duration
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|i| tokio::spawn(work(share(iters, tasks, i))))
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    start.elapsed()
}

/// Runs `threads` OS threads, each doing its share of `iters` with `work`, and times them.
fn spread_threads(threads: usize, iters: u64, work: impl Fn(u64) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for i in 0..threads {
            let (barrier, work) = (&barrier, &work);
            s.spawn(move || {
                barrier.wait();
                work(share(iters, threads, i));
            });
        }
        barrier.wait();
        let start = Instant::now();
        // Leaving the scope joins every thread.
        start
    })
    .elapsed()
}

/// A get + drop loop body for each async pool, optionally yielding while holding.
macro_rules! async_loop {
    ($pool:expr, $n:expr, $hold:expr, |$p:ident| $get:expr) => {{
        let $p = $pool.clone();
        let hold = $hold;
        async move {
            for _ in 0..$n {
                let conn = $get.expect("get");
                black_box(&conn.id);
                if hold {
                    tokio::task::yield_now().await;
                }
                drop(conn);
            }
        }
    }};
}

fn bench_tasks(c: &mut Criterion) {
    let rt = runtime();
    let ours = noop::ours(POOL_SIZE);
    let dead = noop::deadpool(POOL_SIZE);
    let bb8 = rt.block_on(noop::bb8(POOL_SIZE));
    let mobc = noop::mobc(POOL_SIZE);

    for (hold, counts) in [(false, &TASKS[..]), (true, &HOLD_TASKS[..])] {
        for &tasks in counts {
            let name = if hold {
                format!("tasks{tasks}_hold")
            } else {
                format!("tasks{tasks}")
            };
            let mut g = c.benchmark_group(name);
            g.throughput(Throughput::Elements(1));
            g.bench_function("ours", |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    spread(tasks, iters, |n| {
                        async_loop!(ours, n, hold, |p| p.get().await)
                    })
                })
            });
            g.bench_function("deadpool", |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    spread(tasks, iters, |n| {
                        async_loop!(dead, n, hold, |p| p.get().await)
                    })
                })
            });
            g.bench_function("bb8", |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    spread(tasks, iters, |n| {
                        async_loop!(bb8, n, hold, |p| p.get().await)
                    })
                })
            });
            g.bench_function("mobc", |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    spread(tasks, iters, |n| {
                        async_loop!(mobc, n, hold, |p| p.get().await)
                    })
                })
            });
            g.finish();
        }
    }
}

fn bench_scope(c: &mut Criterion) {
    let rt = runtime();
    let ours = noop::ours(POOL_SIZE);
    let mut g = c.benchmark_group("scope");
    g.throughput(Throughput::Elements(1));
    for tasks in TASKS {
        g.bench_function(format!("tasks{tasks}"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                spread(tasks, iters, |n| {
                    let p = ours.clone();
                    async move {
                        for _ in 0..n {
                            p.scope(async {
                                let conn = p.scoped().await.expect("scoped");
                                black_box(&conn.id);
                            })
                            .await;
                        }
                    }
                })
            })
        });
    }
    g.finish();
}

fn bench_threads(c: &mut Criterion) {
    let ours = noop::ours(POOL_SIZE);
    let ours_bypass = noop::ours_bypass(POOL_SIZE);
    let r2d2 = noop::r2d2(POOL_SIZE);
    for threads in THREADS {
        let mut g = c.benchmark_group(format!("threads{threads}"));
        g.throughput(Throughput::Elements(1));
        for (name, pool) in [("ours", &ours), ("ours_bypass", &ours_bypass)] {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    spread_threads(threads, iters, |n| {
                        for _ in 0..n {
                            let conn = pool.get_blocking().expect("get");
                            black_box(&conn.id);
                        }
                    })
                })
            });
        }
        g.bench_function("r2d2", |b| {
            b.iter_custom(|iters| {
                spread_threads(threads, iters, |n| {
                    for _ in 0..n {
                        let conn = r2d2.get().expect("get");
                        black_box(&conn.id);
                    }
                })
            })
        });
        g.finish();
    }
}

fn bench_affinity(c: &mut Criterion) {
    let mut g = c.benchmark_group("affinity");
    g.throughput(Throughput::Elements(1));
    let ours = noop::ours(POOL_SIZE);
    g.bench_function("ours_blocking", |b| {
        b.iter(|| black_box(ours.get_blocking().expect("get").id))
    });
    let r2d2 = noop::r2d2(POOL_SIZE);
    g.bench_function("r2d2", |b| {
        b.iter(|| black_box(r2d2.get().expect("get").id))
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    g.bench_function("ours_async", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(ours.get().await.expect("get").id) })
    });
    let dead = noop::deadpool(POOL_SIZE);
    g.bench_function("deadpool", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(dead.get().await.expect("get").id) })
    });
    let bb8 = rt.block_on(noop::bb8(POOL_SIZE));
    g.bench_function("bb8", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bb8.get().await.expect("get").id) })
    });
    let mobc = noop::mobc(POOL_SIZE);
    g.bench_function("mobc", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(mobc.get().await.expect("get").id) })
    });
    g.finish();
}

/// Per-get latency at 1, 16 and 256 tasks, printed as a table: first as in `tasksN` (get and
/// drop, nothing held across an `.await`: the pure overhead), then as in `tasksN_hold` (each task
/// holds the connection across one yield, so 16 and 256 tasks queue for 8 connections).
///
/// The pools run in turn, round after round (`rounds`, each `gets_per_round` gets per pool, each
/// round starting with the next pool), so that drift on a shared machine hits all of them alike:
/// each pool's latencies are merged over its rounds, its rate is the median of its rounds, and
/// `ours ÷` is the median over rounds of ours' rate divided by this pool's in the same round
/// (above 1: ours was faster).
fn latency_report(rounds: usize, gets_per_round: u64) {
    let rt = runtime();
    println!(
        "\nlatency of one get (µs), pool of {POOL_SIZE}, 2 workers; {rounds} interleaved rounds of \
         {gets_per_round} gets per pool; `hold`: tasks hold the connection across one yield"
    );
    println!(
        "{:<10} {:<9} {:>10} {:>8} {:>8} {:>9} {:>9}  {:>7}",
        "tasks", "pool", "gets/s", "p50", "p99", "p99.9", "max", "ours ÷"
    );
    let ours = noop::ours(POOL_SIZE);
    let dead = noop::deadpool(POOL_SIZE);
    let bb8 = rt.block_on(noop::bb8(POOL_SIZE));
    let mobc = noop::mobc(POOL_SIZE);
    let cases = TASKS
        .iter()
        .map(|&t| (t, false))
        .chain(HOLD_TASKS.iter().map(|&t| (t, true)));
    for (tasks, hold) in cases {
        macro_rules! timed_pool {
            ($pool:expr, |$p:ident| $get:expr) => {
                |total: u64| -> Vec<hdrhistogram::Histogram<u64>> {
                    rt.block_on(async {
                        let handles: Vec<_> = (0..tasks)
                            .map(|i| {
                                let $p = $pool.clone();
                                let n = share(total, tasks, i);
                                tokio::spawn(async move {
                                    let mut h = latency_histogram();
                                    for _ in 0..n {
                                        let t = Instant::now();
                                        let conn = $get.expect("get");
                                        h.record(nanos(t.elapsed())).expect("auto-resize");
                                        black_box(&conn.id);
                                        if hold {
                                            tokio::task::yield_now().await;
                                        }
                                        drop(conn);
                                    }
                                    h
                                })
                            })
                            .collect();
                        let mut out = Vec::new();
                        for h in handles {
                            out.push(h.await.expect("latency task"));
                        }
                        out
                    })
                }
            };
        }
        type Run<'a> = Box<dyn Fn(u64) -> Vec<hdrhistogram::Histogram<u64>> + 'a>;
        let pools: [(&str, Run<'_>); 4] = [
            ("ours", Box::new(timed_pool!(ours, |p| p.get().await))),
            ("deadpool", Box::new(timed_pool!(dead, |p| p.get().await))),
            ("bb8", Box::new(timed_pool!(bb8, |p| p.get().await))),
            ("mobc", Box::new(timed_pool!(mobc, |p| p.get().await))),
        ];
        let mut hists: Vec<_> = pools.iter().map(|_| latency_histogram()).collect();
        let mut rates: Vec<Vec<f64>> = pools.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            // Each round starts with the next pool, so that none always runs first.
            for k in 0..pools.len() {
                let i = (round + k) % pools.len();
                let run = &pools[i].1;
                let start = Instant::now();
                for h in run(gets_per_round) {
                    hists[i].add(&h).expect("same histogram settings");
                }
                #[allow(clippy::cast_precision_loss)]
                rates[i].push(gets_per_round as f64 / start.elapsed().as_secs_f64());
            }
        }
        for (i, (name, _)) in pools.iter().enumerate() {
            let p = percentiles(&hists[i]);
            #[allow(clippy::cast_precision_loss)]
            let p999_us = hists[i].value_at_quantile(0.999) as f64 / 1_000.0;
            let ratios: Vec<f64> = rates[0].iter().zip(&rates[i]).map(|(o, t)| o / t).collect();
            let label = if hold {
                format!("{tasks} hold")
            } else {
                tasks.to_string()
            };
            println!(
                "{:<10} {:<9} {:>10.0} {:>8.2} {:>8.2} {:>9.2} {:>9.1}  {:>6.3}×",
                label,
                name,
                median(&rates[i]),
                p.p50_us,
                p.p99_us,
                p999_us,
                p.max_us,
                median(&ratios)
            );
        }
    }
}

/// Sustained blocking gets: `threads` OS threads, each doing `per_thread` get + drop cycles in a
/// row, the pools interleaved round by round (criterion's short samples of the `threadsN` groups
/// mostly catch the start of such a run). Prints ns per get, the median over rounds of r2d2's
/// time ÷ this pool's in the same round (above 1: faster than r2d2), and for ours the share of
/// gets that had to queue.
fn threads_report(rounds: usize, per_thread: u64) {
    let ours = noop::ours(POOL_SIZE);
    let ours_bypass = noop::ours_bypass(POOL_SIZE);
    let r2d2 = noop::r2d2(POOL_SIZE);
    println!(
        "\nsustained blocking gets, pool of {POOL_SIZE}: {rounds} interleaved rounds of \
         {per_thread} gets per thread"
    );
    println!(
        "{:<8} {:<12} {:>8} {:>9} {:>8}",
        "threads", "pool", "ns/get", "vs r2d2", "queued"
    );
    for threads in [8usize, 32] {
        let total = per_thread * threads as u64;
        #[allow(clippy::cast_precision_loss)]
        let ns = |d: Duration| d.as_nanos() as f64 / total as f64;
        let mut times: [Vec<f64>; 3] = Default::default();
        let mut queued = [0u64; 2];
        for round in 0..rounds {
            // Each round starts with the next pool, so that none always runs first.
            for k in 0..3 {
                let i = (round + k) % 3;
                if let Some(pool) = [&ours, &ours_bypass].get(i) {
                    let waits = pool.metrics().waits;
                    times[i].push(ns(spread_threads(threads, total, |n| {
                        for _ in 0..n {
                            black_box(&pool.get_blocking().expect("get").id);
                        }
                    })));
                    queued[i] += pool.metrics().waits - waits;
                } else {
                    times[i].push(ns(spread_threads(threads, total, |n| {
                        for _ in 0..n {
                            black_box(&r2d2.get().expect("get").id);
                        }
                    })));
                }
            }
        }
        for (i, name) in ["ours", "ours_bypass", "r2d2"].into_iter().enumerate() {
            let ratios: Vec<f64> = times[2].iter().zip(&times[i]).map(|(r, t)| r / t).collect();
            #[allow(clippy::cast_precision_loss)]
            let share = queued.get(i).map_or(String::new(), |q| {
                format!(
                    "{:.1} %",
                    *q as f64 * 100.0 / (total * rounds as u64) as f64
                )
            });
            println!(
                "{:<8} {:<12} {:>8.0} {:>8.2}× {:>8}",
                threads,
                name,
                median(&times[i]),
                median(&ratios),
                share
            );
        }
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench_tasks, bench_scope, bench_threads, bench_affinity
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listing = args.iter().any(|a| a == "--list");
    let quick = args.iter().any(|a| a == "--test");
    benches();
    if !listing && std::env::var("POOL_BENCH_LATENCY").as_deref() != Ok("0") {
        if quick {
            latency_report(1, 1_000);
            threads_report(1, 1_000);
        } else {
            let rounds = std::env::var("POOL_BENCH_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(9);
            latency_report(rounds, 100_000);
            threads_report(rounds, 100_000);
        }
    }
    Criterion::default().configure_from_args().final_summary();
}
