//! Pure pool overhead: get + release of a no-op connection, ours beside the 40-line baseline
//! (`Semaphore` + `Mutex<Vec>`, see `pool_benches::baseline`), deadpool, bb8, mobc (async) and
//! r2d2 (threads).
//!
//! - `tasksN/<pool>`: N tasks on a 2-worker tokio runtime share a pool of 8; each does its
//!   share of `iters` get + drop cycles. Nothing is held across an `.await`, so with 2 workers
//!   at most 2 connections are out at once: the uncontended path under task churn.
//! - `tasksN_hold/<pool>`: the same, but each task yields once while holding the connection,
//!   so 16, 256 or 4096 tasks really queue for 8 connections: the waiting and hand-off path;
//!   `tasks256_hold_pool1024`: 256 such tasks on a pool of 1024.
//! - `threadsN/<pool>`: N OS threads, `get_blocking()` (ours) vs r2d2's `get()` and the
//!   baseline's `Mutex<Vec>` + `Condvar`.
//! - `scope/tasksN`: ours through the scope API (`pool.scope(async { pool.scoped().await })`).
//! - `affinity/<pool>`: a single thread (or task) repeatedly gets and drops.
//!
//! After the criterion groups it prints, for every async pool and every case above (1, 16, 256
//! tasks; 16, 256, 4096 holding tasks on 8 connections; 256 holding tasks on 1024), gets/s, the
//! p50/p99/p99.9/max of single `get` latencies and fairness (the least productive task's gets ÷
//! the mean: near 0 means some tasks starved), then the same for blocking gets at 8, 32 and 128
//! threads (rounds 2.5× as long). The contenders run in rounds, `POOL_BENCH_ROUNDS` of them
//! (default 9), each round in a new shuffled order (fixed seed) and each contender for
//! `POOL_BENCH_ROUND_MS` (default 200) after one untimed warm-up run; `ours ÷` is the median over rounds of ours' rate ÷ this pool's
//! in the same round, with the min–max (skip both reports with `POOL_BENCH_LATENCY=0`).
//!
//! The `tokio_only` row of the task report runs the same loop with no pool at all (each
//! "get" only spends one unit of tokio's cooperative budget): its fairness is the scheduler's
//! own ceiling for that many hot tasks on 2 workers, and its rate the cost of the loop itself.
//!
//! `POOL_BENCH_COOP=off` runs every contender's task loop under
//! `tokio::task::coop::unconstrained` (the control for a lead that comes from not yielding to
//! tokio's cooperative budget). `POOL_BENCH_ONLY=tasks16,threads32` runs only the named cases
//! of the reports.

use std::future::Future;
use std::hint::black_box;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use hdrhistogram::Histogram;
use pool_benches::{coop_off_from_env, latency_histogram, nanos, noop, percentiles, with_coop};
use tokio::runtime::Runtime;

const POOL_SIZE: usize = 8;
const TASKS: [usize; 3] = [1, 16, 256];
/// The holding cases: (tasks, pool size). Every get queues in the first three.
const HOLD: [(usize, usize); 4] = [(16, 8), (256, 8), (4096, 8), (256, 1024)];
const THREADS: [usize; 3] = [1, 8, 32];
/// Thread counts of the sustained report.
const REPORT_THREADS: [usize; 3] = [8, 32, 128];

/// False under the `POOL_BENCH_COOP=off` control.
fn coop() -> bool {
    static COOP: OnceLock<bool> = OnceLock::new();
    *COOP.get_or_init(|| !coop_off_from_env())
}

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
        .map(|i| tokio::spawn(with_coop(coop(), work(share(iters, tasks, i)))))
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
                let conn = $get;
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
    let cases = TASKS
        .iter()
        .map(|&t| (t, POOL_SIZE, false))
        .chain(HOLD.iter().map(|&(t, size)| (t, size, true)));
    for (tasks, size, hold) in cases {
        let ours = noop::ours(size);
        let base = noop::baseline(size);
        let dead = noop::deadpool(size);
        let bb8 = rt.block_on(noop::bb8(size));
        let mobc = noop::mobc(size);
        let mut g = c.benchmark_group(case_name(tasks, size, hold));
        g.throughput(Throughput::Elements(1));
        g.bench_function("ours", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                spread(tasks, iters, |n| {
                    async_loop!(ours, n, hold, |p| p.get().await.expect("get"))
                })
            })
        });
        g.bench_function("baseline", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                spread(tasks, iters, |n| {
                    async_loop!(base, n, hold, |p| p.get().await)
                })
            })
        });
        g.bench_function("deadpool", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                spread(tasks, iters, |n| {
                    async_loop!(dead, n, hold, |p| p.get().await.expect("get"))
                })
            })
        });
        g.bench_function("bb8", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                spread(tasks, iters, |n| {
                    async_loop!(bb8, n, hold, |p| p.get().await.expect("get"))
                })
            })
        });
        g.bench_function("mobc", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                spread(tasks, iters, |n| {
                    async_loop!(mobc, n, hold, |p| p.get().await.expect("get"))
                })
            })
        });
        g.finish();
    }
}

/// `tasksN`, `tasksN_hold`, or `tasksN_hold_poolM` when the pool is not of [`POOL_SIZE`].
fn case_name(tasks: usize, size: usize, hold: bool) -> String {
    match (hold, size == POOL_SIZE) {
        (false, _) => format!("tasks{tasks}"),
        (true, true) => format!("tasks{tasks}_hold"),
        (true, false) => format!("tasks{tasks}_hold_pool{size}"),
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
    let base = noop::blocking_baseline(POOL_SIZE);
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
        g.bench_function("baseline", |b| {
            b.iter_custom(|iters| {
                spread_threads(threads, iters, |n| {
                    for _ in 0..n {
                        let conn = base.get();
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
    let base_blocking = noop::blocking_baseline(POOL_SIZE);
    g.bench_function("baseline_blocking", |b| {
        b.iter(|| black_box(base_blocking.get().id))
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    g.bench_function("ours_async", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(ours.get().await.expect("get").id) })
    });
    let base = noop::baseline(POOL_SIZE);
    g.bench_function("baseline", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(base.get().await.id) })
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

/// The "connection" of the `tokio_only` control row: no pool at all, each "get" only spends
/// one unit of tokio's cooperative budget, as a pool's get that yields fairly does. Its
/// fairness is what the scheduler itself gives this many hot tasks on 2 workers: the ceiling
/// no pool can pass.
struct NoPool {
    id: u64,
}

/// What one timed run of one contender gave.
struct Outcome {
    gets: u64,
    secs: f64,
    /// Latency of single gets (tasks only; empty for threads).
    hist: Histogram<u64>,
    /// The least productive worker's gets ÷ the mean (1: equal shares; near 0: starved).
    fairness: f64,
}

impl Outcome {
    #[allow(clippy::cast_precision_loss)]
    fn rate(&self) -> f64 {
        self.gets as f64 / self.secs
    }
}

/// The least productive worker's count ÷ the mean count (0 when nothing was done).
#[allow(clippy::cast_precision_loss)]
fn fairness(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    match counts.iter().min() {
        Some(&min) if total > 0 => min as f64 * counts.len() as f64 / total as f64,
        _ => 0.0,
    }
}

/// Runs `tasks` tasks that each get, (hold across one yield,) and drop, until `dur` has passed
/// since the first was spawned, recording each get's latency; the deadline is checked with the
/// clock read that times the get, so no contender pays an extra read.
macro_rules! timebox_tasks {
    ($rt:expr, $pool:expr, $tasks:expr, $hold:expr, $dur:expr, |$p:ident| $get:expr) => {{
        let (tasks, hold, dur): (usize, bool, Duration) = ($tasks, $hold, $dur);
        $rt.block_on(async {
            let start = Instant::now();
            let deadline = start + dur;
            let handles: Vec<_> = (0..tasks)
                .map(|_| {
                    let $p = $pool.clone();
                    tokio::spawn(with_coop(coop(), async move {
                        let mut h = latency_histogram();
                        let mut n = 0u64;
                        loop {
                            let t = Instant::now();
                            if t >= deadline {
                                break;
                            }
                            let conn = $get;
                            h.record(nanos(t.elapsed())).expect("auto-resize");
                            black_box(&conn.id);
                            if hold {
                                tokio::task::yield_now().await;
                            }
                            // The `tokio_only` control's "connection" has no `Drop`.
                            #[allow(clippy::drop_non_drop)]
                            drop(conn);
                            n += 1;
                        }
                        (h, n)
                    }))
                })
                .collect();
            let mut hist = latency_histogram();
            let mut counts = Vec::with_capacity(tasks);
            for h in handles {
                let (h, n) = h.await.expect("bench task");
                hist.add(&h).expect("same histogram settings");
                counts.push(n);
            }
            Outcome {
                gets: counts.iter().sum(),
                secs: start.elapsed().as_secs_f64(),
                hist,
                fairness: fairness(&counts),
            }
        })
    }};
}

/// `threads` OS threads that each get and drop until `dur` has passed.
fn timebox_threads<G>(threads: usize, dur: Duration, get_drop: G) -> Outcome
where
    G: Fn() + Sync,
{
    let barrier = Barrier::new(threads + 1);
    let deadline = OnceLock::new();
    let (counts, secs) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (barrier, deadline, get_drop) = (&barrier, &deadline, &get_drop);
                s.spawn(move || {
                    barrier.wait();
                    let deadline: Instant = *deadline.get().expect("set before the barrier");
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        get_drop();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let start = Instant::now();
        deadline.set(start + dur).expect("set once");
        barrier.wait();
        let counts: Vec<u64> = handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect();
        (counts, start.elapsed().as_secs_f64())
    });
    Outcome {
        gets: counts.iter().sum(),
        secs,
        hist: latency_histogram(),
        fairness: fairness(&counts),
    }
}

/// One contender of a report: its name and a run of the given length.
type Contender<'a> = (&'static str, Box<dyn Fn(Duration) -> Outcome + 'a>);

/// Runs every contender once untimed (a tenth of a round), then `rounds` rounds, each in a new
/// shuffled order (a fixed seed: the same orders every run). Returns each contender's outcomes.
fn interleave(contenders: &[Contender<'_>], rounds: usize, round: Duration) -> Vec<Vec<Outcome>> {
    for (_, run) in contenders {
        run(round / 10);
    }
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut order: Vec<usize> = (0..contenders.len()).collect();
    let mut out: Vec<Vec<Outcome>> = contenders.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        rng.shuffle(&mut order);
        for &i in &order {
            out[i].push((contenders[i].1)(round));
        }
    }
    out
}

/// Median, min and max of `xs` (NaN for none).
fn spread_of(xs: &[f64]) -> (f64, f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Prints one row per contender: the median rate, merged latencies (tasks), fairness (median
/// and worst round) and ours' rate ÷ this one's, per round (median and min–max).
fn print_rows(case: &str, names: &[&str], runs: &[Vec<Outcome>], latencies: bool) {
    let ours: Vec<f64> = runs[0].iter().map(Outcome::rate).collect();
    for (name, outs) in names.iter().zip(runs) {
        let rates: Vec<f64> = outs.iter().map(Outcome::rate).collect();
        let ratios: Vec<f64> = ours.iter().zip(&rates).map(|(o, t)| o / t).collect();
        let fair: Vec<f64> = outs.iter().map(|o| o.fairness).collect();
        let (rate, _, _) = spread_of(&rates);
        let (r, lo, hi) = spread_of(&ratios);
        let (f, fmin, _) = spread_of(&fair);
        let lat = if latencies {
            let mut h = latency_histogram();
            for o in outs {
                h.add(&o.hist).expect("same histogram settings");
            }
            let p = percentiles(&h);
            #[allow(clippy::cast_precision_loss)]
            let p999 = h.value_at_quantile(0.999) as f64 / 1_000.0;
            format!(
                "{:>8.2} {:>8.2} {:>9.2} {:>9.1}",
                p.p50_us, p.p99_us, p999, p.max_us
            )
        } else {
            #[allow(clippy::cast_precision_loss)]
            let ns = 1e9 / rate;
            format!("{ns:>8.0} {:>8} {:>9} {:>9}", "", "", "")
        };
        let flag = if fmin < STARVED { " starved" } else { "" };
        println!(
            "{case:<22} {name:<18} {rate:>10.0} {lat}  {f:>4.2} ({fmin:>4.2}){flag:<8} {r:>6.3}× ({lo:.2}–{hi:.2})"
        );
    }
}

/// Fairness below this in some round marks the row `starved`.
const STARVED: f64 = 0.5;

fn report_rounds() -> (usize, Duration) {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&v| v > 0)
            .unwrap_or(default)
    };
    let rounds = usize::try_from(env("POOL_BENCH_ROUNDS", 9)).unwrap_or(9);
    (
        rounds,
        Duration::from_millis(env("POOL_BENCH_ROUND_MS", 200)),
    )
}

/// Per-get latency, rate and fairness of the async pools in every case of `bench_tasks`, the
/// contenders interleaved in shuffled rounds (see the module docs).
fn latency_report(rounds: usize, round: Duration) {
    let rt = runtime();
    println!(
        "\nasync gets: {rounds} rounds of {round:?} per pool in a shuffled order, 2 workers{}; \
         latency of one get in µs; `hold`: each task holds its connection across one yield;\n\
         fair = least productive task's gets ÷ the mean (median and worst round; `starved`: \
         below {STARVED} in some round); ours ÷ = ours' gets/s ÷ this pool's, per round: median \
         (min–max)",
        if coop() {
            ""
        } else {
            ", coop off (unconstrained)"
        }
    );
    println!(
        "{:<22} {:<18} {:>10} {:>8} {:>8} {:>9} {:>9}  {:<20} {:>7}",
        "case", "pool", "gets/s", "p50", "p99", "p99.9", "max", "fair (worst)", "ours ÷"
    );
    let cases = TASKS
        .iter()
        .map(|&t| (t, POOL_SIZE, false))
        .chain(HOLD.iter().map(|&(t, size)| (t, size, true)));
    for (tasks, size, hold) in cases {
        if !report_selected(&case_name(tasks, size, hold)) {
            continue;
        }
        let ours = noop::ours(size);
        let base = noop::baseline(size);
        let dead = noop::deadpool(size);
        let bb8 = rt.block_on(noop::bb8(size));
        let mobc = noop::mobc(size);
        let rt = &rt;
        let contenders: Vec<Contender<'_>> = vec![
            (
                "ours",
                Box::new(|d| {
                    timebox_tasks!(rt, ours, tasks, hold, d, |p| p.get().await.expect("get"))
                }),
            ),
            (
                "baseline",
                Box::new(|d| timebox_tasks!(rt, base, tasks, hold, d, |p| p.get().await)),
            ),
            (
                "deadpool",
                Box::new(|d| {
                    timebox_tasks!(rt, dead, tasks, hold, d, |p| p.get().await.expect("get"))
                }),
            ),
            (
                "bb8",
                Box::new(|d| {
                    timebox_tasks!(rt, bb8, tasks, hold, d, |p| p.get().await.expect("get"))
                }),
            ),
            (
                "mobc",
                Box::new(|d| {
                    timebox_tasks!(rt, mobc, tasks, hold, d, |p| p.get().await.expect("get"))
                }),
            ),
            (
                "tokio_only",
                Box::new(|d| {
                    timebox_tasks!(rt, (), tasks, hold, d, |_p| {
                        tokio::task::coop::consume_budget().await;
                        NoPool { id: 0 }
                    })
                }),
            ),
        ];
        let runs = interleave(&contenders, rounds, round);
        let names: Vec<&str> = contenders.iter().map(|c| c.0).collect();
        print_rows(&case_name(tasks, size, hold), &names, &runs, true);
    }
}

/// Whether the reports run this case: all of them, or those named (comma-separated, e.g.
/// `tasks16,tasks256_hold,threads32`) in `POOL_BENCH_ONLY`.
fn report_selected(case: &str) -> bool {
    match std::env::var("POOL_BENCH_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|c| c.trim() == case),
        _ => true,
    }
}

/// Sustained blocking gets at 8, 32 and 128 OS threads on a pool of 8: ours (strict FIFO, and
/// with the opt-in queue bypass) beside r2d2 and the baseline's `Mutex<Vec>` + `Condvar`,
/// interleaved like the async report. Fairness is per thread. Rounds are 2.5× as long as the
/// async ones: with 128 threads on 2 CPUs, the kernel's own scheduling period is a few hundred
/// ms, and in a shorter window some threads do not run at all whatever the pool does.
fn threads_report(rounds: usize, round: Duration) {
    let round = round * 5 / 2;
    println!(
        "\nblocking gets, pool of {POOL_SIZE}: {rounds} rounds of {round:?} per pool in a shuffled \
         order; ns/get; fair = least productive thread's gets ÷ the mean (median and worst round)"
    );
    println!(
        "{:<22} {:<18} {:>10} {:>8} {:>8} {:>9} {:>9}  {:<20} {:>7}",
        "case", "pool", "gets/s", "ns/get", "", "", "", "fair (worst)", "ours ÷"
    );
    let ours = noop::ours(POOL_SIZE);
    let ours_bypass = noop::ours_bypass(POOL_SIZE);
    let r2d2 = noop::r2d2(POOL_SIZE);
    let base = noop::blocking_baseline(POOL_SIZE);
    for threads in REPORT_THREADS {
        if !report_selected(&format!("threads{threads}")) {
            continue;
        }
        let contenders: Vec<Contender<'_>> = vec![
            (
                "ours",
                Box::new(|d| {
                    timebox_threads(threads, d, || {
                        black_box(&ours.get_blocking().expect("get").id);
                    })
                }),
            ),
            (
                "ours_bypass",
                Box::new(|d| {
                    timebox_threads(threads, d, || {
                        black_box(&ours_bypass.get_blocking().expect("get").id);
                    })
                }),
            ),
            (
                "r2d2",
                Box::new(|d| {
                    timebox_threads(threads, d, || {
                        black_box(&r2d2.get().expect("get").id);
                    })
                }),
            ),
            (
                "baseline",
                Box::new(|d| {
                    timebox_threads(threads, d, || {
                        black_box(&base.get().id);
                    })
                }),
            ),
        ];
        let runs = interleave(&contenders, rounds, round);
        let names: Vec<&str> = contenders.iter().map(|c| c.0).collect();
        print_rows(&format!("threads{threads}"), &names, &runs, false);
    }
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
        let (rounds, round) = if quick {
            (1, Duration::from_millis(20))
        } else {
            report_rounds()
        };
        latency_report(rounds, round);
        threads_report(rounds, round);
    }
    Criterion::default().configure_from_args().final_summary();
}
