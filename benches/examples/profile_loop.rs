//! One benchmark case as a plain loop, to run under `perf` or to A/B two builds of the pool.
//!
//! ```text
//! cargo run --release -p pool-benches --example profile_loop -- <pool> [secs] [tasks] [size]
//! ```
//!
//! `<pool>` is `ours`, `deadpool` or `baseline` (the 40-line pool of `pool_benches::baseline`).
//! `tasks` tasks (default 16) each get a connection from a pool of `size` (default 8) no-op
//! connections, hold it across one `yield_now`, and drop it, for `secs` seconds (default 3), on a
//! tokio runtime with `PROFILE_WORKERS` workers (default 2; 1 takes lock contention out of the
//! picture). It prints gets/s.
//!
//! With `PROFILE_THREADS=N`, N OS threads loop on a blocking get + drop for `secs` seconds
//! instead (`ours`, or `baseline` for the `Mutex<Vec>` + `Condvar` pool), and it prints how the
//! gets spread over the threads (fairness is the least productive thread's gets ÷ the mean), and
//! for ours how many gets queued.
//!
//! The criterion benches and the interleaved reports of `core_overhead` are the figures to
//! quote; this loop is for finding where the time goes, e.g.
//! `PROFILE_WORKERS=1 perf record --call-graph dwarf target/release/examples/profile_loop ours 1`.

use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn arg_or<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let which: String = arg_or(1, "ours".to_owned());
    let secs: f64 = arg_or(2, 3.0);
    let tasks: usize = arg_or(3, 16);
    let size: usize = arg_or(4, 8);
    let dur = Duration::from_secs_f64(secs);
    if let Ok(threads) = std::env::var("PROFILE_THREADS") {
        let threads = threads.parse().expect("PROFILE_THREADS: a number");
        return threads_loop(&which, threads, size, dur);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_or("PROFILE_WORKERS", 2))
        .enable_all()
        .build()
        .expect("runtime");
    let pool = which.clone();
    let total: u64 = rt.block_on(async move {
        macro_rules! run {
            ($pool:expr, |$p:ident| $get:expr) => {{
                let deadline = Instant::now() + dur;
                let handles: Vec<_> = (0..tasks)
                    .map(|_| {
                        let $p = $pool.clone();
                        tokio::spawn(async move {
                            let mut n = 0u64;
                            while Instant::now() < deadline {
                                let conn = $get;
                                std::hint::black_box(&conn.id);
                                tokio::task::yield_now().await;
                                drop(conn);
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                let mut total = 0;
                for h in handles {
                    total += h.await.expect("task");
                }
                total
            }};
        }
        match pool.as_str() {
            "ours" => {
                let pool = pool_benches::noop::ours(size);
                run!(pool, |p| p.get().await.expect("get"))
            }
            "deadpool" => {
                let pool = pool_benches::noop::deadpool(size);
                run!(pool, |p| p.get().await.expect("get"))
            }
            "baseline" => {
                let pool = pool_benches::noop::baseline(size);
                run!(pool, |p| p.get().await)
            }
            other => panic!("unknown pool {other:?}: ours, deadpool or baseline"),
        }
    });
    #[allow(clippy::cast_precision_loss)]
    let rate = total as f64 / secs;
    println!("{which}: {rate:.0} gets/s ({tasks} tasks, pool of {size})");
}

/// `threads` OS threads each loop on a blocking get + drop until `dur` has passed.
fn threads_loop(which: &str, threads: usize, size: usize, dur: Duration) {
    let ours = pool_benches::noop::ours(size);
    let base = pool_benches::noop::blocking_baseline(size);
    let use_ours = match which {
        "ours" => true,
        "baseline" => false,
        other => panic!("unknown pool {other:?} for threads: ours or baseline"),
    };
    let barrier = std::sync::Barrier::new(threads + 1);
    let deadline = std::sync::OnceLock::<Instant>::new();
    let mut counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (barrier, deadline, ours, base) = (&barrier, &deadline, &ours, &base);
                s.spawn(move || {
                    barrier.wait();
                    let deadline = *deadline.get().expect("set before the barrier");
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        if use_ours {
                            let conn = ours.get_blocking().expect("get");
                            std::hint::black_box(&conn.id);
                        } else {
                            let conn = base.get();
                            std::hint::black_box(&conn.id);
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        deadline.set(Instant::now() + dur).expect("set once");
        barrier.wait();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    counts.sort_unstable();
    let total: u64 = counts.iter().sum();
    #[allow(clippy::cast_precision_loss)]
    let fairness = counts[0] as f64 * threads as f64 / total.max(1) as f64;
    println!(
        "{which}: {threads} threads, pool of {size}: {total} gets, fairness {fairness:.2}; \
         gets per thread: min {} p10 {} p50 {} max {}",
        counts[0],
        counts[threads / 10],
        counts[threads / 2],
        counts[threads - 1],
    );
    if use_ours {
        let m = ours.metrics();
        println!(
            "ours: {} of {} gets queued; the longest wait was under {:?}, p99 of waits under {:?}",
            m.waits,
            m.gets,
            m.wait_histogram.quantile(1.0).unwrap_or_default(),
            m.wait_histogram.quantile(0.99).unwrap_or_default(),
        );
    }
}
